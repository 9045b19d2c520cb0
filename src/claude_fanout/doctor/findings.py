"""What ``fanout doctor`` finds: a :class:`Check` each (``ok``, ``warn``: works, but look;
``fail``: fanout is broken here until it is fixed, the detail says how), and how they print."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but look
    FAIL = "fail"  # fanout is broken here until this is fixed


OK: Final = Status.OK
WARN: Final = Status.WARN
FAIL: Final = Status.FAIL


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "section": self.section,
            "name": self.name,
            "status": str(self.status),
            "detail": self.detail,
        }


def runnable(path: str) -> bool:
    """An absolute path to an executable file (what a hook command or a CLI must name)."""
    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK)


_MARKS: Final = {OK: "✓", WARN: "!", FAIL: "✗"}
_TITLES: Final = {
    "install": "installation",
    "claude": "Claude Code",
    "runs": "runs",
    "backend": "where workers run",
}


def render(checks: list[Check]) -> Iterator[str]:
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            yield _TITLES.get(section, section)
        yield f"  {_MARKS[check.status]} {check.name}: {check.detail}"


def failed(checks: list[Check]) -> bool:
    return any(check.status == FAIL for check in checks)
