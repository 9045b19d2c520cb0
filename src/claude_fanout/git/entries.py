"""Files as the merge-back sees them: an ``Entry`` (git mode and bytes), what a branch changed
relative to the run's snapshot, read from git in one batch, and the Conductor's working tree,
read and written without following a symlink anywhere on the way.

Files are written as a temporary file in the same directory, then renamed over the target; a path
whose directory in the working tree is a symlink (or a file) is blocked, never written through.
Content is compared as the bytes git stores: clean/smudge filters and eol conversion are not
applied.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from claude_fanout.git.repo import GitError, make_parents, run_git
from claude_fanout.store.files import replace_with, write_all

REGULAR, EXECUTABLE, SYMLINK, GITLINK = 0o100644, 0o100755, 0o120000, 0o160000
_ZERO_OID = "0" * 40


@dataclass(frozen=True)
class Entry:
    """One file as git sees it: mode (0o100644, 0o100755, 0o120000 symlink, 0o160000 submodule)
    and content (a symlink's target for a link)."""

    mode: int
    data: bytes


@dataclass(frozen=True)
class Ours:
    entry: Entry | None
    # Why nothing may be written at this path (a parent is a symlink or a file, a directory
    # stands where the file goes); None when it is writable.
    blocked: str | None = None


class WorkingTree:
    """Reads and writes files under ``root`` without following a symlink anywhere on the way.
    A dry run keeps its writes in memory, so later branches still see earlier ones."""

    def __init__(self, root: Path, *, dry_run: bool) -> None:
        self.root = root
        self.dry_run = dry_run
        self._overlay: dict[str, Entry | None] = {}
        self._original: dict[str, Ours] = {}
        self._written: set[str] = set()

    def original(self, path: str) -> Ours:
        """The path as it was before this merge wrote anything."""
        if path not in self._original:
            self._original[path] = self._read_disk(path)
        return self._original[path]

    def read(self, path: str) -> Ours:
        """The path as the merge sees it now: after the writes of the branches applied so far."""
        if path in self._written:
            return self._read_disk(path)
        first = self.original(path)
        if path in self._overlay:
            return Ours(self._overlay[path], first.blocked)
        return first

    def _read_disk(self, path: str) -> Ours:
        parts = safe_parts(path)
        if parts is None:
            return Ours(None, f"unsafe path {path!r}")
        here = self.root
        for part in parts[:-1]:
            here = here / part
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                return Ours(None)
            if stat.S_ISLNK(st.st_mode):
                return Ours(None, f"{here.relative_to(self.root)} is a symlink in the working tree")
            if not stat.S_ISDIR(st.st_mode):
                return Ours(None, f"{here.relative_to(self.root)} is a file in the working tree")
        target = here / parts[-1]
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return Ours(None)
        if stat.S_ISLNK(st.st_mode):
            return Ours(Entry(SYMLINK, os.fsencode(os.readlink(target))))
        if stat.S_ISDIR(st.st_mode):
            return Ours(None, "a directory stands there in the working tree")
        if not stat.S_ISREG(st.st_mode):
            return Ours(None, "a special file stands there in the working tree")
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        return Ours(Entry(EXECUTABLE if st.st_mode & 0o100 else REGULAR, data))

    def write(self, path: str, entry: Entry | None) -> None:
        if self.dry_run:
            self._overlay[path] = entry
            return
        self._written.add(path)
        parts = safe_parts(path)
        if parts is None:
            raise GitError(f"merge: refusing unsafe path {path!r}")
        if entry is None:
            self._delete(parts)
        else:
            self._write(parts, entry)

    def _delete(self, parts: tuple[str, ...]) -> None:
        target = self.root.joinpath(*parts)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        # Like git: a directory left empty by a deletion goes too.
        for depth in range(len(parts) - 1, 0, -1):
            try:
                os.rmdir(self.root.joinpath(*parts[:depth]))
            except OSError:
                break

    def _write(self, parts: tuple[str, ...], entry: Entry) -> None:
        found = make_parents(self.root, parts[:-1])
        if found is None:
            where = self.root.joinpath(*parts[:-1])
            raise GitError(f"merge: {where} is no directory any more; nothing written there")
        here = found
        target = here / parts[-1]
        tmp = here / f".{parts[-1]}.fanout-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        if entry.mode == SYMLINK:
            os.symlink(os.fsdecode(entry.data), tmp)
        else:
            try:
                previous = os.lstat(target)
                perms = stat.S_IMODE(previous.st_mode) if stat.S_ISREG(previous.st_mode) else None
            except FileNotFoundError:
                perms = None
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(tmp, flags, 0o666)
            try:
                write_all(fd, entry.data)
                if perms is None:
                    perms = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 less the umask
                if entry.mode == EXECUTABLE:
                    perms |= (perms & 0o444) >> 2
                else:
                    perms &= ~0o111
                os.fchmod(fd, perms)
            finally:
                os.close(fd)
        replace_with(tmp, target)


def safe_parts(path: str) -> tuple[str, ...] | None:
    parts = tuple(path.split("/"))
    if not parts or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        return None
    return parts


# path -> (the base's entry, the branch's entry); None = absent.
Changes = dict[str, tuple[Entry | None, Entry | None]]


def branch_changes(root: Path, base: str, commit: str) -> Changes:
    """Every path ``commit`` changed relative to ``base``, with both sides' content."""
    proc = run_git(
        ["diff", "--raw", "-z", "--no-renames", "--no-abbrev", "--no-ext-diff", base, commit, "--"],
        cwd=root,
    )
    fields = proc.stdout.split(b"\0")
    records: list[tuple[str, int, str, int, str]] = []
    for meta, raw_path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(b":"):
            continue
        old_mode, new_mode, old_oid, new_oid = meta[1:].decode().split()[:4]
        records.append(
            (os.fsdecode(raw_path), int(old_mode, 8), old_oid, int(new_mode, 8), new_oid)
        )
    wanted = {
        oid
        for _, old_mode, old_oid, new_mode, new_oid in records
        for mode, oid in ((old_mode, old_oid), (new_mode, new_oid))
        if mode not in (0, GITLINK) and oid != _ZERO_OID
    }
    blobs = _read_blobs(root, wanted)

    def entry(mode: int, oid: str) -> Entry | None:
        if mode == 0:
            return None
        if mode == GITLINK:
            return Entry(mode, oid.encode())
        return Entry(mode if mode in (EXECUTABLE, SYMLINK) else REGULAR, blobs[oid])

    return {path: (entry(om, oo), entry(nm, no)) for path, om, oo, nm, no in records}


def _read_blobs(root: Path, oids: Iterable[str]) -> dict[str, bytes]:
    wanted = sorted(oids)
    if not wanted:
        return {}
    proc = run_git(
        ["cat-file", "--batch"], cwd=root, input="".join(f"{o}\n" for o in wanted).encode()
    )
    out, pos, blobs = proc.stdout, 0, {}
    for oid in wanted:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3:
            raise GitError(f"merge: object {oid} is missing from the repository at {root}")
        size = int(header[2])
        blobs[oid] = out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return blobs
