"""The supervisor's watchdog: if the supervisor dies or freezes, stop its workers and record
the run as lost.

Forked by the supervisor before it starts anything, in a process group of its own (so a killpg
aimed at the supervisor spares it). The supervisor tells it over a pipe which worker groups are
live (``+PGID`` / ``-PGID``) and says ``exit`` when it finishes normally. End of file without
``exit`` means the supervisor died. A heartbeat in ``supervisor.json`` older than
``HEARTBEAT_STALE_S`` means it is frozen (SIGSTOP, a hung disk): the watchdog SIGKILLs it, so it
cannot wake later and carry on a run everyone was told is lost. Either way the watchdog appends
``supervisor_lost`` and stops every group it was told about, and every group whose processes
carry this run's ``FANOUT_RUN_DIR`` (a worker started as the supervisor died was never
announced). A forked copy costs no interpreter start and little memory (copy-on-write).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time

from claude_fanout import defaults, procs
from claude_fanout.states import EventType
from claude_fanout.store.eventlog import EventLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.store.files import StrPath


def start(
    log: EventLog,
    heartbeat: StrPath,
    run_dir: str,
    *,
    grace_s: float = defaults.KILL_GRACE_S,
    stale_s: float = defaults.HEARTBEAT_STALE_S,
) -> tuple[int, int]:
    """Fork the watchdog; returns (its pid, the write end of its pipe) to the supervisor."""
    read_fd, write_fd = os.pipe()
    supervisor_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child, measured by integration tests
        code = 0
        try:
            os.close(write_fd)
            _serve(read_fd, log, heartbeat, run_dir, supervisor_pid, grace_s, stale_s)
        except BaseException:  # noqa: BLE001 - a forked child must never unwind into the parent's code
            code = 1
        os._exit(code)
    os.close(read_fd)
    return pid, write_fd


def _serve(
    read_fd: int,
    log: EventLog,
    heartbeat: StrPath,
    run_dir: str,
    supervisor_pid: int,
    grace_s: float,
    stale_s: float,
) -> None:
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    # A terminal hang-up or a Ctrl-C aimed at the supervisor's session must not disarm us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    buffer = b""
    reason = f"the supervisor (pid {supervisor_pid}) died"
    check_every = max(0.2, min(1.0, stale_s / 5))
    while True:
        ready, _, _ = select.select([read_fd], [], [], check_every)
        if not ready:
            age = _heartbeat_age(heartbeat)
            if age is not None and age > stale_s:
                reason = (
                    f"the supervisor (pid {supervisor_pid}) stopped responding "
                    f"(no heartbeat for {age:.0f}s)"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(supervisor_pid, signal.SIGKILL)
                break
            continue
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line == b"exit":
                return
            if line[:1] in (b"+", b"-") and line[1:].isdigit():
                pgid = int(line[1:])
                (groups.add if line[:1] == b"+" else groups.discard)(pgid)
    # A worker being started when the supervisor died was never announced (Popen returns only
    # after the exec): find the run's processes by the session they share with the supervisor
    # (the supervisor leads its own), and by the FANOUT_RUN_DIR every worker carries.
    groups |= procs.groups_in_session(supervisor_pid)
    groups |= procs.groups_with_env("FANOUT_RUN_DIR", run_dir)
    # Not our own group, nor the supervisor's: it may still be exiting (its end of the pipe
    # closes before it becomes a zombie), and it holds no worker.
    groups -= {os.getpgid(0), supervisor_pid}
    # Record first: readers must stop waiting on this run now, not after the grace period.
    log.append(EventType.SUPERVISOR_LOST, reason=reason, stopped_groups=sorted(groups))
    procs.stop_groups(sorted(groups), grace_s=grace_s)


def _heartbeat_age(path: StrPath) -> float | None:
    try:
        with open(path, "rb") as handle:
            beat = json.loads(handle.read()).get("heartbeat")
    except (OSError, ValueError, AttributeError):
        return None
    return time.time() - beat if isinstance(beat, int | float) else None


def tell(write_fd: int | None, message: str) -> None:
    """Send one line to the watchdog; a dead watchdog is not the supervisor's problem."""
    if write_fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(write_fd, message.encode("ascii") + b"\n")
