"""The depth rule: one place decides when fanout's hooks stay quiet and what a child inherits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from claude_fanout import depth


@pytest.mark.parametrize(
    ("env", "quiet"),
    [
        ({}, False),  # a Conductor
        ({"FANOUT_DEPTH": "1"}, True),  # a worker, default limit 1
        ({"FANOUT_DEPTH": "1", "FANOUT_MAX_DEPTH": "2"}, False),  # conductor.max_depth = 2
        ({"FANOUT_DEPTH": "2", "FANOUT_MAX_DEPTH": "2"}, True),
        ({"FANOUT_DEPTH": "junk"}, False),
        ({"FANOUT_DEPTH": "-3"}, False),
        ({"FANOUT_DEPTH": "1", "FANOUT_MAX_DEPTH": "junk"}, True),  # the default limit
        ({"FANOUT_DEPTH": "1", "FANOUT_MAX_DEPTH": ""}, True),
    ],
)
def test_hooks_are_quiet_at_the_limit(env: dict[str, str], quiet: bool) -> None:
    assert depth.too_deep(env) is quiet


def test_a_child_is_one_level_deeper_and_carries_the_limit() -> None:
    assert depth.child_env({}, limit=2) == {"FANOUT_DEPTH": "1", "FANOUT_MAX_DEPTH": "2"}
    assert depth.child_env({"FANOUT_DEPTH": "1"}, limit=3)["FANOUT_DEPTH"] == "2"
    worker = depth.child_env({}, limit=2)
    assert not depth.too_deep(worker)
    assert depth.too_deep(depth.child_env(worker, limit=2))


def test_the_planner_is_always_at_the_limit() -> None:
    for parent in ({}, {"FANOUT_DEPTH": "1", "FANOUT_MAX_DEPTH": "3"}):
        for limit in (1, 2, 5):
            assert depth.too_deep(depth.quiet_env(parent, limit=limit))


def test_a_conductors_hook_does_not_import_the_rule(tmp_path: Path) -> None:
    code = (
        "import io, sys\n"
        "from claude_fanout.hooks import dispatch\n"
        "dispatch.run(['PreToolUse'], stdin=io.BytesIO(b'{}'), stdout=io.StringIO())\n"
        "print('claude_fanout.depth' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "CLAUDE_PROJECT_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.split() == ["False"]
