"""Short text fanout writes for people and for the model: a duration, free text made one line.

Standard library only and import-free: the hooks use it on every tool call.
"""

from __future__ import annotations

ELLIPSIS = "\u2026"


def duration(seconds: float | None) -> str:
    """``3.2s`` under ten seconds, ``42s`` under a minute, ``12m05s`` beyond; '' for None."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit - 1`` characters and an ellipsis: ``limit`` in all."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def one_line(text: str, limit: int | None = None) -> str:
    """Every run of whitespace (newlines included) made one space; cut to ``limit``."""
    line = " ".join(text.split())
    return line if limit is None else cut(line, limit)


def first_line(text: str, limit: int | None = None) -> str:
    """The first line that is not blank, stripped; cut to ``limit``."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if limit is None else cut(line, limit)


def printable_line(text: str, limit: int | None = None) -> str:
    """``text`` as one line of printable characters only (terminal escapes, bidi and other
    control characters become spaces), cut to ``limit``: a worker's words shown to a person."""
    return one_line("".join(ch if ch.isprintable() else " " for ch in text), limit)
