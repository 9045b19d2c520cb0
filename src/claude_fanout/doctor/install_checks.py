"""``fanout doctor``'s install section: the settings files Claude Code reads, every fanout hook
command in them (an interpreter and an entry script that exist), the ``/fanout`` command file, the
plugin and ``.claude/fanout.toml``."""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from claude_fanout import install, settings_files, settings_hooks
from claude_fanout import settings_statusline as status_line
from claude_fanout.doctor.findings import FAIL, OK, WARN, Check, runnable

PLUGIN_PREFIX: Final = "fanout@"
PLUGIN_HOOK_COMMAND: Final = "fanout-hook"
# Claude Code reads them all: user, then project (shared), then local (yours).
_SCOPES: Final = (
    settings_files.Scope.USER,
    settings_files.Scope.PROJECT,
    settings_files.Scope.LOCAL,
)


def hook_targets(command: str) -> tuple[str, str] | None:
    """(interpreter, entry script) of a hook command ``fanout install`` wrote; None for any other
    shape (the plugin's ``fanout-hook EVENT``, or a command edited by hand)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for i, word in enumerate(words[:-3]):
        if words[i + 1 : i + 3] == ["-I", "-S"]:
            return word, words[i + 3]
    return None


def _read_settings(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the parsed file or None when absent, why it cannot be used)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    problem = settings_hooks.shape_problem(data, events=settings_hooks.FANOUT_HOOKS)
    if problem is not None:
        return None, f"has the wrong shape ({problem})"
    return data, None


def _fanout_commands(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(event, command) of every fanout hook in a settings object."""
    found: list[tuple[str, str]] = []
    hooks = data.get("hooks")
    for event, groups in (hooks or {}).items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else ():
            inner = group.get("hooks") if isinstance(group, dict) else None
            for hook in inner if isinstance(inner, list) else ():
                if settings_hooks.is_fanout_hook(hook):
                    found.append((str(event), str(hook["command"])))
    return found


def _expected_events() -> Counter[str]:
    return Counter(spec.event or name for name, spec in settings_hooks.FANOUT_HOOKS.items())


def install_checks(project: Path, env: Mapping[str, str], home: Path | None) -> Iterator[Check]:
    section = "install"
    installed: dict[str, frozenset[str]] = {}
    plugin_enabled = False
    lines: list[tuple[settings_files.Scope, Path, object]] = []
    for scope in _SCOPES:
        path = settings_files.settings_path(scope, project=project, home=home)
        data, problem = _read_settings(path)
        if data is not None and status_line.KEY in data:
            lines.append((scope, path, data[status_line.KEY]))
        where = f"{scope} settings ({path})"
        if problem is not None:
            yield Check(
                section,
                f"{scope} settings",
                FAIL,
                f"{path} {problem}: Claude Code cannot use it; fix it by hand",
            )
            continue
        if data is None:
            continue
        plugins = data.get("enabledPlugins")
        if isinstance(plugins, dict) and any(
            str(k).startswith(PLUGIN_PREFIX) and v is True for k, v in plugins.items()
        ):
            plugin_enabled = True
        commands = _fanout_commands(data)
        if not commands:
            continue
        installed[str(scope)] = frozenset(command for _, command in commands)
        yield from _hook_checks(section, str(scope), where, commands, env)
    if len(set(installed.values())) > 1:
        yield Check(
            section,
            "scopes",
            WARN,
            f"fanout's hooks differ between {', '.join(installed)} settings: Claude Code runs "
            "each, so every event is handled twice; keep one (`fanout uninstall --scope …`)",
        )
    if plugin_enabled:
        yield from _plugin_checks(section, env, direct=bool(installed))
    if not installed and not plugin_enabled:
        yield Check(
            section,
            "hooks",
            FAIL,
            "fanout's hooks are not installed for this project: run `fanout install` "
            "(`--scope local` for you alone, `--scope user` for every project)",
        )
    yield from _command_checks(section, project, home, hooks=bool(installed))
    yield _statusline_check(section, lines)
    yield _config_check(section, project)


def _statusline_check(
    section: str, lines: list[tuple[settings_files.Scope, Path, object]]
) -> Check:
    """Which status line Claude Code shows (the last of ``lines``, read user, project, local:
    the highest precedence), and whether fanout's part of it can run."""
    name = "status line"
    if not lines:
        return Check(section, name, OK, "none (`fanout install` adds fanout's)")
    scope, path, shown = lines[-1]
    ours = [where for _, where, value in lines if status_line.is_ours(value)]
    if not status_line.is_ours(shown):
        if ours:
            return Check(
                section,
                name,
                WARN,
                f"fanout's status line in {ours[0]} does not show: Claude Code shows yours from "
                f"{path} instead; `fanout install --scope {scope}` shows both",
            )
        return Check(section, name, OK, f"yours, from {path} (fanout's is not installed)")
    targets = hook_targets(str(shown.get("command"))) if isinstance(shown, dict) else None
    if targets is None or not runnable(targets[0]) or not os.path.isfile(targets[1]):
        return Check(
            section,
            name,
            WARN,
            f"fanout's status line in {path} points to a missing interpreter or entry script, "
            f"so it shows nothing of fanout's: run `fanout install --scope {scope}`",
        )
    theirs = status_line.wrapped_command(shown)
    below = next(
        (
            (where, value)
            for _, where, value in reversed(lines[:-1])
            if not status_line.is_ours(value)
        ),
        None,
    )
    if status_line.theirs_in({status_line.KEY: shown}) is None and below is not None:
        current = below[1].get("command") if isinstance(below[1], dict) else None
        if current != theirs:
            return Check(
                section,
                name,
                WARN,
                f"fanout's status line in {path} runs yours as it was when installed, not as it "
                f"is now in {below[0]}: run `fanout install --scope {scope}` again",
            )
    with_theirs = "" if theirs is None else f", with yours ({theirs[:60]})"
    return Check(section, name, OK, f"fanout's, from {path}{with_theirs}")


def _hook_checks(
    section: str,
    scope: str,
    where: str,
    commands: list[tuple[str, str]],
    env: Mapping[str, str],
) -> Iterator[Check]:
    name = f"{scope} hooks"
    broken: list[str] = []
    entries: set[str] = set()
    for event, command in commands:
        targets = hook_targets(command)
        if targets is None:
            if PLUGIN_HOOK_COMMAND not in command:
                broken.append(f"{event}: a command fanout cannot read ({command[:80]})")
            elif shutil.which(PLUGIN_HOOK_COMMAND, path=env.get("PATH")) is None:
                broken.append(f"{event}: `{PLUGIN_HOOK_COMMAND}` is not on PATH")
            continue
        python, entry = targets
        entries.add(os.path.realpath(entry))
        if not runnable(python):
            broken.append(f"{event}: interpreter {python} is missing")
        elif not os.path.isfile(entry):
            broken.append(f"{event}: entry {entry} is missing")
    if broken:
        unique = list(dict.fromkeys(broken))
        yield Check(
            section,
            name,
            FAIL,
            f"{where}: hook commands point nowhere ({'; '.join(unique[:3])}"
            f"{' …' if len(unique) > 3 else ''}), so fanout does nothing in a session: run "
            f"`fanout install --scope {scope}` with the Python that has claude-fanout, or "
            f"`fanout uninstall --scope {scope}`",
        )
        return
    missing = _expected_events() - Counter(event for event, _ in commands)
    if missing:
        yield Check(
            section,
            name,
            WARN,
            f"{where}: fanout's hooks for {', '.join(sorted(missing))} are missing: run "
            f"`fanout install --scope {scope}`",
        )
        return
    ours = os.path.realpath(install.default_entry())
    if entries and ours not in entries:
        yield Check(
            section,
            name,
            WARN,
            f"{where}: the hooks run another installation of fanout ({sorted(entries)[0]}), "
            f"not this one ({ours}): run `fanout install --scope {scope}` to switch",
        )
        return
    yield Check(section, name, OK, f"{where}: {len(commands)} hooks, each one runnable")


def _plugin_checks(section: str, env: Mapping[str, str], *, direct: bool) -> Iterator[Check]:
    if shutil.which(PLUGIN_HOOK_COMMAND, path=env.get("PATH")) is None:
        yield Check(
            section,
            "plugin",
            FAIL,
            f"the fanout plugin is enabled but its hooks run `{PLUGIN_HOOK_COMMAND}`, which is "
            "not on PATH: install claude-fanout where PATH finds it (pipx), or disable the plugin",
        )
    elif direct:
        yield Check(
            section,
            "plugin",
            WARN,
            "the fanout plugin is enabled and fanout's hooks are in settings too: every event "
            "is handled twice; disable the plugin or `fanout uninstall`",
        )
    else:
        yield Check(section, "plugin", OK, f"enabled; `{PLUGIN_HOOK_COMMAND}` is on PATH")


def _command_checks(
    section: str, project: Path, home: Path | None, *, hooks: bool
) -> Iterator[Check]:
    found = False
    for scope in (settings_files.Scope.PROJECT, settings_files.Scope.USER):
        path = install.command_path(scope, project=project, home=home)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            yield Check(section, "/fanout", WARN, f"{path} cannot be read ({exc})")
            continue
        if install.COMMAND_MARKER not in text:
            yield Check(
                section,
                "/fanout",
                WARN,
                f"{path} is not fanout's (no {install.COMMAND_MARKER} line): /fanout runs it "
                "instead of fanout's command",
            )
            continue
        found = True
        if text != install.command_text():
            yield Check(
                section,
                "/fanout",
                WARN,
                f"{path} is from another version of fanout: run `fanout install --scope {scope}`",
            )
        else:
            yield Check(section, "/fanout", OK, f"{path}")
    if hooks and not found:
        yield Check(
            section,
            "/fanout",
            WARN,
            "fanout's hooks are installed but the /fanout command file is not: "
            "run `fanout install`",
        )


def _config_check(section: str, project: Path) -> Check:
    from claude_fanout.config import CONFIG_FILE, load_config
    from claude_fanout.errors import FanoutError

    try:
        load_config(project)
    except FanoutError as exc:
        return Check(section, "config", FAIL, str(exc))
    path = project / CONFIG_FILE
    return Check(
        section, "config", OK, f"{path} is valid" if path.exists() else "no fanout.toml: defaults"
    )
