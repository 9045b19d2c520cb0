"""fanout's ``statusLine`` in a Claude Code settings object: its command, and the pure merge into
and removal from the parsed JSON that keeps the person's own status line.

Claude Code shows one status line, the ``statusLine`` of the settings file with the highest
precedence (local, then project, then user). fanout's command shows the person's own line too:
it runs their command with the same input and appends its segment. Their command is carried in
ours (``theirs=<command>;``), so an idle project runs it straight from the shell (no Python).
When ours took the place of theirs in the same file, their whole ``statusLine`` object is kept
in ours too (``kept=<JSON>;``) and comes back exactly, key for key, when fanout's is removed.
When theirs lives in a file of lower precedence, ours runs it and that file is never touched.

Our value is recognised by the marker that ends every command fanout writes
(:data:`claude_fanout.settings_hooks.MARKER`). Reading and writing the files is
:mod:`claude_fanout.settings_files`.
"""

from __future__ import annotations

import json
import shlex

from claude_fanout import defaults
from claude_fanout.settings_hooks import MARKER, guarded, remove_hooks

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    JSONObject = dict[str, Any]

__all__ = [
    "EVENT",
    "KEY",
    "is_ours",
    "ours_wrapping",
    "remove_fanout",
    "statusline_command",
    "theirs_in",
    "unwrappable",
    "with_statusline",
    "without_statusline",
    "wrapped_command",
]

KEY: Final = "statusLine"
EVENT: Final = "StatusLine"
"""The name the hook entry script is called with to draw the status line."""


def statusline_command(
    *, python: str, entry: str, theirs: str | None = None, kept: JSONObject | None = None
) -> str:
    """The shell command of fanout's status line: this interpreter, isolated, running the hook
    entry script, only while the project has a live run. ``theirs`` (the person's own status
    line command) runs in its place when there is none, and with ours when there is; ``kept``
    is the person's ``statusLine`` object ours replaced, carried for :func:`without_statusline`.
    """
    entry_q = shlex.quote(entry)
    invocation = f"{shlex.quote(python)} -I -S {entry_q} {EVENT}"
    if theirs is None:
        # A removed package leaves a status line that prints nothing rather than an error.
        return f"[ -f {entry_q} ] || exit 0; {guarded(invocation)} {MARKER}"
    prefix = "" if kept is None else f"kept={shlex.quote(_compact(kept))}; "
    prefix += f"theirs={shlex.quote(theirs)}; "
    # "$0" names the shell Claude Code runs this with, so live, theirs runs in the same shell
    # as when idle (eval, no process of ours in between).
    body = guarded(f'{invocation} "$0" "$theirs"', otherwise='eval "$theirs"')
    return f"{prefix}[ -f {entry_q} ] && {body} {MARKER}"


def _compact(value: JSONObject) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def is_ours(value: object) -> bool:
    """True for a ``statusLine`` value fanout wrote (its command ends with the marker)."""
    return _our_command(value) is not None


def _our_command(value: object) -> str | None:
    command = value.get("command") if isinstance(value, dict) else None
    return command if isinstance(command, str) and command.rstrip().endswith(MARKER) else None


def _assignments(command: str) -> dict[str, str]:
    """The leading ``name=value;`` words of one of our commands, unquoted."""
    found: dict[str, str] = {}
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        while True:
            word = lexer.get_token()
            name, sep, value = (word or "").partition("=")
            if not sep or name not in ("kept", "theirs") or lexer.get_token() != ";":
                return found
            found[name] = value
    except ValueError:  # unbalanced quotes: not one of ours after all
        return found


def wrapped_command(value: object) -> str | None:
    """The person's status line command our ``statusLine`` runs with its own (None: none)."""
    command = _our_command(value)
    return None if command is None else _assignments(command).get("theirs")


def _kept(value: object) -> JSONObject | None:
    command = _our_command(value)
    raw = None if command is None else _assignments(command).get("kept")
    if raw is None:
        return None
    try:
        kept = json.loads(raw)
    except ValueError:
        return None
    return kept if isinstance(kept, dict) else None


def theirs_in(settings: JSONObject) -> object | None:
    """The person's own ``statusLine`` in ``settings``: the value there, or the one ours kept in
    its place; None when the file has none of theirs."""
    value = settings.get(KEY)
    if value is None:
        return None
    return _kept(value) if is_ours(value) else value


def unwrappable(theirs: object) -> str | None:
    """Why fanout cannot run the person's ``statusLine`` with its own (None: it can)."""
    if not isinstance(theirs, dict):
        return "is not an object"
    if theirs.get("type") != "command" or not isinstance(theirs.get("command"), str):
        return 'is not a "command" status line'
    return None


def ours_wrapping(theirs: JSONObject | None, *, python: str, entry: str, here: bool) -> JSONObject:
    """fanout's ``statusLine`` value, running ``theirs`` (a wrappable object, or None) with it.

    ``here``: theirs is in the file ours goes to, which ours replaces: their object is kept in
    ours, with their keys (padding, refresh) in their order. Else their padding and refresh are
    copied, so the line looks as theirs did. Ours refreshes every ``STATUSLINE_REFRESH_S`` unless
    theirs sets its own interval: a run progresses while the session is idle.
    """
    if theirs is None:
        return {
            "type": "command",
            "command": statusline_command(python=python, entry=entry),
            "refreshInterval": defaults.STATUSLINE_REFRESH_S,
        }
    command = statusline_command(
        python=python, entry=entry, theirs=theirs["command"], kept=theirs if here else None
    )
    ours: JSONObject = (
        {**theirs, "command": command}
        if here
        else {"type": "command", "command": command}
        | {k: theirs[k] for k in ("padding", "refreshInterval") if k in theirs}
    )
    ours.setdefault("refreshInterval", defaults.STATUSLINE_REFRESH_S)
    return ours


def with_statusline(settings: JSONObject, ours: JSONObject) -> JSONObject:
    """``settings`` with ``statusLine`` set to ``ours`` (in its place when there is one)."""
    return {**settings, KEY: ours}


def without_statusline(settings: JSONObject) -> JSONObject:
    """``settings`` without fanout's ``statusLine``: the person's own put back in its place
    when ours kept it, else the key removed. Unchanged when the value is not ours."""
    value = settings.get(KEY)
    if not is_ours(value):
        return settings
    kept = _kept(value)
    if kept is not None:
        return {**settings, KEY: kept}
    return {key: item for key, item in settings.items() if key != KEY}


def remove_fanout(settings: JSONObject) -> JSONObject:
    """``settings`` without anything fanout wrote: its hooks and its status line."""
    return without_statusline(remove_hooks(settings))
