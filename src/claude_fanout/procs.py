"""The one place that spawns, signals, waits for and identifies processes (the platform seam).

A pid alone never identifies a process: pids come back within seconds on a busy machine. Every
liveness check here pairs the pid with the process's start time. Stdlib only at import time;
psutil is loaded lazily, and only on the portable path (macOS). Windows support belongs here.

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
    me = os.getpid()
    if not linux_paths():
        return _portable_groups(lambda proc: proc.environ().get(name) == value, skip=me)
    needle = f"{name}={value}".encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
            if needle in environ.split(b"\0"):
                found.add(os.getpgid(int(entry)))
        except OSError:
            continue
    return found


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


def _portable_groups(match: Callable[[psutil.Process], bool], *, skip: int = 0) -> set[int]:
    """Process groups of the live processes ``match`` accepts (psutil; not the hook path)."""
    try:
        psutil = _psutil()
    except ImportError:
        return set()  # the watchdog still stops every group it was told about
    found: set[int] = set()
    for proc in psutil.process_iter():
        if proc.pid == skip:
            continue
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
    the caller's terminal from reaching it directly.
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
    )


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


def stop_groups(pgids: Sequence[int], *, grace_s: float, poll_s: float = 0.02) -> list[int]:
    """SIGTERM every group, wait up to ``grace_s`` for them to go, SIGKILL the rest.

    Returns the groups that needed SIGKILL. Blocking; the supervisor's own loop does this
    incrementally instead, this is for the last-resort paths (watchdog, gc).
    """
    import signal

    live = [pgid for pgid in pgids if signal_group(pgid, signal.SIGTERM)]
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        time.sleep(poll_s)
        live = [pgid for pgid in live if group_alive(pgid)]
    for pgid in live:
        signal_group(pgid, signal.SIGKILL)
    return live


def reap(proc: subprocess.Popen[bytes]) -> int | None:
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
