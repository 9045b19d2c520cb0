"""One exception base for everything fanout raises on purpose.

Every message names what failed, the culprit (path, task, field, pid) and the remedy, on one line,
because the CLI prints ``str(error)`` as the whole story unless ``--debug`` is given.
"""

from __future__ import annotations


class FanoutError(Exception):
    """Base of all deliberate fanout errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class PlanError(FanoutError):
    """A plan failed validation; nothing was started."""

    exit_code = 2

    def __init__(self, message: str, *, task: str | None = None, field: str | None = None) -> None:
        where = "plan"
        if task is not None:
            where += f": task {task}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.detail = message
        self.task = task
        self.field = field


class StoreError(FanoutError):
    """The run store is missing, unsafe or unreadable."""


class RunNotFoundError(StoreError):
    """No run matches the id the user gave."""


class UnsafePathError(StoreError):
    """A path in the run store is a symlink or owned by someone else: refused, never followed."""


class RequestError(FanoutError):
    """A `/fanout` request that cannot start (its syntax, its paths); nothing was started."""

    exit_code = 2
