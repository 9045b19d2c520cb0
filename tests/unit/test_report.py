"""``fanout report``: the timeline folded from a run's log, the page's escaping and bounds, and
the command's answers to bad input (one line, nothing written)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import defaults
from claude_fanout.plan import parse_plan, plan_to_json
from claude_fanout.report.page import render
from claude_fanout.report.timeline import Timeline, read_timeline
from claude_fanout.states import RunState, TaskState
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.files import make_private_dir
from claude_fanout.store.rundir import RunDir, create_run
from tests.browser import Dom
from tests.helpers import CLIResult, FakeRun

T0 = 1_800_000_000.0


def shell(task_id: str, *deps: str) -> dict[str, Any]:
    return {"id": task_id, "kind": "shell", "argv": ["true"], "deps": list(deps)}


def made_run(project: Path, tasks: list[dict[str, Any]]) -> tuple[RunDir, Callable[..., None]]:
    """A run directory with ``tasks`` as its plan; ``record(at, type, **fields)`` appends a
    record at ``T0 + at``."""
    run = create_run(project)
    plan = parse_plan({"version": 1, "tasks": tasks}, project=project)
    (run.path / layout.PLAN).write_text(plan_to_json(plan))
    log = EventLog(run.events_path)

    def record(at: float, type_: str, **fields: Any) -> None:
        log.append_record({**fields, "ts": T0 + at, "type": type_})

    record(0, "run_created", run_id=run.run_id, tasks=[t["id"] for t in tasks])
    record(0.5, "supervisor_started", pid=1)
    return run, record


def timeline_of(run: RunDir, now: float = T0 + 100) -> Timeline:
    from claude_fanout.cli.common import plan_of

    return read_timeline(run, plan_of(run), now=now)


def a_finished_run(project: Path) -> RunDir:
    """A (first try fails, retried), B, C after A and B, D after C fails, E after D skipped."""
    run, record = made_run(
        project,
        [shell("A"), shell("B"), shell("C", "A", "B"), shell("D", "C"), shell("E", "D")],
    )
    record(1, "task_started", task="A", attempt=1, pid=10)
    record(1, "task_started", task="B", attempt=1, pid=11)
    record(2, "task_exited", task="A", attempt=1, outcome="failed", exit_code=3, reason="exit 3")
    record(2, "task_retry", task="A", attempt=2, delay_s=1.0, reason="exit 3")
    record(3, "task_exited", task="B", attempt=1, outcome="succeeded", exit_code=0)
    record(3.5, "task_started", task="A", attempt=2, pid=12)
    record(5, "task_exited", task="A", attempt=2, outcome="succeeded", exit_code=0)
    record(6, "task_started", task="C", attempt=1, pid=13)
    record(10, "task_exited", task="C", attempt=1, outcome="succeeded", exit_code=0)
    record(10, "task_started", task="D", attempt=1, pid=14)
    record(11, "task_exited", task="D", attempt=1, outcome="failed", exit_code=1)
    record(11, "task_skipped", task="E", reason="dependency D failed")
    record(12, "run_finished", state="failed", reason="D failed")
    return run


def test_attempts_retries_waits_skips_and_the_critical_path_come_from_one_read_of_the_log(
    project: Path,
) -> None:
    timeline = timeline_of(a_finished_run(project))

    assert timeline.status.state is RunState.FAILED
    assert (timeline.begin, timeline.end) == (T0 + 0.5, T0 + 12)
    a = timeline.tasks["A"]
    assert [(x.number, x.state, x.start - T0, x.end) for x in a.attempts] == [
        (1, "failed", 1.0, T0 + 2),
        (2, "succeeded", 3.5, T0 + 5),
    ]
    assert a.attempts[0].exit_code == 3 and a.attempts[0].reason == "exit 3"
    # The retry's wait runs from its record to the next start, not to the planned delay.
    assert a.retry_waits == [(T0 + 2, T0 + 3.5)]
    # C was ready when the last of A and B ended; E never ran, and says why.
    assert timeline.tasks["C"].ready == T0 + 5 and timeline.tasks["C"].deps == ("A", "B")
    assert timeline.tasks["E"].attempts == []
    assert timeline.tasks["E"].skipped == (T0 + 11, "skipped", "dependency D failed")
    # A (1..5: 4s with its retry) + C (4s) + D (1s) beats B (2s) + C + D.
    assert timeline.critical == ["A", "C", "D"]
    assert timeline.critical_s == pytest.approx(9.0)
    assert timeline.tasks["A"].run_time_s(timeline.now) == pytest.approx(2.5)


def test_a_lost_supervisor_ends_the_attempts_it_left_open(project: Path) -> None:
    run, record = made_run(project, [shell("A"), shell("B")])
    record(1, "task_started", task="A", attempt=1, pid=10)
    record(1, "task_started", task="B", attempt=1, pid=11)
    record(2, "task_exited", task="B", attempt=1, outcome="succeeded", exit_code=0)
    # supervisor.json names a process that does not exist: the run reads lost.
    (run.path / layout.SUPERVISOR).write_text('{"pid": 999999999, "start_time": 1.0}')

    timeline = timeline_of(run, now=T0 + 7)

    assert timeline.status.state is RunState.LOST
    (attempt,) = timeline.tasks["A"].attempts
    assert attempt.state == "lost" and attempt.end == T0 + 7
    assert not (run.path / layout.STATE).exists()  # the report wrote nothing


def test_a_running_workers_cost_so_far_is_on_the_page(project: Path) -> None:
    fake = FakeRun(project, "20261130-000000-000-aaaa", {"W1": {}, "W2": {}}, session=None)
    fake.start("W1")
    fake.log.append(
        "task_progress", task="W1", attempt=1, turns=2, output_tokens=300, cost_usd=0.25,
        input_tokens=1000, doing="Read src/a.py",
    )  # fmt: skip
    run = RunDir(fake.path)

    timeline = timeline_of(run, now=fake_now())
    page = render(run, None, timeline)

    assert timeline.status.tasks["W1"].state is TaskState.RUNNING
    (attempt,) = timeline.tasks["W1"].attempts
    assert attempt.end is None and attempt.state == "running"
    row = Dom(page).rows["W1"]
    assert row[2:] == ["running", "1", row[4], "2", "1.0k", "300", "$0.25", "", "Read src/a.py"]
    assert 'id="run-cost">1 worker, $0.25' in page
    # W2 has not started: it waits for a slot until now.
    assert timeline.tasks["W2"].attempts == [] and "W2 waits for a slot</title>" in page


def fake_now() -> float:
    import time

    return time.time()


HOSTILE = (
    "<script>document.title='x'</script></textarea></pre><img src=x onerror=alert(1)>"
    '<b onclick="x">b</b> "q" \'s\' &amp;'
)


def test_everything_a_worker_or_the_log_says_is_text_not_markup(project: Path) -> None:
    run, record = made_run(project, [shell("A"), shell("B")])
    record(1, "task_started", task="A", attempt=1, pid=10)
    record(2, "task_exited", task="A", attempt=1, outcome="failed", exit_code=1, reason=HOSTILE)
    record(2, "task_skipped", task="B", reason=HOSTILE)
    record(2, "error", message=HOSTILE)
    record(3, "run_finished", state="failed", reason=HOSTILE)
    record(3, "run_merged", error=HOSTILE)
    make_private_dir(run.path / "workers")
    make_private_dir(run.worker_dir("A"))
    make_private_dir(run.out_dir("A"))
    (run.out_dir("A") / "result.md").write_text(HOSTILE)

    page = render(run, None, timeline_of(run))

    parsed = Dom(page)
    assert {tag for tag, _ in parsed.elements} <= {
        *[
            "html",
            "head",
            "meta",
            "title",
            "style",
            "body",
            "h1",
            "h2",
            "h3",
            "span",
            "p",
            "br",
            "b",
            "div",
            "svg",
            "line",
            "text",
            "g",
            "rect",
        ],
        *["table", "thead", "tbody", "tfoot", "tr", "th", "td", "section", "pre"],
    }
    assert not [attrs for _, attrs in parsed.elements if any(k.startswith("on") for k in attrs)]
    # Each place shows it whole, as text: the result, the error, the run's reason, the attempt's
    # tooltip; the skip reason is cut to fit the timeline.
    assert parsed.text.count(HOSTILE) >= 4
    # And the browser would run no script anyway: the page's policy allows none.
    (policy,) = [a for t, a in parsed.elements if a.get("http-equiv") == "Content-Security-Policy"]
    assert policy["content"].startswith("default-src 'none';")
    assert "script-src" not in policy["content"]


def test_the_excerpt_is_bounded_and_never_follows_a_link_or_opens_a_fifo(project: Path) -> None:
    run, record = made_run(project, [shell("A"), shell("B"), shell("C")])
    for name in ("A", "B", "C"):
        record(1, "task_started", task=name, attempt=1, pid=10)
        record(2, "task_exited", task=name, attempt=1, outcome="succeeded", exit_code=0)
    record(3, "run_finished", state="succeeded")
    make_private_dir(run.path / "workers")
    for name in ("A", "B", "C"):
        make_private_dir(run.worker_dir(name))
        make_private_dir(run.out_dir(name))
    big = "line\n" * 10_000
    (run.out_dir("A") / "result.md").write_text(big)
    secret = project / "secret.txt"
    secret.write_text("SECRET")
    (run.out_dir("B") / "result.md").symlink_to(secret)
    os.mkfifo(run.out_dir("C") / "result.md")

    page = render(run, None, timeline_of(run))

    shown = Dom(page).sections
    assert list(shown) == ["A"]
    assert shown["A"] == big[: defaults.REPORT_EXCERPT_BYTES]
    assert f"first {defaults.REPORT_EXCERPT_BYTES:,} of {len(big):,} bytes" in page
    assert "SECRET" not in page


# The command: bad input is one line naming the problem and the fix, and nothing is written.


def test_report_writes_into_the_run_directory_or_where_asked(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    run = a_finished_run(project)

    done = fanout("report")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{run.path / layout.REPORT}\n"
    assert "<svg" in (run.path / layout.REPORT).read_text()
    elsewhere = project / "page.html"
    done = fanout("report", run.run_id[:15], "-o", "page.html")
    assert (done.returncode, done.stdout) == (0, f"{elsewhere}\n")
    assert Dom(elsewhere.read_text()).rows["D"][2] == "failed"


def test_no_runs_and_an_unknown_run_are_one_line_errors(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    none = fanout("report")
    assert none.returncode == 1 and none.stdout == ""
    assert none.stderr.count("\n") == 1 and "no runs under" in none.stderr
    a_finished_run(project)
    unknown = fanout("report", "nosuchrun")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert "no run 'nosuchrun'" in unknown.stderr and "fanout runs" in unknown.stderr


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (None, "not a fanout run"),
        (b"\x00\xff garbage \x01\n" * 50, "damaged: no run_created record"),
        (b'{"type": "task_started", "task": "A", "ts": 1}\n', "damaged: no run_created record"),
    ],
    ids=["no log", "garbage", "no run_created"],
)
def test_a_directory_that_is_no_run_or_a_damaged_log_is_a_one_line_error_and_nothing_changes(
    project: Path, fanout: Callable[..., CLIResult], damage: bytes | None, says: str
) -> None:
    run = create_run(project)
    if damage is not None:
        run.events_path.write_bytes(damage)
    before = sorted(p.name for p in run.path.iterdir())

    done = fanout("report", run.run_id)

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert sorted(p.name for p in run.path.iterdir()) == before


def test_lines_that_do_not_parse_are_skipped_and_said(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    run = a_finished_run(project)
    with open(run.events_path, "ab") as log:
        log.write(b"{torn\n")

    done = fanout("report", run.run_id)

    assert done.returncode == 0
    assert done.stderr.count("\n") == 1 and "1 line(s)" in done.stderr
    assert "1 line(s) of the log did not parse" in (run.path / layout.REPORT).read_text()


def test_an_output_path_that_cannot_be_written_is_a_one_line_error(
    project: Path, fanout: Callable[..., CLIResult]
) -> None:
    run = a_finished_run(project)
    for target, says in (("missing/page.html", "no directory"), (".", "is a directory")):
        done = fanout("report", run.run_id, "-o", target)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert says in done.stderr
    assert not (run.path / layout.REPORT).exists()


def test_open_hands_the_page_to_the_browser_and_says_when_there_is_none(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from claude_fanout.cli.main import main

    run = a_finished_run(project)
    opened: list[str] = []
    found = [True, False]
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or found.pop(0))

    assert main(["--project", str(project), "report", "--open"]) == 0
    assert opened == [(run.path / layout.REPORT).as_uri()]
    assert capsys.readouterr().err == ""
    assert main(["--project", str(project), "report", "--open"]) == 0
    assert "no web browser found" in capsys.readouterr().err


def test_a_task_whose_dependency_still_runs_is_waiting_on_it_not_ready(project: Path) -> None:
    from claude_fanout import pids
    from claude_fanout.store.files import write_json_atomic

    run, record = made_run(project, [shell("A"), shell("B", "A")])
    record(1, "task_started", task="A", attempt=1, pid=10)
    me = {"pid": os.getpid(), "start_time": pids.process_start_time(os.getpid())}
    write_json_atomic(run.path / layout.SUPERVISOR, {**me, "heartbeat": T0 + 5})

    timeline = timeline_of(run, now=T0 + 6)
    page = render(run, None, timeline)

    assert timeline.status.state is RunState.RUNNING
    assert timeline.tasks["B"].ready is None
    assert "B waits on A</title>" in page and "B waits for a slot" not in page
    assert timeline.critical == ["A", "B"] or timeline.critical == ["A"]
