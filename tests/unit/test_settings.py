"""fanout's entries in Claude Code settings files: merge, removal, install and uninstall, and the
hook command itself run by a real shell."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_fanout import defaults
from claude_fanout.install import COMMAND_MARKER, command_path, command_text, install, uninstall
from claude_fanout.settings_files import (
    BACKUP_DIR,
    LEGACY_BACKUP_SUFFIX,
    Scope,
    backup_dir,
    settings_path,
)
from claude_fanout.settings_hooks import (
    FANOUT_HOOKS,
    MARKER,
    STOP_HOOK_TIMEOUT_S,
    SettingsError,
    fanout_hooks,
    hook_command,
    is_fanout_hook,
    merge_hooks,
    remove_hooks,
)
from claude_fanout.settings_statusline import ours_wrapping, with_statusline

PY = "/opt/venvs/fanout/bin/python"
ENTRY = "/opt/venvs/fanout/lib/python3.11/site-packages/claude_fanout/hooks/entry.py"
OURS = fanout_hooks(python=PY, entry=ENTRY)

# What a settings file of someone who uses Claude Code daily looks like: permissions, env, model,
# a status line, and hooks of their own: PreToolUse with and without a matcher, and a Stop hook.
REALISTIC: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "opus",
    "permissions": {
        "allow": ["Bash(npm run lint)", "Bash(npm run test:*)", "Read(~/.zshrc)"],
        "deny": ["Read(./.env)", "Read(./secrets/**)", "WebFetch"],
        "defaultMode": "acceptEdits",
    },
    "env": {"CLAUDE_CODE_ENABLE_TELEMETRY": "0", "GREETING": "grüß dich"},
    "statusLine": {"type": "command", "command": "~/.claude/statusline.sh", "padding": 0},
    "hooks": {
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [
                    {
                        "type": "command",
                        "command": "jq -r '.tool_input.command' >> ~/.claude/bash-log.txt",
                    }
                ],
            },
            {
                "hooks": [
                    {
                        "type": "command",
                        "command": '"$CLAUDE_PROJECT_DIR"/.claude/hooks/audit.sh',
                        "timeout": 5,
                    }
                ]
            },
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send 'Claude' 'done'"}]}],
        "Notification": [
            {"matcher": "", "hooks": [{"type": "command", "command": "say 'Claude needs you'"}]}
        ],
    },
    "includeCoAuthoredBy": False,
}


def installed(
    settings: dict[str, Any], *, python: str, entry: str, theirs: Any = None
) -> dict[str, Any]:
    """``settings`` as install writes them: fanout's hooks merged, and its status line running
    the person's own (``theirs``, from a file below; else the one in ``settings``, kept)."""
    merged = merge_hooks(settings, fanout_hooks(python=python, entry=entry))
    here = theirs is None
    line = merged.get("statusLine") if here else theirs
    return with_statusline(merged, ours_wrapping(line, python=python, entry=entry, here=here))


def ours_in(settings: dict[str, Any], event: str) -> list[dict[str, Any]]:
    groups = [g for g in settings.get("hooks", {}).get(event, []) if isinstance(g, dict)]
    return [
        hook
        for group in groups
        if isinstance(group.get("hooks"), list)
        for hook in group["hooks"]
        if is_fanout_hook(hook)
    ]


def write_json(path: Path, content: object, *, mode: int = 0o644) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(content, indent=4) + "\n").encode()
    path.write_bytes(data)
    path.chmod(mode)
    return data


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    root.mkdir()
    return root


@pytest.fixture
def runtime(tmp_path: Path) -> tuple[str, str]:
    """A real interpreter path and an existing entry script, as install checks both."""
    entry = tmp_path / "site" / "claude_fanout" / "hooks" / "entry.py"
    entry.parent.mkdir(parents=True)
    entry.write_text("")
    return os.path.realpath(sys.executable), str(entry)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------------------------
# The command and the hook table


def test_unguarded_command_runs_the_interpreter_isolated_and_ends_with_the_marker() -> None:
    assert hook_command("SessionStart", python=PY, entry=ENTRY) == (
        f"[ -f {ENTRY} ] || exit 0; {PY} -I -S {ENTRY} SessionStart {MARKER}"
    )


def test_guarded_command_starts_python_only_when_a_run_is_active() -> None:
    assert hook_command("PreToolUse", python=PY, entry=ENTRY) == (
        f"[ -f {ENTRY} ] || exit 0; "
        'for f in "$CLAUDE_PROJECT_DIR"/.claude/runs/.active/*; do '
        f'[ -e "$f" ] && exec {PY} -I -S {ENTRY} PreToolUse; break; done; exit 0 {MARKER}'
    )


def test_paths_with_spaces_and_quotes_are_shell_quoted() -> None:
    command = hook_command("Stop", python="/Users/Ann Lee/venv/bin/python", entry="/x/it's.py")
    assert "'/Users/Ann Lee/venv/bin/python' -I -S '/x/it'\"'\"'s.py' Stop" in command


def test_unknown_event_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="Notification"):
        hook_command("Notification", python=PY, entry=ENTRY)


def test_fanout_hooks_follow_the_table() -> None:
    assert list(OURS) == list(
        dict.fromkeys(spec.event or name for name, spec in FANOUT_HOOKS.items())
    )
    assert FANOUT_HOOKS["Stop"].timeout == STOP_HOOK_TIMEOUT_S
    # The prompt hook outlives the longest planner it may run, with time to start the run.
    assert FANOUT_HOOKS["UserPromptSubmit"].timeout >= defaults.PLANNER_MAX_TIMEOUT_S + 20
    for name, spec in FANOUT_HOOKS.items():
        (group,) = [g for g in OURS[spec.event or name] if g.get("matcher") == spec.matcher]
        assert ("matcher" in group) == (spec.matcher is not None)
        expected = {
            "type": "command",
            "command": hook_command(name, python=PY, entry=ENTRY),
            "timeout": spec.timeout,
        }
        if spec.async_rewake:
            expected |= {"async": True, "asyncRewake": True}
        assert expected in group["hooks"]
        assert spec.guarded == (name in {"PreToolUse", "PostToolUse", "Stop", "Rewake"})
    # Both Stop hooks share one group: the barrier and, in the background, the rewake.
    (stop,) = OURS["Stop"]
    assert [h.get("async", False) for h in stop["hooks"]] == [False, True]


def test_table_matches_the_contract() -> None:
    expected = {
        "SessionStart": (None, 10),
        "UserPromptSubmit": (None, 330),
        "PreToolUse": ("Read|Edit|Write|MultiEdit|NotebookEdit|Grep|Glob|Bash", 10),
        "PostToolUse": ("*", 10),
        "Stop": (None, 600),
        "Rewake": (None, 7260),
        "SessionEnd": (None, 5),
    }
    assert {name: (s.matcher, s.timeout) for name, s in FANOUT_HOOKS.items()} == expected


# --------------------------------------------------------------------------------------------
# Pure merge and removal


def test_merge_keeps_everything_else_and_appends_ours() -> None:
    before = copy.deepcopy(REALISTIC)
    merged = merge_hooks(REALISTIC, OURS)
    assert before == REALISTIC, "input modified"
    assert {k: v for k, v in merged.items() if k != "hooks"} == {
        k: v for k, v in REALISTIC.items() if k != "hooks"
    }
    assert list(merged) == list(REALISTIC)
    hooks = merged["hooks"]
    assert list(hooks) == [
        "PreToolUse",
        "Stop",
        "Notification",
        *(e for e in OURS if e not in ("PreToolUse", "Stop")),
    ]
    assert hooks["PreToolUse"][:2] == REALISTIC["hooks"]["PreToolUse"]
    assert hooks["PreToolUse"][2:] == OURS["PreToolUse"]
    assert hooks["Stop"] == REALISTIC["hooks"]["Stop"] + OURS["Stop"]
    assert hooks["Notification"] == REALISTIC["hooks"]["Notification"]
    for event in OURS:
        assert len(ours_in(merged, event)) == sum(len(g["hooks"]) for g in OURS[event])


def test_merge_is_idempotent_and_removal_restores_the_original() -> None:
    merged = merge_hooks(REALISTIC, OURS)
    assert merge_hooks(merged, OURS) == merged
    assert remove_hooks(merged) == REALISTIC
    assert remove_hooks(REALISTIC) == REALISTIC


def test_merge_into_empty_settings_and_back() -> None:
    merged = merge_hooks({}, OURS)
    assert merged == {"hooks": OURS}
    assert remove_hooks(merged) == {}


def test_outdated_entry_is_replaced_where_it_stands_not_duplicated() -> None:
    old = fanout_hooks(python="/old/venv/bin/python", entry="/old/entry.py")
    mine = {"type": "command", "command": "./lint.sh"}
    settings = {
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]},
                # Someone put their own hook into our group, after ours.
                {
                    "matcher": FANOUT_HOOKS["PreToolUse"].matcher,
                    "hooks": [*old["PreToolUse"][0]["hooks"], mine],
                },
                {"hooks": [{"type": "command", "command": "last"}]},
            ],
            "Stop": old["Stop"],
        }
    }
    merged = merge_hooks(settings, OURS)
    groups = merged["hooks"]["PreToolUse"]
    assert len(groups) == 3
    assert groups[1]["hooks"] == [*OURS["PreToolUse"][0]["hooks"], mine]
    assert merged["hooks"]["Stop"] == OURS["Stop"]
    for event in OURS:
        assert ours_in(merged, event) == OURS[event][0]["hooks"]


def test_entry_of_ours_under_another_matcher_moves_to_ours() -> None:
    old_entry = {"type": "command", "command": f"old-hook PostToolUse {MARKER}", "timeout": 3}
    settings = {
        "hooks": {
            "PostToolUse": [
                {"matcher": "Edit", "hooks": [old_entry]},
                {"matcher": "Write", "hooks": [old_entry, {"type": "command", "command": "fmt"}]},
            ]
        }
    }
    merged = merge_hooks(settings, OURS)
    assert merged["hooks"]["PostToolUse"] == [
        {"matcher": "Write", "hooks": [{"type": "command", "command": "fmt"}]},
        *OURS["PostToolUse"],
    ]


def test_duplicates_of_ours_collapse_to_one() -> None:
    doubled = {"hooks": {e: g + copy.deepcopy(g) for e, g in OURS.items()}}
    assert merge_hooks(doubled, OURS) == {"hooks": OURS}
    assert remove_hooks(doubled) == {}


def test_removal_drops_only_what_it_emptied() -> None:
    settings = {
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": []},
                *OURS["PreToolUse"],
                {"matcher": "Edit", "hooks": [*OURS["PreToolUse"][0]["hooks"], {"command": "x"}]},
            ],
            "PostToolUse": [],
            "Stop": OURS["Stop"],
            "Odd": "not a list",
        },
        "other": 1,
    }
    assert remove_hooks(settings) == {
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": []},
                {"matcher": "Edit", "hooks": [{"command": "x"}]},
            ],
            "PostToolUse": [],
            "Odd": "not a list",
        },
        "other": 1,
    }
    assert remove_hooks({"hooks": {}}) == {"hooks": {}}


def test_marker_must_end_the_command() -> None:
    assert is_fanout_hook({"command": f"x {MARKER}\n"})
    assert not is_fanout_hook({"command": f"echo '{MARKER}' && x"})
    assert not is_fanout_hook({"command": 3})
    assert not is_fanout_hook("string")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "must be a JSON object, not an array"),
        ({"hooks": []}, '"hooks" must be an object, not an array'),
        ({"hooks": None}, '"hooks" must be an object, not null'),
        ({"hooks": {"Stop": {"hooks": []}}}, '"hooks.Stop" must be a list, not an object'),
    ],
)
def test_wrong_shapes_are_refused(settings: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        merge_hooks(settings, OURS)
    if "hooks.Stop" not in message:
        with pytest.raises(SettingsError):
            remove_hooks(settings)


# --------------------------------------------------------------------------------------------
# Properties over random settings

_texts = st.text(min_size=0, max_size=12)
_json_leaf = st.none() | st.booleans() | st.integers() | _texts
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_hook = st.fixed_dictionaries(
    {"type": st.just("command"), "command": _texts.filter(lambda c: MARKER not in c)},
    optional={"timeout": st.integers(1, 600)},
)
_matchers = st.sampled_from(
    [None, "", "*", "Bash", "Edit|Write", *(s.matcher for s in FANOUT_HOOKS.values() if s.matcher)]
)


@st.composite
def _group(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 19)) == 0:
        return draw(_json)  # something Claude Code would reject: kept as it is
    group: dict[str, Any] = {}
    matcher = draw(_matchers)
    if matcher is not None:
        group["matcher"] = matcher
    group["hooks"] = draw(st.lists(_hook, max_size=3))
    return group


_events = st.sampled_from([*OURS, "Notification", "PreCompact", "SubagentStop"])
# Absent or non-empty: an empty "hooks" object or event list that only fanout's entries filled
# cannot be told apart from one fanout created, and removal drops it (the same to Claude Code).
_hooks = st.dictionaries(_events, st.lists(_group(), min_size=1, max_size=3), min_size=1)
_settings = st.builds(
    lambda rest, hooks: {**rest, **({} if hooks is None else {"hooks": hooks})},
    st.dictionaries(_texts.filter(lambda k: k != "hooks"), _json, max_size=4),
    st.none() | _hooks,
)
property_settings = settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@property_settings
@given(_settings)
def test_property_merge_then_remove_is_identity_and_merge_is_idempotent(s: dict[str, Any]) -> None:
    before = copy.deepcopy(s)
    merged = merge_hooks(s, OURS)
    assert s == before
    assert remove_hooks(merged) == s
    assert merge_hooks(merged, OURS) == merged
    for event in OURS:
        assert ours_in(merged, event) == OURS[event][0]["hooks"]


@property_settings
@given(_settings, st.sampled_from(["/usr/bin/python3", PY]))
def test_property_reinstall_with_other_paths_leaves_one_entry_per_event(
    s: dict[str, Any], python: str
) -> None:
    first = merge_hooks(s, fanout_hooks(python=python, entry="/a/entry.py"))
    again = merge_hooks(first, OURS)
    for event in OURS:
        assert ours_in(again, event) == OURS[event][0]["hooks"]
    assert remove_hooks(again) == s


# --------------------------------------------------------------------------------------------
# Files


def test_each_scope_writes_where_claude_code_reads(
    proj: Path, home: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    where = {
        Scope.PROJECT: (proj / ".claude/settings.json", proj / ".claude/commands/fanout.md"),
        Scope.LOCAL: (proj / ".claude/settings.local.json", proj / ".claude/commands/fanout.md"),
        Scope.USER: (home / ".claude/settings.json", home / ".claude/commands/fanout.md"),
    }
    for scope, (settings_file, command_file) in where.items():
        assert settings_path(scope, project=proj, home=home) == settings_file
        assert command_path(scope, project=proj, home=home) == command_file
        report = install(scope=scope, project=proj, home=home, python=python, entry=entry)
        assert report.settings == settings_file and report.command == command_file
        assert json.loads(settings_file.read_text()) == installed({}, python=python, entry=entry)
        assert command_file.read_text() == command_text()
    assert settings_path("user", project=proj, home=home) == home / ".claude/settings.json"


def test_user_scope_follows_claude_config_dir(
    proj: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert settings_path(Scope.USER, project=proj) == tmp_path / "cfg/settings.json"
    assert command_path(Scope.USER, project=proj) == tmp_path / "cfg/commands/fanout.md"
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    assert settings_path(Scope.USER, project=proj) == Path.home() / ".claude/settings.json"


def test_install_creates_settings_0644_whatever_the_umask(
    proj: Path, runtime: tuple[str, str], strict_umask: None
) -> None:
    python, entry = runtime
    report = install(project=proj, python=python, entry=entry)
    path = proj / ".claude/settings.local.json"
    assert report.written == (path, proj / ".claude/commands/fanout.md")
    assert report.changed and report.backup is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list(path.parent.glob(f"*{LEGACY_BACKUP_SUFFIX}"))
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_default_install_keeps_machine_paths_out_of_the_shared_settings(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    report = install(project=proj, python=python, entry=entry)
    personal = proj / ".claude/settings.local.json"
    assert report.scope is Scope.LOCAL and report.settings == personal
    assert not report.shared and "personal" in report.sharing
    assert json.loads(personal.read_text()) == installed({}, python=python, entry=entry)
    assert not (proj / ".claude/settings.json").exists()
    # The command file names no path of this machine: it may be committed and shared.
    command = (proj / ".claude/commands/fanout.md").read_text()
    assert python not in command and entry not in command and str(proj) not in command


def test_project_scope_says_the_file_is_shared(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    report = install(scope=Scope.PROJECT, project=proj, python=python, entry=entry)
    assert report.settings == proj / ".claude/settings.json"
    assert report.shared and "shared" in report.sharing


def test_install_moves_an_older_installs_hooks_out_of_the_shared_settings(
    proj: Path, runtime: tuple[str, str]
) -> None:
    """An install from before the default was the personal file left machine paths in the
    committed settings.json: the next install takes them out (and the old backup with them)."""
    python, entry = runtime
    shared = proj / ".claude/settings.json"
    original = write_json(shared, REALISTIC)
    legacy = shared.with_name(shared.name + LEGACY_BACKUP_SUFFIX)
    legacy.write_bytes(original)
    write_json(shared, merge_hooks(REALISTIC, fanout_hooks(python="/old/python", entry=ENTRY)))

    report = install(project=proj, python=python, entry=entry)
    assert shared.read_bytes() == original, "the shared file is not back to the team's version"
    # fanout's status line there runs the team's, from the shared file (left as it was).
    assert json.loads((proj / ".claude/settings.local.json").read_text()) == installed(
        {}, python=python, entry=entry, theirs=REALISTIC["statusLine"]
    )
    assert shared in report.written and legacy in report.removed and not legacy.exists()
    assert any(f"moved fanout's hooks out of {shared}" in note for note in report.notes)
    assert sorted(p.name for p in shared.parent.iterdir()) == [
        BACKUP_DIR,
        "commands",
        "settings.json",
        "settings.local.json",
    ]


def test_an_older_installs_backup_beside_the_file_moves_out_of_gits_sight(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    original = write_json(path, REALISTIC)
    legacy = path.with_name(path.name + LEGACY_BACKUP_SUFFIX)
    legacy.write_bytes(original)
    write_json(path, merge_hooks(REALISTIC, fanout_hooks(python="/old/python", entry=ENTRY)))

    report = install(project=proj, python=python, entry=entry)
    assert legacy in report.removed and not legacy.exists()
    assert (backup_dir(path) / path.name).read_bytes() == original
    uninstall(project=proj)
    assert path.read_bytes() == original
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.local.json"]


def test_install_twice_changes_nothing_and_backs_up_once(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    original = write_json(path, REALISTIC)
    backup = backup_dir(path) / path.name

    first = install(project=proj, python=python, entry=entry)
    assert first.changed and first.backup == backup
    assert backup.read_bytes() == original
    after_first = path.read_bytes()
    assert json.loads(after_first) == installed(REALISTIC, python=python, entry=entry)
    backup_stat = backup.stat()
    settings_stat = path.stat()

    time.sleep(0.01)
    second = install(project=proj, python=python, entry=entry)
    assert not second.changed
    assert second.written == () and second.backup is None
    assert path.read_bytes() == after_first
    assert path.stat().st_ino == settings_stat.st_ino, "rewritten although unchanged"
    assert backup.read_bytes() == original
    assert backup.stat().st_mtime_ns == backup_stat.st_mtime_ns


def test_backups_live_in_a_private_folder_git_ignores(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    write_json(path, REALISTIC)
    report = install(project=proj, python=python, entry=entry)
    assert report.backup is not None and report.backup.parent == backup_dir(path)
    folder = backup_dir(path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not list(path.parent.glob(f"*{LEGACY_BACKUP_SUFFIX}"))


def test_uninstall_restores_the_original_bytes_and_leaves_nothing_behind(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    original = write_json(path, REALISTIC)  # four-space indented: not how fanout writes JSON
    install(project=proj, python=python, entry=entry)

    report = uninstall(project=proj)
    assert path.read_bytes() == original
    assert report.changed and report.written == (path,)
    assert report.removed == (proj / ".claude/commands/fanout.md",)
    assert report.backup is None
    # No backup, no empty commands/ folder: .claude/ holds what it held before.
    assert sorted(p.name for p in (proj / ".claude").iterdir()) == ["settings.local.json"]

    again = uninstall(project=proj)
    assert not again.changed and again.backup is None
    assert path.read_bytes() == original


def test_uninstall_removes_the_settings_file_install_created(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    for scope in (Scope.LOCAL, Scope.PROJECT):
        install(scope=scope, project=proj, python=python, entry=entry)
        report = uninstall(scope=scope, project=proj)
        assert settings_path(scope, project=proj) in report.removed
        assert not (proj / ".claude").exists(), f"{scope}: left {list(proj.rglob('*'))}"


def test_uninstall_keeps_what_was_added_to_a_file_install_created(
    proj: Path, runtime: tuple[str, str]
) -> None:
    """Claude Code writes permission answers to settings.local.json: they are the person's."""
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    install(project=proj, python=python, entry=entry)
    settings = json.loads(path.read_text())
    settings["permissions"] = {"allow": ["Bash(npm test)"]}
    write_json(path, settings)

    uninstall(project=proj)
    assert json.loads(path.read_text()) == {"permissions": {"allow": ["Bash(npm test)"]}}
    assert sorted(p.name for p in (proj / ".claude").iterdir()) == ["settings.local.json"]


def test_uninstall_keeps_changes_made_since_install(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    write_json(path, REALISTIC)
    install(project=proj, python=python, entry=entry)
    settings = json.loads(path.read_text())
    settings["model"] = "sonnet"
    write_json(path, settings)

    uninstall(project=proj)
    assert json.loads(path.read_text()) == {**REALISTIC, "model": "sonnet"}
    assert not backup_dir(path).exists()


def test_uninstall_takes_the_hooks_out_of_both_project_files(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    shared = proj / ".claude/settings.json"
    personal = proj / ".claude/settings.local.json"
    ours = fanout_hooks(python=python, entry=entry)
    write_json(shared, merge_hooks(REALISTIC, ours))
    write_json(personal, merge_hooks({"model": "haiku"}, ours))
    report = uninstall(project=proj)
    assert json.loads(shared.read_text()) == REALISTIC
    assert json.loads(personal.read_text()) == {"model": "haiku"}
    assert set(report.written) == {shared, personal}


def test_uninstall_without_anything_installed_touches_nothing(proj: Path) -> None:
    report = uninstall(project=proj)
    assert not report.changed
    assert not (proj / ".claude").exists()


def test_reinstall_from_another_environment_replaces_our_entries(
    proj: Path, tmp_path: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    original = write_json(path, REALISTIC)
    install(project=proj, python=python, entry=entry)
    other_entry = tmp_path / "uv" / "entry.py"
    other_entry.parent.mkdir()
    other_entry.write_text("")

    report = install(project=proj, python=python, entry=str(other_entry))
    assert report.changed
    settings = json.loads(path.read_text())
    assert settings == installed(REALISTIC, python=python, entry=str(other_entry))
    for event in OURS:
        for hook in ours_in(settings, event):
            assert str(other_entry) in hook["command"]
    # The backup is still the file before fanout: uninstall puts exactly that back.
    uninstall(project=proj)
    assert path.read_bytes() == original


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"hooks": {', "is not valid JSON (line 1, column 12"),
        (b"", "is not valid JSON"),
        (b"\xff\xfe{}", "is not UTF-8"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"hooks"', "must be a JSON object, not a string"),
        (b'{"hooks": [{"matcher": "*"}]}', '"hooks" must be an object, not an array'),
        (b'{"hooks": {"Stop": "say done"}}', '"hooks.Stop" must be a list, not a string'),
    ],
)
@pytest.mark.parametrize("name", ["settings.local.json", "settings.json"])
def test_a_file_fanout_cannot_merge_into_is_left_untouched(
    proj: Path, runtime: tuple[str, str], content: bytes, message: str, name: str
) -> None:
    python, entry = runtime
    path = proj / ".claude" / name
    path.parent.mkdir()
    path.write_bytes(content)
    for action in (
        lambda: install(project=proj, python=python, entry=entry),
        lambda: uninstall(project=proj),
    ):
        with pytest.raises(SettingsError) as caught:
            action()
        text = str(caught.value)
        assert str(path) in text and message in text and "\n" not in text
        assert "untouched" in text
        assert path.read_bytes() == content
        assert sorted(p.name for p in path.parent.iterdir()) == [name]


def test_utf8_bom_is_accepted(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"model": "opus"}).encode())
    install(project=proj, python=python, entry=entry)
    assert json.loads(path.read_text())["model"] == "opus"


def test_users_own_command_file_is_never_overwritten(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    mine = proj / ".claude/commands/fanout.md"
    mine.parent.mkdir(parents=True)
    mine.write_text("My own /fanout that deploys to production.\n")
    with pytest.raises(SettingsError, match="is not fanout's") as caught:
        install(project=proj, python=python, entry=entry)
    assert str(mine) in str(caught.value)
    assert mine.read_text() == "My own /fanout that deploys to production.\n"
    assert sorted(p.name for p in (proj / ".claude").iterdir()) == ["commands"], (
        "settings written before the refusal"
    )

    report = uninstall(project=proj)
    assert mine.exists()
    assert report.removed == () and any("not fanout's" in note for note in report.notes)


def test_an_outdated_command_file_of_ours_is_updated(proj: Path, runtime: tuple[str, str]) -> None:
    python, entry = runtime
    ours = proj / ".claude/commands/fanout.md"
    ours.parent.mkdir(parents=True)
    ours.write_text(f"{COMMAND_MARKER}\nold text\n")
    ours.chmod(0o600)
    install(project=proj, python=python, entry=entry)
    assert ours.read_text() == command_text()
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600


def test_modes_are_kept_and_the_backup_is_as_private_as_the_original(
    proj: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    path = proj / ".claude/settings.local.json"
    write_json(path, REALISTIC, mode=0o600)
    report = install(scope="local", project=proj, python=python, entry=entry)
    assert report.backup is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(report.backup.stat().st_mode) == 0o600
    uninstall(scope=Scope.LOCAL, project=proj)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symlinked_settings_file_keeps_its_link(
    proj: Path, home: Path, runtime: tuple[str, str]
) -> None:
    python, entry = runtime
    dotfiles = home / "dotfiles" / "claude-settings.json"
    write_json(dotfiles, {"model": "sonnet"})
    link = home / ".claude" / "settings.json"
    link.parent.mkdir()
    link.symlink_to(dotfiles)
    install(scope=Scope.USER, project=proj, home=home, python=python, entry=entry)
    assert link.is_symlink()
    assert json.loads(dotfiles.read_text())["hooks"] == fanout_hooks(python=python, entry=entry)


def test_a_hook_that_cannot_run_is_never_written(proj: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="entry script"):
        install(project=proj, python=sys.executable, entry=str(tmp_path / "gone.py"))
    with pytest.raises(SettingsError, match="interpreter"):
        install(project=proj, python="python3", entry=str(tmp_path))
    assert not (proj / ".claude").exists()


# --------------------------------------------------------------------------------------------
# The command, run by a real shell


@pytest.fixture
def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """An 'interpreter' (in a directory with a space) that records its argv and says so."""
    record = tmp_path / "argv.txt"
    exe = tmp_path / "fake env" / "python"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\necho started\n")
    exe.chmod(0o755)
    return exe, record


def run_hook(command: str, project: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CLAUDE_PROJECT_DIR": str(project)}
    return subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=10, check=False
    )


@pytest.mark.parametrize("event", ["PreToolUse", "PostToolUse", "Stop"])
def test_guarded_hook_starts_no_python_without_a_live_run(
    proj: Path, fake_python: tuple[Path, Path], event: str
) -> None:
    exe, record = fake_python
    command = hook_command(event, python=str(exe), entry="/x/entry.py")
    for setup in (lambda: None, lambda: (proj / ".claude/runs/.active").mkdir(parents=True)):
        setup()
        started = time.monotonic()
        result = run_hook(command, proj)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert time.monotonic() - started < 1
        assert not record.exists(), "python started with no live run"


@pytest.mark.parametrize("event", ["PreToolUse", "PostToolUse", "Stop"])
def test_guarded_hook_execs_python_when_a_run_is_live(
    proj: Path, fake_python: tuple[Path, Path], event: str
) -> None:
    exe, record = fake_python
    active = proj / ".claude/runs/.active"
    active.mkdir(parents=True)
    (active / "20260101-000000-000-abcd").write_text("")
    (active / "20260101-000001-000-beef").write_text("")
    entry_file = proj.parent / "site packages" / "entry.py"
    entry_file.parent.mkdir()
    entry_file.write_text("")
    entry = str(entry_file)
    result = run_hook(hook_command(event, python=str(exe), entry=entry), proj)
    assert (result.returncode, result.stdout, result.stderr) == (0, "started\n", "")
    assert record.read_text().splitlines() == ["-I", "-S", entry, event]


def test_unguarded_hook_always_runs_python(proj: Path, fake_python: tuple[Path, Path]) -> None:
    exe, record = fake_python
    entry = proj.parent / "e.py"
    entry.write_text("")
    result = run_hook(hook_command("UserPromptSubmit", python=str(exe), entry=str(entry)), proj)
    assert (result.returncode, result.stdout) == (0, "started\n")
    assert record.read_text().splitlines() == ["-I", "-S", str(entry), "UserPromptSubmit"]


def test_a_removed_package_never_blocks_the_session(proj: Path, fake_python) -> None:
    exe, record = fake_python
    active = proj / ".claude/runs/.active"
    active.mkdir(parents=True)
    (active / "20260101-000000-000-abcd").write_text("")
    for event in ("UserPromptSubmit", "PreToolUse", "Stop"):
        command = hook_command(event, python=str(exe), entry=str(proj / "gone" / "entry.py"))
        result = run_hook(command, proj)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert not record.exists()
