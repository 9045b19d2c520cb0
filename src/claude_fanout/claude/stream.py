"""Reading a headless Claude Code session's output: the stream-json transcript of a worker
(rendered for ``fanout logs`` and the run log, folded into ``result.md`` and ``meta.json``) and the
one JSON result of the planner, and judging what the session amounted to (:class:`Outcome`: done,
stopped at its budget, rate-limited, or failed and why).

Used by the ``claude`` task kind, the supervisor, the planner and ``fanout doctor --probe``.
Never raises for anything the session wrote: damaged and oversized lines are skipped. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from claude_fanout.store import layout
from claude_fanout.store.files import write_atomic
from claude_fanout.text import first_line

__all__ = [
    "OVER_BUDGET_SUBTYPES",
    "RATE_LIMIT_STATUSES",
    "STDERR_TAIL_LINES",
    "Outcome",
    "collect",
    "json_result",
    "read_stream",
    "render",
    "render_lines",
    "render_stream",
    "stderr_tail",
    "usage_of",
]

# Result subtypes of a session the CLI stopped at its --max-turns / --max-budget-usd.
OVER_BUDGET_SUBTYPES: Final = frozenset({"error_max_turns", "error_max_budget_usd"})
# API statuses that mean "too much at once, try later" (the CLI gave up retrying them).
RATE_LIMIT_STATUSES: Final = frozenset({429, 529})

_LINE_MAX: Final = 200
# How many of its last stderr lines a failed session's result quotes.
STDERR_TAIL_LINES: Final = 40
_STDERR_TAIL_BYTES: Final = 16 * 1024
# A stream line longer than this is skipped, not parsed (a runaway tool result).
_STREAM_LINE_MAX: Final = 8 * 1024 * 1024


class Outcome(NamedTuple):
    """What one finished worker session amounted to."""

    ok: bool
    over_budget: bool
    rate_limited: bool
    # One line: why it failed (None when ok).
    reason: str | None
    # USAGE_KEYS of store/state.py, for the ``task_usage`` record (empty without a result).
    usage: dict[str, float]
    meta: dict[str, Any]


class _Stream:
    """The parts of a stream-json transcript that matter afterwards."""

    def __init__(self) -> None:
        self.init: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self.assistant_messages = 0
        self.last_text = ""
        self.bad_lines = 0

    def feed(self, message: Mapping[str, Any]) -> None:
        kind = message.get("type")
        if kind == "system" and message.get("subtype") == "init":
            self.init = dict(message)
        elif kind == "assistant":
            self.assistant_messages += 1
            for block in _content(message):
                text = block.get("text")
                if block.get("type") == "text" and isinstance(text, str) and text.strip():
                    self.last_text = text
        elif kind == "result":
            self.result = dict(message)


def read_stream(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a stream-json file; damaged or oversized lines are skipped."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        for line in handle:
            if len(line) > _STREAM_LINE_MAX or not line.strip():
                continue
            try:
                value = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(value, dict):
                yield value


def _content(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    inner = message.get("message")
    content = inner.get("content") if isinstance(inner, dict) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict)]


def _short_input(tool_input: object) -> str:
    if isinstance(tool_input, dict):
        for key in ("file_path", "path", "command", "pattern", "url", "query", "description"):
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                return first_line(value, 120)
    return first_line(json.dumps(tool_input, default=str), 120)


INIT_LINE: Final = "[init] "
"""How :func:`render` starts the line of a session's start (its id, model, tools, cwd)."""


def render(message: Mapping[str, Any]) -> Iterator[str]:
    """Human-readable lines for one stream-json message (what ``fanout logs`` shows)."""
    kind = message.get("type")
    if kind == "system" and message.get("subtype") == "init":
        tools = ",".join(str(t) for t in message.get("tools") or [])
        yield (
            f"{INIT_LINE}session={message.get('session_id')} model={message.get('model')} "
            f"tools={tools} cwd={message.get('cwd')}"
        )
    elif kind == "assistant":
        for block in _content(message):
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                yield f"[assistant] {first_line(str(block['text']), _LINE_MAX)}"
            elif block.get("type") == "tool_use":
                yield f"[tool] {block.get('name')} {_short_input(block.get('input'))}"
    elif kind == "user":
        for block in _content(message):
            if block.get("type") != "tool_result":
                continue
            content = block.get("content")
            if isinstance(content, list):
                content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            text = content if isinstance(content, str) else ""
            status = "error" if block.get("is_error") else "ok"
            yield f"[tool-result] {status} {len(text)} chars: {first_line(text, 120)}"
    elif kind == "result":
        cost = message.get("total_cost_usd")
        yield (
            f"[result] {message.get('subtype')} error={message.get('is_error')} "
            f"turns={message.get('num_turns')} cost={cost if cost is not None else '?'} "
            f"duration_ms={message.get('duration_ms')}"
        )


def render_lines(data: bytes) -> list[str]:
    """Readable lines for a chunk of stream-json (whole lines); damaged lines are skipped."""
    out: list[str] = []
    for line in data.splitlines():
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(message, dict):
            out.extend(render(message))
    return out


def render_stream(path: Path) -> Iterator[str]:
    for message in read_stream(path):
        yield from render(message)


def stderr_tail(log_path: Path) -> list[str]:
    """The last lines of a worker's log (its stderr), without fanout's own markers."""
    try:
        with log_path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _STDERR_TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > _STDERR_TAIL_BYTES and lines:
        lines = lines[1:]  # the first may be cut
    lines = [ln for ln in lines if ln.strip() and not ln.startswith(layout.ATTEMPT_HEADER)]
    return lines[-STDERR_TAIL_LINES:]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value


def usage_of(result: Mapping[str, Any] | None) -> dict[str, float]:
    """The ``task_usage`` counters of a result message (empty without one)."""
    if result is None:
        return {}
    raw = result.get("usage")
    usage = raw if isinstance(raw, dict) else {}
    counts: dict[str, float] = {
        key: int(_number(usage.get(key)))
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        )
    }
    counts["turns"] = int(_number(result.get("num_turns")))
    counts["cost_usd"] = float(_number(result.get("total_cost_usd")))
    return counts


_EXIT_RE: Final = re.compile(r"^-?\d+$")


def collect(
    *,
    stream_path: Path,
    out_dir: Path,
    argv: Sequence[str],
    cwd: Path,
    exit_code: int | None,
    signum: int | None,
    stderr: Iterable[str] = (),
    started_at: float | None = None,
    wall_s: float | None = None,
    error: str | None = None,
) -> Outcome:
    """Read a finished session's stream; write ``result.md`` and ``meta.json`` into ``out_dir``.

    ``argv`` is what was run (what the worker was allowed is read back from it), ``exit_code`` /
    ``signum`` how the CLI ended, ``stderr`` its last lines, ``error`` a failure to start it.
    Never raises for anything the session did.
    """
    stream = _Stream()
    for message in read_stream(stream_path):
        stream.feed(message)
    result = stream.result
    tail = list(stderr)
    if error is None and result is None:
        if signum is not None:
            error = f"claude was killed by signal {signum} before it reported a result"
        else:
            error = f"claude exited with code {exit_code} before it reported a result"
    ok = error is None and result is not None and not result.get("is_error") and exit_code == 0
    subtype = result.get("subtype") if result else None
    api_status = result.get("api_error_status") if result else None
    over_budget = subtype in OVER_BUDGET_SUBTYPES
    rate_limited = not ok and api_status in RATE_LIMIT_STATUSES

    granted = _flag(argv, "--allowedTools")
    meta: dict[str, Any] = {
        "ok": ok,
        "is_error": not ok,
        "exit": 0 if ok else 1,
        "session_id": (result or {}).get("session_id") or stream.init.get("session_id"),
        "subtype": subtype,
        "num_turns": (result or {}).get("num_turns", 0),
        "duration_ms": (result or {}).get("duration_ms"),
        "duration_api_ms": (result or {}).get("duration_api_ms"),
        "total_cost_usd": (result or {}).get("total_cost_usd"),
        "usage": (result or {}).get("usage"),
        "model_usage": (result or {}).get("modelUsage"),
        "stop_reason": (result or {}).get("stop_reason"),
        "terminal_reason": (result or {}).get("terminal_reason"),
        "permission_denials": (result or {}).get("permission_denials") or [],
        "errors": (result or {}).get("errors") or [],
        "api_error_status": api_status,
        "over_budget": over_budget,
        "rate_limited": rate_limited,
        "error": error,
        "cli_exit_code": exit_code,
        "cli_signal": signum,
        "stderr_tail": tail,
        # What the worker was allowed: offered tools, pre-approved specs, mode, budgets.
        "tools": [t for t in (_flag(argv, "--tools") or "").split(",") if t],
        "allowed_tools": [t for t in (granted or "").split(",") if t],
        "permission_mode": _flag(argv, "--permission-mode"),
        "max_turns": _int_flag(argv, "--max-turns"),
        "max_budget_usd": _float_flag(argv, "--max-budget-usd"),
        "setting_sources": _sources_flag(argv),
        "model": stream.init.get("model") or _flag(argv, "--model"),
        "cwd": str(cwd),
        "cli_path": argv[0] if argv else None,
        "cli_version": stream.init.get("claude_code_version"),
        "started_at": started_at,
        "wall_ms": None if wall_s is None else int(wall_s * 1000),
    }

    if ok and result is not None:
        text = str(result.get("result") or "")
        reason = None
    else:
        text = _failure_text(error, result, stream, tail)
        reason = _reason(error, result, tail)
    if not text.endswith("\n"):
        text += "\n"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / layout.RESULT, text.encode("utf-8", "replace"))
    write_atomic(out_dir / "meta.json", (json.dumps(meta, indent=2, default=str) + "\n").encode())
    return Outcome(ok, over_budget, rate_limited, reason, usage_of(result), meta)


def _flag(argv: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _int_flag(argv: Sequence[str], name: str) -> int | None:
    value = _flag(argv, name)
    return int(value) if value is not None and _EXIT_RE.match(value) else None


def _float_flag(argv: Sequence[str], name: str) -> float | None:
    value = _flag(argv, name)
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _sources_flag(argv: Sequence[str]) -> list[str] | None:
    value = _flag(argv, "--setting-sources")
    return None if value is None else [s for s in value.split(",") if s]


def _reason(error: str | None, result: Mapping[str, Any] | None, tail: Sequence[str]) -> str:
    if error is not None:
        line = first_line(error, _LINE_MAX)
        if tail:
            line += f" | {first_line(tail[-1], 150)}"
        return line
    assert result is not None
    errors = result.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    detail = first or result.get("result") or result.get("terminal_reason") or ""
    return first_line(f"{result.get('subtype')}: {detail}", _LINE_MAX)


def _failure_text(
    error: str | None, result: Mapping[str, Any] | None, stream: _Stream, tail: Sequence[str]
) -> str:
    lines = ["# Worker failed", ""]
    if result is not None:
        terminal = result.get("terminal_reason")
        lines.append(
            f"Claude Code ended with `{result.get('subtype')}`"
            + (f" ({terminal})" if terminal else "")
            + f" after {result.get('num_turns')} turn(s)."
        )
        for err in result.get("errors") or []:
            lines.append(f"- {err}")
        if result.get("result"):
            lines += ["", str(result["result"])]
    if stream.last_text and (result is None or stream.last_text != result.get("result")):
        lines += ["", "Last assistant text:", "", stream.last_text.strip()]
    if error:
        lines += ["", "```", error.strip(), "```"]
    if tail:
        lines += ["", "stderr (last lines):", "", "```", *tail, "```"]
    return "\n".join(lines)


def json_result(stdout: bytes) -> dict[str, Any] | None:
    """The result object of a session run with ``--output-format json`` (it prints exactly
    one); None when its output holds none."""
    try:
        value = json.loads(stdout.decode("utf-8", "replace"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
