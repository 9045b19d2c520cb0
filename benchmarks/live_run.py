"""A real run for the benchmarks that measure fanout while one is live (bench_hooks,
bench_cli_hooks, bench_watch): started with this process as its Conductor, and stopped again."""

from __future__ import annotations

import os
import time
from pathlib import Path

from claude_fanout import pids, procs
from claude_fanout.plan import parse_plan
from claude_fanout.runner import StartedRun, start_run
from claude_fanout.runtime.control import observe, request_cancel, supervisor_info
from claude_fanout.store.rundir import RunDir


def start_live_run(project: Path, session_id: str, tasks: int = 50) -> StartedRun:
    """``tasks`` shell tasks (``sleep 3600``, all at once, each claiming ``src/file<N>.py``)
    reporting to session ``session_id`` of this process; returns once one runs."""
    spec = [
        {"id": f"W{i}", "kind": "shell", "argv": ["sleep", "3600"], "claims": [f"src/file{i}.py"]}
        for i in range(1, tasks + 1)
    ]
    plan = parse_plan({"version": 1, "max_parallel": tasks, "tasks": spec}, project=project)
    pid = os.getpid()
    conductor = {"session_id": session_id, "pid": pid, "start_time": pids.process_start_time(pid)}
    started = start_run(plan, project=project, conductor=conductor, delivery="block")
    wait_running(started.run, timeout=30.0)
    return started


def wait_running(run: RunDir, timeout: float) -> None:
    """Return once a task of ``run`` runs, or ``timeout`` passed; SystemExit when the run ended
    instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = observe(run)
        if status.state.terminal:
            raise SystemExit(f"the run {run.run_id} ended at once: {status.reason}")
        if status.counts().get("running", 0) >= 1:
            return
        time.sleep(0.1)


def stop_run(started: StartedRun, *, by: str, timeout: float = 60.0) -> None:
    """Cancel the run, wait until its supervisor has exited (it reaps its workers), and reap the
    process that started it."""
    run = started.run
    info = supervisor_info(run) or {}
    request_cancel(run, by=by)
    pid, start_time = info.get("pid"), info.get("start_time")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pids.is_alive(pid, start_time):
        time.sleep(0.1)
    procs.wait_child(started.supervisor, timeout_s=timeout)
