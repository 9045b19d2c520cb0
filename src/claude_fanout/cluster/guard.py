"""Entry of a task's guard on a cluster node (:func:`claude_fanout.procs.guard`):

    <python> -I -S <this file> PARENT_PID ARGV...

Started by :mod:`claude_fanout.cluster.node` inside a Ray worker, as the leader of the task's own
process group. Stdlib only, and run as a script without ``site`` (as the hooks are): every attempt
pays this interpreter's start, and ``site`` in an environment with Ray installed is most of it.
The package's parent directory goes on ``sys.path`` instead.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from claude_fanout import procs

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not args[0].isdigit():
        print("usage: python -I -S guard.py PARENT_PID ARGV...", file=sys.stderr)
        return 2
    return procs.guard(int(args[0]), args[1:])


if __name__ == "__main__":
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(os.path.dirname(here)))
    sys.exit(main())
