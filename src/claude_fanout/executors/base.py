"""The one protocol every task kind implements, and what an executor may use of its run.

An executor says how to start an attempt of a task of its kind (command line, working
directory, input and output, environment), what to do while it runs (``follow``), and how to
judge its exit. The scheduler looks executors up by task kind (``executors.registry``) and knows
none of them by name.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from claude_fanout.config import Config
from claude_fanout.git.writers import Worktrees
from claude_fanout.plan import Plan, Task, TaskKind
from claude_fanout.runtime.limits import RunBudget
from claude_fanout.states import TaskState
from claude_fanout.store.rundir import RunDir

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
