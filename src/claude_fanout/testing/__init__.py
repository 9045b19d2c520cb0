"""Test support shipped on purpose: the real Claude Code CLI against a scripted model, offline.

Used by ``fanout demo``, ``fanout doctor --probe`` and the test suite, so it is part of the
package rather than of ``tests/``. Import the modules, not this package:

- :mod:`~claude_fanout.testing.fake_api`: the fake Messages API on loopback (server-sent events),
  the bundled CLI and the environment that keeps it offline (``cli_env``).
- :mod:`~claude_fanout.testing.requests`: :class:`Request`, what the CLI sent and what fanout
  told the model in it.
- :mod:`~claude_fanout.testing.replies`: what a scripted model answers (``Reply``, ``ErrorReply``).
- :mod:`~claude_fanout.testing.models`: scripted models, from one worker to a whole fan-out.
"""
