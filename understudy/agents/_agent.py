"""The agent: an actor per conversation running the tool-use loop, resumable after a crash.

Declare an agent once, as a class::

    class Support(us.Agent):
        \"\"\"Answers customers' questions.\"\"\"
        model = us.llm.Model("claude-haiku-4-5")   # anything with create(**params) -> Message
        system = "You are a helpful support agent."
        tools = ("weather", "mailer")               # actor names; each offers its tools
        max_turns = 8

and ask a conversation (an actor named for it) ``await ref.ask(us.Prompt("..."))``. The loop
calls the model; answers every ``tool_use`` of a turn (concurrently) in the next user message
— a bad input, an unknown tool, an open breaker, a timeout or a tool's error goes back as an
``is_error`` result the model can act on —; and repeats until the model ends its turn, or a
limit stops it with a typed error (``errors.py``: :class:`~understudy.MaxTurnsExceeded`,
:class:`~understudy.Refused`, :class:`~understudy.OutputTruncated`, ...).

Every model response, every side-effecting call's intent (before it runs) and every tool
result is committed to the conversation's log before the loop goes on, so a conversation
killed anywhere — its actor, or the process — resumes from its last committed turn when it is
asked again: committed model calls are not repeated, committed results are replayed, and a
side-effecting call with an intent but no result is *in doubt*: the tool's ``reconcile``
decides, or the prompt stops with :class:`~understudy.EffectInDoubt`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import anyio
import msgspec

from understudy.actors import Actor, Context, Ref
from understudy.agents._conversation import Conversation, estimate_tokens, keep_last
from understudy.agents._log import (
    ConversationLog,
    Finished,
    Intent,
    ModelTurn,
    Started,
    Tokens,
    ToolDone,
    UserTurn,
)
from understudy.agents._tools import (
    NOT_RUN,
    Reconcile,
    ToolCall,
    ToolSpec,
    input_schema,
    tool_specs,
)
from understudy.errors import (
    ActorStopped,
    AgentError,
    BudgetExceeded,
    CircuitOpen,
    DeadlineExceeded,
    DeploymentChanged,
    EffectInDoubt,
    Killed,
    MaxTurnsExceeded,
    OutputInvalid,
    OutputTruncated,
    Refused,
    TimedOut,
    ToolErrorLimit,
    UnknownActor,
)
from understudy.messages import Message, Request, Terminated
from understudy.pools import PoolRef

if TYPE_CHECKING:
    from anthropic.types import Message as ApiMessage

    from understudy.runtime import Runtime


class ModelClient(Protocol):
    """What an agent needs of a model: ``understudy.llm.Model`` is one.

    ``create`` takes the Messages API's keyword parameters (without ``model``: the client
    knows its model) and returns the SDK's ``Message``; it reserves on the current message's
    budget before the call (raising :class:`~understudy.BudgetExceeded` when it cannot), is
    bounded by its deadline, and settles after.
    """

    async def create(self, **params: Any) -> ApiMessage: ...


# -------------------------------------------------------------------------------- messages


class AgentReply(msgspec.Struct, frozen=True):
    """An agent's answer to a :class:`Prompt`.

    ``text`` is the final text; ``output`` the decoded structured output (an instance of the
    agent's ``output`` type, or None); ``turns`` the model calls made for the prompt;
    ``usage`` their tokens, the callees' of handoffs included; ``replayed`` is True when the
    answer was already committed (the prompt was asked again with the same ``id``) and no
    model was called."""

    text: str
    conversation: str
    prompt: str
    turns: int
    usage: Tokens
    output: Any = None
    stop_reason: str = "end_turn"
    replayed: bool = False


class AgentEvent(msgspec.Struct, frozen=True):
    """Base of what a streaming prompt's ``on_event`` receives."""


class ToolStarted(AgentEvent, frozen=True):
    """A tool call of turn ``turn`` started."""

    turn: int
    tool: str
    tool_use_id: str


class ToolFinished(AgentEvent, frozen=True):
    """A tool call finished (``is_error``: its result is an error)."""

    turn: int
    tool: str
    tool_use_id: str
    is_error: bool


class TextDelta(AgentEvent, frozen=True):
    """Text of the model's answer, as it came."""

    text: str


class Done(AgentEvent, frozen=True):
    """The last event of :func:`stream`: the prompt's reply."""

    reply: Any


OnEvent = Callable[[AgentEvent], Awaitable[None]]


class Prompt(Request[AgentReply], frozen=True):
    """Ask a conversation: ``text`` is the user's message.

    ``id`` makes the prompt idempotent: asked again with the same id, a finished prompt's
    answer is returned from the log without calling the model, and an unfinished one (its
    conversation was killed) continues from its last committed turn. Without an id, a prompt
    given while another is unfinished abandons that one (its open tool calls are answered as
    not run) and starts anew. ``on_event`` (an async callable) receives :class:`TextDelta`,
    :class:`ToolStarted` and :class:`ToolFinished` events as they happen.
    """

    text: str
    id: str = ""
    on_event: OnEvent | None = None


class Resolve(Request[None], frozen=True):
    """Record, for a human, the outcome of a call left in doubt
    (:class:`~understudy.EffectInDoubt`): ``result`` is what the model will read, ``failed``
    True if the effect did not happen. The next prompt continues the conversation."""

    key: str
    result: str
    failed: bool = False


class Delegate(Request[AgentReply], frozen=True):
    """A task handed to an agent used as a tool."""

    task: str


class AgentTool(msgspec.Struct, frozen=True):
    """An agent offered as a tool of another (a handoff).

    Each call is a conversation of its own with ``agent`` (named
    ``<caller conversation>/<tool_use id>``, a child of the caller), run inside a budget
    nested in the caller's: ``tokens`` / ``usd`` / ``seconds`` bound it (None: only the
    caller's budget). The callee's usage is attributed to it in the caller's log.
    """

    name: str
    agent: type[Agent]
    description: str = ""
    tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None


_DELEGATE_SCHEMA = input_schema(Delegate, "AgentTool")

# ---------------------------------------------------------------------------------- agent

Force = Literal["", "none"]


def _runtime(ctx: Context) -> Runtime:
    # The cell's system is the runtime that owns it; Context has no public accessor yet
    # (name refs from the core branch will give ctx.ref).
    return ctx._cell.system  # type: ignore[return-value]


def _check_class(cls: type[Agent]) -> None:
    where = f"agent {cls.__qualname__}"
    turns = cls.max_turns
    if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
        raise ValueError(f"{where}: max_turns must be an int >= 1, not {turns!r}")
    tokens = cls.max_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"{where}: max_tokens must be an int >= 1, not {tokens!r}")
    retries = cls.output_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"{where}: output_retries must be an int >= 0, not {retries!r}")
    errors = cls.max_tool_errors
    if isinstance(errors, bool) or not isinstance(errors, int) or errors < 0:
        raise ValueError(f"{where}: max_tool_errors must be an int >= 0, not {errors!r}")
    if cls.on_max_turns not in ("error", "answer"):
        raise ValueError(f"{where}: on_max_turns must be 'error' or 'answer'")
    if not isinstance(cls.system, str):
        raise TypeError(f"{where}: system must be a str, not {type(cls.system).__name__}")
    if not isinstance(cls.tools, tuple):
        raise TypeError(f"{where}: tools must be a tuple of actor names or AgentTools")
    for tool in cls.tools:
        if not isinstance(tool, (str, AgentTool)) or tool == "":
            raise TypeError(
                f"{where}: tools holds {tool!r}; each must be the name of a tool actor or an "
                "us.AgentTool"
            )
    output = cls.output
    if output is not None:
        if not (isinstance(output, type) and issubclass(output, msgspec.Struct)):
            raise TypeError(
                f"{where}: output must be a msgspec.Struct type (the final answer is decoded "
                f"into it), not {output!r}"
            )
        try:
            schema = _plain_schema(output)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{where}: output type {output.__qualname__} cannot be expressed in JSON "
                f"Schema: {exc}"
            ) from exc
        if schema.get("type") != "object" or output.__struct_config__.array_like:
            raise TypeError(
                f"{where}: output type {output.__qualname__} must encode as a JSON object"
            )
    keep = cls.keep_prompts
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"{where}: keep_prompts must be None or an int >= 1, not {keep!r}")
    timeout = cls.tool_timeout
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise ValueError(f"{where}: tool_timeout must be positive seconds or None")
    if cls.persistent:
        raise TypeError(
            f"{where}: an agent persists its conversation itself (a log appended per turn); "
            "do not make it persistent=True"
        )


MAX_CONVERSATION_ID = 256
"""The longest conversation id (an agent actor's name), in characters."""


def _check_conversation(ctx: Context, where: str) -> None:
    name = ctx._cell.name  # None for an unnamed actor (its label is generated)
    if name is None:
        raise ValueError(
            f"{where}: an agent must be named for its conversation (spawn it with name=..., "
            "or as an entity keyed by the conversation id); an unnamed one could not resume"
        )
    if len(name) > MAX_CONVERSATION_ID or not name.isprintable():
        raise ValueError(
            f"{where}: conversation id {name[:40]!r}... is not a valid key: at most "
            f"{MAX_CONVERSATION_ID} printable characters"
        )


class Agent(Actor):
    """Base class of agents; one instance (actor) per conversation, named for it.

    Class attributes (checked when the class is defined, tools when a conversation starts):

    - ``model``: a :class:`ModelClient` (``understudy.llm.Model``); ``fallbacks``: models
      tried in order when the one before refuses with :class:`~understudy.BudgetExceeded`
      (a cheaper one may fit) or :class:`~understudy.CircuitOpen`.
    - ``system``: the system prompt, sent with ``cache_control`` (``cache_system = False``
      to send it plain).
    - ``tools``: names of tool actors (each offers all its tools) and :class:`AgentTool`\\ s,
      resolved when the conversation starts (a missing one is a clear error then).
    - ``max_turns`` (≥ 1): model calls per prompt; then ``on_max_turns`` = ``"error"``
      (:class:`~understudy.MaxTurnsExceeded`) or ``"answer"`` (the last call is made with
      ``tool_choice`` none, forcing a final answer).
    - ``answer_within``: seconds; when the prompt's deadline is closer than that, the next
      call forces a final answer (0: never).
    - ``max_tokens``, ``params`` (more Messages API parameters: ``temperature``, ...).
    - ``output``: a msgspec Struct type for a structured final answer (given through the
      ``output_tool`` tool), with ``output_retries`` corrective attempts.
    - ``max_tool_errors``: failed tool calls per prompt before :class:`~understudy.ToolErrorLimit`.
    - ``tool_timeout``: seconds per tool call (None: only the deadline).
    - ``keep_prompts``: the default :meth:`prepare` sends only the last this many prompts
      verbatim and a summary of the earlier ones (None: everything).
    """

    model: ClassVar[ModelClient | None] = None
    fallbacks: ClassVar[tuple[ModelClient, ...]] = ()
    system: ClassVar[str] = ""
    cache_system: ClassVar[bool] = True
    tools: ClassVar[tuple[str | AgentTool, ...]] = ()
    max_turns: ClassVar[int] = 10
    on_max_turns: ClassVar[Literal["error", "answer"]] = "error"
    answer_within: ClassVar[float] = 0.0
    max_tokens: ClassVar[int] = 1024
    params: ClassVar[Mapping[str, Any]] = {}
    output: ClassVar[type[msgspec.Struct] | None] = None
    output_retries: ClassVar[int] = 2
    output_tool: ClassVar[str] = "final_answer"
    max_tool_errors: ClassVar[int] = 10
    tool_timeout: ClassVar[float | None] = 60.0
    keep_prompts: ClassVar[int | None] = None

    _conv: Conversation
    _log: ConversationLog
    _specs: dict[str, ToolSpec]
    _agent_tools: dict[str, AgentTool]
    _fresh: set[str]
    _tool_params: list[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_class(cls)

    # -- lifecycle --

    async def on_start(self) -> None:
        """Resolve the tools and restore the conversation from its log.

        Raises ``ValueError`` when the runtime has no store or the agent no model,
        ``LookupError`` naming a tool actor that does not exist, ``TypeError`` for an actor
        that is not a tool, :class:`~understudy.CorruptState` for a log that does not decode.
        """
        cls = type(self)
        where = f"agent {cls.__qualname__} (conversation {self.ctx.name!r})"
        if cls.model is None:
            raise ValueError(f"{where} has no model: set model = us.llm.Model(...)")
        _check_conversation(self.ctx, where)
        rt = _runtime(self.ctx)
        if rt.store is None:
            raise ValueError(
                f"{where}: an agent's conversation is persisted, but the runtime has no "
                "store: open one with us.Runtime(store='app.db')"
            )
        specs: dict[str, ToolSpec] = {}
        agents: dict[str, AgentTool] = {}
        for tool in cls.tools:
            if isinstance(tool, AgentTool):
                found = [
                    ToolSpec(
                        name=tool.name,
                        description=tool.description or (tool.agent.__doc__ or "").strip(),
                        input_schema=_DELEGATE_SCHEMA,
                        request=Delegate,
                        actor="",
                        read_only=True,  # a handoff is itself a resumable conversation
                        reconcile=False,
                    )
                ]
                agents[tool.name] = tool
            else:
                if tool not in rt:
                    raise LookupError(
                        f"{where}: its tools name actor {tool!r}, which does not exist; start "
                        "the tool actors before the agents that use them"
                    )
                ref = rt.ref(tool)
                # a pool's ref routes to its workers: the tools are its workers' class's
                served = ref.worker_class if isinstance(ref, PoolRef) else ref._cell.actor_class
                found = tool_specs(served, tool)
            for spec in found:
                if spec.name in specs or (spec.name == cls.output_tool and cls.output):
                    first = specs[spec.name].actor if spec.name in specs else "output_tool"
                    second = spec.actor or "an AgentTool"
                    raise ValueError(
                        f"{where}: two tools are named {spec.name!r} (from {first or 'an '}"
                        f"{'' if first else 'AgentTool'} and {second}); tool names must be "
                        "unique"
                    )
                specs[spec.name] = spec
        self._specs = specs
        self._agent_tools = agents
        params = [spec.param() for spec in specs.values()]
        if cls.output is not None:
            params.append(
                {
                    "name": cls.output_tool,
                    "description": "Give your final answer. Call this exactly once, when done; "
                    "its input is the answer.",
                    "input_schema": _plain_schema(cls.output),
                }
            )
        self._tool_params = params
        self._fresh = set()
        self._log = ConversationLog(rt.store, self.ctx.name)
        self._conv = Conversation(self.ctx.name)
        for entry in await self._log.load():
            self._conv.apply(entry)

    async def prepare(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The context-control hook: called before each model call with the history about
        to be sent; return it as it is (the default), or pruned or summarised (keep
        ``tool_use``/``tool_result`` pairs together and the roles alternating). The
        estimated tokens before and after are recorded with the call. The default keeps the
        last ``keep_prompts`` prompts and summarises the rest (:func:`keep_last`) when
        ``keep_prompts`` is set."""
        keep = type(self).keep_prompts
        return messages if keep is None else keep_last(messages, keep)

    # -- handlers --

    async def prompt(self, msg: Prompt) -> AgentReply:
        """Run the loop for ``msg`` and return the answer (see :class:`Prompt`)."""
        conv = self._conv
        self._check_deployment()
        if msg.id and msg.id in conv.finished:
            done = conv.finished[msg.id]
            if done.outcome == "answer":
                return self._answer(done, replayed=True)
        active = conv.active
        if active is not None and msg.id and active.prompt == msg.id:
            return await self._loop(msg.on_event)  # resume where it was killed
        if active is not None:
            await self._close_open(abandon=True)
            await self._log.append(Finished(active.prompt, "abandoned", ""))
            conv.apply(Finished(active.prompt, "abandoned", ""))
        entries: list[Any] = []
        if conv.deployment is None:
            entries.append(self._deployment())
        if conv.open_uses:
            await self._close_open(abandon=True)
        prompt_id = msg.id or f"p{conv.prompts + 1}"
        entries.append(UserTurn(prompt_id, [{"type": "text", "text": msg.text}], time.time()))
        # Committed with the first model turn, not before the call: until a reply is
        # committed nothing was acknowledged or done outside, so a crash in between loses
        # only an unanswered prompt, which a retry (same id) starts again.
        self._log.defer(*entries)
        for entry in entries:
            conv.apply(entry)
        return await self._loop(msg.on_event)

    async def child_ended(self, msg: Terminated) -> None:
        """A handoff's conversation (a child) stopped: nothing to do; its next call
        restarts it from its log. Handled so that a callee's failure is not the caller's."""

    async def resolve(self, msg: Resolve) -> None:
        """Record a human's outcome for a call in doubt (see :class:`Resolve`)."""
        conv = self._conv
        for use in conv.open_uses:
            intent = conv.intents.get(use["id"])
            if intent is not None and intent.key == msg.key and use["id"] not in conv.results:
                done = ToolDone(
                    intent.turn, use["id"], intent.tool, msg.result, msg.failed, "resolved"
                )
                await self._log.append(done)
                conv.apply(done)
                return
        raise LookupError(f"conversation {conv.key!r} has no call in doubt with key {msg.key!r}")

    # -- the loop --

    async def _loop(self, on_event: OnEvent | None) -> AgentReply:
        conv = self._conv
        assert conv.active is not None
        # Resumed right after a committed model turn whose outcome was not handled yet (the
        # conversation was killed in between): handle it from the log, without a new call.
        pending = conv.last if isinstance(conv.last, ModelTurn) else None
        while True:
            if pending is None:
                pending = await self._turn(on_event)
            turn, pending = pending, None
            reply = await self._outcome(turn)
            if reply is not None:
                return reply

    async def _turn(self, on_event: OnEvent | None) -> ModelTurn:
        """Answer the open tool calls, check the limits, call the model and commit its
        response (with the intents of the side-effecting calls it asks for)."""
        conv = self._conv
        cls = type(self)
        if conv.open_uses:
            await self._close_open(abandon=False, on_event=on_event)
            if len(conv.prompt_errors) > cls.max_tool_errors:
                await self._finish("tool_errors")
                raise ToolErrorLimit(conv.key, cls.max_tool_errors, conv.prompt_errors)
        if conv.prompt_turns >= cls.max_turns:
            await self._finish("max_turns")
            raise MaxTurnsExceeded(conv.key, conv.prompt_turns)
        if self.ctx.time_left() <= 0:
            # Nobody waits for this prompt any more: no model call (it would be charged for
            # nothing). The prompt stays unfinished; asked again, it continues from here.
            raise DeadlineExceeded(
                f"conversation {conv.key!r}: the prompt's deadline passed after "
                f"{conv.prompt_turns} model calls; asked again with the same id it continues",
                self.ctx.name,
            )
        force: str = conv.force
        last = conv.prompt_turns == cls.max_turns - 1 and cls.on_max_turns == "answer"
        near = cls.answer_within > 0 and self.ctx.time_left() <= cls.answer_within
        if (last or near) and not force:
            force = cls.output_tool if cls.output is not None else "none"
            nudge = "Stop using tools now and give your final answer with what you have."
            await self._nudge(nudge, force)
        message, _ = await self._call(force, on_event)
        stop = message.stop_reason or "end_turn"
        content = [_block(block) for block in message.content]
        turn = conv.turn + 1
        model_turn = ModelTurn(
            turn=turn,
            agent=cls.__qualname__,
            model=message.model,
            content=content,
            stop_reason=stop,
            usage=_tokens(message.usage),
            seconds=self._took,
            tokens_before=self._before,
            tokens_after=self._after,
            request_id=getattr(message, "_request_id", None) or "",
            stop_details=_details(message),
        )
        entries: list[Any] = [model_turn]
        if stop == "tool_use":
            for block in content:
                if block.get("type") != "tool_use":
                    continue
                spec = self._specs.get(block["name"])
                if spec is not None and not spec.read_only:
                    key = f"{conv.key}:{turn}:{block['id']}"
                    entries.append(Intent(turn, block["id"], spec.name, key))
                    self._fresh.add(block["id"])
        if stop in ("tool_use", "pause_turn"):
            await self._log.append(*entries)  # durable before any tool runs or call goes on
        else:
            # The last turn of the prompt: committed with its outcome (every path of
            # _outcome appends one), one commit before the reply instead of two.
            self._log.defer(*entries)
        for entry in entries:
            conv.apply(entry)
        return model_turn

    async def _outcome(self, turn: ModelTurn) -> AgentReply | None:
        """What a committed model turn means: the reply, a typed error, or None to go on."""
        cls = type(self)
        conv = self._conv
        content, stop = turn.content, turn.stop_reason
        text = "".join(b["text"] for b in content if b.get("type") == "text")
        if cls.output is not None:
            return await self._output(content, stop, text)
        if stop == "tool_use" or stop == "pause_turn":
            return None
        if stop == "refusal":
            await self._finish("refusal", text)
            details = turn.stop_details if isinstance(turn.stop_details, dict) else {}
            raise Refused(
                conv.key,
                text,
                str(details.get("category") or ""),
                str(details.get("explanation") or ""),
            )
        if stop in ("max_tokens", "model_context_window_exceeded"):
            await self._finish(stop, text)
            raise OutputTruncated(conv.key, stop, text, cls.max_tokens)
        done = await self._finish("answer", text, stop_reason=stop)
        return self._answer(done, stop_reason=stop)

    async def _output(
        self, content: list[dict[str, Any]], stop: str, text: str
    ) -> AgentReply | None:
        """Structured output: the answer when the output tool was called with a valid
        input; None to go on (tools to run, or a correction sent)."""
        cls = type(self)
        assert cls.output is not None
        conv = self._conv
        use = next(
            (b for b in content if b.get("type") == "tool_use" and b["name"] == cls.output_tool),
            None,
        )
        if use is None:
            if stop in ("tool_use", "pause_turn"):
                return None
            if stop == "refusal":
                await self._finish("refusal", text)
                raise Refused(conv.key, text, "", "")
            if stop in ("max_tokens", "model_context_window_exceeded"):
                await self._finish(stop, text)
                raise OutputTruncated(conv.key, stop, text, cls.max_tokens)
            error = f"the answer was given as text, not through the {cls.output_tool} tool"
            if conv.corrections >= cls.output_retries:
                await self._finish("output_invalid", text)
                raise OutputInvalid(
                    conv.key, cls.output.__qualname__, conv.corrections + 1, text, error
                )
            await self._nudge(
                f"Give your final answer by calling the {cls.output_tool} tool, with an input "
                "that matches its schema; do not answer in text.",
                cls.output_tool,
                correction=True,
            )
            return None
        raw = msgspec.json.encode(use.get("input", {}))
        try:
            value = msgspec.convert(use.get("input", {}), cls.output)
        except msgspec.ValidationError as exc:
            error = str(exc)
            done = ToolDone(
                conv.turn,
                use["id"],
                cls.output_tool,
                f"Invalid final answer: {error}. Call {cls.output_tool} again with the "
                "error fixed; keep the fields that were right.",
                True,
                "invalid_output",
            )
            others = await self._refuse_others(use["id"], "not run: the final answer came first")
            await self._log.append(done, *others)
            for entry in (done, *others):
                conv.apply(entry)
            if conv.corrections > cls.output_retries:
                await self._finish("output_invalid", raw.decode())
                raise OutputInvalid(
                    conv.key, cls.output.__qualname__, conv.corrections, raw.decode(), error
                ) from exc
            return None
        done = ToolDone(conv.turn, use["id"], cls.output_tool, "accepted", False, "ran")
        others = await self._refuse_others(use["id"], "not run: the final answer came first")
        await self._log.append(done, *others)
        for entry in (done, *others):
            conv.apply(entry)
        finished = await self._finish("answer", text, output=raw)
        return self._answer(finished, value=value, stop_reason=stop)

    async def _refuse_others(self, keep: str, why: str) -> list[ToolDone]:
        conv = self._conv
        return [
            ToolDone(conv.turn, u["id"], u["name"], why, True, "interrupted")
            for u in conv.open_uses
            if u["id"] != keep and u["id"] not in conv.results
        ]

    async def _nudge(self, text: str, force: str, *, correction: bool = False) -> None:
        conv = self._conv
        assert conv.active is not None
        entry = UserTurn(
            conv.active.prompt,
            [{"type": "text", "text": text}],
            time.time(),
            force=force,
            correction=correction,
        )
        await self._log.append(entry)
        conv.apply(entry)

    async def _finish(
        self, outcome: str, text: str = "", *, output: bytes = b"", stop_reason: str = ""
    ) -> Finished:
        conv = self._conv
        assert conv.active is not None
        done = Finished(
            conv.active.prompt, outcome, text, output, conv.prompt_turns, conv.prompt_usage
        )
        await self._log.append(done)
        conv.apply(done)
        return done

    def _answer(
        self,
        done: Finished,
        *,
        value: Any = None,
        replayed: bool = False,
        stop_reason: str = "end_turn",
    ) -> AgentReply:
        cls = type(self)
        if value is None and done.output and cls.output is not None:
            value = msgspec.json.decode(done.output, type=cls.output)
        return AgentReply(
            text=done.text,
            conversation=self._conv.key,
            prompt=done.prompt,
            turns=done.turns,
            usage=done.usage,
            output=value,
            stop_reason=stop_reason,
            replayed=replayed,
        )

    # -- model calls --

    async def _call(self, force: str, on_event: OnEvent | None) -> tuple[ApiMessage, Any]:
        cls = type(self)
        conv = self._conv
        messages = conv.request_messages()
        self._before = conv.pending_tokens()
        sent = await self.prepare(messages)
        self._after = (
            self._before if sent is messages else sum(estimate_tokens(m["content"]) for m in sent)
        )
        params: dict[str, Any] = {"max_tokens": cls.max_tokens, "messages": sent, **cls.params}
        if cls.system:
            if cls.cache_system:
                params["system"] = [
                    {"type": "text", "text": cls.system, "cache_control": {"type": "ephemeral"}}
                ]
            else:
                params["system"] = cls.system
        if self._tool_params:
            params["tools"] = self._tool_params
            if force == "none":
                params["tool_choice"] = {"type": "none"}
            elif force:
                params["tool_choice"] = {"type": "tool", "name": force}
            elif cls.output is not None and len(self._tool_params) == 1:
                params["tool_choice"] = {"type": "tool", "name": cls.output_tool}
        models = (cls.model, *cls.fallbacks)
        started = time.perf_counter()
        error: BaseException | None = None
        # imported here: ``import understudy.agents`` stays free of the SDK's import cost
        from understudy.llm import conversation as attributed

        # the call records (``understudy costs DB --by conversation``) name this conversation
        with attributed(conv.key):
            for model in models:
                assert model is not None
                try:
                    if on_event is not None and hasattr(model, "stream"):
                        message = await _streamed(model, params, on_event)
                    else:
                        message = await model.create(**params)
                    self._took = time.perf_counter() - started
                    return message, model
                except (BudgetExceeded, CircuitOpen) as exc:
                    error = exc  # the next (cheaper, or healthy) model may do
        assert error is not None
        raise error

    # -- tool calls --

    async def _close_open(self, *, abandon: bool, on_event: OnEvent | None = None) -> None:
        """Give every open tool call of the last turn a committed result: run it (or, when
        ``abandon``, answer it as not run), replay or reconcile it. Raises
        :class:`EffectInDoubt` (after committing the others) for one that stays in doubt."""
        conv = self._conv
        todo = [use for use in conv.open_uses if use["id"] not in conv.results]
        if not todo:
            return
        done: dict[str, ToolDone] = {}
        doubts: list[EffectInDoubt] = []

        async def one(use: dict[str, Any]) -> None:
            try:
                result = await self._one(use, abandon, on_event)
            except EffectInDoubt as exc:
                doubts.append(exc)
                return
            done[use["id"]] = result

        if len(todo) == 1:
            await one(todo[0])
        else:
            async with anyio.create_task_group() as group:
                for use in todo:
                    group.start_soon(one, use)
        entries = [done[use["id"]] for use in todo if use["id"] in done]
        if entries:
            if all(use["id"] not in conv.intents for use in todo) and not doubts:
                # Only read-only results: a crash may lose them, and a resumed conversation
                # runs those tools again; they are committed with the next model turn.
                self._log.defer(*entries)
            else:
                await self._log.append(*entries)
            for entry in entries:
                conv.apply(entry)
        if doubts:
            raise doubts[0]

    async def _one(self, use: dict[str, Any], abandon: bool, on_event: OnEvent | None) -> ToolDone:
        conv = self._conv
        turn = conv.open_turn
        name = use["name"]
        use_id = use["id"]
        spec = self._specs.get(name)

        def result(content: str, is_error: bool, how: str, **extra: Any) -> ToolDone:
            return ToolDone(turn, use_id, name, content, is_error, how, **extra)

        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            return result(
                f"There is no tool named {name!r}. The tools are: {known}. Use one of them "
                "or answer without tools.",
                True,
                "refused",
            )
        try:
            request: Any = msgspec.convert(use.get("input", {}), spec.request)
        except msgspec.ValidationError as exc:
            return result(
                f"Invalid input for tool {name!r}: {exc}. Call it again with the arguments "
                f"fixed (schema: {msgspec.json.encode(spec.input_schema).decode()}).",
                True,
                "refused",
            )
        intent = conv.intents.get(use_id)
        in_doubt = intent is not None and use_id not in self._fresh
        if abandon and not in_doubt:
            return result(
                "Not run: the conversation moved on to a new prompt.", True, "interrupted"
            )
        if in_doubt:
            assert intent is not None
            return await self._reconcile(spec, request, intent, abandon, result)
        if on_event is not None:
            await on_event(ToolStarted(turn, name, use_id))
        started = time.perf_counter()
        if name in self._agent_tools:
            done = await self._handoff(self._agent_tools[name], request, use_id, result)
        else:
            key = intent.key if intent is not None else f"{conv.key}:{turn}:{use_id}"
            self._fresh.discard(use_id)
            done = await self._run_tool(spec, request, key, intent is not None, result)
        done = msgspec.structs.replace(done, seconds=time.perf_counter() - started)
        if on_event is not None:
            await on_event(ToolFinished(turn, name, use_id, done.is_error))
        return done

    async def _run_tool(
        self,
        spec: ToolSpec,
        request: Any,
        key: str,
        effect: bool,
        result: Callable[..., ToolDone],
    ) -> ToolDone:
        rt = _runtime(self.ctx)
        name = spec.name
        try:
            ref = rt.ref(spec.actor)
        except UnknownActor:
            return result(
                f"Tool {name!r} is unavailable right now (its actor is not running). Try "
                "again later or answer without it.",
                True,
                "refused",
            )
        try:
            value = await ref.ask(ToolCall(request, key), timeout=type(self).tool_timeout)
        except CircuitOpen as exc:
            return result(
                f"Tool {name!r} is unavailable: it has been failing and its circuit breaker "
                f"is open (next try in {exc.retry_after:.0f} s). It was not run; use another "
                "way or answer without it.",
                True,
                "refused",
            )
        except (TimedOut, ActorStopped, Killed) as exc:
            if effect:
                return await self._reconcile_after(spec, request, key, exc, result)
            return result(
                f"Tool {name!r} did not answer in time ({type(exc).__name__}); it may work "
                "if called again, or answer without it.",
                True,
                "failed",
            )
        except AgentError:
            raise
        except Exception as exc:
            return result(
                f"Tool {name!r} failed: {type(exc).__name__}: {exc}",
                True,
                "failed",
            )
        return result(_content(value), False, "ran")

    async def _reconcile_after(
        self,
        spec: ToolSpec,
        request: Any,
        key: str,
        error: BaseException,
        result: Callable[..., ToolDone],
    ) -> ToolDone:
        intent = self._conv.intents[key.rsplit(":", 1)[-1]]
        return await self._reconcile(
            spec, request, intent, False, result, reason=f"the call ended with {error!r}"
        )

    async def _reconcile(
        self,
        spec: ToolSpec,
        request: Any,
        intent: Intent,
        abandon: bool,
        result: Callable[..., ToolDone],
        reason: str = "its intent was committed but no result (the conversation was killed)",
    ) -> ToolDone:
        conv = self._conv
        if not spec.reconcile:
            raise EffectInDoubt(conv.key, spec.name, intent.key, reason + "; it has no reconcile")
        rt = _runtime(self.ctx)
        try:
            value = await rt.ref(spec.actor).ask(
                Reconcile(request, intent.key), timeout=type(self).tool_timeout
            )
        except Exception as exc:
            raise EffectInDoubt(
                conv.key, spec.name, intent.key, f"{reason}; reconcile failed: {exc!r}"
            ) from exc
        if value is NOT_RUN:
            if abandon:
                return result("Not run: the conversation moved on.", True, "interrupted")
            return await self._run_tool(spec, request, intent.key, True, result)
        return result(_content(value), False, "reconciled")

    async def _handoff(
        self, tool: AgentTool, request: Delegate, use_id: str, result: Callable[..., ToolDone]
    ) -> ToolDone:
        rt = _runtime(self.ctx)
        child = f"{self.ctx.name}/{use_id}"
        try:
            ref: Ref = (
                rt.ref(child) if child in rt else await self.ctx.spawn(tool.agent, name=child)
            )
            if tool.tokens is None and tool.usd is None and tool.seconds is None:
                answer = await ref.ask(Prompt(request.task, id=use_id))
            else:
                async with rt.budget(
                    name=child, tokens=tool.tokens, usd=tool.usd, seconds=tool.seconds
                ):
                    answer = await ref.ask(Prompt(request.task, id=use_id))
        except Exception as exc:  # the callee's failure is an answer for the caller's model
            return result(
                f"Agent {tool.name!r} could not finish: {exc}",
                True,
                "failed",
                agent=tool.agent.__qualname__,
                conversation=child,
            )
        text = answer.text
        if answer.output is not None:
            text = msgspec.json.encode(answer.output).decode()
        return result(
            text,
            False,
            "ran",
            agent=tool.agent.__qualname__,
            conversation=child,
            usage=answer.usage,
        )

    # -- deployment --

    def _deployment(self) -> Started:
        cls = type(self)
        model = cls.model
        name = str(getattr(model, "name", "") or getattr(model, "model", "") or "")
        return Started(
            agent=cls.__qualname__,
            model=name,
            system=hashlib.sha256(cls.system.encode()).hexdigest()[:16],
            tools={spec.name: spec.input_schema for spec in self._specs.values()},
            at=time.time(),
        )

    def _check_deployment(self) -> None:
        recorded = self._conv.deployment
        if recorded is None:
            return
        now = {spec.name: spec.input_schema for spec in self._specs.values()}
        changes = []
        for name, schema in recorded.tools.items():
            if name not in now:
                changes.append(f"tool {name!r} is gone")
            elif now[name] != schema:
                changes.append(f"tool {name!r} has a new input schema")
        if changes:
            raise DeploymentChanged(self._conv.key, changes)


# ------------------------------------------------------------------------------ helpers


def _plain_schema(tp: type) -> dict[str, Any]:
    schema = msgspec.json.schema(tp)
    ref = schema.get("$ref")
    if isinstance(ref, str):
        defs = schema.get("$defs", {})
        top = dict(defs[ref.rsplit("/", 1)[-1]])
        others = {k: v for k, v in defs.items() if k != tp.__name__}
        if others:
            top["$defs"] = others
        top.pop("title", None)
        return top
    return schema


def _block(block: Any) -> dict[str, Any]:
    """A response content block as a request content block (a plain dict)."""
    kind = block.type
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    if kind == "thinking":
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data}
    dumped: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return dumped


def _tokens(usage: Any) -> Tokens:
    return Tokens(
        input=usage.input_tokens or 0,
        output=usage.output_tokens or 0,
        cache_read=getattr(usage, "cache_read_input_tokens", 0) or 0,
        cache_write=getattr(usage, "cache_creation_input_tokens", 0) or 0,
    )


def _details(message: Any) -> Any:
    details = getattr(message, "stop_details", None)
    if details is None:
        return None
    if isinstance(details, dict):
        return details
    dumped = details.model_dump(mode="json", exclude_none=True)
    return dumped


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


@contextlib.asynccontextmanager
async def stream(ref: Ref, prompt: Prompt) -> AsyncIterator[AsyncIterator[AgentEvent]]:
    """Ask ``ref`` (a conversation) ``prompt`` and iterate over its events as they happen:
    :class:`TextDelta`, :class:`ToolStarted`, :class:`ToolFinished`, then :class:`Done`
    with the reply::

        async with us.agents.stream(conv, us.Prompt("...")) as events:
            async for event in events:
                ...

    The ask's error (a typed outcome) is raised when the block ends. Leaving the
    block early cancels the ask (the conversation keeps what it committed)."""
    send, receive = anyio.create_memory_object_stream[AgentEvent](math.inf)
    failure: list[BaseException] = []

    async def run() -> None:
        async with send:
            try:
                reply = await ref.ask(msgspec.structs.replace(prompt, on_event=send.send))
            except Exception as exc:
                failure.append(exc)
                return
            await send.send(Done(reply))

    async def events() -> AsyncIterator[AgentEvent]:
        async with receive:
            async for event in receive:
                yield event

    iterator = events()
    body: BaseException | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            yield iterator
        except BaseException as exc:  # raised outside the group, not in an ExceptionGroup
            body = exc
        finally:
            group.cancel_scope.cancel()  # left early: the ask is cancelled
            await iterator.aclose()  # type: ignore[attr-defined]
    if body is not None:
        raise body
    if failure:
        raise failure[0]


async def _streamed(model: Any, params: dict[str, Any], on_event: OnEvent) -> ApiMessage:
    """A model call through ``model.stream(on_text=..., **params)`` (``understudy.llm.Model``'s
    shape: ``on_text`` is a plain callable, called for each text delta), the deltas sent on
    to the async ``on_event`` in order, as they come."""
    send, receive = anyio.create_memory_object_stream[str](math.inf)

    async def pump() -> None:
        async with receive:
            async for text in receive:
                await on_event(TextDelta(text))

    async with anyio.create_task_group() as group:
        group.start_soon(pump)
        with send:
            message: ApiMessage = await model.stream(on_text=send.send_nowait, **params)
    return message


_ = Message

__all__ = [
    "Agent",
    "AgentEvent",
    "AgentTool",
    "AgentReply",
    "Delegate",
    "Done",
    "ModelClient",
    "OnEvent",
    "Prompt",
    "Resolve",
    "TextDelta",
    "ToolFinished",
    "ToolStarted",
    "stream",
]
