"""`fanout doctor` without --probe: what it finds in real projects, settings files and processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout import compat, doctor, install, settings_hooks
from claude_fanout.doctor import FAIL, OK, WARN, Check
from tests.helpers import CLIResult, FakeRun, git

RUN_ID = "20261130-070000-000-abcd"
OTHER_RUN = "20261130-070100-000-beef"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def run_doctor(project: Path, home: Path, **env: str) -> list[Check]:
    return doctor.diagnose(project, env={"PATH": os.environ.get("PATH", ""), **env}, home=home)


def find(checks: list[Check], name: str) -> list[Check]:
    return [check for check in checks if check.name == name]


def only(checks: list[Check], name: str) -> Check:
    (check,) = find(checks, name)
    return check


def test_a_healthy_install_has_nothing_to_fail(project: Path, home: Path) -> None:
    install.install(scope="local", project=project, home=home)

    checks = run_doctor(project, home)

    assert not doctor.failed(checks), [c for c in checks if c.status == FAIL]
    hooks = only(checks, "local hooks")
    assert hooks.status == OK
    assert (
        "settings.local.json" in hooks.detail
        and f"{len(settings_hooks.FANOUT_HOOKS)} hooks" in (hooks.detail)
    )
    assert only(checks, "/fanout").status == OK
    assert only(checks, "config").status == OK
    assert only(checks, "workers' CLI").status in (OK, WARN)
    assert only(checks, "run store").status == OK


def test_no_hooks_anywhere_fails_and_says_to_install(project: Path, home: Path) -> None:
    checks = run_doctor(project, home)

    check = only(checks, "hooks")
    assert check.status == FAIL and "fanout install" in check.detail


@pytest.mark.parametrize("missing", ["interpreter", "entry"])
def test_a_hook_command_that_points_nowhere_fails(
    project: Path, home: Path, tmp_path: Path, missing: str
) -> None:
    python = tmp_path / "python3"
    python.symlink_to(sys.executable)
    entry = tmp_path / "entry.py"
    entry.write_text(Path(install.default_entry()).read_text())
    install.install(scope="project", project=project, python=str(python), entry=str(entry))
    gone = python if missing == "interpreter" else entry
    gone.unlink()

    checks = run_doctor(project, home)

    check = only(checks, "project hooks")
    assert check.status == FAIL
    assert f"{missing} {gone} is missing" in check.detail
    assert "fanout install --scope project" in check.detail


def test_hooks_of_another_installation_are_flagged(
    project: Path, home: Path, tmp_path: Path
) -> None:
    entry = tmp_path / "elsewhere" / "entry.py"
    entry.parent.mkdir()
    entry.write_text("")
    install.install(scope="user", project=project, home=home, entry=str(entry))

    check = only(run_doctor(project, home), "user hooks")

    assert check.status == WARN and str(entry) in check.detail


def test_hooks_that_run_fanout_hook_need_it_on_path(
    project: Path, home: Path, tmp_path: Path
) -> None:
    import json

    path = project / ".claude" / "settings.json"
    path.write_text(json.dumps(settings_hooks.merge_hooks({}, settings_hooks.plugin_hooks())))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    missing = only(run_doctor(project, home, PATH=str(bin_dir)), "project hooks")
    (bin_dir / "fanout-hook").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "fanout-hook").chmod(0o755)
    found = only(run_doctor(project, home, PATH=str(bin_dir)), "project hooks")

    assert missing.status == FAIL and "`fanout-hook` is not on PATH" in missing.detail
    assert found.status == OK


def test_an_incomplete_install_names_the_missing_events(project: Path, home: Path) -> None:
    import json

    install.install(scope="project", project=project)
    path = project / ".claude" / "settings.json"
    data = json.loads(path.read_text())
    del data["hooks"]["Stop"]
    path.write_text(json.dumps(data))

    check = only(run_doctor(project, home), "project hooks")

    assert check.status == WARN and "Stop" in check.detail


def test_unreadable_settings_and_config_fail(project: Path, home: Path) -> None:
    (project / ".claude" / "settings.local.json").write_text("{not json")
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 'soon'\n")

    checks = run_doctor(project, home)

    assert only(checks, "local settings").status == FAIL
    assert "not valid JSON" in only(checks, "local settings").detail
    config = only(checks, "config")
    assert config.status == FAIL and "wait_s" in config.detail


def test_a_plugin_without_its_hook_command_on_path_fails(
    project: Path, home: Path, tmp_path: Path
) -> None:
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(
        '{"enabledPlugins": {"fanout@claude-fanout": true}}'
    )
    empty = tmp_path / "bin"
    empty.mkdir()

    checks = run_doctor(project, home, PATH=str(empty))

    assert only(checks, "plugin").status == FAIL
    assert not find(checks, "hooks")  # the plugin is how fanout is installed here


def fake_cli(directory: Path, version_line: str, *, code: int = 0) -> Path:
    directory.mkdir(exist_ok=True)
    cli = directory / "claude"
    cli.write_text(f"#!/bin/sh\necho '{version_line}'\nexit {code}\n")
    cli.chmod(0o755)
    return cli


def test_claude_versions_outside_the_measured_range_are_flagged(
    project: Path, home: Path, tmp_path: Path
) -> None:
    old = fake_cli(tmp_path / "path", "2.0.1 (Claude Code)")
    ok = fake_cli(tmp_path / "workers", f"{compat.TESTED_MAX} (Claude Code)")

    checks = run_doctor(project, home, PATH=str(old.parent), FANOUT_CLAUDE_BIN=str(ok))

    conductor, workers = only(checks, "Conductor CLI"), only(checks, "workers' CLI")
    assert conductor.status == WARN
    assert f"2.0.1 at {old}" in conductor.detail and "--probe" in conductor.detail
    assert workers.status == OK and f"{compat.TESTED_MAX} at {ok}" in workers.detail


def test_a_workers_cli_that_cannot_run_fails(project: Path, home: Path, tmp_path: Path) -> None:
    broken = fake_cli(tmp_path / "bin", "segfault", code=139)

    checks = run_doctor(project, home, FANOUT_CLAUDE_BIN=str(broken))
    missing = run_doctor(project, home, FANOUT_CLAUDE_BIN=str(tmp_path / "nowhere"))

    assert only(checks, "workers' CLI").status == FAIL
    assert "does not run or print its version" in only(checks, "workers' CLI").detail
    assert only(missing, "workers' CLI").status == FAIL
    assert "FANOUT_CLAUDE_BIN" in only(missing, "workers' CLI").detail


def test_a_symlinked_run_store_fails(project: Path, home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (project / ".claude" / "runs").symlink_to(elsewhere)

    check = only(run_doctor(project, home), "run store")

    assert check.status == FAIL and "symlink" in check.detail


def test_a_symlinked_run_inside_the_store_fails(project: Path, home: Path, tmp_path: Path) -> None:
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    (tmp_path / "other").mkdir()
    (project / ".claude" / "runs" / OTHER_RUN).symlink_to(tmp_path / "other")

    check = only(run_doctor(project, home), "run store")

    assert check.status == FAIL and f"{OTHER_RUN} is a symlink" in check.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory away")
def test_a_run_directory_someone_else_owns_fails(project: Path, home: Path) -> None:
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    os.chown(project / ".claude" / "runs" / RUN_ID, 4242, -1)

    check = only(run_doctor(project, home), "run store")

    assert check.status == FAIL and f"{RUN_ID} belongs to uid 4242" in check.detail


def test_a_link_inside_a_run_fails_without_stopping_the_other_checks(
    project: Path, home: Path
) -> None:
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    events = project / ".claude" / "runs" / RUN_ID / "events.jsonl"
    (events.parent / "state.json").unlink(missing_ok=True)
    events.unlink()
    events.symlink_to("/etc/hostname")

    checks = run_doctor(project, home)

    check = only(checks, "unreadable runs")
    assert check.status == FAIL and f"{RUN_ID}: {events} is a symlink" in check.detail
    assert only(checks, "orphans").status == OK


def test_a_run_store_others_can_read_is_a_warning(project: Path, home: Path) -> None:
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    os.chmod(project / ".claude" / "runs" / RUN_ID, 0o755)

    check = only(run_doctor(project, home), "run store")

    assert check.status == WARN and f"{RUN_ID} (755)" in check.detail


def test_a_live_run_is_listed(project: Path, home: Path) -> None:
    run = FakeRun(project, RUN_ID, {"W1": {}, "W2": {}}, session=None)
    run.start("W1")

    check = only(run_doctor(project, home), "live runs")

    assert check.status == OK
    assert f"1 live: {RUN_ID} (running, 1 running)" in check.detail
    run.end()
    assert only(run_doctor(project, home), "live runs").detail == "none"


def test_leftover_worktrees_and_branches_are_reported(project: Path, home: Path) -> None:
    git(project, "init", "-q", "-b", "main")
    (project / "a.txt").write_text("a\n")
    git(project, "add", "a.txt")
    git(project, "commit", "-qm", "base")
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    for run_id in (RUN_ID, OTHER_RUN):  # OTHER_RUN: its run directory is gone
        path = project / ".fanout" / "worktrees" / run_id / "W1"
        git(project, "worktree", "add", "-q", "-b", f"fanout/{run_id}/W1", str(path))

    leftovers = find(run_doctor(project, home), "leftovers")

    assert {c.status for c in leftovers} == {WARN}
    finished, gone = leftovers
    assert "2 worktree(s)/branch(es)" in finished.detail and RUN_ID in finished.detail
    assert "fanout gc" in finished.detail
    assert f"fanout/{OTHER_RUN}/W1" in gone.detail and "git worktree remove" in gone.detail


def test_a_process_that_outlived_its_run_fails(project: Path, home: Path) -> None:
    FakeRun(project, RUN_ID, {"W1": {}}, session=None).end()
    run_dir = str(project / ".claude" / "runs" / RUN_ID)
    orphan = subprocess.Popen(["sleep", "30"], env={**os.environ, "FANOUT_RUN_DIR": run_dir})
    try:
        check = only(run_doctor(project, home), "orphans")
    finally:
        orphan.kill()
        orphan.wait()

    assert check.status == FAIL and f"pid {orphan.pid}" in check.detail
    assert only(run_doctor(project, home), "orphans").status == OK


def test_the_cli_exits_1_on_a_failure_and_its_json_parses(
    project: Path, home: Path, tmp_path: Path, fanout: Callable[..., CLIResult]
) -> None:
    python = tmp_path / "python3"
    python.symlink_to(sys.executable)
    install.install(scope="project", project=project, python=str(python))
    python.unlink()

    result = fanout("doctor", "--json", env={"HOME": str(home)})

    assert result.returncode == 1, result.stderr
    data = result.json()
    assert data["ok"] is False and data["probe"] is None
    assert data["project"] == str(project.resolve())
    failing = [c for c in data["checks"] if c["status"] == "fail"]
    assert [c["name"] for c in failing] == ["project hooks"]
    assert set(failing[0]) == {"section", "name", "status", "detail"}
    text = fanout("doctor", env={"HOME": str(home)})
    assert text.returncode == 1 and f"interpreter {python} is missing" in text.stdout


def test_hook_targets_reads_back_what_install_writes() -> None:
    for event in settings_hooks.FANOUT_HOOKS:
        command = settings_hooks.hook_command(
            event, python="/opt/py 3/bin/python", entry="/x/entry.py"
        )
        assert doctor.hook_targets(command) == ("/opt/py 3/bin/python", "/x/entry.py")
    assert doctor.hook_targets(settings_hooks.plugin_hook_command("Stop")) is None
    assert doctor.hook_targets("echo hi") is None
