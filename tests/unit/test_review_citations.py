"""tools/review_citations.py: a document citing a test or benchmark that no longer exists fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_script

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "review_citations.py"
REVIEW = ROOT / "docs" / "review.md"

TEST_FILE = """
import pytest

def test_present():
    pass

@pytest.mark.parametrize("size", [10, 1000], ids=["small", "big"])
def test_sized(size):
    pass

class TestGroup:
    def test_inside(self):
        pass
"""


@pytest.fixture
def tool() -> ModuleType:
    return load_script(TOOL)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A synthetic repository: one test file, one benchmark."""
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_thing.py").write_text(TEST_FILE)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_x.py").write_text("print('x')\n")
    return tmp_path


def test_present_citations_pass(tool: ModuleType, repo: Path) -> None:
    doc = (
        "Evidence: `tests/unit/test_thing.py::test_present` and\n"
        "[the class one](../tests/unit/test_thing.py::TestGroup::test_inside), the file\n"
        "tests/unit/test_thing.py, `tests/unit/test_thing.py::test_sized[big]`, and\n"
        "    .venv/bin/python benchmarks/bench_x.py --json\n"
        "(see benchmarks/, and tests/e2e/*.py or benchmarks/<x>.py, which are patterns).\n"
    )
    cited = [str(c) for c in tool.find_citations(doc)]
    assert cited == [
        "tests/unit/test_thing.py::test_present",
        "tests/unit/test_thing.py::TestGroup::test_inside",
        "tests/unit/test_thing.py",
        "tests/unit/test_thing.py::test_sized[big]",
        "benchmarks/bench_x.py",
        "benchmarks/",
    ]
    assert tool.check(doc, repo, name="doc.md") == []


def test_a_missing_test_fails_naming_line_and_reason(tool: ModuleType, repo: Path) -> None:
    doc = "ok: tests/unit/test_thing.py::test_present\nbad: `tests/unit/test_thing.py::test_gone`\n"
    (problem,) = tool.check(doc, repo, name="doc.md")
    assert problem == (
        "doc.md:2: tests/unit/test_thing.py::test_gone: "
        "no test test_gone in tests/unit/test_thing.py"
    )


@pytest.mark.parametrize(
    ("cited", "why"),
    [
        ("tests/unit/test_other.py", "no such file"),
        ("tests/unit/test_other.py::test_present", "no such file"),
        ("benchmarks/bench_gone.py", "no such file"),
        ("tests/unit/test_thing.py::TestGroup::test_gone", "no test TestGroup::test_gone"),
        ("tests/unit/test_thing.py::test_inside", "no test test_inside"),
        ("tests/unit/test_thing.py::test_sized[huge]", "pytest collects no test_sized[huge]"),
    ],
)
def test_dead_citations_fail(tool: ModuleType, repo: Path, cited: str, why: str) -> None:
    (problem,) = tool.check(f"See {cited}.", repo, name="doc.md")
    assert problem.startswith(f"doc.md:1: {cited}: {why}")


def test_the_command_exits_1_on_a_dead_citation_and_0_without(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text("See tests/unit/test_review_citations.py::test_dead_citations_fail.\n")
    bad.write_text("See tests/unit/test_review_citations.py::test_never_written.\n")
    ran = [
        subprocess.run(
            [sys.executable, str(TOOL), str(doc)], capture_output=True, text=True, check=False
        )
        for doc in (good, bad)
    ]
    assert [r.returncode for r in ran] == [0, 1]
    assert ran[0].stdout == ""
    assert "test_never_written: no test test_never_written" in ran[1].stdout


def test_everything_the_review_cites_exists(tool: ModuleType) -> None:
    text = REVIEW.read_text(encoding="utf-8")
    assert tool.find_citations(text), "the review cites no test or benchmark"
    assert tool.check(text, ROOT, name="docs/review.md") == []


def test_the_review_holds_no_figure_left_to_fill() -> None:
    text = REVIEW.read_text(encoding="utf-8")
    assert "\u27ea" not in text and "TODO" not in text
