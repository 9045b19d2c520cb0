"""What a run on Ray ships to the nodes when the project says so (``executor.ship``, default on):
this supervisor's claude-fanout, as the run's runtime environment, and the Claude Code CLI its
workers would run, through Ray's object store. The node's side of the CLI is
:func:`claude_fanout.cluster.node.ensure_cli`.

The CLI is not a runtime_env package: Ray zips packages without compression and keeps them in the
head's GCS, capped at 512 MiB (the gRPC message size), and the CLI bundled in the claude-agent-sdk
wheel is one ~384 MiB executable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def shipped_code() -> dict[str, Any]:
    """The runtime environment that gives every node this supervisor's claude-fanout: the
    package directory as a ``py_modules`` entry (pure Python, ~0.85 MB zipped; Ray uploads it
    once per content, and each node unpacks it once and puts it first on its workers'
    ``PYTHONPATH``)."""
    import claude_fanout

    return {
        "py_modules": [str(Path(claude_fanout.__file__).resolve().parent)],
        "excludes": ["__pycache__", "*.pyc"],
    }


def shippable_cli(env: Mapping[str, str]) -> tuple[str | None, str]:
    """(path, what) of the Claude Code CLI a run ships: the one this machine's workers would run
    when it is one native executable; else None and why not (the nodes then run their own). A
    script (``#!``: an npm installation's ``cli.js`` needs its package and Node beside it) is not
    shipped alone."""
    from claude_fanout.claude.cli import runnable_cli

    found = runnable_cli(env)
    if found is None:
        return None, "none found here"
    with open(found, "rb") as file:
        if file.read(2) == b"#!":
            return None, f"{found} is a script, which needs more than itself"
    return found, found


def put_cli(ray: Any) -> tuple[str, Any] | None:
    """(file name, object) of :func:`shippable_cli`, put in Ray's object store once per run; None
    when there is none to ship."""
    found, _ = shippable_cli(os.environ)
    if found is None:
        return None
    return os.path.basename(found), ray.put(Path(found).read_bytes())
