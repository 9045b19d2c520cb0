"""The machine and Claude Code a figure was measured on (printed first by run_all and
bench_scale)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from claude_fanout.testing.fake_api import claude_cli


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def claude_version() -> str:
    """What the CLI fanout's workers run says with --version ("" when it cannot say)."""
    try:
        cli = str(claude_cli())
        argv = [cli, "--version"]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip() or f"unknown (exit {done.returncode})"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "system": platform.system(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "claude_code": claude_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def describe(m: dict[str, Any]) -> str:
    return (
        f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['system']} "
        f"{m['kernel']}, Python {m['python']}, Claude Code {m['claude_code']}; "
        f"load average {' '.join(str(x) for x in m['load_average'])}"
    )
