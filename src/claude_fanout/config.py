"""Project configuration: ``.claude/fanout.toml``, validated before anything uses it.

Every key is optional; defaults live in ``defaults.py``. The Stop hook reads it, so it is cheap
to load: ``Config`` is a namedtuple (a dataclass would pull in ``inspect``, 7 ms), and the
validated values are cached as JSON beside the run store (``.claude/runs/.config.json``, keyed on
the file's size and mtime), so ``tomllib`` (6-11 ms) is imported only after the file changed.

    [limits]
    max_live_workers = 8    # live workers per project, across all runs
    [stop]
    wait_s = 300            # one Stop hook waits this long for workers before reporting progress
    max_blocks = 6          # Stop blocks per turn (Claude Code itself gives up after 8)
    max_hold_s = 1800       # total time one turn may be held at Stop
    [conductor]
    grace_s = 5             # a run outlives its dead Conductor this long (time to --resume)
    max_depth = 1           # fanout hooks do nothing in sessions this deep (workers are depth 1)
    [inject]
    max_chars = 4000        # cap on the text one hook injects into the Conductor's context
    [delivery]
    mode = "auto"           # block: hold Stop; rewake: let the turn end, wake it with results;
                            # auto: rewake for interactive sessions, block for -p / SDK ones
    rewake_max_wait_s = 7200  # how long a pending wake waits for the workers
"""

from __future__ import annotations

import os
from collections import namedtuple

from claude_fanout import defaults
from claude_fanout.errors import FanoutError
from claude_fanout.store import layout

CONFIG_FILE = os.path.join(".claude", "fanout.toml")


class ConfigError(FanoutError):
    exit_code = 2


_FIELDS = {
    "max_live_workers": defaults.MAX_LIVE_WORKERS,
    "stop_wait_s": defaults.STOP_WAIT_S,
    "stop_max_blocks": defaults.STOP_MAX_BLOCKS,
    "stop_max_hold_s": defaults.STOP_MAX_HOLD_S,
    "conductor_grace_s": defaults.CONDUCTOR_GRACE_S,
    "max_depth": defaults.MAX_DEPTH,
    "inject_max_chars": defaults.INJECT_MAX_CHARS,
    "delivery": defaults.DELIVERY,
    "rewake_max_wait_s": defaults.REWAKE_MAX_WAIT_S,
}
DELIVERY_MODES = ("auto", "block", "rewake")
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import NamedTuple

    class Config(NamedTuple):
        max_live_workers: int = defaults.MAX_LIVE_WORKERS
        stop_wait_s: float = defaults.STOP_WAIT_S
        stop_max_blocks: int = defaults.STOP_MAX_BLOCKS
        stop_max_hold_s: float = defaults.STOP_MAX_HOLD_S
        conductor_grace_s: float = defaults.CONDUCTOR_GRACE_S
        max_depth: int = defaults.MAX_DEPTH
        inject_max_chars: int = defaults.INJECT_MAX_CHARS
        delivery: str = defaults.DELIVERY
        rewake_max_wait_s: float = defaults.REWAKE_MAX_WAIT_S

else:
    Config = namedtuple("Config", list(_FIELDS), defaults=list(_FIELDS.values()))


# (table, key) in the TOML file -> Config field, and the smallest value allowed.
_KEYS: dict[tuple[str, str], tuple[str, float]] = {
    ("limits", "max_live_workers"): ("max_live_workers", 1),
    ("stop", "wait_s"): ("stop_wait_s", 0),
    ("stop", "max_blocks"): ("stop_max_blocks", 0),
    ("stop", "max_hold_s"): ("stop_max_hold_s", 0),
    ("conductor", "grace_s"): ("conductor_grace_s", 0),
    ("conductor", "max_depth"): ("max_depth", 1),
    ("inject", "max_chars"): ("inject_max_chars", 500),
    ("delivery", "mode"): ("delivery", 0),
    ("delivery", "rewake_max_wait_s"): ("rewake_max_wait_s", 1),
}


def load_config(project: str | os.PathLike[str]) -> Config:
    """The project's configuration; defaults when the file does not exist."""
    path = os.path.join(os.fspath(project), CONFIG_FILE)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    key = [st.st_size, st.st_mtime_ns]
    cache = os.path.join(layout.runs_root(project), ".config.json")
    try:
        from claude_fanout.store.files import read_json

        cached = read_json(cache)
        if cached["key"] == key:
            # Validated again like the file itself: a cache is never trusted more than it.
            tables: dict[str, dict[str, object]] = {}
            for (table, name), (field, _) in _KEYS.items():
                if field in cached["config"]:
                    tables.setdefault(table, {})[name] = cached["config"][field]
            return parse_config(tables, source=cache)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError):
        pass
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    import tomllib

    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    config = parse_config(data, source=path)
    from claude_fanout.errors import UnsafePathError
    from claude_fanout.store.files import check_private_dir, write_json_atomic

    try:  # only a cache, and only in a run store that is really ours
        check_private_dir(layout.runs_root(project))
        write_json_atomic(cache, {"key": key, "config": config._asdict()})
    except (OSError, UnsafePathError):
        pass
    return config


def parse_config(data: Mapping[str, object], *, source: str = CONFIG_FILE) -> Config:
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
            if name == "delivery":
                if value not in DELIVERY_MODES:
                    raise ConfigError(
                        f"{source}: {table}.{key} must be one of {', '.join(DELIVERY_MODES)}"
                    )
                values[name] = value
                continue
            want_int = isinstance(_FIELDS[name], int)
            ok = isinstance(value, int) if want_int else isinstance(value, int | float)
            if isinstance(value, bool) or not ok or value < minimum:
                kind = "a whole number" if want_int else "a number"
                raise ConfigError(f"{source}: {table}.{key} must be {kind} >= {minimum:g}")
            values[name] = value if want_int else float(value)
    return Config(**values)  # type: ignore[arg-type]
