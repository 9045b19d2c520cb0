"""One `/fanout` session as a person meets it, every view at once: tools/capture_session.py
drives the real interactive CLI in tmux (scripted fake API, fanout installed beside the person's
own status line), ``fanout watch`` in a second window and ``fanout report``; the screens it
captured must hold, each once and in this one session, the start line, the status line with the
running workers and their cost so far, the denial, the end line and the merged answer; watch's
rows and totals while running and at the end; the report's tasks, rendered by Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.browser import Dom, dump_dom
from tests.helpers import load_tool, processes_under, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("tmux") is None, reason="needs tmux (scripts/test installs it)"
    ),
]


def status_row(screen: str) -> str:
    return next(line for line in screen.splitlines() if "alex@laptop" in line).strip()


def test_one_session_shows_the_person_every_view_of_its_run(tmp_path: Path) -> None:
    tool = load_tool("capture_session")
    got = tool.capture(tmp_path, delay_s=0.8, timeout=45)
    rid = got.run_id
    screens = {name: got.readable(text) for name, text in got.screens.items()}
    started, running, finished = (screens[name] for name in tool.SESSION)
    flat = " ".join(finished.split())  # the terminal wraps long lines

    # The start line, and how to watch the run, once in the whole session.
    assert flat.count(f"run {rid} started 3 workers: W1 calc.py") == 1
    assert flat.count(f"fanout watch {rid}") == 1
    # The status line: the person's own line, then the run's running workers...
    assert status_row(started).startswith("alex@laptop ~/src/app (main) | fanout 3 running")
    # ...and what they have spent so far, marked as an estimate.
    assert " running \u00b7 " in status_row(running) and " \u00b7 ~$" in status_row(running)
    # The Conductor's Read of W1's file was denied, and the person told whose file it is.
    assert flat.count("Read of calc.py was denied: worker W1") == 1
    # The end: the run's state and exact cost, then the merged answer; fanout's segment gone
    # from the status line once the session has the results.
    assert flat.count(f"run {rid} succeeded in") == 1 and "3 succeeded; $0." in flat
    assert flat.index(f"run {rid} succeeded in") < flat.index(tool.LAST_WORD)
    assert status_row(finished) == "alex@laptop ~/src/app (main)"
    # No scratch path in what is written out.
    assert all(str(tmp_path) not in text for text in screens.values())

    # fanout watch: a row per worker with its cost so far while running, totals; at the end
    # every row succeeded with its exact cost, and the run's totals.
    watching = screens["watch-running"].splitlines()
    rows = [line for line in watching if line.startswith(("W1 ", "W2 ", "W3 "))]
    assert len(rows) == 3 and any(" running " in r and "~$" in r for r in rows), watching
    assert any(line.startswith("spent ~$") for line in watching), watching
    ended = screens["watch-finished"].splitlines()
    assert ended[0].startswith(f"run {rid}") and " succeeded " in ended[0] and "3/3" in ended[0]
    rows = [line for line in ended if line.startswith(("W1 ", "W2 ", "W3 "))]
    assert [r.split()[1] for r in rows] == ["succeeded"] * 3
    assert all("$0." in r and "~" not in r for r in rows), rows
    assert any(line.startswith("spent $0.") and "6 turns" in line for line in ended), ended

    # fanout report: Chromium renders a row and a result for every task.
    assert got.report is not None
    dom = Dom(dump_dom(got.report, tmp_path))
    assert dom.title == f"fanout run {rid}"
    assert [a["data-task"] for a in dom.tags("tr") if "data-task" in a] == ["W1", "W2", "W3"]
    assert {row[2] for row in dom.rows.values()} == {"succeeded"}
    assert "SUMMARY" in dom.sections["W3"] and "util.py" in dom.sections["W3"]

    project = tmp_path / "home" / "src" / "app"
    wait_until(lambda: not processes_under(project / ".claude"), timeout=10)
