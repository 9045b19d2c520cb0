"""The ``.claude/runs/.active/`` markers: one empty file per run the hooks still serve.

A run is active from creation until it is finished *and* nobody is left to hear about it: its
results were delivered to its Conductor, or it has no Conductor (started from a terminal), or its
Conductor is gone. The hooks' shell guard tests for any file here before starting Python, so an
idle project costs a tool call a shell glob and nothing more. Hook path: standard library only.
"""

from __future__ import annotations

import os

from claude_fanout.store import layout
from claude_fanout.store.files import make_ignored_dir, make_private_dir, open_private

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.store.files import StrPath


def mark(project: StrPath, run_id: str) -> None:
    make_ignored_dir(layout.runs_root(project), what=layout.RUNS_WHAT)
    make_private_dir(layout.active_dir(project))
    os.close(
        open_private(os.path.join(layout.active_dir(project), run_id), os.O_WRONLY | os.O_CREAT)
    )


def clear(project: StrPath, run_id: str) -> None:
    try:  # noqa: SIM105 - importing contextlib would cost every hook call 0.5 ms
        os.unlink(os.path.join(layout.active_dir(project), run_id))
    except FileNotFoundError:
        pass


def run_ids(project: StrPath) -> list[str]:
    """Active run ids, oldest first; [] when there is no marker directory."""
    try:
        names = os.listdir(layout.active_dir(project))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(name for name in names if not name.startswith("."))
