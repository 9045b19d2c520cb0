"""PostToolUse: tell the Conductor what its workers finished since it last heard, and show the
person what they have not seen (a run started, a worker failed, a run ended)."""

from __future__ import annotations

from claude_fanout import defaults
from claude_fanout.hooks import delivery

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle(ctx: HookContext) -> dict[str, Any] | None:
    person: list[str] = []
    found = delivery.collect_news(ctx, ctx.session_runs(), person=person)
    if ctx.payload.get("tool_name") == "Bash":
        person.extend(_started_by_bash(ctx))
    if not found and not person:
        return None
    from claude_fanout.hooks import answers, shown

    text = ""
    if found:
        # Only now, with news: the configuration (``inject.max_chars``) and the text.
        from claude_fanout.config import load_config
        from claude_fanout.hooks import report

        limit = load_config(ctx.project).inject_max_chars
        text = report.news_message(found, limit=limit, project=ctx.project, now=ctx.now)
    message = shown.join(person)
    if text:
        return answers.context("PostToolUse", text, shown=message)
    return answers.show(message) if message else None


def _started_by_bash(ctx: HookContext) -> list[str]:
    """A run the Conductor started itself (``fanout run --detach`` in a Bash call): a live run
    with no Conductor session, created while the call ran, whose id the call printed. Shown
    once, like any start (``fanout status`` of someone else's run names it but started none)."""
    response = ctx.payload.get("tool_response")
    output = response.get("stdout") if isinstance(response, dict) else response
    if ctx.session_id is None or not isinstance(output, str):
        return []
    took = ctx.payload.get("duration_ms")
    window = took / 1000 if isinstance(took, int | float) and took >= 0 else 600.0
    since = ctx.now - window - defaults.SHOWN_BASH_SLACK_S
    named = [
        (path, status)
        for path, status in ctx.runs()
        if not (status.conductor or {}).get("session_id")
        and not status.state.terminal
        and (status.created or 0.0) >= since
        and status.run_id in output
    ]
    if not named:
        return []
    from claude_fanout.hooks import shown
    from claude_fanout.store.cursor import Cursor

    lines: list[str] = []
    for path, status in named:
        with Cursor(path, ctx.session_id) as cursor:
            if shown.take(cursor, shown.START):
                lines.extend(shown.started(status.run_id, shown.task_summaries(path)))
    return lines
