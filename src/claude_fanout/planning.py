"""Where a run's plan comes from when the Conductor asks for one in a prompt.

    /fanout <instruction> -- <path or glob> ...   one read-only `claude` worker per matched file
    /fanout <instruction>                         a trigger's plan template if one matches, else
                                                  Claude plans it (planner.py); bounded in time
    /fanout --plan FILE                           a plan file, as `fanout run` takes it
    /fanout --wait block|rewake ...               choose how results come back
    /fanout:run ...                               the same, as the plugin's namespaced command

A plain prompt (no /fanout) gets a plan only when a ``scope = "all"`` trigger in
``.claude/fanout.toml`` matches it. This module parses the request, expands its paths, matches
triggers, fills in their templates and asks the Claude planner; it decides nothing about
starting the run (``hooks/prompt.py`` does that) and writes nothing. Every problem is a
one-line FanoutError: RequestError (the request itself), TriggerError, PlannerError, PlanError,
ConfigError.

Standard library only: the UserPromptSubmit hook imports it, and the planner's CLI pieces only
for a request that needs them.
"""

from __future__ import annotations

import os
import re

from claude_fanout import defaults
from claude_fanout.errors import FanoutError, PlanError, RequestError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from claude_fanout.config import Config, Trigger
    from claude_fanout.plan import Plan
    from claude_fanout.planner import Planned

_COMMAND = re.compile(r"\s*/fanout(?::run)?(?:\s+|$)(?P<args>.*)", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
WAIT_MODES = ("block", "rewake")


class TriggerError(FanoutError):
    """A trigger matched but its plan template cannot be used (one line, naming the trigger)."""


class Proposal:
    """A plan for a run to start, and where it came from.

    ``wait`` is the delivery mode the request asked for (None: the configured one); ``origin``
    says who wrote the tasks when the Conductor did not (a trigger, the planner); ``planned``
    is the planner's answer and cost, recorded beside the run.
    """

    __slots__ = ("origin", "plan", "planned", "request", "wait")

    def __init__(
        self,
        plan: Plan,
        *,
        wait: str | None = None,
        origin: str | None = None,
        planned: Planned | None = None,
        request: str = "",
    ) -> None:
        self.plan = plan
        self.wait = wait
        self.origin = origin
        self.planned = planned
        self.request = request


# -- the request ---------------------------------------------------------------------------------


def fanout_args(prompt: str) -> str | None:
    """What follows ``/fanout`` (or ``/fanout:run``) in a prompt; None for any other prompt."""
    match = _COMMAND.match(prompt)
    return None if match is None else match.group("args").strip()


def split_wait(args: str) -> tuple[str | None, str]:
    """``--wait MODE`` in front of the request: (mode, the rest)."""
    words = args.split(None, 2)
    if not words or words[0] != "--wait":
        return None, args
    if len(words) < 2 or words[1] not in WAIT_MODES:
        raise RequestError("--wait takes block or rewake: /fanout --wait rewake <request>")
    return words[1], words[2] if len(words) > 2 else ""


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
    limit = defaults.MAX_FANOUT_FILES
    if len(files) > limit:
        raise RequestError(
            f"{len(files)} files matched; a /fanout prompt takes at most {limit} "
            "(narrow the globs, or write a plan and use /fanout --plan FILE)"
        )
    return files


def worker_prompt(instruction: str, path: str) -> str:
    """The prompt of the worker a ``/fanout <instruction> -- <paths>`` request gives ``path``."""
    return (
        f"{instruction}\n\nYour file: {path}\n"
        "Work on this file only (other workers have the others). End with your findings: "
        "they are handed to the session that asked for this work."
    )


def delivery_mode(explicit: str | None, configured: str, *, interactive: bool) -> str:
    """How results come back: the request's ``--wait``, else ``delivery.mode``; ``auto`` is
    rewake for an interactive Conductor and block for a headless one."""
    if explicit is not None:
        return explicit
    if configured in WAIT_MODES:
        return configured
    return "rewake" if interactive else "block"


def clean_text(text: str) -> str:
    """``text`` as valid Unicode: a prompt's JSON may carry UTF-16 surrogates (``"\\ud83d"``),
    which no file, pipe or argument can hold. Pairs are joined, lone ones become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


# -- from a request to a plan --------------------------------------------------------------------


def plan_request(args: str, *, cwd: str, project: str, config: Config) -> Proposal:
    """The plan a ``/fanout`` request (what follows the command) asks for."""
    from pathlib import Path

    from claude_fanout.plan import load_plan, parse_plan

    wait, args = split_wait(args)
    instruction, target = parse_request(args)
    if instruction is None:
        assert isinstance(target, str)
        plan = load_plan(Path(os.path.join(cwd, target)), project=Path(project))
        return Proposal(plan, wait=wait)
    if not isinstance(target, list):
        return plan_instruction(instruction, cwd=cwd, project=project, config=config, wait=wait)
    files = expand(target, cwd=cwd, project=project)
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
        {"version": 1, "name": instruction[:120], "tasks": tasks}, project=Path(project)
    )
    return Proposal(plan, wait=wait)


def plan_instruction(
    instruction: str, *, cwd: str, project: str, config: Config, wait: str | None
) -> Proposal:
    """An instruction without paths: the first matching trigger's template, else the planner."""
    from claude_fanout import planner

    instruction = clean_text(instruction)
    found = match_trigger(config.triggers, instruction, fanout=True)
    if found is not None:
        plan = plan_from_trigger(*found, text=instruction, project=project)
        return Proposal(plan, wait=wait, origin=_trigger_origin(found))
    planned = planner.run_planner(instruction, project=project, cwd=cwd, config=config)
    cost = f", ${planned.cost_usd:.4f}" if planned.cost_usd is not None else ""
    turns = f", {planned.turns} turns" if planned.turns is not None else ""
    origin = f'Claude planned "{planned.plan.name}" ({planned.wall_s:.1f} s{turns}{cost})'
    return Proposal(planned.plan, wait=wait, origin=origin, planned=planned, request=instruction)


def plan_prompt(prompt: str, *, project: str, config: Config) -> Proposal | None:
    """The plan a plain prompt (no /fanout) starts: a ``scope = "all"`` trigger's, or None."""
    if not any(trigger.scope == "all" for trigger in config.triggers):
        return None
    text = clean_text(prompt.strip())
    found = match_trigger(config.triggers, text, fanout=False)
    if found is None:
        return None
    plan = plan_from_trigger(*found, text=text, project=project)
    return Proposal(plan, origin=_trigger_origin(found))


def _trigger_origin(found: tuple[int, Trigger, re.Match[str]]) -> str:
    number, trigger, _ = found
    return f"[[triggers]] #{number} in .claude/fanout.toml matched: plan {trigger.plan}"


# -- triggers ----------------------------------------------------------------------------------


def match_trigger(
    triggers: Sequence[Trigger], text: str, *, fanout: bool
) -> tuple[int, Trigger, re.Match[str]] | None:
    """The first trigger whose pattern is found in ``text`` (1-based number, trigger, match).

    ``fanout``: ``text`` is the instruction of a `/fanout` request; otherwise it is a plain
    prompt, which only ``scope = "all"`` triggers see.
    """
    for number, trigger in enumerate(triggers, 1):
        if not fanout and trigger.scope != "all":
            continue
        found = re.search(trigger.pattern, text)
        if found is not None:
            return number, trigger, found
    return None


def substitute(template: str, values: Mapping[str, str]) -> str:
    """``{name}`` replaced by ``values[name]``; any other brace is left as it is."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def plan_from_trigger(
    number: int, trigger: Trigger, match: re.Match[str], *, text: str, project: str
) -> Plan:
    """The trigger's plan template, filled in from the match and validated like any plan."""
    from pathlib import Path

    from claude_fanout.plan import parse_plan, read_plan_file

    where = f"[[triggers]] #{number} (plan {trigger.plan})"
    try:
        data = read_plan_file(
            os.path.join(project, trigger.plan),
            name="the plan file",
            hint="fix triggers.plan in .claude/fanout.toml",
        )
    except PlanError as exc:
        raise TriggerError(f"{where}: {exc.detail}") from None
    values = {name: value or "" for name, value in match.groupdict().items()}
    values["prompt"] = text
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if isinstance(tasks, list):
        for task in tasks:
            if not isinstance(task, dict):
                continue
            if isinstance(task.get("prompt"), str):
                task["prompt"] = substitute(task["prompt"], values)
            claims = task.get("claims")
            if isinstance(claims, list):
                task["claims"] = [
                    substitute(c, values) if isinstance(c, str) else c for c in claims
                ]
    try:
        return parse_plan(data, project=Path(project))
    except PlanError as exc:
        raise TriggerError(f"{where}: {exc}") from None
