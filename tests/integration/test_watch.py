"""``fanout watch`` through the real CLI (output not a terminal: plain lines) and its follower
on real run directories: what it tells, that it folds only the log's tail, bad input, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.cli.watch import Followed
from claude_fanout.cli.watch_view import Style, frame
from claude_fanout.config import Config
from claude_fanout.store import state
from claude_fanout.store.rundir import RunDir
from tests.helpers import CLIResult, FakeRun

pytestmark = pytest.mark.timeout(90)


def start_detached(fanout: Callable[..., CLIResult], plan: Path) -> str:
    result = fanout("run", str(plan), "--detach")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def one_line_error(result: CLIResult, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("fanout: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@contextlib.contextmanager
def watching(project: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``fanout watch ARGS`` with its output piped; killed if the test leaves it running."""
    with subprocess.Popen(
        [sys.executable, "-m", "claude_fanout", "watch", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_watch_tells_each_transition_of_a_real_run_then_its_totals_and_exit_code(
    fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    plan = write_plan(
        [
            {"id": "quick", "kind": "shell", "argv": ["true"]},
            {"id": "slow", "kind": "shell", "argv": ["sh", "-c", "sleep 1; echo done"]},
            {"id": "bad", "kind": "shell", "argv": ["sh", "-c", "sleep 0.5; exit 3"]},
            {"id": "after", "kind": "shell", "argv": ["true"], "deps": ["slow"]},
        ],
        max_cost_usd=1.5,
    )
    run_id = start_detached(fanout, plan)

    result = fanout("watch", run_id)

    assert result.returncode == 1, result.stderr  # a task failed: `fanout wait`'s code
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"watching run {run_id} ")
    told = {line.split()[0]: line for line in lines[1:] if not line.startswith("run ")}
    assert told["slow"].startswith("slow succeeded after 1")
    assert told["bad"].startswith("bad failed after") and told["bad"].endswith("exit code 3")
    assert told["after"].startswith("after succeeded")
    # Every task told once in its final state; the totals last.
    assert sum(1 for line in lines if line.startswith("slow succeeded")) == 1
    assert lines[-2].startswith(f"run {run_id} failed in ")
    assert "3 succeeded" in lines[-2] and "1 failed" in lines[-2]
    assert lines[-1] == "budget left $1.50 of $1.50"

    again = fanout("watch")  # the latest run, already over: its state at once
    assert again.returncode == 1
    assert again.stdout.splitlines()[-2] == lines[-2]


def test_watch_exits_0_when_every_task_succeeded(
    fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    plan = write_plan([{"id": "A", "kind": "shell", "argv": ["sh", "-c", "sleep 0.3"]}])
    run_id = start_detached(fanout, plan)
    result = fanout("watch", run_id[:15])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {run_id} succeeded in" in result.stdout


def test_the_follower_folds_only_what_the_log_gained_and_shows_running_cost(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun(project, "20261130-000000-000-aaaa", {"W1": {}, "W2": {}}, session=None)
    fake.start("W1")
    followed = Followed(RunDir(fake.path), Config())
    reads: list[int] = []
    real = state.read_events

    def counting(path: Any, offset: int = 0) -> Any:
        reads.append(offset)
        return real(path, offset)

    monkeypatch.setattr(state, "read_events", counting)
    before = followed.status.offset
    fake.log.append(
        "task_progress",
        task="W1",
        attempt=1,
        input_tokens=1200,
        output_tokens=300,
        turns=2,
        cost_usd=0.12,
        doing="Bash: pytest -q",
    )
    now = time.time()
    followed.refresh(now)

    assert reads == [before]  # from where the last refresh stopped, not from the start
    assert followed.status.offset == (fake.path / "events.jsonl").stat().st_size
    screen = "\n".join(frame(followed.view(now), Style(width=120, colour=False)))
    w1 = next(line for line in screen.splitlines() if line.startswith("W1 "))
    assert "~$0.12" in w1 and "Bash: pytest -q" in w1  # ~: so far, an estimate
    assert "spent ~$0.12" in screen

    fake.log.append("task_usage", task="W1", attempt=1, turns=3, cost_usd=0.2)
    fake.finish("W1")
    followed.refresh(now)
    assert followed.status.tasks["W1"].state == "succeeded"
    assert followed.status.spent() == {"turns": 3, "cost_usd": 0.2}
    assert reads[1] > before
    screen = "\n".join(frame(followed.view(now), Style(width=120, colour=False)))
    assert "spent $0.20" in screen and "~" not in screen  # the CLI's own figure: exact


def test_a_running_tasks_last_line_comes_from_the_end_of_its_log_only(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun(project, "20261130-000000-000-bbbb", {"W1": {}}, session=None)
    fake.start("W1")
    log = fake.path / "workers" / "W1" / "log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"x" * 2_000_000 + b"\nstep 41\nstep 42: compiling\n\n")
    followed = Followed(RunDir(fake.path), Config())
    asked: list[int] = []
    real = os.pread

    def recording(fd: int, size: int, offset: int) -> bytes:
        asked.append(size)
        return real(fd, size, offset)

    monkeypatch.setattr(os, "pread", recording)
    assert followed.last_line("W1") == "step 42: compiling"
    assert asked and max(asked) <= 4096
    asked.clear()
    assert followed.last_line("W1") == "step 42: compiling"
    assert asked == []  # unchanged since: not read again
    assert followed.last_line("W2") is None  # no log
    # A new attempt that has written nothing yet: the supervisor's header is not its output.
    log.write_text("--- fanout: W1 attempt 2 at 10:00:00 ---\n")
    assert followed.last_line("W1") is None


def test_a_worker_log_that_is_a_symlink_is_not_read(project: Path, tmp_path: Path) -> None:
    fake = FakeRun(project, "20261130-000000-000-bbb2", {"W1": {}}, session=None)
    fake.start("W1")
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    (fake.path / "workers" / "W1").mkdir(parents=True)
    (fake.path / "workers" / "W1" / "log").symlink_to(secret)
    followed = Followed(RunDir(fake.path), Config())
    assert followed.last_line("W1") is None
    screen = "\n".join(frame(followed.view(time.time()), Style(width=120, colour=False)))
    assert "hunter2" not in screen


def test_bad_input_is_one_line_and_changes_nothing(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    assert "no runs under" in one_line_error(fanout("watch"))
    fake = FakeRun(project, "20261130-000000-000-cccc", {"W1": {}}, session=None)
    fake.end()
    assert "no run 'nope'" in one_line_error(fanout("watch", "nope"))
    assert "no run '../..'" in one_line_error(fanout("watch", "../.."))
    assert "not both" in one_line_error(fanout("watch", "--all", fake.run_id), code=2)

    events = fake.path / "events.jsonl"
    events.write_bytes(b'{"type": "run_cr\x00\n<html>not a log</html>\n')
    before = {p.name: p.stat().st_mtime_ns for p in fake.path.iterdir()}
    error = one_line_error(fanout("watch", fake.run_id))
    assert "damaged" in error and "2 unreadable line(s)" in error
    assert {p.name: p.stat().st_mtime_ns for p in fake.path.iterdir()} == before
    assert not (fake.path / "state.json").exists()

    events.unlink()
    assert "has no event log" in one_line_error(fanout("watch", fake.run_id))


def test_ctrl_c_leaves_quietly_with_130(project: Path) -> None:
    fake = FakeRun(project, "20261130-000000-000-dddd", {"W1": {}}, session=None)
    fake.end()  # over: without --follow watch would exit at once
    with watching(project, "--follow") as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"watching run {fake.run_id}")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in err and err == ""


def test_all_follows_every_live_run_until_each_ends(project: Path) -> None:
    first = FakeRun(project, "20261130-000000-000-eee1", {"A1": {}}, session=None)
    second = FakeRun(project, "20261130-000000-000-eee2", {"B1": {}, "B2": {}}, session=None)
    over = FakeRun(project, "20261130-000000-000-eee0", {"Z": {}}, session=None)
    over.end()
    with watching(project, "--all") as proc:
        assert proc.stdout is not None
        heads = [proc.stdout.readline(), proc.stdout.readline()]
        assert sorted(h.split()[2] for h in heads) == [first.run_id, second.run_id]
        second.start("B1")
        second.finish("B1", outcome="failed")
        first.start("A1")
        first.finish("A1")
        first.end()
        told = []
        while not told or not told[-1].startswith(f"run {first.run_id} succeeded"):
            told.append(proc.stdout.readline())
            assert told[-1], told
        assert proc.poll() is None  # still following the other run
        second.end("failed")
        proc.wait(timeout=20)
        # What readline() buffered is not seen by communicate(): read on from the same buffer.
        out = "".join(told) + proc.stdout.read()
        err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 1, err  # one of them failed
    assert over.run_id not in out
    assert f"{second.run_id}: B1 failed" in out
    assert f"run {first.run_id} succeeded" in out and f"run {second.run_id} failed" in out


def test_all_with_follow_picks_up_a_run_that_starts_later(project: Path) -> None:
    over = FakeRun(project, "20261130-000000-000-fff0", {"Z": {}}, session=None)
    over.end()  # still marked active (nobody heard of it yet), but over: not followed
    with watching(project, "--all", "--follow") as proc:
        assert proc.stdout is not None
        time.sleep(1.5)  # a tick or so with nothing to follow
        assert proc.poll() is None
        later = FakeRun(project, "20261130-000000-000-fff1", {"L1": {}}, session=None)
        head = proc.stdout.readline()
        assert head.startswith(f"watching run {later.run_id} (running): 1 task(s)")
        later.start("L1")
        assert proc.stdout.readline() == f"{later.run_id}: L1 running (attempt 1)\n"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        rest = proc.stdout.read()
    assert proc.returncode == 130
    assert over.run_id not in head + rest


def test_follow_without_a_run_moves_on_to_the_next_run(project: Path) -> None:
    first = FakeRun(project, "20261130-000000-000-aaa1", {"A": {}}, session=None)
    first.end()
    with watching(project, "--follow") as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith(f"watching run {first.run_id} (succeeded)")
        assert lines[1].startswith(f"run {first.run_id} succeeded")
        second = FakeRun(project, "20261130-000000-000-aaa2", {"B": {}}, session=None)
        while not (line := proc.stdout.readline()).startswith("watching run"):
            assert line, "watch ended"
        assert line.startswith(f"watching run {second.run_id} (running)")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 130
