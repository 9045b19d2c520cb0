"""A headless Conductor for end-to-end tests: the real CLI as ``claude -p PROMPT`` in the project,
against the fake Messages API, offline (``cli_env``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env


def start_conductor(
    project: Path,
    api: FakeMessagesAPI,
    home: Path,
    prompt: str,
    *,
    tools: str | None = "Bash,Read",
    stream: bool = False,
    **popen: Any,
) -> subprocess.Popen[str]:
    """``claude -p prompt`` in ``project`` with ``--allowedTools tools`` (None: the CLI's own
    choice) and JSON output (``stream``: stream-json, one record a line, with ``--verbose``);
    stdout and stderr are text pipes."""
    argv = [str(claude_cli()), "-p", prompt]
    if tools is not None:
        argv += ["--allowedTools", tools]
    argv += (
        ["--output-format", "stream-json", "--verbose"] if stream else ["--output-format", "json"]
    )
    return subprocess.Popen(
        argv,
        cwd=project,
        env=cli_env(api.base_url, home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run_conductor(
    project: Path,
    api: FakeMessagesAPI,
    home: Path,
    prompt: str,
    *,
    timeout: float,
    tools: str | None = "Bash,Read",
    stream: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``start_conductor`` to its end (killed after ``timeout`` seconds, raising
    ``subprocess.TimeoutExpired``); always reaped."""
    proc = start_conductor(project, api, home, prompt, tools=tools, stream=stream)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
