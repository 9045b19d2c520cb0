"""Append-only vs explicit locking: concurrent writers, killed writers, a full disk.

    .venv/bin/python benchmarks/bench_append.py [--quick] [--json] [--writers 8]
        [--sizes 40,4096,65536,524288] [--kill-s 3] [--dir DIR]

Writer processes append JSON records (one line each, a pad of one character per writer) to one
file, each through one of four paths:

- ``fanout``: ``store.eventlog.EventLog.append_record``, what ``fanout publish`` and the
  supervisor use: open ``O_APPEND``, exclusive ``flock``, close a dead writer's partial line,
  one ``os.write``, close;
- ``o_append``: open ``O_APPEND``, one ``os.write``, close; no lock;
- ``flock``: the same under an exclusive ``flock`` (no repair of a partial line);
- ``buffered``: ``with open(path, "a") as f: json.dump(record, f); f.write("\\n")``, the naive
  Python way: ``json.dump`` hands the text layer many small pieces and the buffer is flushed
  to the file in 8 KiB writes, so one record can take several ``write`` calls.

Three scenarios per path: **throughput** (every writer writes a fixed number of records of each
size, nobody dies), **kill** (writers cycle through the sizes; every 0-20 ms the writer of a
random slot is SIGKILLed, wherever it is in its append, and a forked copy takes its place),
**disk full** (every writer has
``RLIMIT_FSIZE`` set by ``resource.setrlimit`` and ``SIGXFSZ`` ignored, so a write past the limit
is cut short and the next fails with ``EFBIG``; the same as ENOSPC on a full disk for the writer,
but needs no mount). A writer acknowledges a record (a counter in its own file) only after its
append returned. The file is then checked line by line:

- **records**: lines that are one whole record of one writer;
- **torn**: lines that are not (unparseable, cut, or two writers' bytes on one line), plus a
  partial last line; **spliced**: torn lines that still parse as a record with a type, which any
  reader (fanout's too) takes for a good one;
- **lost**: acknowledged records not found whole;
- **duplicated**: records found more than once.

Last, what fanout's reader does with torn lines: ``read_events`` and the state fold
(``load_status``) on a run whose log has a killed writer's partial last line, before and after
the next append.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchkit import brief_machine, last_json, ready, run_in_scratch, spawn

VARIANTS = ("fanout", "o_append", "flock", "buffered")
SIZES = (40, 4096, 65_536, 524_288)
PADS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# Bytes of a record besides its pad: {"w":..,"seq":..,"n":..,"type":"probe","pad":""} and "\n".
OVERHEAD = 60
FSIZE_LIMIT = 1 << 20


def pad_length(size: int) -> int:
    return max(1, size - OVERHEAD)


def make_record(writer: int, seq: int, size: int) -> dict[str, Any]:
    return {
        "w": writer,
        "seq": seq,
        "n": size,
        "type": "probe",
        "pad": PADS[writer % len(PADS)] * pad_length(size),
    }


# -- the writer process -------------------------------------------------------------------------


def append(variant: str, path: str, record: dict[str, Any]) -> None:
    """Append one record the way ``variant`` does; raises when the append failed."""
    if variant == "fanout":
        from claude_fanout.store.eventlog import EventLog

        EventLog(path).append_record(record)
        return
    if variant == "buffered":
        with open(path, "a", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.write("\n")
        return
    import fcntl

    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if variant == "flock":
            fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write: {written} of {len(data)} bytes")
    finally:
        os.close(fd)


def write_records(spec: dict[str, Any], ack: int) -> dict[str, Any]:
    """Append ``spec["count"]`` records (0: until killed); acknowledge each that returned."""
    writer, sizes, count = spec["writer"], spec["sizes"], spec["count"]
    records = [make_record(writer, seq, sizes[seq % len(sizes)]) for seq in range(len(sizes))]
    errors: Counter[str] = Counter()
    acked = 0
    seq = 0
    t0 = time.monotonic()
    while count == 0 or seq < count:
        record = records[seq % len(sizes)]
        record["seq"] = seq
        try:
            append(spec["variant"], spec["path"], record)
        except OSError as exc:
            errors[errno.errorcode.get(exc.errno or 0, "short write")] += 1
        else:
            acked += 1
            os.pwrite(ack, b"\x01", seq)  # one byte per record: acknowledged
        seq += 1
    return {"t0": t0, "t1": time.monotonic(), "acked": acked, "errors": dict(errors)}


def writer_main(spec: dict[str, Any]) -> None:
    """One writer: get ready, wait for the start, write, report."""
    if spec.get("fsize"):
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize"], spec["fsize"]))
    ack = os.open(spec["ack"], os.O_WRONLY | os.O_CREAT, 0o600)
    if spec["variant"] == "fanout":
        import claude_fanout.store.eventlog  # noqa: F401 - imported before the start, not timed
    print("ready", flush=True)
    if spec.get("go") is not None:
        os.read(spec["go"], 1)  # EOF when the benchmark closes its end: everyone starts at once
    print(json.dumps(write_records(spec, ack)))


def nursery_main(spec: dict[str, Any]) -> None:
    """One writer slot of the kill scenario: keeps a forked writer appending until it is told to
    kill it (SIGKILL, at whatever point of its append), then forks the next. A fork costs about
    a millisecond where a new interpreter costs ~50-200 ms here, so kills can come every few ms.
    Commands on stdin: ``kill`` and ``stop``; answers the id of the writer now running."""
    if spec["variant"] == "fanout":
        import claude_fanout.store.eventlog  # noqa: F401 - the children inherit it

    def spawn(writer: int) -> int:
        ack = os.open(f"{spec['ack']}-{writer}", os.O_WRONLY | os.O_CREAT, 0o600)
        pid = os.fork()
        if pid == 0:
            try:
                write_records({**spec, "writer": writer, "count": 0}, ack)
            finally:
                os._exit(0)
        os.close(ack)
        return pid

    writer = spec["first"]
    child = spawn(writer)
    print(writer, flush=True)
    try:
        for command in sys.stdin:
            if command.strip() == "stop":
                break
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            writer += 1
            child = spawn(writer)
            print(writer, flush=True)
    finally:  # also when the benchmark is gone (end of input): no writer outlives its slot
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# -- the benchmark ------------------------------------------------------------------------------


@dataclass
class Counts:
    """What one file holds against what its writers acknowledged."""

    variant: str
    scenario: str
    size: str
    writers: int
    attempted: int = 0
    acked: int = 0
    records: int = 0
    torn: int = 0
    torn_tail: bool = False
    spliced: int = 0
    lost: int = 0
    duplicated: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    kills_writing: int = 0
    seconds: float = 0.0
    bytes: int = 0
    reader_events: int = 0
    reader_bad: int = 0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / (1 << 20) if self.seconds > 0 else 0.0


class Writer:
    """A writer process and what it acknowledged."""

    def __init__(self, spec: dict[str, Any], go_fd: int | None) -> None:
        self.spec = spec
        pass_fds = (go_fd,) if go_fd is not None else ()
        self.proc = spawn(__file__, "writer", {**spec, "go": go_fd}, pass_fds=pass_fds)
        self.report: dict[str, Any] = {}

    def ready(self) -> None:
        """Wait until the writer is past its imports (or dead)."""
        ready(self.proc)

    def acked(self) -> set[int]:
        """The sequence numbers whose append returned (the writer may be dead by now)."""
        try:
            raw = Path(self.spec["ack"]).read_bytes()
        except FileNotFoundError:
            return set()
        return {seq for seq, byte in enumerate(raw) if byte == 1}

    def finish(self, timeout: float = 120) -> None:
        self.report = last_json(self.proc, timeout) or {}


def analyse(
    path: Path, acked: dict[int, set[int]], sizes: tuple[int, ...], counts: Counts
) -> Counts:
    """Check the file line by line against what each writer acknowledged."""
    from claude_fanout.store.eventlog import read_events

    data = path.read_bytes() if path.exists() else b""
    counts.bytes = len(data)
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless a record was cut short
    found: Counter[tuple[int, int]] = Counter()
    for line in lines:
        if not line:
            continue
        record = None
        try:
            record = json.loads(line)
            writer, seq, size, pad = record["w"], record["seq"], record["n"], record["pad"]
            whole = (
                size in sizes
                and seq >= 0
                and pad == PADS[writer % len(PADS)] * pad_length(size)
                and size == sizes[seq % len(sizes)]
            )
        except (ValueError, KeyError, TypeError, IndexError):
            whole = False
        if whole:
            found[(writer, seq)] += 1
        else:
            counts.torn += 1
            # Torn, yet a record to any reader: one writer's head with another's pad, say.
            counts.spliced += isinstance(record, dict) and isinstance(record.get("type"), str)
    if tail:
        counts.torn += 1
        counts.torn_tail = True
    counts.records = len(found)
    counts.duplicated = sum(n - 1 for n in found.values())
    counts.acked = sum(len(seqs) for seqs in acked.values())
    counts.lost = sum(
        1 for writer, seqs in acked.items() for seq in seqs if (writer, seq) not in found
    )
    result = read_events(path)
    counts.reader_events, counts.reader_bad = len(result.events), len(result.bad)
    return counts


def throughput(
    variant: str, size: int, writers: int, count: int, work: Path, fsize: int = 0
) -> Counts:
    """``writers`` processes append ``count`` records of ``size`` bytes each, all at once."""
    path = work / f"{variant}-{size}-{fsize}.jsonl"
    read_fd, write_fd = os.pipe()
    procs = []
    try:
        for w in range(writers):
            spec = {
                "variant": variant,
                "path": str(path),
                "writer": w,
                "sizes": [size],
                "count": count,
                "ack": str(work / f"ack-{variant}-{size}-{fsize}-{w}"),
                "fsize": fsize,
            }
            procs.append(Writer(spec, read_fd))
        os.close(read_fd)
        read_fd = -1
        for proc in procs:
            proc.ready()
    finally:
        if read_fd >= 0:
            os.close(read_fd)
        os.close(write_fd)
        for proc in procs:
            proc.finish()
    counts = Counts(
        variant, "disk full" if fsize else "throughput", label(size), writers, writers * count
    )
    reports = [p.report for p in procs if p.report]
    if reports:
        counts.seconds = max(r["t1"] for r in reports) - min(r["t0"] for r in reports)
    for report in reports:
        for name, n in report["errors"].items():
            counts.errors[name] = counts.errors.get(name, 0) + n
    return analyse(path, {w: p.acked() for w, p in enumerate(procs)}, (size,), counts)


def kill_run(
    variant: str, writers: int, seconds: float, sizes: tuple[int, ...], work: Path, rng: Any
) -> Counts:
    """``writers`` slots of forked writers cycling through ``sizes``; every 0-20 ms the writer of
    a random slot is SIGKILLed and replaced, for ``seconds``."""
    path = work / f"{variant}-kill.jsonl"
    slots: list[subprocess.Popen[str]] = []
    ids: list[int] = []
    kills = 0
    try:
        for slot in range(writers):
            spec = {
                "variant": variant,
                "path": str(path),
                "sizes": list(sizes),
                "ack": str(work / f"ack-{variant}-kill"),
                "first": slot * 1_000_000,
            }
            slots.append(spawn(__file__, "nursery", spec, stdin=subprocess.PIPE))
        for proc in slots:
            ids.append(int(ready(proc)))  # its first writer's id
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.0, 0.02))
            proc = slots[rng.randrange(len(slots))]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("kill\n")
            proc.stdin.flush()
            ids.append(int(proc.stdout.readline()))
            kills += 1
    finally:
        for proc in slots:
            with contextlib.suppress(BrokenPipeError):
                proc.communicate("stop\n", timeout=30)
    kills += len(slots)  # the last writer of each slot is killed by "stop" too
    acked = {}
    for writer in ids:
        ack_path = work / f"ack-{variant}-kill-{writer}"
        raw = ack_path.read_bytes() if ack_path.exists() else b""
        acked[writer] = {seq for seq, byte in enumerate(raw) if byte == 1}
    counts = Counts(variant, "kill", "mixed", writers, kills=kills, seconds=seconds)
    counts.kills_writing = sum(1 for seqs in acked.values() if seqs)
    analyse(path, acked, sizes, counts)
    counts.attempted = counts.acked
    return counts


def torn_tail_demo(work: Path) -> dict[str, Any]:
    """What fanout's reader and fold make of a killed writer's partial last line."""
    from claude_fanout.states import EventType
    from claude_fanout.store.eventlog import EventLog, encode, read_events
    from claude_fanout.store.state import load_status

    out: dict[str, Any] = {}
    for variant in ("fanout", "o_append"):
        run = work / f"demo-{variant}" / ".claude" / "runs" / "20260101-000000-000-abcd"
        run.mkdir(parents=True)
        log = EventLog(run / "events.jsonl")
        log.append(EventType.RUN_CREATED, run_id=run.name, tasks=["W1", "W2"])
        log.append(EventType.SUPERVISOR_STARTED, pid=1, start_time=1.0)
        log.append(EventType.TASK_STARTED, task="W1", attempt=1, pid=2)
        # A writer killed mid-record: the first half of a notice, no newline.
        torn = encode({"type": "notice", "task": "W1", "text": "x" * 200, "ts": 1.0})
        with open(run / "events.jsonl", "ab") as handle:
            handle.write(torn[: len(torn) // 2])
        before = read_events(run / "events.jsonl")
        status = load_status(run)
        row: dict[str, Any] = {
            "before_events": len(before.events),
            "before_bad": len(before.bad),
            "before_offset_stops_at_tail": before.offset
            == (run / "events.jsonl").stat().st_size - len(torn) // 2,
            "before_W1": status.tasks["W1"].state.value,
            "before_bad_lines": status.bad_lines,
        }
        record = {"type": "task_exited", "task": "W1", "outcome": "succeeded", "exit_code": 0}
        if variant == "fanout":
            log.append_record({**record, "ts": time.time()})
        else:
            append("o_append", str(run / "events.jsonl"), {**record, "ts": time.time()})
        after = read_events(run / "events.jsonl")
        status = load_status(run)
        row.update(
            after_events=len(after.events),
            after_bad=len(after.bad),
            after_W1=status.tasks["W1"].state.value,
            after_bad_lines=status.bad_lines,
        )
        out[variant] = row
    return out


def label(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def count_for(size: int, writers: int, quick: bool) -> int:
    budget = (2 if quick else 24) << 20  # bytes per cell, all writers together
    cap = 100 if quick else 1000
    return max(4, min(cap, budget // size // writers))


def run_benchmark(
    *,
    writers: int,
    sizes: tuple[int, ...],
    variants: tuple[str, ...],
    kill_s: float,
    quick: bool,
    work: Path,
    records: int | None = None,
    seed: int = 14,
) -> dict[str, Any]:
    """Every scenario for every variant; ``records`` per writer overrides the size budget."""
    rng = random.Random(seed)
    rows: list[Counts] = []
    for size in sizes:
        count = records or count_for(size, writers, quick)
        for variant in variants:
            rows.append(throughput(variant, size, writers, count, work))
    for variant in variants:
        rows.append(kill_run(variant, writers, kill_s, sizes, work, rng))
    # Disk full: 1 MiB of file allowed; enough records to pass it twice over.
    full_size = 65_536 if 65_536 in sizes else max(sizes)
    for variant in variants:
        count = max(2, (2 * FSIZE_LIMIT) // full_size // writers + 1)
        rows.append(throughput(variant, full_size, writers, count, work, fsize=FSIZE_LIMIT))
    return {
        "benchmark": "append",
        "machine": brief_machine(),
        "writers": writers,
        "fsize_limit": FSIZE_LIMIT,
        "disk_full_method": "RLIMIT_FSIZE (resource.setrlimit in each writer, SIGXFSZ ignored)",
        "rows": [{**asdict(r), "rate": r.rate, "mib_s": r.mib_s} for r in rows],
        "torn_tail": torn_tail_demo(work),
    }


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"Python {m['python']}, {m['cpus']} CPUs, {m['system']}; {report['writers']} writers")
    header = (
        f"{'scenario':<10} {'size':>7} {'variant':<9} {'attempted':>9} {'acked':>7} "
        f"{'records':>7} {'torn':>5} {'lost':>5} {'dup':>4} {'rec/s':>9} {'MiB/s':>7}  notes"
    )
    print(header)
    print("-" * len(header))
    for r in report["rows"]:
        notes = []
        if r["kills"]:
            notes.append(f"{r['kills']} kills ({r['kills_writing']} after a first record)")
        if r["torn_tail"]:
            notes.append("partial last line")
        if r["spliced"]:
            notes.append(f"{r['spliced']} torn lines parse as records")
        if r["errors"]:
            notes.append(", ".join(f"{k} x{v}" for k, v in sorted(r["errors"].items())))
        notes.append(f"reader: {r['reader_events']} events, {r['reader_bad']} bad")
        print(
            f"{r['scenario']:<10} {r['size']:>7} {r['variant']:<9} {r['attempted']:>9} "
            f"{r['acked']:>7} {r['records']:>7} {r['torn']:>5} {r['lost']:>5} "
            f"{r['duplicated']:>4} {r['rate']:>9,.0f} {r['mib_s']:>7.1f}  {'; '.join(notes)}"
        )
    print()
    print("A killed writer's partial last line, then one more append (read_events, load_status):")
    for variant, row in report["torn_tail"].items():
        print(
            f"  {variant:<9} before: {row['before_events']} events, {row['before_bad']} bad, "
            f"cursor stops before the partial line: {row['before_offset_stops_at_tail']}, "
            f"W1 {row['before_W1']}; after: {row['after_events']} events, {row['after_bad']} "
            f"bad, W1 {row['after_W1']}, bad_lines {row['after_bad_lines']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--nursery", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (~15 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--writers", type=int, default=None)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--kill-s", type=float, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: tmp)")
    args = parser.parse_args(argv)
    if args.writer:
        writer_main(json.loads(args.writer))
        return 0
    if args.nursery:
        nursery_main(json.loads(args.nursery))
        return 0
    writers = args.writers or (4 if args.quick else 8)
    kill_s = args.kill_s if args.kill_s is not None else (0.5 if args.quick else 3.0)

    def run(work: Path) -> dict[str, Any]:
        return run_benchmark(
            writers=writers,
            sizes=tuple(int(s) for s in args.sizes.split(",")),
            variants=tuple(args.variants.split(",")),
            kill_s=kill_s,
            quick=args.quick,
            work=work,
        )

    return run_in_scratch("bench-append-", args.dir, run, print_report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
