"""What the real CLI prints into pipes: a reader that leaves costs output, never work or a
traceback; piped tables are never cut; `logs` says why a task has none; attempts keep counting
across `fanout resume`; a run started in a sub-folder says where its tasks run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CLIResult

PY = sys.executable

pytestmark = pytest.mark.timeout(90)

# The CLI's stdout with and without Python's buffering: a closed pipe shows up either at once
# (each print) or at the end (the final flush).
BUFFERING = [
    pytest.param({"PYTHONUNBUFFERED": "1"}, id="unbuffered"),
    pytest.param({"PYTHONUNBUFFERED": ""}, id="buffered"),
]


def cli_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    return {k: v for k, v in env.items() if v != ""}


def finished_runs(fanout: Callable[..., CLIResult], write_plan, count: int) -> list[str]:
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": ["true"]}])
    ids = []
    for _ in range(count):
        result = fanout("run", str(plan))
        assert result.returncode == 0, result.stderr
        ids.append(result.stdout.strip().splitlines()[-1])
    return ids


@pytest.mark.parametrize("env", BUFFERING)
def test_gc_removes_every_run_when_its_reader_has_gone(
    project: Path, fanout, write_plan, env: dict[str, str]
) -> None:
    ids = finished_runs(fanout, write_plan, 3)
    proc = subprocess.Popen(
        [PY, "-m", "claude_fanout", "gc", "--all-finished"],
        cwd=project,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    proc.stderr.close()

    assert proc.wait(timeout=60) == 0
    assert err == ""  # no traceback, no "Exception ignored"
    assert fanout("runs", "--json").json() == []
    assert not any((project / ".claude" / "runs" / run_id).exists() for run_id in ids)


def test_gc_into_head_prints_one_line_and_still_removes_every_run(
    project: Path, fanout, write_plan
) -> None:
    ids = finished_runs(fanout, write_plan, 3)
    result = subprocess.run(
        f"'{PY}' -m claude_fanout gc --all-finished | head -1",
        shell=True,
        cwd=project,
        env=cli_env({"PYTHONUNBUFFERED": "1"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == f"removed run {ids[0]} (succeeded)\n"
    assert result.stderr == ""
    assert fanout("runs", "--json").json() == []


@pytest.mark.parametrize("env", BUFFERING)
def test_logs_stops_quietly_when_its_reader_has_gone(
    project: Path, fanout, write_plan, env: dict[str, str]
) -> None:
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": ["seq", "200000"]}])
    run_id = fanout("run", str(plan)).stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(
        [PY, "-m", "claude_fanout", "logs", run_id, "W1"],
        cwd=project,
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"--- fanout"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()

    assert proc.wait(timeout=60) == 1  # its output was cut (docs/cli.md)
    assert err == ""


def test_piped_status_and_runs_cut_nothing(project: Path, fanout, write_plan) -> None:
    long_id = "T" + "x" * 63
    missing = "./" + "no-such-dir-" * 10 + "/tool"
    plan = write_plan(
        [
            {"id": long_id, "kind": "shell", "argv": ["true"]},
            {"id": "B", "kind": "shell", "argv": [missing], "deps": [long_id]},
        ]
    )
    run_id = fanout("run", str(plan)).stdout.strip().splitlines()[-1]
    # A narrow terminal size in the environment is not a reason to cut piped output either.
    result = fanout("status", run_id, env={"COLUMNS": "60"})

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    detail = f"could not start: No such file or directory: {missing}"
    assert any(line.startswith(f"{long_id} ") and "succeeded" in line for line in lines)
    assert any(line.startswith("B ") and line.rstrip().endswith(detail) for line in lines)
    assert "\x1b[" not in result.stdout  # no terminal codes into a pipe

    runs = fanout("runs", env={"COLUMNS": "60"})
    row = next(line for line in runs.stdout.splitlines() if run_id in line)
    assert " failed " in row and "1 failed 1 succeeded" in row
    assert any(f"{year}-" in row for year in range(2020, 2100))
    assert "…" not in runs.stdout
    assert fanout("runs", "--json").json()[0]["state"] == "failed"  # --json unchanged


def test_logs_of_a_task_that_never_ran_says_why(project: Path, fanout, write_plan) -> None:
    plan = write_plan(
        [
            {"id": "a", "kind": "shell", "argv": ["false"]},
            {"id": "b", "kind": "shell", "argv": ["true"], "deps": ["a"]},
        ]
    )
    run_id = fanout("run", str(plan)).stdout.strip().splitlines()[-1]

    for follow in ((), ("-f",)):
        result = fanout("logs", run_id, "b", *follow)
        assert result.returncode == 0
        assert result.stdout == ""
        assert result.stderr == (
            "fanout: b was skipped (dependency a failed): it never ran, so it has no log\n"
        )
    assert fanout("logs", run_id, "a").stdout.startswith("--- fanout: a attempt 1 at ")
    unknown = fanout("logs", run_id, "zz")
    assert unknown.returncode == 1 and "has no task 'zz' (tasks: a, b)" in unknown.stderr


def test_attempts_keep_counting_across_resume(project: Path, fanout, write_plan) -> None:
    """Two attempts (retries: 1) fail; `resume` makes attempt 3 (it fails: retried afresh) and
    attempt 4, which succeeds. The log has one header per attempt."""
    count = (
        "import os, pathlib, sys; p = pathlib.Path(os.environ['FANOUT_PROJECT']) / 'n'; "
        "n = int(p.read_text()) + 1 if p.exists() else 1; p.write_text(str(n)); "
        "sys.exit(0 if n >= 4 else 3)"
    )
    plan = write_plan([{"id": "B", "kind": "shell", "argv": [PY, "-c", count], "retries": 1}])
    first = fanout("run", str(plan))
    assert first.returncode == 1
    run_id = first.stdout.strip().splitlines()[-1]

    again = fanout("resume", run_id)

    assert again.returncode == 0, again.stderr
    assert "B started (attempt 3," in again.stderr and "B started (attempt 4," in again.stderr
    assert "(attempt 1," not in again.stderr
    task = fanout("status", run_id, "--json").json()["tasks"][0]
    assert (task["state"], task["attempt"]) == ("succeeded", 4)
    log = fanout("logs", run_id, "B").stdout
    headers = [line.split(" at ")[0] for line in log.splitlines() if line.startswith("--- ")]
    assert headers == [f"--- fanout: B attempt {n}" for n in (1, 2, 3, 4)]


def test_a_run_started_in_a_sub_folder_says_where_its_tasks_run(project: Path, write_plan) -> None:
    sub = project / "src" / "deep"
    sub.mkdir(parents=True)
    plan = write_plan([{"id": "W1", "kind": "shell", "argv": ["sh", "-c", "pwd > where"]}])
    result = subprocess.run(
        [PY, "-m", "claude_fanout", "run", str(plan)],
        cwd=sub,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"its tasks run in the project root {project.resolve()}, not in " in result.stderr
    assert (project / "where").read_text().strip() == str(project.resolve())
    assert not (sub / "where").exists()
