"""The CLI switch (FANOUT_CLAUDE_BIN, one lookup for everything), a CLI's version, and the pure
parts of scripts/compat (benchmarks/compat.py): its wheel cache, report parsing and tables."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import compat
from claude_fanout.claude import cli as claude_cli
from claude_fanout.claude.command import command
from claude_fanout.testing import fake_api
from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compat.py"


def fake_claude(path: Path, version: str = "2.1.200") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{version} (Claude Code)"\n')
    path.chmod(0o755)
    return path


# -- the one switch -----------------------------------------------------------------------------


def test_fanout_claude_bin_selects_the_cli_for_workers_planner_and_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = fake_claude(tmp_path / "bin" / "claude")
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(chosen))
    env = {"FANOUT_CLAUDE_BIN": str(chosen), "PATH": "/usr/bin:/bin"}
    assert claude_cli.find_cli(env) == str(chosen)
    assert claude_cli.cli_path(env) == str(chosen)
    assert claude_cli.require_cli(env) == str(chosen)
    assert fake_api.claude_cli() == chosen
    # The environment the tests give the CLI (and so its hooks and fanout's workers) keeps it.
    assert fake_api.cli_env("http://127.0.0.1:9", tmp_path)["FANOUT_CLAUDE_BIN"] == str(chosen)
    argv = command(cli=claude_cli.cli_path(env), tools=["Read"])
    assert argv[0] == str(chosen)


def test_without_the_switch_the_bundled_cli_then_path(tmp_path: Path) -> None:
    site = tmp_path / "site"
    bundled = fake_claude(site / "claude_agent_sdk" / "_bundled" / "claude")
    on_path = fake_claude(tmp_path / "path" / "claude")
    env = {"PATH": str(on_path.parent)}
    assert claude_cli.find_cli(env, site_dirs=[str(site)]) == str(bundled)
    assert claude_cli.find_cli(env, site_dirs=[str(tmp_path / "none")]) == str(on_path)
    assert claude_cli.find_cli(env, site_dirs=[], search_path=False) is None
    assert claude_cli.require_cli(env, site_dirs=[str(site)]) == str(bundled)


def test_a_switch_to_nothing_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-claude"
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(missing))
    with pytest.raises(FileNotFoundError, match="FANOUT_CLAUDE_BIN"):
        fake_api.claude_cli()
    with pytest.raises(claude_cli.CLINotFoundError, match="is not an executable file"):
        claude_cli.require_cli({"FANOUT_CLAUDE_BIN": str(missing)})


# -- a CLI's version ----------------------------------------------------------------------------


def test_cli_version_reads_what_the_cli_prints(tmp_path: Path) -> None:
    assert compat.cli_version(str(fake_claude(tmp_path / "claude", "2.1.142"))) == "2.1.142"
    assert compat.cli_version(str(tmp_path / "absent")) is None
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho oops; exit 1\n")
    broken.chmod(0o755)
    assert compat.cli_version(str(broken)) is None


def test_the_tested_range_is_ordered_and_inclusive() -> None:
    low, high = compat.parse_version(compat.TESTED_MIN), compat.parse_version(compat.TESTED_MAX)
    assert low is not None and high is not None and low <= high
    assert compat.in_tested_range(compat.TESTED_MIN)
    assert compat.in_tested_range(compat.TESTED_MAX)
    assert not compat.in_tested_range("2.0.1")
    assert not compat.in_tested_range("3.0.0")
    assert not compat.in_tested_range("garbage")


# -- scripts/compat -----------------------------------------------------------------------------

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.e2e.test_planner" name="test_ok" time="1.0"/>
<testcase classname="tests.e2e.test_planner" name="test_bad[x]" time="1.0">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.unit.test_plugin.TestGroup" name="test_in_class" time="0.1"/>
<testcase classname="tests.e2e.test_rewake" name="test_broken_fixture" time="0.1">
  <error message="fixture failed">trace</error></testcase>
<testcase classname="tests.e2e.test_rewake" name="test_no_tmux" time="0.0">
  <skipped message="no tmux">skip</skipped></testcase>
</testsuite></testsuites>"""


def test_a_junit_report_becomes_counts_and_named_failures() -> None:
    script = load_script(SCRIPT, "compat_matrix")
    outcome = script.junit_outcome(JUNIT, "0.2.120", "2.1.211")
    assert (outcome.passed, outcome.skipped) == (2, 1)
    assert outcome.failed == [
        "tests/e2e/test_planner.py::test_bad[x]",
        "tests/e2e/test_rewake.py::test_broken_fixture",
    ]
    assert not outcome.ok
    assert script._test_id("tests.unit.test_plugin.TestGroup", "test_y") == (
        "tests/unit/test_plugin.py::TestGroup::test_y"
    )


def test_the_tables_name_every_failure_oldest_cli_first() -> None:
    script = load_script(SCRIPT, "compat_matrix")
    new = script.Outcome("0.2.189", "2.1.332", passed=60)
    old = script.Outcome(
        "0.2.82", "2.1.142", passed=58, failed=["tests/a.py::t1", "tests/b.py::t2"]
    )
    broken = script.Outcome("/opt/claude", None, error="pytest wrote no report")
    ordered = script.by_claude_version([new, broken, old])
    assert ordered == [old, new, broken]
    assert new.ok and not old.ok and not broken.ok
    text = script.text_table(ordered).splitlines()
    assert text[0].split() == [
        "target",
        "Claude",
        "Code",
        "passed",
        "failed",
        "skipped",
        "failing",
        "tests",
    ]
    assert text[1].split() == [
        "0.2.82",
        "2.1.142",
        "58",
        "2",
        "0",
        "tests/a.py::t1,",
        "tests/b.py::t2",
    ]
    assert text[2].split() == ["0.2.189", "2.1.332", "60", "0", "0", "-"]
    assert text[3].split()[:2] == ["/opt/claude", "?"]
    markdown = script.markdown_table(ordered).splitlines()
    assert markdown[0] == "| target | Claude Code | passed | failed | skipped | failing tests |"
    assert markdown[2] == "| 0.2.82 | 2.1.142 | 58 | 2 | 0 | `tests/a.py::t1`<br>`tests/b.py::t2` |"
    assert markdown[3] == "| 0.2.189 | 2.1.332 | 60 | 0 | 0 | - |"
    assert markdown[4] == "| /opt/claude | ? | 0 | 0 | 0 | pytest wrote no report |"


def test_targets_pytest_args_and_what_names_an_sdk_release(tmp_path: Path) -> None:
    script = load_script(SCRIPT, "compat_matrix")
    assert script.split_args(["0.2.82", "--markdown", "t.md"]) == (
        ["0.2.82", "--markdown", "t.md"],
        ["-m", "e2e", "tests"],
    )
    assert script.split_args(["0.2.82", "--", "tests/e2e/test_planner.py", "-x"]) == (
        ["0.2.82"],
        ["tests/e2e/test_planner.py", "-x"],
    )
    assert script.is_sdk_version("0.2.180")
    assert not script.is_sdk_version(str(fake_claude(tmp_path / "2.1.0" / "claude")))


def test_an_sdk_release_s_cli_is_unpacked_from_its_cached_wheel(tmp_path: Path) -> None:
    script = load_script(SCRIPT, "compat_matrix")
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    wheel = wheels / "claude_agent_sdk-0.2.150-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("claude_agent_sdk/__init__.py", "")
        archive.writestr("claude_agent_sdk/_bundled/claude", '#!/bin/sh\necho "2.1.250"\n')
    cli = script.sdk_cli("0.2.150", tmp_path / "cache")
    assert cli == tmp_path / "cache" / "cli" / "0.2.150" / "claude"
    assert compat.cli_version(str(cli)) == "2.1.250"
    wheel.unlink()  # unpacked once: the wheel is not needed again
    assert script.sdk_cli("0.2.150", tmp_path / "cache") == cli
    empty = wheels / "claude_agent_sdk-0.2.151-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("claude_agent_sdk/__init__.py", "")
    with pytest.raises(RuntimeError, match="bundles no Claude Code CLI"):
        script.sdk_cli("0.2.151", tmp_path / "cache")


# -- saying so at run time ----------------------------------------------------------------------


def test_a_cli_older_than_the_tested_range_gets_one_line_naming_version_and_fix(
    tmp_path: Path,
) -> None:
    old = fake_claude(tmp_path / "old" / "claude", "1.0.100")
    warning = compat.cli_warning(str(old))
    assert warning is not None and "\n" not in warning
    assert warning.startswith(f"Claude Code 1.0.100 ({old}) is older than {compat.TESTED_MIN}")
    assert "FANOUT_CLAUDE_BIN" in warning
    assert "api_error_status (since 2.1.139)" in warning and "retrying" in warning
    assert (
        compat.cli_warning(str(fake_claude(tmp_path / "min" / "claude", compat.TESTED_MIN))) is None
    )
    assert compat.cli_warning(str(fake_claude(tmp_path / "new" / "claude", "9.0.0"))) is None
    # In the range, a planner that needs one more turn is no reason to warn.
    in_range = fake_claude(tmp_path / "2.1.142" / "claude", "2.1.142")
    assert compat.STRUCTURED_OUTPUT_ENDS in [m.name for m in compat.missing_mechanisms("2.1.142")]
    assert compat.cli_warning(str(in_range)) is None
    assert compat.cli_warning(str(tmp_path / "absent")) is None


def test_a_conductor_without_the_attended_marker_is_told_how_to_choose_delivery() -> None:
    old = compat.conductor_warning({"CLAUDE_CODE_ENTRYPOINT": "cli"})
    assert old is not None and "\n" not in old
    assert compat.ATTENDED_ENV in old and "2.1.275" in old
    assert '[delivery] mode = "rewake"' in old
    assert (
        compat.conductor_warning({"CLAUDE_CODE_ENTRYPOINT": "cli", compat.ATTENDED_ENV: "0"})
        is None
    )
    assert compat.conductor_warning({}) is None  # not run by Claude Code
    assert [m.name for m in compat.missing_mechanisms("2.1.257")] == [compat.ATTENDED_ENV]
    assert [m.name for m in compat.missing_mechanisms("2.1.81")] == [
        "api_error_status",
        "is_error when stopped at a limit",
        compat.STRUCTURED_OUTPUT_ENDS,
        compat.ATTENDED_ENV,
    ]
    assert compat.missing_mechanisms("2.1.275") == []


def test_fanout_run_warns_when_its_workers_cli_is_too_old(
    project: Path, tmp_path: Path, fanout: Any, write_plan: Any
) -> None:
    old = fake_claude(tmp_path / "old" / "claude", "1.0.100")
    plan = write_plan([{"id": "W1", "kind": "claude", "prompt": "Review NOTES.md"}])
    result = fanout("run", str(plan), env={"FANOUT_CLAUDE_BIN": str(old)})
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"fanout: warning: Claude Code 1.0.100 ({old}) is older than ")
    shell = write_plan([{"id": "S1", "kind": "shell", "argv": ["true"]}], name="shell.json")
    result = fanout("run", str(shell), env={"FANOUT_CLAUDE_BIN": str(old)})
    assert result.returncode == 0 and "warning" not in result.stderr
