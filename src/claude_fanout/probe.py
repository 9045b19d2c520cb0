"""``fanout doctor --probe``: every Claude Code mechanism fanout depends on, tried for real.

The CLI under test runs offline: a scripted fake of the Messages API on 127.0.0.1
(:mod:`claude_fanout.fake_api`), a scratch HOME and a scratch project, with fanout's hooks
installed there by :func:`claude_fanout.settings.install`. Nothing of the user's is read or
written. Five sessions run at once, each checking what it alone can show:

- the *Conductor* (``claude -p "/fanout --plan …"`` with fanout's real hooks): the prompt hook's
  context reaches the model and starts a run whose claude worker is a second CLI; the Read of a
  file that worker claims is denied and the model gets the reason; a finished worker's
  ``replaces`` rewrites a Read (``updatedInput``); results are injected after a tool call; Stop
  holds the turn until the worker is done, then lets it end; the worker's stream is parsed
  (result, usage, cost);
- two *workers* with fanout's worker command line: one stopped by ``--max-turns``, one by
  ``--max-budget-usd``;
- the *planner* (``--json-schema``): its structured answer becomes a plan and ends the session;
- a *streaming-input* session with an async rewake Stop hook: the idle session is woken with the
  hook's words. (An interactive session is woken by the same hook mechanism; the TUI itself is
  driven in tmux by ``tests/e2e/test_rewake.py``, which a probe cannot do headlessly.)

Each mechanism is judged from what the fake received and what the CLI and fanout recorded, never
from the CLI's wording: a mechanism that does not work shows as a missing request, a tool
result with the wrong content, a session that does not end, or a worker that never starts.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from claude_fanout import compat, settings
from claude_fanout.demo import FINAL_MARK, newest_turn
from claude_fanout.executors import claude as claude_executor
from claude_fanout.fake_api import (
    FakeMessagesAPI,
    Reply,
    Request,
    Text,
    ToolUse,
    Usage,
    cli_env,
    side_call_reply,
    structured_output,
)
from claude_fanout.planner import PLANNER_MARK

__all__ = ["MECHANISMS", "Mechanism", "ProbeReport", "Result", "run_probe"]


@dataclass(frozen=True)
class Mechanism:
    """One Claude Code mechanism fanout relies on, and what fanout does without it."""

    id: str
    title: str
    impact: str


MECHANISMS: Final = (
    Mechanism(
        "context",
        "hook context reaches the model",
        "the session is not told what /fanout started nor given results after tool calls; "
        "follow runs with `fanout status` / `fanout wait`",
    ),
    Mechanism(
        "deny",
        "a PreToolUse deny reaches the model",
        "claims are not enforced: the session may read or edit files a worker owns",
    ),
    Mechanism(
        "updated_input",
        "PreToolUse updatedInput rewrites a tool call",
        "`replaces` is not applied: reads go to the original file, not the worker's artifact",
    ),
    Mechanism(
        "stop",
        "Stop blocks the turn, then releases it",
        "a headless session is not held for its workers: read results with `fanout wait RUN`",
    ),
    Mechanism(
        "worker",
        "a worker starts from inside a hook and its stream is parsed",
        "/fanout starts no workers from a session: run plans with `fanout run PLAN`",
    ),
    Mechanism(
        "budgets",
        "--max-turns and --max-budget-usd stop a worker",
        "max_turns / max_cost_usd are not enforced: bound workers with timeout_s",
    ),
    Mechanism(
        "structured_output",
        "--json-schema output ends the planner's session",
        "the planner may give no plan, or spend more turns on one: give /fanout paths "
        "(`-- <paths>`) or a plan (`--plan FILE`)",
    ),
    Mechanism(
        "rewake",
        "an async rewake hook wakes an idle session",
        "an idle session is not woken with results: use `/fanout --wait block` or "
        '`[delivery] mode = "block"`',
    ),
)
_BY_ID: Final = {m.id: m for m in MECHANISMS}

# Markers in prompts: how the one fake API tells the probe's sessions apart.
WORKER_MARK: Final = "[fanout-probe:worker]"
TURNS_MARK: Final = "[fanout-probe:turns]"
BUDGET_MARK: Final = "[fanout-probe:budget]"
REWAKE_MARK: Final = "[fanout-probe:rewake]"
CLAIMED_TEXT: Final = "CLAIMED-FILE-CONTENT-7a1\n"
ORIGINAL_TEXT: Final = "ORIGINAL-FILE-CONTENT-3c9\n"
ARTIFACT_TEXT: Final = "WORKER-ARTIFACT-CONTENT-5e2"
WORKER_ANSWER: Final = "PROBE-WORKER-ANSWER-81d"
WAKE_TEXT: Final = "PROBE-WAKE-TEXT-4f0"
LAST_WORD: Final = "PROBE-CONDUCTOR-DONE"
WORKER_USAGE: Final = Usage(input_tokens=1234, output_tokens=56)
BIG_USAGE: Final = Usage(input_tokens=20_000, output_tokens=100)
MAX_TURNS: Final = 2
MAX_BUDGET_USD: Final = 0.2
PLANNED: Final = {
    "name": "probe",
    "tasks": [
        {"id": "P1", "prompt": "Look at a.txt.", "claims": ["a.txt"], "deps": [], "write": False}
    ],
}
SESSION_TIMEOUT_S: Final = 60.0
WAKE_WAIT_S: Final = 10.0
# The worker's model answers only once the Conductor tries to end its turn (so the worker is
# still at work when its file is read and when Stop is first reached), or after this.
WORKER_HOLD_S: Final = 20.0
_TOOL_WAIT_S: Final = 10.0


@dataclass
class Result:
    mechanism: Mechanism
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.mechanism.id,
            "title": self.mechanism.title,
            "ok": self.ok,
            "detail": self.detail,
            "impact": None if self.ok else self.mechanism.impact,
        }


@dataclass
class ProbeReport:
    conductor_cli: str
    worker_cli: str
    versions: dict[str, str | None]
    results: list[Result]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "elapsed_s": round(self.elapsed_s, 2),
            "cli": {
                "conductor": {
                    "path": self.conductor_cli,
                    "version": self.versions.get(self.conductor_cli),
                },
                "workers": {"path": self.worker_cli, "version": self.versions.get(self.worker_cli)},
            },
            "mechanisms": [result.to_dict() for result in self.results],
        }


def _result(mechanism: str, ok: bool, detail: str) -> Result:
    return Result(_BY_ID[mechanism], ok, detail)


# -- the scripted model ------------------------------------------------------------------------


@dataclass
class _Script:
    """Every session's model: told apart by markers, recording what the checks need."""

    project: Path
    release_worker: threading.Event = field(default_factory=threading.Event)

    def __call__(self, request: Request) -> Reply:
        if request.is_side_call:
            return side_call_reply(request)
        if PLANNER_MARK in request.system_text():
            if request.output_schema is None:  # no StructuredOutput tool offered
                return Reply([Text("No structured output was asked for.")])
            if request.all_tool_results():  # as a model would after its answer was taken
                return Reply([Text("The plan is given.")])
            return structured_output(PLANNED)
        first = request.first_user_text()
        if WORKER_MARK in first:
            self.release_worker.wait(WORKER_HOLD_S)
            return Reply([Text(WORKER_ANSWER)], usage=WORKER_USAGE)
        if TURNS_MARK in first or BUDGET_MARK in first:
            return Reply([ToolUse("Read", {"file_path": "notes.txt"})], usage=BIG_USAGE)
        if REWAKE_MARK in first:
            woken = WAKE_TEXT in newest_turn(request)
            return Reply([Text("woken" if woken else "turn over")])
        return self.conductor(request)

    def conductor(self, request: Request) -> Reply:
        turn = newest_turn(request)
        if "Stop hook feedback" in turn:
            if FINAL_MARK in turn:
                return Reply([Text(LAST_WORD)])
            return Reply([Text("Waiting for the workers.")])
        done = len(request.all_tool_results())
        if done == 0:
            return Reply([ToolUse("Read", {"file_path": str(self.project / "claimed.txt")})])
        if done == 1:
            # Wait (bounded) for W2, the shell worker, so that its result is news after the call.
            wait = (
                'i=0; until grep -qs \'"task":"W2"[^}]*"type":"task_exited"\' '
                ".claude/runs/*/events.jsonl || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done"
            )
            return Reply([ToolUse("Bash", {"command": wait, "description": "wait for W2"})])
        if done == 2:
            return Reply([ToolUse("Read", {"file_path": str(self.project / "original.txt")})])
        self.release_worker.set()
        return Reply([Text("Turn over.")])


# -- the sessions ------------------------------------------------------------------------------


def _session_env(api: FakeMessagesAPI, scratch: Path, name: str) -> dict[str, str]:
    """A session's environment: offline, its own HOME, and its temporary files (the CLI's
    ``claude-<uid>/`` and sockets among them) in the scratch directory, not the user's."""
    home, tmp = scratch / f"home-{name}", scratch / f"tmp-{name}"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return {**cli_env(api.base_url, home), "TMPDIR": str(tmp)}


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, text=True, stderr=subprocess.PIPE, **kwargs)


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, bool]:
    """stdout, stderr and whether it ended by itself within ``timeout`` (else it is killed)."""
    try:
        out, err = proc.communicate(timeout=timeout)
        return out or "", err or "", True
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return out or "", err or "", False


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


PLAN_FILE: Final = "probe-plan.json"
PROBE_PLAN: Final = {
    "version": 1,
    "name": "fanout doctor --probe",
    "tasks": [
        {
            "id": "W1",
            "kind": "claude",
            "prompt": f"{WORKER_MARK} Say the word.",
            "claims": ["claimed.txt"],
            "max_turns": 3,
        },
        {
            "id": "W2",
            "kind": "shell",
            "argv": ["sh", "-c", f'printf {ARTIFACT_TEXT} > "$FANOUT_OUT_DIR/artifact.txt"'],
            "replaces": {"original.txt": "artifact.txt"},
        },
    ],
}


def _conductor_project(scratch: Path) -> Path:
    project = scratch / "conductor"
    (project / ".claude").mkdir(parents=True)
    (project / "claimed.txt").write_text(CLAIMED_TEXT)
    (project / "original.txt").write_text(ORIGINAL_TEXT)
    (project / PLAN_FILE).write_text(json.dumps(PROBE_PLAN))
    # One Stop wait long enough for the worker: the turn is blocked once, with the results.
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 30\n")
    settings.install(scope="project", project=project)
    return project


def _probe_conductor(
    cli: str, worker_cli: str, scratch: Path, api: FakeMessagesAPI, script: _Script
) -> list[Result]:
    from claude_fanout.store.eventlog import read_events
    from claude_fanout.store.rundir import list_runs

    project = script.project
    env = _session_env(api, scratch, "conductor")
    env[claude_executor.CLAUDE_BIN_ENV] = worker_cli
    argv = [cli, "-p", f"/fanout --plan {PLAN_FILE}", "--allowedTools", "Bash,Read"]
    argv += ["--output-format", "json"]
    proc = _popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out, err, ended = _finish(proc, SESSION_TIMEOUT_S)
    script.release_worker.set()
    runs = list_runs(project)
    run = runs[-1] if runs else None
    if run is not None:
        _settle(run)
    events = read_events(run.events_path).events if run is not None else []

    requests = [
        r
        for r in api.message_requests(side_calls=False)
        if PLAN_FILE in json.dumps(r.messages[:1]) and PLANNER_MARK not in r.system_text()
    ]
    turns = [json.dumps(r.messages) for r in requests]
    results = [r.all_tool_results() for r in requests]

    def tool_result(n: int) -> str | None:
        found = [res[n][1] for res in results if len(res) > n]
        return found[0] if found else None

    result: dict[str, Any] = {}
    try:
        parsed = json.loads(out)
        result = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    if not ended:
        why_not = f"the session did not end within {SESSION_TIMEOUT_S:g}s"
    elif proc.returncode != 0:
        why_not = f"the session exited {proc.returncode}: {_last_line(err) or 'no output'}"
    else:
        why_not = "the session just ended"
    checks: list[Result] = []

    # context: UserPromptSubmit's context in the first request; PostToolUse's after the Bash wait.
    started = bool(turns) and "[fanout] Started run" in turns[0]
    injected = any("PostToolUse" in t and "additional context" in t and "W2" in t for t in turns)
    if started and injected:
        checks.append(_result("context", True, "UserPromptSubmit and PostToolUse context arrived"))
    elif not requests:
        checks.append(_result("context", False, f"no model request: {why_not}"))
    else:
        missing = [
            n for n, ok in (("UserPromptSubmit", started), ("PostToolUse", injected)) if not ok
        ]
        checks.append(
            _result("context", False, f"the model never got {' or '.join(missing)} context")
        )

    denied = tool_result(0)
    if denied is None:
        checks.append(
            _result("deny", False, f"the Read of a claimed file never came back; {why_not}")
        )
    elif CLAIMED_TEXT.strip() in denied:
        checks.append(_result("deny", False, "the Read of a file a worker claims ran anyway"))
    elif "claimed by worker W1" in denied:
        checks.append(_result("deny", True, "the model got the reason: claimed by worker W1"))
    else:
        checks.append(
            _result("deny", False, f"the Read failed without fanout's reason: {denied[:120]!r}")
        )

    rewritten = tool_result(2)
    if rewritten is None:
        checks.append(
            _result("updated_input", False, f"the redirected Read never came back; {why_not}")
        )
    elif ARTIFACT_TEXT in rewritten:
        checks.append(_result("updated_input", True, "the Read returned the worker's artifact"))
    elif ORIGINAL_TEXT.strip() in rewritten:
        checks.append(_result("updated_input", False, "the Read returned the original file"))
    else:
        checks.append(_result("updated_input", False, f"the Read returned {rewritten[:120]!r}"))

    feedback = [newest_turn(r) for r in requests if "Stop hook feedback" in newest_turn(r)]
    final = [text for text in feedback if FINAL_MARK in text]
    last = result.get("result")
    if final and ended and proc.returncode == 0 and last == LAST_WORD:
        checks.append(_result("stop", True, "held once with the results, then the turn ended"))
    elif not feedback:
        checks.append(_result("stop", False, f"the turn was never held at Stop; {why_not}"))
    elif not final:
        checks.append(_result("stop", False, "held at Stop but never handed the results"))
    else:
        checks.append(_result("stop", False, f"held at Stop but not released: {why_not}"))

    checks.append(_worker_check(run, events))
    return checks


def _same(path: Path | None, project: Path) -> bool:
    return path is not None and os.path.realpath(path) == os.path.realpath(project)


def _settle(run: Any) -> None:
    """Let the probe's run end by itself; cancel it if it does not."""
    from claude_fanout.runner import wait_run
    from claude_fanout.store.state import request_cancel

    status = wait_run(run, timeout_s=10)
    if not status.state.terminal:
        request_cancel(run, by="fanout doctor --probe")
        wait_run(run, timeout_s=15)


def _worker_check(run: Any, events: list[dict[str, Any]]) -> Result:
    if run is None:
        return _result("worker", False, "the prompt hook started no run")
    if not any(e.get("type") == "task_started" and e.get("task") == "W1" for e in events):
        return _result("worker", False, "the run never started its claude worker W1")
    try:
        meta = json.loads((run.out_dir("W1") / "meta.json").read_text())
        answer = (run.out_dir("W1") / "result.md").read_text()
    except (OSError, ValueError):
        return _result("worker", False, "worker W1 left no meta.json / result.md")
    usage = meta.get("usage") or {}
    cost = meta.get("total_cost_usd")
    if not meta.get("ok"):
        return _result(
            "worker", False, f"worker W1 failed: {meta.get('error') or meta.get('subtype')}"
        )
    if WORKER_ANSWER not in answer:
        return _result("worker", False, "worker W1's result is not what its model answered")
    if usage.get("input_tokens") != WORKER_USAGE.input_tokens:
        return _result("worker", False, f"worker W1's usage was not read back: {usage}")
    if not isinstance(cost, int | float) or cost <= 0:
        return _result("worker", False, f"worker W1's cost was not read back: {cost!r}")
    return _result(
        "worker", True, f"W1 answered; {usage['input_tokens']} tokens in, ${cost:.4f} parsed"
    )


def _probe_budgets(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Result]:
    """Two workers with fanout's own command line: one past its turns, one past its budget."""
    cwd = scratch / "workers"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("one\ntwo\n")
    env = claude_executor.worker_env(_session_env(api, scratch, "workers"))
    runs = {
        TURNS_MARK: claude_executor.command(cli=cli, tools=["Read"], max_turns=MAX_TURNS),
        BUDGET_MARK: claude_executor.command(
            cli=cli, tools=["Read"], max_turns=30, max_budget_usd=MAX_BUDGET_USD
        ),
    }
    procs: dict[str, subprocess.Popen[str]] = {}
    for n, (mark, argv) in enumerate(runs.items()):
        stdin = claude_executor.prompt_file(f"{mark} Read notes.txt, again and again.")
        try:
            with (cwd / f"{n}.jsonl").open("w") as stream:
                procs[mark] = _popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stream)
        finally:
            os.close(stdin)
    problems: list[str] = []
    for n, (mark, proc) in enumerate(procs.items()):
        _out, err, ended = _finish(proc, SESSION_TIMEOUT_S)
        outcome = claude_executor.collect(
            stream_path=cwd / f"{n}.jsonl",
            out_dir=cwd / f"out{n}",
            argv=runs[mark],
            cwd=cwd,
            exit_code=proc.returncode if proc.returncode >= 0 else None,
            signum=-proc.returncode if proc.returncode < 0 else None,
            stderr=err.splitlines()[-5:],
        )
        calls = [r for r in api.message_requests(side_calls=False) if mark in r.first_user_text()]
        what = "turn" if mark == TURNS_MARK else "budget"
        if not ended:
            problems.append(f"the {what} limit never stopped the session")
        elif not outcome.over_budget:
            problems.append(f"the {what} limit did not stop it: {outcome.reason or 'it succeeded'}")
        elif mark == TURNS_MARK and len(calls) != MAX_TURNS:
            problems.append(f"--max-turns {MAX_TURNS} allowed {len(calls)} model calls")
        elif mark == BUDGET_MARK and not outcome.usage.get("cost_usd", 0) >= MAX_BUDGET_USD:
            problems.append(f"stopped below its budget: {outcome.usage.get('cost_usd')}")
    if problems:
        return [_result("budgets", False, "; ".join(problems))]
    return [_result("budgets", True, f"stopped at {MAX_TURNS} turns and at ${MAX_BUDGET_USD:g}")]


def _probe_planner(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Result]:
    from claude_fanout.config import load_config
    from claude_fanout.planner import PlannerError, run_planner

    project = scratch / "planner"
    (project / ".claude").mkdir(parents=True)
    (project / "a.txt").write_text("a\n")
    env = _session_env(api, scratch, "planner")
    env[claude_executor.CLAUDE_BIN_ENV] = cli
    try:
        planned = run_planner(
            "look at a.txt",
            project=str(project),
            cwd=str(project),
            config=load_config(project),
            env=env,
        )
    except PlannerError as exc:
        return [_result("structured_output", False, str(exc))]
    calls = [r for r in api.message_requests(side_calls=False) if PLANNER_MARK in r.system_text()]
    if list(planned.plan.ids) != ["P1"]:
        return [
            _result("structured_output", False, f"the plan came back as {list(planned.plan.ids)}")
        ]
    if len(calls) != 1:
        return [
            _result(
                "structured_output",
                False,
                f"the session went on after its structured answer ({len(calls)} model calls)",
            )
        ]
    return [_result("structured_output", True, "the schema's answer became the plan; 1 model call")]


def _probe_rewake(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Result]:
    project = scratch / "rewake"
    (project / ".claude").mkdir(parents=True)
    spec = settings.FANOUT_HOOKS["Rewake"]
    ran = project / "hook-ran"
    script = project / "rewake_hook.py"
    # Like fanout's Rewake hook: runs after the turn ended, exits 2 with words for the session.
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
    env = _session_env(api, scratch, "rewake")
    argv = [cli, "-p", "--input-format", "stream-json", "--output-format", "stream-json"]
    argv += ["--verbose"]
    proc = _popen(argv, cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    message = {"type": "user", "message": {"role": "user", "content": f"{REWAKE_MARK} hello"}}
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    results = 0
    try:
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()
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
    except OSError:
        pass
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    woken = [
        r
        for r in api.message_requests(side_calls=False)
        if REWAKE_MARK in r.first_user_text() and WAKE_TEXT in newest_turn(r)
    ]
    if results == 0:
        detail = f"the session gave no result: {_last_line(err) or 'no output'}"
    elif not ran.exists():
        detail = "the async Stop hook never ran"
    elif not woken:
        detail = f"the hook exited 2, but the idle session was not woken within {WAKE_WAIT_S:g}s"
    elif results < 2:
        detail = "woken, but the woken turn did not end"
    else:
        return [_result("rewake", True, "woken with the hook's words (streaming input)")]
    return [_result("rewake", False, detail)]


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


# -- running it --------------------------------------------------------------------------------


def resolve_clis(env: Mapping[str, str], cli: str | None = None) -> tuple[str | None, str | None]:
    """(the Conductor's CLI, the workers' CLI): ``cli`` for both when given; else ``claude`` on
    PATH for the Conductor (the workers' one when there is none) and the workers' own."""
    if cli is not None:
        return _runnable(cli), _runnable(cli)
    found = claude_executor.cli_path(env)
    workers = _runnable(
        found if os.path.sep in found else shutil.which(found, path=env.get("PATH"))
    )
    conductor = _runnable(shutil.which("claude", path=env.get("PATH"))) or workers
    return conductor, workers


def _runnable(path: str | None) -> str | None:
    if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
        return None
    return os.path.abspath(path)


def run_probe(
    *,
    cli: str | None = None,
    scratch: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ProbeReport:
    """Probe every mechanism at once against the real CLI(s); never touches the user's files.

    ``scratch`` (default: a new temporary directory, removed afterwards) holds the projects and
    HOMEs of the sessions; a given one is left in place for inspection.
    """
    started = time.monotonic()
    base = os.environ if env is None else env
    conductor, workers = resolve_clis(base, cli)
    if conductor is None or workers is None:
        what = f"{cli} is not an executable file" if cli else "no Claude Code CLI found"
        missing = [_result(m.id, False, what) for m in MECHANISMS]
        return ProbeReport(conductor or "", workers or "", {}, missing, 0.0)
    own = scratch is None
    root = Path(tempfile.mkdtemp(prefix="fanout-probe-")) if scratch is None else scratch
    try:
        script = _Script(_conductor_project(root))
        with FakeMessagesAPI(script) as api, ThreadPoolExecutor(max_workers=4) as pool:
            jobs: list[Callable[[], list[Result]]] = [
                lambda: _probe_conductor(conductor, workers, root, api, script),
                lambda: _probe_budgets(workers, root, api),
                lambda: _probe_planner(workers, root, api),
                lambda: _probe_rewake(conductor, root, api),
            ]
            futures = [pool.submit(job) for job in jobs]
            found = {r.mechanism.id: r for f in futures for r in f.result()}
        versions = {path: compat.cli_version(path) for path in dict.fromkeys((conductor, workers))}
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    ordered = [found[m.id] for m in MECHANISMS]
    return ProbeReport(conductor, workers, versions, ordered, time.monotonic() - started)


def render(report: ProbeReport) -> Iterator[str]:
    """Lines for a person: one per mechanism, ✓ or ✗, and for ✗ what fanout does about it."""
    for label, path in (("Conductor", report.conductor_cli), ("workers", report.worker_cli)):
        version = report.versions.get(path)
        yield f"  {label}: Claude Code {version or '(version unknown)'} at {path}"
    for result in report.results:
        mark = "✓" if result.ok else "✗"
        yield f"  {mark} {result.mechanism.title}: {result.detail}"
        if not result.ok:
            yield f"      fanout: {result.mechanism.impact}"
    yield f"  probed in {report.elapsed_s:.1f}s"
