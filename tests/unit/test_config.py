"""`.claude/fanout.toml`: defaults, validation, and the cache that keeps tomllib off hooks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from claude_fanout import defaults
from claude_fanout.config import Config, ConfigError, load_config


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".claude" / "runs").mkdir(parents=True)
    return tmp_path


def write(project: Path, text: str) -> None:
    (project / ".claude" / "fanout.toml").write_text(text)


def test_no_file_means_defaults(project: Path) -> None:
    config = load_config(project)
    assert config == Config()
    assert config.stop_wait_s == defaults.STOP_WAIT_S
    assert config.max_live_workers == defaults.MAX_LIVE_WORKERS


def test_every_key_is_read(project: Path) -> None:
    write(
        project,
        "[limits]\nmax_live_workers = 3\n[stop]\nwait_s = 1.5\nmax_blocks = 2\n"
        "max_hold_s = 60\n[conductor]\ngrace_s = 0\nmax_depth = 2\n[inject]\nmax_chars = 900\n",
    )
    assert load_config(project) == Config(
        max_live_workers=3,
        stop_wait_s=1.5,
        stop_max_blocks=2,
        stop_max_hold_s=60.0,
        conductor_grace_s=0.0,
        max_depth=2,
        inject_max_chars=900,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[stop]\nwait = 3\n", "unknown key stop.wait"),
        ("[limits]\nmax_live_workers = 0\n", "limits.max_live_workers must be a whole number >= 1"),
        ("[limits]\nmax_live_workers = 2.5\n", "must be a whole number"),
        ("[stop]\nwait_s = true\n", "stop.wait_s must be a number >= 0"),
        ("[stop]\nwait_s = '3'\n", "stop.wait_s must be a number"),
        ("stop = 3\n", "[stop] must be a table"),
        ("[stop\n", "is not valid TOML"),
    ],
)
def test_bad_files_are_one_line_errors(project: Path, text: str, fragment: str) -> None:
    write(project, text)
    with pytest.raises(ConfigError) as caught:
        load_config(project)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_edit_is_seen_despite_the_cache(project: Path) -> None:
    path = project / ".claude" / "fanout.toml"
    write(project, "[stop]\nwait_s = 1\n")
    assert load_config(project).stop_wait_s == 1.0
    write(project, "[stop]\nwait_s = 22\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert load_config(project).stop_wait_s == 22.0


def test_the_second_load_does_not_import_tomllib(project: Path) -> None:
    write(project, "[stop]\nwait_s = 4\n")
    code = (
        "import sys\nfrom claude_fanout.config import load_config\n"
        f"c = load_config({str(project)!r})\n"
        "print(c.stop_wait_s, 'tomllib' in sys.modules)\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["4.0", "True"], ["4.0", "False"]]


WORKER_KEYS = """
[limits]
max_live_claude_workers = 2
claude_start_interval_s = 0.25
rate_limit_retries = 0
rate_limit_backoff_s = 3
[budget]
task_max_cost_usd = 0.5
task_max_turns = 20
run_max_cost_usd = 4
[worktree]
setup = "npm ci --silent"
[merge]
auto = false
"""


def test_worker_limits_budgets_worktree_and_merge_keys_are_read_and_cached(
    project: Path,
) -> None:
    write(project, WORKER_KEYS)
    for _ in range(2):  # the file, then the cache
        config = load_config(project)
        assert (config.max_live_claude_workers, config.claude_start_interval_s) == (2, 0.25)
        assert (config.rate_limit_retries, config.rate_limit_backoff_s) == (0, 3.0)
        assert (config.task_max_cost_usd, config.task_max_turns) == (0.5, 20)
        assert (config.run_max_cost_usd, config.run_max_turns) == (4.0, None)
        assert (config.worktree_setup, config.merge_auto) == ("npm ci --silent", False)
    assert Config().merge_auto is True
    assert Config().task_max_cost_usd is None  # no limit unless set


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[budget]\ntask_max_cost_usd = 0", "budget.task_max_cost_usd must be an amount"),
        ("[budget]\nrun_max_turns = 1.5", "budget.run_max_turns must be a whole number > 0"),
        ("[merge]\nauto = 1", "merge.auto must be true or false"),
        ("[worktree]\nsetup = 3", "worktree.setup must be a shell command"),
        ("[limits]\nmax_live_claude_workers = 0", "limits.max_live_claude_workers"),
    ],
)
def test_bad_worker_keys_name_the_key(project: Path, text: str, fragment: str) -> None:
    write(project, text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(project)


def test_the_documented_example_is_the_declared_keys() -> None:
    """docs/cli.md shows ``example()``, which every key of the file is in, and the example
    parses to the defaults except where it shows another value."""
    import tomllib

    from claude_fanout.config import KEYS, example, parse_config

    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert "```toml\n" + example() + "\n```" in docs
    parsed = parse_config(tomllib.loads(example()))
    for spec in KEYS:
        shown = getattr(parsed, spec.field)
        assert shown == (
            spec.default if spec.example is None else tomllib.loads(f"v = {spec.example}")["v"]
        ), spec.field
    assert len(parsed.triggers) == 1
