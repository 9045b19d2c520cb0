"""Fixtures shared by every test folder: a scratch project, the real `fanout` CLI, and a process
reaper that fails a test which leaves any of its processes behind (and kills them regardless)."""

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

from tests.helpers import CLIResult, processes_under


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
