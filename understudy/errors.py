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
    """No live actor has the name a call needs: a send through a name ref
    (``rt.ref(name)``) found none within its wait, or a lookup such as ``rt.breaker(name)``
    found none."""


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
    its children and exited with reason ``shutdown`` (OTP's restart intensity); its own
    supervisor decides by its restart type. At the root, ``rt.wait()`` returns it and leaving
    the runtime raises it.
    ``__cause__`` is the last child failure."""

    def __init__(
        self, supervisor: str, max_restarts: int, within: float, last_error: BaseException | None
    ) -> None:
        # The last failure is chained, not copied into the text: nested supervisors giving
        # up one after another must not grow the message at each level.
        last = "" if last_error is None else f" (last: {type(last_error).__name__}; see __cause__)"
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts within "
            f"{within} s{last}"
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


# -- agents (wave 2) ---------------------------------------------------------------------


class AgentError(UnderstudyError):
    """Base class of the typed outcomes that end an agent's turn without an answer.

    ``conversation`` is the conversation id. Everything the conversation did before the
    error is committed: the next prompt continues from it.
    """

    def __init__(self, conversation: str, message: str) -> None:
        super().__init__(f"conversation {conversation!r}: {message}")
        self.conversation = conversation


class MaxTurnsExceeded(AgentError):
    """The model still asked for tools after ``max_turns`` model calls for one prompt (the
    "loop of doom"), and the agent's ``on_max_turns`` is ``"error"``. ``turns`` is the
    number of model calls made for the prompt."""

    def __init__(self, conversation: str, turns: int) -> None:
        super().__init__(
            conversation,
            f"stopped after {turns} model calls for one prompt (max_turns): the model kept "
            "calling tools. Raise max_turns, or set on_max_turns='answer' to force a final "
            "answer on the last turn",
        )
        self.turns = turns


class Refused(AgentError):
    """The model declined to answer (``stop_reason == "refusal"``). ``category`` and
    ``explanation`` come from the response's ``stop_details`` when it has them; ``text`` is
    what the model said."""

    def __init__(self, conversation: str, text: str, category: str, explanation: str) -> None:
        why = f" ({category}: {explanation})" if category or explanation else ""
        super().__init__(conversation, f"the model refused to answer{why}")
        self.text = text
        self.category = category
        self.explanation = explanation


class OutputTruncated(AgentError):
    """The answer was cut off: ``stop_reason`` was ``max_tokens`` (raise the agent's
    ``max_tokens``) or ``model_context_window_exceeded`` (prune the history: see the
    agent's ``prepare`` hook). ``text`` is the partial answer."""

    def __init__(self, conversation: str, stop_reason: str, text: str, max_tokens: int) -> None:
        advice = (
            f"raise max_tokens (it is {max_tokens})"
            if stop_reason == "max_tokens"
            else "the history no longer fits the model's context window; prune it in prepare()"
        )
        super().__init__(conversation, f"the answer was cut off ({stop_reason}): {advice}")
        self.stop_reason = stop_reason
        self.text = text


class ToolErrorLimit(AgentError):
    """More tool calls failed for one prompt than the agent's ``max_tool_errors``: each
    failure went back to the model as an ``is_error`` result, and it did not recover.
    ``errors`` holds the last failures as ``(tool, message)``."""

    def __init__(self, conversation: str, limit: int, errors: list[tuple[str, str]]) -> None:
        shown = "; ".join(f"{tool}: {message}" for tool, message in errors[-3:])
        super().__init__(
            conversation, f"more than {limit} tool calls failed for one prompt (last: {shown})"
        )
        self.limit = limit
        self.errors = errors


class OutputInvalid(AgentError):
    """The model's final answer did not validate against the agent's ``output`` type after
    ``output_retries`` corrective attempts. ``raw`` is the last raw output (the JSON the
    model gave, or its text when it gave none), ``error`` why it did not validate."""

    def __init__(self, conversation: str, output: str, attempts: int, raw: str, error: str) -> None:
        super().__init__(
            conversation,
            f"the final answer is not a valid {output} after {attempts} attempts: {error}. "
            f"Last raw output: {raw[:300]!r}",
        )
        self.output = output
        self.attempts = attempts
        self.raw = raw
        self.error = error


class EffectInDoubt(AgentError):
    """A side-effecting tool call may or may not have happened: its intent was committed,
    no result was, and the tool has no ``reconcile`` (or reconcile could not tell). It is
    never re-run blindly; the conversation stops here for a human. ``key`` is the call's
    idempotency key ``conversation:turn:tool_use_id``, ``tool`` the tool's name."""

    def __init__(self, conversation: str, tool: str, key: str, reason: str) -> None:
        super().__init__(
            conversation,
            f"the effect of tool {tool!r} (key {key!r}) is in doubt: {reason}. It was not "
            "re-run; check the outside world, then record the outcome with "
            "Resolve(key, result=...) or Resolve(key, failed=...)",
        )
        self.tool = tool
        self.key = key
        self.reason = reason


class DeploymentChanged(AgentError):
    """A resumed conversation's recorded tool schemas differ from the agent's tools now:
    the history holds calls made against the old schemas, so it is refused rather than
    continued on tools that would decode them differently. Start a new conversation, or
    keep the old tool types until the conversations that use them have finished."""

    def __init__(self, conversation: str, changes: list[str]) -> None:
        super().__init__(
            conversation,
            "its tools changed since it started (" + "; ".join(changes) + "); it was "
            "refused rather than continued on different tools",
        )
        self.changes = changes


# -- store (wave 2): schema changes --------------------------------------------------------


class StateSchemaChanged(CorruptState):
    """A stored snapshot does not decode *exactly* into the actor's current ``State``: a
    field it holds was removed or renamed, or changed type. Nothing is restored and the row
    is left untouched, rather than dropping the field at the next write. Declare a
    migration (``migrate_state`` on the actor class, see :mod:`understudy.persistence`)
    to convert the stored data; fields added with a default need none.

    ``field`` names the first offending field, ``stored`` describes the stored row's
    fields and value types (the stored schema) and ``expected`` the current ``State``'s.
    """

    def __init__(
        self, actor: str, version: int, field: str, problem: str, stored: str, expected: str
    ) -> None:
        detail = (
            f"field {field!r} {problem} (stored schema: {stored}; State: {expected}). Declare "
            "`migrate_state(stored: dict) -> State` on the actor class to convert stored rows"
        )
        PersistenceError.__init__(
            self,
            f"cannot restore actor {actor!r}: its snapshot (version {version}) does not fit "
            f"its State: {detail}",
        )
        self.actor = actor
        self.version = version
        self.detail = detail
        self.field = field
        self.stored = stored
        self.expected = expected


class KindChanged(PersistenceError):
    """An actor's stored data was written by another kind of persistent actor: a journal of
    events after the snapshot, but the actor is now a plain snapshot actor that would drop
    them. Declare it :class:`~understudy.EventSourced` again (its journal is replayed)."""

    def __init__(self, actor: str, version: int, last_event: int) -> None:
        super().__init__(
            f"cannot restore actor {actor!r}: its journal holds events {version + 1}..."
            f"{last_event} after its snapshot (version {version}), written when it was "
            "event-sourced; as a plain persistent actor it would drop them. Declare it "
            "us.EventSourced (with those event types) to replay them"
        )
        self.actor = actor
        self.version = version
        self.last_event = last_event


__all__ = [
    "AgentError",
    "DeploymentChanged",
    "EffectInDoubt",
    "MaxTurnsExceeded",
    "OutputInvalid",
    "OutputTruncated",
    "Refused",
    "ToolErrorLimit",
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
    # core (wave 2)
    "HandlerCancelled",
]


# -- core (wave 2): errors that are answers -------------------------------------------------


class HandlerCancelled(UnderstudyError):
    """A handler was ended by a cancellation that came from inside it (on asyncio: it
    awaited a task it had cancelled, and let the ``CancelledError`` escape), not from the
    runtime. The message fails with this error (its asker gets it; a ``tell`` is a dead
    letter with reason ``error``); the actor goes on with its next message."""


# --------------------------------------------------- supervision administration (wave 2)
# Raised in the caller of a SupervisorRef call (OTP's `{error, Reason}` replies); the
# supervisor, its children and its restart intensity are untouched.


class SupervisorError(UnderstudyError):
    """An administration call on a supervisor was refused; ``supervisor`` and ``child`` name
    them. The supervisor carries on untouched."""

    def __init__(self, message: str, supervisor: str, child: str | None) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child = child


class ChildNotFound(SupervisorError, UnknownActor):
    """The supervisor has no child (running or stopped) of that name (OTP: ``not_found``)."""


class ChildRunning(SupervisorError):
    """``restart_child``/``delete_child`` of a child that is running, or being restarted
    (``state``: ``"running"``, ``"restarting"`` or ``"backing_off"``; OTP: ``running``,
    ``restarting``)."""

    def __init__(self, message: str, supervisor: str, child: str, state: str) -> None:
        super().__init__(message, supervisor, child)
        self.state = state


class ChildExists(SupervisorError, NameTaken):
    """``start_child`` of a spec whose name the supervisor already has (``running``: its
    child runs, OTP ``already_started``; else its spec is kept stopped, ``already_present``)."""

    def __init__(self, message: str, supervisor: str, child: str, running: bool) -> None:
        super().__init__(message, supervisor, child)
        self.running = running


class ChildStartFailed(SupervisorError):
    """``start_child``/``restart_child``: the child's start raised; ``__cause__`` is what it
    raised. Nothing of the failed start is left."""


class StartIgnored(UnderstudyError):
    """``rt.spawn``: the actor's ``on_start`` returned ``us.Ignore`` (it declined to run), so
    no actor exists. Under a supervisor this is not an error (OTP's ``ignore``)."""


__all__ += [
    "ChildExists",
    "ChildNotFound",
    "ChildRunning",
    "ChildStartFailed",
    "StartIgnored",
    "SupervisorError",
    # store (wave 2)
    "KindChanged",
    "StateSchemaChanged",
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
