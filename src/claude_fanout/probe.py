"""``fanout doctor --probe``: every Claude Code mechanism fanout depends on, tried for real.

The CLI under test runs offline: a scripted fake of the Messages API on 127.0.0.1
(:mod:`claude_fanout.testing.fake_api`), a scratch HOME and a scratch project, with fanout's hooks
installed there by :func:`claude_fanout.install.install`. Nothing of the user's is read or
written. Six CLI sessions run at once (:mod:`claude_fanout.probe_sessions`), each showing
what it alone can:

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

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from claude_fanout import compat
from claude_fanout import probe_sessions as sessions
from claude_fanout.claude.cli import runnable_cli
from claude_fanout.testing.fake_api import FakeMessagesAPI

__all__ = [
    "MECHANISMS",
    "Mechanism",
    "ProbeReport",
    "Result",
    "render",
    "resolve_clis",
    "run_probe",
]


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


# -- running it --------------------------------------------------------------------------------


def resolve_clis(env: Mapping[str, str], cli: str | None = None) -> tuple[str | None, str | None]:
    """(the Conductor's CLI, the workers' CLI): ``cli`` for both when given; else ``claude`` on
    PATH for the Conductor (the workers' one when there is none) and the workers' own."""
    if cli is not None:
        return _runnable(cli), _runnable(cli)
    workers = runnable_cli(env)
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
        script = sessions.Script(sessions.conductor_project(root))
        with FakeMessagesAPI(script) as api, ThreadPoolExecutor(max_workers=4) as pool:
            jobs: dict[tuple[str, ...], Callable[[], list[sessions.Finding]]] = {
                ("context", "deny", "updated_input", "stop", "worker"): lambda: (
                    sessions.probe_conductor(conductor, workers, root, api, script)
                ),
                ("budgets",): lambda: sessions.probe_budgets(workers, root, api),
                ("structured_output",): lambda: sessions.probe_planner(workers, root, api),
                ("rewake",): lambda: sessions.probe_rewake(conductor, root, api),
            }
            futures = {ids: pool.submit(job) for ids, job in jobs.items()}
            found = {f.mechanism: f for ids, job in futures.items() for f in _findings(ids, job)}
        versions = {path: compat.cli_version(path) for path in dict.fromkeys((conductor, workers))}
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    ordered = [_result(m.id, found[m.id].ok, found[m.id].detail) for m in MECHANISMS]
    return ProbeReport(conductor, workers, versions, ordered, time.monotonic() - started)


def _findings(ids: tuple[str, ...], job: Future[list[sessions.Finding]]) -> list[sessions.Finding]:
    try:
        return job.result()
    except Exception as exc:  # noqa: BLE001 - one broken session must not hide the others
        what = f"the probe's session failed: {type(exc).__name__}: {exc}"
        return [sessions.Finding(mechanism, False, what) for mechanism in ids]


def render(report: ProbeReport) -> Iterator[str]:
    """Lines for a person: one per mechanism, ✓ or ✗, and for ✗ what fanout does about it."""
    for label, path in (("Conductor", report.conductor_cli), ("workers", report.worker_cli)):
        version = report.versions.get(path)
        yield f"  {label}: Claude Code {version or '(version unknown)'} at {path}"
    for result in report.results:
        line = f"{result.mechanism.title}: {result.detail}"
        yield f"  ✓ {line}" if result.ok else f"  ✗ {line}; fanout: {result.mechanism.impact}"
    yield f"  probed in {report.elapsed_s:.1f}s"
