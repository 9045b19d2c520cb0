"""The text a hook hands the Conductor about its runs: outcomes, cost, merge-back, excerpts.

Worker output is data, not instructions (``framing.py``): every message has its own fence,
``<worker-output-<nonce>>``, that no worker can know, forge or close; excerpts and notices sit
inside it, and anything else a worker could have shaped that appears on fanout's own lines
(a failure's reason, a file name) is quoted. Sizes are capped per worker (an excerpt of its
result, saying how much was cut and where the rest is) and per message (``inject.max_chars``);
a cut never falls inside a block.
"""

from __future__ import annotations

import json
import os

from claude_fanout import defaults, usage
from claude_fanout.hooks.delivery import artifact, name, progress, relative
from claude_fanout.hooks.framing import Fence, Message, one_line
from claude_fanout.states import TaskState
from claude_fanout.store import layout
from claude_fanout.store.files import open_private
from claude_fanout.text import cut, duration
from claude_fanout.text import one_line as plain_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from claude_fanout.hooks.context import HookContext
    from claude_fanout.hooks.delivery import News
    from claude_fanout.plan import Plan
    from claude_fanout.store.rundir import RunDir
    from claude_fanout.store.status import RunStatus, TaskStatus

# fanout's own standing instruction, never the user's word: Claude Code (2.1.332) tells the model
# that hook output carries no message or approval from the user.
DONE = (
    "All of this session's fanout workers are done. Merge their results now into your answer "
    "to the request that started them; read the result files for more than these excerpts."
)
ATTENTION = (
    "A worker needs your attention (above); the others are still at work and fanout will wake "
    "you again when they are done."
)


def excerpt(
    path: str, *, from_end: bool = False, max_chars: int = defaults.EXCERPT_CHARS
) -> tuple[str, int]:
    """The first (or, for a log, last) lines of a file, at most ``EXCERPT_LINES`` lines of
    ``EXCERPT_LINE_CHARS`` (defaults.py) and ``max_chars`` in all; and how many bytes of the
    file it leaves out (0: the excerpt is the whole text). Raw worker text: it goes into a
    fence, which cleans it.
    """
    try:
        fd = open_private(path, os.O_RDONLY)
    except OSError:
        return "", 0
    with os.fdopen(fd, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - defaults.EXCERPT_READ_BYTES) if from_end else 0)
        raw = handle.read(defaults.EXCERPT_READ_BYTES)
    lines = [
        line
        for line in raw.decode("utf-8", "replace").strip().splitlines()
        if not line.startswith(layout.ATTEMPT_HEADER)  # the supervisor's per-attempt header
    ]
    picked = lines[-defaults.EXCERPT_LINES :] if from_end else lines[: defaults.EXCERPT_LINES]
    joined = "\n".join(line[: defaults.EXCERPT_LINE_CHARS] for line in picked)
    text = joined[-max_chars:] if from_end else joined[:max_chars]
    whole = (
        len(raw) == size
        and len(picked) == len(lines)
        and all(len(line) <= defaults.EXCERPT_LINE_CHARS for line in picked)
        and len(joined) <= max_chars
    )
    return text, 0 if whole else max(1, size - len(text.encode()))


# -- lines fanout writes about tasks and runs ---------------------------------------------------


def quoted(value: object, limit: int = defaults.REASON_CHARS) -> str:
    """Free text a worker may have shaped (a failure's reason, a file name), on fanout's own line:
    one line, cleaned, cut, and quoted, so it reads as a value and not as fanout speaking."""
    return json.dumps(cut(one_line(str(value)), limit), ensure_ascii=False)


def task_line(task: TaskStatus) -> str:
    """``W1 succeeded in 12s, 4 turns, $0.03``; a budget stop and a failure's reason plainly."""
    tid = name(task.id)
    if task.state is TaskState.OVER_BUDGET:
        ran = task.started is not None
        line = f"{tid} stopped at its budget" if ran else f"{tid} not started: over budget"
    else:
        line = f"{tid} {task.state}"
    facts = []
    if task.duration_s is not None:
        facts.append(f"in {duration(task.duration_s)}")
    spent = usage.brief(task.usage)
    if spent:
        facts.append(spent)
    line += (" " + ", ".join(facts)) if facts else ""
    if task.reason and task.state is not TaskState.SUCCEEDED:
        line += f": {quoted(task.reason)}"
    return line


def run_totals(status: RunStatus) -> str:
    """``3 workers, $0.09, 41k tokens in / 3k out`` over the run's Claude workers ('' if none)."""
    workers = sum(1 for task in status.tasks.values() if task.usage)
    return usage.total(status.usage, workers)


def describe(
    run_path: str,
    status: RunStatus,
    task_ids: list[str],
    *,
    project: str,
    budget: int,
    fence: Fence,
    excerpts_for: set[str] | None = None,
) -> str:
    """One line per task (outcome, time, cost, where its result is) with an excerpt of its
    result in a fenced block while ``budget`` lasts, each excerpt getting a fair share of what is
    left; past the budget the remaining tasks are named in one line, so none goes unmentioned."""
    parts: list[str] = []
    used = 0
    rest: dict[str, list[str]] = {}
    for index, task_id in enumerate(task_ids):
        task = status.tasks[task_id]
        line = task_line(task)
        path = artifact(run_path, task_id)
        rel = ""
        if path is not None:
            kind = "log" if path.endswith(os.sep + "log") else "result"
            rel = relative(path, project)
            line += f"; {kind}: {rel}"
        if used + len(line) > budget:
            rest.setdefault(str(task.state), []).append(name(task_id))
            continue
        body = ""
        wanted = excerpts_for is None or task_id in excerpts_for
        if wanted and path is not None:
            later = task_ids[index + 1 :]
            sharing = 1 + sum(1 for t in later if excerpts_for is None or t in excerpts_for)
            # What later tasks' own lines will need is kept back before sharing out the rest.
            share = (budget - used - 100 * (len(later) + 1 - sharing)) // sharing
            room = min(defaults.EXCERPT_CHARS, share - len(line) - 2 * len(fence.tag) - 120)
            if room >= defaults.EXCERPT_MIN_CHARS:
                text, more = excerpt(path, from_end=path.endswith(os.sep + "log"), max_chars=room)
                if text:
                    body = "\n" + fence.block(text, task=task_id)
                    if more:
                        where = "earlier bytes" if path.endswith(os.sep + "log") else "more bytes"
                        body += f"\n(excerpt cut: {more:,} {where} in {rel})"
        parts.append(line + body)
        used += len(line) + len(body) + 1
    if rest:
        where = relative(layout.join(run_path, layout.WORKERS), project)
        named = "; ".join(f"{state} {', '.join(ids)}" for state, ids in rest.items())
        parts.append(f"Also: {named} (results under {where}/<task>/out/).")
    return "\n".join(parts)


def notice_lines(notices: list[str], fence: Fence, *, budget: int | None = None) -> list[str]:
    """Notices are worker output too: one fenced line each, within ``budget`` characters."""
    lines: list[str] = []
    used = 0
    for i, note in enumerate(notices, 1):
        text = (
            note if len(note) <= defaults.NOTICE_CHARS else note[: defaults.NOTICE_CHARS - 1] + "…"
        )
        line = fence.inline(text, notice=str(i))
        if budget is not None and used + len(line) > budget:
            lines.append(f"({len(notices) - i + 1} more notice(s) not shown.)")
            break
        lines.append(line)
        used += len(line) + 1
    return lines


def merge_lines(status: RunStatus) -> list[str]:
    """What became of the writers' branches: merged into the working tree, conflicting (with
    whom, in which files, how to see and get them), or not merged; '' without writers."""
    writers = {tid: task.branch for tid, task in status.tasks.items() if task.branch}
    if not writers:
        return []
    rid = name(status.run_id)
    merge = status.merge
    if merge is None:
        listed = ", ".join(f"{name(t)} ({name(b)})" for t, b in writers.items())
        return [
            f"Writers' branches, not merged into your working tree: {listed}. "
            f"`fanout merge {rid}` merges what applies cleanly."
        ]
    if merge.get("error"):
        listed = ", ".join(name(b) for b in writers.values())
        return [
            f"Merge-back failed: {quoted(merge['error'])}. Branches kept: {listed}; "
            f"`fanout merge {rid}` tries again."
        ]

    def tasks(key: str) -> list[str]:
        value = merge.get(key)
        return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []

    def branch(task: str) -> str:
        return name(writers.get(task) or f"fanout/{rid}/{task}")

    lines = []
    merged = tasks("merged")
    if merged:
        listed = ", ".join(f"{name(t)} ({branch(t)})" for t in merged)
        lines.append(f"Merged into your working tree (uncommitted): {listed}.")
    if tasks("already_merged"):
        lines.append(
            f"Already in your working tree: {', '.join(map(name, tasks('already_merged')))}."
        )
    if tasks("unchanged"):
        lines.append(f"Changed nothing: {', '.join(map(name, tasks('unchanged')))}.")
    raw = merge.get("conflicts")
    conflicts = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    base = merge.get("base")
    for conflict in conflicts[: defaults.MERGE_MAX_CONFLICTS]:
        task = name(conflict.get("task"))
        where = name(conflict.get("branch") or branch(task))
        others = conflict.get("with")
        others = others if isinstance(others, list) else []
        who = ", ".join(
            "your own edits" if o == "working tree" else name(o)
            for o in others
            if isinstance(o, str)
        )
        files = conflict.get("files")
        files = [f for f in files if isinstance(f, str)] if isinstance(files, list) else []
        shown = ", ".join(quoted(f, 120) for f in files[: defaults.MERGE_MAX_FILES])
        if len(files) > defaults.MERGE_MAX_FILES:
            shown += f" and {len(files) - defaults.MERGE_MAX_FILES} more"
        see = (
            f"git diff {name(base)[:12]} {where}" if isinstance(base, str) else f"git show {where}"
        )
        lines.append(
            f"NOT merged, conflicts with {who or 'your working tree'}: {task} ({where}) in "
            f"{shown or 'its files'}; see it: `{see}`."
        )
    if len(conflicts) > defaults.MERGE_MAX_CONFLICTS:
        lines.append(
            f"… and {len(conflicts) - defaults.MERGE_MAX_CONFLICTS} more conflicting branch(es)."
        )
    if conflicts:
        chosen = " ".join(name(c.get("task")) for c in conflicts[: defaults.MERGE_MAX_CONFLICTS])
        lines.append(
            f"Resolve or undo the overlap in your files, then `fanout merge {rid} {chosen}` "
            "applies those changes to your working tree (never a commit, HEAD or the index)."
        )
    if tasks("skipped"):
        listed = ", ".join(f"{name(t)} ({branch(t)})" for t in tasks("skipped"))
        lines.append(f"Not merged, the task did not succeed: {listed}.")
    lines.append(f"Branches stay until `fanout gc {rid}`.")
    return lines


# -- sections and messages ----------------------------------------------------------------------


def news_section(
    run_path: str,
    status: RunStatus,
    finished: list[str],
    notices: list[str],
    *,
    project: str,
    now: float,
    budget: int,
    fence: Fence,
) -> str:
    """A run still at work (or just done): who is still at it, what finished, new notices."""
    head = f"[fanout] run {name(status.run_id)}: " + (
        progress(status, now) or "all workers are done"
    )
    totals = run_totals(status)
    if totals and not progress(status, now):
        head += f"; {totals}"
    return _section(
        [head],
        run_path,
        status,
        finished,
        notices,
        project=project,
        budget=budget,
        fence=fence,
        excerpts_for=None,
    )


def final_section(
    run_path: str,
    status: RunStatus,
    fresh: list[str],
    notices: list[str],
    *,
    project: str,
    budget: int,
    fence: Fence,
) -> str:
    """A finished run, once: outcome, cost, merge-back, every task (excerpts only for results
    this session has not seen), new notices."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status.counts().items()))
    head = f"[fanout] run {name(status.run_id)} {status.state}: {counts}"
    if status.reason:
        head += f" ({quoted(status.reason)})"
    totals = run_totals(status)
    head += f"; {totals}." if totals else "."
    return _section(
        [head, *merge_lines(status)],
        run_path,
        status,
        list(status.tasks),
        notices,
        project=project,
        budget=budget,
        fence=fence,
        excerpts_for=set(fresh),
    )


def _section(
    heads: list[str],
    run_path: str,
    status: RunStatus,
    task_ids: list[str],
    notices: list[str],
    *,
    project: str,
    budget: int,
    fence: Fence,
    excerpts_for: set[str] | None,
) -> str:
    left = budget - sum(len(line) + 1 for line in heads)
    notes = notice_lines(notices, fence, budget=max(0, left // 3)) if notices else []
    left -= sum(len(line) + 1 for line in notes)
    body = (
        describe(
            run_path,
            status,
            task_ids,
            project=project,
            budget=max(0, left),
            fence=fence,
            excerpts_for=excerpts_for,
        )
        if task_ids
        else ""
    )
    return "\n".join(line for line in (*heads, body, *notes) if line)


def add_news(message: Message, found: list[News], *, project: str, now: float) -> None:
    room = message.room(len(found))
    for run_path, status, finished, notices in found:
        message.add(
            news_section(
                run_path,
                status,
                finished,
                notices,
                project=project,
                now=now,
                budget=room,
                fence=message.fence,
            )
        )


def news_message(found: list[News], *, limit: int, project: str, now: float) -> str:
    """What finished and what workers published since the session last heard (PostToolUse)."""
    message = Message(limit)
    add_news(message, found, project=project, now=now)
    return message.render()


def final_delivery(
    ctx: HookContext,
    runs: list[tuple[str, RunStatus]],
    limit: int,
    *,
    person: list[str] | None = None,
) -> str:
    """The one final delivery, for the Stop hook (every run done) and the Rewake hook: each run
    that is done, once, with every result (excerpts only for results this session has not seen);
    a run still at work only with its news. '' when there is nothing to tell. ``person`` gets
    what the person has not been shown of these runs (``delivery.take_final``)."""
    from claude_fanout.hooks.delivery import take_final

    pending, all_done = take_final(ctx, runs, person=person)
    if not pending:
        return ""
    message = Message(limit, ending=DONE if all_done else ATTENTION)
    room = message.room(len(pending))
    for path, status, fresh, notices, done in pending:
        if done:
            section = final_section(
                path, status, fresh, notices, project=ctx.project, budget=room, fence=message.fence
            )
        else:
            section = news_section(
                path,
                status,
                fresh,
                notices,
                project=ctx.project,
                now=ctx.now,
                budget=room,
                fence=message.fence,
            )
        message.add(section)
    return message.render()


# -- what the UserPromptSubmit hook says ----------------------------------------------------------


def not_started(problem: object, *, next_step: str = "") -> str:
    text = f"[fanout] Nothing was started: {problem}"
    return f"{text}\n{next_step}" if next_step else text


def started(plan: Plan, run: RunDir, *, project: str, mode: str, origin: str | None) -> str:
    """What the Conductor is told when its request started a run: the workers, where their
    results will be, and how they come back. ``origin`` (a trigger or the planner made the
    plan) adds how each worker was set up: the Conductor did not write those tasks itself."""
    if origin is None:
        lines = [
            f"[fanout] Started run {run.run_id}: {len(plan.tasks)} worker(s) in parallel, at "
            f"most {plan.max_parallel} at once."
        ]
    else:
        lines = [
            f"[fanout] {origin}.",
            f"[fanout] Started run {run.run_id}: {len(plan.tasks)} worker(s), at most "
            f"{plan.max_parallel} at once.",
        ]
    for task in plan.tasks:
        result = os.path.relpath(run.out_dir(task.id) / layout.RESULT, project)
        owns = f" on {', '.join(task.claims)}" if task.claims else ""
        if origin is None:
            lines.append(f"- {task.id} ({task.kind}){owns}: result at {result}")
            continue
        label = str(task.kind)
        if task.kind == "claude":
            label += ", edits files in its own worktree" if task.write else ", read-only"
            extra = [t for t in task.tools if t not in ("Read", "Grep", "Glob")]
            if extra:
                label += f", may use {', '.join(extra)}"
        after = f", after {', '.join(task.deps)}" if task.deps else ""
        lines.append(f"- {task.id} ({label}){owns}{after}: result at {result}")
        if task.kind == "claude":
            # The first paragraph: what the task is, without the note every worker gets.
            first = task.prompt.strip().split(chr(10) * 2, 1)[0]
            lines.append(f"  task: {plain_line(first, 160)}")
    when = (
        "after your next tool calls, and when they are all done even if you have ended your turn "
        "(fanout wakes you with them)"
        if mode == "rewake"
        else "after your next tool calls, and when you try to stop (fanout holds your turn "
        "until the workers are done)"
    )
    lines.append(
        "Files a running worker claims are off-limits to you until it finishes (such tool calls "
        f"are denied). fanout delivers each result to you by itself: {when}. Do not redo the "
        "workers' work; merge their results once they arrive. Status any time: fanout status "
        + run.run_id
    )
    return "\n".join(lines)
