"""The environment of a headless Claude Code session fanout starts (a worker, the planner), the
setting sources it reads, and fanout's depth marker.

Nesting: a worker is usually a descendant of a Claude Code session (Conductor -> hook ->
supervisor -> worker) and would inherit the markers Claude Code gives its hooks (``CLAUDECODE=1``,
``CLAUDE_CODE_CHILD_SESSION=1``, ``CLAUDE_CODE_SESSION_ID`` ...). The CLI reads them to mark a
session as the parent's child (lineage, prompt history, persistence); a worker is a session of its
own, so they are removed from its environment (:data:`PARENT_SESSION_VARS`).

Depth: fanout's own marker, ``FANOUT_DEPTH``, is what tells a worker from a Conductor; the rule
and its variables live in ``depth.py``, which the planner's environment here uses too.

Setting sources: ``project`` and ``local`` only. The project's ``.claude/settings.json`` and
``.claude/settings.local.json`` are read, so the project's hooks (fanout's own among them) run for
worker sessions too, and ``CLAUDE.md`` is loaded. The user's ``~/.claude/settings.json`` is *not*
read: personal hooks, permission rules, model or env overrides do not leak into workers.
Credentials are not a setting source and are still found. Override with
``FANOUT_CLAUDE_SETTING_SOURCES`` (comma list, ``all`` for the CLI's default of every source, empty
for none).

Stdlib only: the planner and the hooks read this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "DEFAULT_SETTING_SOURCES",
    "PARENT_SESSION_VARS",
    "SETTING_SOURCES_ENV",
    "planner_env",
    "setting_sources",
    "worker_env",
]

SETTING_SOURCES_ENV: Final = "FANOUT_CLAUDE_SETTING_SOURCES"
DEFAULT_SETTING_SOURCES: Final = ("project", "local")

# Markers a Claude Code session puts into its children's environment (hooks, Bash). Removed
# from the worker's environment so its CLI starts as a session of its own.
PARENT_SESSION_VARS: Final = (
    "CLAUDECODE",
    "CLAUDE_CODE_CHILD_SESSION",
    "CLAUDE_CODE_SESSION_ID",
    "CLAUDE_CODE_SESSION_ATTENDED",
    "CLAUDE_CODE_LAUNCHED_BY_SESSION_IDS",
    "CLAUDE_CODE_CHILD_NOTES_DIR",
    "CLAUDE_CODE_SSE_PORT",
    "CLAUDE_PID",
    # A hook's own channel back to its Claude Code (2.1.x): never the worker's.
    "CLAUDE_CODE_MESSAGING_SOCKET",
    "CLAUDE_CODE_MESSAGING_TOKEN",
    "CLAUDE_ENV_FILE",
    "CLAUDE_EFFORT",
    "CLAUDE_CODE_ENTRYPOINT",
)


def worker_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without the markers of a parent Claude Code session."""
    return {k: v for k, v in base.items() if k not in PARENT_SESSION_VARS}


def setting_sources(env: Mapping[str, str]) -> list[str] | None:
    """The setting sources a session started from ``env`` reads (None: the CLI's default, all)."""
    raw = env.get(SETTING_SOURCES_ENV)
    if raw is None:
        return list(DEFAULT_SETTING_SOURCES)
    raw = raw.strip()
    if raw == "all":
        return None
    return [s.strip() for s in raw.split(",") if s.strip()]


def planner_env(base: Mapping[str, str], *, limit: int | None = None) -> dict[str, str]:
    """The planner session's environment: ``base`` without the parent session's markers, one
    level deeper than the Conductor and at least at the hooks' depth limit (``limit``, default:
    the one ``base`` carries), so its fanout hooks do nothing."""
    from claude_fanout import depth

    env = worker_env(base)
    env.update(depth.quiet_env(base, limit=depth.max_depth(base) if limit is None else limit))
    return env
