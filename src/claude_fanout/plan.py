"""The plan: a validated DAG of tasks, immutable once a run starts.

Validation happens before any side effect and stops at the first problem, reported as one line that
names the task and the field (``plan: task W2: field 'deps': unknown task 'W9' (known: W1, W3)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from claude_fanout import defaults
from claude_fanout.errors import PlanError
from claude_fanout.plan_paths import normalize_claim, parse_replaces

_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_TARGET_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
# A tool spec: a name, optionally a permission pattern in parentheses ("Bash(pytest *)").
_TOOL_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\([^()\0]*\))?")


class TaskKind(StrEnum):
    SHELL = "shell"
    PYTHON = "python"
    CLAUDE = "claude"


_COMMON_FIELDS = frozenset(
    {"id", "kind", "deps", "claims", "replaces", "timeout_s", "retries", "env", "cpus", "memory_mb"}
)
_KIND_FIELDS: dict[TaskKind, frozenset[str]] = {
    TaskKind.SHELL: frozenset({"argv"}),
    TaskKind.PYTHON: frozenset({"target", "args"}),
    TaskKind.CLAUDE: frozenset(
        {"prompt", "tools", "write", "permission_mode", "max_turns", "max_cost_usd", "model"}
    ),
}
_PLAN_FIELDS = frozenset({"version", "name", "max_parallel", "max_cost_usd", "max_turns", "tasks"})
# Tools a `write: true` task gets on top of its `tools`.
WRITE_TOOLS = ("Edit", "Write")
# Permission modes a plan may give a worker. "default" would ask a human, and a headless worker has
# none; dontAsk refuses anything not granted instead of asking.
PERMISSION_MODES = ("dontAsk", "acceptEdits", "plan", "bypassPermissions")


@dataclass(frozen=True, kw_only=True)
class Task:
    id: str
    kind: TaskKind
    deps: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    # Project path -> artifact (relative to the task's out/): once the task has succeeded, the
    # Conductor's reads of that path are redirected to the artifact.
    replaces: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = defaults.TASK_TIMEOUT_S
    retries: int = defaults.RETRIES
    env: Mapping[str, str] = field(default_factory=dict)
    # What one attempt reserves on a cluster node (the Ray backend; the local backend ignores it).
    cpus: float = defaults.TASK_CPUS
    memory_mb: int | None = None
    argv: tuple[str, ...] = ()
    target: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = ""
    tools: tuple[str, ...] = defaults.CLAUDE_TOOLS
    write: bool = False
    permission_mode: str = defaults.PERMISSION_MODE
    max_turns: int | None = None
    max_cost_usd: float | None = None
    model: str | None = None

    @property
    def granted_tools(self) -> tuple[str, ...]:
        """The tool specs this worker may use: its ``tools``, plus Edit and Write when it writes."""
        extra = tuple(t for t in WRITE_TOOLS if self.write and t not in self.tools)
        return (*self.tools, *extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": str(self.kind),
            "deps": list(self.deps),
            "claims": list(self.claims),
            "replaces": dict(self.replaces),
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "env": dict(self.env),
        }
        if self.cpus != defaults.TASK_CPUS:
            out["cpus"] = self.cpus
        if self.memory_mb is not None:
            out["memory_mb"] = self.memory_mb
        if self.kind is TaskKind.SHELL:
            out["argv"] = list(self.argv)
        elif self.kind is TaskKind.PYTHON:
            out["target"] = self.target
            out["args"] = dict(self.args)
        else:
            out["prompt"] = self.prompt
            out["tools"] = list(self.tools)
            if self.write:
                out["write"] = True
            if self.permission_mode != defaults.PERMISSION_MODE:
                out["permission_mode"] = self.permission_mode
            if self.max_turns is not None:
                out["max_turns"] = self.max_turns
            if self.max_cost_usd is not None:
                out["max_cost_usd"] = self.max_cost_usd
            if self.model is not None:
                out["model"] = self.model
        return out


@dataclass(frozen=True, kw_only=True)
class Plan:
    tasks: tuple[Task, ...]
    max_parallel: int = defaults.MAX_PARALLEL
    name: str | None = None
    version: int = defaults.PLAN_VERSION
    # Run budgets: once the run's workers have spent this much, nothing more starts.
    max_cost_usd: float | None = None
    max_turns: int | None = None

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(task.id for task in self.tasks)

    def dependents(self, task_id: str) -> tuple[str, ...]:
        """Every task downstream of ``task_id`` (transitively), in plan order."""
        downstream: set[str] = {task_id}
        for task in topological_order(self):
            if any(dep in downstream for dep in task.deps):
                downstream.add(task.id)
        downstream.discard(task_id)
        return tuple(t.id for t in self.tasks if t.id in downstream)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "max_parallel": self.max_parallel}
        if self.name is not None:
            out["name"] = self.name
        if self.max_cost_usd is not None:
            out["max_cost_usd"] = self.max_cost_usd
        if self.max_turns is not None:
            out["max_turns"] = self.max_turns
        out["tasks"] = [task.to_dict() for task in self.tasks]
        return out


def topological_order(plan: Plan) -> list[Task]:
    """Tasks in dependency order; ties keep plan order (stable Kahn's algorithm)."""
    by_id = {task.id: task for task in plan.tasks}
    remaining = {task.id: set(task.deps) for task in plan.tasks}
    order: list[Task] = []
    while remaining:
        ready = [tid for tid in by_id if tid in remaining and not remaining[tid]]
        if not ready:
            raise PlanError(f"dependency cycle: {' -> '.join(_find_cycle(remaining))}")
        for tid in ready:
            del remaining[tid]
            order.append(by_id[tid])
        for deps in remaining.values():
            deps.difference_update(ready)
    return order


def _find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One cycle among ``graph`` (every node has unmet deps), closed: [a, b, c, a]."""
    start = min(graph)
    seen: dict[str, int] = {}
    path: list[str] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(dep for dep in graph[node] if dep in graph)
    return [*path[seen[node] :], node]


def load_plan(path: Path, *, project: Path) -> Plan:
    """Read and validate a plan file; every problem is a one-line PlanError."""
    return parse_plan(read_plan_file(path), project=project)


def read_plan_file(
    path: Path | str, *, name: str | None = None, hint: str = "check the path"
) -> object:
    """The JSON in a plan file (not validated), read within ``MAX_PLAN_BYTES``: the one reader
    of plan files (``fanout run``, ``/fanout --plan``, a trigger's template). Every problem is a
    one-line PlanError about ``name`` (default: the path); ``hint`` says how to fix a missing file.
    """
    name = str(path) if name is None else name
    try:
        # Read at most one byte past the limit: st_size says nothing of /dev/zero or a FIFO.
        with open(path, "rb") as handle:
            raw = handle.read(defaults.MAX_PLAN_BYTES + 1)
        if len(raw) > defaults.MAX_PLAN_BYTES:
            raise PlanError(
                f"{name} is over the {defaults.MAX_PLAN_BYTES}-byte limit; "
                "split it into several plans"
            )
        return json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise PlanError(f"no plan file at {path}; {hint}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{name} is not valid JSON ({exc}); fix the file") from None
    except RecursionError:
        raise PlanError(
            f"{name} is not valid JSON for a plan (nested too deeply); fix it"
        ) from None
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}") from None


def parse_plan(data: object, *, project: Path) -> Plan:
    if not isinstance(data, dict):
        raise PlanError("the top level must be a JSON object with 'version' and 'tasks'")
    unknown = sorted(set(data) - _PLAN_FIELDS)
    if unknown:
        raise PlanError(
            f"unknown field (allowed: {', '.join(sorted(_PLAN_FIELDS))})", field=unknown[0]
        )
    _check_version(data)
    max_parallel = _int(data.get("max_parallel", defaults.MAX_PARALLEL), "max_parallel", None, 1)
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise PlanError("must be a string", field="name")
    run_cost = _cost(data.get("max_cost_usd"), None)
    run_turns = data.get("max_turns")
    if run_turns is not None:
        run_turns = _int(run_turns, "max_turns", None, 1)
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise PlanError("must be a non-empty list of task objects", field="tasks")
    if len(raw_tasks) > defaults.MAX_TASKS:
        raise PlanError(
            f"{len(raw_tasks)} tasks is over the limit of {defaults.MAX_TASKS}; split the plan",
            field="tasks",
        )
    project = project.resolve()
    tasks: list[Task] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_tasks):
        task = _parse_task(raw, index=index, project=project)
        if task.id in seen:
            raise PlanError("duplicate id; every task needs its own", task=task.id, field="id")
        seen.add(task.id)
        tasks.append(task)
    _check_deps(tasks, seen)
    plan = Plan(
        tasks=tuple(tasks),
        max_parallel=max_parallel,
        name=name,
        max_cost_usd=run_cost,
        max_turns=run_turns,
    )
    topological_order(plan)
    return plan


def _check_version(data: Mapping[str, Any]) -> None:
    if "version" not in data:
        raise PlanError(
            f'required but missing; add "version": {defaults.PLAN_VERSION} to the plan',
            field="version",
        )
    version = data.get("version")
    if version != defaults.PLAN_VERSION:
        raise PlanError(
            f"{version!r} is not a version this fanout reads (it reads {defaults.PLAN_VERSION})",
            field="version",
        )


def _check_deps(tasks: list[Task], known: set[str]) -> None:
    for task in tasks:
        for dep in task.deps:
            if dep not in known:
                raise PlanError(
                    f"unknown task '{dep}' (known: {', '.join(sorted(known))})",
                    task=task.id,
                    field="deps",
                )
            if dep == task.id:
                raise PlanError("a task cannot depend on itself", task=task.id, field="deps")


def _parse_task(raw: object, *, index: int, project: Path) -> Task:
    label = f"#{index + 1}"
    if not isinstance(raw, dict):
        raise PlanError("must be a JSON object", task=label)
    task_id = raw.get("id")
    if not isinstance(task_id, str) or not _ID_RE.fullmatch(task_id):
        raise PlanError(
            f"{task_id!r} is not a valid id: use a letter then letters, digits, '_', '-', '.' "
            f"(no path separators), at most {defaults.MAX_ID_LEN} characters",
            task=label,
            field="id",
        )
    if len(task_id) > defaults.MAX_ID_LEN:
        raise PlanError(f"longer than {defaults.MAX_ID_LEN} characters", task=label, field="id")
    try:
        kind = TaskKind(str(raw.get("kind")))
    except ValueError:
        raise PlanError(
            f"{raw.get('kind')!r} is not a task kind (use one of: shell, python, claude)",
            task=task_id,
            field="kind",
        ) from None
    allowed = _COMMON_FIELDS | _KIND_FIELDS[kind]
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise PlanError(
            f"unknown field for a {kind} task (allowed: {', '.join(sorted(allowed))})",
            task=task_id,
            field=unknown[0],
        )
    common = _common_fields(raw, task_id=task_id, kind=kind, project=project)
    if kind is TaskKind.SHELL:
        return _shell_task(raw, common)
    if kind is TaskKind.PYTHON:
        return _python_task(raw, common)
    return _claude_task(raw, common)


def _strings(value: object, *, task: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PlanError("must be a list of strings", task=task, field=field)
    return tuple(value)


def _common_fields(
    raw: Mapping[str, Any], *, task_id: str, kind: TaskKind, project: Path
) -> dict[str, Any]:
    """The fields every kind of task has, validated: ``Task``'s keyword arguments."""
    deps = _strings(raw.get("deps", []), task=task_id, field="deps")
    claims = tuple(
        normalize_claim(c, project=project, task=task_id)
        for c in _strings(raw.get("claims", []), task=task_id, field="claims")
    )
    replaces = parse_replaces(raw.get("replaces", {}), project=project, task=task_id)
    timeout = raw.get("timeout_s", defaults.TASK_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise PlanError("must be a number of seconds > 0", task=task_id, field="timeout_s")
    retries = _int(raw.get("retries", defaults.RETRIES), "retries", task_id, 0)
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str)
        and isinstance(v, str)
        and k
        and "=" not in k
        and "\0" not in k
        and "\0" not in v
        for k, v in env.items()
    ):
        raise PlanError(
            "must be an object of string names to string values", task=task_id, field="env"
        )
    cpus = raw.get("cpus", defaults.TASK_CPUS)
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or not 0 < cpus <= 1024:
        raise PlanError("must be a number of CPUs > 0 (e.g. 0.5 or 2)", task=task_id, field="cpus")
    memory_mb = raw.get("memory_mb")
    if memory_mb is not None:
        memory_mb = _int(memory_mb, "memory_mb", task_id, 1)
    return {
        "id": task_id,
        "kind": kind,
        "cpus": float(cpus),
        "memory_mb": memory_mb,
        "deps": deps,
        "claims": claims,
        "replaces": replaces,
        "timeout_s": float(timeout),
        "retries": retries,
        "env": dict(env),
    }


def _shell_task(raw: Mapping[str, Any], common: dict[str, Any]) -> Task:
    task_id = common["id"]
    argv = _strings(raw.get("argv"), task=task_id, field="argv")
    if not argv or not argv[0]:
        raise PlanError(
            "must be a non-empty list: the program, then its arguments",
            task=task_id,
            field="argv",
        )
    if any("\0" in a for a in argv):
        raise PlanError("must not contain NUL bytes", task=task_id, field="argv")
    return Task(**common, argv=argv)


def _python_task(raw: Mapping[str, Any], common: dict[str, Any]) -> Task:
    task_id = common["id"]
    target = raw.get("target")
    if not isinstance(target, str) or not _TARGET_RE.fullmatch(target):
        raise PlanError(
            f"{target!r} is not 'module:function' (e.g. 'pkg.mod:func')",
            task=task_id,
            field="target",
        )
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise PlanError("must be a JSON object of keyword arguments", task=task_id, field="args")
    return Task(**common, target=target, args=args)


def _claude_task(raw: Mapping[str, Any], common: dict[str, Any]) -> Task:
    task_id = common["id"]
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PlanError("must be a non-empty string", task=task_id, field="prompt")
    tools = _strings(raw.get("tools", list(defaults.CLAUDE_TOOLS)), task=task_id, field="tools")
    for spec in tools:
        if not _TOOL_RE.fullmatch(spec):
            raise PlanError(
                f"{spec!r} is not a tool spec: use a tool name, optionally with a pattern in "
                "parentheses, e.g. 'Read' or 'Bash(pytest *)'",
                task=task_id,
                field="tools",
            )
    write = raw.get("write", False)
    if not isinstance(write, bool):
        raise PlanError(
            "must be true (edits files, in its own git worktree) or false (read-only)",
            task=task_id,
            field="write",
        )
    if write:
        _check_writer_id(task_id)
    mode = raw.get("permission_mode", defaults.PERMISSION_MODE)
    if mode not in PERMISSION_MODES:
        raise PlanError(
            f"{mode!r} is not a permission mode a headless worker can use "
            f"(use one of: {', '.join(PERMISSION_MODES)})",
            task=task_id,
            field="permission_mode",
        )
    max_turns = raw.get("max_turns")
    if max_turns is not None:
        max_turns = _int(max_turns, "max_turns", task_id, 1)
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise PlanError("must be a model name", task=task_id, field="model")
    return Task(
        **common,
        prompt=prompt,
        tools=tools,
        write=write,
        permission_mode=mode,
        max_turns=max_turns,
        max_cost_usd=_cost(raw.get("max_cost_usd"), task_id),
        model=model,
    )


def _check_writer_id(task_id: str) -> None:
    """A writer works on git branch ``fanout/<RUN>/<ID>``, so its id must be a valid part of a
    branch name (the id rule alone lets ``a..b`` and ``fix.lock`` through)."""
    from claude_fanout.git import worktrees

    problem = worktrees.branch_name_problem(worktrees.branch_name("RUN", task_id))
    if problem is None:
        return
    fixed = re.sub(r"\.{2,}", ".", task_id).rstrip(".")
    if fixed.endswith(".lock"):
        fixed = fixed.removesuffix(".lock") + "-lock"
    raise PlanError(
        f"write: true puts the task on git branch fanout/<RUN>/{task_id}, which git refuses "
        f"({problem}); rename the task, e.g. '{fixed}'",
        task=task_id,
        field="id",
    )


def _cost(value: object, task: str | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PlanError("must be an amount of US dollars > 0", task=task, field="max_cost_usd")
    return float(value)


def _int(value: object, name: str, task: str | None, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PlanError(f"must be a whole number >= {minimum}", task=task, field=name)
    return value


def plan_to_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, ensure_ascii=False) + "\n"
