"""SessionStart re-attaches a resumed Conductor and re-injects what is in flight; SessionEnd
cancels the session's unfinished runs (signal and return: Claude Code gives it 1.5 s)."""

from __future__ import annotations

import os

from claude_fanout import pids
from claude_fanout.hooks import delivery
from claude_fanout.runtime.control import request_cancel
from claude_fanout.states import EventType
from claude_fanout.store import active, layout
from claude_fanout.store.eventlog import EventLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle_start(ctx: HookContext) -> dict[str, Any] | None:
    runs = ctx.session_runs()
    if not runs:
        return None
    found = pids.find_conductor()
    lines = []
    for path, status in runs:
        conductor = status.conductor or {}
        if found is not None and not status.state.terminal and conductor.get("pid") != found[0]:
            # A resumed session: the supervisor now watches this process instead.
            EventLog(layout.join(path, layout.EVENTS)).append(
                EventType.CONDUCTOR,
                session_id=ctx.session_id,
                pid=found[0],
                start_time=found[1],
            )
        state = delivery.progress(status, ctx.now) or f"{status.state}, results not yet merged"
        lines.append(f"- run {status.run_id}: {state}")
    if ctx.payload.get("source") not in ("resume", "compact"):
        return None
    text = (
        "[fanout] This session has fanout runs in flight; their results will be delivered to you "
        "after tool calls and when you stop:\n" + "\n".join(lines)
    )
    from claude_fanout.hooks import answers

    return answers.context("SessionStart", text)


def handle_end(ctx: HookContext) -> dict[str, Any] | None:
    for path, status in ctx.session_runs():
        if not status.state.terminal:
            request_cancel(path, by="session_end")
        # Nobody is left to deliver to.
        active.clear(ctx.project, status.run_id)
    if ctx.session_id is not None:
        # Nobody is left to show it to either (hooks.shown).
        try:  # noqa: SIM105 - importing contextlib would cost the hook 0.5 ms
            os.unlink(layout.session_outbox(ctx.project, ctx.session_id))
        except OSError:
            pass
    return None
