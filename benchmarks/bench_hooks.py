"""Wall time of fanout's tool and Stop hooks, run exactly as Claude Code runs them.

    .venv/bin/python benchmarks/bench_hooks.py [--repeat N] [--warmup N] [--events N]
                                               [--small-events N] [--quick] [--json]

Every call is ``/bin/sh -c "<command>"``, the command being what ``fanout install`` writes
(``settings_hooks.hook_command``), with ``CLAUDE_PROJECT_DIR`` set, the project as working
directory and a recorded payload (``tests/fixtures/hooks/``, rewritten to a scratch project) on
stdin. Wall time is ``time.perf_counter`` around ``subprocess.run``; the variants are interleaved
round-robin (the starting variant rotates each round) so machine noise hits all of them alike.

Measured side by side, in one run:

- baselines: ``true`` (a no-op hook) and the floor of any Python hook that reads its payload,
  ``<python> -I -S -c 'import json, sys; json.load(sys.stdin)'`` (same interpreter);
- A, no live run (``.claude/runs/.active/`` empty, and absent): PreToolUse, PostToolUse, Stop.
  The guard exits before Python starts. Target: at most 1.2x ``true``;
- B, a live run of 50 claude tasks (25 running, 25 succeeded) built by hand, with a supervisor.json
  naming this process (heartbeat refreshed every second, as the supervisor does), a state.json
  snapshot covering all but the last 10 events, and an events.jsonl of 100,000 lines (and the
  same with 1,000 lines, to show no growth with log length): PreToolUse on an unclaimed file
  (allowed: the common case) and on a claimed one (deny), PostToolUse with nothing new, and Stop
  (``[stop] wait_s = 0``: it answers "block" at once). Target: at most 1.3x the floor.
- C, a real live run: 50 shell tasks (``sleep``, 8 at a time, each claiming a file) started
  through ``runner.start_run`` with this process as its Conductor, its supervisor running; then
  another process appends 100,000 workers' notices to its log (what ``fanout publish notice``
  writes), records the supervisor did not write. The same four hook calls as B. Target: at most
  1.3x the floor. The run is cancelled, and its supervisor waited for, at the end.

Where the time goes: the ``info`` rows run the floor plus only a hook's imports (no work), and
``work ms`` is the same hook call made in this process with every module already imported.
It also checks each hook's answer (so a hook failing open cannot pass for a fast one), reports
the one-off cost of a session's first PostToolUse on a run (its cursor starts at offset 0 of the
log), and prints a ``-X importtime`` breakdown of PreToolUse, PostToolUse and Stop calls, with
the modules each imports beyond the floor and who imports them. Always exits 0.

``FANOUT_PORTABLE=1`` measures the portable path (psutil, polling: what macOS runs); the hooks
inherit it, as every fanout process must for their start times to agree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from live_run import start_live_run, stop_run

from claude_fanout import install, pids, settings_hooks
from claude_fanout.states import EventType
from claude_fanout.store import active, layout
from claude_fanout.store.eventlog import EventLog, encode
from claude_fanout.store.files import make_private_dir, open_private, write_json_atomic
from claude_fanout.store.state import fold_tail, save_snapshot
from claude_fanout.store.status import RunStatus

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures", "hooks")
SESSION_ID = "0b5e55ed-0000-4000-8000-00000000be4c"
N_TASKS = 50
N_RUNNING = 25
REAL = "C real run, foreign"  # scenario C's label
TAIL_EVENTS = 10  # events past the snapshot's offset (a supervisor folds every second)
SH = "/bin/sh"  # what Claude Code runs hooks with (dash on Debian/Ubuntu)
TARGET_A = 1.2
TARGET_B = 1.3
TARGET_GROWTH = 1.10
SRC = os.path.dirname(os.path.dirname(os.path.abspath(settings_hooks.__file__)))
# What each hook imports on its path (dispatch imports the handler; Stop's loads config+tomllib).
HOOK_MODULES = {
    "PreToolUse": ["claude_fanout.hooks.dispatch", "claude_fanout.hooks.pre_tool_use"],
    "PostToolUse": [
        "claude_fanout.hooks.dispatch",
        "claude_fanout.hooks.post_tool_use",
        "claude_fanout.defaults",
    ],
    "Stop": [
        "claude_fanout.hooks.dispatch",
        "claude_fanout.hooks.stop",
        "claude_fanout.hooks.post_tool_use",
        "claude_fanout.config",
        "tomllib",
    ],
}  # 100k-line log vs 1k-line log, same hook: medians within noise


# --------------------------------------------------------------------------------------------
# Scratch projects


def new_project(root: str, name: str) -> str:
    project = os.path.join(root, name)
    os.makedirs(os.path.join(project, ".claude"))
    os.makedirs(os.path.join(project, "src"))
    for i in range(1, N_TASKS + 1):
        with open(os.path.join(project, "src", f"file{i}.py"), "w") as handle:
            handle.write(f"# file {i}\n")
    with open(os.path.join(project, "src", "other.py"), "w") as handle:
        handle.write("# nobody claims this\n")
    return project


def build_live_run(project: str, lines: int) -> tuple[str, str]:
    """A run store as a live supervisor would leave it; returns (run id, run directory)."""
    with open(os.path.join(project, ".claude", "fanout.toml"), "w") as handle:
        handle.write("[stop]\nwait_s = 0\n")
    run_id = time.strftime("%Y%m%d-%H%M%S-000-beef", time.gmtime())
    root = layout.runs_root(project)
    make_private_dir(root)
    run = layout.run_path(project, run_id)
    make_private_dir(run)
    tasks = [f"W{i}" for i in range(1, N_TASKS + 1)]
    claims = {task: [f"src/file{i}.py"] for i, task in enumerate(tasks, 1)}
    plan = {
        "version": 1,
        "name": "bench",
        "max_parallel": N_TASKS,
        "tasks": [
            {
                "id": task,
                "kind": "claude",
                "deps": [],
                "claims": claims[task],
                "timeout_s": None,
                "retries": 1000,
                "env": {},
                "prompt": f"Review src/file{i}.py for bugs and fix them.",
                "tools": ["Read", "Edit", "Grep"],
                "max_turns": None,
                "model": None,
            }
            for i, task in enumerate(tasks, 1)
        ],
    }
    write_json_atomic(layout.join(run, layout.PLAN), plan)

    pid = os.getpid()
    start_time = pids.process_start_time(pid)
    now = time.time()
    t0 = now - 3600.0
    records: list[dict[str, object]] = [
        {
            "ts": t0,
            "type": str(EventType.RUN_CREATED),
            "run_id": run_id,
            "tasks": tasks,
            "name": "bench",
            "claims": claims,
            "conductor": {"session_id": SESSION_ID, "pid": pid, "start_time": start_time},
        },
        {"ts": t0 + 0.1, "type": str(EventType.SUPERVISOR_STARTED), "pid": pid},
    ]
    # The end of the log: W1..W25 succeeded, W26..W50 running (their starts last, so the tail
    # past the snapshot holds task_started records).
    final: list[dict[str, object]] = []
    for task in tasks[: N_TASKS - N_RUNNING]:
        final.append({"type": str(EventType.TASK_STARTED), "task": task, "pid": 40000})
        final.append(
            {
                "type": str(EventType.TASK_EXITED),
                "task": task,
                "outcome": "succeeded",
                "exit_code": 0,
            }
        )
    for task in tasks[N_TASKS - N_RUNNING :]:
        final.append({"type": str(EventType.TASK_STARTED), "task": task, "pid": 41000})
    # Filler up to ``lines``: failed attempts and their retries, and workers' notices.
    filler: list[dict[str, object]] = []
    i = 0
    while len(records) + len(filler) + len(final) < lines:
        task = tasks[i % N_TASKS]
        attempt = i // N_TASKS + 1
        cycle: list[dict[str, object]] = [
            {
                "type": str(EventType.TASK_STARTED),
                "task": task,
                "attempt": attempt,
                "pid": 2000 + i,
            },
            {
                "type": str(EventType.NOTICE),
                "task": task,
                "text": f"{task}: still reading, step {i}",
            },
            {
                "type": str(EventType.TASK_EXITED),
                "task": task,
                "outcome": "failed",
                "exit_code": 1,
                "reason": "exit code 1",
            },
            {"type": str(EventType.TASK_RETRY), "task": task, "reason": "exit code 1"},
        ]
        filler.extend(cycle[: lines - len(records) - len(filler) - len(final)])
        i += 1
    body = records + filler + final
    step = (now - 60.0 - t0) / len(body)
    for n, record in enumerate(body):
        record.setdefault("ts", t0 + n * step)
        if record["type"] == str(EventType.TASK_STARTED):
            record.setdefault("attempt", 1)
    events = layout.join(run, layout.EVENTS)
    head, tail = body[:-TAIL_EVENTS], body[-TAIL_EVENTS:]
    fd = open_private(events, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"".join(encode(record) for record in head))
    save_snapshot(run, fold_tail(run, RunStatus(run_id=run_id)))
    log = EventLog(events)
    for record in tail:
        log.append_record(record)
    write_supervisor(run, run_id)
    active.mark(project, run_id)
    return run_id, run


FOREIGN_WRITER = """
import sys
from claude_fanout.store.eventlog import EventLog
log = EventLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.append("notice", task=f"W{i % 50 + 1}", text=f"still reading, step {i}")
"""


def append_foreign(run: str, lines: int) -> None:
    """``lines`` notices appended by another process, as workers' ``fanout publish`` does."""
    events = layout.join(run, layout.EVENTS)
    subprocess.run(
        [sys.executable, "-c", FOREIGN_WRITER, events, str(lines)],
        check=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )


def write_supervisor(run: str, run_id: str) -> None:
    pid = os.getpid()
    write_json_atomic(
        layout.join(run, layout.SUPERVISOR),
        {
            "pid": pid,
            "start_time": pids.process_start_time(pid),
            "watchdog_pid": None,
            "heartbeat": time.time(),
            "run_id": run_id,
        },
    )


class Heartbeat(threading.Thread):
    """Rewrites supervisor.json every second, as a live supervisor does."""

    def __init__(self, runs: list[tuple[str, str]]) -> None:
        super().__init__(daemon=True)
        self.runs = runs
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for run_id, run in self.runs:
                write_supervisor(run, run_id)


def count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return handle.read().count(b"\n")


# --------------------------------------------------------------------------------------------
# Payloads


def payload(name: str, project: str, **tool_input: str) -> bytes:
    """A recorded payload, moved to ``project`` and this benchmark's session."""
    with open(os.path.join(FIXTURES, name)) as handle:
        data = json.load(handle)
    old_cwd = data["cwd"]
    text = json.dumps(data).replace(old_cwd, project)
    data = json.loads(text)
    data["session_id"] = SESSION_ID
    data["transcript_path"] = os.path.join(
        project, ".claude-home", "projects", "bench", f"{SESSION_ID}.jsonl"
    )
    if tool_input:
        data["tool_input"].update(tool_input)
    return json.dumps(data, indent=1).encode()


# --------------------------------------------------------------------------------------------
# Measurement


class Variant:
    def __init__(
        self,
        scenario: str,
        hook: str,
        command: str,
        project: str,
        stdin: bytes,
        *,
        baseline: str | None = None,
        target: float | None = None,
        expect: str = "",
    ) -> None:
        self.scenario = scenario
        self.hook = hook
        self.command = command
        self.project = project
        self.stdin = stdin
        self.baseline = baseline
        self.target = target
        self.expect = expect  # "", "deny", "block": what stdout must say
        self.samples: list[float] = []
        self.answer = ""

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.hook}"

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FANOUT_") or k == pids.PORTABLE_ENV
        }
        env.update(
            CLAUDE_PROJECT_DIR=self.project,
            CLAUDE_CODE_SESSION_ID=SESSION_ID,
            CLAUDE_PID=str(os.getpid()),
            CLAUDECODE="1",
        )
        return env

    def call(self, argv: list[str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            argv or [SH, "-c", self.command],
            input=self.stdin,
            capture_output=True,
            cwd=self.project,
            env=self.env(),
            check=False,
        )

    def timed(self) -> subprocess.CompletedProcess[bytes]:
        env = self.env()
        start = time.perf_counter()
        done = subprocess.run(
            [SH, "-c", self.command],
            input=self.stdin,
            capture_output=True,
            cwd=self.project,
            env=env,
            check=False,
        )
        self.samples.append((time.perf_counter() - start) * 1000.0)
        return done

    def check(self, done: subprocess.CompletedProcess[bytes]) -> str | None:
        """What is wrong with this call's result, or None."""
        if done.returncode != 0:
            return f"exit {done.returncode}: {done.stderr.decode(errors='replace')[:200]}"
        out = done.stdout.decode(errors="replace").strip()
        if not self.expect:
            return None if not out else f"unexpected output {out[:200]!r}"
        if self.expect == "deny":
            ok = '"permissionDecision": "deny"' in out
        else:
            ok = '"decision": "block"' in out
        return None if ok else f"expected {self.expect}, got {out[:200]!r}"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return statistics.quantiles(self.samples, n=10, method="inclusive")[8]


def measure(variants: list[Variant], repeat: int, warmup: int) -> list[str]:
    problems: list[str] = []
    for _ in range(warmup):
        for variant in variants:
            done = variant.call()
            variant.answer = done.stdout.decode(errors="replace").strip()
            problem = variant.check(done)
            if problem:
                problems.append(f"{variant.key}: {problem}")
    for round_ in range(repeat):
        shift = round_ % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            problem = variant.check(variant.timed())
            if problem:
                problems.append(f"{variant.key}: {problem}")
    return problems


def first_post_cost(variant: Variant, run: str, repeat: int) -> list[float]:
    """A session's first PostToolUse on a run: no cursor yet, so it reads the log from 0."""
    cursor = layout.session_cursor(run, SESSION_ID)
    samples = []
    for _ in range(repeat):
        os.unlink(cursor)
        start = time.perf_counter()
        variant.call()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def work_ms(variant: Variant, event: str, repeat: int = 200) -> float:
    """Median in-process time of the hook's work alone (modules already imported)."""
    import io

    from claude_fanout.hooks.dispatch import run

    return in_process_ms(
        variant.project,
        lambda: run([event], stdin=io.BytesIO(variant.stdin), stdout=io.StringIO()),
        repeat,
    )


def in_process_ms(project: str, call: Callable[[], object], repeat: int = 200) -> float:
    """Median time of ``call()`` in this process, with ``CLAUDE_PROJECT_DIR`` set to ``project``
    as Claude Code sets it for a hook."""
    saved = os.environ.get("CLAUDE_PROJECT_DIR")
    os.environ["CLAUDE_PROJECT_DIR"] = project
    samples = []
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            samples.append((time.perf_counter() - start) * 1000.0)
    finally:
        if saved is None:
            del os.environ["CLAUDE_PROJECT_DIR"]
        else:
            os.environ["CLAUDE_PROJECT_DIR"] = saved
    return statistics.median(samples)


IMPORTTIME_RUNS = 7
FLOOR_ARGV = [
    sys.executable,
    *("-X", "importtime", "-I", "-S", "-c", "import json, sys; json.load(sys.stdin)"),
]


def importtime(
    variant: Variant, entry: str, event: str, argv: list[str] | None = None
) -> tuple[dict[str, tuple[float, float, int, str]], float]:
    """module -> (self us, cumulative us, nesting, importer) of one hook call, self and
    cumulative as medians over a few calls; and the median wall time of those calls in us."""
    argv = argv or [sys.executable, "-X", "importtime", "-I", "-S", entry, event]
    runs: dict[str, list[tuple[int, int]]] = {}
    tree: dict[str, tuple[int, str]] = {}
    walls = []
    for _ in range(IMPORTTIME_RUNS):
        start = time.perf_counter()
        done = variant.call(argv)
        walls.append((time.perf_counter() - start) * 1e6)
        order: list[tuple[str, int]] = []
        for line in done.stderr.decode(errors="replace").splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cumulative, name = line[len("import time:") :].split("|", 2)
            module = name.strip()
            order.append((module, (len(name) - len(name.lstrip()) - 1) // 2))
            runs.setdefault(module, []).append((int(self_us), int(cumulative)))
        # -X importtime prints a module after everything it imported: its importer is the next
        # line that is less indented (none: the script itself).
        for i, (module, depth) in enumerate(order):
            parent = next((m for m, d in order[i + 1 :] if d < depth), "top level")
            tree.setdefault(module, (depth, parent))
    rows = {
        module: (
            statistics.median(s for s, _ in samples),
            statistics.median(c for _, c in samples),
            *tree[module],
        )
        for module, samples in runs.items()
    }
    return rows, statistics.median(walls)


# --------------------------------------------------------------------------------------------
# Report


def fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=60, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--events", type=int, default=100_000, help="lines of the big log")
    parser.add_argument("--small-events", type=int, default=1_000, help="lines of the small log")
    parser.add_argument(
        "--quick", action="store_true", help="--repeat 10 --warmup 1 --events 20000"
    )
    parser.add_argument(
        "--json", action="store_true", help="the report on stderr, one JSON object on stdout"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup, args.events = 10, 1, 20_000
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        figures = run(args)
    if args.json:
        print(json.dumps(figures))


def run(args: argparse.Namespace) -> dict[str, object]:
    """Measure, print the report; returns its figures."""
    python = sys.executable
    entry = install.default_entry()
    commands = {
        event: settings_hooks.hook_command(event, python=python, entry=entry)
        for event in ("PreToolUse", "PostToolUse", "Stop")
    }
    floor = f"{shlex.quote(python)} -I -S -c 'import json, sys; json.load(sys.stdin)'"
    floor_key = "baseline/floor (python reads json)"

    with (
        tempfile.TemporaryDirectory(prefix="fanout-bench-hooks-") as root,
        contextlib.ExitStack() as cleanup,
    ):
        setup = time.perf_counter()
        empty = new_project(root, "idle-empty")
        make_private_dir(layout.runs_root(empty))
        make_private_dir(layout.active_dir(empty))
        absent = new_project(root, "idle-absent")
        big = new_project(root, "live-big")
        small = new_project(root, "live-small")
        big_run = build_live_run(big, args.events)
        small_run = build_live_run(small, args.small_events)
        real = new_project(root, "live-real")
        with open(os.path.join(real, ".claude", "fanout.toml"), "w") as handle:
            handle.write("[stop]\nwait_s = 0\n")
        started = start_live_run(Path(real), SESSION_ID, N_TASKS)
        cleanup.callback(stop_run, started, by="bench_hooks", timeout=30.0)
        real_run = str(started.run.path)
        append_foreign(real_run, args.events)
        setup = time.perf_counter() - setup
        heartbeat = Heartbeat([big_run, small_run])
        heartbeat.start()

        def pre(project: str, path: str) -> bytes:
            return payload("pre_tool_use.read.json", project, file_path=os.path.join(project, path))

        def post(project: str) -> bytes:
            return payload("post_tool_use.bash.json", project)

        def stop(project: str) -> bytes:
            return payload("stop.first.json", project)

        variants = [
            Variant("baseline", "true (no-op hook)", "true", empty, pre(empty, "src/other.py")),
            Variant("baseline", "floor (python reads json)", floor, big, pre(big, "src/other.py")),
        ]
        # Where the time goes: the floor plus the imports of each hook, and nothing else.
        for event, modules in HOOK_MODULES.items():
            code = (
                f"import sys; sys.path.insert(0, {SRC!r}); import json; json.load(sys.stdin); "
                f"import {', '.join(modules)}"
            )
            variants.append(
                Variant(
                    "info: floor+imports",
                    event,
                    f"{shlex.quote(python)} -I -S -c {shlex.quote(code)}",
                    big,
                    pre(big, "src/other.py"),
                    baseline=floor_key,
                )
            )
        for label, project in (("A .active empty", empty), ("A no runs dir", absent)):
            variants += [
                Variant(
                    label,
                    "PreToolUse Read",
                    commands["PreToolUse"],
                    project,
                    pre(project, "src/file30.py"),
                    baseline="baseline/true (no-op hook)",
                    target=TARGET_A,
                ),
                Variant(
                    label,
                    "PostToolUse Bash",
                    commands["PostToolUse"],
                    project,
                    post(project),
                    baseline="baseline/true (no-op hook)",
                    target=TARGET_A,
                ),
                Variant(
                    label,
                    "Stop",
                    commands["Stop"],
                    project,
                    stop(project),
                    baseline="baseline/true (no-op hook)",
                    target=TARGET_A,
                ),
            ]
        for label, project in (
            (f"B live, {args.events:,} lines", big),
            (f"B live, {args.small_events:,} lines", small),
            (REAL, real),
        ):
            variants += [
                Variant(
                    label,
                    "PreToolUse Read unclaimed",
                    commands["PreToolUse"],
                    project,
                    pre(project, "src/other.py"),
                    baseline=floor_key,
                    target=TARGET_B,
                ),
                Variant(
                    label,
                    "PreToolUse Read claimed",
                    commands["PreToolUse"],
                    project,
                    pre(project, "src/file1.py" if project == real else "src/file30.py"),
                    baseline=floor_key,
                    target=TARGET_B,
                    expect="deny",
                ),
                Variant(
                    label,
                    "PostToolUse Bash, no news",
                    commands["PostToolUse"],
                    project,
                    post(project),
                    baseline=floor_key,
                    target=TARGET_B,
                ),
                Variant(
                    label,
                    "Stop (wait_s=0)",
                    commands["Stop"],
                    project,
                    stop(project),
                    baseline=floor_key,
                    target=TARGET_B,
                    expect="block",
                ),
            ]

        # One PostToolUse per live run first: it creates the session's cursor and delivers the
        # 25 finished tasks (its only answer). Every later call sees the common case: nothing new.
        for variant in variants:
            if variant.hook.startswith("PostToolUse") and variant.scenario.startswith(("B", "C")):
                variant.call()
        lines_before = {
            run: count_lines(layout.join(run, layout.EVENTS))
            for run in (big_run[1], small_run[1], real_run)
        }
        started = time.perf_counter()
        problems = measure(variants, args.repeat, args.warmup)
        elapsed = time.perf_counter() - started
        lines_after = {
            run: count_lines(layout.join(run, layout.EVENTS))
            for run in (big_run[1], small_run[1], real_run)
        }

        by_key = {variant.key: variant for variant in variants}
        first_post = {
            label: first_post_cost(by_key[f"{label}/PostToolUse Bash, no news"], run, 15)
            for label, (_, run) in (
                (f"B live, {args.events:,} lines", big_run),
                (f"B live, {args.small_events:,} lines", small_run),
            )
        }
        work = {
            variant.key: work_ms(variant, variant.hook.split()[0])
            for variant in variants
            if variant.scenario.startswith(("B", "C"))
        }
        floor_imports = importtime(by_key[floor_key], entry, "", argv=FLOOR_ARGV)
        pre_imports = importtime(
            by_key[f"B live, {args.events:,} lines/PreToolUse Read unclaimed"], entry, "PreToolUse"
        )
        post_imports = importtime(
            by_key[f"B live, {args.events:,} lines/PostToolUse Bash, no news"], entry, "PostToolUse"
        )
        stop_imports = importtime(
            by_key[f"B live, {args.events:,} lines/Stop (wait_s=0)"], entry, "Stop"
        )
        heartbeat.stopped.set()
        heartbeat.join()
        sizes = [
            count_lines(layout.join(run, layout.EVENTS))
            for run in (big_run[1], small_run[1], real_run)
        ]

    # ---------------------------------------------------------------------------------------
    print("fanout hook latency benchmark")
    print(f"python   {platform.python_implementation()} {platform.python_version()} ({python})")
    print(f"platform {platform.platform()}; {os.cpu_count()} CPUs; {SH} -> {os.path.realpath(SH)}")
    print(
        f"calls    {args.repeat} timed per variant after {args.warmup} warm-up rounds, "
        f"round-robin; {len(variants)} variants in {elapsed:.1f}s (store setup {setup:.1f}s)"
    )
    print(
        f"stores   {sizes[0]:,} and {sizes[1]:,} log lines; {N_TASKS} claude tasks, "
        f"{N_RUNNING} running, {N_TASKS - N_RUNNING} succeeded; state.json covers all but the "
        f"last {TAIL_EVENTS} events; supervisor.json heartbeat rewritten every 1 s"
    )
    print(
        f"real run {sizes[2]:,} log lines ({args.events:,} notices appended by another process); "
        f"{N_TASKS} shell tasks, its supervisor live, this process its Conductor"
    )
    print()
    print(f"commands (each run as: {SH} -c <command>, stdin = payload, CLAUDE_PROJECT_DIR set):")
    print("  true        : true")
    print(f"  floor       : {floor}")
    for event, command in commands.items():
        print(f"  {event:<12}: {command}")
    print()

    header = (
        f"{'scenario':<22} {'hook':<26} {'median ms':>9} {'p90 ms':>7} {'ratio':>6} {'vs':<5} "
        f"{'target':>6}  {'result':<11} {'work ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for variant in variants:
        base = by_key.get(variant.baseline or "")
        ratio = variant.median / base.median if base else None
        vs = "" if base is None else ("true" if "true" in base.hook else "floor")
        verdict = ""
        if ratio is not None and variant.target is not None:
            verdict = (
                "PASS" if ratio <= variant.target else f"MISS +{ratio / variant.target - 1:.1%}"
            )
        done = work.get(variant.key)
        print(
            f"{variant.scenario:<22} {variant.hook:<26} {variant.median:>9.2f} "
            f"{variant.p90:>7.2f} {fmt_ratio(ratio):>6} {vs:<5} {fmt_ratio(variant.target):>6}  "
            f"{verdict:<11} {'' if done is None else f'{done:.2f}':>7}"
        )
    print(
        "  ratio: median / the baseline's median. info rows: the floor plus only the imports of "
        "that hook (no work).\n  work ms: the same hook call in this process with every module "
        "already imported (median of 200): the hook's own I/O and logic."
    )
    print()
    print(f"growth with log length ({args.events:,} vs {args.small_events:,} lines, medians):")
    for variant in variants:
        if not variant.scenario.startswith(f"B live, {args.events:,}"):
            continue
        other = by_key[f"B live, {args.small_events:,} lines/{variant.hook}"]
        ratio = variant.median / other.median
        verdict = "PASS" if ratio <= TARGET_GROWTH else "MISS"
        print(
            f"  {variant.hook:<26} {variant.median:7.2f} vs {other.median:7.2f} ms  "
            f"{ratio:.2f}x (target <= {TARGET_GROWTH:.2f}x)  {verdict}"
        )
    print()
    print("one-off, not in the targets: a session's first PostToolUse on a run has no cursor yet,")
    print("so it reads the whole log from offset 0 (and delivers the 25 finished tasks):")
    for label, samples in first_post.items():
        print(f"  {label:<24} median {statistics.median(samples):7.2f} ms (n={len(samples)})")
    print()
    print("answers (checked on every warm-up and timed call):")
    for variant in variants:
        if variant.expect:
            print(f"  {variant.key}: {variant.answer[:100]}…")
    for run, before in lines_before.items():
        added = lines_after[run] - before
        print(
            f"  {layout.run_id_of(os.path.dirname(os.path.dirname(os.path.dirname(run))))}/"
            f"{layout.run_id_of(run)}: {added} line(s) appended to events.jsonl while timing "
            "(a hook_error would add one)"
        )
    if problems:
        print(f"  PROBLEMS ({len(problems)}):")
        for problem in problems[:10]:
            print(f"    {problem}")
    else:
        print("  every call exited 0 with the expected answer")
    print()
    floor_modules = {name for name in floor_imports[0]}
    for title, (rows, wall) in (
        (f"PreToolUse (Read unclaimed, live run, {args.events:,} lines)", pre_imports),
        (f"PostToolUse (Bash, no news, live run, {args.events:,} lines)", post_imports),
        (f"Stop (live run, {args.events:,} lines)", stop_imports),
    ):
        total = sum(row[0] for row in rows.values())
        print(
            f"-X importtime, {title}, median of {IMPORTTIME_RUNS} calls: {len(rows)} modules, "
            f"{total / 1000:.1f} ms of imports (self, summed) in a {wall / 1000:.1f} ms call"
        )
        print(f"  top 10 by cumulative time:\n  {'cumul ms':>9} {'self ms':>8}  module")
        ranked = sorted(rows.items(), key=lambda item: item[1][1], reverse=True)
        for name, (self_us, cumulative, depth, _) in ranked[:10]:
            print(f"  {cumulative / 1000:>9.2f} {self_us / 1000:>8.2f}  {' ' * depth}{name}")
        extra = {name: row for name, row in rows.items() if name not in floor_modules}
        ours = {name: row for name, row in extra.items() if name.startswith("claude_fanout")}
        print(
            f"  imported beyond the floor: {len(extra)} modules, "
            f"{sum(row[0] for row in extra.values()) / 1000:.2f} ms (self, summed): "
            f"{len(ours)} of claude_fanout, {sum(row[0] for row in ours.values()) / 1000:.2f} ms; "
            f"{len(extra) - len(ours)} others, "
            f"{sum(row[0] for name, row in extra.items() if name not in ours) / 1000:.2f} ms"
        )
        print(f"  {'self ms':>9} {'cumul ms':>8}  module (imported by)")
        for name, (self_us, cumulative, _, parent) in sorted(
            extra.items(), key=lambda item: -item[1][0]
        )[:15]:
            print(f"  {self_us / 1000:>9.2f} {cumulative / 1000:>8.2f}  {name} ({parent})")
        print()
    return figures_of(variants, by_key, work, first_post, problems, args)


def figures_of(
    variants: list[Variant],
    by_key: dict[str, Variant],
    work: dict[str, float],
    first_post: dict[str, list[float]],
    problems: list[str],
    args: argparse.Namespace,
) -> dict[str, object]:
    """What the report prints, as one JSON object (``--json``)."""
    rows = []
    for variant in variants:
        base = by_key.get(variant.baseline or "")
        ratio = variant.median / base.median if base else None
        rows.append(
            {
                "scenario": variant.scenario,
                "hook": variant.hook,
                "median_ms": variant.median,
                "p90_ms": variant.p90,
                "baseline": variant.baseline,
                "ratio": ratio,
                "target": variant.target,
                "pass": None
                if ratio is None or variant.target is None
                else ratio <= variant.target,
                "work_ms": work.get(variant.key),
            }
        )
    growth = []
    for variant in variants:
        if variant.scenario.startswith(f"B live, {args.events:,}"):
            other = by_key[f"B live, {args.small_events:,} lines/{variant.hook}"]
            ratio = variant.median / other.median
            growth.append({"hook": variant.hook, "ratio": ratio, "pass": ratio <= TARGET_GROWTH})
    return {
        "benchmark": "bench_hooks",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "events": args.events,
        "small_events": args.small_events,
        "variants": rows,
        "growth": growth,
        "growth_target": TARGET_GROWTH,
        "first_post_ms": {k: statistics.median(v) for k, v in first_post.items()},
        "problems": problems,
        "ok": not problems,
    }


if __name__ == "__main__":
    main()
