"""A running worker's spend and what it is doing, read from streams the real CLI wrote
(``tests/fixtures/streams``, ``tools/record_streams.py``): each API call counted once, the
estimate equal to the CLI's own total once the stream is complete, the price table, and the
supervisor's ``task_progress`` records (throttled, one more at the end, each line read once)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.claude.pricing import PRICES, UNKNOWN_MODEL_PRICE, cost_usd, price_of
from claude_fanout.claude.progress import StreamProgress, doing_of
from claude_fanout.claude.stream import usage_of
from claude_fanout.config import Config
from claude_fanout.defaults import DOING_MAX_CHARS, PROGRESS_INTERVAL_S
from claude_fanout.executors.base import Command, Exit, RunContext
from claude_fanout.executors.claude import ClaudeExecutor
from claude_fanout.executors.shell import ShellExecutor
from claude_fanout.plan import parse_plan
from claude_fanout.runtime.limits import RunBudget
from claude_fanout.states import EventType, TaskState
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import create_run
from claude_fanout.store.state import load_status

STREAMS = Path(__file__).resolve().parent.parent / "fixtures" / "streams"


def lines_of(name: str) -> list[bytes]:
    return (STREAMS / f"{name}.jsonl").read_bytes().splitlines(keepends=True)


def result_of(name: str) -> dict[str, Any]:
    (result,) = [m for m in map(json.loads, lines_of(name)) if m.get("type") == "result"]
    assert isinstance(result, dict)
    return result


def test_the_recorded_stream_repeats_a_message_id_and_its_usage_per_content_block() -> None:
    """What the parser relies on, as the real CLI wrote it: a message of a text and a tool_use
    block is two assistant lines with one id and one usage; output tokens come only from the
    API's ``message_delta`` events (``--include-partial-messages``)."""
    messages = [json.loads(line) for line in lines_of("progress")]
    assistant = [m["message"] for m in messages if m["type"] == "assistant"]
    ids = [m["id"] for m in assistant]
    assert len(ids) == 5 and len(set(ids)) == 3
    assert assistant[0]["usage"] == assistant[1]["usage"]
    assert {m["usage"]["output_tokens"] for m in assistant} == {0}
    deltas = [m["event"] for m in messages if m["type"] == "stream_event"]
    assert [d["usage"]["output_tokens"] for d in deltas if d["type"] == "message_delta"] == [
        50,
        51,
        70,
    ]


def test_a_complete_stream_is_estimated_at_exactly_what_the_cli_reported() -> None:
    progress = StreamProgress()
    for line in lines_of("progress"):
        progress.feed_line(line)
    result = result_of("progress")

    assert progress.usage() == usage_of(result)
    assert progress.usage()["cost_usd"] == pytest.approx(result["total_cost_usd"])
    assert progress.doing == "- two: fine"  # the last line of its last text


def test_each_api_call_is_counted_once_as_the_stream_grows() -> None:
    progress = StreamProgress()
    seen: list[tuple[int, int, int]] = []
    for line in lines_of("progress"):
        message = progress.feed_line(line)
        if message is not None and message["type"] == "assistant":
            usage = progress.usage()
            seen.append((int(usage["input_tokens"]), int(usage["turns"]), len(seen)))
    # Two lines per tool-using message, one for the last: the second line of a message adds nothing.
    assert [(tokens, turns) for tokens, turns, _ in seen] == [
        (1000, 1),
        (1000, 1),
        (2001, 2),
        (2001, 2),
        (3201, 3),
    ]


def test_without_stream_events_input_and_turns_are_exact_and_output_is_not_yet_known() -> None:
    """A stream written without ``--include-partial-messages``: the estimate can only be low by
    the output tokens, which the CLI's result then adds."""
    progress = StreamProgress()
    for line in lines_of("success"):
        progress.feed_line(line)
    usage, final = progress.usage(), usage_of(result_of("success"))

    assert usage["input_tokens"] == final["input_tokens"]
    assert usage["turns"] == final["turns"]
    assert usage["output_tokens"] == 0 < final["output_tokens"]
    assert 0 < usage["cost_usd"] < final["cost_usd"]


def test_damaged_and_partial_lines_are_read_around() -> None:
    progress = StreamProgress()
    good = lines_of("progress")
    for line in [b"{not json\n", b"\n", b"[1, 2]\n", good[1][:40], *good]:
        progress.feed_line(line)
    assert progress.usage() == usage_of(result_of("progress"))


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-opus-5-5", PRICES["claude-opus-5-5"]),
        ("claude-sonnet-4-5-20250929", PRICES["claude-sonnet-4-5"]),
        ("claude-sonnet-4-5[1m]", PRICES["claude-sonnet-4-5"]),
        ("claude-opus-4-20250514", PRICES["claude-opus-4"]),
        ("claude-opus-4-5", PRICES["claude-opus-4-5"]),
        ("claude-3-5-haiku-20241022", PRICES["claude-3-5-haiku"]),
        ("claude-opus-4-99", UNKNOWN_MODEL_PRICE),
        ("some-other-model", UNKNOWN_MODEL_PRICE),
        (None, UNKNOWN_MODEL_PRICE),
    ],
)
def test_a_model_is_priced_by_its_id_and_an_unknown_one_as_the_dearest(
    model: str | None, price: object
) -> None:
    assert price_of(model) == price
    assert all(UNKNOWN_MODEL_PRICE.output >= p.output for p in PRICES.values())


def test_the_cli_priced_the_recorded_sessions_as_the_table_does() -> None:
    for name in ("success", "progress"):
        result = result_of(name)
        (model,) = result["modelUsage"]
        assert cost_usd(model, result["usage"]) == pytest.approx(result["total_cost_usd"])


@pytest.mark.parametrize(
    ("block", "doing"),
    [
        (
            {"type": "tool_use", "name": "Bash", "input": {"command": "pytest -q"}},
            "Bash: pytest -q",
        ),
        (
            {"type": "tool_use", "name": "Read", "input": {"file_path": "/p/calc.py"}},
            "Read calc.py",
        ),
        ({"type": "tool_use", "name": "Read", "input": {"file_path": "/etc/x"}}, "Read /etc/x"),
        ({"type": "tool_use", "name": "Grep", "input": {"pattern": "def "}}, "Grep def"),
        ({"type": "tool_use", "name": "Mystery", "input": {}}, "Mystery"),
        ({"type": "text", "text": "Looking.\n\nFound it:\n  a bug\n"}, "a bug"),
        ({"type": "text", "text": "red \x1b[31mALERT\x1b[0m \u202eevil"}, "red ALERT evil"),
        ({"type": "text", "text": "   "}, None),
        ({"type": "thinking", "thinking": "hmm"}, None),
    ],
)
def test_what_a_worker_is_doing_is_one_clean_line(block: dict[str, Any], doing: str | None) -> None:
    assert doing_of(block, "/p") == doing


def test_what_a_worker_is_doing_is_cut() -> None:
    line = doing_of({"type": "tool_use", "name": "Bash", "input": {"command": "x" * 500}})
    assert line is not None and len(line) == DOING_MAX_CHARS and line.endswith("\u2026")


# -- the supervisor's records ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_context(project: Path, task: dict[str, Any]) -> RunContext:
    """A run of one task in a real store, as executors see it, on a clock the test moves."""
    plan = parse_plan({"version": 1, "tasks": [task]}, project=project)
    run = create_run(project)
    run.make_worker_dirs(task["id"])
    return RunContext(
        run=run,
        plan=plan,
        config=Config(),
        budget=RunBudget(plan, Config()),
        emit=run.log.append,
        commit_of=lambda _task: None,
        clock=Clock(),
    )


class Worker:
    """A claude task's executor in a real run store, its attempt 1 recorded as started."""

    def __init__(self, project: Path) -> None:
        context = run_context(project, {"id": "W1", "kind": "claude", "prompt": "Review it"})
        self.project, self.plan, self.run = project, context.plan, context.run
        self.budget, self.clock = context.budget, context.clock
        self.executor = ClaudeExecutor(context)
        self.task = self.plan.task("W1")
        self.command = self.executor.command(self.task, dict(os.environ))
        self.command.close()
        self.run.log.append(EventType.RUN_CREATED, run_id=self.run.run_id, tasks=["W1"])
        self.run.log.append(EventType.TASK_STARTED, task="W1", attempt=1, pid=os.getpid())

    def write(self, lines: list[bytes]) -> None:
        with self.run.stream_path("W1").open("ab") as out:
            out.write(b"".join(lines))

    def judge(self, exit: Exit) -> None:
        argv = list(self.command.argv)
        self.executor.judge(self.task, 1, Command(argv=argv, cwd=self.project), exit)

    def records(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self.run.events_path).events if e["type"] == type_]


def test_progress_records_are_throttled_and_one_more_comes_at_the_end(project: Path) -> None:
    w = Worker(project)
    run, clock, budget, executor, task = w.run, w.clock, w.budget, w.executor, w.task
    stream = run.stream_path("W1")
    lines = lines_of("progress")
    first_turn = next(i for i, ln in enumerate(lines) if b'"message_stop"' in ln) + 1

    def progress_records() -> list[dict[str, Any]]:
        events = read_events(run.events_path).events
        return [e for e in events if e["type"] == EventType.TASK_PROGRESS]

    with stream.open("ab") as out:
        out.write(b"".join(lines[:first_turn]))
    executor.follow(task, 1)
    (first,) = progress_records()
    assert (first["attempt"], first["input_tokens"], first["turns"]) == (1, 1000, 1)
    assert first["doing"] == "Read notes.txt"
    assert budget.spent_cost_usd == pytest.approx(first["cost_usd"])

    with stream.open("ab") as out:
        out.write(b"".join(lines[first_turn:-1]))  # every API call, not yet the result
    clock.now += PROGRESS_INTERVAL_S / 2
    executor.follow(task, 1)
    assert len(progress_records()) == 1, "a second record within the interval"
    complete = usage_of(result_of("progress"))
    assert budget.spent_cost_usd == pytest.approx(complete["cost_usd"]), "the budget waits"
    live = load_status(run).tasks["W1"]
    assert live.state is TaskState.RUNNING and live.live is not None
    assert live.live["turns"] == 1  # what the log says so far

    clock.now += PROGRESS_INTERVAL_S
    executor.follow(task, 1)
    assert len(progress_records()) == 2
    executor.follow(task, 1)
    assert len(progress_records()) == 2, "nothing new: no record"

    w.write(lines[-1:])  # the result
    w.judge(Exit(0, None, 1.0))
    records = progress_records()
    assert len(records) == 2, "the usage did not change at the end: no last record"
    (final,) = [e for e in read_events(run.events_path).events if e["type"] == "task_usage"]
    assert final["cost_usd"] == pytest.approx(complete["cost_usd"])
    assert budget.spent_cost_usd == pytest.approx(complete["cost_usd"]), "counted twice"


def test_a_worker_stopped_before_its_result_keeps_what_it_spent(project: Path) -> None:
    """Killed mid-session (no result, so no ``task_usage``): a last ``task_progress`` record
    carries what the throttle held back, and the fold counts it as spent once the attempt ends."""
    w = Worker(project)
    lines = lines_of("progress")
    w.write(lines[:3])
    w.executor.follow(w.task, 1)
    w.write(lines[3:-1])
    w.executor.follow(w.task, 1)  # within the interval: nothing recorded yet
    assert len(w.records(EventType.TASK_PROGRESS)) == 1

    w.judge(Exit(None, 15, 2.0))
    last = w.records(EventType.TASK_PROGRESS)[-1]
    complete = usage_of(result_of("progress"))
    assert {key: last[key] for key in complete} == complete
    assert w.records("task_usage") == []
    assert w.budget.spent_cost_usd == pytest.approx(complete["cost_usd"])
    w.run.log.append(EventType.TASK_EXITED, task="W1", attempt=1, outcome="over_budget")
    status = load_status(w.run)
    assert status.tasks["W1"].usage == complete
    assert status.spent() == complete


def test_the_stream_is_read_once_from_where_the_last_read_stopped(project: Path) -> None:
    """The follower's cost does not grow with the stream: each line is parsed once."""
    w = Worker(project)
    run, executor, task = w.run, w.executor, w.task
    parsed: list[bytes] = []
    feed_line = StreamProgress.feed_line

    def counting(self: StreamProgress, line: bytes) -> dict[str, Any] | None:
        parsed.append(line)
        return feed_line(self, line)

    lines = lines_of("progress")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StreamProgress, "feed_line", counting)
        for line in lines:
            with run.stream_path("W1").open("ab") as out:
                out.write(line[:-5])  # a line half written is not read yet
            executor.follow(task, 1)
            with run.stream_path("W1").open("ab") as out:
                out.write(line[-5:])
            executor.follow(task, 1)
    assert parsed == [line.rstrip(b"\n") for line in lines]
    rendered = run.log_path("W1").read_text()
    assert "[tool] Read notes.txt" in rendered and "[result] success" in rendered


def test_a_shell_workers_last_line_is_what_it_is_doing(project: Path) -> None:
    context = run_context(project, {"id": "S1", "kind": "shell", "argv": ["make"]})
    run, clock, executor = context.run, context.clock, ShellExecutor(context)
    task = context.plan.task("S1")
    run.log.append(EventType.RUN_CREATED, run_id=run.run_id, tasks=["S1"])
    run.log.append(EventType.TASK_STARTED, task="S1", attempt=2, pid=os.getpid())
    log = run.log_path("S1")

    def said() -> list[str]:
        events = read_events(run.events_path).events
        return [e["doing"] for e in events if e["type"] == EventType.TASK_PROGRESS]

    def step(output: bytes, seconds: float = PROGRESS_INTERVAL_S) -> None:
        with log.open("ab") as out:
            out.write(output)
        clock.now += seconds
        executor.follow(task, 2)

    log.write_bytes(b"attempt 1 said this\n--- fanout: S1 attempt 2 at 2026-11-30 ---\n")
    executor.follow(task, 2)  # the attempt begins: what is there is an earlier one's
    step(b"")
    assert said() == []
    step(b"compiling 1/3\ncompiling 2/3\n\n")
    assert said() == ["compiling 2/3"]
    step(b"compiling 3/3\n", seconds=PROGRESS_INTERVAL_S / 2)
    assert said() == ["compiling 2/3"], "a second record within the interval"
    step(b"linking \x1b[1mcalc\x1b[0m", seconds=PROGRESS_INTERVAL_S / 2)
    assert said() == ["compiling 2/3", "compiling 3/3"], "a line half written was taken"
    step(b"\n" + b"x" * 50_000 + b"\n")
    assert said()[-1] == "x" * (DOING_MAX_CHARS - 1) + "\u2026"
    step(b"\n\n")
    assert len(said()) == 3, "nothing new was said: no record"
    shell = load_status(run).tasks["S1"]
    assert shell.doing == said()[-1]
    assert shell.live is None and shell.spent() is None, "a shell task spends nothing"
