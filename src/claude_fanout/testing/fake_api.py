"""A scripted fake of the Anthropic Messages API, served on loopback.

Tests (and an offline demo) run the real Claude Code CLI against it: point the CLI at
:attr:`FakeMessagesAPI.base_url` with :func:`cli_env` and script the model's replies with a
``handler`` that maps each recorded
:class:`~claude_fanout.testing.requests.Request` to a
:class:`~claude_fanout.testing.replies.Reply` or :class:`~claude_fanout.testing.replies.ErrorReply`
(scripted models ready to use: :mod:`claude_fanout.testing.models`).

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
``StructuredOutput`` tool whose ``input_schema`` is SCHEMA (``Request.output_schema``) and
validates the tool's input itself; a scripted model answers with
:func:`claude_fanout.testing.models.structured_output`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from claude_fanout.testing.replies import (
    ErrorReply,
    Exchange,
    Handler,
    Reply,
    Text,
    Usage,
)
from claude_fanout.testing.requests import Request

__all__ = [
    "FakeMessagesAPI",
    "claude_cli",
    "cli_env",
    "error_json",
    "message_json",
    "sse_body",
]

DEFAULT_MODEL: Final = "claude-fake-1"
_PROBE_ROUTES: Final = frozenset({"", "/", "/api/hello"})


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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a worker stopped or killed) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


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
    @property
    def server_thread(self) -> threading.Thread | None:
        """The thread serving requests while the fake is started; None once closed."""
        return self._thread

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
