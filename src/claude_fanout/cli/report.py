"""``fanout report RUN``: the run as one self-contained HTML page, written into the run's
directory (or ``-o FILE``) and optionally opened in the person's browser."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout.errors import StoreError
from claude_fanout.store import layout
from claude_fanout.store.files import write_atomic
from claude_fanout.store.rundir import resolve_run

if TYPE_CHECKING:
    import argparse


def add_parsers(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="write a run's timeline, workers, costs and results as one HTML page"
    )
    report.add_argument("run", nargs="?", help="run id or a unique prefix (default: the latest)")
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help=f"where to write the page (default: {layout.REPORT} in the run's directory)",
    )
    report.add_argument("--open", action="store_true", help="open the page in your web browser")
    report.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace, project: Path) -> int:
    from claude_fanout.cli.common import UsageError, plan_of
    from claude_fanout.report.page import render
    from claude_fanout.report.timeline import read_timeline

    run = resolve_run(project, args.run)
    target = (run.report_path if args.output is None else Path(args.output)).absolute()
    if args.output is not None:  # a bad -o is refused before anything is read
        if target.is_dir():
            raise UsageError(f"-o {args.output}: is a directory; name the file, e.g. -o run.html")
        if not target.parent.is_dir():
            raise UsageError(
                f"-o {args.output}: no directory {target.parent}; create it or name another file"
            )
    plan = plan_of(run)
    timeline = read_timeline(run, plan)
    page = render(run, plan, timeline).encode("utf-8")
    try:
        write_atomic(target, page)
    except OSError as exc:
        raise StoreError(
            f"cannot write {target} ({exc.strerror}); name another file with -o"
        ) from None
    if timeline.bad_lines:
        print(
            f"fanout: warning: {timeline.bad_lines} line(s) of {run.events_path} did not parse; "
            "the report skips them",
            file=sys.stderr,
        )
    print(target)
    if args.open:
        import webbrowser

        if not webbrowser.open(target.as_uri()):
            print(f"fanout: no web browser found; open {target} yourself", file=sys.stderr)
    return 0
