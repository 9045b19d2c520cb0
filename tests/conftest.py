"""Fixtures shared by every test folder: a scratch project, the real `fanout` CLI, and a process
reaper that fails a test which leaves any of its processes behind (and kills them regardless)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest


def processes_under(marker: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line or environment mentions ``marker``."""
    found = []
    needle = str(marker)
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            environ = proc.environ() if needle not in cmdline else {}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if needle in cmdline or any(needle in value for value in environ.values()):
            found.append(proc)
    return found


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A scratch project (it has .claude/), checked for leftover processes afterwards."""
    root = tmp_path / "project"
    (root / ".claude").mkdir(parents=True)
    yield root
    leftovers = processes_under(tmp_path)
    for proc in leftovers:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    assert not leftovers, f"processes left behind: {[p.pid for p in leftovers]}"


@dataclass
class CLIResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


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
