"""How many workers can one machine run? fanout's real path at growing sizes.

    .venv/bin/python benchmarks/bench_scale.py [--quick] [--json] [--claude 1,4,8,16,32]
        [--shell 10,100,1000] [--kinds sleep,cpu] [--latency 0.3] [--sleep-s 1]
        [--start-interval 0]

Every case is one run started through ``runner.start_run`` (the real detached supervisor, its
watchdog, the real executors) and waited for with ``runner.wait_run``; the supervisor is this
process's child, reaped at the end, so ``getrusage(RUSAGE_CHILDREN)`` counts the CPU of the
supervisor and of everything it reaped (workers and their children).

- claude: N ``claude`` tasks (the real Claude Code CLI) against one scripted fake Messages API on
  loopback whose every main-loop answer waits ``--latency`` seconds. A worker's session has three
  model turns: a Read of its file, a Grep in it, then ``DONE task K``, which its
  ``out/result.md`` must hold. The plan's ``max_parallel`` and ``[limits]`` ``max_live_workers``
  / ``max_live_claude_workers`` are N, ``claude_start_interval_s`` is ``--start-interval`` (0:
  every worker may start at once).
- shell: N shell tasks, all allowed to run at once: ``sleep`` (``--sleep-s``), and a CPU-bound
  ``sh`` loop whose own CPU cost is calibrated first (median of 5 runs outside fanout).

Per case: wall time (``start_run`` to the supervisor reaped), the run's own span
(``run_created`` to ``run_finished``), the spread of task starts, the most tasks running at once
(from the log), failures (tasks that did not succeed, results missing; and a run that readers
saw ``lost`` while its supervisor was still at work), CPU seconds (all processes of the run;
fanout's own, i.e. supervisor and watchdog, as sampled; this process's, which includes the
sampler), peak memory (the largest per-sample sum of RSS of every process of the run, sampled
with psutil every 50 ms for claude cases, with PSS every 5th sample, and every 200 ms for shell
cases). fanout's own overhead per task is its CPU over N, and for shell tasks also the CPU of
the run beyond the tasks' own work, over N. Always exits 0; a case that failed prints MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_workers import OWN, Sampler, wait_for_descendants  # noqa: E402
from machine_info import describe, machine  # noqa: E402

from claude_fanout.claude.env import PARENT_SESSION_VARS  # noqa: E402
from claude_fanout.plan import parse_plan  # noqa: E402
from claude_fanout.runner import start_run, wait_run  # noqa: E402
from claude_fanout.runtime.control import observe  # noqa: E402
from claude_fanout.states import RunState, TaskState  # noqa: E402
from claude_fanout.store.eventlog import read_events  # noqa: E402
from claude_fanout.testing.fake_api import FakeMessagesAPI, cli_env  # noqa: E402
from claude_fanout.testing.replies import Reply, Text, ToolUse, Usage  # noqa: E402
from claude_fanout.testing.requests import Request  # noqa: E402

TASK_RE = re.compile(r"Scale task (\d+): (\S+)")
CPU_LOOP = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"
CPU_LOOP_N = 20000
CASE_TIMEOUT_S = 900.0
MB = 1024 * 1024
Json = dict[str, Any]


class Worker:
    """The scripted model of a claude worker: Read, Grep, then ``DONE task K``."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    def __call__(self, request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Scale")], usage=Usage(3, 2))
        found = TASK_RE.search(request.first_user_text())
        if not found:
            return Reply([Text("No task found.")], delay_s=self.latency_s)
        k, path = found.group(1), found.group(2)
        turn = len(request.all_tool_results())
        if turn == 0:
            content: list[Text | ToolUse] = [ToolUse("Read", {"file_path": path})]
        elif turn == 1:
            content = [ToolUse("Grep", {"pattern": "value_", "path": path})]
        else:
            content = [Text(f"DONE task {k}")]
        return Reply(content, usage=Usage(1000, 20), delay_s=self.latency_s)


@dataclass
class Case:
    kind: str  # claude, shell-sleep, shell-cpu
    n: int
    wall_s: float = 0.0
    run_s: float | None = None
    ideal_s: float = 0.0  # the wall time with free CPU: model latency, or the task's own time
    start_spread_s: float | None = None
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # every process of the run (getrusage of the reaped supervisor)
    cpu_own_s: float = 0.0  # supervisor + watchdog, as last sampled
    cpu_work_s: float | None = None  # the tasks' own work (shell-cpu: calibrated x N)
    cpu_bench_s: float = 0.0  # this process (fake API threads, sampler, wait loop)
    peak_rss_mb: float = 0.0  # every process of the run
    peak_rss_own_mb: float = 0.0
    peak_rss_per_claude_mb: float | None = None
    max_live: int = 0  # the most tasks running at once, from the log's starts and exits
    seen_live: int = 0  # the most worker processes in one sample: processes named claude
    # (bench_workers.classify; a Grep's rg is not one), or the shell tasks' processes
    peak_pss_mb: float | None = None  # claude cases: every process of the run
    samples: int = 0
    mean_sample_interval_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and not self.problems

    def figures(self) -> Json:
        out = asdict(self)
        cores = os.cpu_count() or 1
        out["ok"] = self.ok
        out["own_cpu_ms_per_task"] = 1000 * self.cpu_own_s / self.n
        out["cpu_floor_s"] = self.cpu_s / cores  # wall time if every core did only this run
        out["overhead_cpu_ms_per_task"] = (
            1000 * (self.cpu_s - self.cpu_work_s) / self.n if self.cpu_work_s is not None else None
        )
        out["wall_over_ideal"] = self.wall_s / self.ideal_s if self.ideal_s else None
        return out


class CountingSampler(Sampler):
    """bench_workers' sampler every ``interval_s``, with PSS (1.5 ms per process: too slow for
    hundreds of processes) on every ``pss_every``-th sample or never (0), counting its samples.
    Each sample walks /proc (psutil's ``children``): its cost grows with every process on the
    machine, and is part of this process's CPU, reported apart."""

    def __init__(self, *, interval_s: float, pss_every: int) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.ticks: list[float] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            full = bool(self.pss_every) and len(self.ticks) % self.pss_every == 0
            self.ticks.append(time.monotonic())
            self.sample(full=full)
            self.stopped.wait(self.interval_s)


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def clean_env(api: FakeMessagesAPI, home: Path) -> dict[str, str]:
    """The CLI on the fake, offline, not a child of any Claude Code session or fanout run."""
    env = cli_env(api.base_url, home)
    env.update(dict.fromkeys(PARENT_SESSION_VARS, ""))
    return {k: v for k, v in env.items() if not k.startswith("FANOUT_")}


def new_project(root: Path, name: str, n: int, *, claude: bool, interval_s: float) -> Path:
    project = root / name
    shutil.rmtree(project, ignore_errors=True)
    (project / ".claude").mkdir(parents=True)
    toml = f"[limits]\nmax_live_workers = {n}\n"
    if claude:
        toml += f"max_live_claude_workers = {n}\nclaude_start_interval_s = {interval_s}\n"
    (project / ".claude" / "fanout.toml").write_text(toml)
    if claude:
        (project / "src").mkdir()
        for k in range(1, n + 1):
            lines = [f"value_{k}_{i} = {i}" for i in range(1, 41)]
            (project / "src" / f"file{k}.py").write_text("\n".join(lines) + "\n")
    return project


def run_case(
    case: Case, project: Path, tasks: list[Json], env: dict[str, str], *, claude: bool = False
) -> tuple[Path, dict[str, TaskState]]:
    """Start the plan through the real path, wait for it, fill ``case`` with what was measured;
    returns the run directory and each task's final state."""
    plan = parse_plan(
        {"version": 1, "name": case.kind, "max_parallel": case.n, "tasks": tasks}, project=project
    )
    cpu0, self0 = cpu_children(), cpu_self()
    sampler = (
        CountingSampler(interval_s=0.05, pss_every=5)
        if claude
        else CountingSampler(interval_s=0.2, pss_every=0)
    )
    sampler.start()
    start = time.monotonic()
    started = start_run(plan, project=project, env=env)
    try:
        seen = wait_run(started.run, timeout_s=CASE_TIMEOUT_S, poll_s=0.1)
    finally:
        started.supervisor.wait(timeout=CASE_TIMEOUT_S)
        case.wall_s = time.monotonic() - start
        wait_for_descendants(timeout=30)
        usage = sampler.finish()
    case.cpu_s = cpu_children() - cpu0
    case.cpu_bench_s = cpu_self() - self0
    case.cpu_own_s = sum(usage.cpu.get(k, 0.0) for k in OWN)
    case.peak_rss_mb = usage.peak_rss.get("all", 0) / MB
    case.peak_rss_own_mb = usage.peak_rss.get("own", 0) / MB
    live_claude = usage.live.get("claude CLI", 0)
    if live_claude:
        case.peak_rss_per_claude_mb = usage.peak_rss.get("claude CLI", 0) / MB / live_claude
    case.seen_live = live_claude or usage.live.get("other", 0)
    if claude:
        case.peak_pss_mb = usage.peak_pss.get("all", 0) / MB
    case.samples = len(sampler.ticks)
    if len(sampler.ticks) > 1:
        case.mean_sample_interval_s = statistics.mean(
            b - a for a, b in zip(sampler.ticks, sampler.ticks[1:], strict=False)
        )
    events = read_events(started.run.events_path).events
    stamps = {e.get("type"): e.get("ts") for e in events}
    if stamps.get("run_finished") and stamps.get("run_created"):
        case.run_s = float(stamps["run_finished"]) - float(stamps["run_created"])
    case.max_live = most_at_once(events)
    starts = [float(e["ts"]) for e in events if e.get("type") == "task_started"]
    case.start_spread_s = max(starts) - min(starts) if starts else None
    if seen.state is RunState.LOST:
        # A reader (wait_run here; a hook or `fanout status` elsewhere, which would also stop
        # the run's processes) saw the run lost while its supervisor was still at work.
        case.problems.append(f"readers saw the run lost mid-run: {seen.reason}")
    status = observe(started.run)  # the supervisor's own final record
    states = {tid: task.state for tid, task in status.tasks.items()}
    failed = [tid for tid, state in states.items() if state is not TaskState.SUCCEEDED]
    case.failures = len(failed)
    if failed:
        case.problems.append(f"{len(failed)} not succeeded, e.g. {failed[:3]}: {status.state}")
    return started.run.path, states


def most_at_once(events: list[Json]) -> int:
    """The most tasks between ``task_started`` and ``task_exited`` at one moment."""
    changes = sorted(
        (float(e["ts"]), 1 if e["type"] == "task_started" else -1)
        for e in events
        if e.get("type") in ("task_started", "task_exited") and "ts" in e
    )
    live = most = 0
    for _, change in changes:
        live += change
        most = max(most, live)
    return most


def claude_case(root: Path, api: FakeMessagesAPI, home: Path, n: int, args: Any) -> Case:
    case = Case("claude", n, ideal_s=3 * args.latency)
    project = new_project(root, f"claude-{n}", n, claude=True, interval_s=args.start_interval)
    tasks = [
        {
            "id": f"W{k}",
            "kind": "claude",
            "prompt": f"Scale task {k}: {project / 'src' / f'file{k}.py'}",
        }
        for k in range(1, n + 1)
    ]
    run_path, _ = run_case(case, project, tasks, clean_env(api, home), claude=True)
    for k in range(1, n + 1):
        result = run_path / "workers" / f"W{k}" / "out" / "result.md"
        text = result.read_text().strip() if result.is_file() else ""
        if text != f"DONE task {k}":
            case.problems.append(f"W{k} result {text[:80]!r}")
    case.problems = case.problems[:5] + (
        [f"... {len(case.problems) - 5} more"] if len(case.problems) > 5 else []
    )
    return case


def calibrate_cpu_task(argv: list[str], repeat: int = 5) -> float:
    """CPU seconds of one CPU-bound task run on its own (median)."""
    samples = []
    for _ in range(repeat):
        before = cpu_children()
        subprocess.run(argv, check=True)
        samples.append(cpu_children() - before)
    return statistics.median(samples)


def shell_case(root: Path, env: dict[str, str], kind: str, n: int, args: Any) -> Case:
    if kind == "sleep":
        argv = ["sleep", f"{args.sleep_s:g}"]
        case = Case("shell-sleep", n, ideal_s=args.sleep_s)
        work = 0.0
    else:
        argv = ["/bin/sh", "-c", CPU_LOOP.format(n=CPU_LOOP_N)]
        work = calibrate_cpu_task(argv)
        cores = os.cpu_count() or 1
        case = Case("shell-cpu", n, ideal_s=work * n / cores)
    case.cpu_work_s = work * n
    project = new_project(root, f"shell-{kind}-{n}", n, claude=False, interval_s=0)
    tasks = [{"id": f"T{k}", "kind": "shell", "argv": argv} for k in range(1, n + 1)]
    run_case(case, project, tasks, env)
    return case


# --------------------------------------------------------------------------------------------
# Report


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


COLUMNS: list[tuple[str, str, Callable[[Json], str]]] = [
    ("case", "<12", lambda f: f["kind"]),
    ("N", ">5", lambda f: str(f["n"])),
    ("wall s", ">8", lambda f: fmt(f["wall_s"])),
    ("ideal s", ">8", lambda f: fmt(f["ideal_s"])),
    ("run s", ">7", lambda f: fmt(f["run_s"])),
    ("starts s", ">9", lambda f: fmt(f["start_spread_s"])),
    ("live", ">5", lambda f: str(f["max_live"])),
    ("seen", ">5", lambda f: str(f["seen_live"])),
    ("CPU s", ">8", lambda f: fmt(f["cpu_s"])),
    ("CPU/cores", ">10", lambda f: fmt(f["cpu_floor_s"])),
    ("own ms/task", ">12", lambda f: fmt(f["own_cpu_ms_per_task"], ".1f")),
    ("over ms/task", ">13", lambda f: fmt(f["overhead_cpu_ms_per_task"], ".1f")),
    ("RSS MB", ">8", lambda f: fmt(f["peak_rss_mb"], ".0f")),
    ("PSS MB", ">7", lambda f: fmt(f["peak_pss_mb"], ".0f")),
    ("own MB", ">7", lambda f: fmt(f["peak_rss_own_mb"], ".0f")),
    ("MB/CLI", ">7", lambda f: fmt(f["peak_rss_per_claude_mb"], ".0f")),
    ("bench CPU", ">10", lambda f: fmt(f["cpu_bench_s"])),
    ("fail", ">5", lambda f: str(f["failures"])),
]


LEGEND = (
    "wall: start_run to supervisor reaped; ideal: 3 x latency (claude), the sleep, or the tasks'",
    "  CPU over the cores (cpu); run: run_created to run_finished; starts: first to last start;",
    "live: most tasks running at once by the log (a task is reaped only after the pass that",
    "  starts others); seen: most worker processes in one sample;",
    "CPU s: every process of the run; CPU/cores: the wall time that CPU alone needs;",
    "own: supervisor + watchdog CPU per task; over: CPU beyond the tasks' own work per task;",
    "RSS: peak sum over the run's processes (PSS: claude cases, every 5th sample); own MB:",
    "  supervisor + watchdog; MB/CLI: peak RSS of the claude processes over the most seen at",
    "  once; bench CPU: this process (fake API, sampler, waiting).",
)


def print_table(report: Json) -> None:
    print(f"bench_scale: {describe(report['machine'])}")
    print(
        f"load average after: {' '.join(str(x) for x in report['load_after'])}; "
        f"claude latency {report['latency_s']:g} s per model turn, 3 turns; "
        f"start interval {report['start_interval_s']:g} s"
    )
    if report.get("cpu_task_s") is not None:
        print(f"CPU-bound shell task alone: {report['cpu_task_s'] * 1000:.1f} ms CPU")
    print()
    header = "".join(format(name, spec) for name, spec, _ in COLUMNS)
    print(header + "\n" + "-" * len(header))
    for figures in report["cases"]:
        print("".join(format(get(figures), spec) for _, spec, get in COLUMNS))
    print()
    for line in LEGEND:
        print(line)
    for figures in report["cases"]:
        if not figures["ok"]:
            print(f"MISS {figures['kind']} N={figures['n']}: {'; '.join(figures['problems'])}")
    print(f"(took {report['took_s']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--claude", default="1,4,8,16,32", help="claude worker counts")
    parser.add_argument("--shell", default="10,100,1000", help="shell task counts")
    parser.add_argument("--kinds", default="sleep,cpu", help="shell task kinds")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per model turn")
    parser.add_argument("--sleep-s", type=float, default=1.0, help="what a sleep task sleeps")
    parser.add_argument("--start-interval", type=float, default=0.0, help="between claude starts")
    parser.add_argument("--quick", action="store_true", help="claude 2,4; shell 10,50 (~20 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    args = parser.parse_args()
    if args.quick:
        args.claude, args.shell, args.sleep_s = "2,4", "10,50", 0.5
    say: Callable[[str], None] = (
        (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    )
    report: Json = {
        "benchmark": "bench_scale",
        "machine": machine(),
        "latency_s": args.latency,
        "start_interval_s": args.start_interval,
        "sleep_s": args.sleep_s,
        "cpu_task_s": None,
        "cases": [],
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fanout-bench-scale-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        with FakeMessagesAPI(Worker(args.latency)) as api:
            env = clean_env(api, home)
            for n in [int(x) for x in args.claude.split(",") if x]:
                say(f"claude x {n} ...")
                case = claude_case(root, api, home, n, args)
                report["cases"].append(case.figures())
            for kind in [k for k in args.kinds.split(",") if k]:
                for n in [int(x) for x in args.shell.split(",") if x]:
                    say(f"shell {kind} x {n} ...")
                    case = shell_case(root, env, kind, n, args)
                    if kind == "cpu":
                        report["cpu_task_s"] = case.cpu_work_s / n if case.cpu_work_s else None
                    report["cases"].append(case.figures())
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    report["took_s"] = time.monotonic() - started
    report["ok"] = all(c["ok"] for c in report["cases"])
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
