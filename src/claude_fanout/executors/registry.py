"""Every task kind's executor, looked up by kind: the one place that names them."""

from __future__ import annotations

from collections.abc import Callable

from claude_fanout.executors.base import Executor, RunContext
from claude_fanout.plan import TaskKind


def executors_for(context: RunContext) -> dict[TaskKind, Executor]:
    """One executor per task kind, for one run."""
    from claude_fanout.executors.claude import ClaudeExecutor
    from claude_fanout.executors.python import PythonExecutor
    from claude_fanout.executors.shell import ShellExecutor

    kinds: tuple[Callable[[RunContext], Executor], ...] = (
        ShellExecutor,
        PythonExecutor,
        ClaudeExecutor,
    )
    executors = [make(context) for make in kinds]
    return {executor.kind: executor for executor in executors}
