"""What a run may use of the project and of its budget: leases, claude start spacing, run budget.

A *lease* is one of the project's lock files under ``.claude/runs/.slots/`` (``<n>`` for the
live-worker cap, ``claude-<n>`` for the claude cap), held with ``flock`` while a worker lives.
A lock dies with its holder, so a killed supervisor frees its leases at once, and every run of
the project shares the caps. Claude starts are also spaced: bursts of session starts are what
trips API rate limits, so the project's last claude start (any run) is recorded in
``.slots/claude-last-start`` under a lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from claude_fanout.config import Config
from claude_fanout.plan import Plan
from claude_fanout.store.files import make_private_dir, open_private

LEASES_DIR = ".slots"
CLAUDE_LEASE_PREFIX = "claude-"
CLAUDE_LAST_START = "claude-last-start"


class Lease:
    """One held lock file of the project (released when closed, or when its holder dies)."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def take_lease(leases_dir: Path, prefix: str, count: int) -> Lease | None:
    """The first free one of ``count`` lock files named ``<prefix><n>``; None when all are held."""
    make_private_dir(leases_dir)
    for index in range(count):
        path = leases_dir / f"{prefix}{index}"
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return Lease(fd, path)
    return None


def claim_start_time(leases_dir: Path, interval: float, *, wall: float) -> float:
    """0 and ``wall`` recorded as the project's last claude start when the previous one is
    ``interval`` ago, else how long to wait. The record is shared by every run, under a lock."""
    if interval <= 0:
        return 0.0
    make_private_dir(leases_dir)
    fd = open_private(leases_dir / CLAUDE_LAST_START, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 64, 0)
        try:
            last = float(raw.decode() or 0)
        except ValueError:
            last = 0.0
        if 0 <= wall - last < interval:
            return interval - (wall - last)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{wall:.6f}".encode(), 0)
        return 0.0
    finally:
        os.close(fd)


class Leases:
    """The leases one attempt holds: always a live-worker lease, and a claude lease for an
    attempt that is a Claude session."""

    def __init__(self, worker: Lease, claude: Lease | None = None) -> None:
        self.worker = worker
        self.claude = claude

    def release(self) -> None:
        self.worker.release()
        if self.claude is not None:
            self.claude.release()


class ProjectLimits:
    """Hands out the project's leases and spaces its claude starts, for one supervisor."""

    def __init__(
        self,
        leases_dir: Path,
        config: Config,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._dir = leases_dir
        self._config = config
        self._wall = wall
        self._next_claude_start = 0.0
        # Whether the last acquire found no lease free (the loop then polls for one).
        self.starved = False

    def acquire(self, now: float, *, claude_session: bool) -> Leases | None:
        """The leases for one attempt, or None (``starved``) when the project has none free or a
        claude start would come too soon after the project's previous one."""
        worker = take_lease(self._dir, "", self._config.max_live_workers)
        if worker is None:
            self.starved = True
            return None
        if not claude_session:
            return Leases(worker)
        claude = self._take_claude(now)
        if claude is None:
            worker.release()
            self.starved = True
            return None
        return Leases(worker, claude)

    def _take_claude(self, now: float) -> Lease | None:
        if now < self._next_claude_start:
            return None
        lease = take_lease(self._dir, CLAUDE_LEASE_PREFIX, self._config.max_live_claude_workers)
        if lease is None:
            return None
        wait = claim_start_time(self._dir, self._config.claude_start_interval_s, wall=self._wall())
        if wait > 0:
            lease.release()
            self._next_claude_start = now + wait
            return None
        return lease

    def next_claude_start(self) -> float:
        """When the next claude start may be tried (0 when nothing holds one back)."""
        return self._next_claude_start


class RunBudget:
    """What the run's claude workers may spend and have spent (every attempt, earlier
    supervisors of the run too, and what running workers have spent so far): the plan's limits,
    else the project's ``[claude]`` ones."""

    def __init__(self, plan: Plan, config: Config) -> None:
        self._config = config
        self.max_turns = plan.max_turns if plan.max_turns is not None else config.run_max_turns
        self.max_cost_usd = (
            plan.max_cost_usd if plan.max_cost_usd is not None else config.run_max_cost_usd
        )
        # Finished attempts (the CLI's figures, or what a worker stopped without them had spent).
        self._cost = 0.0
        self._turns = 0
        # Running attempts, per task: (cost, turns) so far, estimated from their streams.
        self._live: dict[str, tuple[float, int]] = {}
        self._exhausted: str | None = None

    @property
    def spent_cost_usd(self) -> float:
        return self._cost + sum(cost for cost, _ in self._live.values())

    @property
    def spent_turns(self) -> int:
        return self._turns + sum(turns for _, turns in self._live.values())

    def add(self, usage: Mapping[str, object]) -> None:
        """Count one usage record (``cost_usd``, ``turns``)."""
        cost, turns = _cost_and_turns(usage)
        self._cost += cost
        self._turns += turns

    def progress(self, task_id: str, usage: Mapping[str, object]) -> None:
        """What ``task_id``'s running attempt has spent so far (cumulative: replaces the last)."""
        self._live[task_id] = _cost_and_turns(usage)

    def settle(self, task_id: str, usage: Mapping[str, object] | None) -> None:
        """``task_id``'s attempt ended: its final usage replaces what it had spent so far; an
        attempt that ended without one (stopped, killed) keeps that as spent."""
        live = self._live.pop(task_id, None)
        if usage is not None:
            self.add(usage)
        elif live is not None:
            self._cost += live[0]
            self._turns += live[1]

    def exhausted(self) -> str | None:
        """Why nothing more may start and running workers must stop (once spent, the run's
        budget stays spent), else None."""
        if self._exhausted is None:
            cost, turns = self.max_cost_usd, self.max_turns
            spent_cost, spent_turns = self.spent_cost_usd, self.spent_turns
            if cost is not None and spent_cost >= cost:
                self._exhausted = f"the run's budget is spent (${spent_cost:.2f} of ${cost:.2f})"
            elif turns is not None and spent_turns >= turns:
                self._exhausted = f"the run's budget is spent ({spent_turns} of {turns} turns)"
        return self._exhausted

    def task_limits(
        self, *, max_turns: int | None, max_cost_usd: float | None
    ) -> tuple[int | None, float | None]:
        """A worker's turn and cost limits: the tightest of the task's, the project's per-task
        ones, and what is left of the run's (running workers' spend so far counted)."""
        turns = [t for t in (max_turns, self._config.task_max_turns) if t is not None]
        costs = [c for c in (max_cost_usd, self._config.task_max_cost_usd) if c is not None]
        if self.max_turns is not None:
            turns.append(max(1, self.max_turns - self.spent_turns))
        if self.max_cost_usd is not None:
            costs.append(max(0.0, self.max_cost_usd - self.spent_cost_usd))
        return (min(turns) if turns else None, min(costs) if costs else None)


def _cost_and_turns(usage: Mapping[str, object]) -> tuple[float, int]:
    cost, turns = usage.get("cost_usd", 0.0), usage.get("turns", 0)
    return (
        float(cost) if isinstance(cost, int | float) else 0.0,
        int(turns) if isinstance(turns, int | float) else 0,
    )
