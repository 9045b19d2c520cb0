"""benchmarks/run_all.py: every step's figures collected in order, a missing step reported and
the exit status non-zero, pytest and soak output read into figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[2]

SOAK_OUTPUT = """\
..........s.......                                                       [100%]
------------------------------ fault injection (soak) -------------------------------
supervisor SIGKILL: 40 trials, 0 failures, 81.2s (2 live groups at the kill: 40)
full disk: 3 trials, 1 failures, 0.1s
=========================== short test summary info ============================
SKIPPED [1] tests/integration/test_faults.py:590: takes over HEARTBEAT_STALE_S (15s): --soak only
17 passed, 1 failed, 1 skipped in 70.97s (0:01:10)
"""


@pytest.fixture
def run_all(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_benchmark("run_all")
    monkeypatch.setattr(module, "machine", lambda: {"cpus": 2, "claude_code": "test"})
    monkeypatch.setattr(module, "describe", lambda m: "a test machine")
    return module


def test_every_step_runs_in_order_and_a_missing_one_fails_the_run(
    run_all: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "bench_good.py"
    good.write_text(
        "import sys, json\nprint('report', file=sys.stderr)\n"
        "print(json.dumps({'ok': '--quick' in sys.argv, 'argv': sys.argv[1:]}))\n"
    )
    silent = tmp_path / "bench_silent.py"
    silent.write_text("print('no json here')\n")
    steps = [
        ("critical 1", "good", f"{good} --json", "json", "--quick", "", 60),
        ("critical 2", "gone", f"{tmp_path / 'bench_gone.py'} --json", "json", "--quick", "", 60),
        ("design 1", "silent", f"{silent} --json", "json", "--quick", "", 60),
        ("design 2", "again", f"{good} --json", "json", "", "--full", 60),
    ]
    monkeypatch.setattr(run_all, "STEPS", steps)
    out = tmp_path / "figures.json"
    monkeypatch.setattr(sys, "argv", ["run_all", "--quick", "--out", str(out)])

    assert run_all.main() == 1

    figures = json.loads(out.read_text())
    assert figures["machine"] == {"cpus": 2, "claude_code": "test"}
    records = {r["id"]: r for r in figures["steps"]}
    assert [r["id"] for r in figures["steps"]] == ["good", "gone", "silent", "again"]
    assert records["good"]["status"] == "ok"
    assert records["good"]["figures"]["argv"] == ["--json", "--quick"]
    assert records["gone"]["status"] == "missing"
    assert "bench_gone.py not found" in records["gone"]["error"]
    assert records["silent"]["status"] == "failed"
    # Without --quick in its row, the step ran without it: its own "ok" is false, a miss.
    assert records["again"]["status"] == "miss"
    assert records["again"]["figures"]["argv"] == ["--json"]
    printed = capsys.readouterr().out
    assert printed.index("a test machine") < printed.index("== critical 1 [good]")
    assert printed.index("[good]") < printed.index("[gone]") < printed.index("[again]")


def test_all_ok_exits_0_and_only_skip_select_steps(
    run_all: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "bench_good.py"
    good.write_text("import json\nprint(json.dumps({'ok': True}))\n")
    steps = [
        ("q", "a", f"{good} --json", "json", "", "", 60),
        ("q", "b", f"{tmp_path / 'missing.py'}", "json", "", "", 60),
    ]
    monkeypatch.setattr(run_all, "STEPS", steps)
    out = tmp_path / "figures.json"
    monkeypatch.setattr(sys, "argv", ["run_all", "--skip", "b", "--out", str(out)])
    assert run_all.main() == 0
    assert [r["id"] for r in json.loads(out.read_text())["steps"]] == ["a"]


def test_the_table_names_the_review_s_steps_and_the_existing_benchmarks() -> None:
    module = load_benchmark("run_all")
    ids = [step.id for step in module.steps()]
    assert len(ids) == len(set(ids))
    for name in ("bench_hooks.py", "bench_store.py", "bench_workers.py", "bench_scale.py"):
        (step,) = [s for s in module.steps() if name in s.command]
        assert step.script() is not None and step.script().is_file(), name
        assert "--json" in step.command
    soak = next(s for s in module.steps() if s.id == "soak")
    assert soak.script() == ROOT / "tests" / "integration" / "test_faults.py"
    assert soak.full_args == "--soak"


def test_pytest_and_soak_output_become_figures() -> None:
    module = load_benchmark("run_all")
    figures = module.read_soak(SOAK_OUTPUT)
    assert figures["passed"] == 17 and figures["failed"] == 1 and figures["skipped"] == 1
    assert figures["mode"] == "soak"
    assert figures["scenarios"] == [
        {
            "scenario": "supervisor SIGKILL",
            "trials": 40,
            "failures": 0,
            "seconds": 81.2,
            "notes": "2 live groups at the kill: 40",
        },
        {"scenario": "full disk", "trials": 3, "failures": 1, "seconds": 0.1, "notes": ""},
    ]
    assert "--soak only" in figures["skip_reasons"][0]
    assert module.read_pytest("1 passed in 4.20s\n")["passed"] == 1


def test_a_benchmarks_figures_are_read_on_one_line_or_indented() -> None:
    run_all = load_benchmark("run_all")
    assert run_all.last_json_object('progress\n{"a": 1}\n') == {"a": 1}
    assert run_all.last_json_object('progress\n{\n  "a": {\n    "b": 2\n  }\n}\n') == {
        "a": {"b": 2}
    }
    assert run_all.last_json_object("no figures here\n") is None
