"""fanout's entries in Claude Code's settings files: build them, merge them in, take them out.

A settings file is the user's, not ours: every other key and hook is theirs to keep, in its place.
So the merge is a pure function over the parsed JSON, our entries are recognised by a marker at the
end of their command (never by position), and a file is only rewritten when its content changes
(then atomically, two-space indented as Claude Code writes it, mode kept, a backup made first, in
a git-ignored folder beside it, which uninstall uses to put the file back as it was).

The hooks name this machine's paths, so they go to the person's own settings file by default,
never silently to the one the team commits.

Cheap to import (no dataclasses, pathlib or typing at run time): hooks may read ``FANOUT_HOOKS``
and ``STOP_HOOK_TIMEOUT_S`` from here.
"""

from __future__ import annotations

import json
import os
import sys
from collections import namedtuple
from enum import StrEnum
from types import MappingProxyType

from claude_fanout import defaults
from claude_fanout.errors import FanoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any, Final, NamedTuple

    JSONObject = dict[str, Any]

MARKER: Final = "# claude-fanout"
"""Every command fanout writes ends with this shell comment; it is how fanout finds its own."""

COMMAND_MARKER: Final = "<!-- claude-fanout -->"
"""A command file carrying this line is fanout's; any other ``fanout.md`` is the user's."""

BACKUP_DIR: Final = ".fanout-backups"
"""Beside the settings file: what install changed, kept for uninstall (git-ignored, private)."""
BACKUPS_WHAT: Final = "settings backups"
LEGACY_BACKUP_SUFFIX: Final = ".fanout.bak"
"""Where earlier versions kept their backup, beside the file; uninstall removes one it finds."""
SETTINGS_FILE_MODE: Final = 0o644
COMMAND_NAME: Final = "fanout.md"

STOP_HOOK_TIMEOUT_S: Final = 600
# UserPromptSubmit may run the planner (planner.timeout_s, at most PLANNER_MAX_TIMEOUT_S) before
# it starts the run: Claude Code must not kill the hook first.
PROMPT_HOOK_TIMEOUT_S: Final = int(defaults.PLANNER_MAX_TIMEOUT_S) + defaults.PLANNER_HOOK_MARGIN_S
# The async Rewake hook's own wait is bounded by delivery.rewake_max_wait_s (2 h by default).
REWAKE_HOOK_TIMEOUT_S: Final = 7260
"""Claude Code kills the Stop hook after this; the hook's own bounded wait must end well before."""

# Tool hooks fire on every call, so with no live run they must cost about what `true` costs: a
# shell glob finds no marker under .claude/runs/.active/ and exits before any Python starts.
_GUARD: Final = (
    'for f in "$CLAUDE_PROJECT_DIR"/.claude/runs/.active/*; do '
    '[ -e "$f" ] && exec {invocation}; break; done; exit 0'
)

if TYPE_CHECKING:

    class HookSpec(NamedTuple):
        matcher: str | None
        timeout: int
        guarded: bool
        event: str | None = None
        async_rewake: bool = False

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
    # collections.namedtuple, not typing.NamedTuple or a dataclass: same immutable record, but
    # importing this module stays free of typing (3.7 ms) and dataclasses (13 ms, via inspect).
    HookSpec = namedtuple(
        "HookSpec", "matcher timeout guarded event async_rewake", defaults=(None, False)
    )
    HookSpec.__doc__ = (
        "How one hook is wired: its matcher (None: the event has none), timeout, guard, the "
        "Claude Code event it runs on (None: its own name), and whether it runs in the "
        "background and may wake the session (async + asyncRewake)."
    )
    InstallReport = namedtuple(
        "InstallReport",
        "scope settings command written removed backup changed notes shared sharing",
    )
    InstallReport.__doc__ = (
        "What install/uninstall did: the files it wrote and removed, the settings backup it made "
        "(None when the settings file did not change or did not exist), notes for the user, and "
        "whether the settings file install wrote is shared with the team (committed) and why."
    )

FANOUT_HOOKS: Final[Mapping[str, HookSpec]] = MappingProxyType(
    {
        "SessionStart": HookSpec(matcher=None, timeout=10, guarded=False),
        "UserPromptSubmit": HookSpec(matcher=None, timeout=PROMPT_HOOK_TIMEOUT_S, guarded=False),
        "PreToolUse": HookSpec(
            matcher="Read|Edit|Write|MultiEdit|NotebookEdit|Grep|Glob|Bash",
            timeout=10,
            guarded=True,
        ),
        "PostToolUse": HookSpec(matcher="*", timeout=10, guarded=True),
        "Stop": HookSpec(matcher=None, timeout=STOP_HOOK_TIMEOUT_S, guarded=True),
        # Also on Stop, in the background: waits for rewake-mode runs (bounded by
        # delivery.rewake_max_wait_s) and wakes the idle session with their results.
        "Rewake": HookSpec(
            matcher=None,
            timeout=REWAKE_HOOK_TIMEOUT_S,
            guarded=True,
            event="Stop",
            async_rewake=True,
        ),
        # SessionEnd hooks share a 1.5 s budget unless a timeout is set; ours signals and returns.
        "SessionEnd": HookSpec(matcher=None, timeout=5, guarded=False),
    }
)
"""Every hook fanout installs, by the name its entry script is called with, in the order they
are written to a settings file."""


class Scope(StrEnum):
    """Which Claude Code settings file ``fanout install`` writes."""

    PROJECT = "project"
    LOCAL = "local"
    USER = "user"


class SettingsError(FanoutError):
    """A Claude Code settings or command file fanout must not, or cannot, rewrite."""


# --------------------------------------------------------------------------------------------
# Building our entries


def hook_command(event: str, *, python: str, entry: str) -> str:
    """The shell command Claude Code runs for ``event``: this interpreter, isolated and without
    site (every import is paid on each call), running the hook entry script."""
    import shlex

    invocation = f"{shlex.quote(python)} -I -S {shlex.quote(entry)} {event}"
    # If the package is removed without `fanout uninstall`, Python would exit 2 ("no such
    # file"), which Claude Code reads as a block: every prompt refused. Exit 0 instead.
    return _wrap(event, invocation, requires=f"[ -f {shlex.quote(entry)} ] || exit 0; ")


def plugin_hook_command(event: str) -> str:
    """The plugin's command for ``event``: the ``fanout-hook`` console script found on PATH
    (a plugin cannot know which interpreter has the package), guarded the same way."""
    return _wrap(
        event, f"fanout-hook {event}", requires="command -v fanout-hook >/dev/null || exit 0; "
    )


def _wrap(event: str, invocation: str, *, requires: str = "") -> str:
    spec = FANOUT_HOOKS.get(event)
    if spec is None:
        raise ValueError(
            f"fanout has no hook for event {event!r}; known: {', '.join(FANOUT_HOOKS)}"
        )
    body = _GUARD.format(invocation=invocation) if spec.guarded else invocation
    return f"{requires}{body} {MARKER}"


def fanout_hooks(*, python: str, entry: str) -> dict[str, list[JSONObject]]:
    """fanout's ``hooks`` section, shaped as Claude Code reads it: one matcher group per event."""
    return _hooks_section(lambda name: hook_command(name, python=python, entry=entry))


def plugin_hooks() -> dict[str, list[JSONObject]]:
    """The ``hooks`` section of the plugin's hooks.json (commands use ``fanout-hook``)."""
    return _hooks_section(plugin_hook_command)


def _hooks_section(command: Callable[[str], str]) -> dict[str, list[JSONObject]]:
    hooks: dict[str, list[JSONObject]] = {}
    for name, spec in FANOUT_HOOKS.items():
        event = spec.event or name
        groups = hooks.setdefault(event, [])
        group = next((g for g in groups if g.get("matcher") == spec.matcher), None)
        if group is None:
            group = {} if spec.matcher is None else {"matcher": spec.matcher}
            group["hooks"] = []
            groups.append(group)
        hook: JSONObject = {"type": "command", "command": command(name), "timeout": spec.timeout}
        if spec.async_rewake:
            hook["async"] = True
            hook["asyncRewake"] = True
        group["hooks"].append(hook)
    return hooks


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


# --------------------------------------------------------------------------------------------
# Pure merge and removal


def is_fanout_hook(hook: object) -> bool:
    """True for a hook entry fanout wrote: a command ending with the marker comment."""
    if not isinstance(hook, dict):
        return False
    command = hook.get("command")
    return isinstance(command, str) and command.rstrip().endswith(MARKER)


def merge_hooks(settings: JSONObject, ours: Mapping[str, list[JSONObject]]) -> JSONObject:
    """``settings`` with ``ours`` merged in; neither argument is modified.

    An entry of ours already present (found by its marker) in a group with the same matcher is
    replaced where it stands, so re-installing with another interpreter path updates instead of
    duplicating; any other entry of ours is dropped, with the group it leaves empty. What is not
    ours keeps its place and content.
    """
    import copy

    problem = shape_problem(settings, events=ours)
    if problem is not None:
        raise SettingsError(f"settings {problem}")
    result: JSONObject = copy.deepcopy(settings)
    hooks = result.setdefault("hooks", {})
    for event, our_groups in ours.items():
        hooks[event] = _merge_event(hooks.get(event, []), copy.deepcopy(our_groups))
    return result


def _merge_event(groups: list[Any], ours: list[JSONObject]) -> list[Any]:
    by_matcher = {group.get("matcher"): group for group in ours}
    placed: set[str | None] = set()
    merged: list[Any] = []
    for group in groups:
        if not _is_group(group):
            merged.append(group)
            continue
        matcher = group.get("matcher")
        kept: list[Any] = []
        touched = False
        for hook in group["hooks"]:
            if not is_fanout_hook(hook):
                kept.append(hook)
                continue
            touched = True
            if matcher in by_matcher and matcher not in placed:
                kept.extend(by_matcher[matcher]["hooks"])
                placed.add(matcher)
        if touched and not kept:
            continue
        merged.append({**group, "hooks": kept} if touched else group)
    merged.extend(group for matcher, group in by_matcher.items() if matcher not in placed)
    return merged


def remove_hooks(settings: JSONObject) -> JSONObject:
    """``settings`` without fanout's entries; the argument is not modified.

    A matcher group, an event or the ``hooks`` object is dropped only when removing our entries
    is what left it empty; one that was already empty stays.
    """
    import copy

    problem = shape_problem(settings)
    if problem is not None:
        raise SettingsError(f"settings {problem}")
    result: JSONObject = copy.deepcopy(settings)
    hooks = result.get("hooks")
    if hooks is None:
        return result
    remaining: JSONObject = {}
    removed_any = False
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            remaining[event] = groups
            continue
        kept_groups: list[Any] = []
        removed_here = False
        for group in groups:
            if not _is_group(group):
                kept_groups.append(group)
                continue
            kept = [hook for hook in group["hooks"] if not is_fanout_hook(hook)]
            if len(kept) == len(group["hooks"]):
                kept_groups.append(group)
                continue
            removed_here = True
            if kept:
                kept_groups.append({**group, "hooks": kept})
        removed_any = removed_any or removed_here
        if removed_here and not kept_groups:
            continue
        remaining[event] = kept_groups
    if removed_any and not remaining:
        del result["hooks"]
    else:
        result["hooks"] = remaining
    return result


def _is_group(group: object) -> bool:
    return isinstance(group, dict) and isinstance(group.get("hooks"), list)


def shape_problem(
    settings: object, *, events: Mapping[str, object] = MappingProxyType({})
) -> str | None:
    """Why fanout must not merge into ``settings`` (None when it may): the top level is not an
    object, ``hooks`` is not an object, or one of ``events`` in it is not a list."""
    if not isinstance(settings, dict):
        return f"must be a JSON object, not {_json_type(settings)}"
    if "hooks" not in settings:
        return None
    hooks = settings["hooks"]
    if not isinstance(hooks, dict):
        return f'"hooks" must be an object, not {_json_type(hooks)}'
    for event in events:
        if event in hooks and not isinstance(hooks[event], list):
            return f'"hooks.{event}" must be a list, not {_json_type(hooks[event])}'
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


# --------------------------------------------------------------------------------------------
# Files


def settings_path(scope: Scope | str, *, project: Path, home: Path | None = None) -> Path:
    """The settings file of ``scope``: ``<project>/.claude/settings.json`` (project),
    ``<project>/.claude/settings.local.json`` (local) or ``~/.claude/settings.json`` (user)."""
    if Scope(scope) is Scope.USER:
        return _user_dir(home) / "settings.json"
    name = "settings.local.json" if Scope(scope) is Scope.LOCAL else "settings.json"
    return project / ".claude" / name


def command_path(scope: Scope | str, *, project: Path, home: Path | None = None) -> Path:
    """Where the ``/fanout`` command file goes: the project's or the user's ``commands/``."""
    base = _user_dir(home) if Scope(scope) is Scope.USER else project / ".claude"
    return base / "commands" / COMMAND_NAME


def _user_dir(home: Path | None) -> Path:
    from pathlib import Path

    if home is not None:
        return home / ".claude"
    # Claude Code reads its user configuration from $CLAUDE_CONFIG_DIR when that is set.
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else Path.home() / ".claude"


def install(
    *,
    scope: Scope | str = Scope.LOCAL,
    project: Path,
    home: Path | None = None,
    python: str = sys.executable,
    entry: str | None = None,
) -> InstallReport:
    """Merge fanout's hooks into the settings file of ``scope`` and install ``/fanout``.

    The hooks name this machine's interpreter and package by absolute path, so by default they go
    to ``.claude/settings.local.json``, Claude Code's per-person file (kept out of git through
    ``.git/info/exclude`` when nothing ignores it yet); the ``/fanout`` command file is portable
    and goes to the project's ``.claude/commands/``. Installing into one of the project's two
    files takes fanout's hooks out of the other, so they never run twice.

    Everything is checked before anything is written: a settings file that is not valid JSON or
    has the wrong shape, or a ``fanout.md`` that is the user's own, stops the install untouched.
    Running it again changes nothing.
    """
    scope = Scope(scope)
    entry = default_entry() if entry is None else entry
    _check_runnable(python=python, entry=entry)
    path = settings_path(scope, project=project, home=home)
    cmd_path = command_path(scope, project=project, home=home)

    original, settings = _load(path)
    merged = merge_hooks(settings, fanout_hooks(python=python, entry=entry))
    text = command_text()
    existing_command = _read_text(cmd_path)
    if existing_command is not None and COMMAND_MARKER not in existing_command:
        raise SettingsError(
            f"{cmd_path} exists and is not fanout's (no {COMMAND_MARKER} line): "
            "rename or remove it, then run `fanout install` again"
        )
    sibling = _SIBLING.get(scope)
    sibling_path = None if sibling is None else settings_path(sibling, project=project)
    if sibling_path is not None:
        _load(sibling_path)  # a file fanout could not take its hooks out of stops it here

    written: list[Path] = []
    removed: list[Path] = []
    notes: list[str] = []
    backup = None
    legacy = _adopt_legacy_backup(path)
    if legacy is not None:
        removed.append(legacy)
    if original is None or merged != settings:
        backup = _put_hooks(path, original, settings, merged)
        written.append(path)
    if existing_command != text:
        _write_file(cmd_path, text.encode("utf-8"), mode=_mode(cmd_path))
        written.append(cmd_path)
    if sibling_path is not None:
        # Moving them keeps one copy: an older install's hooks in the shared settings.json
        # (or a --scope project install's) would otherwise run next to these.
        took_written, took_removed = _take_hooks_out(sibling_path)
        written += took_written
        removed += took_removed
        if took_written or took_removed:
            notes.append(
                f"moved fanout's hooks out of {sibling_path}"
                + (": commit that change" if sibling is Scope.PROJECT else "")
            )
    if scope is not Scope.USER:
        user_file = settings_path(Scope.USER, project=project, home=home)
        if _has_hooks(user_file):
            notes.append(
                f"{user_file} has fanout's hooks too, so they run twice: "
                "`fanout uninstall --scope user` removes those"
            )
    shared, sharing, exclude_note = _sharing(path, scope)
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
        _load(path)  # every file checked before any is changed
    for path in paths:
        took_written, took_removed = _take_hooks_out(path)
        written += took_written
        removed += took_removed
    if Scope.LOCAL in scopes:
        local = settings_path(Scope.LOCAL, project=project)
        if not local.exists() and _unexclude(local):
            notes.append(f"took {local.name} out of .git/info/exclude again")
    if scope is None and _has_hooks(settings_path(Scope.USER, project=project, home=home)):
        notes.append(
            "fanout's hooks are still in your user settings (every project): "
            "`fanout uninstall --scope user` removes them"
        )

    cmd_path = command_path(scopes[0], project=project, home=home)
    existing_command = _read_text(cmd_path)
    if existing_command is not None:
        if COMMAND_MARKER in existing_command:
            os.unlink(cmd_path)
            removed.append(cmd_path)
        else:
            notes.append(f"left {cmd_path} alone: it is not fanout's (no {COMMAND_MARKER} line)")
    _remove_if_empty(cmd_path.parent)
    if scopes[0] is not Scope.USER:
        _remove_if_empty(project / ".claude")
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


# The project's two files: installing into one takes fanout's hooks out of the other.
_SIBLING: Final[Mapping[Scope, Scope]] = MappingProxyType(
    {Scope.PROJECT: Scope.LOCAL, Scope.LOCAL: Scope.PROJECT}
)


def backup_dir(settings_file: Path) -> Path:
    """Where install keeps what it changed: ``.fanout-backups/`` beside the settings file, a
    private folder with a ``.gitignore`` of ``*`` (settings may hold secrets; git never sees it)."""
    return settings_file.parent / BACKUP_DIR


def _backup_of(path: Path) -> Path:
    return backup_dir(path) / path.name


def _created_mark(path: Path) -> Path:
    """An empty file recording that install created ``path`` (so uninstall may remove it)."""
    return backup_dir(path) / (path.name + ".created")


def _put_hooks(
    path: Path, original: bytes | None, settings: JSONObject, merged: JSONObject
) -> Path | None:
    """Write ``merged`` to ``path``, recording first what uninstall needs to put back: that the
    file did not exist, or its bytes. Returns the backup written, if any."""
    _make_backup_dir(path)
    backup = None
    if original is None:
        _write_file(_created_mark(path), b"", mode=SETTINGS_FILE_MODE)
    elif remove_hooks(settings) == settings or not _backup_of(path).exists():
        # Only the file as it was before fanout's hooks is worth keeping: a re-install (new
        # interpreter path) leaves the first backup alone.
        backup = _backup_of(path)
        # The backup may hold what the settings hold (env secrets): same mode as the original.
        _write_file(backup, original, mode=_mode(path))
    _write_file(path, _json_bytes(merged), mode=_mode(path), expect=original)
    return backup


def _make_backup_dir(path: Path) -> None:
    from claude_fanout.store.files import make_ignored_dir

    os.makedirs(path.parent, exist_ok=True)
    make_ignored_dir(backup_dir(path), what=BACKUPS_WHAT)


def _adopt_legacy_backup(path: Path) -> Path | None:
    """Move the backup an earlier version left beside ``path`` (git saw it) into the backup
    folder, or drop it when that holds one already; its old path, or None if there was none."""
    from claude_fanout.store.files import make_ignored_dir

    legacy = path.with_name(path.name + LEGACY_BACKUP_SUFFIX)
    if not legacy.is_file() or legacy.is_symlink():
        return None
    make_ignored_dir(backup_dir(path), what=BACKUPS_WHAT)
    if _backup_of(path).exists():
        os.unlink(legacy)
    else:
        os.replace(legacy, _backup_of(path))
    return legacy


def _take_hooks_out(path: Path) -> tuple[list[Path], list[Path]]:
    """Take fanout's hooks out of ``path`` and put back what install found (see ``uninstall``);
    drop install's records for it. The files written and the files removed."""
    written: list[Path] = []
    removed: list[Path] = []
    original, settings = _load(path)
    cleaned = remove_hooks(settings)
    created = _created_mark(path)
    legacy = path.with_name(path.name + LEGACY_BACKUP_SUFFIX)
    if original is not None and cleaned != settings:
        if cleaned == {} and created.exists():
            os.unlink(path)
            removed.append(path)
        else:
            # The original bytes (their own indentation and key order) when they say exactly
            # this; else the same JSON as Claude Code writes it.
            saved = (_read_backup(backup) for backup in (_backup_of(path), legacy))
            data = next((b for b in saved if b is not None and _parses_to(b, cleaned)), None)
            _write_file(path, data or _json_bytes(cleaned), mode=_mode(path), expect=original)
            written.append(path)
    for record in (_backup_of(path), created, legacy):
        try:
            os.unlink(record)
        except FileNotFoundError:
            continue
        if record.parent == path.parent:
            removed.append(record)
    folder = backup_dir(path)
    if folder.is_dir() and not folder.is_symlink() and sorted(os.listdir(folder)) in _EMPTY:
        for name in os.listdir(folder):
            os.unlink(folder / name)
        os.rmdir(folder)
    return written, removed


_EMPTY: Final[tuple[list[str], ...]] = ([], [".gitignore"])


def _read_backup(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _parses_to(data: bytes, content: JSONObject) -> bool:
    try:
        return bool(json.loads(data.decode("utf-8-sig")) == content)
    except ValueError:
        return False


def _has_hooks(path: Path) -> bool:
    """True when the settings file at ``path`` holds any of fanout's hooks (an unreadable or
    malformed file: False, it is reported where it is written)."""
    try:
        _, settings = _load(path)
    except SettingsError:
        return False
    return remove_hooks(settings) != settings


def _remove_if_empty(folder: Path) -> None:
    import contextlib

    with contextlib.suppress(OSError):  # not empty (or not there): not ours to remove
        os.rmdir(folder)


# --------------------------------------------------------------------------------------------
# Shared or personal: what git does with the file


EXCLUDE_NOTE: Final = "# claude-fanout: Claude Code's per-person settings stay out of git"


def _sharing(path: Path, scope: Scope) -> tuple[bool, str, str | None]:
    """Whether ``path`` is shared with the team (committed), why, and a note when fanout had to
    make git ignore it. A personal file git would pick up (``settings.local.json`` in a repository
    no ignore rule covers yet) is added to the repository's own ``.git/info/exclude``, never to
    the person's ``.gitignore``: as Claude Code does when it creates that file itself."""
    state = _git_state(path)
    if state == "tracked":
        return True, "tracked by git: every clone gets it", None
    if state == "ignored":
        return False, "personal: git ignores it", None
    if state == "untracked":
        if scope is Scope.LOCAL and _exclude(path):
            return False, "personal: git ignores it", f"added {path.name} to .git/info/exclude"
        if scope is Scope.USER:
            return False, "personal: your user settings", None
        return True, "not ignored by git: `git add` would commit it", None
    if scope is Scope.PROJECT:
        return True, "the project's shared settings, meant to be committed", None
    if scope is Scope.USER:
        return False, "personal: your user settings", None
    return False, "personal: Claude Code's per-person settings", None


def _git_state(path: Path) -> str | None:
    """``tracked``, ``ignored`` or ``untracked``; None outside a git work tree (or without git)."""
    from claude_fanout.git import repo

    try:
        tracked = repo.run_git(
            ["ls-files", "--error-unmatch", "--", path.name], cwd=path.parent, ok=(0, 1)
        )
        if tracked.returncode == 0:
            return "tracked"
        ignored = repo.run_git(["check-ignore", "-q", "--", path.name], cwd=path.parent, ok=(0, 1))
    except repo.GitError:
        return None
    return "ignored" if ignored.returncode == 0 else "untracked"


def _exclude_file(path: Path) -> tuple[Path, str] | None:
    """The repository's ``info/exclude`` and the anchored pattern naming ``path`` in it."""
    from pathlib import Path as _Path

    from claude_fanout.git import repo

    try:
        out = repo.run_git(
            ["rev-parse", "--git-path", "info/exclude", "--show-prefix"], cwd=path.parent
        ).stdout.decode()
    except repo.GitError:
        return None
    lines = out.split("\n")
    if len(lines) < 2:
        return None
    # --git-path answers relative to the current directory unless the git dir is elsewhere.
    return _Path(path.parent, lines[0]), f"/{lines[1]}{path.name}"


def _exclude(path: Path) -> bool:
    """Add ``path`` to the repository's ``info/exclude``; True when git now ignores it."""
    found = _exclude_file(path)
    if found is None:
        return False
    exclude, pattern = found
    try:
        current = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = ""
    if pattern not in current.splitlines():
        prefix = "" if not current or current.endswith("\n") else "\n"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as handle:
            handle.write(f"{prefix}{EXCLUDE_NOTE}\n{pattern}\n")
    return _git_state(path) == "ignored"


def _unexclude(path: Path) -> bool:
    """Take out of ``info/exclude`` the entry ``_exclude`` added for ``path``; True if it did."""
    found = _exclude_file(path)
    if found is None:
        return False
    exclude, pattern = found
    try:
        lines = exclude.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError:
        return False
    for index in range(len(lines) - 1):
        if lines[index].rstrip("\n") == EXCLUDE_NOTE and lines[index + 1].rstrip("\n") == pattern:
            del lines[index : index + 2]
            _write_file(exclude, "".join(lines).encode("utf-8"), mode=_mode(exclude))
            return True
    return False


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


def _load(path: Path) -> tuple[bytes | None, JSONObject]:
    """The file's bytes (None when it does not exist) and its parsed, shape-checked content."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, {}
    except OSError as exc:
        raise SettingsError(
            f"cannot read {path}: {exc.strerror}; fix its permissions and retry"
        ) from None
    try:
        settings = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SettingsError(
            f"{path} is not UTF-8 text; fanout leaves it untouched: "
            "fix or move it aside, then retry"
        ) from None
    except json.JSONDecodeError as exc:
        raise SettingsError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fanout leaves it untouched: fix or move it aside, then retry"
        ) from None
    problem = shape_problem(settings, events=FANOUT_HOOKS)
    if problem is not None:
        raise SettingsError(
            f"{path}: {problem}; fanout leaves it untouched: fix it by hand, then retry"
        )
    return raw, settings


def _json_bytes(content: JSONObject) -> bytes:
    """Settings as Claude Code writes them: two-space indented, UTF-8, a final newline."""
    return (json.dumps(content, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return SETTINGS_FILE_MODE


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {path} ({exc}); move it aside, then retry") from None


def _write_file(path: Path, data: bytes, *, mode: int, expect: bytes | None = None) -> None:
    """Replace ``path`` atomically (temp file + rename) with ``data`` and ``mode``.

    A symlinked settings file (dotfiles managers do this) keeps its link: the target is written.
    With ``expect``, refuse if the file changed since it was read: Claude Code itself rewrites
    settings files (permission answers go to settings.local.json).
    """
    import contextlib
    import tempfile

    target = os.path.realpath(path)
    head, name = os.path.split(target)
    os.makedirs(head, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=head)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if expect is not None:
            with open(target, "rb") as current:
                if current.read() != expect:
                    raise SettingsError(
                        f"{path} changed while fanout was updating it; nothing was written: retry"
                    )
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
