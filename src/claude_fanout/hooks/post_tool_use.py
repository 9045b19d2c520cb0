"""PostToolUse: tell the Conductor what its workers finished since it last heard."""

from __future__ import annotations

from claude_fanout.hooks import delivery

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle(ctx: HookContext) -> dict[str, Any] | None:
    found = delivery.collect_news(ctx, ctx.session_runs())
    if not found:
        return None
    # Only now, with news: the configuration (``inject.max_chars``), the text and the answer.
    from claude_fanout.config import load_config
    from claude_fanout.hooks import answers, report

    limit = load_config(ctx.project).inject_max_chars
    text = report.news_message(found, limit=limit, project=ctx.project, now=ctx.now)
    return answers.context("PostToolUse", text) if text else None
