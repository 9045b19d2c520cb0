"""The package as shipped: the wheel built from this tree, installed into a clean venv, used there.

Everything else in the suite runs the editable install, which reads package data (the ``/fanout``
command file) and the hook entry script straight from ``src/``. Here the wheel is built
(``pip wheel``, build isolation as a user's pip would do it), installed with the pinned
dependencies into a venv that sees nothing of this one, and driven only through what it put on
its ``bin/``: ``fanout install`` in a scratch git repository, one hook call through the command
that install wrote, and one small shell run. About 30 s, most of it installing the dependencies
(from pip's cache when it holds them; PyPI otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import pids
from claude_fanout.install import COMMAND_MARKER
from tests.helpers import git

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "tests" / "fixtures" / "hooks" / "user_prompt_submit.slash_fanout.json"
# What the wheel is built from: the files a source distribution would carry, nothing the
# editable install or the test run leaves in the tree.
NOT_SHIPPED = shutil.ignore_patterns(
    ".*", "*.egg-info", "__pycache__", "build", "dist", "tests", "benchmarks", "tools", "docs"
)


def _build_and_install(work: Path) -> Path:
    """Build the wheel from a copy of the tree, install it into a fresh venv; its ``bin/``."""
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SHIPPED)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert built.returncode == 0, f"building the wheel failed:\n{built.stderr}"
    (wheel,) = (work / "dist").glob("claude_fanout-*.whl")
    venv.create(work / "venv", with_pip=False, symlinks=os.name != "nt")
    python = work / "venv" / "bin" / "python"
    # --no-compile: bytecode for ~450 MB of dependencies is time spent on nothing tested here.
    into_venv = [*pip, "--python", str(python), "install", "--no-compile"]
    done = subprocess.run(
        [*into_venv, "-c", str(REPO / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"installing the wheel failed:\n{done.stderr}"
    return work / "venv" / "bin"


def _env(home: Path, bin_dir: Path) -> dict[str, str]:
    """Nothing of this test run's interpreter, venv or fanout settings; no Claude Code anywhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FANOUT_", "CLAUDE_", "PYTHON", "VIRTUAL_ENV"))
        or key == pids.PORTABLE_ENV
    }
    env.update(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        FANOUT_CLAUDE_BIN="/bin/false",
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
    )
    return env


def _fanout(
    bin_dir: Path, project: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "fanout"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def _hook_commands(settings_file: Path, event: str) -> list[str]:
    settings: dict[str, Any] = json.loads(settings_file.read_text())
    return [hook["command"] for group in settings["hooks"][event] for hook in group["hooks"]]


def test_the_installed_wheel_installs_answers_a_hook_and_runs_a_plan(
    project: Path, tmp_path: Path
) -> None:
    work = tmp_path / "wheel"
    home = tmp_path / "home"
    home.mkdir()
    git(project, "init", "-q")
    try:
        bin_dir = _build_and_install(work)
        env = _env(home, bin_dir)
        site = next((work / "venv" / "lib").glob("python3*/site-packages"))

        # Package data, as shipped.
        shipped = site / "claude_fanout" / "commands" / "fanout.md"
        assert shipped.read_bytes() == (REPO / "src/claude_fanout/commands/fanout.md").read_bytes()

        installed = _fanout(bin_dir, project, env, "install")
        assert installed.returncode == 0, installed.stderr
        command_file = project / ".claude" / "commands" / "fanout.md"
        assert COMMAND_MARKER in command_file.read_text()
        settings_file = project / ".claude" / "settings.local.json"
        (prompt_hook,) = _hook_commands(settings_file, "UserPromptSubmit")
        assert str(site / "claude_fanout" / "hooks" / "entry.py") in prompt_hook
        assert str(REPO) not in settings_file.read_text()
        assert ".claude/settings.local.json" not in git(project, "status", "--porcelain", "-uall")

        # One real hook call: a recorded payload, moved to this project, asking for a plan.
        hook_plan = {
            "version": 1,
            "tasks": [{"id": "H1", "kind": "shell", "argv": ["echo", "hooked"]}],
        }
        (project / "hook-plan.json").write_text(json.dumps(hook_plan))
        payload = json.loads(RECORDED.read_text())
        payload.update(cwd=str(project), prompt="/fanout --plan hook-plan.json")
        answer = subprocess.run(
            ["sh", "-c", prompt_hook],
            input=json.dumps(payload),
            cwd=project,
            env={**env, "CLAUDE_PROJECT_DIR": str(project)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (answer.returncode, answer.stderr) == (0, "")
        context = json.loads(answer.stdout)["hookSpecificOutput"]["additionalContext"]
        assert context.startswith("[fanout] Started run "), context
        hook_run = context.removeprefix("[fanout] Started run ").split(":", 1)[0]
        waited = _fanout(bin_dir, project, env, "wait", hook_run, "--timeout", "30")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        logged = _fanout(bin_dir, project, env, "logs", hook_run, "H1")
        assert logged.stdout.splitlines()[-1] == "hooked"  # after the attempt's header line

        # One small run from the command line.
        plan = {"version": 1, "tasks": [{"id": "S1", "kind": "shell", "argv": ["echo", "shipped"]}]}
        (project / "plan.json").write_text(json.dumps(plan))
        ran = _fanout(bin_dir, project, env, "run", "plan.json")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        run_id = ran.stdout.strip().splitlines()[-1]
        status = json.loads(_fanout(bin_dir, project, env, "status", run_id, "--json").stdout)
        assert status["state"] == "succeeded"
        assert _fanout(bin_dir, project, env, "logs", run_id, "S1").stdout.splitlines()[-1] == (
            "shipped"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)  # ~450 MB: the dependencies' wheels unpacked
