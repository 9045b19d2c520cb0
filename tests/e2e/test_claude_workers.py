"""`claude` tasks end to end: supervisor -> worker -> real Claude Code CLI -> scripted fake API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import ReadThenSummarize
from claude_fanout.testing.replies import Reply, Text
from tests.e2e.conftest import StartFake

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def reviewer(task_id: str, path: str, **extra: object) -> dict[str, object]:
    return {
        "id": task_id,
        "kind": "claude",
        "prompt": f"Review {path}",
        "claims": [path],
        "max_turns": 4,
        **extra,
    }


def test_three_claude_workers_run_in_parallel_and_report_usage(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    files = {"a.py": "alpha = 1\n", "b.py": "beta = 2\nbeta += 1\n", "c.py": "gamma = 3\n" * 5}
    for name, text in files.items():
        (project / name).write_text(text)
    api = fake_api(ReadThenSummarize(delay_s=0.6))
    plan = parse_plan(
        {"version": 1, "tasks": [reviewer(f"W{i}", name) for i, name in enumerate(files, 1)]},
        project=project,
    )
    started = start_run(plan, project=project, env=cli_env(api.base_url, claude_home))
    status = wait_run(started.run, timeout_s=90)
    started.supervisor.wait(timeout=10)

    assert status.state is RunState.SUCCEEDED, status
    run = started.run
    for i, (name, text) in enumerate(files.items(), 1):
        result = (run.out_dir(f"W{i}") / "result.md").read_text()
        lines = text.count("\n")
        assert result.strip() == (
            f"SUMMARY {project / name}: {lines} lines; first line: {text.splitlines()[0]}"
        )
    # Really parallel: every worker had started before the first one finished.
    events = read_events(run.events_path).events
    kinds = [(e["type"], e.get("task")) for e in events]
    first_exit = next(i for i, (kind, _) in enumerate(kinds) if kind == "task_exited")
    assert {task for kind, task in kinds[:first_exit] if kind == "task_started"} == {
        "W1",
        "W2",
        "W3",
    }
    # Each worker's recorded usage is what the fake reported to that worker's session.
    sessions: dict[str, list[int]] = {}
    for exchange in api.exchanges:
        if isinstance(exchange.reply, Reply) and exchange.request.session_id:
            usage = exchange.reply.usage
            sums = sessions.setdefault(exchange.request.session_id, [0, 0])
            sums[0] += usage.input_tokens
            sums[1] += usage.output_tokens
    assert len(sessions) == 3
    for i in (1, 2, 3):
        meta = json.loads((run.out_dir(f"W{i}") / "meta.json").read_text())
        assert meta["ok"] is True and meta["num_turns"] == 2
        assert meta["tools"] == ["Read", "Grep", "Glob"]
        reported = sessions[meta["session_id"]]
        assert [meta["usage"]["input_tokens"], meta["usage"]["output_tokens"]] == reported
        assert "SUMMARY" in (run.log_path(f"W{i}")).read_text()


def test_claude_worker_past_its_timeout_leaves_no_cli_behind(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    (project / "slow.py").write_text("x = 1\n")
    api = fake_api(lambda request: Reply([Text("thinking…")], delay_s=30))
    plan = parse_plan(
        {"version": 1, "tasks": [reviewer("W1", "slow.py", timeout_s=3)]}, project=project
    )
    started = start_run(plan, project=project, env=cli_env(api.base_url, claude_home))
    status = wait_run(started.run, timeout_s=30)
    started.supervisor.wait(timeout=10)
    assert status.tasks["W1"].state is TaskState.TIMED_OUT
    assert api.message_requests(), "the CLI had reached the model before it was stopped"
    # The `project` fixture fails the test if the CLI or any other process of the run survived.


def test_fanout_demo_runs_offline(tmp_path: Path) -> None:
    scratch = tmp_path / "demo"
    scratch.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "claude_fanout",
            "demo",
            "--dir",
            str(scratch),
            "--model-delay",
            "0.3",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Conductor's last word: 'MERGED: three reviews combined.'" in out
    assert "denied by the PreToolUse hook" in out
    assert "the Stop hook handed it every result, once" in out
    assert "run succeeded" in out
    # Act 2: three writers in worktrees; two merged, the third kept on its branch.
    assert "Conductor's last word: 'Edits reviewed.'" in out
    assert "merge-back into the working tree: W1, W2; W3 conflicts with W1 in src/billing.py" in out
    project = scratch / "project"
    assert "return gateway.refund(card, cents)" in (project / "src/billing.py").read_text()
    assert "RATES.get(region, 12)" in (project / "src/shipping.py").read_text()
    branches = subprocess.run(
        ["git", "branch", "--list", "fanout/*"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sum(b.startswith("fanout/") and b.endswith("/W3") for b in branches) == 1
    results = sorted((project / ".claude" / "runs").glob("*/workers/W*/out/result.md"))
    assert len(results) == 6
    assert "src/billing.py: 5 lines; first line: def charge(gateway, card, cents):" in (
        results[0].read_text()
    )
