"""A run's state, folded from its event log, and the ``state.json`` snapshot that caches the fold.

The fold is a pure function of the events, so the snapshot is only a cache: a reader loads it and
folds the tail after its offset, and any process holding a fold publishes it when it is further
along than the snapshot (the supervisor as it goes, a reader that folded a long tail). Reading a
run's state therefore costs the same at 10 events and at 100,000, whoever appended them. No
process control here (liveness and signals: ``runtime.control``). Stdlib only: hooks read state.
"""

from __future__ import annotations

import os

from claude_fanout import defaults
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store import layout
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.files import read_json, write_json_atomic
from claude_fanout.store.status import USAGE_KEYS, RunStatus, TaskStatus, add_usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.store.eventlog import Event
    from claude_fanout.store.files import StrPath

# The run directory is opened only to lock it: never through a symlink.
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS |= getattr(os, "O_CLOEXEC", 0)
_MAX_ERRORS = 20
_MAX_NOTICES = 50


def fold(status: RunStatus, event: Event) -> None:
    """Apply one event to ``status`` in place.

    The log is written by several processes and may be damaged, so every field is checked:
    unknown event types are ignored and a malformed field reads as absent, never raises.
    """
    kind = event.get("type")
    handler = _RUN_EVENTS.get(kind) if isinstance(kind, str) else None
    if handler is not None:
        handler(status, event, _number(event.get("ts")))
        return
    task_handler = _TASK_EVENTS.get(kind) if isinstance(kind, str) else None
    task_id = event.get("task")
    task = status.tasks.get(task_id) if isinstance(task_id, str) else None
    if task_handler is not None and task is not None:
        task_handler(status, task, event, _number(event.get("ts")))


def _run_created(status: RunStatus, event: Event, ts: float | None) -> None:
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


def _conductor(status: RunStatus, event: Event, ts: float | None) -> None:
    conductor = {k: event.get(k) for k in ("session_id", "pid", "start_time")}
    if isinstance(conductor["pid"], int) and isinstance(conductor["session_id"], str):
        status.conductor = conductor


def _conductor_released(status: RunStatus, event: Event, ts: float | None) -> None:
    if (status.conductor or {}).get("session_id") == event.get("session_id"):
        status.conductor = None


def _notice(status: RunStatus, event: Event, ts: float | None) -> None:
    text = _text(event.get("text"))
    if text is not None:
        task_id = event.get("task")
        who = task_id if isinstance(task_id, str) else "fanout"
        status.notices = [*status.notices, f"{who}: {text[:500]}"][-_MAX_NOTICES:]
        status.notice_count += 1


def _supervisor_started(status: RunStatus, event: Event, ts: float | None) -> None:
    status.started = status.started or ts
    if not status.state.terminal:
        status.state = RunState.RUNNING


def _cancel_requested(status: RunStatus, event: Event, ts: float | None) -> None:
    status.cancel_requested = True


def _run_finished(status: RunStatus, event: Event, ts: float | None) -> None:
    try:
        state = RunState(str(event.get("state")))
    except ValueError:
        state = RunState.FAILED
    status.state = state if state.terminal else RunState.FAILED
    status.finished = ts
    status.reason = _text(event.get("reason"))


def _run_resumed(status: RunStatus, event: Event, ts: float | None) -> None:
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


def _supervisor_lost(status: RunStatus, event: Event, ts: float | None) -> None:
    if not status.state.terminal:
        mark_lost(status, _text(event.get("reason")) or "the supervisor died", ts)


def _error(status: RunStatus, event: Event, ts: float | None) -> None:
    message = _text(event.get("message"))
    if message is not None:
        status.errors = [*status.errors, message][-_MAX_ERRORS:]


def _run_merged(status: RunStatus, event: Event, ts: float | None) -> None:
    status.merge = fold_merge(status.merge, event)


def _claim(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    _add_claims(task, event.get("paths"))


def _replace(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    path, artifact = event.get("path"), event.get("with")
    if isinstance(path, str) and isinstance(artifact, str):
        _add_replaces(task, {path: artifact})


def _task_started(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    attempt = _integer(event.get("attempt"))
    task.state = TaskState.RUNNING
    task.attempt = attempt if attempt is not None else task.attempt + 1
    task.pid = _integer(event.get("pid"))
    task.started = ts
    task.ended = task.exit_code = task.signal = task.reason = None
    task.live = task.doing = None


def _task_exited(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
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
    task.doing = None
    if task.live is not None:  # no ``task_usage`` came (killed, no result): what it spent counts
        _spend(status, task, task.live)
        task.live = None


def _task_retry(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    task.state = TaskState.WAITING_RETRY
    task.reason = _text(event.get("reason"))


def _task_skipped(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    outcome = _ended_state(event.get("outcome"), TaskState.SKIPPED)
    kept = (TaskState.CANCELLED, TaskState.OVER_BUDGET)
    task.state = outcome if outcome in kept else TaskState.SKIPPED
    task.reason = _text(event.get("reason"))


def _task_usage(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    """An attempt's final usage (the CLI's result): it replaces what its progress estimated."""
    counts = _usage_counts(event)
    if counts:
        task.live = None
        _spend(status, task, counts)


def _task_progress(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    """A running attempt's usage so far and what it does now; stale attempts' records ignored."""
    attempt = _integer(event.get("attempt"))
    if task.state != TaskState.RUNNING or (attempt is not None and attempt != task.attempt):
        return
    counts = _usage_counts(event)
    if counts:
        task.live = counts
    doing = _text(event.get("doing"))
    if doing is not None:
        task.doing = doing


def _usage_counts(event: Event) -> dict[str, float]:
    counts: dict[str, float] = {}
    for key in USAGE_KEYS:
        value = _number(event.get(key))
        if value is not None and value >= 0:
            counts[key] = value
    return counts


def _spend(status: RunStatus, task: TaskStatus, counts: dict[str, float]) -> None:
    task.usage = add_usage(task.usage, counts)
    status.usage = add_usage(status.usage, counts)


def _worktree_created(status: RunStatus, task: TaskStatus, event: Event, ts: float | None) -> None:
    """A writer got a worktree: a new one holds nothing committed yet."""
    branch = _text(event.get("branch"))
    if branch is None:
        return
    task.branch = branch
    task.worktree = _text(event.get("path"))
    task.base = _text(event.get("base"))
    task.commit = None
    task.committed = False


def _worktree_committed(
    status: RunStatus, task: TaskStatus, event: Event, ts: float | None
) -> None:
    task.branch = _text(event.get("branch")) or task.branch
    task.commit = _text(event.get("commit"))
    task.committed = True


# What each record does to the run; the records about one task are ignored for an unknown task.
_RUN_EVENTS = {
    EventType.RUN_CREATED: _run_created,
    EventType.CONDUCTOR: _conductor,
    EventType.CONDUCTOR_RELEASED: _conductor_released,
    EventType.NOTICE: _notice,
    EventType.SUPERVISOR_STARTED: _supervisor_started,
    EventType.CANCEL_REQUESTED: _cancel_requested,
    EventType.RUN_FINISHED: _run_finished,
    EventType.RUN_RESUMED: _run_resumed,
    EventType.SUPERVISOR_LOST: _supervisor_lost,
    EventType.ERROR: _error,
    EventType.RUN_MERGED: _run_merged,
}
_TASK_EVENTS = {
    EventType.CLAIM: _claim,
    EventType.REPLACE: _replace,
    EventType.TASK_STARTED: _task_started,
    EventType.TASK_EXITED: _task_exited,
    EventType.TASK_RETRY: _task_retry,
    EventType.TASK_SKIPPED: _task_skipped,
    EventType.TASK_USAGE: _task_usage,
    EventType.TASK_PROGRESS: _task_progress,
    EventType.WORKTREE_CREATED: _worktree_created,
    EventType.WORKTREE_COMMITTED: _worktree_committed,
}


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


def mark_lost(status: RunStatus, reason: str, ts: float | None) -> None:
    status.state = RunState.LOST
    status.reason = reason
    status.finished = ts
    for task in status.tasks.values():
        if task.state is TaskState.RUNNING:
            task.state = TaskState.LOST
            task.ended = ts
            task.reason = reason
            task.doing = None
            if task.live is not None:  # what a lost worker spent still counts
                _spend(status, task, task.live)
                task.live = None


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
    """The run's recorded state: the snapshot plus the log's tail. Liveness is judged elsewhere.

    Whoever appended the tail (the supervisor, a worker's ``fanout publish``, a hook's own
    record), a reader that folds ``SNAPSHOT_TAIL_BYTES`` or more of it publishes what it now holds
    as the snapshot, so the next reader starts there: a reader's cost stays flat in the log's
    length. The published status is the plain fold; callers correct their own copy afterwards.
    """
    snapshot = load_snapshot(run)
    start = snapshot.offset
    status = fold_tail(run, snapshot)
    folded = status.offset - (start if status is snapshot else 0)
    if folded >= defaults.SNAPSHOT_TAIL_BYTES:
        publish_snapshot(run, status)
    return status


def unfolded_bytes(run: StrPath, offset: int) -> int:
    """How many bytes of the run's log lie past ``offset`` (all of it if the log is shorter)."""
    size = _log_size(run)
    return size - offset if size >= offset else size


def _log_size(run: StrPath) -> int:
    try:
        return os.stat(layout.join(run, layout.EVENTS)).st_size
    except OSError:
        return 0


def save_snapshot(run: StrPath, status: RunStatus) -> None:
    """Write ``status`` as the snapshot, unconditionally (``publish_snapshot`` compares first)."""
    write_json_atomic(layout.join(run, layout.STATE), status.to_dict())


def publish_snapshot(run: StrPath, status: RunStatus) -> bool:
    """Make ``status`` (a plain fold of the log up to ``status.offset``) the run's snapshot unless
    the one there is as far along already; True when the snapshot now reaches ``status.offset``.

    The snapshot is only a cache of the fold up to its offset, so any process holding such a pair
    may publish it: the supervisor, and any reader that folded a long tail. Publishers take an
    exclusive ``flock`` on the run directory and compare offsets under it, so the snapshot never
    moves back. One that finds the lock taken returns False at once (hooks never wait on it);
    a write that fails (a read-only store) returns False too: the snapshot stays a valid cache.
    A run directory that is a symlink is never locked nor written through (False).
    """
    import fcntl

    try:
        fd = os.open(os.fspath(run), _DIR_FLAGS)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        published = load_snapshot(run).offset
        # One past the log's end belongs to another log (the log never shrinks): replace it.
        if status.offset <= published <= _log_size(run):
            return True
        save_snapshot(run, status)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock
