"""Capture what a person sees in a `/fanout` session: the real interactive Claude Code CLI in
tmux, `fanout watch` in a second window, and `fanout report` rendered by headless Chromium.

    .venv/bin/python tools/capture_session.py [--out DIR] [--scratch DIR] [--delay S]

A scratch project (``~/src/app``: calc.py, greet.py, util.py) with fanout installed and the
person's own status line in their user settings; a scripted fake of the Messages API on
127.0.0.1 (workers read and summarise their file, ``--delay`` seconds per model turn, the one on
util.py three times slower; the Conductor reads calc.py, which worker W1 owns, and waits). The
person types ``/fanout review for bugs -- calc.py greet.py util.py``; the screen is captured
(capture-pane, scrollback included) once the run has started, while its workers run, and when
the session has the results; ``fanout watch RUN`` in a second window mid-run and at the end.

Writes into ``--out`` (default: ``docs/screens``): ``session-1-started.txt``,
``session-2-running.txt``, ``session-3-finished.txt``, ``watch-running.txt``,
``watch-finished.txt`` and ``report.png``, with the scratch directory written as ``~`` so the
files show no temporary paths. tests/e2e/test_session_captures.py runs :func:`capture` and
checks what the screens hold.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scratch import REPO, scratch_dir

sys.path.insert(0, str(REPO))  # the tmux harness and the browser helpers of the test suite

from claude_fanout import install
from claude_fanout.store.rundir import list_runs
from claude_fanout.testing.fake_api import FakeMessagesAPI
from claude_fanout.testing.models import FINAL_MARK, ReadThenSummarize, is_worker
from claude_fanout.testing.replies import Handler, Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request
from tests.browser import screenshot
from tests.e2e.tmux_claude import TmuxClaude

FILES = {
    "calc.py": "def mean(xs):\n    return sum(xs) / len(xs)  # empty list?\n",
    "greet.py": "def greet(name):\n    return 'Hello, ' + name + '!'\n",
    "util.py": "def chunks(xs, n):\n    return [xs[i:i + n] for i in range(0, len(xs), n)]\n",
}
PROMPT = "/fanout review for bugs -- calc.py greet.py util.py"
LAST_WORD = "Merged the three reviews: calc.py divides by zero on an empty list; the rest is fine."
# The person's own status line (user settings); `fanout install` keeps it and adds its segment.
THEIRS = {"type": "command", "command": "echo 'alex@laptop ~/src/app (main)'"}
# A model turn's usage, so the costs read like a small review rather than $0.00.
TURN = Usage(input_tokens=3000, output_tokens=400)
WIDTH, HEIGHT = 120, 60
SESSION = ("session-1-started", "session-2-running", "session-3-finished")
WATCH = ("watch-running", "watch-finished")


def model(project: Path, delay_s: float) -> Handler:
    """Workers read their file and summarise it (util.py's three times slower); the Conductor
    reads calc.py (denied: W1 owns it), ends its turn, and merges once handed the results."""
    worker = ReadThenSummarize(delay_s=delay_s, usage=TURN)
    slow = ReadThenSummarize(delay_s=delay_s * 3, usage=TURN)

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Review for bugs")])
        if is_worker(request):
            brain = slow if "util.py" in request.first_user_text() else worker
            reply = brain(request)
            assert isinstance(reply, Reply)
            return reply
        feedback = "\n".join(request.hook_feedback())
        if FINAL_MARK in feedback:
            return Reply([Text(LAST_WORD)], usage=TURN)
        if feedback:
            return Reply([Text("Still waiting for the workers.")], usage=TURN)
        if not request.all_tool_results():
            read = ToolUse("Read", {"file_path": str(project / "calc.py")})
            return Reply([Text("Let me look at calc.py first."), read], usage=TURN)
        return Reply([Text("A worker owns calc.py; I will wait for the results.")], usage=TURN)

    return handle


@dataclass
class Captures:
    """What one session showed: the screens by name (as captured, scratch paths in place) and
    the run's report page."""

    run_id: str
    home: Path
    screens: dict[str, str] = field(default_factory=dict)
    report: Path | None = None

    def readable(self, text: str) -> str:
        """``text`` with the scratch home written ``~``, no trailing blanks, and a run of
        empty lines (the TUI's unused rows) made one."""
        lines = text.replace(str(self.home), "~").splitlines()
        text = "\n".join(line.rstrip() for line in lines)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def make_project(scratch: Path) -> tuple[Path, Path]:
    """``(home, project)``: the person's HOME with their own status line, and ``~/src/app``
    with the three files and fanout installed (the default scope, status line included)."""
    home = scratch / "home"
    project = home / "src" / "app"
    project.mkdir(parents=True)
    for name, text in FILES.items():
        (project / name).write_text(text)
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(json.dumps({"statusLine": THEIRS}))
    install.install(project=project, home=home)
    return home, project


def capture(scratch: Path, *, delay_s: float = 1.5, timeout: float = 90.0) -> Captures:
    """Run the session in ``scratch`` and capture each step (see the module's docstring)."""
    home, project = make_project(scratch)
    with FakeMessagesAPI(model(project, delay_s)) as api:
        tui = TmuxClaude(project, home, api.base_url, width=WIDTH, height=HEIGHT)
        try:
            return _drive(tui, home, project, timeout)
        finally:
            tui.close()


def _drive(tui: TmuxClaude, home: Path, project: Path, timeout: float) -> Captures:
    if not tui.wait_state("idle", 30):
        raise RuntimeError(f"the CLI did not start:\n{tui.pane()}")
    _until(lambda: "alex@laptop" in tui.pane(), timeout, "the person's status line", tui)
    tui.type(PROMPT)
    _until(lambda: list_runs(project), timeout, "a run", tui)
    rid = list_runs(project)[0].run_id
    got = Captures(rid, home)
    tui.open_window("watch", [sys.executable, "-m", "claude_fanout", "watch", rid], cwd=project)

    def status_row() -> str:
        return next((ln for ln in tui.pane().splitlines() if "alex@laptop" in ln), "")

    _until(lambda: f"run {rid} started 3 workers" in tui.screen_text(), timeout, "start", tui)
    _until(lambda: " running" in status_row(), timeout, "running in the status line", tui)
    got.screens[SESSION[0]] = tui.capture()
    _until(lambda: "was denied: worker W1" in tui.screen_text(), timeout, "the denial", tui)
    _until(lambda: "~$" in status_row(), timeout, "a live cost in the status line", tui)
    got.screens[SESSION[1]] = tui.capture()

    def watch_head() -> str:
        return next((ln for ln in tui.capture("watch").splitlines() if ln.startswith("run ")), "")

    _until(lambda: "~$" in tui.capture("watch"), timeout, "a live cost in watch", tui)
    got.screens[WATCH[0]] = tui.capture("watch")
    _until(lambda: " succeeded " in watch_head(), timeout, "watch's end", tui)
    got.screens[WATCH[1]] = tui.capture("watch")
    _until(lambda: LAST_WORD[:40] in tui.screen_text(), timeout, "the merged answer", tui)
    tui.wait_state("idle", timeout)
    time.sleep(1.0)  # one more status line refresh after the run's end
    got.screens[SESSION[2]] = tui.capture()
    made = subprocess.run(
        [sys.executable, "-m", "claude_fanout", "report", rid],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got.report = Path(made.stdout.strip())
    return got


def _until(check: Callable[[], object], timeout: float, what: str, tui: TmuxClaude) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"no {what} within {timeout:g}s; the screen:\n{tui.capture()}")


def write(got: Captures, out: Path, scratch: Path) -> list[Path]:
    """The screens as text and the report as a PNG into ``out``, scratch paths made readable."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in got.screens.items():
        path = out / f"{name}.txt"
        path.write_text(got.readable(text))
        written.append(path)
    if got.report is not None:
        shot = screenshot(got.report, scratch, "report.png", size="1280,900", paths={got.home: "~"})
        written.append(Path(shutil.copyfile(shot, out / "report.png")))
    return written


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screens", help="(docs/screens)")
    ap.add_argument("--scratch", type=Path, default=None, help="kept (default: a temporary one)")
    ap.add_argument("--delay", type=float, default=1.5, help="seconds per model turn (1.5)")
    args = ap.parse_args(argv)
    with scratch_dir(args.scratch, prefix="fanout-screens-") as scratch:
        got = capture(scratch, delay_s=args.delay)
        for path in write(got, args.out, scratch):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
