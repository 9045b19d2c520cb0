"""``fanout demo``: the main job, offline, narrated.

A scratch project; a scripted fake of the Anthropic Messages API on 127.0.0.1; a plan in which
three real Claude Code sessions (the CLI bundled in claude-agent-sdk) review three files at once,
a shell task counts lines, and a Python task merges the reviews once all of them are done. The
narration shows each transition with its time since the start, then what ran in parallel, what it
cost, and where everything is. Nothing contacts Anthropic; no API key is needed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claude_fanout.fake_api import FakeMessagesAPI, ReadThenSummarize, cli_env
from claude_fanout.plan import parse_plan
from claude_fanout.runner import start_run, wait_run
from claude_fanout.states import RunState
from claude_fanout.store.rundir import RunDir
from claude_fanout.store.state import load_status

_FILES = {
    "src/inventory.py": "def reserve(sku, qty):\n    stock[sku] -= qty  # may go negative\n",
    "src/billing.py": "def charge(card, cents):\n    return gateway.post(card, cents)\n\n"
    "def refund(card, cents):\n    return gateway.post(card, -cents)\n",
    "src/shipping.py": "RATES = {'eu': 7, 'us': 9}\n\ndef quote(region, kg):\n"
    "    return RATES[region] * kg\n",
}
_REVIEWERS = ("W1", "W2", "W3")

if TYPE_CHECKING:
    from claude_fanout.store.eventlog import Event


def merge_reviews(*, tasks: list[str], report: str) -> dict[str, Any]:
    """The demo's merge step (a ``python`` task): join the reviewers' results into one report."""
    run_dir = Path(os.environ["FANOUT_RUN_DIR"])
    sections = []
    for task in tasks:
        text = (run_dir / "workers" / task / "out" / "result.md").read_text(encoding="utf-8")
        sections.append(f"## {task}\n\n{text.strip()}\n")
    target = Path(os.environ["FANOUT_PROJECT"]) / report
    target.write_text("# Review\n\n" + "\n".join(sections), encoding="utf-8")
    return {"report": str(target), "reviews": len(sections)}


def _plan(files: list[str]) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = [
        {
            "id": task_id,
            "kind": "claude",
            "prompt": f"Review {path} for bugs and summarise it in one line.",
            "tools": ["Read", "Grep", "Glob"],
            "claims": [path],
            "max_turns": 4,
            "timeout_s": 120,
        }
        for task_id, path in zip(_REVIEWERS, files, strict=True)
    ]
    tasks.append({"id": "W4", "kind": "shell", "argv": ["wc", "-l", *files]})
    tasks.append(
        {
            "id": "W5",
            "kind": "python",
            "target": "claude_fanout.demo:merge_reviews",
            "args": {"tasks": list(_REVIEWERS), "report": "REVIEW.md"},
            "deps": [*_REVIEWERS, "W4"],
        }
    )
    return {"version": 1, "name": "demo: review three files", "max_parallel": 4, "tasks": tasks}


def run_demo(*, directory: Path | None = None, model_delay_s: float = 1.0) -> int:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    scratch = Path(tempfile.mkdtemp(prefix="fanout-demo-")) if directory is None else directory
    project = scratch / "project"
    for rel, text in _FILES.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text, encoding="utf-8")
    (project / ".claude").mkdir(exist_ok=True)
    console.print(f"[bold]fanout demo[/] in {scratch}")
    console.print(
        f"  scripted model on loopback, {model_delay_s:g}s per model turn; "
        "real Claude Code CLI for every worker"
    )
    with FakeMessagesAPI(ReadThenSummarize(delay_s=model_delay_s)) as api:
        env = cli_env(api.base_url, scratch / "home")
        plan = parse_plan(_plan(list(_FILES)), project=project)
        t0 = time.monotonic()
        started = start_run(plan, project=project, env=env)
        run = started.run
        console.print(f"  run {run.run_id}: {len(plan.tasks)} tasks, up to 4 at once\n")

        def narrate(event: Event) -> None:
            line = _describe(event)
            if line:
                console.print(f"  [dim]{time.monotonic() - t0:6.2f}s[/]  {line}")

        status = wait_run(run, on_event=narrate)
        started.supervisor.wait(timeout=10)
        wall = time.monotonic() - t0
        requests = len(api.message_requests())
    console.print()
    _summarise(console, run, wall, requests)
    console.print(f"\n  run {status.state}; look around: {run.path}")
    console.print(f"  fanout --project {project} status")
    return 0 if status.state is RunState.SUCCEEDED else 1


def _describe(event: Event) -> str | None:
    kind, task = event.get("type"), event.get("task")
    if kind == "task_started":
        return f"{task} started (pid {event.get('pid')})"
    if kind == "task_exited":
        text = f"{task} {event.get('outcome')} after {event.get('duration_s')}s"
        return text + (f": {event['reason']}" if event.get("reason") else "")
    if kind == "task_skipped":
        return f"{task} {event.get('outcome') or 'skipped'}: {event.get('reason')}"
    if kind == "run_finished":
        return f"run {event.get('state')}"
    return None


def _summarise(console: Any, run: RunDir, wall: float, requests: int) -> None:
    status = load_status(run)
    busy = sum(status.tasks[task].duration_s or 0.0 for task in _REVIEWERS)
    cost = 0.0
    tokens = 0
    for task in _REVIEWERS:
        out = run.out_dir(task)
        meta = json.loads((out / "meta.json").read_text())
        cost += meta.get("total_cost_usd") or 0.0
        usage = meta.get("usage") or {}
        tokens += int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
        result = (out / "result.md").read_text().strip().splitlines()[0]
        console.print(f"  {task} result.md: {result}")
    console.print(
        f"\n  3 Claude workers: {busy:.1f}s of work in {wall:.1f}s of wall time "
        f"({busy / wall:.1f}x parallel); {requests} model requests, {tokens} tokens, "
        f"${cost:.4f} as the CLI priced them"
    )
    report = run.project / "REVIEW.md"
    if report.exists():
        console.print(
            f"  merged by W5 into {report} ({len(report.read_text().splitlines())} lines)"
        )
