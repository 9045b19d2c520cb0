"""The append-only event log, ``events.jsonl``: many writers, readers with byte-offset cursors.

Writers: one ``os.write`` per record on an ``O_APPEND`` descriptor under an exclusive ``flock``.
O_APPEND alone never tore a line in our measurements, but flock keeps it true where O_APPEND is
emulated (NFS) and lets a writer repair a crashed writer's partial last line before appending.

Readers: read from a cursor to the last newline only (a concurrent writer's line may be half
there), skip and report lines that do not parse. Stdlib only: hooks read the log.
"""

from __future__ import annotations

import json
import os
import time

from claude_fanout import defaults
from claude_fanout.store.files import open_private

# Hook path: no typing, dataclasses or pathlib at run time (each costs 4-8 ms of a hook).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from claude_fanout.store.files import StrPath

    Event: TypeAlias = dict[str, Any]


class BadLine:
    """A line of the log that did not parse: where it starts, and how it begins."""

    __slots__ = ("excerpt", "offset")

    def __init__(self, offset: int, excerpt: str) -> None:
        self.offset = offset
        self.excerpt = excerpt

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BadLine):
            return NotImplemented
        return (self.offset, self.excerpt) == (other.offset, other.excerpt)

    def __hash__(self) -> int:
        return hash((self.offset, self.excerpt))

    def __repr__(self) -> str:
        return f"BadLine(offset={self.offset}, excerpt={self.excerpt!r})"


class ReadResult:
    """Complete records read, the offset to resume from, and the lines that did not parse."""

    __slots__ = ("bad", "events", "offset")

    def __init__(
        self,
        events: list[Event] | None = None,
        offset: int = 0,
        bad: list[BadLine] | None = None,
    ) -> None:
        self.events: list[Event] = [] if events is None else events
        self.offset = offset
        self.bad: list[BadLine] = [] if bad is None else bad

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ReadResult):
            return NotImplemented
        return (self.events, self.offset, self.bad) == (other.events, other.offset, other.bad)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadResult(events={len(self.events)}, offset={self.offset}, bad={self.bad!r})"


def _lock_bounded(fd: int, wait_s: float) -> bool:
    """Take the log's exclusive lock, waiting at most ``wait_s``; False when it was not had.

    The lock only serialises the repair of a dead writer's partial line: one ``write`` on an
    ``O_APPEND`` descriptor keeps a record whole without it on a local file system
    (``benchmarks/bench_append.py``). So a writer that holds it and never lets go (stopped with
    SIGSTOP, frozen) must not stall every other writer, hooks among them: past the bound the
    record is appended without it.
    """
    import fcntl  # only writers lock; hooks mostly read

    deadline = time.monotonic() + wait_s
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def encode(record: Event) -> bytes:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # json.dumps escapes control characters, so a record is always exactly one line.
    return line.encode("utf-8", "surrogatepass") + b"\n"


class EventLog:
    def __init__(self, path: StrPath) -> None:
        self.path = path

    def append(self, type_: str, /, **fields: Any) -> Event:
        """Append one record with ``ts`` and ``type``; returns it as written."""
        record: Event = {**fields, "ts": time.time(), "type": str(type_)}
        self.append_record(record)
        return record

    def append_record(self, record: Event) -> None:
        data = encode(record)
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            _lock_bounded(fd, defaults.APPEND_LOCK_WAIT_S)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A writer died mid-record: close its line so ours starts on a fresh one.
                data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
        finally:
            os.close(fd)

    def read(self, offset: int = 0) -> ReadResult:
        return read_events(self.path, offset)


def read_events(path: StrPath, offset: int = 0, skip: tuple[bytes, ...] = ()) -> ReadResult:
    """Complete records after byte ``offset``; the returned offset resumes after the last one.

    ``skip``: line endings (``encode``'s, e.g. ``b'"type":"notice"}'``) of records the reader does
    not want; such lines are passed over unparsed (a reader of a few kinds in a long log).
    """
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return ReadResult(offset=offset)
    try:
        size = os.fstat(fd).st_size
        if offset > size:
            # The log never shrinks; a cursor past its end belongs to another file. Start over.
            offset = 0
        want = size - offset
        chunks = []
        pos = offset
        while want > 0:
            chunk = os.pread(fd, min(want, 1 << 20), pos)
            if not chunk:
                break
            chunks.append(chunk)
            pos += len(chunk)
            want -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    end = data.rfind(b"\n") + 1
    result = ReadResult(offset=offset + end)
    start = 0
    while start < end:
        stop = data.index(b"\n", start)
        line = data[start:stop]
        if skip and line.endswith(skip):
            pass
        elif line.strip():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                record = None
            if isinstance(record, dict) and isinstance(record.get("type"), str):
                result.events.append(record)
            else:
                excerpt = line[:80].decode("utf-8", "replace")
                result.bad.append(BadLine(offset=offset + start, excerpt=excerpt))
        start = stop + 1
    return result
