"""``fanout doctor --probe``'s rewake check: an async Stop hook that exits 2 wakes an idle
session.

A headless session is woken only when its input stays open (``--input-format stream-json``, as
an SDK client's does), so that is what runs here; the interactive wake, in a terminal, is covered
by the tmux tests (``tests/e2e/test_rewake.py``).
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from claude_fanout import procs, settings_hooks
from claude_fanout.probe_sessions import (
    REWAKE_MARK,
    REWAKE_OK,
    SESSION_TIMEOUT_S,
    WAKE_TEXT,
    WAKE_WAIT_S,
    Finding,
    last_line,
    popen_session,
    session_env,
)
from claude_fanout.testing.fake_api import FakeMessagesAPI

__all__ = ["probe_rewake"]


def probe_rewake(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Finding]:
    """A streaming-input session (its stdin stays open, as an SDK client's does) ends its turn;
    an async Stop hook shaped like fanout's Rewake exits 2; the idle session must be woken."""
    project, ran = _rewake_project(scratch)
    env = session_env(api, scratch, "rewake")
    argv = [cli, "-p", "--input-format", "stream-json", "--output-format", "stream-json"]
    argv += ["--verbose"]
    proc = popen_session(argv, cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    message = {"type": "user", "message": {"role": "user", "content": f"{REWAKE_MARK} hello"}}
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    results = 0
    try:
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
        results = _count_results(lines)
    except OSError:
        pass
    finally:
        proc.stdin.close()
        procs.wait_child(proc, timeout_s=5, kill=True)
        reader.join(timeout=5)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    woken = any(
        REWAKE_MARK in r.first_user_text() and WAKE_TEXT in r.newest_text()
        for r in api.message_requests(side_calls=False)
    )
    return [_verdict(results, ran=ran.exists(), woken=woken, err=err)]


def _rewake_project(scratch: Path) -> tuple[Path, Path]:
    """A project whose only hook is an async Stop hook like fanout's Rewake: it runs after the
    turn ended and exits 2 with words for the session. Returns the project and the file the
    hook touches when it runs."""
    project = scratch / "rewake"
    (project / ".claude").mkdir(parents=True)
    spec = settings_hooks.FANOUT_HOOKS["Rewake"]
    ran = project / "hook-ran"
    script = project / "rewake_hook.py"
    script.write_text(
        "import sys, time\n"
        f"open({str(ran)!r}, 'w').close()\n"
        "time.sleep(0.5)\n"
        f"sys.stderr.write({WAKE_TEXT!r})\n"
        "sys.exit(2)\n"
    )
    hook = f"{shlex.quote(sys.executable)} -I -S {shlex.quote(str(script))}"
    entry = {"type": "command", "command": hook, "timeout": spec.timeout}
    if spec.async_rewake:
        entry.update({"async": True, "asyncRewake": True})
    (project / ".claude" / "settings.json").write_text(
        json.dumps({"hooks": {"Stop": [{"hooks": [entry]}]}})
    )
    return project, ran


def _count_results(lines: queue.Queue[str | None]) -> int:
    """How many turns the session ended (``result`` messages): the first, then the woken one,
    which must come within ``WAKE_WAIT_S`` of the first."""
    results = 0
    deadline = time.monotonic() + SESSION_TIMEOUT_S
    while results < 2 and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if _is_result(line):
            results += 1
            if results == 1:
                deadline = min(deadline, time.monotonic() + WAKE_WAIT_S)
    return results


def _verdict(results: int, *, ran: bool, woken: bool, err: str) -> Finding:
    if results == 0:
        detail = f"the session gave no result: {last_line(err) or 'no output'}"
    elif not ran:
        detail = "the async Stop hook never ran"
    elif not woken:
        detail = f"the hook exited 2, but the idle session was not woken within {WAKE_WAIT_S:g}s"
    elif results < 2:
        detail = "woken, but the woken turn did not end"
    else:
        return Finding("rewake", True, REWAKE_OK)
    return Finding("rewake", False, detail)


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


def _is_result(line: str) -> bool:
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "result"
