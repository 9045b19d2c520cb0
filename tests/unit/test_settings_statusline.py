"""fanout's status line in the settings files: install keeps what the person sees (their own
status line runs inside fanout's), uninstall puts theirs back exactly, --no-statusline opts out,
and doctor says which status line Claude Code shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_fanout.doctor.findings import OK, WARN
from claude_fanout.doctor.install_checks import install_checks
from claude_fanout.install import default_entry, install, uninstall
from claude_fanout.settings_statusline import (
    is_ours,
    ours_wrapping,
    statusline_command,
    theirs_in,
    without_statusline,
    wrapped_command,
)
from tests.helpers import FakeRun

PYTHON = os.path.realpath(sys.executable)
THEIRS = {"padding": 2, "type": "command", "command": "read -r l; printf 'MINE %s' \"${#l}\""}
SESSION = "5e55-settings"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    (tmp_path / "project" / ".claude").mkdir(parents=True)
    return tmp_path / "project"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / ".claude").mkdir(parents=True)
    return tmp_path / "home"


def local(proj: Path) -> Path:
    return proj / ".claude" / "settings.local.json"


def shared(proj: Path) -> Path:
    return proj / ".claude" / "settings.json"


def user(home: Path) -> Path:
    return home / ".claude" / "settings.json"


def write(path: Path, content: dict[str, Any]) -> bytes:
    # Their own formatting (4 spaces, their key order): only a byte-for-byte restore keeps it.
    data = (json.dumps(content, indent=4) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def go(proj: Path, home: Path, **kwargs: Any) -> Any:
    return install(project=proj, home=home, python=PYTHON, entry=default_entry(), **kwargs)


def shown(proj: Path, settings: Path, *, live: bool = False) -> str:
    """What Claude Code would show: the statusLine command of ``settings`` run by the shell."""
    if live:
        run = FakeRun(proj, "20260101-000000-000-abcd", {"W1": {}}, SESSION)
        run.start("W1")
    done = subprocess.run(
        ["/bin/sh", "-c", read(settings)["statusLine"]["command"]],
        input=json.dumps({"session_id": SESSION, "cwd": str(proj)}).encode(),
        capture_output=True,
        cwd=proj,
        env={**os.environ, "CLAUDE_PROJECT_DIR": str(proj), "NO_COLOR": "1"},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == b""
    return done.stdout.decode()


def test_a_project_without_a_status_line_gets_fanouts_alone(proj: Path, home: Path) -> None:
    go(proj, home)
    line = read(local(proj))["statusLine"]
    assert is_ours(line) and wrapped_command(line) is None
    assert line["type"] == "command" and line["refreshInterval"] >= 1
    assert shown(proj, local(proj)) == ""  # no run: nothing, not even Python
    assert shown(proj, local(proj), live=True).startswith("fanout 1 running")
    uninstall(project=proj, home=home)
    assert not local(proj).exists()


def test_their_status_line_in_the_same_file_is_wrapped_then_restored_byte_for_byte(
    proj: Path, home: Path
) -> None:
    original = write(local(proj), {"model": "opus", "statusLine": THEIRS, "env": {"A": "1"}})
    report = go(proj, home)
    assert report.notes == ()
    settings = read(local(proj))
    assert list(settings) == ["model", "statusLine", "env", "hooks"]  # in its place
    line = settings["statusLine"]
    assert is_ours(line) and wrapped_command(line) == THEIRS["command"]
    assert line["padding"] == 2  # their keys stay: the line looks as theirs did
    assert theirs_in(settings) == THEIRS
    idle = shown(proj, local(proj))
    assert (
        idle
        == subprocess.run(
            ["/bin/sh", "-c", THEIRS["command"]],
            input=json.dumps({"session_id": SESSION, "cwd": str(proj)}).encode(),
            capture_output=True,
            check=True,
        ).stdout.decode()
    )
    assert idle.startswith("MINE ")
    assert shown(proj, local(proj), live=True).startswith(f"{idle} | fanout 1 running")
    uninstall(project=proj, home=home)
    assert local(proj).read_bytes() == original


def test_uninstall_restores_their_line_key_for_key_after_claude_code_changed_the_file(
    proj: Path, home: Path
) -> None:
    write(local(proj), {"statusLine": THEIRS, "model": "opus"})
    go(proj, home)
    # Claude Code writes permission answers into the same file meanwhile.
    changed = read(local(proj))
    changed["permissions"] = {"allow": ["Bash(ls)"]}
    write(local(proj), changed)
    uninstall(project=proj, home=home)
    after = read(local(proj))
    assert after == {"statusLine": THEIRS, "model": "opus", "permissions": {"allow": ["Bash(ls)"]}}
    assert list(after["statusLine"].items()) == list(THEIRS.items())
    assert list(after) == ["statusLine", "model", "permissions"]


def test_their_user_status_line_shows_with_fanouts_and_the_user_file_is_never_touched(
    proj: Path, home: Path
) -> None:
    original = write(user(home), {"statusLine": THEIRS})
    report = go(proj, home)
    assert any(str(user(home)) in note and "fanout install" in note for note in report.notes)
    line = read(local(proj))["statusLine"]
    assert wrapped_command(line) == THEIRS["command"] and line["padding"] == 2
    assert user(home).read_bytes() == original
    assert shown(proj, local(proj)).startswith("MINE ")
    assert " | fanout 1 running" in shown(proj, local(proj), live=True)
    uninstall(project=proj, home=home)
    assert not local(proj).exists() and user(home).read_bytes() == original


def test_a_status_line_above_the_target_file_is_not_hidden(proj: Path, home: Path) -> None:
    original = write(local(proj), {"statusLine": THEIRS})
    report = go(proj, home, scope="project")
    assert "statusLine" not in read(shared(proj))
    assert any(str(local(proj)) in note and "not installed" in note for note in report.notes)
    assert local(proj).read_bytes() == original


def test_no_statusline_leaves_theirs_alone_and_takes_fanouts_out(proj: Path, home: Path) -> None:
    original = write(local(proj), {"statusLine": THEIRS})
    go(proj, home, statusline=False)
    assert read(local(proj))["statusLine"] == THEIRS
    go(proj, home)
    assert is_ours(read(local(proj))["statusLine"])
    go(proj, home, statusline=False)  # opting out later puts theirs back
    assert read(local(proj))["statusLine"] == THEIRS
    uninstall(project=proj, home=home)
    assert local(proj).read_bytes() == original


def test_reinstall_updates_fanouts_command_and_still_restores_theirs(
    proj: Path, home: Path, tmp_path: Path
) -> None:
    original = write(local(proj), {"statusLine": THEIRS})
    go(proj, home)
    other = tmp_path / "other" / "entry.py"
    other.parent.mkdir()
    other.write_text("")
    install(project=proj, home=home, python=PYTHON, entry=str(other))
    line = read(local(proj))["statusLine"]
    assert str(other) in line["command"] and wrapped_command(line) == THEIRS["command"]
    assert theirs_in(read(local(proj))) == THEIRS
    uninstall(project=proj, home=home)
    assert local(proj).read_bytes() == original


def test_a_status_line_fanout_cannot_run_is_left_alone(proj: Path, home: Path) -> None:
    odd = {"type": "static", "text": "hello"}
    original = write(local(proj), {"statusLine": odd})
    report = go(proj, home)
    assert read(local(proj))["statusLine"] == odd
    assert any("not installed" in note for note in report.notes)
    uninstall(project=proj, home=home)
    assert local(proj).read_bytes() == original


def test_moving_from_the_shared_file_keeps_the_teams_line(proj: Path, home: Path) -> None:
    original = write(shared(proj), {"statusLine": THEIRS})
    go(proj, home, scope="project")
    assert is_ours(read(shared(proj))["statusLine"])
    go(proj, home)  # the default, local: takes fanout's out of the shared file
    assert shared(proj).read_bytes() == original
    assert wrapped_command(read(local(proj))["statusLine"]) == THEIRS["command"]


def test_the_cli_says_so_and_opts_out_with_no_statusline(proj: Path, home: Path) -> None:
    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "claude_fanout", "install", *args],
            cwd=proj,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude")},
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "status line:" in cli()
    assert is_ours(read(local(proj))["statusLine"])
    assert "status line:" not in cli("--no-statusline")
    assert "hooks" in read(local(proj)) and "statusLine" not in read(local(proj))


def test_a_command_with_quotes_and_newlines_survives_the_round_trip() -> None:
    tricky = {"type": "command", "command": "printf '%s\\n' \"it's\"; echo $HOME\n# a comment"}
    command = statusline_command(
        python="/p y/python", entry="/e'n/entry.py", theirs="x", kept=tricky
    )
    ours = {"type": "command", "command": command}
    assert without_statusline({"statusLine": ours}) == {"statusLine": tricky}
    assert wrapped_command(ours) == "x"


def test_doctor_says_which_status_line_shows(proj: Path, home: Path) -> None:
    def check() -> Any:
        (found,) = [c for c in install_checks(proj, os.environ, home) if c.name == "status line"]
        return found

    assert check().status is OK and "none" in check().detail
    write(user(home), {"statusLine": THEIRS})
    assert check().status is OK and "yours" in check().detail
    go(proj, home)
    assert check().status is OK and "fanout's" in check().detail and "MINE" in check().detail
    # They change their own line (Claude Code's /statusline does): fanout's runs the old one.
    write(user(home), {"statusLine": {**THEIRS, "command": "echo NEW"}})
    assert check().status is WARN and "as it was when installed" in check().detail
    go(proj, home)
    assert check().status is OK and "NEW" in check().detail
    # fanout's in the shared file, but the person's own in the local one hides it.
    uninstall(project=proj, home=home)
    go(proj, home, scope="project")
    write(local(proj), {"statusLine": THEIRS})
    assert check().status is WARN and "does not show" in check().detail


@settings(max_examples=200, deadline=None)
@given(
    command=st.text(min_size=1),
    extra=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k not in ("type", "command")),
        st.none() | st.booleans() | st.integers() | st.text(),
        max_size=3,
    ),
)
def test_property_any_line_of_theirs_comes_back_key_for_key(
    command: str, extra: dict[str, Any]
) -> None:
    theirs = {"type": "command", "command": command, **extra}
    ours = ours_wrapping(theirs, python=PYTHON, entry="/x/entry.py", here=True)
    assert is_ours(ours) and wrapped_command(ours) == command
    back = without_statusline({"a": 1, "statusLine": ours, "b": 2})
    assert back == {"a": 1, "statusLine": theirs, "b": 2}
    assert list(back["statusLine"].items()) == list(theirs.items())


def test_the_shell_sees_their_command_exactly() -> None:
    command = 'printf \'%s\' "a\'b"; echo "$HOME" `x` \\\\ ; # tail'
    ours = statusline_command(python=PYTHON, entry="/nonexistent/entry.py", theirs=command)
    prefix = ours.split("[ -f", 1)[0]
    done = subprocess.run(
        ["/bin/sh", "-c", prefix + 'printf %s "$theirs"'], capture_output=True, check=True
    )
    assert done.stdout.decode() == command
