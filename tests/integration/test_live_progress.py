"""What a running shell worker is doing, seen from outside: its last line of output reaches the
run's log as a ``task_progress`` record while it runs and `fanout status` shows it; once the
worker has ended, it is gone from the status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout.states import EventType
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.layout import run_path
from tests.helpers import CLIResult, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_running_shell_workers_last_line_shows_in_status(
    project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    script = "echo 'compiling 1/3'; while [ ! -e go ]; do sleep 0.05; done; echo 'linked'"
    plan = write_plan([{"id": "S1", "kind": "shell", "argv": ["sh", "-c", script]}])
    started = fanout("run", str(plan), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    events = Path(run_path(project, run_id)) / "events.jsonl"

    def doing() -> list[str]:
        found = read_events(events).events
        return [e["doing"] for e in found if e["type"] == EventType.TASK_PROGRESS]

    try:
        assert wait_until(doing, timeout=20) == ["compiling 1/3"]
        shown = fanout("status", run_id)
        (row,) = [line for line in shown.stdout.splitlines() if line.startswith("S1")]
        assert "running" in row and row.rstrip().endswith("compiling 1/3")
        assert fanout("status", run_id, "--json").json()["tasks"][0]["doing"] == "compiling 1/3"
    finally:
        (project / "go").touch()
    assert fanout("wait", run_id, "--timeout", "20").returncode == 0
    (task,) = fanout("status", run_id, "--json").json()["tasks"]
    assert task["state"] == "succeeded" and task["doing"] is None
    assert "compiling" not in fanout("status", run_id).stdout
