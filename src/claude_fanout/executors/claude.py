"""The ``claude`` task kind: one headless Claude Code CLI per task, started by the supervisor.

No Python process stands between the supervisor and the CLI: the supervisor builds the command
line (:func:`claude_fanout.claude.command.command`), starts ``claude -p`` as the leader of its
own process group with the prompt on stdin and ``--output-format stream-json`` going to
``workers/<id>/stream.jsonl``, and when it exits, :func:`claude_fanout.claude.stream.collect`
reads that stream and leaves two files in the task's ``out/``: ``result.md`` (the session's final
text, or why it failed) and ``meta.json`` (ids, turns, timings, cost, usage, denials, what the
worker was allowed). A wrapper process would cost every worker an interpreter, the SDK's imports
(1.5-2.5 s of start-up under load) and its memory, and buy nothing the supervisor does not
already do (process group, timeout, reaping, logs).

The CLI, its command line, its environment and the reading of its stream live in
:mod:`claude_fanout.claude`; :func:`run_claude_task` runs one such session in the foreground, the
way the supervisor does. Stdlib only.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from claude_fanout import procs
from claude_fanout.claude.cli import cli_path
from claude_fanout.claude.command import DEFAULT_PERMISSION_MODE, command, prompt_file
from claude_fanout.claude.env import setting_sources, worker_env
from claude_fanout.claude.stream import STDERR_TAIL_LINES, collect, render_stream

__all__ = ["run_claude_task"]


def run_claude_task(
    *,
    prompt: str,
    tools: Sequence[str],
    cwd: Path,
    out_dir: Path,
    env: Mapping[str, str] | None = None,
    max_turns: int | None = None,
    max_budget_usd: float | None = None,
    model: str | None = None,
    permission_mode: str = DEFAULT_PERMISSION_MODE,
    stream_path: Path | None = None,
    timeout_s: float | None = None,
) -> int:
    """Run one worker session to its end, as the supervisor would; print its transcript.

    ``env`` goes to the CLI on top of this process's environment, minus the markers of a parent
    session. The stream goes to ``stream_path`` (default ``out_dir/../stream.jsonl``).
    Returns 0 when the session ended with a successful result, 1 otherwise; the reason of a
    failure is one line on stderr.
    """
    full_env = worker_env({**os.environ, **(env or {})})
    argv = command(
        cli=cli_path(full_env),
        tools=tools,
        permission_mode=permission_mode,
        max_turns=max_turns,
        max_budget_usd=max_budget_usd,
        model=model,
        sources=setting_sources(full_env),
    )
    stream_path = stream_path or out_dir.parent / "stream.jsonl"
    stream_path.parent.mkdir(parents=True, exist_ok=True)
    started, t0 = time.time(), time.monotonic()
    exit_code: int | None = None
    signum: int | None = None
    error: str | None = None
    stdin = prompt_file(prompt)
    try:
        with (
            stream_path.open("wb") as out,
            tempfile.TemporaryFile() as err,
        ):
            try:
                proc = procs.spawn_attached(
                    argv, cwd=cwd, env=full_env, stdin=stdin, stdout=out, stderr=err
                )
            except OSError as exc:
                error = f"cannot start {argv[0]}: {exc.strerror or exc}"
            else:
                if not procs.finish(proc, timeout_s)[2]:
                    error = f"timed out after {timeout_s:g}s"
                exit_code, signum = procs.decode_returncode(proc.returncode)
            err.seek(0)
            tail = [ln for ln in err.read().decode("utf-8", "replace").splitlines() if ln.strip()][
                -STDERR_TAIL_LINES:
            ]
    finally:
        os.close(stdin)
    outcome = collect(
        stream_path=stream_path,
        out_dir=out_dir,
        argv=argv,
        cwd=cwd,
        exit_code=exit_code,
        signum=signum,
        stderr=tail,
        started_at=started,
        wall_s=time.monotonic() - t0,
        error=error,
    )
    for line in render_stream(stream_path):
        print(line, flush=True)
    if not outcome.ok:
        print(f"fanout claude worker failed: {outcome.reason}", file=sys.stderr, flush=True)
    return 0 if outcome.ok else 1
