"""The JSON answers a hook gives Claude Code, each built here and nowhere else.

Claude Code reads a hook's stdout as JSON: ``hookSpecificOutput`` carries a PreToolUse decision
(``deny``, or ``allow`` with an ``updatedInput``) and the ``additionalContext`` the model gets
after a tool call, a prompt or a session start; a Stop hook's ``{"decision": "block"}`` holds the
turn with a ``reason`` for the model. Any answer may carry a ``systemMessage``, which Claude Code
shows the person and does not send to the model: each builder's ``shown`` (``hooks/shown.py``
writes it), and ``show`` for an answer that only shows. ``wake`` is fanout's own: ``dispatch.py``
turns it into the async Rewake hook's exit 2, whose stderr wakes the idle session (it cannot
show anything: ``shown.post`` keeps that for the next prompt). A handler returns None when it has
nothing to say.

Imported only by a hook that answers: a tool call that is allowed, with nothing new, never loads it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WAKE = "wake"


def deny(reason: str, *, shown: str | None = None) -> dict[str, Any]:
    """PreToolUse: refuse the tool call; ``reason`` goes to the model."""
    answer = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    }
    return _with_shown(answer, shown)


def rewrite(updated_input: dict[str, Any], reason: str) -> dict[str, Any]:
    """PreToolUse: allow the tool call with ``updated_input`` in place of what the model sent."""
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "allow",
            "permissionDecisionReason": reason,
            "updatedInput": updated_input,
        }
    }


def context(event: str, text: str, *, shown: str | None = None) -> dict[str, Any]:
    """PostToolUse, UserPromptSubmit, SessionStart: ``text`` added to the model's context."""
    answer = {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}
    return _with_shown(answer, shown)


def block(reason: str, *, shown: str | None = None) -> dict[str, Any]:
    """Stop: hold the turn; ``reason`` goes to the model, ``shown`` (if any) to the person."""
    return _with_shown({"decision": "block", "reason": reason}, shown)


def show(shown: str) -> dict[str, Any]:
    """Any event: nothing for the model, ``shown`` for the person."""
    return {"systemMessage": shown}


def _with_shown(answer: dict[str, Any], shown: str | None) -> dict[str, Any]:
    if shown:
        answer["systemMessage"] = shown
    return answer


def wake(text: str) -> dict[str, Any]:
    """Rewake: wake the idle session with ``text`` (exit 2, ``text`` on stderr)."""
    return {WAKE: text}


def wake_text(answer: dict[str, Any]) -> str | None:
    """The text of a ``wake`` answer; None for any other answer."""
    return str(answer[WAKE]) if WAKE in answer else None
