"""Stop: hold the Conductor (bounded) while its workers run, then hand it their results once.

A Stop call waits inside the hook, woken by the runs' logs, until every run of the session is
done, and then blocks once with every result so the Conductor merges them: one block, however
many workers and waves the runs take. A worker finishing is not a reason to block (the model
could do nothing with it but wait again, and each block spends one of the few Claude Code
allows in a row). Only when ``stop.wait_s`` passes first (it stays well under the hook's own
timeout) does it block with progress and what is new, so the session is never cut off by
Claude Code; the next Stop waits again.

The turn's budget is ``stop.max_blocks`` blocks (Claude Code ends a turn itself after 8 in a
row) and ``stop.max_hold_s`` held. When the last allowed wait ends with workers still at work,
fanout lets go plainly: the Conductor is told, in a last block, what is still running and how to
get the results later, and the person sees it too. A headless session (``claude -p``, the SDK)
has no later: its runs are released from it first, so they finish after it exits instead of
being cancelled at its end. An interactive one keeps them and is handed the results after its
next tool call or prompt. A failed or lost worker is news like any other; a lost run counts as
done: never waited on.
"""

from __future__ import annotations

import json
import os
import time

from claude_fanout.hooks import delivery
from claude_fanout.hooks.context import is_interactive
from claude_fanout.states import EventType
from claude_fanout.store import layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.files import make_private_dir, write_json_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.config import Config
    from claude_fanout.hooks.context import HookContext
    from claude_fanout.store.status import RunStatus

# Runs in rewake mode let the turn end: the async Rewake hook delivers their results.
MODE = "block"


def handle(ctx: HookContext, *, clock: Any = time.monotonic) -> Any:
    if ctx.session_id is None or not ctx.session_runs(delivery=MODE):
        return None
    from claude_fanout import defaults
    from claude_fanout.config import load_config

    config = load_config(ctx.project)
    budget = _load_budget(ctx)
    if not ctx.payload.get("stop_hook_active"):
        budget = {"blocks": 0, "held_s": 0.0}
    if budget["blocks"] >= config.stop_max_blocks or budget["held_s"] >= config.stop_max_hold_s:
        return None  # fanout let go of this turn already, and said so
    wait_limit = max(0.0, min(config.stop_wait_s, config.stop_max_hold_s - budget["held_s"]))
    started = clock()
    while True:
        runs = ctx.session_runs(delivery=MODE)
        unfinished = [status for _, status in runs if not status.state.terminal]
        left = wait_limit - (clock() - started)
        if not unfinished or left <= 0:
            break
        # Imported only to wait: a Stop that answers at once does not load it.
        from claude_fanout.store.watch import wait_for_change

        logs = [layout.join(path, layout.EVENTS) for path, _ in runs]
        wait_for_change(logs, min(defaults.STOP_RECHECK_S, left))
        ctx.refresh()
    held = clock() - started
    from claude_fanout.hooks import answers, shown

    person: list[str] = []
    if not unfinished:
        from claude_fanout.hooks import report

        text = report.final_delivery(ctx, runs, config.inject_max_chars, person=person)
        message = shown.join(person)
        if text:
            return answers.block(text, shown=message)
        return answers.show(message) if message else None
    budget = {"blocks": budget["blocks"] + 1, "held_s": budget["held_s"] + held}
    _save_budget(ctx, budget)
    blocks_left = config.stop_max_blocks - budget["blocks"]
    if blocks_left <= 0 or budget["held_s"] >= config.stop_max_hold_s:
        return _let_go(ctx, runs, config, budget["held_s"])
    ending = (
        "Their results will be delivered to you here; do not redo their work. Continue with "
        "other work, or end your turn again to keep waiting (fanout will hold the turn "
        f"{blocks_left} more time{'s' if blocks_left != 1 else ''})."
    )
    text = _news_and_progress(ctx, runs, config, ending, person)
    return answers.block(text, shown=shown.join(person))


def _news_and_progress(
    ctx: HookContext,
    runs: list[tuple[str, RunStatus]],
    config: Config,
    ending: str,
    person: list[str],
) -> str:
    """What finished since the session was last told (fenced), then who is still at work;
    ``person`` gets what the person has not been shown (``shown.py``)."""
    found = delivery.collect_news(ctx, runs, person=person)
    told = {path for path, *_ in found}
    waiting = [
        f"[fanout] run {delivery.name(status.run_id)}: {line}."
        for path, status in runs
        if path not in told and (line := delivery.progress(status, ctx.now))
    ]
    if not found:
        # Progress only, no worker text: no fence needed (nor its modules' import).
        return "\n".join([*waiting, ending])
    from claude_fanout.hooks import framing, report

    message = framing.Message(config.inject_max_chars, ending=ending)
    report.add_news(message, found, project=ctx.project, now=ctx.now)
    for line in waiting:
        message.add(line)
    return message.render()


def _let_go(
    ctx: HookContext, runs: list[tuple[str, RunStatus]], config: Config, held_s: float
) -> dict[str, Any]:
    """The turn's budget is spent with workers still at work: say so to the model and to the
    person, plainly; a headless session's runs are released so they finish without it."""
    from claude_fanout import defaults
    from claude_fanout.text import duration, printable

    unfinished = [(path, status) for path, status in runs if not status.state.terminal]
    headless = not is_interactive()
    if headless:
        for path, _ in unfinished:
            EventLog(layout.join(path, layout.EVENTS)).append(
                EventType.CONDUCTOR_RELEASED, session_id=ctx.session_id, reason="stop_budget"
            )
    ids = [delivery.name(status.run_id) for _, status in unfinished]
    later = "; ".join(
        f"`fanout wait {rid}` then `fanout status {rid}` (results in "
        f"{delivery.relative(layout.join(path, layout.WORKERS), ctx.project)}/<task>/out/)"
        for rid, (path, _) in zip(ids, unfinished, strict=True)
    )
    if headless:
        ending = (
            f"fanout has stopped holding this turn after {duration(held_s)}: the workers above "
            "are still at work, and their results are not in this conversation. They keep "
            "running after this session ends. In your answer, say plainly which work is not "
            "done yet and that its results come later, from: " + later + ". Do not present "
            "that work as finished or redo it."
        )
    else:
        ending = (
            f"fanout has stopped holding this turn after {duration(held_s)}: the workers above "
            "are still at work. Their results will be delivered after your next tool call or "
            "the next prompt; meanwhile do not present that work as finished or redo it. "
            "Status any time: " + later + "."
        )
    still = sum(
        1 for _, status in unfinished for task in status.tasks.values() if not task.state.terminal
    )
    let_go = printable(
        f"fanout: stopped waiting after {duration(held_s)}; {still} worker(s) of run "
        f"{', '.join(ids)} still at work"
        + (" and left running" if headless else "")
        + f" (fanout wait {ids[0]}).",
        defaults.SHOWN_LINE_CHARS,
    )
    from claude_fanout.hooks import answers, shown

    person: list[str] = []
    text = _news_and_progress(ctx, runs, config, ending, person)
    return answers.block(text, shown=shown.join([*person, let_go]))


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
