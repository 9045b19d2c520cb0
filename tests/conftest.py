"""Fixtures shared by every test folder: a scratch project, the real `fanout` CLI, a process
reaper that fails a test which leaves any of its processes behind (and kills them regardless),
and the ``portable`` marker: a test so marked runs twice, on the Linux-only code paths
(``[native]``) and with ``FANOUT_PORTABLE=1`` (``[portable]``: psutil and polling, as on macOS).
The variable is in the environment, so the supervisors, watchdogs, hooks and CLIs a test starts
take the same paths as the test's own process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from claude_fanout import pids
from tests.helpers import CLIResult, processes_under

CODE_PATHS = ("native", "portable")


@pytest.fixture(autouse=True)
def code_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which platform paths this test runs: its parameter under the ``portable`` marker, else
    whatever the environment says (``FANOUT_PORTABLE=1 pytest`` runs unmarked tests portable)."""
    mode = getattr(request, "param", None)
    if mode == "native" and not os.path.isdir("/proc/self"):
        pytest.skip("no Linux-only paths here: [portable] is what this machine runs")
    if mode == "portable":
        monkeypatch.setenv(pids.PORTABLE_ENV, "1")
    elif mode == "native":
        monkeypatch.delenv(pids.PORTABLE_ENV, raising=False)
    return "native" if pids.linux_paths() else "portable"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("portable") is not None:
        metafunc.parametrize("code_paths", CODE_PATHS, indirect=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "portable: run twice, on the Linux-only paths and with FANOUT_PORTABLE=1 (psutil, polling)",
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A scratch project (it has .claude/), checked for leftover processes afterwards."""
    root = tmp_path / "project"
    (root / ".claude").mkdir(parents=True)
    yield root
    # A detached supervisor may still be finishing its exit when the test body returns.
    deadline = time.monotonic() + 3
    leftovers = processes_under(tmp_path)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = processes_under(tmp_path)
    for proc in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


@pytest.fixture
def fanout(project: Path) -> Callable[..., CLIResult]:
    """Run the real `fanout` CLI (this interpreter, installed package) in ``project``."""

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> CLIResult:
        proc = subprocess.run(
            [sys.executable, "-m", "claude_fanout", *args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return CLIResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_plan(project: Path) -> Callable[..., Path]:
    def write(tasks: list[dict[str, Any]], name: str = "plan.json", **top: Any) -> Path:
        path = project / name
        path.write_text(json.dumps({"version": 1, **top, "tasks": tasks}))
        return path

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the fault-injection scenarios with many trials and full sizes (or FANOUT_SOAK=1)",
    )
