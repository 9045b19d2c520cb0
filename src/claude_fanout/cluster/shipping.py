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


def put_cli(ray: Any) -> tuple[str, Any] | None:
    """(file name, object) of the Claude Code CLI this machine's workers would run, put in Ray's
    object store once per run; None when there is none here (the nodes then run their own)."""
    from claude_fanout.claude.cli import runnable_cli

    found = runnable_cli(os.environ)
    if found is None:
        return None
    return os.path.basename(found), ray.put(Path(found).read_bytes())
