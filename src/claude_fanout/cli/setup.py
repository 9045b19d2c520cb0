"""The commands around runs: ``install``, ``uninstall``, ``statusline``, ``doctor``, ``demo``
and a worker's ``publish``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout.cli.common import UsageError
from claude_fanout.errors import FanoutError

if TYPE_CHECKING:
    import argparse


def add_parsers(sub: Any) -> None:
    """The set-up commands' arguments, each parser bound to its command."""
    install = sub.add_parser(
        "install", help="add fanout's hooks and /fanout command to Claude Code"
    )
    install.add_argument(
        "--scope",
        choices=("local", "project", "user"),
        default="local",
        help="local (default): .claude/settings.local.json, yours and git-ignored; project: "
        ".claude/settings.json, shared with everyone who clones the repository (the hooks name "
        "this machine's paths); user: ~/.claude/settings.json, every project",
    )
    install.add_argument(
        "--no-statusline",
        dest="statusline",
        action="store_false",
        help="leave Claude Code's status line alone (and take fanout's out of it)",
    )
    install.set_defaults(handler=cmd_install)
    uninstall = sub.add_parser("uninstall", help="remove exactly what `fanout install` added")
    uninstall.add_argument(
        "--scope",
        choices=("local", "project", "user"),
        default=None,
        help="only this settings file (default: both of the project's, "
        ".claude/settings.local.json and .claude/settings.json)",
    )
    uninstall.set_defaults(handler=cmd_uninstall)

    statusline = sub.add_parser(
        "statusline",
        help="print this session's runs for Claude Code's status line (its JSON on stdin)",
    )
    statusline.set_defaults(handler=cmd_statusline)

    doctor = sub.add_parser("doctor", help="check that fanout works here, and with which CLI")
    doctor.add_argument(
        "--probe", action="store_true", help="also try every Claude Code mechanism, offline"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--cli", metavar="PATH", help="with --probe: probe this Claude Code executable"
    )
    doctor.set_defaults(handler=cmd_doctor)

    demo = sub.add_parser("demo", help="run the offline demo in a scratch directory")
    demo.add_argument("--dir", type=Path, help="scratch directory (default: a new temp dir)")
    demo.add_argument(
        "--model-delay",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds the scripted model takes per turn (default 1)",
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="use your own Claude account and the real model (costs tokens)",
    )
    demo.set_defaults(handler=cmd_demo)

    publish = sub.add_parser(
        "publish", help="from inside a worker: publish a directive for the Conductor's hooks"
    )
    publish.set_defaults(handler=cmd_publish)
    kinds = publish.add_subparsers(dest="directive", required=True, metavar="DIRECTIVE")
    notice = kinds.add_parser("notice", help="tell the Conductor something (delivered once)")
    notice.add_argument("text")
    claim = kinds.add_parser("claim", help="deny the Conductor these paths while this task runs")
    claim.add_argument("paths", nargs="+")
    replace = kinds.add_parser(
        "replace", help="once this task succeeds, redirect the Conductor's reads of PATH"
    )
    replace.add_argument("path", help="a file in the project")
    replace.add_argument("artifact", help="a file in this task's out/ directory")


def cmd_uninstall(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout import install

    report = install.uninstall(scope=args.scope, project=project)
    if not report.changed:
        print("fanout: nothing of fanout's to remove")
    for path in report.written:
        print(f"fanout hooks removed from {path}")
    for path in report.removed:
        print(f"removed {path}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def cmd_install(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout import install

    report = install.install(scope=args.scope, project=project, statusline=args.statusline)
    where = f"{report.settings} ({report.sharing})"
    if report.settings in report.written:
        print(f"fanout hooks installed into {where}")
    else:
        print(f"fanout hooks: already in {where}, unchanged")
    for path in report.written:
        if path == report.command:
            print(f"  wrote {path} (the /fanout command: no machine paths, fine to commit)")
        elif path != report.settings:
            print(f"  wrote {path}")
    for path in report.removed:
        print(f"  removed {path}")
    if args.statusline and _shows_statusline(report.settings):
        print(
            "  status line: this session's runs, after yours if you have one "
            "(`--no-statusline` leaves it alone)"
        )
    if report.backup is not None:
        print(f"  previous settings kept for `fanout uninstall` in {report.backup}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.shared:
        print(
            f"fanout: warning: {report.settings} is shared ({report.sharing}), and fanout's hooks "
            "in it name this machine's Python and package paths: on a teammate's machine they "
            "do nothing, and their `fanout install` rewrites them. `fanout install` without "
            "--scope keeps them in .claude/settings.local.json instead.",
            file=sys.stderr,
        )
    print("Start Claude Code here and type: /fanout <instruction> -- <paths or globs>")
    return 0


def _shows_statusline(settings: Path) -> bool:
    from claude_fanout import settings_files, settings_statusline

    _, content = settings_files.load(settings)
    return settings_statusline.is_ours(content.get(settings_statusline.KEY))


def cmd_statusline(args: argparse.Namespace, project: Path) -> int:
    """The segment alone: what a person's own status line script can print beside its own."""
    from claude_fanout.hooks.statusline import main

    sys.stdout.flush()
    return main([])


def cmd_publish(args: argparse.Namespace, project: Path) -> int:
    """Workers publish directives; the hooks enforce them. A worker never runs a hook itself."""
    from claude_fanout.plan import parse_plan
    from claude_fanout.states import EventType
    from claude_fanout.store.rundir import RunDir

    run_dir, task_id = os.environ.get("FANOUT_RUN_DIR"), os.environ.get("FANOUT_TASK_ID")
    if not run_dir or not task_id:
        raise FanoutError(
            "fanout publish works inside a worker (FANOUT_RUN_DIR and FANOUT_TASK_ID unset)"
        )
    run = RunDir(Path(run_dir))
    run.check()
    # Validate paths exactly as a plan's would be: inside the project, no escape via links.
    probe: dict[str, object] = {"id": task_id, "kind": "shell", "argv": ["true"]}
    if args.directive == "claim":
        probe["claims"] = args.paths
    elif args.directive == "replace":
        probe["replaces"] = {args.path: args.artifact}
    spec = parse_plan({"version": 1, "tasks": [probe]}, project=run.project).tasks[0]
    if args.directive == "notice":
        run.log.append(EventType.NOTICE, task=task_id, text=args.text[:2000])
    elif args.directive == "claim":
        run.log.append(EventType.CLAIM, task=task_id, paths=list(spec.claims))
    else:
        ((path, artifact),) = spec.replaces.items()
        run.log.append(EventType.REPLACE, task=task_id, path=path, **{"with": artifact})
    return 0


def cmd_doctor(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout import doctor

    if args.cli and not args.probe:
        raise UsageError("doctor: --cli names the Claude Code to probe; add --probe")
    return doctor.command(project, probe=args.probe, as_json=args.json, cli=args.cli)


def cmd_demo(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.demo import run_demo

    return run_demo(directory=args.dir, model_delay_s=args.model_delay, live=args.live)
