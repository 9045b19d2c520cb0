"""Hook overhead per tool call inside the real Claude Code CLI, idle and with a live run.

``bench_hooks.py`` times each hook as Claude Code starts it; this one times what a person feels:
a real ``claude -p`` session (the bundled CLI against the scripted fake Messages API on loopback)
makes ``--calls`` Read tool calls, one per model turn, and the benchmark measures the time
between consecutive model requests of the session (the tool loop: the CLI runs PreToolUse, the
tool, PostToolUse, then asks the model again). The fake answers at once, so the interval is the
CLI's own loop plus whatever the hooks add. Variants, interleaved round-robin in one run:

- ``none``: no hooks at all (the floor);
- ``true``: PreToolUse and PostToolUse hooks that run ``true`` (the cost of any command hook);
- ``python floor``: hooks that run ``python -I -S`` and parse the payload (the floor of any
  hook written in Python, which is what fanout's live-run hooks are measured against);
- ``fanout idle``: ``fanout install`` into the project, no live run (the shell guard exits
  before Python starts);
- ``fanout live``: installed, and a live run of 50 ``sleep`` tasks that claim other files, whose
  Conductor is this very session (``--session-id``), so PreToolUse evaluates claims and
  PostToolUse looks for news on every call;
- ``http``: ``"type": "http"`` hooks POSTing to a server on loopback that answers ``{}`` (what a
  long-lived server would cost per call instead of a process start);
- ``http down``: the same hooks pointing at a port nothing listens on (the tool call goes ahead:
  what a person's session pays while such a server is down).

Per variant: the median interval, and the overhead per tool call against ``none``.

    .venv/bin/python benchmarks/bench_cli_hooks.py [--calls 30] [--repeat 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from live_run import start_live_run, stop_run  # noqa: E402

from claude_fanout.install import install  # noqa: E402
from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env  # noqa: E402
from claude_fanout.testing.models import side_call_reply  # noqa: E402
from claude_fanout.testing.replies import Reply, Text, ToolUse  # noqa: E402
from claude_fanout.testing.requests import Request  # noqa: E402

N_TASKS = 50
VARIANTS = ("none", "true", "python floor", "fanout idle", "fanout live", "http", "http down")
# A Python hook that only reads its payload: the least a hook written in Python costs.
FLOOR = f"{sys.executable} -I -S -c 'import json, sys; json.load(sys.stdin)'"


class HookServer:
    """An HTTP hook's server on loopback: answers every POST with ``{}`` (nothing to say)."""

    def __init__(self) -> None:
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.posts += 1
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> HookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


class ToolLoop:
    """The model of every session: Read ``src/other.py`` until ``calls`` results came back, then
    answer; records when each of a session's requests arrived."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.lock = threading.Lock()
        # session -> {tool results so far: when the request carrying them arrived}
        self.arrivals: dict[str, dict[int, float]] = {}
        # Sessions whose model was told something by fanout (proof its hooks ran there).
        self.told: set[str] = set()

    def __call__(self, request: Request) -> Reply:
        if request.is_side_call:
            return side_call_reply(request)
        now = time.monotonic()
        done = len(request.all_tool_results())
        told = bool(request.fanout_texts())
        with self.lock:
            self.arrivals.setdefault(request.session_id or "?", {}).setdefault(done, now)
            if told:
                self.told.add(request.session_id or "?")
        if done >= self.calls:
            return Reply([Text("done")])
        return Reply([ToolUse("Read", {"file_path": "src/other.py"})])

    def intervals(self, session: str) -> list[float]:
        """Each tool call's round trip: from the request that asked for it to the one carrying
        its result. The first is left out (it holds the session's one-off costs), and so are the
        requests after the last result (a Stop hook holding the turn)."""
        with self.lock:
            times = dict(self.arrivals.get(session, {}))
        return [times[k + 1] - times[k] for k in range(1, self.calls) if k + 1 in times]


def new_project(root: Path, name: str, variant: str, hook_urls: dict[str, str]) -> Path:
    project = root / name
    (project / ".claude").mkdir(parents=True)
    (project / "src").mkdir()
    for i in range(1, N_TASKS + 1):
        (project / "src" / f"file{i}.py").write_text(f"# file {i}\n")
    (project / "src" / "other.py").write_text("# nobody claims this\n")
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 0\n")
    hook: dict[str, Any] | None = None
    if variant == "true":
        hook = {"type": "command", "command": "true"}
    elif variant == "python floor":
        hook = {"type": "command", "command": FLOOR}
    elif variant in hook_urls:
        hook = {"type": "http", "url": hook_urls[variant], "timeout": 10}
    if hook is not None:
        hooks = {
            event: [{"matcher": "*", "hooks": [hook]}] for event in ("PreToolUse", "PostToolUse")
        }
        (project / ".claude" / "settings.local.json").write_text(json.dumps({"hooks": hooks}))
    elif variant.startswith("fanout"):
        install(project=project)
    return project


def one_session(
    api: FakeMessagesAPI,
    loop: ToolLoop,
    root: Path,
    variant: str,
    n: int,
    hook_urls: dict[str, str],
) -> list[float]:
    project = new_project(root, f"{variant.replace(' ', '-')}-{n}", variant, hook_urls)
    home = root / f"home-{variant.replace(' ', '-')}-{n}"
    home.mkdir()
    session = str(uuid.uuid4())
    run = start_live_run(project, session, N_TASKS) if variant == "fanout live" else None
    try:
        argv = [
            str(claude_cli()),
            "-p",
            "Read src/other.py repeatedly.",
            "--session-id",
            session,
            "--output-format",
            "json",
            "--allowedTools",
            "Read",
            "--max-turns",
            str(loop.calls + 20),
        ]
        env = cli_env(api.base_url, home)
        env["CLAUDE_PROJECT_DIR"] = str(project)
        done = subprocess.run(
            argv, cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0 and variant != "fanout live":
            said = (done.stderr + done.stdout)[-600:]
            raise SystemExit(f"{variant}: the CLI failed ({done.returncode}): {said}")
    finally:
        if run is not None:
            stop_run(run, by="bench_cli_hooks", timeout=30.0)
    if variant == "fanout live" and session not in loop.told:
        raise SystemExit("fanout live: fanout's hooks never spoke to the session")
    gaps = loop.intervals(session)
    if len(gaps) < loop.calls - 1:
        raise SystemExit(f"{variant}: only {len(gaps)} tool-loop intervals recorded")
    return gaps


def measure(calls: int, repeat: int) -> dict[str, Any]:
    loop = ToolLoop(calls)
    gaps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with FakeMessagesAPI(loop) as api, HookServer() as hook, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        urls = {"http": hook.url, "http down": closed_port_url()}
        for n in range(repeat):
            for variant in VARIANTS:
                gaps[variant].extend(one_session(api, loop, root, variant, n, urls))
        posts = hook.posts
    floor = statistics.median(gaps["none"])
    rows = {}
    for variant in VARIANTS:
        values = sorted(gaps[variant])
        median = statistics.median(values)
        rows[variant] = {
            "tool_calls": len(values),
            "median_ms": round(median * 1000, 2),
            "p90_ms": round(values[int(0.9 * (len(values) - 1))] * 1000, 2),
            "overhead_ms": round((median - floor) * 1000, 2),
        }
    if posts < 2 * (calls - 1) * repeat:
        raise SystemExit(f"http: the hook server got {posts} calls, fewer than the tool calls")
    return {
        "claude_code": cli_version(),
        "http_hook_posts": posts,
        "calls_per_session": calls,
        "sessions_per_variant": repeat,
        "cpus": os.cpu_count(),
        "variants": rows,
    }


def cli_version() -> str:
    done = subprocess.run(
        [str(claude_cli()), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip().split(" ")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="tool calls per session")
    parser.add_argument("--repeat", type=int, default=3, help="sessions per variant")
    parser.add_argument("--quick", action="store_true", help="10 calls, 1 session per variant")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    calls, repeat = (10, 1) if args.quick else (args.calls, args.repeat)
    if shutil.which("git") is None:
        raise SystemExit("git is needed")
    figures = measure(calls, repeat)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"Claude Code {figures['claude_code']}, {figures['cpus']} CPUs; {calls} Read calls per "
        f"session, {repeat} session(s) per variant; interval between the session's model requests"
    )
    print(f"{'variant':<14} {'calls':>6} {'median ms':>10} {'p90 ms':>8} {'overhead ms':>12}")
    for variant, row in figures["variants"].items():
        print(
            f"{variant:<14} {row['tool_calls']:>6} {row['median_ms']:>10.1f} "
            f"{row['p90_ms']:>8.1f} {row['overhead_ms']:>+12.1f}"
        )


if __name__ == "__main__":
    main()
