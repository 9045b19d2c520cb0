"""Cost while it is spent, with the real CLI against the fake API: a worker's usage reaches the
run's log while it still runs, `fanout status` shows it before the worker exits, and a run budget
used up by running workers stops them."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.claude.pricing import cost_usd
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import RunDir
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.replies import Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request
from claude_fanout.usage import money
from tests.e2e.conftest import StartFake
from tests.helpers import CLIResult, alive, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FIRST = Usage(input_tokens=3000, output_tokens=60, cache_read_input_tokens=500)
# A call of about $0.08: 20,000 input tokens at $4 per million (2.1.332's default model).
BIG = Usage(input_tokens=20_000, output_tokens=100)


def progress_of(run: RunDir, task: str) -> list[dict[str, Any]]:
    events = read_events(run.events_path).events
    return [e for e in events if e["type"] == EventType.TASK_PROGRESS and e["task"] == task]


def test_a_running_workers_cost_is_in_the_log_and_in_status_before_it_exits(
    project: Path,
    fake_api: StartFake,
    claude_home: Path,
    fanout: Callable[..., CLIResult],
) -> None:
    (project / "notes.txt").write_text("one\ntwo\n")
    answer = threading.Event()

    def model(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fake session")])
        if not request.tool_results():
            return Reply(
                [Text("Reading the notes."), ToolUse("Read", {"file_path": "notes.txt"})],
                usage=FIRST,
            )
        answer.wait(timeout=60)  # the worker is mid-turn until the test has looked
        return Reply([Text("Two lines.")], usage=Usage(4000, 20))

    api = fake_api(model)
    plan = parse_plan(
        {"version": 1, "tasks": [{"id": "W1", "kind": "claude", "prompt": "Review notes.txt"}]},
        project=project,
    )
    started = start_run(plan, project=project, env=cli_env(api.base_url, claude_home))
    try:
        run = started.run
        # The first call is complete (its output counted, its tool in use): the worker now
        # waits for its second answer, so this is the last record until the test lets it go.
        record = wait_until(
            lambda: [
                r
                for r in progress_of(run, "W1")
                if r["output_tokens"] == FIRST.output_tokens and r["doing"] == "Read notes.txt"
            ],
            timeout=60,
        )[-1]
        events = read_events(run.events_path).events
        pid = next(e["pid"] for e in events if e["type"] == EventType.TASK_STARTED)
        assert alive(pid), "the record must come while the worker runs"
        # Exactly what the API reported for the call the worker made so far.
        assert record["turns"] == 1
        for key, value in FIRST.as_dict().items():
            assert record[key] == value, key
        model = api.message_requests(side_calls=False)[0].body["model"]  # the CLI's default
        assert record["cost_usd"] == pytest.approx(cost_usd(model, FIRST.as_dict()))
        assert record["doing"] == "Read notes.txt"

        shown = fanout("status", run.run_id)
        assert shown.returncode == 0, shown.stderr
        (row,) = [line for line in shown.stdout.splitlines() if line.startswith("W1")]
        assert "running" in row
        assert f"~{money(record['cost_usd'])} 1 turn" in row
        assert "Read notes.txt" in row
        assert "~: running workers' cost so far, estimated" in shown.stdout
        data = fanout("status", run.run_id, "--json").json()
        (task,) = data["tasks"]
        assert task["usage"] is None and task["live"]["cost_usd"] == record["cost_usd"]
        assert task["spent"] == task["live"] and data["spent"] == task["live"]
        assert task["doing"] == "Read notes.txt"
        (listed,) = fanout("runs", "--json").json()
        assert listed["spent"] == task["live"] and listed["usage"] is None
        assert f"~{money(record['cost_usd'])}" in fanout("runs").stdout
    finally:
        answer.set()
    status = wait_run(started.run, timeout_s=60)
    started.supervisor.wait(timeout=10)

    assert status.state is RunState.SUCCEEDED, status
    meta = json.loads((run.out_dir("W1") / "meta.json").read_text())
    final = status.tasks["W1"]
    assert final.live is None and final.usage is not None
    assert final.usage["cost_usd"] == pytest.approx(meta["total_cost_usd"])  # the CLI's, exact
    shown = fanout("status", run.run_id)
    assert "~" not in shown.stdout and money(meta["total_cost_usd"]) in shown.stdout


def test_a_run_budget_spent_by_running_workers_stops_them(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    """Two workers, each allowed the whole run budget by the CLI's own cap, together use it up:
    the supervisor stops both (over budget, not retried, their spend counted) and starts nothing
    more. Before, each ran on to its own cap: twice the run's budget."""
    (project / "notes.txt").write_text("one\ntwo\n")

    def read_forever(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fake session")])
        return Reply(
            [Text("Once more."), ToolUse("Read", {"file_path": "notes.txt"})],
            usage=BIG,
            delay_s=1.0,
        )

    api = fake_api(read_forever)
    budget = 0.5
    reader = {"kind": "claude", "prompt": "Review notes.txt", "max_turns": 40, "retries": 2}
    plan = parse_plan(
        {
            "version": 1,
            "max_parallel": 2,
            "max_cost_usd": budget,
            "tasks": [{"id": f"W{i}", **reader} for i in (1, 2, 3)],
        },
        project=project,
    )
    started = start_run(plan, project=project, env=cli_env(api.base_url, claude_home))
    status = wait_run(started.run, timeout_s=90)
    started.supervisor.wait(timeout=10)

    model = api.message_requests(side_calls=False)[0].body["model"]  # the CLI's default
    per_call = cost_usd(model, BIG.as_dict())
    events = read_events(started.run.events_path).events
    pids = {e["task"]: e["pid"] for e in events if e["type"] == "task_started"}
    assert sorted(pids) == ["W1", "W2"], "started more than the two, or again"
    assert not any(alive(pid) for pid in pids.values())
    for task_id in ("W1", "W2"):
        task = status.tasks[task_id]
        assert task.state is TaskState.OVER_BUDGET, (task_id, task.reason)
        assert task.reason is not None and "the run's budget is spent" in task.reason
        assert task.usage is not None and task.usage["cost_usd"] > 0, "its spend is not counted"
        assert progress_of(started.run, task_id), "no progress while it ran"
    assert status.tasks["W3"].state is TaskState.OVER_BUDGET
    assert not [e for e in events if e["type"] == "task_retry"]
    spent = status.usage
    assert spent is not None
    # The run's budget is reached, and passed by about what the two workers spend between two
    # looks of the supervisor (a call takes 1 s; measured: 2 calls): never each worker's own cap.
    assert budget <= spent["cost_usd"] < budget + 5 * per_call
    calls = len(api.message_requests(side_calls=False))
    assert calls * per_call < 2 * budget
    log = (started.run.path / "supervisor.log").read_text()
    assert "W1 stopped: the run's budget is spent" in log
