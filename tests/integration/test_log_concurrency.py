"""Many processes appending to one events.jsonl at once, with a reader tailing it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_fanout.store.eventlog import read_events

WRITERS = 16
RECORDS = 1000

WRITER = """
import random, sys
from pathlib import Path
from claude_fanout.store.eventlog import EventLog
log = EventLog(Path(sys.argv[1]))
writer, count = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(writer)
for seq in range(count):
    size = rng.choices((50, 200, 4096, 65536), weights=(50, 30, 15, 5))[0] + rng.randrange(64)
    log.append("probe", writer=writer, seq=seq, pad="x" * size, size=size)
"""


@pytest.mark.timeout(120)
def test_sixteen_writers_lose_and_tear_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w), str(RECORDS)])
        for w in range(WRITERS)
    ]
    seen: list[tuple[int, int]] = []
    offset = 0
    try:
        # Tail while they write: a reader must never see a partial or merged record.
        while any(proc.poll() is None for proc in writers):
            result = read_events(path, offset)
            assert result.bad == []
            offset = result.offset
            seen.extend((e["writer"], e["seq"]) for e in result.events)
            time.sleep(0.005)
    finally:
        for proc in writers:
            proc.wait(timeout=60)
    assert [proc.returncode for proc in writers] == [0] * WRITERS
    result = read_events(path, offset)
    assert result.bad == []
    seen.extend((e["writer"], e["seq"]) for e in result.events)
    assert result.offset == path.stat().st_size
    assert len(seen) == WRITERS * RECORDS
    assert set(seen) == {(w, s) for w in range(WRITERS) for s in range(RECORDS)}
    # Per writer, records land in the order written.
    for w in range(WRITERS):
        assert [s for (ww, s) in seen if ww == w] == list(range(RECORDS))
    whole = read_events(path)
    assert all(len(e["pad"]) == e["size"] for e in whole.events)
