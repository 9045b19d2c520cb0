"""The per-run scheduler: the loop of a run's supervisor process.

It starts tasks whose dependencies succeeded (at most ``max_parallel`` at once, and only with a
lease of the project's), reaps them and records every transition in ``events.jsonl``; enforces
timeouts (SIGTERM to the group, SIGKILL after a grace period); retries with exponential backoff
(and, apart, after a rate limit); skips everything downstream of a failure; heartbeats into
``supervisor.json``; cancels the run on SIGTERM/SIGINT/SIGHUP, on a recorded cancel request, or
once the Conductor that asked for it is gone; and at the end merges the writers' branches.
Workers are its children, so it learns their fate from ``waitpid`` rather than by polling the
log. A forked watchdog stops them if it dies. Every syscall goes through ``procs`` and time
through ``clock``, both passed in, so tests drive :meth:`Scheduler.step` without processes.

Signal handlers only set a flag; the loop acts. The loop sleeps on the signal wakeup fd, so a
child's exit (SIGCHLD) or a cancel wakes it at once. What the scheduler did goes to its own log
(stderr: ``supervisor.log``), one ``supervisor[pid]:`` line each.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import TextIO

from claude_fanout import defaults
from claude_fanout import procs as os_procs
from claude_fanout.config import Config
from claude_fanout.errors import FanoutError
from claude_fanout.executors.base import Executor, RunContext
from claude_fanout.executors.registry import executors_for
from claude_fanout.git import writers
from claude_fanout.plan import Plan, TaskKind, topological_order
from claude_fanout.runtime import watchdog
from claude_fanout.runtime.limits import LEASES_DIR, ProjectLimits, RunBudget
from claude_fanout.runtime.records import RunRecords
from claude_fanout.runtime.task_run import Ended, ProcessSeam, Seams, TaskRun
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store import active
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import load_status
from claude_fanout.store.status import RunStatus


def rate_limit_backoff_s(retry: int, base_s: float, *, rng: random.Random | None = None) -> float:
    """Delay before rate-limit retry number ``retry`` (1-based): exponential, capped, and jittered
    +-50% so that workers the API turned away together do not come back together."""
    delay = min(base_s * 2 ** (retry - 1), defaults.RATE_LIMIT_BACKOFF_MAX_S)
    return float(delay * (0.5 + (rng or random).random()))


def backoff_s(attempt: int) -> float:
    """Delay before retry number ``attempt`` (1-based)."""
    return float(
        min(defaults.RETRY_BACKOFF_BASE_S * 2 ** (attempt - 1), defaults.RETRY_BACKOFF_MAX_S)
    )


class ConductorWatch:
    """Whether the Conductor that asked for the run is still there, with a grace period long
    enough for ``claude --resume`` to re-attach the session."""

    def __init__(self, procs: ProcessSeam, grace_s: float) -> None:
        self._procs = procs
        self._grace_s = grace_s
        self._gone_at: float | None = None

    def alive(self, status: RunStatus) -> bool:
        conductor = status.conductor
        if not conductor:
            return False
        pid, start_time = conductor.get("pid"), conductor.get("start_time")
        return isinstance(pid, int) and self._procs.is_alive(pid, start_time)

    def gone(self, now: float, status: RunStatus, refresh: Callable[[], RunStatus]) -> str | None:
        """Why the run must be cancelled (its Conductor left for good), else None."""
        if not status.conductor or self.alive(status):
            self._gone_at = None
            return None
        # A resumed session may have re-attached (a `conductor` record from its SessionStart),
        # or the session released the run (it finishes on its own).
        status = refresh()
        if not status.conductor or self.alive(status):
            self._gone_at = None
            return None
        if self._gone_at is None:
            self._gone_at = now
        elif now - self._gone_at >= self._grace_s:
            return f"the Conductor (pid {(status.conductor or {}).get('pid')}) exited"
        return None


class Scheduler:
    def __init__(
        self,
        run: RunDir,
        plan: Plan,
        *,
        config: Config | None = None,
        procs: ProcessSeam = os_procs,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        kill_grace_s: float = defaults.KILL_GRACE_S,
        executors: Mapping[TaskKind, Executor] | None = None,
        log_to: TextIO | None = None,
    ) -> None:
        self.run = run
        self.plan = plan
        self._config = config or Config()
        self._procs = procs
        self._clock = clock
        self._wall = wall
        self._kill_grace_s = kill_grace_s
        self._log_to = log_to
        self._pid = os.getpid()
        self._start_time = procs.process_start_time(self._pid)
        self._records = RunRecords(
            run, pid=self._pid, start_time=self._start_time, clock=clock, wall=wall
        )
        self._emit = self._records.emit
        self._cancel_reason: str | None = None
        self._cancelling = False
        self._watchdog_fd: int | None = None
        self._conductor = ConductorWatch(procs, self._config.conductor_grace_s)
        self._limits = ProjectLimits(run.path.parent / LEASES_DIR, self._config, wall=wall)
        self.budget = RunBudget(plan, self._config)
        self.context = RunContext(
            run=run,
            plan=plan,
            config=self._config,
            budget=self.budget,
            emit=self._emit,
            commit_of=self._records.commit_of,
            clock=clock,
        )
        kinds = executors if executors is not None else executors_for(self.context)
        seams = Seams(
            run=run,
            procs=procs,
            emit=self._emit,
            say=self._say,
            tell_watchdog=lambda message: watchdog.tell(self._watchdog_fd, message),
            max_depth=self._config.max_depth,
        )
        self._order = topological_order(plan)
        self._tasks = {task.id: TaskRun(task, kinds[task.kind], seams) for task in plan.tasks}

    def _say(self, message: str) -> None:
        """One line of the supervisor's own log."""
        with contextlib.suppress(OSError, ValueError):
            (self._log_to or sys.stderr).write(f"supervisor[{self._pid}]: {message}\n")
            (self._log_to or sys.stderr).flush()

    # -- the loop ------------------------------------------------------------------------------

    def serve(self) -> RunState:
        """Run the DAG to completion (or cancellation); returns the run's final state."""
        self._records.heartbeat(force=True)
        self._records.watchdog_pid, self._watchdog_fd = watchdog.start(
            self.run.log, self.run.supervisor_path, str(self.run.path)
        )
        try:
            with _wakeups(self._on_cancel_signal) as wait:
                self.begin()
                while not self.step():
                    wait(max(0.0, self.next_wakeup() - self._clock()))
                return self.end()
        finally:
            self._stop_watchdog()

    def begin(self) -> None:
        """Announce this supervisor and take over what the log already says."""
        self._records.heartbeat(force=True)
        self._emit(
            EventType.SUPERVISOR_STARTED,
            pid=self._pid,
            start_time=self._start_time,
            watchdog_pid=self._records.watchdog_pid,
        )
        self._say(
            f"serving run {self.run.run_id}: {len(self._tasks)} tasks, "
            f"max_parallel {self.plan.max_parallel}, watchdog pid {self._records.watchdog_pid}"
        )
        self._adopt(load_status(self.run))

    def step(self) -> bool:
        """One pass of the loop; True once every task reached a final state."""
        now = self._clock()
        if self._cancel_reason is None and self._records.status.conductor:
            self._cancel_reason = self._conductor.gone(
                now, self._records.status, self._records.refresh
            )
        if self._cancel_reason is not None and not self._cancelling:
            self._begin_cancel(now, self._cancel_reason)
        for task_run in self._running():
            task_run.follow()
        for task_run in self._running():
            ended = task_run.reap(self._clock())
            if ended is not None:
                self._settle(task_run, ended, self._clock())
        if not self._cancelling:
            self._stop_over_budget(now)
        for task_run in self._running():
            task_run.enforce_deadline(now, self._kill_grace_s)
        if not self._cancelling:
            self._skip_blocked()
            self._start_ready(now)
        if all(task_run.state.terminal for task_run in self._tasks.values()):
            return True
        self._records.heartbeat()
        self._records.flush()
        return False

    def next_wakeup(self) -> float:
        """When the loop must look again at the latest (on the clock passed in)."""
        now = self._clock()
        wakeups = [now + defaults.HEARTBEAT_INTERVAL_S]
        if self._limits.starved:
            wakeups.append(now + defaults.SLOT_RETRY_S)
            if self._limits.next_claude_start() > now:
                wakeups.append(self._limits.next_claude_start())
        for task_run in self._tasks.values():
            if task_run.state is TaskState.RUNNING:
                wakeups.append(task_run.next_deadline(self._kill_grace_s))
            elif task_run.state is TaskState.WAITING_RETRY:
                wakeups.append(task_run.retry_at)
        return min(wakeups)

    def end(self) -> RunState:
        """Merge back, record the run's end; returns its final state."""
        final = self._final_state()
        base = self.context.worktrees.base
        if not self._cancelling and self._config.merge_auto and base is not None:
            _merge_back(self.run, self.plan, self._records, base, self._say)
        counts = Counter(str(task_run.state) for task_run in self._tasks.values())
        self._emit(
            EventType.RUN_FINISHED,
            state=str(final),
            reason=self._cancel_reason,
            counts=dict(counts),
        )
        self._records.flush()
        self._say(
            f"run {self.run.run_id} {final}"
            + (f" ({self._cancel_reason})" if self._cancel_reason else "")
            + ": "
            + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        )
        if not self._conductor.alive(self._records.status):
            # Nobody will collect the results through the hooks: stop serving this run.
            active.clear(self.run.project, self.run.run_id)
        return final

    def cancel(self, reason: str) -> None:
        """Cancel the run at the next pass (what a cancel signal does)."""
        if self._cancel_reason is None:
            self._cancel_reason = reason

    # -- scheduling ----------------------------------------------------------------------------

    def _adopt(self, recorded: RunStatus) -> None:
        """Finished tasks are not run again; a cancel requested before we were listening is
        honoured now; worktrees an earlier supervisor made are reused."""
        self._records.status = recorded
        self.budget.add(recorded.spent() or {})
        self.context.worktrees = writers.adopt_worktrees(recorded, self._tasks.keys())
        for task_id, task_run in self._tasks.items():
            seen = recorded.tasks.get(task_id)
            if seen is None:
                continue
            # Attempts go on counting where the earlier supervisor stopped (one log, one count);
            # `retries` is counted afresh for this supervisor's attempts.
            task_run.attempts = task_run.earlier_attempts = seen.attempt
            if seen.state is TaskState.SUCCEEDED:
                task_run.state = TaskState.SUCCEEDED
        if recorded.cancel_requested:
            self.cancel("cancel requested")

    def _running(self) -> list[TaskRun]:
        return [t for t in self._tasks.values() if t.state is TaskState.RUNNING]

    def _skip_blocked(self) -> None:
        for task in self._order:
            task_run = self._tasks[task.id]
            if task_run.state is not TaskState.PENDING:
                continue
            for dep in task.deps:
                dep_state = self._tasks[dep].state
                if dep_state.terminal and dep_state is not TaskState.SUCCEEDED:
                    task_run.state = TaskState.SKIPPED
                    reason = f"dependency {dep} {dep_state}"
                    self._emit(EventType.TASK_SKIPPED, task=task.id, reason=reason)
                    self._say(f"{task.id} skipped: {reason}")
                    break

    def _start_ready(self, now: float) -> None:
        was_starved, self._limits.starved = self._limits.starved, False
        free = self.plan.max_parallel - len(self._running())
        for task in self.plan.tasks:
            task_run = self._tasks[task.id]
            if free <= 0:
                return
            if not task_run.ready(now, self._succeeded):
                continue
            exhausted = self.budget.exhausted()
            if exhausted is not None:
                task_run.state = TaskState.OVER_BUDGET
                outcome = str(TaskState.OVER_BUDGET)
                self._emit(EventType.TASK_SKIPPED, task=task.id, outcome=outcome, reason=exhausted)
                self._say(f"{task.id} not started: {exhausted}")
                continue
            leases = self._limits.acquire(now, claude_session=task_run.executor.claude_session)
            if leases is None:
                if not was_starved:
                    self._say(f"{task.id} waits for a lease of the project (none free)")
                return
            ended = task_run.start(now, leases)
            if ended is not None:
                self._settle(task_run, ended, now)
            free -= 1
            # Hundreds of starts on a busy machine can take this pass a minute: stay alive to
            # readers meanwhile (a stale heartbeat reads "lost", and lost runs get swept).
            self._records.heartbeat()

    def _stop_over_budget(self, now: float) -> None:
        """Once the run's budget is spent (finished attempts and what running workers have
        spent so far), its running Claude sessions are stopped: they end over budget."""
        why = self.budget.exhausted()
        if why is None:
            return
        for task_run in self._running():
            if task_run.executor.claude_session and task_run.stop(now, TaskState.OVER_BUDGET, why):
                pgid = task_run.current.proc.pid if task_run.current else None
                self._say(f"{task_run.id} stopped: {why}; SIGTERM to group {pgid}")

    def _succeeded(self, task_id: str) -> bool:
        return self._tasks[task_id].state is TaskState.SUCCEEDED

    def _settle(self, task_run: TaskRun, ended: Ended, now: float) -> None:
        """After an attempt ended: retry it if it may be."""
        retryable = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST)
        if self._cancelling or ended.outcome not in retryable:
            return
        if (
            ended.rate_limited
            and ended.outcome is TaskState.FAILED
            and task_run.rate_retries < self._config.rate_limit_retries
        ):
            # The API said "later", not "no": wait and try again, without using up `retries`.
            task_run.rate_retries += 1
            delay = rate_limit_backoff_s(task_run.rate_retries, self._config.rate_limit_backoff_s)
            self._retry(task_run, now, round(delay, 3), ended.reason, rate_limited=True)
        elif task_run.counted_attempts() <= task_run.task.retries:
            self._retry(task_run, now, backoff_s(task_run.counted_attempts()), ended.reason)

    def _retry(
        self, task_run: TaskRun, now: float, delay: float, reason: str | None, **extra: object
    ) -> None:
        task_run.state = TaskState.WAITING_RETRY
        task_run.retry_at = now + delay
        attempt = task_run.attempts + 1
        self._emit(
            EventType.TASK_RETRY,
            task=task_run.id,
            attempt=attempt,
            delay_s=delay,
            reason=reason,
            **extra,
        )
        why = "rate limited, " if extra.get("rate_limited") else ""
        self._say(f"{task_run.id} retries in {delay:g}s ({why}attempt {attempt})")

    def _begin_cancel(self, now: float, reason: str) -> None:
        self._cancelling = True
        self._emit(EventType.CANCEL_REQUESTED, by="supervisor", reason=reason)
        self._say(f"cancelling the run: {reason}")
        for task_run in self._tasks.values():
            if task_run.state is TaskState.RUNNING:
                task_run.stop(now, TaskState.CANCELLED, reason)
            elif task_run.state in (TaskState.PENDING, TaskState.WAITING_RETRY):
                task_run.state = TaskState.CANCELLED
                self._emit(
                    EventType.TASK_SKIPPED, task=task_run.id, outcome="cancelled", reason=reason
                )

    def _final_state(self) -> RunState:
        if self._cancelling:
            return RunState.CANCELLED
        if all(task_run.state is TaskState.SUCCEEDED for task_run in self._tasks.values()):
            return RunState.SUCCEEDED
        return RunState.FAILED

    # -- signals and the watchdog --------------------------------------------------------------

    def _on_cancel_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.cancel(f"cancelled by {self._procs.signal_name(signum)}")

    def _stop_watchdog(self) -> None:
        watchdog.stop(self._records.watchdog_pid, self._watchdog_fd)
        self._records.watchdog_pid, self._watchdog_fd = None, None


def _merge_back(
    run: RunDir, plan: Plan, records: RunRecords, base: str, say: Callable[[str], None]
) -> None:
    """Merge the writers' branches into the working tree, in plan order; a branch that would
    conflict is left alone and reported."""
    status = records.refresh()
    branches = [
        (task.id, seen.branch)
        for task in plan.tasks
        if (seen := status.tasks.get(task.id)) is not None
        and seen.state is TaskState.SUCCEEDED
        and seen.commit
        and seen.branch
    ]
    if not branches:
        return
    from claude_fanout.git import merge

    try:
        # After a resume: what an earlier merge applied (and the person may have undone
        # since) is not applied again.
        settled = merge.settled_tasks(status.merge)
        report = merge.merge_run(run.project, base, branches, settled=settled)
    except (FanoutError, OSError) as exc:
        records.emit(EventType.RUN_MERGED, error=str(exc), base=base)
        say(f"merge-back failed: {exc}")
        return
    records.emit(EventType.RUN_MERGED, **report.to_dict())
    say(f"merged back {len(branches)} writer branch(es)")


@contextlib.contextmanager
def _wakeups(
    on_cancel: Callable[[int, FrameType | None], None],
) -> Iterator[Callable[[float], None]]:
    """A wait (seconds) that a signal ends early: a child's exit (SIGCHLD) or a cancel
    (SIGTERM, SIGINT, SIGHUP: ``on_cancel``, which only sets a flag)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_cancel)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    selector = selectors.DefaultSelector()
    selector.register(wake_r, selectors.EVENT_READ)

    def wait(timeout: float) -> None:
        if selector.select(timeout):
            _drain(wake_r)

    try:
        yield wait
    finally:
        signal.set_wakeup_fd(-1)
        selector.close()
        os.close(wake_r)
        os.close(wake_w)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
