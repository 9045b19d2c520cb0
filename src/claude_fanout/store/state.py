"""A run's state, folded from its event log, and the ``state.json`` snapshot that caches the fold.

The fold is a pure function of the events, so the snapshot is only a cache: a reader loads it and
folds the tail after its offset. Reading a run's state therefore costs the same at 10 events and
at 100,000. Stdlib only: hooks read state.
"""

from __future__ import annotations

import time

from claude_fanout import defaults, procs
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog, read_events
from claude_fanout.store.files import read_json, write_json_atomic

# Hook path: plain classes, not dataclasses (whose import alone costs a hook 8 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.store.eventlog import Event
    from claude_fanout.store.files import StrPath

SNAPSHOT_VERSION = 3
_MAX_ERRORS = 20
_MAX_NOTICES = 50
# Usage counters summed per task (over its attempts) and per run, as ``task_usage`` reports them.
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "turns",
    "cost_usd",
)


class TaskStatus:
    """What the log says of one task. ``claims`` are project-relative paths or globs the task
    owns while it runs; ``replaces`` maps a project-relative path to the artifact that stands in
    for it once the task has succeeded."""

    __slots__ = (
        "attempt",
        "base",
        "branch",
        "claims",
        "commit",
        "committed",
        "ended",
        "exit_code",
        "id",
        "pid",
        "reason",
        "replaces",
        "signal",
        "started",
        "state",
        "usage",
        "worktree",
    )

    def __init__(
        self,
        id: str,
        state: TaskState = TaskState.PENDING,
        attempt: int = 0,
        pid: int | None = None,
        started: float | None = None,
        ended: float | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
        claims: list[str] | None = None,
        replaces: dict[str, str] | None = None,
        usage: dict[str, float] | None = None,
        branch: str | None = None,
        commit: str | None = None,
        worktree: str | None = None,
        base: str | None = None,
        committed: bool = False,
    ) -> None:
        self.id = id
        self.state = state
        self.attempt = attempt
        self.pid = pid
        self.started = started
        self.ended = ended
        self.exit_code = exit_code
        self.signal = signal
        self.reason = reason
        self.claims: list[str] = [] if claims is None else claims
        self.replaces: dict[str, str] = {} if replaces is None else replaces
        # Claude workers: USAGE_KEYS summed over attempts (None until one reported).
        self.usage = usage
        # Writers: the worktree branch and the commit holding the task's changes.
        self.branch = branch
        self.commit = commit
        # Writers: the worktree's path, the run's snapshot it was made from, and whether the
        # task's work was committed (``commit`` None then means it changed nothing).
        self.worktree = worktree
        self.base = base
        self.committed = committed

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["claims"] = list(self.claims)
        data["replaces"] = dict(self.replaces)
        data["usage"] = None if self.usage is None else dict(self.usage)
        data["duration_s"] = self.duration_s
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskStatus:
        fields = {k: v for k, v in data.items() if k in cls.__slots__}
        fields["state"] = TaskState(fields["state"])
        return cls(**fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskStatus):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TaskStatus({self.id!r}, {self.state!s}, attempt={self.attempt})"


class RunStatus:
    """A run as folded from its log: state, timings, tasks, and the Conductor that started it."""

    __slots__ = (
        "bad_lines",
        "cancel_requested",
        "conductor",
        "created",
        "delivery",
        "errors",
        "finished",
        "merge",
        "notice_count",
        "notices",
        "offset",
        "reason",
        "run_id",
        "started",
        "state",
        "tasks",
        "usage",
    )

    def __init__(
        self,
        run_id: str,
        state: RunState = RunState.STARTING,
        offset: int = 0,
        created: float | None = None,
        started: float | None = None,
        finished: float | None = None,
        reason: str | None = None,
        cancel_requested: bool = False,
        tasks: dict[str, TaskStatus] | None = None,
        errors: list[str] | None = None,
        bad_lines: int = 0,
        conductor: dict[str, Any] | None = None,
        notices: list[str] | None = None,
        notice_count: int = 0,
        delivery: str | None = None,
        usage: dict[str, float] | None = None,
        merge: dict[str, Any] | None = None,
    ) -> None:
        self.run_id = run_id
        self.state = state
        self.offset = offset
        self.created = created
        self.started = started
        self.finished = finished
        self.reason = reason
        self.cancel_requested = cancel_requested
        self.tasks: dict[str, TaskStatus] = {} if tasks is None else tasks
        self.errors: list[str] = [] if errors is None else errors
        self.bad_lines = bad_lines
        self.conductor = conductor
        # The newest notices workers published (``W2: text``), and how many there were in all:
        # a session's cursor counts what it was told, so delivery never rereads the log.
        self.notices: list[str] = [] if notices is None else notices
        self.notice_count = notice_count
        # How results reach the Conductor: "block" (held at Stop) or "rewake" (woken when idle).
        self.delivery = delivery
        # USAGE_KEYS summed over every task's attempts; None until a worker reported usage.
        self.usage = usage
        # The last merge-back of the writers' branches (a ``run_merged`` record), if any.
        self.merge = merge

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for task in self.tasks.values():
            out[task.state] = out.get(task.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__slots__}
        data["tasks"] = {task_id: task.to_dict() for task_id, task in self.tasks.items()}
        data["errors"] = list(self.errors)
        data["notices"] = list(self.notices)
        data["usage"] = None if self.usage is None else dict(self.usage)
        data["version"] = SNAPSHOT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError("unknown snapshot version")
        tasks = {task_id: TaskStatus.from_dict(raw) for task_id, raw in data["tasks"].items()}
        top = {k: v for k, v in data.items() if k in cls.__slots__ and k != "tasks"}
        top["state"] = RunState(top["state"])
        return cls(**top, tasks=tasks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunStatus):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RunStatus({self.run_id!r}, {self.state!s}, tasks={len(self.tasks)})"


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
        claims = event.get("claims")
        for tid, paths in claims.items() if isinstance(claims, dict) else ():
            _add_claims(status.tasks.get(tid), paths)
        replaces = event.get("replaces")
        for tid, mapping in replaces.items() if isinstance(replaces, dict) else ():
            _add_replaces(status.tasks.get(tid), mapping)
        conductor = event.get("conductor")
        if isinstance(conductor, dict):
            status.conductor = conductor
        delivery = event.get("delivery")
        if delivery in ("block", "rewake"):
            status.delivery = delivery
    elif kind == EventType.CONDUCTOR:
        conductor = {k: event.get(k) for k in ("session_id", "pid", "start_time")}
        if isinstance(conductor["pid"], int) and isinstance(conductor["session_id"], str):
            status.conductor = conductor
    elif kind == EventType.CONDUCTOR_RELEASED:
        if (status.conductor or {}).get("session_id") == event.get("session_id"):
            status.conductor = None
    elif kind == EventType.NOTICE:
        text = _text(event.get("text"))
        if text is not None:
            who = task_id if isinstance(task_id, str) else "fanout"
            status.notices = [*status.notices, f"{who}: {text[:500]}"][-_MAX_NOTICES:]
            status.notice_count += 1
    elif kind == EventType.CLAIM:
        _add_claims(task, event.get("paths"))
    elif kind == EventType.REPLACE:
        path, artifact = event.get("path"), event.get("with")
        if isinstance(path, str) and isinstance(artifact, str):
            _add_replaces(task, {path: artifact})
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
        attempt = _integer(event.get("attempt"))
        if attempt is not None:  # a not_started attempt has no task_started to count it
            task.attempt = attempt
        if event.get("not_started") is True:  # the attempt never had a process
            task.pid = task.started = None
        task.ended = ts
        task.exit_code = _integer(event.get("exit_code"))
        task.signal = _integer(event.get("signal"))
        task.reason = _text(event.get("reason"))
    elif kind == EventType.TASK_RETRY and task is not None:
        task.state = TaskState.WAITING_RETRY
        task.reason = _text(event.get("reason"))
    elif kind == EventType.TASK_SKIPPED and task is not None:
        outcome = _ended_state(event.get("outcome"), TaskState.SKIPPED)
        kept = (TaskState.CANCELLED, TaskState.OVER_BUDGET)
        task.state = outcome if outcome in kept else TaskState.SKIPPED
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
    elif kind == EventType.RUN_RESUMED:
        # A new supervisor takes the run over: what succeeded stays done, the rest runs again.
        status.state = RunState.STARTING
        status.finished = None
        status.reason = None
        status.cancel_requested = False
        # Resumed from a terminal: the session that asked for it is not waiting any more.
        conductor = event.get("conductor")
        status.conductor = conductor if isinstance(conductor, dict) else None
        status.delivery = None
        for task in status.tasks.values():
            if task.state is not TaskState.SUCCEEDED:
                task.state = TaskState.PENDING
                task.pid = None
                task.ended = task.exit_code = task.signal = None
                task.reason = "resumed"
    elif kind == EventType.SUPERVISOR_LOST:
        if not status.state.terminal:
            mark_lost(status, _text(event.get("reason")) or "the supervisor died", ts)
    elif kind == EventType.ERROR:
        message = _text(event.get("message"))
        if message is not None:
            status.errors = [*status.errors, message][-_MAX_ERRORS:]
    elif kind == EventType.TASK_USAGE and task is not None:
        counts: dict[str, float] = {}
        for key in USAGE_KEYS:
            value = _number(event.get(key))
            if value is not None and value >= 0:
                counts[key] = value
        if counts:
            task.usage = add_usage(task.usage, counts)
            status.usage = add_usage(status.usage, counts)
    elif kind == EventType.WORKTREE_CREATED and task is not None:
        _fold_worktree(task, event)
    elif kind == EventType.WORKTREE_COMMITTED and task is not None:
        task.branch = _text(event.get("branch")) or task.branch
        task.commit = _text(event.get("commit"))
        task.committed = True
    elif kind == EventType.RUN_MERGED:
        status.merge = fold_merge(status.merge, event)


def _fold_worktree(task: TaskStatus, event: Event) -> None:
    """A writer got a worktree: a new one holds nothing committed yet."""
    branch = _text(event.get("branch"))
    if branch is None:
        return
    task.branch = branch
    task.worktree = _text(event.get("path"))
    task.base = _text(event.get("base"))
    task.commit = None
    task.committed = False


_MERGE_LISTS = ("merged", "already_merged", "undone", "unchanged", "skipped")


def fold_merge(previous: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    """The run's merge state after ``event`` (a ``run_merged`` record): each task's outcome is
    the one of the last record that considered it (``fanout merge RUN TASK`` considers only the
    tasks named); a failed merge-back adds its ``error`` and changes no task's outcome."""
    out = dict(previous or {})
    if "base" in event:
        out["base"] = event["base"]
    if event.get("error") is not None:
        out["error"] = event["error"]
        return out
    out.pop("error", None)
    raw = event.get("conflicts")
    conflicts = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    considered = {c.get("task") for c in conflicts if isinstance(c.get("task"), str)}
    for key in _MERGE_LISTS:
        names = event.get(key)
        if isinstance(names, list):
            considered.update(name for name in names if isinstance(name, str))
    for key in (*_MERGE_LISTS, "conflicts"):
        if key not in out and key not in event:
            continue
        earlier = out.get(key)
        kept = [
            item
            for item in (earlier if isinstance(earlier, list) else [])
            if _task_of(item) not in considered
        ]
        new = conflicts if key == "conflicts" else event.get(key)
        out[key] = kept + (new if isinstance(new, list) else [])
    return out


def _task_of(item: Any) -> str | None:
    """The task a merge record's list item is about: a task id, or a conflict's ``task``."""
    task = item.get("task") if isinstance(item, dict) else item
    return task if isinstance(task, str) else None


def add_usage(total: dict[str, float] | None, more: dict[str, float]) -> dict[str, float]:
    """``total + more`` key by key (a new dict); integral counts stay ints."""
    out = dict(total or {})
    for key, value in more.items():
        out[key] = out.get(key, 0) + value
        if key != "cost_usd":
            out[key] = int(out[key])
    return out


def mark_lost(status: RunStatus, reason: str, ts: float | None) -> None:
    status.state = RunState.LOST
    status.reason = reason
    status.finished = ts
    for task in status.tasks.values():
        if task.state is TaskState.RUNNING:
            task.state = TaskState.LOST
            task.ended = ts
            task.reason = reason


def _add_claims(task: TaskStatus | None, paths: object) -> None:
    if task is None or not isinstance(paths, list):
        return
    for path in paths:
        if isinstance(path, str) and path and path not in task.claims:
            task.claims.append(path)


def _add_replaces(task: TaskStatus | None, mapping: object) -> None:
    if task is None or not isinstance(mapping, dict):
        return
    for path, artifact in mapping.items():
        if isinstance(path, str) and isinstance(artifact, str) and path and artifact:
            task.replaces[path] = artifact


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


def fold_tail(run: StrPath, status: RunStatus) -> RunStatus:
    """Fold whatever the log of run directory ``run`` holds past ``status.offset``."""
    events_path = layout.join(run, layout.EVENTS)
    result = read_events(events_path, status.offset)
    if result.offset < status.offset:
        status = RunStatus(run_id=layout.run_id_of(run))
        result = read_events(events_path, 0)
    for event in result.events:
        fold(status, event)
    status.offset = result.offset
    status.bad_lines += len(result.bad)
    return status


def load_snapshot(run: StrPath) -> RunStatus:
    try:
        data = read_json(layout.join(run, layout.STATE))
        if not isinstance(data, dict):
            raise ValueError("state.json is not an object")
        return RunStatus.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return RunStatus(run_id=layout.run_id_of(run))


def load_status(run: StrPath) -> RunStatus:
    """The run's recorded state: snapshot plus the log's tail. Liveness is judged elsewhere."""
    return fold_tail(run, load_snapshot(run))


def save_snapshot(run: StrPath, status: RunStatus) -> None:
    write_json_atomic(layout.join(run, layout.STATE), status.to_dict())


def observe(run: StrPath, *, now: float | None = None) -> RunStatus:
    """The run's state as recorded, corrected for a supervisor that is gone or frozen.

    A run whose supervisor died reads ``lost`` (and its running tasks ``lost``) even before the
    watchdog has written so; nothing waits on a run that cannot finish.
    """
    status = load_status(run)
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
    if not isinstance(pid, int) or not procs.is_alive(pid, start_time):
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
    try:
        data = read_json(layout.join(run, layout.SUPERVISOR))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
