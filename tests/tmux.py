"""A real terminal for tests: one tmux server of its own (``tmux -L``) with one pane running a
command, read with capture-pane and typed into with send-keys."""

from __future__ import annotations

import os
import subprocess
import time


class Pane:
    """``command`` in a detached ``width`` x ``height`` pane of a tmux server of its own (``env``:
    the server's environment, default this process's); ``close()`` kills the server."""

    def __init__(
        self,
        command: str,
        *,
        width: int,
        height: int,
        env: dict[str, str] | None = None,
        session: str = "w",
    ) -> None:
        self.socket = f"fanout-test-{os.getpid()}-{time.monotonic_ns()}"
        self.session = session
        self._env = env
        self.tmux("new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command)

    def tmux(self, *args: str, check: bool = True) -> str:
        """``tmux args`` on this server; its stdout (``check``: a failure raises RuntimeError)."""
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            env=self._env,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {args}: {done.stderr.strip()}")
        return done.stdout

    def text(self, *, escapes: bool = False, history: bool = False) -> str:
        """What the pane shows (``escapes``: with its colour codes; ``history``: the scrollback
        too, wrapped lines joined); "" once the pane is gone."""
        flags = (["-e"] if escapes else []) + (["-J", "-S", "-"] if history else [])
        return self.tmux("capture-pane", "-p", *flags, "-t", self.session, check=False)

    def keys(self, *keys: str, literal: bool = False) -> None:
        """send-keys: key names (``C-c``, ``Enter``), or ``literal`` text."""
        self.tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def pid(self) -> int:
        """The pid of the pane's command."""
        return int(self.tmux("list-panes", "-t", self.session, "-F", "#{pane_pid}").split()[0])

    def cursor_shown(self) -> bool:
        return (
            self.tmux("display-message", "-p", "-t", self.session, "#{cursor_flag}").strip() == "1"
        )

    def close(self) -> None:
        self.tmux("kill-server", check=False)
