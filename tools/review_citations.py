"""Does every test and benchmark a Markdown file cites still exist?

    .venv/bin/python tools/review_citations.py docs/review.md [more.md ...]

Finds every ``tests/…py::test_name`` (also ``Class::test_name`` and parametrised
``test_name[id]``), every ``tests/…`` path and every ``benchmarks/…`` path in the text, wherever
it is written (inline code, a link, prose; ``../tests/…`` from docs/ too), and checks each against
the repository: the file (or directory) exists; a cited test function is defined in that file
(read with ``ast``, nothing imported); a cited parametrised id is one pytest collects from it
(``pytest --collect-only``, once per file). Prints one line per dead citation, ``FILE:LINE:
citation: why``, and exits 1 when there is any. Paths with ``*`` or ``<…>`` placeholders are
patterns, not citations, and are skipped.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CITATION = re.compile(
    r"(?<![\w.-])"  # not inside another word or path (a "../" prefix is fine)
    r"(?P<path>(?:tests|benchmarks)/[\w./-]*)"
    r"(?:::(?P<test>[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*)(?P<param>\[[^\]\s`]*\])?)?"
)


@dataclass(frozen=True)
class Citation:
    path: str  # relative to the repository root; a trailing "/" names a directory
    test: str | None  # "test_x" or "TestClass::test_x"
    param: str | None  # "[id]" of a parametrised test
    line: int

    def __str__(self) -> str:
        return self.path + (f"::{self.test}" if self.test else "") + (self.param or "")


def find_citations(text: str) -> list[Citation]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _CITATION.finditer(line):
            path = match.group("path").rstrip(".,")
            after = line[match.end() : match.end() + 1]
            if "*" in path or after in ("*", "<", "{"):
                continue  # a pattern (tests/e2e/*.py, benchmarks/<x>.py), not a citation
            found.append(Citation(path, match.group("test"), match.group("param"), number))
    return found


def defined_tests(source: str) -> set[str]:
    """``test_x`` and ``Class::test_x`` names a test file defines (module level, classes)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}::{item.name}")
    return names


@cache
def collected_ids(root: Path, path: str) -> frozenset[str]:
    """Every node id pytest collects from one test file (``path::name[id]``)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", path],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return frozenset(line.strip() for line in done.stdout.splitlines() if "::" in line)


def problem(citation: Citation, root: Path) -> str | None:
    """Why ``citation`` is dead in ``root``, or None when it holds."""
    target = root / citation.path
    if not target.exists():
        return f"no such {'directory' if citation.path.endswith('/') else 'file'}"
    if citation.test is None:
        return None
    if not target.is_file():
        return "a test cited in a directory"
    try:
        names = defined_tests(target.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError) as exc:
        return f"cannot read its tests ({exc})"
    if citation.test not in names:
        return f"no test {citation.test} in {citation.path}"
    if citation.param and str(citation) not in collected_ids(root, citation.path):
        return f"pytest collects no {citation.test}{citation.param} from {citation.path}"
    return None


def check(text: str, root: Path = ROOT, *, name: str = "<text>") -> list[str]:
    """One ``NAME:LINE: citation: why`` line per dead citation in ``text``."""
    out = []
    for citation in find_citations(text):
        why = problem(citation, root)
        if why is not None:
            out.append(f"{name}:{citation.line}: {citation}: {why}")
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    problems = []
    for arg in argv:
        path = Path(arg)
        problems += check(path.read_text(encoding="utf-8"), ROOT, name=arg)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
