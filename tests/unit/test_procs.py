"""The platform seam: ``FANOUT_PORTABLE=1`` turns every Linux-only path off, and the portable
paths (psutil, polling) answer what the Linux ones do.

The probe runs in a child process, as hooks and supervisors do, under an audit hook that records
what fanout's own code opens under ``/proc``, lists there, and which libraries it loads through
ctypes (inotify). psutil's own reads of ``/proc`` (on Linux that is how psutil works) are not
fanout's and are left out; on macOS there is no ``/proc`` at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import pids, procs

LINUX = os.path.isdir("/proc/self")

PROBE = r"""
import json, os, subprocess, sys, threading, time

seen = {"proc_opens": [], "proc_listings": 0, "dlopens": []}


def from_psutil():
    frame = sys._getframe(2)
    while frame is not None:
        if os.sep + "psutil" + os.sep in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path.startswith("/proc/") and not from_psutil():
            seen["proc_opens"].append(path)
    elif event == "os.listdir" and os.fsdecode(args[0] or ".") == "/proc" and not from_psutil():
        seen["proc_listings"] += 1
    elif event == "ctypes.dlopen":
        seen["dlopens"].append(str(args[0]))


sys.addaudithook(audit)
sys.path.insert(0, sys.argv[3])  # as the hook entry script does under -I -S

from claude_fanout import pids, procs
from claude_fanout.store import watch

me = os.getpid()
out = {"linux_paths": pids.linux_paths(), "pid": me}
out["start_time"] = pids.process_start_time(me)
out["alive"] = pids.is_alive(me, out["start_time"])
out["name"] = pids.process_name(me)
out["parent"] = pids.parent_pid(me)
out["conductor"] = pids.find_conductor()
# A child in a process group of its own, in this session, carrying a marker.
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    env={**os.environ, "PROBE_MARK": sys.argv[2]},
    process_group=0,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
try:
    out["child"] = child.pid
    out["env_groups"] = sorted(pids.groups_with_env("PROBE_MARK", sys.argv[2]))
    out["session_groups"] = sorted(pids.groups_in_session(os.getsid(0)))
    out["own_group"] = os.getpgid(0)
finally:
    child.kill()
    child.wait()
out["dead_child_alive"] = pids.is_alive(child.pid, out["start_time"])
# A change to a watched file ends the wait; without one, the wait runs out.
target = sys.argv[1]
timer = threading.Timer(0.2, lambda: open(target, "a").write("x\n"))
began = time.monotonic()
timer.start()
out["changed"] = watch.wait_for_change([target], 5.0)
out["waited_s"] = time.monotonic() - began
timer.join()
out["unchanged"] = watch.wait_for_change([target], 0.2)
out["seen"] = json.loads(json.dumps(seen))  # what follows is the test's, not fanout's
out["psutil_imported"] = "psutil" in sys.modules
import site

site.main()  # what -S left out, for the test's own psutil
import psutil

out["psutil_create_time"] = psutil.Process(me).create_time()
out["psutil_name"] = psutil.Process(me).name()
with open(f"/proc/{me}/stat" if os.path.isdir("/proc/self") else os.devnull, "rb") as handle:
    stat = handle.read()
out["stat_ticks"] = int(stat[stat.rfind(b")") + 2 :].split()[19]) if stat else None
out["ppid"] = os.getppid()
print(json.dumps(out))
"""


def probe(tmp_path: Path, *, portable: bool) -> dict[str, Any]:
    """Run the probe as a hook runs (``python -I -S`` under ``sh -c``, without site-packages on
    sys.path, in a session of its own); its findings."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    target = tmp_path / "watched"
    target.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in (pids.PORTABLE_ENV, "CLAUDE_PID")}
    if portable:
        env[pids.PORTABLE_ENV] = "1"
    package_parent = Path(procs.__file__).resolve().parents[1]
    command = (
        f'"{sys.executable}" -I -S "{script}" "{target}" {tmp_path.name} "{package_parent}"; true'
    )
    proc = subprocess.run(
        ["sh", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_the_switch_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pids.PORTABLE_ENV, raising=False)
    assert pids.linux_paths() is LINUX
    for off in ("", "0"):
        monkeypatch.setenv(pids.PORTABLE_ENV, off)
        assert pids.linux_paths() is LINUX
    monkeypatch.setenv(pids.PORTABLE_ENV, "1")
    assert pids.linux_paths() is False


@pytest.mark.parametrize("portable", [False, True], ids=["native", "portable"])
def test_each_path_answers_the_same_questions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portable: bool
) -> None:
    if not portable and not LINUX:
        pytest.skip("the native paths are Linux's")
    out = probe(tmp_path, portable=portable)
    assert out["linux_paths"] is not portable
    # psutil only on the portable path: found even without site-packages on sys.path.
    assert out["psutil_imported"] is portable
    # The start time identifies the process: psutil's creation time on the portable path,
    # /proc/<pid>/stat's clock ticks since boot on Linux.
    expected = out["psutil_create_time"] if portable else float(out["stat_ticks"])
    assert out["start_time"] == expected
    assert out["alive"] is True and out["dead_child_alive"] is False
    assert out["name"] == out["psutil_name"]
    assert out["parent"] == out["ppid"]  # `sh`, which ran the probe
    # find_conductor walks up past `sh` to the first ancestor that is not a shell: this test,
    # identified as this process identifies itself on the same path.
    if portable:
        monkeypatch.setenv(pids.PORTABLE_ENV, "1")
    else:
        monkeypatch.delenv(pids.PORTABLE_ENV, raising=False)
    assert out["conductor"] == [os.getpid(), pids.process_start_time(os.getpid())]
    # The watchdog's scans: the child's group by its environment and by its session.
    assert out["env_groups"] == [out["child"]]
    assert set(out["session_groups"]) == {out["child"], out["own_group"]}
    assert out["changed"] is True and out["waited_s"] < 2.0
    assert out["unchanged"] is False
    seen = out["seen"]
    if portable:
        # Nothing Linux-only: no /proc read or listing of fanout's own, no inotify through ctypes.
        assert seen == {"proc_opens": [], "proc_listings": 0, "dlopens": []}
    else:
        # The audit sees the native paths, so the portable run's silence means something.
        opened = {path.rsplit("/", 1)[-1] for path in seen["proc_opens"]}
        assert {"stat", "comm", "environ"} <= opened, seen
        assert seen["proc_listings"] >= 2 and seen["dlopens"], seen


# -- spawning, forking and waiting -----------------------------------------------------------

SPAWNING_PARENT = r"""
import os, sys, time
from claude_fanout import procs

worker = procs.spawn_in_group(["sleep", "60"], cwd=".", env=os.environ, output_fd=2)
print(worker.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not LINUX, reason="the parent-death signal is Linux's")
def test_a_worker_dies_with_the_process_that_started_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pids.PORTABLE_ENV, raising=False)
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWNING_PARENT], stdout=subprocess.PIPE, text=True
    )
    worker = 0
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert pids.process_start_time(worker) is not None
        parent.kill()  # SIGKILL: nothing of the parent's own code runs
        parent.wait(timeout=5)
        killed = time.monotonic()
        while pids.process_start_time(worker) is not None and time.monotonic() - killed < 2:
            time.sleep(0.01)
        assert pids.process_start_time(worker) is None, "the worker outlived its parent"
        assert time.monotonic() - killed < 1.0
    finally:
        parent.kill()
        parent.wait(timeout=5)
        if parent.stdout is not None:
            parent.stdout.close()
        if worker and pids.process_start_time(worker) is not None:
            os.kill(worker, signal.SIGKILL)


def test_the_parent_death_signal_is_armed_only_from_the_main_thread_on_linux_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(pids.PORTABLE_ENV, raising=False)
    assert (procs.die_with_parent() is not None) is LINUX
    # A thread's exit would fire it while the process, and its need for the child, lives on.
    from_thread: list[object] = []
    thread = threading.Thread(target=lambda: from_thread.append(procs.die_with_parent()))
    thread.start()
    thread.join()
    assert from_thread == [None]
    monkeypatch.setenv(pids.PORTABLE_ENV, "1")
    assert procs.die_with_parent() is None


def test_finish_kills_and_reaps_a_child_that_outlives_its_time(tmp_path: Path) -> None:
    proc = procs.spawn_attached(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        cwd=tmp_path,
        env=os.environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    began = time.monotonic()
    out, _err, ended = procs.finish(proc, 1.0)
    assert (out, ended, proc.returncode) == ("started\n", False, -signal.SIGKILL)
    assert time.monotonic() - began < 5
    quick = procs.spawn_attached(
        ["sh", "-c", "exit 3"], cwd=tmp_path, env=os.environ, stdin=None, stdout=None, stderr=None
    )
    assert procs.finish(quick, 10)[2] is True and quick.returncode == 3


def test_wait_child_waits_bounded_and_kills_only_when_told(tmp_path: Path) -> None:
    proc = procs.spawn_attached(
        ["sleep", "60"], cwd=tmp_path, env=os.environ, stdin=None, stdout=None, stderr=None
    )
    try:
        assert procs.wait_child(proc, timeout_s=0.2) is None
        assert procs.reap(proc) is None  # still running: a bounded wait kills nothing
        assert procs.wait_child(proc, timeout_s=0.2, kill=True) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


FORKING = r"""
import json, os, sys
from claude_fanout import procs

def fail():
    raise RuntimeError("the copy's error never unwinds into the caller")

def record():
    with open(sys.argv[1], "w") as out:
        out.write(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0)}))

done = procs.fork(record)
failed = procs.fork(fail, new_group=False)
result = {"reaped": [procs.reap_forked(pid, timeout_s=10) for pid in (done, failed)]}
result["done"], result["me"] = done, os.getpid()
print(json.dumps(result))
"""


def test_fork_runs_a_copy_in_its_own_group_and_reap_forked_collects_it(tmp_path: Path) -> None:
    record = tmp_path / "copy.json"
    out = subprocess.run(
        [sys.executable, "-c", FORKING, str(record)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result = json.loads(out.stdout)
    assert result["reaped"] == [True, True]
    copy = json.loads(record.read_text())
    assert copy == {"pid": result["done"], "pgid": result["done"]}  # leads a group of its own
    assert "Traceback" not in out.stderr  # the failing copy exited, it did not unwind
