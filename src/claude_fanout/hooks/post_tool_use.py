"""PostToolUse: tell the Conductor what its workers finished since it last heard."""

from __future__ import annotations

from claude_fanout.hooks import delivery

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from claude_fanout.hooks.context import HookContext


def handle(ctx: HookContext) -> dict[str, Any] | None:
    text = delivery.tell_news(ctx)
    if not text:
        return None
    return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": text}}
