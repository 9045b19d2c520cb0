"""Task and run states, and the event kinds of ``events.jsonl``. Dependency-free on purpose."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "pending"
    WAITING_RETRY = "waiting_retry"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    LOST = "lost"
    # A claude worker stopped at its max_turns or max_cost_usd, or never started because the
    # run's budget was spent.
    OVER_BUDGET = "over_budget"

    @property
    def terminal(self) -> bool:
        return self not in _LIVE_TASK_STATES


_LIVE_TASK_STATES = frozenset({TaskState.PENDING, TaskState.WAITING_RETRY, TaskState.RUNNING})


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.STARTING, RunState.RUNNING)


class EventType:
    """Event kinds of ``events.jsonl``: plain string constants, not an enum, because every hook
    call imports this module and each enum class costs it 0.15 ms."""

    RUN_CREATED = "run_created"
    SUPERVISOR_STARTED = "supervisor_started"
    TASK_STARTED = "task_started"
    TASK_EXITED = "task_exited"
    TASK_RETRY = "task_retry"
    TASK_SKIPPED = "task_skipped"
    CANCEL_REQUESTED = "cancel_requested"
    RUN_FINISHED = "run_finished"
    RUN_RESUMED = "run_resumed"
    SUPERVISOR_LOST = "supervisor_lost"
    ERROR = "error"
    # Claude workers: tokens, turns and cost of one attempt (from the CLI's result).
    TASK_USAGE = "task_usage"
    # Claude workers while they run: usage of the running attempt so far (cumulative, replacing
    # the previous record's) and what the worker is doing now (``doing``: one line).
    TASK_PROGRESS = "task_progress"
    # Writers: the git worktree a task runs in, the commit holding its changes, the merge-back.
    WORKTREE_CREATED = "worktree_created"
    WORKTREE_COMMITTED = "worktree_committed"
    RUN_MERGED = "run_merged"
    # Directives: published by the plan, the runner or a worker; evaluated by the hooks.
    CLAIM = "claim"
    REPLACE = "replace"
    NOTICE = "notice"
    # Hooks: the Conductor session a run reports to, a hook's own failure (fail open).
    CONDUCTOR = "conductor"
    # A Conductor let go of a run it could wait for no longer (a headless session past its Stop
    # budget): the run finishes on its own, no session's end cancels it.
    CONDUCTOR_RELEASED = "conductor_released"
    HOOK_ERROR = "hook_error"
