"""Real runs through the real CLI: DAG order, parallelism, timeouts, retries, cancel, lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.store.eventlog import read_events
from tests.helpers import CLIResult, alive, processes_under, wait_until

PY = sys.executable

pytestmark = pytest.mark.timeout(60)


def run_dir(project: Path, run_id: str) -> Path:
    return project / ".claude" / "runs" / run_id


def events(project: Path, run_id: str) -> list[dict[str, Any]]:
    result = read_events(run_dir(project, run_id) / "events.jsonl")
    assert result.bad == [], "the log must parse completely"
    return result.events


def status(fanout: Callable[..., CLIResult], run_id: str) -> dict[str, Any]:
    result = fanout("status", run_id, "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = result.json()
    return data


def task_states(data: dict[str, Any]) -> dict[str, str]:
    return {task["id"]: task["state"] for task in data["tasks"]}


def start_detached(fanout: Callable[..., CLIResult], plan: Path) -> str:
    result = fanout("run", str(plan), "--detach")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def sleeper_with_child(seconds: int = 60) -> list[str]:
    """A worker that starts a grandchild in its group, records both pids, then sleeps."""
    script = (
        f'sleep {seconds} & echo $! > "$FANOUT_OUT_DIR/child.pid"; '
        f'echo $$ > "$FANOUT_OUT_DIR/self.pid"; sleep {seconds}'
    )
    return ["sh", "-c", script]


def recorded_pids(project: Path, run_id: str, task: str) -> list[int]:
    out = run_dir(project, run_id) / "workers" / task / "out"
    return [int((out / name).read_text()) for name in ("self.pid", "child.pid")]


@pytest.mark.portable
def test_diamond_with_failing_branch(project: Path, fanout, write_plan) -> None:
    (project / "helpers.py").write_text("def double(x):\n    return {'doubled': x * 2}\n")
    plan = write_plan(
        [
            {"id": "A", "kind": "shell", "argv": [PY, "-c", "print('from A')"]},
            {
                "id": "B",
                "kind": "shell",
                "argv": [PY, "-c", "import sys; print('B breaks'); sys.exit(3)"],
                "deps": ["A"],
            },
            {
                "id": "C",
                "kind": "python",
                "target": "helpers:double",
                "args": {"x": 21},
                "deps": ["A"],
            },
            {"id": "D", "kind": "shell", "argv": ["true"], "deps": ["B", "C"]},
            {"id": "E", "kind": "shell", "argv": ["true"], "deps": ["D"]},
            {"id": "F", "kind": "shell", "argv": [PY, "-c", "print('independent')"]},
        ]
    )
    result = fanout("run", str(plan))
    assert result.returncode == 1, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    data = status(fanout, run_id)
    assert data["state"] == "failed"
    assert task_states(data) == {
        "A": "succeeded",
        "B": "failed",
        "C": "succeeded",
        "D": "skipped",
        "E": "skipped",
        "F": "succeeded",
    }
    by_id = {task["id"]: task for task in data["tasks"]}
    assert by_id["B"]["exit_code"] == 3
    assert by_id["D"]["reason"] == "dependency B failed"
    assert by_id["E"]["reason"] == "dependency D skipped"
    out = run_dir(project, run_id) / "workers"
    assert json.loads((out / "C" / "out" / "result.json").read_text()) == {"doubled": 42}
    assert "B breaks" in (out / "B" / "log").read_text()
    assert fanout("logs", run_id, "A").stdout.count("from A") == 1
    # A started before its dependents, and nothing started after the failure downstream of B.
    log = events(project, run_id)
    started = [e["task"] for e in log if e["type"] == "task_started"]
    assert started.index("A") < started.index("B") and started.index("A") < started.index("C")
    assert "D" not in started and "E" not in started
    assert log[-1]["type"] == "run_finished" and log[-1]["state"] == "failed"
    # The snapshot the supervisor left covers the whole log.
    snapshot = json.loads((run_dir(project, run_id) / "state.json").read_text())
    assert snapshot["offset"] == (run_dir(project, run_id) / "events.jsonl").stat().st_size


def test_max_parallel_is_honoured_and_work_overlaps(project: Path, fanout, write_plan) -> None:
    tasks = [
        {"id": f"W{i}", "kind": "shell", "argv": [PY, "-c", "import time; time.sleep(0.4)"]}
        for i in range(1, 7)
    ]
    result = fanout("run", str(write_plan(tasks, max_parallel=2)))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    live = peak = 0
    for event in events(project, run_id):
        if event["type"] == "task_started":
            live += 1
            peak = max(peak, live)
        elif event["type"] == "task_exited":
            live -= 1
    assert peak == 2
    assert set(task_states(status(fanout, run_id)).values()) == {"succeeded"}


def test_timeout_kills_the_whole_process_group(project: Path, fanout, write_plan) -> None:
    plan = write_plan(
        [
            {"id": "slow", "kind": "shell", "argv": sleeper_with_child(), "timeout_s": 1},
        ]
    )
    result = fanout("run", str(plan))
    assert result.returncode == 1
    run_id = result.stdout.strip().splitlines()[-1]
    task = status(fanout, run_id)["tasks"][0]
    assert task["state"] == "timed_out"
    assert task["signal"] == signal.SIGTERM
    assert task["reason"] == "timed out after 1s"
    for pid in recorded_pids(project, run_id, "slow"):
        assert not alive(pid)


def test_timeout_escalates_to_sigkill_when_term_is_ignored(project, fanout, write_plan) -> None:
    script = "trap '' TERM; echo $$ > \"$FANOUT_OUT_DIR/self.pid\"; while :; do sleep 0.05; done"
    plan = write_plan(
        [
            {"id": "stubborn", "kind": "shell", "argv": ["sh", "-c", script], "timeout_s": 0.5},
        ]
    )
    result = fanout("run", str(plan))
    run_id = result.stdout.strip().splitlines()[-1]
    task = status(fanout, run_id)["tasks"][0]
    assert task["state"] == "timed_out"
    assert task["signal"] == signal.SIGKILL
    pid = int((run_dir(project, run_id) / "workers/stubborn/out/self.pid").read_text())
    assert not alive(pid)


def test_failed_task_is_retried_with_backoff(project: Path, fanout, write_plan) -> None:
    flaky = (
        "import os, sys, pathlib\n"
        "p = pathlib.Path(os.environ['FANOUT_OUT_DIR']) / 'tries'\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.exit(0 if n >= 2 else 1)\n"
    )
    plan = write_plan([{"id": "flaky", "kind": "shell", "argv": [PY, "-c", flaky], "retries": 2}])
    result = fanout("run", str(plan))
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    log = events(project, run_id)
    retry = [e for e in log if e["type"] == "task_retry"]
    assert [(e["attempt"], e["delay_s"]) for e in retry] == [(2, 1.0)]
    exits = [e for e in log if e["type"] == "task_exited"]
    assert [e["outcome"] for e in exits] == ["failed", "succeeded"]
    assert exits[1]["ts"] - exits[0]["ts"] >= 1.0
    task = status(fanout, run_id)["tasks"][0]
    assert (task["state"], task["attempt"]) == ("succeeded", 2)


@pytest.mark.portable
def test_cancel_leaves_no_process_alive(project: Path, fanout, write_plan) -> None:
    plan = write_plan(
        [{"id": f"W{i}", "kind": "shell", "argv": sleeper_with_child()} for i in (1, 2, 3)]
        + [{"id": "after", "kind": "shell", "argv": ["true"], "deps": ["W1"]}]
    )
    run_id = start_detached(fanout, plan)
    out = run_dir(project, run_id) / "workers"
    wait_until(lambda: all((out / f"W{i}/out/child.pid").exists() for i in (1, 2, 3)), timeout=10)
    pids = [pid for i in (1, 2, 3) for pid in recorded_pids(project, run_id, f"W{i}")]
    supervisor = json.loads((run_dir(project, run_id) / "supervisor.json").read_text())

    result = fanout("cancel", run_id)
    assert result.returncode == 0, result.stderr
    data = status(fanout, run_id)
    assert data["state"] == "cancelled"
    assert task_states(data) == {
        "W1": "cancelled",
        "W2": "cancelled",
        "W3": "cancelled",
        "after": "cancelled",
    }
    wait_until(
        lambda: not alive(supervisor["pid"]) and not alive(supervisor["watchdog_pid"]), timeout=5
    )
    assert [pid for pid in pids if alive(pid)] == []
    assert processes_under(project) == []


def test_sigkill_of_the_supervisor_stops_workers_and_reads_lost(project, fanout, write_plan):
    plan = write_plan(
        [{"id": f"W{i}", "kind": "shell", "argv": sleeper_with_child()} for i in (1, 2)]
    )
    run_id = start_detached(fanout, plan)
    out = run_dir(project, run_id) / "workers"
    wait_until(lambda: all((out / f"W{i}/out/child.pid").exists() for i in (1, 2)), timeout=10)
    pids = [pid for i in (1, 2) for pid in recorded_pids(project, run_id, f"W{i}")]
    supervisor = json.loads((run_dir(project, run_id) / "supervisor.json").read_text())

    os.kill(supervisor["pid"], signal.SIGKILL)

    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=5)
    wait_until(lambda: not alive(supervisor["watchdog_pid"]), timeout=5)
    data = status(fanout, run_id)
    assert data["state"] == "lost"
    assert set(task_states(data).values()) == {"lost"}
    lost = [e for e in events(project, run_id) if e["type"] == "supervisor_lost"]
    assert len(lost) == 1 and sorted(lost[0]["stopped_groups"]) == sorted(pids[0::2])
    assert fanout("wait", run_id, "--timeout", "5").returncode == 1


def test_wait_times_out_with_124_and_cancel_then_finishes(project, fanout, write_plan):
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": ["sleep", "30"]}])
    run_id = start_detached(fanout, plan)
    result = fanout("wait", run_id, "--timeout", "0.3")
    assert result.returncode == 124
    assert "still running" in result.stderr
    assert fanout("cancel", run_id).returncode == 0
    assert fanout("wait", run_id, "--timeout", "5").returncode == 1
    again = fanout("cancel", run_id)
    assert "already cancelled" in again.stdout


def test_runs_and_status_json_shapes(project: Path, fanout, write_plan) -> None:
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": ["true"]}], name="tiny")
    first = fanout("run", str(plan)).stdout.strip().splitlines()[-1]
    second = fanout("run", str(plan)).stdout.strip().splitlines()[-1]
    runs = fanout("runs", "--json").json()
    assert [r["run_id"] for r in runs] == sorted([first, second])
    assert all(r["state"] == "succeeded" and r["counts"] == {"succeeded": 1} for r in runs)
    latest = fanout("status", "--json").json()
    assert latest["run_id"] == max(first, second)
    assert set(latest) >= {
        "run_id",
        "state",
        "reason",
        "created",
        "started",
        "finished",
        "duration_s",
        "counts",
        "run_dir",
        "errors",
        "tasks",
        "spent",
    }
    assert set(latest["tasks"][0]) == {
        "id",
        "kind",
        "deps",
        "state",
        "attempt",
        "pid",
        "started",
        "ended",
        "duration_s",
        "exit_code",
        "signal",
        "reason",
        "log",
        "out_dir",
        "usage",
        "live",
        "spent",
        "doing",
        "branch",
        "commit",
    }
    human = fanout("status", first[:17] if first[:17] != second[:17] else first)
    assert human.returncode == 0 and "succeeded" in human.stdout and "W1" in human.stdout


def test_bad_plan_is_one_line_exit_2_and_starts_nothing(project: Path, fanout, write_plan):
    plan = write_plan(
        [
            {"id": "W1", "kind": "shell", "argv": ["true"], "deps": ["W2"]},
            {"id": "W2", "kind": "shell", "argv": ["true"], "deps": ["W1"]},
        ]
    )
    result = fanout("run", str(plan))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "dependency cycle: W1 -> W2 -> W1" in result.stderr
    assert not (project / ".claude" / "runs").exists()


def test_symlinked_runs_directory_is_refused(project: Path, fanout, write_plan, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project / ".claude" / "runs").symlink_to(elsewhere)
    result = fanout("run", str(write_plan([{"id": "W1", "kind": "shell", "argv": ["true"]}])))
    assert result.returncode == 1
    assert "symlink" in result.stderr and result.stderr.count("\n") == 1
    assert list(elsewhere.iterdir()) == []


def test_store_modes_are_private(project: Path, fanout, write_plan) -> None:
    result = fanout("run", str(write_plan([{"id": "W1", "kind": "shell", "argv": ["true"]}])))
    run_id = result.stdout.strip().splitlines()[-1]
    root = project / ".claude" / "runs"
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert run_id


def test_no_runs_is_a_clear_error(project: Path, fanout) -> None:
    result = fanout("status")
    assert result.returncode == 1
    assert "no runs under" in result.stderr and "fanout run PLAN" in result.stderr


def test_resume_runs_again_only_what_did_not_succeed(project: Path, fanout, write_plan) -> None:
    count = (
        "import os, pathlib, sys; p = pathlib.Path(os.environ['FANOUT_PROJECT']) / "
        "(os.environ['FANOUT_TASK_ID'] + '.runs'); "
        "p.write_text(str(int(p.read_text()) + 1 if p.exists() else 1)); "
        "sys.exit(0 if os.environ['FANOUT_TASK_ID'] != 'B' or "
        "(pathlib.Path(os.environ['FANOUT_PROJECT']) / 'ok').exists() else 4)"
    )
    plan = write_plan(
        [
            {"id": "A", "kind": "shell", "argv": [PY, "-c", count]},
            {"id": "B", "kind": "shell", "argv": [PY, "-c", count], "deps": ["A"]},
            {"id": "C", "kind": "shell", "argv": [PY, "-c", count], "deps": ["B"]},
        ]
    )
    first = fanout("run", str(plan))
    assert first.returncode == 1
    run_id = first.stdout.strip().splitlines()[-1]
    assert task_states(status(fanout, run_id)) == {"A": "succeeded", "B": "failed", "C": "skipped"}
    (project / "ok").write_text("")
    again = fanout("resume", run_id)
    assert again.returncode == 0, again.stderr
    data = status(fanout, run_id)
    assert data["state"] == "succeeded"
    assert task_states(data) == {"A": "succeeded", "B": "succeeded", "C": "succeeded"}
    runs = {name: int((project / f"{name}.runs").read_text()) for name in "ABC"}
    assert runs == {"A": 1, "B": 2, "C": 1}  # nothing that succeeded ran twice
    assert fanout("resume", run_id).returncode == 1  # nothing left to resume


def test_a_frozen_supervisor_is_declared_lost_and_its_workers_stopped(project, fanout, write_plan):
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": sleeper_with_child()}])
    run_id = start_detached(fanout, plan)
    out = run_dir(project, run_id) / "workers"
    wait_until((out / "W1/out/child.pid").exists, timeout=10)
    pids = recorded_pids(project, run_id, "W1")
    supervisor = json.loads((run_dir(project, run_id) / "supervisor.json").read_text())
    os.kill(supervisor["pid"], signal.SIGSTOP)
    try:
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=25)
        wait_until(lambda: not alive(supervisor["pid"]), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor["pid"], signal.SIGCONT)
    data = status(fanout, run_id)
    assert data["state"] == "lost"
    assert "stopped responding" in data["reason"]
    # The lost run can be resumed: a new supervisor runs W1 again.
    assert fanout("resume", run_id, "--detach").returncode == 0
    wait_until(lambda: status(fanout, run_id)["tasks"][0]["state"] == "running", timeout=10)
    assert fanout("cancel", run_id).returncode == 0
