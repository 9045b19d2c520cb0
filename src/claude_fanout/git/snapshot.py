"""The snapshot of the Conductor's working tree that writers start from, and the start commit
of a writer that builds on other writers' branches.

``snapshot`` builds its tree in a temporary index file: the user's index, HEAD, stash and files
are never written. ``base_with_deps`` merges with ``git merge-tree --write-tree``: no worktree,
index or ref is touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.git.repo import (
    GIT_SLOW_TIMEOUT_S,
    GitError,
    head_commit,
    inside,
    repo_root,
    resolve_commit,
    run_git,
    split_z,
    unignored,
)
from claude_fanout.git.worktrees import list_worktrees


class DepsConflictError(GitError):
    """The branches a writer depends on cannot be merged onto its base without conflicts."""

    def __init__(self, message: str, *, branches: Sequence[str], files: Sequence[str]) -> None:
        super().__init__(message)
        self.branches = list(branches)
        self.files = list(files)


def snapshot(project: str | os.PathLike[str]) -> str:
    """A commit of the project's working tree as it is now: tracked changes, untracked files that
    are not ignored, parent HEAD (none on an unborn branch). Built in a temporary index, so the
    user's index, HEAD, stash and files are untouched. fanout's run store and any worktree inside
    the project are left out."""
    root = repo_root(project)
    excludes = [Path(project) / defaults.RUNS_DIR]
    excludes += [info.path for info in list_worktrees(root)[1:] if inside(info.path, root)]
    pathspec = ["."] + [f":(exclude,literal){rel}" for rel in unignored(root, excludes)]
    parent = head_commit(root)
    index_path = root / os.fsdecode(
        run_git(["rev-parse", "--git-path", "index"], cwd=root).stdout.rstrip(b"\n")
    )
    with tempfile.TemporaryDirectory(prefix="fanout-snapshot-") as scratch:
        temp_index = os.path.join(scratch, "index")
        env = {"GIT_INDEX_FILE": temp_index}
        # A copy of the user's index keeps its stat data: only files that changed are hashed.
        copied = False
        try:
            shutil.copyfile(index_path, temp_index)
            copied = True
        except FileNotFoundError:
            pass
        add = ["add", "-A", "--", *pathspec]
        try:
            if not copied and parent is not None:
                run_git(["read-tree", parent], cwd=root, env=env)
            run_git(add, cwd=root, env=env, timeout=GIT_SLOW_TIMEOUT_S)
        except GitError:
            if not copied:
                raise
            # An index git cannot use from elsewhere (split index, sparse index): rebuild it.
            os.unlink(temp_index)
            if parent is not None:
                run_git(["read-tree", parent], cwd=root, env=env)
            run_git(add, cwd=root, env=env, timeout=GIT_SLOW_TIMEOUT_S)
        tree = run_git(["write-tree"], cwd=root, env=env).stdout.decode().strip()
    args = ["commit-tree", "--no-gpg-sign", tree, "-m", f"fanout snapshot of {root}"]
    if parent is not None:
        args[2:2] = ["-p", parent]
    return run_git(args, cwd=root).stdout.decode().strip()


def base_with_deps(project: str | os.PathLike[str], base: str, dep_branches: Sequence[str]) -> str:
    """A commit that merges ``dep_branches`` (in order) onto ``base``, for a writer that builds on
    other writers' work; ``base`` itself when there is nothing to merge. Uses ``git merge-tree
    --write-tree``: no worktree, index or ref is touched."""
    root = repo_root(project)
    current = resolve_commit(root, base)
    for number, branch in enumerate(dep_branches):
        theirs = resolve_commit(root, branch)
        ancestor = run_git(["merge-base", "--is-ancestor", theirs, current], cwd=root, ok=(0, 1))
        if ancestor.returncode == 0:
            continue
        proc = run_git(
            ["merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", current, theirs],
            cwd=root,
            ok=(0, 1),
        )
        fields = proc.stdout.split(b"\0")
        tree = fields[0].decode().strip()
        if proc.returncode == 1:
            files = sorted(set(split_z(b"\0".join(fields[1:]))))
            names = list(dep_branches[: number + 1])
            raise DepsConflictError(
                f"the dependencies' branches {', '.join(names)} conflict in "
                f"{', '.join(files) or 'some files'}; merge them by hand or drop a dependency",
                branches=names,
                files=files,
            )
        current = (
            run_git(
                [
                    "commit-tree",
                    "--no-gpg-sign",
                    tree,
                    "-p",
                    current,
                    "-p",
                    theirs,
                    "-m",
                    f"fanout: start from {branch}",
                ],
                cwd=root,
            )
            .stdout.decode()
            .strip()
        )
    return current
