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
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from claude_fanout import defaults, depth, procs
from claude_fanout.claude.cli import cli_path
from claude_fanout.claude.command import command as claude_command
from claude_fanout.claude.command import prompt_file
from claude_fanout.claude.env import setting_sources, worker_env
from claude_fanout.claude.stream import collect, render_lines, stderr_tail
from claude_fanout.config import Config, load_config
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, Task, TaskKind, load_plan, topological_order
from claude_fanout.runtime import watchdog
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store import active
from claude_fanout.store.files import (
    make_ignored_dir,
    make_private_dir,
    open_private,
    write_json_atomic,
)
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import fold_tail, load_status, publish_snapshot, unfolded_bytes
from claude_fanout.store.status import RunStatus


@dataclass
class _Slot:
    """What this supervisor knows of one task beyond the log: its process and its clocks."""

    task: Task
    state: TaskState
    attempt: int = 0
    # Attempts made by earlier supervisors of this run (before a `fanout resume`).
    earlier_attempts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    deadline: float = math.inf
    term_sent: float | None = None
    forced: TaskState | None = None
    retry_at: float = 0.0
    slot_fd: int | None = None
    # claude workers: the project-wide claude slot, what was run and where, rate-limit retries.
    claude_fd: int | None = None
    argv: tuple[str, ...] = ()
    cwd: Path | None = None
    started_wall: float = 0.0
    rate_retries: int = 0
    rate_limited: bool = False
    # write: true tasks: the worktree the task runs in.
    worktree: Path | None = None
    # How far the worker's stream has been rendered into its log.
    stream_offset: int = 0


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
        # What the run's claude workers have spent (every attempt, earlier supervisors too).
        self._spent_cost = 0.0
        self._spent_turns = 0
        self._over_budget: str | None = None
        self._next_claude_start = 0.0
        # Writers: the run's snapshot of the working tree (made at the first writer's start).
        self._base: str | None = None
        self._worktrees: dict[str, tuple[Path, str]] = {}

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
                self._follow_streams()
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
            self._merge_back()
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

    def _merge_back(self) -> None:
        """Merge the writers' branches into the working tree, in plan order, once the run is
        done (``merge.auto``); a branch that would conflict is left alone and reported."""
        if self._cancelling or not self._config.merge_auto or self._base is None:
            return
        self._status = fold_tail(self.run, self._status)
        branches = [
            (task.id, seen.branch)
            for task in self.plan.tasks
            if (seen := self._status.tasks.get(task.id)) is not None
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
            settled = merge.settled_tasks(self._status.merge)
            report = merge.merge_run(self.run.project, self._base, branches, settled=settled)
        except (FanoutError, OSError) as exc:
            self._emit(EventType.RUN_MERGED, error=str(exc), base=self._base)
            return
        self._emit(EventType.RUN_MERGED, **report.to_dict())

    def _adopt(self, recorded: RunStatus) -> None:
        """Take over what the log already says: finished tasks are not run again; a cancel
        requested before we were listening is honoured now."""
        self._status = recorded
        usage = recorded.usage or {}
        self._spent_cost = float(usage.get("cost_usd", 0.0))
        self._spent_turns = int(usage.get("turns", 0))
        self._adopt_worktrees()
        for task_id, slot in self._slots.items():
            seen = recorded.tasks.get(task_id)
            if seen is None:
                continue
            # Attempts go on counting where the earlier supervisor stopped (one log, one count);
            # `retries` is counted afresh for this supervisor's attempts.
            slot.attempt = slot.earlier_attempts = seen.attempt
            if seen.state is TaskState.SUCCEEDED:
                slot.state = TaskState.SUCCEEDED
        if recorded.cancel_requested and self._cancel_reason is None:
            self._cancel_reason = "cancel requested"

    def _adopt_worktrees(self) -> None:
        """Worktrees an earlier supervisor of this run made (``fanout resume``) are reused."""
        from claude_fanout.store.eventlog import read_events

        for event in read_events(self.run.events_path).events:
            if event.get("type") != EventType.WORKTREE_CREATED:
                continue
            task, path, branch, base = (event.get(k) for k in ("task", "path", "branch", "base"))
            if not all(isinstance(v, str) for v in (task, path, branch, base)):
                continue
            assert isinstance(task, str) and isinstance(path, str) and isinstance(branch, str)
            if task in self._slots and Path(path).is_dir():
                self._worktrees[task] = (Path(path), branch)
                self._base = str(base)

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
                if self._budget_spent():
                    self._skip_over_budget(slot)
                    continue
                if not self._acquire_slot(slot):
                    self._waiting_for_slot = True
                    return
                if task.kind is TaskKind.CLAUDE and not self._may_start_claude(slot, now):
                    self._release_slot(slot)
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
            self._not_started(slot, str(exc), now)
            return
        log_fd = open_private(self.run.log_path(task.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        fds: list[int] = []
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            os.write(
                log_fd, f"--- fanout: {task.id} attempt {slot.attempt} at {stamp} ---\n".encode()
            )
            cwd = self.run.project
            env = self._env(task)
            argv = self._argv(task)
            if task.kind is TaskKind.CLAUDE:
                if task.write:
                    cwd = self._worktree_for(slot)
                argv = self._claude_argv(task, env)
                slot.argv, slot.cwd, slot.started_wall = tuple(argv), cwd, time.time()
                fds.append(prompt_file(task.prompt))
                fds.append(
                    open_private(
                        self.run.stream_path(task.id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                    )
                )
                if task.write and self._config.worktree_setup:
                    argv = _with_setup(self._config.worktree_setup, argv)
            proc = procs.spawn_in_group(
                argv,
                cwd=cwd,
                env=env,
                output_fd=log_fd,
                stdin_fd=fds[0] if fds else None,
                stdout_fd=fds[1] if fds else None,
            )
        except (OSError, FanoutError) as exc:
            message = str(exc)
            if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
                message = f"{exc.strerror}: {exc.filename}"  # not "[Errno 2] ..."
            os.write(log_fd, f"fanout: {task.id} could not start: {message}\n".encode())
            self._not_started(slot, message, now)
            return
        finally:
            os.close(log_fd)
            for fd in fds:
                os.close(fd)
        watchdog.tell(self._watchdog_fd, f"+{proc.pid}")
        slot.proc = proc
        slot.state = TaskState.RUNNING
        slot.started = now
        slot.deadline = now + task.timeout_s
        self._emit(EventType.TASK_STARTED, task=task.id, attempt=slot.attempt, pid=proc.pid)

    def _not_started(self, slot: _Slot, why: str, now: float) -> None:
        """The attempt never got a process: it fails (and may be retried) as one ``task_exited``
        marked ``not_started``; there is no ``task_started`` for a process that never was."""
        slot.started = 0.0
        self._finish(
            slot, None, None, TaskState.FAILED, f"could not start: {why}", now, not_started=True
        )

    def _argv(self, task: Task) -> list[str]:
        if task.kind is TaskKind.SHELL:
            return list(task.argv)
        return [sys.executable, "-m", "claude_fanout.worker", str(self.run.path), task.id]

    def _claude_argv(self, task: Task, env: dict[str, str]) -> list[str]:
        """The worker's CLI command line, its budgets the tighter of the task's and what is left
        of the run's."""
        turns = [t for t in (task.max_turns, self._config.task_max_turns) if t is not None]
        costs = [c for c in (task.max_cost_usd, self._config.task_max_cost_usd) if c is not None]
        run_turns, run_cost = self._run_budgets()
        if run_turns is not None:
            turns.append(max(1, run_turns - self._spent_turns))
        if run_cost is not None:
            costs.append(max(0.0, run_cost - self._spent_cost))
        return claude_command(
            cli=cli_path(env),
            tools=task.granted_tools,
            permission_mode=task.permission_mode,
            max_turns=min(turns) if turns else None,
            max_budget_usd=min(costs) if costs else None,
            model=task.model,
            sources=setting_sources(env),
        )

    def _run_budgets(self) -> tuple[int | None, float | None]:
        turns = self.plan.max_turns if self.plan.max_turns is not None else None
        cost = self.plan.max_cost_usd if self.plan.max_cost_usd is not None else None
        return (
            turns if turns is not None else self._config.run_max_turns,
            cost if cost is not None else self._config.run_max_cost_usd,
        )

    def _budget_spent(self) -> bool:
        if self._over_budget is None:
            turns, cost = self._run_budgets()
            if cost is not None and self._spent_cost >= cost:
                self._over_budget = (
                    f"the run's budget is spent (${self._spent_cost:.2f} of ${cost:.2f})"
                )
            elif turns is not None and self._spent_turns >= turns:
                self._over_budget = (
                    f"the run's budget is spent ({self._spent_turns} of {turns} turns)"
                )
        return self._over_budget is not None

    def _skip_over_budget(self, slot: _Slot) -> None:
        slot.state = TaskState.OVER_BUDGET
        self._emit(
            EventType.TASK_SKIPPED,
            task=slot.task.id,
            outcome=str(TaskState.OVER_BUDGET),
            reason=self._over_budget,
        )

    def _worktree_for(self, slot: _Slot) -> Path:
        """The git worktree a writer runs in (made on its first attempt, from the run's snapshot
        of the working tree plus what the writers it depends on committed); its cwd in there."""
        from claude_fanout.git import snapshot, worktrees

        task = slot.task
        project = self.run.project
        if task.id not in self._worktrees:
            if self._base is None:
                self._base = snapshot.snapshot(project)
                _ignore_everything(self.run.worktrees_dir.parent.parent)
            base = self._base
            dep_branches = [
                self._worktrees[dep][1]
                for dep in task.deps
                if dep in self._worktrees and self._status_commit(dep)
            ]
            if dep_branches:
                base = snapshot.base_with_deps(project, base, dep_branches)
            path = worktrees.create(
                project,
                worktrees_dir=self.run.worktrees_dir,
                run_id=self.run.run_id,
                task_id=task.id,
                base=base,
            )
            branch = worktrees.branch_name(self.run.run_id, task.id)
            self._worktrees[task.id] = (path, branch)
            self._emit(
                EventType.WORKTREE_CREATED,
                task=task.id,
                branch=branch,
                path=str(path),
                base=self._base,
                start=base,
            )
        path, _branch = self._worktrees[task.id]
        slot.worktree = path
        return worktrees.worktree_cwd(project, path)

    def _status_commit(self, task_id: str) -> str | None:
        self._status = fold_tail(self.run, self._status)
        seen = self._status.tasks.get(task_id)
        return seen.commit if seen is not None else None

    def _env(self, task: Task) -> dict[str, str]:
        env = dict(os.environ)
        if task.kind is TaskKind.CLAUDE:
            env = worker_env(env)
        env.update(task.env)
        env.update(
            FANOUT_RUN_ID=self.run.run_id,
            FANOUT_RUN_DIR=str(self.run.path),
            FANOUT_TASK_ID=task.id,
            FANOUT_OUT_DIR=str(self.run.out_dir(task.id)),
            FANOUT_PROJECT=str(self.run.project),
            **depth.child_env(os.environ, limit=self._config.max_depth),
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
            judged = None
            outcome: TaskState
            reason: str | None
            if slot.task.kind is TaskKind.CLAUDE:
                judged = self._collect_claude(slot, exit_code, signum, now)
            if slot.forced is TaskState.TIMED_OUT:
                outcome, reason = TaskState.TIMED_OUT, f"timed out after {slot.task.timeout_s:g}s"
            elif slot.forced is TaskState.CANCELLED:
                outcome, reason = TaskState.CANCELLED, self._cancel_reason or "cancelled"
            elif judged is not None:
                outcome, reason = judged
            elif exit_code == 0:
                outcome, reason = TaskState.SUCCEEDED, None
            elif signum is not None:
                outcome, reason = TaskState.FAILED, f"killed by {procs.signal_name(signum)}"
            else:
                outcome, reason = TaskState.FAILED, f"exit code {exit_code}"
            slot.proc = None
            self._finish(slot, exit_code, signum, outcome, reason, now)

    def _follow_streams(self) -> None:
        for slot in self._running():
            if slot.task.kind is TaskKind.CLAUDE and slot.proc is not None:
                self._render_stream(slot)

    def _render_stream(self, slot: _Slot) -> None:
        """Append what a claude worker's stream gained (whole lines) to its log, readably."""
        task_id = slot.task.id
        try:
            with self.run.stream_path(task_id).open("rb") as handle:
                handle.seek(slot.stream_offset)
                data = handle.read(defaults.STREAM_READ_MAX)
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= defaults.STREAM_READ_MAX:  # one giant line: skip it
                slot.stream_offset += len(data)
            return
        slot.stream_offset += end + 1
        lines = render_lines(data[: end + 1])
        if not lines:
            return
        fd = open_private(self.run.log_path(task_id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def _collect_claude(
        self, slot: _Slot, exit_code: int | None, signum: int | None, now: float
    ) -> tuple[TaskState, str | None]:
        """Read a finished claude worker's stream: its result files, its usage record, and the
        outcome its result means (over budget, rate limited, failed, or done and committed)."""
        task = slot.task
        self._render_stream(slot)
        slot.stream_offset = 0
        result = collect(
            stream_path=self.run.stream_path(task.id),
            out_dir=self.run.out_dir(task.id),
            argv=slot.argv,
            cwd=slot.cwd or self.run.project,
            exit_code=exit_code,
            signum=signum,
            stderr=stderr_tail(self.run.log_path(task.id)),
            started_at=slot.started_wall,
            wall_s=max(0.0, now - slot.started),
        )
        if result.usage:
            self._spent_cost += float(result.usage.get("cost_usd", 0.0))
            self._spent_turns += int(result.usage.get("turns", 0))
            self._emit(
                EventType.TASK_USAGE,
                task=task.id,
                attempt=slot.attempt,
                **result.usage,
                model=result.meta.get("model"),
                subtype=result.meta.get("subtype"),
                duration_ms=result.meta.get("duration_ms"),
            )
        slot.rate_limited = False
        setup_failed = exit_code == SETUP_FAILED_EXIT and result.meta.get("subtype") is None
        if setup_failed and task.write and self._config.worktree_setup:
            tail = stderr_tail(self.run.log_path(task.id))
            setup_line = next((ln for ln in reversed(tail) if "worktree setup" in ln), "")
            return TaskState.FAILED, setup_line.removeprefix("fanout: ") or "setup failed"
        if result.over_budget:
            return TaskState.OVER_BUDGET, result.reason
        if result.rate_limited:
            slot.rate_limited = True
            return TaskState.FAILED, f"rate limited by the API: {result.reason}"
        if not result.ok:
            return TaskState.FAILED, result.reason
        if task.write and slot.worktree is not None:
            try:
                self._commit_worktree(slot)
            except FanoutError as exc:
                return TaskState.FAILED, f"cannot commit its worktree: {exc}"
        return TaskState.SUCCEEDED, None

    def _commit_worktree(self, slot: _Slot) -> None:
        """Commit a writer's changes on its branch; publish ``replace`` directives so that until
        the merge-back the Conductor reads the worker's version of each file it changed (only
        where the working tree still holds the snapshot's version: there, it *is* the merge)."""
        from claude_fanout.git import repo, worktrees

        assert slot.worktree is not None
        task = slot.task
        path, branch = self._worktrees[task.id]
        sha = worktrees.commit(path, f"fanout {self.run.run_id}/{task.id}\n\n{task.prompt[:2000]}")
        files = repo.changed_files(self.run.project, self._base or "HEAD", sha) if sha else []
        self._emit(
            EventType.WORKTREE_COMMITTED, task=task.id, branch=branch, commit=sha, files=files
        )
        if sha and self._base:
            self._publish_previews(task, sha, files)

    def _publish_previews(self, task: Task, sha: str, files: list[str]) -> None:
        from claude_fanout.git import repo

        root = repo.repo_root(self.run.project)
        project_rel = Path(os.path.realpath(self.run.project)).relative_to(os.path.realpath(root))
        changes = self.run.out_dir(task.id) / "changes"
        for rel in files[: defaults.MAX_PREVIEW_FILES]:
            repo_path = Path(rel)
            try:
                in_project = repo_path.relative_to(project_rel)
            except ValueError:
                continue
            theirs = _git_show(root, sha, rel)
            base = _git_show(root, self._base or "HEAD", rel)
            ours: bytes | None = None
            try:
                if not (root / repo_path).is_symlink():
                    ours = (root / repo_path).read_bytes()
            except OSError:
                pass
            if theirs is None or ours is None or ours != base:
                continue
            target = changes / in_project
            try:
                make_private_dir(changes)
                for parent in reversed(target.relative_to(changes).parents[:-1]):
                    make_private_dir(changes / parent)
                with os.fdopen(
                    open_private(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb"
                ) as handle:
                    handle.write(theirs)
            except (OSError, FanoutError):
                continue
            self._emit(
                EventType.REPLACE,
                task=task.id,
                path=in_project.as_posix(),
                **{"with": (Path("changes") / in_project).as_posix()},
            )

    def _finish(
        self,
        slot: _Slot,
        exit_code: int | None,
        signum: int | None,
        outcome: TaskState,
        reason: str | None,
        now: float,
        **extra: object,
    ) -> None:
        duration = max(0.0, now - slot.started) if slot.started else 0.0
        rate_limited, slot.rate_limited = slot.rate_limited, False
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
            **extra,
        )
        # After the record: whoever takes the slot next starts after this exit, in any log.
        self._release_slot(slot)
        if (
            rate_limited
            and outcome is TaskState.FAILED
            and slot.rate_retries < self._config.rate_limit_retries
            and not self._cancelling
        ):
            # The API said "later", not "no": wait and try again, without using up `retries`.
            slot.rate_retries += 1
            delay = rate_limit_backoff_s(slot.rate_retries, self._config.rate_limit_backoff_s)
            self._retry(slot, now, round(delay, 3), reason, rate_limited=True)
            return
        retriable = outcome in (TaskState.FAILED, TaskState.TIMED_OUT)
        counted = slot.attempt - slot.earlier_attempts - slot.rate_retries
        if retriable and counted <= slot.task.retries and not self._cancelling:
            self._retry(slot, now, backoff_s(counted), reason)

    def _retry(
        self, slot: _Slot, now: float, delay: float, reason: str | None, **extra: object
    ) -> None:
        slot.state = TaskState.WAITING_RETRY
        slot.retry_at = now + delay
        self._emit(
            EventType.TASK_RETRY,
            task=slot.task.id,
            attempt=slot.attempt + 1,
            delay_s=delay,
            reason=reason,
            **extra,
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
            if self._next_claude_start > self._clock():
                deadlines.append(self._next_claude_start)
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
        # A resumed session may have re-attached (a `conductor` record from its SessionStart),
        # or the session released the run (it finishes on its own).
        self._status = fold_tail(self.run, self._status)
        if not self._status.conductor or self._conductor_alive():
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
        fd = self._take_lock("", self._config.max_live_workers)
        if fd is None:
            return False
        slot.slot_fd = fd
        return True

    def _may_start_claude(self, slot: _Slot, now: float) -> bool:
        """A claude worker also needs one of the project's claude slots, and starts no sooner than
        ``claude_start_interval_s`` after the project's previous claude start (any run): bursts
        of session starts are what trips API rate limits."""
        if now < self._next_claude_start:
            return False
        fd = self._take_lock("claude-", self._config.max_live_claude_workers)
        if fd is None:
            return False
        wait = self._claim_start_time(self._config.claude_start_interval_s)
        if wait > 0:
            os.close(fd)
            self._next_claude_start = now + wait
            return False
        slot.claude_fd = fd
        return True

    def _claim_start_time(self, interval: float) -> float:
        """0 and the start time recorded when the project's last claude start is ``interval``
        ago, else how long to wait. The record is shared by every run, under a lock."""
        if interval <= 0:
            return 0.0
        slots_dir = self.run.path.parent / ".slots"
        fd = open_private(slots_dir / "claude-last-start", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 64, 0)
            try:
                last = float(raw.decode() or 0)
            except ValueError:
                last = 0.0
            wall = time.time()
            if 0 <= wall - last < interval:
                return interval - (wall - last)
            data = f"{wall:.6f}".encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return 0.0
        finally:
            os.close(fd)

    def _take_lock(self, prefix: str, count: int) -> int | None:
        slots_dir = self.run.path.parent / ".slots"
        make_private_dir(slots_dir)
        for index in range(count):
            fd = open_private(slots_dir / f"{prefix}{index}", os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None

    def _release_slot(self, slot: _Slot) -> None:
        if slot.slot_fd is not None:
            os.close(slot.slot_fd)
            slot.slot_fd = None
        if slot.claude_fd is not None:
            os.close(slot.claude_fd)
            slot.claude_fd = None

    # -- records -------------------------------------------------------------------------------

    def _emit(self, type_: str, **fields: object) -> None:
        self.log.append(type_, **fields)
        self._dirty = True

    def _flush(self) -> None:
        """Fold what the log gained into the snapshot: after its own records, and whenever
        others' (workers' notices and claims, hooks' records) grew the log past it."""
        if not self._dirty and not unfolded_bytes(self.run, self._status.offset):
            return
        self._status = fold_tail(self.run, self._status)
        self._dirty = not publish_snapshot(self.run, self._status)

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


def _ignore_everything(directory: Path) -> None:
    """Make ``directory`` (``.fanout/``) invisible to git and to tools that honour .gitignore."""
    make_ignored_dir(directory, what="writers' worktrees")


def _git_show(root: Path, rev: str, path: str) -> bytes | None:
    """The bytes of ``path`` at ``rev``; None when it does not exist there."""
    from claude_fanout.git import repo

    proc = repo.run_git(["cat-file", "blob", f"{rev}:{path}"], cwd=root, ok=(0, 128))
    return proc.stdout if proc.returncode == 0 else None


SETUP_FAILED_EXIT = 97


def _with_setup(setup: str, argv: list[str]) -> list[str]:
    """``argv`` preceded by the project's worktree set-up command, in the same process group:
    the shell runs the set-up (output to the log, no stdin) and then becomes the worker."""
    script = (
        f"( {setup}\n) </dev/null >&2 || "
        '{ echo "fanout: the worktree setup command failed (exit $?)" >&2; '
        f"exit {SETUP_FAILED_EXIT}; }}\n"
        'exec "$@"'
    )
    return ["/bin/sh", "-c", script, "fanout-setup", *argv]


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
