"""benchmarks/bench_append.py keeps counting right: its checker on a hand-made file, and its core
on tiny sizes, where fanout's own append path must tear and lose nothing it acknowledged."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_benchmark


def line(bench: ModuleType, writer: int, seq: int, size: int) -> bytes:
    return json.dumps(bench.make_record(writer, seq, size)).encode() + b"\n"


def test_the_checker_counts_torn_lost_and_duplicated_records(tmp_path: Path) -> None:
    bench = load_benchmark("bench_append")
    sizes = (40, 4096)
    whole = [line(bench, 0, 0, 40), line(bench, 0, 1, 4096), line(bench, 1, 0, 40)]
    merged = line(bench, 1, 1, 4096)[:100] + line(bench, 1, 2, 40)  # a cut record + the next
    foreign = line(bench, 2, 0, 40).replace(b"c", b"d")  # another writer's pad: interleaved
    cut_tail = line(bench, 0, 2, 40)[:20]
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join([*whole, whole[0], merged, foreign, cut_tail]))
    acked = {0: {0, 1}, 1: {0, 1, 2}, 2: {0}}
    counts = bench.analyse(path, acked, sizes, bench.Counts("x", "y", "z", 3))

    assert counts.records == 3
    assert counts.duplicated == 1
    assert counts.torn == 3  # the merged line, the foreign pad, the cut last line
    assert counts.torn_tail
    assert counts.acked == 6
    assert counts.lost == 3  # writer 1's seq 1 and 2, writer 2's seq 0
    # fanout's reader takes every parseable record with a type, and skips the rest.
    assert counts.reader_events == 5  # four whole records (one twice) and the foreign pad
    assert counts.reader_bad == 1
    assert counts.spliced == 1  # the foreign pad parses: a reader cannot tell


def rows(report: dict[str, Any], scenario: str) -> dict[str, dict[str, Any]]:
    return {r["variant"]: r for r in report["rows"] if r["scenario"] == scenario}


@pytest.mark.timeout(120)
def test_the_core_runs_and_fanouts_append_path_tears_and_loses_nothing(project: Path) -> None:
    bench = load_benchmark("bench_append")
    report = bench.run_benchmark(
        writers=3,
        sizes=(40, 65_536),
        variants=bench.VARIANTS,
        kill_s=0.5,
        quick=True,
        work=project,
        records=20,
    )
    json.dumps(report)  # what --json prints
    for r in report["rows"]:
        assert r["duplicated"] == 0, r  # no path retries
        assert r["lost"] <= r["acked"] <= r["attempted"], r
    for r in report["rows"]:
        if r["variant"] != "fanout":
            continue
        assert r["lost"] == 0, r
        # The reader sees exactly the whole records; every complete torn line is skipped.
        assert r["reader_events"] == r["records"], r
        assert r["reader_bad"] == r["torn"] - r["torn_tail"], r
        assert r["spliced"] == 0, r
        if r["scenario"] == "throughput":
            assert r["records"] == r["attempted"] == 60 and r["torn"] == 0, r
    kill = rows(report, "kill")
    assert all(r["kills"] >= 3 and r["kills_writing"] >= 1 for r in kill.values()), kill
    # A full disk: writes past RLIMIT_FSIZE fail and say so; nothing past the limit is written.
    full = rows(report, "disk full")
    for r in full.values():
        assert r["acked"] < r["attempted"] and r["errors"].get("EFBIG"), r
        assert r["bytes"] <= bench.FSIZE_LIMIT, r
    demo = report["torn_tail"]
    assert demo["fanout"]["before_offset_stops_at_tail"]
    assert demo["fanout"]["before_W1"] == "running" and demo["fanout"]["after_W1"] == "succeeded"
    assert demo["fanout"]["after_events"] == demo["fanout"]["before_events"] + 1
    # Without the repair, the next record is glued to the torn line and lost with it.
    assert demo["o_append"]["after_W1"] == "running"
    assert demo["o_append"]["after_events"] == demo["o_append"]["before_events"]
