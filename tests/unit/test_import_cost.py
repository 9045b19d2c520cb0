"""The modules hooks will import must stay standard-library only: every tool call pays for them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import claude_fanout

STDLIB_ONLY = [
    "claude_fanout",
    "claude_fanout.claude.cli",  # the planner, inside a hook, finds and starts the CLI
    "claude_fanout.claude.command",
    "claude_fanout.claude.env",
    "claude_fanout.claude.stream",
    "claude_fanout.cli.main",  # rich only where output is drawn: `fanout publish` never loads it
    "claude_fanout.cluster",  # which backend a run uses: decided without importing ray
    "claude_fanout.cluster.guard",  # a task's guard on a Ray node
    "claude_fanout.cluster.node",  # ray only inside the remote function, on a node
    "claude_fanout.config",
    "claude_fanout.depth",
    "claude_fanout.doctor",  # plain `fanout doctor` stays well under a second
    "claude_fanout.hooks.answers",
    "claude_fanout.hooks.prompt",
    "claude_fanout.hooks.report",
    "claude_fanout.hooks.statusline",  # Claude Code runs the status line every few seconds
    "claude_fanout.hooks.shown",
    "claude_fanout.plan",
    "claude_fanout.planner",
    "claude_fanout.planning",
    "claude_fanout.pids",
    "claude_fanout.procs",
    "claude_fanout.runner",
    "claude_fanout.runtime.control",
    "claude_fanout.states",
    "claude_fanout.store.cursor",
    "claude_fanout.store.eventlog",
    "claude_fanout.store.rundir",
    "claude_fanout.store.state",
    "claude_fanout.store.status",
    "claude_fanout.runtime.scheduler",
    "claude_fanout.text",  # the hooks' report formats durations and cuts with it
    "claude_fanout.runtime.watchdog",
    "claude_fanout.settings_statusline",
]


def test_runtime_modules_import_no_third_party_package() -> None:
    code = (
        "import sys\n"
        f"for name in {STDLIB_ONLY!r}:\n"
        "    __import__(name)\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print('\\n'.join(sorted(roots)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    third_party = [
        root
        for root in out
        if root not in sys.stdlib_module_names
        and root not in ("claude_fanout", "__main__")
        and not root.startswith("_")
    ]
    assert third_party == []
    assert "rich" not in out and "psutil" not in out and "claude_agent_sdk" not in out


def test_layers_import_one_way() -> None:
    """delivery (what a session was told) never loads report (the text), and planning never
    loads a hook: the text is built on the facts, and hooks call planning, not the reverse."""
    code = (
        "import sys\n"
        "import claude_fanout.hooks.delivery, claude_fanout.planning, claude_fanout.planner\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('claude_fanout.hooks'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "claude_fanout.hooks.report" not in out
    assert out == ["claude_fanout.hooks", "claude_fanout.hooks.delivery"]


def test_the_status_line_loads_only_what_drawing_it_needs() -> None:
    """Claude Code runs the status line every few seconds: its path (the segment, the runs it
    reads) loads no process spawning, typing, dataclasses, pathlib, config or hook handlers."""
    code = (
        "import sys\n"
        "import claude_fanout.hooks.statusline, claude_fanout.hooks.context\n"
        "import claude_fanout.usage, claude_fanout.text\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = {
        "subprocess",
        "typing",
        "dataclasses",
        "pathlib",
        "tomllib",
        "claude_fanout.config",
        "claude_fanout.hooks.dispatch",
        "claude_fanout.hooks.report",
    }
    assert heavy.isdisjoint(out), sorted(heavy.intersection(out))


# The only modules that import ray (the ``ray`` extra): the supervisor's seam, and the node's side
# inside the remote function.
RAY_IMPORTERS = {"cluster/seam.py", "cluster/node.py"}


def test_only_the_ray_backend_imports_ray() -> None:
    src = Path(claude_fanout.__file__).parent
    importers = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(name == "ray" or name.startswith("ray.") for name in names):
                importers.add(path.relative_to(src).as_posix())
    assert importers == RAY_IMPORTERS


def test_without_the_ray_backend_in_use_nothing_loads_ray() -> None:
    """Every module but the seam imported (the CLI, the hooks, the supervisor's runtime):
    ray stays unloaded, so a project without the extra never needs it."""
    src = Path(claude_fanout.__file__).parent
    modules = sorted(
        "claude_fanout." + ".".join(path.relative_to(src).with_suffix("").parts)
        for path in src.rglob("*.py")
        if path.name not in ("__main__.py", "__init__.py")
        and path.relative_to(src).as_posix() != "cluster/seam.py"
    )
    code = (
        f"import sys\nfor name in {modules!r}:\n    __import__(name)\nprint('ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["False"]
