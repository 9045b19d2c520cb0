"""Writers' worktrees during a run: make one for a ``write: true`` task, commit what the writer
did, and publish previews of the files it changed.

A writer runs in a git worktree of its own, made on its first attempt from the run's snapshot of
the working tree plus what the writers it depends on committed. When it succeeds its changes are
committed on its branch, and ``replace`` directives let the Conductor read the writer's version of
each file it changed until the merge-back (only where the working tree still holds the snapshot's
version: there, the writer's version *is* the merge).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Task
from claude_fanout.states import EventType
from claude_fanout.store.files import make_ignored_dir, make_private_dir, open_private
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.status import RunStatus

Emit = Callable[..., None]

# The exit status of the set-up shell when the project's worktree set-up command failed.
SETUP_FAILED_EXIT = 97


@dataclass
class Worktrees:
    """A run's writers' worktrees: the snapshot they start from (made at the first writer's
    start) and, per writer, its worktree and branch."""

    base: str | None = None
    trees: dict[str, tuple[Path, str]] = field(default_factory=dict)


def adopt_worktrees(status: RunStatus, task_ids: Collection[str]) -> Worktrees:
    """The worktrees an earlier supervisor of this run made (``fanout resume``), to reuse."""
    found = Worktrees()
    for task_id in task_ids:
        seen = status.tasks.get(task_id)
        if seen is None or seen.worktree is None or seen.branch is None or seen.base is None:
            continue
        if Path(seen.worktree).is_dir():
            found.trees[task_id] = (Path(seen.worktree), seen.branch)
            # One snapshot per run: every writer's worktree was made from it.
            found.base = seen.base
    return found


def worktree_for(
    run: RunDir,
    task: Task,
    worktrees: Worktrees,
    *,
    commit_of: Callable[[str], str | None],
    emit: Emit,
) -> tuple[Path, Path]:
    """(the writer's worktree, its working directory in there), made on its first attempt.
    ``commit_of(task_id)`` is what a finished dependency committed (None: nothing)."""
    from claude_fanout.git import snapshot
    from claude_fanout.git import worktrees as trees

    project = run.project
    if task.id not in worktrees.trees:
        base = run_snapshot(run, worktrees)
        dep_branches = [
            worktrees.trees[dep][1]
            for dep in task.deps
            if dep in worktrees.trees and commit_of(dep)
        ]
        if dep_branches:
            base = snapshot.base_with_deps(project, base, dep_branches)
        path = trees.create(
            project,
            worktrees_dir=run.worktrees_dir,
            run_id=run.run_id,
            task_id=task.id,
            base=base,
        )
        branch = trees.branch_name(run.run_id, task.id)
        worktrees.trees[task.id] = (path, branch)
        emit(
            EventType.WORKTREE_CREATED,
            task=task.id,
            branch=branch,
            path=str(path),
            base=worktrees.base,
            start=base,
        )
    path, _branch = worktrees.trees[task.id]
    return path, trees.worktree_cwd(project, path)


def run_snapshot(run: RunDir, worktrees: Worktrees) -> str:
    """The run's snapshot of the working tree, made on first use: what writers' worktrees start
    from, and what the Ray backend ships to its nodes."""
    from claude_fanout.git import snapshot

    if worktrees.base is None:
        worktrees.base = snapshot.snapshot(run.project)
        make_ignored_dir(run.worktrees_dir.parent.parent, what="writers' worktrees")
    return worktrees.base


def commit_worktree(run: RunDir, task: Task, worktrees: Worktrees, *, emit: Emit) -> None:
    """Commit a writer's changes on its branch and publish previews of the files it changed."""
    from claude_fanout.git import repo
    from claude_fanout.git import worktrees as trees

    path, branch = worktrees.trees[task.id]
    sha = trees.commit(path, f"fanout {run.run_id}/{task.id}\n\n{task.prompt[:2000]}")
    base = worktrees.base
    files = repo.changed_files(run.project, base or "HEAD", sha) if sha else []
    emit(EventType.WORKTREE_COMMITTED, task=task.id, branch=branch, commit=sha, files=files)
    if sha and base:
        publish_previews(run, task, sha, files, base=base, emit=emit)


def publish_previews(
    run: RunDir, task: Task, sha: str, files: list[str], *, base: str, emit: Emit
) -> None:
    """Copy each file the writer changed (where the working tree still holds ``base``'s version)
    into its ``changes/`` and publish a ``replace`` directive pointing there."""
    from claude_fanout.git import repo

    root = repo.repo_root(run.project)
    project_rel = Path(os.path.realpath(run.project)).relative_to(os.path.realpath(root))
    changes = run.out_dir(task.id) / "changes"
    for rel in files[: defaults.MAX_PREVIEW_FILES]:
        try:
            in_project = Path(rel).relative_to(project_rel)
        except ValueError:
            continue
        theirs = git_show(root, sha, rel)
        ours = _working_copy(root / rel)
        if theirs is None or ours is None or ours != git_show(root, base, rel):
            continue
        if _write_preview(changes, in_project, theirs):
            emit(
                EventType.REPLACE,
                task=task.id,
                path=in_project.as_posix(),
                **{"with": (Path("changes") / in_project).as_posix()},
            )


def _working_copy(path: Path) -> bytes | None:
    """The working tree's bytes of ``path``; None for a symlink or an unreadable file (no
    preview then: it never equals a blob)."""
    try:
        return None if path.is_symlink() else path.read_bytes()
    except OSError:
        return None


def _write_preview(changes: Path, in_project: Path, data: bytes) -> bool:
    target = changes / in_project
    try:
        make_private_dir(changes)
        for parent in reversed(target.relative_to(changes).parents[:-1]):
            make_private_dir(changes / parent)
        with os.fdopen(open_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
            handle.write(data)
    except (OSError, FanoutError):
        return False
    return True


def git_show(root: Path, rev: str, path: str) -> bytes | None:
    """The bytes of ``path`` at ``rev``; None when it does not exist there."""
    from claude_fanout.git import repo

    proc = repo.run_git(["cat-file", "blob", f"{rev}:{path}"], cwd=root, ok=(0, 128))
    return proc.stdout if proc.returncode == 0 else None


def with_setup(setup: str, argv: list[str]) -> list[str]:
    """``argv`` preceded by the project's worktree set-up command, in the same process group:
    the shell runs the set-up (output to the log, no stdin) and then becomes the worker."""
    script = (
        f"( {setup}\n) </dev/null >&2 || "
        '{ echo "fanout: the worktree setup command failed (exit $?)" >&2; '
        f"exit {SETUP_FAILED_EXIT}; }}\n"
        'exec "$@"'
    )
    return ["/bin/sh", "-c", script, "fanout-setup", *argv]
