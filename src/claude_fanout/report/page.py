"""``fanout report``'s page: one self-contained HTML file (inline CSS and SVG, nothing fetched).

Everything a worker or the log wrote is untrusted: every value goes through :func:`esc`
(``html.escape``, quotes included, and every attribute is quoted), and the page's
Content-Security-Policy forbids scripts and every fetch, so markup in a result shows as text.
"""

from __future__ import annotations

import html
import os
import stat
import time
from typing import TYPE_CHECKING

from claude_fanout import defaults, text, usage
from claude_fanout.cli.common import conflict_lines
from claude_fanout.errors import StoreError
from claude_fanout.states import TaskState
from claude_fanout.store import layout
from claude_fanout.store.files import open_private

if TYPE_CHECKING:
    from claude_fanout.plan import Plan
    from claude_fanout.report.timeline import Attempt, TaskLine, Timeline
    from claude_fanout.store.rundir import RunDir
    from claude_fanout.store.status import TaskStatus

# No scripts, no fetches of any kind; only the page's own <style> and data: images.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
_LABEL_W = 150
_CHART_W = 900
_ROW_H = 20
_AXIS_H = 26
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1b1b;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.meta{color:#555}.warn{color:#8a4b00}.err{color:#b00020}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.crit td:first-child{font-weight:bold}
.state{font-weight:600}
.s-succeeded{color:#2e7d32}.s-failed,.s-timed_out,.s-lost{color:#c62828}
.s-over_budget{color:#e65100}.s-running{color:#0277bd}
.s-skipped,.s-cancelled,.s-pending,.s-waiting_retry{color:#757575}
svg text{font:12px system-ui,sans-serif;fill:#333}svg .axis{fill:#777}
svg line{stroke:#e5e5e5}
rect.a{stroke:#fff;stroke-width:.5}rect.crit{stroke:#000;stroke-width:1.5}
rect.f-succeeded{fill:#43a047}rect.f-failed,rect.f-timed_out{fill:#e53935}
rect.f-lost{fill:#8e24aa}rect.f-over_budget{fill:#fb8c00}rect.f-running{fill:#039be5}
rect.f-cancelled,rect.f-skipped{fill:#9e9e9e}
rect.dep{fill:#cfd8dc}rect.queue{fill:#eceff1}rect.retry{fill:#ffe082}
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:-1px}
pre{background:#f6f8fa;padding:10px;white-space:pre-wrap;overflow-wrap:anywhere;max-width:1100px}
section.result h3{font-size:14px;margin:18px 0 4px}
"""


def esc(value: object) -> str:
    """``value`` as HTML text or a quoted attribute value: nothing in it is markup."""
    return html.escape(str(value), quote=True)


def render(run: RunDir, plan: Plan | None, timeline: Timeline) -> str:
    """The whole page."""
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>fanout run {esc(run.run_id)}</title><style>{_STYLE}</style></head><body>",
    ]
    parts += _head(run, timeline)
    parts += _merge(run, timeline)
    parts += _timeline(timeline)
    parts += _table(plan, timeline)
    parts += _results(run, timeline)
    parts.append(f'<p class="meta">Written {esc(_when(time.time()))} by fanout report.</p>')
    parts.append("</body></html>\n")
    return "".join(parts)


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _head(run: RunDir, timeline: Timeline) -> list[str]:
    status = timeline.status
    state = str(status.state)
    took = text.duration(timeline.end - timeline.begin)
    out = [
        f'<h1>fanout run {esc(run.run_id)}: <span class="state s-{esc(state)}" id="run-state">'
        f"{esc(state)}</span></h1>",
        f'<p class="meta">started {esc(_when(timeline.begin))}, '
        f"{'took' if status.state.terminal else 'running for'} {esc(took)}",
    ]
    if status.reason:
        out.append(f" ({esc(status.reason)})")
    counts = ", ".join(f"{n} {state}" for state, n in sorted(status.counts().items()))
    out.append(f"<br>{len(status.tasks)} task(s): {esc(counts)}")
    spent = status.spent()
    workers = sum(1 for task in status.tasks.values() if task.spent())
    total = usage.total(spent, workers)
    if total and spent is not None:
        out.append(f'<br><span id="run-cost">{esc(total)}, {esc(usage.turns(spent))}</span>')
    out.append(f"<br>run directory {esc(run.path)}</p>")
    if timeline.bad_lines:
        out.append(
            f'<p class="warn">{timeline.bad_lines} line(s) of the log did not parse and were '
            "skipped: this page may miss what they said.</p>"
        )
    for error in status.errors[-5:]:
        out.append(f'<p class="err">error: {esc(error)}</p>')
    return out


def _merge(run: RunDir, timeline: Timeline) -> list[str]:
    from claude_fanout.cli.render import merge_summary

    lines = merge_summary(run.run_id, timeline.status)
    if not lines:
        return []
    out = ['<h2>Merge-back</h2><div id="merge">']
    out += [f"<p>{esc(line)}</p>" for line in lines]
    return [*out, "</div>"]


def _x(timeline: Timeline, ts: float) -> float:
    span = max(timeline.end - timeline.begin, 1e-6)
    return _LABEL_W + max(0.0, min(1.0, (ts - timeline.begin) / span)) * _CHART_W


def _bar(timeline: Timeline, start: float, end: float, y: int, cls: str, title: str) -> str:
    x0, x1 = _x(timeline, start), _x(timeline, end)
    return (
        f'<rect class="{cls}" x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 2.0):.1f}" '
        f'height="{_ROW_H - 6}"><title>{esc(title)}</title></rect>'
    )


def _timeline(timeline: Timeline) -> list[str]:
    rows = list(timeline.tasks.values())
    height = _AXIS_H + _ROW_H * len(rows) + 6
    width = _LABEL_W + _CHART_W + 60
    out = ["<h2>Timeline</h2>"]
    if timeline.critical:
        path = " \u2192 ".join(timeline.critical)
        out.append(
            f'<p id="critical">Critical path (the chain of dependencies that took longest): '
            f"<b>{esc(path)}</b>, {esc(text.duration(timeline.critical_s))}</p>"
        )
    out.append(
        '<p class="key">'
        '<span style="background:#cfd8dc"></span>waiting on dependencies'
        '<span style="background:#eceff1"></span>ready, waiting for a slot'
        '<span style="background:#ffe082"></span>waiting to retry'
        '<span style="background:#43a047"></span>succeeded'
        '<span style="background:#e53935"></span>failed'
        '<span style="background:#039be5"></span>running</p>'
    )
    out.append(
        f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    )
    span = timeline.end - timeline.begin
    for i in range(6):
        ts = timeline.begin + span * i / 5
        x = _x(timeline, ts)
        out.append(
            f'<line x1="{x:.1f}" y1="{_AXIS_H - 6}" x2="{x:.1f}" y2="{height}"></line>'
            f'<text class="axis" x="{x:.1f}" y="14" text-anchor="middle">'
            f"{esc(text.duration(span * i / 5) or '0s')}</text>"
        )
    critical = set(timeline.critical)
    for index, line in enumerate(rows):
        out += _row(timeline, line, _AXIS_H + index * _ROW_H, line.id in critical)
    out.append("</svg>")
    return out


def _row(timeline: Timeline, line: TaskLine, y: int, critical: bool) -> list[str]:
    weight = ' font-weight="bold"' if critical else ""
    out = [
        f'<g class="row" data-task="{esc(line.id)}">'
        f'<text x="4" y="{y + 14}"{weight}>{esc(text.cut(line.id, 20))}</text>'
    ]
    first = line.first_start
    waited_from = timeline.begin
    if first is None and line.skipped is not None and line.deps:  # never ran: waited, then not
        out.append(_bar(timeline, waited_from, line.skipped[0], y, "dep", _waits(line)))
    elif first is None and line.skipped is None and not timeline.status.state.terminal:
        if line.deps and line.ready is None:  # still waiting on its dependencies
            out.append(_bar(timeline, waited_from, timeline.now, y, "dep", _waits(line)))
        else:
            out.append(
                _bar(timeline, waited_from, timeline.now, y, "queue", f"{line.id} waits for a slot")
            )
    if line.ready is not None and first is not None:
        out.append(_bar(timeline, waited_from, line.ready, y, "dep", _waits(line)))
        waited_from = line.ready
    if first is not None and first - waited_from > 0.05 * max(timeline.end - timeline.begin, 0):
        out.append(_bar(timeline, waited_from, first, y, "queue", f"{line.id} waits for a slot"))
    for began, until in line.retry_waits:
        out.append(_bar(timeline, began, until, y, "retry", f"{line.id} waits to retry"))
    for attempt in line.attempts:
        end = timeline.now if attempt.end is None else attempt.end
        cls = f"a f-{esc(attempt.state)}" + (" crit" if critical else "")
        out.append(_bar(timeline, attempt.start, end, y, cls, _attempt_title(line, attempt)))
    if line.skipped is not None:
        ts, outcome, reason = line.skipped
        label = f"{outcome}: {reason}" if reason else outcome
        x = _x(timeline, ts)
        # Past the middle the words go left of the mark, so the page's edge never cuts them.
        where = (
            f'x="{x - 4:.1f}" text-anchor="end"'
            if x > _LABEL_W + _CHART_W / 2
            else f'x="{x + 4:.1f}"'
        )
        out.append(
            f'<text {where} y="{y + 14}" class="s-{esc(outcome)}">{esc(text.cut(label, 80))}</text>'
        )
    out.append("</g>")
    return out


def _waits(line: TaskLine) -> str:
    return f"{line.id} waits on {', '.join(line.deps)}"


def _attempt_title(line: TaskLine, attempt: Attempt) -> str:
    if attempt.not_started:
        return f"{line.id} attempt {attempt.number}: {attempt.reason or attempt.state}"
    head = f"{line.id} attempt {attempt.number}: {attempt.state}"
    took = attempt.duration_s
    if took is not None:
        head += f" after {text.duration(took)}"
    said = f"exit code {attempt.exit_code}"
    if attempt.exit_code is not None and attempt.reason != said:
        head += f" ({said})"
    return head + (f": {attempt.reason}" if attempt.reason else "")


def _table(plan: Plan | None, timeline: Timeline) -> list[str]:
    status = timeline.status
    merged = _merge_outcomes(status.merge)
    out = [
        '<h2>Workers</h2><table id="workers"><thead><tr><th>task</th><th>kind</th>'
        '<th>state</th><th class="n">attempts</th><th class="n">duration</th>'
        '<th class="n">turns</th><th class="n">tokens in</th><th class="n">tokens out</th>'
        '<th class="n">cost</th><th>merge</th><th>detail</th></tr></thead><tbody>'
    ]
    critical = set(timeline.critical)
    for task_id, line in timeline.tasks.items():
        task = status.tasks[task_id]
        spec = plan.task(task_id) if plan is not None and task_id in plan.ids else None
        state = str(task.state)
        row_class = "task crit" if task_id in critical else "task"
        took = text.duration(line.run_time_s(timeline.now)) if line.attempts else ""
        out.append(
            f'<tr class="{row_class}" data-task="{esc(task_id)}" data-state="{esc(state)}">'
            f"<td>{esc(task_id)}</td><td>{esc(spec.kind if spec else '')}</td>"
            f'<td class="state s-{esc(state)}">{esc(state)}</td>'
            f'<td class="n">{task.attempt or ""}</td>'
            f'<td class="n">{esc(took)}</td>'
            f"{_usage_cells(task)}<td>{esc(merged.get(task_id, ''))}</td>"
            f"<td>{esc(_detail(task))}</td></tr>"
        )
    out.append("</tbody>")
    spent = status.spent()
    if spent:
        out.append(
            '<tfoot><tr><td colspan="5">total</td>'
            f'<td class="n">{int(spent.get("turns", 0))}</td>'
            f'<td class="n">{esc(usage.count(usage.tokens_in(spent)))}</td>'
            f'<td class="n">{esc(usage.count(spent.get("output_tokens", 0)))}</td>'
            f'<td class="n">{esc(usage.money(spent.get("cost_usd", 0.0)))}</td>'
            "<td></td><td></td></tr></tfoot>"
        )
    return [*out, "</table>"]


def _usage_cells(task: TaskStatus) -> str:
    spent = task.spent()
    if not spent:
        return '<td class="n"></td>' * 4
    return (
        f'<td class="n">{int(spent.get("turns", 0))}</td>'
        f'<td class="n">{esc(usage.count(usage.tokens_in(spent)))}</td>'
        f'<td class="n">{esc(usage.count(spent.get("output_tokens", 0)))}</td>'
        f'<td class="n">{esc(usage.money(spent.get("cost_usd", 0.0)))}</td>'
    )


def _detail(task: TaskStatus) -> str:
    if task.state.terminal:
        return text.one_line(task.reason or "", defaults.REASON_CHARS)
    return text.one_line(task.doing or task.reason or "", defaults.REASON_CHARS)


def _merge_outcomes(merge: dict[str, object] | None) -> dict[str, str]:
    """Each writer's merge-back outcome by task, as the last merge record said it."""
    out: dict[str, str] = {}
    if not merge:
        return out
    labels = {
        "merged": "merged",
        "already_merged": "already merged",
        "undone": "undone since",
        "unchanged": "changed nothing",
        "skipped": "not merged (did not succeed)",
    }
    for key, label in labels.items():
        names = merge.get(key)
        for name in names if isinstance(names, list) else []:
            out[str(name)] = label
    for task, line in conflict_lines(merge):
        out[task] = f"NOT merged: {line}"
    return out


def _results(run: RunDir, timeline: Timeline) -> list[str]:
    out = ["<h2>Results</h2>"]
    shown = 0
    for task_id in timeline.tasks:
        task = timeline.status.tasks[task_id]
        excerpt = read_excerpt(
            run, task_id, want_log=task.state.terminal and task.state is not TaskState.SUCCEEDED
        )
        if excerpt is None:
            continue
        label, body = excerpt
        shown += 1
        out.append(
            f'<section class="result" id="result-{esc(task_id)}" data-task="{esc(task_id)}">'
            f"<h3>{esc(task_id)}: {esc(label)}</h3><pre>{esc(body)}</pre></section>"
        )
    if not shown:
        out.append('<p class="meta">No worker wrote a result.</p>')
    return out


def read_excerpt(run: RunDir, task_id: str, *, want_log: bool) -> tuple[str, str] | None:
    """A worker's ``out/result.md`` from its start, or (``want_log``: a task that did not
    succeed and wrote no result) the end of its log; at most ``REPORT_EXCERPT_BYTES`` of it,
    never through a symlink. None when there is neither."""
    limit = defaults.REPORT_EXCERPT_BYTES
    found = _read_bounded(str(run.out_dir(task_id) / layout.RESULT), limit, tail=False)
    if found is not None:
        data, size = found
        return _labelled(layout.RESULT, data, size, tail=False), _decode(data)
    if not want_log:
        return None
    found = _read_bounded(str(run.log_path(task_id)), limit, tail=True)
    if found is None or not found[0].strip():
        return None
    data, size = found
    return _labelled("log", data, size, tail=True), _decode(data)


def _labelled(name: str, data: bytes, size: int, *, tail: bool) -> str:
    if len(data) >= size:
        return name
    return f"{name} ({'last' if tail else 'first'} {len(data):,} of {size:,} bytes)"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _read_bounded(path: str, limit: int, *, tail: bool) -> tuple[bytes, int] | None:
    try:
        # Non-blocking: a worker's FIFO named result.md must not hang the report.
        fd = open_private(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, StoreError):  # missing, or a symlink (never followed)
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        start = max(0, size - limit) if tail else 0
        return os.pread(fd, limit, start), size
    except OSError:
        return None
    finally:
        os.close(fd)
