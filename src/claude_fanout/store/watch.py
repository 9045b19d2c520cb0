"""Wait until one of some files changes, without polling where the kernel can tell us.

Linux: inotify through ctypes (a change is noticed in well under a millisecond; a 50 ms poll
would cost half its period on average). Elsewhere, if inotify is unavailable, or with
``FANOUT_PORTABLE=1`` (``pids.linux_paths``): a short poll of the files' sizes and mtimes. Every
wait is bounded by ``timeout``. Hook path: standard library.
"""

from __future__ import annotations

import os
import time

from claude_fanout.pids import linux_paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

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
    ``timeout`` seconds pass. True if something changed. Missing paths are skipped."""
    if timeout <= 0:
        return False
    result = _inotify_wait(paths, timeout)
    if result is not None:
        return result
    return _poll_wait(paths, timeout)


def _inotify_wait(paths: Sequence[str], timeout: float) -> bool | None:
    """None when inotify cannot be used here (not Linux, no libc, limits reached, or turned off)."""
    if not linux_paths():
        return None
    try:
        import ctypes
        import ctypes.util
        import select

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    try:
        mask = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        watched = 0
        for path in paths:
            if libc.inotify_add_watch(fd, os.fsencode(path), mask) >= 0:
                watched += 1
        if not watched:
            return None
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def _signature(paths: Sequence[str]) -> list[tuple[int, int] | None]:
    out: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_size, st.st_mtime_ns))
    return out


def _poll_wait(paths: Sequence[str], timeout: float) -> bool:
    before = _signature(paths)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        if _signature(paths) != before:
            return True
    return False
