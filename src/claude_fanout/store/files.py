"""Safe file primitives for the run store: no symlinks followed, private modes, atomic writes.

Hook path: standard library only, and not even pathlib (paths are anything ``os.fspath`` takes).
"""

from __future__ import annotations

import json
import os
import stat

from claude_fanout import defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    StrPath: TypeAlias = str | os.PathLike[str]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _unsafe(message: str) -> Exception:
    from claude_fanout.errors import UnsafePathError  # only on the failure path

    return UnsafePathError(message)


def private_dir_problem(path: StrPath) -> str | None:
    """Why ``path`` is no safe store directory (a symlink, not a directory, someone else's), or
    None when it is one. The hooks ask this; everything else calls ``check_private_dir``."""
    name = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{name} does not exist"
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{name} is a symlink; fanout never follows links in its run store: "
            "remove the link and let fanout create the directory"
        )
    if not stat.S_ISDIR(st.st_mode):
        return f"{name} is not a directory; move it aside"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return (
            f"{name} belongs to uid {st.st_uid}, not you (uid {os.geteuid()}); "
            "fanout refuses a run store another user controls"
        )
    return None


def check_private_dir(path: StrPath) -> None:
    """Refuse a store directory that is a symlink, not a directory, or owned by someone else."""
    problem = private_dir_problem(path)
    if problem is not None:
        raise _unsafe(problem)


def make_private_dir(path: StrPath, *, exist_ok: bool = True) -> None:
    """Create ``path`` with mode 0700 (umask notwithstanding) and check it is safe to use."""
    try:
        os.mkdir(path, defaults.DIR_MODE)
    except FileExistsError:
        if not exist_ok:
            raise
    check_private_dir(path)
    # Ours (checked above), so tighten whatever umask or an earlier tool left: 0700, always.
    if stat.S_IMODE(os.lstat(path).st_mode) != defaults.DIR_MODE:
        os.chmod(path, defaults.DIR_MODE)


def make_ignored_dir(path: StrPath, *, what: str) -> None:
    """``make_private_dir`` plus a ``.gitignore`` of ``*`` inside (written once): git, ripgrep and
    Claude Code's file search skip everything in it, the ``.gitignore`` included, and the
    person's own ignore files are never edited. ``what`` says in that file whose files these are."""
    make_private_dir(path)
    ignore = os.path.join(os.fspath(path), ".gitignore")
    try:
        fd = open_private(ignore, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    try:
        os.write(fd, f"# {what}: claude-fanout's own files, not part of your project\n*\n".encode())
    finally:
        os.close(fd)


def open_private(path: StrPath, flags: int) -> int:
    """Open a store file without following a symlink at its last component, mode 0600 if created."""
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, defaults.FILE_MODE)
    except OSError as exc:
        if os.path.islink(path):
            raise _unsafe(
                f"{os.fspath(path)} is a symlink; fanout never follows links in its run store"
            ) from None
        raise exc


def write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd``: one ``os.write`` may take only part of it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_with(tmp: StrPath, target: StrPath) -> None:
    """Rename ``tmp`` over ``target`` in one step; a temp file that cannot be put in place is
    removed, never left beside the target."""
    try:
        os.replace(tmp, target)
    except OSError:
        os.unlink(tmp)
        raise


def write_atomic(path: StrPath, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (temp file + rename): readers never see half."""
    target = os.fspath(path)
    head, name = os.path.split(target)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    replace_with(tmp, target)


def write_json_atomic(path: StrPath, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def read_json(path: StrPath) -> Any:
    """Parse a store JSON file, never through a symlink. Raises OSError / ValueError."""
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return json.loads(handle.read())
