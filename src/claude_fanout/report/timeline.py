"""What ``fanout report`` shows of a run's history: every attempt of every task, the waits
between them, and the critical path, folded from the run's log in one pass.

The run's state is what every reader gets (``load_status``, corrected by ``runtime.control``);
the report writes nothing into the run but its page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from claude_fanout.errors import StoreError
from claude_fanout.plan import topological_order
from claude_fanout.states import EventType, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.state import load_status

if TYPE_CHECKING:
    from claude_fanout.plan import Plan
    from claude_fanout.store.eventlog import Event
    from claude_fanout.store.rundir import RunDir
    from claude_fanout.store.status import RunStatus

RUNNING = str(TaskState.RUNNING)
LOST = str(TaskState.LOST)


@dataclass
class Attempt:
    """One attempt of a task: from its ``task_started`` to its ``task_exited`` (``end`` None
    while it runs). An attempt that never had a process starts and ends at its record."""

    number: int
    start: float
    end: float | None = None
    state: str = RUNNING
    reason: str | None = None
    exit_code: int | None = None
    not_started: bool = False

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - self.start)


@dataclass
class TaskLine:
    """A task's row of the timeline."""

    id: str
    deps: tuple[str, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    # Each retry's wait: from its ``task_retry`` record to the next start (or the planned one).
    retry_waits: list[tuple[float, float]] = field(default_factory=list)
    # A ``task_skipped`` record: when, the outcome it gave, and why.
    skipped: tuple[float, str, str | None] | None = None
    # When the last of its dependencies ended (None: it has none, or they never ended).
    ready: float | None = None

    @property
    def first_start(self) -> float | None:
        return self.attempts[0].start if self.attempts else None

    def last_end(self, now: float) -> float | None:
        if not self.attempts:
            return None
        end = self.attempts[-1].end
        return now if end is None else end

    def ended(self) -> float | None:
        """When its last attempt ended (None: it never ran, or runs still)."""
        return self.attempts[-1].end if self.attempts else None

    def span_s(self, now: float) -> float:
        """From its first start to its last end (retries and their waits included): what the
        task adds to a path through the dependency graph."""
        first, last = self.first_start, self.last_end(now)
        return 0.0 if first is None or last is None else max(0.0, last - first)

    def run_time_s(self, now: float) -> float:
        """Time its attempts' processes ran, summed."""
        total = 0.0
        for attempt in self.attempts:
            total += max(0.0, (now if attempt.end is None else attempt.end) - attempt.start)
        return total


@dataclass
class Timeline:
    status: RunStatus
    tasks: dict[str, TaskLine]
    begin: float
    end: float
    now: float
    critical: list[str]
    bad_lines: int

    @property
    def critical_s(self) -> float:
        return sum(self.tasks[task_id].span_s(self.now) for task_id in self.critical)


# The records the timeline is made of; every other kind (the bulk of a long log: workers'
# progress, notices) is passed over unparsed.
_KINDS = (
    EventType.RUN_CREATED,
    EventType.TASK_STARTED,
    EventType.TASK_EXITED,
    EventType.TASK_RETRY,
    EventType.TASK_SKIPPED,
    EventType.SUPERVISOR_LOST,
    EventType.RUN_RESUMED,
)
_SKIP = tuple(
    f'"type":"{value}"}}'.encode()
    for name, value in vars(EventType).items()
    if name.isupper() and isinstance(value, str) and value not in _KINDS
)


def read_timeline(run: RunDir, plan: Plan | None, *, now: float | None = None) -> Timeline:
    """The run's state and its timeline.

    The attempts come from one read of the log (its ``task_started`` / ``task_exited`` /
    ``task_retry`` / ``task_skipped`` records); the state is the run's fold as every reader
    gets it (``load_status``: snapshot + tail, then the liveness correction of ``observe``).
    Raises ``StoreError`` for a log that is missing or holds no ``run_created`` record (damaged,
    or not a run's log), before anything is read further or written.
    """
    from claude_fanout.runtime.control import judge_liveness

    wall = time.time() if now is None else now
    if not run.events_path.is_file():
        raise StoreError(
            f"run {run.run_id}: no {run.events_path.name} in {run.path}; not a fanout run "
            "(see 'fanout runs')"
        )
    result = read_events(run.events_path, skip=_SKIP)
    created = next(
        (e for e in result.events if e.get("type") == EventType.RUN_CREATED and e.get("ts")), None
    )
    if created is None:
        raise StoreError(
            f"run {run.run_id}: its log {run.events_path} is damaged: no run_created record "
            f"among {len(result.events)} readable records ({len(result.bad)} unreadable lines); "
            "nothing to report"
        )
    status = judge_liveness(run, load_status(run), now=wall)
    builder = _Builder(status)
    for event in result.events:
        builder.take(event)
    lines = builder.finish(status, plan, wall)
    begin = status.started or status.created or float(created["ts"])
    end = status.finished if status.state.terminal and status.finished else wall
    for line in lines.values():
        for attempt in line.attempts:
            end = max(end, attempt.end or attempt.start)
    return Timeline(
        status=status,
        tasks=lines,
        begin=begin,
        end=max(end, begin),
        now=wall,
        critical=critical_path(lines, plan, wall),
        bad_lines=status.bad_lines,
    )


class _Builder:
    """Attempts and waits, record by record (the run's fold is kept alongside)."""

    def __init__(self, status: RunStatus) -> None:
        self.status = status
        self.lines: dict[str, TaskLine] = {}
        self.open: dict[str, Attempt] = {}

    def take(self, event: Event) -> None:
        kind = event.get("type")
        ts = event.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            return
        if kind in (EventType.SUPERVISOR_LOST, EventType.RUN_RESUMED):
            # Whatever the old supervisor left running ended with it.
            for open_id in list(self.open):
                self._close(open_id, float(ts), LOST, _text(event.get("reason")), None)
            return
        task_id = event.get("task")
        if not isinstance(task_id, str) or task_id not in self.status.tasks:
            return
        line = self.lines.setdefault(task_id, TaskLine(id=task_id))
        if kind == EventType.TASK_STARTED:
            self._started(line, event, float(ts))
        elif kind == EventType.TASK_EXITED:
            self._exited(line, event, float(ts))
        elif kind == EventType.TASK_RETRY:
            delay = event.get("delay_s")
            wait = float(delay) if isinstance(delay, int | float) and delay > 0 else 0.0
            line.retry_waits.append((float(ts), float(ts) + wait))
        elif kind == EventType.TASK_SKIPPED:
            outcome = _text(event.get("outcome")) or str(TaskState.SKIPPED)
            line.skipped = (float(ts), outcome, _text(event.get("reason")))

    def _started(self, line: TaskLine, event: Event, ts: float) -> None:
        if line.id in self.open:  # a start without the previous attempt's exit: it was lost
            self._close(line.id, ts, LOST, None, None)
        number = event.get("attempt")
        if not isinstance(number, int) or isinstance(number, bool):
            number = len(line.attempts) + 1
        if line.retry_waits and line.retry_waits[-1][0] <= ts:
            began, _ = line.retry_waits[-1]
            line.retry_waits[-1] = (began, ts)
        attempt = Attempt(number=number, start=ts)
        line.attempts.append(attempt)
        self.open[line.id] = attempt

    def _exited(self, line: TaskLine, event: Event, ts: float) -> None:
        outcome = _text(event.get("outcome")) or str(TaskState.FAILED)
        reason = _text(event.get("reason"))
        code = event.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        if event.get("not_started") is True or line.id not in self.open:
            number = event.get("attempt")
            if not isinstance(number, int) or isinstance(number, bool):
                number = len(line.attempts) + 1
            line.attempts.append(
                Attempt(number, ts, ts, outcome, reason, exit_code, not_started=True)
            )
            return
        self._close(line.id, ts, outcome, reason, exit_code)

    def _close(
        self, task_id: str, ts: float, state: str, reason: str | None, exit_code: int | None
    ) -> None:
        attempt = self.open.pop(task_id)
        attempt.end = max(ts, attempt.start)
        attempt.state = state
        attempt.reason = reason
        attempt.exit_code = exit_code

    def finish(self, status: RunStatus, plan: Plan | None, now: float) -> dict[str, TaskLine]:
        """Every task of the run in plan order, attempts still open settled by its state."""
        for task_id, attempt in self.open.items():
            task = status.tasks[task_id]
            if task.state is not TaskState.RUNNING:  # lost with its supervisor
                attempt.end = max(task.ended or status.finished or now, attempt.start)
                attempt.state = str(task.state)
                attempt.reason = task.reason
        order = list(plan.ids) if plan is not None else []
        order += [task_id for task_id in status.tasks if task_id not in order]
        lines: dict[str, TaskLine] = {}
        for task_id in order:
            if task_id not in status.tasks:
                continue
            line = self.lines.get(task_id) or TaskLine(id=task_id)
            if plan is not None and task_id in plan.ids:
                line.deps = plan.task(task_id).deps
            lines[task_id] = line
        for line in lines.values():
            ends = [lines[dep].ended() for dep in line.deps if dep in lines]
            if line.deps and ends and all(end is not None for end in ends):
                line.ready = max(end for end in ends if end is not None)
        return lines


def critical_path(lines: dict[str, TaskLine], plan: Plan | None, now: float) -> list[str]:
    """The chain of dependencies whose tasks' spans add up to the most: what bounded the run.
    Without a plan (or one that no longer parses) every task stands alone."""
    order = [task.id for task in topological_order(plan)] if plan is not None else list(lines)
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for task_id in order:
        line = lines.get(task_id)
        if line is None:
            continue
        before = [dep for dep in line.deps if dep in best]
        prev = max(before, key=lambda dep: best[dep]) if before else None
        best[task_id] = line.span_s(now) + (best[prev] if prev is not None else 0.0)
        via[task_id] = prev
    if not best or max(best.values()) <= 0:
        return []
    node: str | None = max(best, key=lambda task_id: best[task_id])
    path: list[str] = []
    while node is not None:
        path.append(node)
        node = via[node]
    return path[::-1]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
