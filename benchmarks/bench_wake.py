"""Polling the log vs being woken: how soon a waiting reader notices an append, and its idle CPU.

    .venv/bin/python benchmarks/bench_wake.py [--quick] [--json] [--events 40] [--idle-s 10]

Waiter processes follow one ``events.jsonl`` at the same time, each the way a hook waits for a
run (the Stop hook's loop: read the log from its cursor, then wait, bounded, for a change):

- **fanout inotify**: ``store.watch.wait_for_change([log], STOP_RECHECK_S)`` (1 s), which uses
  inotify on Linux;
- **fanout portable**: the same with ``FANOUT_PORTABLE=1``: its 50 ms poll of size and mtime;
- **poll 0.05 s / 0.2 s / 1 s**: ``read_events`` then ``time.sleep(interval)``.

This process appends records with ``EventLog.append`` at random gaps (50-350 ms), each stamped
with ``time.monotonic()`` just before the append; a waiter's reaction time for a record is from
that stamp to the moment its ``read_events`` returned the record. Then the log stays untouched
for ``--idle-s`` seconds and every waiter reports the CPU time it spent waiting (user + system,
its own and its children's: ``time.process_time`` and ``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import brief_machine, last_json, percentiles, ready, reap, run_in_scratch, spawn

VARIANTS: dict[str, dict[str, Any]] = {
    "fanout inotify": {"wait": "fanout", "portable": False},
    "fanout portable": {"wait": "fanout", "portable": True},
    "poll 0.05 s": {"wait": "poll", "interval": 0.05},
    "poll 0.2 s": {"wait": "poll", "interval": 0.2},
    "poll 1 s": {"wait": "poll", "interval": 1.0},
}


def cpu_s() -> float:
    """CPU seconds of this process and of the children it waited for (a helper it ran)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def waiter_main(spec: dict[str, Any]) -> None:
    """Follow the log until the ``end`` record; print reaction times and idle CPU as JSON."""
    from claude_fanout import defaults
    from claude_fanout.store.eventlog import read_events
    from claude_fanout.store.watch import wait_for_change

    path, how = spec["path"], spec["wait"]
    offset = 0
    latencies: list[float] = []
    idle_cpu = idle_from = None
    parent = os.getppid()
    print("ready", flush=True)
    while os.getppid() == parent:  # the benchmark died: stop following
        result = read_events(path, offset)
        now = time.monotonic()
        offset = result.offset
        for event in result.events:
            kind = event.get("type")
            if kind == "probe":
                latencies.append(now - event["mono"])
            elif kind == "idle":
                idle_from, idle_cpu = now, cpu_s()
            elif kind == "end":
                assert idle_cpu is not None and idle_from is not None
                print(
                    json.dumps(
                        {
                            "latencies": latencies,
                            "idle_cpu_s": cpu_s() - idle_cpu,
                            "idle_s": now - idle_from,
                            "linux_paths": os.environ.get("FANOUT_PORTABLE") != "1",
                        }
                    )
                )
                return
        if how == "fanout":
            wait_for_change([path], defaults.STOP_RECHECK_S)
        else:
            time.sleep(spec["interval"])


def anatomy(work: Path, repeat: int = 20) -> dict[str, float]:
    """Medians (ms) of what one inotify wait costs besides waiting: finding libc (ctypes runs
    ``/sbin/ldconfig -p`` for it), and closing an inotify instance that has a watch."""
    import ctypes
    import ctypes.util
    import select

    path = work / "anatomy"
    path.write_bytes(b"")
    find, close = [], []
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    for _ in range(repeat):
        start = time.perf_counter()
        ctypes.util.find_library("c")
        find.append(time.perf_counter() - start)
        fd = libc.inotify_init1(0o4000 | 0o2000000)
        libc.inotify_add_watch(fd, os.fsencode(str(path)), 0x2)
        with open(path, "ab") as handle:
            handle.write(b"x")
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(1000)
        start = time.perf_counter()
        os.close(fd)
        close.append(time.perf_counter() - start)
    return {
        "find_library_ms": statistics.median(find) * 1000,
        "inotify_close_ms": statistics.median(close) * 1000,
    }


def stats(samples: list[float]) -> dict[str, float | None]:
    """Reaction times in ms: p50, p90, max and mean."""
    mean = sum(samples) / len(samples) * 1000 if samples else None
    return {**percentiles(samples, (50, 90), scale=1000), "mean": mean}


def run_benchmark(
    *, events: int, idle_s: float, variants: tuple[str, ...], work: Path, seed: int = 14
) -> dict[str, Any]:
    from claude_fanout.store.eventlog import EventLog

    rng = random.Random(seed)
    path = work / "events.jsonl"
    log = EventLog(path)
    log.append("start")
    procs: dict[str, subprocess.Popen[str]] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in variants:
            spec = {**VARIANTS[name], "path": str(path)}
            env = dict(os.environ)
            env.pop("FANOUT_PORTABLE", None)
            if spec.get("portable"):
                env["FANOUT_PORTABLE"] = "1"
            procs[name] = spawn(__file__, "waiter", spec, env=env)
        for proc in procs.values():
            ready(proc)  # imports done, following the log
        time.sleep(1.2)  # every waiter is inside its wait
        for _ in range(events):
            time.sleep(rng.uniform(0.05, 0.35))
            log.append("probe", mono=time.monotonic())
        time.sleep(1.2)  # the slowest poll catches up before the idle phase starts
        log.append("idle")
        time.sleep(idle_s)
        log.append("end")
        for name, proc in procs.items():
            if (report := last_json(proc, timeout=30)) is not None:
                lat = report.pop("latencies")
                results[name] = {
                    **report,
                    "seen": len(lat),
                    "over_100ms": sum(1 for x in lat if x > 0.1),
                    "latency_ms": stats(lat),
                }
            else:
                results[name] = {"error": f"waiter exited {proc.returncode}"}
    finally:
        reap(procs.values())
    return {
        "benchmark": "wake",
        "machine": brief_machine(),
        "events": events,
        "idle_s": idle_s,
        "results": results,
        "anatomy": anatomy(work),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"Python {m['python']}, {m['cpus']} CPUs, {m['system']}")
    print(f"{report['events']} appends at random 50-350 ms gaps, then {report['idle_s']:g} s idle")
    header = (
        f"{'waiter':<16} {'seen':>5} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'mean ms':>8} "
        f"{'>100 ms':>7} {'idle CPU ms':>11} {'per idle s':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, r in report["results"].items():
        if "error" in r:
            print(f"{name:<16} {r['error']}")
            continue
        lat = r["latency_ms"]
        cpu_ms = r["idle_cpu_s"] * 1000
        print(
            f"{name:<16} {r['seen']:>5} {_ms(lat['p50']):>8} {_ms(lat['p90']):>8} "
            f"{_ms(lat['max']):>8} {_ms(lat['mean']):>8} {r['over_100ms']:>7} "
            f"{cpu_ms:>11.0f} {cpu_ms / r['idle_s']:>10.1f}"
        )
    parts = report["anatomy"]
    print(
        f"inside one inotify wait (medians): ctypes.util.find_library('c') "
        f"{parts['find_library_ms']:.2f} ms, closing the inotify instance "
        f"{parts['inotify_close_ms']:.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiter", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (~10 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--idle-s", type=float, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dir", type=Path, default=None, help="where the log goes (default: tmp)")
    args = parser.parse_args(argv)
    if args.waiter:
        waiter_main(json.loads(args.waiter))
        return 0

    def run(work: Path) -> dict[str, Any]:
        return run_benchmark(
            events=args.events or (15 if args.quick else 40),
            idle_s=args.idle_s if args.idle_s is not None else (2.0 if args.quick else 10.0),
            variants=tuple(args.variants.split(",")),
            work=work,
        )

    return run_in_scratch("bench-wake-", args.dir, run, print_report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
