"""A run's state, folded from its event log, and the ``state.json`` snapshot that caches the fold.

The fold is a pure function of the events, so the snapshot is only a cache: a reader loads it and
folds the tail after its offset. Reading a run's state therefore costs the same at 10 events and
at 100,000. Stdlib only: hooks read state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store.eventlog import Event, read_events
from claude_fanout.store.files import read_json, write_json_atomic
from claude_fanout.store.rundir import RunDir

SNAPSHOT_VERSION = 1
_MAX_ERRORS = 20


@dataclass
class TaskStatus:
    id: str
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    pid: int | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)


@dataclass
class RunStatus:
    run_id: str
    state: RunState = RunState.STARTING
    offset: int = 0
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    reason: str | None = None
    cancel_requested: bool = False
    tasks: dict[str, TaskStatus] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    bad_lines: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for task in self.tasks.values():
            out[task.state] = out.get(task.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = SNAPSHOT_VERSION
        for task_id, task in self.tasks.items():
            data["tasks"][task_id]["duration_s"] = task.duration_s
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError("unknown snapshot version")
        tasks = {}
        for task_id, raw in data["tasks"].items():
            fields = {k: v for k, v in raw.items() if k != "duration_s"}
            fields["state"] = TaskState(fields["state"])
            tasks[task_id] = TaskStatus(**fields)
        top = {k: v for k, v in data.items() if k not in ("version", "tasks")}
        top["state"] = RunState(top["state"])
        return cls(**top, tasks=tasks)


def fold(status: RunStatus, event: Event) -> None:
    """Apply one event to ``status`` in place.

    The log is written by several processes and may be damaged, so every field is checked:
    unknown event types are ignored and a malformed field reads as absent, never raises.
    """
    kind = event.get("type")
    ts = _number(event.get("ts"))
    task_id = event.get("task")
    task = status.tasks.get(task_id) if isinstance(task_id, str) else None
    if kind == EventType.RUN_CREATED:
        tasks = event.get("tasks")
        if not isinstance(tasks, list):
            return
        status.created = ts
        for tid in tasks:
            if isinstance(tid, str):
                status.tasks.setdefault(tid, TaskStatus(id=tid))
    elif kind == EventType.SUPERVISOR_STARTED:
        status.started = status.started or ts
        if not status.state.terminal:
            status.state = RunState.RUNNING
    elif kind == EventType.TASK_STARTED and task is not None:
        attempt = _integer(event.get("attempt"))
        task.state = TaskState.RUNNING
        task.attempt = attempt if attempt is not None else task.attempt + 1
        task.pid = _integer(event.get("pid"))
        task.started = ts
        task.ended = task.exit_code = task.signal = task.reason = None
    elif kind == EventType.TASK_EXITED and task is not None:
        task.state = _ended_state(event.get("outcome"), TaskState.FAILED)
        task.ended = ts
        task.exit_code = _integer(event.get("exit_code"))
        task.signal = _integer(event.get("signal"))
        task.reason = _text(event.get("reason"))
    elif kind == EventType.TASK_RETRY and task is not None:
        task.state = TaskState.WAITING_RETRY
        task.reason = _text(event.get("reason"))
    elif kind == EventType.TASK_SKIPPED and task is not None:
        outcome = _ended_state(event.get("outcome"), TaskState.SKIPPED)
        task.state = outcome if outcome is TaskState.CANCELLED else TaskState.SKIPPED
        task.reason = _text(event.get("reason"))
    elif kind == EventType.CANCEL_REQUESTED:
        status.cancel_requested = True
    elif kind == EventType.RUN_FINISHED:
        try:
            state = RunState(str(event.get("state")))
        except ValueError:
            state = RunState.FAILED
        status.state = state if state.terminal else RunState.FAILED
        status.finished = ts
        status.reason = _text(event.get("reason"))
    elif kind == EventType.SUPERVISOR_LOST:
        if not status.state.terminal:
            mark_lost(status, _text(event.get("reason")) or "the supervisor died", ts)
    elif kind == EventType.ERROR:
        message = _text(event.get("message"))
        if message is not None:
            status.errors = [*status.errors, message][-_MAX_ERRORS:]


def mark_lost(status: RunStatus, reason: str, ts: float | None) -> None:
    status.state = RunState.LOST
    status.reason = reason
    status.finished = ts
    for task in status.tasks.values():
        if task.state is TaskState.RUNNING:
            task.state = TaskState.LOST
            task.ended = ts
            task.reason = reason


def _ended_state(value: object, fallback: TaskState) -> TaskState:
    """The state a task ended in; a live or unknown state name means ``fallback``."""
    try:
        state = TaskState(str(value))
    except ValueError:
        return fallback
    return state if state.terminal else fallback


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def fold_tail(run: RunDir, status: RunStatus) -> RunStatus:
    """Fold whatever the log holds past ``status.offset`` into ``status``."""
    result = read_events(run.events_path, status.offset)
    if result.offset < status.offset:
        status = RunStatus(run_id=run.run_id)
        result = read_events(run.events_path, 0)
    for event in result.events:
        fold(status, event)
    status.offset = result.offset
    status.bad_lines += len(result.bad)
    return status


def load_snapshot(run: RunDir) -> RunStatus:
    try:
        data = read_json(run.state_path)
        if not isinstance(data, dict):
            raise ValueError("state.json is not an object")
        return RunStatus.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return RunStatus(run_id=run.run_id)


def load_status(run: RunDir) -> RunStatus:
    """The run's recorded state: snapshot plus the log's tail. Liveness is judged elsewhere."""
    return fold_tail(run, load_snapshot(run))


def save_snapshot(run: RunDir, status: RunStatus) -> None:
    write_json_atomic(run.state_path, status.to_dict())


def supervisor_info(run: RunDir) -> dict[str, Any] | None:
    try:
        data = read_json(run.supervisor_path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "RunStatus",
    "TaskStatus",
    "fold",
    "fold_tail",
    "load_snapshot",
    "load_status",
    "mark_lost",
    "save_snapshot",
    "supervisor_info",
]
