"""The planner with the real Claude Code CLI against the scripted fake Messages API.

The UserPromptSubmit hook runs as Claude Code runs it (``sh -c`` the installed command, or a
real Conductor session), and its planner is the bundled CLI: what that CLI sends the fake (the
StructuredOutput tool and its schema) is recorded and checked, and the scripted model's
structured answer either becomes the run's plan or starts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout import install, settings_hooks
from claude_fanout.planner import NEXT_STEP, PLANNER_MARK, PLANNER_RECORD, plan_schema
from claude_fanout.runner import wait_run
from claude_fanout.store import active
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.fake_api import FakeMessagesAPI, cli_env
from claude_fanout.testing.models import FINAL_MARK, side_call_reply, structured_output
from claude_fanout.testing.replies import Reply, Text
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.e2e.headless import run_conductor
from tests.helpers import processes_under, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SESSION = "0f6a3c1e-5b7d-4e2f-9a10-3c4d5e6f7a8b"
INSTRUCTION = "review the billing and shipping modules for rounding bugs"
FILES = {
    "src/billing.py": "def charge(cents):\n    return cents\n",
    "src/shipping.py": "RATE = 7\n",
}
PLAN = {
    "name": "Rounding review",
    "tasks": [
        {
            "id": "W1",
            "prompt": "Review src/billing.py for rounding bugs.",
            "claims": ["src/billing.py"],
            "deps": [],
            "write": False,
        },
        {
            "id": "W2",
            "prompt": "Review src/shipping.py for rounding bugs.",
            "claims": ["src/shipping.py"],
            "deps": [],
            "write": False,
        },
    ],
}
WORKER_MARK = "(You are worker "


def is_planner(request: Request) -> bool:
    return PLANNER_MARK in request.system_text()


def is_worker(request: Request) -> bool:
    return WORKER_MARK in request.first_user_text()


def plan_requests(api: FakeMessagesAPI) -> list[Request]:
    """The planner's model calls that asked for a plan (not the extra turn an older CLI asks for
    once it accepted one)."""
    return [
        r
        for r in api.message_requests(side_calls=False)
        if is_planner(r) and not r.structured_output_accepted
    ]


def brain(planner: Callable[[Request], Reply]) -> Callable[[Request], Reply]:
    """The planner answers as ``planner`` says; each worker reports on its file at once."""

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return side_call_reply(request)
        if is_planner(request):
            if request.structured_output_accepted:  # a CLI that asks for one more turn
                return Reply([Text("The plan is given.")])
            return planner(request)
        if is_worker(request):
            task = request.first_user_text().split(WORKER_MARK, 1)[1].split(" ", 1)[0]
            return Reply([Text(f"FINDINGS {task}: no rounding bugs.")])
        raise AssertionError(f"unexpected main-loop request: {request.first_user_text()[:200]}")

    return handle


@pytest.fixture
def repo(project: Path) -> Path:
    for name, text in FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    install.install(scope="project", project=project)
    return project


def prompt_hook(project: Path, api: FakeMessagesAPI, home: Path, prompt: str) -> str | None:
    """The installed UserPromptSubmit command, run as Claude Code runs it, in the environment a
    Conductor pointed at the fake would give it."""
    command = settings_hooks.hook_command(
        "UserPromptSubmit", python=sys.executable, entry=install.default_entry()
    )
    payload = {
        "session_id": SESSION,
        "cwd": str(project),
        "hook_event_name": "UserPromptSubmit",
        "prompt": prompt,
    }
    env = cli_env(api.base_url, home)
    env.update(CLAUDE_PROJECT_DIR=str(project), CLAUDECODE="1", CLAUDE_CODE_SESSION_ID=SESSION)
    done = subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=project,
        env=env,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    if not done.stdout:
        return None
    return str(json.loads(done.stdout)["hookSpecificOutput"]["additionalContext"])


def no_run(project: Path) -> bool:
    runs = project / ".claude" / "runs"
    names = [p.name for p in runs.iterdir()] if runs.is_dir() else []
    return list_runs(project) == [] and [n for n in names if not n.startswith(".config")] == []


def test_the_planners_structured_output_becomes_the_runs_plan(
    repo: Path, fake_api: StartFake, claude_home: Path
) -> None:
    api = fake_api(brain(lambda request: structured_output(PLAN)))
    text = prompt_hook(repo, api, claude_home, f"/fanout {INSTRUCTION}")
    assert text is not None, "the hook said nothing"
    (run,) = list_runs(repo)
    status = wait_run(run, timeout_s=90)

    # What the CLI sent for the planner: one session, read-only tools plus the
    # StructuredOutput tool carrying our schema; a valid answer ended it (older CLIs ask for one
    # more turn first).
    (request,) = plan_requests(api)
    assert sorted(request.offered_tool_names) == ["Glob", "Grep", "Read", "StructuredOutput"]
    assert request.output_schema == plan_schema(8)
    assert request.first_user_text() == INSTRUCTION
    assert request.working_directory() == repo

    lines = text.split("\n")
    assert lines[0].startswith('[fanout] Claude planned "Rounding review" (')
    assert lines[1].startswith(f"[fanout] Started run {run.run_id}: 2 worker(s)")
    assert (
        f"- W1 (claude, read-only) on src/billing.py: result at .claude/runs/{run.run_id}" in text
    )
    assert "  task: Review src/shipping.py for rounding bugs." in text

    plan = json.loads(run.plan_path.read_text())
    assert plan["name"] == "Rounding review"
    assert [(t["id"], t["kind"], t["claims"], t["tools"]) for t in plan["tasks"]] == [
        ("W1", "claude", ["src/billing.py"], ["Read", "Grep", "Glob"]),
        ("W2", "claude", ["src/shipping.py"], ["Read", "Grep", "Glob"]),
    ]
    record = json.loads((run.path / PLANNER_RECORD).read_text())
    assert record["structured_output"] == PLAN and record["turns"] == 2

    # The run started and its workers did the planned work against the same fake.
    assert status.state == "succeeded", status
    for task in ("W1", "W2"):
        result = (run.out_dir(task) / "result.md").read_text()
        assert result.strip() == f"FINDINGS {task}: no rounding bugs."
    workers = [r for r in api.message_requests(side_calls=False) if is_worker(r)]
    assert {r.first_user_text().split("\n\n")[0] for r in workers} == {
        t["prompt"] for t in PLAN["tasks"]
    }


def bad_schema(request: Request) -> Reply:
    return structured_output({"tasks": "W1 reviews billing, W2 shipping"})


def bad_plan(request: Request) -> Reply:
    return structured_output(
        {
            "tasks": [
                {
                    "id": "W1",
                    "prompt": "x",
                    "claims": ["src/billing.py"],
                    "deps": ["W2"],
                    "write": False,
                },
                {
                    "id": "W2",
                    "prompt": "y",
                    "claims": ["src/shipping.py"],
                    "deps": ["W1"],
                    "write": False,
                },
            ]
        }
    )


def slow(request: Request) -> Reply:
    return Reply([Text("thinking")], delay_s=30)


@pytest.mark.parametrize(
    ("planner", "config", "fragment"),
    [
        (
            bad_schema,
            "",
            "(exit 1, error_max_structured_output_retries): Failed to provide valid structured "
            "output after 5 attempts",
        ),
        (bad_plan, "", "the planner's plan is not valid: plan: dependency cycle: W1 -> W2 -> W1"),
        (slow, "[planner]\ntimeout_s = 2\n", "the planner gave no plan within 2 s and was stopped"),
    ],
    ids=["schema-mismatch", "invalid-plan", "timeout"],
)
def test_a_malformed_or_late_plan_starts_nothing_and_says_why(
    repo: Path,
    fake_api: StartFake,
    claude_home: Path,
    planner: Callable[[Request], Reply],
    config: str,
    fragment: str,
) -> None:
    (repo / ".claude" / "fanout.toml").write_text(config)
    api = fake_api(brain(planner))
    started = time.monotonic()
    text = prompt_hook(repo, api, claude_home, f"/fanout {INSTRUCTION}")
    took = time.monotonic() - started
    assert text is not None
    first, second = text.split("\n")
    assert first.startswith("[fanout] Nothing was started: ") and fragment in first
    assert second == NEXT_STEP
    assert no_run(repo) and active.run_ids(repo) == []
    # The planner's CLI (and anything it started) is gone when the hook answers.
    assert processes_under(repo) == []
    planner_calls = plan_requests(api)
    if planner is bad_schema:
        # The CLI itself refused each answer and asked again, 5 times in all.
        refusals = [
            text
            for r in planner_calls
            for _, text in r.tool_results()
            if text.startswith("Output does not match required schema: /tasks: must be array")
        ]
        assert len(planner_calls) == 5 and len(refusals) == 4
    elif planner is slow:
        assert took < 2 + 2 + 5  # the bound, SIGTERM grace, start-up of hook and CLI
    else:
        assert len(planner_calls) == 1


def test_a_conductor_session_gets_the_planned_run(
    repo: Path, fake_api: StartFake, claude_home: Path
) -> None:
    (repo / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 5\n")
    planner = brain(lambda request: structured_output(PLAN))

    def handle(request: Request) -> Reply:
        if request.is_side_call or is_planner(request) or is_worker(request):
            return planner(request)
        # The Conductor: ends its turn; once handed every result at Stop, merges them.
        if FINAL_MARK in "\n".join(request.hook_feedback()):
            return Reply([Text("MERGED: both reviews in.")])
        return Reply([Text("Waiting for the planned workers.")])

    api = fake_api(handle)
    done = run_conductor(
        repo, api, claude_home, f"/fanout {INSTRUCTION}", tools="Read", timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "MERGED: both reviews in."

    conductor = [
        r for r in api.message_requests(side_calls=False) if not is_planner(r) and not is_worker(r)
    ]
    (first,) = conductor[0].fanout_texts()
    assert first.startswith('[fanout] Claude planned "Rounding')
    assert "W1 (claude, read-only) on src/billing.py" in first
    assert "W2 (claude, read-only) on src/shipping.py" in first
    # The planner ran under the Conductor's hook and was one session of its own.
    planner_sessions = {r.session_id for r in api.message_requests() if is_planner(r)}
    conductor_sessions = {r.session_id for r in conductor}
    assert len(planner_sessions) == 1 and not planner_sessions & conductor_sessions

    (run,) = list_runs(repo)
    events = read_events(run.events_path).events
    assert events[0]["type"] == "run_created" and events[0]["tasks"] == ["W1", "W2"]
    assert events[0]["conductor"]["session_id"] in conductor_sessions
    assert events[-1]["type"] == "run_finished" and events[-1]["state"] == "succeeded"
    # Held at Stop until both were done, each result handed over once, the summary once.
    feedback = list(dict.fromkeys(t for r in conductor if (t := "\n".join(r.hook_feedback()))))
    assert feedback and feedback[-1].count(FINAL_MARK) == 1
    # Every result reached the model once, whichever hook carried it; the summary once.
    told = "\n".join(conductor[-1].fanout_texts())
    assert told.count(FINAL_MARK) == 1
    assert told.count("FINDINGS W1: no rounding bugs.") == 1
    assert told.count("FINDINGS W2: no rounding bugs.") == 1
    wait_until(lambda: not processes_under(repo / ".claude"), timeout=10)
    assert not os.path.exists(repo / ".claude" / "runs" / "hooks.jsonl")
