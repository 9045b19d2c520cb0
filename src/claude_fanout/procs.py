"""The one place that spawns, forks, signals, waits for and identifies processes (the platform
seam): nothing else in the package calls ``os.fork``, ``os.kill``, ``os.killpg``, ``os.waitpid``
or ``subprocess.Popen`` (``tests/unit/test_process_seam.py`` holds that).

A pid alone never identifies a process: pids come back within seconds on a busy machine. Every
liveness check here pairs the pid with the process's start time. Stdlib only at import time;
psutil is loaded lazily, and only on the portable path (macOS). Windows support belongs here.

A child that must not outlive its parent (a run's workers, a CLI the caller waits for) is started
with Linux's parent-death signal armed (:func:`die_with_parent`); where the OS has none, the next
fanout process that finds the run lost stops what is left (``runtime/watchdog.sweep_lost``).

Linux-only paths (``/proc`` reads here, inotify in ``store/watch.py``) are taken only where
:func:`linux_paths` says so. ``FANOUT_PORTABLE=1`` in the environment turns them off, so a
Linux machine runs the code macOS runs (psutil, polling); children inherit it, so one variable
switches the hooks, the supervisor and its watchdog alike.
"""

from __future__ import annotations

import os
import time

# Hook path (liveness checks): subprocess, typing and pathlib load only where spawning happens.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from types import ModuleType
    from typing import IO, Any, AnyStr

    import psutil

PORTABLE_ENV = "FANOUT_PORTABLE"
_HAS_PROC = os.path.isdir("/proc/self")


def linux_paths() -> bool:
    """Whether to take the Linux-only paths: ``/proc`` is there and ``FANOUT_PORTABLE`` is unset
    (or ``0``). Read at each call, so a test can switch a process it has already imported."""
    return _HAS_PROC and os.environ.get(PORTABLE_ENV, "0") in ("", "0")


def _psutil() -> ModuleType:
    """psutil, for the portable path. A hook runs as ``python -I -S``: only this package's parent
    directory is on sys.path, and where psutil is not beside it (an editable install, or a
    distribution's split of packages) this interpreter's site-packages are appended: its venv's
    if it runs in one (without site, ``sys.prefix`` names the base interpreter, not the venv)."""
    try:
        import psutil
    except ImportError:
        import site
        import sys

        bin_dir = os.path.dirname(os.path.abspath(sys.executable))
        venvs = [
            root
            for root in (os.path.dirname(bin_dir), bin_dir)
            if os.path.isfile(os.path.join(root, "pyvenv.cfg"))
        ]
        prefixes = venvs[:1] or [sys.prefix]
        missing = [path for path in site.getsitepackages(prefixes) if path not in sys.path]
        if not missing:
            raise
        sys.path.extend(missing)
        import psutil
    return psutil


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces and parens)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def process_start_time(pid: int) -> float | None:
    """An identity token for ``pid``: its start time (clock ticks since boot on Linux).

    None when no such process exists (or it is a zombie, which is as good as gone).
    """
    if pid <= 0:
        return None
    if linux_paths():
        fields = _proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            return None
        return float(fields[19])
    try:
        psutil = _psutil()
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except Exception:  # noqa: BLE001 - any failure means "cannot prove it is alive"
        return None


def is_alive(pid: int | None, start_time: float | None) -> bool:
    """True when ``pid`` is running and is the same process that started at ``start_time``."""
    if not pid or start_time is None:
        return False
    return process_start_time(pid) == start_time


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"})


def process_name(pid: int) -> str | None:
    if linux_paths():
        try:
            with open(f"/proc/{pid}/comm", "rb") as handle:
                return handle.read().decode("utf-8", "replace").strip()
        except OSError:
            return None
    try:
        return str(_psutil().Process(pid).name())
    except Exception:  # noqa: BLE001
        return None


def find_conductor(start_pid: int | None = None) -> tuple[int, float] | None:
    """(pid, start time) of the Claude Code process that ran this hook.

    ``$CLAUDE_PID`` when Claude Code set it; else walk up: Claude Code runs a hook through
    ``/bin/sh -c``, so the hook's parent may be ``sh`` (or, when the command ``exec``s, Claude
    Code itself), and the first ancestor that is not a shell is the Conductor.
    """
    if start_pid is None:
        # Claude Code (2.1.x) tells its hooks its own pid; trust it only if it is alive.
        claimed = os.environ.get("CLAUDE_PID", "")
        if claimed.isdigit():
            start = process_start_time(int(claimed))
            if start is not None:
                return int(claimed), start
    pid = os.getppid() if start_pid is None else start_pid
    for _ in range(8):
        if pid <= 1:
            return None
        name = process_name(pid)
        if name is None:
            return None
        if name not in _SHELLS:
            start = process_start_time(pid)
            return None if start is None else (pid, start)
        parent = parent_pid(pid)
        if parent is None:
            return None
        pid = parent
    return None


def groups_with_env(name: str, value: str) -> set[int]:
    """Process groups of this user's live processes whose environment has ``name=value``.

    This is how the watchdog finds workers the supervisor started but died before telling it
    about. Linux: ``/proc/<pid>/environ``; elsewhere psutil (macOS reads another process's
    environment too, as long as it is the same user's).
    """
    found: set[int] = set()
    for pid, seen in processes_with_env(name).items():
        if seen == value:
            try:
                found.add(os.getpgid(pid))
            except OSError:
                continue  # gone meanwhile
    return found


def processes_with_env(name: str) -> dict[int, str]:
    """pid -> the value of ``name`` for this user's live processes that have it in their
    environment (this process left out)."""
    me = os.getpid()
    found: dict[int, str] = {}
    if not linux_paths():
        try:
            psutil = _psutil()
        except ImportError:
            return found  # the watchdog still stops every group it was told about
        for proc in psutil.process_iter():
            try:
                if proc.pid != me and proc.status() != psutil.STATUS_ZOMBIE:
                    value = proc.environ().get(name)
                    if value is not None:
                        found[proc.pid] = value
            except (psutil.Error, OSError):
                continue  # gone meanwhile, or not ours to read
        return found
    prefix = os.fsencode(name) + b"="
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found[int(entry)] = os.fsdecode(item[len(prefix) :])
                break
    return found


def command_line(pid: int) -> str | None:
    """``pid``'s command line, words joined by spaces; None when it cannot be read."""
    if linux_paths():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                words = handle.read().split(b"\0")
        except OSError:
            return None
        return " ".join(os.fsdecode(word) for word in words if word)
    try:
        return " ".join(_psutil().Process(pid).cmdline())
    except Exception:  # noqa: BLE001
        return None


def groups_in_session(sid: int) -> set[int]:
    """Process groups of the live processes in session ``sid``.

    Session membership is inherited at fork, before exec: a worker caught between the two
    already belongs to its supervisor's session, though its environment is not yet its own.
    """
    if not linux_paths():
        return _portable_groups(lambda proc: os.getsid(proc.pid) == sid)
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields and fields[0] not in ("Z", "X") and fields[3] == str(sid):
            found.add(int(fields[2]))
    return found


def _portable_groups(match: Callable[[psutil.Process], bool]) -> set[int]:
    """Process groups of the live processes ``match`` accepts (psutil)."""
    try:
        psutil = _psutil()
    except ImportError:
        return set()  # the watchdog still stops every group it was told about
    found: set[int] = set()
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and match(proc):
                found.add(os.getpgid(proc.pid))
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def parent_pid(pid: int) -> int | None:
    if linux_paths():
        fields = _proc_stat(pid)
        return int(fields[1]) if fields else None
    try:
        return int(_psutil().Process(pid).ppid())
    except Exception:  # noqa: BLE001
        return None


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

    if not linux_paths() or threading.current_thread() is not threading.main_thread():
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
    if not is_alive(pid, start_time):
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
        left = _groups_with_live_members(left)
    return live


def _groups_with_live_members(pgids: set[int]) -> set[int]:
    """Those of ``pgids`` that still have a member that is not a zombie (one process-table scan)."""
    if not linux_paths():
        return _portable_groups(lambda proc: os.getpgid(proc.pid) in pgids)
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        fields = _proc_stat(int(entry)) if entry.isdigit() else None
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) in pgids:
            found.add(int(fields[2]))
    return found


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
