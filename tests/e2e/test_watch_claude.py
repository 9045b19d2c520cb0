"""``fanout watch`` on claude workers: the real CLI against the scripted fake API."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_fanout.cli.watch import Followed
from claude_fanout.cli.watch_view import Style, frame
from claude_fanout.config import Config
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import ReadThenSummarize
from tests.e2e.conftest import StartFake
from tests.helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_watch_shows_what_claude_workers_do_then_their_turns_and_cost(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    for name in ("a.py", "b.py"):
        (project / name).write_text(f"{name[0]} = 1\n")
    api = fake_api(ReadThenSummarize(delay_s=1.5))
    tasks = [
        {"id": f"W{i}", "kind": "claude", "prompt": f"Review {name}", "max_turns": 4}
        for i, name in enumerate(("a.py", "b.py"), 1)
    ]
    plan = parse_plan({"version": 1, "max_cost_usd": 5, "tasks": tasks}, project=project)
    started = start_run(plan, project=project, env=cli_env(api.base_url, claude_home))
    try:
        followed = Followed(started.run, Config())

        def a_tool_in_use() -> str | None:
            followed.refresh(time.time())
            lines = frame(followed.view(time.time()), Style(width=160, colour=False))
            rows = [line for line in lines if line.startswith("W") and " running " in line]
            return next((row for row in rows if row.rstrip().endswith(" Read a.py")), None)

        # While it runs: the tool it uses, as its stream reports it (task_progress), and what
        # its first turn cost, marked as an estimate (the fake holds the next reply 1.5 s).
        row = wait_until(a_tool_in_use, timeout=60, interval=0.1)
        task, state, attempt, _elapsed, turns, _tokens, cost = row.split()[:7]
        assert (task, state, attempt, turns) == ("W1", "running", "1", "1")
        assert cost.startswith("~$")

        watched = subprocess.run(
            [sys.executable, "-m", "claude_fanout", "watch", started.run.run_id],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    finally:
        started.supervisor.wait(timeout=60)

    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    for task in ("W1", "W2"):
        done = next(line for line in lines if line.startswith(f"{task} succeeded after"))
        assert ", 2 turns, $" in done  # what the CLI reported, per worker
    assert lines[-2].startswith(f"run {started.run.run_id} succeeded in ")
    totals = lines[-1]
    assert totals.startswith("spent $") and "4 turns" in totals and "tokens in" in totals
    assert "budget left $" in totals and "of $5.00" in totals
