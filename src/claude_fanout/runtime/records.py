"""What a run's supervisor writes about the run: events, the state snapshot, its heartbeat.

Events go to ``events.jsonl`` as they happen; the snapshot (``state.json``) is the fold of the
log, rewritten when the log grew past it (the supervisor's records or anyone else's); the heartbeat
(``supervisor.json``) says who supervises the run and that it is alive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from claude_fanout import defaults
from claude_fanout.store.files import write_json_atomic
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import fold_tail, publish_snapshot, unfolded_bytes
from claude_fanout.store.status import RunStatus


class RunRecords:
    def __init__(
        self,
        run: RunDir,
        *,
        pid: int,
        start_time: float | None,
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._run = run
        self._pid = pid
        self._start_time = start_time
        self._clock = clock
        self._wall = wall
        # The fold of the log as far as this supervisor read it.
        self.status = RunStatus(run_id=run.run_id)
        self.watchdog_pid: int | None = None
        self._dirty = True
        self._last_heartbeat = -math.inf

    def emit(self, type_: str, **fields: object) -> None:
        self._run.log.append(type_, **fields)
        self._dirty = True

    def refresh(self) -> RunStatus:
        """Fold what the log gained (from anyone) into ``status``."""
        self.status = fold_tail(self._run, self.status)
        return self.status

    def commit_of(self, task_id: str) -> str | None:
        """What a task committed (a writer), per the log as it is now."""
        seen = self.refresh().tasks.get(task_id)
        return seen.commit if seen is not None else None

    def flush(self) -> None:
        """Fold what the log gained into the snapshot: after the supervisor's own records, and
        whenever others' (workers' notices and claims, hooks' records) grew the log past it."""
        if not self._dirty and not unfolded_bytes(self._run, self.status.offset):
            return
        self._dirty = not publish_snapshot(self._run, self.refresh())

    def heartbeat(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_heartbeat < defaults.HEARTBEAT_INTERVAL_S:
            return
        self._last_heartbeat = now
        write_json_atomic(
            self._run.supervisor_path,
            {
                "pid": self._pid,
                "start_time": self._start_time,
                "watchdog_pid": self.watchdog_pid,
                "heartbeat": self._wall(),
                "run_id": self._run.run_id,
            },
        )
