"""Claude Code's settings files on disk: where each scope's file is, reading and writing them,
the backups install keeps, and whether git shares a file with the team.

A file is only rewritten when its content changes: atomically, two-space indented as Claude Code
writes it, mode kept, after a backup in a git-ignored folder beside it, which uninstall uses to
put the file back as it was. A per-person file git would pick up is added to the repository's
``.git/info/exclude``. What goes into the files is :mod:`claude_fanout.settings_hooks`.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum

from claude_fanout.settings_hooks import FANOUT_HOOKS, SettingsError, shape_problem
from claude_fanout.settings_statusline import remove_fanout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Final

    JSONObject = dict[str, Any]

__all__ = [
    "BACKUP_DIR",
    "EXCLUDE_NOTE",
    "SETTINGS_FILE_MODE",
    "Scope",
    "adopt_legacy_backup",
    "backup_dir",
    "file_mode",
    "has_hooks",
    "load",
    "put_hooks",
    "read_text",
    "remove_if_empty",
    "settings_path",
    "sharing",
    "take_hooks_out",
    "unexclude",
    "user_dir",
    "write_file",
]

BACKUP_DIR: Final = ".fanout-backups"
"""Beside the settings file: what install changed, kept for uninstall (git-ignored, private)."""
BACKUPS_WHAT: Final = "settings backups"
LEGACY_BACKUP_SUFFIX: Final = ".fanout.bak"
"""Where earlier versions kept their backup, beside the file; uninstall removes one it finds."""
SETTINGS_FILE_MODE: Final = 0o644


class Scope(StrEnum):
    """Which Claude Code settings file ``fanout install`` writes."""

    PROJECT = "project"
    LOCAL = "local"
    USER = "user"


# --------------------------------------------------------------------------------------------
# Files


def settings_path(scope: Scope | str, *, project: Path, home: Path | None = None) -> Path:
    """The settings file of ``scope``: ``<project>/.claude/settings.json`` (project),
    ``<project>/.claude/settings.local.json`` (local) or ``~/.claude/settings.json`` (user)."""
    if Scope(scope) is Scope.USER:
        return user_dir(home) / "settings.json"
    name = "settings.local.json" if Scope(scope) is Scope.LOCAL else "settings.json"
    return project / ".claude" / name


def user_dir(home: Path | None) -> Path:
    from pathlib import Path

    if home is not None:
        return home / ".claude"
    # Claude Code reads its user configuration from $CLAUDE_CONFIG_DIR when that is set.
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else Path.home() / ".claude"


def backup_dir(settings_file: Path) -> Path:
    """Where install keeps what it changed: ``.fanout-backups/`` beside the settings file, a
    private folder with a ``.gitignore`` of ``*`` (settings may hold secrets; git never sees it)."""
    return settings_file.parent / BACKUP_DIR


def _backup_of(path: Path) -> Path:
    return backup_dir(path) / path.name


def _created_mark(path: Path) -> Path:
    """An empty file recording that install created ``path`` (so uninstall may remove it)."""
    return backup_dir(path) / (path.name + ".created")


def put_hooks(
    path: Path, original: bytes | None, settings: JSONObject, merged: JSONObject
) -> Path | None:
    """Write ``merged`` to ``path``, recording first what uninstall needs to put back: that the
    file did not exist, or its bytes. Returns the backup written, if any."""
    _make_backup_dir(path)
    backup = None
    if original is None:
        write_file(_created_mark(path), b"", mode=SETTINGS_FILE_MODE)
    elif remove_fanout(settings) == settings or not _backup_of(path).exists():
        # Only the file as it was before fanout's hooks is worth keeping: a re-install (new
        # interpreter path) leaves the first backup alone.
        backup = _backup_of(path)
        # The backup may hold what the settings hold (env secrets): same mode as the original.
        write_file(backup, original, mode=file_mode(path))
    write_file(path, _json_bytes(merged), mode=file_mode(path), expect=original)
    return backup


def _make_backup_dir(path: Path) -> None:
    from claude_fanout.store.files import make_ignored_dir

    os.makedirs(path.parent, exist_ok=True)
    make_ignored_dir(backup_dir(path), what=BACKUPS_WHAT)


def adopt_legacy_backup(path: Path) -> Path | None:
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


def take_hooks_out(path: Path) -> tuple[list[Path], list[Path]]:
    """Take fanout's hooks and status line out of ``path`` (the person's own status line back in
    its place) and put back what install found (see ``uninstall``);
    drop install's records for it. The files written and the files removed."""
    written: list[Path] = []
    removed: list[Path] = []
    original, settings = load(path)
    cleaned = remove_fanout(settings)
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
            write_file(path, data or _json_bytes(cleaned), mode=file_mode(path), expect=original)
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


def has_hooks(path: Path) -> bool:
    """True when the settings file at ``path`` holds any of fanout's hooks or its status line
    (an unreadable or malformed file: False, it is reported where it is written)."""
    try:
        _, settings = load(path)
    except SettingsError:
        return False
    return remove_fanout(settings) != settings


def remove_if_empty(folder: Path) -> None:
    import contextlib

    with contextlib.suppress(OSError):  # not empty (or not there): not ours to remove
        os.rmdir(folder)


# --------------------------------------------------------------------------------------------
# Shared or personal: what git does with the file


EXCLUDE_NOTE: Final = "# claude-fanout: Claude Code's per-person settings stay out of git"


def sharing(path: Path, scope: Scope) -> tuple[bool, str, str | None]:
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


def unexclude(path: Path) -> bool:
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
            write_file(exclude, "".join(lines).encode("utf-8"), mode=file_mode(exclude))
            return True
    return False


def load(path: Path) -> tuple[bytes | None, JSONObject]:
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


def file_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return SETTINGS_FILE_MODE


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {path} ({exc}); move it aside, then retry") from None


def write_file(path: Path, data: bytes, *, mode: int, expect: bytes | None = None) -> None:
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
