"""The soak switch for the fault-injection tests, and their trials summary.

``pytest --soak`` (or ``FANOUT_SOAK=1`` in the environment) runs every repeated scenario with
its long trial count and full sizes; without it they run a fast subset. Each scenario records
its trials, failures and runtime; the summary is printed at the end of the session.

``--soak`` is registered in the root conftest (tests/conftest.py), so it works from anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

SOAK_ENV = "FANOUT_SOAK"
# A soaked test may take long: its timeout is raised to this.
SOAK_TIMEOUT_S = 1800


def soak_enabled(config: pytest.Config) -> bool:
    try:
        flag = bool(config.getoption("--soak"))
    except ValueError:
        flag = False
    return flag or os.environ.get(SOAK_ENV, "") not in ("", "0")


@dataclass
class ScenarioResult:
    name: str
    trials: int
    failures: int
    seconds: float
    notes: str = ""


_RESULTS = pytest.StashKey[list[ScenarioResult]]()


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return soak_enabled(request.config)


@pytest.fixture
def trials(soak: bool) -> Callable[[int, int], int]:
    """``trials(normal, soaked)``: the trial count for this session's mode."""

    def pick(normal: int, soaked: int) -> int:
        return soaked if soak else normal

    return pick


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[[ScenarioResult], None]:
    """Record one scenario's trials for the end-of-session summary."""
    results = request.config.stash.setdefault(_RESULTS, [])
    return results.append


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not soak_enabled(config):
        return
    for item in items:
        if item.get_closest_marker("soak_timeout") is not None:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT_S), append=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak_timeout: the test's timeout is raised to SOAK_TIMEOUT_S under --soak"
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    mode = "soak" if soak_enabled(config) else "fast"
    terminalreporter.write_sep("-", f"fault injection ({mode})")
    for result in results:
        line = (
            f"{result.name}: {result.trials} trials, {result.failures} failures, "
            f"{result.seconds:.1f}s"
        )
        terminalreporter.write_line(line + (f" ({result.notes})" if result.notes else ""))
