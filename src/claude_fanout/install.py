"""``fanout install`` and ``fanout uninstall``: fanout's hooks into a Claude Code settings file
and the ``/fanout`` command file into ``.claude/commands/``, and exactly that back out again.

The hooks name this machine's paths, so they go to the person's own settings file by default,
never silently to the one the team commits. Everything is checked before anything is written.
The entries themselves are :mod:`claude_fanout.settings_hooks`; reading, writing and backing up
the files is :mod:`claude_fanout.settings_files`.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from types import MappingProxyType

from claude_fanout import settings_files as files
from claude_fanout import settings_statusline as status_line
from claude_fanout.settings_files import Scope, settings_path
from claude_fanout.settings_hooks import SettingsError, fanout_hooks, merge_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Final, NamedTuple

__all__ = [
    "COMMAND_MARKER",
    "COMMAND_NAME",
    "InstallReport",
    "command_path",
    "command_text",
    "default_entry",
    "install",
    "uninstall",
]


COMMAND_MARKER: Final = "<!-- claude-fanout -->"
"""A command file carrying this line is fanout's; any other ``fanout.md`` is the user's."""
COMMAND_NAME: Final = "fanout.md"

if TYPE_CHECKING:

    class InstallReport(NamedTuple):
        scope: Scope | None
        settings: Path
        command: Path
        written: tuple[Path, ...]
        removed: tuple[Path, ...]
        backup: Path | None
        changed: bool
        notes: tuple[str, ...]
        shared: bool
        sharing: str

else:
    # collections.namedtuple, not typing.NamedTuple or a dataclass: importing stays cheap.
    InstallReport = namedtuple(
        "InstallReport",
        "scope settings command written removed backup changed notes shared sharing",
    )
    InstallReport.__doc__ = (
        "What install/uninstall did: the files it wrote and removed, the settings backup it made "
        "(None when the settings file did not change or did not exist), notes for the user, and "
        "whether the settings file install wrote is shared with the team (committed) and why."
    )


def default_entry() -> str:
    """The hook entry script of this installation of the package."""
    import claude_fanout

    return os.path.join(
        os.path.dirname(os.path.abspath(claude_fanout.__file__)), "hooks", "entry.py"
    )


def command_text() -> str:
    """The ``/fanout`` slash command file fanout installs (package data)."""
    from importlib.resources import files

    return files("claude_fanout").joinpath("commands", COMMAND_NAME).read_text(encoding="utf-8")


def command_path(scope: Scope | str, *, project: Path, home: Path | None = None) -> Path:
    """Where the ``/fanout`` command file goes: the project's or the user's ``commands/``."""
    base = files.user_dir(home) if Scope(scope) is Scope.USER else project / ".claude"
    return base / "commands" / COMMAND_NAME


def install(
    *,
    scope: Scope | str = Scope.LOCAL,
    project: Path,
    home: Path | None = None,
    python: str = sys.executable,
    entry: str | None = None,
    statusline: bool = True,
) -> InstallReport:
    """Merge fanout's hooks and status line into the settings file of ``scope`` and install
    ``/fanout``.

    The hooks name this machine's interpreter and package by absolute path, so by default they go
    to ``.claude/settings.local.json``, Claude Code's per-person file (kept out of git through
    ``.git/info/exclude`` when nothing ignores it yet); the ``/fanout`` command file is portable
    and goes to the project's ``.claude/commands/``. Installing into one of the project's two
    files takes fanout's hooks out of the other, so they never run twice.

    Everything is checked before anything is written: a settings file that is not valid JSON or
    has the wrong shape, or a ``fanout.md`` that is the user's own, stops the install untouched.
    Running it again changes nothing.

    The status line (``statusline``; False takes fanout's out again) shows the person's own one
    with fanout's segment: see :func:`_statusline`.
    """
    scope = Scope(scope)
    entry = default_entry() if entry is None else entry
    _check_runnable(python=python, entry=entry)
    path = settings_path(scope, project=project, home=home)
    cmd_path = command_path(scope, project=project, home=home)

    original, settings = files.load(path)
    merged = merge_hooks(settings, fanout_hooks(python=python, entry=entry))
    merged, line_note = _statusline(
        merged, scope, path, project=project, home=home, python=python, entry=entry, on=statusline
    )
    text = command_text()
    existing_command = files.read_text(cmd_path)
    if existing_command is not None and COMMAND_MARKER not in existing_command:
        raise SettingsError(
            f"{cmd_path} exists and is not fanout's (no {COMMAND_MARKER} line): "
            "rename or remove it, then run `fanout install` again"
        )
    sibling = _SIBLING.get(scope)
    sibling_path = None if sibling is None else settings_path(sibling, project=project)
    if sibling_path is not None:
        files.load(sibling_path)  # a file fanout could not take its hooks out of stops it here

    written: list[Path] = []
    removed: list[Path] = []
    notes: list[str] = [] if line_note is None else [line_note]
    backup = None
    legacy = files.adopt_legacy_backup(path)
    if legacy is not None:
        removed.append(legacy)
    if original is None or merged != settings:
        backup = files.put_hooks(path, original, settings, merged)
        written.append(path)
    if existing_command != text:
        files.write_file(cmd_path, text.encode("utf-8"), mode=files.file_mode(cmd_path))
        written.append(cmd_path)
    if sibling_path is not None:
        # Moving them keeps one copy: an older install's hooks in the shared settings.json
        # (or a --scope project install's) would otherwise run next to these.
        took_written, took_removed = files.take_hooks_out(sibling_path)
        written += took_written
        removed += took_removed
        if took_written or took_removed:
            notes.append(
                f"moved fanout's hooks out of {sibling_path}"
                + (": commit that change" if sibling is Scope.PROJECT else "")
            )
    if scope is not Scope.USER:
        user_file = settings_path(Scope.USER, project=project, home=home)
        if files.has_hooks(user_file):
            notes.append(
                f"{user_file} has fanout's hooks too, so they run twice: "
                "`fanout uninstall --scope user` removes those"
            )
    shared, sharing, exclude_note = files.sharing(path, scope)
    if exclude_note:
        notes.append(exclude_note)
    return InstallReport(
        scope=scope,
        settings=path,
        command=cmd_path,
        written=tuple(written),
        removed=tuple(removed),
        backup=backup,
        changed=bool(written or removed),
        notes=tuple(notes),
        shared=shared,
        sharing=sharing,
    )


def uninstall(
    *, scope: Scope | str | None = None, project: Path, home: Path | None = None
) -> InstallReport:
    """Remove exactly what ``install`` added to the settings file of ``scope`` (None: both of the
    project's files), and fanout's own ``/fanout`` command file (a ``fanout.md`` without the
    marker is the user's: left alone).

    What was there comes back as it was: a settings file install created is removed once nothing
    but fanout's hooks was in it, one it changed gets its original bytes back when nothing else
    changed since (else the same JSON without fanout's entries), and the backups, the ``.git/info/
    exclude`` entry and the folders install made go when nothing else is in them.
    """
    scopes = [Scope.PROJECT, Scope.LOCAL] if scope is None else [Scope(scope)]
    written: list[Path] = []
    removed: list[Path] = []
    notes: list[str] = []
    paths = [settings_path(s, project=project, home=home) for s in scopes]
    for path in paths:
        files.load(path)  # every file checked before any is changed
    for path in paths:
        took_written, took_removed = files.take_hooks_out(path)
        written += took_written
        removed += took_removed
    if Scope.LOCAL in scopes:
        local = settings_path(Scope.LOCAL, project=project)
        if not local.exists() and files.unexclude(local):
            notes.append(f"took {local.name} out of .git/info/exclude again")
    if scope is None and files.has_hooks(settings_path(Scope.USER, project=project, home=home)):
        notes.append(
            "fanout's hooks are still in your user settings (every project): "
            "`fanout uninstall --scope user` removes them"
        )

    cmd_path = command_path(scopes[0], project=project, home=home)
    existing_command = files.read_text(cmd_path)
    if existing_command is not None:
        if COMMAND_MARKER in existing_command:
            os.unlink(cmd_path)
            removed.append(cmd_path)
        else:
            notes.append(f"left {cmd_path} alone: it is not fanout's (no {COMMAND_MARKER} line)")
    files.remove_if_empty(cmd_path.parent)
    if scopes[0] is not Scope.USER:
        files.remove_if_empty(project / ".claude")
    return InstallReport(
        scope=None if scope is None else scopes[0],
        settings=paths[-1],
        command=cmd_path,
        written=tuple(written),
        removed=tuple(removed),
        backup=None,
        changed=bool(written or removed),
        notes=tuple(notes),
        shared=False,
        sharing="",
    )


# Claude Code shows the statusLine of the file that comes first here.
_PRECEDENCE: Final = (Scope.LOCAL, Scope.PROJECT, Scope.USER)


def _statusline(
    settings: files.JSONObject,
    scope: Scope,
    path: Path,
    *,
    project: Path,
    home: Path | None,
    python: str,
    entry: str,
    on: bool,
) -> tuple[files.JSONObject, str | None]:
    """``settings`` (the file of ``scope``, fanout's hooks merged) with fanout's status line, and
    a note for the person when theirs shapes what it does.

    Claude Code shows one status line, the one of the file with the highest precedence, so what
    the person sees keeps working: their own one in this file is replaced by ours, which runs
    theirs and shows both (and puts theirs back on uninstall); one in a file below runs the same
    way from ours, that file untouched; one in a file above would hide ours, so none is written.
    """
    base = status_line.without_statusline(settings)
    if not on:
        return base, None
    rank = _PRECEDENCE.index(scope)
    for other in _PRECEDENCE[:rank]:
        other_path = settings_path(other, project=project, home=home)
        if _theirs(other_path) is not None:
            return base, (
                f"{other_path} has your own status line, which Claude Code shows instead of one "
                f"in {path}: fanout's is not installed (`fanout statusline` prints its part for "
                "yours to show)"
            )
    theirs, where = status_line.theirs_in(base), path
    if theirs is None:
        for other in _PRECEDENCE[rank + 1 :]:
            where = settings_path(other, project=project, home=home)
            theirs = _theirs(where)
            if theirs is not None:
                break
    why = None if theirs is None else status_line.unwrappable(theirs)
    if why is not None and where == path:
        return base, f"your statusLine in {path} {why}: fanout's status line is not installed"
    # One in a file below that fanout cannot run was not working anyway: ours shows instead.
    wrapped = theirs if isinstance(theirs, dict) and why is None else None
    ours = status_line.ours_wrapping(wrapped, python=python, entry=entry, here=where == path)
    note = None
    if wrapped is not None and where != path:
        note = (
            f"fanout's status line shows yours from {where} with its own (yours as it is now: "
            "after changing it, run `fanout install` again)"
        )
    return status_line.with_statusline(base, ours), note


def _theirs(path: Path) -> object | None:
    """The person's own statusLine in the settings file at ``path`` (None: none, or the file
    cannot be read: that is reported where it matters)."""
    try:
        _, settings = files.load(path)
    except SettingsError:
        return None
    return status_line.theirs_in(settings)


# The project's two files: installing into one takes fanout's hooks out of the other.
_SIBLING: Final[Mapping[Scope, Scope]] = MappingProxyType(
    {Scope.PROJECT: Scope.LOCAL, Scope.LOCAL: Scope.PROJECT}
)


def _check_runnable(*, python: str, entry: str) -> None:
    # A hook whose interpreter or script is missing fails on every prompt and tool call (python
    # exits 2 for a missing script, which Claude Code reads as "block"): refuse to write one.
    if not os.path.isabs(python) or not os.access(python, os.X_OK) or os.path.isdir(python):
        raise SettingsError(
            f"interpreter {python} is not an executable absolute path; "
            "run `fanout install` with the Python that has claude-fanout installed"
        )
    if not os.path.isabs(entry) or not os.path.isfile(entry):
        raise SettingsError(
            f"hook entry script {entry} is missing; "
            "reinstall claude-fanout, then run `fanout install` again"
        )
