"""Plan validation, claims and DAG order: every refusal is one line that names its culprit."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_fanout import defaults
from claude_fanout.errors import FanoutError, PlanError
from claude_fanout.plan import (
    Plan,
    TaskKind,
    load_plan,
    parse_plan,
    plan_to_json,
    topological_order,
)
from claude_fanout.preflight import check_runnable

property_settings = settings(
    derandomize=True,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # Resolved so absolute claims spelled with it match the resolved root the parser compares to.
    root = tmp_path.resolve() / "proj"
    root.mkdir()
    return root


def shell(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "shell", "argv": ["true"], **fields}


def plan_of(*tasks: Any, **top: Any) -> dict[str, Any]:
    return {"version": 1, "tasks": list(tasks), **top}


def refused(data: object, project: Path) -> PlanError:
    """The PlanError ``data`` is refused with, after checking it is one line in the house format."""
    with pytest.raises(PlanError) as info:
        parse_plan(data, project=project)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("plan: ")
    assert isinstance(info.value, FanoutError)
    assert info.value.exit_code == 2
    return info.value


EXAMPLE_PLAN: dict[str, Any] = {
    "version": 1,
    "name": "auth-refactor",
    "tasks": [
        {
            "id": "W1",
            "kind": "shell",
            "argv": ["pytest", "-q", "tests/auth"],
            "claims": ["tests/auth/"],
            "timeout_s": 300,
            "retries": 2,
            "env": {"PYTHONHASHSEED": "0"},
        },
        {
            "id": "W2",
            "kind": "python",
            "target": "tools.lint:run",
            "args": {"paths": ["src/auth"], "strict": True},
            "deps": ["W1"],
            "claims": ["src/auth/**/*.py"],
        },
        {
            "id": "W3",
            "kind": "claude",
            "prompt": "Summarise the failures in tests/auth and propose fixes.",
            "deps": ["W1", "W2"],
            "claims": ["docs/auth.md"],
            "timeout_s": 120.5,
            "max_turns": 5,
            "model": "claude-sonnet-4-5",
        },
    ],
}


# --- the happy path ---------------------------------------------------------------------------


def test_example_plan_parses_with_every_field(project: Path) -> None:
    plan = parse_plan(EXAMPLE_PLAN, project=project)

    assert plan.ids == ("W1", "W2", "W3")
    assert plan.name == "auth-refactor"
    assert plan.max_parallel == defaults.MAX_PARALLEL == 4
    w1, w2, w3 = plan.tasks
    assert w1.kind is TaskKind.SHELL
    assert w1.argv == ("pytest", "-q", "tests/auth")
    assert w1.claims == ("tests/auth",)
    assert w1.timeout_s == 300.0
    assert isinstance(w1.timeout_s, float)
    assert w1.retries == 2
    assert dict(w1.env) == {"PYTHONHASHSEED": "0"}
    assert w2.kind is TaskKind.PYTHON
    assert w2.target == "tools.lint:run"
    assert dict(w2.args) == {"paths": ["src/auth"], "strict": True}
    assert w2.deps == ("W1",)
    assert w2.claims == ("src/auth/**/*.py",)
    assert w3.kind is TaskKind.CLAUDE
    assert w3.deps == ("W1", "W2")
    assert w3.tools == ("Read", "Grep", "Glob")
    assert w3.max_turns == 5
    assert w3.model == "claude-sonnet-4-5"
    assert w3.timeout_s == 120.5


def test_defaults_apply_to_omitted_fields(project: Path) -> None:
    plan = parse_plan(
        plan_of(shell("S"), {"id": "C", "kind": "claude", "prompt": "hi"}), project=project
    )

    assert plan.max_parallel == 4
    assert plan.name is None
    for task in plan.tasks:
        assert task.deps == ()
        assert task.claims == ()
        assert task.timeout_s == defaults.TASK_TIMEOUT_S
        assert task.retries == defaults.RETRIES
        assert dict(task.env) == {}
    claude = plan.task("C")
    assert claude.tools == defaults.CLAUDE_TOOLS == ("Read", "Grep", "Glob")
    assert claude.max_turns is None
    assert claude.model is None


def test_max_parallel_and_id_at_the_length_limit_are_accepted(project: Path) -> None:
    long_id = "a" * defaults.MAX_ID_LEN
    plan = parse_plan(plan_of(shell(long_id), max_parallel=1), project=project)

    assert plan.ids == (long_id,)
    assert plan.max_parallel == 1


def test_plan_at_the_task_limit_is_accepted(project: Path) -> None:
    tasks = [shell(f"T{i}") for i in range(defaults.MAX_TASKS)]

    assert len(parse_plan(plan_of(*tasks), project=project).tasks) == defaults.MAX_TASKS


def test_to_dict_round_trips_through_parse_plan(project: Path) -> None:
    plan = parse_plan(EXAMPLE_PLAN, project=project)

    again = parse_plan(plan.to_dict(), project=project)
    from_json = parse_plan(json.loads(plan_to_json(plan)), project=project)

    assert again == plan
    assert from_json == plan
    assert again.to_dict() == plan.to_dict()


def test_plan_task_unknown_id_raises_key_error(project: Path) -> None:
    plan = parse_plan(plan_of(shell("A")), project=project)

    with pytest.raises(KeyError):
        plan.task("B")


# --- claims --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "normalized"),
    [
        ("src/a.py", "src/a.py"),
        ("./src//b.py", "src/b.py"),
        ("src/../c.py", "c.py"),
        ("src/pkg/", "src/pkg"),
        ("src/**/*.py", "src/**/*.py"),
        ("docs/[ab]?.md", "docs/[ab]?.md"),
        ("*.toml", "*.toml"),
        (".", "."),
    ],
)
def test_claims_become_project_relative_posix_paths(
    project: Path, claim: str, normalized: str
) -> None:
    plan = parse_plan(plan_of(shell("A", claims=[claim])), project=project)

    assert plan.task("A").claims == (normalized,)


def test_absolute_claims_inside_the_project_are_made_relative(project: Path) -> None:
    claims = [str(project / "src" / "x.py"), str(project), str(project / "lib" / "*.c")]

    plan = parse_plan(plan_of(shell("A", claims=claims)), project=project)

    assert plan.task("A").claims == ("src/x.py", ".", "lib/*.c")


@pytest.mark.parametrize(
    "claim",
    [
        "../x",
        "/etc/passwd",
        "src/../../x",
        "../proj-sibling/x",
        "../*.py",
        "../**/secrets",
        "*/../../etc",
        "",
    ],
)
def test_claims_outside_the_project_are_refused(project: Path, claim: str) -> None:
    error = refused(plan_of(shell("A", claims=[claim])), project)

    assert (error.task, error.field) == ("A", "claims")
    assert "task A: field 'claims'" in str(error)


@pytest.fixture
def project_with_link_outside(project: Path) -> Path:
    outside = project.parent / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("")
    (project / "escape").symlink_to(outside, target_is_directory=True)
    (project / "src").mkdir()
    (project / "inner").symlink_to(project / "src", target_is_directory=True)
    return project


@pytest.mark.parametrize("claim", ["escape", "escape/secret.py", "escape/*.py", "escape/sub/**"])
def test_claims_through_a_symlink_leading_outside_are_refused(
    project_with_link_outside: Path, claim: str
) -> None:
    error = refused(plan_of(shell("A", claims=[claim])), project_with_link_outside)

    assert (error.task, error.field) == ("A", "claims")
    assert "outside the project" in str(error)


def test_claims_through_a_symlink_staying_inside_are_accepted(
    project_with_link_outside: Path,
) -> None:
    plan = parse_plan(
        plan_of(shell("A", claims=["inner/a.py", "inner/*.py"])), project=project_with_link_outside
    )

    assert plan.task("A").claims == ("inner/a.py", "inner/*.py")


@pytest.fixture
def project_under_a_bracketed_dir(tmp_path: Path) -> Path:
    # Checkouts named like "proj[1]" or "build?" exist; the glob scan must not start at the root.
    root = tmp_path.resolve() / "copy[1]" / "proj"
    root.mkdir(parents=True)
    return root


def test_claims_work_in_a_project_whose_path_contains_glob_characters(
    project_under_a_bracketed_dir: Path,
) -> None:
    root = project_under_a_bracketed_dir
    claims = ["src/a.py", "src/*.py", str(root / "docs" / "b.md")]

    plan = parse_plan(plan_of(shell("A", claims=claims)), project=root)

    assert plan.task("A").claims == ("src/a.py", "src/*.py", "docs/b.md")
    for outside in ("../x", "../*.py", str(root.parent / "other" / "*.py")):
        error = refused(plan_of(shell("A", claims=[outside])), root)
        assert (error.task, error.field) == ("A", "claims")


# --- refusals: plan level ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param([], "top level must be a JSON object", id="list"),
        pytest.param("plan", "top level must be a JSON object", id="string"),
        pytest.param(None, "top level must be a JSON object", id="null"),
        pytest.param(
            plan_of(shell("A"), extra=1), "field 'extra': unknown field", id="unknown-field"
        ),
        pytest.param(
            {"version": 2, "tasks": [shell("A")]},
            "field 'version': 2 is not a version",
            id="version-2",
        ),
        pytest.param(
            {"tasks": [shell("A")]},
            """field 'version': required but missing; add "version": 1 to the plan""",
            id="version-missing",
        ),
        pytest.param(
            {"version": None, "tasks": [shell("A")]},
            "field 'version': None is not a version",
            id="version-null",
        ),
        pytest.param(
            {"version": "1", "tasks": [shell("A")]}, "field 'version': '1' is not", id="version-str"
        ),
        pytest.param(plan_of(), "field 'tasks': must be a non-empty list", id="tasks-empty"),
        pytest.param({"version": 1}, "field 'tasks': must be a non-empty list", id="no-tasks"),
        pytest.param(
            {"version": 1, "tasks": {"A": shell("A")}},
            "field 'tasks': must be a non-empty list",
            id="tasks-object",
        ),
        pytest.param(
            plan_of(shell("A"), max_parallel=0), "field 'max_parallel'", id="max-parallel-0"
        ),
        pytest.param(
            plan_of(shell("A"), max_parallel=True), "field 'max_parallel'", id="max-parallel-bool"
        ),
        pytest.param(
            plan_of(shell("A"), max_parallel=2.5), "field 'max_parallel'", id="max-parallel-float"
        ),
        pytest.param(plan_of(shell("A"), name=3), "field 'name'", id="name-int"),
    ],
)
def test_plan_level_problems_are_one_line_errors(
    project: Path, data: object, fragment: str
) -> None:
    error = refused(data, project)

    assert fragment in str(error)
    assert error.task is None
    assert error.field is not None or "top level" in str(error)


def test_unknown_top_level_field_lists_the_allowed_ones(project: Path) -> None:
    message = str(refused(plan_of(shell("A"), task=[]), project))

    assert "field 'task': unknown field" in message
    assert "max_cost_usd, max_parallel, max_turns, name, tasks, version" in message


def test_too_many_tasks_names_the_limit(project: Path) -> None:
    tasks = [shell(f"T{i}") for i in range(defaults.MAX_TASKS + 1)]

    message = str(refused(plan_of(*tasks), project))

    assert f"{defaults.MAX_TASKS + 1} tasks is over the limit of {defaults.MAX_TASKS}" in message


# --- refusals: task level ---------------------------------------------------------------------

TASK_PROBLEMS = [
    # (task, expected task label, expected field, fragment)
    pytest.param("not a task", "#1", None, "must be a JSON object", id="task-not-object"),
    pytest.param({"id": "a/b", "kind": "shell"}, "#1", "id", "'a/b'", id="id-slash"),
    pytest.param({"id": "a\\b", "kind": "shell"}, "#1", "id", "not a valid id", id="id-backslash"),
    pytest.param({"id": "..", "kind": "shell"}, "#1", "id", "'..'", id="id-dotdot"),
    pytest.param({"id": ".hidden", "kind": "shell"}, "#1", "id", "not a valid id", id="id-dot"),
    pytest.param({"id": "", "kind": "shell"}, "#1", "id", "not a valid id", id="id-empty"),
    pytest.param({"id": "1abc", "kind": "shell"}, "#1", "id", "'1abc'", id="id-digit"),
    pytest.param({"id": "a b", "kind": "shell"}, "#1", "id", "not a valid id", id="id-space"),
    pytest.param({"id": 7, "kind": "shell"}, "#1", "id", "7 is not a valid id", id="id-int"),
    pytest.param({"kind": "shell"}, "#1", "id", "None is not a valid id", id="id-missing"),
    pytest.param(
        {"id": "a" * (defaults.MAX_ID_LEN + 1), "kind": "shell", "argv": ["x"]},
        "#1",
        "id",
        f"longer than {defaults.MAX_ID_LEN} characters",
        id="id-too-long",
    ),
    pytest.param({"id": "A", "kind": "bash"}, "A", "kind", "'bash' is not a task kind", id="kind"),
    pytest.param({"id": "A"}, "A", "kind", "None is not a task kind", id="kind-missing"),
    pytest.param(shell("A", prompt="hi"), "A", "prompt", "unknown field", id="prompt-on-shell"),
    pytest.param(shell("A", target="m:f"), "A", "target", "unknown field", id="target-on-shell"),
    pytest.param(
        {"id": "A", "kind": "claude", "prompt": "p", "argv": ["x"]},
        "A",
        "argv",
        "unknown field for a claude task",
        id="argv-on-claude",
    ),
    pytest.param(
        {"id": "A", "kind": "python", "target": "m:f", "tools": []},
        "A",
        "tools",
        "unknown field for a python task",
        id="tools-on-python",
    ),
    pytest.param(shell("A", deps="B"), "A", "deps", "list of strings", id="deps-string"),
    pytest.param(shell("A", deps=[1]), "A", "deps", "list of strings", id="deps-int"),
    pytest.param(shell("A", claims="src"), "A", "claims", "list of strings", id="claims-string"),
    pytest.param(shell("A", argv=[]), "A", "argv", "non-empty list", id="argv-empty"),
    pytest.param({"id": "A", "kind": "shell"}, "A", "argv", "list of strings", id="argv-missing"),
    pytest.param(shell("A", argv=[""]), "A", "argv", "non-empty list", id="argv-empty-program"),
    pytest.param(shell("A", argv=["ls", 3]), "A", "argv", "list of strings", id="argv-int"),
    pytest.param(shell("A", argv=["ls", None]), "A", "argv", "list of strings", id="argv-null"),
    pytest.param(shell("A", argv="ls -l"), "A", "argv", "list of strings", id="argv-string"),
    pytest.param(shell("A", argv=["ls", "a\0b"]), "A", "argv", "NUL", id="argv-nul"),
    pytest.param(
        {"id": "P", "kind": "python", "target": "nocolon"},
        "P",
        "target",
        "'nocolon' is not 'module:function'",
        id="target-nocolon",
    ),
    pytest.param(
        {"id": "P", "kind": "python", "target": "a:b:c"},
        "P",
        "target",
        "'a:b:c'",
        id="target-two-colons",
    ),
    pytest.param(
        {"id": "P", "kind": "python", "target": "pkg.mod:"},
        "P",
        "target",
        "module:function",
        id="target-no-function",
    ),
    pytest.param(
        {"id": "P", "kind": "python", "target": "1mod:f"},
        "P",
        "target",
        "module:function",
        id="target-digit",
    ),
    pytest.param({"id": "P", "kind": "python"}, "P", "target", "None is not", id="target-missing"),
    pytest.param(
        {"id": "P", "kind": "python", "target": "m:f", "args": [1]},
        "P",
        "args",
        "JSON object of keyword arguments",
        id="args-list",
    ),
    pytest.param(
        {"id": "P", "kind": "python", "target": "m:f", "args": "x=1"},
        "P",
        "args",
        "JSON object",
        id="args-string",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": ""},
        "C",
        "prompt",
        "non-empty string",
        id="prompt-empty",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": " \n\t"},
        "C",
        "prompt",
        "non-empty string",
        id="prompt-blank",
    ),
    pytest.param({"id": "C", "kind": "claude"}, "C", "prompt", "non-empty", id="prompt-missing"),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": ["hi"]},
        "C",
        "prompt",
        "non-empty string",
        id="prompt-list",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "tools": "Read"},
        "C",
        "tools",
        "list of strings",
        id="tools-string",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "tools": ["Read", 1]},
        "C",
        "tools",
        "list of strings",
        id="tools-int",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "max_turns": 0},
        "C",
        "max_turns",
        ">= 1",
        id="max-turns-0",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "max_turns": True},
        "C",
        "max_turns",
        "whole number",
        id="max-turns-bool",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "model": ""},
        "C",
        "model",
        "model name",
        id="model-empty",
    ),
    pytest.param(
        {"id": "C", "kind": "claude", "prompt": "p", "model": 4},
        "C",
        "model",
        "model name",
        id="model-int",
    ),
    pytest.param(shell("A", timeout_s=0), "A", "timeout_s", "> 0", id="timeout-0"),
    pytest.param(shell("A", timeout_s=-5), "A", "timeout_s", "> 0", id="timeout-negative"),
    pytest.param(shell("A", timeout_s=True), "A", "timeout_s", "> 0", id="timeout-bool"),
    pytest.param(shell("A", timeout_s="60"), "A", "timeout_s", "seconds", id="timeout-string"),
    pytest.param(shell("A", timeout_s=None), "A", "timeout_s", "seconds", id="timeout-null"),
    pytest.param(shell("A", timeout_s=float("nan")), "A", "timeout_s", "seconds", id="timeout-nan"),
    pytest.param(shell("A", retries=-1), "A", "retries", ">= 0", id="retries-negative"),
    pytest.param(shell("A", retries=True), "A", "retries", "whole number", id="retries-bool"),
    pytest.param(shell("A", retries=1.5), "A", "retries", "whole number", id="retries-float"),
    pytest.param(shell("A", retries="2"), "A", "retries", "whole number", id="retries-string"),
    pytest.param(shell("A", env={"X": 1}), "A", "env", "string values", id="env-int-value"),
    pytest.param(shell("A", env={"X": None}), "A", "env", "string values", id="env-null"),
    pytest.param(shell("A", env={"X": ["a"]}), "A", "env", "string values", id="env-list"),
    pytest.param(shell("A", env=["X=1"]), "A", "env", "object", id="env-list-of-pairs"),
    pytest.param(shell("A", env={"": "x"}), "A", "env", "string names", id="env-empty-name"),
    pytest.param(shell("A", env={"A=B": "x"}), "A", "env", "string names", id="env-equals"),
    pytest.param(shell("A", env={"X": "a\0b"}), "A", "env", "string values", id="env-nul-value"),
]


@pytest.mark.parametrize(("task", "label", "field", "fragment"), TASK_PROBLEMS)
def test_task_problems_name_the_task_and_the_field(
    project: Path, task: object, label: str, field: str | None, fragment: str
) -> None:
    error = refused(plan_of(task), project)
    message = str(error)

    assert (error.task, error.field) == (label, field)
    assert f"plan: task {label}: " in message
    if field is not None:
        assert f"field '{field}'" in message
    assert fragment in message


def test_a_bad_later_task_is_named_by_its_position(project: Path) -> None:
    error = refused(plan_of(shell("A"), shell("B"), {"id": "../C", "kind": "shell"}), project)

    assert (error.task, error.field) == ("#3", "id")


def test_unknown_field_error_lists_what_the_kind_allows(project: Path) -> None:
    message = str(refused(plan_of(shell("A", prompt="x")), project))

    assert "unknown field for a shell task" in message
    assert "argv" in message
    assert "claims" in message


def test_env_names_with_nul_bytes_are_refused(project: Path) -> None:
    error = refused(plan_of(shell("A", env={"A\0B": "x"})), project)

    assert (error.task, error.field) == ("A", "env")


def test_duplicate_ids_are_refused(project: Path) -> None:
    error = refused(plan_of(shell("A"), shell("B"), shell("A")), project)

    assert (error.task, error.field) == ("A", "id")
    assert "duplicate id" in str(error)


def test_unknown_dep_lists_the_known_ids(project: Path) -> None:
    error = refused(plan_of(shell("W3"), shell("W1"), shell("W2", deps=["W1", "W9"])), project)

    assert (error.task, error.field) == ("W2", "deps")
    assert str(error) == ("plan: task W2: field 'deps': unknown task 'W9' (known: W1, W2, W3)")


def test_self_dependency_is_refused(project: Path) -> None:
    error = refused(plan_of(shell("A"), shell("B", deps=["A", "B"])), project)

    assert (error.task, error.field) == ("B", "deps")
    assert "cannot depend on itself" in str(error)


def test_a_cycle_through_several_tasks_is_named(project: Path) -> None:
    data = plan_of(
        shell("W0"),
        shell("W1", deps=["W0", "W2"]),
        shell("W2", deps=["W3"]),
        shell("W3", deps=["W1"]),
        # Downstream of the cycle, and first in id order: must not appear in the named cycle.
        shell("A", deps=["W3"]),
    )

    message = str(refused(data, project))

    # Any rotation names the same cycle; where the walk enters it depends on the tasks around it.
    assert message.startswith("plan: dependency cycle: ")
    cycle = message.removeprefix("plan: dependency cycle: ").split(" -> ")
    assert cycle[0] == cycle[-1]
    rotations = {tuple(["W1", "W2", "W3"][i:] + ["W1", "W2", "W3"][:i]) for i in range(3)}
    assert tuple(cycle[:-1]) in rotations


def test_a_cycle_alone_is_named_from_its_first_id(project: Path) -> None:
    data = plan_of(shell("W3", deps=["W1"]), shell("W2", deps=["W3"]), shell("W1", deps=["W2"]))

    assert str(refused(data, project)) == "plan: dependency cycle: W1 -> W2 -> W3 -> W1"


def test_a_two_task_cycle_is_named(project: Path) -> None:
    message = str(refused(plan_of(shell("X", deps=["Y"]), shell("Y", deps=["X"])), project))

    assert message == "plan: dependency cycle: X -> Y -> X"


# --- load_plan ----------------------------------------------------------------------------------


def test_load_plan_reads_a_valid_file(project: Path) -> None:
    path = project / "plan.json"
    path.write_text(json.dumps(EXAMPLE_PLAN), encoding="utf-8")

    assert load_plan(path, project=project) == parse_plan(EXAMPLE_PLAN, project=project)


@pytest.fixture
def missing_plan(project: Path) -> Path:
    return project / "nope.json"


@pytest.fixture
def plan_with_trailing_comma(project: Path) -> Path:
    path = project / "plan.json"
    path.write_text('{"version": 1, "tasks": [],}\n')
    return path


@pytest.fixture
def plan_in_latin1(project: Path) -> Path:
    path = project / "plan.json"
    path.write_bytes(b'{"version": 1, "name": "caf\xe9", "tasks": []}')
    return path


@pytest.fixture
def oversize_plan(project: Path) -> Path:
    path = project / "plan.json"
    with path.open("wb") as handle:  # sparse: the size check must come before reading
        handle.truncate(defaults.MAX_PLAN_BYTES + 1)
    return path


@pytest.fixture
def plan_that_is_a_directory(project: Path) -> Path:
    path = project / "plan.json"
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("fixture", "fragment"),
    [
        ("missing_plan", "no plan file at"),
        ("plan_with_trailing_comma", "is not valid JSON"),
        ("plan_in_latin1", "is not valid JSON"),
        ("oversize_plan", f"over the {defaults.MAX_PLAN_BYTES}-byte limit"),
        ("plan_that_is_a_directory", "cannot read"),
    ],
)
def test_load_plan_file_problems_are_one_line_errors(
    request: pytest.FixtureRequest, project: Path, fixture: str, fragment: str
) -> None:
    path: Path = request.getfixturevalue(fixture)

    with pytest.raises(PlanError) as info:
        load_plan(path, project=project)

    message = str(info.value)
    assert "\n" not in message
    assert fragment in message
    assert str(path) in message


def test_load_plan_validates_the_content(project: Path) -> None:
    path = project / "plan.json"
    path.write_text(json.dumps(plan_of(shell("A", deps=["Z"]))))

    with pytest.raises(PlanError, match=r"task A: field 'deps'"):
        load_plan(path, project=project)


# --- order and dependents -----------------------------------------------------------------------


def test_topological_order_puts_deps_first_and_keeps_plan_order_among_ties(
    project: Path,
) -> None:
    plan = parse_plan(
        plan_of(
            shell("D", deps=["B"]),
            shell("B"),
            shell("C", deps=["A", "B"]),
            shell("A"),
            shell("E"),
        ),
        project=project,
    )

    assert [t.id for t in topological_order(plan)] == ["B", "A", "E", "D", "C"]


def test_dependents_are_transitive_and_in_plan_order(project: Path) -> None:
    plan = parse_plan(
        plan_of(
            shell("A"),
            shell("B", deps=["A"]),
            shell("X"),
            shell("C", deps=["B", "X"]),
            shell("D", deps=["A"]),
            shell("E", deps=["C"]),
        ),
        project=project,
    )

    assert plan.dependents("A") == ("B", "C", "D", "E")
    assert plan.dependents("B") == ("C", "E")
    assert plan.dependents("X") == ("C", "E")
    assert plan.dependents("E") == ()


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """Ids in plan order and each task's deps; edges only point at earlier tasks, so no cycles."""
    size = draw(st.integers(min_value=1, max_value=12))
    # Ids in a shuffled naming so plan order and id order disagree.
    names = draw(st.permutations([f"T{i:02d}" for i in range(size)]))
    deps: list[list[str]] = []
    for i in range(size):
        earlier = draw(st.sets(st.integers(0, i - 1), max_size=i)) if i else set()
        deps.append([names[j] for j in sorted(earlier)])
    return list(names), deps


def as_plan(ids: list[str], deps: list[list[str]]) -> dict[str, Any]:
    return plan_of(*(shell(tid, deps=d) for tid, d in zip(ids, deps, strict=True)))


def ancestors_of(ids: list[str], deps: list[list[str]]) -> dict[str, set[str]]:
    direct = dict(zip(ids, deps, strict=True))
    found: dict[str, set[str]] = {}
    for tid in ids:  # plan order is a valid order for these DAGs
        found[tid] = set(direct[tid]).union(*(found[d] for d in direct[tid]))
    return found


@property_settings
@given(graph=dags())
def test_random_dags_validate_and_order_respects_deps(
    project: Path, graph: tuple[list[str], list[list[str]]]
) -> None:
    ids, deps = graph
    plan = parse_plan(as_plan(ids, deps), project=project)

    order = [t.id for t in topological_order(plan)]

    assert sorted(order) == sorted(ids)
    position = {tid: i for i, tid in enumerate(order)}
    for tid, task_deps in zip(ids, deps, strict=True):
        assert all(position[d] < position[tid] for d in task_deps)
    # Ties keep plan order: tasks are released in waves (depth = longest chain of deps below
    # them), and within a wave they come in plan order.
    depth: dict[str, int] = {}
    for tid, task_deps in zip(ids, deps, strict=True):
        depth[tid] = 1 + max((depth[d] for d in task_deps), default=-1)
    assert order == sorted(ids, key=lambda tid: (depth[tid], ids.index(tid)))
    roots = [tid for tid, d in zip(ids, deps, strict=True) if not d]
    assert [tid for tid in order if tid in roots] == roots


@property_settings
@given(graph=dags())
def test_dependents_match_reachability(
    project: Path, graph: tuple[list[str], list[list[str]]]
) -> None:
    ids, deps = graph
    plan = parse_plan(as_plan(ids, deps), project=project)
    ancestors = ancestors_of(ids, deps)

    for tid in ids:
        expected = tuple(other for other in ids if tid in ancestors[other])
        assert plan.dependents(tid) == expected


@property_settings
@given(graph=dags(), data=st.data())
def test_a_back_edge_is_refused_naming_a_real_cycle(
    project: Path, graph: tuple[list[str], list[list[str]]], data: st.DataObject
) -> None:
    ids, deps = graph
    if len(ids) < 2:
        ids, deps = [*ids, "Z"], [*deps, []]
    later = data.draw(st.integers(1, len(ids) - 1), label="later")
    earlier = data.draw(st.integers(0, later - 1), label="earlier")
    deps = [list(d) for d in deps]
    if ids[earlier] not in deps[later]:
        deps[later].append(ids[earlier])
    deps[earlier].append(ids[later])  # the back edge closes a cycle

    message = str(refused(as_plan(ids, deps), project))

    prefix = "plan: dependency cycle: "
    assert message.startswith(prefix)
    cycle = message.removeprefix(prefix).split(" -> ")
    assert len(cycle) >= 3
    assert cycle[0] == cycle[-1]
    assert len(set(cycle[:-1])) == len(cycle) - 1
    direct = dict(zip(ids, deps, strict=True))
    for node, dep in itertools.pairwise(cycle):
        assert dep in direct[node], f"{node} -> {dep} is not an edge"


def test_plan_is_immutable(project: Path) -> None:
    plan = parse_plan(plan_of(shell("A")), project=project)

    with pytest.raises(AttributeError):
        plan.max_parallel = 9  # type: ignore[misc]
    assert isinstance(plan, Plan)


def test_project_is_resolved_before_claims_are_checked(tmp_path: Path) -> None:
    real = tmp_path.resolve() / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)

    plan = parse_plan(plan_of(shell("A", claims=[os.path.join(real, "f.py")])), project=alias)

    assert plan.task("A").claims == ("f.py",)


def claude(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "claude", "prompt": "Review it", **fields}


def test_a_claude_task_is_read_only_unless_it_writes(project: Path) -> None:
    plan = parse_plan(
        plan_of(
            claude("R"),
            claude("W", write=True, tools=["Read", "Bash(pytest *)"], max_cost_usd=0.5),
            max_cost_usd=2,
            max_turns=40,
        ),
        project=project,
    )

    reader, writer = plan.tasks
    assert reader.granted_tools == ("Read", "Grep", "Glob")
    assert (reader.write, reader.permission_mode, reader.max_cost_usd) == (False, "dontAsk", None)
    assert writer.granted_tools == ("Read", "Bash(pytest *)", "Edit", "Write")
    assert (writer.write, writer.max_cost_usd) == (True, 0.5)
    assert (plan.max_cost_usd, plan.max_turns) == (2.0, 40)
    assert parse_plan(plan.to_dict(), project=project) == plan


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"write": "yes"}, "write", "true (edits files"),
        ({"permission_mode": "default"}, "permission_mode", "dontAsk, acceptEdits"),
        ({"tools": ["Bash(rm -rf /"]}, "tools", "Bash(pytest *)"),
        ({"tools": ["Read; rm"]}, "tools", "tool name"),
        ({"max_cost_usd": 0}, "max_cost_usd", "US dollars > 0"),
        ({"max_cost_usd": True}, "max_cost_usd", "US dollars > 0"),
    ],
)
def test_bad_claude_grants_name_the_field(
    project: Path, fields: dict[str, Any], field: str, hint: str
) -> None:
    message = str(refused(plan_of(claude("W1", **fields)), project))

    assert f"task W1: field '{field}'" in message
    assert hint in message


def test_bad_run_budgets_name_the_field(project: Path) -> None:
    assert "field 'max_cost_usd'" in str(refused(plan_of(claude("W"), max_cost_usd=-1), project))
    assert "field 'max_turns'" in str(refused(plan_of(claude("W"), max_turns=0), project))


@pytest.mark.parametrize(
    ("task_id", "why", "suggestion"),
    [
        ("fix.lock", "its part 'fix.lock' ends with '.lock'", "fix-lock"),
        ("a..b", "it contains '..'", "a.b"),
        ("v1.", "it ends with '.'", "v1"),
        ("a...lock.", "it contains '..'", "a-lock"),
    ],
)
def test_a_writer_id_git_refuses_as_a_branch_is_refused_with_a_rename(
    project: Path, task_id: str, why: str, suggestion: str
) -> None:
    error = refused(plan_of(claude(task_id, write=True)), project)

    assert (error.task, error.field) == (task_id, "id")
    assert f"branch fanout/<RUN>/{task_id}, which git refuses ({why})" in str(error)
    assert f"rename the task, e.g. '{suggestion}'" in str(error)
    # The same ids are fine for tasks that get no branch.
    assert parse_plan(plan_of(claude(task_id), shell(task_id + "x")), project=project)


def runnable_refused(data: dict[str, Any], project: Path, **kw: Any) -> PlanError:
    plan = parse_plan(data, project=project)
    with pytest.raises(PlanError) as info:
        check_runnable(plan, project=project, **kw)
    assert "\n" not in str(info.value) and str(info.value).startswith("plan: task ")
    return info.value


def test_a_shell_program_that_is_nowhere_is_refused_before_the_run(project: Path) -> None:
    error = runnable_refused(plan_of(shell("A"), shell("B", argv=["no-such-tool-4711"])), project)

    assert (error.task, error.field) == ("B", "argv")
    assert "no program 'no-such-tool-4711' on PATH; install it, fix the name" in str(error)


def test_a_shell_program_is_looked_up_on_the_workers_path(project: Path) -> None:
    tools = project / "tools"
    tools.mkdir()
    (tools / "mytool").write_text("#!/bin/sh\n")
    (tools / "mytool").chmod(0o755)
    data = plan_of(shell("A", argv=["mytool"]))
    runnable_refused(data, project, env={"PATH": "/usr/bin:/bin"})

    # The task's own PATH, the run's environment, and a relative entry read from the project
    # root (the worker's cwd) all count.
    check_runnable(
        parse_plan(plan_of(shell("A", argv=["mytool"], env={"PATH": str(tools)})), project=project),
        project=project,
        env={"PATH": "/bin"},
    )
    check_runnable(parse_plan(data, project=project), project=project, env={"PATH": str(tools)})
    check_runnable(parse_plan(data, project=project), project=project, env={"PATH": "tools"})


def test_a_program_path_starts_at_the_project_root(project: Path) -> None:
    (project / "run.sh").write_text("#!/bin/sh\n")
    data = plan_of(shell("A", argv=["./run.sh"]))

    error = runnable_refused(data, project)
    assert f"{project / 'run.sh'} is not executable; chmod +x it" in str(error)
    (project / "run.sh").chmod(0o755)
    check_runnable(parse_plan(data, project=project), project=project)

    error = runnable_refused(plan_of(shell("A", argv=["sub/run.sh"])), project)
    assert f"no program at {project / 'sub' / 'run.sh'}" in str(error)
    assert "(shell tasks run in the project root); fix the path" in str(error)


def test_a_program_an_earlier_task_may_build_is_checked_when_it_starts(project: Path) -> None:
    build = shell("build")
    use = shell("use", argv=["./out/tool"], deps=["build"])

    check_runnable(parse_plan(plan_of(build, use), project=project), project=project)
    # Without deps nothing could build it: refused.
    error = runnable_refused(plan_of(shell("use", argv=["./out/tool"])), project)
    assert error.task == "use"


def test_a_writer_outside_a_git_work_tree_is_refused(project: Path) -> None:
    error = runnable_refused(plan_of(shell("A"), claude("W", write=True)), project)

    assert (error.task, error.field) == ("W", "write")
    assert f"{project} is not inside a git repository" in str(error)
    assert f"run 'git init' in {project} (or drop write: true)" in str(error)
    check_runnable(parse_plan(plan_of(claude("W")), project=project), project=project)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True, timeout=30)
    writer = parse_plan(plan_of(claude("W", write=True)), project=project)
    check_runnable(writer, project=project)
