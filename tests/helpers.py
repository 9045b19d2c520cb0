"""Helpers for tests: finding a test's processes, waiting on conditions, CLI results."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


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


@dataclass
class CLIResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)
