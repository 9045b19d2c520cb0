"""The ``claude`` task kind: one headless Claude Code CLI per task, started by the supervisor.

No Python process stands between the supervisor and the CLI: the supervisor builds the command
line (:func:`command`), starts ``claude -p`` as the leader of its own process group with the prompt
on stdin and ``--output-format stream-json`` going to ``workers/<id>/stream.jsonl``, and when it
exits, :func:`collect` reads that stream and leaves two files in the task's ``out/``:
``result.md`` (the session's final text, or why it failed) and ``meta.json`` (ids, turns, timings,
cost, usage, denials, what the worker was allowed). A wrapper process would cost every worker an
interpreter, the SDK's imports (1.5-2.5 s of start-up under load) and its memory, and buy nothing
the supervisor does not already do (process group, timeout, reaping, logs).

Least privilege, as verified against the real CLI (2.1.x) with a fake Messages API:

- ``--tools`` is the set of built-in tools *offered to the model*: the request bodies carry only
  those (no Agent, Skill, ToolSearch...). A tool spec may carry a permission pattern
  (``"Bash(pytest *)"``); its bare name (``Bash``) is what is offered.
- ``--allowedTools`` auto-approves: the task's specs, patterns included.
- ``--permission-mode dontAsk`` (the default) denies anything not pre-approved instead of
  prompting, so a call outside a pattern is refused at once and listed in the result's
  ``permission_denials``. A call to a tool that was not offered fails as ``No such tool
  available``.
- ``--strict-mcp-config`` with no servers: no MCP tools sneak in from ``.mcp.json`` or settings.
- ``--max-turns`` and ``--max-budget-usd``: the CLI stops the session itself
  (``error_max_turns``, ``error_max_budget_usd``; the budget is checked after each model
  response, so the last response may overshoot it).

Setting sources: ``project`` and ``local`` only. The project's ``.claude/settings.json`` and
``.claude/settings.local.json`` are read, so the project's hooks (fanout's own among them) run for
worker sessions too, and ``CLAUDE.md`` is loaded. The user's ``~/.claude/settings.json`` is *not*
read: personal hooks, permission rules, model or env overrides do not leak into workers.
Credentials are not a setting source and are still found. Override with
``FANOUT_CLAUDE_SETTING_SOURCES`` (comma list, ``all`` for the CLI's default of every source, empty
for none).

Nesting: a worker is usually a descendant of a Claude Code session (Conductor -> hook ->
supervisor -> worker) and would inherit the markers Claude Code gives its hooks (``CLAUDECODE=1``,
``CLAUDE_CODE_CHILD_SESSION=1``, ``CLAUDE_CODE_SESSION_ID`` ...). The CLI reads them to mark a
session as the parent's child (lineage, prompt history, persistence); a worker is a session of its
own, so they are removed from its environment (:data:`PARENT_SESSION_VARS`). fanout's own depth
marker (``FANOUT_DEPTH``) is what tells a worker from a Conductor; the CLI passes it on to the
hooks it runs.

The CLI is ``$FANOUT_CLAUDE_BIN`` when set, else the one bundled in the ``claude-agent-sdk``
wheel (found without importing the SDK), else ``claude`` on PATH: :func:`find_cli`, the one lookup
the executor, the planner, the demo and the tests share. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from claude_fanout.store.files import write_atomic
from claude_fanout.text import first_line

__all__ = [
    "CLAUDE_BIN_ENV",
    "OVER_BUDGET_SUBTYPES",
    "PARENT_SESSION_VARS",
    "SETTING_SOURCES_ENV",
    "Outcome",
    "cli_path",
    "collect",
    "command",
    "find_cli",
    "render",
    "run_claude_task",
    "tool_base_names",
    "worker_env",
]

CLAUDE_BIN_ENV: Final = "FANOUT_CLAUDE_BIN"
SETTING_SOURCES_ENV: Final = "FANOUT_CLAUDE_SETTING_SOURCES"
DEFAULT_SETTING_SOURCES: Final = ("project", "local")
DEFAULT_PERMISSION_MODE: Final = "dontAsk"
# Result subtypes of a session the CLI stopped at its --max-turns / --max-budget-usd.
OVER_BUDGET_SUBTYPES: Final = frozenset({"error_max_turns", "error_max_budget_usd"})
# API statuses that mean "too much at once, try later" (the CLI gave up retrying them).
RATE_LIMIT_STATUSES: Final = frozenset({429, 529})

# Markers a Claude Code session puts into its children's environment (hooks, Bash). Removed
# from the worker's environment so its CLI starts as a session of its own.
PARENT_SESSION_VARS: Final = (
    "CLAUDECODE",
    "CLAUDE_CODE_CHILD_SESSION",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_SESSION_ATTENDED",
    "CLAUDE_CODE_LAUNCHED_BY_SESSION_IDS",
    "CLAUDE_CODE_CHILD_NOTES_DIR",
    "CLAUDE_CODE_SSE_PORT",
    "CLAUDE_PID",
    # A hook's own channel back to its Claude Code (2.1.x): never the worker's.
    "CLAUDE_CODE_MESSAGING_SOCKET",
    "CLAUDE_CODE_MESSAGING_TOKEN",
    "CLAUDE_ENV_FILE",
    "CLAUDE_EFFORT",
    "CLAUDE_CODE_ENTRYPOINT",
)

_LINE_MAX: Final = 200
_STDERR_TAIL: Final = 40
_STDERR_TAIL_BYTES: Final = 16 * 1024
# A stream line longer than this is skipped, not parsed (a runaway tool result).
_STREAM_LINE_MAX: Final = 8 * 1024 * 1024


def tool_base_names(tools: Sequence[str]) -> list[str]:
    """Bare tool names of ``tools`` specs, in order, without duplicates.

    ``["Read", "Bash(git log:*)", "Bash(git diff:*)"]`` -> ``["Read", "Bash"]``.
    """
    names: list[str] = []
    for spec in tools:
        name = spec.split("(", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return names


def setting_sources(env: Mapping[str, str]) -> list[str] | None:
    raw = env.get(SETTING_SOURCES_ENV)
    if raw is None:
        return list(DEFAULT_SETTING_SOURCES)
    raw = raw.strip()
    if raw == "all":
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def bundled_cli_path(site_dirs: Iterable[str] | None = None) -> str | None:
    """The CLI bundled in the ``claude-agent-sdk`` wheel, found by path: importing the SDK costs
    0.5 s, and a hook (``python -I -S``) has no site-packages on ``sys.path`` to import it from."""
    name = "claude.exe" if os.name == "nt" else "claude"
    for site in _site_dirs() if site_dirs is None else site_dirs:
        candidate = os.path.join(site, "claude_agent_sdk", "_bundled", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _site_dirs() -> list[str]:
    """Where the SDK wheel may be: beside this package, then the interpreter's site-packages.

    Under ``-S`` a virtual environment's ``sys.prefix`` is still the base interpreter's (``site``
    is what reads ``pyvenv.cfg``), so the environment is found from the interpreter's own path.
    """
    package_parent = Path(__file__).resolve().parents[2]
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))]
    roots += [sys.prefix, sys.exec_prefix]
    dirs = [str(package_parent)]
    for root in dict.fromkeys(roots):
        dirs += [os.path.join(root, lib, version, "site-packages") for lib in ("lib", "lib64")]
        dirs.append(os.path.join(root, "Lib", "site-packages"))
    dirs += [entry for entry in sys.path if entry]
    return list(dict.fromkeys(dirs))


def find_cli(
    env: Mapping[str, str], *, site_dirs: Iterable[str] | None = None, search_path: bool = True
) -> str | None:
    """The Claude Code CLI fanout runs: ``$FANOUT_CLAUDE_BIN`` from ``env`` (as given, checked by
    the caller), else the one bundled in the claude-agent-sdk wheel, else ``claude`` on ``env``'s
    PATH; None when there is none. The one switch: workers, the planner, the demo and every test
    that drives the real CLI go through here, so setting ``FANOUT_CLAUDE_BIN`` selects the CLI
    for all of them."""
    chosen = env.get(CLAUDE_BIN_ENV)
    if chosen:
        return chosen
    found = bundled_cli_path(site_dirs)
    if found is None and search_path:
        import shutil

        found = shutil.which("claude", path=env.get("PATH", os.defpath))
    return found


def cli_path(env: Mapping[str, str]) -> str:
    """:func:`find_cli`, or plain ``claude`` (starting it then fails with a clear error)."""
    return find_cli(env) or "claude"


def command(
    *,
    cli: str,
    tools: Sequence[str],
    permission_mode: str = DEFAULT_PERMISSION_MODE,
    max_turns: int | None = None,
    max_budget_usd: float | None = None,
    model: str | None = None,
    sources: Sequence[str] | None = DEFAULT_SETTING_SOURCES,
) -> list[str]:
    """The command line of one headless worker session; the prompt goes to its stdin.

    ``tools`` are the specs the worker may use (``"Bash(pytest *)"`` allowed): their bare names
    are offered, the specs themselves pre-approved, everything else refused.
    """
    allowed = [t.strip() for t in tools if t.strip()]
    argv = [
        cli,
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--tools",
        ",".join(tool_base_names(allowed)),
        "--permission-mode",
        permission_mode,
        "--strict-mcp-config",
    ]
    if allowed:
        argv += ["--allowedTools", ",".join(allowed)]
    if max_turns is not None:
        argv += ["--max-turns", str(max_turns)]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", f"{max_budget_usd:.6f}".rstrip("0").rstrip(".")]
    if model:
        argv += ["--model", model]
    if sources is not None:
        argv.append(f"--setting-sources={','.join(sources)}")
    return argv


def worker_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without the markers of a parent Claude Code session."""
    return {k: v for k, v in base.items() if k not in PARENT_SESSION_VARS}


def prompt_file(prompt: str) -> int:
    """An unlinked file holding ``prompt``, positioned at its start: the worker's stdin."""
    fd, path = tempfile.mkstemp(prefix="fanout-prompt-")
    try:
        os.unlink(path)
        os.write(fd, prompt.encode("utf-8"))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- reading what the session reported ----------------------------------------------------------


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


def render(message: Mapping[str, Any]) -> Iterator[str]:
    """Human-readable lines for one stream-json message (what ``fanout logs`` shows)."""
    kind = message.get("type")
    if kind == "system" and message.get("subtype") == "init":
        tools = ",".join(str(t) for t in message.get("tools") or [])
        yield (
            f"[init] session={message.get('session_id')} model={message.get('model')} "
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
    lines = [ln for ln in lines if ln.strip() and not ln.startswith("--- fanout:")]
    return lines[-_STDERR_TAIL:]


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
    write_atomic(out_dir / "result.md", text.encode("utf-8", "replace"))
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


# -- one session, in the foreground -------------------------------------------------------------


def run_claude_task(
    *,
    prompt: str,
    tools: Sequence[str],
    cwd: Path,
    out_dir: Path,
    env: Mapping[str, str] | None = None,
    max_turns: int | None = None,
    max_budget_usd: float | None = None,
    model: str | None = None,
    permission_mode: str = DEFAULT_PERMISSION_MODE,
    stream_path: Path | None = None,
    timeout_s: float | None = None,
) -> int:
    """Run one worker session to its end, as the supervisor would; print its transcript.

    ``env`` goes to the CLI on top of this process's environment, minus the markers of a parent
    session. The stream goes to ``stream_path`` (default ``out_dir/../stream.jsonl``).
    Returns 0 when the session ended with a successful result, 1 otherwise; the reason of a
    failure is one line on stderr.
    """
    full_env = worker_env({**os.environ, **(env or {})})
    argv = command(
        cli=cli_path(full_env),
        tools=tools,
        permission_mode=permission_mode,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
        model=model,
        sources=setting_sources(full_env),
    )
    stream_path = stream_path or out_dir.parent / "stream.jsonl"
    stream_path.parent.mkdir(parents=True, exist_ok=True)
    started, t0 = time.time(), time.monotonic()
    exit_code: int | None = None
    signum: int | None = None
    error: str | None = None
    stdin = prompt_file(prompt)
    try:
        with (
            stream_path.open("wb") as out,
            tempfile.TemporaryFile() as err,
        ):
            try:
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=full_env, stdin=stdin, stdout=out, stderr=err
                )
            except OSError as exc:
                error = f"cannot start {argv[0]}: {exc.strerror or exc}"
            else:
                try:
                    returncode = proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    returncode = proc.wait()
                    error = f"timed out after {timeout_s:g}s"
                exit_code, signum = (returncode, None) if returncode >= 0 else (None, -returncode)
            err.seek(0)
            tail = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()][
                -_STDERR_TAIL:
            ]
    finally:
        os.close(stdin)
    outcome = collect(
        stream_path=stream_path,
        out_dir=out_dir,
        argv=argv,
        cwd=cwd,
        exit_code=exit_code,
        signum=signum,
        stderr=tail,
        started_at=started,
        wall_s=time.monotonic() - t0,
        error=error,
    )
    for line in render_stream(stream_path):
        print(line, flush=True)
    if not outcome.ok:
        print(f"fanout claude worker failed: {outcome.reason}", file=sys.stderr, flush=True)
    return 0 if outcome.ok else 1
