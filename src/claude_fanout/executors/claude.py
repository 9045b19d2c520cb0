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
way the supervisor does, and :class:`ClaudeExecutor` is the kind behind the executor protocol
(:mod:`claude_fanout.executors.base`). Stdlib only.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from claude_fanout import defaults, procs
from claude_fanout.claude.cli import cli_path
from claude_fanout.claude.command import DEFAULT_PERMISSION_MODE, command, prompt_file
from claude_fanout.claude.env import setting_sources, worker_env
from claude_fanout.claude.progress import StreamProgress
from claude_fanout.claude.stream import (
    STDERR_TAIL_LINES,
    collect,
    render,
    render_stream,
    stderr_tail,
)
from claude_fanout.defaults import PROGRESS_INTERVAL_S
from claude_fanout.errors import FanoutError
from claude_fanout.plan import TaskKind
from claude_fanout.states import EventType, TaskState
from claude_fanout.store.files import open_private

if TYPE_CHECKING:
    from claude_fanout.executors.base import Command, Exit, RunContext, Verdict
    from claude_fanout.plan import Task

__all__ = ["ClaudeExecutor", "run_claude_task"]


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


# -- the executor protocol (executors.base) ------------------------------------------------------


class ClaudeExecutor:
    """Starts a worker as ``claude -p`` (the prompt on stdin, the stream to ``stream.jsonl``),
    renders its stream into its log while it runs, and judges its exit by its result."""

    kind: ClassVar[TaskKind] = TaskKind.CLAUDE
    claude_session: ClassVar[bool] = True

    def __init__(self, context: RunContext) -> None:
        self.context = context
        # Per task: the CLI command line of its current attempt (what it was allowed is read back
        # from it), how far its stream has been rendered into its log, what it has spent and is
        # doing (read from that stream), and what the last `task_progress` record said, and when.
        self._argv: dict[str, tuple[str, ...]] = {}
        self._rendered: dict[str, int] = {}
        self._progress: dict[str, StreamProgress] = {}
        self._reported: dict[str, tuple[dict[str, float], str | None]] = {}
        self._reported_at: dict[str, float] = {}

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return worker_env(base)

    def command(self, task: Task, env: Mapping[str, str]) -> Command:
        """A writer runs in its worktree (made on its first attempt); the budgets are the
        tighter of the task's and what is left of the run's."""
        from claude_fanout.executors.base import Command
        from claude_fanout.git import writers

        ctx = self.context
        run = ctx.run
        cwd, worktree = run.project, None
        if task.write:
            worktree, cwd = writers.worktree_for(
                run, task, ctx.worktrees, commit_of=ctx.commit_of, emit=ctx.emit
            )
        max_turns, max_cost = ctx.budget.task_limits(
            max_turns=task.max_turns, max_cost_usd=task.max_cost_usd
        )
        argv = command(
            cli=cli_path(env),
            tools=task.granted_tools,
            permission_mode=task.permission_mode,
            max_turns=max_turns,
            max_budget_usd=max_cost,
            model=task.model,
            sources=setting_sources(env),
            partial_messages=True,
        )
        self._argv[task.id] = tuple(argv)
        self._rendered[task.id] = 0
        self._progress[task.id] = StreamProgress(cwd=str(cwd), model=task.model)
        self._reported.pop(task.id, None)
        self._reported_at.pop(task.id, None)
        launch = Command(argv=argv, cwd=cwd, worktree=worktree, made_at=time.time())
        try:
            launch.stdin_fd = prompt_file(task.prompt)
            launch.stdout_fd = open_private(
                run.stream_path(task.id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            )
        except BaseException:
            launch.close()
            raise
        if task.write and ctx.config.worktree_setup:
            launch.argv = writers.with_setup(ctx.config.worktree_setup, argv)
        return launch

    def follow(self, task: Task, attempt: int) -> None:
        """Read what the worker's stream gained (whole lines, each once): append it to its log,
        readably; count what it spent and see what it does (the run's budget learns at once,
        the log by a ``task_progress`` record at most every ``PROGRESS_INTERVAL_S``)."""
        self._follow(task, attempt, final=False)

    def _follow(self, task: Task, attempt: int, *, final: bool) -> None:
        ctx = self.context
        progress = self._progress.get(task.id)
        lines = self._read_stream(task, progress)
        if lines:
            fd = open_private(ctx.run.log_path(task.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8", "replace"))
            finally:
                os.close(fd)
        if progress is None:
            return
        usage, doing = progress.usage(), progress.doing
        last = self._reported.get(task.id)
        if last is not None and last[0] == usage and (final or last[1] == doing):
            return
        if progress.turns == 0 and doing is None:
            return  # nothing spent or done yet
        ctx.budget.progress(task.id, usage)
        now = ctx.clock()
        if not final and now - self._reported_at.get(task.id, -math.inf) < PROGRESS_INTERVAL_S:
            return
        self._reported[task.id], self._reported_at[task.id] = (usage, doing), now
        fields = {} if final else {"doing": doing}
        ctx.emit(EventType.TASK_PROGRESS, task=task.id, attempt=attempt, **usage, **fields)

    def _read_stream(self, task: Task, progress: StreamProgress | None) -> list[str]:
        """The log lines of what the stream gained since the last read (whole lines only)."""
        offset = self._rendered.get(task.id, 0)
        try:
            with self.context.run.stream_path(task.id).open("rb") as handle:
                handle.seek(offset)
                data = handle.read(defaults.STREAM_READ_MAX)
        except OSError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) >= defaults.STREAM_READ_MAX:  # one giant line: skip it
                self._rendered[task.id] = offset + len(data)
            return []
        self._rendered[task.id] = offset + end + 1
        progress = progress or StreamProgress()
        lines: list[str] = []
        for line in data[: end + 1].splitlines():
            message = progress.feed_line(line)
            if message is not None:
                lines.extend(render(message))
        return lines

    def judge(self, task: Task, attempt: int, command: Command, exit: Exit) -> Verdict:
        """Read the finished worker's stream: its result files, its usage record, and the outcome
        its result means (over budget, rate limited, failed, or done and committed)."""
        from claude_fanout.executors.base import Verdict
        from claude_fanout.git import writers

        ctx = self.context
        run = ctx.run
        self._follow(task, attempt, final=True)
        self._rendered[task.id] = 0
        self._progress.pop(task.id, None)
        result = collect(
            stream_path=run.stream_path(task.id),
            out_dir=run.out_dir(task.id),
            argv=self._argv.get(task.id, ()),
            cwd=command.cwd,
            exit_code=exit.exit_code,
            signum=exit.signum,
            stderr=stderr_tail(run.log_path(task.id)),
            started_at=command.made_at,
            wall_s=exit.wall_s,
        )
        # The CLI's own figures replace the estimate; without them, the estimate stays spent.
        ctx.budget.settle(task.id, result.usage or None)
        if result.usage:
            ctx.emit(
                EventType.TASK_USAGE,
                task=task.id,
                attempt=attempt,
                **result.usage,
                model=result.meta.get("model"),
                subtype=result.meta.get("subtype"),
                duration_ms=result.meta.get("duration_ms"),
            )
        setup_failed = (
            exit.exit_code == writers.SETUP_FAILED_EXIT and result.meta.get("subtype") is None
        )
        if setup_failed and task.write and ctx.config.worktree_setup:
            tail = stderr_tail(run.log_path(task.id))
            setup_line = next((ln for ln in reversed(tail) if "worktree setup" in ln), "")
            return Verdict(TaskState.FAILED, setup_line.removeprefix("fanout: ") or "setup failed")
        if result.over_budget:
            return Verdict(TaskState.OVER_BUDGET, result.reason)
        if result.rate_limited:
            return Verdict(
                TaskState.FAILED, f"rate limited by the API: {result.reason}", rate_limited=True
            )
        if not result.ok:
            return Verdict(TaskState.FAILED, result.reason)
        if task.write and command.worktree is not None:
            try:
                writers.commit_worktree(run, task, ctx.worktrees, emit=ctx.emit)
            except FanoutError as exc:
                return Verdict(TaskState.FAILED, f"cannot commit its worktree: {exc}")
        return Verdict(TaskState.SUCCEEDED)
