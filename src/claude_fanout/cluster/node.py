"""The node's side of the Ray backend: one attempt of a task, run inside a Ray worker on whatever
node Ray placed it, streamed back to the supervisor as it goes.

:func:`run_attempt` is the body of the streaming remote function (``cluster/seam.py`` wraps it
with ``ray.remote``). It never reads the person's working tree: the run's snapshot arrives as a
git bundle and is cloned once per node into a node-local scratch directory; a writer gets a
worktree of its own from that clone, and its change goes back as a bundle of one commit. The
command runs under a guard (``cluster/guard.py``, a script), the leader of its own
process group, which takes the group down if this Ray worker dies (a cancel with force, a dead
supervisor's job torn down, a node removed). What the command prints, and a ``claude`` worker's
stream, go back in chunks; the files it left in its ``out/`` go back when it ends.

Items yielded, in order: ``("placed", {...})`` (where, and when it began and was ready to start
the command), then any number of ``("log", bytes)`` and ``("out", bytes)``, ``("ran", {...})``
(how long the command ran, when it ended), then ``("files", tar bytes)`` when ``out/`` holds
anything, ``("commit", bundle bytes or None)`` for a writer, and last ``("exit", returncode)``.

Paths of the supervisor's machine arrive as placeholders (:data:`ROOT`, :data:`PYTHON`,
:data:`CLI` and the rest of the path) and are replaced by this node's own. This module is the
supervisor's own copy when the run ships its code (``executor.ship``: the run's runtime
environment), and :data:`CLI` then the supervisor's Claude Code CLI, which the run's first claude
attempt on this node writes into the run's scratch here (:func:`ensure_cli`).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import selectors
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

from claude_fanout import defaults, procs
from claude_fanout.store.files import replace_with, write_all

# Placeholders for the supervisor's paths: the repository root (or the writer's worktree; the run
# directory is inside it), the interpreter, the Claude Code CLI.
ROOT, PYTHON, CLI = "\0root\0", "\0python\0", "\0cli\0"
# Where a node keeps its clones and worktrees: this variable when set, else the system's
# temporary directory; one directory per node id below it.
SCRATCH_ENV = "FANOUT_RAY_SCRATCH"
# What the command's environment says about where it runs.
NODE_ID_ENV = "FANOUT_NODE_ID"
RESULT_REF = "refs/fanout/result"


def node_scratch(node_id: str, env: Mapping[str, str] = os.environ) -> Path:
    """This node's scratch directory (made private on first use)."""
    base = env.get(SCRATCH_ENV) or os.path.join(tempfile.gettempdir(), "fanout-ray")
    path = Path(base) / node_id[:16]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _git(args: list[str], cwd: Path) -> bytes:
    from claude_fanout.git.repo import GIT_SLOW_TIMEOUT_S, run_git

    return run_git(args, cwd=cwd, timeout=GIT_SLOW_TIMEOUT_S).stdout


@contextlib.contextmanager
def _run_lock(run_root: Path) -> Iterator[None]:
    """The run's lock on this node: its workers may start tasks of the run at the same time."""
    lock_fd = os.open(run_root / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock_fd)


def ensure_clone(run_root: Path, base: str, bundle: bytes) -> Path:
    """The node's clone of the run's snapshot ``base`` (made once per node)."""
    clone = run_root / f"snapshot-{base[:16]}"
    with _run_lock(run_root):
        if not (clone / ".git").is_dir():
            shutil.rmtree(clone, ignore_errors=True)
            bundle_path = run_root / f"snapshot-{base[:16]}.bundle"
            bundle_path.write_bytes(bundle)
            _git(["clone", "-q", "--no-checkout", str(bundle_path), str(clone)], cwd=run_root)
            _git(["checkout", "-q", "--detach", base], cwd=clone)
            bundle_path.unlink()
    return clone


def ensure_cli(run_root: Path, name: str, ref: Any) -> Path:
    """The supervisor's Claude Code CLI in the run's scratch on this node: fetched from Ray's
    object store and written (mode 0700, renamed into place whole) by the node's first attempt
    of the run that needs it; the others find it there."""
    import ray

    target = run_root / "cli" / name
    with _run_lock(run_root):
        if not target.is_file():
            target.parent.mkdir(mode=0o700, exist_ok=True)
            partial = target.with_name(f".{name}.partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
            try:
                os.fchmod(fd, 0o700)  # whatever the umask
                write_all(fd, ray.get(ref))
            finally:
                os.close(fd)
            replace_with(partial, target)
    return target


def _writer_tree(clone: Path, run_root: Path, name: str, base: str) -> Path:
    tree = run_root / "writers" / name
    if tree.exists():
        with contextlib.suppress(Exception):
            _git(["worktree", "remove", "--force", str(tree)], cwd=clone)
        shutil.rmtree(tree, ignore_errors=True)
    tree.parent.mkdir(mode=0o700, exist_ok=True)
    _git(["worktree", "add", "-q", "--detach", str(tree), base], cwd=clone)
    return tree


def _local(value: str, paths: Mapping[str, str]) -> str:
    for token, path in paths.items():
        if value.startswith(token):
            return path + value[len(token) :]
    return value


def _environment(spec: Mapping[str, Any], paths: Mapping[str, str], node_id: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in spec["env_unset"]}
    env.update({k: _local(v, paths) for k, v in spec["env_set"].items()})
    env[NODE_ID_ENV] = node_id
    return env


def _tar_dir(path: Path) -> bytes | None:
    """The regular files under ``path`` as an uncompressed tar, or None when there are none."""
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()]
    if not files:
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for file in files:
            tar.add(file, arcname=file.relative_to(path).as_posix(), recursive=False)
    return buffer.getvalue()


def _commit_bundle(tree: Path, base: str, message: str) -> bytes | None:
    """What the writer changed as a bundle of one commit on ``base``; None when nothing."""
    from claude_fanout.git import worktrees

    sha = worktrees.commit(tree, message)
    if sha is None:
        return None
    _git(["update-ref", RESULT_REF, sha], cwd=tree)
    out = tree.parent / f"{tree.name}.bundle"
    _git(["bundle", "create", "-q", str(out), f"{base}..{RESULT_REF}"], cwd=tree)
    try:
        return out.read_bytes()
    finally:
        out.unlink()


def run_attempt(spec: Mapping[str, Any], bundle: bytes) -> Iterator[tuple[str, Any]]:
    """Run one attempt on this node (see the module's docstring for what it yields)."""
    import ray

    began = time.time()
    node_id = ray.get_runtime_context().get_node_id()
    run_root = node_scratch(node_id) / spec["run_id"]
    run_root.mkdir(mode=0o700, exist_ok=True)
    base = spec["base"]
    clone = ensure_clone(run_root, base, bundle)
    name = f"{spec['task_id']}-{spec['attempt']}"
    root = _writer_tree(clone, run_root, name, base) if spec["writer"] else clone
    run_dir = root / spec["run_rel"]
    out_dir = run_dir / "workers" / spec["task_id"] / "out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(mode=0o700, parents=True)
    (run_dir / "plan.json").write_bytes(spec["plan"])
    from claude_fanout.claude.cli import CLAUDE_BIN_ENV, cli_path

    paths = {ROOT: str(root), PYTHON: sys.executable}
    env = _environment(spec, paths, node_id)
    placed: dict[str, Any] = {"node": node_id, "host": socket.gethostname(), "began": began}
    if spec.get("cli") is not None and any(arg.startswith(CLI) for arg in spec["argv"]):
        fetching = time.time()
        # Also for what the command starts itself (a worker's own runs).
        env[CLAUDE_BIN_ENV] = str(ensure_cli(run_root, *spec["cli"]))
        placed["cli_s"] = time.time() - fetching
    paths[CLI] = cli_path(env)
    argv = [_local(arg, paths) for arg in spec["argv"]]
    cwd = Path(_local(spec["cwd"], paths))
    placed["ready"] = time.time()
    yield "placed", placed
    returncode = yield from _run(argv, cwd, env, spec)
    yield "ran", {"command_s": time.time() - placed["ready"], "ended": time.time()}
    files = _tar_dir(out_dir)
    if files is not None:
        yield "files", files
    if spec["writer"]:
        yield "commit", (_commit_bundle(root, base, spec["message"]) if returncode == 0 else None)
    yield "exit", returncode


def forget_run(run_id: str) -> str:
    """Remove this node's scratch of ``run_id`` (its clone, writers' worktrees, run directory);
    the node's id."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    shutil.rmtree(node_scratch(node_id) / run_id, ignore_errors=True)
    return node_id


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], spec: Mapping[str, Any]
) -> Generator[tuple[str, Any], None, int]:
    """Start the command under its guard; stream its output; its returncode."""
    log_r, log_w = os.pipe()
    out_r, out_w = os.pipe() if spec["separate_stdout"] else (None, None)
    stdin = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, once the guard has it
    if spec["stdin"] is not None:
        stdin.write(spec["stdin"])
        stdin.seek(0)
    from claude_fanout.cluster import guard

    script = guard.__file__
    guarded = [sys.executable, "-I", "-S", script, str(os.getpid()), *argv]
    try:
        proc = procs.spawn_in_group(
            guarded,
            cwd=cwd,
            env=env,
            output_fd=log_w,
            stdin_fd=stdin.fileno() if spec["stdin"] is not None else None,
            stdout_fd=out_w,
        )
    finally:
        stdin.close()
        for fd in (log_w, out_w):
            if fd is not None:
                os.close(fd)
    try:
        pipes = {log_r: "log", **({out_r: "out"} if out_r is not None else {})}
        yield from _stream(pipes, ended=lambda: procs.reap(proc) is not None)
        returncode = procs.wait_child(proc, timeout_s=None)
    except BaseException:
        # Cancelled (ray.cancel raises KeyboardInterrupt here) or failing: the whole group goes,
        # SIGTERM first and SIGKILL after the grace period, before this worker moves on.
        procs.stop_groups([proc.pid], grace_s=spec["kill_grace_s"], settle_s=1.0)
        procs.wait_child(proc, timeout_s=1.0, kill=True)
        raise
    finally:
        # Whatever the guard left behind in its group goes with it.
        procs.signal_group(proc.pid, signal.SIGKILL)
        for fd in (log_r, out_r):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return returncode if returncode is not None else -signal.SIGKILL


def _stream(fds: dict[int, str], *, ended: Callable[[], bool]) -> Iterator[tuple[str, bytes]]:
    """Chunks of the pipes ``fds`` (fd -> item name) until every one is closed, or the command
    ended and a quiet moment passed (what it left running may hold a pipe open)."""
    selector = selectors.DefaultSelector()
    for fd in fds:
        selector.register(fd, selectors.EVENT_READ)
    open_fds = set(fds)
    try:
        while open_fds:
            ready = selector.select(timeout=0.5)
            if not ready and ended():
                return
            for key, _ in ready:
                chunk = os.read(key.fd, defaults.RAY_CHUNK_BYTES)
                if not chunk:
                    selector.unregister(key.fd)
                    open_fds.discard(key.fd)
                    continue
                yield fds[key.fd], chunk
    finally:
        selector.close()
