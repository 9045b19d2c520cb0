"""The fake Messages API's view of one HTTP request the Claude Code CLI sent.

:class:`Request` reads what a scripted model needs from a ``/v1/messages`` body: the session,
the offered tools, the first and last user texts, tool results, and fanout's own messages to the
model (:meth:`Request.fanout_texts`, :meth:`Request.hook_feedback`, :meth:`Request.newest_text`)
wherever and however the CLI framed them. Standard library only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = [
    "FANOUT_MARK",
    "SESSION_HEADER",
    "STRUCTURED_OUTPUT_TOOL",
    "Request",
    "fanout_text",
]

SESSION_HEADER: Final = "x-claude-code-session-id"
STRUCTURED_OUTPUT_TOOL: Final = "StructuredOutput"
_WORKDIR_RE: Final = re.compile(r"Primary working directory:\s*(\S[^\n]*)")


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _block_text(content: Any) -> str:
    return "\n".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


# Every message fanout's hooks hand the model begins with this; the CLI decides where the
# message goes and how it is framed (a system text, a user text inside its own
# ``<system-reminder>`` with a preamble, a tool result), and that changes between releases.
FANOUT_MARK: Final = "[fanout]"
_REMINDER_OPEN: Final = "<system-reminder>"
_REMINDER_CLOSE: Final = "</system-reminder>"


def fanout_text(text: str) -> str | None:
    """fanout's own words in one text the CLI sent, its framing taken off; None if none.

    The words run from the first ``[fanout]`` to the end of the text, or to the CLI's closing
    ``</system-reminder>`` when the CLI opened one before them (fanout's own text never forms
    that tag: worker text that tries to is defused). Whatever the CLI appends to the same text
    after them stays (2.1.332 puts the date after UserPromptSubmit's context): search the
    result, do not compare it whole.
    """
    start = text.find(FANOUT_MARK)
    if start < 0:
        return None
    words = text[start:]
    if _REMINDER_OPEN in text[:start]:
        end = words.rfind(_REMINDER_CLOSE)
        if end >= 0:
            words = words[:end]
    return words.strip()


def _texts(message: Mapping[str, Any]) -> Iterator[str]:
    """Every text in a message: its text blocks and the text of its tool results."""
    for block in _blocks(message.get("content")):
        if block.get("type") == "text":
            yield str(block.get("text", ""))
        elif block.get("type") == "tool_result":
            yield _block_text(block.get("content"))


@dataclass(frozen=True)
class Request:
    """One HTTP request the fake received. Header names are lower-cased."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    received_at: float = field(default_factory=time.monotonic)

    @property
    def route(self) -> str:
        """The path without its query string."""
        return urlsplit(self.path).path

    @property
    def is_messages(self) -> bool:
        return self.method == "POST" and self.route == "/v1/messages"

    @property
    def session_id(self) -> str | None:
        return self.headers.get(SESSION_HEADER)

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        if not isinstance(tools, list):
            return []
        return [str(t["name"]) for t in tools if isinstance(t, dict) and "name" in t]

    @property
    def offered_tool_names(self) -> list[str]:
        """Tools the model may call: ``tool_names`` less ``defer_loading`` placeholders (the
        CLI always adds a ``DeferredToolPlaceholder`` that must never be called)."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        if not isinstance(tools, list):
            return []
        return [
            str(t["name"])
            for t in tools
            if isinstance(t, dict) and "name" in t and not t.get("defer_loading")
        ]

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema of a ``--json-schema`` session: the ``input_schema`` of the
        ``StructuredOutput`` tool the CLI offers; None when it offers none."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        for tool in tools if isinstance(tools, list) else []:
            if isinstance(tool, dict) and tool.get("name") == STRUCTURED_OUTPUT_TOOL:
                schema = tool.get("input_schema")
                return schema if isinstance(schema, dict) else None
        return None

    @property
    def is_side_call(self) -> bool:
        """A model call outside the agent loop (title, summary, ...): it offers no tools."""
        return not self.tool_names

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs = self.body.get("messages") if isinstance(self.body, dict) else None
        return [m for m in msgs if isinstance(m, dict)] if isinstance(msgs, list) else []

    def _user_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("role") == "user"]

    def first_user_text(self, *, include_reminders: bool = False) -> str:
        """Text of the first user message (``<system-reminder>`` blocks left out by default)."""
        users = self._user_messages()
        return _user_text(users[0], include_reminders) if users else ""

    def last_user_text(self, *, include_reminders: bool = False) -> str:
        users = self._user_messages()
        return _user_text(users[-1], include_reminders) if users else ""

    def tool_results(self) -> list[tuple[str, str]]:
        """``(tool_use_id, text)`` of every ``tool_result`` block in the last user message."""
        users = self._user_messages()
        if not users:
            return []
        out: list[tuple[str, str]] = []
        for block in _blocks(users[-1].get("content")):
            if block.get("type") == "tool_result":
                out.append((str(block.get("tool_use_id", "")), _block_text(block.get("content"))))
        return out

    def all_tool_results(self) -> list[tuple[str, str]]:
        """``(tool_use_id, text)`` of every ``tool_result`` in the whole conversation."""
        out: list[tuple[str, str]] = []
        for msg in self._user_messages():
            for block in _blocks(msg.get("content")):
                if block.get("type") == "tool_result":
                    out.append(
                        (str(block.get("tool_use_id", "")), _block_text(block.get("content")))
                    )
        return out

    def _since_last_answer(self) -> list[dict[str, Any]]:
        messages = self.messages
        answers = [n for n, m in enumerate(messages) if m.get("role") == "assistant"]
        return messages[answers[-1] + 1 :] if answers else messages

    def newest_text(self) -> str:
        """Every text the model is being told now (after its last answer), however framed."""
        return "\n".join(text for message in self._since_last_answer() for text in _texts(message))

    def fanout_texts(self, *, newest: bool = False) -> list[str]:
        """fanout's messages to the model in this request, wherever the CLI put them and however
        it framed them (:func:`fanout_text`); each distinct message once, oldest first. With
        ``newest``, only those after the model's last answer (what it is being told now)."""
        messages = self._since_last_answer() if newest else self.messages
        found = (
            fanout_text(text)
            for message in messages
            if message.get("role") in ("user", "system")
            for text in _texts(message)
        )
        return list(dict.fromkeys(text for text in found if text))

    def hook_feedback(self) -> list[str]:
        """What fanout said to the model when it last tried to end its turn (a Stop block, or a
        wake): fanout's words after the model's last answer, when that answer called no tool and
        was not the first turn. Empty for a prompt or a tool call's result."""
        messages = self.messages
        answers = [m for m in messages if m.get("role") == "assistant"]
        if not answers or any(
            block.get("type") == "tool_use" for block in _blocks(answers[-1].get("content"))
        ):
            return []
        return self.fanout_texts(newest=True)

    @property
    def structured_output_accepted(self) -> bool:
        """Whether this request follows the CLI's acceptance of a ``StructuredOutput`` call (a
        ``tool_result`` without ``is_error`` answering it). Claude Code ends a ``--json-schema``
        session there from 2.1.191 on (docs/compat.md); 2.1.183 and older ask the model for one
        more turn, which a model ends with a short text."""
        called = {
            str(block.get("id"))
            for message in self.messages
            if message.get("role") == "assistant"
            for block in _blocks(message.get("content"))
            if block.get("type") == "tool_use" and block.get("name") == STRUCTURED_OUTPUT_TOOL
        }
        users = self._user_messages()
        return bool(users) and any(
            block.get("type") == "tool_result"
            and str(block.get("tool_use_id")) in called
            and not block.get("is_error")
            for block in _blocks(users[-1].get("content"))
        )

    def system_text(self) -> str:
        """The system prompt, plus any ``role: "system"`` messages (the CLI sends its
        environment block, with ``Primary working directory``, as one of those)."""
        system = self.body.get("system") if isinstance(self.body, dict) else None
        parts = [_block_text(system)] if system is not None else []
        parts += [_block_text(m.get("content")) for m in self.messages if m.get("role") == "system"]
        return "\n".join(parts)

    def working_directory(self) -> Path | None:
        """The session's cwd, from the ``Primary working directory:`` line of the system prompt."""
        match = _WORKDIR_RE.search(self.system_text())
        return Path(match.group(1).strip()) if match else None


def _user_text(message: Mapping[str, Any], include_reminders: bool) -> str:
    texts = [
        str(b.get("text", "")) for b in _blocks(message.get("content")) if b.get("type") == "text"
    ]
    if not include_reminders:
        texts = [t for t in texts if not t.lstrip().startswith("<system-reminder>")]
    return "\n".join(texts)
