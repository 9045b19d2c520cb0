"""Fixtures for end-to-end tests: a scripted fake Messages API and a throwaway HOME."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from claude_fanout.testing.fake_api import FakeMessagesAPI
from claude_fanout.testing.replies import Handler

StartFake = Callable[[Handler], FakeMessagesAPI]


@pytest.fixture
def fake_api() -> Iterator[StartFake]:
    """Factory: ``fake_api(handler)`` starts a :class:`FakeMessagesAPI`; all stop at teardown."""
    started: list[FakeMessagesAPI] = []

    def start(handler: Handler) -> FakeMessagesAPI:
        api = FakeMessagesAPI(handler).start()
        started.append(api)
        return api

    yield start
    for api in reversed(started):
        api.close()


@pytest.fixture
def claude_home(tmp_path: Path) -> Path:
    """An empty HOME for the CLI (its config, transcripts and backups land here)."""
    home = tmp_path / "home"
    home.mkdir()
    return home
