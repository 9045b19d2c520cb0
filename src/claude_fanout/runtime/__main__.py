"""The entry of a run's supervisor process: ``python -m claude_fanout.runtime RUN_DIR``."""

from __future__ import annotations

import sys
from pathlib import Path

from claude_fanout.cluster import chosen_backend
from claude_fanout.config import Config, load_config
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, load_plan
from claude_fanout.runtime.scheduler import Scheduler
from claude_fanout.states import EventType, RunState
from claude_fanout.store.rundir import RunDir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m claude_fanout.runtime RUN_DIR", file=sys.stderr)
        return 2
    run = RunDir(Path(args[0]).resolve())
    run.check()
    plan = load_plan(run.plan_path, project=run.project)
    config = load_config(run.project)
    backend, address = chosen_backend(run, config)
    if backend == "ray":
        return _serve_on_ray(run, plan, config, address)
    final = Scheduler(run, plan, config=config).serve()
    return 0 if final is RunState.SUCCEEDED else 1


def _serve_on_ray(run: RunDir, plan: Plan, config: Config, address: str) -> int:
    """The run with its tasks on a Ray cluster: this process is the Ray driver. A cluster that
    cannot be reached fails the run before anything starts, with one line."""
    from claude_fanout.cluster.seam import RaySeam, connect, require_repo
    from claude_fanout.cluster.shipping import shipped_code
    from claude_fanout.git import writers

    try:
        require_repo(run.project)
        connect(address, shipped_code() if config.ray_ship else None)
    except FanoutError as exc:
        return _failed_at_start(run, exc)
    schedulers: list[Scheduler] = []
    seam = RaySeam(
        run,
        plan,
        snapshot_of=lambda: writers.run_snapshot(run, schedulers[0].context.worktrees),
        ship_cli=config.ray_ship,
    )
    try:
        schedulers.append(Scheduler(run, plan, config=config, procs=seam))
        try:
            seam.prepare()
        except FanoutError as exc:
            return _failed_at_start(run, exc)
        final = schedulers[0].serve()
    finally:
        seam.shutdown()
    return 0 if final is RunState.SUCCEEDED else 1


def _failed_at_start(run: RunDir, exc: FanoutError) -> int:
    """The run ends before any task started: recorded, and one line on the supervisor's log
    (what ``fanout run`` shows)."""
    run.log.append(EventType.ERROR, error=str(exc))
    run.log.append(EventType.RUN_FINISHED, state=str(RunState.FAILED), reason=str(exc))
    print(f"fanout: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
