"""``procs`` is the only module that forks, spawns long-lived children, signals and waits: the
seam a test can replace and the one place a platform port has to touch. Read from the source
(its syntax tree), so a new ``os.kill`` anywhere else fails here, naming the file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import claude_fanout

SRC = Path(claude_fanout.__file__).parent
SEAM = SRC / "procs.py"

# Process control: forking, spawning, signalling, waiting, leaving a process.
OS_CALLS = frozenset(
    {
        "fork",
        "forkpty",
        "kill",
        "killpg",
        "waitpid",
        "wait",
        "wait3",
        "wait4",
        "waitid",
        "setsid",
        "setpgid",
        "_exit",
        "system",
        "popen",
        "posix_spawn",
        "posix_spawnp",
        *(f"exec{tail}" for tail in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
        *(f"spawn{tail}" for tail in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
    }
)
SIGNAL_CALLS = frozenset({"pthread_kill", "raise_signal", "alarm", "setitimer"})
# Methods of a child process object (subprocess.Popen, psutil.Process) that signal it.
SIGNALLING_METHODS = frozenset({"kill", "terminate", "send_signal", "communicate"})

# Each use outside the seam, by (file, call), and why it stays.
ALLOWED: dict[tuple[str, str], str] = {}


def process_control(path: Path) -> list[tuple[str, int]]:
    """(call, line) of every process-control call in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "signal"):
            for alias in node.names:
                if alias.name in OS_CALLS | SIGNAL_CALLS | {"Popen"}:
                    found.append((f"from {node.module} import {alias.name}", node.lineno))
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner, name = node.func.value, node.func.attr
        module = owner.id if isinstance(owner, ast.Name) else None
        if (
            (module == "os" and name in OS_CALLS)
            or (module == "signal" and name in SIGNAL_CALLS)
            or (module == "subprocess" and name == "Popen")
        ):
            found.append((f"{module}.{name}", node.lineno))
        elif module not in ("os", "signal", "subprocess") and name in SIGNALLING_METHODS:
            found.append((f".{name}()", node.lineno))
        elif module == "subprocess" and name == "run" and not _bounded(node):
            found.append(("subprocess.run without a timeout", node.lineno))
    return found


def _bounded(call: ast.Call) -> bool:
    return any(k.arg == "timeout" or k.arg is None for k in call.keywords)


def test_only_procs_forks_spawns_signals_and_waits() -> None:
    offending = []
    used = set()
    for path in sorted(SRC.rglob("*.py")):
        if path == SEAM:
            continue
        relative = path.relative_to(SRC).as_posix()
        for call, line in process_control(path):
            if (relative, call) in ALLOWED:
                used.add((relative, call))
                continue
            offending.append(f"{relative}:{line}: {call}")
    assert offending == [], "process control outside procs.py:\n" + "\n".join(offending)
    assert used == set(ALLOWED), f"allowed but no longer used: {set(ALLOWED) - used}"


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, signal, subprocess\n"
        "from os import killpg\n"
        "os.kill(1, signal.SIGTERM)\n"
        "pid = os.fork()\n"
        "subprocess.Popen(['true'])\n"
        "subprocess.run(['git', 'status'])\n"
        "subprocess.run(['git', 'status'], timeout=5)\n"
        "proc.terminate()\n"
        "event.wait(1.0)\n"
    )
    assert process_control(sample) == [
        ("from os import killpg", 2),
        ("os.kill", 3),
        ("os.fork", 4),
        ("subprocess.Popen", 5),
        ("subprocess.run without a timeout", 6),
        (".terminate()", 8),
    ]
