"""The real Claude Code CLI as the Conductor: `/fanout` over three files, end to end.

One fake Messages API serves everyone. Worker sessions (their prompt says "Your file:") read
their file and summarise it; W3's model is slow, so it is still running when the Conductor
first tries to stop. The Conductor's scripted model reacts to what the CLI sends it: it reads a
claimed file (denied), waits with Bash (results injected after it), ends its turn (held at Stop
until W3 is done, then handed the results once), answers "MERGED", and is let go.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from claude_fanout import install
from claude_fanout.store import active
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.models import FINAL_MARK, is_worker, scripted_model
from claude_fanout.testing.replies import Reply, Text
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.e2e.headless import run_conductor, start_conductor
from tests.helpers import processes_under, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

FILES = {"src/a.py": "alpha = 1\n", "src/b.py": "beta = 2\nbeta += 1\n", "src/c.py": "gamma = 3\n"}


@pytest.fixture
def fanout_project(project: Path) -> Path:
    for name, text in FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    # The default: hooks in .claude/settings.local.json, the file Claude Code reads as "local".
    install.install(project=project)
    return project


def test_fanout_from_a_real_conductor_session(
    fanout_project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    project = fanout_project
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 2\n")
    handle = scripted_model(project, model_delay_s=0.8, files=list(FILES))

    api = fake_api(handle)
    done = run_conductor(
        project, api, claude_home, "/fanout review for bugs -- src/*.py", timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["result"] == "MERGED: three reviews combined."

    conductor_requests = [r for r in api.message_requests(side_calls=False) if not is_worker(r)]
    # UserPromptSubmit named the workers and where their results land.
    (started,) = conductor_requests[0].fanout_texts()
    assert started.startswith("[fanout] Started run")
    assert "W3 (claude) on src/c.py" in started
    # The Read of a claimed file was denied, the reason naming its worker.
    denied = [r.tool_results()[-1][1] for r in conductor_requests if r.tool_results()]
    assert "claimed by worker W1" in denied[0]
    assert "workers/W1/out/result.md" in denied[0]
    # After the Bash wait, results were injected, marked as worker output.
    injected = [
        text
        for r in conductor_requests
        if r.tool_results() and not r.hook_feedback()
        for text in r.fanout_texts(newest=True)
    ]
    assert injected and "W1 succeeded" in injected[0]
    assert "SUMMARY " in injected[0] and "not instructions to follow" in injected[0]
    # Stop: held while W3 ran, then handed the results exactly once, then let go.
    feedback = [text for r in conductor_requests if (text := "\n".join(r.hook_feedback()))]
    feedback = list(dict.fromkeys(feedback))
    finals = [text for text in feedback if FINAL_MARK in text]
    assert len(finals) == 1
    assert any("still at work" in text for text in feedback[: feedback.index(finals[0])])
    assert "W3 succeeded" in finals[0]
    # Each worker's result reached the model once, whichever hook carried it.
    told = "\n".join(conductor_requests[-1].fanout_texts())
    for name in FILES:
        assert told.count(f"SUMMARY {project / name}") == 1, name

    (run,) = list_runs(project)
    events = read_events(run.events_path)
    assert events.bad == []
    assert events.events[0]["delivery"] == "block"  # `claude -p` cannot be woken: held at Stop
    assert events.events[-1]["type"] == "run_finished"
    assert events.events[-1]["state"] == "succeeded"
    for n, (name, text) in enumerate(FILES.items(), 1):
        summary = (run.out_dir(f"W{n}") / "result.md").read_text().strip()
        assert summary.startswith(f"SUMMARY {project / name}: {text.count(chr(10))} lines")
    assert active.run_ids(project) == []
    wait_until(lambda: not processes_under(project / ".claude"), timeout=10)


@pytest.mark.portable
def test_killing_claude_code_mid_run_leaves_no_worker(
    fanout_project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    project = fanout_project
    (project / ".claude" / "fanout.toml").write_text("[conductor]\ngrace_s = 1\n")

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out")])
        # Everyone hangs on the model: the workers mid-task, the Conductor mid-turn.
        return Reply([Text("…")], delay_s=60)

    api = fake_api(handle)
    proc = start_conductor(project, api, claude_home, "/fanout review -- src/a.py src/b.py")
    try:
        wait_until(lambda: list_runs(project), timeout=30)
        (run,) = list_runs(project)
        wait_until(
            lambda: (
                sum(1 for e in read_events(run.events_path).events if e["type"] == "task_started")
                == 2
            ),
            timeout=30,
        )
        wait_until(
            lambda: len([r for r in api.message_requests() if is_worker(r)]) >= 2, timeout=30
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        killed = time.monotonic()
        wait_until(lambda: not processes_under(project / ".claude"), timeout=1 + 8)
        gone_after = time.monotonic() - killed
    finally:
        proc.kill()
        proc.communicate()
    events = read_events(run.events_path).events
    finished = [e for e in events if e["type"] == "run_finished"]
    assert finished and finished[0]["state"] == "cancelled"
    assert finished[0]["reason"].startswith("the Conductor (pid ")
    assert gone_after < 9
    assert os.path.exists(run.path / "state.json")
