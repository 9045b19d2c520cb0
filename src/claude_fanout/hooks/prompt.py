"""UserPromptSubmit: recognise a fan-out request, start its run, tell the Conductor about it.

    /fanout <instruction> -- <path or glob> ...   one read-only `claude` worker per matched file
    /fanout --plan FILE                           a plan file, as `fanout run` takes it
    /fanout --wait block|rewake ...               choose how results come back (see below)
    /fanout:run ...                               the same, as the plugin's namespaced command

Results come back one of two ways. ``block``: the Stop hook holds the Conductor's turn until
the workers are done. ``rewake``: the turn ends at once, and an async hook wakes the idle
session with the results. The default (``delivery.mode = "auto"`` in fanout.toml) is rewake for
an interactive Conductor and block for a headless one (``claude -p``, the SDK), whose async
hooks Claude Code kills when the turn ends.

Anything else gets no output at all. The run starts detached and the hook returns as soon as
its supervisor is up (about 0.1 s).
"""

from __future__ import annotations

import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext

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
        return None
    try:
        text = start(ctx, match.group("args").strip())
    except RequestError as exc:
        text = f"[fanout] Nothing was started: {exc}"
    except Exception as exc:
        from claude_fanout.errors import FanoutError

        if not isinstance(exc, FanoutError):
            raise
        text = f"[fanout] Nothing was started: {exc}"
    return {"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": text}}


def parse_request(args: str) -> tuple[str, list[str]] | tuple[None, str]:
    """(instruction, patterns) for ``<instruction> -- <patterns>``; (None, file) for --plan."""
    import shlex

    if not args:
        raise RequestError(
            "say what to do and to which files: /fanout <instruction> -- <paths or globs>, "
            "or /fanout --plan FILE"
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
        raise RequestError("name the files after ' -- ', e.g. /fanout review for bugs -- src/*.py")
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


def is_interactive() -> bool:
    """Whether the Conductor is an interactive Claude Code (a person at a terminal) rather than
    ``claude -p`` or an SDK session, which wait at most 30 s for async hooks when the turn ends
    and never wake: only the Stop barrier can deliver to them.

    Claude Code (2.1.x) computes ``CLAUDE_CODE_SESSION_ATTENDED`` for each session (1 only for an
    interactive one) and hands it to its hooks; ``CLAUDE_CODE_ENTRYPOINT`` is "cli" there and
    "sdk-cli" / "sdk-py" otherwise, but an inherited "sdk-*" can survive into an interactive
    child, so it only confirms.
    """
    attended = os.environ.get("CLAUDE_CODE_SESSION_ATTENDED")
    if attended is not None:
        return attended == "1"
    return os.environ.get("CLAUDE_CODE_ENTRYPOINT") == "cli"


def delivery_mode(explicit: str | None, configured: str) -> str:
    if explicit is not None:
        return explicit
    if configured in ("block", "rewake"):
        return configured
    return "rewake" if is_interactive() else "block"


def start(ctx: HookContext, args: str) -> str:
    from pathlib import Path

    from claude_fanout import procs
    from claude_fanout.config import load_config
    from claude_fanout.plan import load_plan, parse_plan
    from claude_fanout.runner import start_run

    wait, args = split_wait(args)
    instruction, target = parse_request(args)
    if instruction is None:
        assert isinstance(target, str)
        plan = load_plan(Path(os.path.join(ctx.cwd, target)), project=Path(ctx.project))
    else:
        assert isinstance(target, list)
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
    found = procs.find_conductor()
    conductor = {
        "session_id": ctx.session_id,
        "pid": found[0] if found else None,
        "start_time": found[1] if found else None,
    }
    mode = delivery_mode(wait, load_config(ctx.project).delivery)
    started = start_run(plan, project=Path(ctx.project), conductor=conductor, delivery=mode)
    run = started.run
    lines = [
        f"[fanout] Started run {run.run_id}: {len(plan.tasks)} worker(s) in parallel, at most "
        f"{plan.max_parallel} at once."
    ]
    for task in plan.tasks:
        result = os.path.relpath(run.out_dir(task.id) / "result.md", ctx.project)
        owns = f" on {', '.join(task.claims)}" if task.claims else ""
        lines.append(f"- {task.id} ({task.kind}){owns}: result at {result}")
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
    return "\n".join(lines)
