"""The one protocol every task kind implements, and what an executor may use of its run.

An executor says how to start an attempt of a task of its kind (command line, working
directory, input and output, environment), what to do while it runs (``follow``), and how to
judge its exit. The scheduler looks executors up by task kind (``executors.registry``) and knows
none of them by name.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from claude_fanout import defaults
from claude_fanout.config import Config
from claude_fanout.git.writers import Worktrees
from claude_fanout.plan import Plan, Task, TaskKind
from claude_fanout.runtime.limits import RunBudget
from claude_fanout.states import EventType, TaskState
from claude_fanout.store import layout
from claude_fanout.store.rundir import RunDir
from claude_fanout.text import printable

Emit = Callable[..., None]


@dataclass
class RunContext:
    """What executors share of the run: where it lives, its plan and config, its budget, its
    writers' worktrees, a way to record events, what a finished task committed, and the
    supervisor's clock."""

    run: RunDir
    plan: Plan
    config: Config
    budget: RunBudget
    emit: Emit
    commit_of: Callable[[str], str | None]
    worktrees: Worktrees = field(default_factory=Worktrees)
    clock: Callable[[], float] = time.monotonic


@dataclass
class Command:
    """How to start one attempt: its argv and working directory, and optionally a file
    descriptor for its stdin and one for its stdout (the command owns them until ``close``)."""

    argv: list[str]
    cwd: Path
    stdin_fd: int | None = None
    stdout_fd: int | None = None
    # For a writer: the worktree it runs in.
    worktree: Path | None = None
    # Wall-clock time the command was made (what a result record says the attempt started at).
    made_at: float = 0.0

    def close(self) -> None:
        for fd in (self.stdin_fd, self.stdout_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.stdin_fd = self.stdout_fd = None


@dataclass(frozen=True)
class Exit:
    """How an attempt's process ended and how long it ran."""

    exit_code: int | None
    signum: int | None
    wall_s: float


@dataclass(frozen=True)
class Verdict:
    """What an attempt's exit means. ``rate_limited``: the API said "later", not "no"."""

    outcome: TaskState
    reason: str | None = None
    rate_limited: bool = False


class Executor(Protocol):
    """One task kind."""

    kind: ClassVar[TaskKind]
    # Each attempt is a Claude session: it needs one of the project's claude leases and
    # respects the gap between claude starts.
    claude_session: ClassVar[bool]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The worker's environment before the task's own and fanout's variables are added."""

    def command(self, task: Task, env: Mapping[str, str]) -> Command:
        """How to start an attempt; raises OSError or FanoutError when it cannot start."""

    def follow(self, task: Task, attempt: int) -> None:
        """Called while attempt number ``attempt`` runs, on every pass of the loop."""

    def judge(self, task: Task, attempt: int, command: Command, exit: Exit) -> Verdict | None:
        """What the exit means; None: judge by the exit status alone."""


class ProcessExecutor:
    """A task kind whose worker is a plain process judged by its exit status."""

    claude_session: ClassVar[bool] = False

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return dict(base)

    def follow(self, task: Task, attempt: int) -> None:
        return None

    def judge(self, task: Task, attempt: int, command: Command, exit: Exit) -> Verdict | None:
        return None


class OutputExecutor(ProcessExecutor):
    """A plain process whose last line of output is what it is doing: a ``task_progress``
    record (``doing`` only) when it changed, at most every ``PROGRESS_INTERVAL_S``, read from
    where the last read stopped (the attempt's header line at first), at most the log's last
    ``LAST_LINE_READ_MAX`` bytes."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        # Per task: the attempt followed, how far its log was read, when, and the line it said.
        self._tails: dict[str, tuple[int, int, float, str | None]] = {}

    def follow(self, task: Task, attempt: int) -> None:
        ctx = self.context
        now = ctx.clock()
        attempt_of, offset, last_at, said = self._tails.get(task.id, (0, 0, -math.inf, None))
        if attempt_of != attempt:  # a new attempt: its output starts after its header line
            offset, last_at, said = -1, -math.inf, None
        if now - last_at < defaults.PROGRESS_INTERVAL_S:
            return
        self._tails[task.id] = (attempt, offset, now, said)
        try:
            with ctx.run.log_path(task.id).open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                start = max(offset, size - defaults.LAST_LINE_READ_MAX, 0)
                handle.seek(start)
                data = handle.read(size - start) if size > offset else b""
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        head = layout.attempt_header(task.id, attempt).encode()
        if offset < 0 and (at := data.rfind(head, 0, end)) >= 0:
            data, end = data[at:], end - at
            start += at
        lines = data[:end].decode("utf-8", "replace").splitlines()
        line = layout.last_output_line(lines)
        doing = None if line is None else printable(line, defaults.DOING_MAX_CHARS)
        self._tails[task.id] = (attempt, start + end + 1, now, doing or said)
        if doing and doing != said:
            ctx.emit(EventType.TASK_PROGRESS, task=task.id, attempt=attempt, doing=doing)
