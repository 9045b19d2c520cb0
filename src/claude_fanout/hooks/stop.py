"""Stop: hold the Conductor (bounded) while its workers run, then hand it their results once.

Each Stop call waits inside the hook up to ``stop.wait_s`` for news (a worker finishing), then:
- all of the session's runs are done: block once with the collected results, so the Conductor
  merges them; the next Stop is allowed;
- workers still at work: block with what is new and who is still running;
- the turn's budget is spent (``stop.max_blocks`` blocks, or ``stop.max_hold_s`` held): allow
  the stop and say so; the results are delivered on the next tool call or prompt instead.
A failed or lost worker is news like any other; a lost run counts as done: never waited on.
"""

from __future__ import annotations

import json
import os
import time

from claude_fanout.hooks import delivery
from claude_fanout.store import active, layout
from claude_fanout.store.files import make_private_dir, write_json_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.config import Config
    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.state import RunStatus

POLL_S = 0.1


def handle(ctx: HookContext, *, sleep: Any = time.sleep, clock: Any = time.monotonic) -> Any:
    # Runs in rewake mode let the turn end: the async Rewake hook delivers their results.
    ctx.only_delivery = "block"
    if ctx.session_id is None or not ctx.session_runs():
        return None
    from claude_fanout.config import load_config

    config = load_config(ctx.project)
    budget = _load_budget(ctx)
    if not ctx.payload.get("stop_hook_active"):
        budget = {"blocks": 0, "held_s": 0.0}
    spent = budget["blocks"] >= config.stop_max_blocks or budget["held_s"] >= config.stop_max_hold_s
    wait_limit = (
        0.0 if spent else min(config.stop_wait_s, config.stop_max_hold_s - budget["held_s"])
    )
    started = clock()
    while True:
        runs = ctx.session_runs()
        unfinished = [status for _, status in runs if not status.state.terminal]
        news = any(
            delivery.untold(status, delivery.peek_told(path, ctx.session_id))
            for path, status in runs
        )
        if not unfinished or news or clock() - started >= wait_limit:
            break
        sleep(POLL_S)
        ctx.refresh()
    held = clock() - started
    if not unfinished:
        return _final(ctx, runs, config)
    if spent:
        return {
            "systemMessage": f"fanout: {len(unfinished)} run(s) still at work; not holding this "
            "turn any longer. Results will be delivered after the next tool call or prompt."
        }
    budget = {"blocks": budget["blocks"] + 1, "held_s": budget["held_s"] + held}
    _save_budget(ctx, budget)
    left = config.stop_max_blocks - budget["blocks"]
    ending = (
        "Their results will be delivered to you here; do not redo their work. Continue with "
        "other work, or end your turn again to keep waiting"
        + (
            f" (fanout will hold the turn {left} more time{'s' if left != 1 else ''})."
            if left > 0
            else "."
        )
    )
    found = delivery.collect_news(ctx)
    told = {path for path, *_ in found}
    waiting = [
        f"[fanout] run {delivery.name(status.run_id)}: {line}."
        for path, status in runs
        if path not in told and (line := delivery.progress(status, ctx.now))
    ]
    if not found:
        # Progress only, no worker text: no fence needed (nor its modules' import).
        return {"decision": "block", "reason": "\n".join([*waiting, ending])}
    from claude_fanout.hooks import report

    message = report.Message(config.inject_max_chars, ending=ending)
    report.add_news(message, found, project=ctx.project, now=ctx.now)
    for line in waiting:
        message.add(line)
    return {"decision": "block", "reason": message.render()}


def _final(ctx: HookContext, runs: list[tuple[str, RunStatus]], config: Config) -> Any:
    """Once per run and session: every result, so the Conductor can merge them."""
    assert ctx.session_id is not None
    from claude_fanout.hooks import report

    message = report.Message(config.inject_max_chars, ending=report.DONE)
    room = message.room(len(runs))
    for path, status in runs:
        with delivery.Cursor(path, ctx.session_id) as cursor:
            if cursor.data.get("final"):
                continue
            fresh, notices = delivery.news(status, cursor)
            cursor.data["final"] = True
        # Excerpts only for results this session has not seen; the rest by path.
        message.add(
            report.final_section(
                path,
                status,
                fresh,
                notices,
                project=ctx.project,
                budget=room,
                fence=message.fence,
            )
        )
        active.clear(ctx.project, status.run_id)
    text = message.render()
    return {"decision": "block", "reason": text} if text else None


def _budget_path(ctx: HookContext) -> str:
    return os.path.join(layout.runs_root(ctx.project), ".sessions", f"{ctx.session_id}.stop.json")


def _load_budget(ctx: HookContext) -> dict[str, Any]:
    try:
        with open(_budget_path(ctx), "rb") as handle:
            data = json.loads(handle.read())
        blocks, held = int(data["blocks"]), float(data["held_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"blocks": 0, "held_s": 0.0}
    return {"blocks": blocks, "held_s": held}


def _save_budget(ctx: HookContext, budget: dict[str, Any]) -> None:
    folder = os.path.dirname(_budget_path(ctx))
    make_private_dir(folder)
    write_json_atomic(_budget_path(ctx), budget)
