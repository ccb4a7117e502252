"""Agents and tools as actors: the tool-use loop, conversations that resume after a crash,
tool effects that never run twice, structured output with corrective retries, and agents
that call agents.

- :class:`Tool`: an actor whose handlers' request types are tools (name, description and
  input schema from the frozen msgspec Struct).
- :class:`Agent`: an actor per conversation (named for it) running the tool-use loop on a
  model (``understudy.llm.Model`` or anything with ``create(**params)``), persisted by
  delta in the runtime's store and resumed from its last committed turn.
- :class:`AgentTool`: an agent used as a tool of another (a handoff with a nested budget).

See ``README.md`` (Agents) and ``docs/decisions.md`` (Agents, wave 2) for the guarantees.
"""

from understudy.agents._agent import (
    Agent,
    AgentEvent,
    AgentReply,
    AgentTool,
    Delegate,
    Done,
    ModelClient,
    OnEvent,
    Prompt,
    Resolve,
    TextDelta,
    ToolFinished,
    ToolStarted,
    stream,
)
from understudy.agents._conversation import keep_last
from understudy.agents._log import Tokens
from understudy.agents._tools import NOT_RUN, NotRun, Tool, ToolSpec, tool_name, tool_specs

__all__ = [
    "NOT_RUN",
    "Agent",
    "AgentEvent",
    "AgentTool",
    "AgentReply",
    "Delegate",
    "Done",
    "ModelClient",
    "NotRun",
    "OnEvent",
    "Prompt",
    "Resolve",
    "TextDelta",
    "Tokens",
    "Tool",
    "ToolFinished",
    "ToolSpec",
    "ToolStarted",
    "keep_last",
    "stream",
    "tool_name",
    "tool_specs",
]
