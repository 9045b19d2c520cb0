"""store.watch on Linux's inotify path: a wait never sleeps through a change made while its
caller was reading, follows a file renamed into place, and runs no helper process."""

from __future__ import annotations

import ctypes.util
import os
import threading
import time
from pathlib import Path

import pytest

from claude_fanout import pids
from claude_fanout.store import watch

pytestmark = pytest.mark.skipif(not pids.linux_paths(), reason="inotify is Linux's")


def append(path: Path, text: str = "x\n") -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_a_change_between_two_waits_ends_the_next_wait_at_once(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text("")
    assert watch.wait_for_change([str(log)], 0.05) is False
    append(log)  # the caller is reading, not waiting, when this lands
    started = time.monotonic()
    assert watch.wait_for_change([str(log)], 5.0) is True
    assert time.monotonic() - started < 1.0
    # Reported once: with nothing new the next wait runs out.
    assert watch.wait_for_change([str(log)], 0.2) is False


def test_a_file_renamed_into_place_is_followed(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{}")
    assert watch.wait_for_change([str(state)], 0.05) is False
    fresh = tmp_path / "state.json.tmp"
    fresh.write_text("{}")
    os.replace(fresh, state)  # same size, a new inode
    assert watch.wait_for_change([str(state)], 5.0) is True
    timer = threading.Timer(0.2, append, (state,))
    timer.start()
    started = time.monotonic()
    try:
        assert watch.wait_for_change([str(state)], 5.0) is True
    finally:
        timer.join()
    assert time.monotonic() - started < 2.0


def test_waiting_runs_no_helper_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ctypes.util.find_library runs /sbin/ldconfig: ~2-30 ms and a process per wait.
    def refuse(name: str) -> str:
        raise AssertionError(f"find_library({name!r}) called")

    monkeypatch.setattr(ctypes.util, "find_library", refuse)
    log = tmp_path / "events.jsonl"
    log.write_text("")
    timer = threading.Timer(0.1, append, (log,))
    timer.start()
    try:
        assert watch.wait_for_change([str(log)], 5.0) is True
    finally:
        timer.join()
