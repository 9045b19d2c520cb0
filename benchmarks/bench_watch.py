"""``fanout watch`` refresh cost on a big run: 1,000 tasks, a 100,000-line log. Target: < 50 ms.

    .venv/bin/python benchmarks/bench_watch.py [--quick] [--json] [--tasks 1000]
        [--lines 100000] [--repeat 40]

Built through the real path: ``runner.start_run`` starts a real run of ``--tasks`` shell tasks
(``sleep 3600``, ``max_parallel`` 50: the project's live-worker cap decides how many run), its
supervisor live; then ``task_progress`` records for the running tasks (usage so far and what each
does, what the supervisor writes as claude workers stream) are appended with ``EventLog`` by
another process until the log holds ``--lines`` lines. Each running task has a worker log of
64 KiB. Then, in this process, through the objects ``fanout watch`` uses (``cli.watch``):

- **open**: ``Watch`` on the run (the snapshot the supervisor published, the log's tail, the
  budget from the plan and config) and its first frame;
- **refresh, nothing new**: one loop turn (fold the tail, judge the supervisor alive, build the
  frame at 160x50 and draw it in place on a buffer), the log unchanged;
- **refresh, +100 lines** / **+1,000 lines**: the same after that many new ``task_progress``
  records (appended before the clock starts);
- **refresh, plain output**: a loop turn of the non-terminal output (one line per change), +100;
- **for scale, a re-read**: a fold of the whole log from offset 0, which a viewer that re-read
  the log would pay on every refresh.

Median and p90 of ``--repeat`` turns; PASS/MISS against 50 ms for the refresh rows. ``--quick``:
200 tasks, 10,000 lines, 15 turns. The run is cancelled and its supervisor waited for at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from live_run import stop_run, wait_running

from claude_fanout.cli.watch import Screen, Watch, _print_changes
from claude_fanout.cli.watch_view import Style, multi_frame
from claude_fanout.plan import parse_plan
from claude_fanout.runner import StartedRun, start_run
from claude_fanout.runtime.control import observe
from claude_fanout.states import EventType
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import fold_tail
from claude_fanout.store.status import RunStatus

TARGET_MS = 50.0
SRC = str(Path(__file__).resolve().parents[1] / "src")

WRITER = """
import sys
from claude_fanout.store.eventlog import EventLog
log = EventLog(sys.argv[1])
tasks = sys.argv[3].split(",")
for i in range(int(sys.argv[2])):
    task = tasks[i % len(tasks)]
    n = i // len(tasks) + 1
    log.append("task_progress", task=task, attempt=1, input_tokens=900 * n, output_tokens=80 * n,
               cache_read_input_tokens=3000 * n, turns=n, cost_usd=0.004 * n,
               doing=f"Read src/module_{i % 97}.py")
"""


@dataclass
class Case:
    name: str
    median_ms: float
    p90_ms: float
    target_ms: float | None
    ok: bool | None


@dataclass
class Report:
    tasks: int
    lines: int
    running: int
    log_bytes: int
    repeat: int
    setup_s: float
    python: str
    cpus: int
    cases: list[Case]

    @property
    def ok(self) -> bool:
        return all(case.ok is not False for case in self.cases)


def start_big_run(project: Path, tasks: int) -> StartedRun:
    (project / ".claude").mkdir(parents=True, exist_ok=True)
    spec = [{"id": f"T{i:04d}", "kind": "shell", "argv": ["sleep", "3600"]} for i in range(tasks)]
    plan = parse_plan(
        {"version": 1, "max_parallel": 50, "max_cost_usd": 25.0, "tasks": spec}, project=project
    )
    started = start_run(plan, project=project)
    wait_running(started.run, timeout=60)
    time.sleep(1.0)  # let the supervisor start what its caps allow
    return started


def running_tasks(run: RunDir) -> list[str]:
    return [t.id for t in observe(run).tasks.values() if t.state == "running"]


def fill_log(run: RunDir, lines: int, tasks: list[str]) -> None:
    """Append until the log holds ``lines`` lines, from another process (as a supervisor)."""
    have = run.events_path.read_bytes().count(b"\n")
    if lines > have:
        subprocess.run(
            [
                sys.executable,
                "-c",
                WRITER,
                str(run.events_path),
                str(lines - have),
                ",".join(tasks),
            ],
            check=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )


def write_worker_logs(run: RunDir, tasks: list[str]) -> None:
    for task in tasks:
        path = run.log_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            handle.write(b"compiling module\n" * 4000 + f"{task}: step 12 of 40\n".encode())


def timed(
    turn: Callable[[], object], repeat: int, before: Callable[[], object] | None
) -> list[float]:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        turn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def case(name: str, samples: list[float], target: float | None) -> Case:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return Case(
        name, round(median, 3), round(p90, 3), target, None if target is None else p90 < target
    )


def run_benchmark(root: Path, *, tasks: int, lines: int, repeat: int) -> Report:
    project = root / "project"
    setup = time.perf_counter()
    started = start_big_run(project, tasks)
    run = started.run
    try:
        live = running_tasks(run)
        fill_log(run, lines, live)
        write_worker_logs(run, live)
        setup_s = time.perf_counter() - setup
        at_start = run.events_path.read_bytes().count(b"\n"), run.events_path.stat().st_size
        log = EventLog(run.events_path)
        style = Style(width=160, height=50)

        def progress(count: int) -> Callable[[], None]:
            def append() -> None:
                for i in range(count):
                    log.append(
                        EventType.TASK_PROGRESS,
                        task=live[i % len(live)],
                        attempt=1,
                        turns=1000 + i,
                        cost_usd=1.0,
                        doing="Bash: pytest -q",
                    )

            return append

        watch = Watch(project, run.run_id, every=False, follow=False)
        screen = Screen(io.StringIO(), style)

        def turn() -> None:
            now = time.time()
            watch.refresh(now)
            views = [f.view(now) for f in watch.runs.values()]
            screen.show(multi_frame(views, style))

        def plain_turn() -> None:
            watch.refresh(time.time())
            _print_changes(watch, time.time())

        def open_watch() -> None:
            opened = Watch(project, run.run_id, every=False, follow=False)
            now = time.time()
            multi_frame([f.view(now) for f in opened.runs.values()], style)

        cases = [
            case("open (snapshot + tail + first frame)", timed(open_watch, repeat, None), None)
        ]
        turn()
        cases.append(case("refresh, nothing new", timed(turn, repeat, None), TARGET_MS))
        cases.append(case("refresh, +100 lines", timed(turn, repeat, progress(100)), TARGET_MS))
        cases.append(
            case(
                "refresh, +1,000 lines", timed(turn, max(5, repeat // 4), progress(1000)), TARGET_MS
            )
        )
        stdout = sys.stdout
        sys.stdout = io.StringIO()
        try:
            plain_turn()
            plain = timed(plain_turn, repeat, progress(100))
        finally:
            sys.stdout = stdout
        cases.append(case("refresh, plain output, +100 lines", plain, TARGET_MS))
        full = timed(lambda: fold_tail(run, RunStatus(run_id=run.run_id)), 3, None)
        cases.append(case("for scale: re-read the whole log", full, None))
        if not watch.runs[run.run_id].status.state == "running":
            raise SystemExit(f"the run is {watch.runs[run.run_id].status.state}, not running")
        return Report(
            tasks=tasks,
            lines=at_start[0],
            running=len(live),
            log_bytes=at_start[1],
            repeat=repeat,
            setup_s=round(setup_s, 1),
            python=platform.python_version(),
            cpus=os.cpu_count() or 0,
            cases=cases,
        )
    finally:
        stop_run(started, by="bench_watch")


def print_report(report: Report) -> None:
    print(
        f"fanout watch on a live run: {report.tasks} tasks ({report.running} running), "
        f"{report.lines:,} log lines ({report.log_bytes / 1e6:.1f} MB); Python {report.python}, "
        f"{report.cpus} CPUs; {report.repeat} turns each; setup {report.setup_s} s"
    )
    print(f"{'case':<42} {'median ms':>10} {'p90 ms':>8}  target")
    for c in report.cases:
        verdict = "" if c.ok is None else ("PASS" if c.ok else "MISS")
        target = "" if c.target_ms is None else f"< {c.target_ms:g} ms {verdict}"
        print(f"{c.name:<42} {c.median_ms:>10.2f} {c.p90_ms:>8.2f}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200 tasks, 10,000 lines, 15 turns")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.lines, args.repeat = 200, 10_000, 15
    with tempfile.TemporaryDirectory(prefix="fanout-bench-watch-") as tmp:
        report = run_benchmark(Path(tmp), tasks=args.tasks, lines=args.lines, repeat=args.repeat)
    if args.json:
        data: dict[str, Any] = {**asdict(report), "ok": report.ok}
        print(json.dumps(data, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
