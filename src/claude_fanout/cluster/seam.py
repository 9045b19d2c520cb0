"""The supervisor's side of the Ray backend: a process seam (``runtime/task_run.ProcessSeam``)
whose workers are attempts on a Ray cluster's nodes instead of children.

The supervisor process is the Ray driver (``ray.init`` here, never in a hook), so when it dies,
SIGKILL included, Ray tears its job's tasks down, and each task's guard takes its process group
with it (``cluster/node.py``). Everything else of the run stays where it was: the supervisor is
the one writer of the run's log, its leases cap claude workers and space their starts across the
cluster exactly as for local ones, and what a remote attempt prints, streams and leaves in its
``out/`` lands in the same files of the run directory as a local worker's, so hooks, ``fanout
status/logs/watch``, results and budgets see no difference.

An attempt is a streaming Ray task; one thread per running attempt (the *pump*) reads what it
yields into the run's files and wakes the supervisor's loop when it ends (SIGCHLD to itself,
as a child's exit would). A cancel or timeout is ``ray.cancel`` (the node stops the command's
group: SIGTERM, then SIGKILL after the grace period); a second stop forces it (the Ray worker is
killed and the guard takes the group down). A node that dies under an attempt makes it ``lost``.
Remote attempts have no local process: their ids are negative (never a local process group).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import socket
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_fanout import defaults, procs
from claude_fanout.cluster import node
from claude_fanout.errors import FanoutError
from claude_fanout.git.repo import repo_root
from claude_fanout.plan import Plan, Task, TaskKind, plan_to_json
from claude_fanout.store.rundir import RunDir

# Environment variables a remote attempt gets from the supervisor even where they equal the
# supervisor's own: the API's address and credentials, Claude Code's switches, fanout's own.
# Everything else comes from the node (its PATH, HOME, ...), plus what the task itself sets.
FORWARDED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "FANOUT_", "DISABLE_")
FORWARDED_NAMES = frozenset({"NO_PROXY", "no_proxy"})
# Set (to anything) in the supervisor's environment: the nodes keep the run's scratch at its
# end (clone, worktrees, run directory), to look into.
KEEP_SCRATCH_ENV = "FANOUT_RAY_KEEP_SCRATCH"
# A branch name: what `git clone` of the bundle on a node fetches.
SNAPSHOT_REF = "refs/heads/fanout-ray-snapshot"


class ClusterError(FanoutError):
    """The Ray cluster cannot be used (not installed, not reachable)."""


def require_repo(project: Path) -> None:
    """ClusterError (one line) unless ``project`` is in a git working tree: nodes get the run's
    files as a git snapshot."""
    from claude_fanout.git.repo import GitError

    try:
        repo_root(project)
    except GitError:
        raise ClusterError(
            f"the ray backend ships the project to its nodes as a git snapshot, and {project} "
            f"is not in a git working tree; run 'git init' there or use --backend local"
        ) from None


def connect(address: str, runtime_env: Mapping[str, Any] | None = None) -> None:
    """``ray.init`` for this supervisor (with ``runtime_env``: ``shipping.shipped_code()`` when
    the project ships its code); ClusterError (one line: the address and the fix) when the extra is
    missing or the cluster cannot be reached."""
    fix = (
        "start one (`ray start --head`) or set executor.address in .claude/fanout.toml, "
        "or run with --backend local"
    )
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "the ray backend needs the ray extra: pip install 'claude-fanout[ray]'"
        ) from None
    host_port = address.removeprefix("ray://")
    if address != "auto":
        host, _, port = host_port.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5.0).close()
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ClusterError(
                f"cannot reach the Ray cluster at {address} ({reason}); {fix}"
            ) from None
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            log_to_driver=False,
            runtime_env=dict(runtime_env) if runtime_env is not None else None,
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; each is one line here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address} ({first}); {fix}") from None


def describe(address: str) -> list[dict[str, Any]]:
    """The cluster's live nodes (id, address, resources), for ``fanout doctor``: connects as a
    short-lived driver and disconnects."""
    connect(address)
    import ray

    try:
        return [
            {
                "node_id": found["NodeID"],
                "address": found["NodeManagerAddress"],
                "resources": dict(found.get("Resources") or {}),
            }
            for found in ray.nodes()  # type: ignore[no-untyped-call]
            if found.get("Alive")
        ]
    finally:
        ray.shutdown()


@dataclass
class RemoteAttempt:
    """One attempt on the cluster, as the supervisor sees it (its ``pid`` is negative)."""

    pid: int
    task_id: str
    generator: Any
    log_fd: int
    stream_fd: int | None
    out_dir: Path
    worktree: Path | None
    returncode: int | None = None
    # Set when the attempt ended without its node reporting an exit (node or worker died).
    lost: str | None = None
    placed: dict[str, Any] = field(default_factory=dict)
    ran: dict[str, Any] = field(default_factory=dict)
    submitted: float = 0.0
    cancels: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class RaySeam:
    """The process seam of a run whose workers run on Ray (the rest is :mod:`procs`)."""

    is_alive = staticmethod(procs.is_alive)
    process_start_time = staticmethod(procs.process_start_time)
    decode_returncode = staticmethod(procs.decode_returncode)
    signal_name = staticmethod(procs.signal_name)

    def __init__(
        self,
        run: RunDir,
        plan: Plan,
        *,
        snapshot_of: Callable[[], str],
        kill_grace_s: float = defaults.KILL_GRACE_S,
        ship_cli: bool = defaults.RAY_SHIP,
    ) -> None:
        """``snapshot_of()``: the run's snapshot commit (made on first use, shared with local
        writers' worktrees). ``ship_cli``: a plan's claude tasks get this machine's CLI."""
        import ray

        self._ray = ray
        self._run = run
        self._tasks = {task.id: task for task in plan.tasks}
        self._plan_json = plan_to_json(plan).encode("utf-8")
        self._snapshot_of = snapshot_of
        self._kill_grace_s = kill_grace_s
        self._ids = itertools.count(1)
        self._attempts: dict[int, RemoteAttempt] = {}
        self._counts: dict[str, int] = {}
        # Per start commit: (the parentless commit of its tree that nodes clone, its bundle).
        self._shipped: dict[str, tuple[str, Any]] = {}
        # The nodes that ran part of the run: their scratch of it is removed at the end.
        self._nodes: set[str] = set()
        # The run's snapshot, what tasks that are not writers start from (made once).
        self._snapshot: str | None = None
        self._remote = ray.remote(num_returns="streaming", max_retries=0)(node.run_attempt)
        # Looked up once: every attempt's paths are mapped against them.
        from claude_fanout.claude.cli import cli_path

        self._root = repo_root(run.project)
        self._cli = cli_path(os.environ)
        self._ship_cli = ship_cli and any(task.kind is TaskKind.CLAUDE for task in plan.tasks)
        self._shipped_cli: tuple[str, Any] | None = None  # (file name, object): ``prepare``

    # -- starting ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Make the run's snapshot and put it in Ray's object store before anything starts, so
        that the first attempt costs what the others do."""
        self._snapshot = self._snapshot_of()
        self._ship(self._snapshot)
        if self._ship_cli:
            from claude_fanout.cluster.shipping import put_cli

            self._shipped_cli = put_cli(self._ray)

    def spawn_in_group(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output_fd: int,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
    ) -> RemoteAttempt:
        task = self._tasks[env["FANOUT_TASK_ID"]]
        attempt_no = self._counts[task.id] = self._counts.get(task.id, 0) + 1
        worktree = self._worktree_of(cwd)
        if worktree is not None:
            start = self._head(worktree)
        else:
            self._snapshot = self._snapshot or self._snapshot_of()
            start = self._snapshot
        base, bundle_ref = self._ship(start)
        paths = self._paths(worktree)
        spec = {
            "run_rel": self._run.path.relative_to(self._root).as_posix(),
            "run_id": self._run.run_id,
            "task_id": task.id,
            "attempt": attempt_no,
            "base": base,
            "writer": worktree is not None,
            "message": f"fanout {self._run.run_id}/{task.id}",
            "plan": self._plan_json,
            "argv": [_placeholder(arg, paths) for arg in argv],
            "cwd": _placeholder(str(cwd), paths),
            "env_set": {k: _placeholder(v, paths) for k, v in _env_delta(env).items()},
            "env_unset": sorted(k for k in os.environ if k not in env),
            "stdin": _read_all(stdin_fd) if stdin_fd is not None else None,
            "separate_stdout": stdout_fd is not None,
            "kill_grace_s": self._kill_grace_s,
            "cli": self._shipped_cli,  # nested: Ray fetches it only for a node that asks
        }
        generator = self._remote.options(**_resources(task)).remote(spec, bundle_ref)
        attempt = RemoteAttempt(
            pid=-next(self._ids),
            task_id=task.id,
            generator=generator,
            log_fd=os.dup(output_fd),
            stream_fd=os.dup(stdout_fd) if stdout_fd is not None else None,
            out_dir=self._run.out_dir(task.id),
            worktree=worktree,
            submitted=time.time(),
        )
        self._attempts[attempt.pid] = attempt
        threading.Thread(
            target=self._pump, args=(attempt,), name=f"fanout-ray-{task.id}", daemon=True
        ).start()
        return attempt

    def _worktree_of(self, cwd: Path) -> Path | None:
        """The writer's worktree ``cwd`` is in, or None for a task that runs in the project."""
        trees = self._run.worktrees_dir
        try:
            first = Path(cwd).relative_to(trees).parts[0]
        except (ValueError, IndexError):
            return None
        return trees / first

    def _head(self, worktree: Path) -> str:
        from claude_fanout.git.repo import resolve_commit

        return resolve_commit(worktree, "HEAD")

    def _paths(self, worktree: Path | None) -> dict[str, str]:
        return supervisor_paths(self._root, self._run.path, worktree=worktree, cli=self._cli)

    def _ship(self, start: str) -> tuple[str, Any]:
        """A parentless commit of ``start``'s tree (so a node gets the files, not the history)
        and its git bundle in Ray's object store; once per start commit."""
        if start not in self._shipped:
            from claude_fanout.git.repo import run_git

            root = self._root
            base = (
                run_git(
                    [
                        "commit-tree",
                        "--no-gpg-sign",
                        f"{start}^{{tree}}",
                        "-m",
                        f"fanout snapshot of {start}",
                    ],
                    cwd=root,
                )
                .stdout.decode()
                .strip()
            )
            with tempfile.TemporaryDirectory(prefix="fanout-ray-") as scratch:
                bundle = Path(scratch) / "snapshot.bundle"
                run_git(["update-ref", SNAPSHOT_REF, base], cwd=root)
                try:
                    run_git(["bundle", "create", "-q", str(bundle), SNAPSHOT_REF], cwd=root)
                finally:
                    run_git(["update-ref", "-d", SNAPSHOT_REF], cwd=root)
                self._shipped[start] = (base, self._ray.put(bundle.read_bytes()))
        return self._shipped[start]

    # -- while it runs -------------------------------------------------------------------------

    def _pump(self, attempt: RemoteAttempt) -> None:
        """Read what the attempt yields into the run's files until it ends (own thread)."""
        ray = self._ray
        try:
            for ref in attempt.generator:
                kind, value = ray.get(ref)
                self._take(attempt, kind, value)
        except ray.exceptions.TaskCancelledError:
            attempt.returncode = attempt.returncode or -15
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, ray.exceptions.TaskCancelledError | KeyboardInterrupt):
                attempt.returncode = -15
            else:
                _write(attempt.log_fd, f"fanout: the attempt failed on its node: {cause}\n")
                attempt.returncode = 1
        except ray.exceptions.RayError as exc:
            if attempt.cancels:
                attempt.returncode = -9
            else:
                attempt.lost = f"its Ray node or worker died ({type(exc).__name__})"
                _write(attempt.log_fd, f"fanout: {attempt.lost}\n")
        except Exception as exc:  # noqa: BLE001 - a pump never dies silently
            attempt.lost = f"its results could not be read back ({type(exc).__name__}: {exc})"
            _write(attempt.log_fd, f"fanout: {attempt.lost}\n")
        finally:
            if attempt.ran:
                back = time.time() - attempt.ran["ended"]
                _write(
                    attempt.log_fd,
                    f"--- fanout: ran {attempt.ran['command_s']:.3f} s on its node, "
                    f"results back {back:.3f} s after ---\n",
                )
            if attempt.returncode is None and attempt.lost is None:
                attempt.lost = "its node ended without reporting an exit"
            attempt.done.set()
            procs.wake_self()

    def _take(self, attempt: RemoteAttempt, kind: str, value: Any) -> None:
        if kind == "log":
            _write(attempt.log_fd, value)
        elif kind == "out":
            _write(attempt.stream_fd if attempt.stream_fd is not None else attempt.log_fd, value)
        elif kind == "placed":
            attempt.placed = dict(value)
            self._nodes.add(value["node"])
            queued, setup = value["began"] - attempt.submitted, value["ready"] - value["began"]
            shipped = f", its shipped CLI in {value['cli_s']:.3f} s" if "cli_s" in value else ""
            _write(
                attempt.log_fd,
                f"--- fanout: on Ray node {value['node'][:12]} ({value['host']}): "
                f"placed after {queued:.3f} s, set up in {setup:.3f} s{shipped} ---\n",
            )
        elif kind == "ran":
            attempt.ran = dict(value)
        elif kind == "files":
            _unpack(value, attempt.out_dir)
        elif kind == "commit" and value is not None and attempt.worktree is not None:
            _apply_commit(self._run, attempt.worktree, value)
        elif kind == "exit":
            attempt.returncode = int(value)

    # -- the seam's answers --------------------------------------------------------------------

    def reap(self, proc: Any) -> int | None:
        if not isinstance(proc, RemoteAttempt):
            return procs.reap(proc)
        if not proc.done.is_set():
            return None
        self._attempts.pop(proc.pid, None)
        for fd in (proc.log_fd, proc.stream_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return proc.returncode if proc.returncode is not None else -9

    def signal_group(self, pgid: int, sig: int) -> bool:
        if pgid > 0:
            return procs.signal_group(pgid, sig)
        attempt = self._attempts.get(pgid)
        if attempt is None or attempt.done.is_set():
            return False
        if sig == 0:
            return True
        attempt.cancels += 1
        # The first stop lets the node SIGTERM the group and wait out the grace period; a later
        # one (the supervisor's SIGKILL) kills the Ray worker, and the guard the group.
        with contextlib.suppress(Exception):
            self._ray.cancel(attempt.generator, force=attempt.cancels > 1 and sig == 9)
        return True

    def shutdown(self) -> None:
        """Stop what still runs (force), remove the run's scratch from every node that ran part
        of it (bounded), and disconnect from the cluster."""
        for attempt in list(self._attempts.values()):
            with contextlib.suppress(Exception):
                self._ray.cancel(attempt.generator, force=True)
        if not os.environ.get(KEEP_SCRATCH_ENV):
            with contextlib.suppress(Exception):
                self._forget_run()
        with contextlib.suppress(Exception):
            self._ray.shutdown()

    def _forget_run(self) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        forget = self._ray.remote(num_cpus=0, max_retries=0)(node.forget_run)
        refs = [
            forget.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
            ).remote(self._run.run_id)
            for node_id in self._nodes
        ]
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=defaults.RAY_FORGET_TIMEOUT_S)


def supervisor_paths(
    root: Path, run_path: Path, *, worktree: Path | None, cli: str
) -> dict[str, str]:
    """The supervisor's paths a command may name, each with the placeholder a node replaces: the
    repository and, for a writer, its worktree (both become the copy the attempt runs in on the
    node: a writer's paths into the project reach its own copy), the run directory (inside that
    copy on the node), the interpreter, the Claude Code CLI."""
    run_rel = run_path.relative_to(root).as_posix()
    paths = {
        str(root): node.ROOT,
        str(run_path): f"{node.ROOT}/{run_rel}",
        sys.executable: node.PYTHON,
        cli: node.CLI,
    }
    if worktree is not None:
        paths[str(worktree)] = node.ROOT
    return paths


def _placeholder(value: str, paths: Mapping[str, str]) -> str:
    """``value`` with the longest supervisor path it starts with replaced by its placeholder."""
    for local in sorted(paths, key=len, reverse=True):
        if value == local or value.startswith(local.rstrip("/") + "/"):
            return paths[local] + value[len(local) :]
    return value


def _env_delta(env: Mapping[str, str]) -> dict[str, str]:
    """What a remote attempt's environment sets on top of its node's own."""
    return {
        k: v for k, v in env.items() if os.environ.get(k) != v or k.startswith(FORWARDED_PREFIXES)
    }


def _resources(task: Task) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": task.cpus, "scheduling_strategy": "SPREAD"}
    if task.memory_mb is not None:
        options["memory"] = task.memory_mb * 1024 * 1024
    return options


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write(fd: int | None, data: bytes | str) -> None:
    if fd is None:
        return
    view = memoryview(data.encode("utf-8", "replace") if isinstance(data, str) else data)
    with contextlib.suppress(OSError):
        while view:
            view = view[os.write(fd, view) :]


def _unpack(data: bytes, out_dir: Path) -> None:
    """The files an attempt left in its node's ``out/``, into the run's (regular files only)."""
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(out_dir, filter="data")


def _apply_commit(run: RunDir, worktree: Path, bundle: bytes) -> None:
    """Put the tree of the writer's commit (a bundle from its node) into its local worktree: the
    supervisor then commits it on ``fanout/<RUN>/<TASK>`` as it would a local writer's change."""
    from claude_fanout.git.repo import run_git

    root = repo_root(run.project)
    with tempfile.TemporaryDirectory(prefix="fanout-ray-") as scratch:
        path = Path(scratch) / "result.bundle"
        path.write_bytes(bundle)
        listed = run_git(["bundle", "unbundle", str(path)], cwd=root).stdout.decode()
    sha = listed.split()[0]
    run_git(["read-tree", "-u", "--reset", sha], cwd=worktree)
