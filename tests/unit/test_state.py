"""The run state: a pure fold over the event log, cached by a snapshot the tail extends."""

from __future__ import annotations

import itertools
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_fanout import defaults
from claude_fanout.errors import UnsafePathError
from claude_fanout.states import EventType, RunState, TaskState
from claude_fanout.store.eventlog import EventLog, encode
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import (
    fold,
    fold_tail,
    load_snapshot,
    load_status,
    mark_lost,
    publish_snapshot,
    save_snapshot,
)
from claude_fanout.store.status import SNAPSHOT_VERSION, RunStatus, TaskStatus
from tests.helpers import count_bytes_folded

property_settings = settings(
    derandomize=True,
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    path = tmp_path / "runs" / "20260101-000000-abcdef"
    path.mkdir(parents=True, mode=0o700)
    return RunDir(path)


def ev(type_: str, ts: float | None = None, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "type": type_, **fields}


def folded(
    events: list[dict[str, Any]], status: RunStatus | None = None, run_id: str = "R"
) -> RunStatus:
    status = RunStatus(run_id=run_id) if status is None else status
    for event in events:
        fold(status, event)
    return status


def write_log(run: RunDir, events: list[dict[str, Any]]) -> list[int]:
    """Write ``events`` to the run's log; the byte offset after each one."""
    lines = [encode(event) for event in events]
    with run.events_path.open("ab") as handle:
        handle.write(b"".join(lines))
    base = run.events_path.stat().st_size - sum(len(line) for line in lines)
    return [base + end for end in itertools.accumulate(len(line) for line in lines)]


FAILED_RUN = [
    ev("run_created", 0.5, run_id="R", tasks=["A", "B", "C", "D"], name="demo"),
    ev("supervisor_started", 1.0, pid=99),
    ev("task_started", 2.0, task="A", attempt=1, pid=100),
    ev("task_exited", 5.0, task="A", outcome="succeeded", exit_code=0, signal=None),
    ev("task_started", 5.0, task="B", attempt=1, pid=101),
    ev("task_exited", 6.0, task="B", outcome="failed", exit_code=3, reason="exit code 3"),
    ev("task_retry", 6.0, task="B", reason="exit code 3", attempt=2, delay_s=1.0),
    ev("task_started", 7.0, task="B", attempt=2, pid=102),
    ev("task_exited", 9.5, task="B", outcome="timed_out", signal=15, reason="timed out after 2s"),
    ev("task_skipped", 9.5, task="C", reason="dependency B timed_out"),
    ev("error", 9.6, message="worker B left a core file"),
    ev("run_finished", 10.0, state="failed", reason=None, counts={}),
]


# --- the fold ----------------------------------------------------------------------------------


def test_a_failed_run_folds_to_the_expected_states() -> None:
    status = folded(FAILED_RUN)

    assert status.state is RunState.FAILED
    assert (status.created, status.started, status.finished) == (0.5, 1.0, 10.0)
    assert status.reason is None
    assert status.cancel_requested is False
    assert status.errors == ["worker B left a core file"]
    a, b, c, d = (status.tasks[t] for t in "ABCD")
    assert (a.state, a.attempt, a.pid, a.exit_code, a.duration_s) == (
        TaskState.SUCCEEDED,
        1,
        100,
        0,
        3.0,
    )
    assert (b.state, b.attempt, b.pid, b.signal, b.exit_code, b.duration_s) == (
        TaskState.TIMED_OUT,
        2,
        102,
        15,
        None,
        2.5,
    )
    assert b.reason == "timed out after 2s"
    assert (c.state, c.reason, c.attempt, c.duration_s) == (
        TaskState.SKIPPED,
        "dependency B timed_out",
        0,
        None,
    )
    assert (d.state, d.attempt) == (TaskState.PENDING, 0)
    assert status.counts() == {"succeeded": 1, "timed_out": 1, "skipped": 1, "pending": 1}


def test_run_goes_from_starting_to_running_to_succeeded() -> None:
    status = folded([ev("run_created", 1.0, tasks=["A"])])
    assert status.state is RunState.STARTING
    assert not status.state.terminal

    fold(status, ev("supervisor_started", 2.0))
    assert status.state is RunState.RUNNING

    fold(status, ev("task_started", 2.0, task="A", attempt=1, pid=7))
    assert status.tasks["A"].state is TaskState.RUNNING
    assert status.tasks["A"].duration_s is None

    fold(status, ev("task_exited", 4.0, task="A", outcome="succeeded", exit_code=0))
    fold(status, ev("run_finished", 4.5, state="succeeded"))
    assert status.state is RunState.SUCCEEDED
    assert status.state.terminal
    assert status.tasks["A"].state.terminal


def test_retry_waits_then_a_new_attempt_clears_the_last_exit() -> None:
    status = folded(FAILED_RUN[:7])
    b = status.tasks["B"]
    assert (b.state, b.reason, b.exit_code) == (TaskState.WAITING_RETRY, "exit code 3", 3)

    fold(status, FAILED_RUN[7])

    assert (b.state, b.attempt, b.pid, b.started) == (TaskState.RUNNING, 2, 102, 7.0)
    assert (b.ended, b.exit_code, b.signal, b.reason) == (None, None, None, None)


def test_task_started_without_an_attempt_counts_up() -> None:
    status = folded([ev("run_created", 0, tasks=["A"])])

    fold(status, ev("task_started", 1.0, task="A"))
    fold(status, ev("task_exited", 2.0, task="A", outcome="failed"))
    fold(status, ev("task_started", 3.0, task="A"))

    assert status.tasks["A"].attempt == 2


def test_a_second_supervisor_start_keeps_the_first_start_time() -> None:
    status = folded([ev("supervisor_started", 1.0), ev("supervisor_started", 5.0)])

    assert status.started == 1.0


def test_a_supervisor_start_does_not_revive_a_finished_run() -> None:
    status = folded([ev("run_finished", 3.0, state="cancelled"), ev("supervisor_started", 4.0)])

    assert status.state is RunState.CANCELLED


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        ("succeeded", TaskState.SUCCEEDED),
        ("failed", TaskState.FAILED),
        ("timed_out", TaskState.TIMED_OUT),
        ("cancelled", TaskState.CANCELLED),
        ("exploded", TaskState.FAILED),
        (None, TaskState.FAILED),
        (7, TaskState.FAILED),
    ],
)
def test_task_exit_outcomes(outcome: object, state: TaskState) -> None:
    status = folded(
        [
            ev("run_created", 0, tasks=["A"]),
            ev("task_started", 1.0, task="A", attempt=1),
            ev("task_exited", 1.25, task="A", outcome=outcome, exit_code=1),
        ]
    )

    assert status.tasks["A"].state is state
    assert status.tasks["A"].duration_s == 0.25


def test_a_cancelled_run() -> None:
    status = folded(
        [
            ev("run_created", 0, tasks=["A", "B", "C"]),
            ev("supervisor_started", 1.0),
            ev("task_started", 1.0, task="A", attempt=1, pid=10),
            ev("cancel_requested", 2.0, by="cli"),
            ev("task_exited", 2.5, task="A", outcome="cancelled", signal=15, reason="by cli"),
            ev("task_skipped", 2.5, task="C", reason="dependency A cancelled"),
            ev("run_finished", 3.0, state="cancelled", reason="by cli"),
        ]
    )

    assert status.cancel_requested is True
    assert status.state is RunState.CANCELLED
    assert status.reason == "by cli"
    assert status.tasks["A"].state is TaskState.CANCELLED
    assert status.tasks["A"].signal == 15
    assert status.tasks["C"].state is TaskState.SKIPPED


def test_a_task_skipped_because_of_a_cancel_is_cancelled() -> None:
    status = folded(
        [
            ev("run_created", 0, tasks=["A"]),
            ev("cancel_requested", 1.0, by="supervisor", reason="conductor gone"),
            ev("task_skipped", 1.0, task="A", outcome="cancelled", reason="conductor gone"),
        ]
    )

    assert status.tasks["A"].state is TaskState.CANCELLED
    assert status.tasks["A"].reason == "conductor gone"


@pytest.mark.parametrize(
    ("type_", "outcome"),
    [
        ("task_exited", "running"),
        ("task_exited", "pending"),
        ("task_skipped", "running"),
        ("task_skipped", "waiting_retry"),
    ],
)
def test_an_exit_or_skip_always_leaves_the_task_terminal(type_: str, outcome: str) -> None:
    status = folded(
        [
            ev("run_created", 0, tasks=["A"]),
            ev("task_started", 1.0, task="A", attempt=1),
            ev(type_, 2.0, task="A", outcome=outcome),
        ]
    )

    assert status.tasks["A"].state.terminal


def test_a_lost_supervisor_loses_running_tasks_only() -> None:
    status = folded(
        [
            ev("run_created", 0, tasks=["A", "B", "C"]),
            ev("supervisor_started", 1.0),
            ev("task_started", 1.0, task="A", attempt=1),
            ev("task_exited", 2.0, task="A", outcome="succeeded", exit_code=0),
            ev("task_started", 2.0, task="B", attempt=1),
            ev("supervisor_lost", 8.0, reason="heartbeat 15s old"),
        ]
    )

    assert (status.state, status.reason, status.finished) == (
        RunState.LOST,
        "heartbeat 15s old",
        8.0,
    )
    a, b, c = (status.tasks[t] for t in "ABC")
    assert (a.state, a.ended) == (TaskState.SUCCEEDED, 2.0)
    assert (b.state, b.ended, b.reason, b.duration_s) == (
        TaskState.LOST,
        8.0,
        "heartbeat 15s old",
        6.0,
    )
    assert c.state is TaskState.PENDING


def test_a_lost_supervisor_without_a_reason_gets_a_default_one() -> None:
    status = folded([ev("supervisor_started", 1.0), ev("supervisor_lost", 2.0)])

    assert status.state is RunState.LOST
    assert status.reason == "the supervisor died"


def test_a_lost_report_after_the_run_finished_changes_nothing() -> None:
    status = folded([ev("run_created", 0, tasks=["A"]), ev("run_finished", 3.0, state="succeeded")])
    before = status.to_dict()

    fold(status, ev("supervisor_lost", 4.0, reason="late watchdog"))

    assert status.to_dict() == before


def test_mark_lost_directly() -> None:
    status = folded(FAILED_RUN[:5])  # A succeeded, B running

    mark_lost(status, "no heartbeat", 20.0)

    assert (status.state, status.reason, status.finished) == (RunState.LOST, "no heartbeat", 20.0)
    assert status.tasks["B"].state is TaskState.LOST
    assert status.tasks["B"].ended == 20.0
    assert status.tasks["A"].state is TaskState.SUCCEEDED
    assert status.tasks["C"].state is TaskState.PENDING


def test_unknown_run_finished_state_counts_as_failed() -> None:
    assert folded([ev("run_finished", 1.0, state="weird")]).state is RunState.FAILED


def test_errors_keep_only_the_latest_twenty() -> None:
    status = folded([ev("error", float(n), message=f"e{n}") for n in range(30)])

    assert status.errors == [f"e{n}" for n in range(10, 30)]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({}, id="empty"),
        pytest.param({"type": "mystery", "task": "A", "ts": 1.0}, id="unknown-type"),
        pytest.param({"type": 5, "task": "A"}, id="type-int"),
        pytest.param({"type": None}, id="type-null"),
        pytest.param({"type": "task_started", "ts": 1.0}, id="no-task"),
        pytest.param({"type": "task_started", "task": "ZZ", "ts": 1.0}, id="unknown-task"),
        pytest.param({"type": "task_started", "task": ["A"], "ts": 1.0}, id="task-list"),
        pytest.param({"type": "task_exited", "task": {"id": "A"}}, id="task-object"),
        pytest.param({"type": "task_exited", "task": "A", "outcome": {"x": 1}}, id="outcome-obj"),
        pytest.param({"type": "task_retry", "task": 3}, id="retry-task-int"),
        pytest.param({"type": "task_skipped", "task": None}, id="skipped-task-null"),
        pytest.param(
            {"type": "run_created", "ts": 0.0, "tasks": [1, None, ["B"]]}, id="task-ids-not-str"
        ),
        pytest.param({"type": "run_finished", "state": ["failed"]}, id="state-list"),
        pytest.param({"type": "error", "message": 5}, id="message-int"),
        pytest.param({"type": "error"}, id="message-missing"),
        pytest.param(
            {"type": "run_created", "tasks": 5},
            id="tasks-int",
        ),
    ],
)
def test_unknown_and_malformed_events_are_ignored(event: dict[str, Any]) -> None:
    status = folded([ev("run_created", 0.0, tasks=["A"]), ev("supervisor_started", 1.0)])
    before = status.to_dict()

    fold(status, event)

    after = status.to_dict()
    json.dumps(after)  # still a writable snapshot
    assert set(after["tasks"]) == {"A"}
    if event.get("type") not in (EventType.TASK_EXITED, EventType.RUN_FINISHED):
        assert after == before


@pytest.mark.parametrize("attempt", ["two", None, 1.5, True])
def test_a_malformed_attempt_reads_as_absent(attempt: object) -> None:
    status = folded([ev("run_created", 0.0, tasks=["A"]), ev("supervisor_started", 1.0)])

    fold(status, {"type": "task_started", "task": "A", "ts": 2.0, "attempt": attempt})

    assert (status.tasks["A"].state, status.tasks["A"].attempt) == (TaskState.RUNNING, 1)
    json.dumps(status.to_dict())


def test_run_created_with_a_string_for_tasks_creates_no_tasks() -> None:
    status = folded([ev("run_created", 0.0, tasks="AB")])

    assert status.tasks == {}


def test_a_non_numeric_timestamp_does_not_break_the_snapshot() -> None:
    status = folded(
        [
            ev("run_created", 0.0, tasks=["A"]),
            {"type": "task_started", "task": "A", "attempt": 1, "ts": "yesterday"},
            ev("task_exited", 2.0, task="A", outcome="succeeded"),
        ]
    )

    json.dumps(status.to_dict())


def test_duration_is_never_negative() -> None:
    task = TaskStatus(id="A", started=10.0, ended=9.0)

    assert task.duration_s == 0.0


# --- snapshot round trips ----------------------------------------------------------------------


def test_to_dict_from_dict_round_trips_through_json() -> None:
    status = folded(FAILED_RUN)
    status.offset = 1234
    status.bad_lines = 2

    data = json.loads(json.dumps(status.to_dict()))
    again = RunStatus.from_dict(data)

    assert again == status
    assert data["version"] == SNAPSHOT_VERSION
    assert data["tasks"]["A"]["duration_s"] == 3.0
    assert data["tasks"]["A"]["state"] == "succeeded"
    assert isinstance(again.tasks["A"].state, TaskState)
    assert isinstance(again.state, RunState)


def test_from_dict_refuses_another_version() -> None:
    data = folded(FAILED_RUN).to_dict()
    data["version"] = SNAPSHOT_VERSION + 1

    with pytest.raises(ValueError, match="version"):
        RunStatus.from_dict(data)


def test_save_snapshot_writes_a_private_file_that_loads_back(run: RunDir) -> None:
    status = folded(FAILED_RUN, run_id=run.run_id)

    save_snapshot(run, status)

    assert stat.S_IMODE(run.state_path.stat().st_mode) == 0o600
    assert load_snapshot(run) == status
    assert sorted(p.name for p in run.path.iterdir()) == ["state.json"]


def test_load_status_without_a_snapshot_folds_the_whole_log(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN)

    status = load_status(run)

    expected = folded(FAILED_RUN, run_id=run.run_id)
    expected.offset = ends[-1]
    assert status == expected


def test_load_status_without_anything_is_a_fresh_run(run: RunDir) -> None:
    status = load_status(run)

    assert status == RunStatus(run_id=run.run_id)


def test_fold_tail_adds_only_new_events_and_counts_bad_lines(run: RunDir) -> None:
    write_log(run, FAILED_RUN[:4])
    status = fold_tail(run, RunStatus(run_id=run.run_id))
    with run.events_path.open("ab") as handle:
        handle.write(b"garbage\n")
    write_log(run, FAILED_RUN[4:])

    status = fold_tail(run, status)
    unchanged = fold_tail(run, status)

    expected = folded(FAILED_RUN, run_id=run.run_id)
    assert status.to_dict() | {"offset": 0, "bad_lines": 0} == expected.to_dict()
    assert status.bad_lines == 1
    assert status.offset == run.events_path.stat().st_size
    assert unchanged == status


def test_snapshot_plus_tail_equals_the_whole_fold(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN)
    head = folded(FAILED_RUN[:6], run_id=run.run_id)
    head.offset = ends[5]
    save_snapshot(run, head)

    status = load_status(run)

    expected = folded(FAILED_RUN, run_id=run.run_id)
    expected.offset = ends[-1]
    assert status == expected


@pytest.fixture
def state_json_of_another_version(run: RunDir) -> bytes:
    data = folded(FAILED_RUN[:3], run_id=run.run_id).to_dict()
    data["version"] = 99
    return json.dumps(data).encode()


@pytest.fixture
def state_json_with_an_unknown_field(run: RunDir) -> bytes:
    data = folded(FAILED_RUN[:3], run_id=run.run_id).to_dict()
    data["surprise"] = True
    return json.dumps(data).encode()


@pytest.fixture
def state_json_with_a_bogus_state(run: RunDir) -> bytes:
    data = folded(FAILED_RUN[:3], run_id=run.run_id).to_dict()
    data["state"] = "exploded"
    return json.dumps(data).encode()


@pytest.fixture
def state_json_cut_short(run: RunDir) -> bytes:
    return json.dumps(folded(FAILED_RUN[:3], run_id=run.run_id).to_dict()).encode()[:50]


@pytest.mark.parametrize(
    "snapshot",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\xfd", id="binary"),
        pytest.param(b'{"version": 1}', id="no-tasks"),
        pytest.param(b'{"version": 1, "tasks": {"A": {}}, "state": "running"}', id="task-no-id"),
        pytest.param("state_json_of_another_version", id="wrong-version"),
        pytest.param("state_json_with_an_unknown_field", id="unknown-field"),
        pytest.param("state_json_with_a_bogus_state", id="bogus-state"),
        pytest.param("state_json_cut_short", id="cut-short"),
        pytest.param(
            b"[]",
            id="json-array",
        ),
        pytest.param(
            b"null",
            id="json-null",
        ),
    ],
)
def test_a_corrupt_snapshot_falls_back_to_folding_the_log(
    request: pytest.FixtureRequest, run: RunDir, snapshot: bytes | str
) -> None:
    if isinstance(snapshot, str):
        snapshot = request.getfixturevalue(snapshot)
    ends = write_log(run, FAILED_RUN)
    run.state_path.write_bytes(snapshot)

    status = load_status(run)

    expected = folded(FAILED_RUN, run_id=run.run_id)
    expected.offset = ends[-1]
    assert status == expected


def test_a_snapshot_past_the_end_of_a_replaced_log_is_refolded(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN)
    stale = folded(FAILED_RUN, run_id=run.run_id)
    stale.offset = ends[-1]
    save_snapshot(run, stale)
    run.events_path.unlink()
    fresh = FAILED_RUN[:3]
    fresh_ends = write_log(run, fresh)

    status = load_status(run)

    expected = folded(fresh, run_id=run.run_id)
    expected.offset = fresh_ends[-1]
    assert status == expected


def test_a_symlinked_snapshot_is_never_believed(run: RunDir, tmp_path: Path) -> None:
    forged = folded([ev("run_finished", 1.0, state="succeeded")], run_id=run.run_id)
    forged_path = tmp_path / "forged.json"
    forged_path.write_text(json.dumps(forged.to_dict()))
    run.state_path.symlink_to(forged_path)
    write_log(run, FAILED_RUN[:3])

    try:
        status = load_status(run)
    except UnsafePathError:
        return
    assert status.state is RunState.RUNNING


# --- cost independence ---------------------------------------------------------------------------


@pytest.fixture
def run_with_a_20k_event_snapshot(run: RunDir) -> tuple[RunDir, list[dict[str, Any]]]:
    task_ids = [f"T{i}" for i in range(10)]
    events: list[dict[str, Any]] = [ev("run_created", 0.0, tasks=task_ids)]
    events.append(ev("supervisor_started", 0.0))
    ts = 0.0
    while len(events) < 20_000:
        for tid in task_ids:
            ts += 1.0
            attempt = len(events) // 20 + 1
            events.append(ev("task_started", ts, task=tid, attempt=attempt, pid=1000 + attempt))
            events.append(ev("task_exited", ts + 0.5, task=tid, outcome="failed", exit_code=1))
    write_log(run, events)
    save_snapshot(run, fold_tail(run, RunStatus(run_id=run.run_id)))
    return run, events


def test_load_status_reads_only_the_tail_after_the_snapshot(
    run_with_a_20k_event_snapshot: tuple[RunDir, list[dict[str, Any]]],
) -> None:
    run, events = run_with_a_20k_event_snapshot
    covered = load_snapshot(run).offset
    assert covered == run.events_path.stat().st_size
    # Destroy everything the snapshot covers, keeping the size: if load_status re-read it, it
    # would find one giant bad line and none of the tasks' history.
    run.events_path.write_bytes(b"\xff" * (covered - 1) + b"\n")
    log = EventLog(run.events_path)
    tail = [
        log.append("task_started", task="T3", attempt=9999, pid=42),
        log.append("task_exited", task="T3", outcome="succeeded", exit_code=0),
        log.append("run_finished", state="failed"),
    ]

    status = load_status(run)

    expected = folded(events + tail, run_id=run.run_id)
    expected.offset = run.events_path.stat().st_size
    assert status == expected
    assert status.bad_lines == 0
    assert len(events) >= 20_000


def foreign_notices(n: int) -> list[dict[str, Any]]:
    """What workers' ``fanout publish notice`` appends: records the supervisor never folds."""
    return [
        ev("notice", 100.0 + i, task=f"T{i % 10}", text=f"still reading, step {i}")
        for i in range(n)
    ]


@pytest.fixture
def bytes_folded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of the log each ``load_status`` read past its snapshot, one entry per read."""
    return count_bytes_folded(monkeypatch)


def test_a_long_tail_others_appended_is_folded_once_then_never_again(
    run_with_a_20k_event_snapshot: tuple[RunDir, list[dict[str, Any]]], bytes_folded: list[int]
) -> None:
    run, events = run_with_a_20k_event_snapshot
    covered = load_snapshot(run).offset
    notices = foreign_notices(100_000)
    write_log(run, notices)
    size = run.events_path.stat().st_size

    first = load_status(run)
    second = load_status(run)

    # The first reader folded the 100,000 lines and published what it held; the second read
    # nothing past the snapshot, and both see the same state.
    assert bytes_folded == [size - covered, 0]
    assert load_snapshot(run).offset == size
    expected = folded(events + notices, run_id=run.run_id)
    expected.offset = size
    assert first == second == expected
    assert second.notice_count == 100_000


def test_a_short_tail_is_left_for_the_supervisor_to_snapshot(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN[:3])
    save_snapshot(run, fold_tail(run, RunStatus(run_id=run.run_id)))
    before = run.state_path.read_bytes()
    write_log(run, foreign_notices(10))
    assert run.events_path.stat().st_size - ends[-1] < defaults.SNAPSHOT_TAIL_BYTES

    status = load_status(run)

    assert status.notice_count == 10
    assert run.state_path.read_bytes() == before


def test_publish_snapshot_never_moves_the_snapshot_back(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN)
    older = folded(FAILED_RUN[:4], run_id=run.run_id)
    older.offset = ends[3]
    newer = folded(FAILED_RUN, run_id=run.run_id)
    newer.offset = ends[-1]

    assert publish_snapshot(run, newer) is True
    assert publish_snapshot(run, older) is True  # the snapshot already reaches further

    assert load_snapshot(run) == newer


def test_publish_snapshot_replaces_one_past_the_end_of_the_log(run: RunDir) -> None:
    ends = write_log(run, FAILED_RUN)
    bogus = folded(FAILED_RUN, run_id=run.run_id)
    bogus.offset = ends[-1] + 1000
    save_snapshot(run, bogus)
    real = folded(FAILED_RUN, run_id=run.run_id)
    real.offset = ends[-1]

    assert publish_snapshot(run, real) is True

    assert load_snapshot(run) == real


def test_publish_snapshot_never_waits_for_another_publisher(run: RunDir) -> None:
    import fcntl
    import os

    ends = write_log(run, FAILED_RUN)
    status = folded(FAILED_RUN, run_id=run.run_id)
    status.offset = ends[-1]
    held = os.open(run.path, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert publish_snapshot(run, status) is False
        assert not run.state_path.exists()
    finally:
        os.close(held)
    assert publish_snapshot(run, status) is True
    assert load_snapshot(run) == status


def test_publish_snapshot_never_writes_through_a_symlinked_run_dir(
    run: RunDir, tmp_path: Path
) -> None:
    ends = write_log(run, FAILED_RUN)
    status = folded(FAILED_RUN, run_id=run.run_id)
    status.offset = ends[-1]
    link = tmp_path / "link"
    link.symlink_to(run.path, target_is_directory=True)

    assert publish_snapshot(str(link), status) is False
    assert not run.state_path.exists()


# --- properties ----------------------------------------------------------------------------------

TASK_IDS = ["A", "B", "C"]
timestamps = st.floats(min_value=0, max_value=1e6, allow_nan=False)
reasons = st.none() | st.sampled_from(["exit code 1", "timed out", "by cli", "\u00e9\n"])
event_strategies = [
    st.builds(ev, st.just("run_created"), timestamps, tasks=st.lists(st.sampled_from(TASK_IDS))),
    st.builds(ev, st.just("supervisor_started"), timestamps, pid=st.integers(1, 99999)),
    st.builds(
        ev,
        st.just("task_started"),
        timestamps,
        task=st.sampled_from([*TASK_IDS, "Z"]),
        attempt=st.integers(1, 5),
        pid=st.none() | st.integers(1, 99999),
    ),
    st.builds(
        ev,
        st.just("task_exited"),
        timestamps,
        task=st.sampled_from(TASK_IDS),
        outcome=st.sampled_from([*(str(s) for s in TaskState), "bogus"]),
        exit_code=st.none() | st.integers(-1, 255),
        signal=st.none() | st.integers(1, 31),
        reason=reasons,
    ),
    st.builds(
        ev, st.just("task_retry"), timestamps, task=st.sampled_from(TASK_IDS), reason=reasons
    ),
    st.builds(
        ev,
        st.just("task_skipped"),
        timestamps,
        task=st.sampled_from(TASK_IDS),
        outcome=st.none() | st.just("cancelled"),
        reason=reasons,
    ),
    st.builds(
        ev,
        st.just("task_progress"),
        timestamps,
        task=st.sampled_from(TASK_IDS),
        attempt=st.none() | st.integers(1, 5),
        input_tokens=st.integers(0, 10_000),
        cost_usd=st.floats(0, 1),
        doing=st.none() | st.sampled_from(["Bash: pytest", "Read calc.py"]),
    ),
    st.builds(
        ev,
        st.just("task_usage"),
        timestamps,
        task=st.sampled_from(TASK_IDS),
        input_tokens=st.integers(0, 99),
    ),
    st.builds(ev, st.just("cancel_requested"), timestamps, by=st.sampled_from(["cli", "hook"])),
    st.builds(
        ev,
        st.just("run_finished"),
        timestamps,
        state=st.sampled_from([*(str(s) for s in RunState), "bogus"]),
        reason=reasons,
    ),
    st.builds(ev, st.just("supervisor_lost"), timestamps, reason=reasons),
    st.builds(ev, st.just("error"), timestamps, message=st.text(max_size=10)),
    st.builds(ev, st.sampled_from(["mystery", "task_claimed"]), timestamps, task=st.just("A")),
]
events_strategy = st.one_of(event_strategies)
lines_strategy = st.lists(
    st.one_of(events_strategy.map(encode), st.sampled_from([b"garbage\n", b"[1]\n", b"\n"])),
    max_size=40,
)

examples = itertools.count()


@property_settings
@given(lines=lines_strategy, data=st.data())
def test_snapshot_at_any_point_plus_tail_equals_folding_from_zero(
    tmp_path: Path, lines: list[bytes], data: st.DataObject
) -> None:
    path = tmp_path / f"run-{next(examples)}"
    path.mkdir()
    run = RunDir(path)
    split = data.draw(st.integers(0, len(lines)), label="split")
    run.events_path.write_bytes(b"".join(lines[:split]))
    save_snapshot(run, fold_tail(run, RunStatus(run_id=run.run_id)))
    with run.events_path.open("ab") as handle:
        handle.write(b"".join(lines[split:]))

    from_snapshot = load_status(run)
    run.state_path.unlink()
    from_zero = load_status(run)

    assert from_snapshot.to_dict() == from_zero.to_dict()
    assert from_zero.offset == run.events_path.stat().st_size
    json.dumps(from_zero.to_dict())


@property_settings
@given(events=st.lists(events_strategy, max_size=30))
def test_to_dict_from_dict_round_trips_any_fold(events: list[dict[str, Any]]) -> None:
    status = folded(events)

    again = RunStatus.from_dict(json.loads(json.dumps(status.to_dict())))

    assert again == status


def test_usage_is_summed_per_task_over_attempts_and_per_run() -> None:
    usage = {"input_tokens": 100, "output_tokens": 20, "turns": 2, "cost_usd": 0.25}
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1", "W2"]),
            ev("task_usage", 2.0, task="W1", attempt=1, **usage),
            ev("task_usage", 3.0, task="W1", attempt=2, **usage, cache_read_input_tokens=7),
            ev("task_usage", 4.0, task="W2", attempt=1, input_tokens=5, cost_usd=0.5),
            # Damaged records read as absent; an unknown task is ignored.
            ev("task_usage", 5.0, task="W2", input_tokens="many", cost_usd=-1, turns=True),
            ev("task_usage", 6.0, task="W9", input_tokens=1000),
        ]
    )

    assert status.tasks["W1"].usage == {
        "input_tokens": 200,
        "output_tokens": 40,
        "turns": 4,
        "cost_usd": 0.5,
        "cache_read_input_tokens": 7,
    }
    assert status.tasks["W2"].usage == {"input_tokens": 5, "cost_usd": 0.5}
    assert status.usage is not None
    assert status.usage["input_tokens"] == 205
    assert status.usage["cost_usd"] == pytest.approx(1.0)
    again = RunStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert again == status


def test_progress_shows_a_running_attempts_spend_until_its_final_usage_replaces_it() -> None:
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1", "W2"]),
            ev("task_started", 2.0, task="W1", attempt=1, pid=11),
            ev("task_started", 2.0, task="W2", attempt=1, pid=12),
            ev("task_progress", 3.0, task="W1", attempt=1, input_tokens=10, cost_usd=0.01),
            ev(
                "task_progress",
                4.0,
                task="W1",
                attempt=1,
                input_tokens=30,
                cost_usd=0.03,
                doing="Bash: pytest -q",
            ),
            ev("task_progress", 4.5, task="W2", attempt=1, output_tokens=5, cost_usd=0.02),
        ]
    )
    w1 = status.tasks["W1"]
    # Cumulative per attempt: the newer record replaces the older one, it does not add to it.
    assert w1.live == {"input_tokens": 30, "cost_usd": 0.03}
    assert w1.doing == "Bash: pytest -q"
    assert w1.usage is None and status.usage is None
    assert status.spent() == {
        "input_tokens": 30,
        "cost_usd": pytest.approx(0.05),
        "output_tokens": 5,
    }
    assert RunStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status

    more = folded(
        [
            # W1's result: the exact figure replaces the estimate.
            ev("task_usage", 5.0, task="W1", attempt=1, input_tokens=31, cost_usd=0.04),
            ev("task_exited", 5.1, task="W1", attempt=1, outcome="succeeded", exit_code=0),
            # W2 killed before any result: what it had spent still counts.
            ev("task_exited", 6.0, task="W2", attempt=1, outcome="failed", signal=9),
            # A record of an attempt that already ended changes nothing.
            ev("task_progress", 7.0, task="W2", attempt=1, input_tokens=999),
        ],
        status,
    )
    assert more.tasks["W1"].live is None and more.tasks["W1"].doing is None
    assert more.tasks["W1"].usage == {"input_tokens": 31, "cost_usd": 0.04}
    assert more.tasks["W2"].usage == {"output_tokens": 5, "cost_usd": 0.02}
    assert more.tasks["W2"].live is None
    assert (
        more.spent()
        == more.usage
        == {
            "input_tokens": 31,
            "cost_usd": pytest.approx(0.06),
            "output_tokens": 5,
        }
    )


def test_a_retried_attempt_starts_with_no_live_spend_and_old_records_are_ignored() -> None:
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1"]),
            ev("task_started", 2.0, task="W1", attempt=1, pid=11),
            ev("task_progress", 3.0, task="W1", attempt=1, input_tokens=10, doing="Read a.py"),
            ev("task_exited", 4.0, task="W1", attempt=1, outcome="failed", exit_code=1),
            ev("task_retry", 4.1, task="W1"),
            ev("task_started", 5.0, task="W1", attempt=2, pid=12),
            ev("task_progress", 5.5, task="W1", attempt=1, input_tokens=50),
        ]
    )
    assert status.tasks["W1"].live is None and status.tasks["W1"].doing is None
    assert status.spent() == {"input_tokens": 10}


def test_a_lost_supervisor_counts_what_running_workers_had_spent() -> None:
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1"]),
            ev("task_started", 2.0, task="W1", attempt=1, pid=11),
            ev("task_progress", 3.0, task="W1", attempt=1, cost_usd=0.5),
            ev("supervisor_lost", 4.0, reason="gone"),
        ]
    )
    assert status.tasks["W1"].usage == {"cost_usd": 0.5} and status.tasks["W1"].live is None
    assert status.usage == {"cost_usd": 0.5}


def test_worktree_records_give_a_task_its_branch_and_commit_and_the_run_its_merge() -> None:
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1"]),
            ev("worktree_created", 2.0, task="W1", branch="fanout/R/W1", path="/x", base="abc"),
            ev("worktree_committed", 3.0, task="W1", branch="fanout/R/W1", commit="def"),
            ev("run_merged", 4.0, merged=["W1"], conflicts=[], base="abc", overlaps=[]),
        ]
    )

    assert (status.tasks["W1"].branch, status.tasks["W1"].commit) == ("fanout/R/W1", "def")
    assert status.merge == {"merged": ["W1"], "conflicts": [], "base": "abc"}


def test_the_fold_carries_a_writers_worktree_path_base_and_whether_it_committed() -> None:
    events = [
        ev("run_created", 1.0, tasks=["W1", "W2", "W3", "R1"]),
        ev("worktree_created", 2.0, task="W1", branch="fanout/R/W1", path="/wt/W1", base="abc"),
        ev("worktree_created", 2.1, task="W2", branch="fanout/R/W2", path="/wt/W2", base="abc"),
        ev("worktree_created", 2.2, task="W3", branch="fanout/R/W3", path="/wt/W3", base="abc"),
        ev("worktree_committed", 3.0, task="W1", branch="fanout/R/W1", commit="def"),
        # W2 changed nothing: committed, without a commit.
        ev("worktree_committed", 3.1, task="W2", branch="fanout/R/W2", commit=None),
        # A damaged record names no branch: it makes no worktree.
        ev("worktree_created", 3.2, task="R1", branch=7, path="/wt/R1", base="abc"),
    ]
    status = folded(events)
    w1, w2, w3, reader = (status.tasks[t] for t in ("W1", "W2", "W3", "R1"))

    assert (w1.worktree, w1.base, w1.branch) == ("/wt/W1", "abc", "fanout/R/W1")
    assert (w1.committed, w1.commit) == (True, "def")
    assert (w2.committed, w2.commit) == (True, None)
    assert (w3.worktree, w3.committed, w3.commit) == ("/wt/W3", False, None)
    assert (reader.worktree, reader.base, reader.branch) == (None, None, None)
    # The snapshot keeps all of it: a reader that starts from state.json sees the same.
    assert RunStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status

    # A new worktree for W1 (its old one gone on resume) holds nothing committed yet.
    again = folded(
        [*events, ev("worktree_created", 4.0, task="W1", branch="fanout/R/W1", path="/wt2/W1")]
    )
    assert (again.tasks["W1"].worktree, again.tasks["W1"].committed) == ("/wt2/W1", False)
    assert again.tasks["W1"].commit is None


def test_a_merge_of_chosen_tasks_changes_only_their_outcome_and_a_failed_one_none() -> None:
    conflict = {"task": "W2", "branch": "fanout/R/W2", "files": ["a.py"], "with": ["W1"]}
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1", "W2", "W3"]),
            ev("run_merged", 2.0, base="abc", merged=["W1", "W3"], conflicts=[conflict]),
            # `fanout merge R W2` after the person undid W1's change: only W2 is considered.
            ev("run_merged", 3.0, base="abc", merged=["W2"], conflicts=[]),
            ev("run_merged", 4.0, base="abc", error="git: index.lock exists"),
        ]
    )
    assert status.merge == {
        "base": "abc",
        "merged": ["W1", "W3", "W2"],
        "conflicts": [],
        "error": "git: index.lock exists",
    }
    # A later plain merge finds W1 undone and W2 present; it clears the error.
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1", "W2", "W3"]),
            ev("run_merged", 2.0, base="abc", merged=["W1", "W3"], conflicts=[conflict]),
            ev("run_merged", 3.0, base="abc", error="boom"),
            ev("run_merged", 4.0, undone=["W1"], already_merged=["W2", "W3"], conflicts=[]),
        ]
    )
    assert status.merge == {
        "base": "abc",
        "merged": [],
        "undone": ["W1"],
        "already_merged": ["W2", "W3"],
        "conflicts": [],
    }


def test_a_malformed_merge_record_is_folded_without_an_error() -> None:
    status = folded(
        [
            ev("run_created", 1.0, tasks=["W1"]),
            ev("run_merged", 2.0, merged=[["W1"], {"x": 1}], conflicts=[{"task": ["W2"]}, 7]),
            ev("run_merged", 3.0, merged="W1", skipped=[None], conflicts={"task": "W1"}),
        ]
    )
    assert status.merge is not None
    assert status.merge["skipped"] == [None]
