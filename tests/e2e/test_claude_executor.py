"""The ``claude`` task kind, driving the real Claude Code CLI against the fake Messages API."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.executors.claude import run_claude_task
from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env
from claude_fanout.testing.models import read_then_summarize, scripted
from claude_fanout.testing.replies import ErrorReply, Handler, Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

StartFake = Callable[[Handler], FakeMessagesAPI]  # the conftest `fake_api` factory

NOTES = "\n# Release notes\n\n- fixed the frobnicator\n- added a widget\n"


@pytest.fixture(autouse=True)
def _no_inherited_cli_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as if outside any Claude Code session, whatever the test runner inherited."""
    for name in list(os.environ):
        if name == "CLAUDECODE" or name.startswith(("CLAUDE_CODE_", "ANTHROPIC_", "FANOUT_")):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "NOTES.md").write_text(NOTES)
    return proj


def _meta(out: Path) -> dict[str, Any]:
    data = json.loads((out / "meta.json").read_text())
    assert isinstance(data, dict)
    return data


def _assert_private_files(out: Path) -> None:
    for name in ("result.md", "meta.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "result.md"]  # no tmp left


def test_reviewer_reads_the_file_and_reports_usage(
    fake_api: StartFake,
    claude_home: Path,
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = fake_api(read_then_summarize(usage=Usage(123, 45, 6, 7)))
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Review NOTES.md and summarize it.",
        tools=["Read", "Grep"],
        max_turns=5,
        cwd=project,
        out_dir=out,
        env={**cli_env(api.base_url, claude_home), "FANOUT_DEPTH": "1"},
    )
    assert rc == 0
    target = project / "NOTES.md"

    # The fake got the Read result carrying the file's content.
    results = [text for r in api.message_requests() for _id, text in r.tool_results()]
    assert any("fixed the frobnicator" in text for text in results)
    # The model's answer, derived from that content, is the result.
    expected = f"SUMMARY {target}: {len(NOTES.splitlines())} lines; first line: # Release notes"
    assert (out / "result.md").read_text() == expected + "\n"

    meta = _meta(out)
    assert meta["ok"] is True
    assert meta["is_error"] is False
    assert meta["subtype"] == "success"
    assert meta["num_turns"] == 2  # Read, then answer
    assert meta["terminal_reason"] == "completed"
    assert meta["permission_denials"] == []
    main_calls = api.message_requests(side_calls=False)
    assert len(main_calls) == 2
    assert {r.session_id for r in main_calls} == {meta["session_id"]}
    reported = api.reported_usage()
    assert reported == Usage(246, 90, 12, 14)
    usage = meta["usage"]
    assert usage["input_tokens"] == reported.input_tokens
    assert usage["output_tokens"] == reported.output_tokens
    assert usage["cache_creation_input_tokens"] == reported.cache_creation_input_tokens
    assert usage["cache_read_input_tokens"] == reported.cache_read_input_tokens
    (model_usage,) = meta["model_usage"].values()
    assert model_usage["inputTokens"] == reported.input_tokens
    assert meta["total_cost_usd"] > 0
    assert meta["duration_ms"] > 0
    assert meta["tools"] == ["Read", "Grep"]
    assert meta["cli_path"] == str(claude_cli())
    assert meta["cli_version"]
    _assert_private_files(out)

    log = capsys.readouterr().out.splitlines()
    assert any(line.startswith("[tool] Read ") and str(target) in line for line in log)
    assert any(line.startswith("[assistant] SUMMARY ") for line in log)
    assert log[-1].startswith("[result] success")
    # The transcript went to the test's own HOME.
    assert list((claude_home / ".claude" / "projects").glob(f"*/{meta['session_id']}.jsonl"))


@pytest.mark.parametrize(
    ("tools", "attempt", "denied_in_meta"),
    [
        pytest.param(
            ["Read"],
            lambda f: ToolUse("Write", {"file_path": str(f), "content": "pwned"}),
            False,
            id="write-not-offered",
        ),
        pytest.param(
            ["Read", "Edit(/docs/**)"],
            lambda f: ToolUse("Edit", {"file_path": str(f), "old_string": "#", "new_string": "!"}),
            True,
            id="edit-outside-pattern",
        ),
        pytest.param(
            ["Read", "Bash(echo:*)"],
            lambda f: ToolUse("Bash", {"command": f"rm {f}", "description": "remove"}),
            True,
            id="bash-outside-pattern",
        ),
    ],
)
def test_only_the_task_tools_are_offered_and_usable(
    fake_api: StartFake,
    claude_home: Path,
    project: Path,
    tmp_path: Path,
    tools: list[str],
    attempt: Callable[[Path], ToolUse],
    denied_in_meta: bool,
) -> None:
    target = project / "NOTES.md"
    bad = attempt(target)
    api = fake_api(
        scripted(Reply([Text("Let me change it."), bad]), then=Reply([Text("Gave up.")]))
    )
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Fix NOTES.md",
        tools=tools,
        max_turns=4,
        cwd=project,
        out_dir=out,
        env=cli_env(api.base_url, claude_home),
    )
    assert rc == 0
    assert target.read_text() == NOTES  # untouched

    offered = {r.session_id: r.offered_tool_names for r in api.message_requests()}
    expected = sorted({t.split("(")[0] for t in tools})
    assert [sorted(names) for names in offered.values()] == [expected]

    # The model was told its call failed...
    (answer,) = [r for r in api.message_requests() if r.tool_results()]
    ((tool_id, text),) = answer.tool_results()
    assert tool_id == bad.id
    if denied_in_meta:
        assert "denied" in text
    else:
        assert "No such tool available: Write" in text
    # ...and the run records the denial.
    meta = _meta(out)
    denials = meta["permission_denials"]
    if denied_in_meta:
        assert [(d["tool_name"], d["tool_use_id"]) for d in denials] == [(bad.name, bad.id)]
    else:
        assert denials == []  # never offered: refused before any permission check
    assert meta["allowed_tools"] == tools
    assert (out / "result.md").read_text() == "Gave up.\n"


def test_a_pattern_allows_what_it_names(
    fake_api: StartFake, claude_home: Path, project: Path, tmp_path: Path
) -> None:
    echo = ToolUse("Bash", {"command": "echo fanout-was-here", "description": "say hi"})
    api = fake_api(scripted(Reply([echo])))
    rc = run_claude_task(
        prompt="Say hi",
        tools=["Bash(echo:*)"],
        max_turns=3,
        cwd=project,
        out_dir=tmp_path / "out",
        env=cli_env(api.base_url, claude_home),
    )
    assert rc == 0
    results = [text for r in api.message_requests() for _id, text in r.tool_results()]
    assert results == ["fanout-was-here"]
    assert _meta(tmp_path / "out")["permission_denials"] == []


def _write_fake_cli(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("via", ["environ", "env"])
def test_cli_that_fails_to_start_gives_exit_1_and_an_explanation(
    claude_home: Path,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    via: str,
) -> None:
    fake = _write_fake_cli(
        tmp_path / "claude", 'echo "claude: simulated startup failure" >&2; exit 3'
    )
    env = cli_env("http://127.0.0.1:9", claude_home)  # never reached
    if via == "environ":
        monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(fake))
    else:
        env["FANOUT_CLAUDE_BIN"] = str(fake)
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Review NOTES.md", tools=["Read"], max_turns=2, cwd=project, out_dir=out, env=env
    )
    assert rc == 1
    meta = _meta(out)
    assert meta["ok"] is False
    assert meta["is_error"] is True
    assert meta["cli_path"] == str(fake)
    assert meta["cli_exit_code"] == 3
    assert meta["error"] == "claude exited with code 3 before it reported a result"
    assert meta["stderr_tail"] == ["claude: simulated startup failure"]
    result = (out / "result.md").read_text()
    assert result.startswith("# Worker failed")
    assert "claude: simulated startup failure" in result
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1
    assert err_lines[0].startswith("fanout claude worker failed: ")
    assert "simulated startup failure" in err_lines[0]
    _assert_private_files(out)


def test_missing_cli_gives_exit_1(
    claude_home: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(tmp_path / "no-such-claude"))
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="x",
        tools=[],
        max_turns=1,
        cwd=project,
        out_dir=out,
        env=cli_env("http://127.0.0.1:9", claude_home),
    )
    assert rc == 1
    assert _meta(out)["error"].startswith("cannot start ")
    assert "no-such-claude" in (out / "result.md").read_text()


def test_api_error_result_gives_exit_1(
    fake_api: StartFake, claude_home: Path, project: Path, tmp_path: Path
) -> None:
    api = fake_api(
        lambda _r: ErrorReply(
            400, "invalid_request_error", "fake: unsupported parameter frobnicate"
        )
    )
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Review NOTES.md",
        tools=["Read"],
        max_turns=2,
        cwd=project,
        out_dir=out,
        env=cli_env(api.base_url, claude_home),
    )
    assert rc == 1
    meta = _meta(out)
    assert meta["is_error"] is True
    assert meta["api_error_status"] == 400
    assert meta["session_id"]
    assert meta["subtype"] == "success"  # the agent loop ended; the API call failed
    assert "unsupported parameter frobnicate" in (out / "result.md").read_text()
    # On a 400 the CLI retries a few times with fewer betas, then gives up (6 calls in 2.1.330).
    assert 1 <= len(api.message_requests()) <= 12


def test_running_out_of_turns_gives_exit_1(
    fake_api: StartFake, claude_home: Path, project: Path, tmp_path: Path
) -> None:
    def read_forever(_request: Request) -> Reply:
        return Reply([Text("Reading once more."), ToolUse("Read", {"file_path": "NOTES.md"})])

    api = fake_api(read_forever)
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Review NOTES.md",
        tools=["Read"],
        max_turns=2,
        cwd=project,
        out_dir=out,
        env=cli_env(api.base_url, claude_home),
    )
    assert rc == 1
    meta = _meta(out)
    assert meta["subtype"] == "error_max_turns"
    assert meta["num_turns"] >= 2
    assert len(api.message_requests()) == 2
    result = (out / "result.md").read_text()
    assert "error_max_turns" in result
    assert "Reading once more." in result  # the last thing the model said


def test_runs_under_a_parent_claude_code_session(
    fake_api: StartFake,
    claude_home: Path,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a worker inherits from a hook of the Conductor's session does not get in the way."""
    parent_session = str(uuid.uuid4())
    markers = {
        "CLAUDECODE": "1",
        "CLAUDE_CODE_CHILD_SESSION": "1",
        "CLAUDE_CODE_SESSION_ID": parent_session,
        "CLAUDE_CODE_ENTRYPOINT": "cli",
        "CLAUDE_CODE_SESSION_ATTENDED": "1",
    }
    for name, value in markers.items():
        monkeypatch.setenv(name, value)
    api = fake_api(read_then_summarize())
    out = tmp_path / "out"
    rc = run_claude_task(
        prompt="Review NOTES.md",
        tools=["Read"],
        max_turns=4,
        cwd=project,
        out_dir=out,
        env={**cli_env(api.base_url, claude_home), "CLAUDECODE": "1"},
    )
    assert rc == 0
    assert "first line: # Release notes" in (out / "result.md").read_text()
    sessions = {r.session_id for r in api.message_requests()}
    assert sessions == {_meta(out)["session_id"]}
    assert parent_session not in sessions


HOOK_SCRIPT = """
import json, os, sys
from contextlib import redirect_stdout
from pathlib import Path

source, log, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
event = json.load(sys.stdin)
depth = int(os.environ.get("FANOUT_DEPTH", "0"))
record = {
    "source": source,
    "depth": depth,
    "session_id": event.get("session_id"),
    "CLAUDECODE": os.environ.get("CLAUDECODE"),
}
with log.open("a") as fh:
    fh.write(json.dumps(record) + "\\n")
if source == "project" and depth == 0:
    from claude_fanout.executors.claude import run_claude_task

    env = {**os.environ, "FANOUT_DEPTH": "1"}
    out.mkdir(parents=True)
    with (out.parent / "worker.log").open("w") as fh, redirect_stdout(fh):
        rc = run_claude_task(
            prompt="Review NOTES.md",
            tools=["Read"],
            max_turns=4,
            cwd=Path(event["cwd"]),
            out_dir=out,
            env=env,
        )
    (out.parent / "worker.rc").write_text(str(rc))
"""


def _hook_settings(script: Path, source: str, log: Path, out: Path) -> str:
    command = " ".join(shlex.quote(str(a)) for a in (sys.executable, script, source, log, out))
    hook = {"type": "command", "command": command, "timeout": 50}
    return json.dumps({"hooks": {"UserPromptSubmit": [{"hooks": [hook]}]}})


def test_worker_started_from_a_real_hook_runs_project_hooks_only(
    fake_api: StartFake, claude_home: Path, project: Path, tmp_path: Path
) -> None:
    """A Conductor's hook starts a worker: the nested session works, runs the project's hooks
    (which see its depth marker) and not the user's."""
    script = tmp_path / "hook.py"
    script.write_text(HOOK_SCRIPT)
    log, out = tmp_path / "hooks.jsonl", tmp_path / "worker" / "out"
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.json").write_text(_hook_settings(script, "project", log, out))
    (claude_home / ".claude").mkdir()
    (claude_home / ".claude" / "settings.json").write_text(_hook_settings(script, "user", log, out))

    api = fake_api(read_then_summarize())
    conductor = subprocess.run(
        [str(claude_cli()), "-p", "Hello there", "--output-format", "json", "--tools", ""],
        cwd=project,
        env=cli_env(api.base_url, claude_home),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert conductor.returncode == 0, conductor.stderr
    conductor_session = json.loads(conductor.stdout)["session_id"]

    assert (tmp_path / "worker" / "worker.rc").read_text() == "0"
    assert "first line: # Release notes" in (out / "result.md").read_text()
    worker_session = _meta(out)["session_id"]
    assert worker_session != conductor_session

    records = [json.loads(line) for line in log.read_text().splitlines()]
    by_source = {(r["source"], r["depth"], r["session_id"]) for r in records}
    assert by_source == {
        ("project", 0, conductor_session),
        ("user", 0, conductor_session),
        ("project", 1, worker_session),  # the worker ran the project's hook...
    }  # ...and not the user's
    assert {r["CLAUDECODE"] for r in records if r["depth"] == 0} == {"1"}  # hooks are nested
