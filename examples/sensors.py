"""A monitor polls its sensors on a timer; one sensor breaks.

Shows children (``ctx.spawn``), a repeating timer (``ctx.schedule_every``), asks made from
inside a handler, a child's failure arriving as ``Terminated``, and ``ctx.stop()`` taking the
children down with their parent, newest first.

Run it with ``python examples/sensors.py`` (asyncio) or ``python examples/sensors.py trio``.
"""

import functools
import logging
import sys

import msgspec

import understudy as us


class Poll(us.Message, frozen=True):
    pass


class Read(us.Request[int], frozen=True):
    pass


class SensorBroken(Exception):
    pass


class Sensor(us.Actor):
    """Reads a value; a flaky one breaks on its third reading."""

    class State(msgspec.Struct):
        readings: int = 0

    def __init__(self, base: int, flaky: bool = False) -> None:
        self.base = base
        self.flaky = flaky

    async def read(self, msg: Read) -> int:
        self.state.readings += 1
        if self.flaky and self.state.readings == 3:
            raise SensorBroken(f"{self.ctx.name} returned garbage")
        return self.base + self.state.readings

    async def on_stop(self) -> None:
        print(f"{self.ctx.name} stopped")


class Monitor(us.Actor):
    class State(msgspec.Struct):
        polls: int = 0

    async def on_start(self) -> None:
        self.sensors = {
            name: await self.ctx.spawn(functools.partial(Sensor, base, flaky), name=name)
            for name, base, flaky in [("s1", 10, False), ("s2", 20, True), ("s3", 30, False)]
        }
        self.ctx.schedule_every(0.01, Poll())

    async def poll(self, msg: Poll) -> None:
        self.state.polls += 1
        readings = []
        for name, sensor in self.sensors.items():
            try:
                readings.append(f"{name}={await sensor.ask(Read(), timeout=1.0)}")
            except SensorBroken as exc:
                readings.append(f"{name}=! ({exc})")
        print(f"poll {self.state.polls}: {' '.join(readings)}")
        if self.state.polls == 5:
            self.ctx.stop()  # the timer and the remaining sensors stop with the monitor

    async def terminated(self, msg: us.Terminated) -> None:
        # A child that stops is reported here instead of failing the monitor.
        print(f"monitor: {msg.ref.name} is gone ({msg.reason})")
        self.sensors.pop(msg.ref.name, None)

    async def on_stop(self) -> None:
        print(f"monitor stopped after {self.state.polls} polls")


async def main() -> None:
    async with us.Runtime() as rt:
        with rt.events.subscribe(us.ActorTerminated) as ended:
            await rt.spawn(Monitor, name="monitor")
            async for event in ended:
                if event.actor == "monitor":
                    break


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    us.run(main, backend="trio" if sys.argv[1:] == ["trio"] else "asyncio")
