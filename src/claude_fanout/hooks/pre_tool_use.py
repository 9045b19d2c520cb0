"""PreToolUse: deny calls on paths live workers claim; redirect reads a finished worker replaced."""

from __future__ import annotations

import os

from claude_fanout import directives
from claude_fanout.states import TaskState
from claude_fanout.store import layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle(ctx: HookContext) -> dict[str, Any] | None:
    tool = ctx.payload.get("tool_name")
    tool_input = ctx.payload.get("tool_input")
    if not isinstance(tool, str) or not isinstance(tool_input, dict):
        return None
    runs = ctx.runs()
    if not runs:
        return None
    claims: list[directives.Claim] = []
    owners: dict[str, tuple[str, str]] = {}
    replaces: dict[str, str] = {}
    for run_path, status in runs:
        for task_id, task in status.tasks.items():
            if not task.state.terminal:
                for pattern in task.claims:
                    claim = directives.Claim(f"{status.run_id}/{task_id}", pattern, ctx.project)
                    claims.append(claim)
                    owners[claim.task] = (run_path, task_id)
            elif task.state is TaskState.SUCCEEDED:
                for path, target in task.replaces.items():
                    source = directives.absolute(path, ctx.project)
                    replaces[source] = directives.absolute(
                        target, layout.out_dir(run_path, task_id)
                    )
    if claims:
        paths = directives.touched_paths(tool, tool_input, ctx.cwd)
        conflict = directives.find_conflict(paths, claims) if paths else None
        if conflict is not None:
            claim, path = conflict
            run_path, task_id = owners[claim.task]
            return _deny(ctx, run_path, task_id, claim, path)
    if replaces:
        updated = directives.rewrite_input(tool, tool_input, ctx.cwd, replaces)
        if updated is not None:
            from claude_fanout.hooks import answers

            return answers.rewrite(updated, "fanout: a finished worker's result replaces this file")
    return None


def _deny(
    ctx: HookContext, run_path: str, task_id: str, claim: directives.Claim, path: str
) -> dict[str, Any]:
    from claude_fanout.hooks import answers, shown
    from claude_fanout.hooks.delivery import relative
    from claude_fanout.text import duration

    status = dict(ctx.runs())[run_path]
    task = status.tasks[task_id]
    what = _task_summary(run_path, task_id)
    if task.state is TaskState.RUNNING and task.started is not None:
        doing = f"is working on it (running {duration(max(0.0, ctx.now - task.started))})"
    else:
        doing = f"will work on it ({task.state})"
    result = os.path.join(layout.out_dir(run_path, task_id), layout.RESULT)
    rel = relative(path, ctx.project)
    reason = (
        f"fanout: {rel} is claimed by worker {task_id} of run "
        f"{status.run_id}, which {doing}{what}. Its result will be at "
        f"{relative(result, ctx.project)}; fanout delivers it to you when the worker "
        "finishes. Do not redo its work: continue with something else, or stop and wait."
    )
    person = None
    if ctx.session_id is not None:
        from claude_fanout.store.cursor import Cursor

        # Shown once per worker and session: the model hears every denial, the person the first.
        with Cursor(run_path, ctx.session_id) as cursor:
            if shown.take(cursor, f"deny:{task_id}"):
                tool = str(ctx.payload.get("tool_name"))
                person = shown.denied(tool, rel, task_id, status.run_id, task, now=ctx.now)
    return answers.deny(reason, shown=person)


def _task_summary(run_path: str, task_id: str) -> str:
    """`: "Review src/a.py…"` from the plan, cheaply (no plan validation on this path)."""
    from claude_fanout.hooks.shown import task_summaries

    for tid, _claim, first in task_summaries(run_path):
        if tid == task_id and first:
            return f': "{first[:120]}{"…" if len(first) > 120 else ""}"'
    return ""
