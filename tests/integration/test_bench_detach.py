"""benchmarks/bench_detach.py keeps measuring what it says: its core at a tiny size."""

from __future__ import annotations

from tests.helpers import load_benchmark


def test_a_worker_holding_the_hooks_stdout_holds_the_hook_and_devnull_does_not() -> None:
    figures = load_benchmark("bench_detach").measure(repeat=1, child_s=1.5)

    modes = figures["modes"]
    assert all(row["answered"] for row in modes.values())
    # The seed's spawn: Claude Code's read of the hook's stdout lasts as long as the worker.
    assert modes["inherit"]["hook_wait_median_s"] >= 1.4
    # fanout's: the hook returns at once, and the worker outlives a kill of the hook's group.
    assert modes["devnull"]["hook_wait_median_s"] < 0.75
    assert modes["devnull"]["worker_survived_group_kill"] is True
    # Without a new session the same kill takes the worker with it.
    assert modes["same-group"]["worker_survived_group_kill"] is False
