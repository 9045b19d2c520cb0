"""One task of a run across its attempts, and one attempt's life: start, deadline, reap, judge,
finish.

A :class:`TaskRun` holds what the supervisor knows of a task beyond the log (its state, how many
attempts were made and by whom, when a retry is due); an :class:`Attempt` holds one started
process (its leases, its clocks, and why it is being stopped). What the task kind adds (command
line, environment, judging the exit) comes from its executor.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from claude_fanout import depth
from claude_fanout.errors import FanoutError
from claude_fanout.executors.base import Command, Executor, Exit, Verdict
from claude_fanout.plan import Task
from claude_fanout.runtime.limits import Leases
from claude_fanout.states import EventType, TaskState
from claude_fanout.store import layout
from claude_fanout.store.files import open_private
from claude_fanout.store.rundir import RunDir


class Process(Protocol):
    @property
    def pid(self) -> int: ...


class ProcessSeam(Protocol):
    """What the runtime needs of the OS (``claude_fanout.procs``; tests pass a fake)."""

    def spawn_in_group(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output_fd: int,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
    ) -> Process: ...

    # `Any`: the seam reaps what its own spawn returned (a Popen for `procs`).
    def reap(self, proc: Any) -> int | None: ...

    def signal_group(self, pgid: int, sig: int) -> bool: ...

    def decode_returncode(self, returncode: int) -> tuple[int | None, int | None]: ...

    def signal_name(self, signum: int) -> str: ...

    def is_alive(self, pid: int | None, start_time: float | None) -> bool: ...

    def process_start_time(self, pid: int) -> float | None: ...


@dataclass(frozen=True)
class Seams:
    """How a task run reaches the outside: the run directory, the OS, the event log, the
    supervisor's own log, and the watchdog; and how deep workers may fan out in turn."""

    run: RunDir
    procs: ProcessSeam
    emit: Callable[..., None]
    say: Callable[[str], None]
    tell_watchdog: Callable[[str], None]
    max_depth: int


@dataclass
class Attempt:
    """One started process of a task."""

    number: int
    proc: Process
    command: Command
    leases: Leases
    started: float
    deadline: float
    # Set once SIGTERM went to the group: when, and the outcome the stop means (timed out or
    # cancelled) with its reason.
    term_sent_at: float | None = None
    stopping_as: TaskState | None = None
    stop_reason: str | None = None
    kill_sent: bool = False


@dataclass(frozen=True)
class Ended:
    """How an attempt ended, for the scheduler to decide on a retry."""

    outcome: TaskState
    reason: str | None
    rate_limited: bool = False


class TaskRun:
    """One task of the run: its state and attempts."""

    def __init__(self, task: Task, executor: Executor, seams: Seams) -> None:
        self.task = task
        self.executor = executor
        self._seams = seams
        self.state = TaskState.PENDING
        # Number of the latest attempt (earlier supervisors included: one log, one count).
        self.attempts = 0
        # Attempts made by earlier supervisors of this run (before a `fanout resume`).
        self.earlier_attempts = 0
        # Retries after a rate limit (they do not use up the task's `retries`).
        self.rate_retries = 0
        self.retry_at = 0.0
        self.current: Attempt | None = None

    @property
    def id(self) -> str:
        return self.task.id

    def counted_attempts(self) -> int:
        """This supervisor's attempts that count against the task's ``retries``."""
        return self.attempts - self.earlier_attempts - self.rate_retries

    def ready(self, now: float, finished: Callable[[str], bool]) -> bool:
        """Whether the task may start now: pending with its dependencies done, or its retry due."""
        if self.state is TaskState.WAITING_RETRY:
            return self.retry_at <= now
        return self.state is TaskState.PENDING and all(finished(dep) for dep in self.task.deps)

    # -- start ---------------------------------------------------------------------------------

    def start(self, now: float, leases: Leases) -> Ended | None:
        """Start the next attempt, holding ``leases``; an attempt that never got a process ends
        at once (returned)."""
        seams, task = self._seams, self.task
        self.attempts += 1
        try:
            seams.run.make_worker_dirs(task.id)
        except (FanoutError, OSError) as exc:
            # E.g. a worker directory replaced by a symlink: refused, and this task fails.
            return self._not_started(str(exc), leases, now)
        log_fd = open_private(seams.run.log_path(task.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        command: Command | None = None
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            os.write(log_fd, layout.attempt_header(task.id, self.attempts, stamp).encode())
            env = self._environment()
            command = self.executor.command(task, env)
            proc = seams.procs.spawn_in_group(
                command.argv,
                cwd=command.cwd,
                env=env,
                output_fd=log_fd,
                stdin_fd=command.stdin_fd,
                stdout_fd=command.stdout_fd,
            )
        except (OSError, FanoutError) as exc:
            message = str(exc)
            if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
                message = f"{exc.strerror}: {exc.filename}"  # not "[Errno 2] ..."
            os.write(log_fd, f"fanout: {task.id} could not start: {message}\n".encode())
            return self._not_started(message, leases, now)
        finally:
            os.close(log_fd)
            if command is not None:
                command.close()
        # A remote attempt (the Ray backend) has a negative id and no local group to watch.
        if proc.pid > 0:
            seams.tell_watchdog(f"+{proc.pid}")
        self.current = Attempt(
            number=self.attempts,
            proc=proc,
            command=command,
            leases=leases,
            started=now,
            deadline=now + task.timeout_s,
        )
        self.state = TaskState.RUNNING
        seams.emit(
            EventType.TASK_STARTED,
            task=task.id,
            attempt=self.attempts,
            pid=proc.pid if proc.pid > 0 else None,
        )
        seams.say(f"{task.id} started (attempt {self.attempts}, pid {proc.pid})")
        return None

    def _environment(self) -> dict[str, str]:
        run = self._seams.run
        env = self.executor.environment(os.environ)
        env.update(self.task.env)
        env.update(
            FANOUT_RUN_ID=run.run_id,
            FANOUT_RUN_DIR=str(run.path),
            FANOUT_TASK_ID=self.task.id,
            FANOUT_OUT_DIR=str(run.out_dir(self.task.id)),
            FANOUT_PROJECT=str(run.project),
            **depth.child_env(os.environ, limit=self._seams.max_depth),
        )
        return env

    def _not_started(self, why: str, leases: Leases, now: float) -> Ended:
        """The attempt never got a process: it fails (and may be retried) as one ``task_exited``
        marked ``not_started``; there is no ``task_started`` for a process that never was."""
        verdict = Verdict(TaskState.FAILED, f"could not start: {why}")
        return self._finish(None, verdict, leases, duration=0.0, not_started=True)

    # -- while it runs -------------------------------------------------------------------------

    def follow(self) -> None:
        if self.current is not None:
            self.executor.follow(self.task, self.current.number)

    def stop(self, now: float, outcome: TaskState, reason: str) -> bool:
        """SIGTERM to the attempt's group; when it exits, it ends as ``outcome``. False when it
        is already being stopped (or not running)."""
        attempt = self.current
        if attempt is None or attempt.term_sent_at is not None:
            return False
        attempt.stopping_as, attempt.stop_reason, attempt.term_sent_at = outcome, reason, now
        self._seams.procs.signal_group(attempt.proc.pid, signal.SIGTERM)
        return True

    def enforce_deadline(self, now: float, kill_grace_s: float) -> None:
        """Timeout: SIGTERM to the group; SIGKILL once it outlived the grace period."""
        attempt = self.current
        if attempt is None:
            return
        if attempt.term_sent_at is None and now >= attempt.deadline:
            self._seams.say(
                f"{self.id} timed out after {self.task.timeout_s:g}s: "
                f"SIGTERM to group {attempt.proc.pid}"
            )
            self.stop(now, TaskState.TIMED_OUT, f"timed out after {self.task.timeout_s:g}s")
        elif attempt.term_sent_at is not None and now >= attempt.term_sent_at + kill_grace_s:
            delivered = self._seams.procs.signal_group(attempt.proc.pid, signal.SIGKILL)
            if delivered and not attempt.kill_sent:
                attempt.kill_sent = True
                self._seams.say(
                    f"{self.id} outlived SIGTERM by {kill_grace_s:g}s: "
                    f"SIGKILL to group {attempt.proc.pid}"
                )

    def next_deadline(self, kill_grace_s: float) -> float:
        attempt = self.current
        if attempt is None:
            return math.inf
        if attempt.term_sent_at is None:
            return attempt.deadline
        return attempt.term_sent_at + kill_grace_s

    # -- reap, judge, finish -------------------------------------------------------------------

    def reap(self, now: float) -> Ended | None:
        """If the attempt's process ended: reap it, judge its exit, record it."""
        attempt = self.current
        if attempt is None:
            return None
        procs = self._seams.procs
        returncode = procs.reap(attempt.proc)
        if returncode is None:
            return None
        pgid = attempt.proc.pid
        # Whatever the leader left behind in its group goes with it: nothing is orphaned.
        procs.signal_group(pgid, signal.SIGKILL)
        if pgid > 0:
            self._seams.tell_watchdog(f"-{pgid}")
        exit_code, signum = procs.decode_returncode(returncode)
        duration = max(0.0, now - attempt.started)
        exit = Exit(exit_code=exit_code, signum=signum, wall_s=duration)
        verdict = self.executor.judge(self.task, attempt.number, attempt.command, exit)
        finished_first = (
            attempt.stopping_as is TaskState.OVER_BUDGET
            and verdict is not None
            and verdict.outcome is TaskState.SUCCEEDED
        )
        lost = getattr(attempt.proc, "lost", None)
        if attempt.stopping_as is not None and not finished_first:
            # (A worker that delivered its result before the run's budget stopped it keeps it:
            # what it spent is counted either way.)
            verdict = Verdict(attempt.stopping_as, attempt.stop_reason)
        elif isinstance(lost, str):
            # A remote attempt whose node died under it: never taken for a success.
            verdict = Verdict(TaskState.LOST, lost)
        elif verdict is None:
            verdict = self._by_status(exit)
        self.current = None
        return self._finish(exit, verdict, attempt.leases, duration=duration)

    def _by_status(self, exit: Exit) -> Verdict:
        if exit.exit_code == 0:
            return Verdict(TaskState.SUCCEEDED)
        if exit.signum is not None:
            name = self._seams.procs.signal_name(exit.signum)
            return Verdict(TaskState.FAILED, f"killed by {name}")
        return Verdict(TaskState.FAILED, f"exit code {exit.exit_code}")

    def _finish(
        self,
        exit: Exit | None,
        verdict: Verdict,
        leases: Leases,
        *,
        duration: float,
        **extra: object,
    ) -> Ended:
        self.state = verdict.outcome
        self._seams.emit(
            EventType.TASK_EXITED,
            task=self.id,
            attempt=self.attempts,
            exit_code=exit.exit_code if exit else None,
            signal=exit.signum if exit else None,
            outcome=str(verdict.outcome),
            duration_s=round(duration, 3),
            reason=verdict.reason,
            **extra,
        )
        # After the record: whoever takes the lease next starts after this exit, in any log.
        leases.release()
        self._seams.say(self._exit_line(exit, verdict, duration))
        return Ended(verdict.outcome, verdict.reason, verdict.rate_limited)

    def _exit_line(self, exit: Exit | None, verdict: Verdict, duration: float) -> str:
        if exit is None:
            return f"{self.id} did not start (attempt {self.attempts}): {verdict.reason}"
        if exit.signum is not None:
            how = self._seams.procs.signal_name(exit.signum)
        else:
            how = f"exit {exit.exit_code}"
        line = f"{self.id} exited ({how}) after {duration:.1f}s: {verdict.outcome}"
        return line + (f" ({verdict.reason})" if verdict.reason else "")
