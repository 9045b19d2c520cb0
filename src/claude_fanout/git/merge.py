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

Files are read and written through ``entries.WorkingTree``: a path whose directory in the working
tree is a symlink (or a file) is a conflict, never written through. Content is compared as the
bytes git stores: clean/smudge filters and eol conversion are not applied (a project that relies
on them gets conflicts to resolve by hand).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from claude_fanout.git.entries import (
    GITLINK,
    SYMLINK,
    Changes,
    Entry,
    Ours,
    WorkingTree,
    branch_changes,
)
from claude_fanout.git.repo import GitError, repo_root, resolve_commit, run_git
from claude_fanout.git.worktrees import run_branches

if TYPE_CHECKING:
    from claude_fanout.store.status import RunStatus

WORKING_TREE = "working tree"

# git's own heuristic (buffer_is_binary): a NUL byte in the first 8000 bytes.
_BINARY_PROBE = 8000


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
    return _merge_changed(base, ours, theirs)


def _merge_changed(base: Entry, ours: Entry, theirs: Entry) -> Resolution:
    """A path present on all three sides that both sides changed: its mode, then its content."""
    if GITLINK in (base.mode, ours.mode, theirs.mode):
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
    if SYMLINK in (base.mode, ours.mode, theirs.mode):
        return Resolution(None, "symlink changed on both sides")
    if _binary(base) or _binary(ours) or _binary(theirs):
        return Resolution(None, "binary file changed on both sides")
    merged = three_way(base.data, ours.data, theirs.data)
    if merged is None:
        return Resolution(None, "overlapping hunks")
    return Resolution(Entry(mode, merged))


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


def _reason(resolution: Resolution, ours: Ours) -> str | None:
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
    tree: WorkingTree,
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
            own = Ours(_own_edits(base, ours.entry, others), ours.blocked)
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
    tree = WorkingTree(root, dry_run=True)
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
    tree = WorkingTree(root, dry_run=dry_run)
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
        writes, conflict = _resolve_branch(task, branch, changes[task], tree, present)
        if conflict is not None:
            report.conflicts.append(conflict)
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


def _resolve_branch(
    task: str,
    branch: str,
    changes: Changes,
    tree: WorkingTree,
    present: dict[str, list[tuple[str, Entry | None]]],
) -> tuple[dict[str, Entry | None], BranchConflict | None]:
    """What merging one branch onto the working tree would write, path by path, or the conflict
    that keeps the whole branch out (its files, why, and whose changes it collides with)."""
    writes: dict[str, Entry | None] = {}
    reasons: dict[str, str] = {}
    blame: list[str] = []
    for path, (base_entry, theirs) in sorted(changes.items()):
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
        return writes, BranchConflict(task, branch, tuple(reasons), tuple(blame), reasons)
    return writes, None


def _present(changes: Changes, tree: WorkingTree) -> bool:
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


def unmerged_writers(project: str | os.PathLike[str], status: RunStatus) -> list[str]:
    """The run's writers whose committed change no merge put into the working tree and whose
    branch is still there: what deleting the run's branches (``fanout gc``) would lose."""
    settled = settled_tasks(status.merge)
    branches = set(run_branches(project, status.run_id))
    return [
        task_id
        for task_id, task in status.tasks.items()
        if task.commit and task.branch in branches and task_id not in settled
    ]


def _blame(
    path: str,
    base: Entry | None,
    theirs: Entry | None,
    tree: WorkingTree,
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
