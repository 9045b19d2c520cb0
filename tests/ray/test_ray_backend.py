"""Runs whose tasks go to a local multi-node Ray cluster, through the real CLI and supervisor."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

import claude_fanout
from tests.helpers import CLIResult, alive, git, wait_until
from tests.integration.test_runs import events, run_dir, start_detached
from tests.ray.conftest import LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


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
    ray_project: Path,
    ray_cluster: LocalCluster,
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
) -> None:
    (ray_project / "helpers.py").write_text(HELPERS)
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
    # The node ran this supervisor's claude-fanout as the run's runtime environment shipped it
    # (unpacked in Ray's own directory on the node), not the package installed here.
    shipped = Path(value["package"])
    assert shipped.is_relative_to(ray_cluster.temp_dir), shipped
    assert "runtime_resources" in shipped.parts and shipped.name == "__init__.py", shipped
    assert shipped.read_bytes() == Path(claude_fanout.__file__).read_bytes()
    assert len(nodes) >= 2, f"every task ran on one node: {nodes}"
    exited = {e["task"]: e for e in events(ray_project, run_id) if e["type"] == "task_exited"}
    assert {t: e["outcome"] for t, e in exited.items()} == dict.fromkeys(
        ("S1", "S2", "P1"), "succeeded"
    )
    # Nothing ran in the person's project: the tasks' working directories were node clones,
    # removed from every node when the run ended.
    assert not (ray_project / "artifact.txt").exists()
    assert processes_of_run(run_id) == []
    assert list(ray_cluster.scratch.glob(f"*/{run_id}")) == []


HELPERS = """\
import os

import claude_fanout


def where(x):
    return {"node": os.environ["FANOUT_NODE_ID"], "package": claude_fanout.__file__, "x": x}
"""


def test_with_shipping_off_the_nodes_run_their_own_installation(
    ray_project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    config = ray_project / ".claude" / "fanout.toml"
    config.write_text(config.read_text() + "ship = false\n")
    (ray_project / "helpers.py").write_text(HELPERS)
    plan = write_plan([{"id": "P", "kind": "python", "target": "helpers:where", "args": {"x": 1}}])
    result = fanout("run", str(plan), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    out = run_dir(ray_project, run_id_of(result)) / "workers" / "P" / "out" / "result.json"
    # This machine is every node's host: "their own" installation is this one.
    assert json.loads(out.read_text())["package"] == claude_fanout.__file__
    doctor = fanout("doctor", "--json", timeout=90)
    checks = {
        c["name"]: c for c in json.loads(doctor.stdout)["checks"] if c["section"] == "backend"
    }
    assert checks["shipping"]["detail"].startswith("off")


def sleepers(count: int) -> list[dict[str, Any]]:
    """Tasks that each start a grandchild in their group and sleep."""
    script = "sleep 120 & sleep 120"
    return [{"id": f"Z{n}", "kind": "shell", "argv": ["sh", "-c", script]} for n in range(count)]


def wait_for_remote_processes(run_id: str, count: int) -> list[psutil.Process]:
    """Until ``count`` sleeps (each task's command and its grandchild) run for ``run_id``."""
    found: list[psutil.Process] = []

    def enough() -> bool:
        nonlocal found
        found = [p for p in processes_of_run(run_id) if p.name() == "sleep"]
        return len(found) >= count

    wait_until(enough, timeout=60, interval=0.2)
    return found


def test_cancel_stops_every_task_process_on_every_node(
    ray_project: Path,
    ray_cluster: LocalCluster,
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
) -> None:
    run_id = start_detached(fanout, write_plan(sleepers(2), max_parallel=2))
    sleeps = wait_for_remote_processes(run_id, 4)
    nodes = {
        p.environ().get("FANOUT_NODE_ID") for p in processes_of_run(run_id) if p.name() == "sh"
    }
    assert len(nodes) == 2, "the two tasks should have been spread over two nodes"
    # The Ray workers ran the shipped package: the guards they started are its guard.py.
    guards = [
        Path(p.cmdline()[3])
        for p in processes_of_run(run_id)
        if p.cmdline()[1:3] == ["-I", "-S"] and p.cmdline()[3].endswith("guard.py")
    ]
    assert len(guards) == 4, guards  # the outer and the inner guard of each task
    assert all(g.is_relative_to(ray_cluster.temp_dir) for g in guards), guards
    assert fanout("cancel", run_id).returncode == 0
    wait_until(lambda: not processes_of_run(run_id), timeout=20, interval=0.2)
    assert not any(p.is_running() for p in sleeps)
    done = fanout("wait", run_id, "--timeout", "30")
    states = {e["task"]: e["outcome"] for e in events(ray_project, run_id) if "outcome" in e}
    assert states == {"Z0": "cancelled", "Z1": "cancelled"}, done.stdout


def test_supervisor_sigkill_leaves_nothing_on_any_node(
    ray_project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    run_id = start_detached(fanout, write_plan(sleepers(2), max_parallel=2))
    wait_for_remote_processes(run_id, 4)
    supervisor = json.loads((run_dir(ray_project, run_id) / "supervisor.json").read_text())
    # The watchdog would not find them (their environment names the node's run directory, not
    # this one): what stops them is Ray tearing down the dead driver's job.
    os.kill(supervisor["pid"], signal.SIGKILL)
    wait_until(lambda: not processes_of_run(run_id), timeout=30, interval=0.2)
    wait_until(lambda: not alive(supervisor["pid"]), timeout=10)


def test_an_unreachable_cluster_fails_the_run_at_start_with_one_line(
    project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"  # nothing listens there
    git(project, "init", "-q", "-b", "main")
    (project / ".claude" / "fanout.toml").write_text(
        f'[executor]\nbackend = "ray"\naddress = "{address}"\n'
    )
    plan = write_plan([{"id": "A", "kind": "shell", "argv": ["true"]}])
    result = fanout("run", str(plan), timeout=60)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if address in ln]
    assert lines, result.stderr
    assert "ray start --head" in lines[0] and "--backend local" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_node_removed_mid_task_makes_the_attempt_lost_and_retried(
    ray_project: Path,
    ray_cluster: LocalCluster,
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
    tmp_path: Path,
) -> None:
    marker = tmp_path / "first-attempt-ran"
    script = f'test -e "{marker}" && exit 0; touch "{marker}"; sleep 120'
    plan = write_plan([{"id": "X", "kind": "shell", "argv": ["sh", "-c", script], "retries": 1}])
    run_id = start_detached(fanout, plan)
    try:
        (first,) = wait_for_remote_processes(run_id, 1)
        node_id = first.environ()["FANOUT_NODE_ID"]
        ray_cluster.remove_node_of(node_id)
        result = fanout("wait", run_id, "--timeout", "60", timeout=90)
    finally:
        ray_cluster.restore()
    assert result.returncode == 0, result.stdout + result.stderr
    # The removed node's Ray worker dies with its raylet, and the task's guard takes its group.
    wait_until(lambda: not first.is_running(), timeout=30, interval=0.2)
    log = events(ray_project, run_id)
    exits = [(e["attempt"], e["outcome"]) for e in log if e["type"] == "task_exited"]
    assert exits == [(1, "lost"), (2, "succeeded")]
    lost = next(e for e in log if e["type"] == "task_exited" and e["outcome"] == "lost")
    assert "node" in lost["reason"]
    assert [e["attempt"] for e in log if e["type"] == "task_retry"] == [2]


def test_doctor_reports_the_backend_the_nodes_and_their_resources(
    ray_project: Path, ray_cluster: LocalCluster, fanout: Callable[..., CLIResult]
) -> None:
    result = fanout("doctor", "--json", timeout=90)
    checks = [c for c in json.loads(result.stdout)["checks"] if c["section"] == "backend"]
    by_name = {c["name"]: c for c in checks}
    assert by_name["backend"]["detail"] == f"ray, address {ray_cluster.address}"
    assert by_name["ray"]["status"] == "ok"
    assert by_name["shipping"]["detail"].startswith("on"), by_name["shipping"]
    assert by_name["cluster"]["detail"].startswith("3 live node(s), 2 CPUs")
    nodes = [c for c in checks if c["name"].startswith("node ")]
    assert len(nodes) == 3 and all("127.0.0.1" in c["detail"] for c in nodes)


def test_doctor_says_the_backend_is_local_by_default(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    result = fanout("doctor", "--json", timeout=60)
    checks = [c for c in json.loads(result.stdout)["checks"] if c["section"] == "backend"]
    assert [(c["name"], c["status"]) for c in checks] == [("backend", "ok")]
    assert checks[0]["detail"].startswith("local")


def test_a_timeout_and_a_failure_on_a_node_leave_no_process_behind(
    ray_project: Path, fanout: Callable[..., CLIResult], write_plan: Callable[..., Path]
) -> None:
    plan = write_plan(
        [
            {
                "id": "T",
                "kind": "shell",
                "argv": ["sh", "-c", "sleep 120 & sleep 120"],
                "timeout_s": 3,
            },
            # Fails at once, leaving a grandchild that holds its output open.
            {"id": "F", "kind": "shell", "argv": ["sh", "-c", "sleep 120 & echo bye; exit 3"]},
        ],
        max_parallel=2,
    )
    result = fanout("run", str(plan), timeout=90)
    assert result.returncode == 1
    run_id = run_id_of(result)
    outcomes = {
        e["task"]: (e["outcome"], e["exit_code"])
        for e in events(ray_project, run_id)
        if e["type"] == "task_exited"
    }
    assert outcomes["T"][0] == "timed_out"
    assert outcomes["F"] == ("failed", 3)
    assert "bye" in (run_dir(ray_project, run_id) / "workers" / "F" / "log").read_text()
    wait_until(lambda: not processes_of_run(run_id), timeout=20, interval=0.2)


def test_fanout_run_backend_overrides_the_project_s_choice_both_ways(
    ray_project: Path,
    ray_cluster: LocalCluster,
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
) -> None:
    config = ray_project / ".claude" / "fanout.toml"
    plan = write_plan(
        [{"id": "A", "kind": "shell", "argv": ["sh", "-c", 'echo "n=$FANOUT_NODE_ID"']}]
    )

    def where(*flags: str) -> str:
        result = fanout("run", str(plan), *flags, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        log = (run_dir(ray_project, run_id_of(result)) / "workers" / "A" / "log").read_text()
        return "ray" if "on Ray node" in log and "n=\n" not in log else "local"

    assert where("--backend", "local") == "local"  # the project says ray
    config.write_text(f'[executor]\nbackend = "local"\naddress = "{ray_cluster.address}"\n')
    assert where() == "local"
    assert where("--backend", "ray") == "ray"
