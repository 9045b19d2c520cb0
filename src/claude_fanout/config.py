"""Project configuration: ``.claude/fanout.toml``, validated before anything uses it.

Every key is optional; defaults live in ``defaults.py``. The Stop hook reads it, so it is cheap
to load: ``Config`` is a namedtuple (a dataclass would pull in ``inspect``, 7 ms), and the
validated values are cached as JSON beside the run store (``.claude/runs/.config.json``, keyed on
the file's size and mtime), so ``tomllib`` (6-11 ms) is imported only after the file changed.

    [limits]
    max_live_workers = 8    # live workers per project, across all runs
    max_live_claude_workers = 4  # live `claude` workers per project, across all runs
    claude_start_interval_s = 0.2  # project-wide gap between two `claude` worker starts
    rate_limit_retries = 5  # a worker the API rate-limited (429/529) is retried this often...
    rate_limit_backoff_s = 10  # ...after 10, 20, 40 s (+-50% jitter); not counted as `retries`
    [budget]                # defaults for plans that set none; unset = no limit
    task_max_cost_usd = 2.0 # a `claude` worker is stopped past this (marked over_budget)
    task_max_turns = 50
    run_max_cost_usd = 10.0 # once a run's workers spent this, nothing more starts
    run_max_turns = 400
    [worktree]
    setup = "npm ci"        # run (sh -c) in each new worktree of a `write: true` task first
    [merge]
    auto = true             # merge writers' branches into the working tree when a run ends
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
    [planner]               # `/fanout <instruction>` with no paths: Claude splits it into a plan
    timeout_s = 90          # the planner (its whole process group) is stopped after this; 1-300
    max_tasks = 8           # tasks one planned run may have; 1-64
    max_turns = 12          # the planner session's turn limit (each look at the repo is a turn)
    model = ""              # the planner's model ("" = Claude Code's default), e.g. "sonnet"

    [[triggers]]            # prompt patterns mapped to plan templates; the first match wins
    pattern = "^review (?P<target>\\S+)$"   # Python regex, re.search'ed against the text
    plan = ".claude/fanout/review.json"      # a v1 plan file, relative to the project
    scope = "fanout"        # "fanout" (default): only the instruction of a `/fanout <instruction>`
                            # request without paths, instead of asking the planner; "all": every
                            # prompt the Conductor submits too, so a plain prompt starts workers

A trigger's plan is a template: in each task's ``prompt`` and ``claims``, ``{prompt}`` becomes
the matched text (the instruction, or the whole plain prompt) and ``{NAME}`` the named group
NAME (empty when it did not take part); other braces are left alone. The result is validated
like any plan. Triggers apply to plain prompts only with ``scope = "all"``, so nothing fans out
by surprise; `/fanout <instruction> -- <paths>` and `/fanout --plan FILE` never consult them.
"""

from __future__ import annotations

import os
import re
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
    "planner_timeout_s": defaults.PLANNER_TIMEOUT_S,
    "planner_max_tasks": defaults.PLANNER_MAX_TASKS,
    "planner_max_turns": defaults.PLANNER_MAX_TURNS,
    "planner_model": "",
    "triggers": (),
    "max_live_claude_workers": defaults.MAX_LIVE_CLAUDE_WORKERS,
    "claude_start_interval_s": defaults.CLAUDE_START_INTERVAL_S,
    "rate_limit_retries": defaults.RATE_LIMIT_RETRIES,
    "rate_limit_backoff_s": defaults.RATE_LIMIT_BACKOFF_S,
    "task_max_cost_usd": None,
    "task_max_turns": None,
    "run_max_cost_usd": None,
    "run_max_turns": None,
    "worktree_setup": "",
    "merge_auto": True,
}
# Fields whose default is "no limit" (None): an amount, or a whole number.
_OPTIONAL_NUMBERS = {
    "task_max_cost_usd": float,
    "task_max_turns": int,
    "run_max_cost_usd": float,
    "run_max_turns": int,
}
DELIVERY_MODES = ("auto", "block", "rewake")
TRIGGER_SCOPES = ("fanout", "all")
_TRIGGER_KEYS = ("pattern", "plan", "scope")
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
        planner_timeout_s: float = defaults.PLANNER_TIMEOUT_S
        planner_max_tasks: int = defaults.PLANNER_MAX_TASKS
        planner_max_turns: int = defaults.PLANNER_MAX_TURNS
        planner_model: str = ""
        triggers: tuple[Trigger, ...] = ()
        max_live_claude_workers: int = defaults.MAX_LIVE_CLAUDE_WORKERS
        claude_start_interval_s: float = defaults.CLAUDE_START_INTERVAL_S
        rate_limit_retries: int = defaults.RATE_LIMIT_RETRIES
        rate_limit_backoff_s: float = defaults.RATE_LIMIT_BACKOFF_S
        task_max_cost_usd: float | None = None
        task_max_turns: int | None = None
        run_max_cost_usd: float | None = None
        run_max_turns: int | None = None
        worktree_setup: str = ""
        merge_auto: bool = True

    class Trigger(NamedTuple):
        pattern: str
        plan: str
        scope: str = "fanout"

else:
    Config = namedtuple("Config", list(_FIELDS), defaults=list(_FIELDS.values()))
    Trigger = namedtuple("Trigger", _TRIGGER_KEYS, defaults=("fanout",))


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
    ("planner", "timeout_s"): ("planner_timeout_s", 1),
    ("planner", "max_tasks"): ("planner_max_tasks", 1),
    ("planner", "max_turns"): ("planner_max_turns", 1),
    ("planner", "model"): ("planner_model", 0),
    ("limits", "max_live_claude_workers"): ("max_live_claude_workers", 1),
    ("limits", "claude_start_interval_s"): ("claude_start_interval_s", 0),
    ("limits", "rate_limit_retries"): ("rate_limit_retries", 0),
    ("limits", "rate_limit_backoff_s"): ("rate_limit_backoff_s", 0),
    ("budget", "task_max_cost_usd"): ("task_max_cost_usd", 0),
    ("budget", "task_max_turns"): ("task_max_turns", 1),
    ("budget", "run_max_cost_usd"): ("run_max_cost_usd", 0),
    ("budget", "run_max_turns"): ("run_max_turns", 1),
    ("worktree", "setup"): ("worktree_setup", 0),
    ("merge", "auto"): ("merge_auto", 0),
}
# Upper bounds, where there is one.
_MAXIMA: dict[str, float] = {
    "planner_timeout_s": defaults.PLANNER_MAX_TIMEOUT_S,
    "planner_max_tasks": defaults.PLANNER_TASK_LIMIT,
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
            sections: dict[str, dict[str, object]] = {}
            for (table, name), (field, _) in _KEYS.items():
                if cached["config"].get(field) is not None:  # None: "no limit", the default
                    sections.setdefault(table, {})[name] = cached["config"][field]
            tables: dict[str, object] = dict(sections)
            if cached["config"].get("triggers"):
                tables["triggers"] = cached["config"]["triggers"]
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
        cached_config = config._asdict()
        cached_config["triggers"] = [t._asdict() for t in config.triggers]
        write_json_atomic(cache, {"key": key, "config": cached_config})
    except (OSError, UnsafePathError):
        pass
    return config


def parse_config(data: Mapping[str, object], *, source: str = CONFIG_FILE) -> Config:
    values: dict[str, object] = {}
    for table, content in data.items():
        if table == "triggers":
            values["triggers"] = _parse_triggers(content, source)
            continue
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
            if name == "planner_model":
                if not isinstance(value, str) or value != value.strip() or "\0" in value:
                    raise ConfigError(
                        f'{source}: {table}.{key} must be a model name, or "" for the default'
                    )
                values[name] = value
                continue
            if name == "worktree_setup":
                if not isinstance(value, str) or "\0" in value:
                    raise ConfigError(f"{source}: {table}.{key} must be a shell command (a string)")
                values[name] = value
                continue
            if name == "merge_auto":
                if not isinstance(value, bool):
                    raise ConfigError(f"{source}: {table}.{key} must be true or false")
                values[name] = value
                continue
            optional = _OPTIONAL_NUMBERS.get(name)
            if optional is not None:
                whole = optional is int
                good = isinstance(value, int) if whole else isinstance(value, int | float)
                if isinstance(value, bool) or not good or not value > 0:
                    kind = "a whole number" if whole else "an amount of US dollars"
                    raise ConfigError(f"{source}: {table}.{key} must be {kind} > 0")
                values[name] = value if whole else float(value)
                continue
            want_int = isinstance(_FIELDS[name], int)
            ok = isinstance(value, int) if want_int else isinstance(value, int | float)
            kind = "a whole number" if want_int else "a number"
            if isinstance(value, bool) or not ok or value < minimum:
                raise ConfigError(f"{source}: {table}.{key} must be {kind} >= {minimum:g}")
            maximum = _MAXIMA.get(name)
            if maximum is not None and value > maximum:
                raise ConfigError(
                    f"{source}: {table}.{key} must be {kind} from {minimum:g} to {maximum:g}"
                )
            values[name] = value if want_int else float(value)
    return Config(**values)  # type: ignore[arg-type]


def _parse_triggers(value: object, source: str) -> tuple[Trigger, ...]:
    """``[[triggers]]`` tables, each checked before anything uses it; errors name the key."""
    if not isinstance(value, list):
        raise ConfigError(
            f"{source}: triggers must be an array of tables ([[triggers]] with pattern and plan)"
        )
    triggers = []
    for number, item in enumerate(value, 1):
        where = f"{source}: [[triggers]] #{number}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table with pattern and plan")
        for key in item:
            if key not in _TRIGGER_KEYS:
                raise ConfigError(
                    f"{where}: unknown key triggers.{key} (known: {', '.join(_TRIGGER_KEYS)})"
                )
        pattern, plan, scope = item.get("pattern"), item.get("plan"), item.get("scope", "fanout")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}: triggers.pattern must be a regular expression (a string)")
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise ConfigError(
                f"{where}: triggers.pattern is not a valid Python regular expression ({exc})"
            ) from None
        if not isinstance(plan, str) or not plan or "\0" in plan:
            raise ConfigError(f"{where}: triggers.plan must be the path of a plan file")
        norm = os.path.normpath(plan)
        if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
            raise ConfigError(
                f"{where}: triggers.plan must be a path inside the project, relative to it"
            )
        if scope not in TRIGGER_SCOPES:
            raise ConfigError(f"{where}: triggers.scope must be one of {', '.join(TRIGGER_SCOPES)}")
        triggers.append(Trigger(pattern, plan, scope))
    return tuple(triggers)
