"""Helpers for tests: finding a test's processes, waiting on conditions, CLI results."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from claude_fanout import pids
from claude_fanout.store import active, layout
from claude_fanout.store.eventlog import EventLog
from claude_fanout.store.files import make_private_dir, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]  # the repository


def processes_under(marker: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line or environment mentions ``marker``."""
    found = []
    needle = str(marker)
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            environ = proc.environ() if needle not in cmdline else {}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if needle in cmdline or any(needle in value for value in environ.values()):
            found.append(proc)
    return found


def alive(pid: int | None) -> bool:
    """Whether ``pid`` names a process that is running (a zombie is not)."""
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def read_pid(path: Path) -> int | None:
    """The pid a worker wrote to ``path`` (a whole line of digits), or None before it has."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return int(text) if text.endswith("\n") and text.strip().isdigit() else None


def most_live(events: list[dict[str, Any]]) -> int:
    """The most tasks a run's log shows running at once (``task_started`` .. ``task_exited``)."""
    live = peak = 0
    for event in events:
        if event["type"] == "task_started":
            live += 1
            peak = max(peak, live)
        elif event["type"] == "task_exited":
            live -= 1
    return peak


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The script at ``path`` as a module named ``name`` (default: the file's stem), loaded with
    its folder on ``sys.path`` so that it finds the modules next to it."""
    name = name or path.stem
    folder = str(path.parent)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    return load_script(ROOT / "benchmarks" / f"{name}.py")


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, its folder importable while it loads (``scratch``)."""
    return load_script(ROOT / "tools" / f"{name}.py")


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class CLIResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class FakeRun:
    """A run store written by hand, with no supervisor: `supervisor.json` names this test
    process, so the run reads as live while a test appends its events."""

    def __init__(
        self,
        project: Path,
        run_id: str,
        tasks: dict[str, dict[str, Any]],
        session: str | None,
        delivery: str | None = None,
    ) -> None:
        self.project = project
        self.run_id = run_id
        self.path = Path(layout.run_path(project, run_id))
        make_private_dir(self.path.parent)
        make_private_dir(self.path)
        self.log = EventLog(self.path / "events.jsonl")
        plan = {
            "version": 1,
            "tasks": [
                {
                    "id": tid,
                    "kind": "claude",
                    "prompt": spec.get("prompt", f"Review {tid}"),
                    "claims": spec.get("claims", []),
                }
                for tid, spec in tasks.items()
            ],
        }
        (self.path / "plan.json").write_text(json.dumps(plan))
        conductor = (
            None
            if session is None
            else {
                "session_id": session,
                "pid": os.getpid(),
                "start_time": pids.process_start_time(os.getpid()),
            }
        )
        self.log.append(
            "run_created",
            run_id=run_id,
            tasks=list(tasks),
            conductor=conductor,
            claims={t: s["claims"] for t, s in tasks.items() if s.get("claims")},
            delivery=delivery,
        )
        self.heartbeat()
        self.log.append("supervisor_started", pid=os.getpid())
        active.mark(project, run_id)

    def heartbeat(self) -> None:
        write_json_atomic(
            self.path / "supervisor.json",
            {
                "pid": os.getpid(),
                "start_time": pids.process_start_time(os.getpid()),
                "heartbeat": time.time(),
            },
        )

    def start(self, task: str) -> None:
        self.log.append("task_started", task=task, attempt=1, pid=os.getpid())

    def finish(
        self, task: str, outcome: str = "succeeded", result: str | None = None, **fields: Any
    ) -> None:
        if result is not None:
            out = self.path / "workers" / task / "out"
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.md").write_text(result)
        self.log.append(
            "task_exited",
            task=task,
            attempt=1,
            outcome=outcome,
            exit_code=0 if outcome == "succeeded" else 1,
            **fields,
        )

    def end(self, state: str = "succeeded") -> None:
        self.log.append("run_finished", state=state)

    @contextlib.contextmanager
    def stand_in_supervisor(self) -> Iterator[subprocess.Popen[bytes]]:
        """A live process posing as this run's supervisor, for hooks that signal it."""
        proc = subprocess.Popen(["sleep", "30"])
        try:
            write_json_atomic(
                self.path / "supervisor.json",
                {
                    "pid": proc.pid,
                    "start_time": pids.process_start_time(proc.pid),
                    "heartbeat": time.time(),
                },
            )
            yield proc
        finally:
            proc.kill()
            proc.wait()


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``git ARGS`` in ``cwd``; its stdout. A commit needs no identity from the machine."""
    return subprocess.run(
        ["git", "-c", "user.name=Test User", "-c", "user.email=user@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", **(env or {})},
    ).stdout


def count_bytes_folded(monkeypatch: Any) -> list[int]:
    """From now on, how many bytes of a run's log each state read folds past its snapshot (one
    entry per read): what a hook's cost grows with."""
    from claude_fanout.store import state

    reads: list[int] = []
    real = state.read_events

    def counting(path: Any, offset: int = 0) -> Any:
        result = real(path, offset)
        reads.append(result.offset - offset)
        return result

    monkeypatch.setattr(state, "read_events", counting)
    return reads
