"""Merge-back: writer branches into the Conductor's *working tree*, one file at a time.

Never a commit, the index or HEAD: the person may be mid-edit, and what they want is the workers'
changes in their files. For each branch, in plan order, every path it changed is merged 3-way:
base = the run's snapshot, ours = the file in the working tree now, theirs = the branch's file
(``git merge-file`` for text). A branch is applied whole or not at all; later branches merge onto
the result of earlier ones. Branches are never deleted here (``fanout gc`` does that).

A branch an earlier merge already applied is not applied again by a plain ``fanout merge``: if the
person has undone its change since (or edited over it), it reads "undone" and stays out
(``fanout merge RUN TASK`` names it to apply it again). Naming tasks merges exactly those, in the
order given.

Files are written as a temporary file in the same directory, then renamed over the target; a path
whose directory in the working tree is a symlink (or a file) is a conflict, never written through.
Content is compared as the bytes git stores: clean/smudge filters and eol conversion are not
applied (a project that relies on them gets conflicts to resolve by hand).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_fanout.worktree import GitError, make_parents, repo_root, resolve_commit, run_git

WORKING_TREE = "working tree"

_REGULAR, _EXECUTABLE, _SYMLINK, _GITLINK = 0o100644, 0o100755, 0o120000, 0o160000
_ZERO_OID = "0" * 40
# git's own heuristic (buffer_is_binary): a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000


@dataclass(frozen=True)
class Entry:
    """One file as git sees it: mode (0o100644, 0o100755, 0o120000 symlink, 0o160000 submodule)
    and content (a symlink's target for a link)."""

    mode: int
    data: bytes


@dataclass(frozen=True)
class Resolution:
    entry: Entry | None
    conflict: str | None = None


def _binary(entry: Entry | None) -> bool:
    return entry is not None and b"\0" in entry.data[:_BINARY_PROBE]


def three_way(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """The line-level 3-way merge of text (``git merge-file``); None when hunks overlap."""
    with tempfile.TemporaryDirectory(prefix="fanout-merge-") as scratch:
        names = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = os.path.join(scratch, name)
            with open(path, "wb") as handle:
                handle.write(data)
            names.append(name)
        proc = run_git(
            ["merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs", *names],
            cwd=scratch,
            ok=range(128),
        )
    return proc.stdout if proc.returncode == 0 else None


def merge_entries(base: Entry | None, ours: Entry | None, theirs: Entry | None) -> Resolution:
    """The 3-way merge of one path; ``conflict`` says why when it cannot be merged."""
    if ours == theirs:
        return Resolution(ours)
    if ours == base:
        return Resolution(theirs)
    if theirs == base:
        return Resolution(ours)
    if base is None:
        return Resolution(None, "added on both sides with different content")
    if ours is None or theirs is None:
        return Resolution(None, "deleted on one side, changed on the other")
    if _GITLINK in (base.mode, ours.mode, theirs.mode):
        return Resolution(None, "submodule changed on both sides")
    if ours.mode in (theirs.mode, base.mode):
        mode = theirs.mode
    elif theirs.mode == base.mode:
        mode = ours.mode
    else:
        return Resolution(None, "file type changed on both sides")
    if ours.data in (theirs.data, base.data):
        return Resolution(Entry(mode, theirs.data))
    if theirs.data == base.data:
        return Resolution(Entry(mode, ours.data))
    if _SYMLINK in (base.mode, ours.mode, theirs.mode):
        return Resolution(None, "symlink changed on both sides")
    if _binary(base) or _binary(ours) or _binary(theirs):
        return Resolution(None, "binary file changed on both sides")
    merged = three_way(base.data, ours.data, theirs.data)
    if merged is None:
        return Resolution(None, "overlapping hunks")
    return Resolution(Entry(mode, merged))


# -- the working tree --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ours:
    entry: Entry | None
    # Why nothing may be written at this path (a parent is a symlink or a file, a directory
    # stands where the file goes); None when it is writable.
    blocked: str | None = None


class _WorkingTree:
    """Reads and writes files under ``root`` without following a symlink anywhere on the way.
    A dry run keeps its writes in memory, so later branches still see earlier ones."""

    def __init__(self, root: Path, *, dry_run: bool) -> None:
        self.root = root
        self.dry_run = dry_run
        self._overlay: dict[str, Entry | None] = {}
        self._original: dict[str, _Ours] = {}
        self._written: set[str] = set()

    def original(self, path: str) -> _Ours:
        """The path as it was before this merge wrote anything."""
        if path not in self._original:
            self._original[path] = self._read_disk(path)
        return self._original[path]

    def read(self, path: str) -> _Ours:
        """The path as the merge sees it now: after the writes of the branches applied so far."""
        if path in self._written:
            return self._read_disk(path)
        first = self.original(path)
        if path in self._overlay:
            return _Ours(self._overlay[path], first.blocked)
        return first

    def _read_disk(self, path: str) -> _Ours:
        parts = _safe_parts(path)
        if parts is None:
            return _Ours(None, f"unsafe path {path!r}")
        here = self.root
        for part in parts[:-1]:
            here = here / part
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                return _Ours(None)
            if stat.S_ISLNK(st.st_mode):
                return _Ours(
                    None, f"{here.relative_to(self.root)} is a symlink in the working tree"
                )
            if not stat.S_ISDIR(st.st_mode):
                return _Ours(None, f"{here.relative_to(self.root)} is a file in the working tree")
        target = here / parts[-1]
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return _Ours(None)
        if stat.S_ISLNK(st.st_mode):
            return _Ours(Entry(_SYMLINK, os.fsencode(os.readlink(target))))
        if stat.S_ISDIR(st.st_mode):
            return _Ours(None, "a directory stands there in the working tree")
        if not stat.S_ISREG(st.st_mode):
            return _Ours(None, "a special file stands there in the working tree")
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        return _Ours(Entry(_EXECUTABLE if st.st_mode & 0o100 else _REGULAR, data))

    def write(self, path: str, entry: Entry | None) -> None:
        if self.dry_run:
            self._overlay[path] = entry
            return
        self._written.add(path)
        parts = _safe_parts(path)
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
        if entry.mode == _SYMLINK:
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
                view = memoryview(entry.data)
                while view:
                    view = view[os.write(fd, view) :]
                if perms is None:
                    perms = stat.S_IMODE(os.fstat(fd).st_mode)  # 0o666 less the umask
                if entry.mode == _EXECUTABLE:
                    perms |= (perms & 0o444) >> 2
                else:
                    perms &= ~0o111
                os.fchmod(fd, perms)
            finally:
                os.close(fd)
        try:
            os.replace(tmp, target)
        except OSError:
            os.unlink(tmp)
            raise


def _safe_parts(path: str) -> tuple[str, ...] | None:
    parts = tuple(path.split("/"))
    if not parts or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
        return None
    return parts


# -- what a branch changed ---------------------------------------------------------------------


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
        if mode not in (0, _GITLINK) and oid != _ZERO_OID
    }
    blobs = _read_blobs(root, wanted)

    def entry(mode: int, oid: str) -> Entry | None:
        if mode == 0:
            return None
        if mode == _GITLINK:
            return Entry(mode, oid.encode())
        return Entry(mode if mode in (_EXECUTABLE, _SYMLINK) else _REGULAR, blobs[oid])

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


# -- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    """``task`` and ``other`` (an earlier task in plan order, or the working tree) change the
    same path. ``kind``: ``same`` (an identical change), ``clean`` (different hunks: they merge)
    or ``conflict`` (``task`` cannot be merged onto ``other``'s change; ``reason`` says why)."""

    task: str
    other: str
    path: str
    kind: str
    reason: str | None = None

    def describe(self) -> str:
        other = "the working tree" if self.other == WORKING_TREE else self.other
        if self.kind == "conflict":
            return f"{self.task} conflicts with {other} in {self.path} ({self.reason})"
        pair = (
            f"{self.task} and {other}" if self.other == WORKING_TREE else f"{other} and {self.task}"
        )
        if self.kind == "same":
            return f"{pair} make the same change to {self.path}"
        return f"{pair} both change {self.path}, different hunks: merge cleanly"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "with": self.other,
            "path": self.path,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class BranchConflict:
    task: str
    branch: str
    files: tuple[str, ...]
    # Task ids, or "working tree", whose changes collide with this branch's.
    with_: tuple[str, ...]
    reasons: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "branch": self.branch,
            "files": list(self.files),
            "with": list(self.with_),
            "reasons": dict(self.reasons),
        }


@dataclass
class MergeReport:
    """What ``merge_run`` did (or, with ``dry_run``, would do). ``to_dict`` is the body of the
    ``run_merged`` event."""

    base: str
    branches: dict[str, str]
    dry_run: bool = False
    merged: list[str] = field(default_factory=list)
    already_merged: list[str] = field(default_factory=list)
    # Applied by an earlier merge, no longer (all) in the working tree: left out, not re-applied.
    undone: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[BranchConflict] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)
    overlaps: list[Overlap] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.conflicts

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "branches": dict(self.branches),
            "dry_run": self.dry_run,
            "merged": list(self.merged),
            "already_merged": list(self.already_merged),
            "undone": list(self.undone),
            "unchanged": list(self.unchanged),
            "skipped": list(self.skipped),
            "conflicts": [c.to_dict() for c in self.conflicts],
            "files": {task: list(paths) for task, paths in self.files.items()},
            "overlaps": [o.to_dict() for o in self.overlaps],
        }


# -- prediction and merge ----------------------------------------------------------------------


def _reason(resolution: Resolution, ours: _Ours) -> str | None:
    """Why the path cannot take the merge result: a blocked path (symlinked or file parent)
    names that, whatever the content merge said; None when it can."""
    if ours.blocked is not None and (resolution.conflict or resolution.entry != ours.entry):
        return ours.blocked
    return resolution.conflict


def _kind(resolution: Resolution, first: Entry | None, second: Entry | None) -> str:
    if resolution.conflict is not None:
        return "conflict"
    return "same" if first == second else "clean"


def _overlaps(
    changes: dict[str, Changes],
    order: Sequence[str],
    tree: _WorkingTree,
    held: Sequence[str] = (),
) -> list[Overlap]:
    """Pairwise: each task in ``order`` against the ``held`` tasks (whose change the working tree
    holds already) and against the tasks before it; then each against the person's own edits."""
    found = []
    pairs = [(first, second) for first in held for second in order]
    pairs += [(first, second) for i, first in enumerate(order) for second in order[i + 1 :]]
    for first, second in pairs:
        for path in sorted(changes[first].keys() & changes[second].keys()):
            base, a = changes[first][path]
            b = changes[second][path][1]
            resolution = merge_entries(base, a, b)
            kind = _kind(resolution, a, b)
            found.append(Overlap(second, first, path, kind, resolution.conflict))
    for task in order:
        for path, (base, theirs) in sorted(changes[task].items()):
            ours = tree.original(path)
            resolution = merge_entries(base, ours.entry, theirs)
            if resolution.conflict is None and resolution.entry == ours.entry:
                continue  # the change is there already: "already merged", not an overlap
            others = [changes[t][path][1] for t in (*held, *order) if path in changes[t]]
            own = _Ours(_own_edits(base, ours.entry, others), ours.blocked)
            if own.entry == base and own.blocked is None:
                continue
            resolution = merge_entries(base, own.entry, theirs)
            reason = _reason(resolution, own)
            kind = "conflict" if reason is not None else "clean"
            found.append(Overlap(task, WORKING_TREE, path, kind, reason))
    return found


def predict(
    project: str | os.PathLike[str], base: str, branches: Sequence[tuple[str, str]]
) -> list[Overlap]:
    """Which branches change the same paths, pairwise and against the working tree's changes
    since ``base``, and whether their hunks overlap. Reads only."""
    root = repo_root(project)
    base_commit = resolve_commit(root, base)
    changes = {
        task: branch_changes(root, base_commit, resolve_commit(root, b)) for task, b in branches
    }
    tree = _WorkingTree(root, dry_run=True)
    return _overlaps(changes, [task for task, _ in branches], tree)


def merge_run(
    project: str | os.PathLike[str],
    base: str,
    branches: Sequence[tuple[str, str]],
    *,
    dry_run: bool = False,
    settled: Collection[str] = (),
    context: Sequence[tuple[str, str]] = (),
) -> MergeReport:
    """Merge ``branches`` (``(task_id, branch)``, in this order) into the working tree of
    ``project``, 3-way against ``base`` (the run's snapshot). A branch with any conflicting file
    is not applied at all; merging a branch twice changes nothing the second time.

    ``settled``: tasks an earlier merge applied. One whose change is no longer all in the working
    tree (the person undid it, or edited over it) is reported ``undone`` and left out, not
    applied again. ``context``: other branches an earlier merge applied; never merged here, but
    where the working tree holds their change, a conflict with it names them."""
    root = repo_root(project)
    base_commit = resolve_commit(root, base)
    report = MergeReport(base=base_commit, branches=dict(branches), dry_run=dry_run)
    changes = {
        task: branch_changes(root, base_commit, resolve_commit(root, branch))
        for task, branch in branches
    }
    for task, branch in context:
        with contextlib.suppress(GitError):  # a branch deleted by hand explains nothing
            changes[task] = branch_changes(root, base_commit, resolve_commit(root, branch))
    tree = _WorkingTree(root, dry_run=dry_run)
    report.undone = [
        task
        for task, _ in branches
        if task in settled and changes[task] and not _present(changes[task], tree)
    ]
    branches = [(task, branch) for task, branch in branches if task not in report.undone]
    order = [task for task, _ in branches]
    held = [
        task
        for task, _ in context
        if task not in order and changes.get(task) and _present(changes[task], tree)
    ]
    report.overlaps = _overlaps(changes, order, tree, held)
    # Per path, the tasks whose version is in the working tree (merged now or before).
    present: dict[str, list[tuple[str, Entry | None]]] = {}
    for task in held:
        for path, (_, theirs) in changes[task].items():
            present.setdefault(path, []).append((task, theirs))
    for task, branch in branches:
        if not changes[task]:
            report.unchanged.append(task)
            continue
        writes: dict[str, Entry | None] = {}
        reasons: dict[str, str] = {}
        blame: list[str] = []
        for path, (base_entry, theirs) in sorted(changes[task].items()):
            ours = tree.read(path)
            resolution = merge_entries(base_entry, ours.entry, theirs)
            reason = _reason(resolution, ours)
            if reason is not None:
                reasons[path] = reason
                for name in _blame(path, base_entry, theirs, tree, present):
                    if name not in blame:
                        blame.append(name)
            elif resolution.entry != ours.entry:
                writes[path] = resolution.entry
        if reasons:
            report.conflicts.append(
                BranchConflict(task, branch, tuple(reasons), tuple(blame), reasons)
            )
            continue
        for path, (_, theirs) in changes[task].items():
            present.setdefault(path, []).append((task, theirs))
        if not writes:
            report.already_merged.append(task)
            continue
        for path, entry in writes.items():
            tree.write(path, entry)
        report.merged.append(task)
        report.files[task] = sorted(writes)
    return report


def _present(changes: Changes, tree: _WorkingTree) -> bool:
    """Whether the working tree (as it was before this merge) holds every change in ``changes``."""
    for path, (base, theirs) in changes.items():
        ours = tree.original(path)
        resolution = merge_entries(base, ours.entry, theirs)
        if _reason(resolution, ours) is not None or resolution.entry != ours.entry:
            return False
    return True


def settled_tasks(record: Mapping[str, Any] | None) -> set[str]:
    """The tasks a run's merge record (``RunStatus.merge``) says were put into the working tree:
    merged, found there already, or merged and since undone by the person."""
    found: set[str] = set()
    for key in ("merged", "already_merged", "undone"):
        names = (record or {}).get(key)
        if isinstance(names, list):
            found.update(name for name in names if isinstance(name, str))
    return found


def _blame(
    path: str,
    base: Entry | None,
    theirs: Entry | None,
    tree: _WorkingTree,
    present: dict[str, list[tuple[str, Entry | None]]],
) -> list[str]:
    """Whose changes to ``path`` collide with ``theirs``: the tasks merged into it whose own
    version conflicts, and the working tree when the person's own edits conflict."""
    tasks = present.get(path, [])
    hits = [task for task, entry in tasks if merge_entries(base, entry, theirs).conflict]
    original = tree.original(path)
    own = _own_edits(base, original.entry, [entry for _, entry in tasks])
    edited = own != base or original.blocked is not None
    if edited and (original.blocked or merge_entries(base, own, theirs).conflict):
        hits.append(WORKING_TREE)
    if hits:
        return hits
    return [task for task, _ in tasks] + ([WORKING_TREE] if edited else [])


def _own_edits(
    base: Entry | None, current: Entry | None, versions: Sequence[Entry | None]
) -> Entry | None:
    """``current`` with every task change it already holds taken back out: what the person
    changed since the snapshot, so a re-merge does not blame "the working tree" for a task's
    lines."""
    for version in versions:
        if version == base or merge_entries(base, current, version).entry != current:
            continue  # not (cleanly) in the working tree
        undone = merge_entries(version, current, base)
        if undone.conflict is None:
            current = undone.entry
    return current


def run_base(project: str | os.PathLike[str], bases: Sequence[str]) -> str:
    """The run's snapshot from its worktrees' bases: a writer that depends on other writers
    starts from a merge commit on top of the snapshot, so the snapshot is their common ancestor."""
    distinct = list(dict.fromkeys(bases))
    if not distinct:
        raise GitError("merge: the run recorded no worktree base; nothing to merge")
    root = repo_root(project)
    if len(distinct) == 1:
        return resolve_commit(root, distinct[0])
    proc = run_git(["merge-base", "--octopus", *distinct], cwd=root, ok=(0, 1))
    text = proc.stdout.decode().strip()
    if not text:
        raise GitError(f"merge: the worktrees' bases {', '.join(distinct)} share no commit")
    return text
