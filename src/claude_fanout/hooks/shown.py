"""What the person at the terminal is shown of a run: the hooks' ``systemMessage``.

Claude Code (2.1.332) shows a hook's ``systemMessage`` in the session (``<Event> says: …``) and
never sends it to the model, so it is where fanout tells the person, in a line or two, what the
model is told in full: a run started (its workers, what each does, how to watch it), a worker
failed, a run finished (state, time, cost), a tool call was denied because a worker owns the
file. Each is shown once per session: what was shown is kept in the session's cursor for the
run (``shown``), beside what the model was told (``hooks.delivery``).

Never worker text (results, notices, a failure's reason, which carries a model's last words);
everything else on these lines (task ids, what a task does, paths) goes through
``text.printable`` (no terminal escapes, no control characters) and is cut.

The async Rewake hook cannot show anything (its exit 2 hands its stderr to the model), so what
it has to show waits in the session's outbox, ``.claude/runs/.sessions/<session>.shown``, and
the session's next UserPromptSubmit, which Claude Code runs for the wake itself, shows it.

Imported only when there is something to show. Stdlib only.
"""

from __future__ import annotations

import os

from claude_fanout import defaults, usage
from claude_fanout.hooks.delivery import SHOWN_END, SHOWN_START
from claude_fanout.states import TaskState
from claude_fanout.store import layout
from claude_fanout.text import cut, duration, printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.store.cursor import Cursor
    from claude_fanout.store.status import RunStatus, TaskStatus

PREFIX = "fanout: "
# Cursor keys: the run's start and end were shown; ``deny:<task>`` a denial for that worker.
START = SHOWN_START
END = SHOWN_END
# A worker's end the person hears of as it happens (the rest: in the run's end line).
FAILURES = (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.OVER_BUDGET)


def take(cursor: Cursor, key: str) -> bool:
    """Mark ``key`` shown in ``cursor``; whether it had not been shown before."""
    seen = cursor.data.get("shown")
    seen = [k for k in seen if isinstance(k, str)] if isinstance(seen, list) else []
    if key in seen:
        return False
    cursor.data["shown"] = [*seen, key]
    return True


def for_run(run_path: str, status: RunStatus, cursor: Cursor, finished: list[str]) -> list[str]:
    """What the person has not been shown of a run: its start, workers that failed among
    ``finished`` (those the session is being told of now), its end; marked shown."""
    lines: list[str] = []
    if take(cursor, START) and not status.state.terminal:
        lines.extend(started(status.run_id, task_summaries(run_path)))
    if status.state.terminal:
        if take(cursor, END):
            lines.append(ended(status))
        return lines
    failed = [
        tid for tid in finished if tid in status.tasks and status.tasks[tid].state in FAILURES
    ]
    if failed:
        lines.append(failures(status, failed))
    return lines


def join(lines: list[str]) -> str | None:
    """The ``systemMessage`` for ``lines``: one per line; None when there is nothing."""
    return "\n".join(lines) if lines else None


# -- the lines --------------------------------------------------------------------------------


def started(run_id: str, tasks: list[tuple[str, str, str]]) -> list[str]:
    """``fanout: run R started 2 workers: W1 src/a.py: review… · W2 …`` and how to watch it;
    ``tasks`` as ``task_summaries`` gives them."""
    rid = printable(run_id, defaults.SHOWN_ID_CHARS)
    listed = " · ".join(
        printable(tid, defaults.SHOWN_ID_CHARS)
        + (f" {printable(where, defaults.SHOWN_TASK_CHARS // 2)}:" if where else "")
        + f" {printable(what, defaults.SHOWN_TASK_CHARS)}"
        for tid, where, what in tasks[: defaults.SHOWN_MAX_TASKS]
    )
    more = len(tasks) - defaults.SHOWN_MAX_TASKS
    tail = f" · +{more} more" if more > 0 else ""
    head = f"{PREFIX}run {rid} started {len(tasks)} worker{'s' * (len(tasks) != 1)}"
    if listed:  # cut what the workers do, never their count or how many are not named
        head += ": " + cut(listed, max(1, defaults.SHOWN_LINE_CHARS - len(head) - 2 - len(tail)))
    return [
        printable(head + tail, defaults.SHOWN_LINE_CHARS),
        f"{PREFIX}watch it live: fanout watch {rid}",
    ]


def failures(status: RunStatus, task_ids: list[str]) -> str:
    """``fanout: run R: worker W1 failed after 3.1s ($0.01); 1 still at work``."""
    rid = printable(status.run_id, defaults.SHOWN_ID_CHARS)
    who = "worker" if len(task_ids) == 1 else "workers"
    listed = "; ".join(_outcome(status.tasks[tid]) for tid in task_ids[: defaults.SHOWN_MAX_TASKS])
    if len(task_ids) > defaults.SHOWN_MAX_TASKS:
        listed += f"; +{len(task_ids) - defaults.SHOWN_MAX_TASKS} more"
    live = sum(1 for task in status.tasks.values() if not task.state.terminal)
    tail = f"; {live} still at work" if live else ""
    return printable(f"{PREFIX}run {rid}: {who} {listed}{tail}", defaults.SHOWN_LINE_CHARS)


def ended(status: RunStatus) -> str:
    """``fanout: run R failed in 1m12s: 1 failed (W3), 2 succeeded; $0.09``."""
    rid = printable(status.run_id, defaults.SHOWN_ID_CHARS)
    since = status.started if status.started is not None else status.created
    took = (
        f" in {duration(max(0.0, status.finished - since))}"
        if status.finished is not None and since is not None
        else ""
    )
    counts = ", ".join(
        f"{n} {state}" + (f" ({_named(status, state)})" if state in FAILURES else "")
        for state, n in sorted(status.counts().items())
    )
    cost = f"; {usage.money(status.usage.get('cost_usd', 0.0))}" if status.usage else ""
    line = f"{PREFIX}run {rid} {status.state}{took}: {counts or 'no workers'}{cost}"
    return printable(line, defaults.SHOWN_LINE_CHARS)


def denied(tool: str, path: str, task_id: str, run_id: str, task: TaskStatus, *, now: float) -> str:
    """``fanout: Claude's Edit of src/a.py was denied: worker W1 of run R owns it (running 12s);
    its result comes back when it finishes``."""
    if task.state is TaskState.RUNNING and task.started is not None:
        doing = f"running {duration(max(0.0, now - task.started))}"
    else:
        doing = f"{task.state}, not started yet"
    line = (
        f"{PREFIX}Claude's {printable(tool, 40)} of {printable(path, 120)} was denied: worker "
        f"{printable(task_id, defaults.SHOWN_ID_CHARS)} of run "
        f"{printable(run_id, defaults.SHOWN_ID_CHARS)} owns it ({doing}); its result comes back "
        "when it finishes"
    )
    return printable(line, defaults.SHOWN_LINE_CHARS)


def _named(status: RunStatus, state: str) -> str:
    """``W1, W3``: the tasks in ``state``, the first few."""
    ids = [tid for tid, task in status.tasks.items() if task.state == state]
    shown = ", ".join(printable(tid, defaults.SHOWN_ID_CHARS) for tid in ids[:6])
    return shown + (", …" if len(ids) > 6 else "")


def _outcome(task: TaskStatus) -> str:
    """``W1 failed after 3.1s ($0.01)``: state, time, cost; never the reason (worker text)."""
    line = f"{printable(task.id, defaults.SHOWN_ID_CHARS)} {task.state}"
    if task.duration_s is not None:
        line += f" after {duration(task.duration_s)}"
    if task.usage:
        line += f" ({usage.money(task.usage.get('cost_usd', 0.0))})"
    return line


# -- what each task does, from the run's plan ----------------------------------------------------


def task_summaries(run_path: str) -> list[tuple[str, str, str]]:
    """(task id, the path it claims first or '', what it does: the first line of its prompt,
    command or target) for each task of the run's plan, as written there (not yet printable).
    Read without validating the plan (a hook path); [] when it cannot be read."""
    import json

    try:
        with open(layout.join(run_path, layout.PLAN), "rb") as handle:
            plan = json.loads(handle.read(defaults.SHOWN_PLAN_MAX_BYTES))
        found = []
        for task in plan.get("tasks", []):
            what = task.get("prompt") or " ".join(task.get("argv") or []) or task.get("target")
            first = next((ln.strip() for ln in str(what or "").splitlines() if ln.strip()), "")
            claims = task.get("claims") or []
            where = claims[0] if claims and isinstance(claims[0], str) else ""
            found.append((str(task.get("id")), where, first))
    except (OSError, ValueError, AttributeError, TypeError):
        return []
    return found


# -- the outbox: what the async Rewake hook leaves for the next prompt to show ------------------


def post(project: str, session_id: str, lines: list[str]) -> None:
    """Leave ``lines`` for the session's next UserPromptSubmit to show."""
    if not lines:
        return
    from claude_fanout.store.files import make_private_dir, open_private, write_all

    path = layout.session_outbox(project, session_id)
    make_private_dir(os.path.dirname(path))
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        write_all(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)


def collect(project: str, session_id: str) -> list[str]:
    """The lines left in the session's outbox, taken (the outbox is gone after); [] if none.
    Moved aside before reading, so a line posted meanwhile waits for the next prompt."""
    path = layout.session_outbox(project, session_id)
    taken = f"{path}.{os.getpid()}"
    try:
        os.rename(path, taken)
    except OSError:
        return []
    try:
        from claude_fanout.store.files import open_private

        fd = open_private(taken, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(defaults.SHOWN_OUTBOX_MAX_BYTES)
    except OSError:
        return []
    finally:
        try:  # noqa: SIM105 - contextlib would cost the hook its import
            os.unlink(taken)
        except OSError:
            pass
    lines = [
        printable(ln, defaults.SHOWN_LINE_CHARS)
        for ln in raw.decode("utf-8", "replace").splitlines()
    ]
    return [ln for ln in lines if ln][-defaults.SHOWN_OUTBOX_LINES :]
