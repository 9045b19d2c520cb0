"""The ``claude`` task kind: one headless Claude Code session per task.

:func:`run_claude_task` drives the CLI through ``claude_agent_sdk.query`` and leaves two files in
``out_dir``: ``result.md`` (the session's final text, or why it failed) and ``meta.json`` (ids,
turns, timings, cost, usage, denials, the options used). One line per event goes to stdout,
which the supervisor sends to the worker's log.

Least privilege, as verified against the real CLI (2.1.x) with a fake Messages API:

- ``--tools`` (``ClaudeAgentOptions.tools``) is the set of built-in tools *offered to the model*:
  the request bodies carry only those (plus nothing else: no Agent, Skill, ToolSearch...).
  A task's tool spec may carry a permission pattern (``"Bash(git log:*)"``); its bare name
  (``Bash``) is what is offered.
- ``--allowedTools`` (``allowed_tools``) auto-approves: the task's specs, patterns included.
- ``--permission-mode dontAsk`` denies anything not pre-approved instead of prompting, so a
  call outside a pattern is refused at once and listed in the result's ``permission_denials``.
  A call to a tool that was not offered at all fails as ``No such tool available``.
- ``--strict-mcp-config`` with no servers: no MCP tools sneak in from ``.mcp.json`` or settings.

Setting sources: ``project`` and ``local`` only (``--setting-sources=project,local``). The
project's ``.claude/settings.json`` and ``.claude/settings.local.json`` are read, so the
project's hooks (fanout's own among them) run for worker sessions too, and ``CLAUDE.md`` is
loaded. The user's ``~/.claude/settings.json`` is *not* read: personal hooks, permission rules,
model or env overrides do not leak into workers. Credentials are not a setting source and are
still found. Override with ``FANOUT_CLAUDE_SETTING_SOURCES`` (comma list, ``all`` for the
CLI's default of every source, empty for none).

Nesting: a worker is usually a descendant of a Claude Code session (Conductor -> hook ->
supervisor -> worker) and inherits the markers Claude Code gives its hooks (``CLAUDECODE=1``,
``CLAUDE_CODE_CHILD_SESSION=1``, ``CLAUDE_CODE_SESSION_ID`` ...). The SDK drops ``CLAUDECODE``
from the inherited environment, nothing else. CLI 2.1.330 runs headless with them all set (no
guard refuses it; tested, also from inside a real hook), but it reads them to mark a session as
the parent's child (lineage, prompt history, persistence). A worker is a session of its own,
so they are blanked for its CLI (the SDK merges ``os.environ`` under ``env`` and cannot unset a
variable; the CLI treats an empty one as unset). fanout's own depth marker (``FANOUT_*``, put in
``env`` by the caller) is what tells a worker from a Conductor; the CLI passes it on to the
hooks it runs.

The CLI is ``$FANOUT_CLAUDE_BIN`` when set (in ``env``, else in ``os.environ``), else the one
bundled in the ``claude-agent-sdk`` wheel.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage

# claude_agent_sdk (anyio, mcp, ...) is imported where it is used: importing this module stays
# cheap for a caller that only looks at the constants.

__all__ = [
    "CLAUDE_BIN_ENV",
    "PARENT_SESSION_VARS",
    "SETTING_SOURCES_ENV",
    "run_claude_task",
    "tool_base_names",
]

CLAUDE_BIN_ENV: Final = "FANOUT_CLAUDE_BIN"
SETTING_SOURCES_ENV: Final = "FANOUT_CLAUDE_SETTING_SOURCES"
DEFAULT_SETTING_SOURCES: Final = ("project", "local")
PERMISSION_MODE: Final = "dontAsk"

# Markers a Claude Code session puts into its children's environment (hooks, Bash). Blanked for
# the worker's CLI so it starts as a session of its own.
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
)

_LINE_MAX: Final = 200
_EXIT_CODE_RE: Final = re.compile(r"exit code:? (-?\d+)")
_STDERR_TAIL: Final = 40


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


def _setting_sources(env: Mapping[str, str]) -> list[str] | None:
    raw = env.get(SETTING_SOURCES_ENV, os.environ.get(SETTING_SOURCES_ENV))
    if raw is None:
        return list(DEFAULT_SETTING_SOURCES)
    raw = raw.strip()
    if raw == "all":
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def _cli_path(env: Mapping[str, str]) -> str | None:
    value = env.get(CLAUDE_BIN_ENV) or os.environ.get(CLAUDE_BIN_ENV)
    return value or None


def _bundled_cli_version() -> str | None:
    try:
        from claude_agent_sdk._cli_version import __cli_version__
    except ImportError:  # pragma: no cover - older SDKs
        return None
    return str(__cli_version__)


def _one_line(text: str, limit: int = _LINE_MAX) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def _short_input(tool_input: Mapping[str, Any]) -> str:
    for key in ("file_path", "path", "command", "pattern", "url", "query", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return _one_line(value, 120)
    return _one_line(json.dumps(tool_input, default=str), 120)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit(line: str) -> None:
    print(line, flush=True)


@dataclass
class _Run:
    """What the session reported, gathered while it streams."""

    init: dict[str, Any] = field(default_factory=dict)
    result: ResultMessage | None = None
    assistant_turns: int = 0
    last_text: str = ""
    stderr_tail: list[str] = field(default_factory=list)

    def on_stderr(self, line: str) -> None:
        self.stderr_tail.append(line)
        del self.stderr_tail[:-_STDERR_TAIL]


def _print_message(message: Any, run: _Run) -> None:
    from claude_agent_sdk import (
        AssistantMessage,
        ResultMessage,
        SystemMessage,
        TextBlock,
        ToolResultBlock,
        ToolUseBlock,
        UserMessage,
    )

    if isinstance(message, SystemMessage):
        if message.subtype == "init":
            run.init = dict(message.data)
            tools = ",".join(str(t) for t in run.init.get("tools", []))
            _emit(
                f"[init] session={run.init.get('session_id')} model={run.init.get('model')} "
                f"tools={tools} cwd={run.init.get('cwd')}"
            )
    elif isinstance(message, AssistantMessage):
        run.assistant_turns += 1
        if message.error:
            _emit(f"[assistant-error] {message.error}")
        for block in message.content:
            if isinstance(block, TextBlock) and block.text.strip():
                run.last_text = block.text
                _emit(f"[assistant] {_one_line(block.text)}")
            elif isinstance(block, ToolUseBlock):
                _emit(f"[tool] {block.name} {_short_input(block.input)}")
    elif isinstance(message, UserMessage) and isinstance(message.content, list):
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                content = block.content
                if isinstance(content, list):
                    content = " ".join(str(c.get("text", "")) for c in content)
                status = "error" if block.is_error else "ok"
                text = content or ""
                _emit(f"[tool-result] {status} {len(text)} chars: {_one_line(text, 120)}")
    elif isinstance(message, ResultMessage):
        run.result = message
        cost = message.total_cost_usd
        _emit(
            f"[result] {message.subtype} error={message.is_error} turns={message.num_turns} "
            f"cost={cost if cost is not None else '?'} duration_ms={message.duration_ms}"
        )


async def _drive(prompt: str, options: ClaudeAgentOptions, run: _Run) -> None:
    from claude_agent_sdk import query

    async for message in query(prompt=prompt, options=options):
        _print_message(message, run)


_EMPTY_RESULT: Final[dict[str, Any]] = {
    "session_id": None,
    "subtype": None,
    "is_error": True,
    "num_turns": 0,
    "duration_ms": None,
    "duration_api_ms": None,
    "total_cost_usd": None,
    "usage": None,
    "model_usage": None,
    "stop_reason": None,
    "terminal_reason": None,
    "permission_denials": [],
    "errors": [],
    "api_error_status": None,
}


def _result_fields(result: ResultMessage | None) -> dict[str, Any]:
    if result is None:
        return dict(_EMPTY_RESULT)
    return {
        "session_id": result.session_id,
        "subtype": result.subtype,
        "is_error": result.is_error,
        "num_turns": result.num_turns,
        "duration_ms": result.duration_ms,
        "duration_api_ms": result.duration_api_ms,
        "total_cost_usd": result.total_cost_usd,
        "usage": result.usage,
        "model_usage": result.model_usage,
        "stop_reason": result.stop_reason,
        "terminal_reason": result.terminal_reason,
        "permission_denials": result.permission_denials or [],
        "errors": result.errors or [],
        "api_error_status": result.api_error_status,
    }


def run_claude_task(
    *,
    prompt: str,
    tools: Sequence[str],
    max_turns: int | None,
    cwd: Path,
    out_dir: Path,
    env: Mapping[str, str] | None = None,
    model: str | None = None,
) -> int:
    """Run one headless Claude Code session; write ``result.md`` and ``meta.json``.

    ``tools`` are the only tools the session may use (specs such as ``"Bash(git log:*)"``
    allowed). ``env`` is passed to the CLI on top of this process's environment. Returns 0
    when the session ends with a successful result, 1 otherwise (the CLI failed to start or
    died, or the result is an error). Expected failures never raise: they land in
    ``meta.json``/``result.md`` and as one line on stderr.
    """
    import anyio
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKError

    started = time.time()
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    env_in = dict(env or {})
    offered = tool_base_names(tools)
    allowed = [t.strip() for t in tools if t.strip()]
    sources = _setting_sources(env_in)
    cli_path = _cli_path(env_in)
    child_env = {**env_in, **dict.fromkeys(PARENT_SESSION_VARS, "")}

    run = _Run()
    error: str | None = None
    exit_code: int | None = None
    try:
        options = ClaudeAgentOptions(
            tools=offered,
            allowed_tools=allowed,
            permission_mode=PERMISSION_MODE,
            max_turns=max_turns,
            cwd=cwd,
            cli_path=cli_path,
            env=child_env,
            model=model,
            setting_sources=sources,  # type: ignore[arg-type]  # validated by the CLI
            strict_mcp_config=True,
            system_prompt={"type": "preset", "preset": "claude_code"},
            stderr=run.on_stderr,
        )
        _emit(f"[start] cwd={cwd} tools={','.join(allowed) or '-'} cli={cli_path or 'bundled'}")
        anyio.run(_drive, prompt, options, run)
    except ClaudeSDKError as exc:
        exit_code = getattr(exc, "exit_code", None)
        if exit_code is None and (found := _EXIT_CODE_RE.search(str(exc))):
            exit_code = int(found.group(1))
        if run.result is None or not run.result.is_error:
            error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a worker reports, it does not crash
        error = f"{type(exc).__name__}: {exc}"

    result = run.result
    if error is None and result is None:
        error = "Claude Code ended without a result"
    ok = error is None and result is not None and not result.is_error

    meta: dict[str, Any] = {
        "ok": ok,
        "exit": 0 if ok else 1,
        **_result_fields(result),
        "error": error,
        "cli_exit_code": exit_code,
        "stderr_tail": run.stderr_tail,
        "tools": offered,
        "allowed_tools": allowed,
        "permission_mode": PERMISSION_MODE,
        "setting_sources": sources,
        "max_turns": max_turns,
        "model": run.init.get("model") or model,
        "cwd": str(cwd),
        "cli_path": cli_path or _bundled_cli_path(),
        "cli_version": run.init.get("claude_code_version")
        or (None if cli_path else _bundled_cli_version()),
        "started_at": started,
        "wall_ms": int((time.monotonic() - t0) * 1000),
    }
    meta["is_error"] = not ok
    meta["session_id"] = meta["session_id"] or run.init.get("session_id")

    if ok:
        text = str(result.result or "") if result is not None else ""
    else:
        text = _failure_text(error, result, run)
    if not text.endswith("\n"):
        text += "\n"
    _atomic_write(out_dir / "result.md", text)
    _atomic_write(out_dir / "meta.json", json.dumps(meta, indent=2, default=str) + "\n")

    if not ok:
        summary = _one_line(error or "") or _one_line(text.removeprefix("# Worker failed"))
        if error and run.stderr_tail:
            summary += f" | {_one_line(run.stderr_tail[-1], 150)}"
        print(
            f"fanout claude worker failed: {_one_line(summary, 400)}", file=sys.stderr, flush=True
        )
    return 0 if ok else 1


def _bundled_cli_path() -> str | None:
    """Where the SDK finds its bundled CLI (what it runs when no ``cli_path`` is given)."""
    try:
        import claude_agent_sdk
    except ImportError:  # pragma: no cover - a dependency
        return None
    name = "claude.exe" if os.name == "nt" else "claude"
    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / name
    return str(path) if path.is_file() else None


def _failure_text(error: str | None, result: ResultMessage | None, run: _Run) -> str:
    lines = ["# Worker failed", ""]
    if result is not None:
        lines.append(
            f"Claude Code ended with `{result.subtype}`"
            + (f" ({result.terminal_reason})" if result.terminal_reason else "")
            + f" after {result.num_turns} turn(s)."
        )
        for err in result.errors or []:
            lines.append(f"- {err}")
        if result.result:
            lines += ["", str(result.result)]
    if run.last_text and (result is None or run.last_text != result.result):
        lines += ["", "Last assistant text:", "", run.last_text.strip()]
    if error:
        lines += ["", "```", error.strip(), "```"]
    if run.stderr_tail:
        lines += ["", "stderr (last lines):", "", "```", *run.stderr_tail, "```"]
    return "\n".join(lines)
