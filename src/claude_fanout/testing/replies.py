"""What a scripted model answers the fake Messages API: text and tool_use blocks, usage, errors.

A ``Handler`` maps each recorded :class:`~claude_fanout.testing.requests.Request` to a
:class:`Reply` (one assistant message) or an :class:`ErrorReply` (an API error such as a rate
limit); :class:`Exchange` pairs the two as the fake recorded them. Standard library only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claude_fanout.testing.requests import Request

__all__ = [
    "ErrorReply",
    "Exchange",
    "Handler",
    "Reply",
    "Text",
    "ToolUse",
    "Usage",
]


def _new_tool_id() -> str:
    return "toolu_fake_" + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class Text:
    """A text block of a scripted assistant message."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    """A ``tool_use`` block; streamed to the CLI as ``input_json_delta`` fragments."""

    name: str
    input: Mapping[str, Any]
    id: str = field(default_factory=_new_tool_id)


@dataclass(frozen=True)
class Usage:
    """Token usage reported for one reply (what the CLI adds up into its result)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """One scripted assistant message.

    ``stop_reason`` defaults to ``"tool_use"`` when the content has a :class:`ToolUse`, else
    ``"end_turn"``. ``delay_s`` is slept before the answer is sent (simulated model latency).
    """

    content: Sequence[Text | ToolUse]
    stop_reason: str | None = None
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=10, output_tokens=5))
    delay_s: float = 0.0

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.content) else "end_turn"


@dataclass(frozen=True)
class ErrorReply:
    """An API error: ``status`` with ``{"type": "error", "error": {type, message}}``."""

    status: int
    error_type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1) -> ErrorReply:
        return cls(
            429, "rate_limit_error", "Rate limited (fake)", {"retry-after": str(retry_after_s)}
        )

    @classmethod
    def overloaded(cls) -> ErrorReply:
        return cls(529, "overloaded_error", "Overloaded (fake)")


Handler = Callable[[Request], Reply | ErrorReply]


@dataclass(frozen=True)
class Exchange:
    """A ``/v1/messages`` request and what the fake answered."""

    request: Request
    reply: Reply | ErrorReply
