"""benchmarks/bench_watch.py keeps working: its core on a small real run, which it cleans up."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from claude_fanout.runtime.control import observe
from claude_fanout.store.rundir import list_runs

pytestmark = pytest.mark.timeout(120)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_watch.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_watch", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_bench_watch_measures_every_case_on_a_real_run_then_stops_it(project: Path) -> None:
    bench = load_bench()
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
