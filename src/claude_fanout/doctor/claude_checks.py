"""``fanout doctor``'s Claude Code section: the Conductor's CLI on PATH and the workers' CLI,
each against the measured range in :mod:`claude_fanout.compat`."""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from claude_fanout import compat
from claude_fanout.claude.cli import CLAUDE_BIN_ENV, cli_path, runnable_cli
from claude_fanout.doctor.findings import FAIL, OK, WARN, Check


def claude_checks(env: Mapping[str, str]) -> list[Check]:
    section = "claude"
    checks = []
    on_path = shutil.which("claude", path=env.get("PATH"))
    if on_path is None:
        checks.append(
            Check(
                section,
                "Conductor CLI",
                WARN,
                "no `claude` on PATH: your sessions need Claude Code (workers use their own)",
            )
        )
    else:
        checks.append(_version_check(section, "Conductor CLI", on_path, "`claude` on PATH"))
    workers = cli_path(env)
    resolved = runnable_cli(env)
    if resolved is None:
        checks.append(
            Check(
                section,
                "workers' CLI",
                FAIL,
                f"claude workers have no Claude Code ({workers} is not an executable file): "
                f"install claude-agent-sdk (it bundles one) or set {CLAUDE_BIN_ENV}",
            )
        )
    else:
        source = f"${CLAUDE_BIN_ENV}" if env.get(CLAUDE_BIN_ENV) else "what workers run"
        checks.append(_version_check(section, "workers' CLI", resolved, source))
    return checks


def _version_check(section: str, name: str, path: str, source: str) -> Check:
    version = compat.cli_version(path)
    tested = f"tested {compat.TESTED_MIN} to {compat.TESTED_MAX}"
    if version is None:
        return Check(section, name, FAIL, f"{path} ({source}) does not run or print its version")
    if compat.in_tested_range(version):
        return Check(section, name, OK, f"{version} at {path} ({source}; {tested})")
    return Check(
        section,
        name,
        WARN,
        f"{version} at {path} ({source}) is outside the measured range ({tested}): "
        "`fanout doctor --probe` shows what works with it",
    )
