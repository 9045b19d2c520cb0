"""Cost of following a running Claude worker: does the supervisor's pass grow with the stream?

    .venv/bin/python benchmarks/bench_follow.py

Builds a worker's ``stream.jsonl`` from the stream the real CLI recorded
(``tests/fixtures/streams/progress.jsonl``: ``--include-partial-messages``, three API calls)
repeated to about 100, 10,000 and 100,000 lines, lets ``ClaudeExecutor.follow`` catch up with it,
then times (median of 200) one ``follow`` after 10 more lines arrived: reading them from where it
stopped, rendering them into the worker's log, counting their usage and, when due, appending a
``task_progress`` record. Also: the catch-up pass (at most ``STREAM_READ_MAX`` per pass).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from claude_fanout.config import Config
from claude_fanout.executors.base import RunContext
from claude_fanout.executors.claude import ClaudeExecutor
from claude_fanout.plan import parse_plan
from claude_fanout.runtime.limits import RunBudget
from claude_fanout.store.rundir import create_run

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/streams/progress.jsonl"
SAMPLES = 200


def measure(root: Path, lines_before: int) -> tuple[float, float, float]:
    """(stream MB before, catch-up ms, median ms of one follow of 10 new lines)."""
    lines = FIXTURE.read_bytes().splitlines(keepends=True)
    init, body = lines[0], [ln for ln in lines[1:] if b'"type":"result"' not in ln]
    project = root / f"p{lines_before}"
    (project / ".claude").mkdir(parents=True)
    plan = parse_plan(
        {"version": 1, "tasks": [{"id": "W1", "kind": "claude", "prompt": "Review it"}]},
        project=project,
    )
    run = create_run(project)
    context = RunContext(
        run=run,
        plan=plan,
        config=Config(),
        budget=RunBudget(plan, Config()),
        emit=run.log.append,
        commit_of=lambda _task: None,
    )
    executor = ClaudeExecutor(context)
    task = plan.task("W1")
    run.make_worker_dirs("W1")
    executor.command(task, dict(os.environ)).close()
    stream = run.stream_path("W1")
    with stream.open("ab") as out:
        out.write(init)
        out.write(b"".join(body * (lines_before // len(body) + 1)))
    started = time.perf_counter()
    executor.follow(task, 1)
    catch_up = time.perf_counter() - started
    size = stream.stat().st_size
    while executor._rendered["W1"] < size:  # the offset it keeps: caught up
        executor.follow(task, 1)
    times = []
    for i in range(SAMPLES):
        with stream.open("ab") as out:
            out.write(b"".join(body[i % 10 : i % 10 + 10]))
        started = time.perf_counter()
        executor.follow(task, 1)
        times.append(time.perf_counter() - started)
    return size / 1e6, catch_up * 1000, statistics.median(times) * 1000


def main() -> None:
    print("stream lines   size MB   catch-up ms   follow of 10 new lines, ms (median)")
    with tempfile.TemporaryDirectory() as tmp:
        for lines_before in (100, 10_000, 100_000):
            size, catch_up, follow = measure(Path(tmp), lines_before)
            print(f"{lines_before:>12,}   {size:>7.2f}   {catch_up:>11.0f}   {follow:>8.3f}")


if __name__ == "__main__":
    main()
