"""benchmarks/bench_wake.py keeps working: every waiter sees every append, on the code path it
claims (inotify, or the portable poll), and polling at 1 s reacts no faster than it can."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_benchmark


@pytest.mark.timeout(60)
def test_every_waiter_sees_every_append(project: Path) -> None:
    bench = load_benchmark("bench_wake")
    report = bench.run_benchmark(events=6, idle_s=0.5, variants=tuple(bench.VARIANTS), work=project)
    json.dumps(report)  # what --json prints
    results = report["results"]
    assert set(results) == set(bench.VARIANTS)
    for name, r in results.items():
        assert r["seen"] == 6, (name, r)
        lat = r["latency_ms"]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["max"], (name, r)
        assert r["idle_cpu_s"] >= 0 and r["idle_s"] >= 0.4, (name, r)
    assert results["fanout inotify"]["linux_paths"]
    assert not results["fanout portable"]["linux_paths"]
    # Polling once a second: on average half a period passes before an append is seen.
    assert results["poll 1 s"]["latency_ms"]["mean"] > results["poll 0.05 s"]["latency_ms"]["mean"]
    assert results["poll 1 s"]["latency_ms"]["max"] < 2500
