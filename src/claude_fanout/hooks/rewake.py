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

from claude_fanout.states import TaskState
from claude_fanout.store import layout
from claude_fanout.store.cursor import peek_told
from claude_fanout.store.watch import wait_for_change

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.status import RunStatus

MODE = "rewake"
_NEEDS_CONDUCTOR = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST)


def handle(ctx: HookContext, *, clock: Any = time.monotonic) -> dict[str, Any] | None:
    if ctx.session_id is None or not ctx.session_runs(delivery=MODE):
        return None
    from claude_fanout import defaults
    from claude_fanout.config import load_config

    config = load_config(ctx.project)
    deadline = clock() + config.rewake_max_wait_s
    while True:
        runs = ctx.session_runs(delivery=MODE)
        if not runs:
            return None
        if _ready(ctx, runs) or clock() >= deadline:
            break
        logs = [layout.join(path, layout.EVENTS) for path, _ in runs]
        wait_for_change(logs, min(defaults.REWAKE_RECHECK_S, max(0.0, deadline - clock())))
        ctx.refresh()
    from claude_fanout.hooks import answers, report, shown

    person: list[str] = []
    text = report.final_delivery(ctx, runs, config.inject_max_chars, person=person)
    # A wake shows nothing itself: what the person has not seen waits for the woken prompt.
    shown.post(ctx.project, ctx.session_id, person)
    return answers.wake(text) if text else None


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


__all__ = ["handle"]
