"""What the person at the terminal is shown (a hook's ``systemMessage``), fed recorded payloads.

The payloads are the real CLI's (tests/fixtures/hooks); the runs are hand-built (``FakeRun``).
Each line is checked for what it must say (the run, its workers, state, time, cost, how to watch)
and for what it must never carry: worker text, a failure's reason, terminal escapes. Each thing
is shown once per session, whichever hook shows it.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import defaults
from claude_fanout.hooks import dispatch
from claude_fanout.store import layout
from tests.helpers import FakeRun

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hooks"
SESSION = "3034518d-c056-48db-a80c-92d9849d15b7"
RUN_ID = "20261124-000000-000-aaaa"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    (root / ".claude").mkdir(parents=True)
    for name in ("a.py", "b.py", "notes.txt"):
        (root / name).write_text("x\n")
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(root))
    monkeypatch.delenv("FANOUT_DEPTH", raising=False)
    return root


def recorded(name: str, project: Path, **fields: Any) -> dict[str, Any]:
    text = (FIXTURES / name).read_text()
    text = text.replace(json.loads(text)["cwd"], str(project))
    payload: dict[str, Any] = json.loads(text)
    payload["session_id"] = SESSION
    payload.update(fields)
    return payload


def call(payload: dict[str, Any], event: str | None = None) -> tuple[int, Any, str]:
    """(exit code, the JSON answer or None, stderr) of one hook call."""
    out, err = io.StringIO(), io.StringIO()
    code = dispatch.run(
        [event or payload["hook_event_name"]],
        stdin=io.BytesIO(json.dumps(payload).encode()),
        stdout=out,
        stderr=err,
    )
    return code, json.loads(out.getvalue()) if out.getvalue() else None, err.getvalue()


def shown(answer: dict[str, Any] | None) -> str:
    """The answer's ``systemMessage``, checked to be fit for a terminal; '' without one."""
    if answer is None or "systemMessage" not in answer:
        return ""
    text: str = answer["systemMessage"]
    for line in text.split("\n"):
        assert line.startswith("fanout: ") and line.isprintable(), repr(line)
        assert len(line) <= defaults.SHOWN_LINE_CHARS
    return text


def model_text(answer: dict[str, Any] | None) -> str:
    """Everything in the answer the model gets."""
    if answer is None:
        return ""
    return json.dumps({k: v for k, v in answer.items() if k != "systemMessage"})


def post_read(project: Path) -> Any:
    return call(recorded("post_tool_use.read.json", project))[1]


def two_workers(
    project: Path, session: str | None = SESSION, delivery: str | None = None
) -> FakeRun:
    return FakeRun(
        project,
        RUN_ID,
        {
            "W1": {"claims": ["a.py"], "prompt": "Review a.py for bugs\n\nYour file: a.py"},
            "W2": {"claims": ["b.py"], "prompt": "Review b.py for bugs"},
        },
        session,
        delivery,
    )


def test_the_first_hook_that_sees_a_run_shows_its_workers_and_how_to_watch_it_once(project):
    run = two_workers(project)
    run.start("W1")
    answer = post_read(project)
    text = shown(answer)
    assert f"run {RUN_ID} started 2 workers" in text
    assert "W1 a.py: Review a.py for bugs" in text and "W2 b.py: Review b.py for bugs" in text
    assert f"fanout watch {RUN_ID}" in text
    assert "Your file" not in text  # the first line of what a worker does, not its prompt
    assert set(answer) == {"systemMessage"}  # nothing new for the model
    assert post_read(project) is None  # once per session
    cursor = json.loads(Path(layout.session_cursor(run.path, SESSION)).read_text())
    assert cursor["shown"] == ["start"]


def test_a_failed_worker_is_shown_with_time_and_cost_never_its_text_or_reason(project):
    run = two_workers(project)
    run.start("W1")
    run.start("W2")
    assert "started" in shown(post_read(project))
    run.log.append("task_usage", task="W1", attempt=1, turns=3, cost_usd=0.0123, input_tokens=9)
    run.finish("W1", "failed", result="FINDINGS-TEXT", reason="SECRET-LAST-WORDS")
    answer = post_read(project)
    text = shown(answer)
    assert f"run {RUN_ID}: worker W1 failed after" in text
    assert "$0.01" in text and "1 still at work" in text
    assert "FINDINGS-TEXT" not in text and "SECRET-LAST-WORDS" not in text
    # The model is told in full, as before, and the person's line is not part of it.
    assert "FINDINGS-TEXT" in model_text(answer)
    assert text not in model_text(answer)
    assert post_read(project) is None


def test_a_run_that_ends_is_shown_once_with_state_duration_and_cost_at_the_stop(project):
    run = two_workers(project, delivery="block")
    run.start("W1")
    run.start("W2")
    post_read(project)  # the start, shown
    run.log.append("task_usage", task="W1", attempt=1, turns=2, cost_usd=0.02)
    run.log.append("task_usage", task="W2", attempt=1, turns=2, cost_usd=0.03)
    run.finish("W1", result="RESULT-ONE")
    run.finish("W2", "timed_out", result="RESULT-TWO", reason="SECRET")
    run.end("failed")
    _, answer, _ = call(recorded("stop.first.json", project))
    assert answer is not None and answer["decision"] == "block"
    text = shown(answer)
    assert f"run {RUN_ID} failed in " in text
    assert "1 succeeded, 1 timed_out (W2)" in text and "$0.05" in text
    assert "RESULT" not in text and "SECRET" not in text
    assert "RESULT-ONE" in answer["reason"] and text not in answer["reason"]
    assert "\n" not in text  # the end line says it all: no separate failure line
    _, again, _ = call(recorded("stop.first.json", project))
    assert again is None


def test_a_rewake_leaves_what_it_shows_for_the_woken_prompt(project):
    run = two_workers(project, delivery="rewake")
    run.start("W1")
    run.start("W2")
    post_read(project)
    run.finish("W1", result="RESULT-ONE")
    run.finish("W2", result="RESULT-TWO")
    run.end()
    code, answer, wake = call(recorded("stop.first.json", project), "Rewake")
    assert (code, answer) == (2, None)
    assert "RESULT-ONE" in wake  # the model is woken with the results
    # The woken turn's prompt (the wake itself; any prompt would do) shows it, once.
    prompt = recorded("user_prompt_submit.plain.json", project)
    _, first, _ = call(prompt)
    assert set(first) == {"systemMessage"}
    assert f"run {RUN_ID} succeeded in " in shown(first) and "2 succeeded" in shown(first)
    assert shown(first) not in wake  # not part of what the model was woken with
    assert call(prompt)[1] is None
    assert not os.path.exists(layout.session_outbox(project, SESSION))


def test_what_a_wake_left_unshown_goes_with_the_session(project):
    run = two_workers(project, delivery="rewake")
    run.start("W1")
    run.start("W2")
    run.finish("W1", "failed", result="RESULT-ONE")
    assert call(recorded("stop.first.json", project), "Rewake")[0] == 2
    outbox = Path(layout.session_outbox(project, SESSION))
    assert "worker W1 failed" in outbox.read_text()
    with run.stand_in_supervisor():  # the session's end cancels the run: not this process
        call(recorded("session_end.json", project))
    assert not outbox.exists()


def test_a_stop_that_holds_the_turn_shows_a_failed_worker(project):
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 0\n")
    run = two_workers(project, delivery="block")
    run.start("W1")
    run.start("W2")
    post_read(project)
    run.finish("W1", "failed", result="RESULT-ONE", reason="SECRET")
    _, answer, _ = call(recorded("stop.first.json", project))
    assert answer["decision"] == "block" and "RESULT-ONE" in answer["reason"]
    text = shown(answer)
    assert f"run {RUN_ID}: worker W1 failed after" in text and "1 still at work" in text
    assert "SECRET" not in text and "RESULT" not in text


def test_a_denied_tool_call_shows_which_worker_owns_the_file_once_per_worker(project):
    run = two_workers(project)
    run.start("W1")
    post_read(project)
    edit = recorded("pre_tool_use.edit.json", project)
    _, answer, _ = call(edit)
    assert answer["hookSpecificOutput"]["permissionDecision"] == "deny"
    text = shown(answer)
    assert "Edit of a.py was denied" in text and f"worker W1 of run {RUN_ID}" in text
    assert "running" in text and "comes back when it finishes" in text
    reason = answer["hookSpecificOutput"]["permissionDecisionReason"]
    assert text not in reason
    # The model and the person are told the same running time, written the same way.
    running = re.search(r"running [^);]+", text)
    assert running is not None and running.group(0) in reason
    # The model hears every denial; the person the first for that worker.
    _, again, _ = call(edit)
    assert again["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert "systemMessage" not in again
    # Another worker's file: shown, and a pending worker says it has not started.
    _, other, _ = call(
        recorded(
            "pre_tool_use.edit.json",
            project,
            tool_input={"file_path": str(project / "b.py"), "old_string": "x", "new_string": "y"},
        )
    )
    assert "worker W2" in shown(other) and "pending, not started yet" in shown(other)


def test_a_run_the_conductor_started_from_bash_is_shown_after_that_call(project):
    run = two_workers(project, session=None)  # `fanout run --detach`: no Conductor recorded
    run.start("W1")
    unrelated = recorded("post_tool_use.bash.json", project)
    assert call(unrelated)[1] is None  # another command's output names no run
    started = recorded(
        "post_tool_use.bash.json",
        project,
        tool_input={"command": "fanout run --detach plan.json"},
        tool_response={"stdout": f"started run {RUN_ID}\n", "stderr": ""},
    )
    _, answer, _ = call(started)
    assert f"run {RUN_ID} started 2 workers" in shown(answer)
    assert set(answer) == {"systemMessage"}
    assert call(started)[1] is None


def test_a_bash_call_naming_another_sessions_run_shows_nothing(project):
    run = two_workers(project, session="5f0c7a52-2222-4c1e-9a57-000000000002")
    run.start("W1")
    status = recorded(
        "post_tool_use.bash.json",
        project,
        tool_input={"command": f"fanout status {RUN_ID}"},
        tool_response={"stdout": f"run {RUN_ID}: running\n", "stderr": ""},
    )
    assert call(status)[1] is None


def test_plan_text_cannot_reach_the_terminal_raw(project):
    hostile = (
        "Review \x1b]0;PWNED-TITLE\x07a.py \x1b[2J\x1b[31mred\x1b[0m \u202eevil\u202c\r\n"
        "second line"
    )
    run = FakeRun(project, RUN_ID, {"W1": {"claims": ["a\x1b[1m.py"], "prompt": hostile}}, SESSION)
    run.start("W1")
    text = shown(post_read(project))
    assert "\x1b" not in text and "PWNED-TITLE" not in text and "\u202e" not in text
    assert "Review a.py red evil" in text and "second line" not in text


def test_a_long_plan_is_cut_to_a_short_line(project):
    tasks = {f"W{i}": {"prompt": "x" * 500, "claims": [f"f{i}.py"]} for i in range(20)}
    FakeRun(project, RUN_ID, tasks, SESSION).start("W0")
    text = shown(post_read(project))
    first, watch = text.split("\n")
    assert "started 20 workers" in first and "+16 more" in first
    assert len(first) <= defaults.SHOWN_LINE_CHARS
    assert "W5" not in first and watch.startswith("fanout: watch it")
