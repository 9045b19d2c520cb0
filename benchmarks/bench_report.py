"""How long ``fanout report`` takes on a large run: 1,000 tasks, a 100,000-line log.

    .venv/bin/python benchmarks/bench_report.py [--quick] [--json] [--repeat 5]

The run is built through the store's own path: ``create_run``, a validated plan written with
``plan_to_json``, every record appended with ``EventLog.append_record`` (flock + one write, as the
supervisor and workers write), a ``result.md`` per worker. Half the tasks are ``claude`` workers
whose ``task_progress`` records fill most of the log (what the supervisor writes as they stream);
a tenth fail once and are retried; each task after the first ten depends on the one ten before.

The supervisor keeps ``state.json`` (the fold's cache) current as a run goes on; so does the
benchmark once the log is written. Timed (median of ``--repeat``): the report built in this
process (``read_timeline`` + ``render``), and the real command, ``python -m claude_fanout report
RUN -o FILE``, start to exit. Target: under 2 s for the command at full size. Also printed: the
first report of the log with no ``state.json`` at all (cold: the whole log folded once).
``--quick``: 100 tasks and 10,000 lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from claude_fanout.cli.common import plan_of
from claude_fanout.plan import parse_plan, plan_to_json
from claude_fanout.report.page import render
from claude_fanout.report.timeline import read_timeline
from claude_fanout.states import EventType
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.rundir import RunDir, create_run
from claude_fanout.store.state import fold_tail, publish_snapshot
from claude_fanout.store.status import RunStatus

TARGET_S = 2.0


def build(project: Path, tasks: int, lines: int) -> RunDir:
    (project / ".claude").mkdir(parents=True)
    run = create_run(project)
    ids = [f"T{i:04d}" for i in range(tasks)]
    specs = []
    for i, task_id in enumerate(ids):
        deps = [ids[i - 10]] if i >= 10 else []
        if i % 2:
            specs.append(
                {"id": task_id, "kind": "claude", "prompt": f"Review part {i}", "deps": deps}
            )
        else:
            specs.append({"id": task_id, "kind": "shell", "argv": ["true"], "deps": deps})
    plan = parse_plan({"version": 1, "max_parallel": 8, "tasks": specs}, project=project)
    (run.path / layout.PLAN).write_text(plan_to_json(plan))
    log = EventLog(run.events_path)
    clock = [time.time() - 3600.0]

    def record(type_: str, **fields: object) -> None:
        clock[0] += 0.01
        log.append_record({**fields, "ts": clock[0], "type": type_})

    record(EventType.RUN_CREATED, run_id=run.run_id, tasks=ids)
    record(EventType.SUPERVISOR_STARTED, pid=1)
    claude = len(ids) // 2
    # What is left after each task's start, exit (and a tenth's failed first attempt and retry)
    # goes to the claude workers' progress records.
    fixed = 2 + 2 * tasks + 3 * (tasks // 10) + claude + 1
    progress = max(0, lines - fixed) // max(claude, 1)
    for i, task_id in enumerate(ids):
        attempt = 1
        if i % 10 == 3:
            record(EventType.TASK_STARTED, task=task_id, attempt=1, pid=1000 + i)
            record(
                EventType.TASK_EXITED, task=task_id, attempt=1, outcome="failed", exit_code=1,
                duration_s=0.5, reason="exit code 1",
            )  # fmt: skip
            record(EventType.TASK_RETRY, task=task_id, attempt=2, delay_s=1.0, reason="exit 1")
            attempt = 2
        record(EventType.TASK_STARTED, task=task_id, attempt=attempt, pid=2000 + i)
        if i % 2:
            for step in range(progress):
                record(
                    EventType.TASK_PROGRESS, task=task_id, attempt=attempt, turns=step,
                    input_tokens=400 * step, output_tokens=60 * step, cost_usd=0.001 * step,
                    doing=f"Read src/module_{step}.py",
                )  # fmt: skip
            record(
                EventType.TASK_USAGE, task=task_id, attempt=attempt, turns=progress,
                input_tokens=400 * progress, output_tokens=60 * progress, cost_usd=0.001 * progress,
            )  # fmt: skip
        record(
            EventType.TASK_EXITED, task=task_id, attempt=attempt, outcome="succeeded", exit_code=0,
            duration_s=1.0,
        )  # fmt: skip
        out = run.out_dir(task_id)
        run.make_worker_dirs(task_id)
        (out / layout.RESULT).write_text(f"# {task_id}\n\n" + "A finding, <b>as text</b>.\n" * 40)
    record(EventType.RUN_FINISHED, state="succeeded")
    return run


def publish(run: RunDir) -> None:
    """What the supervisor keeps current while a run goes on: ``state.json``, the fold's cache."""
    publish_snapshot(run, fold_tail(run, RunStatus(run_id=run.run_id)))


def timed(fn: object, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 tasks, 10,000 lines")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--lines", type=int)
    args = parser.parse_args()
    tasks = args.tasks or (100 if args.quick else 1_000)
    lines = args.lines or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        started = time.perf_counter()
        run = build(project, tasks, lines)
        build_s = time.perf_counter() - started
        with open(run.events_path, "rb") as log:
            log_lines = sum(1 for _ in log)
        plan = plan_of(run)
        # Cold: no state.json yet (a log written by hand, or a store from before snapshots): the
        # report folds the whole log once, and publishes the snapshot as any reader does.
        started = time.perf_counter()
        page = render(run, plan, read_timeline(run, plan))
        cold_s = time.perf_counter() - started
        publish(run)
        in_process = timed(lambda: render(run, plan, read_timeline(run, plan)), args.repeat)
        target = Path(tmp) / "report.html"
        argv = [sys.executable, "-m", "claude_fanout", "--project", str(project), "report"]
        argv += [run.run_id, "-o", str(target)]

        def command() -> None:
            subprocess.run(argv, check=True, capture_output=True, env=os.environ.copy())

        cli = timed(command, args.repeat)
        figures = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "tasks": tasks,
            "log_lines": log_lines,
            "log_bytes": run.events_path.stat().st_size,
            "page_bytes": len(page.encode()),
            "build_s": round(build_s, 2),
            "repeat": args.repeat,
            "cold_in_process_s": round(cold_s, 3),
            "in_process_median_s": round(statistics.median(in_process), 3),
            "in_process_max_s": round(max(in_process), 3),
            "command_median_s": round(statistics.median(cli), 3),
            "command_max_s": round(max(cli), 3),
            "target_s": TARGET_S,
            "pass": statistics.median(cli) < TARGET_S,
        }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"Python {figures['python']}, {figures['cpus']} CPUs; {tasks:,} tasks, "
        f"{log_lines:,} log lines ({figures['log_bytes']:,} bytes), built in {build_s:.1f}s"
    )
    print(f"page: {figures['page_bytes']:,} bytes")
    print(
        f"in process (read_timeline + render): median {figures['in_process_median_s']:.3f}s, "
        f"max {figures['in_process_max_s']:.3f}s"
    )
    print(f"cold (no state.json: the whole log folded once): {cold_s:.3f}s in process")
    verdict = "PASS" if figures["pass"] else "MISS"
    print(
        f"`fanout report` (start to exit): median {figures['command_median_s']:.3f}s, "
        f"max {figures['command_max_s']:.3f}s; target < {TARGET_S:.0f}s: {verdict}"
    )


if __name__ == "__main__":
    main()
