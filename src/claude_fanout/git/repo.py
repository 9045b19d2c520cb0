"""Running git, and reading the repository: the one way fanout calls git.

Every git call goes through ``run_git``: a bounded timeout, a fixed environment (C locale, no
prompt, no pager, no repository override inherited from a hook), the user's hooks, signing, auto
gc and fsmonitor switched off, and a one-line ``GitError`` naming the command, the directory and
git's own first line of complaint.

The user's repository is only ever *added to*: objects, ``fanout/<RUN_ID>/<TASK>`` branches and
worktrees. Their index, HEAD, stash and files are never written.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from claude_fanout.errors import FanoutError

GIT_TIMEOUT_S = 120.0
# `worktree add` checks out a whole tree and `add -A` hashes every changed file: big repos.
GIT_SLOW_TIMEOUT_S = 600.0
IDENTITY = ("claude-fanout", "fanout@claude-fanout.invalid")

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


class GitError(FanoutError):
    """A git command failed or timed out."""


class NotAGitRepoError(GitError):
    """The project is not inside a git working tree."""

    exit_code = 2


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


def split_z(data: bytes) -> list[str]:
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


def inside(path: Path, parent: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(parent))
    except ValueError:
        return False
    return True


def unignored(root: Path, paths: Sequence[Path]) -> list[str]:
    """``paths`` inside ``root`` that git does not ignore, relative. (Naming an ignored path,
    even in an exclude pathspec, makes ``git add`` fail.)"""
    relative = []
    for path in paths:
        if inside(path, root):
            rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
            if rel.parts:
                relative.append(rel.as_posix())
    ignored = ignored_paths(root, relative)
    return [rel for rel in relative if rel not in ignored]


def ignored_paths(root: Path, relative: Sequence[str]) -> set[str]:
    """Which of the ``relative`` paths (inside ``root``) git ignores."""
    if not relative:
        return set()
    proc = run_git(
        ["check-ignore", "-z", "--stdin"],
        cwd=root,
        input=b"".join(os.fsencode(p) + b"\0" for p in relative),
        ok=(0, 1),
    )
    return set(split_z(proc.stdout))


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


def changed_files(project: str | os.PathLike[str], base: str, commit: str) -> list[str]:
    """Paths that differ between ``base`` and ``commit`` (repository-relative, no renames)."""
    proc = run_git(
        ["diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", base, commit, "--"],
        cwd=repo_root(project),
    )
    return split_z(proc.stdout)
