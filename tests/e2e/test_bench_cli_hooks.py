"""benchmarks/bench_cli_hooks.py keeps working: its core, tiny parameters, the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_benchmark

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_every_variant_times_its_tool_loop_and_the_live_run_is_really_seen(
    project: Path,
) -> None:
    bench = load_benchmark("bench_cli_hooks")

    # measure() itself fails when the live variant's session never heard from fanout.
    figures = bench.measure(calls=4, repeat=1)

    assert set(figures["variants"]) == set(bench.VARIANTS)
    assert {"none", "true", "fanout idle", "fanout live", "http", "http down"} <= set(
        bench.VARIANTS
    )
    for row in figures["variants"].values():
        assert row["tool_calls"] == 3
        assert row["median_ms"] > 0
    assert figures["claude_code"][0].isdigit()
    assert figures["http_hook_posts"] >= 6
