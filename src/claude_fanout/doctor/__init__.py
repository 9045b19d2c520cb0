"""``fanout doctor``: every finding about a project, and the command that prints them."""

from claude_fanout.doctor.checkup import command, diagnose
from claude_fanout.doctor.findings import FAIL, OK, WARN, Check, Status, failed, render
from claude_fanout.doctor.install_checks import hook_targets

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "Status",
    "command",
    "diagnose",
    "failed",
    "hook_targets",
    "render",
]
