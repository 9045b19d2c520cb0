"""Regenerate every figure docs/review.md cites, in the review's order (``benchmarks/run_all``).

    benchmarks/run_all [--quick] [--out FILE] [--only ID,...] [--skip ID,...] [--list]

Prints the machine (CPUs, model, memory, kernel, Python) and the Claude Code version first, then
runs each step of ``STEPS`` in turn: a benchmark as ``python benchmarks/<x>.py --json`` (plus
``--quick`` under ``run_all --quick``), whose one JSON object on stdout is its figures (its report
goes to stderr, shown as it runs); a test file through pytest, whose figures are its counts of
passed, failed and skipped tests (and, for the fault-injection soak, the trials summary it prints).
The figures are printed after each step and all of them are written to ``--out`` as one JSON
object. A step whose script is missing is reported as missing and the next one runs; so is one
that crashes, times out or prints no JSON. The exit status is 1 when any step did not give its
figures, else 0 (a benchmark's own misses are figures: they are printed, not failures).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from machine_info import describe, machine  # noqa: E402

Json = dict[str, Any]

# The steps, in the order of the review (the seed's critical questions 1-5, design decisions 1-5,
# implementation concerns 1-5). One row each:
#   question the figures answer | id | command (from the repository root; a leading
#   benchmarks/*.py or -m runs under this interpreter) | how its figures are read (json: the
#   last stdout line; pytest: the outcome counts; soak: those and the trials summary) |
#   added under --quick | added otherwise | timeout in seconds.
STEPS: list[tuple[str, str, str, str, str, str, int]] = [
    ("critical 1: append-only vs explicit locking", "append",
     "benchmarks/bench_append.py --json", "json", "--quick", "", 1800),
    ("critical 1: append-only vs explicit locking", "store",
     "benchmarks/bench_store.py --json", "json", "--quick", "", 600),
    ("critical 2: hook overhead", "hooks",
     "benchmarks/bench_hooks.py --json", "json", "--quick", "", 1800),
    ("critical 2: hook overhead inside the real CLI (and HTTP hooks)", "cli-hooks",
     "benchmarks/bench_cli_hooks.py --json", "json", "--quick", "", 1800),
    ("critical 2: the status line Claude Code runs every few seconds", "statusline",
     "benchmarks/bench_statusline.py --json", "json", "--quick", "", 1800),
    ("critical 3: deadlock and loop bounds of a blocking Stop", "stop-bounds",
     "-m pytest tests/unit/test_hooks.py tests/e2e/test_headless_waves.py -q -p no:cacheprovider",
     "pytest", "", "", 900),
    ("critical 4: orphans when the Conductor crashes (fault-injection soak)", "soak",
     "-m pytest tests/integration/test_faults.py -q -p no:cacheprovider -rs", "soak",
     "", "--soak", 7200),
    ("design 1: start_new_session alone vs a full detach", "detach",
     "benchmarks/bench_detach.py --json", "json", "--quick", "", 600),
    ("design 2: the log as a bus vs SQLite WAL vs a Unix socket", "bus",
     "benchmarks/bench_bus.py --json", "json", "--quick", "", 1800),
    ("design 3: workers invoking the Conductor's hooks", "worker-hook",
     "-m pytest tests/e2e/test_worker_runs_hook.py -q -p no:cacheprovider", "pytest",
     "", "", 600),
    ("design 5: polling the log vs being woken", "wake",
     "benchmarks/bench_wake.py --json", "json", "--quick", "", 1800),
    ("concern 3: the maximum practical number of workers", "scale",
     "benchmarks/bench_scale.py --json", "json", "--quick", "", 3600),
    ("concern 3: what the Ray backend changes (local vs a local Ray cluster)", "ray",
     "benchmarks/bench_ray.py --json --store-mib 1024", "json", "--quick", "", 3600),
    ("concern 5: worker pooling vs spawn per task", "workers",
     "benchmarks/bench_workers.py --json", "json", "--quick", "", 1800),
    ("appendix: fanout watch on 1,000 tasks and a 100,000-line log", "watch",
     "benchmarks/bench_watch.py --json", "json", "--quick", "", 1800),
    ("appendix: fanout report on 1,000 tasks and a 100,000-line log", "report",
     "benchmarks/bench_report.py --json", "json", "--quick", "", 1800),
]  # fmt: skip


@dataclass(frozen=True)
class Step:
    question: str
    id: str
    command: str
    reads: str
    quick_args: str
    full_args: str
    timeout_s: int

    def argv(self, *, quick: bool) -> list[str]:
        words = shlex.split(self.command) + shlex.split(
            self.quick_args if quick else self.full_args
        )
        return [sys.executable, *words] if words[0].endswith(".py") or words[0] == "-m" else words

    def script(self) -> Path | None:
        """The file the step runs (a benchmark script, or a test file), if it names one."""
        for word in shlex.split(self.command):
            if word.endswith(".py"):
                return ROOT / word
        return None


def last_json_object(stdout: str) -> Any:
    """The JSON object a benchmark printed last: its last line, or its whole output when it
    printed the object over several lines (``indent``); None when there is none."""
    text = stdout.strip()
    lines = text.splitlines()
    for candidate in (
        lines[-1] if lines else "",
        text[text.find("\n{") + 1 :] if "\n{" in text else text,
    ):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None


def steps() -> list[Step]:
    return [Step(*row) for row in STEPS]


# pytest's last line: "3 passed, 1 skipped, 2 warnings in 4.20s"
_OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)\b")
# test_faults' trials summary (tests/integration/conftest.py): "name: 20 trials, 0 failures, 3.1s"
_TRIALS = re.compile(r"^(\S[^:]*): (\d+) trials, (\d+) failures, ([\d.]+)s(?: \((.*)\))?$")


def read_pytest(stdout: str) -> Json:
    lines = [line for line in stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    counts = {word: int(n) for n, word in _OUTCOME.findall(last)}
    figures: Json = {
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "errors": counts.get("error", 0) + counts.get("errors", 0),
        "summary": last.strip("= "),
    }
    skips = [line.strip() for line in lines if line.startswith("SKIPPED")]
    if skips:
        figures["skip_reasons"] = skips
    return figures


def read_soak(stdout: str) -> Json:
    figures = read_pytest(stdout)
    mode = re.search(r"fault injection \((\w+)\)", stdout)
    figures["mode"] = mode.group(1) if mode else None
    figures["scenarios"] = [
        {
            "scenario": m.group(1),
            "trials": int(m.group(2)),
            "failures": int(m.group(3)),
            "seconds": float(m.group(4)),
            "notes": m.group(5) or "",
        }
        for line in stdout.splitlines()
        if (m := _TRIALS.match(line.strip()))
    ]
    return figures


def run_step(step: Step, *, quick: bool) -> Json:
    """Run one step; its record: status (ok, miss, missing, failed, timeout), figures, time."""
    argv = step.argv(quick=quick)
    record: Json = {
        "question": step.question,
        "id": step.id,
        "command": shlex.join(["python" if a == sys.executable else a for a in argv]),
    }
    script = step.script()
    if script is not None and not script.is_file():
        shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
        return {**record, "status": "missing", "error": f"{shown} not found"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=step.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {**record, "status": "timeout", "error": f"no result in {step.timeout_s} s"}
    record["seconds"] = round(time.monotonic() - started, 1)
    record["exit_code"] = done.returncode
    if step.reads == "json":
        figures = last_json_object(done.stdout)
        if not isinstance(figures, dict):
            tail = done.stdout.strip()[-300:]
            return {**record, "status": "failed", "error": f"no JSON object on stdout: {tail!r}"}
        record["figures"] = figures
        record["status"] = "ok" if done.returncode == 0 and figures.get("ok", True) else "miss"
        return record
    figures = read_soak(done.stdout) if step.reads == "soak" else read_pytest(done.stdout)
    record["figures"] = figures
    if figures["passed"] + figures["failed"] + figures["errors"] == 0:
        record["status"] = "failed"
        record["error"] = f"pytest ran nothing: {figures['summary']!r}"
    else:
        record["status"] = "ok" if done.returncode == 0 else "miss"
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="each step's small sizes")
    parser.add_argument("--out", default="figures.json", help="where to write every figure")
    parser.add_argument("--only", default="", help="comma-separated step ids to run")
    parser.add_argument("--skip", default="", help="comma-separated step ids not to run")
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    args = parser.parse_args()
    chosen = steps()
    known = {step.id for step in chosen}
    for option in ("only", "skip"):
        unknown = {x for x in getattr(args, option).split(",") if x} - known
        if unknown:
            parser.error(f"--{option}: no step {', '.join(sorted(unknown))}; known: {known}")
    if args.only:
        chosen = [s for s in chosen if s.id in args.only.split(",")]
    chosen = [s for s in chosen if s.id not in args.skip.split(",")]
    if args.list:
        for step in chosen:
            print(f"{step.id:<12} {step.question}\n{'':<12} {shlex.join(step.argv(quick=False))}")
        return 0

    info = machine()
    print(f"machine: {describe(info)}", flush=True)
    results: Json = {"machine": info, "quick": args.quick, "steps": []}
    for step in chosen:
        print(f"\n== {step.question} [{step.id}]", flush=True)
        record = run_step(step, quick=args.quick)
        results["steps"].append(record)
        print(f"$ {record['command']}")
        if "figures" in record:
            print(json.dumps(record["figures"], indent=1))
        print(f"-> {record['status']}{': ' + record['error'] if 'error' in record else ''}")
        print(f"   ({record.get('seconds', 0)} s)", flush=True)
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("\nsummary:")
    for record in results["steps"]:
        print(f"  {record['id']:<12} {record['status']:<8} {record.get('seconds', '-')!s:>7} s")
    print(f"figures written to {out.resolve()}")
    bad = [r["id"] for r in results["steps"] if r["status"] not in ("ok", "miss")]
    if bad:
        print(f"no figures from: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
