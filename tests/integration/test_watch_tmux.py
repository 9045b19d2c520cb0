"""``fanout watch`` in a real terminal: a tmux pane runs it on a real run of shell tasks, and
capture-pane shows the rows appear, change state in place, and the totals when it exits."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CLIResult, wait_until
from tests.tmux import Pane

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def pane_for(project: Path) -> Iterator[Callable[..., Pane]]:
    panes: list[Pane] = []

    def start(args: str, *, width: int, height: int = 30, **env: str) -> Pane:
        # The pane stays open after watch exits (its exit code printed) until the test ends.
        command = (
            f"cd {shlex.quote(str(project))} && {shlex.quote(sys.executable)} -m claude_fanout "
            f"watch {args}; echo EXIT=$?; exec sleep 120"
        )
        pane = Pane(command, width=width, height=height, env={**os.environ, **env})
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def screen_when(pane: Pane, wanted: Callable[[str], bool], timeout: float) -> str:
    """The pane's text once ``wanted`` holds for it."""

    def ready() -> str | None:
        screen = pane.text()
        return screen if wanted(screen) else None

    found: str = wait_until(ready, timeout=timeout)
    return found


def row(screen: str, task: str) -> list[str]:
    found = [line.split() for line in screen.splitlines() if line.startswith(task + " ")]
    return found[0] if found else []


def test_watch_in_a_terminal_updates_rows_in_place_and_exits_with_the_totals(
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
    pane_for: Callable[..., Pane],
) -> None:
    plan = write_plan(
        [
            {"id": "long", "kind": "shell", "argv": ["sh", "-c", "echo warming up; sleep 3"]},
            {"id": "short", "kind": "shell", "argv": ["sh", "-c", "sleep 1"]},
            {"id": "last", "kind": "shell", "argv": ["sh", "-c", "sleep 0.5"], "deps": ["short"]},
        ],
        max_cost_usd=3,
    )
    started = fanout("run", str(plan), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    pane = pane_for(run_id, width=110)

    # The rows appear, the running task showing its output's last line...
    early = screen_when(pane, lambda s: row(s, "long")[1:2] == ["running"], 20)
    assert row(early, "long")[-2:] == ["warming", "up"]
    assert row(early, "last")[1] in ("pending", "running")
    # ... then change in place while the run goes on.
    later = screen_when(
        pane,
        lambda s: row(s, "short")[1:2] == ["succeeded"] and row(s, "long")[1:2] == ["running"],
        20,
    )
    assert later.count("task ") == 1  # one frame, redrawn: no stale copies above it
    final = screen_when(pane, lambda s: "EXIT=" in s, 30)
    assert "EXIT=0" in final
    head = final.splitlines()[0]
    assert head.startswith(f"run {run_id}") and "succeeded" in head and "3/3" in head
    assert all(row(final, t)[1] == "succeeded" for t in ("long", "short", "last"))
    assert "budget left $3.00 of $3.00" in final
    assert final.count("task ") == 1
    assert "\x1b[32m" in pane.text(escapes=True)  # succeeded in green


def test_a_narrow_pane_without_colour_gets_fitted_plain_rows(
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
    pane_for: Callable[..., Pane],
) -> None:
    long_id = "a-task-with-a-very-long-identifier-indeed"
    plan = write_plan(
        [{"id": long_id, "kind": "shell", "argv": ["sh", "-c", "echo " + "word " * 40]}]
    )
    started = fanout("run", str(plan), "--detach")
    assert started.returncode == 0, started.stderr
    pane = pane_for("", width=44, NO_COLOR="1")

    final = screen_when(pane, lambda s: "EXIT=" in s, 30)
    assert "EXIT=0" in final
    assert not COLOUR.search(pane.text(escapes=True))
    lines = final.splitlines()
    assert all(len(line) <= 43 for line in lines if not line.startswith("EXIT"))
    rows = [line for line in lines if line.startswith("a-task-with")]
    assert len(rows) == 1 and "\u2026" in rows[0] and "succeeded" in rows[0]


def test_ctrl_c_in_a_terminal_leaves_quietly_and_gives_the_cursor_back(
    fanout: Callable[..., CLIResult],
    write_plan: Callable[..., Path],
    pane_for: Callable[..., Pane],
) -> None:
    plan = write_plan([{"id": "A", "kind": "shell", "argv": ["true"]}])
    assert fanout("run", str(plan)).returncode == 0
    pane = pane_for("--follow", width=80)
    screen_when(pane, lambda s: row(s, "A")[1:2] == ["succeeded"], 20)
    assert not pane.cursor_shown()  # hidden while the view is drawn
    assert "EXIT=" not in pane.text()  # --follow: still there after the run ended

    pane.keys("C-c")

    final = screen_when(pane, lambda s: "EXIT=" in s, 20)
    assert "EXIT=130" in final and "Traceback" not in final
    assert pane.cursor_shown()
