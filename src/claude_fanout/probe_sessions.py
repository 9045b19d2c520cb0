"""How ``fanout doctor --probe`` tries each Claude Code mechanism: the sessions and their model.

One scripted model (:class:`Script`) serves every session through one
:class:`~claude_fanout.testing.fake_api.FakeMessagesAPI`, telling them apart by markers in
their prompts.
Each ``probe_*`` function runs its session(s) against the CLI under test and returns
findings, judged from what the fake received and what the CLI and fanout recorded.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

from claude_fanout import install, procs, settings_hooks
from claude_fanout.claude.cli import CLAUDE_BIN_ENV
from claude_fanout.claude.command import command, prompt_file
from claude_fanout.claude.env import worker_env
from claude_fanout.claude.stream import collect
from claude_fanout.planner import PLANNER_MARK
from claude_fanout.store import layout
from claude_fanout.testing.fake_api import FakeMessagesAPI, cli_env
from claude_fanout.testing.models import FINAL_MARK, side_call_reply, structured_output
from claude_fanout.testing.replies import Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request

__all__ = [
    "Finding",
    "Script",
    "conductor_project",
    "probe_budgets",
    "probe_conductor",
    "probe_planner",
    "probe_rewake",
]


class Finding(NamedTuple):
    """What one session found about one mechanism (``probe.MECHANISMS`` ids)."""

    mechanism: str
    ok: bool
    detail: str


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
TURN_OVER: Final = "PROBE-TURN-OVER"
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
# W3, the worker that claims a file, works until the Conductor ends its turn (it is still at
# work when its file is read and when Stop is first reached): it waits for this file, at most
# HOLD_S.
RELEASE_FILE: Final = "probe-release"
HOLD_S: Final = 30
# An interactive session wakes by the same rule (an async hook may wake a session that is
# interactive or has streaming input); the TUI itself is driven in tmux by the e2e tests.
REWAKE_OK: Final = "a streaming-input session was woken with the hook's words"


# -- the scripted model ------------------------------------------------------------------------


@dataclass
class Script:
    """Every session's model: told apart by markers, recording what the checks need."""

    project: Path

    def release(self) -> None:
        (self.project / RELEASE_FILE).touch()

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
            return Reply([Text(WORKER_ANSWER)], usage=WORKER_USAGE)
        if TURNS_MARK in first or BUDGET_MARK in first:
            return Reply([ToolUse("Read", {"file_path": "notes.txt"})], usage=BIG_USAGE)
        if REWAKE_MARK in first:
            woken = WAKE_TEXT in request.newest_text()
            return Reply([Text("woken" if woken else "turn over")])
        return self.conductor(request)

    def conductor(self, request: Request) -> Reply:
        if FINAL_MARK in request.newest_text():
            return Reply([Text(LAST_WORD)])
        if TURN_OVER in json.dumps(request.messages):  # held at Stop, still without the results
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
        self.release()
        return Reply([Text(TURN_OVER)])


# -- the sessions ------------------------------------------------------------------------------


def _session_env(api: FakeMessagesAPI, scratch: Path, name: str) -> dict[str, str]:
    """A session's environment: offline, its own HOME, and its temporary files (the CLI's
    ``claude-<uid>/`` and sockets among them) in the scratch directory, not the user's. Without
    fanout's own variables: run from inside a worker, ``FANOUT_DEPTH`` would silence the hooks
    under test."""
    home, tmp = scratch / f"home-{name}", scratch / f"tmp-{name}"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {k: v for k, v in cli_env(api.base_url, home).items() if not k.startswith("FANOUT_")}
    return {**env, "TMPDIR": str(tmp)}


def _popen(
    argv: list[str], *, cwd: Path, env: dict[str, str], stdin: int, stdout: Any
) -> subprocess.Popen[str]:
    return procs.spawn_attached(
        argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, bool]:
    """stdout, stderr and whether it ended by itself within ``timeout`` (else it is killed)."""
    out, err, ended = procs.finish(proc, timeout)
    return out or "", err or "", ended


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


PLAN_FILE: Final = "probe-plan.json"
PROBE_PLAN: Final = {
    "version": 1,
    "name": "fanout doctor --probe",
    "tasks": [
        {"id": "W1", "kind": "claude", "prompt": f"{WORKER_MARK} Say the word.", "max_turns": 3},
        {
            "id": "W2",
            "kind": "shell",
            "argv": ["sh", "-c", f'printf {ARTIFACT_TEXT} > "$FANOUT_OUT_DIR/artifact.txt"'],
            "replaces": {"original.txt": "artifact.txt"},
        },
        {
            "id": "W3",
            "kind": "shell",
            "argv": [
                "sh",
                "-c",
                f"i=0; until [ -e {RELEASE_FILE} ] || [ $i -ge {HOLD_S * 10} ]; do "
                "i=$((i+1)); sleep 0.1; done",
            ],
            "claims": ["claimed.txt"],
        },
    ],
}


def conductor_project(scratch: Path) -> Path:
    """The Conductor's scratch project: fanout installed, a plan with a claude worker W1, a
    shell worker W2 whose artifact replaces ``original.txt`` and one, W3, that claims
    ``claimed.txt`` until the Conductor ends its turn."""
    project = scratch / "conductor"
    (project / ".claude").mkdir(parents=True)
    (project / "claimed.txt").write_text(CLAIMED_TEXT)
    (project / "original.txt").write_text(ORIGINAL_TEXT)
    (project / PLAN_FILE).write_text(json.dumps(PROBE_PLAN))
    # One Stop wait long enough for W3: the turn is blocked once, with the results.
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 30\n")
    install.install(scope="project", project=project)
    return project


def probe_conductor(
    cli: str, worker_cli: str, scratch: Path, api: FakeMessagesAPI, script: Script
) -> list[Finding]:
    """``/fanout --plan`` in a session with fanout's hooks: context, deny, updatedInput, Stop,
    and the claude worker the prompt hook starts."""
    from claude_fanout.store.eventlog import read_events
    from claude_fanout.store.rundir import list_runs

    project = script.project
    env = _session_env(api, scratch, "conductor")
    env[CLAUDE_BIN_ENV] = worker_cli
    argv = [cli, "-p", f"/fanout --plan {PLAN_FILE}", "--allowedTools", "Bash,Read"]
    argv += ["--output-format", "json"]
    proc = _popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out, err, ended = _finish(proc, SESSION_TIMEOUT_S)
    script.release()
    runs = list_runs(project)
    run = runs[-1] if runs else None
    if run is not None:
        _settle(run)
    events = read_events(run.events_path).events if run is not None else []
    if not ended:
        why_not = f"the session did not end within {SESSION_TIMEOUT_S:g}s"
    elif proc.returncode != 0:
        why_not = f"the session exited {proc.returncode}: {_last_line(err) or 'no output'}"
    else:
        why_not = "the session just ended"
    seen = _Conversation(
        [
            r
            for r in api.message_requests(side_calls=False)
            if PLAN_FILE in json.dumps(r.messages[:1]) and PLANNER_MARK not in r.system_text()
        ]
    )
    released = ended and proc.returncode == 0 and _json_result(out).get("result") == LAST_WORD
    return [
        _judge_context(seen, why_not),
        _judge_deny(seen.tool_result(0), why_not),
        _judge_updated_input(seen.tool_result(2), why_not),
        _judge_stop(seen, released=released, why_not=why_not),
        _worker_check(run, events),
    ]


class _Conversation:
    """The Conductor's requests, as the fake received them, in order."""

    def __init__(self, requests: list[Request]) -> None:
        self.requests = requests
        self.texts = [json.dumps(r.messages) for r in requests]

    def tool_result(self, n: int) -> str | None:
        """The text of the session's ``n``-th tool result (0-based), once it came back."""
        for request in self.requests:
            results = request.all_tool_results()
            if len(results) > n:
                return results[n][1]
        return None

    def after_turn_ended(self) -> list[Request]:
        """Requests made after the model ended its turn: the CLI went on, so Stop blocked."""
        return [r for r, text in zip(self.requests, self.texts, strict=True) if TURN_OVER in text]


def _json_result(out: str) -> dict[str, Any]:
    try:
        parsed = json.loads(out)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _judge_context(seen: _Conversation, why_not: str) -> Finding:
    if not seen.requests:
        return Finding("context", False, f"no model request: {why_not}")
    # fanout's own words: the prompt hook names the run; a later hook says W2 finished.
    started = "[fanout] Started run" in seen.texts[0]
    told = any(
        "W2 succeeded" in r.newest_text()
        for r in seen.requests
        if r.all_tool_results() and TURN_OVER not in json.dumps(r.messages)
    )
    if started and told:
        return Finding("context", True, "the prompt's and a tool call's hook context arrived")
    missing = [n for n, ok in (("UserPromptSubmit", started), ("PostToolUse", told)) if not ok]
    return Finding("context", False, f"the model never got {' or '.join(missing)} context")


def _judge_deny(denied: str | None, why_not: str) -> Finding:
    if denied is None:
        return Finding("deny", False, f"the Read of a claimed file never came back; {why_not}")
    if CLAIMED_TEXT.strip() in denied:
        return Finding("deny", False, "the Read of a file a worker claims ran anyway")
    if "claimed by worker W3" in denied:
        return Finding("deny", True, "the model got the reason: claimed by worker W3")
    return Finding("deny", False, f"the Read failed without fanout's reason: {denied[:120]!r}")


def _judge_updated_input(read: str | None, why_not: str) -> Finding:
    if read is None:
        return Finding("updated_input", False, f"the redirected Read never came back; {why_not}")
    if ARTIFACT_TEXT in read:
        return Finding("updated_input", True, "the Read returned the worker's artifact")
    if ORIGINAL_TEXT.strip() in read:
        return Finding("updated_input", False, "the Read returned the original file")
    return Finding("updated_input", False, f"the Read returned {read[:120]!r}")


def _judge_stop(seen: _Conversation, *, released: bool, why_not: str) -> Finding:
    held = seen.after_turn_ended()
    handed = [r for r in held if FINAL_MARK in r.newest_text()]
    if handed and released:
        return Finding("stop", True, "held with the results, then the turn ended")
    if not held:
        return Finding("stop", False, f"the turn was never held at Stop; {why_not}")
    if not handed:
        return Finding("stop", False, "held at Stop but never handed the results")
    return Finding("stop", False, f"held at Stop but not released: {why_not}")


def _settle(run: Any) -> None:
    """Let the probe's run end by itself; cancel it if it does not."""
    from claude_fanout.runner import wait_run
    from claude_fanout.runtime.control import request_cancel

    status = wait_run(run, timeout_s=10)
    if not status.state.terminal:
        request_cancel(run, by="fanout doctor --probe")
        wait_run(run, timeout_s=15)


def _worker_check(run: Any, events: list[dict[str, Any]]) -> Finding:
    if run is None:
        return Finding("worker", False, "the prompt hook started no run")
    if not any(e.get("type") == "task_started" and e.get("task") == "W1" for e in events):
        return Finding("worker", False, "the run never started its claude worker W1")
    try:
        meta = json.loads((run.out_dir("W1") / "meta.json").read_text())
        answer = (run.out_dir("W1") / layout.RESULT).read_text()
    except (OSError, ValueError):
        return Finding("worker", False, "worker W1 left no meta.json / result.md")
    usage = meta.get("usage") or {}
    cost = meta.get("total_cost_usd")
    if not meta.get("ok"):
        return Finding(
            "worker", False, f"worker W1 failed: {meta.get('error') or meta.get('subtype')}"
        )
    if WORKER_ANSWER not in answer:
        return Finding("worker", False, "worker W1's result is not what its model answered")
    if usage.get("input_tokens") != WORKER_USAGE.input_tokens:
        return Finding("worker", False, f"worker W1's usage was not read back: {usage}")
    if not isinstance(cost, int | float) or cost <= 0:
        return Finding("worker", False, f"worker W1's cost was not read back: {cost!r}")
    return Finding(
        "worker", True, f"W1 answered; {usage['input_tokens']} tokens in, ${cost:.4f} parsed"
    )


def probe_budgets(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Finding]:
    """Two workers with fanout's own command line: one past its turns, one past its budget."""
    cwd = scratch / "workers"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("one\ntwo\n")
    env = worker_env(_session_env(api, scratch, "workers"))
    runs = {
        TURNS_MARK: command(cli=cli, tools=["Read"], max_turns=MAX_TURNS),
        BUDGET_MARK: command(cli=cli, tools=["Read"], max_turns=30, max_budget_usd=MAX_BUDGET_USD),
    }
    running: dict[str, subprocess.Popen[str]] = {}
    for n, (mark, argv) in enumerate(runs.items()):
        stdin = prompt_file(f"{mark} Read notes.txt, again and again.")
        try:
            with (cwd / f"{n}.jsonl").open("w") as stream:
                running[mark] = _popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=stream)
        finally:
            os.close(stdin)
    problems: list[str] = []
    for n, (mark, proc) in enumerate(running.items()):
        _out, err, ended = _finish(proc, SESSION_TIMEOUT_S)
        outcome = collect(
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
        return [Finding("budgets", False, "; ".join(problems))]
    return [Finding("budgets", True, f"stopped at {MAX_TURNS} turns and at ${MAX_BUDGET_USD:g}")]


def probe_planner(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Finding]:
    """fanout's planner (``run_planner``): the structured answer is the plan, in one call."""
    from claude_fanout.config import load_config
    from claude_fanout.planner import PlannerError, run_planner

    project = scratch / "planner"
    (project / ".claude").mkdir(parents=True)
    (project / "a.txt").write_text("a\n")
    env = _session_env(api, scratch, "planner")
    env[CLAUDE_BIN_ENV] = cli
    try:
        planned = run_planner(
            "look at a.txt",
            project=str(project),
            cwd=str(project),
            config=load_config(project),
            env=env,
        )
    except PlannerError as exc:
        return [Finding("structured_output", False, str(exc))]
    calls = [r for r in api.message_requests(side_calls=False) if PLANNER_MARK in r.system_text()]
    if list(planned.plan.ids) != ["P1"]:
        return [
            Finding("structured_output", False, f"the plan came back as {list(planned.plan.ids)}")
        ]
    if len(calls) != 1:
        return [
            Finding(
                "structured_output",
                False,
                f"the session went on after its structured answer ({len(calls)} model calls)",
            )
        ]
    return [Finding("structured_output", True, "the schema's answer became the plan; 1 model call")]


def probe_rewake(cli: str, scratch: Path, api: FakeMessagesAPI) -> list[Finding]:
    """A streaming-input session (its stdin stays open, as an SDK client's does) ends its turn;
    an async Stop hook shaped like fanout's Rewake exits 2; the idle session must be woken."""
    project = scratch / "rewake"
    (project / ".claude").mkdir(parents=True)
    spec = settings_hooks.FANOUT_HOOKS["Rewake"]
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
        procs.wait_child(proc, timeout_s=5, kill=True)
        reader.join(timeout=5)
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    woken = [
        r
        for r in api.message_requests(side_calls=False)
        if REWAKE_MARK in r.first_user_text() and WAKE_TEXT in r.newest_text()
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
        return [Finding("rewake", True, REWAKE_OK)]
    return [Finding("rewake", False, detail)]


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
