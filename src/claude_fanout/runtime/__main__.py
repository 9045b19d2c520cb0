"""The entry of a run's supervisor process: ``python -m claude_fanout.runtime RUN_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from claude_fanout.config import load_config
from claude_fanout.plan import load_plan
from claude_fanout.runtime.scheduler import Scheduler
from claude_fanout.states import RunState
from claude_fanout.store.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m claude_fanout.runtime RUN_DIR", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]).resolve())
    run.check()
    plan = load_plan(run.plan_path, project=run.project)
    final = Scheduler(run, plan, config=load_config(run.project)).serve()
    return 0 if final is RunState.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
