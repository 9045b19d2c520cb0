"""What fanout leaves in the person's git repository: a real repository, the real CLI, a real run.

Nothing of the run store or of fanout's own bookkeeping may reach `git add .`; the hooks, which
name this machine's paths, go to the per-person settings file unless asked otherwise (and then
with a warning); uninstall leaves the repository as it found it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout import install
from tests.helpers import CLIResult, git

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """No global git configuration or ignore file of this machine, no user Claude settings:
    whether a file is ignored depends on the repository alone."""
    (tmp_path / "gitconfig").write_text("")
    return {
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-home"),
    }


@pytest.fixture
def repo(project: Path, isolated: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in isolated.items():
        monkeypatch.setenv(name, value)
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("print('hello')\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "the app")
    return project


def untracked(repo: Path) -> list[str]:
    """What `git add .` would add (the repository's files are committed, so: fanout's)."""
    return git(repo, "add", "--dry-run", ".").splitlines()


def status(repo: Path, *flags: str) -> list[str]:
    return git(repo, "status", "--porcelain", "--untracked-files=all", *flags).splitlines()


def exclude_file(repo: Path) -> Path:
    return repo / ".git" / "info" / "exclude"


def test_a_run_and_an_install_leave_nothing_for_git_add(
    repo: Path, tmp_path: Path, fanout: Callable[..., CLIResult]
) -> None:
    exclude_before = exclude_file(repo).read_bytes()
    installed = fanout("install")
    assert installed.returncode == 0, installed.stderr

    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "version": 1,
                "tasks": [
                    {
                        "id": "a",
                        "kind": "shell",
                        "argv": ["sh", "-c", "echo a > $FANOUT_OUT_DIR/a"],
                    },
                    {"id": "b", "kind": "shell", "argv": ["echo", "b"], "deps": ["a"]},
                ],
            }
        )
    )
    ran = fanout("run", str(plan))
    assert ran.returncode == 0, ran.stderr
    runs = repo / ".claude" / "runs"
    run_dir = next(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert (run_dir / "events.jsonl").stat().st_size > 0
    assert (run_dir / "workers" / "a" / "log").exists()
    assert any((runs / ".slots").iterdir()), "the run took no slot: the test proves nothing"

    # Only the /fanout command file, which names no path of this machine, is for the team.
    assert untracked(repo) == ["add '.claude/commands/fanout.md'"]
    assert status(repo) == ["?? .claude/commands/fanout.md"]
    ignored = [line for line in status(repo, "--ignored") if line.startswith("!! ")]
    assert "!! .claude/settings.local.json" in ignored
    assert f"!! .claude/runs/{run_dir.name}/events.jsonl" in ignored
    assert any(line.startswith("!! .claude/runs/.slots/") for line in ignored)

    removed = fanout("uninstall")
    assert removed.returncode == 0, removed.stderr
    assert untracked(repo) == []
    # The run store (ignored) is all that is left: runs are the person's until `fanout gc`.
    assert [line for line in status(repo, "--ignored") if ".claude/runs/" not in line] == []
    assert sorted(p.name for p in (repo / ".claude").iterdir()) == ["runs"]
    assert exclude_file(repo).read_bytes() == exclude_before


def test_install_says_which_file_it_wrote_and_whether_it_is_shared(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    personal = fanout("install")
    assert personal.returncode == 0, personal.stderr
    assert ".claude/settings.local.json" in personal.stdout and "personal" in personal.stdout
    assert personal.stderr == ""
    git(repo, "check-ignore", "-q", ".claude/settings.local.json")  # raises if not ignored
    assert not (repo / ".claude" / "settings.json").exists()

    shared = fanout("install", "--scope", "project")
    assert shared.returncode == 0, shared.stderr
    assert ".claude/settings.json" in shared.stdout
    assert "warning" in shared.stderr and "shared" in shared.stderr
    hooks = json.loads((repo / ".claude" / "settings.json").read_text())["hooks"]
    assert sys.executable in json.dumps(hooks)
    # Moved, not copied: one set of hooks, or every hook would run twice.
    assert not (repo / ".claude" / "settings.local.json").exists()

    back = fanout("install")
    assert back.returncode == 0, back.stderr
    assert "settings.json" in back.stdout and "commit" in back.stdout
    assert not (repo / ".claude" / "settings.json").exists()


def test_a_committed_local_settings_file_is_reported_shared(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    local = repo / ".claude" / "settings.local.json"
    local.write_text('{"model": "opus"}\n')
    git(repo, "add", "-f", str(local))
    git(repo, "commit", "-qm", "someone committed it")

    result = fanout("install")
    assert result.returncode == 0, result.stderr
    assert "tracked" in result.stdout
    assert "warning" in result.stderr and str(local) in result.stderr

    fanout("uninstall")
    assert local.read_text() == '{"model": "opus"}\n'
    assert status(repo) == []


def test_a_project_in_a_sub_directory_of_the_repository(
    repo: Path, isolated: dict[str, str]
) -> None:
    """The exclude entry is anchored at the project's own .claude/, not the repository's top."""
    sub = repo / "services" / "api"
    sub.mkdir(parents=True)
    report = install.install(project=sub)
    assert not report.shared
    git(repo, "check-ignore", "-q", "services/api/.claude/settings.local.json")
    assert "/services/api/.claude/settings.local.json" in exclude_file(repo).read_text()
    assert status(repo) == ["?? services/api/.claude/commands/fanout.md"]

    install.uninstall(project=sub)
    assert status(repo) == []
    assert "settings.local.json" not in exclude_file(repo).read_text()
    assert os.listdir(sub) == []
