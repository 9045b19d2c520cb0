"""``fanout doctor``: is fanout installed and working here, and with which Claude Code?

Read-only and quick (well under a second; a Ray backend's cluster query takes seconds): the
install section (:mod:`~claude_fanout.doctor.install_checks`), the Claude Code CLIs
(:mod:`~claude_fanout.doctor.claude_checks`), the run store
(:mod:`~claude_fanout.doctor.run_checks`) and where workers run
(:mod:`~claude_fanout.doctor.backend_checks`: for the Ray backend this connects to the
cluster). ``--probe`` (:mod:`claude_fanout.probe`) then tries every Claude Code mechanism
fanout depends on against the real CLI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from claude_fanout.doctor.backend_checks import backend_checks
from claude_fanout.doctor.claude_checks import claude_checks
from claude_fanout.doctor.findings import Check, failed, render
from claude_fanout.doctor.install_checks import install_checks
from claude_fanout.doctor.run_checks import store_checks


def diagnose(
    project: Path, *, env: Mapping[str, str] | None = None, home: Path | None = None
) -> list[Check]:
    """Every finding about ``project``, in sections: install, claude, runs, backend."""
    env = os.environ if env is None else env
    checks = list(install_checks(project, env, home))
    checks += claude_checks(env)
    checks += store_checks(project)
    checks += backend_checks(project)
    return checks


def command(
    project: Path, *, probe: bool = False, as_json: bool = False, cli: str | None = None
) -> int:
    """``fanout doctor [--probe] [--json] [--cli PATH]``: print the findings; 1 on any failure."""
    import sys

    checks = diagnose(project)
    report = None
    if probe:
        from claude_fanout import probe as probing

        report = probing.run_probe(cli=cli)
    bad = failed(checks) or (report is not None and not report.ok)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": not bad,
                    "project": str(project),
                    "checks": [check.to_dict() for check in checks],
                    "probe": None if report is None else report.to_dict(),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(f"fanout doctor: {project}")
        for line in render(checks):
            print(line)
        if report is not None:
            print("Claude Code mechanisms (--probe, offline)")
            for line in probing.render(report):
                print(line)
        sys.stdout.flush()
    return 1 if bad else 0
