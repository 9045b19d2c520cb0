"""Claude Code as fanout runs it headless: the CLI lookup (:mod:`.cli`), the command line of a
session (:mod:`.command`), its environment and the depth marker (:mod:`.env`) and what its
output stream says (:mod:`.stream`). Used by the ``claude`` task kind, the planner, ``fanout
doctor`` and its probe.

Every module here is standard library only (the planner runs inside a hook), and this package
imports none of them: a caller pays only for the part it uses.
"""
