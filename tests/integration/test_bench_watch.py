"""benchmarks/bench_watch.py keeps working: its core on a small real run, which it cleans up."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_fanout.runtime.control import observe
from claude_fanout.store.rundir import list_runs
from tests.helpers import load_benchmark

pytestmark = pytest.mark.timeout(120)


def test_bench_watch_measures_every_case_on_a_real_run_then_stops_it(project: Path) -> None:
    bench = load_benchmark("bench_watch")
    root = project.parent / "bench"
    root.mkdir()
    report = bench.run_benchmark(root, tasks=30, lines=2_000, repeat=3)

    assert report.tasks == 30 and report.lines >= 2_000 and report.running >= 1
    names = [case.name for case in report.cases]
    assert names[0].startswith("open") and names[-1].startswith("for scale")
    assert sum(1 for case in report.cases if case.target_ms == 50.0) == 4
    assert all(case.median_ms > 0 for case in report.cases)
    (run,) = list_runs(root / "project")
    assert observe(run).state.terminal  # cancelled: nothing left running (the fixture checks)
