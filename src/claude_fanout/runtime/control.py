"""A run's supervisor seen from outside: is it alive, and asking it to stop.

``observe`` is the run's folded state (``store.state``) corrected for a supervisor that is gone
or frozen; ``request_cancel`` records a cancel and signals the supervisor. Process liveness and
signals go through ``procs``; the store itself does no process control. Stdlib only: the hooks
observe runs and SessionEnd cancels them.
"""

from __future__ import annotations

import time

from claude_fanout import defaults, pids, procs
from claude_fanout.states import EventType
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.files import read_json
from claude_fanout.store.state import load_status, mark_lost

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.store.files import StrPath
    from claude_fanout.store.status import RunStatus


def observe(run: StrPath, *, now: float | None = None) -> RunStatus:
    """The run's state as recorded, corrected for a supervisor that is gone or frozen.

    A run whose supervisor died reads ``lost`` (and its running tasks ``lost``) even before the
    watchdog has written so; nothing waits on a run that cannot finish. The correction is made
    on the returned status only: the snapshot stays the plain fold of the log.
    """
    return judge_liveness(run, load_status(run), now=now)


def judge_liveness(run: StrPath, status: RunStatus, *, now: float | None = None) -> RunStatus:
    """``status`` (a fold of the run's log), marked lost in place when its supervisor is gone or
    frozen (``observe``; ``fanout watch`` applies it to the fold it keeps up to date)."""
    if status.state.terminal:
        return status
    wall = time.time() if now is None else now
    info = supervisor_info(run)
    if info is None:
        created = status.created or wall
        if wall - created > defaults.SUPERVISOR_START_TIMEOUT_S:
            mark_lost(status, "the supervisor never started", wall)
        return status
    pid, start_time = info.get("pid"), info.get("start_time")
    if not isinstance(pid, int) or not pids.is_alive(pid, start_time):
        mark_lost(status, f"the supervisor (pid {pid}) is gone", wall)
        return status
    heartbeat = info.get("heartbeat")
    if isinstance(heartbeat, int | float) and wall - heartbeat > defaults.HEARTBEAT_STALE_S:
        mark_lost(
            status,
            f"the supervisor (pid {pid}) has not heartbeat for {wall - heartbeat:.0f}s",
            wall,
        )
    return status


def request_cancel(run: StrPath, *, by: str) -> bool:
    """Record the request and signal the supervisor; False if no live supervisor got it.

    The record comes first: a supervisor still starting up reads it before running anything.
    Never waits, so SessionEnd (which Claude Code gives 1.5 s) can call it.
    """
    EventLog(layout.join(run, layout.EVENTS)).append(EventType.CANCEL_REQUESTED, by=by)
    info = supervisor_info(run)
    if info is None:
        return False
    pid, start_time = info.get("pid"), info.get("start_time")
    if not isinstance(pid, int) or not isinstance(start_time, int | float):
        return False
    import signal

    return procs.signal_process(pid, float(start_time), signal.SIGTERM)


def supervisor_info(run: StrPath) -> dict[str, Any] | None:
    """What the run's supervisor wrote of itself (``supervisor.json``: pid, start time,
    heartbeat), or None when there is none to read."""
    try:
        data = read_json(layout.join(run, layout.SUPERVISOR))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
