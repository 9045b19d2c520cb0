"""The depth rule: how deep a session sits below the Conductor, and when fanout's hooks stay quiet.

A Conductor has no ``FANOUT_DEPTH``; each process fanout starts for it (a worker, the planner)
gets its parent's depth plus one, and ``FANOUT_MAX_DEPTH``, the project's ``conductor.max_depth``.
fanout's hooks do nothing in a session at that depth or deeper: with the default of 1 a worker's
own Claude Code session never fans out or gets steered; 2 lets workers run runs of their own.

Standard library only and imported by the hooks only when ``FANOUT_DEPTH`` is set: a
Conductor's hook never pays for it.
"""

from __future__ import annotations

from claude_fanout import defaults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEPTH_ENV = "FANOUT_DEPTH"
MAX_DEPTH_ENV = "FANOUT_MAX_DEPTH"


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name, "") or default)
    except ValueError:
        return default


def depth(env: Mapping[str, str]) -> int:
    """This process's depth: 0 for a Conductor (or a value that is not a number)."""
    return max(0, _number(env, DEPTH_ENV, 0))


def max_depth(env: Mapping[str, str]) -> int:
    """The depth at which fanout's hooks stop working, as the process that started this one
    passed it on (``defaults.MAX_DEPTH`` when none did)."""
    return _number(env, MAX_DEPTH_ENV, defaults.MAX_DEPTH)


def too_deep(env: Mapping[str, str]) -> bool:
    """Whether fanout's hooks do nothing here: a session fanout started, at the depth limit."""
    current = depth(env)
    return current > 0 and current >= max_depth(env)


def child_env(env: Mapping[str, str], *, limit: int) -> dict[str, str]:
    """The depth variables of a process one level below ``env`` (a worker), under ``limit``."""
    return {DEPTH_ENV: str(depth(env) + 1), MAX_DEPTH_ENV: str(limit)}


def quiet_env(env: Mapping[str, str], *, limit: int) -> dict[str, str]:
    """The depth variables of a process whose fanout hooks must do nothing (the planner): one
    level below ``env`` and at least at ``limit``."""
    return {DEPTH_ENV: str(max(depth(env) + 1, limit, 1)), MAX_DEPTH_ENV: str(limit)}
