"""Fault injection with real processes: the Conductor, the supervisor and workers killed at
random moments, log writers killed mid-append, a full disk, a log hammered by 32 writers while
readers tail it, and a Stop hook facing a frozen supervisor.

Every scenario is repeated: a fast subset normally, many trials with ``--soak`` (or
``FANOUT_SOAK=1``; see ``conftest.py``). All trials run even when one fails; the assertion names
how many failed and why, and the session summary lists trials, failures and runtime per
scenario. ``FANOUT_FAULT_SEED`` replays a failing run's random moments.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_fanout import defaults, pids
from claude_fanout.hooks import dispatch
from claude_fanout.plan import parse_plan
from claude_fanout.runner import StartedRun, start_run, wait_run
from claude_fanout.runtime.control import observe, request_cancel
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.eventlog import EventLog, read_events
from tests.helpers import FakeRun, alive, processes_under, read_pid, wait_until

PY = sys.executable
SEED = os.environ.get("FANOUT_FAULT_SEED") or str(random.SystemRandom().randrange(1 << 32))

Report = Callable[..., None]


# -- shared machinery ------------------------------------------------------------------------


def run_trials(
    name: str,
    count: int,
    trial: Callable[[int, random.Random], dict[str, float] | None],
    report: Callable[..., None],
) -> dict[str, float]:
    """Run ``trial`` ``count`` times (each with its own seeded RNG), record the tally, and fail
    with every failing trial's reason if any failed. Returns the trials' summed counters."""
    failures: list[str] = []
    notes: dict[str, float] = {}
    started = time.monotonic()
    for index in range(count):
        rng = random.Random(f"{SEED}-{name}-{index}")
        try:
            tally = trial(index, rng) or {}
        except Exception as exc:  # every trial runs; failures are tallied
            here = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == __file__]
            where = f" (line {here[-1].lineno})" if here else ""
            failures.append(f"trial {index}{where}: {type(exc).__name__}: {exc}")
            continue
        for key, value in tally.items():
            # "max ..." keys keep the largest value seen, the others add up.
            merge = max if key.startswith("max ") else (lambda a, b: a + b)
            notes[key] = merge(notes.get(key, 0), value)
    elapsed = time.monotonic() - started
    note = ", ".join(f"{key}: {value:g}" for key, value in sorted(notes.items()))
    report(name=name, trials=count, failures=len(failures), seconds=elapsed, notes=note)
    print(f"\n{name}: {count} trials, {len(failures)} failures, {elapsed:.1f}s {note}")
    assert not failures, (
        f"{name}: {len(failures)} of {count} trials failed (FANOUT_FAULT_SEED={SEED}):\n"
        + "\n".join(failures)
    )
    return notes


@pytest.fixture
def report(fault_report: Callable[[Any], None]) -> Report:
    from tests.integration.conftest import ScenarioResult

    def record(**fields: Any) -> None:
        fault_report(ScenarioResult(**fields))

    return record


def worker_pids(run_path: Path) -> list[int]:
    """Every pid a worker recorded (``*.pid`` files in its out/): leaders and grandchildren."""
    found = []
    for pid_file in run_path.glob("workers/*/out/*.pid"):
        pid = read_pid(pid_file)
        if pid is not None:
            found.append(pid)
    return found


def supervisor_json(run_path: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_path / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sleeper(seconds: float) -> list[str]:
    """A shell worker that starts a grandchild in its group, records both pids, then sleeps."""
    script = (
        'sleep 300 & echo $! > "$FANOUT_OUT_DIR/child.pid"; '
        f'echo $$ > "$FANOUT_OUT_DIR/self.pid"; sleep {seconds}'
    )
    return ["sh", "-c", script]


def make_plan(project: Path, tasks: list[dict[str, Any]], **top: Any) -> Any:
    return parse_plan({"version": 1, **top, "tasks": tasks}, project=project)


def this_process(session: str) -> dict[str, Any]:
    """A Conductor record naming the test process itself (alive for the whole test)."""
    me = os.getpid()
    return {"session_id": session, "pid": me, "start_time": pids.process_start_time(me)}


def kill_all_under(root: Path) -> None:
    for proc in processes_under(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.resume()
            proc.kill()


def finish_supervisor(started: StartedRun | None) -> None:
    """Cleanup: a supervisor still around is resumed, cancelled, then killed, and reaped."""
    if started is None:
        return
    proc = started.supervisor
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        request_cancel(started.run.path, by="test cleanup")
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    info = supervisor_json(started.run.path)
    watchdog = info.get("watchdog_pid")
    if isinstance(watchdog, int):
        with contextlib.suppress(AssertionError):  # what is left, kill_all_under kills
            wait_until(lambda: not alive(watchdog), timeout=6)


def hook(project: Path, event: str, session: str, **fields: Any) -> tuple[int, str, str]:
    """Run one hook in-process (the real dispatcher); (exit code, stdout, stderr)."""
    payload = {"session_id": session, "cwd": str(project), "hook_event_name": event, **fields}
    out, err = io.StringIO(), io.StringIO()
    code = dispatch.run(
        [event], stdin=io.BytesIO(json.dumps(payload).encode()), stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


def log_events(run_path: Path) -> list[dict[str, Any]]:
    return read_events(run_path / "events.jsonl").events


# -- 1. the Conductor killed at random moments ------------------------------------------------

CONDUCTOR_GRACE_S = 1.0
MOMENTS = ("before tasks start", "while running", "between tasks with deps")


@pytest.mark.portable
@pytest.mark.timeout(120)
@pytest.mark.soak_timeout
def test_conductor_killed_at_random_moments_leaves_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, trials, report: Report
) -> None:
    (project / ".claude" / "fanout.toml").write_text(
        f"[conductor]\ngrace_s = {CONDUCTOR_GRACE_S:g}\n"
    )
    # A's grandchild outlives A (the supervisor must kill it on reap); B and C start when A is
    # done; D waits on B and is never reached.
    plan = make_plan(
        project,
        [
            {"id": "A", "kind": "shell", "argv": sleeper(0.8)},
            {"id": "B", "kind": "shell", "argv": sleeper(300), "deps": ["A"]},
            {"id": "C", "kind": "shell", "argv": sleeper(300), "deps": ["A"]},
            {"id": "D", "kind": "shell", "argv": ["true"], "deps": ["B"]},
        ],
    )

    def a_started(started: StartedRun) -> Path:
        return started.run.path / "workers" / "A" / "out" / "self.pid"

    def trial(index: int, rng: random.Random) -> dict[str, float]:
        moment = MOMENTS[index % len(MOMENTS)]
        stand_in = subprocess.Popen(["sleep", "300"])
        started: StartedRun | None = None
        try:
            conductor = {
                "session_id": f"conductor-{index}",
                "pid": stand_in.pid,
                "start_time": pids.process_start_time(stand_in.pid),
            }
            killed: list[tuple[float, float]] = []  # (monotonic, wall) time of the kill

            def kill() -> None:
                stand_in.kill()
                killed.append((time.monotonic(), time.time()))

            if moment == "before tasks start":
                # Killed while start_run is still waiting for the supervisor to come up.
                timer = threading.Timer(rng.uniform(0.0, 0.08), kill)
                timer.start()
                try:
                    started = start_run(plan, project=project, conductor=conductor)
                finally:
                    timer.join()
            else:
                started = start_run(plan, project=project, conductor=conductor)
                wait_until(lambda: read_pid(a_started(started)), timeout=15)
                if moment == "while running":
                    time.sleep(rng.uniform(0.0, 0.5))
                else:
                    # Around A's end (0.8 s after it started), as B and C are being started.
                    time.sleep(rng.uniform(0.6, 1.0))
                kill()
            run_path = started.run.path
            stand_in.wait()
            killed_at, killed_wall = killed[0]
            tasks_started = sum(
                e["type"] == "task_started" and e["ts"] <= killed_wall for e in log_events(run_path)
            )

            def settled() -> bool:
                if started is None or started.supervisor.poll() is None:
                    return False
                watchdog = supervisor_json(run_path).get("watchdog_pid")
                return (
                    not alive(watchdog)
                    and not any(alive(pid) for pid in worker_pids(run_path))
                    and not processes_under(project)
                )

            limit = CONDUCTOR_GRACE_S + 5.0
            try:
                wait_until(settled, timeout=limit, interval=0.05)
            except AssertionError:
                left = [p.pid for p in processes_under(project)]
                raise AssertionError(
                    f"[{moment}] {limit:g}s after the Conductor died, still alive: {left}"
                ) from None
            took = time.monotonic() - killed_at
            status = observe(run_path)
            assert status.state is RunState.CANCELLED, (moment, status.state, status.reason)
            assert (status.reason or "").startswith("the Conductor (pid"), status.reason
            assert all(task.state.terminal for task in status.tasks.values()), status.tasks
            assert status.tasks["D"].state is TaskState.CANCELLED
            return {
                f"{moment}, {tasks_started} task starts at the kill": 1,
                "max seconds from kill to all gone": round(took, 1),
            }
        finally:
            if stand_in.poll() is None:
                stand_in.kill()
                stand_in.wait()
            finish_supervisor(started)
            kill_all_under(project)

    run_trials("conductor SIGKILL", trials(3, 20), trial, report)


# -- 2. the supervisor SIGKILLed, or SIGSTOPped ------------------------------------------------


@pytest.mark.portable
@pytest.mark.timeout(90)
@pytest.mark.soak_timeout
def test_supervisor_sigkilled_workers_stop_run_reads_lost(
    project: Path, monkeypatch: pytest.MonkeyPatch, trials, report: Report
) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 30\n")
    plan = make_plan(
        project,
        [
            {"id": "A", "kind": "shell", "argv": sleeper(300)},
            {"id": "B", "kind": "shell", "argv": sleeper(300)},
            {"id": "C", "kind": "shell", "argv": ["true"], "deps": ["A"]},
        ],
    )

    def trial(index: int, rng: random.Random) -> dict[str, int]:
        session = f"lost-{index}"
        started = start_run(plan, project=project, conductor=this_process(session))
        run_path = started.run.path
        try:
            # Once its workers are up (killed while it is still starting them: the next test).
            out = run_path / "workers"
            wait_until(
                lambda: all(read_pid(out / t / "out" / "child.pid") for t in "AB"), timeout=10
            )
            time.sleep(rng.uniform(0.0, 0.5))
            info = supervisor_json(run_path)
            os.kill(started.supervisor.pid, signal.SIGKILL)
            started.supervisor.wait(timeout=5)
            wait_until(
                lambda: (
                    not alive(info.get("watchdog_pid"))
                    and not any(alive(pid) for pid in worker_pids(run_path))
                    and not processes_under(project)
                ),
                timeout=defaults.KILL_GRACE_S + 3,
                interval=0.05,
            )
            result = read_events(run_path / "events.jsonl")
            assert len(result.bad) <= 1, result.bad  # the supervisor may die mid-record
            log = result.events
            lost = [e for e in log if e["type"] == "supervisor_lost"]
            assert len(lost) == 1, lost
            # Every worker group still running when the supervisor died was stopped.
            running: dict[str, int] = {}
            for event in log:
                if event["type"] == "task_started" and isinstance(event.get("pid"), int):
                    running[event["task"]] = event["pid"]
                elif event["type"] == "task_exited":
                    running.pop(event["task"], None)
            assert set(running.values()) <= set(lost[0]["stopped_groups"]), (running, lost)
            status = observe(run_path)
            assert status.state is RunState.LOST, status.state
            assert not any(t.state is TaskState.RUNNING for t in status.tasks.values())
            # The Conductor's Stop hook does not wait on a lost run: it reports it once, at once.
            began = time.monotonic()
            code, out, _ = hook(project, "Stop", session, stop_hook_active=False)
            assert code == 0 and time.monotonic() - began < 3.0
            answer = json.loads(out)
            assert answer["decision"] == "block" and " lost" in answer["reason"], answer
            code, out, _ = hook(project, "Stop", session, stop_hook_active=True)
            assert (code, out) == (0, ""), out
            return {f"{len(running)} live groups at the kill": 1}
        finally:
            finish_supervisor(started)
            kill_all_under(project)

    run_trials("supervisor SIGKILL", trials(3, 20), trial, report)


class OrphanedWorkers(AssertionError):
    """Workers outlived their SIGKILLed supervisor and its watchdog."""


@pytest.mark.portable
@pytest.mark.timeout(90)
@pytest.mark.soak_timeout
def test_supervisor_sigkilled_while_starting_workers_orphans_nothing(
    project: Path, trials, report: Report
) -> None:
    # Trials overlap (a watchdog takes a while to finish): each is its own run.
    (project / ".claude" / "fanout.toml").write_text("[limits]\nmax_live_workers = 64\n")
    count = trials(10, 40)
    rng = random.Random(f"{SEED}-starting")
    began = time.monotonic()
    runs: list[tuple[StartedRun, dict[str, Any]]] = []
    failures: list[str] = []
    try:
        for _ in range(count):
            # The first worker kills its parent, the supervisor, a random few milliseconds
            # into starting the five others (about 2 ms each): precise, wherever the test is.
            killer = (
                f'sleep 300 & echo $! > "$FANOUT_OUT_DIR/child.pid"; '
                f"sleep {rng.uniform(0.0, 0.008):.4f}; kill -KILL $PPID; wait"
            )
            plan = make_plan(
                project,
                [{"id": "W0", "kind": "shell", "argv": ["sh", "-c", killer]}]
                + [{"id": f"W{i}", "kind": "shell", "argv": sleeper(300)} for i in range(1, 6)],
                max_parallel=6,
            )
            started = start_run(plan, project=project)
            info = supervisor_json(started.run.path)
            runs.append((started, info))
        for started, info in runs:
            assert started.supervisor.wait(timeout=5) == -signal.SIGKILL
            # The watchdog exits once it has stopped every group it knew of.
            wait_until(lambda info=info: not alive(info.get("watchdog_pid")), timeout=10)
        time.sleep(0.3)
        for index, (started, _) in enumerate(runs):
            left = processes_under(started.run.path)
            if left:
                spawned = sum(e["type"] == "task_started" for e in log_events(started.run.path))
                failures.append(
                    f"trial {index}: {len(left)} processes outlived the supervisor and its "
                    f"watchdog ({spawned} task_started recorded): "
                    + ", ".join(f"{p.pid} {' '.join(p.cmdline())[:40]}" for p in left)
                )
    finally:
        for started, _ in runs:
            finish_supervisor(started)
        kill_all_under(project)
        name = "supervisor SIGKILL while starting workers"
        report(name=name, trials=count, failures=len(failures), seconds=time.monotonic() - began)
    if failures:
        raise OrphanedWorkers(
            f"{name}: {len(failures)} of {count} trials failed (FANOUT_FAULT_SEED={SEED}):\n"
            + "\n".join(failures)
        )


def stubborn_parent() -> list[str]:
    """A shell worker whose grandchild ignores SIGTERM; both pids recorded, then it sleeps."""
    script = (
        '(trap "" TERM; exec sleep 300) & echo $! > "$FANOUT_OUT_DIR/child.pid"; '
        'echo $$ > "$FANOUT_OUT_DIR/self.pid"; sleep 300'
    )
    return ["sh", "-c", script]


@pytest.mark.portable
@pytest.mark.timeout(90)
@pytest.mark.parametrize("observer", ["fanout status", "Stop hook"])
def test_supervisor_and_watchdog_sigkilled_together_next_observer_stops_the_rest(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    fanout: Callable[..., Any],
    code_paths: str,
    observer: str,
) -> None:
    """``pkill -9 -f fanout``: the supervisor and its watchdog die at once, so nobody is left to
    stop the workers. Natively the workers die with their supervisor (parent-death signal);
    their grandchildren, and on the portable path the workers too, are stopped by the next
    fanout process that finds the run lost, which records the loss once."""
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    plan = make_plan(
        project,
        [
            {"id": "A", "kind": "shell", "argv": stubborn_parent()},
            {"id": "B", "kind": "shell", "argv": ["sleep", "300"]},
        ],
    )
    session = "killed-together"
    started = start_run(plan, project=project, conductor=this_process(session))
    run_path = started.run.path
    out = run_path / "workers"
    try:
        wait_until(lambda: read_pid(out / "A" / "out" / "child.pid"), timeout=10)
        wait_until(lambda: read_pid(out / "A" / "out" / "self.pid"), timeout=10)
        pids = wait_until(
            lambda: (
                {e["task"]: e["pid"] for e in log_events(run_path) if e["type"] == "task_started"}
                if sum(e["type"] == "task_started" for e in log_events(run_path)) == 2
                else None
            ),
            timeout=10,
        )
        workers = [read_pid(out / "A" / "out" / "self.pid"), pids["B"]]
        grandchild = read_pid(out / "A" / "out" / "child.pid")
        assert pids["A"] == workers[0]  # the shell itself is the worker A
        info = supervisor_json(run_path)
        # The watchdog first, so it cannot notice the supervisor's death in between.
        os.kill(info["watchdog_pid"], signal.SIGKILL)
        os.kill(started.supervisor.pid, signal.SIGKILL)
        killed = time.monotonic()
        started.supervisor.wait(timeout=5)
        wait_until(lambda: not alive(info["watchdog_pid"]), timeout=5)
        if code_paths == "native":
            # (a) The workers die by themselves, within about a second of their supervisor.
            wait_until(lambda: not any(alive(pid) for pid in workers), timeout=1.5, interval=0.01)
            died_after = time.monotonic() - killed
            assert died_after < 1.5, died_after
        else:
            time.sleep(0.5)  # no parent-death signal off Linux: the workers live on...
            assert all(alive(pid) for pid in workers)
        # ... and their grandchildren always: nobody has stopped anything, nothing is recorded.
        assert alive(grandchild)
        assert not [e for e in log_events(run_path) if e["type"] == "supervisor_lost"]
        # (b) The next fanout process to look at the run stops what is left of it.
        began = time.monotonic()
        if observer == "fanout status":
            result = fanout("status", started.run.run_id)
            assert result.returncode == 0 and "lost" in result.stdout, result
        else:
            code, answer, _ = hook(project, "Stop", session, stop_hook_active=False)
            assert code == 0 and " lost" in json.loads(answer)["reason"], answer
        took = time.monotonic() - began
        assert not alive(grandchild) and not any(alive(pid) for pid in workers)
        assert not processes_under(project), processes_under(project)
        lost = [e for e in log_events(run_path) if e["type"] == "supervisor_lost"]
        assert len(lost) == 1, lost
        assert observer in lost[0]["swept_by"], lost
        # A's group holds the grandchild; B's too off Linux, where the worker outlived it.
        expected = {pids["A"]} if code_paths == "native" else {pids["A"], pids["B"]}
        assert expected <= set(lost[0]["stopped_groups"]), lost
        assert observe(run_path).state is RunState.LOST
        # Recorded once: the next look finds the loss recorded and sweeps nothing again.
        assert fanout("status", started.run.run_id).returncode == 0
        hook(project, "Stop", session, stop_hook_active=True)
        assert len([e for e in log_events(run_path) if e["type"] == "supervisor_lost"]) == 1
        print(f"\n{code_paths} {observer}: swept in {took:.2f}s")
    finally:
        finish_supervisor(started)
        kill_all_under(project)


@pytest.mark.timeout(60)
def test_resume_of_a_run_lost_with_its_watchdog_stops_its_leftovers_first(
    project: Path, fanout: Callable[..., Any]
) -> None:
    """What a lost run left running must not work beside its successor: `fanout resume` sweeps
    the run before it starts the new supervisor."""
    plan = make_plan(project, [{"id": "A", "kind": "shell", "argv": stubborn_parent()}])
    started = start_run(plan, project=project)
    run_path = started.run.path
    try:
        grandchild = wait_until(
            lambda: read_pid(run_path / "workers" / "A" / "out" / "child.pid"), timeout=10
        )
        info = supervisor_json(run_path)
        os.kill(info["watchdog_pid"], signal.SIGKILL)
        os.kill(started.supervisor.pid, signal.SIGKILL)
        started.supervisor.wait(timeout=5)
        wait_until(lambda: not alive(info["watchdog_pid"]), timeout=5)
        assert alive(grandchild)
        result = fanout("resume", started.run.run_id, "--detach")
        assert result.returncode == 0, result
        assert not alive(grandchild)
        log = log_events(run_path)
        kinds = [event["type"] for event in log]
        assert kinds.count("supervisor_lost") == 1
        assert kinds.index("supervisor_lost") < kinds.index("run_resumed"), kinds
        lost = next(event for event in log if event["type"] == "supervisor_lost")
        assert "fanout resume" in lost["swept_by"], lost
    finally:
        finish_supervisor(started)
        fanout("cancel", started.run.run_id)
        kill_all_under(project)


@pytest.mark.timeout(60)
def test_frozen_supervisor_with_its_watchdog_dead_is_killed_by_the_sweep(
    project: Path, fanout: Callable[..., Any]
) -> None:
    """A SIGSTOPped supervisor whose watchdog died: the first `fanout status` after its
    heartbeat went stale SIGKILLs it (it must never wake and carry on a run called lost) and
    stops its workers, which are alive because their parent is."""
    plan = make_plan(project, [{"id": "A", "kind": "shell", "argv": sleeper(300)}])
    started = start_run(plan, project=project)
    run_path = started.run.path
    try:
        wait_until(lambda: read_pid(run_path / "workers" / "A" / "out" / "child.pid"), timeout=10)
        info = supervisor_json(run_path)
        os.kill(info["watchdog_pid"], signal.SIGKILL)
        wait_until(lambda: not alive(info["watchdog_pid"]), timeout=5)
        os.kill(started.supervisor.pid, signal.SIGSTOP)
        # As if HEARTBEAT_STALE_S had passed since: the frozen supervisor writes nothing.
        stale = {**info, "heartbeat": time.time() - defaults.HEARTBEAT_STALE_S - 5}
        (run_path / "supervisor.json").write_text(json.dumps(stale))
        assert worker_pids(run_path) and all(alive(pid) for pid in worker_pids(run_path))
        result = fanout("status", started.run.run_id)
        assert result.returncode == 0 and "lost" in result.stdout, result
        assert started.supervisor.wait(timeout=5) == -signal.SIGKILL
        assert not any(alive(pid) for pid in worker_pids(run_path))
        assert not processes_under(project), processes_under(project)
        lost = [e for e in log_events(run_path) if e["type"] == "supervisor_lost"]
        assert len(lost) == 1 and "fanout status" in lost[0]["swept_by"], lost
        assert "heartbeat" in lost[0]["reason"], lost
    finally:
        finish_supervisor(started)
        kill_all_under(project)


@pytest.mark.timeout(120)
@pytest.mark.soak_timeout
def test_supervisor_sigstopped_is_declared_lost_and_stopped(
    project: Path, soak: bool, trials, report: Report
) -> None:
    if not soak:
        pytest.skip(f"takes over HEARTBEAT_STALE_S ({defaults.HEARTBEAT_STALE_S:g}s): --soak only")
    plan = make_plan(
        project,
        [
            {"id": "A", "kind": "shell", "argv": sleeper(300)},
            {"id": "B", "kind": "shell", "argv": sleeper(300)},
        ],
    )

    def trial(index: int, rng: random.Random) -> dict[str, float]:
        started = start_run(plan, project=project)
        run_path = started.run.path
        try:
            out = run_path / "workers"
            wait_until(
                lambda: all(read_pid(out / t / "out" / "child.pid") for t in "AB"), timeout=10
            )
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(started.supervisor.pid, signal.SIGSTOP)
            stopped_at = time.monotonic()
            # Readers call it lost once the heartbeat is stale, whatever else happens.
            assert observe(run_path, now=time.time() + defaults.HEARTBEAT_STALE_S + 1).state is (
                RunState.LOST
            )
            wait_until(
                lambda: (
                    started.supervisor.poll() is not None
                    and not any(alive(pid) for pid in worker_pids(run_path))
                ),
                timeout=defaults.HEARTBEAT_STALE_S + defaults.KILL_GRACE_S + 5,
                interval=0.2,
            )
            took = time.monotonic() - stopped_at
            # The watchdog killed the frozen supervisor: it can never wake and carry on.
            assert started.supervisor.returncode == -signal.SIGKILL
            assert took >= defaults.HEARTBEAT_STALE_S - 1, took
            status = observe(run_path)
            assert status.state is RunState.LOST, status.state
            assert "stopped responding" in (status.reason or ""), status.reason
            lost = [e for e in log_events(run_path) if e["type"] == "supervisor_lost"]
            assert len(lost) == 1, lost
            wait_until(lambda: not processes_under(project), timeout=5)
            return {"max seconds from SIGSTOP to all stopped": round(took, 1)}
        finally:
            finish_supervisor(started)
            kill_all_under(project)

    run_trials("supervisor SIGSTOP", trials(1, 3), trial, report)


# -- 3. a worker SIGKILLed mid-task --------------------------------------------------------------


def killable_worker(counter: Path) -> list[str]:
    """Attempt 1 records its pids and waits (to be killed); later attempts succeed at once."""
    script = (
        f'n=$(cat "{counter}" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "{counter}"; '
        'if [ "$n" -eq 1 ]; then sleep 300 & echo $! > "$FANOUT_OUT_DIR/child.pid"; '
        'echo $$ > "$FANOUT_OUT_DIR/self.pid"; wait; fi; exit 0'
    )
    return ["sh", "-c", script]


@pytest.mark.timeout(120)
@pytest.mark.soak_timeout
def test_worker_sigkilled_is_retried_or_fails_and_skips_dependents(
    project: Path, trials, report: Report
) -> None:
    def trial(index: int, rng: random.Random) -> dict[str, int]:
        retries = index % 2  # alternate: retried and succeeds / fails and skips dependents
        counter = project / f"count-{index}"
        plan = make_plan(
            project,
            [
                {"id": "A", "kind": "shell", "argv": killable_worker(counter), "retries": retries},
                {"id": "B", "kind": "shell", "argv": ["true"], "deps": ["A"]},
                {"id": "C", "kind": "shell", "argv": ["true"], "deps": ["B"]},
                {"id": "E", "kind": "shell", "argv": ["true"]},
            ],
        )
        started = start_run(plan, project=project)
        run_path = started.run.path
        try:
            self_pid = wait_until(lambda: read_pid(run_path / "workers/A/out/self.pid"), timeout=10)
            child_pid = wait_until(
                lambda: read_pid(run_path / "workers/A/out/child.pid"), timeout=10
            )
            time.sleep(rng.uniform(0.0, 0.3))
            os.kill(self_pid, signal.SIGKILL)
            status = wait_run(started.run, timeout_s=20)
            started.supervisor.wait(timeout=10)
            tasks = status.tasks
            exits = [
                e for e in log_events(run_path) if e["type"] == "task_exited" and e["task"] == "A"
            ]
            assert exits[0]["outcome"] == "failed", exits
            assert exits[0]["reason"] == "killed by SIGKILL", exits
            assert exits[0]["signal"] == signal.SIGKILL
            if retries:
                assert status.state is RunState.SUCCEEDED, (status.state, tasks)
                assert (tasks["A"].state, tasks["A"].attempt) == (TaskState.SUCCEEDED, 2)
                assert [e["outcome"] for e in exits] == ["failed", "succeeded"]
                assert counter.read_text().strip() == "2"
                assert all(t.state is TaskState.SUCCEEDED for t in tasks.values())
            else:
                assert status.state is RunState.FAILED, status.state
                assert tasks["A"].state is TaskState.FAILED
                assert tasks["A"].reason == "killed by SIGKILL"
                assert (tasks["B"].state, tasks["B"].reason) == (
                    TaskState.SKIPPED,
                    "dependency A failed",
                )
                assert (tasks["C"].state, tasks["C"].reason) == (
                    TaskState.SKIPPED,
                    "dependency B skipped",
                )
                assert tasks["E"].state is TaskState.SUCCEEDED
                assert len(exits) == 1 and counter.read_text().strip() == "1"
            # The killed worker's grandchild went with its group.
            wait_until(lambda: not alive(child_pid), timeout=3)
            return {"retried" if retries else "not retried": 1}
        finally:
            finish_supervisor(started)
            kill_all_under(project)

    run_trials("worker SIGKILL", trials(4, 20), trial, report)


# -- 4. log writers SIGKILLed mid-append -----------------------------------------------------

PAD_ALPHABET = "abcdefghijklmnopqrstuvwxyz"

# Each record's pad is one letter, derived from (writer, seq): a torn or merged record cannot
# pass for a whole one. Record sizes span 10 B to 256 KiB.
WRITER = r"""
import os, random, sys
from claude_fanout.store.eventlog import EventLog

path, writer, count, seed, progress, weights = sys.argv[1:7]
writer, count = int(writer), int(count)
weights = [float(w) for w in weights.split(",")]
spans = ((64 * 1024, 256 * 1024), (4096, 64 * 1024), (100, 4096), (10, 100))
log = EventLog(path)
rng = random.Random(seed)
fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if progress != "-" else -1
if fd >= 0:
    os.write(fd, b"ready\n")
for seq in range(count):
    if seq <= 1:
        size = (256 * 1024, 10)[seq]  # the extremes, from every writer
    else:
        size = rng.randint(*rng.choices(spans, weights)[0])
    pad = "abcdefghijklmnopqrstuvwxyz"[(writer * 7 + seq) % 26] * size
    log.append("probe", writer=writer, seq=seq, size=size, pad=pad)
    if fd >= 0:
        # The side channel: written only once the append returned. A SIGKILL does not lose a
        # completed write (it is in the page cache), so no fsync is needed to trust it.
        os.write(fd, b"%d\n" % seq)
"""

# Weights of record sizes 64-256 KiB, 4-64 KiB, 100 B-4 KiB, 10-100 B.
# Mostly big records: a SIGKILL tears a record only when it lands inside the write() of one
# (about one kill in eight, measured), and a big write lasts longest.
KILL_MIX = "9,0.5,0.25,0.25"
LOAD_MIX = "0.15,1.05,28.8,70"  # mostly small, a few large (mean ~1.3 KB)


def writer_argv(
    path: Path, writer: int, count: int, seed: str, progress: Path | None, mix: str
) -> list[str]:
    return [
        PY,
        "-c",
        WRITER,
        str(path),
        str(writer),
        str(count),
        seed,
        str(progress) if progress else "-",
        mix,
    ]


def pad_ok(event: dict[str, Any]) -> bool:
    pad, size = event.get("pad"), event.get("size")
    letter = PAD_ALPHABET[(event["writer"] * 7 + event["seq"]) % 26]
    return isinstance(pad, str) and len(pad) == size and pad == letter * size


def confirmed(progress: Path) -> list[int]:
    lines = progress.read_bytes().split(b"\n")
    # A line without its newline was not confirmed.
    return [int(line) for line in lines[1:-1] if line.isdigit()]


# Writers write until killed (this bound is never reached), one every 0-60 ms: ~100 MB a trial.
KILL_RECORDS = 100_000
KILL_GAP_S = 0.06


@pytest.mark.timeout(120)
@pytest.mark.soak_timeout
def test_writers_sigkilled_mid_append_lose_nothing_confirmed(
    tmp_path: Path, soak: bool, trials, report: Report
) -> None:
    writers = 4

    def trial(index: int, rng: random.Random) -> dict[str, int]:
        folder = tmp_path / f"kill-{index}"
        folder.mkdir()
        path = folder / "events.jsonl"
        progress = [folder / f"progress-{w}" for w in range(writers)]
        procs_: list[subprocess.Popen[bytes]] = []
        try:
            for w in range(writers):
                procs_.append(
                    subprocess.Popen(
                        writer_argv(
                            path, w, KILL_RECORDS, f"{SEED}-{index}-{w}", progress[w], KILL_MIX
                        )
                    )
                )
            wait_until(lambda: all(p.exists() for p in progress), timeout=20)
            # Kill the writers one by one at random moments, all of them mid-stream.
            for proc in rng.sample(procs_, len(procs_)):
                time.sleep(rng.uniform(0.0, KILL_GAP_S))
                proc.send_signal(signal.SIGKILL)
            codes = [proc.wait(timeout=20) for proc in procs_]
            killed = {w for w, code in enumerate(codes) if code == -signal.SIGKILL}
            assert all(code in (0, -signal.SIGKILL) for code in codes), codes
            size = path.stat().st_size
            torn_tail = size > 0 and not path.read_bytes().endswith(b"\n")

            result = read_events(path)
            by_writer: dict[int, list[int]] = {w: [] for w in range(writers)}
            for event in result.events:
                assert event["type"] == "probe" and pad_ok(event), str(event)[:200]
                by_writer[event["writer"]].append(event["seq"])
            for w in range(writers):
                told = confirmed(progress[w])
                assert told == list(range(len(told))), (w, told[:5])
                seqs = by_writer[w]
                # Nothing lost or duplicated, in order: the confirmed records, plus at most the
                # one in flight when the writer died (written whole, not yet confirmed).
                assert seqs in (list(range(len(told))), list(range(len(told) + 1))), (
                    w,
                    len(told),
                    seqs[-3:],
                )
                if w not in killed:
                    assert len(seqs) == KILL_RECORDS
            # The next append repairs a torn tail: its record parses, and so does the rest.
            EventLog(path).append("probe", writer=-1, seq=0, size=0, pad="")
            after = read_events(path)
            assert after.offset == path.stat().st_size
            assert after.events[:-1] == result.events
            assert after.events[-1]["writer"] == -1
            assert len(after.bad) == len(result.bad) + (1 if torn_tail else 0)
            # At most one bad (partial) line per killed writer, each a probe's beginning.
            bad_writers: Counter[int] = Counter()
            for bad in after.bad:
                match = re.match(r'\{"writer":(\d+),"seq":\d+', bad.excerpt)
                assert match, bad
                bad_writers[int(match.group(1))] += 1
            assert all(n == 1 and w in killed for w, n in bad_writers.items()), (
                bad_writers,
                killed,
            )
            return {
                "writers killed": len(killed),
                "records torn by a kill": len(after.bad),
                "torn tails repaired by the next append": int(torn_tail),
                "max MiB": round(size / 2**20),
            }
        finally:
            for proc in procs_:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                path.unlink()

    notes = run_trials("writers SIGKILL mid-append", trials(5, 40), trial, report)
    if soak:
        # A kill tears a record about one time in ten: the soak must have seen it happen.
        assert notes.get("records torn by a kill", 0) >= 1, notes


# -- 5. a full disk -------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write to ``path`` until the file system is full (to the last byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            while True:
                try:
                    if os.write(fd, chunk) < len(chunk):
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


@pytest.mark.timeout(60)
@pytest.mark.soak_timeout
def test_full_disk_log_stays_readable_and_hooks_fail_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trials, report: Report
) -> None:
    session = "full-disk-session"

    def trial(index: int, rng: random.Random) -> dict[str, int]:
        with tiny_tmpfs(tmp_path / f"disk-{index}") as disk:
            project = disk / "project"
            (project / ".claude").mkdir(parents=True)
            (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 0\n")
            monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
            run = FakeRun(
                project,
                "20260101-000000-000-f00d",
                {"W1": {}, "W2": {}},
                session=session,
                delivery="block",
            )
            run.start("W1")
            run.start("W2")
            run.finish("W1", result="W1 says hello")
            log = EventLog(run.path / "events.jsonl")
            # Space set aside, given back at the end.
            (disk / "reserve").write_bytes(b"\0" * 32768)
            # Append until the disk is full; a record that did not fit may be partly there.
            written: list[int] = []
            top = rng.choice((2048, 16384, 65536))
            seq, failed = 0, None
            while failed is None:
                size = rng.randint(10, top)
                try:
                    log.append("probe", writer=0, seq=seq, size=size, pad="x" * size)
                except OSError as exc:
                    failed = exc
                else:
                    written.append(seq)
                    seq += 1
            fill(disk / "filler")
            assert written, "nothing fitted on the disk"

            def probes(result: Any) -> list[int]:
                return [e["seq"] for e in result.events if e["type"] == "probe"]

            full = read_events(run.path / "events.jsonl")
            assert probes(full) == written
            assert len(full.bad) <= 1, full.bad
            assert full.offset <= (run.path / "events.jsonl").stat().st_size
            torn = not (run.path / "events.jsonl").read_bytes().endswith(b"\n")
            # Hooks against the full disk: exit 0 and no output, whatever they needed to write.
            for event, fields in (
                ("PostToolUse", {"tool_name": "Bash", "tool_input": {}, "tool_response": {}}),
                ("Stop", {"stop_hook_active": False}),
                ("PreToolUse", {"tool_name": "Read", "tool_input": {"file_path": "/x"}}),
            ):
                code, out, err = hook(project, event, session, **fields)
                assert (code, out, err) == (0, "", ""), (event, code, out, err)
            with pytest.raises(OSError):
                log.append("probe", writer=1, seq=0, size=0, pad="")
            # Space comes back: the next append repairs the tail and parses, and hooks work.
            (disk / "filler").unlink()
            (disk / "reserve").unlink()
            log.append("probe", writer=1, seq=1, size=0, pad="")
            again = read_events(run.path / "events.jsonl")
            assert again.offset == (run.path / "events.jsonl").stat().st_size
            assert again.events[-1]["writer"] == 1 and again.events[-1]["seq"] == 1
            assert probes(again) == [*written, 1]
            assert len(again.bad) <= 1, again.bad
            code, out, _ = hook(
                project, "PostToolUse", session, tool_name="Bash", tool_input={}, tool_response={}
            )
            assert code == 0 and "W1 says hello" in out, out
            return {"torn tails": int(torn), "short writes": int("short write" in str(failed))}

    run_trials("full disk", trials(3, 10), trial, report)


# -- 6. 32 writers while readers tail ------------------------------------------------------------

READER = r"""
import json, os, sys, time
from claude_fanout.store.eventlog import read_events

path, done, out, writers, count = sys.argv[1:6]
writers, count = int(writers), int(count)
alphabet = "abcdefghijklmnopqrstuvwxyz"
offset, reads, records, problems = 0, 0, 0, []
following = [-1] * writers
while True:
    finished = os.path.exists(done)
    result = read_events(path, offset)
    reads += 1
    if result.bad:
        problems.append(f"bad lines at {[b.offset for b in result.bad[:3]]}")
    for e in result.events:
        w, s = e.get("writer"), e.get("seq")
        pad, size = e.get("pad"), e.get("size")
        if e.get("type") != "probe" or not (isinstance(w, int) and 0 <= w < writers):
            problems.append(f"alien record {str(e)[:80]}")
            continue
        if not isinstance(pad, str) or len(pad) != size or pad != alphabet[(w * 7 + s) % 26] * size:
            problems.append(f"torn record writer {w} seq {s}")
        if s != following[w] + 1:
            problems.append(f"writer {w}: seq {s} after {following[w]}")
        following[w] = s
        records += 1
    offset = result.offset
    if finished or len(problems) > 20:
        break
    time.sleep(0.002)
with open(out, "w") as handle:
    json.dump({"records": records, "offset": offset, "reads": reads, "problems": problems[:20],
               "last": following}, handle)
"""


@pytest.mark.timeout(120)
@pytest.mark.soak_timeout
def test_thirty_two_writers_two_readers_tear_lose_duplicate_nothing(
    tmp_path: Path, soak: bool, report: Report
) -> None:
    writers, count = 32, (5000 if soak else 300)
    path = tmp_path / "events.jsonl"
    done = tmp_path / "writers-done"
    started = time.monotonic()
    sizes = [str(writers), str(count)]
    readers = [
        subprocess.Popen(
            [PY, "-c", READER, str(path), str(done), str(tmp_path / f"reader-{r}.json"), *sizes]
        )
        for r in range(2)
    ]
    procs_: list[subprocess.Popen[bytes]] = []
    failure = None
    try:
        procs_ = [
            subprocess.Popen(writer_argv(path, w, count, f"{SEED}-{w}", None, LOAD_MIX))
            for w in range(writers)
        ]
        codes = [proc.wait(timeout=1500) for proc in procs_]
        assert codes == [0] * writers, codes
        size = path.stat().st_size
        done.touch()
        for reader in readers:
            assert reader.wait(timeout=300) == 0
        assert size < 300 * 1024 * 1024, f"the log grew to {size / 2**20:.0f} MiB"
        assert path.read_bytes()[-1:] == b"\n"
        for r in range(2):
            seen = json.loads((tmp_path / f"reader-{r}.json").read_text())
            assert seen["problems"] == [], seen["problems"]
            assert seen["records"] == writers * count, seen["records"]
            assert seen["last"] == [count - 1] * writers
            assert seen["offset"] == size
            assert seen["reads"] > 1, "the reader never tailed a growing log"
    except AssertionError as exc:
        failure = exc
        raise
    finally:
        for proc in procs_ + readers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        mib = path.stat().st_size / 2**20 if path.exists() else 0.0
        with contextlib.suppress(OSError):
            path.unlink()
        report(
            name=f"{writers} writers x {count} records, 2 readers",
            trials=1,
            failures=int(failure is not None),
            seconds=time.monotonic() - started,
            notes=f"{writers * count} records, {mib:.0f} MiB",
        )


# -- 7. the Stop hook facing a frozen supervisor ------------------------------------------------

STOP_WAIT_S = 2.0
MAX_BLOCKS = 3


@pytest.mark.timeout(90)
@pytest.mark.soak_timeout
def test_stop_hook_with_a_frozen_supervisor_is_bounded(
    project: Path, monkeypatch: pytest.MonkeyPatch, trials, report: Report
) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    (project / ".claude" / "fanout.toml").write_text(
        f"[stop]\nwait_s = {STOP_WAIT_S:g}\nmax_blocks = {MAX_BLOCKS}\n"
    )
    plan = make_plan(
        project,
        [
            {"id": "A", "kind": "shell", "argv": sleeper(300)},
            {"id": "B", "kind": "shell", "argv": ["true"], "deps": ["A"]},
        ],
    )

    def trial(index: int, rng: random.Random) -> dict[str, int]:
        session = f"frozen-{index}"
        started = start_run(
            plan, project=project, conductor=this_process(session), delivery="block"
        )
        try:
            wait_until(lambda: read_pid(started.run.path / "workers/A/out/child.pid"), timeout=10)
            os.kill(started.supervisor.pid, signal.SIGSTOP)
            time.sleep(rng.uniform(0.0, 0.3))
            blocks, slowest = 0, 0.0
            answers = []
            # One turn: the first Stop, then Claude Code's re-tries with stop_hook_active.
            for call in range(MAX_BLOCKS + 2):
                began = time.monotonic()
                code, out, _ = hook(project, "Stop", session, stop_hook_active=call > 0)
                took = time.monotonic() - began
                slowest = max(slowest, took)
                assert code == 0
                assert took < STOP_WAIT_S + 2.0, f"Stop call {call} took {took:.1f}s"
                answer = json.loads(out) if out else None
                answers.append(answer)
                if answer and answer.get("decision") == "block":
                    blocks += 1
            assert blocks <= MAX_BLOCKS, answers
            assert answers[-1] is None or answers[-1].get("decision") != "block", answers
            return {
                f"turns with {blocks} blocks": 1,
                "max seconds of one Stop call": round(slowest, 1),
            }
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.supervisor.pid, signal.SIGCONT)
            finish_supervisor(started)
            kill_all_under(project)

    run_trials("Stop vs frozen supervisor", trials(1, 3), trial, report)
