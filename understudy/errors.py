"""Every exception understudy raises, in one hierarchy.

All of them derive from :class:`UnderstudyError`, so ``except us.UnderstudyError`` catches
anything the runtime itself decided. Bad arguments to a public call are the built-in
``TypeError`` / ``ValueError`` with a message that names what was wrong, and exceptions raised
by user handlers reach the asker unchanged (with a note naming the actor).
"""

from __future__ import annotations


class UnderstudyError(Exception):
    """Base class of the errors raised by the runtime itself."""


class RuntimeClosed(UnderstudyError):
    """A ref or the runtime was used after the runtime exited (or before it started)."""


class NameTaken(UnderstudyError, ValueError):
    """``spawn`` was given a name that a live actor of this runtime already has."""


class UnknownActor(UnderstudyError, LookupError):
    """``rt.ref(name)`` named no live actor."""


class ActorStopped(UnderstudyError):
    """The actor an ``ask`` was sent to has stopped, or stopped before it replied.

    The request was not processed (or its processing was cut short); it is a dead letter.
    """


class MailboxFull(UnderstudyError):
    """The target's mailbox was full under the ``fail`` overflow policy, or the request was
    evicted under ``drop_oldest`` before it was processed. Nothing was enqueued."""


class ChildFailed(UnderstudyError):
    """A child started with ``ctx.spawn`` failed and its parent does not handle
    :class:`~understudy.Terminated`, so the parent fails too (an Erlang link).

    ``child`` is the child's name, ``error`` the exception it failed with (also ``__cause__``).
    """

    def __init__(self, child: str, error: BaseException | None) -> None:
        super().__init__(f"child actor {child!r} failed: {error!r}")
        self.child = child
        self.error = error


class Killed(UnderstudyError):
    """The actor was killed: cancelled where it stood, without running ``on_stop``.

    An asker whose request was in progress gets this exception.
    """


class RestartIntensityExceeded(UnderstudyError):
    """A supervisor saw more than ``max_restarts`` restarts within ``within`` seconds, stopped
    its children and failed (OTP's restart intensity). Its own supervisor handles that as a
    child failure; at the root, ``rt.wait()`` returns it and leaving the runtime raises it.
    ``__cause__`` is the last child failure."""

    def __init__(
        self, supervisor: str, max_restarts: int, within: float, last_error: BaseException | None
    ) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts within "
            f"{within} s (last: {last_error!r})"
        )
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.within = within
        self.__cause__ = last_error


__all__ = [
    "RestartIntensityExceeded",
    "ActorStopped",
    "ChildFailed",
    "Killed",
    "MailboxFull",
    "NameTaken",
    "RuntimeClosed",
    "UnderstudyError",
    "UnknownActor",
]
