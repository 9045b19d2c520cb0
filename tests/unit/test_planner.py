"""The planner and triggers: schema -> plan, every way planning fails, trigger config.

Where the real CLI is not needed a fake one stands in: a script in ``tmp_path`` that records its
argv, environment, cwd and stdin, and then answers, fails, prints garbage or hangs as told.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from claude_fanout import defaults, install, settings_hooks
from claude_fanout.claude.cli import CLINotFoundError, find_cli, require_cli
from claude_fanout.claude.env import PARENT_SESSION_VARS, planner_env
from claude_fanout.compat import TESTED_MAX, TESTED_MIN
from claude_fanout.config import Config, ConfigError, Trigger, load_config
from claude_fanout.errors import PlanError
from claude_fanout.plan import parse_plan
from claude_fanout.planner import (
    NEXT_STEP,
    PLANNER_MARK,
    PLANNER_RECORD,
    PLANNER_TOOLS,
    PlannerError,
    plan_schema,
    run_planner,
    to_plan_dict,
)
from claude_fanout.planning import match_trigger, substitute
from claude_fanout.runner import wait_run
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import list_runs
from tests.helpers import git, wait_until

pytestmark = pytest.mark.timeout(60)
SESSION = "5f0c7a52-1111-4c1e-9a57-000000000001"

ANSWER = {
    "name": "Review the parser",
    "tasks": [
        {
            "id": "W1",
            "prompt": "Review src/a.py for bugs.",
            "claims": ["src/a.py"],
            "deps": [],
            "write": False,
        },
        {
            "id": "W2",
            "prompt": "Fix what W1 found in src/b.py.",
            "claims": ["src/b.py"],
            "deps": ["W1"],
            "write": True,
            "tools": ["Bash(pytest *)"],
        },
    ],
}

# The fake CLI. Its behaviour comes from fake.json beside it; it records each call in calls/.
FAKE_CLI = """\
#!{python}
import json, os, subprocess, sys, time
if sys.argv[1:] == ["--version"]:
    print("{version} (Claude Code)")
    sys.exit(0)
here = os.path.dirname(os.path.abspath(__file__))
spec = json.load(open(os.path.join(here, "fake.json")))
calls = os.path.join(here, "calls")
os.makedirs(calls, exist_ok=True)
if "stream-json" in sys.argv:  # a worker, not the planner: fail at once
    sys.exit(1)
record = {{"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd(),
          "stdin": sys.stdin.read(), "pid": os.getpid(), "pgid": os.getpgid(0)}}
with open(os.path.join(calls, str(os.getpid()) + ".json"), "w") as f:
    json.dump(record, f)
mode = spec["mode"]
if mode == "hang":
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(here, "grandchild.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
if mode == "garbage":
    print("this is not json")
    print("fatal: the model is on fire", file=sys.stderr)
    sys.exit(3)
result = {{"type": "result", "subtype": "success", "is_error": False, "num_turns": 2,
          "total_cost_usd": 0.0123, "session_id": "planner-session", "result": "text"}}
if mode == "answer":
    result["structured_output"] = spec["answer"]
    result["result"] = json.dumps(spec["answer"])
elif mode == "text":
    result["result"] = "I would split it three ways."
elif mode == "error":
    result.update(is_error=True, subtype=spec["subtype"], errors=[spec["error"]])
print(json.dumps(result))
sys.exit(1 if mode == "error" else 0)
"""


@pytest.fixture
def repo(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with two source files, its hooks' environment set as Claude Code sets it."""
    (project / "src").mkdir()
    (project / "src" / "a.py").write_text("a = 1\n")
    (project / "src" / "b.py").write_text("b = 2\n")
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(project))
    for name in ("FANOUT_DEPTH", "FANOUT_MAX_DEPTH", "CLAUDE_PID", "CLAUDE_CODE_SESSION_ATTENDED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CLAUDE_CODE_ENTRYPOINT", raising=False)
    return project


@pytest.fixture
def fake_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCLI:
    cli = FakeCLI(tmp_path / "fakecli")
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(cli.path))
    return cli


class FakeCLI:
    def __init__(self, root: Path, version: str = TESTED_MAX) -> None:
        root.mkdir()
        self.root = root
        self.path = root / "claude"
        self.path.write_text(FAKE_CLI.format(python=sys.executable, version=version))
        self.path.chmod(0o755)
        self.set("answer", answer=ANSWER)

    def set(self, mode: str, **spec: Any) -> None:
        (self.root / "fake.json").write_text(json.dumps({"mode": mode, **spec}))

    def calls(self) -> list[dict[str, Any]]:
        folder = self.root / "calls"
        return (
            [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
            if folder.is_dir()
            else []
        )


def prompt_hook(project: Path, prompt: str) -> str | None:
    """The UserPromptSubmit hook, run as Claude Code runs it (`sh -c`, `python -I -S`)."""
    payload = {
        "session_id": SESSION,
        "cwd": str(project),
        "hook_event_name": "UserPromptSubmit",
        "prompt": prompt,
    }
    command = settings_hooks.hook_command(
        "UserPromptSubmit", python=sys.executable, entry=install.default_entry()
    )
    done = subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=project,
        env=dict(os.environ),
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    hook_errors = project / ".claude" / "runs" / "hooks.jsonl"
    assert not hook_errors.exists(), hook_errors.read_text()
    if not done.stdout:
        return None
    answer = json.loads(done.stdout)["hookSpecificOutput"]
    assert answer["hookEventName"] == "UserPromptSubmit"
    return str(answer["additionalContext"])


def nothing_started(project: Path) -> bool:
    runs = project / ".claude" / "runs"
    left = [p.name for p in runs.iterdir() if p.name != ".config.json"] if runs.is_dir() else []
    return left == [] and list_runs(project) == []


def finish(project: Path) -> None:
    """Wait until every run of the project is over (its supervisor gone)."""
    for run in list_runs(project):
        wait_run(run, timeout_s=30)
    wait_until(lambda: not _supervisors(project), timeout=10)


def _supervisors(project: Path) -> list[int]:
    from tests.helpers import processes_under

    return [p.pid for p in processes_under(project / ".claude")]


# -- the schema and the conversion -------------------------------------------------------------


def test_the_schema_output_becomes_a_valid_plan_of_claude_tasks(tmp_path: Path) -> None:
    data = to_plan_dict(ANSWER, instruction="review and fix the parser", max_tasks=8)
    plan = parse_plan(data, project=tmp_path)
    assert plan.name == "Review the parser"
    w1, w2 = plan.tasks
    assert (w1.kind, w1.claims, w1.deps, w1.write) == ("claude", ("src/a.py",), (), False)
    assert w1.granted_tools == PLANNER_TOOLS  # read-only
    assert (w2.claims, w2.deps, w2.write) == (("src/b.py",), ("W1",), True)
    assert w2.tools == (*defaults.CLAUDE_TOOLS, "Bash(pytest *)")
    assert set(w2.granted_tools) == {*defaults.CLAUDE_TOOLS, "Bash(pytest *)", "Edit", "Write"}
    # The model's prompt comes first; every worker learns its place and what it may do.
    assert w1.prompt.startswith("Review src/a.py for bugs.\n\n(You are worker W1 of 2")
    assert "review and fix the parser" in w1.prompt and "You only read" in w1.prompt
    assert "committed on your own branch" in w2.prompt


def test_a_plan_without_a_name_is_named_after_the_request(tmp_path: Path) -> None:
    answer = {"tasks": [dict(ANSWER["tasks"][0])]}  # type: ignore[index]
    data = to_plan_dict(answer, instruction="  look\nat   everything " + "x" * 300, max_tasks=8)
    assert data["name"].startswith("look at everything x") and len(data["name"]) == 120
    assert "write" not in data["tasks"][0] and "tools" not in data["tasks"][0]


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (
            {"tasks": [], "reason": "It is one line of work."},
            "found nothing to fan out: It is one line",
        ),
        ({"tasks": []}, "found nothing to fan out"),
        ({"plan": []}, "has no list of tasks"),
        ([], "has no list of tasks"),
        ({"tasks": ["W1"]}, "task #1 is not an object"),
        ({"tasks": [{"id": "W1", "prompt": "x", "owner": "me"}]}, "unknown field 'owner'"),
        ({"tasks": [{"id": "W1", "prompt": "x", "write": "yes"}]}, "'write' is not true or false"),
        ({"tasks": [{"id": "W1", "prompt": "x", "tools": "Bash"}]}, "'tools' is not a list"),
        ({"tasks": [{"id": f"W{i}", "prompt": "x"} for i in range(9)]}, "made 9 tasks, over"),
    ],
)
def test_answers_that_are_no_plan_are_one_line_errors(answer: Any, fragment: str) -> None:
    with pytest.raises(PlannerError) as caught:
        to_plan_dict(answer, instruction="x", max_tasks=8)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_schema_caps_tasks_and_matches_what_plans_accept(tmp_path: Path) -> None:
    schema = plan_schema(3)
    tasks = schema["properties"]["tasks"]
    assert tasks["maxItems"] == 3
    assert (
        schema["additionalProperties"] is False and tasks["items"]["additionalProperties"] is False
    )
    assert set(tasks["items"]["required"]) == {"id", "prompt", "claims", "deps", "write"}
    pattern = re.compile(tasks["items"]["properties"]["id"]["pattern"])
    for good in ("W1", "review.parser-2", "a" * 64):
        assert pattern.search(good)
        parse_plan(
            {"version": 1, "tasks": [{"id": good, "kind": "claude", "prompt": "x"}]},
            project=tmp_path,
        )
    for bad in ("1W", "a/b", "", "a" * 65):
        assert not pattern.search(bad)
        with pytest.raises(PlanError):
            parse_plan(
                {"version": 1, "tasks": [{"id": bad, "kind": "claude", "prompt": "x"}]},
                project=tmp_path,
            )


# -- running the planner (fake CLI) ------------------------------------------------------------


def test_the_planner_runs_headless_read_only_and_quiet(
    repo: Path, fake_cli: FakeCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PARENT_SESSION_VARS:
        monkeypatch.setenv(name, "parent-value")
    config = Config(planner_max_turns=7, planner_max_tasks=5, planner_model="sonnet")
    planned = run_planner(
        "-review the parser", project=str(repo), cwd=str(repo / "src"), config=config
    )
    assert [t.id for t in planned.plan.tasks] == ["W1", "W2"]
    assert (planned.session_id, planned.turns, planned.cost_usd) == ("planner-session", 2, 0.0123)
    (call,) = fake_cli.calls()
    argv = call["argv"]

    def flag(name: str) -> str:
        return str(argv[argv.index(name) + 1])

    assert argv[0] == "-p" and flag("--output-format") == "json"
    assert json.loads(flag("--json-schema")) == plan_schema(5)
    assert flag("--tools") == "Read,Grep,Glob" and flag("--allowedTools") == "Read,Grep,Glob"
    assert flag("--permission-mode") == "dontAsk" and "--strict-mcp-config" in argv
    assert flag("--max-turns") == "7" and flag("--model") == "sonnet"
    assert "--setting-sources=project,local" in argv and "--no-session-persistence" in argv
    system = flag("--append-system-prompt")
    assert system.startswith(PLANNER_MARK) and "At most 5 tasks" in system
    assert f"The user is working in {repo / 'src'}" in system
    # The request goes in on stdin (it may start with '-'); the session runs in the project.
    assert call["stdin"] == "-review the parser"
    assert call["cwd"] == str(repo)
    assert not set(PARENT_SESSION_VARS) & set(call["env"])
    assert call["env"]["FANOUT_DEPTH"] == "1"
    assert call["pgid"] == call["pid"]  # a process group (and session) of its own


def test_a_prompt_with_json_surrogates_reaches_the_planner_as_text(
    repo: Path, fake_cli: FakeCLI
) -> None:
    # JSON may spell a character as a surrogate pair, or carry a lone surrogate: both decode
    # to strings no pipe can carry as they are.
    fake_cli.set("answer", answer={"tasks": []})
    text = prompt_hook(repo, "/fanout review \ud83d\ude00 and \udc80 too")
    assert text is not None and "found nothing to fan out" in text
    (call,) = fake_cli.calls()
    assert call["stdin"] == "review \U0001f600 and \ufffd too"


def test_the_planner_session_is_always_at_the_hooks_depth_limit() -> None:
    assert planner_env({})["FANOUT_DEPTH"] == "1"
    assert planner_env({"FANOUT_DEPTH": "2"})["FANOUT_DEPTH"] == "3"
    assert planner_env({"FANOUT_MAX_DEPTH": "3"})["FANOUT_DEPTH"] == "3"
    assert planner_env({"FANOUT_DEPTH": "junk"})["FANOUT_DEPTH"] == "1"


def test_a_hung_planner_is_stopped_with_everything_it_started(
    repo: Path, fake_cli: FakeCLI
) -> None:
    fake_cli.set("hang")
    started = time.monotonic()
    with pytest.raises(PlannerError) as caught:
        run_planner("review", project=str(repo), cwd=str(repo), config=Config(planner_timeout_s=1))
    took = time.monotonic() - started
    assert "gave no plan within 1 s and was stopped" in str(caught.value)
    assert "planner.timeout_s" in str(caught.value)
    assert 1 <= took < 1 + 2 * 1.0 + 1.5  # the timeout, at most two grace periods, slack
    (call,) = fake_cli.calls()
    grandchild = int((fake_cli.root / "grandchild.pid").read_text())
    for pid in (call["pid"], grandchild):
        wait_until(lambda pid=pid: _gone(pid), timeout=5)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize(
    ("mode", "spec", "fragment"),
    [
        (
            "error",
            {"subtype": "error_max_turns", "error": "Reached maximum number of turns (12)"},
            "failed (exit 1, error_max_turns): Reached maximum number of turns (12); raise "
            "planner.max_turns",
        ),
        (
            "error",
            {
                "subtype": "error_max_structured_output_retries",
                "error": "Failed to provide valid structured output after 5 attempts",
            },
            "Failed to provide valid structured output after 5 attempts; Claude could not",
        ),
        ("garbage", {}, "failed (exit 3): fatal: the model is on fire"),
        (
            "text",
            {},
            "ended without a plan: Claude did not call StructuredOutput (it said: I would",
        ),
        ("answer", {"answer": {"tasks": []}}, "found nothing to fan out"),
        (
            "answer",
            {
                "answer": {
                    "tasks": [
                        {"id": "W1", "prompt": "x", "claims": [], "deps": ["W9"], "write": False}
                    ]
                }
            },
            "the planner's plan is not valid: plan: task W1: field 'deps': unknown task 'W9'",
        ),
        (
            "answer",
            {
                "answer": {
                    "tasks": [
                        {
                            "id": "W1",
                            "prompt": "x",
                            "claims": ["../../etc"],
                            "deps": [],
                            "write": False,
                        }
                    ]
                }
            },
            "field 'claims': '../../etc' is outside the project",
        ),
        (
            "answer",
            {
                "answer": {
                    "tasks": [
                        {"id": "A", "prompt": "x", "claims": [], "deps": ["B"], "write": False},
                        {"id": "B", "prompt": "x", "claims": [], "deps": ["A"], "write": False},
                    ]
                }
            },
            "dependency cycle: A -> B -> A",
        ),
    ],
)
def test_every_planner_failure_starts_nothing_and_says_why(
    repo: Path, fake_cli: FakeCLI, mode: str, spec: dict[str, Any], fragment: str
) -> None:
    fake_cli.set(mode, **spec)
    text = prompt_hook(repo, "/fanout review the parser")
    assert text is not None and len(fake_cli.calls()) == 1
    first, second = text.split("\n")
    assert first.startswith("[fanout] Nothing was started: ")
    assert fragment in first
    assert second == NEXT_STEP
    assert nothing_started(repo)


def test_a_missing_cli_starts_nothing_and_says_how_to_fix_it(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(tmp_path / "no-such-claude"))
    text = prompt_hook(repo, "/fanout review the parser")
    assert text is not None
    assert f"FANOUT_CLAUDE_BIN={tmp_path / 'no-such-claude'} is not an executable file" in text
    assert text.endswith(NEXT_STEP)
    assert nothing_started(repo)
    with pytest.raises(CLINotFoundError, match=r"found no Claude Code CLI .*FANOUT_CLAUDE_BIN"):
        require_cli({}, site_dirs=[str(tmp_path)], search_path=False)


def test_the_bundled_cli_is_found_without_the_sdk_on_sys_path(tmp_path: Path) -> None:
    bundled = tmp_path / "site" / "claude_agent_sdk" / "_bundled" / "claude"
    bundled.parent.mkdir(parents=True)
    bundled.write_text("#!/bin/sh\n")
    bundled.chmod(0o755)
    assert find_cli({}, site_dirs=[str(tmp_path / "nothing"), str(tmp_path / "site")]) == str(
        bundled
    )
    # Under the hook's `python -I -S`, as `fanout install` writes it: the real wheel is found.
    import claude_agent_sdk

    wheel_cli = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        " from claude_fanout.claude.cli import find_cli;"
        " print(find_cli({}, search_path=False))"
    )
    src = str(Path(install.default_entry()).parents[2])
    found = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, src], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == str(wheel_cli)


def test_a_planned_writer_outside_git_starts_nothing_and_says_how_to_fix_it(
    repo: Path, fake_cli: FakeCLI
) -> None:
    text = prompt_hook(repo, "/fanout --wait block review and fix the parser")
    assert text is not None
    assert "task W2: field 'write'" in text and f"run 'git init' in {repo}" in text
    assert nothing_started(repo)


def test_a_planned_run_starts_and_the_conductor_is_told_what_was_planned(
    repo: Path, fake_cli: FakeCLI
) -> None:
    git(repo, "init", "-q")  # W2 writes: it needs a git work tree
    text = prompt_hook(repo, "/fanout --wait block review and fix the parser")
    assert text is not None
    (run,) = list_runs(repo)
    try:
        lines = text.split("\n")
        assert lines[0].startswith('[fanout] Claude planned "Review the parser" (')
        assert "2 turns, $0.0123)." in lines[0]
        assert lines[1].startswith(f"[fanout] Started run {run.run_id}: 2 worker(s)")
        assert lines[2] == (
            f"- W1 (claude, read-only) on src/a.py: result at "
            f".claude/runs/{run.run_id}/workers/W1/out/result.md"
        )
        assert lines[3] == "  task: Review src/a.py for bugs."
        assert lines[4] == (
            "- W2 (claude, edits files in its own worktree, may use Bash(pytest *)) on src/b.py, "
            f"after W1: result at .claude/runs/{run.run_id}/workers/W2/out/result.md"
        )
        assert "fanout holds your turn" in lines[-1]
        plan = json.loads(run.plan_path.read_text())
        assert [
            (t["id"], t["claims"], t["deps"], t.get("write", False)) for t in plan["tasks"]
        ] == [
            ("W1", ["src/a.py"], [], False),
            ("W2", ["src/b.py"], ["W1"], True),
        ]
        created = read_events(run.events_path).events[0]
        assert created["type"] == "run_created" and created["tasks"] == ["W1", "W2"]
        assert created["conductor"]["session_id"] == SESSION and created["delivery"] == "block"
        record = json.loads((run.path / PLANNER_RECORD).read_text())
        assert record["structured_output"] == ANSWER
        assert record["instruction"] == "review and fix the parser"
        assert record["cost_usd"] == 0.0123
    finally:
        finish(repo)


def test_a_cli_too_old_and_a_conductor_too_old_are_said_plainly(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = FakeCLI(tmp_path / "oldcli", version="1.0.100")
    monkeypatch.setenv("FANOUT_CLAUDE_BIN", str(old.path))
    # Claude Code before 2.1.275 hands its hooks CLAUDE_CODE_ENTRYPOINT but no
    # CLAUDE_CODE_SESSION_ATTENDED.
    monkeypatch.setenv("CLAUDE_CODE_ENTRYPOINT", "cli")
    git(repo, "init", "-q")  # W2 writes: it needs a git work tree
    text = prompt_hook(repo, "/fanout review and fix the parser")
    assert text is not None
    try:
        warnings = [line for line in text.split("\n") if line.startswith("[fanout] Warning: ")]
        assert len(warnings) == 2, text
        assert "CLAUDE_CODE_SESSION_ATTENDED" in warnings[0]
        assert '[delivery] mode = "rewake"' in warnings[0]
        assert f"Claude Code 1.0.100 ({old.path}) is older than {TESTED_MIN}" in warnings[1]
        assert "FANOUT_CLAUDE_BIN" in warnings[1]
        assert len(list_runs(repo)) == 1  # said, and the run started all the same
    finally:
        finish(repo)


def test_a_current_cli_and_conductor_get_no_warning(
    repo: Path, fake_cli: FakeCLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_ENTRYPOINT", "cli")
    monkeypatch.setenv("CLAUDE_CODE_SESSION_ATTENDED", "1")
    git(repo, "init", "-q")  # W2 writes: it needs a git work tree
    text = prompt_hook(repo, "/fanout review and fix the parser")
    assert text is not None
    try:
        assert "[fanout] Started run " in text and "Warning" not in text
        assert "fanout wakes you" in text  # attended: results come back by rewake
    finally:
        finish(repo)


def test_paths_and_plan_files_never_ask_the_planner(repo: Path, fake_cli: FakeCLI) -> None:
    text = prompt_hook(repo, "/fanout review -- src/nothing.py")
    assert text is not None and "no file matches src/nothing.py" in text
    text = prompt_hook(repo, "/fanout --plan missing.json")
    assert text is not None and "no plan file at" in text
    assert prompt_hook(repo, "/fanout") is not None
    assert fake_cli.calls() == []
    assert nothing_started(repo)


# -- triggers ----------------------------------------------------------------------------------

REVIEW_TEMPLATE = {
    "version": 1,
    "name": "review",
    "tasks": [
        {
            "id": "R1",
            "kind": "shell",
            "argv": ["true"],
            "claims": ["{target}"],
        },
        {
            "id": "R2",
            "kind": "claude",
            "prompt": 'Review {target} ({prompt}); keep {"json": braces} and {unknown}.',
            "claims": ["{target}"],
            "deps": ["R1"],
        },
    ],
}


def write_config(project: Path, text: str) -> None:
    (project / ".claude" / "fanout.toml").write_text(textwrap.dedent(text))


def test_triggers_are_read_and_cached(repo: Path) -> None:
    write_config(
        repo,
        r"""
        [planner]
        timeout_s = 30
        max_tasks = 3
        max_turns = 4
        model = "sonnet"
        [[triggers]]
        pattern = '^review (?P<target>\S+)$'
        plan = ".claude/fanout/review.json"
        [[triggers]]
        pattern = "^ship it"
        plan = "plans/ship.json"
        scope = "all"
        """,
    )
    (repo / ".claude" / "runs").mkdir(exist_ok=True)
    first = load_config(repo)
    assert (first.planner_timeout_s, first.planner_max_tasks, first.planner_max_turns) == (
        30.0,
        3,
        4,
    )
    assert first.planner_model == "sonnet"
    assert first.triggers == (
        Trigger(r"^review (?P<target>\S+)$", ".claude/fanout/review.json", "fanout"),
        Trigger("^ship it", "plans/ship.json", "all"),
    )
    assert (repo / ".claude" / "runs" / ".config.json").is_file()
    assert load_config(repo) == first  # from the cache, validated again


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[planner]\ntimeout_s = 301\n", "planner.timeout_s must be a number from 1 to 300"),
        ("[planner]\ntimeout_s = 0\n", "planner.timeout_s must be a number >= 1"),
        ("[planner]\nmax_tasks = 65\n", "planner.max_tasks must be a whole number from 1 to 64"),
        ("[planner]\nmax_turns = 1.5\n", "planner.max_turns must be a whole number"),
        ("[planner]\nmodel = 3\n", "planner.model must be a model name"),
        ("[planner]\nwho = 3\n", "unknown key planner.who"),
        ("[triggers]\npattern = 'x'\n", "triggers must be an array of tables"),
        ("triggers = [1]\n", "[[triggers]] #1 must be a table"),
        ("[[triggers]]\nplan = 'p.json'\n", "[[triggers]] #1: triggers.pattern must be"),
        (
            "[[triggers]]\npattern = '(unclosed'\nplan = 'p.json'\n",
            "#1: triggers.pattern is not a valid",
        ),
        ("[[triggers]]\npattern = 'x'\n", "#1: triggers.plan must be the path of a plan file"),
        (
            "[[triggers]]\npattern = 'x'\nplan = '../p.json'\n",
            "#1: triggers.plan must be a path inside",
        ),
        (
            "[[triggers]]\npattern = 'x'\nplan = '/etc/p.json'\n",
            "#1: triggers.plan must be a path inside",
        ),
        (
            "[[triggers]]\npattern = 'x'\nplan = 'p.json'\n"
            "[[triggers]]\npattern = 'y'\nplan = 'p.json'\nscope = 'every'\n",
            "[[triggers]] #2: triggers.scope must be one of fanout, all",
        ),
        (
            "[[triggers]]\npattern = 'x'\nplan = 'p.json'\nwhen = 1\n",
            "#1: unknown key triggers.when",
        ),
    ],
)
def test_bad_planner_and_trigger_config_is_one_line_naming_the_key(
    repo: Path, text: str, fragment: str
) -> None:
    write_config(repo, text)
    with pytest.raises(ConfigError) as caught:
        load_config(repo)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_config_stops_a_fanout_request_but_not_a_plain_prompt(
    repo: Path, fake_cli: FakeCLI
) -> None:
    write_config(repo, "[[triggers]]\npattern = '('\nplan = 'p.json'\n")
    text = prompt_hook(repo, "/fanout review the parser")
    assert text is not None and "triggers.pattern is not a valid Python regular expression" in text
    assert prompt_hook(repo, "what does this code do?") is None
    assert fake_cli.calls() == [] and nothing_started(repo)


def test_substitution_replaces_known_names_only() -> None:
    values = {"prompt": "review src/a.py", "target": "src/a.py"}
    assert substitute("{prompt}|{target}|{other}|{ target }|{}|{{target}}", values) == (
        "review src/a.py|src/a.py|{other}|{ target }|{}|{src/a.py}"
    )


def test_only_all_scope_triggers_see_plain_prompts() -> None:
    triggers = (Trigger("^review", "a.json", "fanout"), Trigger("review", "b.json", "all"))
    number, trigger, _ = match_trigger(triggers, "review x", fanout=True) or (0, None, None)
    assert (number, trigger) == (1, triggers[0])
    number, trigger, _ = match_trigger(triggers, "review x", fanout=False) or (0, None, None)
    assert (number, trigger) == (2, triggers[1])
    assert match_trigger(triggers, "nothing", fanout=True) is None


def test_a_fanout_instruction_matching_a_trigger_uses_its_template(
    repo: Path, fake_cli: FakeCLI
) -> None:
    (repo / ".claude" / "fanout").mkdir()
    (repo / ".claude" / "fanout" / "review.json").write_text(json.dumps(REVIEW_TEMPLATE))
    write_config(
        repo,
        r"""
        [[triggers]]
        pattern = '^review (?P<target>\S+)$'
        plan = ".claude/fanout/review.json"
        """,
    )
    # A plain prompt does not fan out: the trigger is for /fanout instructions only.
    assert prompt_hook(repo, "review src/a.py") is None
    assert nothing_started(repo)
    text = prompt_hook(repo, "/fanout --wait block review src/a.py")
    assert text is not None
    try:
        assert text.startswith(
            "[fanout] [[triggers]] #1 in .claude/fanout.toml matched: "
            "plan .claude/fanout/review.json."
        )
        assert "- R1 (shell) on src/a.py: result at" in text
        assert "- R2 (claude, read-only) on src/a.py, after R1: result at" in text
        (run,) = list_runs(repo)
        plan = json.loads(run.plan_path.read_text())
        assert [t["claims"] for t in plan["tasks"]] == [["src/a.py"], ["src/a.py"]]
        assert plan["tasks"][1]["prompt"] == (
            'Review src/a.py (review src/a.py); keep {"json": braces} and {unknown}.'
        )
        assert not (run.path / PLANNER_RECORD).exists()
    finally:
        finish(repo)
    assert fake_cli.calls() == []  # the planner was never asked


def test_an_all_scope_trigger_fans_out_a_plain_prompt(repo: Path, fake_cli: FakeCLI) -> None:
    template = {
        "version": 1,
        "tasks": [{"id": "T1", "kind": "shell", "argv": ["true"], "claims": ["{file}"]}],
    }
    (repo / "plans").mkdir()
    (repo / "plans" / "lint.json").write_text(json.dumps(template))
    write_config(
        repo,
        r"""
        [[triggers]]
        pattern = '^lint (?P<file>\S+) please$'
        plan = "plans/lint.json"
        scope = "all"
        """,
    )
    assert prompt_hook(repo, "what is in src/a.py?") is None
    text = prompt_hook(repo, "lint src/b.py please")
    assert text is not None
    try:
        assert text.startswith("[fanout] [[triggers]] #1 in .claude/fanout.toml matched")
        (run,) = list_runs(repo)
        assert json.loads(run.plan_path.read_text())["tasks"][0]["claims"] == ["src/b.py"]
        assert wait_run(run, timeout_s=30).state == "succeeded"
    finally:
        finish(repo)


@pytest.mark.parametrize(
    ("plan_text", "fragment"),
    [
        (None, "[[triggers]] #1 (plan plans/t.json): no plan file at"),
        ("{not json", "[[triggers]] #1 (plan plans/t.json): the plan file is not valid JSON"),
        (
            json.dumps(
                {
                    "version": 1,
                    "tasks": [{"id": "T1", "kind": "shell", "argv": ["true"], "claims": ["{x}"]}],
                }
            ),
            "[[triggers]] #1 (plan plans/t.json): plan: task T1: field 'claims': '../../up' is "
            "outside",
        ),
    ],
)
def test_a_trigger_whose_plan_fails_starts_nothing(
    repo: Path, fake_cli: FakeCLI, plan_text: str | None, fragment: str
) -> None:
    (repo / "plans").mkdir()
    if plan_text is not None:
        (repo / "plans" / "t.json").write_text(plan_text)
    write_config(
        repo, "[[triggers]]\npattern = '^go (?P<x>.+)$'\nplan = 'plans/t.json'\nscope = 'all'\n"
    )
    for prompt in ("/fanout go ../../up", "go ../../up"):
        text = prompt_hook(repo, prompt)
        assert text is not None
        assert text.startswith("[fanout] Nothing was started: ") and fragment in text
        assert "\n" not in text
    assert fake_cli.calls() == [] and nothing_started(repo)


def test_the_hook_outlives_the_longest_planner() -> None:
    from claude_fanout.settings_hooks import FANOUT_HOOKS

    assert FANOUT_HOOKS["UserPromptSubmit"].timeout > defaults.PLANNER_MAX_TIMEOUT_S + 10 + 2
