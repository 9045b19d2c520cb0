"""An interactive Conductor (the real CLI in tmux) is woken with its workers' results.

Its turn ends while the workers run (the Stop hook does not hold an interactive session); when
they finish, fanout's async Rewake hook exits 2 and Claude Code wakes the idle session with the
results, once: the woken turn ends in another Stop, which finds nothing new and wakes nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_fanout import install
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.models import FINAL_MARK, ReadThenSummarize, is_worker
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


class Conductor:
    """Ends its turn at once after the /fanout prompt; answers each wake by what it says."""

    def __call__(self, request: Request) -> Reply:
        wake = "\n".join(request.hook_feedback())
        if wake and FINAL_MARK in wake:
            return Reply([Text("MERGED after the wake.")])
        if wake:
            return Reply([Text("Noted the failed worker; waiting for the rest.")])
        return Reply([Text("Workers are on it; I will wait to be woken.")])


@pytest.fixture
def session(project: Path, claude_home: Path) -> Iterator[dict[str, object]]:
    (project / "src").mkdir()
    install.install(scope="project", project=project)
    holder: dict[str, object] = {}
    yield holder
    tui = holder.get("tui")
    if isinstance(tui, TmuxClaude):
        tui.close()


def conductor_requests(api) -> list[Request]:
    return [r for r in api.message_requests(side_calls=False) if not is_worker(r)]


def wakes(api) -> list[str]:
    """What each wake told the model (fanout's words after a turn that had ended), once each."""
    told = ("\n".join(r.hook_feedback()) for r in conductor_requests(api))
    return list(dict.fromkeys(text for text in told if text))


def test_an_idle_conductor_is_woken_once_with_the_results(
    project: Path, fake_api: StartFake, claude_home: Path, session: dict[str, object]
) -> None:
    for name, text in {"src/a.py": "alpha = 1\n", "src/b.py": "beta = 2\n"}.items():
        (project / name).write_text(text)
    workers, conductor = ReadThenSummarize(delay_s=1.0), Conductor()
    api = fake_api(
        lambda r: (
            Reply([Text("Fan-out")])
            if r.is_side_call
            else (workers(r) if is_worker(r) else conductor(r))
        )
    )
    tui = TmuxClaude(project, claude_home, api.base_url)
    session["tui"] = tui
    assert tui.wait_state("idle", 20), tui.pane()
    tui.type("/fanout review for bugs -- src/*.py")

    wait_until(lambda: list_runs(project), timeout=20)
    (run,) = list_runs(project)
    # The run directory appears a moment before its first record.
    wait_until(lambda: read_events(run.events_path).events, timeout=10)
    created = read_events(run.events_path).events[0]
    assert created["delivery"] == "rewake"
    # The turn ends while the workers still run: the session goes idle, nobody is held.
    wait_until(lambda: len(conductor_requests(api)) >= 1, timeout=20)
    assert tui.wait_state("idle", 20), tui.pane()
    kinds = [e["type"] for e in read_events(run.events_path).events]
    assert "run_finished" not in kinds, kinds

    wait_until(lambda: wakes(api), timeout=60)
    time.sleep(0.5)
    assert len(wakes(api)) == 1, wakes(api)
    wake = wakes(api)[0]
    assert FINAL_MARK in wake
    assert "W1 succeeded" in wake and "W2 succeeded" in wake and "SUMMARY " in wake
    finished = [e for e in read_events(run.events_path).events if e["type"] == "run_finished"]
    assert finished and finished[0]["state"] == "succeeded"
    # Woken once: the woken turn's Stop finds nothing new.
    wait_until(lambda: "MERGED after the wake." in tui.pane(), timeout=30)
    assert tui.wait_state("idle", 20), tui.pane()
    time.sleep(3)
    assert len(wakes(api)) == 1, wakes(api)
    wait_until(lambda: not processes_under(project / ".claude"), timeout=10)


def test_a_failure_wakes_the_conductor_then_the_rest_does(
    project: Path, fake_api: StartFake, claude_home: Path, session: dict[str, object]
) -> None:
    plan = {
        "version": 1,
        "tasks": [
            {"id": "W1", "kind": "shell", "argv": ["sh", "-c", "echo broken >&2; exit 3"]},
            {
                "id": "W2",
                "kind": "shell",
                "argv": [sys.executable, "-c", "import time; time.sleep(4); print('W2 fine')"],
            },
        ],
    }
    (project / "plan.json").write_text(json.dumps(plan))
    conductor = Conductor()
    api = fake_api(lambda r: Reply([Text("Fan-out")]) if r.is_side_call else conductor(r))
    tui = TmuxClaude(project, claude_home, api.base_url)
    session["tui"] = tui
    assert tui.wait_state("idle", 20), tui.pane()
    tui.type("/fanout --plan plan.json")

    wait_until(lambda: len(wakes(api)) >= 2, timeout=60)
    first, second = wakes(api)
    assert "W1 failed" in first and "broken" in first and FINAL_MARK not in first
    assert FINAL_MARK in second and "W2 succeeded" in second and "W2 fine" in second
    assert "broken" not in second  # told once
    assert tui.wait_state("idle", 20), tui.pane()
    time.sleep(3)
    assert len(wakes(api)) == 2
