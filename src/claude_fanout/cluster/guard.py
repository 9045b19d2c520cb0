"""Entry of a task's guard on a cluster node (:func:`claude_fanout.procs.guard`):

    python -m claude_fanout.cluster.guard PARENT_PID ARGV...

Started by :mod:`claude_fanout.cluster.node` inside a Ray worker, as the leader of the task's own
process group. Stdlib only.
"""

from __future__ import annotations

import sys

from claude_fanout import procs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not args[0].isdigit():
        print("usage: python -m claude_fanout.cluster.guard PARENT_PID ARGV...", file=sys.stderr)
        return 2
    return procs.guard(int(args[0]), args[1:])


if __name__ == "__main__":
    sys.exit(main())
