"""Wall time of fanout's status line, run exactly as Claude Code runs it.

    .venv/bin/python benchmarks/bench_statusline.py [--repeat N] [--warmup N] [--events N]
                                                    [--small-events N] [--quick] [--json]

Every call is ``/bin/sh -c "<command>"``, the command being the ``statusLine`` command ``fanout
install`` writes (``settings_statusline.statusline_command``: fanout's alone, or running a person's
own status line with it), with ``CLAUDE_PROJECT_DIR`` set, the project as working directory and a
status line input (Claude Code's session JSON) on stdin. The machinery (scratch projects, a live
run built by hand, the supervisor heartbeat, round-robin timing) is ``bench_hooks``'s.

Measured side by side, in one run:

- baselines: ``true`` (a no-op status line), the ``python -I -S`` floor that reads the JSON, and
  two status lines a person may have of their own: a shell one (``read``, ``echo``) and a Python
  one (reads the JSON, prints a field);
- A, no live run (``.claude/runs/.active/`` empty): fanout's alone (target: at most 1.2x
  ``true``), and wrapping each of the person's lines (at most 1.2x that line alone): the shell
  guard runs theirs, or exits, before any Python starts;
- B, a live run of this session (50 claude tasks, 25 running, a 100,000-line log of which the
  snapshot covers all but the last 10 events; and the same with 1,000 lines: no growth):
  fanout's alone, which draws the segment (target: at most 1.3x the floor); a live run of
  another session (Python starts, finds nothing of this session's: at most 1.3x the floor);
  and fanout's wrapping the person's shell line (info: their line plus fanout's).

Each call's output is checked (the segment for this session's run, the person's line first, or
nothing), so a status line failing open cannot pass for a fast one. ``--json`` prints the rows
as JSON; ``--quick`` is a short run (fewer calls, a 20,000-line log). Always exits 0.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from typing import Any

from bench_hooks import (
    N_RUNNING,
    N_TASKS,
    SESSION_ID,
    SH,
    TARGET_GROWTH,
    Heartbeat,
    Variant,
    build_live_run,
    count_lines,
    fmt_ratio,
    in_process_ms,
    measure,
    new_project,
)

from claude_fanout import install
from claude_fanout.hooks import statusline
from claude_fanout.settings_statusline import statusline_command
from claude_fanout.store import layout
from claude_fanout.store.files import make_private_dir

TARGET_IDLE = 1.2
TARGET_LIVE = 1.3
THEIRS_SHELL = 'read -r line; echo "main ${#line}"'
THEIRS_PYTHON = f"{shlex.quote(sys.executable)} -I -S -c " + shlex.quote(
    "import json, sys; print(json.load(sys.stdin)['model']['display_name'])"
)


def status_input(project: str, session: str = SESSION_ID) -> bytes:
    """What Claude Code hands a status line (its fields as documented), for ``project``."""
    return json.dumps(
        {
            "hook_event_name": "Status",
            "session_id": session,
            "transcript_path": os.path.join(project, ".claude-home", f"{session}.jsonl"),
            "cwd": project,
            "model": {"id": "claude-opus-4-1", "display_name": "Opus"},
            "workspace": {"current_dir": project, "project_dir": project},
            "version": "2.1.332",
            "output_style": {"name": "default"},
            "cost": {
                "total_cost_usd": 0.0123,
                "total_duration_ms": 45000,
                "total_api_duration_ms": 2300,
                "total_lines_added": 156,
                "total_lines_removed": 23,
            },
            "exceeds_200k_tokens": False,
        }
    ).encode()


class Line(Variant):
    """One status line variant; ``expect`` is what its output must look like: "" (nothing),
    "segment" (fanout's alone), "theirs" (the person's alone), "both" (theirs, then fanout's)."""

    def check(self, done: Any) -> str | None:
        if done.returncode != 0 or done.stderr:
            return f"exit {done.returncode}: {done.stderr.decode(errors='replace')[:200]}"
        out = done.stdout.decode(errors="replace")
        ok = {
            "": out == "",
            "segment": out.startswith("fanout ") and "running" in out,
            "theirs": out == f"main {len(self.stdin)}\n",
            "theirs-python": out == "Opus\n",
            "both": out.startswith(f"main {len(self.stdin)}{statusline.BETWEEN}")
            and "fanout " in out,
            "any": True,
        }[self.expect]
        return None if ok else f"expected {self.expect or 'nothing'}, got {out[:200]!r}"


def work_ms(project: str, stdin: bytes) -> float:
    """Median in-process time of drawing the segment (modules already imported)."""
    return in_process_ms(
        project, lambda: statusline.main([], stdin=io.BytesIO(stdin), stdout=io.BytesIO())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=60, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--events", type=int, default=100_000, help="lines of the big log")
    parser.add_argument("--small-events", type=int, default=1_000, help="lines of the small log")
    parser.add_argument("--quick", action="store_true", help="20 calls, a 20,000-line log")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup, args.events = 20, 2, 20_000

    python, entry = sys.executable, install.default_entry()
    ours = statusline_command(python=python, entry=entry)
    with_shell = statusline_command(python=python, entry=entry, theirs=THEIRS_SHELL)
    with_python = statusline_command(python=python, entry=entry, theirs=THEIRS_PYTHON)
    floor = f"{shlex.quote(python)} -I -S -c 'import json, sys; json.load(sys.stdin)'"
    true_key, floor_key = "baseline/true", "baseline/floor (python reads json)"
    shell_key, python_key = "baseline/their shell line", "baseline/their python line"

    with tempfile.TemporaryDirectory(prefix="fanout-bench-statusline-") as root:
        setup = time.perf_counter()
        idle = new_project(root, "idle")
        make_private_dir(layout.runs_root(idle))
        make_private_dir(layout.active_dir(idle))
        big = new_project(root, "live-big")
        small = new_project(root, "live-small")
        big_run = build_live_run(big, args.events)
        small_run = build_live_run(small, args.small_events)
        setup = time.perf_counter() - setup
        heartbeat = Heartbeat([big_run, small_run])
        heartbeat.start()

        idle_in, big_in, small_in = status_input(idle), status_input(big), status_input(small)
        other_in = status_input(big, session="another-session")
        big_label = f"B live, {args.events:,} lines"
        small_label = f"B live, {args.small_events:,} lines"
        variants = [
            Line("baseline", "true", "true", idle, idle_in, expect=""),
            Line("baseline", "floor (python reads json)", floor, big, big_in, expect=""),
            Line("baseline", "their shell line", THEIRS_SHELL, idle, idle_in, expect="theirs"),
            Line(
                "baseline",
                "their python line",
                THEIRS_PYTHON,
                idle,
                idle_in,
                expect="theirs-python",
            ),
            Line(
                "A idle",
                "fanout's alone",
                ours,
                idle,
                idle_in,
                baseline=true_key,
                target=TARGET_IDLE,
                expect="",
            ),
            Line(
                "A idle",
                "fanout's + their shell line",
                with_shell,
                idle,
                idle_in,
                baseline=shell_key,
                target=TARGET_IDLE,
                expect="theirs",
            ),
            Line(
                "A idle",
                "fanout's + their python line",
                with_python,
                idle,
                idle_in,
                baseline=python_key,
                target=TARGET_IDLE,
                expect="theirs-python",
            ),
        ]
        for label, project, stdin in ((big_label, big, big_in), (small_label, small, small_in)):
            variants.append(
                Line(
                    label,
                    "fanout's alone",
                    ours,
                    project,
                    stdin,
                    baseline=floor_key,
                    target=TARGET_LIVE,
                    expect="segment",
                )
            )
        variants += [
            Line(
                big_label,
                "another session's run",
                ours,
                big,
                other_in,
                baseline=floor_key,
                target=TARGET_LIVE,
                expect="",
            ),
            Line(
                big_label,
                "fanout's + their shell line",
                with_shell,
                big,
                big_in,
                baseline=floor_key,
                expect="both",
            ),
        ]
        lines_before = count_lines(layout.join(big_run[1], layout.EVENTS))
        started = time.perf_counter()
        problems = measure(variants, args.repeat, args.warmup)
        elapsed = time.perf_counter() - started
        work = {big_label: work_ms(big, big_in), small_label: work_ms(small, small_in)}
        sample = {variant.key: variant.answer for variant in variants}
        heartbeat.stopped.set()
        heartbeat.join()
        sizes = [count_lines(layout.join(run, layout.EVENTS)) for _, run in (big_run, small_run)]
        appended = sizes[0] - lines_before

    by_key = {variant.key: variant for variant in variants}
    rows = []
    for variant in variants:
        base = by_key.get(variant.baseline or "")
        ratio = variant.median / base.median if base else None
        verdict = ""
        if ratio is not None and variant.target is not None:
            verdict = (
                "PASS" if ratio <= variant.target else f"MISS +{ratio / variant.target - 1:.1%}"
            )
        rows.append(
            {
                "scenario": variant.scenario,
                "line": variant.hook,
                "median_ms": round(variant.median, 3),
                "p90_ms": round(variant.p90, 3),
                "baseline": variant.baseline,
                "ratio": None if ratio is None else round(ratio, 3),
                "target": variant.target,
                "result": verdict,
                "output": sample[variant.key][:120],
            }
        )
    growth = by_key[f"{big_label}/fanout's alone"].median / (
        by_key[f"{small_label}/fanout's alone"].median
    )
    summary = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "log_lines": sizes,
        "rows": rows,
        "growth": {
            "ratio": round(growth, 3),
            "target": TARGET_GROWTH,
            "result": "PASS" if growth <= TARGET_GROWTH else "MISS",
        },
        "work_ms": {label: round(ms, 3) for label, ms in work.items()},
        "problems": problems,
        "lines_appended_while_timing": appended,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return

    print("fanout status line latency benchmark")
    print(f"python   {summary['python']} ({python})")
    print(f"platform {summary['platform']}; {summary['cpus']} CPUs; {SH} -> {os.path.realpath(SH)}")
    print(
        f"calls    {args.repeat} timed per variant after {args.warmup} warm-up rounds, "
        f"round-robin; {len(variants)} variants in {elapsed:.1f}s (store setup {setup:.1f}s)"
    )
    print(
        f"stores   {sizes[0]:,} and {sizes[1]:,} log lines; {N_TASKS} claude tasks, {N_RUNNING} "
        "running; this session's run; supervisor.json heartbeat rewritten every 1 s"
    )
    print()
    print(f"commands (each run as: {SH} -c <command>, stdin = status line input):")
    print(f"  fanout's alone           : {ours}")
    print(f"  fanout's + theirs (shell): {with_shell}")
    print(f"  their python line        : {THEIRS_PYTHON}")
    print()
    header = (
        f"{'scenario':<22} {'line':<30} {'median ms':>9} {'p90 ms':>7} {'ratio':>6} "
        f"{'target':>6}  {'result':<11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['scenario']:<22} {row['line']:<30} {row['median_ms']:>9.2f} "
            f"{row['p90_ms']:>7.2f} {fmt_ratio(row['ratio']):>6} {fmt_ratio(row['target']):>6}  "
            f"{row['result']:<11}"
        )
    print("  ratio: median / its baseline's median (true, the floor, or the person's own line)")
    print()
    print(
        f"growth with log length: {growth:.2f}x ({args.events:,} vs {args.small_events:,} lines,"
        f" target <= {TARGET_GROWTH:.2f}x) {summary['growth']['result']}"
    )
    for label, ms in work.items():
        print(f"work ms (segment drawn in-process, modules imported): {label}: {ms:.2f}")
    print()
    print("outputs (checked on every call):")
    for row in rows:
        if row["output"]:
            print(f"  {row['scenario']}/{row['line']}: {row['output']!r}")
    print(f"  {appended} line(s) appended to the big run's log while timing")
    if problems:
        print(f"  PROBLEMS ({len(problems)}):")
        for problem in problems[:10]:
            print(f"    {problem}")
    else:
        print("  every call exited 0 with the expected output")


if __name__ == "__main__":
    main()
