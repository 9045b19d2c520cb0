"""The log as a bus vs SQLite in WAL mode vs a Unix socket to a server: throughput and latency.

    .venv/bin/python benchmarks/bench_bus.py [--quick] [--json] [--writers 1,4,8]
        [--records 4000] [--poll-s 0.005] [--buses log,sqlite,socket]

One run measures three buses carrying the same records (a ``notice`` of ~100 bytes from task
``W<n>``, stamped with ``time.monotonic()`` just before it is handed to the bus) from N writer
processes to one reader, this process, which folds every record into a ``RunStatus`` with
fanout's own ``store.state.fold``:

- **log**: writers append with ``EventLog.append`` (open, ``flock``, one ``write``, close: what
  ``fanout publish notice`` does); the reader reads from its byte cursor with ``read_events``
  and sleeps in ``store.watch.wait_for_change`` (inotify here) between reads, as the Stop hook;
- **sqlite**: one table in WAL mode (``synchronous=NORMAL``, so neither side fsyncs per record,
  as the log does not); each writer keeps one connection (busy timeout 30 s) and inserts one row
  per record in its own transaction; the reader polls ``WHERE id > ?`` every ``--poll-s``;
- **socket**: a supervisor-like server process on a Unix stream socket; each writer keeps one
  connection, sends a line and waits for the server's acknowledgement; the server appends the
  line to its own log file (one ``write``), forwards it to the subscribed reader, then acks.

Per bus and writer count: records/s while every writer sends flat out (the reader's latency then
includes the queue), and the reader's latency (write to fold) at a paced rate (each writer sends
one record every ~20 ms). Last, what each costs when its other side is away: a writer's append
while another process holds the log's ``flock`` (fanout's append has no bound), an insert while
another connection holds ``BEGIN EXCLUSIVE`` (busy timeout 5 s, then 0), a connect while the
server is down, and what the reader sees meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import brief_machine, last_json, percentiles, ready, reap, run_in_scratch, spawn

BUSES = ("log", "sqlite", "socket")
TEXT = "progress: step 3 of 7 done, 12 files read, nothing claimed"  # ~100-byte records


# -- writer and server processes ----------------------------------------------------------------


def writer_main(spec: dict[str, Any]) -> None:
    bus, writer, count, pace = spec["bus"], spec["writer"], spec["count"], spec["pace_s"]
    task = f"W{writer}"
    send: Any
    if bus == "log":
        from claude_fanout.store.eventlog import EventLog

        log = EventLog(spec["path"])

        def send(seq: int) -> None:
            log.append("notice", task=task, text=TEXT, seq=seq, mono=time.monotonic())

    elif bus == "sqlite":
        db = sqlite3.connect(spec["path"], timeout=30, isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")

        def send(seq: int) -> None:
            record = {"type": "notice", "task": task, "text": TEXT, "seq": seq, "ts": time.time()}
            record["mono"] = time.monotonic()
            db.execute("INSERT INTO events(body) VALUES (?)", (json.dumps(record),))

    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(spec["path"])
        reader = sock.makefile("rb")

        def send(seq: int) -> None:
            record = {"type": "notice", "task": task, "text": TEXT, "seq": seq, "ts": time.time()}
            record["mono"] = time.monotonic()
            sock.sendall(json.dumps(record).encode() + b"\n")
            if reader.readline() != b"k\n":
                raise OSError("the server did not acknowledge")

    print("ready", flush=True)
    os.read(spec["go"], 1)  # EOF when the benchmark closes its end: everyone starts at once
    t0 = time.monotonic()
    for seq in range(count):
        send(seq)
        if pace:
            time.sleep(pace)
    t1 = time.monotonic()
    print(json.dumps({"t0": t0, "t1": t1}))


def server_main(spec: dict[str, Any]) -> None:
    """A supervisor-like server: appends each line to its log, forwards it, acknowledges it."""
    path = spec["path"]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    subscribers: list[socket.socket] = []
    buffers: dict[socket.socket, bytes] = {}
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                sel.register(conn, selectors.EVENT_READ)
                buffers[conn] = b""
                continue
            conn = key.fileobj  # type: ignore[assignment]
            data = conn.recv(1 << 16)
            if not data:
                sel.unregister(conn)
                conn.close()
                if conn in subscribers:
                    return  # the reader left: the run is over
                continue
            buffers[conn] += data
            *lines, buffers[conn] = buffers[conn].split(b"\n")
            for line in lines:
                if line == b"SUB":
                    subscribers.append(conn)
                    continue
                os.write(log, line + b"\n")
                for sub in subscribers:
                    sub.sendall(line + b"\n")
                conn.sendall(b"k\n")


# -- the reader (this process) ------------------------------------------------------------------


class Reader:
    """Follows one bus, folds what arrives, notes each record's latency."""

    def __init__(self, bus: str, path: str, poll_s: float) -> None:
        from claude_fanout.store.status import RunStatus

        self.bus, self.path, self.poll_s = bus, path, poll_s
        self.status = RunStatus(run_id="bench")
        self.latencies: list[float] = []
        self.offset = 0
        self.rowid = 0
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.db: sqlite3.Connection | None = None

    def open(self, tasks: list[str]) -> None:
        from claude_fanout.store.state import fold

        fold(self.status, {"type": "run_created", "tasks": tasks, "ts": time.time()})
        if self.bus == "log":
            self.offset = os.path.getsize(self.path)
        elif self.bus == "sqlite":
            self.db = sqlite3.connect(self.path, isolation_level=None)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self.path)
            self.sock.sendall(b"SUB\n")

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        if self.sock is not None:
            self.sock.close()

    def _fold(self, records: list[dict[str, Any]]) -> None:
        from claude_fanout.store.state import fold

        now = time.monotonic()
        for record in records:
            fold(self.status, record)
            self.latencies.append(now - record["mono"])

    def step(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for news and fold it."""
        if self.bus == "log":
            from claude_fanout.store.eventlog import read_events
            from claude_fanout.store.watch import wait_for_change

            result = read_events(self.path, self.offset)
            if result.offset == self.offset:
                wait_for_change([self.path], timeout)
                result = read_events(self.path, self.offset)
            self.offset = result.offset
            self._fold(result.events)
        elif self.bus == "sqlite":
            assert self.db is not None
            rows = self.db.execute(
                "SELECT id, body FROM events WHERE id > ? ORDER BY id", (self.rowid,)
            ).fetchall()
            if not rows:
                time.sleep(self.poll_s)
                return
            self.rowid = rows[-1][0]
            self._fold([json.loads(body) for _, body in rows])
        else:
            assert self.sock is not None
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return
            self.buffer += data
            *lines, self.buffer = self.buffer.split(b"\n")
            self._fold([json.loads(line) for line in lines if line])


# -- one measurement ----------------------------------------------------------------------------


def setup(bus: str, work: Path) -> tuple[str, subprocess.Popen[str] | None]:
    """Create the bus; returns the writers' address and the server process (socket only)."""
    if bus == "log":
        path = work / "events.jsonl"
        path.touch()
        return str(path), None
    if bus == "sqlite":
        path = work / "events.db"
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        db.close()
        return str(path), None
    path = work / "bus.sock"
    spec = {"path": str(path), "log": str(work / "server-events.jsonl")}
    server = spawn(__file__, "server", spec)
    if ready(server) != "ready":
        reap([server])
        raise RuntimeError("the socket server did not start")
    return str(path), server


def measure(
    bus: str, writers: int, per_writer: int, pace_s: float, poll_s: float, work: Path
) -> dict[str, Any]:
    work.mkdir(parents=True)
    address, server = setup(bus, work)
    reader = Reader(bus, address, poll_s)
    procs: list[subprocess.Popen[str]] = []
    expected = writers * per_writer
    started = time.monotonic()
    try:
        reader.open([f"W{w}" for w in range(writers)])
        read_fd, write_fd = os.pipe()
        try:
            for w in range(writers):
                spec = {
                    "bus": bus,
                    "path": address,
                    "writer": w,
                    "count": per_writer,
                    "pace_s": pace_s,
                    "go": read_fd,
                }
                procs.append(spawn(__file__, "writer", spec, pass_fds=(read_fd,)))
        finally:
            os.close(read_fd)
            for proc in procs:
                ready(proc)  # connected, past its imports
            os.close(write_fd)
        deadline = time.monotonic() + 120
        while reader.status.notice_count < expected and time.monotonic() < deadline:
            reader.step(1.0)
            if any(p.poll() not in (None, 0) for p in procs):
                break
        reports = []
        for proc in procs:
            if (report := last_json(proc, timeout=60)) is not None:
                reports.append(report)
        while reader.status.notice_count < expected and time.monotonic() < deadline:
            reader.step(0.2)  # what is still on the way
    finally:
        reap(procs)
        reader.close()
        if server is not None:
            try:
                server.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.communicate()
    seconds = max(r["t1"] for r in reports) - min(r["t0"] for r in reports) if reports else 0.0
    return {
        "bus": bus,
        "writers": writers,
        "sent": expected,
        "seen": reader.status.notice_count,
        "writers_ok": len(reports),
        "seconds": seconds,
        "rate": expected / seconds if seconds > 0 else 0.0,
        "latency_ms": percentiles(reader.latencies, scale=1000),
        "wall_s": time.monotonic() - started,
    }


# -- the other side is away ---------------------------------------------------------------------

HOLDER = """
import fcntl, os, sys, time, sqlite3
kind, path, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
if kind == "log":
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)
else:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
time.sleep(hold)
"""


def hold(kind: str, path: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    ready(proc)  # "held"
    return proc


def timed(fn: Any) -> tuple[float, str]:
    start = time.monotonic()
    try:
        fn()
        outcome = "ok"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    return (time.monotonic() - start) * 1000, outcome


def outages(work: Path, hold_s: float) -> list[dict[str, Any]]:
    from claude_fanout.store.eventlog import EventLog, read_events

    work.mkdir(parents=True)
    rows = []
    # The log: a writer stuck inside its append (SIGSTOPped, say) holds the flock.
    (work / "log").mkdir()
    log_path, _ = setup("log", work / "log")
    EventLog(log_path).append("notice", task="W0", text="before")
    holder = hold("log", log_path, hold_s)
    read_ms, _ = timed(lambda: read_events(log_path))
    ms, outcome = timed(lambda: EventLog(log_path).append("notice", task="W0", text="during"))
    holder.communicate()
    rows.append(
        {
            "bus": "log",
            "case": f"another process holds the log's flock for {hold_s:g} s",
            "writer_ms": ms,
            "writer": outcome,
            "reader_ms": read_ms,
        }
    )
    # SQLite: another connection holds an exclusive transaction.
    (work / "db").mkdir()
    db_path, _ = setup("sqlite", work / "db")
    for timeout in (5.0, 0.0):
        holder = hold("sqlite", db_path, hold_s)
        reader = sqlite3.connect(db_path, isolation_level=None)
        read_ms, read_outcome = timed(lambda r=reader: r.execute("SELECT count(*) FROM events"))
        writer = sqlite3.connect(db_path, timeout=timeout, isolation_level=None)
        ms, outcome = timed(
            lambda w=writer: w.execute("INSERT INTO events(body) VALUES (?)", ("{}",))
        )
        writer.close()
        reader.close()
        holder.communicate()
        rows.append(
            {
                "bus": "sqlite",
                "case": f"another connection holds BEGIN EXCLUSIVE for {hold_s:g} s, "
                f"busy timeout {timeout:g} s",
                "writer_ms": ms,
                "writer": outcome,
                "reader_ms": read_ms,
                "reader": read_outcome,
            }
        )
    # The socket: the server is down (never started, or gone).
    path = str(work / "down.sock")
    samples = []
    outcome = ""
    for _ in range(50):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ms, outcome = timed(lambda s=sock: s.connect(path))
        sock.close()
        samples.append(ms)
    stale = work / "stale.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()  # a dead server's socket file stays behind
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale_ms, stale_outcome = timed(lambda: sock.connect(str(stale)))
    sock.close()
    rows.append(
        {
            "bus": "socket",
            "case": "server down: no socket file (median of 50 connects)",
            "writer_ms": statistics.median(samples),
            "writer": outcome,
            "reader_ms": None,
        }
    )
    rows.append(
        {
            "bus": "socket",
            "case": "server died, its socket file left behind",
            "writer_ms": stale_ms,
            "writer": stale_outcome,
            "reader_ms": None,
        }
    )
    return rows


# -- the benchmark ------------------------------------------------------------------------------


def run_benchmark(
    *,
    buses: tuple[str, ...],
    writer_counts: tuple[int, ...],
    records: int,
    paced_writers: int,
    paced_records: int,
    pace_s: float,
    poll_s: float,
    hold_s: float,
    work: Path,
) -> dict[str, Any]:
    saturated, paced = [], []
    for n in writer_counts:
        for bus in buses:
            saturated.append(
                measure(bus, n, max(1, records // n), 0.0, poll_s, work / f"sat-{bus}-{n}")
            )
    for bus in buses:
        paced.append(measure(bus, paced_writers, paced_records, pace_s, poll_s, work / f"p-{bus}"))
    return {
        "benchmark": "bus",
        "machine": {**brief_machine(), "sqlite": sqlite3.sqlite_version},
        "poll_s": poll_s,
        "pace_s": pace_s,
        "saturated": saturated,
        "paced": paced,
        "outages": outages(work / "outages", hold_s),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"Python {m['python']}, SQLite {m['sqlite']}, {m['cpus']} CPUs, {m['system']}")
    print(f"reader: log inotify wait, sqlite poll every {report['poll_s']:g} s, socket push")
    header = (
        f"{'mode':<10} {'bus':<7} {'writers':>7} {'sent':>6} {'seen':>6} {'rec/s':>8} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for mode, rows in (("flat out", report["saturated"]), ("paced", report["paced"])):
        for r in rows:
            lat = r["latency_ms"]
            print(
                f"{mode:<10} {r['bus']:<7} {r['writers']:>7} {r['sent']:>6} {r['seen']:>6} "
                f"{r['rate']:>8,.0f} {_ms(lat['p50']):>8} {_ms(lat['p90']):>8} "
                f"{_ms(lat['p99']):>8} {_ms(lat['max']):>8}"
            )
    print(f"(paced: each writer sends one record every {report['pace_s']:g} s)")
    print()
    print("When the other side is away:")
    for r in report["outages"]:
        reader = "" if r["reader_ms"] is None else f"; a reader meanwhile: {r['reader_ms']:.2f} ms"
        print(f"  {r['bus']:<7} {r['case']}: writer {r['writer_ms']:.2f} ms, {r['writer']}{reader}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="small sizes (~15 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--buses", default=",".join(BUSES))
    parser.add_argument("--writers", default=None, help="writer counts, e.g. 1,4,8")
    parser.add_argument("--records", type=int, default=None, help="records per flat-out case")
    parser.add_argument("--poll-s", type=float, default=0.005, help="SQLite reader's poll")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: tmp)")
    args = parser.parse_args(argv)
    if args.writer:
        writer_main(json.loads(args.writer))
        return 0
    if args.server:
        server_main(json.loads(args.server))
        return 0
    writer_counts = args.writers or ("1,4" if args.quick else "1,4,8")

    def run(work: Path) -> dict[str, Any]:
        return run_benchmark(
            buses=tuple(args.buses.split(",")),
            writer_counts=tuple(int(n) for n in writer_counts.split(",")),
            records=args.records or (600 if args.quick else 4000),
            paced_writers=4,
            paced_records=20 if args.quick else 100,
            pace_s=0.02,
            poll_s=args.poll_s,
            hold_s=0.5,
            work=work,
        )

    return run_in_scratch("bench-bus-", args.dir, run, print_report, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
