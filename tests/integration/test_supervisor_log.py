"""``supervisor.log`` says what the supervisor did, one ``supervisor[pid]:`` line each."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CLIResult

pytestmark = pytest.mark.timeout(60)


def test_the_supervisor_log_tells_starts_retries_timeouts_kills_and_the_end(
    project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    stubborn = "trap '' TERM; while :; do sleep 0.05; done"
    plan = write_plan(
        [
            {"id": "W1", "kind": "shell", "argv": [sys.executable, "-c", "exit(3)"], "retries": 1},
            {"id": "W2", "kind": "shell", "argv": ["sh", "-c", stubborn], "timeout_s": 0.5},
            {"id": "W3", "kind": "shell", "argv": ["true"], "deps": ["W1"]},
        ]
    )
    result = fanout("run", str(plan))
    run_id = result.stdout.strip().splitlines()[-1]
    run = project / ".claude" / "runs" / run_id
    pid = json.loads((run / "supervisor.json").read_text())["pid"]
    lines = (run / "supervisor.log").read_text().splitlines()
    assert lines, "the supervisor logged nothing"
    assert all(line.startswith(f"supervisor[{pid}]: ") for line in lines), lines
    text = "\n".join(lines)
    assert re.search(r"W1 started \(attempt 1, pid \d+\)", text)
    assert "W1 exited (exit 3)" in text
    assert "W1 retries in 1s (attempt 2)" in text
    assert re.search(r"W1 started \(attempt 2, pid \d+\)", text)
    assert "W2 timed out after 0.5s: SIGTERM to group" in text
    assert "SIGKILL to group" in text
    assert re.search(r"W2 exited \(SIGKILL\) after \d+\.\ds: timed_out", text)
    assert "W3 skipped: dependency W1 failed" in text
    assert f"run {run_id} failed" in lines[-1]
