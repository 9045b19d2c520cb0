"""The Claude planner: a `/fanout <instruction>` that names no paths and matches no trigger is
split into a plan by Claude, asked headless (``planning.py`` decides when).

The planner is one ``claude -p`` session with structured output (``--output-format json
--json-schema SCHEMA``). What Claude Code 2.1.330 does with that, recorded against the fake
Messages API (``tests/e2e/test_planner.py``):

- it offers the model one more tool, ``StructuredOutput``, whose ``input_schema`` is the schema
  as given ("You MUST call this tool exactly once at the end of your response"); ``--tools``
  does not remove it and ``dontAsk`` does not refuse it;
- it validates the tool's input against the schema itself (types, ``pattern``, ``maxItems``,
  ``additionalProperties`` ...). A mismatch goes back to the model as an ``is_error``
  tool_result ("Output does not match required schema: /tasks: must be array"); after 5 bad
  attempts the CLI exits 1 with subtype ``error_max_structured_output_retries``;
- a valid call ends the session at once (no further model call): the result JSON on stdout
  carries the object as ``structured_output`` (and as JSON text in ``result``);
- a model that answers in text only is told once "[structured-output-enforce] You MUST call the
  StructuredOutput tool"; if it still does not, the CLI exits 0 with ``subtype: success`` and
  *no* ``structured_output``, so success alone proves nothing;
- ``--max-turns`` counts the model calls: running out is exit 1, ``error_max_turns``.

The session may look at the project (Read, Grep, Glob; nothing else is offered), with
``--permission-mode dontAsk``, ``--strict-mcp-config``, the project's setting sources only and
no session saved. Its environment is the hook's without the parent session's markers, and with
``FANOUT_DEPTH`` at the hooks' depth limit (``depth.py``), so fanout's own hooks stay quiet
inside it. It runs in a session of its own, stopped with its whole process group at
``planner.timeout_s``.

Everything here is standard library, and the hook imports this module only for a `/fanout`
request that needs the planner.
"""

from __future__ import annotations

import os
import time

from claude_fanout import defaults
from claude_fanout.errors import FanoutError
from claude_fanout.text import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from claude_fanout.config import Config
    from claude_fanout.plan import Plan

PLANNER_TOOLS = ("Read", "Grep", "Glob")
STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
# The first words of the planner's system prompt addition: how a scripted model tells a
# planner session from the Conductor and the workers.
PLANNER_MARK = "You are fanout's planner."
# Written into a planned run's directory: what the planner was asked, answered and cost.
PLANNER_RECORD = "planner.json"
NEXT_STEP = (
    "To go on without the planner: /fanout <instruction> -- <paths or globs>, "
    "or write a plan and use /fanout --plan FILE."
)
_ID_PATTERN = "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_TASK_KEYS = frozenset({"id", "prompt", "claims", "deps", "write", "tools"})
_LINE_MAX = 300


class PlannerError(FanoutError):
    """The planner gave no usable plan; the message says what failed (one line)."""


class Planned:
    """A plan the planner made, and what making it cost."""

    __slots__ = ("cost_usd", "output", "plan", "session_id", "turns", "wall_s")

    def __init__(
        self,
        plan: Plan,
        *,
        output: dict[str, Any],
        session_id: str | None,
        turns: int | None,
        cost_usd: float | None,
        wall_s: float,
    ) -> None:
        self.plan = plan
        self.output = output
        self.session_id = session_id
        self.turns = turns
        self.cost_usd = cost_usd
        self.wall_s = wall_s

    def record(self, instruction: str) -> dict[str, Any]:
        return {
            "instruction": instruction,
            "session_id": self.session_id,
            "turns": self.turns,
            "cost_usd": self.cost_usd,
            "wall_s": round(self.wall_s, 3),
            "structured_output": self.output,
        }


# -- the schema and the prompt -----------------------------------------------------------------


def plan_schema(max_tasks: int) -> dict[str, Any]:
    """The JSON schema the planner's answer must match (the CLI enforces it)."""
    strings = {"type": "array", "items": {"type": "string", "minLength": 1}}
    task = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": _ID_PATTERN, "description": "W1, W2, ..."},
            "prompt": {
                "type": "string",
                "minLength": 1,
                "description": "Self-contained instructions: the worker sees only this and the "
                "repository.",
            },
            "claims": {
                **strings,
                "description": "Project-relative paths or globs this task alone works on.",
            },
            "deps": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of tasks whose results this task needs first.",
            },
            "write": {
                "type": "boolean",
                "description": "True only when the task must edit files.",
            },
            "tools": {
                **strings,
                "description": "Extra tool permissions beyond Read, Grep, Glob, "
                'e.g. "Bash(pytest *)".',
            },
        },
        "required": ["id", "prompt", "claims", "deps", "write"],
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "maxLength": 120, "description": "A short title."},
            "tasks": {"type": "array", "maxItems": max_tasks, "items": task},
            "reason": {
                "type": "string",
                "description": "With no tasks: why the request cannot be fanned out.",
            },
        },
        "required": ["tasks"],
    }


def system_prompt(*, project: str, cwd: str, max_tasks: int) -> str:
    where = f"The project root is {project}; claims are paths relative to it."
    if os.path.realpath(cwd) != os.path.realpath(project):
        where += f" The user is working in {cwd}."
    return (
        f"{PLANNER_MARK} The user of a Claude Code session asked for the request below to be "
        "fanned out to parallel Claude workers. Split it into a plan, and answer only by calling "
        f"the {STRUCTURED_OUTPUT_TOOL} tool once.\n"
        "- Look at the repository only as much as the split needs (Read, Grep, Glob). You "
        "cannot change anything; the workers do the work.\n"
        f"- At most {max_tasks} tasks; fewer when the work is small. If the request cannot be "
        "split, or needs no workers, give no tasks and say why in reason.\n"
        "- Each task: id (W1, W2, ...); prompt, self-contained (the worker sees nothing but "
        "its prompt and the repository); claims, the files or globs it alone works on (tasks "
        "that may run at the same time never claim the same file); deps, the ids of tasks "
        "whose results it needs first (only then); write, true only when it must edit files "
        "(it then works in its own git worktree and its changes are merged back), false to "
        "read, review or answer; tools, only when it needs more than Read, Grep and Glob "
        '(e.g. "Bash(pytest *)").\n'
        f"- name: a short title for the run. {where}"
    )


def worker_prompt(prompt: str, *, task: str, count: int, instruction: str, write: bool) -> str:
    """A planned task's prompt with what every worker needs to know added at the end."""
    request = " ".join(instruction.split())
    if len(request) > 200:
        request = request[:199] + "\u2026"
    role = (
        "Change only the files you claim; your changes are committed on your own branch."
        if write
        else "You only read: do not try to change files."
    )
    return (
        f"{prompt.rstrip()}\n\n(You are worker {task} of {count} fanned out for: {request}. "
        f"{role} End with your findings: they are handed to the session that asked for this "
        "work.)"
    )


# -- the answer as a plan ----------------------------------------------------------------------


def to_plan_dict(output: object, *, instruction: str, max_tasks: int) -> dict[str, Any]:
    """The planner's structured output as a v1 plan of ``claude`` tasks (not yet validated).

    Read-only unless a task says ``write: true``; ``tools`` are added to the default read-only
    set. Nothing the model wrote is dropped silently: an unexpected shape is an error.
    """
    if not isinstance(output, dict) or not isinstance(output.get("tasks"), list):
        raise PlannerError("the planner's answer has no list of tasks")
    tasks = output["tasks"]
    if not tasks:
        reason = output.get("reason")
        why = (
            f": {one_line(reason, _LINE_MAX)}" if isinstance(reason, str) and reason.strip() else ""
        )
        raise PlannerError(f"the planner found nothing to fan out{why}")
    if len(tasks) > max_tasks:
        raise PlannerError(
            f"the planner made {len(tasks)} tasks, over planner.max_tasks ({max_tasks}) in "
            ".claude/fanout.toml"
        )
    converted = []
    for number, raw in enumerate(tasks, 1):
        if not isinstance(raw, dict):
            raise PlannerError(f"the planner's task #{number} is not an object")
        unknown = sorted(set(raw) - _TASK_KEYS)
        if unknown:
            raise PlannerError(f"the planner's task #{number} has an unknown field '{unknown[0]}'")
        write = raw.get("write", False)
        if not isinstance(write, bool):
            raise PlannerError(f"the planner's task #{number}: field 'write' is not true or false")
        task: dict[str, Any] = {
            "id": raw.get("id"),
            "kind": "claude",
            "prompt": raw.get("prompt"),
            "claims": raw.get("claims", []),
            "deps": raw.get("deps", []),
        }
        if isinstance(task["prompt"], str) and task["prompt"].strip():
            task["prompt"] = worker_prompt(
                task["prompt"],
                task=str(task["id"]),
                count=len(tasks),
                instruction=instruction,
                write=write,
            )
        extra = raw.get("tools")
        if extra:
            if not isinstance(extra, list):
                raise PlannerError(f"the planner's task #{number}: field 'tools' is not a list")
            task["tools"] = list(dict.fromkeys([*defaults.CLAUDE_TOOLS, *extra]))
        if write:
            task["write"] = True
        converted.append(task)
    name = output.get("name")
    if not isinstance(name, str) or not name.strip():
        name = instruction
    return {"version": 1, "name": one_line(name, 120), "tasks": converted}


# -- running the planner -----------------------------------------------------------------------


def planner_argv(
    cli: str,
    *,
    schema: Mapping[str, Any],
    system: str,
    config: Config,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """The planner's command line (the one builder's, with the planner's options); the request
    itself goes to its stdin (an instruction that starts with ``-`` must not read as an option)."""
    from claude_fanout.claude.command import command
    from claude_fanout.claude.env import setting_sources

    return command(
        cli=cli,
        tools=PLANNER_TOOLS,
        max_turns=config.planner_max_turns,
        model=config.planner_model,
        # The workers' setting sources (project and local), overridden the same way.
        sources=setting_sources(env or {}),
        output_format="json",
        json_schema=schema,
        append_system_prompt=system,
        persist_session=False,
    )


def run_planner(
    instruction: str,
    *,
    project: str,
    cwd: str,
    config: Config,
    env: Mapping[str, str] | None = None,
) -> Planned:
    """Ask Claude to split ``instruction`` into a plan; validate it; raise PlannerError (one
    line: what failed) on any failure. Never takes longer than ``planner.timeout_s`` and a
    second or two to stop the CLI."""
    from pathlib import Path

    from claude_fanout import procs
    from claude_fanout.claude.cli import CLINotFoundError, require_cli
    from claude_fanout.claude.env import planner_env
    from claude_fanout.claude.stream import json_result
    from claude_fanout.errors import PlanError
    from claude_fanout.plan import parse_plan

    base = os.environ if env is None else env
    try:
        cli = require_cli(base)
    except CLINotFoundError as exc:
        raise PlannerError(f"the planner cannot start: {exc}") from None
    schema = plan_schema(config.planner_max_tasks)
    system = system_prompt(project=project, cwd=cwd, max_tasks=config.planner_max_tasks)
    argv = planner_argv(cli, schema=schema, system=system, config=config, env=base)
    started = time.monotonic()
    try:
        code, out, err = procs.run_bounded(
            argv,
            cwd=project,
            env=planner_env(base, limit=config.max_depth),
            stdin=instruction.encode("utf-8"),
            timeout_s=config.planner_timeout_s,
        )
    except OSError as exc:
        raise PlannerError(f"the planner's Claude Code ({cli}) did not start: {exc}") from None
    wall_s = time.monotonic() - started
    if code is None:
        raise PlannerError(
            f"the planner gave no plan within {config.planner_timeout_s:g} s and was stopped "
            "(raise planner.timeout_s in .claude/fanout.toml, up to "
            f"{defaults.PLANNER_MAX_TIMEOUT_S:g})"
        )
    result = json_result(out)
    if code != 0 or result is None or result.get("is_error"):
        raise PlannerError(_failure(code, result, err))
    if result.get("structured_output") is None:
        text = result.get("result")
        said = f" (it said: {one_line(text, 160)})" if isinstance(text, str) and text else ""
        raise PlannerError(
            f"the planner ended without a plan: Claude did not call {STRUCTURED_OUTPUT_TOOL}{said}"
        )
    output = result["structured_output"]
    data = to_plan_dict(output, instruction=instruction, max_tasks=config.planner_max_tasks)
    try:
        plan = parse_plan(data, project=Path(project))
    except PlanError as exc:
        raise PlannerError(f"the planner's plan is not valid: {exc}") from None
    turns, cost = result.get("num_turns"), result.get("total_cost_usd")
    session = result.get("session_id")
    return Planned(
        plan,
        output=output,
        session_id=session if isinstance(session, str) else None,
        turns=turns if isinstance(turns, int) else None,
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
        wall_s=wall_s,
    )


def _failure(code: int, result: Mapping[str, Any] | None, stderr: bytes) -> str:
    what = f"the planner's Claude Code failed (exit {code}"
    if result is None:
        tail = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        detail = one_line(tail[-1], _LINE_MAX) if tail else "no result on its output"
        return f"{what}): {detail}"
    subtype = result.get("subtype")
    errors = result.get("errors")
    detail = ""
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        detail = errors[0]
    elif isinstance(result.get("result"), str):
        detail = result["result"]
    hint = ""
    if subtype == "error_max_turns":
        hint = "; raise planner.max_turns in .claude/fanout.toml"
    elif subtype == "error_max_structured_output_retries":
        hint = "; Claude could not produce a plan in the required shape"
    head = f"{what}, {subtype})" if isinstance(subtype, str) else f"{what})"
    return f"{head}: {one_line(detail, _LINE_MAX) or 'no detail'}{hint}"
