"""The person sees what fanout's hooks show them (``systemMessage``); the model never gets it.

Interactive: the real CLI in tmux runs ``/fanout --plan``; its model reads a file a worker owns
(denied), ends its turn, and is woken with the results. The screen must show the run's start
and how to watch it, the denial and the worker that owns the file, the failed worker, and the
run's end; no request the CLI sent the model may hold any of those lines. Headless
(``claude -p``): the same start and end lines reach the output stream, never the model.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_fanout import install
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.fake_api import FakeMessagesAPI
from claude_fanout.testing.models import FINAL_MARK
from claude_fanout.testing.replies import Reply, Text, ToolUse
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.e2e.headless import run_conductor
from tests.e2e.tmux_claude import TmuxClaude
from tests.helpers import processes_under, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="needs tmux (scripts/test installs it)"
)


def write_plan(project: Path, tasks: list[dict[str, object]]) -> None:
    (project / "plan.json").write_text(json.dumps({"version": 1, "tasks": tasks}))


def sent_to_model(api: FakeMessagesAPI) -> str:
    """Every request body the CLI sent the model (side calls included), as one text."""
    return "\n".join(json.dumps(r.body, ensure_ascii=False) for r in api.message_requests())


def only_run(project: Path) -> str:
    wait_until(lambda: list_runs(project), timeout=20)
    (run,) = list_runs(project)
    return run.run_id


@pytest.fixture
def tmux_session(project: Path, claude_home: Path) -> Iterator[dict[str, TmuxClaude]]:
    (project / "src").mkdir()
    (project / "src" / "a.py").write_text("alpha = 1\n")
    install.install(scope="project", project=project)
    holder: dict[str, TmuxClaude] = {}
    yield holder
    if "tui" in holder:
        holder["tui"].close()


@needs_tmux
def test_the_person_sees_start_denial_failure_and_end_and_the_model_none_of_it(
    project: Path, fake_api: StartFake, claude_home: Path, tmux_session: dict[str, TmuxClaude]
) -> None:
    write_plan(
        project,
        [
            {"id": "W1", "kind": "shell", "argv": ["sh", "-c", "echo broken >&2; exit 3"]},
            {
                "id": "W2",
                "kind": "shell",
                "argv": [sys.executable, "-c", "import time; time.sleep(4); print('W2 fine')"],
                "claims": ["src/a.py"],
            },
        ],
    )
    read_once: list[bool] = []

    def conductor(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out")])
        if request.hook_feedback():
            return Reply([Text("Noted.")])
        if request.tool_results() or read_once:
            return Reply([Text("Workers are on it; I will wait to be woken.")])
        read_once.append(True)
        return Reply([ToolUse("Read", {"file_path": str(project / "src" / "a.py")})])

    api = fake_api(conductor)
    tui = TmuxClaude(project, claude_home, api.base_url)
    tmux_session["tui"] = tui
    assert tui.wait_state("idle", 20), tui.pane()
    tui.type("/fanout --plan plan.json")
    rid = only_run(project)

    shown = [
        "started 2 workers",
        f"fanout watch {rid}",  # how to watch it
        "Read of src/a.py was denied: worker W2",  # who owns the file
        f"run {rid}: worker W1 failed after",
        f"run {rid} failed in",  # the end: state, time
    ]
    wait_until(lambda: all(line in tui.screen_text() for line in shown), timeout=60)
    screen = tui.screen_text()
    assert "1 failed (W1), 1 succeeded" in screen
    assert "broken" not in screen.split(f"run {rid}: worker W1 failed after")[1][:80]
    # The model was told everything in its own words (the denial, the failure, the results)...
    wait_until(lambda: FINAL_MARK in sent_to_model(api), timeout=30)
    told = sent_to_model(api)
    assert "is claimed by worker W2" in told and "W1 failed" in told and "W2 fine" in told
    # ...and none of what the person was shown.
    for line in shown:
        assert line not in told, line
    kinds = [e["type"] for e in read_events(project / ".claude/runs" / rid / "events.jsonl").events]
    assert "run_finished" in kinds
    assert tui.wait_state("idle", 20), tui.pane()
    time.sleep(1)
    assert all(tui.screen_text().count(line) == 1 for line in shown), tui.screen_text()
    wait_until(lambda: not processes_under(project / ".claude"), timeout=10)


def test_a_headless_session_shows_the_start_and_end_and_the_model_gets_neither(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    install.install(scope="project", project=project)
    write_plan(
        project,
        [{"id": "W1", "kind": "shell", "argv": ["sh", "-c", "sleep 1; echo W1 done"]}],
    )

    def conductor(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out")])
        if FINAL_MARK in "\n".join(request.hook_feedback()):
            return Reply([Text("MERGED")])
        if not request.all_tool_results():  # one tool call: its PostToolUse must not repeat
            return Reply([ToolUse("Read", {"file_path": str(project / "plan.json")})])
        return Reply([Text("I will wait for the workers.")])

    api = fake_api(conductor)
    done = run_conductor(
        project, api, claude_home, "/fanout --plan plan.json", tools="Read", stream=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    rid = only_run(project)
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert records[-1]["result"] == "MERGED"
    shown = ["started 1 worker", f"fanout watch {rid}", f"run {rid} succeeded in"]
    for line in shown:
        assert out.count(line) == 1, line  # the person's stream has it, once
        assert line not in sent_to_model(api), line  # the model never got it
    assert "W1 done" in sent_to_model(api)
    assert any(r.all_tool_results() for r in api.message_requests(side_calls=False))
    wait_until(lambda: not processes_under(project / ".claude"), timeout=10)
