"""Cost of the run store operations hooks and the CLI repeat: does it grow with the log?

    .venv/bin/python benchmarks/bench_store.py [--quick] [--json]

For logs of 10, 1,000 and 100,000 events it times (median of many runs, in ms):
- ``load_status``: snapshot + tail fold, with a snapshot covering all but the last 10 events
  (what a reader pays while a supervisor is live);
- a full fold from offset 0 (what it would cost without the snapshot);
- ``read_events`` of the last 10 records from a cursor;
and the append rate of one writer (events/s, flock + one write each). ``--json`` prints one JSON
object of the same figures instead of the table; ``--quick`` times fewer runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from claude_fanout.states import EventType
from claude_fanout.store.eventlog import EventLog, read_events
from claude_fanout.store.files import make_private_dir
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import fold_tail, load_status, save_snapshot
from claude_fanout.store.status import RunStatus

TASKS = [f"W{i}" for i in range(1, 51)]


def build(root: Path, events: int) -> tuple[RunDir, int]:
    make_private_dir(root)
    run = RunDir(root / f"run-{events}")
    make_private_dir(run.path)
    log = run.log
    log.append(EventType.RUN_CREATED, run_id=run.run_id, tasks=TASKS)
    lines = [log.append(EventType.SUPERVISOR_STARTED, pid=1, start_time=1.0)]
    for i in range(events - 12):
        task = TASKS[i % len(TASKS)]
        lines.append(log.append(EventType.TASK_STARTED, task=task, attempt=1, pid=1000 + i))
    status = fold_tail(run, RunStatus(run_id=run.run_id))
    save_snapshot(run, status)
    for i in range(10):
        log.append(EventType.TASK_EXITED, task=TASKS[i], outcome="succeeded", exit_code=0)
    return run, status.offset


def timed(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs (a tenth)")
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    figures: dict[str, object] = {"benchmark": "bench_store", "unit": "ms", "logs": []}
    rows = figures["logs"]
    assert isinstance(rows, list)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        if not args.json:
            print(f"{'events':>8} {'load_status':>12} {'full fold':>10} {'cursor read':>12}  (ms)")
        for n in (10, 1_000, 100_000):
            run, offset = build(root, n)
            load = timed(lambda run=run: load_status(run), 200 // scale)
            full = timed(
                lambda run=run: fold_tail(run, RunStatus(run_id="x")),
                3 if n > 1000 else 50 // scale,
            )
            cursor = timed(
                lambda run=run, offset=offset: read_events(run.events_path, offset), 200 // scale
            )
            rows.append({"events": n, "load_status": load, "full_fold": full, "cursor": cursor})
            if not args.json:
                print(f"{n:>8} {load:>12.3f} {full:>10.2f} {cursor:>12.3f}")
        log = EventLog(Path(tmp) / "append.jsonl")
        count = 20_000 // scale
        start = time.perf_counter()
        for i in range(count):
            log.append("probe", task="W1", seq=i)
        rate = count / (time.perf_counter() - start)
        figures["append_events_per_s"] = rate
        if args.json:
            print(json.dumps(figures))
        else:
            print(f"append: {rate:,.0f} events/s (one process, open+flock+write+close each)")


if __name__ == "__main__":
    main()
