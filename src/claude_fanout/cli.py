"""``fanout``: parse, validate, call the library, exit with a meaningful code.

Exit codes: 0 success; 1 a run failed (or was cancelled / lost); 2 bad input (plan, arguments);
3 every task succeeded but a writer's change was not merged (``EXIT_NOT_MERGED``); 124 ``wait
--timeout`` expired; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout import defaults
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, load_plan
from claude_fanout.runner import (
    EXIT_NOT_MERGED,
    StartedRun,
    final_exit_code,
    start_run,
    wait_run,
)
from claude_fanout.store.rundir import RunDir, find_project, list_runs, resolve_run
from claude_fanout.store.state import RunStatus, observe, request_cancel

if TYPE_CHECKING:
    from claude_fanout.merge import MergeReport
    from claude_fanout.store.eventlog import Event


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout", description="Parallel workers for Claude Code, steered through its hooks."
    )
    parser.add_argument(
        "--project",
        type=Path,
        help="project directory (default: the nearest ancestor holding .claude/ or .git/)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a run from a plan file and wait for it")
    run.add_argument("plan", type=Path, help="plan.json (see docs/plan.md)")
    run.add_argument("--detach", action="store_true", help="print the run id and return at once")

    status = sub.add_parser("status", help="state of a run (the latest by default)")
    status.add_argument("run", nargs="?", help="run id or a unique prefix")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    wait = sub.add_parser("wait", help="block until a run finishes")
    wait.add_argument("run", help="run id or a unique prefix")
    wait.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (124)")

    resume = sub.add_parser(
        "resume", help="run again what did not succeed in a failed, cancelled or lost run"
    )
    resume.add_argument("run", help="run id or a unique prefix")
    resume.add_argument("--detach", action="store_true", help="print the run id, return at once")

    cancel = sub.add_parser("cancel", help="stop a run: SIGTERM its workers, then SIGKILL")
    cancel.add_argument("run", help="run id or a unique prefix")

    logs = sub.add_parser("logs", help="print a worker's output")
    logs.add_argument("run", help="run id or a unique prefix")
    logs.add_argument("task", help="task id, e.g. W1")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")

    install = sub.add_parser(
        "install", help="add fanout's hooks and /fanout command to Claude Code"
    )
    install.add_argument(
        "--scope",
        choices=("local", "project", "user"),
        default="local",
        help="local (default): .claude/settings.local.json, yours and git-ignored; project: "
        ".claude/settings.json, shared with everyone who clones the repository (the hooks name "
        "this machine's paths); user: ~/.claude/settings.json, every project",
    )
    uninstall = sub.add_parser("uninstall", help="remove exactly what `fanout install` added")
    uninstall.add_argument(
        "--scope",
        choices=("local", "project", "user"),
        default=None,
        help="only this settings file (default: both of the project's, "
        ".claude/settings.local.json and .claude/settings.json)",
    )

    demo = sub.add_parser("demo", help="run the offline demo in a scratch directory")
    demo.add_argument("--dir", type=Path, help="scratch directory (default: a new temp dir)")
    demo.add_argument(
        "--model-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds the scripted model takes per turn (default 1)",
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="use your own Claude account and the real model (costs tokens)",
    )

    publish = sub.add_parser(
        "publish", help="from inside a worker: publish a directive for the Conductor's hooks"
    )
    kinds = publish.add_subparsers(dest="directive", required=True, metavar="DIRECTIVE")
    notice = kinds.add_parser("notice", help="tell the Conductor something (delivered once)")
    notice.add_argument("text")
    claim = kinds.add_parser("claim", help="deny the Conductor these paths while this task runs")
    claim.add_argument("paths", nargs="+")
    replace = kinds.add_parser(
        "replace", help="once this task succeeds, redirect the Conductor's reads of PATH"
    )
    replace.add_argument("path", help="a file in the project")
    replace.add_argument("artifact", help="a file in this task's out/ directory")

    runs = sub.add_parser("runs", help="list the project's runs")
    runs.add_argument("--json", action="store_true", help="machine-readable output")

    merge = sub.add_parser(
        "merge", help="merge a run's writer branches into your working tree (not commits)"
    )
    merge.add_argument("run", help="run id or a unique prefix")
    merge.add_argument(
        "tasks",
        nargs="*",
        metavar="TASK",
        help="merge exactly these writers, in this order (default: every writer not merged yet)",
    )
    merge.add_argument(
        "--dry-run", action="store_true", help="predict and report only; write nothing"
    )

    gc = sub.add_parser(
        "gc", help="remove finished runs: their worktrees, fanout/<RUN>/* branches, run directory"
    )
    gc.add_argument("runs", nargs="*", metavar="RUN", help="run ids or unique prefixes")
    gc.add_argument(
        "--all-finished", action="store_true", help="every finished run (live ones are kept)"
    )
    gc.add_argument(
        "--force",
        action="store_true",
        help="also remove runs holding writers' changes that were never merged",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        project = args.project.resolve() if args.project else find_project()
        handler = _COMMANDS[args.command]
        return handler(args, project)
    except FanoutError as exc:
        if args.debug:
            raise
        print(f"fanout: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


# -- commands ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, project: Path) -> int:
    plan = load_plan(args.plan, project=project)
    if any(task.kind == "claude" for task in plan.tasks):
        from claude_fanout.compat import cli_warning
        from claude_fanout.executors.claude import cli_path

        warning = cli_warning(cli_path(os.environ))
        if warning is not None:
            print(f"fanout: warning: {warning}", file=sys.stderr)
    return _follow(start_run(plan, project=project), detach=args.detach, verb="started")


def cmd_resume(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.runner import resume_run

    run = resolve_run(project, args.run)
    return _follow(resume_run(run), detach=args.detach, verb="resumed")


def _follow(started: StartedRun, *, detach: bool, verb: str) -> int:
    """Print the run id (detached) or narrate the run until it ends (cancel on Ctrl-C)."""
    run = started.run
    plan = _plan_of(run)
    if detach:
        print(run.run_id)
        return 0
    out = _console(sys.stderr)
    count = len(plan.tasks) if plan else 0
    limit = plan.max_parallel if plan else 0
    out.print(
        f"run [bold]{run.run_id}[/] {verb}: {count} task(s), at most {limit} at once",
        highlight=False,
    )
    try:
        status = wait_run(
            run, on_event=lambda event: _narrate(out, run, event), offset=started.offset
        )
    except KeyboardInterrupt:
        out.print("interrupted: cancelling the run…")
        request_cancel(run, by="fanout (interrupted)")
        status = wait_run(run, timeout_s=defaults.KILL_GRACE_S + 10)
        _print_status(run, plan, status)
        return 130
    finally:
        # Reap the supervisor we started; if it outlives us, init adopts and reaps it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.supervisor.wait(timeout=defaults.KILL_GRACE_S + 5)
    _print_status(run, plan, status)
    print(run.run_id)
    return final_exit_code(status)


def cmd_status(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = observe(run)
    plan = _plan_of(run)
    if args.json:
        print(json.dumps(status_json(run, plan, status), indent=2))
    else:
        _print_status(run, plan, status)
    return 0


def cmd_wait(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = wait_run(run, timeout_s=args.timeout)
    _print_status(run, _plan_of(run), status)
    return final_exit_code(status)


def cmd_cancel(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    status = observe(run)
    if status.state.terminal:
        print(f"run {run.run_id} already {status.state}: nothing to cancel")
        return 0
    signalled = request_cancel(run, by="fanout cancel")
    status = wait_run(run, timeout_s=defaults.KILL_GRACE_S + 10)
    _print_status(run, _plan_of(run), status)
    if not signalled and not status.state.terminal:
        raise FanoutError(f"run {run.run_id} has no live supervisor; 'fanout status' shows why")
    return 0


def cmd_logs(args: argparse.Namespace, project: Path) -> int:
    run = resolve_run(project, args.run)
    plan = _plan_of(run)
    if plan is not None and args.task not in plan.ids:
        raise FanoutError(
            f"run {run.run_id} has no task '{args.task}' (tasks: {', '.join(plan.ids)})"
        )
    path = run.log_path(args.task)
    offset = 0
    stdout = sys.stdout.buffer
    while True:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            data = b""
        stdout.write(data)
        stdout.flush()
        offset += len(data)
        if not args.follow:
            if offset == 0:
                print(f"fanout: {args.task} has written nothing yet ({path})", file=sys.stderr)
            return 0
        task = observe(run).tasks.get(args.task)
        if (task is None or task.state.terminal) and not data:
            return 0
        time.sleep(0.1)


def cmd_runs(args: argparse.Namespace, project: Path) -> int:
    rows = []
    for run in list_runs(project):
        status = observe(run)
        rows.append(_run_summary(run, status))
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
    for row in rows:
        started = row["created"]
        spent = row["usage"]
        table.add_row(
            row["run_id"],
            _styled_state(row["state"]),
            " ".join(f"{n} {state}" for state, n in sorted(row["counts"].items())),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "",
            _fmt_duration(row["duration_s"]),
            usage.money(spent.get("cost_usd", 0.0)) if spent else "",
        )
    if not rows:
        print(f"no runs under {project}")
        return 0
    _console(sys.stdout).print(table)
    return 0


def cmd_install(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout import settings

    if args.command == "uninstall":
        report = settings.uninstall(scope=args.scope, project=project)
        if not report.changed:
            print("fanout: nothing of fanout's to remove")
        for path in report.written:
            print(f"fanout hooks removed from {path}")
        for path in report.removed:
            print(f"removed {path}")
        for note in report.notes:
            print(f"note: {note}")
        return 0
    report = settings.install(scope=args.scope, project=project)
    where = f"{report.settings} ({report.sharing})"
    if report.settings in report.written:
        print(f"fanout hooks installed into {where}")
    else:
        print(f"fanout hooks: already in {where}, unchanged")
    for path in report.written:
        if path == report.command:
            print(f"  wrote {path} (the /fanout command: no machine paths, fine to commit)")
        elif path != report.settings:
            print(f"  wrote {path}")
    for path in report.removed:
        print(f"  removed {path}")
    if report.backup is not None:
        print(f"  previous settings kept for `fanout uninstall` in {report.backup}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.shared:
        print(
            f"fanout: warning: {report.settings} is shared ({report.sharing}), and fanout's hooks "
            "in it name this machine's Python and package paths: on a teammate's machine they "
            "do nothing, and their `fanout install` rewrites them. `fanout install` without "
            "--scope keeps them in .claude/settings.local.json instead.",
            file=sys.stderr,
        )
    print("Start Claude Code here and type: /fanout <instruction> -- <paths or globs>")
    return 0


def cmd_publish(args: argparse.Namespace, project: Path) -> int:
    """Workers publish directives; the hooks enforce them. A worker never runs a hook itself."""
    from claude_fanout.plan import parse_plan
    from claude_fanout.states import EventType
    from claude_fanout.store.rundir import RunDir

    run_dir, task_id = os.environ.get("FANOUT_RUN_DIR"), os.environ.get("FANOUT_TASK_ID")
    if not run_dir or not task_id:
        raise FanoutError(
            "fanout publish works inside a worker (FANOUT_RUN_DIR and FANOUT_TASK_ID unset)"
        )
    run = RunDir(Path(run_dir))
    run.check()
    # Validate paths exactly as a plan's would be: inside the project, no escape via links.
    probe: dict[str, object] = {"id": task_id, "kind": "shell", "argv": ["true"]}
    if args.directive == "claim":
        probe["claims"] = args.paths
    elif args.directive == "replace":
        probe["replaces"] = {args.path: args.artifact}
    spec = parse_plan({"version": 1, "tasks": [probe]}, project=run.project).tasks[0]
    if args.directive == "notice":
        run.log.append(EventType.NOTICE, task=task_id, text=args.text[:2000])
    elif args.directive == "claim":
        run.log.append(EventType.CLAIM, task=task_id, paths=list(spec.claims))
    else:
        ((path, artifact),) = spec.replaces.items()
        run.log.append(EventType.REPLACE, task=task_id, path=path, **{"with": artifact})
    return 0


def cmd_demo(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.demo import run_demo

    return run_demo(directory=args.dir, model_delay_s=args.model_delay, live=args.live)


class UsageError(FanoutError):
    exit_code = 2


def cmd_merge(args: argparse.Namespace, project: Path) -> int:
    """Predict, merge what applies cleanly into the working tree, report the rest, record it.
    With task ids: exactly those, in that order, whatever earlier merges did."""
    from claude_fanout import merge

    run = resolve_run(project, args.run)
    writers = _run_worktrees(run)
    if not writers:
        raise FanoutError(
            f"run {run.run_id} made no worktrees (no task with write: true): nothing to merge"
        )
    plan = _plan_of(run)
    order = [t for t in plan.ids if t in writers] if plan else []
    order += [t for t in writers if t not in order]
    bases = [writers[t]["created"].get("base") for t in order]
    base = merge.run_base(project, [b for b in bases if isinstance(b, str)])
    status = observe(run)
    running = {
        t
        for t in order
        if not status.state.terminal and t in status.tasks and not status.tasks[t].state.terminal
    }
    chosen: list[str] = list(args.tasks)
    if chosen:
        _check_chosen(run, chosen, order, writers, running)
        order = chosen
    branches, unchanged, skipped = [], [], []
    for task in order:
        committed = writers[task].get("committed")
        if committed is None:
            skipped.append(task)
        elif not committed.get("commit"):
            unchanged.append(task)
        else:
            branches.append((task, _branch_of(writers[task])))
    settled = merge.settled_tasks(status.merge)
    # Named tasks merge whatever earlier merges did; what those applied only explains conflicts.
    context = [
        (task, _branch_of(writers[task]))
        for task in (writers if chosen else ())
        if task in settled and task not in chosen and writers[task].get("committed")
    ]
    report = merge.merge_run(
        project,
        base,
        branches,
        dry_run=args.dry_run,
        settled=() if chosen else settled,
        context=context,
    )
    report.unchanged = [t for t in order if t in unchanged or t in report.unchanged]
    report.skipped = skipped
    _print_merge(run, report, order, running=running & set(skipped), chosen=bool(chosen))
    if not args.dry_run:
        run.log.append("run_merged", **report.to_dict())
    return 0 if report.clean else EXIT_NOT_MERGED


def _branch_of(worktree: dict[str, Any]) -> str:
    committed = worktree.get("committed") or {}
    return str(committed.get("branch") or worktree["branch"])


def _check_chosen(
    run: RunDir,
    chosen: list[str],
    writers: list[str],
    worktrees: dict[str, dict[str, Any]],
    running: set[str],
) -> None:
    """``fanout merge RUN TASK...``: each a writer of the run, with a committed change, once."""
    for number, task in enumerate(chosen):
        if task in chosen[:number]:
            raise UsageError(f"merge: task {task} is named twice; name each task once")
        if task not in worktrees:
            raise UsageError(
                f"merge: run {run.run_id} has no writer '{task}' (writers: {', '.join(writers)})"
            )
        if worktrees[task].get("committed") is None:
            if task in running:
                raise UsageError(f"merge: task {task} is still running; merge it once it is done")
            raise UsageError(
                f"merge: task {task} did not succeed, so it has no change to merge "
                f"('fanout resume {run.run_id}' runs it again)"
            )


def _run_worktrees(run: RunDir) -> dict[str, dict[str, Any]]:
    """task -> {"branch", "path", "created": event, "committed": event or absent}."""
    from claude_fanout.store.eventlog import read_events

    found: dict[str, dict[str, Any]] = {}
    for event in read_events(run.events_path).events:
        task = event.get("task")
        if not isinstance(task, str):
            continue
        if event["type"] == "worktree_created" and isinstance(event.get("branch"), str):
            found[task] = {"branch": event["branch"], "path": event.get("path"), "created": event}
        elif event["type"] == "worktree_committed" and task in found:
            found[task]["committed"] = event
    return found


def _print_merge(
    run: RunDir, report: MergeReport, order: list[str], *, running: set[str], chosen: bool
) -> None:
    from claude_fanout import merge

    short = report.base[:12]
    verb = "would merge" if report.dry_run else "merged"
    which = f": {', '.join(order)}, in this order" if chosen else ""
    print(f"run {run.run_id}: merge into the working tree (base {short}){which}")
    for overlap in report.overlaps:
        if overlap.kind != "same":
            print(f"  predicted: {overlap.describe()}")
    conflicts = {conflict.task: conflict for conflict in report.conflicts}
    for task in order:
        if task in report.merged:
            files = report.files.get(task, [])
            count = f"{len(files)} file{'s' * (len(files) != 1)}"
            print(f"  {task}: {verb} ({count}: {', '.join(files)})")
        elif task in report.already_merged:
            print(f"  {task}: already merged")
        elif task in report.undone:
            print(
                f"  {task}: merged before, since undone or edited over in the working tree: "
                f"left out ('fanout merge {run.run_id} {task}' applies it again)"
            )
        elif task in report.unchanged:
            print(f"  {task}: changed nothing")
        elif task in running:
            print(f"  {task}: still running; run 'fanout merge {run.run_id}' again when it is done")
        elif task in report.skipped:
            print(f"  {task}: not merged (the task did not succeed; its branch is kept)")
        elif task in conflicts:
            conflict = conflicts[task]
            with_ = ", ".join(
                "the working tree" if name == merge.WORKING_TREE else name
                for name in conflict.with_
            )
            print(f"  {task}: CONFLICT with {with_ or 'the working tree'}, not applied:")
            for path in conflict.files:
                print(f"      {path}: {conflict.reasons.get(path, 'conflict')}")
            print(f"    see it:    git diff {short} {conflict.branch}")
            print(
                f"    take it:   fanout merge {run.run_id} {task}"
                "   (once the overlap is resolved or undone)"
            )
    if report.clean and not report.dry_run:
        print("  nothing conflicted; branches are kept until 'fanout gc'")


def _collisions(record: dict[str, Any]) -> list[tuple[str, str]]:
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


def cmd_gc(args: argparse.Namespace, project: Path) -> int:
    """Remove finished runs: worktrees, fanout/<RUN>/* branches, then the run directory."""
    import shutil

    from claude_fanout import worktree
    from claude_fanout.store import active

    if not args.runs and not args.all_finished:
        raise UsageError(
            "gc: name the runs to remove (fanout gc RUN ...) or pass --all-finished "
            "to remove every finished run"
        )
    named = bool(args.runs)
    runs = [resolve_run(project, r) for r in args.runs] if named else list_runs(project)
    try:
        worktree.repo_root(project)
        has_git = True
    except worktree.NotAGitRepoError:
        has_git = False
    refused = removed_runs = kept = 0
    for run in runs:
        status = observe(run)
        if not status.state.terminal:
            if named:
                print(
                    f"fanout: run {run.run_id} is {status.state}: not removed "
                    f"(fanout cancel {run.run_id} first)",
                    file=sys.stderr,
                )
                refused += 1
            continue
        unmerged = _unmerged(project, run, status) if has_git else {}
        if unmerged and not args.force:
            tasks = " ".join(unmerged)
            print(
                f"fanout: run {run.run_id} kept: its writers' changes are not in your working "
                f"tree: {'; '.join(unmerged.values())}. 'fanout merge {run.run_id} {tasks}' "
                f"takes them, 'fanout gc --force {run.run_id}' deletes them",
                file=sys.stderr,
            )
            kept += 1
            continue
        paths = [str(i["path"]) for i in _run_worktrees(run).values() if isinstance(i["path"], str)]
        removed = [p for p in paths if has_git and worktree.remove_worktree(project, p)]
        if has_git:  # and any other worktree inside the run directory
            for where in (run.path, run.worktrees_dir):
                removed += [str(p) for p in worktree.remove_run_worktrees(project, where)]
        branches = worktree.delete_run_branches(project, run.run_id) if has_git else []
        for parent in dict.fromkeys(Path(p).parent for p in paths):
            with contextlib.suppress(OSError):
                parent.rmdir()  # the run's worktrees directory, once empty
        run.check()
        shutil.rmtree(run.path)
        active.clear(project, run.run_id)
        removed_runs += 1
        print(f"removed run {run.run_id} ({status.state})")
        for path in removed:
            print(f"  worktree {path}")
        lost = {str(status.tasks[task].branch): why for task, why in unmerged.items()}
        for branch in branches:
            note = f" (deleted unmerged: {lost[branch]})" if branch in lost else ""
            print(f"  branch {branch}{note}")
    if not named and not removed_runs and not kept:
        print("no finished runs to remove")
    return 1 if refused or (named and kept) else 0


def _unmerged(project: Path, run: RunDir, status: RunStatus) -> dict[str, str]:
    """Writers whose committed change no merge put into the working tree, and whose branch is
    still there: task -> what happened to it (``W2 conflicts with W1 in src/a.py``)."""
    from claude_fanout import merge, worktree

    settled = merge.settled_tasks(status.merge)
    collisions = dict(_collisions(status.merge or {}))
    branches = set(worktree.run_branches(project, run.run_id))
    return {
        task_id: collisions.get(task_id, f"{task_id} was never merged")
        for task_id, task in status.tasks.items()
        if task.commit and task.branch in branches and task_id not in settled
    }


_COMMANDS = {
    "merge": cmd_merge,
    "gc": cmd_gc,
    "resume": cmd_resume,
    "publish": cmd_publish,
    "install": cmd_install,
    "uninstall": cmd_install,
    "demo": cmd_demo,
    "run": cmd_run,
    "status": cmd_status,
    "wait": cmd_wait,
    "cancel": cmd_cancel,
    "logs": cmd_logs,
    "runs": cmd_runs,
}

# -- output ------------------------------------------------------------------------------------


def _plan_of(run: RunDir) -> Plan | None:
    try:
        return load_plan(run.plan_path, project=run.project)
    except FanoutError:
        return None


def status_json(run: RunDir, plan: Plan | None, status: RunStatus) -> dict[str, Any]:
    """The documented, stable shape of ``fanout status --json`` (docs/cli.md)."""
    summary = _run_summary(run, status)
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


def _run_summary(run: RunDir, status: RunStatus) -> dict[str, Any]:
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
    }


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


def _styled_state(state: str) -> str:
    style = _STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/]" if style else state


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _console(stream: Any) -> Any:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True)


def _print_status(run: RunDir, plan: Plan | None, status: RunStatus) -> None:
    from rich.table import Table

    summary = _run_summary(run, status)
    console = _console(sys.stdout)
    head = f"run {run.run_id}: {_styled_state(str(status.state))}"
    if summary["duration_s"] is not None:
        head += f" in {_fmt_duration(summary['duration_s'])}"
    if status.reason:
        head += f" ({status.reason})"
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
        duration = task.duration_s
        if duration is None and task.started is not None and not task.state.terminal:
            duration = now - task.started
        exit_text = ""
        if task.exit_code is not None:
            exit_text = str(task.exit_code)
        elif task.signal is not None:
            exit_text = f"sig {task.signal}"
        table.add_row(
            task_id,
            str(spec.kind) if spec else "",
            _styled_state(str(task.state)),
            str(task.attempt) if task.attempt else "",
            _fmt_duration(duration),
            _task_usage(task.usage),
            exit_text,
            Text(task.reason or ""),  # a worker's words: never read as rich markup
        )
    console.print(table)
    totals = usage.total(status.usage, sum(1 for t in status.tasks.values() if t.usage))
    if totals:
        console.print(f"total: {totals}, {usage.turns(status.usage or {})}", markup=False)
    for line in _merge_summary(run, status):
        console.print(line, markup=False)
    for error in status.errors[-3:]:
        console.print(f"[red]error:[/] {error}")


def _task_usage(spent: dict[str, float] | None) -> str:
    """``$0.03 4 turns``; '' for a task that is not claude (tokens: the total line, --json)."""
    from claude_fanout import usage

    if not spent:
        return ""
    return f"{usage.money(spent.get('cost_usd', 0.0))} {usage.turns(spent)}"


def _merge_summary(run: RunDir, status: RunStatus) -> list[str]:
    """Writers' merge-back in a line or two: what was merged, what conflicted, what to run."""
    writers = [task_id for task_id, task in status.tasks.items() if task.branch]
    if not writers:
        return []
    merge = status.merge
    if merge is None:
        return [f"merge: not yet; `fanout merge {run.run_id}` merges {', '.join(writers)}"]
    if merge.get("error"):
        return [f"merge: failed ({merge['error']}); `fanout merge {run.run_id}` tries again"]
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
    collisions = _collisions(merge)
    if collisions:
        bits.append("NOT merged: " + "; ".join(text for _, text in collisions))
    line = "merge: " + ("; ".join(bits) or "nothing to merge")
    if collisions:
        tasks = " ".join(task for task, _ in collisions)
        line += f"; resolve or undo the overlap, then `fanout merge {run.run_id} {tasks}`"
    return [line]


def _narrate(console: Any, run: RunDir, event: Event) -> None:
    """One line per task transition while ``fanout run`` waits."""
    kind, task = event.get("type"), event.get("task")
    if kind == "task_started":
        console.print(f"  {task} started (attempt {event.get('attempt')}, pid {event.get('pid')})")
    elif kind == "task_exited":
        outcome = str(event.get("outcome"))
        line = f"  {task} {_styled_state(outcome)} after {_fmt_duration(event.get('duration_s'))}"
        if event.get("reason"):
            line += f": {event['reason']}"
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
            f"  {task} {_styled_state(str(event.get('outcome') or 'skipped'))}: "
            f"{event.get('reason')}"
        )


def _narrate_merge(console: Any, event: Event) -> None:
    """The merge-back as ``fanout run`` ends: what went into the working tree, who collided."""
    if event.get("error"):
        console.print(f"  merge-back failed: {event['error']}", markup=False)
        return
    merged = event.get("merged")
    names = ", ".join(map(str, merged)) if isinstance(merged, list) and merged else "nothing"
    console.print(f"  merge-back into the working tree: {names}", markup=False)
    for _, text in _collisions(event):
        console.print(f"  {text}: not merged", markup=False)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
