"""claude-fanout: parallel workers for Claude Code, steered through its own hooks.

Kept import-free on purpose: hooks import submodules of this package on every tool call, so
nothing may load here (not even ``typing``: 3.7 ms of a hook's budget).
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> object:
    if name == "__version__":
        from claude_fanout._version import __version__

        return __version__
    raise AttributeError(f"module 'claude_fanout' has no attribute {name!r}")
