"""Writers end to end: least privilege, git worktrees, commits on fanout branches, merge-back.

The real Claude Code CLI edits files in its worktree because a scripted model asks it to (Read,
then Edit, then a final word); fanout commits, merges and reports. Nothing here is simulated but
the model.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import procs
from claude_fanout.hooks import dispatch
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.status import RunStatus
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import EditThenReport
from claude_fanout.testing.replies import Reply, Text, ToolUse
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.helpers import git, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SESSION = "5f0c8a2e-1b3d-4e6f-9a7b-8c9d0e1f2a3b"


def repo(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (project / name).write_text(text)
    (project / ".gitignore").write_text(".claude/runs/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "start")


edit_then_report = EditThenReport()


def writer(task_id: str, path: str, old: str, new: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "kind": "claude",
        "prompt": f"In {path}, replace `{old}` with `{new}`.",
        "write": True,
        "claims": [path],
        "max_turns": 5,
        **extra,
    }


def run_plan(project: Path, api_url: str, home: Path, data: dict[str, Any]) -> RunStatus:
    plan = parse_plan({"version": 1, **data}, project=project)
    started = start_run(plan, project=project, env=cli_env(api_url, home))
    status = wait_run(started.run, timeout_s=90)
    started.supervisor.wait(timeout=10)
    return status


def events_of(project: Path, status: RunStatus, kind: str) -> list[dict[str, Any]]:
    path = project / ".claude" / "runs" / status.run_id / "events.jsonl"
    return [e for e in read_events(path).events if e["type"] == kind]


def test_two_writers_in_worktrees_merge_cleanly_into_the_working_tree(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "alpha = 1\n", "b.py": "beta = 2\n", "c.py": "gamma = 3\n"})
    # The Conductor's uncommitted work: the workers start from it, and it survives the merge.
    (project / "c.py").write_text("gamma = 33\n")
    (project / "notes.txt").write_text("untracked, mine\n")
    head = git(project, "rev-parse", "HEAD").strip()
    api = fake_api(edit_then_report)

    status = run_plan(
        project,
        api.base_url,
        claude_home,
        {
            "tasks": [
                writer("W1", "a.py", "alpha = 1", "alpha = 100"),
                writer("W2", "b.py", "beta = 2", "beta = 200"),
            ]
        },
    )

    assert status.state is RunState.SUCCEEDED, status.to_dict()
    assert (project / "a.py").read_text() == "alpha = 100\n"
    assert (project / "b.py").read_text() == "beta = 200\n"
    assert (project / "c.py").read_text() == "gamma = 33\n"
    assert (project / "notes.txt").read_text() == "untracked, mine\n"
    # Merged into the working tree, not committed: HEAD and the index are the user's.
    assert git(project, "rev-parse", "HEAD").strip() == head
    assert git(project, "diff", "--cached", "--name-only") == ""
    assert status.merge is not None and status.merge["merged"] == ["W1", "W2"]
    assert status.merge["conflicts"] == []
    for task_id, name in (("W1", "a.py"), ("W2", "b.py")):
        task = status.tasks[task_id]
        assert task.branch == f"fanout/{status.run_id}/{task_id}"
        # The branch holds the worker's change on top of the snapshot (c.py as the user had it).
        assert git(project, "show", f"{task.branch}:c.py") == "gamma = 33\n"
        changed = git(project, "diff", "--name-only", f"{task.branch}~1", task.branch).split()
        assert changed == [name]
        meta = json.loads(
            (
                project / ".claude/runs" / status.run_id / "workers" / task_id / "out/meta.json"
            ).read_text()
        )
        assert meta["allowed_tools"] == ["Read", "Grep", "Glob", "Edit", "Write"]
        assert meta["cwd"].endswith(f"/.fanout/worktrees/{status.run_id}/{task_id}")
    # Until the merge-back, the Conductor's reads of a changed file went to the worker's version.
    replaces = {(e["task"], e["path"]): e["with"] for e in events_of(project, status, "replace")}
    assert replaces == {("W1", "a.py"): "changes/a.py", ("W2", "b.py"): "changes/b.py"}
    out = project / ".claude/runs" / status.run_id / "workers"
    assert (out / "W1/out/changes/a.py").read_text() == "alpha = 100\n"
    # The worktrees are invisible to the user's git.
    assert sorted(git(project, "status", "--porcelain").splitlines()) == [
        " M a.py",
        " M b.py",
        " M c.py",
        "?? notes.txt",
    ]
    # Each worker worked in its own worktree, not in the project.
    cwds = {str(r.working_directory()) for r in api.message_requests(side_calls=False)}
    assert cwds == {str(project / ".fanout/worktrees" / status.run_id / t) for t in ("W1", "W2")}


def test_conflicting_writers_first_is_merged_second_reported_and_kept(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "value = 1\nother = 2\n"})
    api = fake_api(edit_then_report)

    status = run_plan(
        project,
        api.base_url,
        claude_home,
        {
            "tasks": [
                writer("W1", "a.py", "value = 1", "value = 10"),
                writer("W2", "a.py", "value = 1", "value = 20"),
            ]
        },
    )

    # Both workers did their job; the run reports the conflict instead of hiding it.
    assert {t.state for t in status.tasks.values()} == {TaskState.SUCCEEDED}
    assert (project / "a.py").read_text() == "value = 10\nother = 2\n"
    assert status.merge is not None
    assert status.merge["merged"] == ["W1"]
    (conflict,) = status.merge["conflicts"]
    assert conflict["task"] == "W2"
    assert conflict["files"] == ["a.py"]
    assert conflict["with"] == ["W1"]
    # Nothing is lost: W2's version waits on its branch.
    branch = f"fanout/{status.run_id}/W2"
    assert git(project, "show", f"{branch}:a.py") == "value = 20\nother = 2\n"
    assert branch in git(project, "branch", "--list", "fanout/*")


def test_fanout_run_exits_3_naming_the_collision_and_the_kept_change_can_be_taken(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "value = 1\nother = 2\n"})
    (project / "notes.txt").write_text("mine, untracked\n")
    head = git(project, "rev-parse", "HEAD").strip()
    api = fake_api(edit_then_report)
    plan = project / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "version": 1,
                "tasks": [
                    writer("W1", "a.py", "value = 1", "value = 10"),
                    writer("W2", "a.py", "value = 1", "value = 20"),
                ],
            }
        )
    )
    env = cli_env(api.base_url, claude_home)

    def fanout(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claude_fanout", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    ran = fanout("run", str(plan))

    # Both tasks succeeded, but W2's change is not in the working tree: a distinct exit status,
    # and both the status on stdout and the narration on stderr name the collision.
    assert ran.returncode == 3, ran.stdout + ran.stderr
    run_id = ran.stdout.strip().splitlines()[-1]
    assert "merge: merged W1; NOT merged: W2 conflicts with W1 in a.py" in ran.stdout
    assert "W2 conflicts with W1 in a.py: not merged" in ran.stderr
    assert (project / "a.py").read_text() == "value = 10\nother = 2\n"
    # gc does not drop the kept change without being told to.
    kept = fanout("gc", run_id)
    assert kept.returncode == 1 and f"fanout merge {run_id} W2" in kept.stderr
    # The person undoes W1's change and takes W2's: into the working tree only.
    (project / "a.py").write_text("value = 1\nother = 2\n")
    taken = fanout("merge", run_id, "W2")
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert (project / "a.py").read_text() == "value = 20\nother = 2\n"
    assert git(project, "rev-parse", "HEAD").strip() == head
    assert git(project, "diff", "--cached", "--name-only") == ""
    assert "?? notes.txt" in git(project, "status", "--porcelain").splitlines()
    assert fanout("wait", run_id).returncode == 0  # every change is merged now


def test_a_read_only_worker_that_tries_to_edit_is_refused(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "alpha = 1\n"})
    api = fake_api(edit_then_report)
    task = writer("R1", "a.py", "alpha = 1", "alpha = 666")
    del task["write"]

    status = run_plan(project, api.base_url, claude_home, {"tasks": [task]})

    assert status.tasks["R1"].state is TaskState.SUCCEEDED
    assert (project / "a.py").read_text() == "alpha = 1\n"
    assert status.tasks["R1"].branch is None  # a reader runs in the project, no worktree
    # The model was offered only the read-only tools, and its Edit was refused.
    offered = {tuple(sorted(r.offered_tool_names)) for r in api.message_requests(side_calls=False)}
    assert offered == {("Glob", "Grep", "Read")}
    refusals = [text for r in api.message_requests() for _id, text in r.tool_results()]
    assert any("No such tool available: Edit" in text for text in refusals)
    out = project / ".claude/runs" / status.run_id / "workers/R1/out"
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["tools"], meta["permission_mode"]) == (["Read", "Grep", "Glob"], "dontAsk")
    assert events_of(project, status, "worktree_created") == []


def test_a_writer_that_changes_nothing_leaves_no_commit_and_merges_nothing(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "alpha = 1\n"})
    api = fake_api(lambda _r: Reply([Text("Nothing to change.")]))

    status = run_plan(
        project, api.base_url, claude_home, {"tasks": [writer("W1", "a.py", "x", "y")]}
    )

    assert status.tasks["W1"].state is TaskState.SUCCEEDED
    (committed,) = events_of(project, status, "worktree_committed")
    assert committed["commit"] is None
    assert status.merge is None
    assert (project / "a.py").read_text() == "alpha = 1\n"


def read_and_report(request: Request) -> Reply:
    """The model: Read setup.flag, then say what it held."""
    cwd = request.working_directory()
    assert cwd is not None
    results = request.all_tool_results()
    if not results:
        return Reply([ToolUse("Read", {"file_path": str(cwd / "setup.flag")})])
    return Reply([Text(f"FLAG {results[-1][1].strip()}")])


def test_the_worktree_setup_command_runs_before_the_worker(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "alpha = 1\n"})
    (project / ".gitignore").write_text(".claude/runs/\nsetup.flag\n")
    (project / ".claude" / "fanout.toml").write_text(
        '[worktree]\nsetup = "echo prepared-by-setup > setup.flag; echo setting up"\n'
    )
    api = fake_api(read_and_report)

    status = run_plan(
        project, api.base_url, claude_home, {"tasks": [writer("W1", "a.py", "x", "y")]}
    )

    assert status.tasks["W1"].state is TaskState.SUCCEEDED
    run_dir = project / ".claude/runs" / status.run_id / "workers/W1"
    assert "prepared-by-setup" in (run_dir / "out/result.md").read_text()
    assert "setting up" in (run_dir / "log").read_text()  # its output went to the log
    assert not (project / "setup.flag").exists()  # it ran in the worktree, not the project


def test_a_failing_worktree_setup_fails_the_task_before_claude_starts(
    project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    repo(project, {"a.py": "alpha = 1\n"})
    (project / ".claude" / "fanout.toml").write_text('[worktree]\nsetup = "exit 4"\n')
    api = fake_api(read_and_report)

    status = run_plan(
        project, api.base_url, claude_home, {"tasks": [writer("W1", "a.py", "x", "y")]}
    )

    task = status.tasks["W1"]
    assert task.state is TaskState.FAILED
    assert task.reason == "the worktree setup command failed (exit 4)"
    log = (project / ".claude/runs" / status.run_id / "workers/W1/log").read_text()
    assert "the worktree setup command failed (exit 4)" in log
    assert api.message_requests() == []


def test_until_the_merge_the_conductor_reads_a_writers_version_then_fanout_merge_applies_it(
    project: Path, fake_api: StartFake, claude_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b_text = "beta = 2\n\n\n\nmore = 3\n"
    repo(project, {"a.py": "alpha = 1\n", "b.py": b_text})
    (project / ".claude" / "fanout.toml").write_text("[merge]\nauto = false\n")
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    api = fake_api(EditThenReport(delay_s=0.5))
    plan = parse_plan(
        {
            "version": 1,
            "tasks": [
                writer("W1", "a.py", "alpha = 1", "alpha = 100"),
                writer("W2", "b.py", "beta = 2", "beta = 200"),
            ],
        },
        project=project,
    )
    me = os.getpid()
    conductor = {"session_id": SESSION, "pid": me, "start_time": procs.process_start_time(me)}
    started = start_run(
        plan, project=project, env=cli_env(api.base_url, claude_home), conductor=conductor
    )
    # The person edits b.py while W2 works on it (after the snapshot): the merged result of
    # b.py does not exist until the merge.
    wait_until(
        lambda: any(
            e["type"] == "task_started" and e["task"] == "W2"
            for e in read_events(started.run.events_path).events
        ),
        timeout=30,
    )
    (project / "b.py").write_text(b_text.replace("more = 3", "more = 4"))
    status = wait_run(started.run, timeout_s=90)
    started.supervisor.wait(timeout=10)
    assert status.state is RunState.SUCCEEDED and status.merge is None

    def read(name: str) -> dict[str, Any] | None:
        payload = {
            "session_id": SESSION,
            "cwd": str(project),
            "hook_event_name": "PreToolUse",
            "tool_name": "Read",
            "tool_input": {"file_path": str(project / name)},
        }
        out = io.StringIO()
        dispatch.run(["PreToolUse"], stdin=io.BytesIO(json.dumps(payload).encode()), stdout=out)
        return json.loads(out.getvalue()) if out.getvalue() else None

    answer = read("a.py")
    assert answer is not None
    redirected = Path(answer["hookSpecificOutput"]["updatedInput"]["file_path"])
    assert redirected.read_text() == "alpha = 100\n"  # what the merge will produce
    assert (project / "a.py").read_text() == "alpha = 1\n"  # not merged yet
    assert read("b.py") is None  # the person changed it: read their file, not a guess

    merged = subprocess.run(
        [sys.executable, "-m", "claude_fanout", "merge", status.run_id],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert (project / "a.py").read_text() == "alpha = 100\n"
    assert (project / "b.py").read_text() == "beta = 200\n\n\n\nmore = 4\n"  # both sides
