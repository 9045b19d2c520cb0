"""The status line as Claude Code runs it: the command ``fanout install`` writes, through the
shell, with a status line input on stdin; and its segment, rendered from a run's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_fanout import defaults, install
from claude_fanout.hooks import statusline
from claude_fanout.settings_statusline import statusline_command
from claude_fanout.states import EventType
from claude_fanout.store.state import load_status
from tests.helpers import FakeRun

SESSION = "5e55-status-line"
MINE = "read -r line; echo MINE ${#line}"  # a person's own line: proves it read the same input


def entry() -> str:
    return install.default_entry()


def command(theirs: str | None = None) -> str:
    return statusline_command(python=sys.executable, entry=entry(), theirs=theirs)


def draw(
    project: Path,
    cmd: str,
    stdin: bytes | None = None,
    *,
    session: str = SESSION,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    if stdin is None:
        stdin = json.dumps(
            {"session_id": session, "cwd": str(project), "workspace": {"current_dir": str(project)}}
        ).encode()
    return subprocess.run(
        ["/bin/sh", "-c", cmd],
        input=stdin,
        capture_output=True,
        cwd=project,
        env={**os.environ, "CLAUDE_PROJECT_DIR": str(project), "NO_COLOR": "1", **(env or {})},
        timeout=30,
        check=False,
    )


def review_run(project: Path, session: str = SESSION) -> FakeRun:
    """Four workers: W1 done ($0.03), W2 failed, W3 and W4 running (W3 has spent $0.02 so far)."""
    run = FakeRun(project, "20260101-000000-000-abcd", {f"W{i}": {} for i in range(1, 5)}, session)
    for task in ("W1", "W2", "W3", "W4"):
        run.start(task)
    run.log.append(EventType.TASK_USAGE, task="W1", attempt=1, cost_usd=0.03, turns=2)
    run.finish("W1")
    run.finish("W2", outcome="failed")
    run.log.append(
        EventType.TASK_PROGRESS, task="W3", attempt=1, cost_usd=0.02, turns=1, doing="Read a.py"
    )
    return run


def test_a_live_run_of_this_session_shows_its_workers_and_their_cost(project: Path) -> None:
    review_run(project)
    done = draw(project, command())
    assert done.returncode == 0 and done.stderr == b""
    line = done.stdout.decode()
    assert line.endswith("\n") and line.count("\n") == 1
    parts = line.strip().split(statusline.SEPARATOR)
    # Running workers' cost counts: $0.03 finished + $0.02 so far, so the sum is an estimate.
    assert parts[:4] == ["fanout 2 running", "1 done", "1 failed", "~$0.05"]
    assert parts[4].endswith("s")  # elapsed, e.g. 0.3s
    assert "\x1b" not in line  # NO_COLOR


def test_one_running_worker_shows_what_it_is_doing(project: Path) -> None:
    run = FakeRun(project, "20260101-000000-000-abcd", {"W1": {}}, SESSION)
    run.start("W1")
    run.log.append(EventType.TASK_PROGRESS, task="W1", attempt=1, doing="Grep TODO src/")
    line = draw(project, command()).stdout.decode().strip()
    assert line.startswith("fanout 1 running")
    assert line.endswith(f"{statusline.SEPARATOR}W1: Grep TODO src/")


def test_another_sessions_run_or_none_prints_nothing(project: Path) -> None:
    assert draw(project, command()).stdout == b""  # no run at all: the shell answered
    review_run(project, session="someone-else")
    done = draw(project, command())
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    # The person's own line alone, byte for byte.
    mine = draw(project, command(MINE))
    assert (
        mine.stdout
        == draw(project, MINE).stdout
        == b"MINE " + str(len(_input(project))).encode() + b"\n"
    )


def _input(project: Path) -> bytes:
    return json.dumps(
        {"session_id": SESSION, "cwd": str(project), "workspace": {"current_dir": str(project)}}
    ).encode()


def test_the_persons_line_comes_first_with_the_same_input(project: Path) -> None:
    idle = draw(project, command(MINE))
    assert idle.stdout == f"MINE {len(_input(project))}\n".encode()
    review_run(project)
    live = draw(project, command(MINE))
    first, _, rest = live.stdout.decode().partition("\n")
    assert first.startswith(f"MINE {len(_input(project))}{statusline.BETWEEN}fanout 2 running")
    assert rest == ""


def test_a_multi_line_status_line_keeps_its_other_lines(project: Path) -> None:
    review_run(project)
    out = draw(project, command("printf 'top\\nbottom\\n'")).stdout.decode()
    assert out.splitlines()[0].startswith(f"top{statusline.BETWEEN}fanout 2 running")
    assert out.splitlines()[1:] == ["bottom"]


@pytest.mark.parametrize(
    "stdin",
    [b"", b"not json", b"[1, 2]", b'{"session_id": 7}', b"\xff\xfe", b'{"cwd": "relative"}'],
    ids=["empty", "not-json", "array", "bad-session", "binary", "no-session"],
)
def test_bad_input_prints_nothing_of_fanouts_and_never_a_traceback(
    project: Path, stdin: bytes
) -> None:
    review_run(project)
    done = draw(project, command(), stdin)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    mine = draw(project, command("echo MINE"), stdin)
    assert (mine.returncode, mine.stdout, mine.stderr) == (0, b"MINE\n", b"")


def test_too_much_input_is_not_read_as_a_session(project: Path) -> None:
    review_run(project)
    huge = b" " * (defaults.STATUSLINE_INPUT_MAX_BYTES + 10) + _input(project)
    done = draw(project, command(), huge)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


def test_text_from_the_store_cannot_reach_the_terminal(project: Path) -> None:
    run = FakeRun(project, "20260101-000000-000-abcd", {"W1": {}}, SESSION)
    run.start("W1")
    evil = "\x1b]0;pwned\x07\x1b[2J\u202eevil\u2066\nline\x9b31m"
    run.log.append(EventType.TASK_PROGRESS, task="W1", attempt=1, doing=evil)
    for env in ({"NO_COLOR": "1"}, {"NO_COLOR": ""}):
        line = draw(project, command(), env=env).stdout.decode()
        tail = line.split(statusline.SEPARATOR)[-1]
        assert tail.startswith("W1: ")
        assert all(ch.isprintable() for ch in tail.strip()), repr(tail)
        assert "\u202e" not in line and "\x07" not in line and "\x9b" not in line
        assert "\x1b]" not in line and "\x1b[2J" not in line


def test_colour_unless_no_color(project: Path) -> None:
    review_run(project)
    coloured = draw(project, command(), env={"NO_COLOR": ""}).stdout.decode()
    assert "\x1b[31m1 failed\x1b[39m" in coloured
    assert "\x1b" not in draw(project, command()).stdout.decode()


def test_a_finished_run_shows_its_outcome_and_fixed_duration(project: Path) -> None:
    run = FakeRun(project, "20260101-000000-000-abcd", {"W1": {}, "W2": {}}, SESSION)
    for task in ("W1", "W2"):
        run.start(task)
        run.finish(task)
    run.log.append(EventType.RUN_FINISHED, state="succeeded")
    status = load_status(run.path)
    status.finished = (status.created or 0) + 72.5
    line = statusline.render([status], now=time.time() + 1000)
    assert line == "fanout 2 done \u00b7 1m12s"


def test_a_run_without_tasks_yet_reads_starting() -> None:
    from claude_fanout.store.status import RunStatus

    assert statusline.render([RunStatus("r", created=100.0)], now=103.0) == (
        "fanout starting \u00b7 3.0s"
    )
    assert statusline.render([], now=1.0) == ""


def test_their_slow_line_is_cut_off_and_reaped(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "STATUSLINE_THEIRS_TIMEOUT_S", 0.5)
    started = time.monotonic()
    out = statusline.run_theirs("/bin/sh", "printf early; exec sleep 30", b"{}")
    assert out == b"early"
    assert time.monotonic() - started < 5


def test_fanout_statusline_prints_the_segment(project: Path) -> None:
    review_run(project)
    done = subprocess.run(
        [sys.executable, "-m", "claude_fanout", "statusline"],
        input=_input(project),
        capture_output=True,
        cwd=project,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.decode().startswith("fanout 2 running \u00b7 1 done \u00b7 1 failed")
    bad = subprocess.run(
        [sys.executable, "-m", "claude_fanout", "statusline"],
        input=b"{oops",
        capture_output=True,
        cwd=project,
        timeout=30,
        check=False,
    )
    assert (bad.returncode, bad.stdout, bad.stderr) == (0, b"", b"")
