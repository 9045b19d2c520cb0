"""What every recorder in tools/ takes on its command line: where the fixtures go (by default the
test fixture folder they belong to) and a scratch directory for the projects, homes and hook
recorders it runs (by default a fresh temporary directory, removed afterwards)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


def parser(
    doc: str | None, fixtures: str, scenarios: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """``[SCENARIO ...] [--out DIR] [--scratch DIR]`` for a recorder whose fixtures live in
    ``tests/fixtures/<fixtures>``."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if scenarios:
        ap.add_argument(
            "scenarios",
            nargs="*",
            metavar="SCENARIO",
            type=_one_of(scenarios),
            help=f"what to record (default: all): {' '.join(scenarios)}",
        )
    ap.add_argument(
        "--out",
        type=Path,
        default=FIXTURES / fixtures,
        help=f"where the fixtures are written (default: tests/fixtures/{fixtures})",
    )
    ap.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="scratch directory for the projects and homes (default: a new temporary "
        "directory, removed at the end)",
    )
    return ap


def _one_of(known: Sequence[str]) -> Callable[[str], str]:
    def check(name: str) -> str:
        if name not in known:
            raise argparse.ArgumentTypeError(f"no scenario {name!r}; known: {' '.join(known)}")
        return name

    return check


@contextlib.contextmanager
def scratch_dir(given: Path | None, *, prefix: str) -> Iterator[Path]:
    """``given`` (created if missing, kept), or a fresh temporary directory removed at the end."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    made = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)
