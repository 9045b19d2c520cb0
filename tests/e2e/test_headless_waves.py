"""A headless Conductor (`claude -p`) is held until every worker is done, however many waves.

17 files, one read-only Claude worker each, at most 4 live at once: the real CLI is the
Conductor and every worker, one scripted fake Messages API serves them all. The Conductor ends
its turn at once; fanout's Stop hook must keep it until the last wave is done and hand it every
result in one block (a block per finished worker would exhaust Claude Code's limit on blocks in
a row and let the session end with most workers cancelled). And when a run outlives every bound
fanout has, the Conductor is told so plainly, the run is released instead of cancelled, and it
finishes after the session has ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_fanout import install
from claude_fanout.claude.cli import cli_path
from claude_fanout.runtime.control import observe
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import FINAL_MARK, is_worker
from claude_fanout.testing.replies import Reply, Text
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.helpers import processes_under, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

FILES = 17
LIVE = 4


def conductor(project: Path, api_url: str, home: Path, prompt: str) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run(
        [cli_path(os.environ), "-p", prompt, "--output-format", "json"],
        cwd=project,
        env=cli_env(api_url, home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout), time.monotonic() - started


def feedback(api) -> list[str]:
    """What fanout told the Conductor each time it tried to end its turn, once each."""
    requests = [r for r in api.message_requests(side_calls=False) if not is_worker(r)]
    return list(dict.fromkeys(t for r in requests if (t := "\n".join(r.hook_feedback()))))


def most_live(events: list[dict]) -> int:
    live = peak = 0
    for event in events:
        if event["type"] == "task_started":
            live += 1
            peak = max(peak, live)
        elif event["type"] == "task_exited":
            live -= 1
    return peak


def test_seventeen_workers_in_waves_all_reach_a_headless_conductor(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    (project / "src").mkdir()
    for n in range(FILES):
        (project / "src" / f"m{n:02d}.py").write_text(f"value_{n} = {n}\n")
    (project / ".claude" / "fanout.toml").write_text(
        f"[limits]\nmax_live_claude_workers = {LIVE}\n"
    )
    install.install(scope="project", project=project)

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out")])
        if is_worker(request):
            time.sleep(0.5)
            path = request.first_user_text().split("Your file:", 1)[1].split()[0]
            return Reply([Text(f"FINDINGS {Path(path).name}: fine.")])
        if FINAL_MARK in "\n".join(request.hook_feedback()):
            return Reply([Text("MERGED all reviews.")])
        return Reply([Text("Waiting for the workers.")])

    api = fake_api(handle)
    result, held = conductor(project, api.base_url, claude_home, "/fanout review -- src/*.py")
    assert result["result"] == "MERGED all reviews."

    (run,) = list_runs(project)
    events = read_events(run.events_path).events
    status = observe(str(run.path))
    assert {str(task.state) for task in status.tasks.values()} == {"succeeded"}
    assert len(status.tasks) == FILES
    assert 1 < most_live(events) <= LIVE  # in parallel, and in several waves
    assert events[-1]["type"] == "run_finished" and events[-1]["state"] == "succeeded"
    # One block, with everything: the Conductor was never let go, nothing was cancelled.
    told = feedback(api)
    assert len(told) == 1 and FINAL_MARK in told[0], told
    whole = "\n".join(r for r in api.message_requests(side_calls=False)[-1].fanout_texts())
    for n in range(FILES):
        assert f"W{n + 1} succeeded" in whole
    print(
        f"\n{FILES} workers, at most {most_live(events)} live, Conductor held {held:.1f}s, "
        f"{len(told)} Stop block(s)"
    )
    wait_until(lambda: not processes_under(project / ".claude"), timeout=15)


def test_a_run_that_outlives_every_bound_is_released_not_cancelled(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 1\nmax_blocks = 2\n")
    install.install(scope="project", project=project)
    slow = [sys.executable, "-c", "import time; time.sleep(8); print('slow work done')"]
    plan = {
        "version": 1,
        "tasks": [
            {"id": "quick", "kind": "shell", "argv": ["echo", "quick work done"]},
            {"id": "slow", "kind": "shell", "argv": slow},
        ],
    }
    (project / "plan.json").write_text(json.dumps(plan))

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out")])
        told = "\n".join(request.hook_feedback())
        if "not in this conversation" in told:
            return Reply([Text("NOT DONE: slow is still running; see fanout wait.")])
        return Reply([Text("Waiting for the workers.")])

    api = fake_api(handle)
    result, _ = conductor(project, api.base_url, claude_home, "/fanout --plan plan.json")
    assert result["result"] == "NOT DONE: slow is still running; see fanout wait."
    told = feedback(api)
    assert len(told) == 2, told  # the budget: one progress block, then the plain last one
    (run,) = list_runs(project)
    assert f"fanout wait {run.run_id}" in told[-1]
    assert "slow running" in told[-1]
    kinds = [e["type"] for e in read_events(run.events_path).events]
    assert "conductor_released" in kinds
    # The session has ended; the run was not cancelled and finishes on its own.
    wait_until(lambda: observe(str(run.path)).state.terminal, timeout=30)
    status = observe(str(run.path))
    assert str(status.state) == "succeeded", status.tasks
    assert "cancel_requested" not in [e["type"] for e in read_events(run.events_path).events]
    assert "slow work done" in (run.path / "workers" / "slow" / "log").read_text()
    wait_until(lambda: not processes_under(project / ".claude"), timeout=15)
