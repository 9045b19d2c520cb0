"""The one place that spawns, forks, signals and waits for processes (the platform seam):
nothing else in the package calls ``os.fork``, ``os.kill``, ``os.killpg``, ``os.waitpid`` or
``subprocess.Popen`` (``tests/unit/test_process_seam.py`` holds that). Which process is which
(pid + start time, liveness, scans) is ``pids.py``. Windows support belongs in these two.

A child that must not outlive its parent (a run's workers, a CLI the caller waits for) is started
with Linux's parent-death signal armed (:func:`die_with_parent`); where the OS has none, the next
fanout process that finds the run lost stops what is left (``runtime/watchdog.sweep_lost``).
"""

from __future__ import annotations

import os
import time

from claude_fanout import pids

# The runtime takes this module as its process seam (``runtime/task_run.ProcessSeam``), which
# also checks liveness: those two answers are pids.py's.
is_alive = pids.is_alive
process_start_time = pids.process_start_time

# Hook path: subprocess, typing and pathlib load only where spawning happens.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import IO, Any, AnyStr

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_prctl: Callable[..., int] | None = None


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once in the parent: the child between fork and exec must not
    load libraries (the dynamic loader takes locks another thread may have held at the fork)."""
    global _prctl  # noqa: PLW0603 - one lookup per process
    if _prctl is None:
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
        _prctl = function
    return _prctl


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when this process dies, or None where
    the OS offers no such thing (off Linux, and under ``FANOUT_PORTABLE``).

    Linux's ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not the
    process: armed only from the main thread, whose exit is the process's. It survives exec
    (not of a set-uid program) and is not inherited by the child's own children: what a worker
    starts is found by its session and environment instead (``runtime/watchdog.sweep_lost``).
    """
    import threading

    if not pids.linux_paths() or threading.current_thread() is not threading.main_thread():
        return None
    prctl = _load_prctl()
    if prctl is None:
        return None
    import signal

    parent = os.getpid()

    def arm() -> None:  # pragma: no cover - runs in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died before the signal was armed: then nobody will send it.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


def fork(child: Callable[[], None], *, new_group: bool = True) -> int:
    """Fork a copy of this process that runs ``child`` and exits (status 1 if it raised, never
    unwinding into the caller's code); returns the copy's pid. ``new_group``: the copy leads a
    process group of its own, so a killpg aimed at the caller's group spares it."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child, measured by integration tests
        code = 0
        try:
            if new_group:
                os.setpgid(0, 0)
            child()
        except BaseException:  # noqa: BLE001 - a forked child must never unwind into the parent's code
            code = 1
        os._exit(code)
    return pid


def reap_forked(pid: int, *, timeout_s: float, poll_s: float = 0.005) -> bool:
    """Reap the copy :func:`fork` made, waiting at most ``timeout_s``; True once it is reaped
    (or is not ours to wait for), False if it is still running."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def spawn_detached(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stderr_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, cut off from the caller's stdio.

    stdin/stdout go to /dev/null and no descriptor is inherited: a detached child holding a hook's
    stdout open keeps Claude Code waiting for it to exit (measured: 3.08 s instead of 0.08 s).
    """
    import subprocess

    err_fd = (
        os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if stderr_path is not None
        else subprocess.DEVNULL
    )
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_fd,
            close_fds=True,
            start_new_session=True,
        )
    finally:
        if isinstance(err_fd, int) and err_fd >= 0:
            os.close(err_fd)


def spawn_in_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output_fd: int,
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start a worker as the leader of its own process group, output to ``output_fd``.

    ``stdin_fd`` (default: nothing) and ``stdout_fd`` (default: ``output_fd``) are for a worker
    whose input and output are data, such as a ``claude`` CLI's prompt and stream. Its own group
    lets a timeout or cancel reach everything the worker started (killpg), and keeps a Ctrl-C in
    the caller's terminal from reaching it directly. It dies with the caller where the OS allows
    (:func:`die_with_parent`): a worker never outlives a SIGKILLed supervisor by much.
    """
    import subprocess

    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL if stdin_fd is None else stdin_fd,
        stdout=output_fd if stdout_fd is None else stdout_fd,
        stderr=output_fd,
        close_fds=True,
        process_group=0,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - armed from the main thread only
    )


def spawn_attached(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``argv`` as a child the caller waits for (:func:`finish`): in the caller's process
    group, so a Ctrl-C reaches both, and killed with the caller where the OS allows
    (:func:`die_with_parent`), so a killed ``fanout`` command leaves no Claude session running.
    ``stdin``/``stdout``/``stderr`` are what ``subprocess`` takes (a descriptor, a file, PIPE)."""
    import subprocess

    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=text,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - armed from the main thread only
    )


def finish(proc: subprocess.Popen[AnyStr], timeout_s: float | None) -> tuple[Any, Any, bool]:
    """Wait for ``proc`` (reading its pipes, if any) at most ``timeout_s``; SIGKILL it when the
    time runs out. ``(stdout, stderr, ended)``: ``ended`` is False when it had to be killed.
    Either way it is reaped."""
    import subprocess

    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return out, err, False
    finally:
        if proc.poll() is None:  # interrupted (KeyboardInterrupt): never leave it running
            proc.kill()
            proc.wait()
    return out, err, True


def run_bounded(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    stdin: bytes,
    timeout_s: float,
    grace_s: float = 1.0,
) -> tuple[int | None, bytes, bytes]:
    """Run ``argv`` to its end with ``stdin`` as input and its output captured, for at most
    ``timeout_s``: ``(returncode, stdout, stderr)``, returncode None when time ran out.

    It leads a session of its own, so one ``killpg`` reaches everything it started: on expiry
    the group gets SIGTERM, then SIGKILL after ``grace_s``; whatever the group still holds when
    the leader is gone is SIGKILLed too. The leader is always reaped: nothing outlives the call.
    """
    import signal
    import subprocess

    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # noqa: PLW1509 - armed from the main thread only
    )
    out = err = b""
    expired = False
    try:
        try:
            out, err = proc.communicate(stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            expired = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                signal_group(proc.pid, sig)
                try:
                    out, err = proc.communicate(timeout=grace_s)
                    break
                except subprocess.TimeoutExpired:
                    continue  # a descendant that left the group may hold the pipes: give up on them
    finally:
        # The group may outlive its leader (a daemonised helper); its id stays reserved while
        # it has members, so this cannot reach an unrelated process.
        signal_group(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return (None if expired else proc.returncode), out, err


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def signal_process(pid: int, start_time: float | None, sig: int) -> bool:
    """Signal ``pid`` only if it is still the process that started at ``start_time``."""
    if not pids.is_alive(pid, start_time):
        return False
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_groups(
    pgids: Sequence[int], *, grace_s: float, settle_s: float = 0.0, poll_s: float = 0.02
) -> list[int]:
    """SIGTERM every group, wait up to ``grace_s`` for them to go, SIGKILL the rest, then wait
    up to ``settle_s`` for those to be gone (a SIGKILLed process exits when it is next
    scheduled, not at the kill: a caller that reports "nothing left" waits for it).

    Returns the groups that needed SIGKILL. Blocking; the supervisor's own loop does this
    incrementally instead, this is for the last-resort paths (watchdog, the sweep of a lost run).
    """
    import signal

    live = [pgid for pgid in pgids if signal_group(pgid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        time.sleep(poll_s)
        live = [pgid for pgid in live if group_alive(pgid)]
    for pgid in live:
        signal_group(pgid, signal.SIGKILL)
    # A group stays signallable while a zombie member waits to be reaped (by init, once its
    # parent is gone: promptly or not, depending on what init is), so this wait ignores zombies.
    deadline = time.monotonic() + settle_s
    left = set(live)
    while left and time.monotonic() < deadline:
        time.sleep(poll_s)
        left = pids.groups_with_live_members(left)
    return live


def wait_child(
    proc: subprocess.Popen[Any], *, timeout_s: float | None, kill: bool = False
) -> int | None:
    """Wait at most ``timeout_s`` for ``proc`` to end: its returncode, or None if it is still
    running. ``kill``: then SIGKILL it and reap it instead (wait, kill, wait: bounded)."""
    import subprocess

    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if not kill:
            return None
    proc.kill()
    return proc.wait()


def reap(proc: subprocess.Popen[Any]) -> int | None:
    """Non-blocking: the exit status if ``proc`` has ended (reaping it), else None."""
    try:
        return proc.poll()
    except ChildProcessError:
        return None


def decode_returncode(returncode: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a Popen returncode (negative means killed by a signal)."""
    if returncode < 0:
        return None, -returncode
    return returncode, None


def signal_name(signum: int) -> str:
    try:
        import signal

        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def wake_self() -> None:
    """Wake this process's own loop (``runtime/scheduler``) as a child's exit would: SIGCHLD to
    itself, from a thread that learned something ended (the Ray backend's result pumps)."""
    import signal

    os.kill(os.getpid(), signal.SIGCHLD)


# -- a task's guard on a cluster node (``claude_fanout.cluster``) -------------------------------

# What the guard gets when the process that started it dies (its parent-death signal).
GUARD_DEATH_SIGNAL = 10  # SIGUSR1 on Linux


def guard(parent: int, argv: Sequence[str]) -> int:
    """Run ``argv`` in this process's group (this process leads it) and end as it ended (same
    exit status, or the same signal); when ``parent`` (the Ray worker that started the guard)
    dies, or this process is killed, SIGKILL the whole group at once, grandchildren included.

    Two processes: this one (the *outer* guard, the Ray worker's child) and a forked *inner* one,
    the command's parent. A parent-death signal reaches only a direct child, and a Ray worker
    that exits SIGKILLs its direct children (the outer guard) without a word: so each guard
    takes the group down when its own parent dies, and the inner one's parent is the outer one.
    SIGTERM and SIGINT sent to the group reach the command; the guards ignore them (no-op
    handlers, which the command's exec resets) and wait for the command to end.
    """
    import signal

    def down(_signum: int, _frame: object) -> None:  # pragma: no cover - a parent died
        os.killpg(0, signal.SIGKILL)

    def arm(expected_parent: int) -> None:
        signal.signal(GUARD_DEATH_SIGNAL, down)
        prctl = _load_prctl()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, GUARD_DEATH_SIGNAL, 0, 0, 0)
        if os.getppid() != expected_parent:  # it died before the signal was armed
            down(GUARD_DEATH_SIGNAL, None)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda _s, _f: None)
    arm(parent)
    outer = os.getpid()
    inner = os.fork()
    if inner == 0:  # pragma: no cover - the inner guard, measured by the Ray tests
        code = 1
        try:
            arm(outer)
            code = _run_as_guarded(argv)
        finally:
            os._exit(code)
    while True:
        try:
            _, status = os.waitpid(inner, 0)
            break
        except InterruptedError:
            continue
    return _end_as(os.waitstatus_to_exitcode(status))


def _run_as_guarded(argv: Sequence[str]) -> int:
    import subprocess
    import sys

    try:
        proc = subprocess.Popen(list(argv), close_fds=True)
    except OSError as exc:
        print(f"fanout: cannot start {argv[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return _end_as(proc.wait())


def _end_as(returncode: int) -> int:
    """``returncode`` to exit with; a negative one (killed by a signal) is re-raised on this
    process, so whoever waits for it sees the same signal."""
    import signal

    if returncode < 0:
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    return returncode
