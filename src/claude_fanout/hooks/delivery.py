"""What a Conductor session has been told about a run, and what it has not heard yet.

Each (run, session) pair has a cursor file, ``sessions/<session_id>.json`` in the run directory:
the log offset read so far, the final state already reported per task, whether the final
summary was delivered, and the Stop hook's budget. It is read and rewritten under an exclusive
``flock``, so hooks Claude Code runs in parallel never report one result twice.

The text that tells it is ``report.py`` (worker output fenced as data, sizes capped), which
imports this module, never the other way round; hooks import it only once there is news, so a
tool call with nothing new pays for neither. The few plain lines a hook with no news still needs
(``progress``, ``name``, ``relative``) are here for that reason.
"""

from __future__ import annotations

import json
import os
import re

from claude_fanout.states import TaskState
from claude_fanout.store import active, layout
from claude_fanout.store.files import make_private_dir, open_private

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.state import RunStatus

    # (run path, status, tasks newly finished, new notices)
    News = tuple[str, RunStatus, list[str], list[str]]
    # The same, and whether the run is done (its final delivery).
    Final = tuple[str, RunStatus, list[str], list[str], bool]


class Cursor:
    """Locked read-modify-write of one session's cursor for one run (a context manager)."""

    def __init__(self, run_path: str, session_id: str) -> None:
        self.path = os.path.join(layout.join(run_path, layout.SESSIONS), session_id + ".json")
        self._run_path = run_path
        self._fd = -1
        self.data: dict[str, Any] = {}

    def __enter__(self) -> Cursor:
        make_private_dir(layout.join(self._run_path, layout.SESSIONS))
        self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_EX)
        raw = os.pread(self._fd, 1 << 20, 0)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        self.data = data if isinstance(data, dict) else {}
        self.data.setdefault("told", {})
        self._before = json.dumps(self.data, sort_keys=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            text = json.dumps(self.data, sort_keys=True)
            if exc[0] is None and text != self._before:
                data = text.encode()
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, data, 0)
        finally:
            os.close(self._fd)

    @property
    def told(self) -> dict[str, str]:
        told = self.data["told"]
        return told if isinstance(told, dict) else {}


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
    worker = layout.join(run_path, layout.WORKERS, task_id)
    out = layout.out_dir(run_path, task_id)
    for name in ("result.md", "result.json"):
        candidate = os.path.join(out, name)
        if _plain_file(candidate, worker, out):
            return candidate
    log = os.path.join(worker, "log")
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


def peek_told(run_path: str, session_id: str) -> dict[str, str]:
    """The cursor's ``told`` map, read without the lock (for polling only)."""
    path = os.path.join(layout.join(run_path, layout.SESSIONS), session_id + ".json")
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read() or b"{}")
    except (OSError, ValueError):
        return {}
    told = data.get("told") if isinstance(data, dict) else None
    return told if isinstance(told, dict) else {}


def collect_news(ctx: HookContext, runs: list[tuple[str, RunStatus]]) -> list[News]:
    """(run path, status, finished tasks, notices) of each of ``runs`` (this session's) with
    news the session has not been told; marks them told."""
    if ctx.session_id is None:
        return []
    found = []
    for run_path, status in runs:
        with Cursor(run_path, ctx.session_id) as cursor:
            finished, notices = news(status, cursor)
        if finished or notices:
            found.append((run_path, status, finished, notices))
    return found


def take_final(ctx: HookContext, runs: list[tuple[str, RunStatus]]) -> tuple[list[Final], bool]:
    """What the session has not been told of ``runs``, each finished run's final delivery
    included (taken once: marked delivered, and the run no longer served); and whether every
    run not yet finally delivered is done."""
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
        all_done = all_done and done
        if fresh or notices or done:
            pending.append((path, status, fresh, notices, done))
    for _path, status, _fresh, _notices, done in pending:
        if done:
            active.clear(ctx.project, status.run_id)
    return pending, all_done
