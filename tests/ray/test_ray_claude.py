"""Claude workers on the local Ray cluster: the real CLI on the nodes, the scripted fake Messages
API on loopback. A writer's change comes back from its node and is merged like a local writer's;
credentials never touch a node's disk; the project's claude cap and start spacing hold."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

import claude_fanout
from claude_fanout.claude.cli import runnable_cli
from claude_fanout.cluster.seam import KEEP_SCRATCH_ENV
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.status import RunStatus
from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import EditThenReport, ReadThenSummarize
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.e2e.test_claude_writers import writer
from tests.helpers import git, most_live
from tests.ray.conftest import LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.e2e, pytest.mark.timeout(150)]
API_KEY = "sk-ant-fake-key-for-tests"


def run_plan(
    project: Path, api_url: str, home: Path, data: dict[str, Any], clis: set[str] | None = None
) -> RunStatus:
    """The plan run to its end; ``clis`` collects the executables its claude workers ran."""
    plan = parse_plan({"version": 1, **data}, project=project)
    # The nodes keep the run's clone and worktrees, for the look for the API key below.
    env = {**cli_env(api_url, home), KEEP_SCRATCH_ENV: "1"}
    assert env["ANTHROPIC_API_KEY"] == API_KEY
    started = start_run(plan, project=project, env=env)
    done = threading.Event()
    watcher = threading.Thread(
        target=watch_clis, args=(started.run.run_id, clis if clis is not None else set(), done)
    )
    watcher.start()
    try:
        status = wait_run(started.run, timeout_s=120)
    finally:
        done.set()
        watcher.join()
    started.supervisor.wait(timeout=20)
    return status


def watch_clis(run_id: str, found: set[str], done: threading.Event) -> None:
    """Until ``done``: the executable of every Claude Code process a task of ``run_id`` runs."""
    while not done.wait(0.1):
        for proc in psutil.process_iter(["cmdline"]):
            argv = proc.info["cmdline"] or []
            if not argv or os.path.basename(argv[0]) != "claude":
                continue
            try:
                if proc.environ().get("FANOUT_RUN_ID") == run_id:
                    found.add(proc.exe())
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue


def log_of(project: Path, status: RunStatus) -> list[dict[str, Any]]:
    path = project / ".claude" / "runs" / status.run_id / "events.jsonl"
    return read_events(path).events


def placed_on(project: Path, status: RunStatus, task_id: str) -> str:
    log = project / ".claude" / "runs" / status.run_id / "workers" / task_id / "log"
    line = next(ln for ln in log.read_text().splitlines() if "on Ray node" in ln)
    return line.split("on Ray node ")[1].split()[0]


def shipped_cli_s(project: Path, status: RunStatus, task_id: str) -> float:
    """What getting the shipped CLI cost the task's attempt on its node (seconds)."""
    log = project / ".claude" / "runs" / status.run_id / "workers" / task_id / "log"
    line = next(ln for ln in log.read_text().splitlines() if "its shipped CLI in" in ln)
    return float(line.split("its shipped CLI in ")[1].split()[0])


class Both:
    """Writers get EditThenReport, readers ReadThenSummarize."""

    def __init__(self) -> None:
        self.writer, self.reader = EditThenReport(delay_s=0.3), ReadThenSummarize(delay_s=0.3)

    def __call__(self, request: Request) -> Any:
        if "replace `" in request.first_user_text():
            return self.writer(request)
        return self.reader(request)


def test_claude_readers_and_a_writer_on_ray_nodes_merge_back_like_local_ones(
    ray_project: Path, ray_cluster: LocalCluster, fake_api: StartFake, claude_home: Path
) -> None:
    project = ray_project
    (project / "a.py").write_text("alpha = 1\n")
    git(project, "add", "a.py")
    git(project, "commit", "-qm", "a")
    # Uncommitted: the nodes get it through the run's snapshot.
    (project / "notes.md").write_text("first line of the notes\nsecond\n")
    head = git(project, "rev-parse", "HEAD").strip()
    api = fake_api(Both())
    clis: set[str] = set()

    status = run_plan(
        project,
        api.base_url,
        claude_home,
        {
            "max_parallel": 3,
            "tasks": [
                writer("W1", "a.py", "alpha = 1", "alpha = 100"),
                {"id": "R1", "kind": "claude", "prompt": "Summarize notes.md", "max_turns": 3},
                {"id": "R2", "kind": "claude", "prompt": "Summarize README.md", "max_turns": 3},
            ],
        },
        clis,
    )

    assert status.state is RunState.SUCCEEDED, status.to_dict()
    # Every worker ran the CLI this supervisor would run, shipped: the copy its node wrote into
    # the run's scratch there, not the one installed here.
    local_cli = runnable_cli(os.environ)
    assert local_cli is not None
    shipped = {Path(p) for p in ray_cluster.scratch.glob(f"*/{status.run_id}/cli/claude")}
    assert clis and {Path(c) for c in clis} <= shipped, (clis, shipped)
    assert local_cli not in clis
    for copy in shipped:
        assert copy.stat().st_mode & 0o777 == 0o700
        assert copy.read_bytes() == Path(local_cli).read_bytes()
    # Written once per node: the first claude attempt on a node fetches it, the others find it.
    fetches = [shipped_cli_s(project, status, t) for t in ("W1", "R1", "R2")]
    assert sum(s >= 0.05 for s in fetches) == len(shipped), fetches
    # The writer's change came back from its node and was merged into the working tree.
    assert (project / "a.py").read_text() == "alpha = 100\n"
    assert git(project, "rev-parse", "HEAD").strip() == head
    branch = f"fanout/{status.run_id}/W1"
    assert status.tasks["W1"].branch == branch
    assert git(project, "show", f"{branch}:a.py") == "alpha = 100\n"
    assert git(project, "diff", "--name-only", f"{branch}~1", branch).split() == ["a.py"]
    assert status.merge is not None and status.merge["merged"] == ["W1"]
    # Readers' results and usage are in the run's store as for local workers.
    out = project / ".claude" / "runs" / status.run_id / "workers"
    assert "first line of the notes" in (out / "R1" / "out" / "result.md").read_text()
    usage = [e for e in log_of(project, status) if e["type"] == "task_usage"]
    assert {e["task"] for e in usage} == {"W1", "R1", "R2"}
    # Every session ran on a node, in a node-local clone or worktree, never in the project.
    cwds = {r.working_directory() for r in api.message_requests(side_calls=False)}
    assert cwds and all(str(c).startswith(str(ray_cluster.scratch)) for c in cwds), cwds
    assert len({placed_on(project, status, t) for t in ("W1", "R1", "R2")}) >= 2
    # Least privilege as for local workers: what each was allowed.
    meta = json.loads((out / "W1" / "out" / "meta.json").read_text())
    assert meta["allowed_tools"] == ["Read", "Grep", "Glob", "Edit", "Write"]
    # The API key went to the CLI's environment only: no file on any node holds it.
    assert list(ray_cluster.scratch.glob(f"*/{status.run_id}/snapshot-*"))
    # Except the package's own sources, shipped to the nodes as they are: the fake API's module
    # names the fake key.
    package = Path(claude_fanout.__file__).parent
    sources = {p.read_bytes() for p in package.rglob("*.py") if API_KEY.encode() in p.read_bytes()}
    for root in (ray_cluster.scratch, ray_cluster.temp_dir, ray_cluster.home):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                if data not in sources:
                    assert API_KEY.encode() not in data, f"the API key is in {path}"


def test_the_projects_claude_cap_and_start_spacing_hold_across_the_cluster(
    ray_project: Path, fake_api: StartFake, claude_home: Path
) -> None:
    project = ray_project
    config = project / ".claude" / "fanout.toml"
    config.write_text(
        config.read_text()
        + "[limits]\nmax_live_claude_workers = 1\nclaude_start_interval_s = 1.5\n"
    )
    api = fake_api(ReadThenSummarize(delay_s=0.2))
    tasks = [
        {"id": f"R{n}", "kind": "claude", "prompt": "Summarize README.md", "max_turns": 3}
        for n in range(3)
    ]
    status = run_plan(project, api.base_url, claude_home, {"max_parallel": 3, "tasks": tasks})

    assert status.state is RunState.SUCCEEDED, status.to_dict()
    log = log_of(project, status)
    assert most_live(log) == 1
    starts = [e["ts"] for e in log if e["type"] == "task_started"]
    assert len(starts) == 3
    # The gap is between the leases' claims; `task_started` is written a moment after each
    # claim (the command made, the Ray task submitted), so allow that moment's jitter.
    assert all(b - a >= 1.5 - 0.2 for a, b in itertools.pairwise(starts)), starts
    assert len(api.message_requests(side_calls=False)) >= 6
