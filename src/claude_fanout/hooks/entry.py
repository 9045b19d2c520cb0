"""The hook command's entry point.

    <python> -I -S <this file> <EventName>     (what `fanout install` writes: fastest)
    fanout-hook <EventName>                     (console script; what the plugin uses)
    <python> -I -S <this file> StatusLine ...  (the status line: hooks/statusline.py)

Run as a script with ``-I -S`` there is no site-packages on ``sys.path``: put this package's
parent directory there instead, and drop the script's own directory (it would shadow stdlib
modules with ours).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["StatusLine"]:
            from claude_fanout.hooks.statusline import main as draw

            return draw(args[1:])
        from claude_fanout.hooks.dispatch import run
    except ImportError:  # pragma: no cover - a broken install must not break the session
        return 0
    return run(args)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(os.path.dirname(here)))
    sys.exit(main())
