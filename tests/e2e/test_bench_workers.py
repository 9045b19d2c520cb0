"""benchmarks/bench_workers.py keeps working: its core, tiny parameters, the real CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers import load_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_bench_workers_core_runs_every_case_and_checks_its_results(project: Path) -> None:
    bench = load_benchmark("bench_workers")
    report = bench.run_benchmark(
        root=project, tasks=2, latency_s=0.1, repeat=1, pool_repeat=1, parallel=(1,)
    )

    assert report.ok, [(r.case, r.problems) for rs in report.results.values() for r in rs]
    results = {case: runs[0] for case, runs in report.results.items()}
    assert {"native", "fanout", "spawn k=1", "pool k=1", "pool+clear k=1"} <= set(results)
    # Native: both subagents ran inside the one Conductor process.
    native = results["native"]
    assert native.extra["stats"]["completed"] == 2
    assert native.usage.count.get("claude CLI") == 1
    assert native.extra["phase_s"] is not None and native.extra["phase_s"] > 0
    # fanout: one CLI per task, and the sampler saw the supervisor (fanout's own processes).
    fanout = results["fanout"]
    assert fanout.usage.count.get("claude CLI") == 2
    assert fanout.usage.count.get("supervisor") == 1
    assert 0 < fanout.usage.peak_rss["own"] < fanout.usage.peak_rss["all"]
    # Spawn-per-task starts a CLI per task; the pool reuses one, whose context grows.
    assert results["spawn k=1"].usage.count.get("claude CLI") == 2
    assert results["pool k=1"].usage.count.get("claude CLI") == 1
    (firsts,) = bench.task_tokens(results["pool k=1"].seen)[1]
    assert len(firsts) == 2 and firsts[1] > firsts[0]
    # /clear between tasks: the same process, but the second task starts from a fresh context.
    cleared = results["pool+clear k=1"]
    assert cleared.usage.count.get("claude CLI") == 1
    fresh = [t for session in bench.task_tokens(cleared.seen)[1] for t in session]
    assert len(fresh) == 2 and max(fresh) < firsts[1]
    # What a live session can change between tasks (the CLI's behaviour, checked each run).
    verdicts = {setting.split(" (")[0]: verdict for setting, verdict, _ in report.findings}
    assert verdicts["tools offered"] == "no"
    assert verdicts["permission rules"] == "yes"
    assert verdicts["working directory"] == "partly"
    assert verdicts["max turns"] == verdicts["cost budget"] == "no"


def test_fanouts_version_probe_is_counted_as_its_client_not_as_a_session() -> None:
    bench = load_benchmark("bench_workers")
    client = [sys.executable, "-m", "claude_fanout", "run", "plan.json"]
    assert bench.classify(["/opt/claude", "--version"], client) == "fanout client"
    assert bench.classify(["/opt/claude", "-p", "--output-format", "stream-json"], []) == (
        "claude CLI"
    )
