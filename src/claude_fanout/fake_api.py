"""A scripted fake of the Anthropic Messages API, served on loopback.

Tests (and an offline demo) run the real Claude Code CLI against it: point the CLI at
:attr:`FakeMessagesAPI.base_url` with :func:`cli_env` and script the model's replies with a
``handler`` that maps each recorded :class:`Request` to a :class:`Reply` or :class:`ErrorReply`.

Standard library only. What the CLI (2.1.x) sends, observed by recording every request:

- ``POST /v1/messages?beta=true`` with ``"stream": true`` for every model call: the main loop
  (its body carries ``tools``) and side calls (no ``tools``: session titles, summaries, ...).
  Answered as server-sent events, the way the real API streams a message.
- Nothing else while ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` (see :func:`cli_env`).
  Without it the CLI also sends ``HEAD /api/hello`` (a connectivity check) to the base URL and
  makes DNS queries for its telemetry hosts. Both are answered here anyway: ``/api/hello`` and
  ``/`` with ``200 {}`` (GET or HEAD), ``POST /v1/messages/count_tokens`` with a rough count.
- Anything else: ``404`` with an API-shaped JSON error. The server never hangs on a request.

Structured output (``claude -p --json-schema SCHEMA``): the CLI offers the model a
``StructuredOutput`` tool whose ``input_schema`` is SCHEMA (:attr:`Request.output_schema`) and
validates the tool's input itself; a scripted model answers with :func:`structured_output`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from claude_fanout.text import first_line

__all__ = [
    "ErrorReply",
    "Exchange",
    "FakeMessagesAPI",
    "Handler",
    "ReadThenSummarize",
    "Reply",
    "Request",
    "Text",
    "ToolUse",
    "Usage",
    "claude_cli",
    "cli_env",
    "fanout_text",
    "find_paths",
    "read_then_summarize",
    "scripted",
    "side_call_reply",
    "structured_output",
    "summarize_read_output",
]

SESSION_HEADER: Final = "x-claude-code-session-id"
STRUCTURED_OUTPUT_TOOL: Final = "StructuredOutput"
DEFAULT_MODEL: Final = "claude-fake-1"
_PROBE_ROUTES: Final = frozenset({"", "/", "/api/hello"})
_WORKDIR_RE: Final = re.compile(r"Primary working directory:\s*(\S[^\n]*)")
_READ_LINE_RE: Final = re.compile(r"^\s*(\d+)[\t\u2192](.*)$")
# A path-looking token: absolute, ./ or ../ relative, or a relative name with a directory or an
# extension (``src/app.py``, ``notes.txt``). Backticks and quotes around it are ignored.
_PATH_RE: Final = re.compile(
    r"(?<![\w/.~-])((?:~?/|\.{1,2}/)?(?:[\w.@+-]+/)*[\w@+-][\w.@+-]*\.[A-Za-z0-9]{1,8})(?![\w/])"
)


# --------------------------------------------------------------------------- reply model


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


# --------------------------------------------------------------------------- requests


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


Handler = Callable[[Request], Reply | ErrorReply]


@dataclass(frozen=True)
class Exchange:
    """A ``/v1/messages`` request and what the fake answered."""

    request: Request
    reply: Reply | ErrorReply


# --------------------------------------------------------------------------- wire format


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunks(text: str, size: int) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


def _message_id() -> str:
    return "msg_fake_" + uuid.uuid4().hex[:20]


def sse_body(reply: Reply, model: str) -> bytes:
    """Encode ``reply`` as the Messages API's event stream."""
    usage = reply.usage.as_dict()
    start_usage = {**usage, "output_tokens": 0}
    parts = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": _message_id(),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(reply.content):
        if isinstance(block, Text):
            parts.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for piece in _chunks(block.text, 64) if block.text else [""]:
                parts.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        else:
            parts.append(
                _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block.id,
                            "name": block.name,
                            "input": {},
                        },
                    },
                )
            )
            for piece in _chunks(json.dumps(dict(block.input)), 16):
                parts.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        parts.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    parts.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.effective_stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
    )
    parts.append(_sse("message_stop", {"type": "message_stop"}))
    return b"".join(parts)


def message_json(reply: Reply, model: str) -> dict[str, Any]:
    """``reply`` as a non-streaming Messages API response."""
    content: list[dict[str, Any]] = []
    for block in reply.content:
        if isinstance(block, Text):
            content.append({"type": "text", "text": block.text})
        else:
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": dict(block.input)}
            )
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.effective_stop_reason,
        "stop_sequence": None,
        "usage": reply.usage.as_dict(),
    }


def error_json(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: FakeMessagesAPI) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.api = api


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeMessagesAPI/1"
    timeout = 30  # an idle keep-alive connection is dropped after this

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are recorded, not logged."""

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return {"_unparsed": raw.decode("utf-8", "replace")}

    def _record(self) -> Request:
        request = Request(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        self.server.api._record(request)
        return request

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:16])
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def do_POST(self) -> None:
        request = self._record()
        route = request.route
        if route == "/v1/messages":
            self._answer_messages(request)
        elif route == "/v1/messages/count_tokens":
            text = json.dumps(request.body) if request.body is not None else ""
            self._send_json(200, {"input_tokens": max(1, len(text) // 4)})
        else:
            self._send_json(404, error_json("not_found_error", f"fake API: no route {route}"))

    def do_GET(self) -> None:
        request = self._record()
        if request.route in _PROBE_ROUTES:
            self._send_json(200, {})
        else:
            self._send_json(
                404, error_json("not_found_error", f"fake API: no route {request.route}")
            )

    def do_HEAD(self) -> None:
        request = self._record()
        self._send_json(200 if request.route in _PROBE_ROUTES else 404, {})

    def do_PUT(self) -> None:
        request = self._record()
        self._send_json(404, error_json("not_found_error", f"fake API: no route {request.route}"))

    do_DELETE = do_PUT
    do_PATCH = do_PUT

    def _answer_messages(self, request: Request) -> None:
        api = self.server.api
        try:
            reply = api.handler(request)
        except Exception as exc:  # noqa: BLE001 - a broken script must not hang the CLI
            api._record_error(f"{type(exc).__name__}: {exc}")
            self._send_json(500, error_json("api_error", f"fake handler failed: {exc}"))
            return
        api._record_exchange(Exchange(request, reply))
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        if isinstance(reply, ErrorReply):
            self._send_json(
                reply.status, error_json(reply.error_type, reply.message), headers=reply.headers
            )
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model") or DEFAULT_MODEL)
        if body.get("stream"):
            self._send(200, sse_body(reply, model), content_type="text/event-stream")
        else:
            self._send_json(200, message_json(reply, model))


class FakeMessagesAPI:
    """Serve ``handler`` as the Messages API on ``127.0.0.1`` (a free port) in a daemon thread.

    Use as a context manager. Every request is recorded in :attr:`requests` and every
    ``/v1/messages`` answer in :attr:`exchanges` (both are copies, safe to read while the
    server runs). Exceptions raised by ``handler`` become ``500`` answers and are listed in
    :attr:`handler_errors`.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._exchanges: list[Exchange] = []
        self._errors: list[str] = []
        self._changed = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> FakeMessagesAPI:
        if self._server is not None:
            raise RuntimeError("FakeMessagesAPI already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-messages-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeMessagesAPI is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- recording
    def _record(self, request: Request) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def _record_exchange(self, exchange: Exchange) -> None:
        with self._changed:
            self._exchanges.append(exchange)
            self._changed.notify_all()

    def _record_error(self, error: str) -> None:
        with self._lock:
            self._errors.append(error)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges)

    @property
    def handler_errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def message_requests(self, *, side_calls: bool | None = None) -> list[Request]:
        """Recorded ``/v1/messages`` requests; ``side_calls`` filters by kind when given."""
        return [
            r
            for r in self.requests
            if r.is_messages and (side_calls is None or r.is_side_call == side_calls)
        ]

    def reported_usage(self, *, side_calls: bool | None = None) -> Usage:
        """Sum of the usage the fake reported in successful replies."""
        total = Usage()
        for ex in self.exchanges:
            if not isinstance(ex.reply, Reply):
                continue
            if side_calls is not None and ex.request.is_side_call != side_calls:
                continue
            total = total + ex.reply.usage
        return total

    def wait_for(self, predicate: Callable[[list[Request]], bool], timeout: float) -> bool:
        """Block until ``predicate(requests)`` holds (re-checked on every new request)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


# --------------------------------------------------------------------------- scripted brains


def side_call_reply(request: Request) -> Reply:
    """A short answer for a call outside the agent loop (title, summary, classifier...)."""
    del request
    return Reply([Text("Fake session")], usage=Usage(input_tokens=3, output_tokens=2))


def summarize_read_output(text: str) -> tuple[int, str]:
    """``(line_count, first_non_empty_line)`` of a Read tool result (``cat -n`` style)."""
    lines: list[str] = []
    for raw in text.splitlines():
        match = _READ_LINE_RE.match(raw)
        if match:
            lines.append(match.group(2))
    if lines and not lines[-1]:
        lines.pop()  # Read numbers the empty tail after a final newline: count like splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    return len(lines), first


def find_paths(text: str) -> list[str]:
    """Path-looking tokens in ``text``, in order: absolute, ``./``/``../`` relative, or a name
    with an extension (``src/app.py``, ``NOTES.md``); backticks and quotes around them ignored."""
    return [m.group(1) for m in _PATH_RE.finditer(text)]


@dataclass
class ReadThenSummarize:
    """Scripted model: Read the file the prompt names, then summarize it.

    Turn 1 answers a ``Read`` tool_use on the first path found in the first user message (made
    absolute against the system prompt's ``Primary working directory``). Once the Read result
    comes back it answers ``SUMMARY <path>: <n> lines; first line: <line>``. Side calls get a
    short text. Each main-loop reply reports ``usage`` and waits ``delay_s``.
    """

    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=100, output_tokens=20))
    side_usage: Usage = field(default_factory=lambda: Usage(input_tokens=3, output_tokens=2))
    tool_name: str = "Read"

    def __call__(self, request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return Reply([Text("Fake session")], usage=self.side_usage, delay_s=self.delay_s)
        candidates = [self.resolve(request, p) for p in find_paths(request.first_user_text())]
        if not candidates:
            return self._reply([Text("No file path in the prompt; nothing to review.")])
        # The first one that exists (the fake runs on the CLI's machine), else the first one.
        path = next((c for c in candidates if c.is_file()), candidates[0])
        results = request.tool_results()
        if not results:
            return self._reply(
                [Text(f"I'll read {path}."), ToolUse(self.tool_name, {"file_path": str(path)})]
            )
        _tool_id, text = results[-1]
        count, first = summarize_read_output(text)
        if count == 0:
            return self._reply([Text(f"Could not read {path}: {text.strip()[:200]}")])
        return self._reply([Text(f"SUMMARY {path}: {count} lines; first line: {first}")])

    @staticmethod
    def resolve(request: Request, rel: str) -> Path:
        path = Path(rel).expanduser()
        if not path.is_absolute():
            cwd = request.working_directory()
            if cwd is not None:
                path = cwd / path
        return path

    def _reply(self, content: Sequence[Text | ToolUse]) -> Reply:
        return Reply(list(content), usage=self.usage, delay_s=self.delay_s)


_EDIT_RE = re.compile(r"In (?P<path>\S+?), replace `(?P<old>[^`]+)` with `(?P<new>[^`]*)`")


@dataclass
class EditThenReport:
    """Scripted writer: for a prompt ``In <path>, replace `<old>` with `<new>`.``, Read the file
    (Claude Code's Edit refuses a file not read first), Edit it, then answer
    ``EDITED <path>: <the Edit's tool result>``. Each main-loop reply waits ``delay_s``."""

    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=400, output_tokens=60))

    def __call__(self, request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return side_call_reply(request)
        found = _EDIT_RE.search(request.first_user_text())
        if found is None:
            return self._reply([Text("No edit asked for.")])
        path = str(ReadThenSummarize.resolve(request, found["path"]))
        done = request.all_tool_results()
        if not done:
            return self._reply(
                [Text(f"I'll read {found['path']}."), ToolUse("Read", {"file_path": path})]
            )
        if len(done) == 1:
            edit = {"file_path": path, "old_string": found["old"], "new_string": found["new"]}
            return self._reply([ToolUse("Edit", edit)])
        return self._reply([Text(f"EDITED {found['path']}: {first_line(done[-1][1], 120)}")])

    def _reply(self, content: Sequence[Text | ToolUse]) -> Reply:
        return Reply(list(content), usage=self.usage, delay_s=self.delay_s)


def read_then_summarize(*, delay_s: float = 0.0, usage: Usage | None = None) -> ReadThenSummarize:
    """A :class:`ReadThenSummarize` brain (see there)."""
    if usage is None:
        return ReadThenSummarize(delay_s=delay_s)
    return ReadThenSummarize(delay_s=delay_s, usage=usage)


def structured_output(
    value: Mapping[str, Any], *, usage: Usage | None = None, delay_s: float = 0.0
) -> Reply:
    """The model's answer to a ``--json-schema`` session: one ``StructuredOutput`` call with
    ``value``. The CLI checks it against the schema; a valid one ends the session (its result
    carries ``structured_output``), an invalid one comes back as an error tool_result."""
    return Reply(
        [ToolUse(STRUCTURED_OUTPUT_TOOL, value)],
        usage=usage if usage is not None else Usage(input_tokens=10, output_tokens=5),
        delay_s=delay_s,
    )


def scripted(*replies: Reply | ErrorReply, then: Reply | None = None) -> Handler:
    """Serve ``replies`` in order to each session's main-loop calls, then ``then`` (or a short
    final text) forever. Side calls get :func:`side_call_reply`."""
    final = then if then is not None else Reply([Text("Done.")])
    counters: dict[str | None, Iterator[int]] = {}
    lock = threading.Lock()

    def handle(request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return side_call_reply(request)
        with lock:
            n = next(counters.setdefault(request.session_id, itertools.count()))
        return replies[n] if n < len(replies) else final

    return handle


# --------------------------------------------------------------------------- running the CLI


def claude_cli() -> Path:
    """The Claude Code executable the tests drive: ``$FANOUT_CLAUDE_BIN`` when set (the one switch
    that selects the CLI, see ``scripts/compat``), else the one bundled in the claude-agent-sdk
    wheel; the same lookup the executor and the planner use."""
    from claude_fanout.claude.cli import CLAUDE_BIN_ENV, find_cli

    found = find_cli(os.environ, search_path=False)
    if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise FileNotFoundError(
            f"no Claude Code CLI at {found} (set {CLAUDE_BIN_ENV} or install claude-agent-sdk)"
        )
    return Path(found)


# Inherited variables that would steer the CLI somewhere else or change how it behaves.
_STRIP_PREFIXES: Final = (
    "ANTHROPIC_",
    "CLAUDE_CODE_",
    "CLAUDE_AGENT_SDK_",
    "AWS_",
    "VERTEX_",
    "CLOUD_ML_",
    "GOOGLE_",
    "OTEL_",
)
_STRIP_NAMES: Final = frozenset(
    {
        "CLAUDECODE",
        "CLAUDE_CONFIG_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "NODE_OPTIONS",
        "NODE_EXTRA_CA_CERTS",
        "MCP_TIMEOUT",
    }
)


def cli_env(base_url: str, home: Path, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running the real CLI against the fake at ``base_url``, offline.

    Starts from ``base`` (default: ``os.environ``), drops what a parent Claude Code session,
    a real account or a proxy would have set, and adds what keeps the CLI on loopback and
    quiet. ``home`` becomes ``HOME`` (transcripts land in ``home/.claude/projects``).
    """
    src = os.environ if base is None else base
    env = {
        k: v for k, v in src.items() if k not in _STRIP_NAMES and not k.startswith(_STRIP_PREFIXES)
    }
    env.update(
        {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key-for-tests",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # An interactive session would otherwise fetch the official plugin marketplace.
            "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env
