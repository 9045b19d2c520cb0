"""The per-run supervisor: one detached process that owns a run's DAG and its workers.

    python -m claude_fanout.supervisor RUN_DIR

It starts tasks whose dependencies succeeded (at most ``max_parallel`` at once), each as the
leader of its own process group; reaps them and records every transition in ``events.jsonl``;
enforces timeouts (SIGTERM to the group, SIGKILL after a grace period); retries with exponential
backoff; skips everything downstream of a failure; heartbeats into ``supervisor.json``; and on
SIGTERM/SIGINT/SIGHUP cancels the run. Workers are its children, so it learns their fate from
``waitpid`` rather than by polling the log. A forked watchdog stops them if it dies.

Signal handlers only set a flag; the loop acts. The loop sleeps on the signal wakeup fd, so a
child's exit (SIGCHLD) or a cancel wakes it at once.
"""

from __future__ import annotations

import fcntl
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from claude_fanout import defaults, procs, watchdog
from claude_fanout.config import Config, load_config
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, Task, TaskKind, load_plan, topological_order
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store import active
from claude_fanout.store.files import make_private_dir, open_private, write_json_atomic
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import RunStatus, fold_tail, load_status, save_snapshot

DEPTH_ENV = "FANOUT_DEPTH"


@dataclass
class _Slot:
    """What this supervisor knows of one task beyond the log: its process and its clocks."""

    task: Task
    state: TaskState
    attempt: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    deadline: float = math.inf
    term_sent: float | None = None
    forced: TaskState | None = None
    retry_at: float = 0.0
    slot_fd: int | None = None


def backoff_s(attempt: int) -> float:
    """Delay before retry number ``attempt`` (1-based)."""
    return float(
        min(defaults.RETRY_BACKOFF_BASE_S * 2 ** (attempt - 1), defaults.RETRY_BACKOFF_MAX_S)
    )


class Supervisor:
    def __init__(
        self,
        run: RunDir,
        plan: Plan,
        *,
        clock: Callable[[], float] = time.monotonic,
        kill_grace_s: float = defaults.KILL_GRACE_S,
        config: Config | None = None,
    ) -> None:
        self.run = run
        self.plan = plan
        self.log = run.log
        self._clock = clock
        self._kill_grace_s = kill_grace_s
        self._config = config or Config()
        self._conductor_gone_at: float | None = None
        self._waiting_for_slot = False
        self._order = topological_order(plan)
        self._slots = {task.id: _Slot(task=task, state=TaskState.PENDING) for task in plan.tasks}
        self._status = RunStatus(run_id=run.run_id)
        self._cancel_reason: str | None = None
        self._cancelling = False
        self._watchdog_pid: int | None = None
        self._watchdog_fd: int | None = None
        self._last_heartbeat = -math.inf
        self._dirty = True
        self._pid = os.getpid()
        self._start_time = procs.process_start_time(self._pid)

    def _prefix(self) -> str:
        return f"supervisor[{self._pid}]"

    # -- lifecycle -----------------------------------------------------------------------------

    def serve(self) -> RunState:
        """Run the DAG to completion (or cancellation); returns the run's final state."""
        self._heartbeat(force=True)
        self._watchdog_pid, self._watchdog_fd = watchdog.start(
            self.log, self.run.supervisor_path, str(self.run.path)
        )
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_cancel_signal)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ)

        self._heartbeat(force=True)
        self.log.append(
            EventType.SUPERVISOR_STARTED,
            pid=self._pid,
            start_time=self._start_time,
            watchdog_pid=self._watchdog_pid,
        )
        recorded = load_status(self.run)
        self._adopt(recorded)
        try:
            while True:
                now = self._clock()
                self._watch_conductor(now)
                if self._cancel_reason is not None and not self._cancelling:
                    self._begin_cancel(now, self._cancel_reason)
                self._reap()
                self._enforce_deadlines(now)
                if not self._cancelling:
                    self._skip_blocked()
                    self._start_ready(now)
                if self._finished():
                    break
                self._heartbeat()
                self._flush()
                timeout = max(
                    0.0,
                    min(self._next_deadline(), now + defaults.HEARTBEAT_INTERVAL_S) - self._clock(),
                )
                if selector.select(timeout):
                    _drain(wake_r)
            final = self._final_state()
            self.log.append(
                EventType.RUN_FINISHED,
                state=str(final),
                reason=self._cancel_reason,
                counts=self._counts(),
            )
            self._dirty = True
            self._flush()
            if not self._conductor_alive():
                # Nobody will collect the results through the hooks: stop serving this run.
                active.clear(self.run.project, self.run.run_id)
            return final
        finally:
            signal.set_wakeup_fd(-1)
            selector.close()
            os.close(wake_r)
            os.close(wake_w)
            self._stop_watchdog()

    def _adopt(self, recorded: RunStatus) -> None:
        """Take over what the log already says: finished tasks are not run again; a cancel
        requested before we were listening is honoured now."""
        self._status = recorded
        for task_id, slot in self._slots.items():
            seen = recorded.tasks.get(task_id)
            if seen is not None and seen.state is TaskState.SUCCEEDED:
                slot.state = TaskState.SUCCEEDED
                slot.attempt = seen.attempt
        if recorded.cancel_requested and self._cancel_reason is None:
            self._cancel_reason = "cancel requested"

    def _on_cancel_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._cancel_reason is None:
            self._cancel_reason = f"cancelled by {procs.signal_name(signum)}"

    def _stop_watchdog(self) -> None:
        watchdog.tell(self._watchdog_fd, "exit")
        if self._watchdog_fd is not None:
            os.close(self._watchdog_fd)
            self._watchdog_fd = None
        if self._watchdog_pid is not None:
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    pid, _ = os.waitpid(self._watchdog_pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    break
                time.sleep(0.005)
            self._watchdog_pid = None

    # -- scheduling ----------------------------------------------------------------------------

    def _running(self) -> list[_Slot]:
        return [slot for slot in self._slots.values() if slot.state is TaskState.RUNNING]

    def _skip_blocked(self) -> None:
        for task in self._order:
            slot = self._slots[task.id]
            if slot.state is not TaskState.PENDING:
                continue
            for dep in task.deps:
                dep_state = self._slots[dep].state
                if dep_state.terminal and dep_state is not TaskState.SUCCEEDED:
                    slot.state = TaskState.SKIPPED
                    self._emit(
                        EventType.TASK_SKIPPED, task=task.id, reason=f"dependency {dep} {dep_state}"
                    )
                    break

    def _start_ready(self, now: float) -> None:
        self._waiting_for_slot = False
        free = self.plan.max_parallel - len(self._running())
        for task in self.plan.tasks:
            if free <= 0:
                return
            slot = self._slots[task.id]
            ready = (
                slot.state is TaskState.PENDING
                and all(self._slots[dep].state is TaskState.SUCCEEDED for dep in task.deps)
            ) or (slot.state is TaskState.WAITING_RETRY and slot.retry_at <= now)
            if ready:
                if not self._acquire_slot(slot):
                    self._waiting_for_slot = True
                    return
                self._start(slot, now)
                free -= 1

    def _start(self, slot: _Slot, now: float) -> None:
        task = slot.task
        slot.attempt += 1
        slot.forced = None
        slot.term_sent = None
        try:
            self.run.make_worker_dirs(task.id)
        except (FanoutError, OSError) as exc:
            # E.g. a worker directory replaced by a symlink: refused, and this task fails.
            slot.state = TaskState.RUNNING
            self._emit(EventType.TASK_STARTED, task=task.id, attempt=slot.attempt, pid=None)
            self._finish(slot, None, None, TaskState.FAILED, f"cannot start: {exc}", now)
            return
        log_fd = open_private(self.run.log_path(task.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            os.write(
                log_fd, f"--- fanout: {task.id} attempt {slot.attempt} at {stamp} ---\n".encode()
            )
            proc = procs.spawn_in_group(
                self._argv(task), cwd=self.run.project, env=self._env(task), output_fd=log_fd
            )
        except OSError as exc:
            os.write(log_fd, f"fanout: cannot start {task.id}: {exc}\n".encode())
            slot.state = TaskState.RUNNING
            self._emit(EventType.TASK_STARTED, task=task.id, attempt=slot.attempt, pid=None)
            self._finish(slot, None, None, TaskState.FAILED, f"cannot start: {exc}", now)
            return
        finally:
            os.close(log_fd)
        watchdog.tell(self._watchdog_fd, f"+{proc.pid}")
        slot.proc = proc
        slot.state = TaskState.RUNNING
        slot.started = now
        slot.deadline = now + task.timeout_s
        self._emit(EventType.TASK_STARTED, task=task.id, attempt=slot.attempt, pid=proc.pid)

    def _argv(self, task: Task) -> list[str]:
        if task.kind is TaskKind.SHELL:
            return list(task.argv)
        return [sys.executable, "-m", "claude_fanout.worker", str(self.run.path), task.id]

    def _env(self, task: Task) -> dict[str, str]:
        env = dict(os.environ)
        env.update(task.env)
        try:
            depth = int(os.environ.get(DEPTH_ENV, "0"))
        except ValueError:
            depth = 0
        env.update(
            FANOUT_RUN_ID=self.run.run_id,
            FANOUT_RUN_DIR=str(self.run.path),
            FANOUT_TASK_ID=task.id,
            FANOUT_OUT_DIR=str(self.run.out_dir(task.id)),
            FANOUT_PROJECT=str(self.run.project),
            **{DEPTH_ENV: str(depth + 1)},
        )
        return env

    def _reap(self) -> None:
        for slot in self._running():
            if slot.proc is None:
                continue
            returncode = procs.reap(slot.proc)
            if returncode is None:
                continue
            pgid = slot.proc.pid
            # Whatever the leader left behind in its group goes with it: nothing is orphaned.
            procs.signal_group(pgid, signal.SIGKILL)
            watchdog.tell(self._watchdog_fd, f"-{pgid}")
            exit_code, signum = procs.decode_returncode(returncode)
            now = self._clock()
            if slot.forced is TaskState.TIMED_OUT:
                outcome, reason = TaskState.TIMED_OUT, f"timed out after {slot.task.timeout_s:g}s"
            elif slot.forced is TaskState.CANCELLED:
                outcome, reason = TaskState.CANCELLED, self._cancel_reason or "cancelled"
            elif exit_code == 0:
                outcome, reason = TaskState.SUCCEEDED, None
            elif signum is not None:
                outcome, reason = TaskState.FAILED, f"killed by {procs.signal_name(signum)}"
            else:
                outcome, reason = TaskState.FAILED, f"exit code {exit_code}"
            slot.proc = None
            self._finish(slot, exit_code, signum, outcome, reason, now)

    def _finish(
        self,
        slot: _Slot,
        exit_code: int | None,
        signum: int | None,
        outcome: TaskState,
        reason: str | None,
        now: float,
    ) -> None:
        duration = max(0.0, now - slot.started) if slot.started else 0.0
        self._release_slot(slot)
        slot.state = outcome
        self._emit(
            EventType.TASK_EXITED,
            task=slot.task.id,
            attempt=slot.attempt,
            exit_code=exit_code,
            signal=signum,
            outcome=str(outcome),
            duration_s=round(duration, 3),
            reason=reason,
        )
        retriable = outcome in (TaskState.FAILED, TaskState.TIMED_OUT)
        if retriable and slot.attempt <= slot.task.retries and not self._cancelling:
            delay = backoff_s(slot.attempt)
            slot.state = TaskState.WAITING_RETRY
            slot.retry_at = now + delay
            self._emit(
                EventType.TASK_RETRY,
                task=slot.task.id,
                attempt=slot.attempt + 1,
                delay_s=delay,
                reason=reason,
            )

    def _enforce_deadlines(self, now: float) -> None:
        for slot in self._running():
            if slot.proc is None:
                continue
            if slot.term_sent is None and now >= slot.deadline:
                slot.forced = TaskState.TIMED_OUT
                slot.term_sent = now
                procs.signal_group(slot.proc.pid, signal.SIGTERM)
            elif slot.term_sent is not None and now >= slot.term_sent + self._kill_grace_s:
                procs.signal_group(slot.proc.pid, signal.SIGKILL)

    def _begin_cancel(self, now: float, reason: str) -> None:
        self._cancelling = True
        self._emit(EventType.CANCEL_REQUESTED, by="supervisor", reason=reason)
        for slot in self._slots.values():
            if slot.state is TaskState.RUNNING and slot.proc is not None:
                slot.forced = TaskState.CANCELLED
                slot.term_sent = now
                procs.signal_group(slot.proc.pid, signal.SIGTERM)
            elif slot.state in (TaskState.PENDING, TaskState.WAITING_RETRY):
                slot.state = TaskState.CANCELLED
                self._emit(
                    EventType.TASK_SKIPPED, task=slot.task.id, outcome="cancelled", reason=reason
                )

    def _finished(self) -> bool:
        return all(slot.state.terminal for slot in self._slots.values())

    def _final_state(self) -> RunState:
        if self._cancelling:
            return RunState.CANCELLED
        if all(slot.state is TaskState.SUCCEEDED for slot in self._slots.values()):
            return RunState.SUCCEEDED
        return RunState.FAILED

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for slot in self._slots.values():
            counts[slot.state] = counts.get(slot.state, 0) + 1
        return counts

    def _next_deadline(self) -> float:
        deadlines = [math.inf]
        if self._waiting_for_slot:
            deadlines.append(self._clock() + defaults.SLOT_RETRY_S)
        for slot in self._slots.values():
            if slot.state is TaskState.RUNNING:
                deadlines.append(
                    slot.deadline if slot.term_sent is None else slot.term_sent + self._kill_grace_s
                )
            elif slot.state is TaskState.WAITING_RETRY:
                deadlines.append(slot.retry_at)
        return min(deadlines)

    # -- the Conductor and the project-wide worker cap -------------------------------------------

    def _conductor_alive(self) -> bool:
        conductor = self._status.conductor
        if not conductor:
            return False
        pid, start_time = conductor.get("pid"), conductor.get("start_time")
        return isinstance(pid, int) and procs.is_alive(pid, start_time)

    def _watch_conductor(self, now: float) -> None:
        """Cancel the run once the Conductor that asked for it has been gone a grace period
        (long enough for ``claude --resume`` to re-attach the session)."""
        if not self._status.conductor or self._cancel_reason is not None:
            return
        if self._conductor_alive():
            self._conductor_gone_at = None
            return
        # A resumed session may have re-attached (a `conductor` record from its SessionStart).
        self._status = fold_tail(self.run, self._status)
        if self._conductor_alive():
            self._conductor_gone_at = None
            return
        if self._conductor_gone_at is None:
            self._conductor_gone_at = now
        elif now - self._conductor_gone_at >= self._config.conductor_grace_s:
            pid = (self._status.conductor or {}).get("pid")
            self._cancel_reason = f"the Conductor (pid {pid}) exited"

    def _acquire_slot(self, slot: _Slot) -> bool:
        """Take one of the project's live-worker slots (a lock file held while the worker
        lives). A lock dies with its holder, so a killed supervisor frees its slots at once."""
        slots_dir = self.run.path.parent / ".slots"
        make_private_dir(slots_dir)
        for index in range(self._config.max_live_workers):
            fd = open_private(slots_dir / str(index), os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            slot.slot_fd = fd
            return True
        return False

    def _release_slot(self, slot: _Slot) -> None:
        if slot.slot_fd is not None:
            os.close(slot.slot_fd)
            slot.slot_fd = None

    # -- records -------------------------------------------------------------------------------

    def _emit(self, type_: str, **fields: object) -> None:
        self.log.append(type_, **fields)
        self._dirty = True

    def _flush(self) -> None:
        """Fold what the log gained into the snapshot (written only when something changed)."""
        if not self._dirty:
            return
        self._status = fold_tail(self.run, self._status)
        save_snapshot(self.run, self._status)
        self._dirty = False

    def _heartbeat(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_heartbeat < defaults.HEARTBEAT_INTERVAL_S:
            return
        self._last_heartbeat = now
        write_json_atomic(
            self.run.supervisor_path,
            {
                "pid": self._pid,
                "start_time": self._start_time,
                "watchdog_pid": self._watchdog_pid,
                "heartbeat": time.time(),
                "run_id": self.run.run_id,
            },
        )


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m claude_fanout.supervisor RUN_DIR", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]).resolve())
    run.check()
    plan = load_plan(run.plan_path, project=run.project)
    final = Supervisor(run, plan, config=load_config(run.project)).serve()
    return 0 if final is RunState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
