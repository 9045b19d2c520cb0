"""The Ray backend's parts that need no cluster: the plan's resources, which backend a run uses,
how a task's paths and environment travel to a node, and the one-line errors."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import claude_fanout
from claude_fanout.claude.cli import CLAUDE_BIN_ENV, runnable_cli
from claude_fanout.cluster import chosen_backend, guard, node
from claude_fanout.cluster.seam import (
    ClusterError,
    _env_delta,
    _placeholder,
    connect,
    require_repo,
    supervisor_paths,
)
from claude_fanout.cluster.shipping import shippable_cli, shipped_code
from claude_fanout.config import Config
from claude_fanout.errors import PlanError
from claude_fanout.plan import parse_plan
from claude_fanout.states import EventType
from claude_fanout.store.rundir import create_run
from tests.helpers import alive, wait_until


def plan_with(project: Path, **fields: object):  # type: ignore[no-untyped-def]
    task = {"id": "A", "kind": "shell", "argv": ["true"], **fields}
    return parse_plan({"version": 1, "tasks": [task]}, project=project)


def test_a_task_reserves_what_its_plan_says_on_a_node(project: Path) -> None:
    task = plan_with(project, cpus=0.5, memory_mb=512).tasks[0]
    assert (task.cpus, task.memory_mb) == (0.5, 512)
    assert plan_with(project).tasks[0].cpus == 1.0
    again = parse_plan({"version": 1, "tasks": [task.to_dict()]}, project=project)
    assert again.tasks[0] == task


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cpus": 0}, "cpus"),
        ({"cpus": "two"}, "cpus"),
        ({"cpus": True}, "cpus"),
        ({"memory_mb": 0}, "memory_mb"),
        ({"memory_mb": 1.5}, "memory_mb"),
    ],
)
def test_bad_resources_are_one_line_naming_the_task_and_field(
    project: Path, fields: dict[str, object], named: str
) -> None:
    with pytest.raises(PlanError) as caught:
        plan_with(project, **fields)
    message = str(caught.value)
    assert "\n" not in message and "A" in message and f"'{named}'" in message


def test_the_run_s_own_backend_overrides_the_project_s(project: Path) -> None:
    config = Config(backend="local", ray_address="ray://head:10001")
    run = create_run(project)
    run.log.append(EventType.RUN_CREATED, run_id=run.run_id, tasks=["A"])
    assert chosen_backend(run, config) == ("local", "ray://head:10001")
    other = create_run(project)
    other.log.append(EventType.RUN_CREATED, run_id=other.run_id, tasks=["A"], backend="ray")
    assert chosen_backend(other, config) == ("ray", "ray://head:10001")


def test_supervisor_paths_become_placeholders_longest_first(tmp_path: Path) -> None:
    root, tree = str(tmp_path / "repo"), str(tmp_path / "repo" / ".fanout" / "worktrees" / "W1")
    paths = {root: node.ROOT, tree: node.ROOT + "/wt", sys.executable: node.PYTHON}
    assert _placeholder(tree + "/src/a.py", paths) == node.ROOT + "/wt/src/a.py"
    assert _placeholder(root + "/.claude/runs/R", paths) == node.ROOT + "/.claude/runs/R"
    assert _placeholder(sys.executable, paths) == node.PYTHON
    # A sibling that merely shares the prefix is not inside the repository.
    assert _placeholder(root + "-other/x", paths) == root + "-other/x"
    assert (
        node._local(node.ROOT + "/src", {node.ROOT: "/scratch/n1/clone"}) == "/scratch/n1/clone/src"
    )


def test_a_writer_s_run_directory_maps_into_its_node_worktree(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    run_path = root / ".claude" / "runs" / "R1"
    tree = root / ".fanout" / "worktrees" / "R1" / "W1"
    paths = supervisor_paths(root, run_path, worktree=tree, cli="/opt/claude")
    # A writer runs in its worktree: the out/ its environment names is beside it on the node,
    # never the supervisor's directory.
    out = str(run_path / "workers" / "W1" / "out")
    assert _placeholder(out, paths) == node.ROOT + "/.claude/runs/R1/workers/W1/out"
    assert _placeholder(str(tree / "src"), paths) == node.ROOT + "/src"
    # Its paths into the project reach its own copy, never the person's working tree.
    assert _placeholder(str(root / "a.py"), paths) == node.ROOT + "/a.py"
    assert _placeholder("/opt/claude", paths) == node.CLI
    reader = supervisor_paths(root, run_path, worktree=None, cli="/opt/claude")
    assert _placeholder(str(root / "a.py"), reader) == node.ROOT + "/a.py"
    assert _placeholder(out, reader) == node.ROOT + "/.claude/runs/R1/workers/W1/out"


def test_a_node_gets_the_task_s_changes_and_the_forwarded_names_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("SOME_LOCAL_THING", "here")
    env = {**os.environ, "TASK_OWN": "1"}
    delta = _env_delta(env)
    assert delta["TASK_OWN"] == "1"
    assert delta["ANTHROPIC_API_KEY"] == "sk-test"  # the API's credentials go, in memory
    assert "SOME_LOCAL_THING" not in delta and "PATH" not in delta


def test_an_unreachable_address_is_one_line_naming_it_and_the_fix() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterError) as caught:
        connect(f"ray://127.0.0.1:{port}")
    message = str(caught.value)
    assert "\n" not in message
    assert f"ray://127.0.0.1:{port}" in message and "ray start --head" in message


def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ClusterError, match=r"pip install 'claude-fanout\[ray\]'"):
        connect("auto")


def test_a_project_outside_git_is_refused_in_one_line(project: Path) -> None:
    with pytest.raises(ClusterError) as caught:
        require_repo(project)
    assert "\n" not in str(caught.value) and "git init" in str(caught.value)


GUARD = [sys.executable, "-I", "-S", guard.__file__]


def test_the_guard_ends_as_its_command_ended(tmp_path: Path) -> None:
    parent = str(os.getpid())
    ended = subprocess.run([*GUARD, parent, "sh", "-c", "exit 4"], timeout=30, check=False)
    assert ended.returncode == 4
    killed = subprocess.run(
        [*GUARD, parent, "sh", "-c", 'kill -TERM "$$"'], timeout=30, check=False
    )
    assert killed.returncode == -signal.SIGTERM
    missing = subprocess.run(
        [*GUARD, parent, str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 127 and "cannot start" in missing.stderr


def test_a_killed_guard_takes_the_command_s_grandchildren_with_it(tmp_path: Path) -> None:
    """What a Ray worker that exits does to its children: SIGKILL, no chance to clean up. The
    inner guard sees the outer one die and kills the group (one guard alone leaked the sleep)."""
    pid_file = tmp_path / "grandchild.pid"
    script = f'sleep 60 & echo $! > "{pid_file}"; wait'
    proc = subprocess.Popen([*GUARD, str(os.getpid()), "sh", "-c", script], process_group=0)
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=20)
        grandchild = int(pid_file.read_text())
        assert alive(grandchild)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: not alive(grandchild), timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_the_runtime_environment_ships_this_package_without_its_bytecode(tmp_path: Path) -> None:
    from ray._private.runtime_env.packaging import create_package

    env = shipped_code()
    (module,) = env["py_modules"]
    assert Path(module) == Path(claude_fanout.__file__).resolve().parent
    # What Ray makes of it (its own packaging, with the same excludes): the package, whole.
    package = tmp_path / "package.zip"
    create_package(
        module, package, include_gitignore=True, include_parent_dir=True, excludes=env["excludes"]
    )
    with zipfile.ZipFile(package) as zipped:
        names = set(zipped.namelist())
    assert "claude_fanout/cluster/node.py" in names
    assert "claude_fanout/hooks/entry.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert package.stat().st_size < 4 * 2**20


class FakeRay:
    """``ray.get`` of the shipped CLI's object, counted."""

    def __init__(self, data: bytes) -> None:
        self.data, self.gets = data, 0

    def get(self, ref: object) -> bytes:
        assert ref == "cli-ref"
        self.gets += 1
        return self.data


def test_a_node_writes_the_shipped_cli_once_per_run_private_and_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRay(b"#!/bin/sh\necho shipped\n")
    monkeypatch.setitem(sys.modules, "ray", fake)
    run_root = tmp_path / "RUN"
    run_root.mkdir()
    first = node.ensure_cli(run_root, "claude", "cli-ref")
    assert first == run_root / "cli" / "claude"
    assert first.read_bytes() == fake.data
    assert first.stat().st_mode & 0o777 == 0o700
    assert (run_root / "cli").stat().st_mode & 0o777 == 0o700
    assert subprocess.run([first], capture_output=True, check=True).stdout == b"shipped\n"
    # The run's later attempts on this node find it: no second fetch from the object store.
    assert node.ensure_cli(run_root, "claude", "cli-ref") == first
    assert fake.gets == 1
    assert sorted(p.name for p in (run_root / "cli").iterdir()) == ["claude"]


def test_the_cli_shipped_is_the_workers_native_one_never_a_script_alone(tmp_path: Path) -> None:
    native, native_what = shippable_cli(dict(os.environ))
    assert native is not None and native == runnable_cli(os.environ) and native_what == native
    # An npm installation's entry is a script that needs its package beside it: not shipped.
    script = tmp_path / "claude"
    script.write_text("#!/usr/bin/env node\nrequire('./cli.js')\n")
    script.chmod(0o755)
    found, why = shippable_cli({**os.environ, CLAUDE_BIN_ENV: str(script)})
    assert found is None and str(script) in why and "script" in why
    found, why = shippable_cli({**os.environ, CLAUDE_BIN_ENV: str(tmp_path / "missing")})
    assert found is None and why == "none found here"
