"""Wait until one of some files changes, without polling where the kernel can tell us.

Linux: inotify through ctypes (a change is noticed in well under a millisecond; a 50 ms poll
would cost half its period on average), one instance per process kept open between waits.
Elsewhere, if inotify is unavailable, or with ``FANOUT_PORTABLE=1`` (``pids.linux_paths``): a
short poll of the files' sizes and mtimes. Every wait is bounded by ``timeout``. Hook path:
standard library.
"""

from __future__ import annotations

import os
import time

from claude_fanout.pids import linux_paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_POLL_S = 0.05


def wait_for_change(paths: Sequence[str], timeout: float) -> bool:
    """Block until a file in ``paths`` (or an entry of a directory in ``paths``) changes, or
    ``timeout`` seconds pass. True if something changed. Missing paths are skipped.

    Callers loop (read, then wait): a change made between the last wait's return and this call is
    seen (the inotify instance and its watches stay open between calls on the same paths), so a
    wait never sleeps through an append that came in while its caller was reading."""
    if timeout <= 0:
        return False
    result = _inotify_wait(paths, timeout)
    if result is not None:
        return result
    return _poll_wait(paths, timeout)


# This process's inotify instance: [libc, fd, the paths watched, their signature when the last
# wait returned, the pid that opened it (a forked copy opens its own)]. Kept open between waits:
# opening costs a ctypes lookup, closing one costs the kernel ~7-18 ms (benchmarks/bench_wake.py),
# and a watch that stays in place cannot miss a change made while the caller was not waiting.
# Closed when the paths change, or at exit.
_WATCH: list[Any] = []


def _inotify_wait(paths: Sequence[str], timeout: float) -> bool | None:
    """None when inotify cannot be used here (not Linux, no libc, limits reached, or turned off)."""
    if not linux_paths():
        return None
    key = tuple(os.fspath(path) for path in paths)
    if _WATCH and (_WATCH[2] != key or _WATCH[4] != os.getpid()):
        os.close(_WATCH[1])
        _WATCH.clear()
    if not _WATCH:
        try:
            import ctypes

            # libc is already loaded: find_library would run /sbin/ldconfig for nothing.
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return None
        if fd < 0:
            return None
        _WATCH.extend((libc, fd, key, None, os.getpid()))
    libc, fd, _, seen, _ = _WATCH
    mask = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
    # Added again each time: a path replaced since (renamed into place) is a new inode.
    watched = sum(1 for path in key if libc.inotify_add_watch(fd, os.fsencode(path), mask) >= 0)
    if not watched:
        os.close(fd)
        _WATCH.clear()
        return None
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    changed = seen is not None and _signature(key) != seen
    while not changed:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(max(0, int(left * 1000))):
            break
        _drain(fd)
        # Events queued by the writes the last wait already reported (a close after the write
        # that woke it) change nothing the caller has not seen: wait on.
        changed = seen is None or _signature(key) != seen
    _drain(fd)
    _WATCH[3] = _signature(key)
    return changed


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:  # BlockingIOError: nothing more queued
        pass


def _signature(paths: Sequence[str]) -> list[tuple[int, int, int] | None]:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return out


def _poll_wait(paths: Sequence[str], timeout: float) -> bool:
    before = _signature(paths)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        if _signature(paths) != before:
            return True
    return False
