"""Which process is which: a pid paired with its start time, liveness, names, ancestry (the
Conductor found by walking up from a hook), and scans of the process table by session or
environment; and the platform switch.

A pid alone never identifies a process: pids come back within seconds on a busy machine. Every
liveness check here pairs the pid with the process's start time. Nothing here acts on a process:
that is ``procs.py``. Stdlib only at import time (the hooks check liveness); psutil is loaded
lazily, and only on the portable path (macOS).

Linux-only paths (``/proc`` reads here, inotify in ``store/watch.py``) are taken only where
:func:`linux_paths` says so. ``FANOUT_PORTABLE=1`` in the environment turns them off, so a
Linux machine runs the code macOS runs (psutil, polling); children inherit it, so one variable
switches the hooks, the supervisor and its watchdog alike.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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


def groups_with_live_members(pgids: set[int]) -> set[int]:
    """Those of ``pgids`` that still have a member that is not a zombie (one process-table scan)."""
    if not linux_paths():
        return _portable_groups(lambda proc: os.getpgid(proc.pid) in pgids)
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        fields = _proc_stat(int(entry)) if entry.isdigit() else None
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) in pgids:
            found.add(int(fields[2]))
    return found
