"""Runs as objects: run ids, creating, listing and resolving runs, and ``RunDir``, the pathlib
view of one run. Every name and path comes from ``store.layout``, which the hooks use on strings.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from claude_fanout import defaults
from claude_fanout.errors import RunNotFoundError, StoreError
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.files import check_private_dir, make_ignored_dir, make_private_dir


def new_run_id(now: float | None = None) -> str:
    """Sortable by creation time to the millisecond, unique without coordination:
    ``20261124-010203-417-9f3a`` (UTC date, time, milliseconds, random suffix)."""
    when = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    millis = int(when * 1000) % 1000
    return f"{stamp}-{millis:03d}-{secrets.token_hex(2)}"


class RunDir:
    """One run's directory. Paths only; creating and checking is explicit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def project(self) -> Path:
        return Path(layout.project_of(self.path))

    @property
    def plan_path(self) -> Path:
        return self.path / layout.PLAN

    @property
    def events_path(self) -> Path:
        return self.path / layout.EVENTS

    @property
    def state_path(self) -> Path:
        return self.path / layout.STATE

    @property
    def supervisor_path(self) -> Path:
        return self.path / layout.SUPERVISOR

    @property
    def supervisor_log_path(self) -> Path:
        return self.path / layout.SUPERVISOR_LOG

    @property
    def report_path(self) -> Path:
        """Where ``fanout report`` writes the run's page by default."""
        return self.path / layout.REPORT

    @property
    def log(self) -> EventLog:
        return EventLog(self.events_path)

    def worker_dir(self, task_id: str) -> Path:
        return Path(layout.worker_dir(self.path, task_id))

    def out_dir(self, task_id: str) -> Path:
        return Path(layout.out_dir(self.path, task_id))

    def log_path(self, task_id: str) -> Path:
        return self.worker_dir(task_id) / layout.WORKER_LOG

    def stream_path(self, task_id: str) -> Path:
        """A ``claude`` worker's stream-json transcript (the CLI's stdout)."""
        return self.worker_dir(task_id) / layout.STREAM

    @property
    def worktrees_dir(self) -> Path:
        """Where the run's ``write: true`` tasks get their git worktrees: ``.fanout/worktrees/RUN``
        in the project. Not under ``.claude/``: Claude Code refuses edits to any path inside a
        ``.claude`` directory in ``dontAsk`` mode (measured, CLI 2.1.330), whatever is allowed."""
        return self.project / defaults.WORKTREES_DIR / self.run_id

    def make_worker_dirs(self, task_id: str) -> None:
        make_private_dir(self.path / layout.WORKERS)
        make_private_dir(self.worker_dir(task_id))
        make_private_dir(self.out_dir(task_id))

    def check(self) -> None:
        check_private_dir(self.path.parent)
        check_private_dir(self.path)


def ensure_runs_root(project: Path) -> Path:
    """``.claude/runs``, created if missing, with the ``.gitignore`` that keeps it out of git."""
    root = Path(layout.runs_root(project))
    claude_dir = root.parent
    if not claude_dir.exists():
        os.mkdir(claude_dir)
    make_ignored_dir(root, what=layout.RUNS_WHAT)
    return root


def create_run(project: Path, *, now: float | None = None) -> RunDir:
    root = ensure_runs_root(project)
    for _ in range(5):
        run = RunDir(root / new_run_id(now))
        try:
            make_private_dir(run.path, exist_ok=False)
        except FileExistsError:
            continue
        return run
    raise StoreError(f"could not create a fresh run directory under {root}; check its contents")


def list_runs(project: Path) -> list[RunDir]:
    """Runs of ``project``, oldest first (run ids sort by creation time)."""
    root = Path(layout.runs_root(project))
    if not root.exists() and not root.is_symlink():
        return []
    check_private_dir(root)
    return [
        RunDir(entry)
        for entry in sorted(root.iterdir(), key=lambda p: p.name)
        if not entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink()
    ]


def resolve_run(project: Path, run_id: str | None) -> RunDir:
    """The run named by ``run_id`` (or a unique prefix of it); the latest run when None."""
    runs = list_runs(project)
    if not runs:
        raise RunNotFoundError(
            f"no runs under {layout.runs_root(project)}; start one with 'fanout run PLAN'"
        )
    if run_id is None or run_id == "latest":
        return runs[-1]
    matches = [run for run in runs if run.run_id == run_id] or [
        run for run in runs if run.run_id.startswith(run_id)
    ]
    if len(matches) == 1:
        matches[0].check()
        return matches[0]
    if not matches:
        raise RunNotFoundError(
            f"no run '{run_id}' under {layout.runs_root(project)}; see 'fanout runs'"
        )
    names = ", ".join(run.run_id for run in matches[:5])
    raise RunNotFoundError(f"'{run_id}' matches several runs ({names}); give more of the id")
