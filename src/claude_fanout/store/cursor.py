"""A Conductor session's delivery cursor for one run: what it has been told so far.

Each (run, session) pair has a cursor file, ``sessions/<session_id>.json`` in the run directory:
the notices counted so far, the final state already reported per task, whether the final summary
was delivered, and the Stop hook's budget. It is read and rewritten under an exclusive ``flock``,
so hooks Claude Code runs in parallel never report one result twice. What goes into it is the
hooks' business (``hooks.delivery``); this module only keeps the file. Stdlib only.
"""

from __future__ import annotations

import json
import os

from claude_fanout.store import layout
from claude_fanout.store.files import make_private_dir, open_private

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Cursor:
    """Locked read-modify-write of one session's cursor for one run (a context manager)."""

    def __init__(self, run_path: str, session_id: str) -> None:
        self.path = layout.session_cursor(run_path, session_id)
        self._run_path = run_path
        self._fd = -1
        self.data: dict[str, Any] = {}

    def __enter__(self) -> Cursor:
        make_private_dir(layout.join(self._run_path, layout.SESSIONS))
        self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_EX)
        raw = os.pread(self._fd, 1 << 20, 0)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        self.data = data if isinstance(data, dict) else {}
        self.data.setdefault("told", {})
        self._before = json.dumps(self.data, sort_keys=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            text = json.dumps(self.data, sort_keys=True)
            if exc[0] is None and text != self._before:
                data = text.encode()
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, data, 0)
        finally:
            os.close(self._fd)

    @property
    def told(self) -> dict[str, str]:
        told = self.data["told"]
        return told if isinstance(told, dict) else {}


def peek_told(run_path: str, session_id: str) -> dict[str, str]:
    """The cursor's ``told`` map, read without the lock (for polling only)."""
    path = layout.session_cursor(run_path, session_id)
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read() or b"{}")
    except (OSError, ValueError):
        return {}
    told = data.get("told") if isinstance(data, dict) else None
    return told if isinstance(told, dict) else {}
