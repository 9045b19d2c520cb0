"""Entry of a worker process for the ``python`` kind (``shell`` runs its argv, and ``claude`` the
CLI itself: the supervisor starts both directly).

    python -m claude_fanout.worker RUN_DIR TASK_ID

Started by the supervisor as the leader of its own process group, output to ``workers/<id>/log``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from claude_fanout.errors import FanoutError
from claude_fanout.plan import TaskKind, load_plan
from claude_fanout.store.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m claude_fanout.worker RUN_DIR TASK_ID", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]))
    try:
        task = load_plan(run.plan_path, project=run.project).task(args[1])
    except (FanoutError, KeyError) as exc:
        print(
            f"fanout worker: cannot load task {args[1]} from {run.plan_path}: {exc}",
            file=sys.stderr,
        )
        return 2
    out_dir = run.out_dir(task.id)
    if task.kind is TaskKind.PYTHON:
        from claude_fanout.executors.python import run_python_task

        return run_python_task(target=task.target, args=task.args, cwd=run.project, out_dir=out_dir)
    print(
        f"fanout worker: task {task.id} is a {task.kind} task; the supervisor runs those",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
