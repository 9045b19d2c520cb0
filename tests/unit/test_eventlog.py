"""The append-only event log: round trips, cursors, torn and garbage lines, safe files."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_fanout import defaults
from claude_fanout.errors import StoreError, UnsafePathError
from claude_fanout.states import EventType
from claude_fanout.store.eventlog import BadLine, EventLog, ReadResult, encode, read_events

property_settings = settings(
    derandomize=True,
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path / "events.jsonl")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def raw_append(path: Path, data: bytes) -> None:
    """Bytes as a crashed or foreign writer would leave them, bypassing EventLog."""
    with path.open("ab") as handle:
        handle.write(data)


# --- round trip and cursors ----------------------------------------------------------------------


def test_append_then_read_round_trips(log: EventLog) -> None:
    first = log.append(EventType.TASK_STARTED, task="W1", attempt=1, pid=4242)
    second = log.append("error", message="boom", detail={"code": 3, "tags": ["a", "b"]})

    result = log.read()

    assert result.events == [first, second]
    assert result.bad == []
    assert result.offset == log.path.stat().st_size
    assert first["type"] == "task_started"
    assert type(first["type"]) is str
    assert isinstance(first["ts"], float)
    assert first["task"] == "W1"
    assert second["detail"] == {"code": 3, "tags": ["a", "b"]}


def test_each_record_is_one_compact_line(log: EventLog) -> None:
    log.append("a", n=1)
    log.append("b", n=2)

    lines = log.path.read_bytes().split(b"\n")

    assert lines[-1] == b""
    assert [json.loads(line)["type"] for line in lines[:-1]] == ["a", "b"]
    assert all(b": " not in line and b", " not in line for line in lines[:-1])


def test_read_from_a_cursor_returns_only_newer_records(log: EventLog) -> None:
    log.append("one")
    log.append("two")
    before = log.read()

    log.append("three")
    log.append("four")
    after = log.read(before.offset)
    again = log.read(after.offset)

    assert [e["type"] for e in before.events] == ["one", "two"]
    assert [e["type"] for e in after.events] == ["three", "four"]
    assert after.offset == log.path.stat().st_size
    assert again.events == []
    assert again.offset == after.offset


def test_read_events_and_eventlog_read_agree(log: EventLog) -> None:
    log.append("x", n=1)

    assert read_events(log.path, 0) == log.read(0)


def test_empty_file_reads_as_nothing(log: EventLog) -> None:
    log.path.touch(mode=0o600)

    assert log.read() == ReadResult(events=[], offset=0, bad=[])


def test_missing_file_reads_as_nothing_and_is_not_created(log: EventLog) -> None:
    assert log.read() == ReadResult(events=[], offset=0, bad=[])
    assert log.read(17).offset == 17
    assert not log.path.exists()


def test_cursor_at_end_returns_nothing(log: EventLog) -> None:
    log.append("x")
    end = log.path.stat().st_size

    result = log.read(end)

    assert result.events == []
    assert result.bad == []
    assert result.offset == end


def test_cursor_beyond_the_end_of_a_replaced_log_restarts_at_zero(log: EventLog) -> None:
    for n in range(5):
        log.append("old", n=n)
    stale_cursor = log.read().offset
    log.path.unlink()
    fresh = log.append("new")

    result = log.read(stale_cursor)

    assert result.events == [fresh]
    assert result.offset == log.path.stat().st_size


# --- torn and garbage lines ----------------------------------------------------------------------


def test_partial_last_line_is_held_back_until_completed(log: EventLog) -> None:
    first = log.append("whole")
    whole_end = log.path.stat().st_size
    raw_append(log.path, b'{"type":"late","ts":1')

    held = log.read()

    assert held.events == [first]
    assert held.bad == []
    assert held.offset == whole_end

    raw_append(log.path, b',"n":2}\n')
    completed = log.read(held.offset)

    assert completed.events == [{"type": "late", "ts": 1, "n": 2}]
    assert completed.bad == []
    assert completed.offset == log.path.stat().st_size


def test_a_file_with_only_a_partial_line_reads_as_nothing(log: EventLog) -> None:
    raw_append(log.path, b'{"type":"half"')

    result = log.read()

    assert result == ReadResult(events=[], offset=0, bad=[])


GARBAGE = [
    pytest.param(b"not json at all", id="not-json"),
    pytest.param(b"[1, 2, 3]", id="json-array"),
    pytest.param(b'"just a string"', id="json-string"),
    pytest.param(b"42", id="json-number"),
    pytest.param(b"null", id="json-null"),
    pytest.param(b'{"ts": 1.0}', id="no-type"),
    pytest.param(b'{"type": 5}', id="type-int"),
    pytest.param(b'{"type": null}', id="type-null"),
    pytest.param(b'{"type": ["a"]}', id="type-list"),
    pytest.param(b'{"type": "caf\xe9"}', id="latin1-byte"),
    pytest.param(b'{"type": "x", "bad": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b"\xff\xfe\x00\x00", id="binary"),
    pytest.param(b'{"type": "x"', id="unterminated-object"),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_a_garbage_line_is_skipped_and_reported(log: EventLog, garbage: bytes) -> None:
    before = log.append("before")
    garbage_at = log.path.stat().st_size
    raw_append(log.path, garbage + b"\n")
    after = log.append("after")

    result = log.read()

    assert result.events == [before, after]
    assert [bad.offset for bad in result.bad] == [garbage_at]
    assert result.bad[0].excerpt == garbage[:80].decode("utf-8", "replace")
    assert result.offset == log.path.stat().st_size


def test_many_garbage_lines_are_each_reported_at_their_offset(log: EventLog) -> None:
    good = encode({"type": "good", "ts": 1.0})
    lines = [b"nope", good, b"[]", b"", b"   ", good, b'{"type":1}', good]
    log.path.write_bytes(b"\n".join(lines) + b"\n")
    offsets = list(itertools.accumulate([0] + [len(line) + 1 for line in lines[:-1]]))

    result = log.read()

    assert [e["type"] for e in result.events] == ["good", "good", "good"]
    # Blank lines are neither events nor garbage.
    assert [bad.offset for bad in result.bad] == [offsets[0], offsets[2], offsets[6]]
    assert [bad.excerpt for bad in result.bad] == ["nope", "[]", '{"type":1}']


def test_a_reader_can_pass_over_kinds_it_does_not_want_unparsed(log: EventLog) -> None:
    log.append("notice", text="a")
    wanted = log.append("task_started", task="W1")
    # A line the reader skips is not parsed, so it is not reported as garbage either.
    with open(log.path, "ab") as handle:
        handle.write(b'{torn "type":"notice"}\n')
    log.append("notice", text='ends like "type":"notice"}')
    end = os.path.getsize(log.path)

    result = read_events(log.path, skip=(b'"type":"notice"}',))

    assert (result.events, result.bad, result.offset) == ([wanted], [], end)
    assert len(read_events(log.path).events) == 3


def test_reading_from_a_cursor_reports_bad_lines_at_absolute_offsets(log: EventLog) -> None:
    log.append("first")
    cursor = log.read().offset
    raw_append(log.path, b"junk\n")

    result = log.read(cursor)

    assert result.bad == [BadLine(offset=cursor, excerpt="junk")]


def test_long_garbage_is_reported_with_a_short_excerpt(log: EventLog) -> None:
    raw_append(log.path, b"x" * 5000 + b"\n")

    (bad,) = log.read().bad

    assert bad == BadLine(offset=0, excerpt="x" * 80)


def test_next_append_terminates_a_crashed_writers_partial_line(log: EventLog) -> None:
    first = log.append("first")
    partial_at = log.path.stat().st_size
    raw_append(log.path, b'{"type":"crashed","ts":1,"half":')

    second = log.append("second")
    result = log.read()

    assert result.events == [first, second]
    assert result.bad == [BadLine(offset=partial_at, excerpt='{"type":"crashed","ts":1,"half":')]
    assert log.path.read_bytes().endswith(encode(second))


def test_a_partial_line_that_happens_to_be_valid_json_is_not_merged(log: EventLog) -> None:
    # The torn record parses on its own; the next one must still start on its own line.
    raw_append(log.path, b'{"type":"torn"}')

    appended = log.append("next")

    assert log.read().events == [{"type": "torn"}, appended]


# --- encoding ------------------------------------------------------------------------------------

AWKWARD = (
    "line1\nline2\r\n\ttab \x00 nul \x1b[31m esc \u2028 \u2029 "
    "caf\u00e9 \u65e5\u672c \U0001f389 \udcff"
)


def test_strings_with_newlines_unicode_and_control_characters_stay_one_line(
    log: EventLog,
) -> None:
    record = log.append("error", message=AWKWARD, **{"key\nwith newline": AWKWARD})

    data = log.path.read_bytes()
    result = log.read()

    assert data.count(b"\n") == 1
    assert encode(record).count(b"\n") == 1
    assert result.events == [record]
    assert result.events[0]["message"] == AWKWARD


def test_encode_is_one_utf8_line(log: EventLog) -> None:
    data = encode({"type": "x", "text": "\u00e9\u65e5"})

    assert data == '{"type":"x","text":"\u00e9\u65e5"}\n'.encode()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_json_floats_are_refused_before_anything_is_written(
    log: EventLog, value: float
) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        log.append("x", value=value)

    assert not log.path.exists() or log.path.read_bytes() == b""


def test_unserialisable_fields_are_refused_before_anything_is_written(log: EventLog) -> None:
    log.append("ok")
    size = log.path.stat().st_size

    with pytest.raises(TypeError):
        log.append("x", value=object())

    assert log.path.stat().st_size == size


# --- file safety ---------------------------------------------------------------------------------


def test_log_file_is_created_mode_0600(log: EventLog, permissive_umask: None) -> None:
    log.append("x")

    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


@pytest.fixture
def log_symlinked_to_a_victim(tmp_path: Path) -> tuple[EventLog, Path]:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    link = tmp_path / "events.jsonl"
    link.symlink_to(victim)
    return EventLog(link), victim


def test_a_symlinked_log_is_refused_and_its_target_untouched(
    log_symlinked_to_a_victim: tuple[EventLog, Path],
) -> None:
    log, victim = log_symlinked_to_a_victim

    with pytest.raises(UnsafePathError, match="symlink"):
        log.append("x", payload="attack")
    with pytest.raises(UnsafePathError, match="symlink"):
        log.read()

    assert victim.read_bytes() == b"precious\n"
    assert issubclass(UnsafePathError, StoreError)


def test_a_dangling_symlinked_log_does_not_create_its_target(tmp_path: Path) -> None:
    target = tmp_path / "would-be-created"
    link = tmp_path / "events.jsonl"
    link.symlink_to(target)

    with pytest.raises(UnsafePathError, match="symlink"):
        EventLog(link).append("x")

    assert not target.exists()


def test_concurrent_appends_never_interleave(log: EventLog) -> None:
    writers, per_writer = 8, 100
    payload = "p" * 3000  # several pages per record would show tearing if writes were split

    def write(worker: int) -> None:
        for n in range(per_writer):
            log.append("tick", worker=worker, n=n, payload=payload)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    result = log.read()

    assert result.bad == []
    assert len(result.events) == writers * per_writer
    for worker in range(writers):
        ns = [e["n"] for e in result.events if e["worker"] == worker]
        assert ns == list(range(per_writer))


# --- properties ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
    return {**fields, "type": draw(st.text(max_size=15))}


examples = itertools.count()


@property_settings
@given(batch=st.lists(records(), min_size=1, max_size=8), data=st.data())
def test_a_reader_sees_exactly_the_complete_records_of_any_prefix(
    tmp_path: Path, batch: list[dict[str, Any]], data: st.DataObject
) -> None:
    lines = [encode(record) for record in batch]
    blob = b"".join(lines)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    path = tmp_path / f"events-{next(examples)}.jsonl"
    path.write_bytes(blob[:cut])

    result = read_events(path)

    ends = list(itertools.accumulate(len(line) for line in lines))
    complete = [record for record, end in zip(batch, ends, strict=True) if end <= cut]
    assert result.events == complete
    assert result.bad == []
    assert result.offset == max([end for end in ends if end <= cut], default=0)
    # Resuming from the returned cursor once the rest is written yields the rest, nothing twice.
    path.write_bytes(blob)
    assert result.events + read_events(path, result.offset).events == batch


@property_settings
@given(batch=st.lists(records(), min_size=1, max_size=6))
def test_append_read_round_trips_arbitrary_records(
    tmp_path: Path, batch: list[dict[str, Any]]
) -> None:
    log = EventLog(tmp_path / f"events-{next(examples)}.jsonl")
    written = [
        log.append(record["type"], **{k: v for k, v in record.items() if k != "type"})
        for record in batch
    ]

    assert log.read().events == written
    assert log.path.read_bytes().count(b"\n") == len(written)


def test_a_frozen_lock_holder_delays_a_writer_by_the_bound_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer stopped (SIGSTOP) while holding the log's lock must not stall the others: past
    ``APPEND_LOCK_WAIT_S`` they append without it, and the record is whole."""
    monkeypatch.setattr(defaults, "APPEND_LOCK_WAIT_S", 0.3)
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append("run_created", run_id="R")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, signal, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "os.kill(os.getpid(), signal.SIGSTOP)\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        began = time.monotonic()
        log.append("notice", task="W1", text="still here")
        waited = time.monotonic() - began
    finally:
        holder.kill()
        holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()

    assert 0.25 <= waited < 2.0
    records = read_events(path).events
    assert [r["type"] for r in records] == ["run_created", "notice"]
