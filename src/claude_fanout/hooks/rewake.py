"""Rewake: the async hook that wakes an idle interactive Conductor with its workers' results.

Claude Code runs it in the background when the Conductor's turn ends (``"async": true``); when
it exits 2, Claude Code wakes the idle session with its stderr (``"asyncRewake": true``). It
waits, woken by the runs' logs (inotify) rather than by polling, until every rewake-mode run of
the session is done or one of them needs the Conductor (a worker failed, or a run was lost),
then hands over what the session has not been told, through the same cursor as every other
hook: each result reaches the Conductor once, whichever hook carries it. Nothing new: exit 0,
no wake. The woken turn ends in another Stop, which starts this hook again; with nothing left
to tell, it returns at once, so a wake never re-arms itself.
"""

from __future__ import annotations

import time

from claude_fanout.hooks import delivery
from claude_fanout.states import TaskState
from claude_fanout.store import active, layout
from claude_fanout.store.cursor import Cursor, peek_told
from claude_fanout.store.watch import wait_for_change

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.status import RunStatus

# Liveness (a supervisor dying writes nothing until its watchdog notices) is re-checked at
# least this often while waiting.
RECHECK_S = 2.0
WAKE = "wake"
_NEEDS_CONDUCTOR = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST)


def handle(ctx: HookContext, *, clock: Any = time.monotonic) -> dict[str, Any] | None:
    ctx.only_delivery = "rewake"
    if ctx.session_id is None or not ctx.session_runs():
        return None
    from claude_fanout.config import load_config

    config = load_config(ctx.project)
    deadline = clock() + config.rewake_max_wait_s
    while True:
        runs = ctx.session_runs()
        if not runs:
            return None
        if _ready(ctx, runs) or clock() >= deadline:
            break
        logs = [layout.join(path, layout.EVENTS) for path, _ in runs]
        wait_for_change(logs, min(RECHECK_S, max(0.0, deadline - clock())))
        ctx.refresh()
    text = _message(ctx, runs, config.inject_max_chars)
    return {WAKE: text} if text else None


def _ready(ctx: HookContext, runs: list[tuple[str, RunStatus]]) -> bool:
    """All done, or something the Conductor must hear about now (and has not yet)."""
    assert ctx.session_id is not None
    if all(status.state.terminal for _, status in runs):
        return True
    for path, status in runs:
        told = peek_told(path, ctx.session_id)
        for task_id, task in status.tasks.items():
            if task.state in _NEEDS_CONDUCTOR and told.get(task_id) != str(task.state):
                return True
    return False


def _message(ctx: HookContext, runs: list[tuple[str, RunStatus]], limit: int) -> str:
    assert ctx.session_id is not None
    from claude_fanout.hooks import report

    pending = []
    all_done = True
    for path, status in runs:
        with Cursor(path, ctx.session_id) as cursor:
            if cursor.data.get("final"):
                continue
            fresh, notices = delivery.news(status, cursor)
            done = status.state.terminal
            if done:
                cursor.data["final"] = True
        all_done = all_done and done
        if fresh or notices or done:
            pending.append((path, status, fresh, notices, done))
    if not pending:
        return ""
    ending = (
        report.DONE
        if all_done
        else "A worker needs your attention (above); the others are still at work and fanout "
        "will wake you again when they are done."
    )
    message = report.Message(limit, ending=ending)
    room = message.room(len(pending))
    for path, status, fresh, notices, done in pending:
        if done:
            section = report.final_section(
                path, status, fresh, notices, project=ctx.project, budget=room, fence=message.fence
            )
            active.clear(ctx.project, status.run_id)
        else:
            section = report.news_section(
                path,
                status,
                fresh,
                notices,
                project=ctx.project,
                now=ctx.now,
                budget=room,
                fence=message.fence,
            )
        message.add(section)
    return message.render()


__all__ = ["WAKE", "handle"]
