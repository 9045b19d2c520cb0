"""The ``shell`` task kind: run the task's argv in the project directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from claude_fanout.executors.base import Command, OutputExecutor
from claude_fanout.plan import Task, TaskKind


class ShellExecutor(OutputExecutor):
    kind: ClassVar[TaskKind] = TaskKind.SHELL

    def command(self, task: Task, env: Mapping[str, str]) -> Command:
        return Command(argv=list(task.argv), cwd=self.context.run.project)
