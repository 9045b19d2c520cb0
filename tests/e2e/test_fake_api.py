"""Fast tests of the fake Messages API itself, over real HTTP on loopback (urllib)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_fanout.testing.fake_api import FakeMessagesAPI, claude_cli, cli_env
from claude_fanout.testing.models import (
    find_paths,
    read_then_summarize,
    scripted,
    summarize_read_output,
)
from claude_fanout.testing.replies import ErrorReply, Handler, Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import Request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(20)]

StartFake = Callable[[Handler], FakeMessagesAPI]  # the conftest `fake_api` factory


def _post(
    api: FakeMessagesAPI,
    body: dict[str, Any],
    path: str = "/v1/messages?beta=true",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        api.base_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse an event stream the way an SSE client does: events end at a blank line."""
    events: list[tuple[str, dict[str, Any]]] = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        fields = dict(line.split(": ", 1) for line in chunk.split("\n"))
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append((fields["event"], data))
    return events


def _body(*, stream: bool = True, tools: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-test",
        "stream": stream,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **({"tools": [{"name": t, "input_schema": {}} for t in tools]} if tools else {}),
        **extra,
    }


def _assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the message from its events, as the SDKs do."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = dict(data["message"])
            message["content"] = []
        elif name == "content_block_start":
            assert data["index"] == len(message["content"])
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block = message["content"][data["index"]]
            delta = data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta"
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop":
            if data["index"] in partial:
                message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **data["usage"]}
    return message


def test_streams_text_as_well_formed_sse(fake_api: StartFake) -> None:
    text = "Hello from the fake. " * 10  # longer than one delta
    api = fake_api(lambda _r: Reply([Text(text)], usage=Usage(12, 34, 5, 6)))
    status, headers, raw = _post(api, _body(tools=["Read"]))
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    events = _parse_sse(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_delta") > 1
    message = _assemble(events)
    assert message["model"] == "claude-test"
    assert message["content"] == [{"type": "text", "text": text}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"] == {
        "input_tokens": 12,
        "output_tokens": 34,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 6,
    }


def test_tool_use_input_reassembles_from_json_deltas(fake_api: StartFake) -> None:
    tool_input = {"file_path": "/tmp/x y/ünïcode.txt", "nested": {"n": [1, 2, 3]}, "q": '"'}
    use = ToolUse("Read", tool_input)
    api = fake_api(lambda _r: Reply([Text("reading"), use]))
    _status, _headers, raw = _post(api, _body(tools=["Read"]))
    events = _parse_sse(raw)
    assert sum(1 for n, d in events if d.get("delta", {}).get("type") == "input_json_delta") > 1
    message = _assemble(events)
    assert message["stop_reason"] == "tool_use"
    assert message["content"][1] == {
        "type": "tool_use",
        "id": use.id,
        "name": "Read",
        "input": tool_input,
    }
    assert use.id.startswith("toolu_")
    assert ToolUse("Read", {}).id != ToolUse("Read", {}).id


def test_non_streaming_request_gets_a_plain_message(fake_api: StartFake) -> None:
    api = fake_api(lambda _r: Reply([Text("plain"), ToolUse("Grep", {"pattern": "x"}, id="t1")]))
    status, headers, raw = _post(api, _body(stream=False))
    assert status == 200
    assert headers["content-type"] == "application/json"
    message = json.loads(raw)
    assert message["content"] == [
        {"type": "text", "text": "plain"},
        {"type": "tool_use", "id": "t1", "name": "Grep", "input": {"pattern": "x"}},
    ]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(
    ("reply", "status", "error_type", "header"),
    [
        (ErrorReply.rate_limited(7), 429, "rate_limit_error", ("retry-after", "7")),
        (ErrorReply.overloaded(), 529, "overloaded_error", None),
        (ErrorReply(400, "invalid_request_error", "bad", {"x-why": "test"}), 400, None, None),
    ],
)
def test_error_replies_carry_status_type_and_headers(
    fake_api: StartFake,
    reply: ErrorReply,
    status: int,
    error_type: str | None,
    header: tuple[str, str] | None,
) -> None:
    api = fake_api(lambda _r: reply)
    got_status, headers, raw = _post(api, _body())
    assert got_status == status
    body = json.loads(raw)
    assert body["type"] == "error"
    assert body["error"]["type"] == (error_type or reply.error_type)
    assert body["error"]["message"] == reply.message
    for name, value in reply.headers.items():
        assert headers[name.lower()] == value
    if header:
        assert headers[header[0]] == header[1]
    assert api.reported_usage() == Usage()  # errors report no usage


def test_other_routes_answer_and_are_recorded(fake_api: StartFake) -> None:
    api = fake_api(lambda _r: Reply([Text("x")]))
    status, _h, raw = _post(api, _body(), path="/v1/messages/count_tokens?beta=true")
    assert status == 200
    assert json.loads(raw)["input_tokens"] > 0
    status, _h, raw = _post(api, {"a": 1}, path="/v1/nope")
    assert status == 404
    assert json.loads(raw)["error"]["type"] == "not_found_error"
    for method, path, want in [
        ("GET", "/", 200),
        ("HEAD", "/api/hello", 200),
        ("GET", "/v1/x", 404),
    ]:
        req = urllib.request.Request(api.base_url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                code = resp.status
        except urllib.error.HTTPError as err:
            code = err.code
        assert code == want, (method, path)
    assert [(r.method, r.route) for r in api.requests] == [
        ("POST", "/v1/messages/count_tokens"),
        ("POST", "/v1/nope"),
        ("GET", "/"),
        ("HEAD", "/api/hello"),
        ("GET", "/v1/x"),
    ]
    assert api.exchanges == []  # only /v1/messages calls the handler


def test_a_failing_handler_answers_500_and_is_reported(fake_api: StartFake) -> None:
    def broken(_r: Request) -> Reply:
        raise ValueError("script bug")

    api = fake_api(broken)
    status, _h, raw = _post(api, _body())
    assert status == 500
    assert "script bug" in json.loads(raw)["error"]["message"]
    assert api.handler_errors == ["ValueError: script bug"]


def test_request_helpers_read_what_the_cli_sends(fake_api: StartFake) -> None:
    seen: list[Request] = []

    def record(request: Request) -> Reply:
        seen.append(request)
        return Reply([Text("ok")])

    api = fake_api(record)
    body = {
        "model": "m",
        "stream": True,
        "system": [{"type": "text", "text": "You are a fake."}],
        "tools": [
            {"name": "Read", "input_schema": {}},
            {"name": "DeferredToolPlaceholder", "input_schema": {}, "defer_loading": True},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "<system-reminder>\nnoise /etc/x.txt\n</system-reminder>",
                    },
                    {"type": "text", "text": "Review docs/a.md"},
                ],
            },
            {"role": "system", "content": " - Primary working directory: /work/proj\n - x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read"}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "1\tline"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [{"type": "text", "text": "two"}],
                    },
                    {"type": "text", "text": "and more"},
                ],
            },
        ],
    }
    _post(api, body, headers={"X-Claude-Code-Session-Id": "sess-1"})
    (req,) = seen
    assert req.session_id == "sess-1"
    assert req.is_messages
    assert req.tool_names == ["Read", "DeferredToolPlaceholder"]
    assert req.offered_tool_names == ["Read"]
    assert not req.is_side_call
    assert req.first_user_text() == "Review docs/a.md"
    assert "noise" in req.first_user_text(include_reminders=True)
    assert req.last_user_text() == "and more"
    assert req.tool_results() == [("t1", "1\tline"), ("t2", "two")]
    assert "You are a fake." in req.system_text()
    assert req.working_directory() == Path("/work/proj")
    assert api.requests == [req]


def test_read_then_summarize_reads_then_quotes_the_file() -> None:
    brain = read_then_summarize(usage=Usage(7, 3))
    system = [{"type": "text", "text": "Primary working directory: /srv/p"}]
    first = Request(
        "POST",
        "/v1/messages",
        {},
        {
            "system": system,
            "tools": [{"name": "Read"}],
            "messages": [{"role": "user", "content": "Please review `src/app.py` carefully."}],
        },
    )
    reply = brain(first)
    assert isinstance(reply, Reply)
    tool = reply.content[-1]
    assert isinstance(tool, ToolUse)
    assert (tool.name, dict(tool.input)) == ("Read", {"file_path": "/srv/p/src/app.py"})
    assert reply.effective_stop_reason == "tool_use"
    assert reply.usage == Usage(7, 3)

    read_output = "1\t\n2\t  import os  \n3\tx = 1\n4\t"
    second = Request(
        "POST",
        "/v1/messages",
        {},
        {
            "system": system,
            "tools": [{"name": "Read"}],
            "messages": [
                first.body["messages"][0],
                {"role": "assistant", "content": [{"type": "tool_use", "id": tool.id}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": tool.id, "content": read_output}
                    ],
                },
            ],
        },
    )
    final = brain(second)
    assert isinstance(final, Reply)
    assert final.content == [Text("SUMMARY /srv/p/src/app.py: 3 lines; first line: import os")]
    assert final.effective_stop_reason == "end_turn"

    side = brain(Request("POST", "/v1/messages", {}, {"messages": []}))
    assert isinstance(side, Reply)
    assert side.usage == brain.side_usage


def test_find_paths_and_the_brain_prefers_a_file_that_exists(tmp_path: Path) -> None:
    assert find_paths("See e.g. `src/app.py`, ../x/y.toml and /etc/hosts.conf.") == [
        "e.g",
        "src/app.py",
        "../x/y.toml",
        "/etc/hosts.conf",
    ]
    assert find_paths("no paths here") == []
    (tmp_path / "real.txt").write_text("x\n")
    request = Request(
        "POST",
        "/v1/messages",
        {},
        {
            "tools": [{"name": "Read"}],
            "system": f"Primary working directory: {tmp_path}",
            "messages": [{"role": "user", "content": "Compare e.g. ghost.txt with real.txt."}],
        },
    )
    reply = read_then_summarize()(request)
    assert isinstance(reply, Reply)
    tool = reply.content[-1]
    assert isinstance(tool, ToolUse)
    assert tool.input == {"file_path": str(tmp_path / "real.txt")}


def test_summarize_read_output_counts_like_splitlines() -> None:
    content = "\nfirst real line\nsecond\n\n"
    numbered = "\n".join(f"{i}\t{line}" for i, line in enumerate([*content.split("\n")], 1))
    assert summarize_read_output(numbered) == (len(content.splitlines()), "first real line")
    assert summarize_read_output("     1\u2192arrow style\n     2\u2192b") == (2, "arrow style")
    assert summarize_read_output("File does not exist.") == (0, "")


def test_scripted_serves_each_session_in_order(fake_api: StartFake) -> None:
    api = fake_api(scripted(Reply([Text("one")]), Reply([Text("two")]), then=Reply([Text("end")])))

    def text_of(session: str, tools: list[str] | None = None) -> str:
        _s, _h, raw = _post(api, _body(tools=tools), headers={"x-claude-code-session-id": session})
        return str(_assemble(_parse_sse(raw))["content"][0]["text"])

    assert [text_of("a", ["Read"]) for _ in range(3)] == ["one", "two", "end"]
    assert text_of("b", ["Read"]) == "one"  # a new session starts the script again
    assert text_of("a") == "Fake session"  # a side call does not consume a step
    assert api.reported_usage(side_calls=False) == Usage(40, 20)
    assert len(api.message_requests(side_calls=True)) == 1


def test_wait_for_wakes_on_a_request_and_times_out(fake_api: StartFake) -> None:
    api = fake_api(lambda _r: Reply([Text("x")]))
    assert not api.wait_for(lambda reqs: len(reqs) > 0, timeout=0.05)
    sender = threading.Thread(target=_post, args=(api, _body()))
    sender.start()
    assert api.wait_for(lambda reqs: len(reqs) == 1, timeout=5)
    sender.join()


def test_close_frees_the_port_and_joins_the_thread() -> None:
    with FakeMessagesAPI(lambda _r: Reply([Text("x")])) as api:
        port = int(api.base_url.rsplit(":", 1)[1])
        assert api.base_url == f"http://127.0.0.1:{port}"
        thread = api.server_thread
        assert thread is not None
        assert thread.is_alive()
    assert not thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    with pytest.raises(RuntimeError):
        _ = api.base_url


def test_cli_env_is_offline_and_clean(tmp_path: Path) -> None:
    parent = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "CLAUDECODE": "1",
        "CLAUDE_CODE_ENTRYPOINT": "cli",
        "CLAUDE_CODE_SSE_PORT": "1234",
        "ANTHROPIC_API_KEY": "sk-real",
        "ANTHROPIC_AUTH_TOKEN": "tok",
        "AWS_PROFILE": "prod",
        "HTTPS_PROXY": "http://proxy:3128",
        "HOME": "/root",
    }
    env = cli_env("http://127.0.0.1:9", tmp_path, base=parent)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert env["ANTHROPIC_API_KEY"] != "sk-real"
    assert env["HOME"] == str(tmp_path)
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["PATH"] == "/usr/bin"
    assert env["LANG"] == "C.UTF-8"
    for gone in ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_CODE_SSE_PORT", "AWS_PROFILE"):
        assert gone not in env
    assert "ANTHROPIC_AUTH_TOKEN" not in env
    assert "HTTPS_PROXY" not in env


def test_the_selected_cli_is_executable() -> None:
    path = claude_cli()
    assert path.stat().st_mode & 0o111


FIXTURE = Path(__file__).parents[1] / "fixtures" / "cli-2.1.330-read-session.json"


def test_recorded_cli_requests_drive_the_scripted_brain() -> None:
    """Requests as the real CLI (2.1.330) sent them: the helpers and the brain understand them."""
    recorded = json.loads(FIXTURE.read_text())["requests"]
    first, second = (Request(r["method"], r["path"], r["headers"], r["body"]) for r in recorded)
    assert first.is_messages
    assert first.route == "/v1/messages"
    assert first.body["stream"] is True
    assert first.session_id == second.session_id
    assert first.tool_names == ["DeferredToolPlaceholder", "Read"]
    assert first.offered_tool_names == ["Read"]
    assert not first.is_side_call
    assert first.working_directory() == Path("/tmp/ex/e1b/proj")
    assert first.first_user_text() == "Review notes.txt please"
    assert first.tool_results() == []

    brain = read_then_summarize()
    reply = brain(first)
    assert isinstance(reply, Reply)
    assert [b.name for b in reply.content if isinstance(b, ToolUse)] == ["Read"]
    ((tool_id, text),) = second.tool_results()
    assert tool_id.startswith("toolu_")
    assert "Hello fanout" in text
    final = brain(second)
    assert isinstance(final, Reply)
    assert final.content == [
        Text("SUMMARY /tmp/ex/e1b/proj/notes.txt: 4 lines; first line: Hello fanout")
    ]
