"""A running worker's spend and what it is doing, read from its stream-json as it grows.

What the CLI (2.1.332, recorded in ``tests/fixtures/streams/``) writes while a session runs:

- one ``assistant`` line per content block, each repeating its API message's id and ``usage``
  as the message *began* (``output_tokens`` not yet counted: 0 against the fake API, a handful
  against the real one);
- with ``--include-partial-messages`` (what workers run with), the API's own events as
  ``stream_event`` lines too: ``message_start`` (the input and cache tokens of the call) and
  ``message_delta`` (its final ``output_tokens``, once the message is complete).

So each API call is counted once, by message id, with the largest figure seen for each counter;
turns are the session's own API calls (a subagent's calls cost money but are not its turns, as
in the CLI's ``num_turns``); the cost is an estimate from :mod:`claude_fanout.claude.pricing`.
``doing`` is the tool in use (``Bash: pytest -q``, ``Read calc.py``) or the worker's last line of
text. Each line is looked at once: the cost of following a stream does not grow with its length.
Stdlib only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from claude_fanout.claude.pricing import cost_usd
from claude_fanout.defaults import DOING_MAX_CHARS
from claude_fanout.text import printable

__all__ = ["DOING_MAX_CHARS", "StreamProgress", "doing_of", "wanted"]

_TOKEN_KEYS: Final = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
# A partial-message line that carries usage starts like this (the CLI writes compact JSON); the
# many others (text and tool-input deltas) are skipped without being parsed.
_STREAM_EVENT: Final = b'{"type":"stream_event"'
_WITH_USAGE: Final = (b'"message_start"', b'"message_delta"')


def wanted(line: bytes) -> bool:
    """Whether a stream line can matter to progress or to the log (cheap, before parsing)."""
    if not line.startswith(_STREAM_EVENT):
        return True
    head = line[:200]
    return any(marker in head for marker in _WITH_USAGE)


def _clean(text: str) -> str:
    return printable(text, DOING_MAX_CHARS)


def doing_of(block: Mapping[str, Any], cwd: str | None = None) -> str | None:
    """One content block as what the worker is doing: ``Read calc.py``, ``Bash: pytest -q``, or
    the last line of its text; None for anything else (thinking, an empty text)."""
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        lines = [ln for ln in text.splitlines() if ln.strip()] if isinstance(text, str) else []
        return _clean(lines[-1]) if lines else None
    if kind != "tool_use":
        return None
    name = _clean(str(block.get("name") or "tool"))
    tool_input = block.get("input")
    if not isinstance(tool_input, dict):
        return name
    command = tool_input.get("command")
    if isinstance(command, str) and command.strip():
        return _clean(f"{name}: {command}")
    for key in ("file_path", "notebook_path", "path", "pattern", "url", "query", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            if cwd and value.startswith(cwd.rstrip("/") + "/"):
                value = value[len(cwd.rstrip("/")) + 1 :]
            return _clean(f"{name} {value}")
    return name


class StreamProgress:
    """Usage so far (``task_progress``'s counters) and what the worker does now, fed one
    stream-json line at a time."""

    def __init__(self, *, cwd: str | None = None, model: str | None = None) -> None:
        self._cwd = cwd
        self._model = model
        # Per API message id: its model and the largest count seen for each token counter.
        self._calls: dict[str, tuple[str | None, dict[str, int]]] = {}
        # The message each stream (the session, or a subagent: its parent tool use) is receiving.
        self._current: dict[str | None, str] = {}
        self._tokens = dict.fromkeys(_TOKEN_KEYS, 0)
        self._cost = 0.0
        self.turns = 0
        self.doing: str | None = None

    def usage(self) -> dict[str, float]:
        """USAGE_KEYS so far (``cost_usd`` an estimate)."""
        return {**self._tokens, "turns": self.turns, "cost_usd": round(self._cost, 6)}

    def feed_line(self, line: bytes) -> dict[str, Any] | None:
        """Feed one raw line; returns the parsed message (None for a line skipped or damaged)."""
        if not line.strip() or not wanted(line):
            return None
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(message, dict):
            return None
        self.feed(message)
        return message

    def feed(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        parent = message.get("parent_tool_use_id")
        parent = parent if isinstance(parent, str) else None
        if kind == "system" and message.get("subtype") == "init":
            model = message.get("model")
            self._model = model if isinstance(model, str) else self._model
        elif kind == "assistant":
            inner = message.get("message")
            if not isinstance(inner, dict):
                return
            self._count(inner.get("id"), inner.get("model"), inner.get("usage"), parent)
            content = inner.get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and parent is None:
                    self.doing = doing_of(block, self._cwd) or self.doing
        elif kind == "stream_event":
            event = message.get("event")
            if not isinstance(event, dict):
                return
            if event.get("type") == "message_start":
                started = event.get("message")
                if isinstance(started, dict) and isinstance(started.get("id"), str):
                    self._current[parent] = started["id"]
                    self._count(started["id"], started.get("model"), started.get("usage"), parent)
            elif event.get("type") == "message_delta" and parent in self._current:
                self._count(self._current[parent], None, event.get("usage"), parent)

    def _count(self, message_id: object, model: object, usage: object, parent: str | None) -> None:
        if not isinstance(message_id, str) or not isinstance(usage, dict):
            return
        call = self._calls.get(message_id)
        if call is None:
            call = (model if isinstance(model, str) else self._model, {})
            self._calls[message_id] = call
            if parent is None:
                self.turns += 1
        call_model, counted = call
        grown: dict[str, int] = {}
        for key in _TOKEN_KEYS:
            value = usage.get(key)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            if value > counted.get(key, 0):
                grown[key] = value - counted.get(key, 0)
                counted[key] = value
        if grown:
            for key, more in grown.items():
                self._tokens[key] += more
            self._cost += cost_usd(call_model, grown)
