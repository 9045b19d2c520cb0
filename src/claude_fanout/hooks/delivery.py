"""What a Conductor session has been told about a run, and what it has not heard yet.

What was told is kept in the session's cursor (``store.cursor``): the final state reported per
task and the notices counted, so hooks Claude Code runs in parallel never report one result twice.

The text that tells it is ``report.py`` (worker output fenced as data, sizes capped), which
imports this module, never the other way round; hooks import it only once there is news, so a
tool call with nothing new pays for neither. The few plain lines a hook with no news still needs
(``progress``, ``name``, ``relative``) are here for that reason.
"""

from __future__ import annotations

import os
import re

from claude_fanout.states import TaskState
from claude_fanout.store import active, layout
from claude_fanout.store.cursor import Cursor

# What the person was shown of a run (``shown.py``), kept in the cursor's ``shown`` list.
SHOWN_START = "start"
SHOWN_END = "end"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.status import RunStatus

    # (run path, status, tasks newly finished, new notices)
    News = tuple[str, RunStatus, list[str], list[str]]
    # The same, and whether the run is done (its final delivery).
    Final = tuple[str, RunStatus, list[str], list[str], bool]


def news(status: RunStatus, cursor: Cursor) -> tuple[list[str], list[str]]:
    """Tasks whose final state this session has not heard yet, and new notices; marks both told.

    A task's state is final when it is terminal in the (observed) status: a failure followed by
    a retry is not news until the retry ends. Both come from the folded status, so the cost
    does not depend on the log's length. Notices are returned as written: the fence cleans them.
    """
    told = cursor.told
    finished = [
        task_id
        for task_id, task in status.tasks.items()
        if task.state.terminal and told.get(task_id) != str(task.state)
    ]
    for task_id in finished:
        told[task_id] = str(status.tasks[task_id].state)
    cursor.data["told"] = told
    seen = cursor.data.get("notices")
    seen = seen if isinstance(seen, int) and 0 <= seen <= status.notice_count else 0
    fresh = min(status.notice_count - seen, len(status.notices))
    notices = list(status.notices[len(status.notices) - fresh :])
    cursor.data["notices"] = status.notice_count
    return finished, notices


def relative(path: str, project: str) -> str:
    try:
        rel = os.path.relpath(path, project)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def artifact(run_path: str, task_id: str) -> str | None:
    """The file that holds a task's result, best first: result.md, result.json, its log.

    Nothing is followed through a symlink: a worker that replaced its ``out/`` (or a result)
    with a link to another file must not get that file's content into the Conductor's context.
    """
    worker = layout.worker_dir(run_path, task_id)
    out = layout.out_dir(run_path, task_id)
    for name in (layout.RESULT, layout.RESULT_JSON):
        candidate = os.path.join(out, name)
        if _plain_file(candidate, worker, out):
            return candidate
    log = os.path.join(worker, layout.WORKER_LOG)
    return log if _plain_file(log, worker) else None


def _plain_file(path: str, *dirs: str) -> bool:
    import stat

    try:
        if any(stat.S_ISLNK(os.lstat(d).st_mode) for d in dirs):
            return False
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def name(value: object) -> str:
    """An identifier from the log (task id, branch, commit): only identifier characters."""
    return re.sub(r"[^\w./:@+-]", "_", str(value))[:120]


def progress(status: RunStatus, now: float) -> str:
    """``2 of 5 workers still at work: W2 running 12s, W3 pending``, or '' when none are."""
    live = [(tid, task) for tid, task in status.tasks.items() if not task.state.terminal]
    if not live:
        return ""
    bits = []
    for task_id, task in live[:12]:
        if task.state is TaskState.RUNNING and task.started is not None:
            bits.append(f"{name(task_id)} running {max(0.0, now - task.started):.0f}s")
        else:
            bits.append(f"{name(task_id)} {task.state}")
    if len(live) > 12:
        bits.append(f"… {len(live) - 12} more")
    return f"{len(live)} of {len(status.tasks)} workers still at work: {', '.join(bits)}"


def untold(status: RunStatus, told: dict[str, str]) -> bool:
    """Whether any task has reached a final state this session has not heard of."""
    return any(
        task.state.terminal and told.get(task_id) != str(task.state)
        for task_id, task in status.tasks.items()
    )


def to_show(run_path: str, status: RunStatus, cursor: Cursor, finished: list[str]) -> list[str]:
    """The lines the person has not been shown of a run (``shown.for_run``), marked shown.
    ``shown.py`` is imported only when there may be one: a start or end not shown yet, or a
    worker the session is just being told of."""
    seen = cursor.data.get("shown")
    if (
        not finished
        and isinstance(seen, list)
        and SHOWN_START in seen
        and (not status.state.terminal or SHOWN_END in seen)
    ):
        return []
    from claude_fanout.hooks import shown

    return shown.for_run(run_path, status, cursor, finished)


def collect_news(
    ctx: HookContext, runs: list[tuple[str, RunStatus]], *, person: list[str] | None = None
) -> list[News]:
    """(run path, status, finished tasks, notices) of each of ``runs`` (this session's) with
    news the session has not been told; marks them told. ``person`` gets the lines the person
    has not been shown of these runs (``shown.py``), marked shown in the same cursor."""
    if ctx.session_id is None:
        return []
    found = []
    for run_path, status in runs:
        with Cursor(run_path, ctx.session_id) as cursor:
            finished, notices = news(status, cursor)
            if person is not None:
                person.extend(to_show(run_path, status, cursor, finished))
        if finished or notices:
            found.append((run_path, status, finished, notices))
    return found


def take_final(
    ctx: HookContext, runs: list[tuple[str, RunStatus]], *, person: list[str] | None = None
) -> tuple[list[Final], bool]:
    """What the session has not been told of ``runs``, each finished run's final delivery
    included (taken once: marked delivered, and the run no longer served); and whether every
    run not yet finally delivered is done. ``person`` as for ``collect_news``."""
    assert ctx.session_id is not None
    pending: list[Final] = []
    all_done = True
    for path, status in runs:
        with Cursor(path, ctx.session_id) as cursor:
            if cursor.data.get("final"):
                continue
            fresh, notices = news(status, cursor)
            done = status.state.terminal
            if done:
                cursor.data["final"] = True
            if person is not None:
                person.extend(to_show(path, status, cursor, fresh))
        all_done = all_done and done
        if fresh or notices or done:
            pending.append((path, status, fresh, notices, done))
    for _path, status, _fresh, _notices, done in pending:
        if done:
            active.clear(ctx.project, status.run_id)
    return pending, all_done
