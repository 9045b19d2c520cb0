"""The Ray backend against the local one: the same plans, run by fanout's real supervisor, once
with workers as its children and once on a local multi-node Ray cluster.

    .venv/bin/python benchmarks/bench_ray.py [--sizes 10,100,1000] [--cpu-tasks 8]
        [--cpu-s 1.0] [--claude 4] [--latency 0.5] [--nodes 2] [--parallel 8]
        [--store-mib MiB] [--only-shipping]

Cases (each run through ``runner.start_run`` + ``wait_run``, the supervisor a detached process):

1. trivial: N ``true`` shell tasks, for N in ``--sizes``: fanout's own cost per task (start,
   stream back, reap, record). On Ray each task reserves 1/``--parallel`` of a node's CPU so that
   ``--parallel`` run at once, as locally (``max_parallel`` = ``--parallel``).
2. cpu: ``--cpu-tasks`` tasks that each burn ``--cpu-s`` of CPU (a Python loop), 1 CPU each.
3. claude: ``--claude`` claude workers (the real CLI) against the scripted fake Messages API on
   loopback, every main-loop response waiting ``--latency`` s (2 turns each).

Reported per case: wall time of the run (``run_created`` to ``run_finished``), the median and
p90 of each task's duration as the supervisor recorded it (``task_exited.duration_s``: start to
reap, so the overhead of getting a result back is in it), and for Ray the supervisor's start-up
(``ray.init`` as a driver: ``run_created`` to the first ``task_started``). The cluster: a head
with no CPU for tasks and ``--nodes`` worker nodes of 1 CPU each, all on 127.0.0.1. Always exits
0; a run that did not succeed prints MISS. ``--only-shipping`` runs only :func:`shipping` (what
``executor.ship`` costs); ``--store-mib`` sizes each node's object store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from claude_fanout.claude.cli import runnable_cli
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState
from claude_fanout.store.eventlog import read_events
from claude_fanout.testing.fake_api import FakeMessagesAPI, cli_env
from claude_fanout.testing.models import ReadThenSummarize

BURN = (
    "import time, sys\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
    )


def make_project(root: Path, name: str, backend: str, address: str, parallel: int) -> Path:
    project = root / name
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "fanout.toml").write_text(
        f'[executor]\nbackend = "{backend}"\naddress = "{address}"\n'
        f"[limits]\nmax_live_workers = {parallel}\nmax_live_claude_workers = {parallel}\n"
        "claude_start_interval_s = 0\n"
    )
    (project / ".gitignore").write_text(".claude/runs/\n.fanout/\n")
    (project / "burn.py").write_text(BURN)
    src = project / "src"
    src.mkdir()
    for n in range(8):
        (src / f"file{n}.py").write_text("".join(f"line_{i} = {i}\n" for i in range(60)))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "start")
    return project


def run(project: Path, data: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    plan = parse_plan({"version": 1, **data}, project=project)
    started = start_run(plan, project=project, env=env)
    status = wait_run(started.run, timeout_s=1800)
    started.supervisor.wait(timeout=60)
    events = read_events(started.run.events_path).events
    created = next(e["ts"] for e in events if e["type"] == "run_created")
    finished = next(e["ts"] for e in events if e["type"] == "run_finished")
    first_start = min(e["ts"] for e in events if e["type"] == "task_started")
    durations = sorted(e["duration_s"] for e in events if e["type"] == "task_exited")
    return {
        "phases": phases(started.run.path),
        "ok": status.state is RunState.SUCCEEDED,
        "wall": finished - created,
        "startup": first_start - created,
        "median": statistics.median(durations),
        "p90": durations[max(0, math.ceil(0.9 * len(durations)) - 1)],
        "tasks": len(durations),
        "run_id": started.run.run_id,
    }


PLACED_RE = re.compile(r"placed after ([0-9.]+) s, set up in ([0-9.]+) s")
RAN_RE = re.compile(r"ran ([0-9.]+) s on its node, results back ([0-9.]+) s after")


def phases(run_dir: Path) -> dict[str, float] | None:
    """Medians of a Ray attempt's phases, from the lines the supervisor wrote in each log."""
    found: dict[str, list[float]] = {"placed": [], "setup": [], "command": [], "back": []}
    for log in run_dir.glob("workers/*/log"):
        text = log.read_text(errors="replace")
        placed, ran = PLACED_RE.search(text), RAN_RE.search(text)
        if placed is None or ran is None:
            continue
        found["placed"].append(float(placed[1]))
        found["setup"].append(float(placed[2]))
        found["command"].append(float(ran[1]))
        found["back"].append(float(ran[2]))
    if not found["placed"]:
        return None
    return {name: statistics.median(values) for name, values in found.items()}


# Every case's figures, in the order measured (``--json`` prints them).
MEASURED: list[dict[str, Any]] = []


def row(case: str, backend: str, result: dict[str, Any]) -> str:
    per_task = result["wall"] / result["tasks"]
    MEASURED.append({"case": case, "backend": backend, "per_task_s": per_task, **result})
    mark = "" if result["ok"] else " MISS"
    return (
        f"| {case} | {backend} | {result['wall']:.1f} | {result['startup']:.2f} | "
        f"{per_task * 1000:.0f} | {result['median'] * 1000:.0f} | {result['p90'] * 1000:.0f} |"
        f"{mark}"
    )


CLI_RE = re.compile(r"on Ray node (\S+) .* its shipped CLI in ([0-9.]+) s")


def shipping(root: Path, project: Path, args: argparse.Namespace) -> None:
    """The cost of shipping this machine's package and Claude Code CLI to the nodes: the same
    claude plan on Ray with ``executor.ship`` on (twice: the package is then in the cluster
    already) and off. Per run: start-up (``ray.init`` with the runtime environment, the CLI put in
    the object store), wall, and the slowest and fastest CLI fetch of an attempt on a node (the
    first attempt on each node writes it; the ones that started with it wait for that)."""
    config = project / ".claude" / "fanout.toml"
    base = config.read_text()
    size = Path(runnable_cli(os.environ) or "").stat().st_size / 2**20
    print()
    print(f"Shipping ({args.claude} claude workers, {args.nodes} nodes, CLI {size:.0f} MiB):")
    print()
    print("| run | ship | start-up s | wall s | CLI fetch per attempt ms | task median ms |")
    print("|---|---|---:|---:|---|---:|")
    model = ReadThenSummarize(delay_s=args.latency)
    with FakeMessagesAPI(model) as api:
        home = root / "home-ship"
        home.mkdir()
        env = cli_env(api.base_url, home)
        for n, ship in enumerate((True, True, False), 1):
            config.write_text(
                base.replace('"\n[limits]', f'"\nship = {str(ship).lower()}\n[limits]')
            )
            tasks = [
                {"id": f"W{i}", "kind": "claude", "prompt": f"Summarise src/file{i % 8}.py",
                 "max_turns": 3, "cpus": 1.0 / args.parallel}
                for i in range(args.claude)
            ]  # fmt: skip
            result = run(project, {"max_parallel": args.parallel, "tasks": tasks}, env)
            fetches = sorted(
                float(m[2]) * 1000
                for log in sorted(project.glob(".claude/runs/*/workers/*/log"))
                if log.parts[-4] == result["run_id"]
                for m in CLI_RE.finditer(log.read_text(errors="replace"))
            )
            shown = ", ".join(f"{f:,.0f}" for f in fetches) if fetches else "-"
            mark = "" if result["ok"] else " MISS"
            print(
                f"| {n} | {'on' if ship else 'off'} | {result['startup']:.2f} | "
                f"{result['wall']:.1f} | {shown} | {result['median'] * 1000:,.0f} |{mark}",
                flush=True,
            )
    config.write_text(base)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--cpu-tasks", type=int, default=8)
    parser.add_argument("--cpu-s", type=float, default=1.0)
    parser.add_argument("--claude", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="10 and 100 tasks, 4 CPU, 2 claude")
    parser.add_argument("--json", action="store_true", help="the table on stderr, figures as JSON")
    parser.add_argument(
        "--store-mib",
        type=int,
        default=0,
        help="each node's object store (default: ray.cluster_utils' 150 MiB)",
    )
    parser.add_argument(
        "--only-shipping",
        action="store_true",
        help="only the shipping case: claude runs with executor.ship on, twice, and off",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.cpu_tasks, args.claude = "10,100", 4, 2
    if not args.json:
        return measure(args)
    with contextlib.redirect_stdout(sys.stderr):
        code = measure(args)
    print(json.dumps({"load_at_start": os.getloadavg()[0], "cases": MEASURED}))
    return code


def measure(args: argparse.Namespace) -> int:
    sizes = [int(s) for s in args.sizes.split(",") if s]

    from ray.cluster_utils import Cluster

    print(f"# Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="fanout-bench-ray-") as scratch:
        root = Path(scratch)
        os.environ["FANOUT_RAY_SCRATCH"] = str(root / "nodes")
        t0 = time.monotonic()
        store = {"object_store_memory": args.store_mib * 2**20} if args.store_mib else {}
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "include_dashboard": False,
                "temp_dir": str(root / "t"),
                **store,
            },
        )
        try:
            for _ in range(args.nodes):
                cluster.add_node(num_cpus=1, **store)
            cluster.wait_for_nodes()
            print(
                f"# cluster: head + {args.nodes} nodes x 1 CPU, up in {time.monotonic() - t0:.1f} s"
            )
            projects = {
                backend: make_project(root, backend, backend, cluster.address, args.parallel)
                for backend in ("local", "ray")
            }
            if args.only_shipping:
                shipping(root, projects["ray"], args)
                return 0
            print()
            print(
                "| case | backend | wall s | start-up s | wall/task ms | task median ms "
                "| task p90 ms |"
            )
            print("|---|---|---:|---:|---:|---:|---:|")
            share = 1.0 / args.parallel
            rows: list[tuple[str, dict[str, Any]]] = []
            for size in sizes:
                for backend, project in projects.items():
                    tasks = [
                        {"id": f"T{n}", "kind": "shell", "argv": ["true"], "cpus": share}
                        for n in range(size)
                    ]
                    result = run(project, {"max_parallel": args.parallel, "tasks": tasks})
                    print(row(f"{size} x `true`", backend, result), flush=True)
                    if backend == "ray":
                        rows.append((f"{size} x `true`", result))
            for backend, project in projects.items():
                tasks = [
                    {
                        "id": f"C{n}",
                        "kind": "shell",
                        "argv": [sys.executable, "burn.py", str(args.cpu_s)],
                    }
                    for n in range(args.cpu_tasks)
                ]
                result = run(project, {"max_parallel": args.parallel, "tasks": tasks})
                print(row(f"{args.cpu_tasks} x {args.cpu_s:g} CPU s", backend, result), flush=True)
                if backend == "ray":
                    rows.append((f"{args.cpu_tasks} x {args.cpu_s:g} CPU s", result))
            model = ReadThenSummarize(delay_s=args.latency)
            with FakeMessagesAPI(model) as api:
                home = root / "home"
                home.mkdir()
                env = cli_env(api.base_url, home)
                for backend, project in projects.items():
                    tasks = [
                        {
                            "id": f"W{n}",
                            "kind": "claude",
                            "prompt": f"Summarise src/file{n % 8}.py",
                            "max_turns": 3,
                            "cpus": share,
                        }
                        for n in range(args.claude)
                    ]
                    result = run(project, {"max_parallel": args.parallel, "tasks": tasks}, env)
                    print(row(f"{args.claude} claude workers", backend, result), flush=True)
                    if backend == "ray":
                        rows.append((f"{args.claude} claude workers", result))
            print()
            print("Ray attempts, medians (ms): placed = submitted to the node function running")
            print("(scheduling, a Ray worker, the arguments); set-up = snapshot clone or worktree,")
            print("paths; command; back = the command's end to the supervisor's last read; task =")
            print("the supervisor's start-to-reap.")
            print()
            print("| case | placed | set-up | command | back | task |")
            print("|---|---:|---:|---:|---:|---:|")
            for case, result in rows:
                p = result["phases"]
                if p is None:
                    continue
                print(
                    f"| {case} | {p['placed'] * 1000:.0f} | {p['setup'] * 1000:.0f} | "
                    f"{p['command'] * 1000:.0f} | {p['back'] * 1000:.0f} | "
                    f"{result['median'] * 1000:.0f} |"
                )
        finally:
            cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
