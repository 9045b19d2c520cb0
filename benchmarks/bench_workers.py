"""Cheap workers: fanout's Claude workers against Claude Code's own Agent tool, and pooling
against spawn-per-task, all against one scripted fake Messages API on loopback.

    .venv/bin/python benchmarks/bench_workers.py [--quick] [--tasks 8] [--latency 1.0]
        [--repeat 3] [--pool-repeat 2] [--parallel 2,4] [--file-lines 60] [--cases ...] [--json]

Every main-loop model response waits ``--latency`` seconds; side calls answer at once. The
scripted model is the same in every case: the subtask "Summarise <file>" is a Read of that file,
then the line ``SUMMARY <path>: <n> lines; first line: <line>`` (2 model turns).

1. native: the bundled CLI as the Conductor (``claude -p ... --output-format json``). Its first
   response calls the Agent tool N times in one message (``subagent_type: general-purpose``,
   ``run_in_background: false``); each subagent does the subtask inside the Conductor's process.
   Checked: the Conductor's final answer repeats all N summaries and ``subagent_stats`` counts
   N completed.
2. fanout: ``fanout run plan.json`` (the real CLI, blocking) of N ``claude`` tasks with the
   default read-only tools, ``max_parallel`` N and the live-worker caps (``limits.max_live_workers``
   and, where it exists, ``max_live_claude_workers``) raised to N; once with fanout's default gap
   between worker starts and once with ``claude_start_interval_s = 0`` (where it exists).
   Checked: every ``out/result.md`` holds its expected summary.
3. pooling: N subtasks by ``claude -p`` spawned per task (sequentially, and k at a time), by k
   live sessions (``--input-format stream-json``) each fed its next subtask when the previous
   result arrives, and by the same with ``/clear`` between subtasks; then a probe of which
   per-task settings one live session can change (control requests sent to the real CLI,
   outcomes read from what the fake saw and what the CLI answered).

Measurement: a thread samples every descendant of this process every 50 ms (RSS; PSS and USS
from ``/proc/PID/smaps_rollup`` on every 5th sample, as one costs ~1.5 ms per process) and
classifies each by command line: fanout's own Python processes (supervisor, its forked watchdog,
a ``claude_fanout.worker`` wrapper, a hook), the ``fanout run`` client, ``claude`` CLIs, other
(ripgrep...). A peak is the peak of the per-sample sum. CPU seconds: each process's user+system
as last sampled (up to 50 ms before it ends). Wall time: first spawn to last result collected.
Cases are interleaved round-robin; medians are reported. Always exits 0; failed checks print MISS.
``--json``: the report goes to stderr and one JSON object of the medians to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from claude_fanout.claude.env import PARENT_SESSION_VARS
from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env
from claude_fanout.testing.models import summarize_read_output
from claude_fanout.testing.replies import Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request

CONDUCTOR_MARK = "CONDUCTOR:"
SUBAGENT_MARK = "cc_is_subagent=true"  # billing header in a subagent's system prompt (2.1.330)
SUBTASK_RE = re.compile(r"\b(Summarise|Edit) (\S+)")
READ_ONLY = "Read,Grep,Glob"  # fanout's default tools for a claude task
SAMPLE_S = 0.05
PSS_EVERY = 5
OWN = ("supervisor", "watchdog", "worker wrapper", "hook")
CLASSES = (*OWN, "fanout client", "claude CLI", "other")
Json = dict[str, Any]


# --------------------------------------------------------------------------------------------
# The scripted model


@dataclass(frozen=True)
class Seen:
    """One main-loop request as the fake saw it."""

    at: float
    session: str
    role: str  # conductor, subagent, task
    subject: str  # the file the current subtask is about
    tokens: int  # rough input tokens of the request (its JSON / 4)


def approx_tokens(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"))) // 4


def _blocks(message: Json) -> list[Json]:
    content = message.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else content or []


def current_subtask(request: Request) -> tuple[str, str, str | None, bool]:
    """(verb, path, tool result or None, is_error) for the latest user text naming a subtask:
    a reused session's earlier subtasks are ignored."""
    messages = request.messages
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") != "user":
            continue
        for block in _blocks(messages[index]):
            found = (
                SUBTASK_RE.search(block.get("text", "")) if block.get("type") == "text" else None
            )
            if not found:
                continue
            results = [
                b
                for later in messages[index + 1 :]
                if later.get("role") == "user"
                for b in _blocks(later)
                if b.get("type") == "tool_result"
            ]
            if not results:
                return found.group(1), found.group(2), None, False
            inner = results[-1].get("content")
            text = inner if isinstance(inner, str) else "\n".join(b.get("text", "") for b in inner)
            return found.group(1), found.group(2), text, bool(results[-1].get("is_error"))
    return "", "", None, False


def expected_summary(path: Path) -> str:
    lines = path.read_text().splitlines()
    return f"SUMMARY {path}: {len(lines)} lines; first line: {lines[0].strip()}"


class Brain:
    """The scripted model of every case (one FakeMessagesAPI serves the whole benchmark)."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.delegate: list[Path] = []  # what the native Conductor hands to subagents
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def __call__(self, request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fake session")], usage=Usage(3, 2))
        body = request.body if isinstance(request.body, dict) else {}
        if request.first_user_text().startswith(CONDUCTOR_MARK):
            role = "conductor"
        elif SUBAGENT_MARK in json.dumps(body.get("system", "")):
            role = "subagent"
        else:
            role = "task"
        verb, path, result, is_error = current_subtask(request)
        tokens = approx_tokens([body.get("system"), body.get("tools"), body.get("messages")])
        with self._lock:
            self._seen.append(Seen(time.monotonic(), request.session_id or "", role, path, tokens))
        usage = Usage(input_tokens=tokens, output_tokens=20)
        if role == "conductor":
            content = self._conductor(request)
        elif not path:
            content = [Text("No subtask found.")]
        elif result is None and verb == "Summarise":
            content = [ToolUse("Read", {"file_path": path})]
        elif result is None:
            edit = {"file_path": path, "old_string": "line", "new_string": "LINE"}
            content = [ToolUse("Edit", {**edit, "replace_all": True})]
        elif verb == "Edit" or is_error:
            content = [Text(f"{verb.upper()} {path}: error={is_error}: {result.strip()[:160]}")]
        else:
            lines, first = summarize_read_output(result)
            content = [Text(f"SUMMARY {path}: {lines} lines; first line: {first}")]
        return Reply(content, usage=usage, delay_s=self.latency_s)

    def _conductor(self, request: Request) -> list[Text | ToolUse]:
        results = request.all_tool_results()
        if results:
            found = [m.group(0) for _, text in results for m in re.finditer(r"SUMMARY .+", text)]
            return [Text("FINAL\n" + "\n".join(found))]
        return [
            ToolUse(
                "Agent",
                {
                    "description": f"summarise file {k}",
                    "prompt": f"Summarise {path}",
                    "subagent_type": "general-purpose",
                    "run_in_background": False,
                },
            )
            for k, path in enumerate(self.delegate, 1)
        ]

    def since(self, start: float) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.at >= start]


# --------------------------------------------------------------------------------------------
# Process sampling


def classify(cmdline: Sequence[str], parent_cmdline: Sequence[str]) -> str:
    line = " ".join(cmdline)
    if "claude_fanout.runtime" in line:
        # The watchdog is a fork of the supervisor without exec: same command line, and its
        # parent is the supervisor (so is a worker caught between fork and exec, briefly).
        return "watchdog" if "claude_fanout.runtime" in " ".join(parent_cmdline) else "supervisor"
    if "claude_fanout.worker" in line:
        return "worker wrapper"
    if "claude_fanout/hooks" in line or "fanout-hook" in line:
        return "hook"
    if "claude_fanout" in line or (len(cmdline) > 1 and cmdline[1].endswith("/fanout")):
        return "fanout client"
    if cmdline and os.path.basename(cmdline[0]) in ("claude", "claude.exe"):
        # `fanout run` asks the CLI its version before it starts claude tasks (compat.py): the
        # client's start-up, not a session.
        return "fanout client" if list(cmdline[1:]) == ["--version"] else "claude CLI"
    return "other"


@dataclass
class ProcUsage:
    """Peaks are keyed by class, plus "own" (fanout's own processes) and "all"."""

    peak_rss: dict[str, int] = field(default_factory=dict)
    peak_pss: dict[str, int] = field(default_factory=dict)
    peak_uss: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # class -> seconds
    count: dict[str, int] = field(default_factory=dict)  # class -> distinct processes
    live: dict[str, int] = field(default_factory=dict)  # class -> most alive at once


class Sampler(threading.Thread):
    """Samples every descendant of this process until finished."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="sampler")
        self.me = psutil.Process()
        self.own_cmdline = self.me.cmdline()
        self.stopped = threading.Event()
        self.procs: dict[int, psutil.Process] = {}
        self.kind: dict[int, str] = {}
        self.cpu: dict[int, float] = {}
        self.usage = ProcUsage()

    def run(self) -> None:
        tick = 0
        while not self.stopped.is_set():
            self.sample(full=tick % PSS_EVERY == 0)
            tick += 1
            self.stopped.wait(SAMPLE_S)

    def sample(self, *, full: bool) -> None:
        try:
            children = self.me.children(recursive=True)
        except psutil.Error:
            return
        sums: dict[str, dict[str, int]] = {"rss": {}, "pss": {}, "uss": {}}
        live: dict[str, int] = {}
        for child in children:
            proc = self.procs.setdefault(child.pid, child)  # keeps the start time of the pid
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    if proc.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped
                        self.cpu[proc.pid] = times.user + times.system
                        continue
                    cmdline = proc.cmdline()
                    if cmdline == self.own_cmdline:
                        continue  # this process, forked by subprocess and not yet exec'ed
                    if cmdline:
                        parent = proc.parent()
                        kind = classify(cmdline, parent.cmdline() if parent else [])
                    else:  # exiting: its memory is gone, and so is its command line
                        kind = self.kind.get(proc.pid, "other")
                    memory = proc.memory_full_info() if full else proc.memory_info()
            except psutil.Error:
                continue
            self.kind[proc.pid] = kind
            self.cpu[proc.pid] = times.user + times.system
            live[kind] = live.get(kind, 0) + 1
            for name in ("rss", "pss", "uss") if full else ("rss",):
                sums[name][kind] = sums[name].get(kind, 0) + getattr(memory, name)
        for kind, n in live.items():
            self.usage.live[kind] = max(self.usage.live.get(kind, 0), n)
        for name, values in sums.items():
            if not (full or name == "rss"):
                continue
            peaks = getattr(self.usage, f"peak_{name}")
            own = sum(v for k, v in values.items() if k in OWN)
            for key, total in (("own", own), ("all", sum(values.values())), *values.items()):
                peaks[key] = max(peaks.get(key, 0), total)

    def finish(self) -> ProcUsage:
        if not self.stopped.is_set():
            self.stopped.set()
            self.join()
            self.sample(full=True)
            for pid, seconds in self.cpu.items():
                kind = self.kind.get(pid, "other")
                self.usage.cpu[kind] = self.usage.cpu.get(kind, 0.0) + seconds
                self.usage.count[kind] = self.usage.count.get(kind, 0) + 1
        return self.usage


@contextmanager
def sampled() -> Iterator[Sampler]:
    sampler = Sampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.finish()


def wait_for_descendants(timeout: float = 15.0) -> None:
    """Until no descendant of this process is alive (a supervisor finishing its exit)."""
    me = psutil.Process()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for proc in me.children(recursive=True):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                pass
        if not alive:
            return
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Result:
    case: str
    wall_s: float
    usage: ProcUsage
    problems: list[str]
    seen: list[Seen] = field(default_factory=list)
    extra: Json = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Setup:
    root: Path
    api: FakeMessagesAPI
    brain: Brain
    home: Path
    tasks: int
    latency_s: float
    file_lines: int

    def env(self) -> dict[str, str]:
        """The CLI on the fake, offline, not a child of any Claude Code session or fanout run."""
        env = cli_env(self.api.base_url, self.home)
        env.update(dict.fromkeys(PARENT_SESSION_VARS, ""))
        return {k: v for k, v in env.items() if not k.startswith("FANOUT_")}

    def project(self, name: str, count: int | None = None) -> tuple[Path, list[Path]]:
        """A fresh project with ``count`` (default: one per task) files under src/."""
        project = self.root / name
        shutil.rmtree(project, ignore_errors=True)
        (project / ".claude").mkdir(parents=True)
        (project / "src").mkdir()
        files = []
        for k in range(1, (count or self.tasks) + 1):
            lines = [f"# file {k}: module docstring line"]
            lines += [
                f"value_{k}_{i} = {i} * {k}  # line {i}" for i in range(2, self.file_lines + 1)
            ]
            files.append(project / "src" / f"file{k}.py")
            files[-1].write_text("\n".join(lines) + "\n")
        return project, files

    def run(self, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            check=False,
        )


def cli_flags(tools: str = READ_ONLY) -> list[str]:
    """What fanout gives a worker's CLI: tools offered = allowed, dontAsk, no MCP, no user
    settings."""
    return [
        *("--tools", tools, "--allowedTools", tools, "--permission-mode", "dontAsk"),
        *("--strict-mcp-config", "--setting-sources", "project,local"),
    ]


def parse_result(proc: subprocess.CompletedProcess[str]) -> Json:
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        return {"result": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return out if isinstance(out, dict) else {}


def run_native(setup: Setup) -> Result:
    project, files = setup.project("native")
    setup.brain.delegate = files
    prompt = f"{CONDUCTOR_MARK} summarise the {len(files)} files under src/, one subagent each."
    argv = [str(claude_cli()), "-p", prompt, "--output-format", "json"]
    start = time.monotonic()
    with sampled() as sampler:
        out = parse_result(setup.run([*argv, *cli_flags("Agent," + READ_ONLY)], project))
        wall = time.monotonic() - start
        usage = sampler.finish()
    seen = setup.brain.since(start)
    problems = []
    missing = [p.name for p in files if expected_summary(p) not in str(out.get("result"))]
    if missing:
        problems.append(f"summaries missing from the final answer: {missing}")
    stats = out.get("subagent_stats") or {}
    if stats.get("completed") != len(files):
        problems.append(f"subagent_stats: {stats}")
    if {s.subject for s in seen if s.role == "subagent"} != {str(p) for p in files}:
        problems.append("the fake did not see one subagent per file")
    conductor = [s.at for s in seen if s.role == "conductor"]
    # From the Conductor's first answer (Agent calls) to its next request (all results in).
    phase = conductor[1] - conductor[0] - setup.latency_s if len(conductor) > 1 else None
    sub_tools = sorted(
        {
            ",".join(r.offered_tool_names)
            for r in setup.api.message_requests(side_calls=False)
            if r.received_at >= start and SUBAGENT_MARK in json.dumps(r.body.get("system", ""))
        }
    )
    extra = {"phase_s": phase, "stats": stats, "subagent_tools": sub_tools}
    return Result("native", wall, usage, problems, seen, extra)


def fanout_argv() -> list[str]:
    script = Path(sys.executable).with_name("fanout")
    return (
        [sys.executable, str(script)]
        if script.is_file()
        else [sys.executable, "-m", "claude_fanout"]
    )


def fanout_limits() -> set[str]:
    """The ``[limits]`` keys this fanout knows (the claude cap and start spacing came later)."""
    from claude_fanout import config

    return set(config.Config._fields)


def run_fanout(setup: Setup, *, interval_s: float | None = None) -> Result:
    """Every worker may run at once (both live-worker caps raised to the task count);
    ``interval_s``: the gap between two claude worker starts (None: fanout's default)."""
    case = "fanout" if interval_s is None else f"fanout {interval_s:g}s gap"
    project, files = setup.project(case.replace(" ", "-"))
    cap = max(8, len(files))
    toml = f"[limits]\nmax_live_workers = {cap}\n"
    if "max_live_claude_workers" in fanout_limits():
        toml += f"max_live_claude_workers = {cap}\n"
    if interval_s is not None:
        toml += f"claude_start_interval_s = {interval_s}\n"
    (project / ".claude" / "fanout.toml").write_text(toml)
    tasks = [
        {"id": f"W{k}", "kind": "claude", "prompt": f"Summarise {path}"}
        for k, path in enumerate(files, 1)
    ]
    plan = {"version": 1, "name": "bench-workers", "max_parallel": len(files), "tasks": tasks}
    (project / "plan.json").write_text(json.dumps(plan))
    start = time.monotonic()
    with sampled() as sampler:
        proc = setup.run([*fanout_argv(), "--project", str(project), "run", "plan.json"], project)
        wall = time.monotonic() - start
        wait_for_descendants()  # the supervisor may still be exiting: keep sampling it
        usage = sampler.finish()
    problems = [] if proc.returncode == 0 else [f"fanout run exit {proc.returncode}"]
    run_dir = project / ".claude" / "runs" / (proc.stdout.strip().splitlines() or [""])[-1]
    for k, path in enumerate(files, 1):
        result = run_dir / "workers" / f"W{k}" / "out" / "result.md"
        text = result.read_text().strip() if result.is_file() else f"no {result}"
        if text != expected_summary(path):
            problems.append(f"W{k}: {text[:160]!r}")
    try:
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        events = []
        problems.append(f"no readable events.jsonl ({proc.stderr.strip()[-200:]})")
    stamps = {e.get("type"): e.get("ts", 0.0) for e in events}
    starts = [e["ts"] for e in events if e.get("type") == "task_started"]
    extra = {
        "run_s": stamps.get("run_finished", 0.0) - stamps.get("run_created", 0.0),
        "start_spread_s": max(starts) - min(starts) if starts else None,
    }
    return Result(case, wall, usage, problems, setup.brain.since(start), extra)


class LiveSession:
    """One ``claude -p --input-format stream-json`` process, fed one message at a time."""

    def __init__(self, setup: Setup, cwd: Path, flags: Sequence[str]) -> None:
        streams = ["--input-format", "stream-json", "--output-format", "stream-json", "--verbose"]
        self.proc = subprocess.Popen(
            [str(claude_cli()), "-p", *streams, *flags],
            cwd=cwd,
            env=setup.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[Json | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._ids = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue
        self.lines.put(None)

    def _send(self, message: Json) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _until(self, want: Callable[[Json], bool], timeout: float) -> Json:
        deadline = time.monotonic() + timeout
        while True:
            message = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                raise EOFError(f"the live session exited ({self.proc.poll()})")
            if want(message):
                return message

    def ask(self, text: str, timeout: float = 120) -> Json:
        user = {"role": "user", "content": text}
        self._send({"type": "user", "message": user, "parent_tool_use_id": None, "session_id": ""})
        return self._until(lambda m: m.get("type") == "result", timeout)

    def control(self, request: Json, timeout: float = 30) -> Json:
        self._ids += 1
        rid = f"bench_{self._ids}"
        self._send({"type": "control_request", "request_id": rid, "request": request})
        answer = self._until(lambda m: m.get("response", {}).get("request_id") == rid, timeout)
        return dict(answer["response"])

    def drain(self, quiet_s: float) -> list[Json]:
        """What arrives unasked, until ``quiet_s`` of silence."""
        out = []
        while True:
            try:
                message = self.lines.get(timeout=quiet_s)
            except queue.Empty:
                return out
            if message is None:
                return out
            out.append(message)

    def close(self) -> int:
        """End of input ends the session; waits for it (killed after 20 s)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(timeout=5)
        self.proc.stdout.close()
        return code


def run_spawn(setup: Setup, k: int) -> Result:
    project, files = setup.project(f"spawn{k}")

    def one(path: Path) -> str | None:
        argv = [str(claude_cli()), "-p", f"Summarise {path}", "--output-format", "json"]
        text = str(parse_result(setup.run([*argv, *cli_flags()], project)).get("result"))
        return None if text.strip() == expected_summary(path) else f"{path.name}: {text[:160]!r}"

    start = time.monotonic()
    with sampled() as sampler, ThreadPoolExecutor(k) as pool:
        problems = [p for p in pool.map(one, files) if p]
        wall = time.monotonic() - start
        usage = sampler.finish()
    return Result(f"spawn k={k}", wall, usage, problems, setup.brain.since(start))


def run_pool(setup: Setup, k: int, *, clear: bool = False) -> Result:
    """k live sessions take the subtasks in turn; ``clear``: ``/clear`` between two subtasks
    (a local command: the context starts over, the process stays)."""
    case = f"pool+clear k={k}" if clear else f"pool k={k}"
    project, files = setup.project(case.replace(" ", "-").replace("=", ""))
    todo: queue.Queue[Path] = queue.Queue()
    for path in files:
        todo.put(path)
    problems: list[str] = []

    def serve() -> None:
        session = LiveSession(setup, project, cli_flags())
        try:
            for done in itertools.count():
                try:
                    path = todo.get_nowait()
                except queue.Empty:
                    break
                if clear and done and session.ask("/clear").get("subtype") != "success":
                    problems.append("/clear failed")
                text = str(session.ask(f"Summarise {path}").get("result")).strip()
                if text != expected_summary(path):
                    problems.append(f"{path.name}: {text[:160]!r}")
        except (OSError, EOFError, queue.Empty) as exc:
            problems.append(f"live session: {type(exc).__name__} {exc}")
        finally:
            if code := session.close():
                problems.append(f"live session exit {code}")

    start = time.monotonic()
    with sampled() as sampler, ThreadPoolExecutor(k) as pool:
        for future in [pool.submit(serve) for _ in range(k)]:
            future.result()
        wall = time.monotonic() - start
        usage = sampler.finish()
    return Result(case, wall, usage, problems, setup.brain.since(start))


# --------------------------------------------------------------------------------------------
# What one live session can change between tasks


def probe_live_settings(setup: Setup) -> list[tuple[str, str, str]]:
    """(setting, changeable per task?, evidence), from real sessions and what the fake saw."""
    from claude_agent_sdk import ClaudeSDKClient

    def allow(*rules: str) -> Json:
        return {"subtype": "apply_flag_settings", "settings": {"permissions": {"allow": rules}}}

    def edited(path: Path) -> bool:
        return "LINE" in path.read_text()

    def requests_since(start: float) -> list[Request]:
        return [r for r in setup.api.message_requests(side_calls=False) if r.received_at >= start]

    saved, setup.brain.latency_s = setup.brain.latency_s, 0.0
    project, files = setup.project("probe", 5)
    worktree, (moved_file,) = setup.project("probe-worktree", 1)
    out: list[tuple[str, str, str]] = []
    try:
        # The tool set offered to the model is fixed at spawn: a rule cannot add a tool.
        start = time.monotonic()
        session = LiveSession(setup, project, cli_flags("Read"))
        session.control(allow("Read", "Edit"))
        answer = str(session.ask(f"Edit {files[0]}").get("result"))
        session.close()
        offered = sorted({",".join(r.offered_tool_names) for r in requests_since(start)})
        fixed = offered == ["Read"] and not edited(files[0])
        evidence = f"after allowing Edit every request still offered {offered}; "
        out.append(
            (
                "tools offered (--tools)",
                "no" if fixed else "yes?",
                evidence + answer.split("error=", 1)[-1][:90],
            )
        )

        # Permission rules and mode, among the tools offered at spawn.
        session = LiveSession(setup, project, ["--tools", "Read,Edit", *cli_flags("Read")[2:]])
        denied = bool(session.ask(f"Edit {files[1]}").get("permission_denials"))
        session.control(allow("Read", "Edit"))
        session.ask(f"Edit {files[2]}")
        session.control(allow("Read"))
        denied_again = bool(session.ask(f"Edit {files[3]}").get("permission_denials"))
        mode = session.control({"subtype": "set_permission_mode", "mode": "acceptEdits"})
        session.close()
        flips = denied and edited(files[2]) and denied_again and not edited(files[3])
        evidence = f"Edit denied {denied}; allowed: edited {edited(files[2])}; "
        evidence += f"allow withdrawn: denied {denied_again}"
        out.append(("permission rules (apply_flag_settings)", "yes" if flips else "no?", evidence))
        verdict = "yes" if mode.get("subtype") == "success" else "no?"
        evidence = f"answered {json.dumps(mode.get('response'))}"
        out.append(("permission mode (set_permission_mode)", verdict, evidence))

        # Working directory (a task's worktree): set_cwd, after a trust attestation.
        start = time.monotonic()
        session = LiveSession(setup, project, cli_flags())
        session.ask(f"Summarise {files[4]}")
        refused = session.control({"subtype": "set_cwd", "path": str(worktree)})
        trust = {"trust_accepted": True, "trusted_directory": str(worktree)}
        moved = session.control({"subtype": "set_cwd", "path": str(worktree), **trust})
        unasked = sum(m.get("type") == "result" for m in session.drain(1.0))
        after = str(session.ask(f"Summarise {moved_file}").get("result")).strip()
        session.close()
        last = requests_since(start)[-1]
        body = json.dumps(last.body)
        status = (moved.get("response") or {}).get("status")
        evidence = f"without trust: {(refused.get('response') or {}).get('status')}; "
        evidence += f"with: {status}, {unasked} unasked result; the next request still names "
        evidence += f"{last.working_directory()} up top, adds an 'Environment update' "
        evidence += f"({'Environment update' in body}), keeps the earlier task "
        evidence += (
            f"({str(files[4]) in body}); its subtask ok: {after == expected_summary(moved_file)}"
        )
        out.append(("working directory (set_cwd)", "partly" if status == "ok" else "no?", evidence))

        # Turn and cost budgets: command-line flags only; turns per message, cost per session.
        session = LiveSession(setup, project, [*cli_flags(), "--max-turns", "2"])
        turns = [session.ask(f"Summarise {path}") for path in files[:3]]
        session.close()
        evidence = "counted per message: three 2-turn tasks under --max-turns 2 ended "
        evidence += f"{[t.get('subtype') for t in turns]}; no control request sets it"
        out.append(("max turns (--max-turns)", "no", evidence))
        budget = round(1.5 * float(turns[0].get("total_cost_usd") or 0.0), 6)
        session = LiveSession(setup, project, [*cli_flags(), "--max-budget-usd", str(budget)])
        spent = [session.ask(f"Summarise {path}") for path in files[:2]]
        session.close()
        costs = [round(float(s.get("total_cost_usd") or 0.0), 4) for s in spent]
        evidence = f"counted per session: under ${budget} (1.5 tasks' worth) two tasks ended "
        evidence += f"{[s.get('subtype') for s in spent]}, total_cost_usd {costs} (cumulative); "
        out.append(("cost budget (--max-budget-usd)", "no", evidence + "no control request"))
        exposed = [n for n in ("set_cwd", "apply_flag_settings") if hasattr(ClaudeSDKClient, n)]
        evidence = f"set_permission_mode yes; set_cwd, apply_flag_settings: {exposed or 'no'}"
        out.append(("claude-agent-sdk ClaudeSDKClient offers", "-", evidence))
    except (OSError, EOFError, queue.Empty, IndexError) as exc:
        out.append(("probe", "MISS", f"{type(exc).__name__}: {exc}"))
    finally:
        setup.brain.latency_s = saved
    return out


# --------------------------------------------------------------------------------------------
# Running and reporting


@dataclass
class Report:
    tasks: int
    latency_s: float
    file_lines: int
    results: dict[str, list[Result]] = field(default_factory=dict)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        rows = [r for rs in self.results.values() for r in rs]
        return not self.problems and all(r.ok for r in rows) and "MISS" not in str(self.findings)


def run_benchmark(
    *,
    root: Path,
    tasks: int = 8,
    latency_s: float = 1.0,
    repeat: int = 3,
    pool_repeat: int = 2,
    parallel: Sequence[int] = (2, 4),
    file_lines: int = 60,
    cases: Sequence[str] = ("native", "fanout", "pool", "probe"),
    progress: Callable[[str], None] = lambda line: None,
) -> Report:
    """Run the cases, interleaved round-robin, against one fake API (the core of main)."""
    brain = Brain(latency_s)
    report = Report(tasks, latency_s, file_lines)
    (root / "home").mkdir(parents=True, exist_ok=True)
    with FakeMessagesAPI(brain) as api:
        setup = Setup(root, api, brain, root / "home", tasks, latency_s, file_lines)
        head: list[Callable[[], Result]] = []
        head += [lambda: run_native(setup)] if "native" in cases else []
        head += [lambda: run_fanout(setup)] if "fanout" in cases else []
        if "fanout" in cases and "claude_start_interval_s" in fanout_limits():
            head += [lambda: run_fanout(setup, interval_s=0.0)]
        pool: list[Callable[[], Result]] = []
        for k in sorted({1, *parallel}) if "pool" in cases else ():
            pool += [lambda k=k: run_spawn(setup, k)]
            if k in parallel:
                pool += [lambda k=k: run_pool(setup, k)]
                pool += [lambda k=k: run_pool(setup, k, clear=True)]
        for i in range(max(repeat if head else 0, pool_repeat if pool else 0)):
            round_ = (head if i < repeat else []) + (pool if i < pool_repeat else [])
            for case in round_[i % len(round_) :] + round_[: i % len(round_)]:
                wait_for_descendants()
                result = case()
                report.results.setdefault(result.case, []).append(result)
                miss = "" if result.ok else f"  MISS: {'; '.join(result.problems)[:300]}"
                progress(f"  round {i + 1}: {result.case:<14} {result.wall_s:6.2f} s{miss}")
        if "probe" in cases:
            wait_for_descendants()
            report.findings = probe_live_settings(setup)
        if api.handler_errors:
            report.problems.append(f"fake API handler errors: {api.handler_errors[:3]}")
    return report


def med(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f}"


def task_tokens(seen: Sequence[Seen]) -> tuple[list[int], list[list[int]]]:
    """Input tokens of every subtask (all its requests), and per session the tokens of each
    subtask's first request in order."""
    sessions: dict[str, list[Seen]] = {}
    for s in seen:
        if s.role == "task":
            sessions.setdefault(s.session, []).append(s)
    per_task: list[int] = []
    firsts: list[list[int]] = []
    for requests in sessions.values():
        firsts.append([])
        for i, s in enumerate(requests):
            if i == 0 or s.subject != requests[i - 1].subject:
                per_task.append(0)
                firsts[-1].append(s.tokens)
            per_task[-1] += s.tokens
    return per_task, firsts


def medians(results: Sequence[Result], get: Callable[[Result], float | None]) -> float | None:
    return med([get(r) for r in results])


def print_head_to_head(report: Report) -> None:
    columns = [c for c in report.results if c == "native" or c.startswith("fanout")]
    columns.sort(key=lambda c: (c != "native", len(c)))
    rows: list[tuple[str, Callable[[Result], float | None], Callable[[float | None], str]]] = [
        ("wall s, end to end", lambda r: r.wall_s, fmt),
        ("  native: fan-out phase (Agent calls)", lambda r: r.extra.get("phase_s"), fmt),
        ("  fanout: run_created -> run_finished", lambda r: r.extra.get("run_s"), fmt),
        ("  fanout: first to last worker start", lambda r: r.extra.get("start_spread_s"), fmt),
    ]
    for group, label in (("own", "fanout's own"), ("all", "everything")):
        for kind in ("rss", "pss", "uss"):
            get = partial(peak, kind=kind, group=group)
            rows.append((f"peak {kind.upper()} MB, {label}", get, mb))
    rows.append(("peak RSS MB per claude CLI", per_cli_rss, mb))
    for kind in CLASSES:
        if any(r.usage.count.get(kind) for c in columns for r in report.results[c]):
            rows.append((f"processes: {kind}", partial(count_of, kind=kind), fmt0))
            rows.append(("  their CPU s", partial(cpu_of, kinds=(kind,)), fmt))
    rows.append(("CPU s, everything", partial(cpu_of, kinds=CLASSES), fmt))
    rows.append(("CPU s, fanout's own", partial(cpu_of, kinds=OWN), fmt))

    runs = len(report.results[columns[0]])
    print(f"## {report.tasks} subtasks x 2 turns, latency {report.latency_s:g} s ", end="")
    print(f"(median of {runs} runs)\n")
    names = {"native": "native Agent tool"}
    header = f"{'':38}" + "".join(f"{names.get(c, c):>18}" for c in columns)
    print(header + "\n" + "-" * len(header))
    for label, get, show in rows:
        cells = [show(medians(report.results[c], get)) for c in columns]
        print(f"{label:38}" + "".join(f"{cell:>18}" for cell in cells))
    print()
    if "native" in columns:
        native = report.results["native"]
        n_wall, n_phase = medians(native, rows[0][1]), medians(native, rows[1][1])
        for c in columns[1:]:
            wall = medians(report.results[c], rows[0][1])
            if n_wall and wall and n_phase:
                print(f"wall-time ratio {c} / native: {wall / n_wall:.2f}x end to end; ", end="")
                print(f"{wall / n_phase:.2f}x the native fan-out phase alone")
        print(f"native subagent_stats (last run): {json.dumps(native[-1].extra.get('stats'))}")
        print(f"tools offered to the subagents: {native[-1].extra.get('subagent_tools')}")


def peak(r: Result, *, kind: str, group: str) -> float | None:
    return getattr(r.usage, f"peak_{kind}").get(group)


def per_cli_rss(r: Result) -> float | None:
    live = r.usage.live.get("claude CLI")
    return r.usage.peak_rss.get("claude CLI", 0) / live if live else None


def count_of(r: Result, *, kind: str) -> float | None:
    return r.usage.count.get(kind)


def cpu_of(r: Result, *, kinds: Sequence[str]) -> float:
    return sum(r.usage.cpu.get(k, 0.0) for k in kinds)


def fmt0(value: float | None) -> str:
    return fmt(value, ".0f")


def print_pooling(report: Report) -> None:
    cases = [c for c in report.results if c.startswith(("spawn", "pool"))]
    cases.sort(key=lambda c: (int(c.split("=")[1]), c.startswith("pool"), len(c)))
    runs = len(report.results[cases[0]])
    print(
        f"\n## Pooling: {report.tasks} subtasks x 2 turns, latency {report.latency_s:g} s, ", end=""
    )
    print(f"{report.file_lines}-line files (median of {runs} runs)\n")
    header = f"{'mode':<15}{'wall s':>7}{'CPU s':>7}{'CPU/task':>9}{'CLIs':>5}{'RSS MB':>8}"
    header += f"{'PSS MB':>8}{'in tok/task':>12}  1st request of each task in one session"
    print(header + "\n" + "-" * len(header))
    for case in cases:
        rs = report.results[case]
        cpu = medians(rs, partial(cpu_of, kinds=CLASSES)) or 0.0
        per_task = med([statistics.mean(task_tokens(r.seen)[0] or [0]) for r in rs])
        firsts = max(task_tokens(rs[-1].seen)[1], key=len, default=[])
        shown = ", ".join(f"{t:,}" for t in firsts[:4]) + (", ..." if len(firsts) > 4 else "")
        clis = fmt0(medians(rs, partial(count_of, kind="claude CLI")))
        rss = mb(medians(rs, partial(peak, kind="rss", group="all")))
        pss = mb(medians(rs, partial(peak, kind="pss", group="all")))
        line = f"{case:<15}{fmt(medians(rs, lambda r: r.wall_s)):>7}{cpu:7.2f}"
        line += f"{cpu / report.tasks:9.2f}{clis:>5}{rss:>8}{pss:>8}{fmt(per_task, ',.0f'):>12}"
        print(f"{line}  {shown}")
    print("in tok/task: rough input tokens (request JSON / 4) the fake saw over a task's requests")


def print_report(report: Report) -> None:
    print()
    if any(c == "native" or c.startswith("fanout") for c in report.results):
        print_head_to_head(report)
    if any(c.startswith("pool") for c in report.results):
        print_pooling(report)
    if report.findings:
        print("\n## Per-task settings in one live session (control requests to the CLI)\n")
        for setting, verdict, evidence in report.findings:
            print(f"- {setting}: {verdict}. {evidence}")
    print()
    for rs in report.results.values():
        for r in rs:
            if not r.ok:
                print(f"MISS {r.case}: {'; '.join(r.problems)[:400]}")
    for problem in report.problems:
        print(f"MISS {problem}")
    print("all checks passed" if report.ok else "some checks failed (MISS above)")


def report_figures(report: Report) -> Json:
    """The report's medians per case, as one JSON object (``--json``)."""
    cases: Json = {}
    for case, rs in report.results.items():
        cases[case] = {
            "runs": len(rs),
            "ok": all(r.ok for r in rs),
            "wall_s": medians(rs, lambda r: r.wall_s),
            "cpu_s": medians(rs, partial(cpu_of, kinds=CLASSES)),
            "cpu_own_s": medians(rs, partial(cpu_of, kinds=OWN)),
            "claude_clis": medians(rs, partial(count_of, kind="claude CLI")),
            "peak_rss_mb_per_cli": mb_or_none(medians(rs, per_cli_rss)),
            "input_tokens_per_task": med(
                [statistics.mean(task_tokens(r.seen)[0] or [0]) for r in rs]
            ),
            **{
                f"peak_{kind}_mb_{group}": mb_or_none(
                    medians(rs, partial(peak, kind=kind, group=group))
                )
                for kind in ("rss", "pss")
                for group in ("own", "all")
            },
            **{
                key: med([r.extra.get(key) for r in rs])
                for key in ("phase_s", "run_s", "start_spread_s")
                if any(isinstance(r.extra.get(key), float | int) for r in rs)
            },
        }
    return {
        "benchmark": "bench_workers",
        "tasks": report.tasks,
        "latency_s": report.latency_s,
        "file_lines": report.file_lines,
        "cases": cases,
        "findings": [
            {"setting": setting, "verdict": verdict, "evidence": evidence}
            for setting, verdict, evidence in report.findings
        ],
        "problems": report.problems
        + [
            f"{r.case}: {'; '.join(r.problems)}"
            for rs in report.results.values()
            for r in rs
            if not r.ok
        ],
        "ok": report.ok,
    }


def mb_or_none(value: float | None) -> float | None:
    return None if value is None else value / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=8, help="subtasks (subagents, workers)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model response")
    parser.add_argument("--repeat", type=int, default=3, help="runs of native and fanout")
    parser.add_argument("--pool-repeat", type=int, default=2, help="runs of each pooling mode")
    parser.add_argument(
        "--parallel",
        default="2,4",
        help="k: live sessions in the pool, CLIs at once when "
        "spawning per task (spawn-per-task also runs sequentially, k=1)",
    )
    parser.add_argument("--file-lines", type=int, default=60, help="lines of each file read")
    parser.add_argument("--cases", default="native,fanout,pool,probe", help="which to run")
    parser.add_argument("--quick", action="store_true", help="1 run each, k=4, latency 0.5 s")
    parser.add_argument(
        "--json", action="store_true", help="the report on stderr, one JSON object on stdout"
    )
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        report = run_main(args)
    if args.json:
        print(json.dumps(report_figures(report)))


def run_main(args: argparse.Namespace) -> Report:
    """Run the cases the arguments ask for and print the report."""
    if args.quick:
        args.repeat, args.pool_repeat, args.parallel, args.latency = 1, 1, "4", 0.5
    git = ["git", "-C", str(Path(__file__).parent), "log", "-1", "--format=%h %s"]
    commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    import claude_fanout

    print(
        f"bench_workers: Python {platform.python_version()}, {psutil.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; CLI {claude_cli()}\n"
        f"claude_fanout from {Path(claude_fanout.__file__).parent}; HEAD {commit}"
    )
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fanout-bench-workers-") as tmp:
        report = run_benchmark(
            root=Path(tmp),
            tasks=args.tasks,
            latency_s=args.latency,
            repeat=args.repeat,
            pool_repeat=args.pool_repeat,
            parallel=[int(k) for k in args.parallel.split(",")],
            file_lines=args.file_lines,
            cases=args.cases.split(","),
            progress=print,
        )
        print_report(report)
        wait_for_descendants()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"(took {time.monotonic() - started:.0f} s; load average at the end: {load})")
    return report


if __name__ == "__main__":
    main()
