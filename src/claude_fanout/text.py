"""Short text fanout writes for people and for the model: a duration, free text made one line.

Standard library only and import-free: the hooks use it on every tool call.
"""

from __future__ import annotations

ELLIPSIS = "\u2026"
# After ESC: the introducers of a control string (OSC, DCS, PM, APC, SOS), ended by BEL or ST.
_STRING_INTRODUCERS = "]P^_X"


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


def printable(text: str, limit: int | None = None) -> str:
    """``text`` fit for a person's terminal, on one line: terminal escape sequences (CSI, OSC,
    two-character ones, their C1 forms) dropped whole, every other character that does not print
    (control, invisible and bidi-format characters, line and paragraph separators) dropped,
    whitespace runs made one space; cut to ``limit``."""
    kept: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\x1b" or ch in "\x9b\x9d\x90\x9e\x9f":
            i = _escape_end(text, i)
            continue
        if ch.isspace():
            kept.append(" ")
        elif ch.isprintable():
            kept.append(ch)
        i += 1
    return one_line("".join(kept), limit)


def _escape_end(text: str, i: int) -> int:
    """Where the escape sequence starting at ``text[i]`` ends (the index after it)."""
    n = len(text)
    ch = text[i]
    if ch == "\x1b":
        if i + 1 >= n:
            return n
        ch = text[i + 1]
        i += 1
        if ch != "[" and ch not in _STRING_INTRODUCERS:
            return i + 1  # ESC and one character (``ESC c``, ``ESC 7``...)
        mode = "csi" if ch == "[" else "string"
    else:
        mode = "csi" if ch == "\x9b" else "string"
    i += 1
    if mode == "csi":  # parameters and intermediates, then one final byte
        while i < n and "\x20" <= text[i] <= "\x3f":
            i += 1
        return min(n, i + 1) if i < n and "\x40" <= text[i] <= "\x7e" else i
    while i < n:  # a string: up to BEL, ST (ESC \\) or its C1 form
        if text[i] in "\x07\x9c":
            return i + 1
        if text[i] == "\x1b":
            return i + 2 if text[i + 1 : i + 2] == "\\" else i
        i += 1
    return n
