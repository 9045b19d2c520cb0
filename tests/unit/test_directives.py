"""Directive matching: which tool calls touch a claimed path, which reads a replace redirects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_fanout.directives import (
    Claim,
    bash_tokens,
    find_conflict,
    rewrite_input,
    touched_paths,
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src" / "deep").mkdir(parents=True)
    for name in ("src/a.py", "src/b.py", "src/deep/c.py", "README.md"):
        (root / name).write_text("x\n")
    return root


def conflict(
    project: Path, tool: str, tool_input: dict[str, object], *patterns: str, cwd: Path | None = None
) -> str | None:
    claims = [Claim(f"W{i}", p, str(project)) for i, p in enumerate(patterns, 1)]
    paths = touched_paths(tool, tool_input, str(cwd or project))
    found = find_conflict(paths, claims)
    return None if found is None else found[0].task


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Read", {"file_path": "src/a.py"}),
        ("Edit", {"file_path": "src/a.py", "old_string": "x", "new_string": "y"}),
        ("MultiEdit", {"file_path": "src/a.py", "edits": []}),
        ("Write", {"file_path": "src/a.py", "content": ""}),
        ("Grep", {"pattern": "x", "path": "src/a.py"}),
        ("Glob", {"pattern": "*.py", "path": "src/a.py"}),
        ("Bash", {"command": "sed -i s/x/y/ src/a.py"}),
        ("Bash", {"command": "cat <src/a.py >/tmp/out"}),
        ("Bash", {"command": "python -m tool --input=src/a.py"}),
        ("Bash", {"command": "grep -n x src/a.py:3"}),
        ("Bash", {"command": "echo 'unbalanced && cat src/a.py"}),
    ],
)
def test_calls_naming_a_claimed_file_conflict(project: Path, tool: str, tool_input) -> None:
    assert conflict(project, tool, tool_input, "src/a.py") == "W1"


def test_notebook_edit_uses_notebook_path(project: Path) -> None:
    (project / "nb.ipynb").write_text("{}")
    call = {"notebook_path": str(project / "nb.ipynb"), "new_source": ""}
    assert conflict(project, "NotebookEdit", call, "nb.ipynb") == "W1"


@pytest.mark.parametrize(
    "spelling",
    ["src/a.py", "./src/a.py", "src/../src/a.py", "{root}/src/a.py", "{root}/src/./a.py"],
)
def test_relative_and_absolute_spellings_are_the_same_path(project: Path, spelling: str) -> None:
    path = spelling.format(root=project)
    assert conflict(project, "Read", {"file_path": path}, "src/a.py") == "W1"


def test_relative_paths_resolve_against_the_calls_cwd(project: Path) -> None:
    assert conflict(project, "Read", {"file_path": "a.py"}, "src/a.py", cwd=project / "src")
    assert conflict(project, "Read", {"file_path": "a.py"}, "src/a.py") is None


def test_a_symlink_to_a_claimed_file_conflicts(project: Path, tmp_path: Path) -> None:
    link = tmp_path / "elsewhere.py"
    link.symlink_to(project / "src" / "a.py")
    assert conflict(project, "Read", {"file_path": str(link)}, "src/a.py") == "W1"


def test_a_claim_through_a_symlinked_directory_covers_the_real_files(project: Path) -> None:
    (project / "lib").symlink_to(project / "src")
    assert conflict(project, "Edit", {"file_path": str(project / "src/a.py")}, "lib/a.py")


def test_a_claimed_directory_covers_what_is_inside(project: Path) -> None:
    assert conflict(project, "Read", {"file_path": "src/deep/c.py"}, "src/deep") == "W1"
    assert conflict(project, "Read", {"file_path": "src/deeper.py"}, "src/deep") is None


def test_searching_a_directory_that_contains_a_claim_is_allowed(project: Path) -> None:
    assert conflict(project, "Grep", {"pattern": "x", "path": "src"}, "src/a.py") is None
    assert conflict(project, "Bash", {"command": "ls src"}, "src/a.py") is None


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/deep/c.py", False),
        ("src/**/*.py", "src/deep/c.py", True),
        ("src/**/*.py", "src/a.py", True),
        ("src/?.py", "src/b.py", True),
        ("src/[ab].py", "src/b.py", True),
        ("src/[!ab].py", "src/b.py", False),
        ("*.md", "README.md", True),
    ],
)
def test_glob_claims_match_segment_by_segment(project: Path, pattern, path, hit) -> None:
    assert (conflict(project, "Read", {"file_path": path}, pattern) == "W1") is hit


def test_unrelated_calls_and_unknown_tools_do_not_conflict(project: Path) -> None:
    assert conflict(project, "Read", {"file_path": "src/b.py"}, "src/a.py") is None
    assert conflict(project, "WebFetch", {"url": "src/a.py"}, "src/a.py") is None
    assert conflict(project, "Read", {"file_path": 42}, "src/a.py") is None
    assert conflict(project, "Bash", {"command": None}, "src/a.py") is None


def test_the_first_matching_claim_wins(project: Path) -> None:
    assert conflict(project, "Read", {"file_path": "src/a.py"}, "src/b.py", "src/*.py") == "W2"


def test_bash_tokens_split_operators_and_option_values() -> None:
    assert bash_tokens("cat a.txt|wc -l>out.txt") == ["cat", "a.txt", "wc", "-l", "out.txt"]
    assert "x.py" in bash_tokens("tool --file=x.py")
    assert bash_tokens("echo 'it''s") == ["echo", "'it''s"]


def test_bash_tokens_are_bounded() -> None:
    assert len(bash_tokens(" ".join(f"f{i}" for i in range(5000)))) <= 1024


def test_rewrite_redirects_reads_of_a_replaced_file(project: Path, tmp_path: Path) -> None:
    artifact = str(tmp_path / "out" / "a.py")
    replaces = {str(project / "src" / "a.py"): artifact}
    updated = rewrite_input("Read", {"file_path": "./src/a.py", "limit": 5}, str(project), replaces)
    assert updated == {"file_path": artifact, "limit": 5}
    assert rewrite_input("Edit", {"file_path": "src/a.py"}, str(project), replaces) is None
    assert rewrite_input("Read", {"file_path": "src/b.py"}, str(project), replaces) is None


def test_claims_record_their_absolute_path(project: Path) -> None:
    assert Claim("W1", "src/a.py", str(project)).absolute == os.path.join(project, "src", "a.py")
