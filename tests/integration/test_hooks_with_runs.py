"""Hooks against real runs: directives a worker publishes, the project-wide worker cap."""

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
from claude_fanout.runtime.control import observe, request_cancel
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.state import load_snapshot
from tests.fences import read_fenced
from tests.helpers import count_bytes_folded, wait_until

pytestmark = pytest.mark.timeout(60)
SESSION = "0e9b3f7c-4d5e-4f60-8a71-9b2c3d4e5f60"


def hook(project: Path, event: str, **fields: Any) -> dict[str, Any] | None:
    payload = {"session_id": SESSION, "cwd": str(project), "hook_event_name": event, **fields}
    out = io.StringIO()
    dispatch.run([event], stdin=io.BytesIO(json.dumps(payload).encode()), stdout=out)
    return json.loads(out.getvalue()) if out.getvalue() else None


@pytest.mark.portable
def test_directives_published_by_a_worker_steer_the_conductor(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    (project / "src").mkdir()
    (project / "src" / "a.py").write_text("old a\n")
    (project / "src" / "b.py").write_text("old b\n")
    publish = [sys.executable, "-m", "claude_fanout", "publish"]
    script = (
        'echo "new a" > "$FANOUT_OUT_DIR/a.py" && '
        f"{' '.join(publish)} replace src/a.py a.py && "
        f'{" ".join(publish)} notice "rewrote src/a.py"'
    )
    plan = parse_plan(
        {
            "version": 1,
            "tasks": [
                {"id": "W1", "kind": "shell", "argv": ["sh", "-c", script], "claims": ["src/a.py"]},
                {
                    "id": "W2",
                    "kind": "shell",
                    "argv": ["sh", "-c", 'echo "new b" > "$FANOUT_OUT_DIR/b.out"'],
                    "claims": ["src/b.py"],
                    "replaces": {"src/b.py": "b.out"},
                },
            ],
        },
        project=project,
    )
    me = os.getpid()
    conductor = {"session_id": SESSION, "pid": me, "start_time": procs.process_start_time(me)}
    started = start_run(plan, project=project, conductor=conductor)
    status = wait_run(started.run, timeout_s=30)
    started.supervisor.wait(timeout=10)
    assert status.state is RunState.SUCCEEDED, status

    for source, target in (("src/a.py", "W1/out/a.py"), ("src/b.py", "W2/out/b.out")):
        answer = hook(
            project, "PreToolUse", tool_name="Read", tool_input={"file_path": str(project / source)}
        )
        assert answer is not None, source
        updated = answer["hookSpecificOutput"]["updatedInput"]["file_path"]
        assert updated == str(started.run.path / "workers" / target)
        assert Path(updated).read_text().startswith("new ")
    # An Edit is not redirected: replace only ever changes what the Conductor reads.
    assert (
        hook(
            project,
            "PreToolUse",
            tool_name="Edit",
            tool_input={
                "file_path": str(project / "src/a.py"),
                "old_string": "old",
                "new_string": "x",
            },
        )
        is None
    )
    news = hook(
        project, "PostToolUse", tool_name="Bash", tool_input={"command": "true"}, tool_response={}
    )
    assert news is not None
    fenced = read_fenced(news["hookSpecificOutput"]["additionalContext"])
    assert fenced.body(notice="1") == "W1: rewrote src/a.py"


def test_publish_refuses_paths_outside_the_project(project: Path, fanout) -> None:
    plan = project / "plan.json"
    script = f"{sys.executable} -m claude_fanout publish claim ../../etc/passwd"
    plan.write_text(
        json.dumps(
            {"version": 1, "tasks": [{"id": "W1", "kind": "shell", "argv": ["sh", "-c", script]}]}
        )
    )
    result = fanout("run", str(plan))
    assert result.returncode == 1
    run_id = result.stdout.strip().splitlines()[-1]
    log = (project / ".claude/runs" / run_id / "workers/W1/log").read_text()
    assert "outside the project" in log
    events = read_events(project / ".claude/runs" / run_id / "events.jsonl").events
    assert not [e for e in events if e["type"] == "claim"]


def test_the_live_worker_cap_holds_across_runs(project: Path, write_plan) -> None:
    (project / ".claude" / "fanout.toml").write_text("[limits]\nmax_live_workers = 2\n")
    stamp = (
        "import os, sys, time; p = os.environ['FANOUT_OUT_DIR']; "
        "open(p + '/t', 'w').write(f'{time.time()} '); time.sleep(0.6); "
        "open(p + '/t', 'a').write(f'{time.time()}')"
    )
    runs = []
    for name in ("one", "two"):
        plan = parse_plan(
            {
                "version": 1,
                "max_parallel": 3,
                "tasks": [
                    {"id": f"{name}{i}", "kind": "shell", "argv": [sys.executable, "-c", stamp]}
                    for i in range(3)
                ],
            },
            project=project,
        )
        runs.append(start_run(plan, project=project))
    spans = []
    for started in runs:
        assert wait_run(started.run, timeout_s=40).state is RunState.SUCCEEDED
        started.supervisor.wait(timeout=10)
        for out in started.run.path.glob("workers/*/out/t"):
            begin, end = map(float, out.read_text().split())
            spans.append((begin, end))
    assert len(spans) == 6
    edges = sorted([(b, 1) for b, _ in spans] + [(e, -1) for _, e in spans])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    assert peak == 2


def test_a_thousand_task_plan_stays_under_the_worker_cap(project: Path) -> None:
    (project / ".claude" / "fanout.toml").write_text("[limits]\nmax_live_workers = 4\n")
    plan = parse_plan(
        {
            "version": 1,
            "max_parallel": 1000,
            "tasks": [{"id": f"T{i}", "kind": "shell", "argv": ["true"]} for i in range(1000)],
        },
        project=project,
    )
    started = start_run(plan, project=project)
    status = wait_run(started.run, timeout_s=120)
    started.supervisor.wait(timeout=10)
    assert status.state is RunState.SUCCEEDED
    live = peak = 0
    for event in read_events(started.run.events_path).events:
        if event["type"] == "task_started":
            live += 1
            peak = max(peak, live)
        elif event["type"] == "task_exited":
            live -= 1
    assert peak == 4


# What workers' ``fanout publish notice`` appends, from a process that is not the supervisor.
FOREIGN_WRITER = """
import sys
from claude_fanout.store.eventlog import EventLog
log = EventLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.append("notice", task="W1", text=f"still reading, step {i}")
"""


def test_records_others_append_to_a_live_run_cost_the_hooks_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    plan = parse_plan(
        {"version": 1, "tasks": [{"id": "W1", "kind": "shell", "argv": ["sleep", "60"]}]},
        project=project,
    )
    me = os.getpid()
    conductor = {"session_id": SESSION, "pid": me, "start_time": procs.process_start_time(me)}
    started = start_run(plan, project=project, conductor=conductor)
    run = started.run
    try:
        wait_until(lambda: observe(run).tasks["W1"].state is TaskState.RUNNING, timeout=20)
        subprocess.run(
            [sys.executable, "-c", FOREIGN_WRITER, str(run.events_path), "100000"],
            check=True,
            timeout=50,
        )
        size = run.events_path.stat().st_size
        # The supervisor wrote none of those lines, yet it folds them into state.json.
        wait_until(lambda: load_snapshot(run).offset == size, timeout=5)

        folded = count_bytes_folded(monkeypatch)
        told = hook(project, "PostToolUse", tool_name="Bash", tool_input={"command": "ls"})
        hook(project, "PreToolUse", tool_name="Read", tool_input={"file_path": str(project)})

        # The newest notices (of 100,000) reached the Conductor, read from the snapshot.
        assert told is not None and "still reading, step 9995" in json.dumps(told)
        assert folded and max(folded) < 1024, folded
    finally:
        request_cancel(run.path, by="test")
        started.supervisor.wait(timeout=20)


@pytest.mark.parametrize(("max_depth", "answers"), [(None, False), (2, True)])
def test_conductor_max_depth_reaches_the_hooks_of_a_workers_session(
    project: Path, monkeypatch: pytest.MonkeyPatch, max_depth: int | None, answers: bool
) -> None:
    """A worker's own hooks stay quiet at the default depth limit (1) and work when the project
    allows one more level: the supervisor hands the worker ``conductor.max_depth``."""
    import shlex

    from claude_fanout.hooks import entry

    monkeypatch.delenv("FANOUT_DEPTH", raising=False)
    monkeypatch.delenv("FANOUT_MAX_DEPTH", raising=False)
    if max_depth is not None:
        (project / ".claude" / "fanout.toml").write_text(f"[conductor]\nmax_depth = {max_depth}\n")
    payload = json.dumps(
        {
            "session_id": "worker-session",
            "cwd": str(project),
            "hook_event_name": "UserPromptSubmit",
            "prompt": "/fanout --plan no-such-plan.json",
        }
    )
    command = shlex.join([sys.executable, "-I", "-S", entry.__file__, "UserPromptSubmit"])
    script = (
        'printf "%s\\n" "$FANOUT_DEPTH $FANOUT_MAX_DEPTH" > "$FANOUT_OUT_DIR/depth" && '
        f'printf "%s" "$PAYLOAD" | {command} > "$FANOUT_OUT_DIR/answer.json"'
    )
    plan = parse_plan(
        {
            "version": 1,
            "tasks": [
                {
                    "id": "W1",
                    "kind": "shell",
                    "argv": ["sh", "-c", script],
                    "env": {"PAYLOAD": payload, "CLAUDE_PROJECT_DIR": str(project)},
                }
            ],
        },
        project=project,
    )
    started = start_run(plan, project=project)
    status = wait_run(started.run, timeout_s=30)
    started.supervisor.wait(timeout=10)
    assert status.state is RunState.SUCCEEDED, status
    out = started.run.out_dir("W1")
    assert (out / "depth").read_text().split() == ["1", str(max_depth or 1)]
    answer = (out / "answer.json").read_text()
    if not answers:
        assert answer == ""
        return
    context = json.loads(answer)["hookSpecificOutput"]["additionalContext"]
    assert "Nothing was started" in context and "no plan file" in context
