"""`fanout doctor --probe` against the real CLI: nothing fails on the locked one, exactly what an
older release lacks fails on it (run under ``scripts/compat``), and a shim around the real CLI
that disables one mechanism fails exactly the mechanisms that need it."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout import compat, install
from claude_fanout.claude.cli import cli_path
from claude_fanout.probe import MECHANISMS, resolve_clis
from claude_fanout.testing.fake_api import claude_cli
from tests.helpers import CLIResult

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALL = {m.id for m in MECHANISMS}
HOOKED = {"context", "deny", "updated_input", "stop", "worker", "rewake"}
# What older releases really lack, as this probe measured them: in 2.1.32 and 2.1.139 a valid
# StructuredOutput call does not end the session (the model is called again), and 2.1.32 never
# wakes an idle session from an async rewake hook. 2.1.235 lacks nothing, nor does the range.
KNOWN_GAPS: dict[str, set[str]] = {
    "2.1.32": {"structured_output", "rewake"},
    "2.1.139": {"structured_output"},
    "2.1.235": set(),
}


def known_gaps(cli: str) -> tuple[str | None, set[str]]:
    """``cli``'s version and the mechanisms it is measured to lack; skips the test when nothing
    was measured for it."""
    version = compat.cli_version(cli)
    if version in KNOWN_GAPS:
        return version, KNOWN_GAPS[version]
    if not (version and compat.in_tested_range(version)):
        pytest.skip(f"no measured expectation for Claude Code {version}")
    # In the range: what compat.py's measured table says it lacks.
    lacks = {m.name for m in compat.missing_mechanisms(version)}
    return version, {"structured_output"} if compat.STRUCTURED_OUTPUT_ENDS in lacks else set()


@pytest.fixture
def probe(
    project: Path, tmp_path: Path, fanout: Callable[..., CLIResult]
) -> Callable[..., CLIResult]:
    """`fanout doctor --probe --json` in an installed project, its scratch under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    install.install(scope="local", project=project, home=home)
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    def run(*args: str, **env: str) -> CLIResult:
        return fanout(
            "doctor",
            "--probe",
            "--json",
            *args,
            timeout=110,
            env={"HOME": str(home), "TMPDIR": str(scratch), **env},
        )

    return run


def failing(result: CLIResult) -> set[str]:
    data = result.json()
    assert [c for c in data["checks"] if c["status"] == "fail"] == []
    mechanisms = data["probe"]["mechanisms"]
    assert {m["id"] for m in mechanisms} == ALL
    for m in mechanisms:
        assert m["detail"]
        assert (m["impact"] is None) == m["ok"]
    return {m["id"] for m in mechanisms if not m["ok"]}


def test_the_probe_reports_what_this_cli_lacks(
    probe: Callable[..., CLIResult], tmp_path: Path
) -> None:
    """The locked CLI lacks nothing. Under ``scripts/compat`` (``FANOUT_CLAUDE_BIN`` = an older
    release) the probe must name exactly what that release lacks."""
    cli = os.path.realpath(cli_path(os.environ))
    version, expected = known_gaps(cli)

    # Run from inside a worker: its depth must not reach the sessions (it would silence hooks).
    result = probe("--cli", cli, FANOUT_DEPTH="1", FANOUT_RUN_DIR=str(tmp_path / "elsewhere"))

    assert result.returncode == (1 if expected else 0), result.stdout + result.stderr
    assert failing(result) == expected
    data = result.json()
    for role in ("conductor", "workers"):
        assert data["probe"]["cli"][role] == {"path": cli, "version": version}
    assert data["probe"]["elapsed_s"] < 60
    assert list((tmp_path / "tmp").iterdir()) == []  # its scratch directory is gone


def write_shim(tmp_path: Path, name: str, body: str) -> Path:
    shim = tmp_path / name
    shim.write_text(body)
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return shim


SHIMS = {
    # Claude Code's own switch: no hook runs at all.
    "no-hooks": (
        f'#!/bin/sh\nexec {claude_cli()} --settings \'{{"disableAllHooks": true}}\' "$@"\n',
        HOOKED,
    ),
    # Headless workers refused (fanout's worker command line: --tools and stream-json output).
    "no-workers": (
        "#!/bin/sh\n"
        'case " $* " in *" --tools "*stream-json*|*stream-json*" --tools "*) exit 1;; esac\n'
        f'exec {claude_cli()} "$@"\n',
        {"worker", "budgets"},
    ),
    # A CLI without structured output: --json-schema is dropped.
    "no-json-schema": (
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        "if '--json-schema' in args:\n"
        "    i = args.index('--json-schema')\n"
        "    del args[i : i + 2]\n"
        f"os.execv({str(claude_cli())!r}, [{str(claude_cli())!r}, *args])\n",
        {"structured_output"},
    ),
}


@pytest.mark.parametrize("shim", list(SHIMS))
def test_a_cli_lacking_a_mechanism_fails_exactly_that_mechanism(
    probe: Callable[..., CLIResult], tmp_path: Path, shim: str
) -> None:
    body, broken = SHIMS[shim]
    cli = write_shim(tmp_path, shim, body)
    _, lacking = known_gaps(str(claude_cli()))  # what the CLI under the shim lacks already

    result = probe("--cli", str(cli))

    assert result.returncode == 1, result.stdout + result.stderr
    assert failing(result) == broken | lacking


def test_without_cli_the_probe_uses_claude_on_path_and_the_workers_cli(tmp_path: Path) -> None:
    workers = os.path.abspath(cli_path({}))  # no FANOUT_CLAUDE_BIN: the bundled CLI
    assert resolve_clis({"PATH": str(tmp_path)}) == (workers, workers)
    claude = write_shim(tmp_path, "claude", "#!/bin/sh\nexit 0\n")
    assert resolve_clis({"PATH": str(tmp_path)}) == (str(claude), workers)
    assert resolve_clis({"PATH": ""}, str(claude)) == (str(claude), str(claude))
    assert resolve_clis({"PATH": ""}, str(tmp_path / "nowhere")) == (None, None)
