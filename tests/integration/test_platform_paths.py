"""A run on either platform path (see the ``portable`` marker in tests/conftest.py): the
supervisor and its watchdog take the path of the process that started them, the watchdog's
process scans find a worker that left the supervisor's session, and a hook run as Claude Code
runs it (``python -I -S``, no site-packages) tells a live run from a lost one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_fanout import defaults, install, pids, settings_hooks
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run
from claude_fanout.runtime.control import observe
from claude_fanout.states import RunState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.files import write_json_atomic
from tests.helpers import FakeRun, alive, processes_under, read_pid, wait_until

SESSION = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"

# A worker that forks a grandchild into a session of its own: neither its group nor its
# session is the supervisor's, only the run's FANOUT_RUN_DIR in its environment is.
ESCAPER = """
import os, time
out = os.environ["FANOUT_OUT_DIR"]
if os.fork() == 0:
    os.setsid()
    with open(out + "/escaped.pid", "w") as handle:
        handle.write(f"{os.getpid()}\\n")
    time.sleep(300)
    os._exit(0)
with open(out + "/self.pid", "w") as handle:
    handle.write(f"{os.getpid()}\\n")
time.sleep(300)
"""


@pytest.mark.portable
@pytest.mark.timeout(60)
def test_the_watchdog_stops_a_worker_that_left_the_session_on_either_path(
    project: Path, code_paths: str
) -> None:
    me = os.getpid()
    plan = parse_plan(
        {
            "version": 1,
            "tasks": [
                {
                    "id": "A",
                    "kind": "shell",
                    "argv": ["sh", "-c", 'echo $$ > "$FANOUT_OUT_DIR/self.pid"; sleep 300'],
                },
                {"id": "B", "kind": "shell", "argv": [sys.executable, "-c", ESCAPER]},
            ],
        },
        project=project,
    )
    conductor = {"session_id": "s", "pid": me, "start_time": pids.process_start_time(me)}
    started = start_run(plan, project=project, conductor=conductor)
    run_path = started.run.path
    try:
        out = run_path / "workers"
        worker_pids: dict[str, Any] = {}
        for name, path in (
            ("A", out / "A" / "out" / "self.pid"),
            ("B", out / "B" / "out" / "self.pid"),
            ("escaped", out / "B" / "out" / "escaped.pid"),
        ):
            worker_pids[name] = wait_until(lambda path=path: read_pid(path), timeout=10)
        assert (
            os.getsid(worker_pids["escaped"])
            == worker_pids["escaped"]
            != os.getsid(started.supervisor.pid)
        )
        info = json.loads((run_path / "supervisor.json").read_text())
        # The supervisor took this process's path: it identifies itself by psutil's creation
        # time on the portable one, by /proc's clock ticks since boot on Linux's.
        created = psutil.Process(info["pid"]).create_time()
        if code_paths == "portable":
            assert info["start_time"] == created
        else:
            ticks = (created - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")
            assert info["start_time"] == round(ticks)

        os.kill(started.supervisor.pid, signal.SIGKILL)
        started.supervisor.wait(timeout=5)
        wait_until(
            lambda: (
                not alive(info["watchdog_pid"])
                and not any(alive(pid) for pid in worker_pids.values())
                and not processes_under(project)
            ),
            timeout=defaults.KILL_GRACE_S + 5,
            interval=0.05,
        )
        lost = [
            e
            for e in read_events(run_path / "events.jsonl").events
            if e["type"] == "supervisor_lost"
        ]
        assert len(lost) == 1, lost
        assert {worker_pids["A"], worker_pids["B"], worker_pids["escaped"]} <= set(
            lost[0]["stopped_groups"]
        ), lost
        assert observe(run_path).state is RunState.LOST
    finally:
        if started.supervisor.poll() is None:
            started.supervisor.kill()
            started.supervisor.wait()
        for proc in processes_under(project):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.mark.portable
def test_an_installed_hook_tells_a_live_run_from_a_lost_one_on_either_path(
    project: Path, code_paths: str
) -> None:
    # The command `fanout install` writes runs `python -I -S`: site-packages is not on sys.path,
    # only this package's parent directory is (in a checkout, src/, which has no psutil).
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 0\n")
    live = FakeRun(project, "20261130-000000-000-abcd", {"W1": {}}, SESSION)
    live.start("W1")
    command = settings_hooks.hook_command(
        "Stop", python=sys.executable, entry=install.default_entry()
    )
    payload = {
        "session_id": SESSION,
        "cwd": str(project),
        "hook_event_name": "Stop",
        "stop_hook_active": False,
    }

    def stop() -> str:
        proc = subprocess.run(
            ["sh", "-c", command],
            input=json.dumps(payload).encode(),
            capture_output=True,
            cwd=project,
            env={**os.environ, "CLAUDE_PROJECT_DIR": str(project)},
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer["decision"] == "block", answer
        return str(answer["reason"])

    # Its supervisor (this process) is alive: the run is in progress, not lost.
    assert "lost" not in stop()
    # Its supervisor gone (a pid that names no process): the same hook reports the run lost.
    write_json_atomic(
        live.path / "supervisor.json",
        {"pid": 2**22 + 7, "start_time": 1.0, "heartbeat": time.time()},
    )
    assert "lost" in stop()
