"""``fanout``: parse, validate, call the library, exit with a meaningful code.

Exit codes: 0 success; 1 a run failed (or was cancelled / lost); 2 bad input (plan, arguments);
3 every task succeeded but a writer's change was not merged (``EXIT_NOT_MERGED``); 124 ``wait
--timeout`` expired; 130 interrupted.

The commands live beside this module, one group each: ``runs`` (start and wait for runs),
``watch`` (the live view), ``merge`` (merge and gc), ``setup`` (install, doctor, demo, publish).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, cast

from claude_fanout.cli import merge, report, runs, setup, watch
from claude_fanout.errors import FanoutError
from claude_fanout.store import layout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanout", description="Parallel workers for Claude Code, steered through its hooks."
    )
    parser.add_argument(
        "--project",
        type=Path,
        help="project directory (default: the nearest ancestor holding .claude/ or .git/)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs.add_parsers(sub)
    watch.add_parsers(sub)
    setup.add_parsers(sub)
    merge.add_parsers(sub)
    report.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    # A reader that goes away (`fanout gc --all-finished | head -1`) costs the rest of the
    # output, never the work: the command goes on, and no traceback.
    sys.stdout, sys.stderr = (s and cast("TextIO", _ReaderMayLeave(s)) for s in streams)
    try:
        args = build_parser().parse_args(argv)
        try:
            project = args.project.resolve() if args.project else Path(layout.find_project())
            handler: Callable[[argparse.Namespace, Path], int] = args.handler
            return handler(args, project)
        except FanoutError as exc:
            if args.debug:
                raise
            print(f"fanout: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # binary output (`fanout logs`): stop, the reader has left
            _discard(streams[0])
            return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with the descriptor closed
                stream.flush()  # here, not at exit, where a closed pipe prints a traceback
        sys.stdout, sys.stderr = streams


class _ReaderMayLeave:
    """A text stream whose reader may close it: from then on, what is written goes nowhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _discard(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            _discard(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _discard(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null (what it still buffers goes there too)."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # no descriptor (a test's capture): nothing to redirect
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
