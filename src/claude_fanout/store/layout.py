"""Every name of the run store, spelled once, and the paths built from them as string joins.

The one home of the store's file names and path helpers (hook path: no pathlib). ``RunDir``
(``store.rundir``) is the pathlib view of a run that the CLI and the supervisor use; it builds
its paths from these.
"""

from __future__ import annotations

import os

from claude_fanout import defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.store.files import StrPath

RUNS_DIR = defaults.RUNS_DIR
# The runs directory holds a .gitignore of "*" saying this: nothing of the store reaches git.
RUNS_WHAT = "run store"
# One empty file per run that hooks still have business with (running, or results not yet
# delivered to its Conductor). The hooks' shell guard skips Python entirely when it is empty.
ACTIVE_DIR = ".active"
PLAN = "plan.json"
EVENTS = "events.jsonl"
STATE = "state.json"
SUPERVISOR = "supervisor.json"
SUPERVISOR_LOG = "supervisor.log"
SESSIONS = "sessions"
# Created (O_EXCL) by whoever records first that supervisor <pid> of the run is lost, its watchdog
# or the next fanout process that finds the run lost: one record and one sweep per supervisor.
LOST_CLAIM = "lost.{pid}"
WORKERS = "workers"
# Inside workers/<task id>/: the worker's output directory, its stdout+stderr, and a claude
# worker's stream-json transcript; inside out/: the result the Conductor is pointed to.
OUT = "out"
WORKER_LOG = "log"
STREAM = "stream.jsonl"
RESULT = "result.md"
# The line the supervisor writes into a worker's log before each attempt; readers of the log's
# last line pass over it (``attempt_header`` makes one).
ATTEMPT_HEADER = "--- fanout: "
RESULT_JSON = "result.json"
# ``fanout report``'s page of the run (the default of its ``-o``): one self-contained HTML file.
REPORT = "report.html"


def attempt_header(task_id: str, attempt: int, stamp: str = "") -> str:
    """The start of the log line before ``attempt`` of ``task_id``; with ``stamp``, the line."""
    head = f"{ATTEMPT_HEADER}{task_id} attempt {attempt} at "
    return f"{head}{stamp} ---\n" if stamp else head


def last_output_line(lines: list[str]) -> str | None:
    """The last line of a worker's log ``lines`` that the worker wrote: not blank, no header."""
    return next(
        (ln for ln in reversed(lines) if ln.strip() and not ln.startswith(ATTEMPT_HEADER)), None
    )


def runs_root(project: StrPath) -> str:
    return os.path.join(os.fspath(project), RUNS_DIR)


def active_dir(project: StrPath) -> str:
    return os.path.join(runs_root(project), ACTIVE_DIR)


def run_path(project: StrPath, run_id: str) -> str:
    return os.path.join(runs_root(project), run_id)


def join(run: StrPath, *names: str) -> str:
    return os.path.join(os.fspath(run), *names)


def run_id_of(run: StrPath) -> str:
    return os.path.basename(os.fspath(run).rstrip(os.sep))


def runs_root_of(run: StrPath) -> str:
    return os.path.dirname(os.fspath(run).rstrip(os.sep))


def project_of(run: StrPath) -> str:
    """``<project>/.claude/runs/<RUN_ID>`` -> ``<project>``."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.fspath(run).rstrip(os.sep))))


def worker_dir(run: StrPath, task_id: str) -> str:
    return join(run, WORKERS, task_id)


def out_dir(run: StrPath, task_id: str) -> str:
    return join(run, WORKERS, task_id, OUT)


def lost_claim(run: StrPath, supervisor_pid: int) -> str:
    return join(run, LOST_CLAIM.format(pid=supervisor_pid))


def session_cursor(run: StrPath, session_id: str) -> str:
    """A Conductor session's delivery cursor for the run (``store.cursor``)."""
    return join(run, SESSIONS, session_id + ".json")


def session_outbox(project: StrPath, session_id: str) -> str:
    """Lines the async Rewake hook left for a session's next prompt to show the person
    (``hooks.shown``), beside the Stop hook's per-session budget in ``.sessions/``."""
    return os.path.join(runs_root(project), ".sessions", session_id + ".shown")


def find_project(start: StrPath | None = None) -> str:
    """The nearest ancestor of ``start`` (default: the working directory) holding ``.git`` or
    ``.claude/``, else ``start``.

    ``~/.claude`` is Claude Code's user configuration, not a project marker.
    """
    home = os.path.realpath(os.path.expanduser("~"))
    origin = os.path.realpath(os.getcwd() if start is None else start)
    here = origin
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return here
        if here != home and os.path.isdir(os.path.join(here, ".claude")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return origin
        here = parent
