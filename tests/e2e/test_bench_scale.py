"""benchmarks/bench_scale.py keeps measuring what it says: tiny sizes, real CLI and supervisor."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from claude_fanout.testing.fake_api import FakeMessagesAPI
from tests.helpers import load_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_claude_and_shell_cases_run_through_the_real_path(project: Path) -> None:
    bench = load_benchmark("bench_scale")
    args = argparse.Namespace(latency=0.05, start_interval=0.0, sleep_s=0.3)
    home = project / "home"
    home.mkdir()
    with FakeMessagesAPI(bench.Worker(args.latency)) as api:
        claude = bench.claude_case(project, api, home, 2, args)
        sleep = bench.shell_case(project, bench.clean_env(api, home), "sleep", 5, args)
        cpu = bench.shell_case(project, bench.clean_env(api, home), "cpu", 3, args)

    for case in (claude, sleep, cpu):
        assert case.ok, (case.kind, case.problems)
        figures = case.figures()
        assert figures["cpu_s"] > 0 and figures["wall_s"] > 0
        # A run of a few short shell tasks can end between two samples (every 200 ms): only the
        # claude case, seconds long, must have been seen (below).
        assert 0 <= figures["peak_rss_own_mb"] <= figures["peak_rss_mb"]
        assert figures["run_s"] is not None and figures["run_s"] <= figures["wall_s"]
    # Both claude workers ran at once, each its own CLI, each through all three turns.
    assert claude.max_live == 2 and claude.seen_live >= 2
    assert claude.figures()["peak_rss_own_mb"] > 0
    assert claude.peak_rss_mb > claude.peak_rss_own_mb + 100  # two CLIs of ~200 MB each
    assert claude.peak_pss_mb is not None and claude.peak_pss_mb > 0
    assert claude.wall_s > 3 * args.latency
    assert claude.cpu_s > claude.cpu_own_s > 0
    # The sleeps overlapped; the CPU-bound tasks' own work is known and subtracted.
    assert sleep.max_live == 5 and sleep.wall_s >= args.sleep_s
    assert cpu.cpu_work_s is not None and 0 < cpu.cpu_work_s < cpu.cpu_s


def test_most_at_once_counts_overlapping_tasks_from_the_log() -> None:
    bench = load_benchmark("bench_scale")
    events = [
        {"type": "task_started", "ts": 1.0, "task": "a"},
        {"type": "task_started", "ts": 2.0, "task": "b"},
        {"type": "task_exited", "ts": 3.0, "task": "a"},
        {"type": "task_started", "ts": 4.0, "task": "c"},
        {"type": "task_exited", "ts": 5.0, "task": "b"},
        {"type": "task_exited", "ts": 6.0, "task": "c"},
        {"type": "run_finished", "ts": 7.0},
    ]
    assert bench.most_at_once(events) == 2
    assert bench.most_at_once([]) == 0
