"""A plan that would fail at run time is refused before anything starts, and a task that still
cannot start (its program built by an earlier task, say) is narrated as such: never "pid None"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from claude_fanout.git import worktrees
from claude_fanout.store.eventlog import read_events

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("task", "culprit", "fix"),
    [
        pytest.param(
            {"id": "fix.lock", "kind": "claude", "prompt": "p", "write": True},
            "task fix.lock: field 'id'",
            "rename the task, e.g. 'fix-lock'",
            id="writer-id-lock",
        ),
        pytest.param(
            {"id": "a..b", "kind": "claude", "prompt": "p", "write": True},
            "task a..b: field 'id'",
            "rename the task, e.g. 'a.b'",
            id="writer-id-dotdot",
        ),
        pytest.param(
            {"id": "t", "kind": "shell", "argv": ["no-such-program-4711", "x"]},
            "task t: field 'argv'",
            "install it, fix the name, or give its path",
            id="argv0-missing",
        ),
        pytest.param(
            {"id": "w", "kind": "claude", "prompt": "p", "write": True},
            "task w: field 'write'",
            "run 'git init' in",
            id="writer-outside-git",
        ),
    ],
)
def test_a_plan_that_would_fail_at_run_time_is_refused_and_starts_nothing(
    project: Path, fanout, write_plan, task: dict[str, object], culprit: str, fix: str
) -> None:
    for args in (("run",), ("run", "--detach")):
        result = fanout(*args, str(write_plan([task])))

        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"fanout: plan: {culprit}: ")
        assert fix in result.stderr
        assert "pid None" not in result.stderr
        assert not (project / ".claude" / "runs").exists()


def test_a_task_that_cannot_start_says_so_and_why(project: Path, fanout, write_plan) -> None:
    """The one case left to run time: a program an earlier task was to build."""
    plan = write_plan(
        [
            {"id": "build", "kind": "shell", "argv": ["true"]},
            {"id": "use", "kind": "shell", "argv": ["./out/tool"], "deps": ["build"]},
        ]
    )
    result = fanout("run", str(plan))

    assert result.returncode == 1
    assert "pid None" not in result.stderr
    assert "  use could not start: No such file or directory: ./out/tool" in result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    run = project / ".claude" / "runs" / run_id
    records = [e for e in read_events(run / "events.jsonl").events if e.get("task") == "use"]
    assert [e["type"] for e in records] == ["task_exited"]
    assert records[0]["not_started"] is True and records[0]["outcome"] == "failed"
    status = fanout("status", run_id, "--json").json()
    use = next(t for t in status["tasks"] if t["id"] == "use")
    assert (use["state"], use["attempt"], use["pid"], use["started"]) == ("failed", 1, None, None)
    assert use["reason"] == "could not start: No such file or directory: ./out/tool"
    assert "use could not start: No such file or directory" in (run / "workers/use/log").read_text()


# -- the branch-name rule, checked against git itself --------------------------------------------

# Names are built from tokens: plain characters (weighted up, so that valid names are common),
# the pieces git's rules are about, and characters git never allows.
PLAIN = ["a", "b", "1", "_", "é"]
PIECES = [".", "/", "-", "lock", ".lock", "..", "@", "{", "@{", "HEAD"]
FORBIDDEN = [" ", "~", "^", ":", "?", "*", "[", "\\", "\t", "\x01", "\x7f"]
REF_NAMES = st.lists(st.sampled_from(PLAIN * 4 + PIECES * 2 + FORBIDDEN), max_size=8).map("".join)


def git_accepts(name: str, cwd: Path, *, branch: bool = True) -> bool:
    """``git check-ref-format --branch NAME`` (or ``--allow-onelevel NAME``) says it is valid."""
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
    env.pop("GIT_DIR", None)
    proc = subprocess.run(
        ["git", "check-ref-format", "--branch" if branch else "--allow-onelevel", name],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


property_settings = settings(
    derandomize=True,
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@property_settings
@given(name=REF_NAMES)
def test_branch_name_rules_match_git_check_ref_format(tmp_path: Path, name: str) -> None:
    """The pure-Python rule agrees with ``git check-ref-format --branch`` (outside a repository,
    where git reads the name literally) on every generated name."""
    assert (worktrees.branch_name_problem(name) is None) == git_accepts(name, tmp_path), name


@property_settings
@given(name=REF_NAMES)
def test_ref_name_rules_match_git_check_ref_format(tmp_path: Path, name: str) -> None:
    assume(not name.startswith("-"))  # git would read it as an option
    accepted = git_accepts(name, tmp_path, branch=False)
    assert (worktrees.ref_name_problem(name) is None) == accepted, name


@pytest.mark.parametrize(
    "task_id", ["W1", "fix.lock", "a..b", "v2.", "x.lock.y", "a-b_c.d", "lock", "Z" * 64]
)
def test_a_writer_id_is_accepted_exactly_when_git_accepts_its_branch(
    tmp_path: Path, task_id: str
) -> None:
    branch = worktrees.branch_name("20261130-064820-702-0495", task_id)
    assert (worktrees.branch_name_problem(branch) is None) == git_accepts(branch, tmp_path)


def test_resume_checks_the_plan_again_before_it_starts_anything(
    project: Path, fanout, write_plan, tmp_path: Path
) -> None:
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\nexit 3\n")
    tool.chmod(0o755)
    first = fanout("run", str(write_plan([{"id": "t", "kind": "shell", "argv": [str(tool)]}])))
    assert first.returncode == 1
    run_id = first.stdout.strip().splitlines()[-1]
    events = project / ".claude" / "runs" / run_id / "events.jsonl"
    before = events.read_bytes()
    tool.unlink()

    again = fanout("resume", run_id)

    assert again.returncode == 2
    assert (
        again.stderr == f"fanout: plan: task t: field 'argv': no program at {tool}; fix the path\n"
    )
    assert events.read_bytes() == before  # no run_resumed, no supervisor
