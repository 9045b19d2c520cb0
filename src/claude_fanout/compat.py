"""Which Claude Code versions fanout is known to work with, and how to tell a CLI's version.

The range is measured, not guessed: ``scripts/compat`` runs every test that drives the real CLI
against a list of Claude Code versions and prints the table that ``docs/compat.md`` publishes.
Stdlib only (``fanout doctor`` and the worker start path read it).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = [
    "ATTENDED_ENV",
    "MECHANISMS",
    "STRUCTURED_OUTPUT_ENDS",
    "TESTED_MAX",
    "TESTED_MIN",
    "Mechanism",
    "cli_version",
    "cli_warning",
    "conductor_warning",
    "in_tested_range",
    "missing_mechanisms",
    "parse_version",
]

# The oldest and newest Claude Code releases every test of fanout's behaviour passed on
# (scripts/compat; docs/compat.md has the matrix and what fails outside this range).
TESTED_MIN: Final = "2.1.139"
TESTED_MAX: Final = "2.1.332"


class Mechanism(NamedTuple):
    """Something of Claude Code's that fanout relies on, and the first release that has it."""

    name: str
    since: str
    used_by: str  # "workers" / "planner": the CLI fanout starts; "conductor": the session whose
    # hooks fanout runs in
    without: str  # what fanout does on an older release


ATTENDED_ENV: Final = "CLAUDE_CODE_SESSION_ATTENDED"
STRUCTURED_OUTPUT_ENDS: Final = "StructuredOutput ends the session"

# Measured by scripts/compat and by probing each release (docs/compat.md); ``since`` is the
# oldest measured release that has it.
MECHANISMS: Final = (
    Mechanism(
        "api_error_status",
        "2.1.139",
        "workers",
        "its result does not say the API rate-limited it, so such a worker fails instead of "
        "waiting and retrying",
    ),
    Mechanism(
        "is_error when stopped at a limit",
        "2.1.139",
        "workers",
        "a worker stopped at its max_turns or max_cost_usd ends as if it succeeded (exit 0, no "
        "error), so fanout marks it over budget without saying why",
    ),
    Mechanism(
        STRUCTURED_OUTPUT_ENDS,
        "2.1.191",
        "planner",
        "after the planner's valid StructuredOutput call the CLI asks the model for one more "
        "turn; the plan is the same, one turn dearer",
    ),
    Mechanism(
        ATTENDED_ENV,
        "2.1.275",
        "conductor",
        'delivery.mode "auto" guesses from CLAUDE_CODE_ENTRYPOINT whether a person is at the '
        'session; set [delivery] mode = "rewake" (interactive) or "block" (claude -p, SDK) in '
        ".claude/fanout.toml, or upgrade Claude Code",
    ),
)

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


def _older(version: str, than: str) -> bool:
    parsed, bound = parse_version(version), parse_version(than)
    return parsed is not None and bound is not None and parsed < bound


def missing_mechanisms(version: str) -> list[Mechanism]:
    """The mechanisms of :data:`MECHANISMS` that Claude Code ``version`` predates."""
    return [m for m in MECHANISMS if _older(version, m.since)]


def cli_warning(cli: str) -> str | None:
    """One line when the CLI fanout is about to run (workers, the planner) is older than the
    oldest release fanout is tested with, naming what it lacks; None when it is not, or its
    version cannot be read (starting it then says what is wrong)."""
    version = cli_version(cli)
    if version is None:
        return None
    lacks = [m for m in missing_mechanisms(version) if m.used_by == "workers"]
    if not lacks and not _older(version, TESTED_MIN):
        return None
    said = "".join(f"; it has no {m.name} (since {m.since}): {m.without}" for m in lacks)
    return (
        f"Claude Code {version} ({cli}) is older than {TESTED_MIN}, the oldest release fanout is "
        f"tested with (docs/compat.md){said}; upgrade it, or point FANOUT_CLAUDE_BIN at a newer "
        "claude"
    )


def conductor_warning(env: Mapping[str, str]) -> str | None:
    """One line when the Claude Code session running fanout's hooks (``env`` is a hook's) is too
    old to say whether a person is at it, which ``delivery.mode = "auto"`` needs."""
    if ATTENDED_ENV in env or not env.get("CLAUDE_CODE_ENTRYPOINT"):
        return None  # a new enough Claude Code, or not run by Claude Code at all
    (mechanism,) = (m for m in MECHANISMS if m.name == ATTENDED_ENV)
    return (
        f"this Claude Code predates {mechanism.since} (its hooks get no {ATTENDED_ENV}): "
        f"{mechanism.without}"
    )
