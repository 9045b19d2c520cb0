"""The scheduler driven through a fake process seam and an injected clock: no process is started,
time only moves when the test moves it. What is asserted is what the run records (its event log)
and what the supervisor's log says."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from claude_fanout import defaults, procs
from claude_fanout.config import Config
from claude_fanout.executors.base import Command, Executor, Exit, ProcessExecutor, Verdict
from claude_fanout.plan import Task, TaskKind, parse_plan
from claude_fanout.runtime.limits import LEASES_DIR, take_lease
from claude_fanout.runtime.scheduler import Scheduler, backoff_s
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import RunDir, create_run


@dataclass
class FakeProc:
    pid: int


@dataclass
class FakeProcs:
    """The process seam: ``spawn_in_group`` hands out pids, signals are recorded and kill the
    group unless the test said the process ignores SIGTERM; ``end`` makes a process exit."""

    spawn_error: OSError | None = None
    ignores_term: bool = False
    spawned: list[list[str]] = field(default_factory=list)
    signals: list[tuple[int, int]] = field(default_factory=list)
    _next_pid: int = 4000
    _live: set[int] = field(default_factory=set)
    _exited: dict[int, int] = field(default_factory=dict)

    def spawn_in_group(
        self,
        argv: Any,
        *,
        cwd: Path,
        env: Mapping[str, str],
        output_fd: int,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
    ) -> FakeProc:
        if self.spawn_error is not None:
            raise self.spawn_error
        self._next_pid += 1
        self.spawned.append(list(argv))
        self._live.add(self._next_pid)
        return FakeProc(self._next_pid)

    def end(self, pid: int, returncode: int) -> None:
        self._live.discard(pid)
        self._exited[pid] = returncode

    def reap(self, proc: FakeProc) -> int | None:
        return self._exited.pop(proc.pid, None)

    def signal_group(self, pgid: int, sig: int) -> bool:
        self.signals.append((pgid, sig))
        if pgid not in self._live:
            return False
        if sig == signal.SIGKILL or not self.ignores_term:
            self.end(pgid, -sig)
        return True

    decode_returncode = staticmethod(procs.decode_returncode)
    signal_name = staticmethod(procs.signal_name)

    def is_alive(self, pid: int | None, start_time: float | None) -> bool:
        return False

    def process_start_time(self, pid: int) -> float | None:
        return 1.0

    @property
    def last_pid(self) -> int:
        return self._next_pid


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class JudgedShell(ProcessExecutor):
    """A shell kind whose exits are judged by ``verdict`` (as a claude worker's result would)."""

    kind: ClassVar[TaskKind] = TaskKind.SHELL

    def __init__(self, verdict: Callable[[Task, Exit], Verdict | None]) -> None:
        self._verdict = verdict

    def command(self, task: Task, env: Mapping[str, str]) -> Command:
        return Command(argv=list(task.argv), cwd=Path.cwd())

    def judge(self, task: Task, attempt: int, command: Command, exit: Exit) -> Verdict | None:
        return self._verdict(task, exit)


@dataclass
class Harness:
    scheduler: Scheduler
    run: RunDir
    procs: FakeProcs
    clock: Clock
    log: io.StringIO

    def step(self, at: float | None = None) -> bool:
        if at is not None:
            self.clock.now = at
        return self.scheduler.step()

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self.run.events_path).events if e.get("type") == type_]


@pytest.fixture
def make(project: Path) -> Callable[..., Harness]:
    def build(
        tasks: list[dict[str, Any]],
        *,
        config: Config | None = None,
        seam: FakeProcs | None = None,
        executors: Mapping[TaskKind, Executor] | None = None,
        **top: Any,
    ) -> Harness:
        plan = parse_plan({"version": 1, "tasks": tasks, **top}, project=project)
        run = create_run(project)
        clock, log, fake = Clock(), io.StringIO(), seam or FakeProcs()
        scheduler = Scheduler(
            run,
            plan,
            config=config or Config(),
            procs=fake,
            clock=clock,
            wall=clock,
            kill_grace_s=3.0,
            executors=executors,
            log_to=log,
        )
        scheduler.begin()
        return Harness(scheduler, run, fake, clock, log)

    return build


def shell(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "shell", "argv": ["true"], **extra}


def test_a_timed_out_task_gets_sigterm_then_sigkill_after_the_grace(
    make: Callable[..., Harness],
) -> None:
    h = make([shell("W2", timeout_s=600)], seam=FakeProcs(ignores_term=True))
    h.step(at=100.0)
    pid = h.procs.last_pid
    h.step(at=699.0)
    assert h.procs.signals == []
    h.step(at=700.0)
    assert h.procs.signals == [(pid, signal.SIGTERM)]
    h.step(at=702.9)
    assert (pid, signal.SIGKILL) not in h.procs.signals, "SIGKILL before the grace period"
    h.step(at=703.0)
    assert h.procs.signals[-1] == (pid, signal.SIGKILL)
    assert h.step(at=703.0), "the run did not finish once its only task was reaped"
    assert h.scheduler.end() is RunState.FAILED

    (exited,) = h.events(EventType.TASK_EXITED)
    assert exited["outcome"] == "timed_out"
    assert exited["signal"] == signal.SIGKILL
    assert exited["duration_s"] == 603.0
    assert exited["reason"] == "timed out after 600s"
    log = h.log.getvalue()
    assert f"W2 started (attempt 1, pid {pid})" in log
    assert "W2 exited (SIGKILL) after 603.0s: timed_out" in log
    assert all(line.startswith("supervisor[") for line in log.splitlines())


def test_a_failed_task_is_retried_with_exponential_backoff(make: Callable[..., Harness]) -> None:
    h = make([shell("W1", retries=2)])
    h.step(at=100.0)
    h.procs.end(h.procs.last_pid, 1)
    h.step(at=101.0)
    h.step(at=101.0 + backoff_s(1) - 0.01)
    assert len(h.procs.spawned) == 1, "retried before its backoff"
    h.step(at=101.0 + backoff_s(1))
    assert len(h.procs.spawned) == 2
    h.procs.end(h.procs.last_pid, 1)
    h.step(at=110.0)
    h.step(at=110.0 + backoff_s(2))
    assert len(h.procs.spawned) == 3
    h.procs.end(h.procs.last_pid, 1)
    assert h.step(at=120.0), "a third failure with retries=2 must end the task"

    retries = h.events(EventType.TASK_RETRY)
    assert [(r["attempt"], r["delay_s"]) for r in retries] == [(2, backoff_s(1)), (3, backoff_s(2))]
    assert [e["outcome"] for e in h.events(EventType.TASK_EXITED)] == ["failed"] * 3
    assert "W1 retries in 2s (attempt 3)" in h.log.getvalue()
    assert backoff_s(2) == 2 * backoff_s(1)


def test_a_rate_limited_attempt_is_retried_without_using_up_retries(
    make: Callable[..., Harness],
) -> None:
    def judge(task: Task, exit: Exit) -> Verdict | None:
        if exit.exit_code == 0:
            return None
        return Verdict(TaskState.FAILED, "rate limited by the API: 429", rate_limited=True)

    h = make(
        [shell("W1")],
        config=Config(rate_limit_retries=2, rate_limit_backoff_s=10.0),
        executors={TaskKind.SHELL: JudgedShell(judge)},
    )
    h.step(at=100.0)
    h.procs.end(h.procs.last_pid, 1)
    h.step(at=100.0)
    (retry,) = h.events(EventType.TASK_RETRY)
    assert retry["rate_limited"] is True
    assert 5.0 <= retry["delay_s"] <= 15.0  # 10 s, jittered +-50%
    h.step(at=100.0 + retry["delay_s"] - 0.01)
    assert len(h.procs.spawned) == 1
    h.step(at=100.0 + retry["delay_s"])
    assert len(h.procs.spawned) == 2
    h.procs.end(h.procs.last_pid, 0)
    assert h.step(at=130.0)
    assert h.scheduler.end() is RunState.SUCCEEDED
    assert "rate limited" in h.log.getvalue()


def test_rate_limit_retries_run_out(make: Callable[..., Harness]) -> None:
    h = make(
        [shell("W1")],
        config=Config(rate_limit_retries=1, rate_limit_backoff_s=1.0),
        executors={
            TaskKind.SHELL: JudgedShell(lambda _t, _e: Verdict(TaskState.FAILED, "429", True))
        },
    )
    h.step(at=100.0)
    h.procs.end(h.procs.last_pid, 1)
    h.step(at=100.0)
    h.step(at=102.0)
    h.procs.end(h.procs.last_pid, 1)
    assert h.step(at=102.0)
    assert len(h.events(EventType.TASK_RETRY)) == 1
    assert h.scheduler.end() is RunState.FAILED


def test_nothing_starts_while_no_lease_is_free(make: Callable[..., Harness], project: Path) -> None:
    h = make([shell("W1")], config=Config(max_live_workers=1))
    held = take_lease(h.run.path.parent / LEASES_DIR, "", 1)
    assert held is not None
    h.step(at=100.0)
    h.step(at=101.0)
    assert h.procs.spawned == []
    assert h.scheduler.next_wakeup() <= 101.0 + 0.25 + 1e-9, "it must poll for a free lease"
    assert h.events(EventType.TASK_STARTED) == []
    held.release()
    h.step(at=101.25)
    assert len(h.procs.spawned) == 1
    assert h.log.getvalue().count("waits for a lease") == 1


def test_the_heartbeat_goes_on_while_one_pass_starts_many_slow_workers(
    make: Callable[..., Harness],
) -> None:
    """Starting hundreds of workers on a loaded machine takes one pass of the loop a minute
    (bench_scale: 1,000 shell tasks, ~60 ms a start): readers must not see the run lost then (a
    hook or `fanout status` would also stop its workers)."""
    ages: list[float] = []
    harness: list[Harness] = []

    class SlowStarts(FakeProcs):
        def spawn_in_group(self, argv: Any, **kwargs: Any) -> FakeProc:
            h = harness[0]
            h.clock.now += 1.0  # one second per start
            ages.append(h.clock.now - json.loads(h.run.supervisor_path.read_text())["heartbeat"])
            return super().spawn_in_group(argv, **kwargs)

    n = 3 * int(defaults.HEARTBEAT_STALE_S)
    tasks = [shell(f"W{k}") for k in range(n)]
    harness.append(
        make(tasks, config=Config(max_live_workers=n), seam=SlowStarts(), max_parallel=n)
    )
    harness[0].step(at=100.0)
    assert len(harness[0].procs.spawned) == n
    # Readers call a supervisor lost past HEARTBEAT_STALE_S; it now never gets older than a
    # heartbeat interval plus one start.
    assert max(ages) <= defaults.HEARTBEAT_INTERVAL_S + 1.0 < defaults.HEARTBEAT_STALE_S, ages


def test_a_claude_session_also_waits_for_a_claude_lease(make: Callable[..., Harness]) -> None:
    class Session(JudgedShell):
        claude_session: ClassVar[bool] = True

    h = make(
        [shell("W1")],
        config=Config(max_live_claude_workers=1, claude_start_interval_s=0.0),
        executors={TaskKind.SHELL: Session(lambda _t, _e: None)},
    )
    held = take_lease(h.run.path.parent / LEASES_DIR, "claude-", 1)
    assert held is not None
    h.step(at=100.0)
    assert h.procs.spawned == []
    held.release()
    h.step(at=100.5)
    assert len(h.procs.spawned) == 1


def test_nothing_more_starts_once_the_run_budget_is_spent(make: Callable[..., Harness]) -> None:
    harness: list[Harness] = []

    def spend(task: Task, exit: Exit) -> Verdict | None:
        harness[0].scheduler.budget.add({"cost_usd": 1.5, "turns": 3})
        return None

    h = make(
        [shell("A"), shell("B", deps=["A"]), shell("C", deps=["A"])],
        max_cost_usd=1.0,
        executors={TaskKind.SHELL: JudgedShell(spend)},
    )
    harness.append(h)
    h.step(at=100.0)
    h.procs.end(h.procs.last_pid, 0)
    assert h.step(at=101.0)
    assert len(h.procs.spawned) == 1
    skipped = h.events(EventType.TASK_SKIPPED)
    assert {s["task"] for s in skipped} == {"B", "C"}
    assert {s["outcome"] for s in skipped} == {"over_budget"}
    assert "$1.50 of $1.00" in skipped[0]["reason"]
    assert h.scheduler.end() is RunState.FAILED


def test_a_task_that_cannot_spawn_fails_without_a_start_record(
    make: Callable[..., Harness],
) -> None:
    error = FileNotFoundError(2, "No such file or directory", "no-such-program")
    h = make([shell("W1"), shell("W2", deps=["W1"])], seam=FakeProcs(spawn_error=error))
    h.step(at=100.0)
    assert h.step(at=100.0), "W2 must be skipped once W1 failed"

    assert h.events(EventType.TASK_STARTED) == []
    (exited,) = h.events(EventType.TASK_EXITED)
    assert exited["not_started"] is True
    assert exited["outcome"] == "failed"
    assert exited["reason"] == "could not start: No such file or directory: no-such-program"
    (skipped,) = h.events(EventType.TASK_SKIPPED)
    assert skipped["task"] == "W2"
    assert "could not start" in (h.run.log_path("W1")).read_text()
    assert "W1 did not start (attempt 1)" in h.log.getvalue()


def test_cancel_stops_running_tasks_and_skips_the_rest(make: Callable[..., Harness]) -> None:
    h = make([shell("W1"), shell("W2", deps=["W1"])])
    h.step(at=100.0)
    pid = h.procs.last_pid
    h.scheduler.cancel("cancelled by SIGTERM")
    h.step(at=101.0)
    assert h.procs.signals[0] == (pid, signal.SIGTERM)
    assert h.step(at=101.0)
    assert h.scheduler.end() is RunState.CANCELLED
    (exited,) = h.events(EventType.TASK_EXITED)
    assert exited["outcome"] == "cancelled"
    assert [s["task"] for s in h.events(EventType.TASK_SKIPPED)] == ["W2"]
    (finished,) = h.events(EventType.RUN_FINISHED)
    assert finished["state"] == "cancelled"
    assert "cancelling the run: cancelled by SIGTERM" in h.log.getvalue()


class Spender(JudgedShell):
    """A Claude session that reports what it has spent so far as it runs (as a worker's stream
    does), from ``spend``: task id -> USAGE_KEYS."""

    claude_session: ClassVar[bool] = True

    def __init__(self, verdict: Callable[[Task, Exit], Verdict | None]) -> None:
        super().__init__(verdict)
        self.spend: dict[str, dict[str, float]] = {}
        self.budget: Any = None

    def follow(self, task: Task, attempt: int) -> None:
        if task.id in self.spend:
            self.budget.progress(task.id, self.spend[task.id])

    def judge(self, task: Task, attempt: int, command: Command, exit: Exit) -> Verdict | None:
        # Stopped before its result: what it spent so far stays spent.
        self.budget.settle(task.id, None)
        return super().judge(task, attempt, command, exit)


def test_running_sessions_are_stopped_once_their_live_spend_uses_up_the_run_budget(
    make: Callable[..., Harness],
) -> None:
    claude = Spender(lambda _t, _e: None)
    h = make(
        [
            shell("A", retries=2),
            shell("B"),
            {"id": "C", "kind": "python", "target": "m:f"},
            shell("D"),
        ],
        max_cost_usd=1.0,
        max_parallel=3,
        config=Config(claude_start_interval_s=0.0),
        executors={TaskKind.SHELL: claude, TaskKind.PYTHON: JudgedShell(lambda _t, _e: None)},
    )
    claude.budget = h.scheduler.budget
    h.step(at=100.0)
    pids = {e["task"]: e["pid"] for e in h.events(EventType.TASK_STARTED)}
    assert set(pids) == {"A", "B", "C"}
    claude.spend.update(A={"cost_usd": 0.4, "turns": 2}, B={"cost_usd": 0.5, "turns": 3})
    h.step(at=101.0)
    assert h.procs.signals == [], "stopped before the budget was spent"

    claude.spend["B"] = {"cost_usd": 0.7, "turns": 4}
    h.step(at=102.0)
    assert sorted(h.procs.signals) == sorted(
        [(pids["A"], signal.SIGTERM), (pids["B"], signal.SIGTERM)]
    )
    h.step(at=102.5)  # reaped
    exited = {e["task"]: e for e in h.events(EventType.TASK_EXITED)}
    assert {exited["A"]["outcome"], exited["B"]["outcome"]} == {"over_budget"}
    assert exited["A"]["reason"] == "the run's budget is spent ($1.10 of $1.00)"
    assert h.events(EventType.TASK_RETRY) == [], "an attempt stopped over budget is retried"
    (skipped,) = h.events(EventType.TASK_SKIPPED)
    assert (skipped["task"], skipped["outcome"]) == ("D", "over_budget")
    assert "C" not in exited, "a task that is not a Claude session spends nothing: it runs on"
    assert h.scheduler.budget.spent_cost_usd == pytest.approx(1.1)
    assert (
        f"A stopped: the run's budget is spent ($1.10 of $1.00); SIGTERM to group {pids['A']}"
        in (h.log.getvalue())
    )

    h.procs.end(pids["C"], 0)
    assert h.step(at=103.0)
    assert h.scheduler.end() is RunState.FAILED
    assert len(h.procs.spawned) == 3


def test_the_run_turn_budget_counts_running_sessions_too(make: Callable[..., Harness]) -> None:
    claude = Spender(lambda _t, _e: None)
    h = make(
        [shell("A"), shell("B")],
        max_turns=5,
        config=Config(claude_start_interval_s=0.0),
        executors={TaskKind.SHELL: claude},
    )
    claude.budget = h.scheduler.budget
    h.step(at=100.0)
    claude.spend.update(A={"turns": 3}, B={"turns": 2})
    h.step(at=101.0)
    h.step(at=101.5)
    exited = h.events(EventType.TASK_EXITED)
    assert [e["outcome"] for e in exited] == ["over_budget", "over_budget"]
    assert exited[0]["reason"] == "the run's budget is spent (5 of 5 turns)"


def test_a_session_that_finished_before_the_budget_stop_took_effect_keeps_its_result(
    make: Callable[..., Harness],
) -> None:
    """The stop and the worker's own end race: a result delivered is kept (and counted)."""
    claude = Spender(lambda _t, e: Verdict(TaskState.SUCCEEDED) if e.exit_code == 0 else None)
    h = make(
        [shell("A")],
        max_cost_usd=1.0,
        seam=FakeProcs(ignores_term=True),
        executors={TaskKind.SHELL: claude},
    )
    claude.budget = h.scheduler.budget
    h.step(at=100.0)
    claude.spend["A"] = {"cost_usd": 1.2, "turns": 1}
    h.step(at=101.0)
    assert h.procs.signals == [(h.procs.last_pid, signal.SIGTERM)]
    h.procs.end(h.procs.last_pid, 0)  # it had just written its result
    assert h.step(at=101.1)
    (exited,) = h.events(EventType.TASK_EXITED)
    assert exited["outcome"] == "succeeded"
    assert h.scheduler.budget.spent_cost_usd == pytest.approx(1.2)


@dataclass
class RemoteProc:
    """An attempt on another machine (the Ray backend): no local group, a negative id, and
    ``lost`` set when its node died under it."""

    pid: int
    lost: str | None = None


@dataclass
class RemoteProcs(FakeProcs):
    """A seam whose attempts are remote: the watchdog must never be told of them."""

    procs_by_pid: dict[int, RemoteProc] = field(default_factory=dict)

    def spawn_in_group(self, argv: Any, **kwargs: Any) -> RemoteProc:  # type: ignore[override]
        local = super().spawn_in_group(argv, **kwargs)
        proc = RemoteProc(-local.pid)
        self.procs_by_pid[proc.pid] = proc
        self._live.add(proc.pid)
        return proc

    def lose(self, pid: int) -> None:
        self.procs_by_pid[pid].lost = "its Ray node or worker died (NodeDiedError)"
        self.end(pid, -signal.SIGKILL)


def test_a_lost_remote_attempt_is_lost_and_retried_per_retries(
    make: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[str] = []
    monkeypatch.setattr("claude_fanout.runtime.watchdog.tell", lambda _fd, line: told.append(line))
    h = make([shell("W1", retries=1)], seam=RemoteProcs())
    h.step(at=100.0)
    first = -h.procs.last_pid
    h.procs.lose(first)
    h.step(at=101.0)
    h.step(at=101.0 + backoff_s(1))
    second = -h.procs.last_pid
    h.procs.lose(second)
    assert h.step(at=110.0), "a second loss with retries=1 must end the task"
    assert h.scheduler.end() is RunState.FAILED

    exits = h.events(EventType.TASK_EXITED)
    assert [e["outcome"] for e in exits] == ["lost", "lost"]
    assert exits[0]["reason"] == "its Ray node or worker died (NodeDiedError)"
    assert [r["attempt"] for r in h.events(EventType.TASK_RETRY)] == [2]
    # No local process group: the log names none, the watchdog hears of none.
    assert [e["pid"] for e in h.events(EventType.TASK_STARTED)] == [None, None]
    assert told == []
