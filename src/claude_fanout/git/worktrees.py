"""Writers' git worktrees and branches: one ``fanout/<RUN_ID>/<TASK>`` branch and worktree per
writer task, the ignored files ``.worktreeinclude`` lists copied in, a writer's changes committed
on its branch, and a run's worktrees and branches removed again (``fanout gc``).

Branch-name rules (``ref_name_problem``, ``branch_name_problem``) are pure Python, so validating a
plan spawns no git.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.git.repo import (
    GIT_SLOW_TIMEOUT_S,
    GitError,
    ignored_paths,
    inside,
    make_parents,
    repo_root,
    resolve_commit,
    run_git,
    split_z,
    unignored,
)
from claude_fanout.store.files import write_all

BRANCH_PREFIX = "fanout"
INCLUDE_FILE = ".worktreeinclude"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def worktree_cwd(project: str | os.PathLike[str], worktree: str | os.PathLike[str]) -> Path:
    """Where a worker runs inside ``worktree``: the project's place in the repository (the
    repository's top unless the project is a sub-directory of it)."""
    root = repo_root(project)
    relative = Path(os.path.realpath(project)).relative_to(os.path.realpath(root))
    return Path(worktree) / relative


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None  # full ref, e.g. refs/heads/fanout/RUN/W1; None when detached


def list_worktrees(project: str | os.PathLike[str]) -> list[WorktreeInfo]:
    """Every worktree git knows of for the repository, the main one first."""
    proc = run_git(["worktree", "list", "--porcelain", "-z"], cwd=repo_root(project))
    found: list[WorktreeInfo] = []
    path: str | None = None
    head: str | None = None
    branch: str | None = None
    for field in proc.stdout.split(b"\0"):
        if not field:
            if path is not None:
                found.append(WorktreeInfo(Path(path), head, branch))
            path = head = branch = None
            continue
        key, _, value = field.partition(b" ")
        if key == b"worktree":
            path = os.fsdecode(value)
        elif key == b"HEAD":
            head = value.decode()
        elif key == b"branch":
            branch = os.fsdecode(value)
    if path is not None:
        found.append(WorktreeInfo(Path(path), head, branch))
    return found


# -- worktrees ---------------------------------------------------------------------------------


def branch_name(run_id: str, task_id: str) -> str:
    return f"{BRANCH_PREFIX}/{run_id}/{task_id}"


# Characters git never allows in a ref name: controls, space, ~ ^ : ? * [ and backslash.
_REF_BAD_CHARS = frozenset(" ~^:?*[\\\x7f" + "".join(map(chr, range(0x20))))


def ref_name_problem(name: str) -> str | None:
    """Why git would refuse ``name`` as a ref name (the rules of ``git check-ref-format``), or
    None when it is valid. Pure Python: validating a plan spawns no git per task."""
    if name == "@":
        return "it is '@' alone"
    bad = next((char for char in name if char in _REF_BAD_CHARS), None)
    if bad is not None:
        return f"it contains {bad!r}"
    if ".." in name:
        return "it contains '..'"
    if "@{" in name:
        return "it contains '@{'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if not part:
            return "it has an empty part between slashes"
        if part.startswith("."):
            return f"its part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"its part {part!r} ends with '.lock'"
    return None


def branch_name_problem(name: str) -> str | None:
    """Why git would refuse ``name`` as a branch name (``git check-ref-format --branch``)."""
    if name.startswith("-"):
        return "it starts with '-'"
    if name == "HEAD":
        return "it is HEAD"
    return ref_name_problem(f"refs/heads/{name}")


def create(
    project: str | os.PathLike[str],
    *,
    worktrees_dir: str | os.PathLike[str],
    run_id: str,
    task_id: str,
    base: str,
) -> Path:
    """``git worktree add -b fanout/RUN/TASK WORKTREES_DIR/TASK BASE``, then copy the ignored
    files the project lists in ``.worktreeinclude``. Returns the worktree's path."""
    root = repo_root(project)
    branch = branch_name(run_id, task_id)
    check = run_git(["check-ref-format", "--branch", branch], cwd=root, ok=(0, 1, 128))
    if check.returncode != 0:
        raise GitError(
            f"task {task_id}: '{branch}' is no valid git branch name; "
            "rename the task (letters, digits, '_' and '-')"
        )
    parent = Path(worktrees_dir)
    path = parent / task_id
    parent.mkdir(parents=True, exist_ok=True)
    if parent.is_symlink():
        raise GitError(f"worktrees directory {parent} is a symlink; fanout never follows one")
    if os.path.lexists(path):
        raise GitError(
            f"task {task_id}: {path} already exists; remove it (or 'fanout gc {run_id}') first"
        )
    run_git(
        ["worktree", "add", "--quiet", "-b", branch, os.fspath(path), base],
        cwd=root,
        timeout=GIT_SLOW_TIMEOUT_S,
    )
    copy_included(root, path)
    return path


def copy_included(source: str | os.PathLike[str], worktree: str | os.PathLike[str]) -> list[str]:
    """Copy into ``worktree`` the files of ``source`` that match its ``.worktreeinclude``
    (gitignore syntax) *and* are ignored by git, as Claude Code does: tracked files come from the
    checkout and are never copied. Symlinks are copied as links only when they point inside the
    source; nothing is written through a symlink or over an existing file. Returns what was
    copied, relative paths in git's order."""
    src_root, dst_root = Path(source), Path(worktree)
    include = src_root / INCLUDE_FILE
    try:
        if not stat.S_ISREG(os.lstat(include).st_mode):
            return []
    except FileNotFoundError:
        return []
    listed = run_git(
        ["ls-files", "-z", "--others", "--ignored", f"--exclude-from={include}"],
        cwd=src_root,
        timeout=GIT_SLOW_TIMEOUT_S,
    )
    candidates = [p for p in split_z(listed.stdout) if not p.endswith("/")]
    if not candidates:
        return []
    ignored = ignored_paths(src_root, candidates)
    copied = []
    for rel in candidates:
        if rel in ignored and _copy_one(src_root, dst_root, rel):
            copied.append(rel)
    return copied


def _copy_one(src_root: Path, dst_root: Path, rel: str) -> bool:
    parts = Path(rel).parts
    if not parts or any(p in ("..", ".") for p in parts) or parts[0] == ".git":
        return False
    if not _real_directories(src_root, parts[:-1]):
        return False
    src = src_root.joinpath(*parts)
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return False
    link_target: str | None = None
    if stat.S_ISLNK(st.st_mode):
        if not inside(src, src_root):
            return False
        link_target = os.readlink(src)
    elif not stat.S_ISREG(st.st_mode):
        return False
    dst_dir = make_parents(dst_root, parts[:-1])
    if dst_dir is None:
        return False
    dst = dst_dir / parts[-1]
    if os.path.lexists(dst):
        return False
    if link_target is not None:
        os.symlink(link_target, dst)
        return True
    _copy_file(src, dst, stat.S_IMODE(st.st_mode))
    return True


def _real_directories(root: Path, parts: Sequence[str]) -> bool:
    """Whether ``root/parts...`` are all real directories: nothing is read through a link."""
    here = root
    for part in parts:
        here = here / part
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _copy_file(src: Path, dst: Path, mode: int) -> None:
    """Copy a regular file to a new ``dst`` (never through a symlink, never over a file)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd_in = os.open(src, os.O_RDONLY | nofollow)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, mode)
        try:
            while chunk := os.read(fd_in, 1 << 20):
                write_all(fd_out, chunk)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def commit(worktree: str | os.PathLike[str], message: str) -> str | None:
    """Stage everything in ``worktree`` and commit it as claude-fanout (no user identity, hooks
    or signing needed); the new commit, or None when nothing changed."""
    path = Path(worktree)
    excluded = unignored(path, [path / defaults.RUNS_DIR])
    pathspec = ["."] + [f":(exclude,literal){rel}" for rel in excluded]
    run_git(["add", "-A", "--", *pathspec], cwd=path, timeout=GIT_SLOW_TIMEOUT_S)
    staged = run_git(["diff", "--cached", "--quiet", "--no-ext-diff"], cwd=path, ok=(0, 1))
    if staged.returncode == 0:
        return None
    run_git(
        [
            "commit",
            "--quiet",
            "--no-verify",
            "--no-gpg-sign",
            "--allow-empty-message",
            "-m",
            message,
        ],
        cwd=path,
        timeout=GIT_SLOW_TIMEOUT_S,
    )
    return resolve_commit(path, "HEAD")


# -- clean-up ----------------------------------------------------------------------------------


def remove_worktree(project: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Remove one registered worktree (even with local changes or locked); True if it was one."""
    target = os.path.realpath(path)
    known = [
        info.path for info in list_worktrees(project)[1:] if os.path.realpath(info.path) == target
    ]
    if not known:
        return False
    root = repo_root(project)
    try:
        run_git(["worktree", "remove", "--force", "--force", os.fspath(known[0])], cwd=root)
    except GitError:
        # A worktree git refuses to remove (missing directory, submodules): delete and prune.
        if os.path.isdir(target) and not os.path.islink(known[0]):
            shutil.rmtree(target)
        run_git(["worktree", "prune"], cwd=root)
    return True


def remove_run_worktrees(
    project: str | os.PathLike[str], worktrees_dir: str | os.PathLike[str]
) -> list[Path]:
    """Remove every worktree under ``worktrees_dir`` (one run's), then the directory itself when
    nothing else is left in it. Returns the worktrees removed."""
    directory = Path(worktrees_dir)
    removed = []
    for info in list_worktrees(project)[1:]:
        if inside(info.path, directory) and remove_worktree(project, info.path):
            removed.append(info.path)
    root = repo_root(project)
    run_git(["worktree", "prune"], cwd=root)
    if directory.is_dir() and not directory.is_symlink():
        for child in directory.iterdir():
            # A former worktree git has already forgotten: a directory with a `.git` file.
            if child.is_dir() and not child.is_symlink() and (child / ".git").is_file():
                shutil.rmtree(child)
                removed.append(child)
        with contextlib.suppress(OSError):
            directory.rmdir()
    return removed


def run_branches(project: str | os.PathLike[str], run_id: str) -> list[str]:
    """The run's ``fanout/<RUN_ID>/*`` branch names."""
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise GitError(f"'{run_id}' is no run id; see 'fanout runs'")
    proc = run_git(
        ["for-each-ref", "--format=%(refname:strip=2)", f"refs/heads/{BRANCH_PREFIX}/{run_id}/"],
        cwd=repo_root(project),
    )
    return [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line]


def delete_run_branches(project: str | os.PathLike[str], run_id: str) -> list[str]:
    """Delete the run's ``fanout/<RUN_ID>/*`` branches, first removing any worktree that has one
    checked out, and prune git's worktree records. Returns the branches deleted."""
    branches = run_branches(project, run_id)
    if not branches:
        run_git(["worktree", "prune"], cwd=repo_root(project))
        return []
    refs = {f"refs/heads/{name}" for name in branches}
    for info in list_worktrees(project)[1:]:
        if info.branch in refs:
            remove_worktree(project, info.path)
    root = repo_root(project)
    run_git(["worktree", "prune"], cwd=root)
    run_git(["branch", "-D", "--quiet", "--", *branches], cwd=root)
    return branches
