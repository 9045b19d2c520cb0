"""UserPromptSubmit: a fan-out request starts its run, and the Conductor is told about it.

``planning.py`` turns the prompt into a plan (``/fanout ...``, or a plain prompt a
``scope = "all"`` trigger matches); this hook starts that plan for the session and answers with
what started (``report.started``) or why nothing did. Any other prompt gets no output at all.

Results come back one of two ways. ``block``: the Stop hook holds the Conductor's turn until
the workers are done. ``rewake``: the turn ends at once, and an async hook wakes the idle
session with the results. The default (``delivery.mode = "auto"`` in fanout.toml) is rewake for
an interactive Conductor and block for a headless one (``claude -p``, the SDK), whose async
hooks Claude Code kills when the turn ends.

The run starts detached and the hook returns as soon as its supervisor is up (about 0.1 s), or
the planner's time on top. The configuration is loaded once per call and passed down.
"""

from __future__ import annotations

import os

from claude_fanout import planning
from claude_fanout.errors import FanoutError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.config import Config
    from claude_fanout.hooks.context import HookContext
    from claude_fanout.plan import Plan

EVENT = "UserPromptSubmit"


def handle(ctx: HookContext) -> dict[str, Any] | None:
    prompt = ctx.payload.get("prompt")
    if not isinstance(prompt, str):
        return None
    person = _waiting(ctx)
    said = _fan_out(ctx, prompt, person)
    if said is None and not person:
        return None
    from claude_fanout.hooks import answers, shown

    message = shown.join(person)
    if said:
        return answers.context(EVENT, said, shown=message)
    return answers.show(message) if message else None


def _fan_out(ctx: HookContext, prompt: str, person: list[str]) -> str | None:
    """What the model is told of the run this prompt starts (or why none did); None for a
    prompt that is not a fan-out request. ``person`` gets what the person is shown of it."""
    args = planning.fanout_args(prompt)
    if args is None:
        return _plain_prompt(ctx, prompt, person)
    from claude_fanout.config import load_config
    from claude_fanout.hooks import report

    try:
        config = load_config(ctx.project)
        proposal = planning.plan_request(args, cwd=ctx.cwd, project=ctx.project, config=config)
        return launch(ctx, proposal, config, person)
    except FanoutError as exc:
        from claude_fanout.planner import NEXT_STEP, PlannerError

        return report.not_started(exc, next_step=NEXT_STEP if isinstance(exc, PlannerError) else "")


def _plain_prompt(ctx: HookContext, prompt: str, person: list[str]) -> str | None:
    """A prompt without /fanout: only a ``scope = "all"`` trigger makes it ours."""
    from claude_fanout.config import CONFIG_FILE

    if not os.path.isfile(os.path.join(ctx.project, CONFIG_FILE)):
        return None
    from claude_fanout.config import load_config

    try:
        config = load_config(ctx.project)
    except FanoutError:
        return None  # said by the next /fanout request or fanout command, not on every prompt
    from claude_fanout.hooks import report

    try:
        proposal = planning.plan_prompt(prompt, project=ctx.project, config=config)
        if proposal is None:
            return None
        return launch(ctx, proposal, config, person)
    except FanoutError as exc:
        return report.not_started(exc)


def _waiting(ctx: HookContext) -> list[str]:
    """What the async Rewake hook left for this session's person (``shown.post``): this prompt
    is the wake it sent, or the person's next one. One ``stat`` when there is nothing."""
    if ctx.session_id is None:
        return []
    from claude_fanout.store import layout

    if not os.path.exists(layout.session_outbox(ctx.project, ctx.session_id)):
        return []
    from claude_fanout.hooks import shown

    return shown.collect(ctx.project, ctx.session_id)


def launch(ctx: HookContext, proposal: planning.Proposal, config: Config, person: list[str]) -> str:
    """Start the proposed plan for this session's Conductor; the text that tells it so.
    ``person`` gets the lines that show the person what started (marked shown for the session)."""
    from pathlib import Path

    from claude_fanout import pids
    from claude_fanout.hooks import report
    from claude_fanout.hooks.context import is_interactive
    from claude_fanout.runner import start_run

    found = pids.find_conductor()
    conductor = {
        "session_id": ctx.session_id,
        "pid": found[0] if found else None,
        "start_time": found[1] if found else None,
    }
    mode = planning.delivery_mode(proposal.wait, config.delivery, interactive=is_interactive())
    plan = proposal.plan
    guessed = proposal.wait is None and config.delivery == "auto"
    warnings = _version_warnings(plan, guessed_mode=guessed)
    started = start_run(plan, project=Path(ctx.project), conductor=conductor, delivery=mode)
    if proposal.planned is not None:
        import contextlib

        from claude_fanout.planner import PLANNER_RECORD
        from claude_fanout.store.files import write_json_atomic

        with contextlib.suppress(OSError):  # a record for the user; the run does not need it
            record = proposal.planned.record(proposal.request)
            write_json_atomic(started.run.path / PLANNER_RECORD, record)
    person.extend(_show_started(ctx, str(started.run.path), started.run.run_id))
    text = report.started(plan, started.run, project=ctx.project, mode=mode, origin=proposal.origin)
    return "\n".join([text, *(f"[fanout] Warning: {warning}" for warning in warnings)])


def _show_started(ctx: HookContext, run_path: str, run_id: str) -> list[str]:
    """The person's lines for a run this prompt started, marked shown in the session's cursor
    so no later hook shows them again."""
    if ctx.session_id is None:
        return []
    from claude_fanout.hooks import shown
    from claude_fanout.store.cursor import Cursor

    with Cursor(run_path, ctx.session_id) as cursor:
        if not shown.take(cursor, shown.START):
            return []
    return shown.started(run_id, shown.task_summaries(run_path))


def _version_warnings(plan: Plan, *, guessed_mode: bool) -> list[str]:
    """What this Claude Code, or the one the workers run, is too old for (docs/compat.md)."""
    from claude_fanout import compat

    found = [compat.conductor_warning(os.environ) if guessed_mode else None]
    if any(task.kind == "claude" for task in plan.tasks):
        from claude_fanout.claude.cli import cli_path

        found.append(compat.cli_warning(cli_path(os.environ)))
    return [warning for warning in found if warning is not None]
