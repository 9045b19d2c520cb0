"""The one command line of a headless Claude Code session (``claude -p``), for a worker and for
the planner; the prompt goes to its stdin (:func:`prompt_file`), never into the arguments (a
prompt that starts with ``-`` must not read as an option).

Least privilege, as verified against the real CLI (2.1.x) with a fake Messages API:

- ``--tools`` is the set of built-in tools *offered to the model*: the request bodies carry only
  those (no Agent, Skill, ToolSearch...). A tool spec may carry a permission pattern
  (``"Bash(pytest *)"``); its bare name (``Bash``) is what is offered.
- ``--allowedTools`` auto-approves: the task's specs, patterns included.
- ``--permission-mode dontAsk`` (the default) denies anything not pre-approved instead of
  prompting, so a call outside a pattern is refused at once and listed in the result's
  ``permission_denials``. A call to a tool that was not offered fails as ``No such tool
  available``.
- ``--strict-mcp-config`` with no servers: no MCP tools sneak in from ``.mcp.json`` or settings.
- ``--include-partial-messages`` (workers): the API's stream events in the transcript, the only
  place a running session's output tokens show (``claude.progress``).
- ``--max-turns`` and ``--max-budget-usd``: the CLI stops the session itself
  (``error_max_turns``, ``error_max_budget_usd``; the budget is checked after each model
  response, so the last response may overshoot it).

``tests/unit/test_claude_command.py`` checks these flags against the claude-agent-sdk's own
command builder for the same options. Stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from claude_fanout.claude.env import DEFAULT_SETTING_SOURCES

__all__ = ["DEFAULT_PERMISSION_MODE", "command", "prompt_file", "tool_base_names"]

DEFAULT_PERMISSION_MODE: Final = "dontAsk"


def tool_base_names(tools: Sequence[str]) -> list[str]:
    """Bare tool names of ``tools`` specs, in order, without duplicates.

    ``["Read", "Bash(git log:*)", "Bash(git diff:*)"]`` -> ``["Read", "Bash"]``.
    """
    names: list[str] = []
    for spec in tools:
        name = spec.split("(", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return names


def command(
    *,
    cli: str,
    tools: Sequence[str],
    permission_mode: str = DEFAULT_PERMISSION_MODE,
    max_turns: int | None = None,
    max_budget_usd: float | None = None,
    model: str | None = None,
    sources: Sequence[str] | None = DEFAULT_SETTING_SOURCES,
    output_format: str = "stream-json",
    json_schema: Mapping[str, Any] | None = None,
    append_system_prompt: str | None = None,
    persist_session: bool = True,
    partial_messages: bool = False,
) -> list[str]:
    """The command line of one headless session; the prompt goes to its stdin.

    ``tools`` are the specs the session may use (``"Bash(pytest *)"`` allowed): their bare names
    are offered, the specs themselves pre-approved, everything else refused. ``sources`` None
    leaves the CLI's default (every setting source). A worker streams its transcript
    (``stream-json``); the planner asks for one ``json`` result matching ``json_schema``, with
    its instructions appended to the system prompt and no session saved. ``partial_messages``:
    the stream also carries the API's own events, whose ``message_delta`` gives each call's
    output tokens while the session runs (what a worker's live cost is estimated from).
    """
    allowed = [t.strip() for t in tools if t.strip()]
    argv = [cli, "-p", "--output-format", output_format]
    if output_format == "stream-json":
        argv.append("--verbose")  # the CLI refuses stream-json in print mode without it
        if partial_messages:
            argv.append("--include-partial-messages")
    if json_schema is not None:
        argv += ["--json-schema", json.dumps(json_schema, separators=(",", ":"))]
    if append_system_prompt is not None:
        argv += ["--append-system-prompt", append_system_prompt]
    argv += [
        "--tools",
        ",".join(tool_base_names(allowed)),
        "--permission-mode",
        permission_mode,
        "--strict-mcp-config",
    ]
    if allowed:
        argv += ["--allowedTools", ",".join(allowed)]
    if max_turns is not None:
        argv += ["--max-turns", str(max_turns)]
    if max_budget_usd is not None:
        argv += ["--max-budget-usd", f"{max_budget_usd:.6f}".rstrip("0").rstrip(".")]
    if not persist_session:
        argv.append("--no-session-persistence")
    if model:
        argv += ["--model", model]
    if sources is not None:
        argv.append(f"--setting-sources={','.join(sources)}")
    return argv


def prompt_file(prompt: str) -> int:
    """An unlinked file holding ``prompt``, positioned at its start: a session's stdin."""
    import tempfile

    fd, path = tempfile.mkstemp(prefix="fanout-prompt-")
    try:
        os.unlink(path)
        os.write(fd, prompt.encode("utf-8"))
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
