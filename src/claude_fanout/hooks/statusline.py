"""The status line: this session's runs at a glance, after the person's own status line.

    <python> -I -S hooks/entry.py StatusLine ["$0" THEIRS]      (what `fanout install` writes)
    fanout statusline                                             (the same segment, from a script)

Claude Code runs the command often, with its session JSON on stdin, and shows what it prints.
The segment reads ``fanout 2 running · 1 done · 1 failed · $0.04 · 1m12s``: the tasks of every
run this session asked for that the hooks still serve, what they have spent so far (running
workers included) and how long the runs have taken. With no such run it is empty: only the
person's own line shows, byte for byte. Hook path: standard library only, the runs read through
their snapshot and the log's tail (never a whole log), and it fails open: whatever goes wrong, it
prints what it can and exits 0, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys

from claude_fanout import defaults
from claude_fanout.states import TaskState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Final

    from claude_fanout.store.status import RunStatus

SEPARATOR: Final = " \u00b7 "
BETWEEN: Final = " | "
"""Between the person's own line and fanout's segment."""

# How task states read in the segment, in the order they are shown.
_GROUPS: Final = (
    ("running", (TaskState.RUNNING,)),
    ("queued", (TaskState.PENDING, TaskState.WAITING_RETRY)),
    ("done", (TaskState.SUCCEEDED,)),
    ("failed", (TaskState.FAILED, TaskState.TIMED_OUT, TaskState.LOST, TaskState.OVER_BUDGET)),
    ("cancelled", (TaskState.CANCELLED, TaskState.SKIPPED)),
)
_COLOURS: Final = {"running": "36", "failed": "31"}
# Control characters (C0, DEL, C1), zero-width and bidirectional marks: text from the store never
# moves the cursor, colours the line or reorders it.
# (A pattern, compiled only when there is text to clean: compiling costs every call 0.4 ms.)
_SHELLS: Final = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"})


def main(
    argv: list[str], *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
) -> int:
    """Print the person's line (``argv``: the shell and their command, if any) and the segment."""
    raw = b""
    segment = ""
    theirs = b""
    try:
        source = sys.stdin.buffer if stdin is None else stdin
        raw = source.read(defaults.STATUSLINE_INPUT_MAX_BYTES + 1)
        if len(raw) <= defaults.STATUSLINE_INPUT_MAX_BYTES:
            segment = segment_for(raw)
    except BaseException:  # noqa: BLE001, S110 - fail open: the person's line still shows
        pass
    if len(argv) >= 2 and argv[1]:
        theirs = run_theirs(argv[0], argv[1], raw)
    try:
        out = sys.stdout.buffer if stdout is None else stdout
        out.write(compose(theirs, segment))
        out.flush()
    except BaseException:  # noqa: BLE001, S110 - Claude Code stopped reading: nothing to tell
        pass
    return 0


def segment_for(raw: bytes) -> str:
    """fanout's segment for Claude Code's status line input ``raw`` ('' when it is not that
    input or the session has no run)."""
    payload: Any = json.loads(raw)
    if not isinstance(payload, dict):
        return ""
    from claude_fanout.hooks.context import HookContext

    ctx = HookContext.from_payload("StatusLine", payload)
    if ctx is None:
        return ""
    runs = [status for _, status in ctx.session_runs()]
    return render(runs, now=ctx.now, colour=colour_wanted())


def colour_wanted() -> bool:
    """Colour unless ``NO_COLOR`` is set to anything (https://no-color.org)."""
    return not os.environ.get("NO_COLOR")


def render(runs: list[RunStatus], *, now: float, colour: bool = False) -> str:
    """``fanout 2 running · 1 done · 1 failed · ~$0.04 · 1m12s`` for ``runs`` ('' for none);
    ``~``: running workers' cost so far is in it, an estimate until they exit."""
    if not runs:
        return ""
    counts = dict.fromkeys((name for name, _ in _GROUPS), 0)
    running: list[tuple[str, str | None]] = []
    cost: float | None = None
    estimate = False  # a running worker's cost so far: ``~``, as ``fanout status`` marks it
    for status in runs:
        for task in status.tasks.values():
            for name, states in _GROUPS:
                if task.state in states:
                    counts[name] += 1
            if task.state is TaskState.RUNNING:
                running.append((task.id, task.doing))
            estimate = estimate or task.live is not None
        spent = status.spent()
        if spent:
            cost = (cost or 0.0) + _amount(spent.get("cost_usd"))
    parts = [_paint(f"{n} {name}", _COLOURS.get(name), colour) for name, n in counts.items() if n]
    if not parts:
        parts = ["starting"]
    if cost is not None:
        from claude_fanout.usage import money

        parts.append(("~" if estimate else "") + money(cost))
    elapsed = _elapsed(runs, now)
    if elapsed is not None:
        from claude_fanout.text import duration

        parts.append(duration(elapsed))
    if len(running) == 1 and running[0][1]:
        task_id, doing = running[0]
        parts.append(clean(f"{task_id}: {doing}", defaults.STATUSLINE_DOING_CHARS))
    return "fanout " + SEPARATOR.join(parts)


def _paint(text: str, code: str | None, colour: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[39m" if colour and code else text


def _amount(value: object) -> float:
    import math

    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0.0
    return max(float(value), 0.0)


def _elapsed(runs: list[RunStatus], now: float) -> float | None:
    """From the first run's start to the last one's end (now, while one is live)."""
    starts = [_amount(s.created or s.started) for s in runs if (s.created or s.started)]
    if not starts:
        return None
    live = any(not s.state.terminal for s in runs)
    end = now if live else max(_amount(s.finished or now) for s in runs)
    return max(0.0, end - min(starts))


def clean(text: str, limit: int | None = None) -> str:
    """``text`` from the store made safe to print: no control characters or escapes, no
    invisible or reordering marks, one line, at most ``limit`` characters."""
    from claude_fanout.text import printable

    return printable(text, limit)


def compose(theirs: bytes, segment: str) -> bytes:
    """The status line: the person's output unchanged when fanout has nothing to show; else
    fanout's segment after their first line (their other lines, if any, below it)."""
    if not segment:
        return theirs
    ours = segment.encode("utf-8", "replace")
    first, _, rest = theirs.partition(b"\n")
    first = first.rstrip(b"\r")
    if not first.strip():
        return ours + b"\n" + rest
    if colour_wanted():
        ours = b"\x1b[0m" + ours  # their colours end where fanout's segment starts
    return first + BETWEEN.encode() + ours + b"\n" + rest


def run_theirs(shell: str, command: str, raw: bytes) -> bytes:
    """The person's status line output: ``command`` in the shell Claude Code ran ours with,
    the same input on stdin, at most ``STATUSLINE_THEIRS_TIMEOUT_S`` (what it printed by then)."""
    name = os.path.basename(shell).lstrip("-")
    argv0 = shell.lstrip("-") if name in _SHELLS else "/bin/sh"
    try:
        from claude_fanout import procs

        _, out, _ = procs.run_bounded(
            [argv0, "-c", command],
            cwd=os.getcwd(),
            env=os.environ,
            stdin=raw,
            timeout_s=defaults.STATUSLINE_THEIRS_TIMEOUT_S,
            grace_s=0.2,
        )
    except Exception:  # noqa: BLE001 - no shell to run it with: fanout's segment alone
        return b""
    return bytes(out)
