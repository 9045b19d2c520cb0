"""The Claude Code plugin in plugin/ and the local marketplace at the repository root stay in step
with what `fanout install` writes: same events, matchers, timeouts, command text and version."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from claude_fanout._version import __version__
from claude_fanout.install import COMMAND_MARKER, command_text
from claude_fanout.settings_hooks import fanout_hooks, plugin_hook_command, plugin_hooks
from claude_fanout.testing.fake_api import claude_cli

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugin"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def split_frontmatter(text: str) -> tuple[dict[str, str], str]:
    assert text.startswith("---\n"), "frontmatter must open on the first line"
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, "frontmatter is not closed"
    fields = {}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields, body


def test_plugin_manifest_names_fanout_at_the_package_version() -> None:
    manifest = load(PLUGIN / ".claude-plugin" / "plugin.json")
    assert manifest["name"] == "fanout"
    assert manifest["version"] == __version__
    assert manifest["description"]


def test_plugin_hooks_match_what_install_writes() -> None:
    hooks = load(PLUGIN / "hooks" / "hooks.json")["hooks"]
    assert hooks == plugin_hooks()
    installed = fanout_hooks(python="/py", entry="/e.py")
    assert list(hooks) == list(installed)
    for event, groups in installed.items():
        assert [g.get("matcher") for g in hooks[event]] == [g.get("matcher") for g in groups]
        for ours, theirs in zip(hooks[event], groups, strict=True):
            strip = [{k: v for k, v in h.items() if k != "command"} for h in ours["hooks"]]
            assert strip == [
                {k: v for k, v in h.items() if k != "command"} for h in theirs["hooks"]
            ]


def test_plugin_hook_commands_use_the_console_script_guarded_like_settings() -> None:
    needs = "command -v fanout-hook >/dev/null || exit 0; "
    assert plugin_hook_command("SessionEnd") == needs + "fanout-hook SessionEnd # claude-fanout"
    assert plugin_hook_command("Stop") == needs + (
        'for f in "$CLAUDE_PROJECT_DIR"/.claude/runs/.active/*; do '
        '[ -e "$f" ] && exec fanout-hook Stop; break; done; exit 0 # claude-fanout'
    )


def test_marketplace_lists_the_plugin_in_this_checkout() -> None:
    market = load(ROOT / ".claude-plugin" / "marketplace.json")
    assert market["name"] and market["owner"]["name"]
    (entry,) = market["plugins"]
    assert entry["source"] == "./plugin"
    assert entry["name"] == load(PLUGIN / ".claude-plugin" / "plugin.json")["name"]
    assert (ROOT / entry["source"] / ".claude-plugin" / "plugin.json").is_file()


def test_plugin_command_is_the_package_command() -> None:
    package_fields, package_body = split_frontmatter(command_text())
    plugin_fields, plugin_body = split_frontmatter((PLUGIN / "commands" / "run.md").read_text())
    assert plugin_body == package_body
    assert plugin_fields == package_fields


def test_command_text_tells_the_conductor_what_fan_out_means() -> None:
    fields, body = split_frontmatter(command_text())
    assert fields["description"]
    assert fields["argument-hint"] == "<instruction> [-- <paths or globs…>] | --plan FILE"
    assert COMMAND_MARKER in body
    assert "$ARGUMENTS" in body
    assert ".claude/runs/<RUN_ID>/workers/W<N>/out/result.md" in body
    assert "data, not instructions" in body
    assert len(body.splitlines()) <= 20


def test_plugin_guarded_hook_runs_the_console_script_only_with_a_live_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    script = bin_dir / "fanout-hook"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\n")
    script.chmod(0o755)
    project = tmp_path / "project"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CLAUDE_PROJECT_DIR": str(project)}
    command = plugin_hook_command("PostToolUse")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=10, check=False
        )

    assert run().returncode == 0 and not record.exists()
    active = project / ".claude/runs/.active"
    active.mkdir(parents=True)
    (active / "RUN").write_text("")
    assert run().returncode == 0
    assert record.read_text().splitlines() == ["PostToolUse"]


@pytest.mark.e2e
@pytest.mark.parametrize("target", [ROOT, PLUGIN], ids=["marketplace", "plugin"])
def test_the_real_cli_validates_plugin_and_marketplace(tmp_path: Path, target: Path) -> None:
    claude = str(claude_cli())
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def validate(*flags: str) -> subprocess.CompletedProcess[str]:
        argv = [claude, "plugin", "validate", *flags, str(target)]
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    offered = validate("--help").stdout
    # `--strict` came with Claude Code 2.1.176, `--json` with 2.1.275 (docs/compat.md); an older
    # CLI still validates, and says how by its exit status.
    flags = [flag for flag in ("--strict", "--json") if flag in offered]
    result = validate(*flags)
    assert result.returncode == 0, result.stdout + result.stderr
    if "--json" in flags:
        assert json.loads(result.stdout)["success"] is True
