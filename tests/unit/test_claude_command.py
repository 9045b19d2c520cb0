"""The command line of a headless session (a worker's, the planner's), its environment, the
CLI lookup, and what is read back from a worker's stream.

The streams in tests/fixtures/streams were recorded from the real CLI (tools/record_streams.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import pytest

from claude_fanout.claude.cli import CLAUDE_BIN_ENV, CLINotFoundError, require_cli, runnable_cli
from claude_fanout.claude.command import command
from claude_fanout.claude.env import SETTING_SOURCES_ENV as SOURCES
from claude_fanout.claude.env import (
    setting_sources,
    worker_env,
)
from claude_fanout.claude.stream import Outcome, collect, render_lines
from claude_fanout.config import Config
from claude_fanout.git.writers import with_setup
from claude_fanout.planner import PLANNER_TOOLS, plan_schema, planner_argv
from claude_fanout.runtime.scheduler import rate_limit_backoff_s

STREAMS = Path(__file__).parents[1] / "fixtures" / "streams"


def _flags(argv: list[str]) -> dict[str, str | None]:
    """``--name value`` / ``--name=value`` / bare ``--name`` pairs of a command line."""
    out: dict[str, str | None] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if "=" in arg:
            name, value = arg.split("=", 1)
            out[name] = value
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[arg] = argv[i + 1]
            i += 1
        else:
            out[arg] = None
        i += 1
    return out


def test_the_command_grants_exactly_the_task_tools_and_budgets() -> None:
    argv = command(
        cli="/x/claude",
        tools=["Read", "Bash(pytest *)", "Bash(git diff:*)"],
        max_turns=3,
        max_budget_usd=0.5,
        model="sonnet",
    )

    flags = _flags(argv)
    assert argv[0] == "/x/claude"
    assert flags["--tools"] == "Read,Bash"  # offered: bare names
    assert flags["--allowedTools"] == "Read,Bash(pytest *),Bash(git diff:*)"  # approved: specs
    assert flags["--permission-mode"] == "dontAsk"
    assert (flags["--max-turns"], flags["--max-budget-usd"]) == ("3", "0.5")
    assert flags["--setting-sources"] == "project,local"
    assert "--strict-mcp-config" in flags
    assert (flags["-p"], flags["--output-format"]) == (None, "stream-json")


def test_the_command_means_what_the_sdk_would_send_for_the_same_options(tmp_path: Path) -> None:
    """Guard against drift: the SDK, given the options fanout used to pass it, starts the CLI with
    the same flags (the SDK adds its stdin protocol, fanout passes the prompt). What the SDK sends
    is read from a fake CLI that records its argv, through the SDK's public ``query``."""
    sdk = pytest.importorskip("claude_agent_sdk")
    argv_log = tmp_path / "argv.jsonl"
    fake_cli = tmp_path / "claude"
    fake_cli.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(argv_log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\nsys.exit(3)\n"
    )
    fake_cli.chmod(0o755)
    options = sdk.ClaudeAgentOptions(
        tools=["Read", "Bash"],
        allowed_tools=["Read", "Bash(pytest *)"],
        permission_mode="dontAsk",
        max_turns=3,
        max_budget_usd=0.5,
        model="sonnet",
        setting_sources=["project", "local"],
        strict_mcp_config=True,
        include_partial_messages=True,
        system_prompt={"type": "preset", "preset": "claude_code"},
        cli_path=str(fake_cli),
    )

    async def start_session() -> None:
        with pytest.raises(sdk.ProcessError):  # the fake CLI exits 3 once it has written argv
            async for _message in sdk.query(prompt="x", options=options):
                pass

    asyncio.run(asyncio.wait_for(start_session(), timeout=30))
    started = [json.loads(line) for line in argv_log.read_text().splitlines()]
    sessions = [argv for argv in started if "--output-format" in argv]
    assert len(sessions) == 1, started
    theirs = _flags(["/x/claude", *sessions[0]])
    ours = _flags(
        command(
            cli="/x/claude",
            tools=["Read", "Bash(pytest *)"],
            max_turns=3,
            max_budget_usd=0.5,
            model="sonnet",
            partial_messages=True,
        )
    )

    assert theirs.pop("--input-format") == "stream-json"
    assert ours.pop("-p", "absent") is None
    assert ours == theirs


def test_no_tools_means_none_offered_and_nothing_approved() -> None:
    flags = _flags(command(cli="claude", tools=[]))
    assert flags["--tools"] == ""
    assert "--allowedTools" not in flags


def test_a_worker_does_not_inherit_the_parent_session_markers() -> None:
    env = worker_env(
        {"CLAUDECODE": "1", "CLAUDE_CODE_SESSION_ID": "s", "PATH": "/bin", "FANOUT_DEPTH": "1"}
    )
    assert env == {"PATH": "/bin", "FANOUT_DEPTH": "1"}


def _collect(tmp_path: Path, name: str, exit_code: int | None = 1, **kw: object) -> Outcome:
    return collect(
        stream_path=STREAMS / f"{name}.jsonl",
        out_dir=tmp_path / "out",
        argv=command(cli="claude", tools=["Read"], max_turns=2),
        cwd=tmp_path,
        exit_code=exit_code,
        signum=None,
        **kw,  # type: ignore[arg-type]
    )


def test_a_successful_stream_gives_the_result_and_its_usage(tmp_path: Path) -> None:
    outcome = _collect(tmp_path, "success", exit_code=0)

    assert (outcome.ok, outcome.over_budget, outcome.rate_limited) == (True, False, False)
    assert (tmp_path / "out/result.md").read_text().startswith("SUMMARY ")
    assert outcome.usage["turns"] == 2
    assert outcome.usage["input_tokens"] == 200
    assert outcome.usage["cost_usd"] > 0
    meta = json.loads((tmp_path / "out/meta.json").read_text())
    assert (meta["tools"], meta["allowed_tools"], meta["max_turns"]) == (["Read"], ["Read"], 2)
    assert meta["cli_version"] == "2.1.330"


@pytest.mark.parametrize(
    ("name", "subtype"), [("max_turns", "error_max_turns"), ("max_budget", "error_max_budget_usd")]
)
def test_a_stopped_session_is_over_budget(tmp_path: Path, name: str, subtype: str) -> None:
    outcome = _collect(tmp_path, name)

    assert (outcome.ok, outcome.over_budget) == (False, True)
    assert outcome.reason is not None and outcome.reason.startswith(subtype)
    assert outcome.usage["cost_usd"] > 0
    assert "# Worker failed" in (tmp_path / "out/result.md").read_text()


def test_a_rate_limited_session_says_so(tmp_path: Path) -> None:
    outcome = _collect(tmp_path, "rate_limited")

    assert (outcome.ok, outcome.rate_limited, outcome.over_budget) == (False, True, False)
    assert outcome.meta["api_error_status"] == 429


def test_no_stream_at_all_is_a_failure_that_says_how_claude_ended(tmp_path: Path) -> None:
    outcome = collect(
        stream_path=tmp_path / "missing.jsonl",
        out_dir=tmp_path / "out",
        argv=["claude"],
        cwd=tmp_path,
        exit_code=None,
        signum=9,
        stderr=["boom"],
    )

    assert not outcome.ok and outcome.usage == {}
    assert outcome.reason == "claude was killed by signal 9 before it reported a result | boom"


def test_a_damaged_stream_is_read_around(tmp_path: Path) -> None:
    good = (STREAMS / "success.jsonl").read_bytes().splitlines(keepends=True)
    damaged = tmp_path / "stream.jsonl"
    damaged.write_bytes(b"".join([b"{not json\n", good[0], b"\xff\xfe\n", *good[1:], b"[1]\n"]))
    outcome = collect(
        stream_path=damaged,
        out_dir=tmp_path / "out",
        argv=["c"],
        cwd=tmp_path,
        exit_code=0,
        signum=None,
    )
    assert outcome.ok
    lines = render_lines(damaged.read_bytes())
    assert lines[0].startswith("[init] session=")
    assert lines[-1].startswith("[result] success")


def test_rate_limit_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(7)
    for retry, base in ((1, 10.0), (2, 20.0), (3, 40.0)):
        delays = {rate_limit_backoff_s(retry, 10.0, rng=rng) for _ in range(50)}
        assert min(delays) >= base * 0.5 and max(delays) <= base * 1.5
        assert len(delays) > 40  # not all the same: workers do not come back together
    assert rate_limit_backoff_s(20, 10.0, rng=rng) <= 300 * 1.5  # capped


def test_the_setup_wrapper_runs_the_setup_then_becomes_the_worker(tmp_path: Path) -> None:
    import subprocess

    argv = with_setup("echo set-up-ran; touch made", ["sh", "-c", "cat; echo worker-ran"])
    proc = subprocess.run(
        argv, cwd=tmp_path, input="prompt-text", capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout == "prompt-text" + "worker-ran\n"  # the prompt reached the worker
    assert proc.stderr == "set-up-ran\n"  # set-up output is the log's, not the stream's
    assert (tmp_path / "made").exists()
    failed = subprocess.run(
        with_setup("exit 3", ["echo", "never"]), capture_output=True, text=True, check=False
    )
    assert (failed.returncode, failed.stdout) == (97, "")
    assert "the worktree setup command failed (exit 3)" in failed.stderr


def test_the_planner_uses_the_same_builder_with_structured_output() -> None:
    schema = plan_schema(5)
    argv = planner_argv(
        "/x/claude",
        schema=schema,
        system="You are the planner.",
        config=Config(planner_max_turns=7, planner_model="sonnet"),
        env={},
    )

    flags = _flags(argv)
    assert argv[0] == "/x/claude" and "-p" in flags
    assert flags["--output-format"] == "json" and "--verbose" not in flags
    assert json.loads(str(flags["--json-schema"])) == schema
    assert flags["--append-system-prompt"] == "You are the planner."
    # The workers' least privilege: offered, approved, refused, no MCP.
    assert flags["--tools"] == flags["--allowedTools"] == ",".join(PLANNER_TOOLS)
    assert flags["--permission-mode"] == "dontAsk" and "--strict-mcp-config" in flags
    assert (flags["--max-turns"], flags["--model"]) == ("7", "sonnet")
    assert "--no-session-persistence" in flags
    assert flags["--setting-sources"] == "project,local"
    every = planner_argv("c", schema=schema, system="s", config=Config(), env={SOURCES: "all"})
    assert not any(arg.startswith("--setting-sources") for arg in every)
    assert "--model" not in _flags(every)


def test_the_worker_setting_sources_follow_the_environment() -> None:
    assert setting_sources({}) == ["project", "local"]
    assert setting_sources({SOURCES: " user , project "}) == ["user", "project"]
    assert setting_sources({SOURCES: ""}) == []
    assert setting_sources({SOURCES: "all"}) is None
    argv = command(cli="c", tools=["Read"], sources=setting_sources({SOURCES: "all"}))
    assert not any(arg.startswith("--setting-sources") for arg in argv)


def test_the_workers_cli_resolves_to_an_executable_or_nothing(tmp_path: Path) -> None:
    on_path = tmp_path / "bin" / "claude"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    bare = {CLAUDE_BIN_ENV: "claude", "PATH": str(on_path.parent)}
    assert runnable_cli(bare) == str(on_path)
    assert runnable_cli({CLAUDE_BIN_ENV: str(on_path)}) == str(on_path)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    assert runnable_cli({CLAUDE_BIN_ENV: str(plain)}) is None
    assert runnable_cli({CLAUDE_BIN_ENV: "claude", "PATH": str(tmp_path / "none")}) is None
    with pytest.raises(CLINotFoundError, match=f"{CLAUDE_BIN_ENV}=.* is not an executable file"):
        require_cli({CLAUDE_BIN_ENV: str(plain)})
