"""``fanout doctor``'s runs section: the run store's safety, live and unreadable runs, leftover
worktrees and branches, and processes of finished runs that are still alive."""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.doctor.findings import FAIL, OK, WARN, Check


def store_checks(project: Path) -> list[Check]:
    from claude_fanout.store.files import private_dir_problem

    section = "runs"
    root = project / defaults.RUNS_DIR
    if not os.path.lexists(root):
        return [Check(section, "run store", OK, f"no runs yet ({root})")]
    problem = private_dir_problem(root)
    if problem is not None:
        return [Check(section, "run store", FAIL, problem)]
    checks: list[Check] = []
    loose: list[str] = []
    unsafe: list[str] = []
    for path in [root, *sorted(root.iterdir())]:
        st = os.lstat(path)
        if path != root and path.name.startswith(".") and not stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode) or (path != root and not stat.S_ISDIR(st.st_mode)):
            unsafe.append(f"{path.name} is a {'symlink' if stat.S_ISLNK(st.st_mode) else 'file'}")
        elif st.st_uid != os.geteuid():
            unsafe.append(f"{path.name} belongs to uid {st.st_uid}")
        elif st.st_mode & 0o077:
            loose.append(f"{path.name} ({stat.S_IMODE(st.st_mode):o})")
    if unsafe:
        checks.append(
            Check(
                section,
                "run store",
                FAIL,
                f"{root}: {'; '.join(unsafe[:3])}: fanout never follows links or uses others' "
                "files in its store; remove them",
            )
        )
    elif loose:
        checks.append(
            Check(
                section,
                "run store",
                WARN,
                f"{root}: readable by others: {', '.join(loose[:3])}; fanout tightens what it "
                "writes to 0700, `chmod -R go= .claude/runs` fixes the rest",
            )
        )
    else:
        checks.append(Check(section, "run store", OK, f"{root}: private (0700, yours, no links)"))
    return [*checks, *_run_checks(project)]


def _run_checks(project: Path) -> list[Check]:
    from claude_fanout.errors import FanoutError, UnsafePathError
    from claude_fanout.runtime.control import observe
    from claude_fanout.store.rundir import list_runs

    section = "runs"
    states: dict[str, str] = {}
    live: list[str] = []
    unreadable: list[str] = []
    unsafe = False
    for run in list_runs(project):
        try:
            status = observe(run)
        except (FanoutError, OSError) as exc:
            unreadable.append(f"{run.run_id}: {exc}")
            unsafe = unsafe or isinstance(exc, UnsafePathError)
            continue
        states[run.run_id] = str(status.state)
        if not status.state.terminal:
            running = sum(1 for t in status.tasks.values() if str(t.state) == "running")
            live.append(f"{run.run_id} ({status.state}, {running} running)")
    checks = [
        Check(
            section,
            "live runs",
            OK,
            f"{len(live)} live: {', '.join(live[:5])} (`fanout status RUN`)" if live else "none",
        )
    ]
    if unreadable:
        checks.append(
            Check(
                section,
                "unreadable runs",
                FAIL if unsafe else WARN,
                f"{'; '.join(unreadable[:3])} (`fanout gc RUN` removes a run you no longer need)",
            )
        )
    checks += _leftover_checks(project, states)
    checks += _orphan_checks(project, states)
    return checks


def _leftover_checks(project: Path, states: Mapping[str, str]) -> list[Check]:
    from claude_fanout.git import repo
    from claude_fanout.git.worktrees import BRANCH_PREFIX, list_worktrees

    try:
        root = repo.repo_root(project)
        worktrees = list_worktrees(root)
        refs = repo.run_git(
            [
                "for-each-ref",
                "--format=%(refname:strip=2)",
                f"refs/heads/{BRANCH_PREFIX}/",
            ],
            cwd=root,
        )
    except (repo.GitError, OSError):  # not a git repository, or no git at all
        return []
    base = os.path.realpath(project / defaults.WORKTREES_DIR)
    finished: Counter[str] = Counter()
    gone: list[str] = []
    for info in worktrees[1:]:
        rel = os.path.relpath(os.path.realpath(info.path), base)
        if rel.startswith(".."):
            continue
        run_id = rel.split(os.sep)[0]
        _tally(run_id, f"worktree {info.path}", states, finished, gone)
    for branch in refs.stdout.decode("utf-8", "replace").splitlines():
        parts = branch.split("/")
        if len(parts) >= 3:
            _tally(parts[1], f"branch {branch}", states, finished, gone)
    checks = []
    if finished:
        runs = ", ".join(sorted(finished))
        checks.append(
            Check(
                "runs",
                "leftovers",
                WARN,
                f"finished runs keep {sum(finished.values())} worktree(s)/branch(es) ({runs}): "
                "merge what you want, then `fanout gc --all-finished`",
            )
        )
    if gone:
        checks.append(
            Check(
                "runs",
                "leftovers",
                WARN,
                f"no run directory for {', '.join(gone[:3])}{' …' if len(gone) > 3 else ''}: "
                "`git worktree remove PATH` / `git branch -D BRANCH` once you have what you need",
            )
        )
    if not checks:
        checks.append(Check("runs", "leftovers", OK, "no leftover worktrees or branches"))
    return checks


def _tally(
    run_id: str, what: str, states: Mapping[str, str], finished: Counter[str], gone: list[str]
) -> None:
    state = states.get(run_id)
    if state is None:
        gone.append(what)
    elif state in ("succeeded", "failed", "cancelled", "lost"):
        finished[run_id] += 1


def _orphan_checks(project: Path, states: Mapping[str, str]) -> list[Check]:
    """Processes started for a run of this project (``FANOUT_RUN_DIR`` in their environment)
    that outlive it: the run is finished, lost or gone."""
    from claude_fanout import procs

    root = os.path.realpath(project / defaults.RUNS_DIR)
    orphans: list[str] = []
    for pid, run_dir in sorted(procs.processes_with_env("FANOUT_RUN_DIR").items()):
        if os.path.dirname(os.path.realpath(run_dir)) != root:
            continue
        state = states.get(os.path.basename(run_dir))
        if state is None or state in ("succeeded", "failed", "cancelled", "lost"):
            orphans.append(
                f"pid {pid} ({(procs.command_line(pid) or '?')[:60]}) of "
                f"{state or 'a removed'} run {os.path.basename(run_dir)}"
            )
    if orphans:
        return [
            Check(
                "runs",
                "orphans",
                FAIL,
                f"{len(orphans)} process(es) outlived their run: {'; '.join(orphans[:3])}: "
                "stop them with `kill -- -PGID` (`ps -o pgid= PID`)",
            )
        ]
    return [Check("runs", "orphans", OK, "no process outlives its run")]
