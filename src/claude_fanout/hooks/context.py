"""What a hook knows: its event, the payload, the project, and the runs it serves."""

from __future__ import annotations

import os
import re
import time

from claude_fanout.runtime.control import observe, supervisor_info
from claude_fanout.states import RunState
from claude_fanout.store import active, layout
from claude_fanout.store.status import RunStatus

# Session ids name files in the run store: anything else is not a session id we serve.
_SESSION_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class HookContext:
    __slots__ = (
        "_runs",
        "cwd",
        "event",
        "now",
        "payload",
        "project",
        "session_id",
    )

    def __init__(
        self,
        event: str,
        payload: dict[str, Any],
        project: str,
        cwd: str,
        session_id: str | None,
        now: float | None = None,
    ) -> None:
        self.event = event
        self.payload = payload
        self.project = project
        self.cwd = cwd
        self.session_id = session_id
        self.now = time.time() if now is None else now
        self._runs: list[tuple[str, RunStatus]] | None = None

    @classmethod
    def from_payload(cls, event: str, payload: dict[str, Any]) -> HookContext | None:
        cwd = payload.get("cwd")
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            cwd = os.getcwd()
        project = os.environ.get("CLAUDE_PROJECT_DIR") or layout.find_project(cwd)
        session_id = payload.get("session_id")
        return cls(
            event,
            payload,
            os.path.abspath(project),
            cwd,
            session_id
            if isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id)
            else None,
        )

    def runs(self) -> list[tuple[str, RunStatus]]:
        """(run directory, observed status) of every active run of the project."""
        if self._runs is None:
            found = []
            for run_id in active.run_ids(self.project):
                path = layout.run_path(self.project, run_id)
                if not os.path.isdir(path):
                    active.clear(self.project, run_id)
                    continue
                if not _safe_dir(path):
                    continue  # a link or someone else's: never read, never written
                status = observe(path, now=self.now)
                if status.state is RunState.LOST:
                    _sweep_lost(path, status, self.event)
                if status.state.terminal and not _deliverable(status):
                    # Finished, and no live Conductor session to hand it to: stop serving it.
                    active.clear(self.project, run_id)
                    continue
                found.append((path, status))
            self._runs = found
        return self._runs

    def session_runs(self, *, delivery: str | None = None) -> list[tuple[str, RunStatus]]:
        """The active runs this session asked for (its results go nowhere else); with
        ``delivery``, only those whose results come back that way ("block" or "rewake")."""
        if self.session_id is None:
            return []
        return [
            (path, status)
            for path, status in self.runs()
            if (status.conductor or {}).get("session_id") == self.session_id
            and (delivery is None or (status.delivery or "block") == delivery)
        ]

    def session_run_paths(self) -> list[str]:
        try:
            return [path for path, _ in self.session_runs()]
        except Exception:  # noqa: BLE001 - used while reporting another failure
            return []

    def refresh(self) -> None:
        self._runs = None
        self.now = time.time()


def is_interactive() -> bool:
    """Whether the Conductor is an interactive Claude Code (a person at a terminal) rather than
    ``claude -p`` or an SDK session, which wait at most 30 s for async hooks when the turn ends
    and never wake: only the Stop barrier can deliver to them.

    Claude Code (2.1.x) computes ``CLAUDE_CODE_SESSION_ATTENDED`` for each session (1 only for an
    interactive one) and hands it to its hooks; ``CLAUDE_CODE_ENTRYPOINT`` is "cli" there and
    "sdk-cli" / "sdk-py" otherwise, but an inherited "sdk-*" can survive into an interactive
    child, so it only confirms.
    """
    attended = os.environ.get("CLAUDE_CODE_SESSION_ATTENDED")
    if attended is not None:
        return attended == "1"
    return os.environ.get("CLAUDE_CODE_ENTRYPOINT") == "cli"


def _deliverable(status: RunStatus) -> bool:
    """Whether a finished run still has a Conductor session alive to deliver its results to."""
    from claude_fanout import procs

    conductor = status.conductor or {}
    pid, start_time = conductor.get("pid"), conductor.get("start_time")
    return (
        isinstance(conductor.get("session_id"), str)
        and isinstance(pid, int)
        and procs.is_alive(pid, start_time)
    )


def _sweep_lost(path: str, status: RunStatus, event: str) -> None:
    """Stop what a lost run left running (its supervisor and watchdog died together); once per
    lost supervisor, so a hook pays for it only the first time it meets the run. Fails open."""
    try:
        pid = (supervisor_info(path) or {}).get("pid")
        if not isinstance(pid, int) or os.path.exists(layout.lost_claim(path, pid)):
            return  # recorded already (by its watchdog, or an earlier sweep): the common case
        from claude_fanout.runtime.watchdog import sweep_lost

        sweep_lost(path, reason=status.reason, by=f"the {event} hook (pid {os.getpid()})")
    except Exception:  # noqa: BLE001, S110 - a hook never fails for want of a cleanup
        pass


def _safe_dir(path: str) -> bool:
    from claude_fanout.store.files import private_dir_problem

    return (
        private_dir_problem(layout.runs_root_of(path)) is None and private_dir_problem(path) is None
    )
