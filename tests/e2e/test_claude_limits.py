"""Budgets, rate limits and the project-wide cap on claude workers, with the real CLI."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.status import RunStatus
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import ReadThenSummarize
from claude_fanout.testing.replies import ErrorReply, Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BIG = Usage(input_tokens=20_000, output_tokens=100)


def reader(task_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "claude", "prompt": "Review notes.txt", **extra}


def read_forever(_request: Request) -> Reply:
    return Reply([Text("Once more."), ToolUse("Read", {"file_path": "notes.txt"})], usage=BIG)


def run(
    project: Path, url: str, home: Path, data: dict[str, Any], *, toml: str = ""
) -> tuple[RunStatus, list[dict[str, Any]]]:
    (project / "notes.txt").write_text("one\ntwo\n")
    if toml:
        (project / ".claude" / "fanout.toml").write_text(toml)
    plan = parse_plan({"version": 1, **data}, project=project)
    started = start_run(plan, project=project, env=cli_env(url, home))
    status = wait_run(started.run, timeout_s=100)
    started.supervisor.wait(timeout=10)
    return status, read_events(started.run.events_path).events


def meta_of(project: Path, status: RunStatus, task_id: str) -> dict[str, Any]:
    path = project / ".claude/runs" / status.run_id / "workers" / task_id / "out/meta.json"
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def test_a_worker_past_its_turns_is_stopped_and_marked_over_budget(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(read_forever)

    status, _ = run(project, api.base_url, claude_home, {"tasks": [reader("W1", max_turns=3)]})

    task = status.tasks["W1"]
    assert task.state is TaskState.OVER_BUDGET
    assert task.reason is not None and "error_max_turns" in task.reason
    assert len(api.message_requests(side_calls=False)) == 3
    assert meta_of(project, status, "W1")["max_turns"] == 3
    assert status.state is RunState.FAILED


def test_a_worker_past_its_cost_is_stopped_and_its_cost_reported(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(read_forever)

    status, _ = run(
        project,
        api.base_url,
        claude_home,
        {"tasks": [reader("W1", max_turns=30, max_cost_usd=0.2)]},
    )

    task = status.tasks["W1"]
    assert task.state is TaskState.OVER_BUDGET
    assert task.reason is not None and "error_max_budget_usd" in task.reason
    calls = len(api.message_requests(side_calls=False))
    assert 1 < calls < 30  # stopped by cost, long before its turns ran out
    assert task.usage is not None
    # The CLI checks after each response: the spend passes the budget by at most one response.
    assert 0.2 <= task.usage["cost_usd"] < 0.2 * 2
    # The CLI's own accounting: the request it abandons once past the budget is not counted.
    assert task.usage["input_tokens"] in (BIG.input_tokens * (calls - 1), BIG.input_tokens * calls)
    assert meta_of(project, status, "W1")["max_budget_usd"] == 0.2


def test_a_spent_run_budget_starts_nothing_more(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(read_forever)

    status, events = run(
        project,
        api.base_url,
        claude_home,
        {
            "max_parallel": 1,
            "max_cost_usd": 0.1,
            "tasks": [reader("W1", max_turns=30), reader("W2"), reader("W3")],
        },
    )

    assert status.tasks["W1"].state is TaskState.OVER_BUDGET  # got what was left of the run's
    assert meta_of(project, status, "W1")["max_budget_usd"] == 0.1
    for later in ("W2", "W3"):
        assert status.tasks[later].state is TaskState.OVER_BUDGET
        assert status.tasks[later].reason is not None
        assert "run's budget is spent" in status.tasks[later].reason
    assert [e["task"] for e in events if e["type"] == "task_started"] == ["W1"]
    sessions = {r.session_id for r in api.message_requests(side_calls=False)}
    assert len(sessions) == 1


def test_rate_limited_then_accepted_the_worker_succeeds_after_a_backoff(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    """The CLI's own retry: 429 with retry-after, then 200."""
    summarize = ReadThenSummarize()
    refused: list[Request] = []

    def handler(request: Request) -> Reply | ErrorReply:
        if not refused and not request.is_side_call:
            refused.append(request)
            return ErrorReply.rate_limited(retry_after_s=1)
        return summarize(request)

    api = fake_api(handler)
    status, _ = run(project, api.base_url, claude_home, {"tasks": [reader("W1")]})

    assert status.tasks["W1"].state is TaskState.SUCCEEDED
    exchanges = [e for e in api.exchanges if not e.request.is_side_call]
    assert isinstance(exchanges[0].reply, ErrorReply) and exchanges[0].reply.status == 429
    assert isinstance(exchanges[1].reply, Reply)
    waited = exchanges[1].request.received_at - exchanges[0].request.received_at
    assert waited >= 0.9  # as retry-after told it
    result = project / ".claude/runs" / status.run_id / "workers/W1/out/result.md"
    assert result.read_text().startswith("SUMMARY ")


def test_a_worker_the_cli_gave_up_on_waits_and_retries_without_using_its_retries(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    """fanout's own retry: the CLI is told not to retry, the API says 429 twice, then yes."""
    summarize = ReadThenSummarize()
    refusals = 2
    lock = threading.Lock()

    def handler(request: Request) -> Reply | ErrorReply:
        nonlocal refusals
        with lock:
            if refusals and not request.is_side_call:
                refusals -= 1
                return ErrorReply.rate_limited(retry_after_s=0)
        return summarize(request)

    api = fake_api(handler)
    status, events = run(
        project,
        api.base_url,
        claude_home,
        {"tasks": [reader("W1", env={"CLAUDE_CODE_MAX_RETRIES": "0"})]},
        toml="[limits]\nrate_limit_backoff_s = 0.3\n",
    )

    assert status.tasks["W1"].state is TaskState.SUCCEEDED  # retries: 0 in the plan
    assert status.tasks["W1"].attempt == 3
    retries = [e for e in events if e["type"] == "task_retry"]
    assert [e["rate_limited"] for e in retries] == [True, True]
    assert all("rate limited" in e["reason"] and "429" in e["reason"] for e in retries)
    # Exponential from 0.3 s, jittered +-50%.
    assert 0.15 <= retries[0]["delay_s"] <= 0.45
    assert 0.3 <= retries[1]["delay_s"] <= 0.9


def test_claude_workers_are_capped_and_spaced_across_the_project(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(ReadThenSummarize(delay_s=0.3))

    status, events = run(
        project,
        api.base_url,
        claude_home,
        {"max_parallel": 3, "tasks": [reader(f"W{i}") for i in range(1, 4)]},
        toml="[limits]\nmax_live_claude_workers = 2\nclaude_start_interval_s = 0.5\n",
    )

    assert status.state is RunState.SUCCEEDED
    starts = [e["ts"] for e in events if e["type"] == "task_started"]
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(starts))
    live = peak = 0
    for event in events:
        if event["type"] == "task_started":
            live += 1
            peak = max(peak, live)
        elif event["type"] == "task_exited":
            live -= 1
    assert peak == 2


def test_usage_totals_match_what_the_api_reported(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(ReadThenSummarize(usage=Usage(1000, 50, 300, 20)))

    status, events = run(
        project, api.base_url, claude_home, {"tasks": [reader("W1"), reader("W2")]}
    )

    assert status.state is RunState.SUCCEEDED
    reported = api.reported_usage(side_calls=False)
    assert status.usage is not None
    assert status.usage["input_tokens"] == reported.input_tokens
    assert status.usage["output_tokens"] == reported.output_tokens
    assert status.usage["cache_read_input_tokens"] == reported.cache_read_input_tokens
    assert status.usage["cache_creation_input_tokens"] == reported.cache_creation_input_tokens
    assert status.usage["turns"] == 4
    costs = [meta_of(project, status, t)["total_cost_usd"] for t in ("W1", "W2")]
    assert status.usage["cost_usd"] == pytest.approx(sum(costs))
    assert all(cost > 0 for cost in costs)
    assert len([e for e in events if e["type"] == "task_usage"]) == 2


def test_the_claude_cap_holds_across_concurrent_runs(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(ReadThenSummarize(delay_s=0.5))
    (project / "notes.txt").write_text("one\ntwo\n")
    (project / ".claude" / "fanout.toml").write_text(
        "[limits]\nmax_live_claude_workers = 2\nclaude_start_interval_s = 0\n"
    )
    env = cli_env(api.base_url, claude_home)
    plan = {"version": 1, "tasks": [reader("W1"), reader("W2")]}
    started = [start_run(parse_plan(plan, project=project), project=project, env=env)]
    started.append(start_run(parse_plan(plan, project=project), project=project, env=env))
    for one in started:
        assert wait_run(one.run, timeout_s=100).state is RunState.SUCCEEDED
        one.supervisor.wait(timeout=10)

    # Interleave both runs' starts and exits by time: never more than 2 CLIs at once.
    events = sorted(
        (e["ts"], e["type"])
        for one in started
        for e in read_events(one.run.events_path).events
        if e["type"] in ("task_started", "task_exited")
    )
    live = peak = 0
    for _ts, kind in events:
        live += 1 if kind == "task_started" else -1
        peak = max(peak, live)
    assert peak == 2
