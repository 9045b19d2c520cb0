"""Which Claude Code versions fanout is known to work with, and how to tell a CLI's version.

The range is measured, not guessed: ``scripts/compat`` runs every test that drives the real CLI
against a list of Claude Code versions and prints the table that ``docs/compat.md`` publishes.
Stdlib only (``fanout doctor`` and the worker start path read it).
"""

from __future__ import annotations

import re
import subprocess
from typing import Final

__all__ = ["TESTED_MAX", "TESTED_MIN", "cli_version", "in_tested_range", "parse_version"]

# The oldest and newest Claude Code releases the whole suite passed on (docs/compat.md).
TESTED_MIN: Final = "2.1.330"
TESTED_MAX: Final = "2.1.332"

_VERSION: Final = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VERSION_TIMEOUT_S: Final = 10.0


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first ``X.Y.Z`` in ``text`` (``"2.1.332 (Claude Code)"`` -> ``(2, 1, 332)``)."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def cli_version(cli: str, *, timeout: float = _VERSION_TIMEOUT_S) -> str | None:
    """``X.Y.Z`` as ``cli --version`` prints it, or None when it cannot be run or read."""
    try:
        done = subprocess.run(
            [cli, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = parse_version(done.stdout) if done.returncode == 0 else None
    return None if version is None else ".".join(map(str, version))


def in_tested_range(version: str) -> bool:
    parsed = parse_version(version)
    low, high = parse_version(TESTED_MIN), parse_version(TESTED_MAX)
    assert low is not None and high is not None
    return parsed is not None and low <= parsed <= high
