"""Read the payload, pick the handler, print its JSON, and never hurt the session.

Fail open: any exception becomes exit 0 with no output, recorded as a ``hook_error`` event in
the logs of the runs the session owns (or the project's ``.claude/runs/hooks.jsonl``). Exit 2 is
never used: every deliberate decision (deny, block) is a JSON answer on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time

from claude_fanout import defaults
from claude_fanout.hooks.context import HookContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Handler = Callable[[HookContext], dict[str, Any] | None]


def _handler(event: str) -> Handler | None:
    # Imported per event: a PreToolUse call never pays for the Stop or prompt handlers.
    if event == "PreToolUse":
        from claude_fanout.hooks import pre_tool_use

        return pre_tool_use.handle
    if event == "PostToolUse":
        from claude_fanout.hooks import post_tool_use

        return post_tool_use.handle
    if event == "Stop":
        from claude_fanout.hooks import stop

        return stop.handle
    if event == "UserPromptSubmit":
        from claude_fanout.hooks import prompt

        return prompt.handle
    if event == "Rewake":
        from claude_fanout.hooks import rewake

        return rewake.handle
    if event in ("SessionStart", "SessionEnd"):
        from claude_fanout.hooks import session

        return session.handle_start if event == "SessionStart" else session.handle_end
    return None


def run(argv: list[str], *, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
    """Handle one hook call; returns 0, or 2 for a deliberate wake (the Rewake hook)."""
    ctx: HookContext | None = None
    try:
        event = argv[0] if argv else ""
        handler = _handler(event)
        if handler is None or _too_deep():
            return 0
        source = sys.stdin.buffer if stdin is None else stdin
        raw = source.read(defaults.HOOK_PAYLOAD_MAX_BYTES + 1)
        if len(raw) > defaults.HOOK_PAYLOAD_MAX_BYTES:
            return 0
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            return 0
        ctx = HookContext.from_payload(event, payload)
        if ctx is None:
            return 0
        answer = handler(ctx)
        if not answer:
            return 0
        from claude_fanout.hooks.answers import wake_text

        wake = wake_text(answer)
        if wake is not None:
            # The one deliberate exit 2: an async rewake hook waking the idle Conductor, which
            # reads this hook's stderr.
            err = sys.stderr if stderr is None else stderr
            err.write(wake)
            err.flush()
            return 2
        # ASCII JSON: a lone surrogate from the payload cannot make invalid UTF-8 output.
        text = json.dumps(answer)
        out = sys.stdout if stdout is None else stdout
        out.write(text)
        out.flush()
    except BaseException as exc:  # noqa: BLE001 - fail open, whatever happened
        _record_failure(ctx, argv, exc)
    return 0


def _too_deep() -> bool:
    """Sessions fanout started, at the depth limit (``depth.py``), never fan out or get steered.
    A Conductor has no ``FANOUT_DEPTH``: its hook does not import the rule."""
    if not os.environ.get("FANOUT_DEPTH"):
        return False
    from claude_fanout import depth

    return depth.too_deep(os.environ)


def _record_failure(ctx: HookContext | None, argv: list[str], exc: BaseException) -> None:
    try:
        import traceback

        from claude_fanout.states import EventType
        from claude_fanout.store import layout
        from claude_fanout.store.eventlog import EventLog

        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        record = {
            "ts": time.time(),
            "type": str(EventType.HOOK_ERROR),
            "event": argv[0] if argv else None,
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "at": [f"{f.filename}:{f.lineno}" for f in where],
        }
        targets = ctx.session_run_paths() if ctx is not None else []
        if not targets and ctx is not None:
            targets = [layout.join(layout.runs_root(ctx.project), "hooks.jsonl")]
        else:
            targets = [layout.join(path, layout.EVENTS) for path in targets]
        for target in targets:
            if os.path.isdir(os.path.dirname(target)):
                EventLog(target).append_record(record)
    except BaseException:  # noqa: BLE001, S110 - recording the failure must not fail either
        pass
