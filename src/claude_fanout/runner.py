"""Starting, observing, waiting for and cancelling runs: the library behind ``fanout`` commands.

Stdlib only, so the hooks can start and observe runs through the same code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from claude_fanout import defaults, procs
from claude_fanout.errors import FanoutError
from claude_fanout.plan import Plan, load_plan, plan_to_json
from claude_fanout.preflight import check_runnable
from claude_fanout.runtime.control import observe, supervisor_info
from claude_fanout.states import EventType, RunState
from claude_fanout.store import active
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.files import write_atomic
from claude_fanout.store.rundir import RunDir, create_run
from claude_fanout.store.status import RunStatus

if TYPE_CHECKING:
    from claude_fanout.store.eventlog import Event


class SupervisorStartError(FanoutError):
    """The supervisor process did not come up."""


@dataclass
class StartedRun:
    run: RunDir
    supervisor: subprocess.Popen[bytes]
    offset: int = 0
    """Where this supervisor's part of the log begins (after a resume, older events precede)."""


def start_run(
    plan: Plan,
    *,
    project: Path,
    env: Mapping[str, str] | None = None,
    conductor: Mapping[str, object] | None = None,
    delivery: str | None = None,
    backend: str | None = None,
) -> StartedRun:
    """Create the run directory, record the plan and start its detached supervisor.

    ``env`` (default: this process's) is the supervisor's environment, which workers inherit.
    ``conductor`` (session_id, pid, start_time) names the Claude Code session that asked for
    the run: its hooks deliver the results there, and the supervisor cancels the run if that
    process dies. ``backend`` ("local", "ray") overrides the project's ``[executor] backend``
    for this run (recorded in the log, so a resume keeps it). A plan that cannot run here
    (``check_runnable``) is refused before anything is created.
    """
    check_runnable(plan, project=project, env=env)
    run = create_run(project)
    write_atomic(run.plan_path, plan_to_json(plan).encode("utf-8"))
    active.mark(run.project, run.run_id)
    run.log.append(
        EventType.RUN_CREATED,
        run_id=run.run_id,
        tasks=list(plan.ids),
        name=plan.name,
        claims={task.id: list(task.claims) for task in plan.tasks if task.claims},
        replaces={task.id: dict(task.replaces) for task in plan.tasks if task.replaces},
        conductor=dict(conductor) if conductor is not None else None,
        delivery=delivery,
        **({"backend": backend} if backend else {}),
    )
    return _launch(run, env)


def resume_run(run: RunDir, *, env: Mapping[str, str] | None = None) -> StartedRun:
    """Start a new supervisor on a run that ended without success (or whose supervisor is lost):
    tasks that succeeded are kept, every other task runs again."""
    status = observe(run)
    if status.state is RunState.SUCCEEDED:
        raise FanoutError(f"run {run.run_id} already succeeded; nothing to resume")
    if not status.state.terminal:
        raise FanoutError(
            f"run {run.run_id} is still {status.state}; 'fanout cancel {run.run_id}' first"
        )
    check_runnable(load_plan(run.plan_path, project=run.project), project=run.project, env=env)
    info = supervisor_info(run)
    if info is not None and isinstance(info.get("pid"), int):
        # A frozen supervisor declared lost must never wake up beside its successor.
        procs.signal_process(info["pid"], info.get("start_time"), signal.SIGKILL)
    active.mark(run.project, run.run_id)
    run.log.append(EventType.RUN_RESUMED, previous=str(status.state), reason=status.reason)
    return _launch(run, env)


def _launch(run: RunDir, env: Mapping[str, str] | None) -> StartedRun:
    offset = os.path.getsize(run.events_path)
    proc = procs.spawn_detached(
        [sys.executable, "-m", "claude_fanout.runtime", str(run.path)],
        cwd=run.project,
        env=os.environ if env is None else env,
        stderr_path=run.supervisor_log_path,
    )
    started = StartedRun(run=run, supervisor=proc, offset=offset)
    _await_supervisor(started)
    return started


def _await_supervisor(started: StartedRun) -> None:
    deadline = time.monotonic() + defaults.SUPERVISOR_START_TIMEOUT_S
    offset = started.offset
    while time.monotonic() < deadline:
        result = read_events(started.run.events_path, offset)
        offset = result.offset
        if any(e.get("type") == EventType.SUPERVISOR_STARTED for e in result.events):
            return
        for event in result.events:
            # Ended before it served (the Ray backend's cluster unreachable): its one line.
            if event.get("type") == EventType.RUN_FINISHED and event.get("reason"):
                raise SupervisorStartError(
                    f"run {started.run.run_id} failed at start: {event['reason']}"
                )
        if procs.reap(started.supervisor) is not None:
            break
        time.sleep(defaults.WAIT_POLL_S)
    detail = _tail(started.run.supervisor_log_path)
    raise SupervisorStartError(
        f"the supervisor of run {started.run.run_id} did not start"
        + (f": {detail}" if detail else "")
        + f"; see {started.run.supervisor_log_path}"
    )


def _tail(path: Path, limit: int = 300) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    lines = text.splitlines()
    return lines[-1][:limit] if lines else ""


class WaitTimeout(FanoutError):
    exit_code = 124


def wait_run(
    run: RunDir,
    *,
    timeout_s: float | None = None,
    on_event: Callable[[Event], None] | None = None,
    poll_s: float = defaults.WAIT_POLL_S,
    offset: int = 0,
) -> RunStatus:
    """Block until the run is finished or lost; ``on_event`` sees every event as it lands."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if on_event is not None:
            result = read_events(run.events_path, offset)
            offset = result.offset
            for event in result.events:
                on_event(event)
        status = observe(run)
        if status.state.terminal:
            if on_event is not None:
                for event in read_events(run.events_path, offset).events:
                    on_event(event)
            return status
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(
                f"run {run.run_id} still {status.state} after {timeout_s:g}s; "
                f"'fanout status {run.run_id}' shows progress"
            )
        time.sleep(poll_s)


# Every task succeeded, but a writer's change is not in the working tree: the merge-back left it
# out (a conflict) or failed. 1 (a task did not succeed) takes precedence.
EXIT_NOT_MERGED = 3


def final_exit_code(status: RunStatus) -> int:
    """``fanout run`` / ``wait``: 0 succeeded and everything merged, ``EXIT_NOT_MERGED``
    succeeded but a change was left out of the working tree, 1 the run did not succeed."""
    if status.state is not RunState.SUCCEEDED:
        return 1
    merge = status.merge or {}
    return EXIT_NOT_MERGED if merge.get("error") or merge.get("conflicts") else 0
