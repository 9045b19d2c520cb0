"""``fanout watch``'s rendering: widths, heights, colour, hostile worker text, plain lines."""

from __future__ import annotations

import itertools
import re

import pytest
from rich.cells import cell_len

from claude_fanout.claude.stream import render
from claude_fanout.cli import watch_view
from claude_fanout.cli.watch_view import Limits, RunView, Style, changes, frame, summary_lines
from claude_fanout.states import RunState, TaskState
from claude_fanout.store.status import RunStatus, TaskStatus

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NOW = 1_000_000.0


def plain(line: str) -> str:
    return ANSI.sub("", line)


def run_of(count: int = 4, *, running: int = 1) -> RunStatus:
    """``count`` tasks: ``running`` of them running (one with live usage), one failed, the
    rest pending."""
    status = RunStatus("20261130-101010-000-abcd", state=RunState.RUNNING, created=NOW - 75)
    status.started = NOW - 74
    for index in range(count):
        task = TaskStatus(f"W{index + 1}")
        if index < running:
            task.state, task.attempt, task.started = TaskState.RUNNING, 1, NOW - 12
        status.tasks[task.id] = task
    first = status.tasks["W1"]
    first.live = {
        "input_tokens": 41_000,
        "output_tokens": 3_100,
        "turns": 4,
        "cost_usd": 0.25,
    }
    first.doing = "Read src/calc.py"
    failed = status.tasks[f"W{count}"]
    failed.state, failed.attempt = TaskState.FAILED, 2
    failed.started, failed.ended, failed.reason = NOW - 30, NOW - 20, "exit code 3"
    return status


def view_of(status: RunStatus, **kw: object) -> RunView:
    return RunView(run_id=status.run_id, status=status, now=NOW, **kw)  # type: ignore[arg-type]


def test_a_wide_terminal_shows_every_column_and_the_running_workers_cost() -> None:
    lines = frame(view_of(run_of(), limits=Limits(max_cost_usd=2.0)), Style(width=140))
    text = "\n".join(plain(line) for line in lines)
    header = next(line for line in map(plain, lines) if line.startswith("task"))
    assert header.split() == ["task", "state", "try", "elapsed", "turns", "tokens", "cost", "doing"]
    row = next(line for line in map(plain, lines) if line.startswith("W1 "))
    assert row.split()[:7] == ["W1", "running", "1", "12s", "4", "41k/3.1k", "~$0.25"]
    assert row.rstrip().endswith("Read src/calc.py")
    assert "exit code 3" in next(line for line in text.splitlines() if line.startswith("W4"))
    # The head: state, progress (1 of 4 ended) and the run's elapsed time; totals and budget.
    assert "running" in lines[0] and "1/4" in lines[0] and "1m14s" in lines[0]
    # ``~``: a running worker's cost so far, an estimate (as `fanout status` marks it).
    assert "spent ~$0.25" in text and "budget left $1.75 of $2.00" in text


@pytest.mark.parametrize("width", [30, 40, 52, 60, 72, 80, 100, 200])
def test_no_line_is_wider_than_the_terminal_and_narrow_ones_drop_the_minor_columns(
    width: int,
) -> None:
    status = run_of()
    status.tasks["W1"].doing = "a very long description of what the worker does " * 5
    lines = frame(view_of(status), Style(width=width))
    assert all(cell_len(plain(line)) <= max(20, width - 1) for line in lines), lines
    header = plain(lines[2]).split()
    assert header[:2] == ["task", "state"]  # what is never dropped
    if width <= 60:
        assert "tokens" not in header and "turns" not in header
    if width >= 100:
        assert {"tokens", "turns", "cost", "elapsed", "doing"} <= set(header)


def test_the_columns_are_dropped_in_their_order() -> None:
    names = [[c.name for c in watch_view.layout(w, 4)] for w in (120, 70, 62, 58, 50, 45, 20)]
    assert names[0] == ["task", "state", "try", "elapsed", "turns", "tokens", "cost"]
    dropped = [set(names[0]) - set(shown) for shown in names]
    # Each narrower width drops a superset of what a wider one dropped, tokens first.
    assert all(a <= b for a, b in itertools.pairwise(dropped))
    assert "tokens" in dropped[1] and "cost" in dropped[-1]


def test_shell_tasks_without_usage_get_no_usage_columns() -> None:
    status = run_of()
    status.tasks["W1"].live = None
    header = plain(frame(view_of(status), Style(width=140))[2]).split()
    assert "cost" not in header and "tokens" not in header and "doing" in header


def test_no_colour_means_no_escape_sequence_at_all() -> None:
    status = run_of()
    coloured = frame(view_of(status, limits=Limits(2.0, 100)), Style(width=100))
    bare = frame(view_of(status, limits=Limits(2.0, 100)), Style(width=100, colour=False))
    assert any("\x1b[" in line for line in coloured)
    assert not any("\x1b" in line for line in bare)
    assert [plain(line) for line in coloured] == bare


def test_worker_text_cannot_drive_the_terminal() -> None:
    status = run_of()
    status.tasks["W1"].doing = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\r\nnext\u202eevil\x9b1m"
    status.tasks["W4"].reason = "\x1b[?1049h boom"
    lines = frame(view_of(status), Style(width=120, colour=False))
    assert not any(ch in "".join(lines) for ch in "\x1b\x07\r\x9b\u202e")
    # Escape sequences go whole (their parameters too), invisible marks go without a trace.
    assert "red nextevil" in plain(lines[3]).replace("  ", " ")
    assert "pwned" not in "".join(lines) and "[2J" not in "".join(lines)


def test_wide_characters_are_cut_by_cells_not_by_characters() -> None:
    status = run_of()
    status.tasks["W1"].doing = "読み込み中のファイル" * 10
    lines = frame(view_of(status), Style(width=60, colour=False))
    assert all(cell_len(line) <= 59 for line in lines)
    assert "\u2026" in lines[3]


def test_a_thousand_tasks_fit_the_height_running_and_failed_first() -> None:
    status = run_of(1000, running=30)
    for index in range(40, 900):
        task = status.tasks[f"W{index}"]
        task.state, task.attempt, task.started, task.ended = TaskState.SUCCEEDED, 1, NOW - 9, NOW
    lines = frame(view_of(status), Style(width=100, height=40, colour=False))
    assert len(lines) <= 39
    shown = [line.split()[0] for line in lines[3:] if re.match(r"W\d+ ", line)]
    assert shown[:30] == [f"W{i}" for i in range(1, 31)]  # every running task
    assert "W1000" in shown  # the failed one
    more = next(line for line in lines if line.startswith("\u2026"))
    assert more.startswith(f"\u2026 {1000 - len(shown)} more:")
    assert "860 succeeded" in more


def test_the_end_shows_why_and_the_merge_back() -> None:
    status = run_of()
    status.state, status.finished, status.reason = RunState.FAILED, NOW, "W4 failed"
    status.tasks["W1"].branch = "fanout/x/W1"
    status.merge = {"merged": ["W1"], "conflicts": []}
    text = "\n".join(frame(view_of(status), Style(width=120, colour=False)))
    assert "ended: W4 failed" in text
    assert "merge: merged W1" in text
    summary = summary_lines(view_of(status, limits=Limits(max_turns=10)))
    assert summary[0].startswith(f"run {status.run_id} failed in 1m14s: ")
    assert "6 of 10 turns left" in summary[1]
    assert "merge: merged W1" in summary


def test_plain_lines_tell_each_transition_once() -> None:
    status = run_of()
    seen: dict[str, tuple[str, int]] = {}
    first = changes(status, seen, NOW)
    # Pending tasks are not told until they move; running and failed ones are.
    assert first == ["W1 running (attempt 1)", "W4 failed after 10s: exit code 3"]
    assert changes(status, seen, NOW) == []
    w1 = status.tasks["W1"]
    w1.usage, w1.live = w1.live, None
    w1.state, w1.ended = TaskState.SUCCEEDED, NOW
    status.tasks["W2"].state, status.tasks["W2"].attempt = TaskState.RUNNING, 1
    assert changes(status, seen, NOW + 1) == [
        "W1 succeeded after 12s, 4 turns, $0.25",
        "W2 running (attempt 1)",
    ]


def test_a_merge_conflict_path_cannot_drive_the_terminal_either() -> None:
    status = run_of()
    status.state, status.finished = RunState.SUCCEEDED, NOW
    status.tasks["W1"].branch = "fanout/x/W1"
    status.merge = {"conflicts": [{"task": "W1", "with": ["W2"], "files": ["a\x1b[2Jb.py"]}]}
    lines = frame(view_of(status), Style(width=200, colour=False))
    conflict = next(line for line in lines if "conflicts with W2" in line)
    assert "\x1b" not in conflict and "ab.py" in conflict


def test_the_screen_redraws_over_its_last_frame_and_only_when_it_changed() -> None:
    import io

    from claude_fanout.cli.watch import Screen

    out = io.StringIO()
    style = Style(width=80, height=24)
    screen = Screen(out, style)
    screen.show(["one", "two", "three"])
    first = out.getvalue()
    assert first.startswith("\x1b[?25l") and first.endswith("three\x1b[K\n\x1b[J")
    screen.show(["one", "two", "three"])
    assert out.getvalue() == first  # nothing changed: nothing written
    screen.show(["one", "2"])
    assert out.getvalue()[len(first) :] == "\x1b[3A\rone\x1b[K\n2\x1b[K\n\x1b[J"
    mark = len(out.getvalue())
    screen.style = Style(width=50, height=24)  # resized: start again at the top
    screen.show(["one", "2"])
    assert out.getvalue()[mark:].startswith("\x1b[H\x1b[2J")
    screen.close()
    assert out.getvalue().endswith("\x1b[?25h")


def test_no_color_in_the_environment_turns_colour_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from claude_fanout.cli.watch import _style

    monkeypatch.setenv("NO_COLOR", "1")
    assert _style(io.StringIO()).colour is False
    monkeypatch.setenv("NO_COLOR", "")  # set but empty: no effect (no-color.org)
    assert _style(io.StringIO()).colour is True


def test_a_pending_task_shows_the_dependencies_it_still_waits_for() -> None:
    status = run_of()  # W1 running, W2 and W3 pending, W4 failed
    status.tasks["W3"].reason = "resumed"
    view = view_of(status, deps={"W2": ["W1", "W4"], "W3": ["W1"]})
    assert watch_view.doing(status.tasks["W2"], view) == "after W1, W4"
    assert watch_view.doing(status.tasks["W3"], view) == "resumed"  # a reason says more
    status.tasks["W1"].state = TaskState.SUCCEEDED
    assert watch_view.doing(status.tasks["W2"], view) == "after W4"
    lines = frame(view, Style(width=120, colour=False))
    assert next(line for line in lines if line.startswith("W2 ")).endswith("after W4")


def test_a_claude_worker_waiting_for_its_first_answer_shows_that_not_its_session_line() -> None:
    status = run_of(count=3, running=2)
    status.tasks["W2"].doing = None
    init = next(render({"type": "system", "subtype": "init", "session_id": "8c65", "model": "m"}))
    view = view_of(status, last_line=lambda task_id: init if task_id == "W2" else None)
    row = next(plain(line) for line in frame(view, Style(width=140)) if line.startswith("W2 "))
    assert row.rstrip().endswith("waiting for the model") and "8c65" not in row
