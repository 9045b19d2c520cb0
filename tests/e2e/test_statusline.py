"""The real interactive CLI (in tmux) runs the status line ``fanout install`` wrote: the person's
own line alone while the session has no run, then with fanout's segment while a run it started
is live, refreshed while the session sits idle."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_fanout import install
from claude_fanout.runtime.control import request_cancel
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.replies import Reply, Text
from claude_fanout.testing.requests import Request
from tests.e2e.conftest import StartFake
from tests.e2e.tmux_claude import TmuxClaude
from tests.helpers import processes_under, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("tmux") is None, reason="needs tmux (scripts/test installs it)"
    ),
]

# The person's own status line, in their user settings: it shows whether it got Claude Code's
# session JSON on stdin (through fanout's command, when that runs it).
MINE = {
    "type": "command",
    "command": 'read -r l; case "$l" in *session_id*) echo MYLINE-with-input;; '
    "*) echo MYLINE-without-input;; esac",
}


@pytest.fixture
def tui_holder(project: Path) -> Iterator[dict[str, TmuxClaude]]:
    holder: dict[str, TmuxClaude] = {}
    yield holder
    if "tui" in holder:
        holder["tui"].close()


def test_the_status_line_shows_the_persons_line_and_this_sessions_run(
    project: Path, fake_api: StartFake, claude_home: Path, tui_holder: dict[str, TmuxClaude]
) -> None:
    (claude_home / ".claude").mkdir()
    (claude_home / ".claude" / "settings.json").write_text(json.dumps({"statusLine": MINE}))
    install.install(project=project, home=claude_home)  # the default: settings.local.json
    plan = {
        "version": 1,
        "tasks": [
            {
                "id": "W1",
                "kind": "shell",
                "argv": [sys.executable, "-c", "import time; time.sleep(60)"],
            },
            {"id": "W2", "kind": "shell", "argv": ["sh", "-c", "exit 3"]},
        ],
    }
    (project / "plan.json").write_text(json.dumps(plan))

    def conductor(request: Request) -> Reply:
        return Reply([Text("Fan-out" if request.is_side_call else "Workers started; waiting.")])

    api = fake_api(conductor)
    tui = TmuxClaude(project, claude_home, api.base_url)
    tui_holder["tui"] = tui
    assert tui.wait_state("idle", 20), tui.pane()
    # No run: the person's line alone, having read its input through fanout's command.
    wait_until(lambda: "MYLINE-with-input" in tui.pane(), timeout=20)
    assert "fanout " not in tui.pane()

    tui.type("/fanout --plan plan.json")
    wait_until(lambda: list_runs(project), timeout=20)
    (run,) = list_runs(project)
    assert tui.wait_state("idle", 30), tui.pane()

    def status_row() -> str:
        return next((ln for ln in tui.pane().splitlines() if "MYLINE-with-input" in ln), "")

    # Idle, W1 still running: the refresh brings W2's failure in, beside the person's line.
    wait_until(lambda: "fanout 1 running \u00b7 1 failed" in status_row(), timeout=30)
    row = status_row().strip()
    assert row.startswith("MYLINE-with-input | fanout 1 running \u00b7 1 failed \u00b7 "), row
    assert "MYLINE-without-input" not in tui.pane()

    request_cancel(run.path, by="the test")
    wait_until(lambda: not processes_under(run.path), timeout=20)
