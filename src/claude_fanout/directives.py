"""Directive evaluation: does a tool call touch a path a worker claims; does a finished worker's
artifact replace what the call reads. Pure functions of (tool call, directives); no I/O but
``os.path.realpath``. Hook path: standard library only, ``shlex`` loaded for Bash calls alone.

Paths are compared as absolute, normalised strings, both as written and with symlinks resolved,
so ``./src/../src/a.py``, ``/abs/src/a.py`` and a link to it all name the same claimed file.
A call conflicts with a claim when the path it touches *is* the claimed path, lies *inside* a
claimed directory, or matches a claimed glob. A call on a directory that merely contains a
claimed file (``Grep`` over ``src/``) does not: denying every project-wide search would make the
Conductor useless while workers run.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

# Tool name -> the tool_input fields that name a path it reads or writes (CLI 2.1.x).
PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "Read": ("file_path",),
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "Write": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "NotebookRead": ("notebook_path",),
    "Grep": ("path",),
    "Glob": ("path",),
}
# Calls whose input a ``replace`` directive may redirect to a worker's artifact (reads only).
REPLACEABLE: dict[str, str] = {"Read": "file_path", "NotebookRead": "notebook_path"}
_GLOB_CHARS = frozenset("*?[")
_MAX_BASH_TOKENS = 512


class Claim:
    """A project-relative path or glob that ``task`` owns while it is live."""

    __slots__ = ("absolute", "pattern", "task")

    def __init__(self, task: str, pattern: str, project: str) -> None:
        self.task = task
        self.pattern = pattern
        self.absolute = os.path.normpath(os.path.join(project, pattern))

    def __repr__(self) -> str:
        return f"Claim({self.task!r}, {self.pattern!r})"

    @property
    def is_glob(self) -> bool:
        return any(char in _GLOB_CHARS for char in self.pattern)

    def covers(self, path: str) -> bool:
        """True when ``path`` (absolute, normalised) is this claim, inside it, or matches it."""
        if self.is_glob:
            return _glob_match(self.absolute.split(os.sep), path.split(os.sep))
        return path == self.absolute or path.startswith(self.absolute + os.sep)


def touched_paths(tool_name: str, tool_input: Mapping[str, Any], cwd: str) -> list[str]:
    """Absolute paths a tool call names; for Bash, every token that could be a path."""
    raw: list[str] = []
    if tool_name == "Bash":
        command = tool_input.get("command")
        if isinstance(command, str):
            raw = bash_tokens(command)
    else:
        for name in PATH_FIELDS.get(tool_name, ()):
            value = tool_input.get(name)
            if isinstance(value, str) and value:
                raw.append(value)
    return [absolute(value, cwd) for value in raw]


def absolute(path: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def bash_tokens(command: str) -> list[str]:
    """Words of a shell command that could name files, with redirections and ``--opt=`` split
    off. Unbalanced quotes fall back to whitespace splitting: a hook must not give up on a
    command it cannot fully parse."""
    import shlex

    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:
        words = command.split()
    tokens: list[str] = []
    for word in words[:_MAX_BASH_TOKENS]:
        if not word or set(word) <= set("();<>|&"):
            continue
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        for part in (value, *value.split(":")[:1]):
            if part and part not in tokens:
                tokens.append(part)
    return tokens


def find_conflict(paths: Iterable[str], claims: Iterable[Claim]) -> tuple[Claim, str] | None:
    """The first claim a path conflicts with (as written or through symlinks), and that path."""
    candidates: list[str] = []
    for path in paths:
        candidates.append(path)
        resolved = os.path.realpath(path)
        if resolved != path:
            candidates.append(resolved)
    claim_list = list(claims)
    for claim in claim_list:
        resolved_claim = os.path.realpath(claim.absolute) if not claim.is_glob else None
        for path in candidates:
            if claim.covers(path):
                return claim, path
            if (
                resolved_claim is not None
                and resolved_claim != claim.absolute
                and (path == resolved_claim or path.startswith(resolved_claim + os.sep))
            ):
                return claim, path
    return None


def rewrite_input(
    tool_name: str,
    tool_input: Mapping[str, Any],
    cwd: str,
    replaces: Mapping[str, str],
) -> dict[str, Any] | None:
    """``tool_input`` with its path redirected to a replacing artifact, or None.

    ``replaces`` maps absolute, normalised paths to absolute artifact paths.
    """
    field = REPLACEABLE.get(tool_name)
    if field is None:
        return None
    value = tool_input.get(field)
    if not isinstance(value, str) or not value:
        return None
    path = absolute(value, cwd)
    target = replaces.get(path) or replaces.get(os.path.realpath(path))
    if target is None:
        return None
    return {**tool_input, field: target}


def _glob_match(pattern: list[str], parts: list[str]) -> bool:
    """Segment-wise glob: ``*``/``?``/``[..]`` stay inside one path segment, ``**`` spans any
    number of them (fnmatch alone would let ``src/*.py`` match ``src/deep/x.py``)."""
    from fnmatch import fnmatchcase

    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob_match(rest, parts[i:]) for i in range(len(parts) + 1))
    if not parts:
        return False
    return fnmatchcase(parts[0], head) and _glob_match(rest, parts[1:])
