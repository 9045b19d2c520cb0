"""What the log says of a run and of each of its tasks: ``RunStatus`` and ``TaskStatus``.

The data the fold (``store.state``) produces and ``state.json`` holds, with its JSON round trip.
Stdlib only, plain classes (the hooks read them).
"""

from __future__ import annotations

from claude_fanout.states import RunState, TaskState

# Hook path: plain classes, not dataclasses (whose import alone costs a hook 8 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_VERSION = 4
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
        "doing",
        "ended",
        "exit_code",
        "id",
        "live",
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
        live: dict[str, float] | None = None,
        doing: str | None = None,
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
        # Claude workers while they run: USAGE_KEYS of the running attempt so far (``task_progress``
        # records; None once its ``task_usage`` arrived) and what it is doing now (one line).
        self.live = live
        self.doing = doing

    def spent(self) -> dict[str, float] | None:
        """USAGE_KEYS of every attempt, the running one's so far included (None: nothing yet)."""
        if self.live is None:
            return self.usage
        return add_usage(self.usage, self.live)

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
        data["live"] = None if self.live is None else dict(self.live)
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

    def spent(self) -> dict[str, float] | None:
        """USAGE_KEYS of the whole run so far: finished attempts and what running workers have
        spent (``task_progress``). None until a worker reported usage."""
        total = self.usage
        for task in self.tasks.values():
            if task.live is not None:
                total = add_usage(total, task.live)
        return total

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


def add_usage(total: dict[str, float] | None, more: dict[str, float]) -> dict[str, float]:
    """``total + more`` key by key (a new dict); integral counts stay ints."""
    out = dict(total or {})
    for key, value in more.items():
        out[key] = out.get(key, 0) + value
        if key != "cost_usd":
            out[key] = int(out[key])
    return out
