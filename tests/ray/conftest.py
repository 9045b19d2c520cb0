"""One local multi-node Ray cluster for the whole session (``ray.cluster_utils.Cluster``): a head
with no CPU for tasks (it can never be the node a test removes) and two worker nodes of one CPU
each, all on 127.0.0.1, their scratch directories under one
session temporary directory (one per node id below it). Supervisors that the tests start reach it
through the project's ``.claude/fanout.toml``. Teardown is certain: the cluster is shut down and
every process of it (found by its session directory) is killed and checked gone.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

# Before ray is imported anywhere: keep the head, the nodes and every driver on 127.0.0.1.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from claude_fanout.cluster.node import SCRATCH_ENV
from tests.e2e.conftest import claude_home, fake_api
from tests.helpers import git

# The fake Messages API and a scratch HOME, as in the end-to-end tests.
__all__ = ["claude_home", "fake_api"]
WORKER_NODES = 2


@dataclass
class LocalCluster:
    cluster: Any
    address: str
    scratch: Path
    temp_dir: Path
    home: Path

    def remove_node_of(self, node_id: str) -> None:
        """Remove the worker node ``node_id`` (as a dead machine would go) and add a fresh one,
        so the session's cluster keeps its shape."""
        doomed = [n for n in self.cluster.worker_nodes if n.node_id == node_id]
        assert doomed, f"{node_id} is not a worker node of the cluster"
        self.cluster.remove_node(doomed[0], allow_graceful=False)

    def restore(self) -> None:
        saved = {name: os.environ.get(name) for name in (SCRATCH_ENV, "HOME")}
        os.environ[SCRATCH_ENV], os.environ["HOME"] = str(self.scratch), str(self.home)
        try:
            while len(self.cluster.worker_nodes) < WORKER_NODES:
                self.cluster.add_node(num_cpus=1)
            self.cluster.wait_for_nodes()
        finally:
            _restore(saved)


def _processes_naming(needle: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if needle in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    from ray.cluster_utils import Cluster

    # Short: Ray's socket paths under its temporary directory must fit in 107 bytes.
    base = tmp_path_factory.mktemp("r")
    scratch, temp_dir = base / "nodes", base / "t"
    scratch.mkdir()
    # The nodes' processes (and the Claude Code CLIs they start) get their own HOME.
    (base / "home").mkdir()
    saved = {name: os.environ.get(name) for name in (SCRATCH_ENV, "HOME")}
    os.environ[SCRATCH_ENV] = str(scratch)
    os.environ["HOME"] = str(base / "home")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "temp_dir": str(temp_dir),
        },
    )
    try:
        for _ in range(WORKER_NODES):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        _restore(saved)
        yield LocalCluster(cluster, cluster.address, scratch, temp_dir, base / "home")
    finally:
        with contextlib.suppress(Exception):
            cluster.shutdown()
        deadline = time.monotonic() + 10
        left = _processes_naming(str(temp_dir))
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = _processes_naming(str(temp_dir))
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        _restore(saved)
        assert not left, f"Ray processes left behind: {[p.pid for p in left]}"


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def ray_project(project: Path, ray_cluster: LocalCluster) -> Path:
    """A git project whose runs go to the session's cluster."""
    (project / ".claude" / "fanout.toml").write_text(
        f'[executor]\nbackend = "ray"\naddress = "{ray_cluster.address}"\n'
    )
    (project / ".gitignore").write_text(".claude/runs/\n.fanout/\n")
    (project / "README.md").write_text("hello\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "start")
    return project
