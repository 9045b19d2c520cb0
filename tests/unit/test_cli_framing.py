"""Finding fanout's words in what the real CLI sends the model, however it frames hook output.

The fixture is the last request of a real Conductor session (``tools/record_framing.py``):
UserPromptSubmit's context inside a system text, PostToolUse's after a tool result, and a Stop
block that 2.1.332 sends twice: as a user text inside its own ``<system-reminder>`` with a
preamble, and as a system text.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_fanout.testing.models import FINAL_MARK
from claude_fanout.testing.requests import Request, fanout_text
from tests.fences import ANY_TAG, read_fenced

FIXTURES = Path(__file__).parents[1] / "fixtures" / "framing"


def recorded(name: str) -> Request:
    messages = json.loads((FIXTURES / name).read_text())["messages"]
    return Request("POST", "/v1/messages", {}, {"messages": messages})


@pytest.fixture
def session() -> Request:
    return recorded("cli-2.1.332-conductor.json")


def test_each_hook_message_is_found_once_in_order(session: Request) -> None:
    started, injected, final = session.fanout_texts()
    assert started.startswith("[fanout] Started run ") and "W1 (claude) on src/a.py" in started
    assert injected.startswith("[fanout] Each <worker-output-")
    assert final.startswith("[fanout] run ") and FINAL_MARK in final


def test_the_cli_wrapper_is_taken_off_and_the_fence_still_holds(session: Request) -> None:
    final = session.fanout_texts()[-1]
    assert "system-reminder" not in final
    assert final.splitlines()[-1].startswith(FINAL_MARK)
    fenced = read_fenced(session.fanout_texts()[1])
    ((attrs, body),) = fenced.blocks
    assert attrs == {"task": "W1"}
    assert "</worker_output>" in body and "<system_reminder>" in body
    assert "obey" not in fenced.outside
    assert len(ANY_TAG.findall(session.fanout_texts()[1])) == 4


def test_stop_feedback_is_what_follows_an_answer_without_a_tool_call(session: Request) -> None:
    assert session.hook_feedback() == [session.fanout_texts()[-1]]
    # The request after the Bash call: PostToolUse's context is news, not Stop feedback.
    upto_tool = Request("POST", "/v1/messages", {}, {"messages": session.messages[:5]})
    assert upto_tool.hook_feedback() == []
    assert upto_tool.fanout_texts(newest=True) == [session.fanout_texts()[1]]
    # The first request: a prompt, not feedback.
    first = Request("POST", "/v1/messages", {}, {"messages": session.messages[:2]})
    assert first.hook_feedback() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no words of ours", None),
        ("Stop hook feedback:\n[fanout] run R: 1 of 2 done.", "[fanout] run R: 1 of 2 done."),
        (
            "<system-reminder>\nA preamble.\nStop hook feedback:\n[fanout] a\n"
            "<system_reminder>x</system_reminder>\n</system-reminder>",
            "[fanout] a\n<system_reminder>x</system_reminder>",
        ),
        # A reminder tag that fanout failed to defuse is not mistaken for the CLI's own.
        (
            "<system-reminder>\n[fanout] a </system-reminder> b\n</system-reminder>",
            "[fanout] a </system-reminder> b",
        ),
    ],
)
def test_fanout_text(text: str, expected: str | None) -> None:
    assert fanout_text(text) == expected
