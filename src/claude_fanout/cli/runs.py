"""The commands that start and watch runs: ``run``, ``resume``, ``status``, ``wait``, ``cancel``,
``logs`` and ``runs``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout import defaults, procs, text
from claude_fanout.cli.common import (
    console_on,
    observe_swept,
    plan_of,
    run_summary,
    styled_state,
    swept,
)
from claude_fanout.cli.render import narrate, print_status, status_json
from claude_fanout.errors import FanoutError
from claude_fanout.plan import load_plan
from claude_fanout.runner import StartedRun, final_exit_code, start_run, wait_run
from claude_fanout.runtime.control import observe, request_cancel
from claude_fanout.store.rundir import list_runs, resolve_run

if TYPE_CHECKING:
    import argparse

    from claude_fanout.store.rundir import RunDir


def add_parsers(sub: Any) -> None:
    """The run commands' arguments, each parser bound to its command."""
    run = sub.add_parser("run", help="start a run from a plan file and wait for it")
    run.add_argument("plan", type=Path, help="plan.json (see docs/plan.md)")
    run.add_argument("--detach", action="store_true", help="print the run id and return at once")
    run.add_argument(
        "--backend",
        choices=defaults.BACKENDS,
        help="where this run's workers run (default: [executor] backend in .claude/fanout.toml)",
    )
    run.set_defaults(handler=cmd_run)

    status = sub.add_parser("status", help="state of a run (the latest by default)")
    status.add_argument("run", nargs="?", help="run id or a unique prefix")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=cmd_status)

    wait = sub.add_parser("wait", help="block until a run finishes")
    wait.add_argument("run", help="run id or a unique prefix")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (124)")
    wait.set_defaults(handler=cmd_wait)

    resume = sub.add_parser(
        "resume", help="run again what did not succeed in a failed, cancelled or lost run"
    )
    resume.add_argument("run", help="run id or a unique prefix")
    resume.add_argument("--detach", action="store_true", help="print the run id, return at once")
    resume.set_defaults(handler=cmd_resume)

    cancel = sub.add_parser("cancel", help="stop a run: SIGTERM its workers, then SIGKILL")
    cancel.add_argument("run", help="run id or a unique prefix")
    cancel.set_defaults(handler=cmd_cancel)

    logs = sub.add_parser("logs", help="print a worker's output")
    logs.add_argument("run", help="run id or a unique prefix")
    logs.add_argument("task", help="task id, e.g. W1")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.set_defaults(handler=cmd_logs)

    runs = sub.add_parser("runs", help="list the project's runs")
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    runs.set_defaults(handler=cmd_runs)


def cmd_run(args: argparse.Namespace, project: Path) -> int:
    plan = load_plan(args.plan, project=project)
    if any(task.kind == "claude" for task in plan.tasks):
        from claude_fanout.claude.cli import version_warning

        warning = version_warning(os.environ)
        if warning is not None:
            print(f"fanout: warning: {warning}", file=sys.stderr)
    started = start_run(plan, project=project, backend=args.backend)
    return _follow(started, detach=args.detach, verb="started")


def cmd_resume(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.runner import resume_run

    run = resolve_run(project, args.run)
    observe_swept(run, "resume")  # what a lost run left running must not meet its successor
    return _follow(resume_run(run), detach=args.detach, verb="resumed")


def _follow(started: StartedRun, *, detach: bool, verb: str) -> int:
    """Print the run id (detached) or narrate the run until it ends (cancel on Ctrl-C)."""
    run = started.run
    plan = plan_of(run)
    if detach:
        print(run.run_id)
        return 0
    out = console_on(sys.stderr)
    count = len(plan.tasks) if plan else 0
    limit = plan.max_parallel if plan else 0
    out.print(
        f"run [bold]{run.run_id}[/] {verb}: {count} task(s), at most {limit} at once",
        highlight=False,
    )
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current directory is gone
        here = str(run.project)
    if here != os.path.realpath(run.project):
        out.print(f"  its tasks run in the project root {run.project}, not in {here}", markup=False)
    try:
        status = wait_run(
            run, on_event=lambda event: narrate(out, run, event), offset=started.offset
        )
    except KeyboardInterrupt:
        out.print("interrupted: cancelling the run…")
        request_cancel(run, by="fanout (interrupted)")
        status = wait_run(run, timeout_s=defaults.KILL_GRACE_S + 10)
        print_status(run, plan, status)
        return 130
    finally:
        # Reap the supervisor we started; if it outlives us, init adopts and reaps it.
        procs.wait_child(started.supervisor, timeout_s=defaults.KILL_GRACE_S + 5)
    print_status(run, plan, status)
    print(run.run_id)
    return final_exit_code(status)


def cmd_status(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = observe_swept(run, "status")
    plan = plan_of(run)
    if args.json:
        print(json.dumps(status_json(run, plan, status), indent=2))
    else:
        print_status(run, plan, status)
    return 0


def cmd_wait(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = swept(run, wait_run(run, timeout_s=args.timeout), "wait")
    print_status(run, plan_of(run), status)
    return final_exit_code(status)


def cmd_cancel(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = observe_swept(run, "cancel")
    if status.state.terminal:
        print(f"run {run.run_id} already {status.state}: nothing to cancel")
        return 0
    signalled = request_cancel(run, by="fanout cancel")
    status = wait_run(run, timeout_s=defaults.KILL_GRACE_S + 10)
    print_status(run, plan_of(run), status)
    if not signalled and not status.state.terminal:
        raise FanoutError(f"run {run.run_id} has no live supervisor; 'fanout status' shows why")
    return 0


def cmd_logs(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    plan = plan_of(run)
    if plan is not None and args.task not in plan.ids:
        raise FanoutError(
            f"run {run.run_id} has no task '{args.task}' (tasks: {', '.join(plan.ids)})"
        )
    path = run.log_path(args.task)
    offset = 0
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        _write_all(sys.stdout.buffer, data)
        offset += len(data)
        if args.follow:
            task = observe(run).tasks.get(args.task)
            if not ((task is None or task.state.terminal) and not data):
                time.sleep(0.1)
                continue
        if offset == 0:
            print(f"fanout: {_why_no_log(run, args.task)}", file=sys.stderr)
        return 0


def _write_all(stream: Any, data: bytes) -> None:
    """All of ``data``: an unbuffered stdout (``python -u``) may take a pipe write in part."""
    view = memoryview(data)
    while view:
        written = stream.write(view) or 0  # None: a non-blocking descriptor is full
        view = view[written:]
        if not written:
            time.sleep(0.01)
    stream.flush()


def _why_no_log(run: RunDir, task_id: str) -> str:
    """Why a task has no output: it never ran (and why not), or it has not written yet."""
    from claude_fanout.states import TaskState

    task = observe(run).tasks.get(task_id)
    if task is not None and task.attempt == 0:
        why = f" ({task.reason})" if task.reason else ""
        if task.state is TaskState.SKIPPED:
            return f"{task_id} was skipped{why}: it never ran, so it has no log"
        if task.state.terminal:
            return f"{task_id} never ran: it ended {task.state}{why} before it started"
        return f"{task_id} has not started yet: it is {task.state}{why}"
    return f"{task_id} has written nothing yet ({run.log_path(task_id)})"


def cmd_runs(args: argparse.Namespace, project: Path) -> int:
    rows = []
    estimated: list[bool] = []  # a running worker's cost in it: an estimate
    for run in list_runs(project):
        status = observe_swept(run, "runs")
        rows.append(run_summary(run, status))
        estimated.append(any(task.live is not None for task in status.tasks.values()))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    from claude_fanout import usage

    table = Table(title=f"runs of {project}", title_justify="left")
    # The run id is what a person copies: never wrapped or cut.
    table.add_column(
        "run", no_wrap=True, min_width=max((len(r["run_id"]) for r in rows), default=3)
    )
    for column in ("state", "tasks", "started", "duration"):
        table.add_column(column)
    table.add_column("cost", justify="right", no_wrap=True)
    for row, estimate in zip(rows, estimated, strict=True):
        started = row["created"]
        spent = row["spent"]
        table.add_row(
            row["run_id"],
            styled_state(row["state"]),
            " ".join(f"{n} {state}" for state, n in sorted(row["counts"].items())),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "",
            text.duration(row["duration_s"]),
            ("~" if estimate else "") + usage.money(spent.get("cost_usd", 0.0)) if spent else "",
        )
    if not rows:
        print(f"no runs under {project}")
        return 0
    console_on(sys.stdout).print(table)
    return 0
