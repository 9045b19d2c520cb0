"""UserPromptSubmit: recognise a fan-out request, start its run, tell the Conductor about it.

    /fanout <instruction> -- <path or glob> ...   one read-only `claude` worker per matched file
    /fanout <instruction>                         a trigger's plan template if one matches, else
                                                  Claude plans it (planner.py); bounded in time
    /fanout --plan FILE                           a plan file, as `fanout run` takes it
    /fanout --wait block|rewake ...               choose how results come back (see below)
    /fanout:run ...                               the same, as the plugin's namespaced command

A plain prompt (no /fanout) starts a run only when a ``scope = "all"`` trigger in
``.claude/fanout.toml`` matches it. Whatever fails, nothing starts and the Conductor is told why.

Results come back one of two ways. ``block``: the Stop hook holds the Conductor's turn until
the workers are done. ``rewake``: the turn ends at once, and an async hook wakes the idle
session with the results. The default (``delivery.mode = "auto"`` in fanout.toml) is rewake for
an interactive Conductor and block for a headless one (``claude -p``, the SDK), whose async
hooks Claude Code kills when the turn ends.

Anything else gets no output at all. The run starts detached and the hook returns as soon as
its supervisor is up (about 0.1 s), or the planner's time on top.
"""

from __future__ import annotations

import os
import re

from claude_fanout.hooks.context import is_interactive
from claude_fanout.store import layout

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext
    from claude_fanout.plan import Plan
    from claude_fanout.planner import Planned

_COMMAND = re.compile(r"\s*/fanout(?::run)?(?:\s+|$)(?P<args>.*)", re.DOTALL)
MAX_FANOUT_FILES = 64


class RequestError(Exception):
    """A /fanout request that cannot start; the message goes to the Conductor."""


def handle(ctx: HookContext) -> dict[str, Any] | None:
    prompt = ctx.payload.get("prompt")
    if not isinstance(prompt, str):
        return None
    match = _COMMAND.match(prompt)
    if match is None:
        return _plain_prompt(ctx, prompt)
    try:
        text = start(ctx, match.group("args").strip())
    except RequestError as exc:
        text = f"[fanout] Nothing was started: {exc}"
    except Exception as exc:
        from claude_fanout.errors import FanoutError

        if not isinstance(exc, FanoutError):
            raise
        text = f"[fanout] Nothing was started: {exc}"
        from claude_fanout.planner import NEXT_STEP, PlannerError

        if isinstance(exc, PlannerError):
            text += "\n" + NEXT_STEP
    return _answer(text)


def _answer(text: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": text}}


def _plain_prompt(ctx: HookContext, prompt: str) -> dict[str, Any] | None:
    """A prompt without /fanout: only a ``scope = "all"`` trigger makes it ours."""
    from claude_fanout.config import CONFIG_FILE

    if not os.path.isfile(os.path.join(ctx.project, CONFIG_FILE)):
        return None
    from claude_fanout.config import load_config
    from claude_fanout.errors import FanoutError

    try:
        triggers = load_config(ctx.project).triggers
    except FanoutError:
        return None  # said by the next /fanout request or fanout command, not on every prompt
    if not any(trigger.scope == "all" for trigger in triggers):
        return None
    from claude_fanout import planner

    text = planner.clean_text(prompt.strip())
    found = planner.match_trigger(triggers, text, fanout=False)
    if found is None:
        return None
    try:
        plan = planner.plan_from_trigger(*found, text=text, project=ctx.project)
        return _answer(launch(ctx, plan, wait=None, origin=_trigger_origin(found)))
    except FanoutError as exc:
        return _answer(f"[fanout] Nothing was started: {exc}")


def _trigger_origin(found: tuple[int, Any, Any]) -> str:
    number, trigger, _ = found
    return f"[[triggers]] #{number} in .claude/fanout.toml matched: plan {trigger.plan}"


def parse_request(args: str) -> tuple[str, list[str]] | tuple[None, str] | tuple[str, None]:
    """(instruction, patterns) for ``<instruction> -- <patterns>``; (None, file) for --plan;
    (instruction, None) for an instruction alone (a trigger or the planner makes its plan)."""
    import shlex

    if not args:
        raise RequestError(
            "say what to do: /fanout <instruction> (Claude plans it), "
            "/fanout <instruction> -- <paths or globs>, or /fanout --plan FILE"
        )
    head = args.split(None, 1)
    if head[0] == "--plan":
        try:
            rest = shlex.split(head[1]) if len(head) > 1 else []
        except ValueError as exc:
            raise RequestError(f"cannot read the plan file's name ({exc})") from None
        if len(rest) != 1:
            raise RequestError("--plan takes exactly one file: /fanout --plan FILE")
        return None, rest[0]
    instruction, sep, targets = args.partition(" -- ")
    if not sep and args.endswith(" --"):
        instruction, sep, targets = args[:-3], " -- ", ""
    if not sep:
        return args.strip(), None
    try:
        patterns = shlex.split(targets)
    except ValueError as exc:
        raise RequestError(f"cannot read the paths after ' -- ' ({exc})") from None
    if not instruction.strip():
        raise RequestError("say what each worker should do before ' -- '")
    if not patterns:
        raise RequestError("name at least one path or glob after ' -- '")
    return instruction.strip(), patterns


def expand(patterns: list[str], *, cwd: str, project: str) -> list[str]:
    """Matched files as project-relative paths, in the order given, each once."""
    import glob

    files: list[str] = []
    missing: list[str] = []
    root = os.path.realpath(project)
    for pattern in patterns:
        absolute = os.path.join(cwd, os.path.expanduser(pattern))
        matches = (
            sorted(glob.glob(absolute, recursive=True))
            if glob.has_magic(pattern)
            else ([absolute] if os.path.exists(absolute) else [])
        )
        found = [m for m in matches if os.path.isfile(m)]
        if not found:
            missing.append(pattern)
        for path in found:
            real = os.path.realpath(path)
            if real != root and not real.startswith(root + os.sep):
                raise RequestError(f"{pattern} is outside the project {project}")
            rel = os.path.relpath(os.path.normpath(path), project)
            if rel not in files:
                files.append(rel)
    if missing:
        raise RequestError(f"no file matches {', '.join(missing)} (looked in {cwd})")
    if len(files) > MAX_FANOUT_FILES:
        raise RequestError(
            f"{len(files)} files matched; a /fanout prompt takes at most {MAX_FANOUT_FILES} "
            "(narrow the globs, or write a plan and use /fanout --plan FILE)"
        )
    return files


def worker_prompt(instruction: str, path: str) -> str:
    return (
        f"{instruction}\n\nYour file: {path}\n"
        "Work on this file only (other workers have the others). End with your findings: "
        "they are handed to the session that asked for this work."
    )


def split_wait(args: str) -> tuple[str | None, str]:
    """``--wait MODE`` in front of the request: (mode, the rest)."""
    words = args.split(None, 2)
    if not words or words[0] != "--wait":
        return None, args
    if len(words) < 2 or words[1] not in ("block", "rewake"):
        raise RequestError("--wait takes block or rewake: /fanout --wait rewake <request>")
    return words[1], words[2] if len(words) > 2 else ""


def delivery_mode(explicit: str | None, configured: str) -> str:
    if explicit is not None:
        return explicit
    if configured in ("block", "rewake"):
        return configured
    return "rewake" if is_interactive() else "block"


def start(ctx: HookContext, args: str) -> str:
    from pathlib import Path

    from claude_fanout.plan import load_plan, parse_plan

    wait, args = split_wait(args)
    instruction, target = parse_request(args)
    if instruction is None:
        assert isinstance(target, str)
        plan = load_plan(Path(os.path.join(ctx.cwd, target)), project=Path(ctx.project))
        return launch(ctx, plan, wait=wait)
    if not isinstance(target, list):
        return plan_and_launch(ctx, instruction, wait=wait)
    files = expand(target, cwd=ctx.cwd, project=ctx.project)
    tasks = [
        {
            "id": f"W{n}",
            "kind": "claude",
            "prompt": worker_prompt(instruction, path),
            "claims": [path],
        }
        for n, path in enumerate(files, 1)
    ]
    plan = parse_plan(
        {"version": 1, "name": instruction[:120], "tasks": tasks}, project=Path(ctx.project)
    )
    return launch(ctx, plan, wait=wait)


def plan_and_launch(ctx: HookContext, instruction: str, *, wait: str | None) -> str:
    """An instruction without paths: the first matching trigger's template, else the planner."""
    from claude_fanout import planner
    from claude_fanout.config import load_config

    config = load_config(ctx.project)
    instruction = planner.clean_text(instruction)
    found = planner.match_trigger(config.triggers, instruction, fanout=True)
    if found is not None:
        plan = planner.plan_from_trigger(*found, text=instruction, project=ctx.project)
        return launch(ctx, plan, wait=wait, origin=_trigger_origin(found))
    planned = planner.run_planner(instruction, project=ctx.project, cwd=ctx.cwd, config=config)
    cost = f", ${planned.cost_usd:.4f}" if planned.cost_usd is not None else ""
    turns = f", {planned.turns} turns" if planned.turns is not None else ""
    origin = f'Claude planned "{planned.plan.name}" ({planned.wall_s:.1f} s{turns}{cost})'
    return launch(ctx, planned.plan, wait=wait, origin=origin, planned=planned, request=instruction)


def launch(
    ctx: HookContext,
    plan: Plan,
    *,
    wait: str | None,
    origin: str | None = None,
    planned: Planned | None = None,
    request: str = "",
) -> str:
    """Start ``plan`` for this session's Conductor; the text that tells the Conductor so.

    ``origin`` (a trigger or the planner made the plan) adds how each worker was set up: the
    Conductor did not write those tasks itself.
    """
    from pathlib import Path

    from claude_fanout import procs
    from claude_fanout.config import load_config
    from claude_fanout.runner import start_run

    found = procs.find_conductor()
    conductor = {
        "session_id": ctx.session_id,
        "pid": found[0] if found else None,
        "start_time": found[1] if found else None,
    }
    configured = load_config(ctx.project).delivery
    mode = delivery_mode(wait, configured)
    warnings = _version_warnings(plan, guessed_mode=wait is None and configured == "auto")
    started = start_run(plan, project=Path(ctx.project), conductor=conductor, delivery=mode)
    run = started.run
    if planned is not None:
        import contextlib

        from claude_fanout.planner import PLANNER_RECORD
        from claude_fanout.store.files import write_json_atomic

        with contextlib.suppress(OSError):  # a record for the user; the run does not need it
            write_json_atomic(run.path / PLANNER_RECORD, planned.record(request))
    if origin is None:
        lines = [
            f"[fanout] Started run {run.run_id}: {len(plan.tasks)} worker(s) in parallel, at "
            f"most {plan.max_parallel} at once."
        ]
    else:
        lines = [
            f"[fanout] {origin}.",
            f"[fanout] Started run {run.run_id}: {len(plan.tasks)} worker(s), at most "
            f"{plan.max_parallel} at once.",
        ]
    for task in plan.tasks:
        result = os.path.relpath(run.out_dir(task.id) / layout.RESULT, ctx.project)
        owns = f" on {', '.join(task.claims)}" if task.claims else ""
        if origin is None:
            lines.append(f"- {task.id} ({task.kind}){owns}: result at {result}")
            continue
        label = str(task.kind)
        if task.kind == "claude":
            label += ", edits files in its own worktree" if task.write else ", read-only"
            extra = [t for t in task.tools if t not in ("Read", "Grep", "Glob")]
            if extra:
                label += f", may use {', '.join(extra)}"
        after = f", after {', '.join(task.deps)}" if task.deps else ""
        lines.append(f"- {task.id} ({label}){owns}{after}: result at {result}")
        if task.kind == "claude":
            # The first paragraph: what the task is, without the note every worker gets.
            lines.append(f"  task: {_excerpt(task.prompt.strip().split(chr(10) * 2, 1)[0])}")
    when = (
        "after your next tool calls, and when they are all done even if you have ended your turn "
        "(fanout wakes you with them)"
        if mode == "rewake"
        else "after your next tool calls, and when you try to stop (fanout holds your turn "
        "until the workers are done)"
    )
    lines.append(
        "Files a running worker claims are off-limits to you until it finishes (such tool calls "
        f"are denied). fanout delivers each result to you by itself: {when}. Do not redo the "
        "workers' work; merge their results once they arrive. Status any time: fanout status "
        + run.run_id
    )
    lines += [f"[fanout] Warning: {warning}" for warning in warnings]
    return "\n".join(lines)


def _version_warnings(plan: Plan, *, guessed_mode: bool) -> list[str]:
    """What this Claude Code, or the one the workers run, is too old for (docs/compat.md)."""
    from claude_fanout import compat

    found = [compat.conductor_warning(os.environ) if guessed_mode else None]
    if any(task.kind == "claude" for task in plan.tasks):
        from claude_fanout.claude.cli import cli_path

        found.append(compat.cli_warning(cli_path(os.environ)))
    return [warning for warning in found if warning is not None]


def _excerpt(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"
