"""Git worktrees for writer tasks: snapshot the Conductor's tree, one worktree + branch per task.

Every git call goes through ``run_git``: a bounded timeout, a fixed environment (C locale, no
prompt, no pager, no repository override inherited from a hook), the user's hooks, signing, auto
gc and fsmonitor switched off, and a one-line ``GitError`` naming the command, the directory and
git's own first line of complaint.

The user's repository is only ever *added to*: objects, ``fanout/<RUN_ID>/<TASK>`` branches and
worktrees. Their index, HEAD, stash and files are never written (``snapshot`` builds its tree in a
temporary index file).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.errors import FanoutError

GIT_TIMEOUT_S = 120.0
# `worktree add` checks out a whole tree and `add -A` hashes every changed file: big repos.
GIT_SLOW_TIMEOUT_S = 600.0
BRANCH_PREFIX = "fanout"
IDENTITY = ("claude-fanout", "fanout@claude-fanout.invalid")
INCLUDE_FILE = ".worktreeinclude"

# Configuration that would make fanout's own git calls run user code, sign, spawn daemons or
# background gc (a detached `git gc` outliving the call), or print for a terminal.
_CONFIG = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "core.fsmonitor=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.pager=cat",
    "color.ui=false",
    "advice.detachedHead=false",
    "advice.addEmbeddedRepo=false",
)
# Inherited from a git hook or a wrapper, these would point our calls at another repository.
_ENV_DROP = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class GitError(FanoutError):
    """A git command failed or timed out."""


class NotAGitRepoError(GitError):
    """The project is not inside a git working tree."""

    exit_code = 2


class DepsConflictError(GitError):
    """The branches a writer depends on cannot be merged onto its base without conflicts."""

    def __init__(self, message: str, *, branches: Sequence[str], files: Sequence[str]) -> None:
        super().__init__(message)
        self.branches = list(branches)
        self.files = list(files)


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    name, email = IDENTITY
    env.update(
        LC_ALL="C",
        LANGUAGE="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_PAGER="cat",
        PAGER="cat",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        # Our reads (diff, status) must not refresh and rewrite the user's index.
        GIT_OPTIONAL_LOCKS="0",
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
    )
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = GIT_TIMEOUT_S,
    ok: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` in ``cwd``; an exit code outside ``ok`` raises a one-line ``GitError``."""
    argv = ["git"]
    for item in _CONFIG:
        argv += ["-c", item]
    argv += list(args)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=git_env(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if not os.path.isdir(cwd):
            raise GitError(f"git {args[0]}: directory {os.fspath(cwd)} does not exist") from None
        raise GitError(
            "git is not installed (or not on PATH); install git to run tasks with write: true"
        ) from exc
    except subprocess.TimeoutExpired:
        raise GitError(
            f"git {args[0]} timed out after {timeout:.0f}s in {os.fspath(cwd)}; "
            "check the repository (a huge tree, a stale lock) and retry"
        ) from None
    if proc.returncode not in ok:
        raise GitError(
            f"git {' '.join(args[:2])} failed in {os.fspath(cwd)} (exit {proc.returncode}): "
            f"{_first_line(proc.stderr) or _first_line(proc.stdout) or 'no message'}"
        )
    return proc


def _first_line(data: bytes) -> str:
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("hint:"):
            return line.removeprefix("fatal: ").removeprefix("error: ")[:300]
    return ""


def _split_z(data: bytes) -> list[str]:
    return [os.fsdecode(item) for item in data.split(b"\0") if item]


# -- the repository ----------------------------------------------------------------------------


def repo_root(project: str | os.PathLike[str]) -> Path:
    """The top of the git working tree holding ``project``; ``NotAGitRepoError`` if none."""
    path = Path(project)
    if not path.is_dir():
        raise NotAGitRepoError(f"project {path} is not a directory; run fanout inside your project")
    try:
        proc = run_git(["rev-parse", "--show-toplevel"], cwd=path)
    except GitError:
        raise NotAGitRepoError(
            f"{path} is not inside a git repository; tasks with write: true need one: "
            f"run 'git init' in {path} (or drop write: true)"
        ) from None
    top = os.fsdecode(proc.stdout.rstrip(b"\n"))
    if not top:
        raise NotAGitRepoError(
            f"{path} is inside a bare git repository; run fanout in a working tree"
        )
    return Path(top)


def worktree_cwd(project: str | os.PathLike[str], worktree: str | os.PathLike[str]) -> Path:
    """Where a worker runs inside ``worktree``: the project's place in the repository (the
    repository's top unless the project is a sub-directory of it)."""
    root = repo_root(project)
    relative = Path(os.path.realpath(project)).relative_to(os.path.realpath(root))
    return Path(worktree) / relative


def head_commit(root: Path) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], cwd=root, ok=(0, 1))
    text = proc.stdout.decode().strip()
    return text or None


def resolve_commit(root: Path, rev: str) -> str:
    proc = run_git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root, ok=(0, 1))
    text = proc.stdout.decode().strip()
    if not text:
        raise GitError(f"no commit '{rev}' in {root}; was the branch deleted ('fanout gc')?")
    return text


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


def _inside(path: Path, parent: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(parent))
    except ValueError:
        return False
    return True


# -- snapshot ----------------------------------------------------------------------------------


def snapshot(project: str | os.PathLike[str]) -> str:
    """A commit of the project's working tree as it is now: tracked changes, untracked files that
    are not ignored, parent HEAD (none on an unborn branch). Built in a temporary index, so the
    user's index, HEAD, stash and files are untouched. fanout's run store and any worktree inside
    the project are left out."""
    root = repo_root(project)
    excludes = [Path(project) / defaults.RUNS_DIR]
    excludes += [info.path for info in list_worktrees(root)[1:] if _inside(info.path, root)]
    pathspec = ["."] + [f":(exclude,literal){rel}" for rel in _unignored(root, excludes)]
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


def _unignored(root: Path, paths: Sequence[Path]) -> list[str]:
    """``paths`` inside ``root`` that git does not ignore, relative. (Naming an ignored path,
    even in an exclude pathspec, makes ``git add`` fail.)"""
    relative = []
    for path in paths:
        if _inside(path, root):
            rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
            if rel.parts:
                relative.append(rel.as_posix())
    if not relative:
        return []
    proc = run_git(
        ["check-ignore", "-z", "--stdin"],
        cwd=root,
        input=b"".join(os.fsencode(p) + b"\0" for p in relative),
        ok=(0, 1),
    )
    ignored = set(_split_z(proc.stdout))
    return [rel for rel in relative if rel not in ignored]


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
    candidates = [p for p in _split_z(listed.stdout) if not p.endswith("/")]
    if not candidates:
        return []
    checked = run_git(
        ["check-ignore", "-z", "--stdin"],
        cwd=src_root,
        input=b"".join(os.fsencode(p) + b"\0" for p in candidates),
        ok=(0, 1),
    )
    ignored = set(_split_z(checked.stdout))
    copied = []
    for rel in candidates:
        if rel in ignored and _copy_one(src_root, dst_root, rel):
            copied.append(rel)
    return copied


def _copy_one(src_root: Path, dst_root: Path, rel: str) -> bool:
    parts = Path(rel).parts
    if not parts or any(p in ("..", ".") for p in parts) or parts[0] == ".git":
        return False
    # The source's parents must be real directories: nothing is read through a link.
    here = src_root
    for part in parts[:-1]:
        here = here / part
        try:
            if not stat.S_ISDIR(os.lstat(here).st_mode):
                return False
        except FileNotFoundError:
            return False
    src = src_root.joinpath(*parts)
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        return False
    link_target: str | None = None
    if stat.S_ISLNK(st.st_mode):
        if not _inside(src, src_root):
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
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd_in = os.open(src, os.O_RDONLY | nofollow)
    try:
        fd_out = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, stat.S_IMODE(st.st_mode)
        )
        try:
            while chunk := os.read(fd_in, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view) :]
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return True


def make_parents(root: Path, parts: Sequence[str]) -> Path | None:
    """``root/parts...`` as real directories, created where missing; None when one of them is a
    symlink or a file (the caller must not write there)."""
    here = root
    for part in parts:
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            os.mkdir(here)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return None
    return here


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
            files = sorted(set(_split_z(b"\0".join(fields[1:]))))
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


def commit(worktree: str | os.PathLike[str], message: str) -> str | None:
    """Stage everything in ``worktree`` and commit it as claude-fanout (no user identity, hooks
    or signing needed); the new commit, or None when nothing changed."""
    path = Path(worktree)
    excluded = _unignored(path, [path / defaults.RUNS_DIR])
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


def changed_files(project: str | os.PathLike[str], base: str, commit: str) -> list[str]:
    """Paths that differ between ``base`` and ``commit`` (repository-relative, no renames)."""
    proc = run_git(
        ["diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", base, commit, "--"],
        cwd=repo_root(project),
    )
    return _split_z(proc.stdout)


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
        if _inside(info.path, directory) and remove_worktree(project, info.path):
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
