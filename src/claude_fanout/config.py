"""Project configuration: ``.claude/fanout.toml``, validated before anything uses it.

Every key is optional; defaults live in ``defaults.py``. Read only where its cost is paid once
(the supervisor, the Stop and UserPromptSubmit hooks): ``tomllib`` alone costs 11 ms to import,
so the file is parsed only when it exists.

    [limits]
    max_live_workers = 8    # live workers per project, across all runs
    [stop]
    wait_s = 120            # one Stop hook waits this long for workers before reporting progress
    max_blocks = 6          # Stop blocks per turn (Claude Code itself gives up after 8)
    max_hold_s = 1800       # total time one turn may be held at Stop
    [conductor]
    grace_s = 5             # a run outlives its dead Conductor this long (time to --resume)
    max_depth = 1           # fanout hooks do nothing in sessions this deep (workers are depth 1)
    [inject]
    max_chars = 4000        # cap on the text one hook injects into the Conductor's context
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from claude_fanout import defaults
from claude_fanout.errors import FanoutError

CONFIG_FILE = os.path.join(".claude", "fanout.toml")


class ConfigError(FanoutError):
    exit_code = 2


@dataclass(frozen=True, kw_only=True)
class Config:
    max_live_workers: int = defaults.MAX_LIVE_WORKERS
    stop_wait_s: float = defaults.STOP_WAIT_S
    stop_max_blocks: int = defaults.STOP_MAX_BLOCKS
    stop_max_hold_s: float = defaults.STOP_MAX_HOLD_S
    conductor_grace_s: float = defaults.CONDUCTOR_GRACE_S
    max_depth: int = defaults.MAX_DEPTH
    inject_max_chars: int = defaults.INJECT_MAX_CHARS


# (table, key) in the TOML file -> Config field, and the smallest value allowed.
_KEYS: dict[tuple[str, str], tuple[str, float]] = {
    ("limits", "max_live_workers"): ("max_live_workers", 1),
    ("stop", "wait_s"): ("stop_wait_s", 0),
    ("stop", "max_blocks"): ("stop_max_blocks", 0),
    ("stop", "max_hold_s"): ("stop_max_hold_s", 0),
    ("conductor", "grace_s"): ("conductor_grace_s", 0),
    ("conductor", "max_depth"): ("max_depth", 1),
    ("inject", "max_chars"): ("inject_max_chars", 500),
}


def load_config(project: str | os.PathLike[str]) -> Config:
    """The project's configuration; defaults when the file does not exist."""
    path = os.path.join(os.fspath(project), CONFIG_FILE)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    return parse_config(data, source=path)


def parse_config(data: dict[str, object], *, source: str = CONFIG_FILE) -> Config:
    types = {f.name: f.type for f in fields(Config)}
    values: dict[str, object] = {}
    for table, content in data.items():
        if not isinstance(content, dict):
            raise ConfigError(f"{source}: [{table}] must be a table")
        for key, value in content.items():
            spec = _KEYS.get((table, key))
            if spec is None:
                known = ", ".join(f"{t}.{k}" for t, k in _KEYS)
                raise ConfigError(f"{source}: unknown key {table}.{key} (known: {known})")
            name, minimum = spec
            want_int = types[name] == "int"
            ok = isinstance(value, int) if want_int else isinstance(value, int | float)
            if isinstance(value, bool) or not ok or value < minimum:
                kind = "a whole number" if want_int else "a number"
                raise ConfigError(f"{source}: {table}.{key} must be {kind} >= {minimum:g}")
            values[name] = value if want_int else float(value)
    return Config(**values)  # type: ignore[arg-type]
