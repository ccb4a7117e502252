"""Chaos: kill actors and inject faults on purpose, reproducibly, to prove recovery works.

::

    chaos = us.Chaos(rt, seed=42)
    await chaos.kill("alice")                      # fails at once with Killed
    await chaos.kill_random(3, actor_class=Account)
    fault = chaos.inject("pricing", TimeoutError, probability=0.2)
    chaos.delay("search", 0.5, probability=0.1)
    chaos.hang("flaky-tool")
    async with chaos.monkey(kill_rate=50, inject_rate=10, duration=30):
        ...                                        # random faults in the background

Every random choice comes from one ``random.Random(seed)``, so a failure replays with the same
seed (``chaos.seed`` says which one was used when none was given). Every fault is published as
a :class:`FaultInjected` event and counted in ``understudy_chaos_faults_total{kind}``.

Handler faults (``inject``, ``delay``, ``hang``) wrap the target identity's handler table:
they apply to messages sent after the call, to every instance of that identity (a restart
does not heal them), until :meth:`Fault.cancel` or :meth:`Chaos.clear`. Actors no fault
targets are untouched, so a runtime without chaos pays nothing for this module.
"""

from __future__ import annotations

import fnmatch
import random
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
from prometheus_client.core import CounterMetricFamily

from understudy import _checks
from understudy._wake import Wake
from understudy.actors import Actor, Cell, Handler, Ref
from understudy.errors import UnderstudyError, UnknownActor
from understudy.events import Event
from understudy.supervision import SupervisorActor

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from understudy.runtime import Runtime

FaultKind = Literal["kill", "exception", "delay", "hang", "store_write"]
FAULT_KINDS: tuple[FaultKind, ...] = ("kill", "exception", "delay", "hang", "store_write")


class InjectedFault(UnderstudyError):
    """The default exception :meth:`Chaos.inject` raises in a handler."""


class FaultInjected(Event, frozen=True, kw_only=True):
    """Chaos did something to ``actor``: ``kind`` is ``kill``, ``exception``, ``delay``,
    ``hang`` or ``store_write`` (then ``actor`` is ``"store"``); ``detail`` says what."""

    kind: FaultKind
    detail: str = ""


class Fault:
    """A handler fault installed on one actor identity; :meth:`cancel` removes it."""

    __slots__ = ("_chaos", "active", "cell", "count", "exception", "kind", "probability", "seconds")

    def __init__(
        self,
        chaos: Chaos,
        cell: Cell,
        kind: FaultKind,
        probability: float,
        *,
        exception: BaseException | type[BaseException] | None = None,
        seconds: float = 0.0,
        count: int | None = None,
    ) -> None:
        self._chaos = chaos
        self.active = True
        self.count = count
        """Times it may still fire (None: unlimited); it removes itself at 0."""
        self.cell = cell
        self.kind = kind
        self.probability = probability
        self.exception = exception
        self.seconds = seconds

    def cancel(self) -> None:
        """Remove this fault: no message handled afterwards is affected. Never blocks."""
        self._chaos._remove(self)

    def __repr__(self) -> str:
        return f"<Fault {self.kind} on {self.cell.label} p={self.probability}>"


class _ChaosCollector:
    """Exports the fault counts of one Chaos at scrape time."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        yield self._family()

    def _family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(
            "understudy_chaos_faults",
            "Faults injected by understudy.Chaos, by kind.",
            labels=["kind"],
        )
        for kind in FAULT_KINDS:
            family.add_metric([kind], self.counts[kind])
        return family


def _probability(value: object, where: str) -> float:
    return _checks.probability(value, f"{where}: probability")


def _rate(value: object, where: str) -> float:
    return _checks.rate(value, where)


class Chaos:
    """Fault injection for one running runtime, reproducible from ``seed``."""

    def __init__(self, rt: Runtime, *, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"Chaos(seed=) must be an int or None, not {seed!r}")
        self.rt = rt
        self.seed = secrets.randbits(32) if seed is None else seed
        """The seed in use: print it with a failure so the run replays."""
        self.rng = random.Random(self.seed)
        self.counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        """Faults injected so far, by kind."""
        self._faults: dict[int, list[Fault]] = {}
        rt.metrics.add_source(_ChaosCollector(self.counts))

    # -- targets --

    def _cell(self, target: Ref | str, where: str) -> Cell:
        if isinstance(target, Ref):
            return target.live() or target._cell  # a name ref: the name's current holder
        if isinstance(target, str):
            cell = self.rt.holder(target)
            if cell is None:
                raise UnknownActor(f"{where}: no live actor is named {target!r}")
            return cell
        raise TypeError(f"{where}: target must be a Ref or an actor name, not {target!r}")

    def _record(self, cell: Cell | None, kind: FaultKind, detail: str) -> None:
        self.counts[kind] += 1
        events = self.rt.events
        if events.active:
            actor = cell.label if cell is not None else "store"
            events.publish(FaultInjected(actor=actor, kind=kind, detail=detail))

    # -- the store --

    def fail_store_writes(self, count: int = 1, *, transient: bool = False) -> None:
        """Make the store's next ``count`` commit attempts fail as an I/O error would (or,
        with ``transient``, as a busy database, which the store retries). The asks waiting
        on a failed commit get :class:`~understudy.PersistenceError` and the actors are
        restarted from their last committed state. Raises ``ValueError`` without a store."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"fail_store_writes: count must be a positive int, not {count!r}")
        store = self.rt.store
        if store is None:
            raise ValueError("fail_store_writes: the runtime has no store (Runtime(store=...))")
        store.fail_next_commits(count, transient=transient)
        for _ in range(count):
            self._record(None, "store_write", "transient" if transient else "I/O error")

    # -- kills --

    async def kill(self, target: Ref | str) -> bool:
        """Kill the actor's running instance where it stands (idle or in a handler).

        It fails with :class:`~understudy.Killed`, an abnormal exit its supervisor handles
        (an unsupervised actor stops). Returns once that instance has ended; False if the
        actor had no running instance (e.g. it was waiting to be restarted).
        """
        cell = self._cell(target, "kill")
        if cell.instance is None or cell.terminated:
            return False
        done = cell.instance_done
        if done is None:
            done = cell.instance_done = Wake()
        self._record(cell, "kill", "")
        cell.kill()
        await done.wait()
        return True

    def candidates(
        self,
        *,
        actor_class: type[Actor] | None = None,
        name: str | None = None,
        subtree: Ref | None = None,
        supervisors: bool = False,
    ) -> list[Cell]:
        """Live, running actors matching every filter, in spawn order: of ``actor_class`` (or
        a subclass), whose name matches the glob ``name``, under ``subtree``; supervisors only
        when ``supervisors`` is true."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a glob pattern (str) or None, not {name!r}")
        if actor_class is not None and not (
            isinstance(actor_class, type) and issubclass(actor_class, Actor)
        ):
            raise TypeError(f"actor_class must be an Actor subclass or None, not {actor_class!r}")
        root = self._cell(subtree, "subtree") if subtree is not None else None
        found = []
        for cell in list(self.rt.metrics.cells.values()):
            if cell.instance is None or cell.terminated:
                continue
            if not supervisors and issubclass(cell.actor_class, SupervisorActor):
                continue
            if actor_class is not None and not issubclass(cell.actor_class, actor_class):
                continue
            if name is not None and not fnmatch.fnmatchcase(cell.label, name):
                continue
            if root is not None and not _under(cell, root):
                continue
            found.append(cell)
        found.sort(key=lambda cell: cell.id)
        return found

    async def kill_random(
        self,
        k: int = 1,
        *,
        actor_class: type[Actor] | None = None,
        name: str | None = None,
        subtree: Ref | None = None,
        supervisors: bool = False,
    ) -> list[str]:
        """Kill ``k`` live actors drawn from :meth:`candidates` (fewer if fewer match);
        returns their names. The draw depends only on the seed and the live actors."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"kill_random: k must be an int >= 0, not {k!r}")
        pool = self.candidates(
            actor_class=actor_class, name=name, subtree=subtree, supervisors=supervisors
        )
        chosen = self.rng.sample(pool, min(k, len(pool)))
        killed = []
        for cell in chosen:
            if await self.kill(cell.ref):
                killed.append(cell.label)
        return killed

    # -- handler faults --

    def inject(
        self,
        target: Ref | str,
        exception: BaseException | type[BaseException] = InjectedFault,
        *,
        probability: float = 1.0,
        count: int | None = None,
    ) -> Fault:
        """Make the target's handlers raise ``exception`` before running, with the given
        probability per message, at most ``count`` times (None: until cancelled). The actor
        fails as if its handler raised."""
        if not (
            isinstance(exception, BaseException)
            or (isinstance(exception, type) and issubclass(exception, BaseException))
        ):
            raise TypeError(
                f"inject: exception must be an exception or its type, not {exception!r}"
            )
        cell = self._cell(target, "inject")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            raise ValueError(f"inject: count must be a positive int or None, not {count!r}")
        fault = Fault(
            self,
            cell,
            "exception",
            _probability(probability, "inject"),
            exception=exception,
            count=count,
        )
        return self._add(fault)

    def delay(self, target: Ref | str, seconds: float, *, probability: float = 1.0) -> Fault:
        """Make the target's handlers wait ``seconds`` before running, with the given
        probability per message (to exercise timeouts, deadlines and breakers)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"delay: seconds must be a number >= 0, not {seconds!r}")
        cell = self._cell(target, "delay")
        fault = Fault(
            self, cell, "delay", _probability(probability, "delay"), seconds=float(seconds)
        )
        return self._add(fault)

    def hang(self, target: Ref | str, *, probability: float = 1.0) -> Fault:
        """Make the target's handlers never return (until cancelled by a timeout, a kill or
        a shutdown), with the given probability per message."""
        cell = self._cell(target, "hang")
        return self._add(Fault(self, cell, "hang", _probability(probability, "hang")))

    def clear(self, target: Ref | str | None = None) -> None:
        """Remove every handler fault (of ``target``, or of all actors). Never blocks."""
        only = self._cell(target, "clear") if target is not None else None
        for faults in list(self._faults.values()):
            for fault in list(faults):
                if only is None or fault.cell is only:
                    self._remove(fault)

    def _add(self, fault: Fault) -> Fault:
        self._faults.setdefault(fault.cell.id, []).append(fault)
        self._rewire(fault.cell)
        return fault

    def _remove(self, fault: Fault) -> None:
        fault.active = False  # wrapped handlers already captured by queued messages skip it
        faults = self._faults.get(fault.cell.id)
        if faults and fault in faults:
            faults.remove(fault)
            if not faults:
                del self._faults[fault.cell.id]
            self._rewire(fault.cell)

    def _rewire(self, cell: Cell) -> None:
        faults = self._faults.get(cell.id)
        base = cell.actor_class._handlers
        if not faults:
            cell.handlers = base
            return
        cell.handlers = {tp: self._faulty(cell, fn, tuple(faults)) for tp, fn in base.items()}

    def _faulty(self, cell: Cell, handler: Handler, faults: tuple[Fault, ...]) -> Handler:
        rng = self.rng

        async def faulty(instance: Any, msg: Any) -> Any:
            for fault in faults:
                if not fault.active:
                    continue
                if fault.probability < 1.0 and rng.random() >= fault.probability:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._remove(fault)
                if fault.kind == "exception":
                    exc = fault.exception
                    error = exc() if isinstance(exc, type) else exc
                    assert error is not None
                    self._record(cell, "exception", repr(error))
                    raise error
                if fault.kind == "delay":
                    self._record(cell, "delay", f"{fault.seconds} s")
                    await anyio.sleep(fault.seconds)
                else:
                    self._record(cell, "hang", "")
                    await anyio.sleep_forever()
            return await handler(instance, msg)

        return faulty

    # -- the monkey --

    @asynccontextmanager
    async def monkey(
        self,
        *,
        kill_rate: float = 0.0,
        inject_rate: float = 0.0,
        store_fail_rate: float = 0.0,
        duration: float | None = None,
        exception: BaseException | type[BaseException] = InjectedFault,
        actor_class: type[Actor] | None = None,
        name: str | None = None,
        subtree: Ref | None = None,
    ) -> AsyncIterator[Chaos]:
        """Random faults in the background while the block runs (or for ``duration``
        seconds, whichever ends first): kills at ``kill_rate`` per second and one-shot
        injected exceptions at ``inject_rate`` per second on random matching actors (each
        fires on that actor's next message; those not fired yet are disarmed at the end), and
        failed store commits at ``store_fail_rate`` per second, spaced as a Poisson process
        drawn from the seed."""
        kill_rate = _rate(kill_rate, "monkey(kill_rate=)")
        inject_rate = _rate(inject_rate, "monkey(inject_rate=)")
        store_fail_rate = _rate(store_fail_rate, "monkey(store_fail_rate=)")
        if store_fail_rate and self.rt.store is None:
            raise ValueError("monkey(store_fail_rate=) needs a runtime with a store")
        if duration is not None and not (
            isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0
        ):
            raise ValueError(f"monkey(duration=) must be a positive number, not {duration!r}")
        filters: dict[str, Any] = {"actor_class": actor_class, "name": name, "subtree": subtree}
        armed: list[Fault] = []

        async def run() -> None:
            total = kill_rate + inject_rate + store_fail_rate
            if total == 0:
                return
            while True:
                await anyio.sleep(self.rng.expovariate(total))
                if self.rng.random() * total < store_fail_rate:
                    self.fail_store_writes(1)
                    continue
                pool = self.candidates(**filters)
                if not pool:
                    continue
                cell = self.rng.choice(pool)
                if self.rng.random() * (kill_rate + inject_rate) < kill_rate:
                    await self.kill(cell.ref)
                else:
                    fault = Fault(self, cell, "exception", 1.0, exception=exception, count=1)
                    armed.append(self._add(fault))

        async with anyio.create_task_group() as tg:
            scope = tg.cancel_scope
            if duration is not None:
                scope.deadline = anyio.current_time() + duration
            tg.start_soon(run)
            try:
                yield self
            finally:
                scope.cancel()
                for fault in armed:  # the monkey's faults end with the monkey
                    fault.cancel()


def _under(cell: Cell, root: Cell) -> bool:
    parent: Cell | None = cell
    while parent is not None:
        if parent is root:
            return True
        parent = parent.parent
    return False


__all__ = ["FAULT_KINDS", "Chaos", "Fault", "FaultInjected", "FaultKind", "InjectedFault"]
