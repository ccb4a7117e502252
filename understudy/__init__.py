"""understudy: an async actor runtime for LLM agents and their tools, on asyncio and trio.

The public API is re-exported here; import it as ``import understudy as us``.
"""

from typing import TYPE_CHECKING

from understudy.actors import Actor, Context, Durability, Ref, Timer

# -- agents (wave 2): agents and tools as actors ------------------------------------------
from understudy.agents import (
    NOT_RUN,
    Agent,
    AgentEvent,
    AgentReply,
    AgentTool,
    Prompt,
    Resolve,
    TextDelta,
    Tool,
    ToolFinished,
    ToolStarted,
)
from understudy.breaker import Breaker, BreakerInfo, BreakerState, BreakerStateChanged
from understudy.budgets import Budget, BudgetExhausted, Reservation, Usage
from understudy.chaos import Chaos, Fault, FaultInjected, InjectedFault

# pools and entities (wave 2, pools engineer)
from understudy.entities import (
    Entities,
    EntityInfo,
    EntityRef,
    EntityTypeInfo,
    entity_lookup,
    entity_types,
)

# llm area: the errors of understudy.llm (the subpackage itself is imported on first use of
# ``us.llm``, since it pulls in the anthropic SDK)
from understudy.errors import (
    ActorStopped,
    AgentError,
    BudgetExceeded,
    ChildFailed,
    CircuitOpen,
    CorruptState,
    DeadlineExceeded,
    DeploymentChanged,
    EffectInDoubt,
    FallbackExhausted,
    HandlerTimeout,
    IdleTimeout,
    InvalidLLMRequest,
    Killed,
    LLMConfigError,
    LLMError,
    LLMRequestError,
    LLMRetriesExhausted,
    LLMStreamInterrupted,
    MailboxFull,
    MaxTurnsExceeded,
    NameTaken,
    OutputInvalid,
    OutputTruncated,
    PersistenceError,
    QueueTimeout,
    Refused,
    RestartIntensityExceeded,
    RuntimeClosed,
    SpendLimitReached,
    StaleState,
    TimedOut,
    ToolErrorLimit,
    UnderstudyError,
    UnknownActor,
)
from understudy.events import (
    ActorFailed,
    ActorStarted,
    ActorTerminated,
    DeadLetter,
    DeadLetters,
    Event,
    EventStream,
    Subscription,
)
from understudy.fallback import (
    RETRIED_BY_DEFAULT,
    Answer,
    AskRetried,
    FallbackTaken,
    FirstOf,
    Retry,
    first_of,
)
from understudy.mailbox import DEFAULT_CAPACITY, Overflow
from understudy.messages import ExitReason, Message, Request, Terminated, decode
from understudy.metrics import ActorInfo
from understudy.persistence import EventSourced, Store, StoreStats
from understudy.pools import Pool, PoolRef, PoolResized
from understudy.runtime import Runtime, run
from understudy.supervision import (
    Backoff,
    Child,
    ChildBackoff,
    ChildCounts,
    ChildInfo,
    ChildRestarted,
    Escalated,
    OneForAll,
    OneForOne,
    RestForOne,
    SimpleOneForOne,
    Strategy,
    Supervisor,
    SupervisorGaveUp,
    SupervisorRef,
)

__version__ = "0.1.0"

# store (wave 2): append-only Log fields; schema-change and kind-change errors
# core and supervision (wave 2): errors that are answers, OTP administration
from understudy.actors import ALWAYS_ANSWERS, ANSWERS, Ignore, IgnoreType
from understudy.errors import (
    ChildExists,
    ChildNotFound,
    ChildRunning,
    ChildStartFailed,
    HandlerCancelled,
    KindChanged,
    StartIgnored,
    StateSchemaChanged,
    SupervisorError,
)
from understudy.events import ErrorAnswered
from understudy.persistence import Log

if TYPE_CHECKING:  # llm area: type checkers see the subpackages imported lazily below
    from understudy import llm as llm
    from understudy import testing as testing


def __getattr__(name: str) -> object:
    # llm area: ``us.llm`` and ``us.testing`` are imported when first used
    if name in ("llm", "testing"):
        import importlib

        return importlib.import_module(f"understudy.{name}")
    raise AttributeError(f"module 'understudy' has no attribute {name!r}")


__all__ = [
    # llm area
    "InvalidLLMRequest",
    "LLMConfigError",
    "LLMError",
    "LLMRequestError",
    "LLMRetriesExhausted",
    "LLMStreamInterrupted",
    "SpendLimitReached",
    # agents (wave 2)
    "NOT_RUN",
    "Agent",
    "AgentError",
    "AgentEvent",
    "AgentReply",
    "AgentTool",
    "DeploymentChanged",
    "EffectInDoubt",
    "MaxTurnsExceeded",
    "OutputInvalid",
    "OutputTruncated",
    "Prompt",
    "Refused",
    "Resolve",
    "TextDelta",
    "Tool",
    "ToolErrorLimit",
    "ToolFinished",
    "ToolStarted",
    # wave 1
    "Chaos",
    "Fault",
    "FaultInjected",
    "InjectedFault",
    "DEFAULT_CAPACITY",
    "RETRIED_BY_DEFAULT",
    "Answer",
    "AskRetried",
    "FallbackExhausted",
    "FallbackTaken",
    "FirstOf",
    "Retry",
    "first_of",
    "Breaker",
    "BreakerInfo",
    "BreakerState",
    "BreakerStateChanged",
    "Budget",
    "BudgetExceeded",
    "BudgetExhausted",
    "CircuitOpen",
    "DeadlineExceeded",
    "HandlerTimeout",
    "IdleTimeout",
    "QueueTimeout",
    "Reservation",
    "TimedOut",
    "Usage",
    "Backoff",
    "Child",
    "ChildBackoff",
    "ChildCounts",
    "ChildInfo",
    "ChildRestarted",
    "Escalated",
    "OneForAll",
    "OneForOne",
    "RestForOne",
    "RestartIntensityExceeded",
    "SimpleOneForOne",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "SupervisorRef",
    "Actor",
    "ActorFailed",
    "ActorInfo",
    "ActorStarted",
    "ActorStopped",
    "ActorTerminated",
    "ChildFailed",
    "Context",
    "CorruptState",
    "DeadLetter",
    "DeadLetters",
    "Durability",
    "Event",
    "EventSourced",
    "EventStream",
    "ExitReason",
    "Killed",
    "MailboxFull",
    "Message",
    "NameTaken",
    "Overflow",
    "PersistenceError",
    "Ref",
    "Request",
    "Runtime",
    "RuntimeClosed",
    "StaleState",
    "Store",
    "StoreStats",
    "Subscription",
    "Terminated",
    "Timer",
    "UnderstudyError",
    "UnknownActor",
    "__version__",
    # store (wave 2)
    "KindChanged",
    "Log",
    "StateSchemaChanged",
    # pools and entities (wave 2)
    "Entities",
    "EntityInfo",
    "EntityRef",
    "EntityTypeInfo",
    "Pool",
    "PoolRef",
    "PoolResized",
    "entity_lookup",
    "entity_types",
    "decode",
    "run",
    # core (wave 2): errors that are answers
    "ALWAYS_ANSWERS",
    "ANSWERS",
    "ErrorAnswered",
    "HandlerCancelled",
]

__all__ += [
    "ChildExists",
    "ChildNotFound",
    "ChildRunning",
    "ChildStartFailed",
    "Ignore",
    "IgnoreType",
    "StartIgnored",
    "SupervisorError",
]
