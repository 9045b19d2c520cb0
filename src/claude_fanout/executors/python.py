"""The ``python`` task kind: call ``module:function(**args)`` and save its return value as JSON."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from claude_fanout.executors.base import Command, OutputExecutor
from claude_fanout.plan import Task, TaskKind
from claude_fanout.store.files import write_atomic


def run_python_task(*, target: str, args: Mapping[str, Any], cwd: Path, out_dir: Path) -> int:
    """Exit status for the worker process: 0 on success, 1 if the call raised, 2 if unloadable."""
    module_name, _, func_name = target.partition(":")
    if str(cwd) not in sys.path:
        sys.path.insert(0, str(cwd))
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        print(f"fanout: cannot load {target}: {exc}; check the task's 'target'", file=sys.stderr)
        return 2
    if not callable(func):
        print(f"fanout: {target} is not callable; point 'target' at a function", file=sys.stderr)
        return 2
    try:
        value = func(**args)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except Exception:  # noqa: BLE001 - the task's own failure: its traceback belongs in its log
        traceback.print_exc()
        return 1
    try:
        data = json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        print(f"fanout: {target} returned a value JSON cannot hold: {exc}", file=sys.stderr)
        return 1
    write_atomic(out_dir / "result.json", (data + "\n").encode("utf-8"))
    print(f"fanout: {target} returned; result in {out_dir / 'result.json'}")
    return 0


async def _await(value: Any) -> Any:
    return await value


class PythonExecutor(OutputExecutor):
    """Runs the task in a fresh interpreter (``python -m claude_fanout.worker``)."""

    kind: ClassVar[TaskKind] = TaskKind.PYTHON

    def command(self, task: Task, env: Mapping[str, str]) -> Command:
        run = self.context.run
        return Command(
            argv=[sys.executable, "-m", "claude_fanout.worker", str(run.path), task.id],
            cwd=run.project,
        )
