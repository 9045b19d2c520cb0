"""The compatibility matrix: every test that drives the real Claude Code CLI, once per CLI version.

    scripts/compat [--markdown docs/compat-table.md] [--cache DIR] TARGET... [-- PYTEST ARGS]

A TARGET is a ``claude-agent-sdk`` version (``0.2.180``: its wheel is downloaded once with
``pip download --no-deps`` and the Claude Code CLI bundled in it unpacked under the cache) or the
path of a ``claude`` executable. Targets run one at a time (the tests already run several CLIs
each); every run is ``pytest -m e2e tests`` (or the given pytest arguments) with
``FANOUT_CLAUDE_BIN`` pointing at the target's CLI, which every test, the executor and the planner
honour. Prints a table (target, Claude Code version, passed, failed, skipped, each failure named)
and, with ``--markdown``, writes it as a Markdown table too. Exit status 0 when every target
passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from claude_fanout.claude.cli import CLAUDE_BIN_ENV
from claude_fanout.compat import cli_version, parse_version

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "claude-fanout"
DEFAULT_PYTEST_ARGS = ("-m", "e2e", "tests")
BUNDLED = "claude_agent_sdk/_bundled/claude"


@dataclass
class Outcome:
    """One target's run: what it was, which Claude Code it is, and what the tests said."""

    target: str
    claude_version: str | None
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed and self.passed > 0


def is_sdk_version(target: str) -> bool:
    """``0.2.180`` names a claude-agent-sdk release; anything else is a path to a CLI."""
    return parse_version(target) is not None and os.sep not in target and not Path(target).exists()


def sdk_cli(version: str, cache: Path) -> Path:
    """The CLI bundled in claude-agent-sdk ``version``, downloaded and unpacked once."""
    cli = cache / "cli" / version / "claude"
    if cli.is_file():
        return cli
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = _wheel(wheels, version)
    if wheel is None:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q"),
                *("--no-deps", "--only-binary=:all:", "-d", str(wheels)),
                f"claude-agent-sdk=={version}",
            ],
            check=True,
        )
        wheel = _wheel(wheels, version)
    if wheel is None:
        raise RuntimeError(f"pip downloaded no claude-agent-sdk {version} wheel into {wheels}")
    with zipfile.ZipFile(wheel) as archive:
        if BUNDLED not in archive.namelist():
            raise RuntimeError(f"{wheel.name} bundles no Claude Code CLI ({BUNDLED})")
        cli.parent.mkdir(parents=True, exist_ok=True)
        partial = cli.with_suffix(".partial")
        with archive.open(BUNDLED) as src, partial.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    partial.chmod(0o755)
    partial.replace(cli)
    return cli


def _wheel(folder: Path, version: str) -> Path | None:
    found = sorted(folder.glob(f"claude_agent_sdk-{version}-*.whl"))
    return found[0] if found else None


def junit_outcome(xml: str, target: str, claude_version: str | None) -> Outcome:
    """Counts and failing test ids (``path::name``) from pytest's ``--junitxml`` report."""
    outcome = Outcome(target, claude_version)
    for case in ElementTree.fromstring(xml).iter("testcase"):
        verdicts = {child.tag for child in case}
        if verdicts & {"failure", "error"}:
            outcome.failed.append(_test_id(case.get("classname", ""), case.get("name", "")))
        elif "skipped" in verdicts:
            outcome.skipped += 1
        else:
            outcome.passed += 1
    return outcome


def _test_id(classname: str, name: str) -> str:
    """``tests.e2e.test_x`` + ``test_y`` -> ``tests/e2e/test_x.py::test_y`` (a class stays a
    ``::`` part: ``tests.unit.test_x.TestY`` -> ``tests/unit/test_x.py::TestY::test_y``)."""
    parts = classname.split(".")
    module = next(
        (i for i in range(len(parts), 0, -1) if parts[i - 1].startswith("test_")), len(parts)
    )
    path = "/".join(parts[:module]) + ".py"
    return "::".join([path, *parts[module:], name])


def run_target(
    target: str, cli: Path, pytest_args: Sequence[str], results: Path, *, env: dict[str, str]
) -> Outcome:
    """The tests once, with ``FANOUT_CLAUDE_BIN=cli``; their log beside the junit report."""
    version = cli_version(str(cli))
    slug = target.replace(os.sep, "_")
    results.mkdir(parents=True, exist_ok=True)
    report, log = results / f"{slug}.xml", results / f"{slug}.log"
    report.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    argv += [f"--junitxml={report}", *pytest_args]
    started = time.monotonic()
    with log.open("w") as out:
        env = {**env, CLAUDE_BIN_ENV: str(cli)}
        subprocess.run(argv, cwd=ROOT, env=env, stdout=out, stderr=out, check=False)
    seconds = time.monotonic() - started
    if not report.is_file():
        outcome = Outcome(target, version, error=f"pytest wrote no report (log: {log})")
    else:
        outcome = junit_outcome(report.read_text(), target, version)
    outcome.seconds = seconds
    return outcome


def _failures(outcome: Outcome) -> str:
    if outcome.error is not None:
        return outcome.error
    return ", ".join(outcome.failed) or "-"


HEADER = ("target", "Claude Code", "passed", "failed", "skipped", "failing tests")


def _row(outcome: Outcome) -> tuple[str, ...]:
    return (
        outcome.target,
        outcome.claude_version or "?",
        str(outcome.passed),
        str(len(outcome.failed)),
        str(outcome.skipped),
        _failures(outcome),
    )


def text_table(outcomes: Iterable[Outcome]) -> str:
    """Aligned columns, one line per target, the failing tests last."""
    rows = [HEADER, *(_row(o) for o in outcomes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def markdown_table(outcomes: Iterable[Outcome]) -> str:
    """The same table in Markdown; each failing test in backticks."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for outcome in outcomes:
        row = list(_row(outcome))
        if outcome.error is None and outcome.failed:
            row[-1] = "<br>".join(f"`{name}`" for name in outcome.failed)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines) + "\n"


def by_claude_version(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Oldest Claude Code first; a target whose version is unknown last."""
    return sorted(outcomes, key=lambda o: parse_version(o.claude_version or "") or (1 << 30,) * 3)


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The script's own arguments, and the pytest arguments after ``--`` (or the defaults)."""
    if "--" in argv:
        at = list(argv).index("--")
        return list(argv[:at]), list(argv[at + 1 :])
    return list(argv), list(DEFAULT_PYTEST_ARGS)


def main(argv: Sequence[str] | None = None) -> int:
    own, pytest_args = split_args(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="scripts/compat", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="default: %(default)s")
    parser.add_argument("--markdown", type=Path, help="also write the table here as Markdown")
    args = parser.parse_args(own)
    env = dict(os.environ)
    env.pop(CLAUDE_BIN_ENV, None)
    outcomes: list[Outcome] = []
    for target in args.targets:
        try:
            cli = sdk_cli(target, args.cache) if is_sdk_version(target) else Path(target).resolve()
        except (OSError, RuntimeError, subprocess.CalledProcessError, zipfile.BadZipFile) as exc:
            outcomes.append(Outcome(target, None, error=f"no CLI: {exc}"))
            continue
        print(f"== {target}: {cli} ({cli_version(str(cli)) or 'version unknown'})", flush=True)
        outcome = run_target(target, cli, pytest_args, args.cache / "results", env=env)
        print(
            f"   {outcome.passed} passed, {len(outcome.failed)} failed, {outcome.skipped} skipped"
            f" in {outcome.seconds:.0f} s: {_failures(outcome)}",
            flush=True,
        )
        outcomes.append(outcome)
    ordered = by_claude_version(outcomes)
    print()
    print(text_table(ordered))
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(ordered))
        print(f"\nwrote {args.markdown}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
