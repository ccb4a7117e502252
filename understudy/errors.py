"""Every exception understudy raises, in one hierarchy.

All of them derive from :class:`UnderstudyError`, so ``except us.UnderstudyError`` catches
anything the runtime itself decided. Bad arguments to a public call are the built-in
``TypeError`` / ``ValueError`` with a message that names what was wrong, and exceptions raised
by user handlers reach the asker unchanged (with a note naming the actor).
"""

from __future__ import annotations

from typing import Any


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


# ------------------------------------------------------------------ resilience (issue 5)


class CircuitOpen(UnderstudyError):
    """A circuit breaker refused the call at once: it is open (its target failed
    ``failures`` times in a row), or half-open with all its trial calls in flight.

    Nothing was enqueued or run; a message refused this way is a dead letter with reason
    ``circuit_open``. ``breaker`` names the breaker (the actor's name for an actor's breaker);
    ``retry_after`` is how many seconds remain until the breaker lets a trial call through
    (0.0 when it is half-open and only waits for a trial to finish).
    """

    # No __init__ of its own and the message formatted only when shown: a refusal must be
    # cheap (about 75 ns to make this, against 360 with attributes set in __init__).
    # Made as ``CircuitOpen(breaker, retry_after)``.
    args: tuple[str, float]

    @property
    def breaker(self) -> str:
        """The breaker's name (its actor's name for an actor's breaker)."""
        return self.args[0]

    @property
    def retry_after(self) -> float:
        """Seconds until the breaker lets a trial call through (0.0: half-open, full)."""
        return self.args[1]

    def __str__(self) -> str:
        return (
            f"circuit breaker {self.breaker!r} is open: call refused; "
            f"next trial in {self.retry_after:.3g} s"
        )


class TimedOut(UnderstudyError, TimeoutError):
    """Base class of the runtime's time limits; also a built-in ``TimeoutError``.

    ``reason`` is the dead-letter reason and the ``kind`` label of
    ``understudy_timeouts_total`` for this limit; ``actor`` the actor it concerns.
    """

    reason = "timeout"

    def __init__(self, message: str, actor: str = "") -> None:
        super().__init__(message)
        self.actor = actor


class DeadlineExceeded(TimedOut):
    """The deadline of a request ran out: an ``ask``'s own ``timeout``, or the deadline it
    inherited from the message being handled or from ``rt.budget(seconds=)``. Raised to the
    asker when the reply did not come in time, when a message's deadline passed while it
    waited in the mailbox (it is then not processed: a dead letter with reason
    ``expired``), and by a ``tell`` that waited for mailbox room until the deadline."""

    reason = "expired"


class HandlerTimeout(TimedOut):
    """A handler ran longer than its actor's ``timeout`` and was cancelled. The actor is
    treated as crashed (its supervisor restarts it), the message is a dead letter with
    reason ``timeout``, and it counts as a failure for the actor's circuit breaker."""

    reason = "timeout"


class QueueTimeout(TimedOut):
    """A message waited in the mailbox longer than its actor's ``queue_timeout`` before
    its handler could start; it is not processed (dead letter, reason ``queue_timeout``).
    The actor is not restarted."""

    reason = "queue_timeout"


class IdleTimeout(TimedOut):
    """A handler went ``idle_timeout`` seconds without calling ``ctx.heartbeat()`` and was
    cancelled as hung. Like :class:`HandlerTimeout`: the actor is treated as crashed, the
    message is a dead letter (reason ``idle_timeout``), the breaker counts a failure."""

    reason = "idle_timeout"


class BudgetExceeded(UnderstudyError):
    """A budget (``rt.budget``) cannot cover what was asked of it; nothing was spent.

    ``budget`` is the name of the budget that ran short (the budget itself or an enclosing
    one), ``kind`` is ``"tokens"``, ``"usd"`` or ``"time"``, ``requested`` what was asked
    and ``available`` what it had left (seconds for ``time``).
    """

    def __init__(self, budget: str, kind: str, requested: float, available: float) -> None:
        super().__init__(
            f"budget {budget!r} cannot cover {requested:g} {kind}: {max(available, 0.0):g} left"
        )
        self.budget = budget
        self.kind = kind
        self.requested = requested
        self.available = available


class FallbackExhausted(UnderstudyError):
    """Every target of a fallback chain (``us.first_of``) failed and it has no
    ``default``. ``failures`` is each target's name and the error it failed with, in
    order."""

    def __init__(self, failures: list[tuple[str, BaseException]]) -> None:
        shown = ", ".join(f"{name}: {type(error).__name__}" for name, error in failures)
        super().__init__(f"every target of the fallback chain failed ({shown})")
        self.failures = failures


# -- persistence ---------------------------------------------------------------------------


class PersistenceError(UnderstudyError):
    """A persistent actor's snapshot could not be committed, or its store could not be used.

    An ``ask`` whose reply was waiting for that commit raises it (the effect was *not*
    acknowledged, and is not on disk); the actor fails, so a supervisor restarts it from its
    last committed snapshot. Transient errors (a busy database) are retried with backoff
    before this is raised.
    """


class StaleState(PersistenceError):
    """A snapshot write was refused because the stored version is not the one this actor
    loaded: another runtime (or another process) wrote the same actor since. Nothing was
    overwritten; the actor fails and, when restarted, loads the newer snapshot.

    ``actor`` is the actor's name, ``expected`` the version this runtime built on, ``found``
    the version in the store (None if the row is gone).
    """

    def __init__(self, actor: str, expected: int, found: int | None) -> None:
        where = "no row" if found is None else f"version {found}"
        super().__init__(
            f"snapshot of actor {actor!r} is stale: it was built on version {expected} but "
            f"the store holds {where}; another runtime writes this actor too (each persistent "
            "name must be served by one runtime at a time)"
        )
        self.actor = actor
        self.expected = expected
        self.found = found


class CorruptState(PersistenceError):
    """A stored snapshot could not be decoded into the actor's ``State``: the row is damaged
    or ``State`` changed incompatibly (a field removed from the data that has no default, or
    a field whose type changed). Only that actor's start fails; the row is left untouched.

    For an event-sourced actor the bad row may be a journal entry; then ``version`` is that
    entry's sequence number.

    ``actor`` is the actor's name, ``version`` the row's version, ``detail`` msgspec's
    description of what did not decode (it names the field's path, e.g. ``$.balance``).
    """

    def __init__(self, actor: str, version: int, detail: str, *, row: str = "snapshot") -> None:
        if row == "snapshot":
            what = f"its snapshot (version {version}) does not decode into its State"
        else:
            what = f"its journal entry (version {version}) cannot be replayed"
        super().__init__(
            f"cannot restore actor {actor!r}: {what}: {detail}. Fix the type (new fields "
            "need defaults) or inspect the row with `understudy inspect`"
        )
        self.actor = actor
        self.version = version
        self.detail = detail


__all__ = [
    "BudgetExceeded",
    "FallbackExhausted",
    "CircuitOpen",
    "DeadlineExceeded",
    "HandlerTimeout",
    "IdleTimeout",
    "QueueTimeout",
    "TimedOut",
    "RestartIntensityExceeded",
    "ActorStopped",
    "ChildFailed",
    "CorruptState",
    "Killed",
    "MailboxFull",
    "NameTaken",
    "PersistenceError",
    "RuntimeClosed",
    "StaleState",
    "UnderstudyError",
    "UnknownActor",
]


# -- LLM calls (understudy.llm) --------------------------------------------------------------


class LLMError(UnderstudyError):
    """A call to a model (``understudy.llm.Model``) failed. ``model`` is the model asked,
    ``error_type`` the API's ``error.type`` (or ``connection_error``, ``stream_stalled``,
    ``invalid_request`` for a request refused before it was sent), ``status`` the HTTP status
    (0 when there was none), ``request_id`` the API's ``request-id`` ("" when none)."""

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        error_type: str = "",
        status: int = 0,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.model = model
        self.error_type = error_type
        self.status = status
        self.request_id = request_id


class LLMConfigError(LLMError, ValueError):
    """A model was configured wrongly: no API key, a bad option, a name missing from the
    pricing table, a malformed pricing table. Raised when the ``Model`` is made."""


class InvalidLLMRequest(LLMError, ValueError):
    """A request breaks a rule of the Messages API that the client can check (``max_tokens``
    absent or not positive, roles not alternating, a ``tool_use`` without its
    ``tool_result``). Raised before anything is reserved or sent."""


class LLMRequestError(LLMError):
    """The API refused the request with an error that is never retried
    (``invalid_request_error``, ``authentication_error``, ``permission_error``,
    ``billing_error``, ``not_found_error``, ...)."""


class SpendLimitReached(LLMRequestError):
    """A 429 for an organisation's spend limit (``error.details.error_code`` such as
    ``enforced_spend_limit_reached``): waiting does not help, so it is never retried."""


class LLMRetriesExhausted(LLMError):
    """Retryable failures (overload, rate limit, 5xx, timeouts, dropped connections, stalled
    streams) went on past the model's ``retries``; ``attempts`` were made."""

    def __init__(self, message: str, *, attempts: int, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.attempts = attempts


class LLMStreamInterrupted(LLMError):
    """A stream failed after some of its text had reached the caller, so it was not retried
    (retrying would repeat that text)."""
