"""What the benchmarks that start copies of themselves share (stdlib only: their writer and
waiter processes import it too).

- ``spawn`` a copy of the script in a role (``--writer SPEC``), ``ready`` to wait for its first
  line, ``last_json`` for the JSON line it ends with, ``reap`` for whatever is left;
- ``percentiles`` of a list of samples;
- ``brief_machine``, the interpreter and machine a figure was measured on (``machine_info`` has the
  long form, with the CPU model, memory and Claude Code version);
- ``run_in_scratch``: the run in a fresh folder that is removed afterwards, then the report
  printed, or its JSON under ``--json``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def spawn(script: str, role: str, spec: Json, **popen: Any) -> subprocess.Popen[str]:
    """``python <script> --<role> <spec as JSON>``, its stdout a text pipe."""
    return subprocess.Popen(
        [sys.executable, script, f"--{role}", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )


def ready(proc: subprocess.Popen[str]) -> str:
    """The process's first line (``ready``: past its imports), or "" when it ended first."""
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def last_json(proc: subprocess.Popen[str], timeout: float) -> Json | None:
    """The JSON object on the last line the process printed, or None when it failed or printed
    nothing; waits for it to end (``subprocess.TimeoutExpired`` after ``timeout``)."""
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode == 0 and out.strip():
        report: Json = json.loads(out.strip().splitlines()[-1])
        return report
    return None


def reap(procs: Iterable[subprocess.Popen[str]]) -> None:
    """Kill whichever of ``procs`` still runs and wait for every one."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def percentiles(
    samples: list[float], points: tuple[int, ...] = (50, 90, 99), *, scale: float = 1.0
) -> dict[str, float | None]:
    """``p<N>`` for each of ``points`` (the sample at that rank, not interpolated) and ``max``,
    each times ``scale``; all None when there are no samples."""
    if not samples:
        return {**{f"p{n}": None for n in points}, "max": None}
    ordered = sorted(samples)
    last = len(ordered) - 1
    found: dict[str, float | None] = {
        f"p{n}": ordered[min(last, int(n / 100 * len(ordered)))] * scale for n in points
    }
    found["max"] = ordered[-1] * scale
    return found


def brief_machine() -> Json:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
    }


def run_in_scratch(
    prefix: str,
    parent: Path | None,
    run: Callable[[Path], Json],
    print_report: Callable[[Json], None],
    *,
    as_json: bool,
) -> int:
    """``run`` in a new folder under ``parent`` (default: the system's temporary folder), which
    is removed afterwards; then print its report, or the report's JSON on one line."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        report = run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if as_json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0
