"""A run's last resort against a dead supervisor: the watchdog it forks, and the sweep of a run
found lost after the watchdog died too.

The watchdog is forked by the supervisor before it starts anything, in a process group of its own
(so a killpg aimed at the supervisor spares it). The supervisor tells it over a pipe which worker
groups are live (``+PGID`` / ``-PGID``) and says ``exit`` when it finishes normally. End of file
without ``exit`` means the supervisor died. A heartbeat in ``supervisor.json`` older than
``HEARTBEAT_STALE_S`` means it is frozen (SIGSTOP, a hung disk): the watchdog SIGKILLs it, so it
cannot wake later and carry on a run everyone was told is lost. Either way the watchdog appends
``supervisor_lost`` and stops every group it was told about, and every group whose processes
carry this run's ``FANOUT_RUN_DIR`` (a worker started as the supervisor died was never
announced). A forked copy costs no interpreter start and little memory (copy-on-write).

When the supervisor and its watchdog die together (``pkill -9 -f fanout``), the workers die
with the supervisor (``procs.die_with_parent``, Linux), but what they started does not, and off
Linux nothing does: :func:`sweep_lost`, called by the next hook or CLI that finds the run lost,
does the watchdog's work late. Whoever records a supervisor's loss first (watchdog or sweep)
claims it with an O_EXCL file, so the loss is recorded, and swept, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time

from claude_fanout import defaults, procs
from claude_fanout.runtime.control import supervisor_info
from claude_fanout.states import EventType
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.store.files import StrPath

# Every worker's environment names its run directory (set by the supervisor).
RUN_DIR_ENV = "FANOUT_RUN_DIR"


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
    supervisor = os.getpid(), procs.process_start_time(os.getpid())

    def serve() -> None:  # pragma: no cover - runs in the forked child
        os.close(write_fd)
        _serve(read_fd, log, heartbeat, run_dir, supervisor, grace_s, stale_s)

    pid = procs.fork(serve, new_group=True)
    os.close(read_fd)
    return pid, write_fd


def stop(pid: int | None, write_fd: int | None, *, timeout_s: float = 5.0) -> None:
    """Tell the watchdog the supervisor is finishing normally, and reap it (bounded)."""
    tell(write_fd, "exit")
    if write_fd is not None:
        os.close(write_fd)
    if pid is not None:
        procs.reap_forked(pid, timeout_s=timeout_s)


def _serve(
    read_fd: int,
    log: EventLog,
    heartbeat: StrPath,
    run_dir: str,
    supervisor: tuple[int, float | None],
    grace_s: float,
    stale_s: float,
) -> None:
    supervisor_pid, supervisor_start = supervisor
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
                procs.signal_process(supervisor_pid, supervisor_start, signal.SIGKILL)
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
    groups |= procs.groups_with_env(RUN_DIR_ENV, run_dir)
    # Not our own group, nor the supervisor's: it may still be exiting (its end of the pipe
    # closes before it becomes a zombie), and it holds no worker.
    groups -= {os.getpgid(0), supervisor_pid}
    # Record first: readers must stop waiting on this run now, not after the grace period. A
    # sweep that found the run lost first has recorded it already; the groups we were told
    # about are stopped all the same.
    if claim_loss(run_dir, supervisor_pid):
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


def claim_loss(run: StrPath, supervisor_pid: int) -> bool:
    """True for the one caller that gets to record supervisor ``supervisor_pid``'s loss."""
    try:
        fd = os.open(
            layout.lost_claim(run, supervisor_pid),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            defaults.FILE_MODE,
        )
    except OSError:  # claimed already, or the run directory is gone: nothing to record
        return False
    os.close(fd)
    return True


def sweep_lost(
    run: StrPath, *, reason: str | None, by: str, grace_s: float = defaults.SWEEP_GRACE_S
) -> list[int] | None:
    """Stop whatever is left of a run found lost (its supervisor and watchdog died together),
    grandchildren included, and record it as the watchdog would have: one ``supervisor_lost``
    naming the groups stopped and who swept (``by``). Once per lost supervisor: returns the
    groups stopped, or None when someone else records this loss (the watchdog, another sweep).

    Bounded: two scans of the process table, at most ``grace_s`` between SIGTERM and SIGKILL
    and as long again for the killed to be gone.
    Call it only for a run that reads lost (``store.state.observe``).
    """
    info = supervisor_info(run)
    pid = info.get("pid") if info is not None else None
    if info is None or not isinstance(pid, int) or not claim_loss(run, pid):
        return None
    start_time = info.get("start_time")
    start_time = float(start_time) if isinstance(start_time, int | float) else None
    # A frozen supervisor whose watchdog died must not wake up and carry on a lost run.
    procs.signal_process(pid, start_time, signal.SIGKILL)
    run_dir = os.fspath(run)
    groups: set[int] = set()
    for value in dict.fromkeys((run_dir, os.path.realpath(run_dir))):
        groups |= procs.groups_with_env(RUN_DIR_ENV, value)
    if procs.process_start_time(pid) in (None, start_time):
        # The supervisor led its session: the kernel keeps its pid reserved while the session
        # has members, so whatever is in session ``pid`` is the run's, grandchildren included.
        # (A live process of another start time got the pid once the session was empty.)
        groups |= procs.groups_in_session(pid)
    groups.discard(os.getpgid(0))  # a sweep run from inside the run spares its caller
    now = supervisor_info(run) or {}
    if (now.get("pid"), now.get("start_time")) != (pid, info.get("start_time")):
        return None  # resumed meanwhile: these processes are the new supervisor's
    EventLog(layout.join(run, layout.EVENTS)).append(
        EventType.SUPERVISOR_LOST,
        reason=reason or f"the supervisor (pid {pid}) is gone",
        stopped_groups=sorted(groups),
        swept_by=by,
    )
    procs.stop_groups(sorted(groups), grace_s=grace_s, settle_s=grace_s)
    return sorted(groups)
