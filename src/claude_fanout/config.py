"""Project configuration: ``.claude/fanout.toml``, validated before anything uses it.

Every key is optional, and each is declared once, in ``Config`` below: its type, its table and
default (``defaults.py``), its bounds and what it does. The fields of ``Config``, the parsing and
validation of the file, its cache and the documented example (``example()``, the block in
docs/cli.md) all come from that one declaration.

The Stop hook reads the configuration, so it is cheap to load: ``Config`` is a namedtuple at run
time (a dataclass would pull in ``inspect``, 7 ms; ``typing.NamedTuple`` is what type checkers
see), and the validated values are cached as JSON beside the run store
(``.claude/runs/.config.json``, keyed on the file's size and mtime), so ``tomllib`` (6-11 ms) is
imported only after the file changed.

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
DELIVERY_MODES = ("auto", "block", "rewake")
TRIGGER_SCOPES = ("fanout", "all")
_TRIGGER_KEYS = ("pattern", "plan", "scope")


class ConfigError(FanoutError):
    exit_code = 2


class Key:
    """One key of the file: where it sits, its default, its bounds and what it does."""

    __slots__ = (
        "choices",
        "default",
        "doc",
        "example",
        "field",
        "key",
        "kind",
        "maximum",
        "minimum",
        "must",
        "table",
    )

    def __init__(
        self,
        table: str,
        key: str,
        default: object,
        doc: str,
        *,
        minimum: float = 0,
        maximum: float | None = None,
        choices: tuple[str, ...] = (),
        must: str = "",
        example: str | None = None,
    ) -> None:
        self.table, self.key, self.default, self.doc = table, key, default, doc
        self.minimum, self.maximum, self.choices = minimum, maximum, choices
        # For a string: what it must be, said in the error ("a shell command (a string)").
        self.must = must
        # The value shown in the documented example, when it is not the default.
        self.example = example
        self.field = ""  # set from the declaration below
        self.kind = ""  # the field's type: int, float, str, bool, "int | None", "float | None"


def declare(table: str, name: str, default: object, doc: str, **bounds: Any) -> Any:
    """A key's declaration, as the default of its ``Config`` field (typed by the field)."""
    return Key(table, name, default, doc, **bounds)


# What each table is for, in the documented example.
_TABLES = {
    "limits": "",
    "executor": "where workers run (the Ray backend needs `pip install claude-fanout[ray]`)",
    "budget": "defaults for plans that set none; unset = no limit",
    "worktree": "",
    "merge": "",
    "stop": "",
    "conductor": "",
    "inject": "",
    "delivery": "",
    "planner": "`/fanout <instruction>` with no paths: Claude splits it into a plan",
}
TRIGGERS_EXAMPLE = """\
[[triggers]]            # prompt patterns mapped to plan templates; the first match wins
pattern = '^review (?P<target>\\S+)$'   # Python regex, searched in the text
plan = ".claude/fanout/review.json"    # a v1 plan file, relative to the project
scope = "fanout"        # "fanout" (default): only `/fanout <instruction>` without paths, instead
                        # of the planner; "all": plain prompts too (fan-out without /fanout)"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any
    from typing import NamedTuple as _Declared

    class Trigger(_Declared):
        pattern: str
        plan: str
        scope: str = "fanout"

else:
    _Declared = object
    Trigger = namedtuple("Trigger", _TRIGGER_KEYS, defaults=("fanout",))


class Config(_Declared):
    """The project's configuration: every key of ``.claude/fanout.toml``, declared once."""

    max_live_workers: int = declare(
        "limits", "max_live_workers", defaults.MAX_LIVE_WORKERS,
        "live workers per project, across all runs", minimum=1,
    )  # fmt: skip
    max_live_claude_workers: int = declare(
        "limits", "max_live_claude_workers", defaults.MAX_LIVE_CLAUDE_WORKERS,
        "live `claude` workers per project, across all runs", minimum=1,
    )  # fmt: skip
    claude_start_interval_s: float = declare(
        "limits", "claude_start_interval_s", defaults.CLAUDE_START_INTERVAL_S,
        "project-wide gap between two `claude` worker starts",
    )  # fmt: skip
    rate_limit_retries: int = declare(
        "limits", "rate_limit_retries", defaults.RATE_LIMIT_RETRIES,
        "a worker the API rate-limited (429/529) after the CLI's own retries",
    )  # fmt: skip
    rate_limit_backoff_s: float = declare(
        "limits", "rate_limit_backoff_s", defaults.RATE_LIMIT_BACKOFF_S,
        "waits 10, 20, 40 s ... (+-50% jitter); not counted as `retries`",
    )  # fmt: skip
    backend: str = declare(
        "executor", "backend", defaults.BACKEND,
        "local: children of the supervisor; ray: tasks on a Ray cluster's\n"
        "nodes (`fanout run --backend` overrides it per run)",
        choices=defaults.BACKENDS,
    )  # fmt: skip
    ray_address: str = declare(
        "executor", "address", defaults.RAY_ADDRESS,
        '"auto" (a cluster started here with `ray start`) or "ray://host:port"',
        must='"auto" or a Ray address such as "ray://head:10001"',
    )  # fmt: skip
    ray_ship: bool = declare(
        "executor", "ship", defaults.RAY_SHIP,
        "ray: ship this machine's claude-fanout and Claude Code CLI to the\n"
        "nodes; false: the nodes have both installed",
    )  # fmt: skip
    task_max_cost_usd: float | None = declare(
        "budget", "task_max_cost_usd", None,
        "a `claude` worker is stopped past this (over_budget)",
        must="an amount of US dollars", example="2.0",
    )  # fmt: skip
    task_max_turns: int | None = declare("budget", "task_max_turns", None, "", example="50")
    run_max_cost_usd: float | None = declare(
        "budget", "run_max_cost_usd", None,
        "once a run's workers (running ones too) have spent this, they stop; nothing more starts",
        must="an amount of US dollars", example="10.0",
    )  # fmt: skip
    run_max_turns: int | None = declare("budget", "run_max_turns", None, "", example="400")
    worktree_setup: str = declare(
        "worktree", "setup", "",
        "run (sh -c) in each new worktree of a `write: true` task, first",
        must="a shell command (a string)", example='"npm ci"',
    )  # fmt: skip
    merge_auto: bool = declare(
        "merge", "auto", True,
        "merge writers' branches into the working tree when a run ends",
    )  # fmt: skip
    stop_wait_s: float = declare(
        "stop", "wait_s", defaults.STOP_WAIT_S,
        "one Stop hook waits this long for workers before reporting progress",
    )  # fmt: skip
    stop_max_blocks: int = declare(
        "stop", "max_blocks", defaults.STOP_MAX_BLOCKS,
        "Stop blocks per turn (Claude Code itself gives up after 8)",
    )  # fmt: skip
    stop_max_hold_s: float = declare(
        "stop", "max_hold_s", defaults.STOP_MAX_HOLD_S,
        "total time one turn may be held at Stop",
    )  # fmt: skip
    conductor_grace_s: float = declare(
        "conductor", "grace_s", defaults.CONDUCTOR_GRACE_S,
        "a run outlives its dead Conductor this long (time to --resume)",
    )  # fmt: skip
    max_depth: int = declare(
        "conductor", "max_depth", defaults.MAX_DEPTH,
        "fanout's hooks do nothing in sessions this deep (workers are 1,\n"
        "their workers 2): 2 lets workers start runs of their own",
        minimum=1,
    )  # fmt: skip
    inject_max_chars: int = declare(
        "inject", "max_chars", defaults.INJECT_MAX_CHARS,
        "cap on the text one hook injects into the Conductor's context", minimum=500,
    )  # fmt: skip
    delivery: str = declare(
        "delivery", "mode", defaults.DELIVERY,
        "block: hold Stop; rewake: let the turn end, wake the session with\n"
        "the results; auto: rewake when interactive, block for -p / SDK",
        choices=DELIVERY_MODES,
    )  # fmt: skip
    rewake_max_wait_s: float = declare(
        "delivery", "rewake_max_wait_s", defaults.REWAKE_MAX_WAIT_S,
        "how long a pending wake waits for the workers", minimum=1,
    )  # fmt: skip
    planner_timeout_s: float = declare(
        "planner", "timeout_s", defaults.PLANNER_TIMEOUT_S,
        "the planner (its whole process group) is stopped after this; 1-300",
        minimum=1, maximum=defaults.PLANNER_MAX_TIMEOUT_S,
    )  # fmt: skip
    planner_max_tasks: int = declare(
        "planner", "max_tasks", defaults.PLANNER_MAX_TASKS,
        "tasks one planned run may have; 1-64",
        minimum=1, maximum=defaults.PLANNER_TASK_LIMIT,
    )  # fmt: skip
    planner_max_turns: int = declare(
        "planner", "max_turns", defaults.PLANNER_MAX_TURNS,
        "the planner session's turn limit (each look at the repo is a turn)", minimum=1,
    )  # fmt: skip
    planner_model: str = declare(
        "planner", "model", "",
        'the planner\'s model ("" = Claude Code\'s default), e.g. "sonnet"',
        must='a model name, or "" for the default',
    )  # fmt: skip
    # ``[[triggers]]``: checked by _parse_triggers.
    triggers: tuple[Trigger, ...] = ()


def _declared_keys() -> tuple[Key, ...]:
    """The keys, in the order declared, each told its field name and type."""
    keys = []
    for field, kind in vars(Config)["__annotations__"].items():
        spec = vars(Config).get(field)
        if isinstance(spec, Key):
            spec.field, spec.kind = field, kind
            keys.append(spec)
    return tuple(keys)


KEYS = _declared_keys()
_BY_NAME = {(spec.table, spec.key): spec for spec in KEYS}
if not TYPE_CHECKING:
    Config = namedtuple(
        "Config",
        [*(spec.field for spec in KEYS), "triggers"],
        defaults=[*(spec.default for spec in KEYS), ()],
    )


def example() -> str:
    """The documented ``.claude/fanout.toml``: every key with its default (or an example
    value), grouped by table, and a trigger."""
    import json

    lines: list[str] = []

    def commented(text: str, note: str) -> None:
        for number, part in enumerate(note.split("\n") if note else [""]):
            head = text if number == 0 else ""
            if not part:
                lines.append(head)
                continue
            lines.append((head.ljust(24) if len(head) < 24 else head + "  ") + "# " + part)

    for table, note in _TABLES.items():
        commented(f"[{table}]", note)
        for spec in KEYS:
            if spec.table != table:
                continue
            value = spec.example
            if value is None:
                value = (
                    json.dumps(spec.default)
                    if isinstance(spec.default, str | bool)
                    else f"{spec.default:g}"
                )
            commented(f"{spec.key} = {value}", spec.doc)
    return "\n".join([*lines, "", TRIGGERS_EXAMPLE])


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
            for spec in KEYS:
                if cached["config"].get(spec.field) is not None:  # None: "no limit", the default
                    sections.setdefault(spec.table, {})[spec.key] = cached["config"][spec.field]
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
            spec = _BY_NAME.get((table, key))
            if spec is None:
                known = ", ".join(f"{s.table}.{s.key}" for s in KEYS)
                raise ConfigError(f"{source}: unknown key {table}.{key} (known: {known})")
            problem = _problem(spec, value)
            if problem:
                raise ConfigError(f"{source}: {table}.{key} must be {problem}")
            values[spec.field] = float(value) if "float" in spec.kind else value
    return Config(**values)  # type: ignore[arg-type]


def _problem(spec: Key, value: object) -> str:
    """What ``value`` must be instead, or '' when it is good for ``spec``."""
    if spec.choices:
        return "" if value in spec.choices else f"one of {', '.join(spec.choices)}"
    if spec.kind == "bool":
        return "" if isinstance(value, bool) else "true or false"
    if spec.kind == "str":
        good = isinstance(value, str) and "\0" not in value
        if isinstance(value, str) and spec.field == "planner_model":
            good = good and value == value.strip()
        return "" if good else spec.must
    whole = spec.kind.startswith("int")
    number = isinstance(value, int) if whole else isinstance(value, int | float)
    good = number and not isinstance(value, bool)
    if spec.kind.endswith("None"):  # a limit that is off unless set
        kind = "a whole number" if whole else spec.must or "a number"
        return "" if good and value > 0 else f"{kind} > 0"  # type: ignore[operator]
    kind = "a whole number" if whole else "a number"
    if not good or value < spec.minimum:  # type: ignore[operator]
        return f"{kind} >= {spec.minimum:g}"
    if spec.maximum is not None and value > spec.maximum:  # type: ignore[operator]
        return f"{kind} from {spec.minimum:g} to {spec.maximum:g}"
    return ""


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
