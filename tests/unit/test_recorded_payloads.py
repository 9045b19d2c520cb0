"""Every payload recorded from the real CLI (tests/fixtures/hooks, 2.1.330), fed to our hooks.

The recorded project directory is rewritten to this test's project; a hand-built run claims
the files the payloads touch, so each hook answers as it would in that session.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.hooks import dispatch
from claude_fanout.store import active
from claude_fanout.store.eventlog import read_events
from tests.helpers import FakeRun

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hooks"


def recorded(name: str, project: Path, session: str) -> dict[str, Any]:
    text = (FIXTURES / name).read_text()
    original = json.loads(text)
    text = text.replace(original["cwd"], str(project))
    payload: dict[str, Any] = json.loads(text)
    payload["session_id"] = session
    return payload


def answer(project: Path, payload: dict[str, Any]) -> dict[str, Any] | None:
    out = io.StringIO()
    event = payload["hook_event_name"]
    assert dispatch.run([event], stdin=io.BytesIO(json.dumps(payload).encode()), stdout=out) == 0
    return json.loads(out.getvalue()) if out.getvalue() else None


SESSION = "3034518d-c056-48db-a80c-92d9849d15b7"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".claude").mkdir(parents=True)
    for name in ("a.py", "b.py", "notes.txt", "nb.ipynb", "new.txt"):
        (root / name).write_text("x\n")
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(root))
    monkeypatch.delenv("FANOUT_DEPTH", raising=False)
    return root


@pytest.fixture
def live(project: Path) -> FakeRun:
    run = FakeRun(
        project,
        "20261124-000000-000-aaaa",
        {
            "W1": {"claims": ["a.py", "b.py", "notes.txt"]},
            "W2": {"claims": ["nb.ipynb", "new.txt"]},
            "W3": {},
        },
        SESSION,
    )
    for task in ("W1", "W2", "W3"):
        run.start(task)
    return run


@pytest.mark.parametrize(
    ("fixture", "owner"),
    [
        ("pre_tool_use.read.json", "W1"),
        ("pre_tool_use.read.relative.json", "W1"),
        ("pre_tool_use.edit.json", "W1"),
        ("pre_tool_use.edit.relative.json", "W1"),
        ("pre_tool_use.write.json", "W2"),
        ("pre_tool_use.notebookedit.json", "W2"),
    ],
)
def test_recorded_tool_calls_on_claimed_files_are_denied(project, live, fixture, owner):
    payload = recorded(fixture, project, SESSION)
    result = answer(project, payload)
    assert result is not None, fixture
    out = result["hookSpecificOutput"]
    assert out["permissionDecision"] == "deny"
    assert f"worker {owner} of run {live.run_id}" in out["permissionDecisionReason"]


@pytest.mark.parametrize(
    "fixture",
    [
        "pre_tool_use.bash.json",
        "pre_tool_use.glob.json",
        "pre_tool_use.glob.default.json",
        "pre_tool_use.grep.json",
        "pre_tool_use.grep.default.json",
    ],
)
def test_recorded_searches_and_commands_on_unclaimed_paths_pass(project, live, fixture):
    assert answer(project, recorded(fixture, project, SESSION)) is None


def test_recorded_post_tool_use_payloads_carry_news_once(project, live):
    live.finish("W3", result="W3's findings")
    names = sorted(p.name for p in FIXTURES.glob("post_tool_use.*.json"))
    assert len(names) >= 10
    first = answer(project, recorded(names[0], project, SESSION))
    assert first is not None
    assert "W3's findings" in first["hookSpecificOutput"]["additionalContext"]
    for name in names[1:]:
        assert answer(project, recorded(name, project, SESSION)) is None, name


def test_recorded_stop_payloads(project, live):
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 0\n")
    first = answer(project, recorded("stop.first.json", project, SESSION))
    assert first is not None and first["decision"] == "block"
    assert "3 of 3 workers still at work" in first["reason"]
    for task in ("W1", "W2", "W3"):
        live.finish(task, result=f"{task} done")
    live.end()
    final = answer(project, recorded("stop.active.json", project, SESSION))
    assert final is not None and final["decision"] == "block"
    assert "All of this session's fanout workers are done" in final["reason"]
    assert answer(project, recorded("stop.active.json", project, SESSION)) is None


def test_recorded_prompts(project):
    assert answer(project, recorded("user_prompt_submit.plain.json", project, SESSION)) is None
    for name in ("user_prompt_submit.slash_fanout.json", "user_prompt_submit.plugin_command.json"):
        payload = recorded(name, project, SESSION)
        # No worker may start here: point each request at a file that does not exist.
        payload["prompt"] = payload["prompt"].split(" -- ")[0] + " -- missing.py"
        result = answer(project, payload)
        assert result is not None, name
        text = result["hookSpecificOutput"]["additionalContext"]
        assert text.startswith("[fanout] Nothing was started: no file matches missing.py")


def test_recorded_session_start_resume_reinjects_what_is_in_flight(project, live):
    result = answer(project, recorded("session_start.resume.json", project, SESSION))
    assert result is not None
    text = result["hookSpecificOutput"]["additionalContext"]
    assert f"run {live.run_id}: 3 of 3 workers still at work" in text
    startup = recorded("session_start.startup.json", project, SESSION)
    assert answer(project, startup) is None


def test_recorded_session_end_cancels(project, live):
    with live.stand_in_supervisor() as stand_in:
        assert answer(project, recorded("session_end.json", project, SESSION)) is None
        assert stand_in.wait(timeout=5) != 0
    events = read_events(live.path / "events.jsonl").events
    assert any(e["type"] == "cancel_requested" and e["by"] == "session_end" for e in events)
    assert active.run_ids(project) == []
    assert os.path.isdir(live.path)
