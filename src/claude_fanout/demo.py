"""``fanout demo``: the main job, offline, narrated.

A scratch git repository with three files and fanout's hooks installed; a scripted fake of the
Anthropic Messages API on 127.0.0.1; and the real Claude Code CLI (bundled in claude-agent-sdk)
as the Conductor. Two acts:

1. *Review*: ``/fanout review for bugs -- src/*.py``. fanout's hooks start three read-only
   Claude Code workers; the narration shows, with timings, what the Conductor tried and what the
   hooks did about it: the denied read of a file a worker owns, the results injected after a
   tool call, the Stop held until the slowest worker is done, the results handed over once.
2. *Edits*: ``/fanout --plan .claude/fanout/edits.json``, three writers, each in its own git
   worktree. Two changes merge into the working tree; the third collides with the first and
   is reported, kept on its branch. The cost of every worker is in front of you.

Nothing contacts Anthropic; no API key is needed. ``--live`` runs the review with your own
Claude account and the real model instead of the scripted one.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from claude_fanout import install, procs
from claude_fanout.store import layout
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import RunDir, list_runs
from claude_fanout.store.state import load_status
from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env
from claude_fanout.testing.models import FINAL_MARK, is_worker, scripted_model
from claude_fanout.testing.requests import Request

FILES = {
    "src/inventory.py": "def reserve(stock, sku, qty):\n    stock[sku] -= qty  # may go negative\n",
    "src/billing.py": "def charge(gateway, card, cents):\n    return gateway.post(card, cents)\n\n"
    "def refund(gateway, card, cents):\n    return gateway.post(card, -cents)\n",
    "src/shipping.py": "RATES = {'eu': 7, 'us': 9}\n\n\ndef quote(region, kg):\n"
    "    return RATES[region] * kg\n",
}
PROMPT = "/fanout review for bugs -- src/*.py"
EDITS_PROMPT = "/fanout --plan .claude/fanout/edits.json"
REFUND = "return gateway.post(card, -cents)"
EDITS_PLAN = {
    "version": 1,
    "name": "money fixes",
    "max_cost_usd": 1.0,
    "tasks": [
        {
            "id": "W1",
            "kind": "claude",
            "write": True,
            "claims": ["src/billing.py"],
            "prompt": f"In src/billing.py, replace `{REFUND}` with "
            "`return gateway.refund(card, cents)`.",
        },
        {
            "id": "W2",
            "kind": "claude",
            "write": True,
            "claims": ["src/shipping.py"],
            "prompt": "In src/shipping.py, replace `return RATES[region] * kg` with "
            "`return RATES.get(region, 12) * kg`.",
        },
        {
            "id": "W3",
            "kind": "claude",
            "write": True,
            "prompt": f"In src/billing.py, replace `{REFUND}` with "
            "`return gateway.post(card, -abs(cents))`.",
        },
    ],
}


def make_project(scratch: Path) -> Path:
    project = scratch / "project"
    for rel, text in FILES.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text, encoding="utf-8")
    (project / ".claude" / "fanout").mkdir(parents=True)
    (project / ".claude" / "fanout.toml").write_text("[stop]\nwait_s = 3\n", encoding="utf-8")
    (project / ".claude" / "fanout" / "edits.json").write_text(json.dumps(EDITS_PLAN, indent=2))
    _git(project, "init", "-q", "-b", "main")
    # As in a real repository: the hooks go to settings.local.json, which git ignores; the
    # /fanout command is committed with the rest; the run store keeps itself out of git.
    install.install(project=project)
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "the shop")
    return project


def _git(project: Path, *args: str) -> str:
    ident = ["-c", "user.name=fanout demo", "-c", "user.email=demo@fanout.invalid"]
    return subprocess.run(
        ["git", *ident, *args], cwd=project, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def run_demo(
    *, directory: Path | None = None, model_delay_s: float = 1.0, live: bool = False
) -> int:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    scratch = Path(tempfile.mkdtemp(prefix="fanout-demo-")) if directory is None else directory
    project = make_project(scratch)
    console.print(f"[bold]fanout demo[/] in {project}")
    console.print(
        "  fanout's hooks installed in .claude/settings.local.json; the Conductor is the real "
        f"Claude Code CLI ({claude_cli()})"
    )
    if live:
        console.print("  --live: your own Claude account and the real model (this costs tokens)")
        return _run(console, project, PROMPT, env=dict(os.environ), api=None)
    console.print(
        f"  model: a scripted fake of the Messages API on 127.0.0.1, {model_delay_s:g}s "
        "per turn (the worker on the last file is 4x slower)"
    )
    with FakeMessagesAPI(
        scripted_model(project, model_delay_s=model_delay_s, files=list(FILES))
    ) as api:
        env = cli_env(api.base_url, scratch / "home")
        console.print("\n[bold]Act 1[/]: three read-only reviewers")
        review = _run(console, project, PROMPT, env=env, api=api)
        console.print("\n[bold]Act 2[/]: three writers, each in its own git worktree")
        edits = _run(console, project, EDITS_PROMPT, env=env, api=api)
        if edits == 0:
            _show_merge(console, project)
        return review or edits


def _show_merge(console: Any, project: Path) -> None:
    status = _git(project, "status", "--short").rstrip()
    branches = _git(project, "branch", "--list", "fanout/*").splitlines()
    console.print("\n  $ git status --short   (merged, not committed: yours to review)")
    for line in status.splitlines():
        console.print(f"    {escape(line)}")
    console.print(f"  kept until `fanout gc`: {len(branches)} branches fanout/<run>/W1..W3")
    diff = _git(project, "diff", "--", "src/billing.py", "src/shipping.py")
    for line in diff.splitlines():
        if line[:1] in "+-" and not line.startswith(("+++", "---")):
            console.print(f"    {escape(line)}")


def _run(
    console: Any,
    project: Path,
    prompt: str,
    *,
    env: dict[str, str],
    api: FakeMessagesAPI | None,
) -> int:
    console.print(f'\n  $ claude -p "{prompt}"\n')
    started = time.monotonic()
    proc = procs.spawn_attached(
        [
            str(claude_cli()),
            "-p",
            prompt,
            "--allowedTools",
            "Bash,Read",
            "--output-format",
            "json",
        ],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    known = {run.run_id for run in list_runs(project)}
    narrator = _Narrator(console, project, api, started, known)
    try:
        while procs.reap(proc) is None:
            narrator.step()
            time.sleep(0.05)
    except BaseException:
        procs.finish(proc, 0)  # killed and reaped
        raise
    out, err, _ = procs.finish(proc, 10)
    narrator.step()
    wall = time.monotonic() - started
    try:
        answer = json.loads(out).get("result")
    except ValueError:
        answer = None
    console.print(f"\n  Conductor's last word: {answer!r} (exit {proc.returncode}, {wall:.1f}s)")
    runs = [run for run in list_runs(project) if run.run_id not in known]
    if not runs:
        console.print(f"[red]  no run was started[/]: {err.strip()[-400:]}")
        return 1
    return _summarise(console, runs[-1], wall, api, ok=proc.returncode == 0)


class _Narrator:
    """Prints what the run's log and the Conductor's requests show, as it happens."""

    def __init__(
        self,
        console: Any,
        project: Path,
        api: FakeMessagesAPI | None,
        started: float,
        known: set[str],
    ) -> None:
        self.console = console
        self.project = project
        self.api = api
        self.started = started
        self.known = known
        self.offset = 0
        self.seen_requests = len(self._conductor_requests())
        self.run: RunDir | None = None

    def say(self, text: str, *, markup: str = "") -> None:
        stamp = f"[dim]{time.monotonic() - self.started:6.2f}s[/]"
        self.console.print(f"  {stamp}  {markup}{escape(text)}")

    def step(self) -> None:
        if self.run is None:
            runs = [run for run in list_runs(self.project) if run.run_id not in self.known]
            if runs:
                self.run = runs[-1]
        if self.run is not None:
            result = read_events(self.run.events_path, self.offset)
            self.offset = result.offset
            for event in result.events:
                line = _describe(event)
                if line:
                    self.say(line)
        if self.api is not None:
            requests = self._conductor_requests()
            for request in requests[self.seen_requests :]:
                line = _conductor_step(request)
                if line:
                    self.say(line, markup="[cyan]Conductor[/] ")
            self.seen_requests = len(requests)

    def _conductor_requests(self) -> list[Request]:
        if self.api is None:
            return []
        return [r for r in self.api.message_requests(side_calls=False) if not is_worker(r)]


def _describe(event: dict[str, Any]) -> str | None:
    kind, task = event.get("type"), event.get("task")
    if kind == "run_created":
        return (
            f"hook UserPromptSubmit started run {event.get('run_id')}: {', '.join(event['tasks'])}"
        )
    if kind == "task_started":
        return f"worker {task} started (pid {event.get('pid')})"
    if kind == "task_exited":
        return f"worker {task} {event.get('outcome')} after {event.get('duration_s')}s"
    if kind == "worktree_created":
        return f"worker {task} gets worktree {_short_path(event.get('path'))}"
    if kind == "worktree_committed":
        files = ", ".join(event.get("files") or []) or "nothing"
        return f"worker {task} committed {str(event.get('commit'))[:8]} on its branch: {files}"
    if kind == "run_merged":
        merged = ", ".join(event.get("merged") or []) or "nothing"
        line = f"merge-back into the working tree: {merged}"
        for conflict in event.get("conflicts") or []:
            line += (
                f"; {conflict.get('task')} conflicts with {', '.join(conflict.get('with') or [])}"
                f" in {', '.join(conflict.get('files') or [])} (kept on {conflict.get('branch')})"
            )
        return line
    if kind == "run_finished":
        return f"run {event.get('state')}"
    return None


def _short_path(path: object) -> str:
    text = str(path)
    index = text.find(".fanout/")
    return text[index:] if index >= 0 else text


def _conductor_step(request: Request) -> str | None:
    if len(request.messages) <= 2:
        return "got the prompt, with the hook's context naming the workers"
    feedback = "\n".join(request.hook_feedback())
    if feedback:
        if FINAL_MARK in feedback:
            return "tried to stop: the Stop hook handed it every result, once"
        return "tried to stop: held by the Stop hook while workers run (progress shown)"
    results = request.tool_results()
    if results and "claimed by worker" in results[-1][1]:
        return "read a file a worker owns: denied by the PreToolUse hook, reason names the worker"
    if results and request.fanout_texts(newest=True):
        return "after its tool call, the PostToolUse hook injected finished workers' results"
    return None


def _summarise(
    console: Any, run: RunDir, wall: float, api: FakeMessagesAPI | None, *, ok: bool
) -> int:
    status = load_status(run)
    busy = sum(task.duration_s or 0.0 for task in status.tasks.values())
    cost = 0.0
    tokens = 0
    console.print()
    for task_id in status.tasks:
        out = run.out_dir(task_id)
        try:
            meta = json.loads((out / "meta.json").read_text())
            result = (out / layout.RESULT).read_text().strip().splitlines()[0]
        except (OSError, ValueError, IndexError):
            console.print(f"  {task_id}: no result ({status.tasks[task_id].state})")
            continue
        cost += meta.get("total_cost_usd") or 0.0
        usage = meta.get("usage") or {}
        tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        console.print(f"  {task_id} result.md: {escape(result)}")
    parallel = busy / wall if wall else 0.0
    console.print(
        f"\n  {len(status.tasks)} workers: {busy:.1f}s of work in {wall:.1f}s of wall time "
        f"({parallel:.1f}x); {tokens} tokens, ${cost:.4f} as the CLI priced them"
    )
    if api is not None:
        console.print(f"  model requests served on loopback: {len(api.message_requests())}")
    console.print(f"  run {status.state}; everything is in {run.path}")
    console.print(f"  fanout --project {run.project} status {run.run_id}")
    return 0 if ok and status.state == "succeeded" else 1
