"""What `start_new_session=True` alone does not do: a detached child that keeps the hook's stdout.

Claude Code reads a hook's stdout to its end, so the hook "returns" only when every process
holding that pipe has closed it. The benchmark plays Claude Code: it runs a hook-like Python
process with its stdout on a pipe and times until the pipe ends. The hook starts a worker that
lives ``--child-s`` seconds, three ways:

- ``inherit``: ``Popen(..., start_new_session=True)``, the seed's spawn: the worker is in its own
  session but holds the hook's stdout and stderr;
- ``devnull``: the same with stdin, stdout and stderr on ``/dev/null`` and ``close_fds=True``
  (what fanout does);
- ``same-group``: ``/dev/null`` and ``close_fds`` but no new session: the worker stays in the
  hook's process group;
- ``none``: the hook starts nothing (the floor).

It also says whether the worker survived its hook's process group being killed (what a terminal's
Ctrl-C or Claude Code killing a hook at its timeout does), which is what the new session buys.

    .venv/bin/python benchmarks/bench_detach.py [--repeat 5] [--child-s 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOOK = r"""
import os, subprocess, sys
mode, child_s, pid_file = sys.argv[1], sys.argv[2], sys.argv[3]
child = [sys.executable, "-c", "import time, sys; time.sleep(float(sys.argv[1]))", child_s]
if mode == "inherit":
    proc = subprocess.Popen(child, start_new_session=True)
elif mode in ("devnull", "same-group"):
    proc = subprocess.Popen(
        child,
        start_new_session=mode == "devnull",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
else:
    proc = None
if proc is not None:
    with open(pid_file, "w") as out:
        out.write(str(proc.pid))
print('{"hookSpecificOutput": {}}', flush=True)
"""
MODES = ("none", "devnull", "same-group", "inherit")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: our child only when the hook is its parent, so read its state.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def reap_later(pid: int, child_s: float) -> None:
    """The worker outlives the hook on purpose; make sure it is gone before we go on."""
    deadline = time.monotonic() + child_s + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def one(mode: str, child_s: float, tmp: Path) -> dict[str, Any]:
    pid_file = tmp / f"{mode}.pid"
    pid_file.unlink(missing_ok=True)
    began = time.monotonic()
    hook = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", HOOK, mode, str(child_s), str(pid_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out, _ = hook.communicate(timeout=child_s + 30)  # read to EOF, as Claude Code does
    waited = time.monotonic() - began
    row: dict[str, Any] = {"wait_s": waited, "answered": out.strip().startswith(b"{")}
    if pid_file.exists():
        pid = int(pid_file.read_text())
        # The hook has exited; kill what is left of its process group, as a timeout would. A
        # worker the hook waited for (inherit) has already ended: nothing to tell there.
        running = alive(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hook.pid, signal.SIGKILL)
        time.sleep(0.05)
        row["worker_survived_group_kill"] = alive(pid) if running else None
        reap_later(pid, child_s)
    return row


def _all_or_none(values: list[bool | None]) -> bool | None:
    known = [v for v in values if v is not None]
    return all(known) if known else None


def measure(repeat: int, child_s: float) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for mode in MODES:
                rows[mode].append(one(mode, child_s, Path(tmp)))
    out: dict[str, Any] = {"child_s": child_s, "repeat": repeat, "modes": {}}
    for mode, runs in rows.items():
        out["modes"][mode] = {
            "hook_wait_median_s": round(statistics.median(r["wait_s"] for r in runs), 3),
            "hook_wait_max_s": round(max(r["wait_s"] for r in runs), 3),
            "answered": all(r["answered"] for r in runs),
            "worker_survived_group_kill": _all_or_none(
                [r.get("worker_survived_group_kill") for r in runs]
            ),
        }
    try:
        out["pid_max"] = int(Path("/proc/sys/kernel/pid_max").read_text())
    except OSError:
        out["pid_max"] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child-s", type=float, default=3.0, help="how long the worker lives")
    parser.add_argument("--quick", action="store_true", help="2 repeats, a 1 s worker")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    repeat, child_s = (2, 1.0) if args.quick else (args.repeat, args.child_s)
    figures = measure(repeat, child_s)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"worker lives {child_s:g} s; {repeat} hooks per mode; pid_max {figures['pid_max']}")
    print(f"{'spawn':<10} {'hook wait s (median)':>21} {'max':>7} {'survives group kill':>20}")
    for mode, row in figures["modes"].items():
        survived = row["worker_survived_group_kill"]
        print(
            f"{mode:<10} {row['hook_wait_median_s']:>21.3f} {row['hook_wait_max_s']:>7.3f} "
            f"{'-' if survived is None else str(survived):>20}"
        )


if __name__ == "__main__":
    main()
