"""The one lookup of the Claude Code CLI fanout starts (workers, the planner, the probe, the demo
and every test that drives the real CLI) and the check of its version against the measured range.

``$FANOUT_CLAUDE_BIN`` when set is the one switch; else the CLI bundled in the
``claude-agent-sdk`` wheel, found by path without importing the SDK; else ``claude`` on PATH.
Stdlib only: the planner runs inside a hook.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from claude_fanout.errors import FanoutError

__all__ = [
    "CLAUDE_BIN_ENV",
    "CLINotFoundError",
    "bundled_cli_path",
    "cli_path",
    "find_cli",
    "require_cli",
    "runnable_cli",
    "version_warning",
]

CLAUDE_BIN_ENV: Final = "FANOUT_CLAUDE_BIN"


class CLINotFoundError(FanoutError):
    """No runnable Claude Code CLI where fanout looked; the message says how to provide one."""


def bundled_cli_path(site_dirs: Iterable[str] | None = None) -> str | None:
    """The CLI bundled in the ``claude-agent-sdk`` wheel, found by path: importing the SDK costs
    0.5 s, and a hook (``python -I -S``) has no site-packages on ``sys.path`` to import it from."""
    name = "claude.exe" if os.name == "nt" else "claude"
    for site in _site_dirs() if site_dirs is None else site_dirs:
        candidate = os.path.join(site, "claude_agent_sdk", "_bundled", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _site_dirs() -> list[str]:
    """Where the SDK wheel may be: beside this package, then the interpreter's site-packages.

    Under ``-S`` a virtual environment's ``sys.prefix`` is still the base interpreter's (``site``
    is what reads ``pyvenv.cfg``), so the environment is found from the interpreter's own path.
    """
    package_parent = Path(__file__).resolve().parents[2]
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))]
    roots += [sys.prefix, sys.exec_prefix]
    dirs = [str(package_parent)]
    for root in dict.fromkeys(roots):
        dirs += [os.path.join(root, lib, version, "site-packages") for lib in ("lib", "lib64")]
        dirs.append(os.path.join(root, "Lib", "site-packages"))
    dirs += [entry for entry in sys.path if entry]
    return list(dict.fromkeys(dirs))


def find_cli(
    env: Mapping[str, str], *, site_dirs: Iterable[str] | None = None, search_path: bool = True
) -> str | None:
    """The Claude Code CLI fanout runs: ``$FANOUT_CLAUDE_BIN`` from ``env`` (as given, checked by
    the caller), else the one bundled in the claude-agent-sdk wheel, else ``claude`` on ``env``'s
    PATH; None when there is none. The one switch: workers, the planner, the demo and every test
    that drives the real CLI go through here, so setting ``FANOUT_CLAUDE_BIN`` selects the CLI
    for all of them."""
    chosen = env.get(CLAUDE_BIN_ENV)
    if chosen:
        return chosen
    found = bundled_cli_path(site_dirs)
    if found is None and search_path:
        import shutil

        found = shutil.which("claude", path=env.get("PATH", os.defpath))
    return found


def cli_path(env: Mapping[str, str]) -> str:
    """:func:`find_cli`, or plain ``claude`` (starting it then fails with a clear error)."""
    return find_cli(env) or "claude"


def require_cli(
    env: Mapping[str, str], *, site_dirs: Iterable[str] | None = None, search_path: bool = True
) -> str:
    """:func:`find_cli`, checked to be there before anything is started; CLINotFoundError (one
    line: what is missing and how to provide it) when it is not."""
    found = find_cli(env, site_dirs=site_dirs, search_path=search_path)
    chosen = env.get(CLAUDE_BIN_ENV)
    if chosen and not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
        raise CLINotFoundError(
            f"{CLAUDE_BIN_ENV}={chosen} is not an executable file; point it at the Claude Code CLI"
        )
    if found is None:
        raise CLINotFoundError(
            f"found no Claude Code CLI (set {CLAUDE_BIN_ENV}, or install claude-agent-sdk, which "
            "bundles one)"
        )
    return found


def runnable_cli(env: Mapping[str, str]) -> str | None:
    """The absolute path of the CLI workers would run (a bare name looked up on ``env``'s PATH),
    or None when that is not an executable file."""
    import shutil

    found = cli_path(env)
    if os.path.sep not in found:
        found = shutil.which(found, path=env.get("PATH")) or ""
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        return None
    return os.path.abspath(found)


def version_warning(env: Mapping[str, str]) -> str | None:
    """What the CLI workers would run is too old for, against :mod:`claude_fanout.compat`'s
    measured range and per-mechanism minimums (asks it ``--version``); None when nothing."""
    from claude_fanout import compat

    return compat.cli_warning(cli_path(env))
