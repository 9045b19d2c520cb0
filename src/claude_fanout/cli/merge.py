"""The commands that bring writers' work home and clean up: ``merge`` and ``gc``."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout.cli.common import UsageError, conflict_lines, observe_swept, plan_of
from claude_fanout.errors import FanoutError
from claude_fanout.runner import EXIT_NOT_MERGED
from claude_fanout.runtime.control import observe
from claude_fanout.store.rundir import RunDir, list_runs, resolve_run
from claude_fanout.store.status import RunStatus, TaskStatus

if TYPE_CHECKING:
    import argparse

    from claude_fanout.git.merge import MergeReport


def add_parsers(sub: Any) -> None:
    """The merge and gc arguments, each parser bound to its command."""
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
    merge.set_defaults(handler=cmd_merge)

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
    gc.set_defaults(handler=cmd_gc)


def cmd_merge(args: argparse.Namespace, project: Path) -> int:
    """Predict, merge what applies cleanly into the working tree, report the rest, record it.
    With task ids: exactly those, in that order, whatever earlier merges did."""
    from claude_fanout.git import merge

    run = resolve_run(project, args.run)
    status = observe(run)
    writers = {task_id: task for task_id, task in status.tasks.items() if task.branch}
    if not writers:
        raise FanoutError(
            f"run {run.run_id} made no worktrees (no task with write: true): nothing to merge"
        )
    plan = plan_of(run)
    order = [t for t in plan.ids if t in writers] if plan else []
    order += [t for t in writers if t not in order]
    base = merge.run_base(project, [b for t in order if (b := writers[t].base) is not None])
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
        writer = writers[task]
        if not writer.committed:
            skipped.append(task)
        elif not writer.commit:
            unchanged.append(task)
        else:
            branches.append((task, str(writer.branch)))
    settled = merge.settled_tasks(status.merge)
    # Named tasks merge whatever earlier merges did; what those applied only explains conflicts.
    context = [
        (task, str(writer.branch))
        for task, writer in (writers.items() if chosen else ())
        if task in settled and task not in chosen and writer.committed
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


def _check_chosen(
    run: RunDir,
    chosen: list[str],
    writers: list[str],
    worktrees: dict[str, TaskStatus],
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
        if not worktrees[task].committed:
            if task in running:
                raise UsageError(f"merge: task {task} is still running; merge it once it is done")
            raise UsageError(
                f"merge: task {task} did not succeed, so it has no change to merge "
                f"('fanout resume {run.run_id}' runs it again)"
            )


def _print_merge(
    run: RunDir, report: MergeReport, order: list[str], *, running: set[str], chosen: bool
) -> None:
    from claude_fanout.git import merge

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


def cmd_gc(args: argparse.Namespace, project: Path) -> int:
    """Remove finished runs: worktrees, fanout/<RUN>/* branches, then the run directory."""
    import shutil

    from claude_fanout.git import repo, worktrees
    from claude_fanout.store import active

    if not args.runs and not args.all_finished:
        raise UsageError(
            "gc: name the runs to remove (fanout gc RUN ...) or pass --all-finished "
            "to remove every finished run"
        )
    named = bool(args.runs)
    runs = [resolve_run(project, r) for r in args.runs] if named else list_runs(project)
    try:
        repo.repo_root(project)
        has_git = True
    except repo.NotAGitRepoError:
        has_git = False
    refused = removed_runs = kept = 0
    for run in runs:
        status = observe_swept(run, "gc")
        if not status.state.terminal:
            if named:
                print(
                    f"fanout: run {run.run_id} is {status.state}: not removed "
                    f"(fanout cancel {run.run_id} first)",
                    file=sys.stderr,
                )
                refused += 1
            continue
        unmerged = _unmerged(project, status) if has_git else {}
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
        paths = [task.worktree for task in status.tasks.values() if task.worktree is not None]
        removed = [p for p in paths if has_git and worktrees.remove_worktree(project, p)]
        if has_git:  # and any other worktree inside the run directory
            for where in (run.path, run.worktrees_dir):
                removed += [str(p) for p in worktrees.remove_run_worktrees(project, where)]
        branches = worktrees.delete_run_branches(project, run.run_id) if has_git else []
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


def _unmerged(project: Path, status: RunStatus) -> dict[str, str]:
    """Writers whose committed change is not in the working tree: task -> what happened to it
    (``W2 conflicts with W1 in src/a.py``)."""
    from claude_fanout.git import merge

    collisions = dict(conflict_lines(status.merge or {}))
    return {
        task_id: collisions.get(task_id, f"{task_id} was never merged")
        for task_id in merge.unmerged_writers(project, status)
    }
