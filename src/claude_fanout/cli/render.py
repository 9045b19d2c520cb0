"""How a run looks on the terminal: ``status`` (table and ``--json``) and the lines ``fanout run``
prints while it waits."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from claude_fanout import text
from claude_fanout.cli.common import conflict_lines, console_on, run_summary, styled_state

if TYPE_CHECKING:
    from claude_fanout.plan import Plan
    from claude_fanout.store.eventlog import Event
    from claude_fanout.store.rundir import RunDir
    from claude_fanout.store.status import RunStatus


def status_json(run: RunDir, plan: Plan | None, status: RunStatus) -> dict[str, Any]:
    """The documented, stable shape of ``fanout status --json`` (docs/cli.md)."""
    summary = run_summary(run, status)
    tasks = []
    for task_id, task in status.tasks.items():
        spec = plan.task(task_id) if plan is not None and task_id in plan.ids else None
        tasks.append(
            {
                "id": task_id,
                "kind": str(spec.kind) if spec else None,
                "deps": list(spec.deps) if spec else [],
                "state": str(task.state),
                "attempt": task.attempt,
                "pid": task.pid,
                "started": task.started,
                "ended": task.ended,
                "duration_s": task.duration_s,
                "exit_code": task.exit_code,
                "signal": task.signal,
                "reason": task.reason,
                "usage": None if task.usage is None else dict(task.usage),
                "live": None if task.live is None else dict(task.live),
                "spent": _copy(task.spent()),
                "doing": task.doing,
                "branch": task.branch,
                "commit": task.commit,
                "log": str(run.log_path(task_id)),
                "out_dir": str(run.out_dir(task_id)),
            }
        )
    return {
        **summary,
        "run_dir": str(run.path),
        "errors": status.errors,
        "merge": status.merge,
        "tasks": tasks,
    }


def print_status(run: RunDir, plan: Plan | None, status: RunStatus) -> None:
    from rich.table import Table

    summary = run_summary(run, status)
    console = console_on(sys.stdout)
    head = f"run {run.run_id}: {styled_state(str(status.state))}"
    if summary["duration_s"] is not None:
        head += f" in {text.duration(summary['duration_s'])}"
    if status.reason:
        head += f" ({_plain(status.reason)})"
    console.print(head)
    from rich.text import Text

    from claude_fanout import usage

    table = Table(box=None, pad_edge=False)
    for column in ("task", "kind", "state", "try", "duration", "usage"):
        table.add_column(column, no_wrap=column != "kind")
    for column in ("exit", "detail"):
        table.add_column(column)
    now = time.time()
    for task_id, task in status.tasks.items():
        spec = plan.task(task_id) if plan is not None and task_id in plan.ids else None
        took = task.duration_s
        if took is None and task.started is not None and not task.state.terminal:
            took = now - task.started
        exit_text = ""
        if task.exit_code is not None:
            exit_text = str(task.exit_code)
        elif task.signal is not None:
            exit_text = f"sig {task.signal}"
        table.add_row(
            task_id,
            str(spec.kind) if spec else "",
            styled_state(str(task.state)),
            str(task.attempt) if task.attempt else "",
            text.duration(took),
            _task_usage(task.spent(), estimate=task.live is not None),
            exit_text,
            # A worker's words: never read as rich markup. What a running one does, else why
            # it ended.
            Text(task.reason or task.doing or ""),
        )
    console.print(table)
    spent = status.spent()
    workers = sum(1 for t in status.tasks.values() if t.usage or t.live)
    totals = usage.total(spent, workers)
    if totals:
        live = any(t.live is not None for t in status.tasks.values())
        if live:
            totals = totals.replace("$", "~$", 1)
        suffix = " (~: running workers' cost so far, estimated)" if live else ""
        console.print(f"total: {totals}, {usage.turns(spent or {})}{suffix}", markup=False)
    for line in merge_summary(run.run_id, status):
        console.print(line, markup=False)
    for error in status.errors[-3:]:
        console.print(f"[red]error:[/] {_plain(error)}")


def _task_usage(spent: dict[str, float] | None, *, estimate: bool = False) -> str:
    """``$0.03 4 turns``, ``~$0.03 2 turns`` while the worker runs (an estimate until the CLI's
    own figures arrive); '' for a task that is not claude (tokens: the total line, --json)."""
    from claude_fanout import usage

    if not spent:
        return ""
    mark = "~" if estimate else ""
    return f"{mark}{usage.money(spent.get('cost_usd', 0.0))} {usage.turns(spent)}"


def _copy(usage: dict[str, float] | None) -> dict[str, float] | None:
    return None if usage is None else dict(usage)


def merge_summary(run_id: str, status: RunStatus) -> list[str]:
    """Writers' merge-back in a line or two: what was merged, what conflicted, what to run."""
    writers = [task_id for task_id, task in status.tasks.items() if task.branch]
    if not writers:
        return []
    merge = status.merge
    if merge is None:
        return [f"merge: not yet; `fanout merge {run_id}` merges {', '.join(writers)}"]
    if merge.get("error"):
        return [f"merge: failed ({merge['error']}); `fanout merge {run_id}` tries again"]
    bits = []
    for key, label in (
        ("merged", "merged"),
        ("already_merged", "already merged"),
        ("undone", "undone since (left out)"),
        ("unchanged", "changed nothing"),
        ("skipped", "not merged (did not succeed)"),
    ):
        names = merge.get(key)
        if isinstance(names, list) and names:
            bits.append(f"{label} {', '.join(map(str, names))}")
    collisions = conflict_lines(merge)
    if collisions:
        bits.append("NOT merged: " + "; ".join(text for _, text in collisions))
    line = "merge: " + ("; ".join(bits) or "nothing to merge")
    if collisions:
        tasks = " ".join(task for task, _ in collisions)
        line += f"; resolve or undo the overlap, then `fanout merge {run_id} {tasks}`"
    return [line]


def _plain(value: object) -> str:
    """Text from the log (a reason, an error, a task id) printed as it is: brackets in it are
    not rich markup (``[executor]`` would vanish)."""
    from rich.markup import escape

    return escape(str(value))


def narrate(console: Any, run: RunDir, event: Event) -> None:
    """One line per task transition while ``fanout run`` waits."""
    kind, task = event.get("type"), _plain(event.get("task"))
    if kind == "task_started":
        console.print(f"  {task} started (attempt {event.get('attempt')}, pid {event.get('pid')})")
    elif kind == "task_exited":
        outcome = str(event.get("outcome"))
        if event.get("not_started") is True:  # its reason reads "could not start: why"
            line = f"  {task} {_plain(event.get('reason'))}"
        else:
            took = text.duration(event.get("duration_s"))
            line = f"  {task} {styled_state(outcome)} after {took}"
            if event.get("reason"):
                line += f": {_plain(event['reason'])}"
        if outcome != "succeeded":
            line += f"  (fanout logs {run.run_id} {task})"
        console.print(line)
    elif kind == "task_retry":
        console.print(
            f"  {task} retries in {event.get('delay_s')}s (attempt {event.get('attempt')})"
        )
    elif kind == "run_merged":
        _narrate_merge(console, event)
    elif kind == "task_skipped":
        console.print(
            f"  {task} {styled_state(str(event.get('outcome') or 'skipped'))}: "
            f"{_plain(event.get('reason'))}"
        )


def _narrate_merge(console: Any, event: Event) -> None:
    """The merge-back as ``fanout run`` ends: what went into the working tree, who collided."""
    if event.get("error"):
        console.print(f"  merge-back failed: {event['error']}", markup=False)
        return
    merged = event.get("merged")
    names = ", ".join(map(str, merged)) if isinstance(merged, list) and merged else "nothing"
    console.print(f"  merge-back into the working tree: {names}", markup=False)
    for _, line in conflict_lines(event):
        console.print(f"  {line}: not merged", markup=False)
