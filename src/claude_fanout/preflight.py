"""What plan parsing cannot see, checked on this machine before a run (or a resume) starts:
every shell task's program exists, and writers have a git working tree.

Separate from :mod:`claude_fanout.plan` because these checks read the machine (PATH, files,
git), while a plan parses the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from claude_fanout.errors import PlanError
from claude_fanout.plan import TaskKind

if TYPE_CHECKING:
    from pathlib import Path

    from claude_fanout.plan import Plan, Task


def check_runnable(plan: Plan, *, project: Path, env: Mapping[str, str] | None = None) -> None:
    """What parsing cannot see, checked on this machine before a run starts (one PlanError, as
    parsing's): every shell task's program exists, and writers have a git working tree.

    ``env`` is the environment the workers inherit (default: this process's). Shell tasks run in
    the project root, so a relative program path starts there. A program given as a path in a
    task that has ``deps`` is checked only when the task starts: an earlier task may build it.
    """
    project = project.resolve()
    inherited = os.environ if env is None else env
    for task in plan.tasks:
        if task.kind is TaskKind.SHELL:
            _check_program(task, project=project, env={**inherited, **task.env})
    writer = next((task for task in plan.tasks if task.write), None)
    if writer is not None:
        from claude_fanout.git import repo

        try:
            repo.repo_root(project)
        except repo.GitError as exc:
            raise PlanError(str(exc), task=writer.id, field="write") from None


def _check_program(task: Task, *, project: Path, env: Mapping[str, str]) -> None:
    import shutil

    program = task.argv[0]
    if "/" in program:
        path = project / program  # an absolute program stays itself
        if task.deps and not path.exists():
            return
        if not path.is_file():
            where = "" if os.path.isabs(program) else " (shell tasks run in the project root)"
            raise PlanError(
                f"no program at {path}{where}; fix the path", task=task.id, field="argv"
            )
        if not os.access(path, os.X_OK):
            raise PlanError(
                f"{path} is not executable; chmod +x it, or put its interpreter first "
                f'(["sh", "{program}"])',
                task=task.id,
                field="argv",
            )
        return
    # Like the worker's exec: its PATH, relative entries taken from its cwd (the project root).
    search = os.pathsep.join(os.path.join(project, d) for d in os.get_exec_path(dict(env)))
    if shutil.which(program, path=search) is None:
        raise PlanError(
            f"no program '{program}' on PATH; install it, fix the name, or give its path",
            task=task.id,
            field="argv",
        )
