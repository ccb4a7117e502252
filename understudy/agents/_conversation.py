"""A conversation in memory, rebuilt from its log entries (and kept up to date by them).

:meth:`Conversation.apply` is the only way the conversation changes, live and on replay, so
a resumed conversation is the one that was running, entry for entry. Messages are the
Messages API's own shape (dicts), ready to send; the user message carrying tool results is
made from the :class:`ToolDone` entries when the next user or model entry comes.
"""

from __future__ import annotations

from typing import Any

from understudy.agents._log import (
    Entry,
    Finished,
    Intent,
    ModelTurn,
    Started,
    Tokens,
    ToolDone,
    UserTurn,
)


def estimate_tokens(content: Any) -> int:
    """A cheap local estimate of a message content's tokens (about 4 characters a token)."""
    if isinstance(content, str):
        return len(content) // 4 + 1
    total = 0
    for block in content:
        kind = block.get("type")
        if kind == "text":
            total += len(block["text"]) // 4 + 1
        elif kind == "tool_result":
            total += len(str(block.get("content", ""))) // 4 + 4
        elif kind == "tool_use":
            total += len(str(block.get("input", ""))) // 4 + 8
        else:
            total += len(str(block)) // 4 + 1
    return total


class Conversation:
    """The state of one conversation: messages, open tool calls, effect journal, answers."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.deployment: Started | None = None
        self.messages: list[dict[str, Any]] = []
        self.tokens = 0
        """Estimated tokens of :attr:`messages`."""
        self.open_uses: list[dict[str, Any]] = []
        """The tool_use blocks of the last model turn that need a result."""
        self.open_turn = 0
        self.results: dict[str, ToolDone] = {}
        self.intents: dict[str, Intent] = {}
        self.turn = 0
        """Model calls made in this conversation."""
        self.prompts = 0
        self.active: UserTurn | None = None
        """The prompt being worked on (not finished), if any."""
        self.prompt_turns = 0
        self.prompt_usage = Tokens()
        self.prompt_errors: list[tuple[str, str]] = []
        self.corrections = 0
        self.force: str = ""
        """How the next call must end: "" (free), "none" (no tools), or a tool's name."""
        self.finished: dict[str, Finished] = {}
        self.usage = Tokens()
        self.paused = False
        self.last: Entry | None = None
        """The last entry applied."""

    # -- replay --

    def apply(self, entry: Entry) -> None:
        """Apply one committed entry."""
        self.last = entry
        if isinstance(entry, ModelTurn):
            self._model_turn(entry)
        elif isinstance(entry, ToolDone):
            self.results[entry.tool_use_id] = entry
            if entry.is_error and entry.how in ("refused", "failed"):
                self.prompt_errors.append((entry.tool, entry.content))
            elif entry.how == "invalid_output":
                self.corrections += 1
                self.force = entry.tool
            self.prompt_usage = self.prompt_usage + entry.usage
        elif isinstance(entry, Intent):
            self.intents[entry.tool_use_id] = entry
        elif isinstance(entry, UserTurn):
            self._user_turn(entry)
        elif isinstance(entry, Finished):
            self.finished[entry.prompt] = entry
            if self.active is not None and self.active.prompt == entry.prompt:
                self.active = None
            self.force = ""
        elif isinstance(entry, Started):
            self.deployment = entry

    def _close_uses(self) -> list[dict[str, Any]]:
        blocks = self._result_blocks()
        self.open_uses = []
        return blocks

    def _result_blocks(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks answering the open tool calls, in their order."""
        blocks: list[dict[str, Any]] = []
        for use in self.open_uses:
            done = self.results.get(use["id"])
            if done is None:  # the loop answers every call before it goes on
                raise AssertionError(f"tool_use {use['id']} has no result")
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "content": done.content,
            }
            if done.is_error:
                block["is_error"] = True
            blocks.append(block)
        return blocks

    def _append(self, role: str, content: list[dict[str, Any]]) -> None:
        self.tokens += estimate_tokens(content)
        messages = self.messages
        if messages and messages[-1]["role"] == role:
            # Same role twice (a paused turn continued, a prompt after an unanswered one):
            # merged, so the history the API sees always alternates.
            messages[-1] = {"role": role, "content": [*messages[-1]["content"], *content]}
        else:
            messages.append({"role": role, "content": content})

    def _user_turn(self, entry: UserTurn) -> None:
        content = [*self._close_uses(), *entry.content] if self.open_uses else entry.content
        self._append("user", content)
        self.paused = False
        active = self.active
        if active is not None and active.prompt == entry.prompt:
            # A nudge within the prompt (a correction, a forced final answer).
            self.force = entry.force
            if entry.correction:
                self.corrections += 1
            return
        self.prompts += 1
        self.active = entry
        self.prompt_turns = 0
        self.prompt_usage = Tokens()
        self.prompt_errors = []
        self.corrections = 0
        self.force = ""

    def _model_turn(self, entry: ModelTurn) -> None:
        if self.open_uses:
            self._append("user", self._close_uses())
        self._append("assistant", entry.content)
        self.turn = entry.turn
        self.prompt_turns += 1
        self.prompt_usage = self.prompt_usage + entry.usage
        self.usage = self.usage + entry.usage
        self.paused = entry.stop_reason == "pause_turn"
        self.force = ""
        uses = [block for block in entry.content if block.get("type") == "tool_use"]
        self.open_uses = uses
        self.open_turn = entry.turn
        if uses:
            self.results = {}
            self.intents = {}

    # -- the next request --

    def request_messages(self) -> list[dict[str, Any]]:
        """The messages to send next: the history, plus the results of open tool calls."""
        if not self.open_uses:
            return self.messages
        return [*self.messages, {"role": "user", "content": self._result_blocks()}]

    def pending_tokens(self) -> int:
        """Estimated tokens of :meth:`request_messages`."""
        if not self.open_uses:
            return self.tokens
        return self.tokens + sum(
            len(self.results[u["id"]].content) // 4 + 4 for u in self.open_uses
        )


def _is_prompt(message: dict[str, Any]) -> bool:
    """A user message that starts a prompt (not only tool results)."""
    if message["role"] != "user":
        return False
    return any(block.get("type") != "tool_result" for block in message["content"])


def keep_last(
    messages: list[dict[str, Any]], prompts: int, summary: str | None = None
) -> list[dict[str, Any]]:
    """The history with only its last ``prompts`` prompts (each with the turns that followed)
    kept verbatim, the earlier part replaced by a summary: ``summary`` if given, else each
    earlier prompt's text and the answer that ended it. The summary is prepended to the
    first kept user message, so roles still alternate and every kept ``tool_use`` keeps its
    ``tool_result``. Returns ``messages`` itself when there is nothing to cut."""
    if prompts < 1:
        raise ValueError(f"keep_last: prompts must be >= 1, not {prompts!r}")
    starts = [i for i, message in enumerate(messages) if _is_prompt(message)]
    if len(starts) <= prompts:
        return messages
    cut = starts[-prompts]
    if summary is None:
        said: list[str] = []
        for message in messages[:cut]:
            texts = [b["text"] for b in message["content"] if b.get("type") == "text"]
            if texts:
                who = "User" if message["role"] == "user" else "Assistant"
                said.append(f"{who}: {' '.join(texts)}")
        summary = "Summary of the earlier conversation:\n" + "\n".join(said)
    first = messages[cut]
    head = {"role": "user", "content": [{"type": "text", "text": summary}, *first["content"]]}
    return [head, *messages[cut + 1 :]]


__all__ = ["Conversation", "estimate_tokens", "keep_last"]
