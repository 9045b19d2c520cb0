"""An interactive Claude Code session in a detached tmux pane, offline, for end-to-end tests.

What it needs, found with CLI 2.1.330 (tests/fixtures/rewake/README.md): a HOME whose
``.claude.json`` marks onboarding done, the project trusted and the key approved (its last 20
characters), and the loopback environment of ``cli_env``. The pane is read with capture-pane:
"esc to interrupt" while a turn runs, an empty input line (U+276F) when idle.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import time
from pathlib import Path

from claude_fanout.testing.fake_api import claude_cli, cli_env
from tests.tmux import Pane

BUSY_MARK = "esc to interrupt"
PROMPT_LINE = re.compile("^\u276f\\s?(.*)$")


def write_claude_json(home: Path, project: Path, api_key: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "customApiKeyResponses": {"approved": [api_key.strip()[-20:]], "rejected": []},
                "projects": {str(project): {"hasTrustDialogAccepted": True}},
            }
        )
    )


class TmuxClaude(Pane):
    """``claude`` (interactive) in its own tmux server; ``close()`` leaves nothing running."""

    def __init__(
        self, project: Path, home: Path, base_url: str, *, width: int = 160, height: int = 50
    ) -> None:
        env = cli_env(base_url, home)
        write_claude_json(home, project, env["ANTHROPIC_API_KEY"])
        env["TERM"] = "xterm-256color"
        launcher = home / "run-claude.sh"
        launcher.write_text(
            "#!/bin/sh\n"
            f"cd {shlex.quote(str(project))} || exit 1\n"
            "exec env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
            + f" {shlex.quote(str(claude_cli()))}\n"
        )
        launcher.chmod(0o700)
        super().__init__(str(launcher), width=width, height=height, session="conductor")
        self.claude_pid = self.pid()

    def pane(self) -> str:
        return self.text()

    def capture(self, target: str = "conductor") -> str:
        """What the pane ``target`` (a window, ``conductor`` by default) showed, scrollback
        included, wrapped lines joined, as the terminal laid it out."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", target, check=False)

    def open_window(self, name: str, argv: list[str], *, cwd: Path) -> None:
        """Run ``argv`` in a second window ``name`` of this tmux server, in ``cwd``, with the
        server's environment; the pane stays readable after the command exits."""
        self.tmux("new-window", "-d", "-n", name, "-c", str(cwd), shlex.join(argv))
        self.tmux("set-option", "-w", "-t", name, "remain-on-exit", "on")

    def screen_text(self) -> str:
        """Everything the pane showed, scrollback included, whitespace runs made one space (so
        a phrase the terminal wrapped still reads as one)."""
        return " ".join(self.text(history=True).split())

    def state(self) -> str:
        text = self.pane()
        if not text.strip():
            return "gone"
        if BUSY_MARK in text:
            return "busy"
        inputs = [m.group(1) for line in text.splitlines() if (m := PROMPT_LINE.match(line))]
        return "idle" if inputs and not inputs[-1].strip() else "other"

    def wait_state(self, want: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == want:
                return True
            time.sleep(0.1)
        return False

    def type(self, text: str) -> None:
        """Type ``text`` then Enter, separately (a pasted newline is not a submit)."""
        self.keys(text, literal=True)
        time.sleep(0.3)
        self.keys("Enter")

    def close(self) -> None:
        super().close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _is_claude(self.claude_pid):
            time.sleep(0.1)
        if _is_claude(self.claude_pid):
            os.kill(self.claude_pid, signal.SIGKILL)


def _is_claude(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "claude"
    except OSError:
        return False
