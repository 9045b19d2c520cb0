"""How ``fanout watch`` draws a run: a frame of lines for a terminal (one row per task, fitted to
its width and height, colour unless ``NO_COLOR``) and the plain lines it prints when its output
is not a terminal (one line per change).

Pure functions of a ``RunStatus`` snapshot and a few numbers (``RunBudget``-style limits, the
clock): no file is read here, so the rendering is tested, and benchmarked, on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.cells import cell_len, set_cell_size

from claude_fanout import text, usage
from claude_fanout.claude.stream import INIT_LINE
from claude_fanout.states import TaskState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from claude_fanout.store.status import RunStatus, TaskStatus

# Worker text is untrusted: a control character (an escape sequence above all) would drive the
# person's terminal. Every one of them, C0 and C1, reads as a space.
_GAP = "  "
_MIN_DOING = 12
# SGR codes per task / run state (ANSI); NO_COLOR or a dumb terminal: none at all.
_COLOURS = {
    "succeeded": "32",
    "running": "36",
    "starting": "36",
    "pending": "2",
    "waiting_retry": "33",
    "failed": "31",
    "timed_out": "31",
    "lost": "1;31",
    "skipped": "33",
    "cancelled": "33",
    "over_budget": "31",
}
# Which rows to show when the terminal is too short for every task: the live ones first, then
# those that went wrong, then the rest in the plan's order.
_SHOWN_FIRST = {
    TaskState.RUNNING: 0,
    TaskState.WAITING_RETRY: 0,
    TaskState.FAILED: 1,
    TaskState.TIMED_OUT: 1,
    TaskState.LOST: 1,
    TaskState.OVER_BUDGET: 1,
}


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    right: bool = False


# The columns in the order they are shown; ``_DROP_ORDER`` is the order a narrow terminal loses
# them (the task, its state and what it is doing stay).
_COLUMNS = (
    Column("task", 4),
    Column("state", 13),
    Column("try", 3, right=True),
    Column("elapsed", 7, right=True),
    Column("turns", 5, right=True),
    Column("tokens", 9, right=True),
    Column("cost", 8, right=True),
)
_DROP_ORDER = ("tokens", "turns", "try", "elapsed", "cost")
_USAGE_COLUMNS = ("turns", "tokens", "cost")
_MAX_TASK_WIDTH = 20


@dataclass(frozen=True)
class Limits:
    """The run's budget: the plan's ``max_cost_usd`` / ``max_turns``, else the project's."""

    max_cost_usd: float | None = None
    max_turns: int | None = None


@dataclass
class Style:
    """What the output can show: its size, colour, and whether it takes box-drawing characters."""

    width: int = 80
    height: int = 24
    colour: bool = True
    unicode: bool = True

    def paint(self, code: str, words: str) -> str:
        return f"\x1b[{code}m{words}\x1b[0m" if self.colour and code else words

    def state(self, state: str, width: int | None = None) -> str:
        shown = state if width is None else fit(state, width)
        words = shown.rstrip()  # the padding outside the colour: a line's end strips clean
        return self.paint(_COLOURS.get(state, ""), words) + shown[len(words) :]


@dataclass
class RunView:
    """One run as ``watch`` shows it: its folded status, budget, the time, and a way to find a
    running task's last line of output when it reports nothing better (``doing``)."""

    run_id: str
    status: RunStatus
    limits: Limits = field(default_factory=Limits)
    now: float = 0.0
    last_line: Callable[[str], str | None] = lambda task_id: None
    # Each task's dependencies (from the plan): a pending task shows those it still waits for.
    deps: Mapping[str, Sequence[str]] = field(default_factory=dict)


def clean(words: str) -> str:
    """Worker text made safe for a terminal and one line: no control character survives."""
    return text.printable(words)


def fit(words: str, width: int, *, right: bool = False) -> str:
    """``words`` in exactly ``width`` terminal cells: cut with an ellipsis, or padded."""
    if width <= 0:
        return ""
    if cell_len(words) > width:
        return set_cell_size(words, width - 1) + text.ELLIPSIS
    pad = " " * (width - cell_len(words))
    return pad + words if right else words + pad


def elapsed(task: TaskStatus, now: float) -> float | None:
    if task.started is None:
        return None
    end = task.ended if task.ended is not None else now
    return max(0.0, end - task.started)


def run_elapsed(status: RunStatus, now: float) -> float | None:
    begin = status.started or status.created
    end = status.finished if status.state.terminal else now
    return None if begin is None or end is None else max(0.0, end - begin)


def cells(task: TaskStatus, now: float) -> dict[str, str]:
    """The task's row as text, column by column (``doing`` included)."""
    spent = task.spent() or {}
    took = elapsed(task, now)
    tokens = ""
    if spent:
        tokens = (
            f"{usage.count(usage.tokens_in(spent))}/{usage.count(spent.get('output_tokens', 0))}"
        )
    return {
        "task": clean(task.id),  # ids come from the log, which a damaged store may hold anything
        "state": str(task.state),
        "try": str(task.attempt) if task.attempt else "",
        "elapsed": "" if took is None else text.duration(took),
        "turns": str(int(spent["turns"])) if "turns" in spent else "",
        "tokens": tokens,
        # ``~``: what a running worker has spent so far, estimated until it exits.
        "cost": ("~" if task.live is not None else "") + usage.money(spent["cost_usd"])
        if "cost_usd" in spent
        else "",
    }


def doing(task: TaskStatus, view: RunView) -> str:
    """What the task is doing now (its tool, else its output's last line), what a pending one
    waits for, or why it ended."""
    if task.state is TaskState.RUNNING:
        last = task.doing or view.last_line(task.id) or ""
        if last.startswith(INIT_LINE):  # a Claude worker's session id and tool list: noise here
            return "waiting for the model"
        return clean(last)
    if task.state is TaskState.PENDING and not task.reason:
        tasks = view.status.tasks
        waits = [
            dep
            for dep in view.deps.get(task.id, ())
            if dep in tasks and tasks[dep].state is not TaskState.SUCCEEDED
        ]
        return clean("after " + ", ".join(waits)) if waits else ""
    return clean(task.reason or "")


def layout(width: int, task_width: int, *, spending: bool = True) -> list[Column]:
    """The columns that fit ``width`` cells beside at least ``_MIN_DOING`` of ``doing``; without
    ``spending`` (no row has usage: shell and python tasks) none of the usage columns."""
    columns = [Column("task", task_width), *_COLUMNS[1:]]
    if not spending:
        columns = [c for c in columns if c.name not in _USAGE_COLUMNS]
    for name in (None, *_DROP_ORDER):
        if name is not None:
            columns = [c for c in columns if c.name != name]
        used = sum(c.width for c in columns) + len(_GAP) * len(columns)
        if used + _MIN_DOING <= width:
            break
    return columns


def bar(done: int, total: int, width: int, style: Style) -> str:
    """``[██████░░░░]`` showing ``done`` of ``total``."""
    inner = max(1, width - 2)
    filled = inner if total == 0 else round(inner * done / total)
    full, empty = ("\u2588", "\u2591") if style.unicode else ("#", "-")
    return "[" + style.paint("32", full * filled) + empty * (inner - filled) + "]"


def counts_line(status: RunStatus) -> str:
    """``3 running · 9 succeeded · 1 failed · 27 pending``: live states first."""
    counts = status.counts()
    order = sorted(counts, key=lambda s: (TaskState(s).terminal, -counts[s], str(s)))
    return " \u00b7 ".join(f"{counts[s]} {s}" for s in order)


def totals_line(status: RunStatus, limits: Limits) -> str:
    """Spent so far (running workers included) and the budget left."""
    spent = status.spent()
    bits = []
    if spent:
        mark = "~" if any(task.live is not None for task in status.tasks.values()) else ""
        bits.append(f"spent {mark}{usage.money(spent.get('cost_usd', 0.0))}")
        bits.append(usage.turns(spent))
        bits.append(usage.tokens(spent))
    if limits.max_cost_usd is not None:
        cost = (spent or {}).get("cost_usd", 0.0)
        left = max(0.0, limits.max_cost_usd - cost)
        bits.append(f"budget left {usage.money(left)} of {usage.money(limits.max_cost_usd)}")
    if limits.max_turns is not None:
        turns = int((spent or {}).get("turns", 0))
        bits.append(f"{max(0, limits.max_turns - turns)} of {limits.max_turns} turns left")
    return " \u00b7 ".join(bits) if bits else "spent nothing yet"


def head_line(view: RunView, style: Style, width: int) -> str:
    """``run ID  running  [████░░░░] 12/40  1m12s``."""
    status = view.status
    total = len(status.tasks)
    done = sum(1 for task in status.tasks.values() if task.state.terminal)
    took = run_elapsed(status, view.now)
    tail = f" {done}/{total}" + ("" if took is None else f"  {text.duration(took)}")
    state = str(status.state)
    label = f"run {view.run_id}"
    room = width - cell_len(label) - len(state) - cell_len(tail) - 4
    shown_bar = bar(done, total, min(32, room), style) if room >= 6 else ""
    line = f"{label}  {style.state(state)}  {shown_bar}{tail}"
    if room < 6:  # too narrow for a bar: the label gives way first
        line = f"{fit(label, max(8, width - len(state) - cell_len(tail) - 2))} "
        line += f"{style.state(state)}{tail}"
    return line


def pick_rows(status: RunStatus, room: int) -> list[TaskStatus]:
    """At most ``room`` tasks, in the plan's order: all of them if they fit, else the running
    ones first, then those that went wrong, then the rest."""
    tasks = list(status.tasks.values())
    if len(tasks) <= room:
        return tasks
    ranked = sorted(range(len(tasks)), key=lambda i: (_SHOWN_FIRST.get(tasks[i].state, 2), i))
    return [tasks[i] for i in sorted(ranked[: max(0, room)])]


def frame(view: RunView, style: Style, *, height: int | None = None) -> list[str]:
    """The run as terminal lines, each at most ``style.width - 1`` cells (no line wraps), in at
    most ``height`` lines (default ``style.height - 1``)."""
    width = max(20, style.width - 1)
    status = view.status
    tail = end_lines(view)
    lines = [head_line(view, style, width), fit(counts_line(status), width).rstrip()]
    room = (height if height is not None else style.height - 1) - len(lines) - 2 - len(tail)
    shown = pick_rows(status, room)
    if len(shown) < len(status.tasks):  # the "… more" line takes a row
        shown = pick_rows(status, room - 1)
    task_width = min(_MAX_TASK_WIDTH, max([4, *(cell_len(t.id) for t in shown)]))
    columns = layout(width, task_width, spending=any(t.spent() for t in shown))
    used = sum(c.width for c in columns) + len(_GAP) * len(columns)
    doing_width = width - used
    header = _GAP.join(fit(c.name, c.width, right=c.right) for c in columns)
    if doing_width >= _MIN_DOING:
        header += _GAP + "doing"
    lines.append(style.paint("2", header.rstrip()))
    for task in shown:
        row = cells(task, view.now)
        parts = []
        for column in columns:
            if column.name == "state":
                parts.append(style.state(row["state"], column.width))
            else:
                parts.append(fit(row[column.name], column.width, right=column.right))
        line = _GAP.join(parts)
        if doing_width >= _MIN_DOING:
            line += _GAP + fit(doing(task, view), doing_width).rstrip()
        lines.append(line.rstrip())
    hidden = len(status.tasks) - len(shown)
    if hidden > 0:
        lines.append(fit(_hidden_line(status, shown), width).rstrip())
    lines.append(fit(totals_line(status, view.limits), width).rstrip())
    lines.extend(fit(line, width).rstrip() for line in tail)
    return lines


def _hidden_line(status: RunStatus, shown: Iterable[TaskStatus]) -> str:
    seen = {task.id for task in shown}
    counts: dict[str, int] = {}
    for task in status.tasks.values():
        if task.id not in seen:
            counts[task.state] = counts.get(task.state, 0) + 1
    total = sum(counts.values())
    return f"\u2026 {total} more: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def end_lines(view: RunView) -> list[str]:
    """Once the run ended: why, the merge-back outcome, the last error."""
    status = view.status
    if not status.state.terminal:
        lines = [f"(the log has {status.bad_lines} damaged line(s), skipped)"]
        return lines if status.bad_lines else []
    from claude_fanout.cli.render import merge_summary

    lines = []
    if status.reason:
        lines.append(f"ended: {clean(status.reason)}")
    lines.extend(clean(line) for line in merge_summary(view.run_id, status))  # git's paths
    lines.extend(f"error: {clean(error)}" for error in status.errors[-1:])
    if status.bad_lines:
        lines.append(f"(the log has {status.bad_lines} damaged line(s), skipped)")
    return lines


def multi_frame(views: list[RunView], style: Style) -> list[str]:
    """Several runs (``--all``), one block each, sharing the terminal's height."""
    if not views:
        return ["no live run: waiting for one to start (Ctrl-C to stop)"]
    share = max(6, (style.height - 1) // len(views))
    lines: list[str] = []
    for view in views:
        lines.extend(frame(view, style, height=share - 1 if len(views) > 1 else None))
        if len(views) > 1:
            lines.append("")
    return lines[: max(1, style.height - 1)]


# Plain output: one line per change.


def task_key(task: TaskStatus) -> tuple[str, int]:
    """What a plain line is printed for: a task's state or attempt changed."""
    return (str(task.state), task.attempt)


def task_line(task: TaskStatus, now: float) -> str:
    """``W1 running (attempt 1)``, ``W1 succeeded after 3.2s, 4 turns, $0.03``, ``W2 failed
    after 1.0s: exit 1``."""
    name = clean(task.id)
    if task.state is TaskState.RUNNING:
        return f"{name} running (attempt {task.attempt})"
    if task.state is TaskState.PENDING:
        return f"{name} pending" + (f" ({clean(task.reason)})" if task.reason else "")
    line = f"{name} {task.state}"
    took = elapsed(task, now) if task.started is not None else None
    if took is not None and task.state.terminal:
        line += f" after {text.duration(took)}"
    spent = usage.brief(task.spent())
    if spent and task.state.terminal:
        line += f", {spent}"
    if task.reason:
        line += f": {clean(task.reason)}"
    return line


def changes(status: RunStatus, seen: dict[str, tuple[str, int]], now: float) -> list[str]:
    """Lines for the tasks whose state changed since ``seen`` (updated in place); a task seen
    for the first time is told only when it is past pending."""
    lines = []
    for task in status.tasks.values():
        key = task_key(task)
        before = seen.get(task.id)
        if before == key:
            continue
        seen[task.id] = key
        if before is None and task.state is TaskState.PENDING:
            continue
        lines.append(task_line(task, now))
    return lines


def summary_lines(view: RunView) -> list[str]:
    """The plain output's last lines: the run's outcome, its totals, the merge-back."""
    status = view.status
    took = run_elapsed(status, view.now)
    head = f"run {view.run_id} {status.state}"
    if took is not None:
        head += f" in {text.duration(took)}"
    head += f": {counts_line(status)}"
    return [head, totals_line(status, view.limits), *end_lines(view)]


def start_line(view: RunView) -> str:
    status = view.status
    return f"watching run {view.run_id} ({status.state}): {len(status.tasks)} task(s), " + (
        counts_line(status) or "none yet"
    )
