"""Runs whose tasks go to a local multi-node Ray cluster, through the real CLI and supervisor."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_fanout.store.eventlog import read_events
from tests.helpers import CLIResult

PY = sys.executable

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


def run_dir(project: Path, run_id: str) -> Path:
    return project / ".claude" / "runs" / run_id


def events(project: Path, run_id: str) -> list[dict[str, Any]]:
    result = read_events(run_dir(project, run_id) / "events.jsonl")
    assert result.bad == [], "the log must parse completely"
    return result.events


def run_id_of(result: CLIResult) -> str:
    for line in (result.stdout + result.stderr).splitlines():
        for word in line.replace(":", " ").split():
            if word.count("-") == 3 and word[:8].isdigit():
                return word
    raise AssertionError(f"no run id in {result.stdout!r} {result.stderr!r}")


def processes_of_run(run_id: str) -> list[psutil.Process]:
    """Live processes, on any node of the local cluster, that a task of ``run_id`` started."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get("FANOUT_RUN_ID") == run_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_shell_and_python_tasks_run_on_different_nodes(
    ray_project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    (ray_project / "helpers.py").write_text(
        "import os\n\ndef where(x):\n    return {'node': os.environ['FANOUT_NODE_ID'], 'x': x}\n"
    )
    # Committed with helpers.py uncommitted: the snapshot carries uncommitted files too.
    report = 'echo "node=$FANOUT_NODE_ID"; echo made > "$FANOUT_OUT_DIR/artifact.txt"; sleep 1'
    plan = write_plan(
        [
            {"id": "S1", "kind": "shell", "argv": ["sh", "-c", report]},
            {"id": "S2", "kind": "shell", "argv": ["sh", "-c", report]},
            {"id": "P1", "kind": "python", "target": "helpers:where", "args": {"x": 7}},
        ],
        max_parallel=3,
    )
    result = fanout("run", str(plan), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = run_id_of(result)
    run = run_dir(ray_project, run_id)
    nodes = set()
    for task in ("S1", "S2"):
        log = (run / "workers" / task / "log").read_text()
        node = next(ln.split("=", 1)[1] for ln in log.splitlines() if ln.startswith("node="))
        nodes.add(node)
        assert (run / "workers" / task / "out" / "artifact.txt").read_text() == "made\n"
    value = json.loads((run / "workers" / "P1" / "out" / "result.json").read_text())
    assert value["x"] == 7
    nodes.add(value["node"])
    assert len(nodes) >= 2, f"every task ran on one node: {nodes}"
    exited = {e["task"]: e for e in events(ray_project, run_id) if e["type"] == "task_exited"}
    assert {t: e["outcome"] for t, e in exited.items()} == dict.fromkeys(
        ("S1", "S2", "P1"), "succeeded"
    )
    # Nothing ran in the person's project: the tasks' working directories were node clones.
    assert not (ray_project / "artifact.txt").exists()
    assert processes_of_run(run_id) == []
