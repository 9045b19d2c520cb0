"""PostToolUse: tell the Conductor what its workers finished since it last heard."""

from __future__ import annotations

from claude_fanout.hooks import delivery

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle(ctx: HookContext) -> dict[str, Any] | None:
    text = tell_news(ctx, limit=_limit(ctx))
    if not text:
        return None
    return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": text}}


def _limit(ctx: HookContext) -> int:
    from claude_fanout import defaults

    return defaults.INJECT_MAX_CHARS


def tell_news(ctx: HookContext, *, limit: int) -> str:
    """Results and notices of this session's runs it has not been told yet (marking them told)."""
    if ctx.session_id is None:
        return ""
    sections: list[str] = []
    for run_path, status in ctx.session_runs():
        with delivery.Cursor(run_path, ctx.session_id) as cursor:
            finished, notices = delivery.news(run_path, status, cursor)
        if not finished and not notices:
            continue
        head = f"[fanout] run {status.run_id}: " + (
            delivery.progress(status, ctx.now) or "all workers are done"
        )
        body = delivery.describe(run_path, status, finished, project=ctx.project, budget=limit // 2)
        lines = [head, body] if body else [head]
        lines += [f"notice from {note}" for note in notices]
        sections.append("\n".join(lines))
    if not sections:
        return ""
    return delivery.cap("\n\n".join(sections) + "\n" + delivery.DATA_NOTE, limit)
