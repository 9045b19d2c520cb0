"""`fanout doctor --probe` against the real CLI: it passes on the bundled one, and it catches a
CLI that lacks a mechanism (a shim around the real CLI that disables exactly one)."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout import compat, settings
from claude_fanout.fake_api import bundled_cli
from claude_fanout.probe import MECHANISMS
from tests.helpers import CLIResult

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ALL = {m.id for m in MECHANISMS}
HOOKED = {"context", "deny", "updated_input", "stop", "worker", "rewake"}
# Older releases that really lack a mechanism, as this probe measured them: in 2.1.32 and 2.1.139
# a valid StructuredOutput call does not end the session (the model is called again; 2.1.235
# ends it), and 2.1.32 never wakes an idle session from an async rewake hook.
KNOWN_GAPS = {
    "2.1.32": {"structured_output", "rewake"},
    "2.1.139": {"structured_output"},
}
OLD_CLIS_ENV = "FANOUT_PROBE_OLD_CLIS"


@pytest.fixture
def probe(
    project: Path, tmp_path: Path, fanout: Callable[..., CLIResult]
) -> Callable[..., CLIResult]:
    """`fanout doctor --probe --json` in an installed project, its scratch under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    settings.install(scope="local", project=project, home=home)
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


def test_every_mechanism_works_on_the_bundled_cli(
    probe: Callable[..., CLIResult], tmp_path: Path
) -> None:
    # Run from inside a worker: its depth must not reach the sessions (it would silence hooks).
    result = probe(FANOUT_DEPTH="1", FANOUT_RUN_DIR=str(tmp_path / "elsewhere"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert failing(result) == set()
    data = result.json()
    cli = data["probe"]["cli"]["workers"]
    assert cli["path"] == str(bundled_cli()) and cli["version"] == compat.cli_version(cli["path"])
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
        f'#!/bin/sh\nexec {bundled_cli()} --settings \'{{"disableAllHooks": true}}\' "$@"\n',
        HOOKED,
    ),
    # A CLI without structured output: --json-schema is dropped.
    "no-json-schema": (
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        "if '--json-schema' in args:\n"
        "    i = args.index('--json-schema')\n"
        "    del args[i : i + 2]\n"
        f"os.execv({str(bundled_cli())!r}, [{str(bundled_cli())!r}, *args])\n",
        {"structured_output"},
    ),
}


@pytest.mark.parametrize("shim", list(SHIMS))
def test_a_cli_lacking_a_mechanism_fails_exactly_that_mechanism(
    probe: Callable[..., CLIResult], tmp_path: Path, shim: str
) -> None:
    body, broken = SHIMS[shim]
    cli = write_shim(tmp_path, shim, body)

    result = probe("--cli", str(cli))

    assert result.returncode == 1, result.stdout + result.stderr
    assert failing(result) == broken


@pytest.mark.skipif(
    not os.environ.get(OLD_CLIS_ENV),
    reason=f"{OLD_CLIS_ENV}: paths of older Claude Code CLIs (claude-agent-sdk wheels' _bundled)",
)
def test_older_clis_fail_what_they_really_lack(probe: Callable[..., CLIResult]) -> None:
    checked = 0
    for cli in os.environ[OLD_CLIS_ENV].split(os.pathsep):
        version = compat.cli_version(cli)
        if version not in KNOWN_GAPS:
            continue
        result = probe("--cli", cli)
        assert result.returncode == 1
        assert failing(result) == KNOWN_GAPS[version], version
        checked += 1
    assert checked, f"none of {os.environ[OLD_CLIS_ENV]} is one of {sorted(KNOWN_GAPS)}"
