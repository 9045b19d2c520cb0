"""benchmarks/bench_bus.py keeps working: its core on tiny sizes delivers every record on every
bus, and its outage probes show what each bus does when the other side is away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import load_benchmark


@pytest.mark.timeout(120)
def test_every_bus_delivers_every_record_and_outages_are_measured(project: Path) -> None:
    bench = load_benchmark("bench_bus")
    report = bench.run_benchmark(
        buses=bench.BUSES,
        writer_counts=(2,),
        records=40,
        paced_writers=2,
        paced_records=5,
        pace_s=0.01,
        poll_s=0.005,
        hold_s=0.3,
        work=project / "bus",
    )
    json.dumps(report)  # what --json prints
    assert [r["bus"] for r in report["saturated"]] == list(bench.BUSES)
    for r in report["saturated"] + report["paced"]:
        # Every record sent was folded by the reader exactly once (notice_count counts folds).
        assert r["seen"] == r["sent"] > 0, r
        assert r["writers_ok"] == r["writers"] == 2, r
        assert r["rate"] > 0, r
        lat = r["latency_ms"]
        assert 0 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], r
    # The socket server appended every record to its own log too.
    server_log = project / "bus" / "sat-socket-2" / "server-events.jsonl"
    assert len(server_log.read_text().splitlines()) == 40
    out = {(r["bus"], r["case"]): r for r in report["outages"]}
    (log,) = [r for (bus, _), r in out.items() if bus == "log"]
    # fanout's append waits for the lock however long it is held; a reader is not held up.
    assert log["writer"] == "ok" and log["writer_ms"] >= 250, log
    assert log["reader_ms"] < 250, log
    waits, fails = [r for (bus, _), r in out.items() if bus == "sqlite"]
    assert waits["writer"] == "ok" and waits["writer_ms"] >= 250, waits
    assert "locked" in fails["writer"] and fails["writer_ms"] < 250, fails
    assert fails["reader"] == "ok"  # WAL: readers go on under a writer's exclusive lock
    down = [r for (bus, _), r in out.items() if bus == "socket"]
    assert [r["writer"].split(":")[0] for r in down] == [
        "FileNotFoundError",
        "ConnectionRefusedError",
    ]
