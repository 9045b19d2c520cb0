"""``fanout watch [RUN]``: a live view of a run (or of every live run, ``--all``) until it ends.

Each followed run keeps its fold (``store.state``) and advances it by the log's tail, so a
refresh costs what was appended since the last one, not the log's length; a running task's last
line of output is read from the end of its log only (``WATCH_TAIL_BYTES``), and only for the rows
on screen. It wakes when a log changes (``store.watch``), at least every ``WATCH_TICK_S`` (the
elapsed times tick, a dead supervisor is noticed) and at most every ``WATCH_MIN_REDRAW_S``.
On a terminal it redraws one frame in place (``cli.watch_view``, imported only when drawing:
``fanout`` loads no third-party package to parse its arguments); otherwise it prints one line
per change and the totals at the end. The exit code is ``fanout wait``'s.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from claude_fanout import defaults
from claude_fanout.cli.common import UsageError, plan_of
from claude_fanout.errors import StoreError
from claude_fanout.store import active, layout
from claude_fanout.store.files import open_private
from claude_fanout.store.rundir import RunDir, resolve_run
from claude_fanout.store.state import fold_tail, load_snapshot, publish_snapshot
from claude_fanout.store.watch import wait_for_change

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from claude_fanout.cli.watch_view import Limits, RunView, Style
    from claude_fanout.config import Config
    from claude_fanout.store.status import RunStatus


# The line the supervisor writes into a worker's log before each attempt: not the worker's.


def add_parsers(sub: Any) -> None:
    watch = sub.add_parser("watch", help="a live view of a run's tasks until it ends")
    watch.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest)")
    watch.add_argument("--all", action="store_true", help="every live run of the project")
    watch.add_argument(
        "--follow", action="store_true", help="stay after the run ends (Ctrl-C to stop)"
    )
    watch.set_defaults(handler=cmd_watch)


class Followed:
    """One run ``watch`` keeps up to date: its fold, its budget, its workers' last lines."""

    def __init__(self, run: RunDir, config: Config) -> None:
        self.run = run
        self._path = str(run.path)
        self.limits, self.deps = _from_plan(run, config)
        self.status = self._load()
        self._judged = False
        self._tails: dict[str, tuple[tuple[int, int], str | None]] = {}
        # Plain output: each task's last (state, attempt) told, and whether the end was told.
        self.seen: dict[str, tuple[str, int]] = {}
        self.told_end = False

    @property
    def events_path(self) -> str:
        return layout.join(self._path, layout.EVENTS)

    def _load(self) -> RunStatus:
        """The snapshot plus the log's tail; refused (nothing written) when the log is no run's."""
        snapshot = load_snapshot(self._path)
        start = snapshot.offset
        status = fold_tail(self._path, snapshot)
        if status.created is None and not status.tasks:
            raise StoreError(_unreadable(self.run, status))
        folded = status.offset - (start if status is snapshot else 0)
        if folded >= defaults.SNAPSHOT_TAIL_BYTES:  # the next reader starts where this one ends
            publish_snapshot(self._path, status)
        return status

    def refresh(self, now: float) -> None:
        """Fold what the log gained; a run whose supervisor is gone reads lost (as ``observe``)."""
        from claude_fanout.runtime.control import judge_liveness

        if self._judged:  # lost by our judgement, not by the log: start again from the log
            self.status = self._load()
            self._judged = False
        else:
            self.status = fold_tail(self._path, self.status)
        if not self.status.state.terminal:
            judge_liveness(self._path, self.status, now=now)
            self._judged = self.status.state.terminal

    def view(self, now: float) -> RunView:
        from claude_fanout.cli.watch_view import RunView

        return RunView(
            run_id=self.run.run_id,
            status=self.status,
            limits=self.limits,
            now=now,
            last_line=self.last_line,
            deps=self.deps,
        )

    def exit_code(self) -> int:
        from claude_fanout.runner import final_exit_code

        return final_exit_code(self.status)

    def last_line(self, task_id: str) -> str | None:
        """The last line a task's log holds, from its last ``WATCH_TAIL_BYTES``; re-read only
        when the log changed."""
        path = layout.join(self._path, layout.WORKERS, task_id, layout.WORKER_LOG)
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        cached = self._tails.get(task_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            fd = open_private(path, os.O_RDONLY)
        except (OSError, StoreError):
            return None
        try:
            start = max(0, st.st_size - defaults.WATCH_TAIL_BYTES)
            data = os.pread(fd, defaults.WATCH_TAIL_BYTES, start)
        finally:
            os.close(fd)
        lines = data.decode("utf-8", "replace").splitlines()
        last = layout.last_output_line(lines)
        self._tails[task_id] = (key, last)
        return last


def _from_plan(run: RunDir, config: Config) -> tuple[Limits, dict[str, tuple[str, ...]]]:
    """The run's budget (``RunBudget``: the plan's, else the project's) and each task's deps;
    without a readable plan, the project's budget and no deps."""
    from claude_fanout.cli.watch_view import Limits

    plan = plan_of(run)
    if plan is None:
        return Limits(config.run_max_cost_usd, config.run_max_turns), {}
    from claude_fanout.runtime.limits import RunBudget

    budget = RunBudget(plan, config)
    deps = {task.id: tuple(task.deps) for task in plan.tasks}
    return Limits(budget.max_cost_usd, budget.max_turns), deps


def _unreadable(run: RunDir, status: RunStatus) -> str:
    path = layout.join(run.path, layout.EVENTS)
    if not os.path.exists(path):
        return f"run {run.run_id} has no event log ({path}): nothing to watch"
    return (
        f"run {run.run_id}: its event log {path} is damaged (no readable run_created record, "
        f"{status.bad_lines} unreadable line(s)); nothing to watch"
    )


class Watch:
    """Which runs are followed, kept up to date: one run (named, or the latest), or ``--all``
    the project's live ones. With ``follow`` it never ends: the latest run, or new live runs,
    are picked up as they start."""

    def __init__(self, project: Path, run_arg: str | None, *, every: bool, follow: bool) -> None:
        from claude_fanout.config import load_config

        self.project = project
        self.every = every
        self.follow = follow
        self.latest = run_arg is None and not every
        self._config = load_config(project)
        self.runs: dict[str, Followed] = {}
        # ``--all``: active runs found over once (results not yet delivered), never loaded again.
        self._passed: set[str] = set()
        if every:
            self._add_live()
        else:
            run = resolve_run(project, run_arg)
            self.runs[run.run_id] = Followed(run, self._config)

    def _add_live(self) -> None:
        """Every run with an ``.active`` marker not followed yet, if it is live."""
        for run_id in active.run_ids(self.project):
            if run_id in self.runs or run_id in self._passed:
                continue
            try:
                followed = Followed(resolve_run(self.project, run_id), self._config)
                followed.refresh(time.time())
            except StoreError:  # not written yet, gone since, or not a run: look again later
                continue
            if followed.status.state.terminal:
                self._passed.add(run_id)
            else:
                self.runs[run_id] = followed

    def _switch_to_newest(self) -> None:
        """``--follow`` without a run: a run started since becomes the one followed."""
        try:
            names = [n for n in os.listdir(layout.runs_root(self.project)) if n[:1] != "."]
        except OSError:
            return
        newest = max(names, default=None)
        if newest is None or newest in self.runs or newest < max(self.runs, default=""):
            return
        try:
            followed = Followed(resolve_run(self.project, newest), self._config)
        except StoreError:  # not written yet, or not a run: try again at the next tick
            return
        self.runs = {newest: followed}

    def refresh(self, now: float) -> None:
        if self.follow and self.every:
            self._add_live()
        elif self.follow and self.latest:
            self._switch_to_newest()
        for followed in self.runs.values():
            followed.refresh(now)

    @property
    def over(self) -> bool:
        """Every followed run ended (and ``--follow`` was not asked for)."""
        return not self.follow and all(f.status.state.terminal for f in self.runs.values())

    def paths(self) -> list[str]:
        """What to wait on: every followed log, and where new runs appear."""
        found = [followed.events_path for followed in self.runs.values()]
        if self.follow and self.every:
            found.append(layout.active_dir(self.project))
        elif self.follow and self.latest:
            found.append(layout.runs_root(self.project))
        return found

    def exit_code(self) -> int:
        """``fanout wait``'s code for one run; for several, 1 if any failed, else the highest."""
        codes = [f.exit_code() for f in self.runs.values() if f.status.state.terminal]
        return 1 if 1 in codes else max(codes, default=0)


def cmd_watch(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.cli.watch_view import multi_frame

    if args.all and args.run:
        raise UsageError("give a run id or --all, not both")
    watch = Watch(project, args.run, every=args.all, follow=args.follow)
    out = sys.stdout
    if args.all and not watch.runs and not args.follow:
        print(f"no live run under {layout.runs_root(project)}; 'fanout runs' lists them all")
        return 0
    terminal = _is_terminal(out)
    screen = Screen(out, _style(out)) if terminal else None
    try:
        while True:
            began = time.monotonic()
            now = time.time()
            watch.refresh(now)
            views = [followed.view(now) for followed in watch.runs.values()]
            if screen is not None:
                screen.style = _style(out)
                screen.show(multi_frame(views, screen.style))
            else:
                _print_changes(watch, now)
            if watch.over:
                return watch.exit_code()
            wait_for_change(watch.paths(), defaults.WATCH_TICK_S)
            pause = defaults.WATCH_MIN_REDRAW_S - (time.monotonic() - began)
            if pause > 0:
                time.sleep(pause)
    except KeyboardInterrupt:
        return 130
    finally:
        if screen is not None:
            screen.close()


def _print_changes(watch: Watch, now: float) -> None:
    """Plain output: a line per task transition; a run's outcome and totals once it ends."""
    from claude_fanout.cli.watch_view import changes, start_line, summary_lines

    several = len(watch.runs) > 1 or watch.every
    for followed in watch.runs.values():
        prefix = f"{followed.run.run_id}: " if several else ""
        view = followed.view(now)
        lines = [] if followed.seen else [start_line(view)]
        lines.extend(prefix + line for line in changes(followed.status, followed.seen, now))
        ended = followed.status.state.terminal
        if ended and not followed.told_end:
            lines.extend(summary_lines(view))
        followed.told_end = ended
        if lines:
            print("\n".join(lines), flush=True)


def _is_terminal(stream: Any) -> bool:
    """A terminal that takes cursor movement (``TERM=dumb`` gets the plain lines)."""
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def _style(stream: Any) -> Style:
    import shutil

    from claude_fanout.cli.watch_view import Style

    size = shutil.get_terminal_size()
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return Style(
        width=size.columns,
        height=size.lines,
        colour=not os.environ.get("NO_COLOR"),
        unicode=encoding.startswith("utf"),
    )


class Screen:
    """A frame redrawn in place: the cursor goes back up over the last frame and rewrites it
    (no alternate screen, so the last frame stays on the terminal when ``watch`` exits)."""

    def __init__(self, stream: Any, style: Style) -> None:
        self._stream = stream
        self.style = style
        self._drawn = 0
        self._last: list[str] | None = None
        self._size = (style.width, style.height)

    def show(self, lines: list[str]) -> None:
        size = (self.style.width, self.style.height)
        if lines == self._last and size == self._size:
            return
        if self._drawn and size != self._size:
            # Resized: the last frame may have wrapped, so going up over it would miss. Start
            # again at the top of a cleared screen.
            parts = ["\x1b[H\x1b[2J"]
        else:
            parts = [f"\x1b[{self._drawn}A\r" if self._drawn else "\x1b[?25l"]
        self._size = size
        parts.extend(line + "\x1b[K\n" for line in lines)
        parts.append("\x1b[J")
        self._stream.write("".join(parts))
        self._stream.flush()
        self._drawn = len(lines)
        self._last = lines

    def close(self) -> None:
        self._stream.write("\x1b[?25h")
        self._stream.flush()
