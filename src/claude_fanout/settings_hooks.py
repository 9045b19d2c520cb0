"""fanout's hook entries in a Claude Code settings object: which hooks, their commands, and the
pure merge into and removal from the parsed JSON.

A settings file is the user's, not ours: every other key and hook is theirs to keep, in its place.
So the merge is a pure function over the parsed JSON and our entries are recognised by a marker at
the end of their command (never by position). Reading and writing the files is
:mod:`claude_fanout.settings_files`; ``fanout install`` itself is :mod:`claude_fanout.install`.

Cheap to import (no dataclasses, pathlib or typing at run time): hooks may read ``FANOUT_HOOKS``
and ``STOP_HOOK_TIMEOUT_S`` from here.
"""

from __future__ import annotations

from collections import namedtuple
from types import MappingProxyType

from claude_fanout import defaults
from claude_fanout.errors import FanoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, Final, NamedTuple

    JSONObject = dict[str, Any]

__all__ = [
    "FANOUT_HOOKS",
    "MARKER",
    "PROMPT_HOOK_TIMEOUT_S",
    "REWAKE_HOOK_TIMEOUT_S",
    "STOP_HOOK_TIMEOUT_S",
    "HookSpec",
    "SettingsError",
    "fanout_hooks",
    "guarded",
    "hook_command",
    "is_fanout_hook",
    "merge_hooks",
    "plugin_hook_command",
    "plugin_hooks",
    "remove_hooks",
    "shape_problem",
]

MARKER: Final = "# claude-fanout"
"""Every command fanout writes ends with this shell comment; it is how fanout finds its own."""

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
    '[ -e "$f" ] && exec {invocation}; break; done; {otherwise}'
)

if TYPE_CHECKING:

    class HookSpec(NamedTuple):
        matcher: str | None
        timeout: int
        guarded: bool
        event: str | None = None
        async_rewake: bool = False

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
    body = guarded(invocation) if spec.guarded else invocation
    return f"{requires}{body} {MARKER}"


def guarded(invocation: str, *, otherwise: str = "exit 0") -> str:
    """Shell that runs ``invocation`` only while the project has a live run (a marker under
    ``.claude/runs/.active/``), else ``otherwise``, without starting any Python."""
    return _GUARD.format(invocation=invocation, otherwise=otherwise)


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
