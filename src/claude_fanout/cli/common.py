"""What the ``fanout`` commands share: the usage error, a run's plan and summary, rich output."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from claude_fanout import defaults
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, load_plan
from claude_fanout.states import RunState

if TYPE_CHECKING:
    from claude_fanout.store.rundir import RunDir
    from claude_fanout.store.status import RunStatus


class UsageError(FanoutError):
    """Arguments that cannot work together (exit code 2, like a bad plan)."""

    exit_code = 2


def observe_swept(run: RunDir, command: str) -> RunStatus:
    """The run's observed state (``store.state.observe``), with :func:`swept` applied."""
    from claude_fanout.runtime.control import observe

    return swept(run, observe(run), command)


def swept(run: RunDir, status: RunStatus, command: str) -> RunStatus:
    """``status``; a run found lost has what it left running stopped first (once per lost
    supervisor: ``runtime.watchdog.sweep_lost``)."""
    if status.state is RunState.LOST:
        from claude_fanout.runtime.watchdog import sweep_lost

        sweep_lost(run.path, reason=status.reason, by=f"fanout {command} (pid {os.getpid()})")
    return status


def plan_of(run: RunDir) -> Plan | None:
    """The run's plan; None when it no longer parses (the run is still shown, without it)."""
    try:
        return load_plan(run.plan_path, project=run.project)
    except FanoutError:
        return None


def run_summary(run: RunDir, status: RunStatus) -> dict[str, Any]:
    """One run in the stable shape ``fanout runs --json`` prints (and ``status --json`` extends)."""
    end = status.finished if status.state.terminal else time.time()
    begin = status.started or status.created
    return {
        "run_id": run.run_id,
        "state": str(status.state),
        "reason": status.reason,
        "created": status.created,
        "started": status.started,
        "finished": status.finished,
        "duration_s": round(end - begin, 3) if begin and end else None,
        "counts": status.counts(),
        # Claude workers' tokens, turns and cost summed over the run (None: none reported).
        "usage": None if status.usage is None else dict(status.usage),
        # The same with what running workers have spent so far (their cost estimated).
        "spent": None if (spent := status.spent()) is None else dict(spent),
    }


def conflict_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """``(task, "W2 conflicts with W1 in src/a.py")`` for each conflict a merge record holds."""
    found = []
    raw = record.get("conflicts")
    for conflict in raw if isinstance(raw, list) else []:
        if not isinstance(conflict, dict) or not isinstance(conflict.get("task"), str):
            continue
        others = conflict.get("with")
        names = [
            "the working tree" if other == "working tree" else str(other)
            for other in (others if isinstance(others, list) else [])
        ]
        files = conflict.get("files")
        paths = [str(f) for f in files] if isinstance(files, list) else []
        shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        task = conflict["task"]
        found.append(
            (
                task,
                f"{task} conflicts with {', '.join(names) or 'the working tree'} "
                f"in {shown or 'its files'}",
            )
        )
    return found


_STATE_STYLE = {
    "succeeded": "green",
    "running": "cyan",
    "starting": "cyan",
    "pending": "dim",
    "waiting_retry": "yellow",
    "failed": "red",
    "timed_out": "red",
    "lost": "bold red",
    "skipped": "yellow",
    "cancelled": "yellow",
    "over_budget": "red",
}


def styled_state(state: str) -> str:
    style = _STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def console_on(stream: Any) -> Any:
    """Rich output on ``stream``; when that is not a terminal (a pipe, a file), tables get the
    width they need: nothing is cut or wrapped at 80 columns (scripts still want ``--json``)."""
    from rich.console import Console

    console = Console(file=stream, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = defaults.PIPED_OUTPUT_WIDTH
    return console
