"""A real headless browser for tests: Debian's Chromium, driven from the command line.

``scripts/test`` installs it where it is missing (as root, with apt). ``dump_dom`` loads a page
and returns the DOM as the browser left it after load (any script would have run by then);
``screenshot`` renders it to a PNG. Each call gets its own profile directory under the test's
``tmp_path``, so the ``project`` fixture sees a browser process that outlives its call.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Where tests keep what a person may want to look at afterwards (screenshots); not in git.
ARTIFACTS = Path(os.environ.get("FANOUT_TEST_ARTIFACTS") or REPO / ".artifacts")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
)


def chromium() -> str:
    """The Chromium binary; the test is skipped (with the fix) where there is none."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on PATH: `apt-get install chromium` (scripts/test does, as root)")
    return found


def _run(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [chromium(), *_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=True,
        env={**os.environ, "HOME": str(profile)},
    )


def dump_dom(page: Path, scratch: Path) -> str:
    """The page's DOM, serialized by the browser after load."""
    return _run(page, scratch / "profile-dom", "--dump-dom").stdout


def screenshot(
    page: Path,
    scratch: Path,
    name: str,
    *,
    size: str = "1280,1600",
    paths: Mapping[Path, str] | None = None,
) -> Path:
    """A PNG of the page, kept under ``ARTIFACTS`` as ``name`` (and returned). ``paths``: the
    page is shot as a copy where each of these (scratch) directories reads as the given text,
    e.g. ``~/src/app``, so a picture kept in the docs shows no temporary directory."""
    if paths:
        text = page.read_text()
        for path, shown in paths.items():
            text = text.replace(str(path), shown)
        page = scratch / f"shown-{page.name}"
        page.write_text(text)
    shot = scratch / name
    _run(page, scratch / "profile-shot", f"--screenshot={shot}", f"--window-size={size}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = ARTIFACTS / name
    shutil.copyfile(shot, kept)
    return kept


class Dom(HTMLParser):
    """What a page or a serialized DOM holds: every element (tag, attributes), its text and
    title, and for ``fanout report``'s page the workers table's cells and each result's text,
    by task."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.title = ""
        self.rows: dict[str, list[str]] = {}
        self.sections: dict[str, str] = {}
        self._text: list[str] = []
        self._in_title = False
        self._row: str | None = None
        self._cell: list[str] | None = None
        self._section: str | None = None
        self._pre: list[str] | None = None
        self.feed(markup)
        self.close()

    @property
    def text(self) -> str:
        return "".join(self._text)

    def tags(self, name: str) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def with_attr(self, name: str, value: str | None = None) -> list[tuple[str, dict[str, str]]]:
        return [
            (tag, attrs)
            for tag, attrs in self.elements
            if name in attrs and (value is None or attrs[name] == value)
        ]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        # The document's title: the first <title> (SVG shapes have <title>s of their own).
        self._in_title = tag == "title" and not any(t == "title" for t, _ in self.elements[:-1])
        if tag == "tr" and "data-task" in found:
            self._row = found["data-task"]
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "section":
            self._section = found.get("data-task")
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "pre" and self._section is not None and self._pre is not None:
            self.sections[self._section] = "".join(self._pre)
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        self._text.append(data)
        for sink in (self._cell, self._pre):
            if sink is not None:
                sink.append(data)
