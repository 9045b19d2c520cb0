"""Scripted models for the fake Messages API: what the tests, the demo and ``doctor --probe`` run.

Workers: :class:`ReadThenSummarize` (Read the file the prompt names, answer a one-line summary),
:class:`EditThenReport` (Read, Edit, report), :func:`scripted` (fixed replies in order) and
:func:`structured_output` (a ``--json-schema`` answer). The Conductor: :class:`ScriptedConductor`
reads a file a worker owns, waits with Bash when that is denied, and merges once fanout hands it
the results; :func:`scripted_model` is the one handler for a whole fan-out (Conductor, readers,
writers), telling them apart with :func:`is_worker`. Standard library only.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from claude_fanout.testing.replies import ErrorReply, Handler, Reply, Text, ToolUse, Usage
from claude_fanout.testing.requests import STRUCTURED_OUTPUT_TOOL, Request
from claude_fanout.text import first_line

__all__ = [
    "EDIT_MARK",
    "FINAL_MARK",
    "WORKER_MARK",
    "EditThenReport",
    "ReadThenSummarize",
    "ScriptedConductor",
    "find_paths",
    "is_worker",
    "read_then_summarize",
    "scripted",
    "scripted_model",
    "side_call_reply",
    "structured_output",
    "summarize_read_output",
]

# What fanout's Stop hook says when it hands over the last results (hooks/report.py).
FINAL_MARK: Final = "All of this session's fanout workers are done"
# A worker's prompt carries one of these; the Conductor's never does.
WORKER_MARK: Final = "Your file:"
EDIT_MARK: Final = "replace `"
_READ_LINE_RE: Final = re.compile(r"^\s*(\d+)[\t\u2192](.*)$")
# A path-looking token: absolute, ./ or ../ relative, or a relative name with a directory or an
# extension (``src/app.py``, ``notes.txt``). Backticks and quotes around it are ignored.
_PATH_RE: Final = re.compile(
    r"(?<![\w/.~-])((?:~?/|\.{1,2}/)?(?:[\w.@+-]+/)*[\w@+-][\w.@+-]*\.[A-Za-z0-9]{1,8})(?![\w/])"
)


def side_call_reply(request: Request) -> Reply:
    """A short answer for a call outside the agent loop (title, summary, classifier...)."""
    del request
    return Reply([Text("Fake session")], usage=Usage(input_tokens=3, output_tokens=2))


def summarize_read_output(text: str) -> tuple[int, str]:
    """``(line_count, first_non_empty_line)`` of a Read tool result (``cat -n`` style)."""
    lines: list[str] = []
    for raw in text.splitlines():
        match = _READ_LINE_RE.match(raw)
        if match:
            lines.append(match.group(2))
    if lines and not lines[-1]:
        lines.pop()  # Read numbers the empty tail after a final newline: count like splitlines()
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    return len(lines), first


def find_paths(text: str) -> list[str]:
    """Path-looking tokens in ``text``, in order: absolute, ``./``/``../`` relative, or a name
    with an extension (``src/app.py``, ``NOTES.md``); backticks and quotes around them ignored."""
    return [m.group(1) for m in _PATH_RE.finditer(text)]


@dataclass
class ReadThenSummarize:
    """Scripted model: Read the file the prompt names, then summarize it.

    Turn 1 answers a ``Read`` tool_use on the first path found in the first user message (made
    absolute against the system prompt's ``Primary working directory``). Once the Read result
    comes back it answers ``SUMMARY <path>: <n> lines; first line: <line>``. Side calls get a
    short text. Each main-loop reply reports ``usage`` and waits ``delay_s``.
    """

    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=100, output_tokens=20))
    side_usage: Usage = field(default_factory=lambda: Usage(input_tokens=3, output_tokens=2))
    tool_name: str = "Read"

    def __call__(self, request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return Reply([Text("Fake session")], usage=self.side_usage, delay_s=self.delay_s)
        candidates = [self.resolve(request, p) for p in find_paths(request.first_user_text())]
        if not candidates:
            return self._reply([Text("No file path in the prompt; nothing to review.")])
        # The first one that exists (the fake runs on the CLI's machine), else the first one.
        path = next((c for c in candidates if c.is_file()), candidates[0])
        results = request.tool_results()
        if not results:
            return self._reply(
                [Text(f"I'll read {path}."), ToolUse(self.tool_name, {"file_path": str(path)})]
            )
        _tool_id, text = results[-1]
        count, first = summarize_read_output(text)
        if count == 0:
            return self._reply([Text(f"Could not read {path}: {text.strip()[:200]}")])
        return self._reply([Text(f"SUMMARY {path}: {count} lines; first line: {first}")])

    @staticmethod
    def resolve(request: Request, rel: str) -> Path:
        path = Path(rel).expanduser()
        if not path.is_absolute():
            cwd = request.working_directory()
            if cwd is not None:
                path = cwd / path
        return path

    def _reply(self, content: Sequence[Text | ToolUse]) -> Reply:
        return Reply(list(content), usage=self.usage, delay_s=self.delay_s)


_EDIT_RE = re.compile(r"In (?P<path>\S+?), replace `(?P<old>[^`]+)` with `(?P<new>[^`]*)`")


@dataclass
class EditThenReport:
    """Scripted writer: for a prompt ``In <path>, replace `<old>` with `<new>`.``, Read the file
    (Claude Code's Edit refuses a file not read first), Edit it, then answer
    ``EDITED <path>: <the Edit's tool result>``. Each main-loop reply waits ``delay_s``."""

    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=400, output_tokens=60))

    def __call__(self, request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return side_call_reply(request)
        found = _EDIT_RE.search(request.first_user_text())
        if found is None:
            return self._reply([Text("No edit asked for.")])
        path = str(ReadThenSummarize.resolve(request, found["path"]))
        done = request.all_tool_results()
        if not done:
            return self._reply(
                [Text(f"I'll read {found['path']}."), ToolUse("Read", {"file_path": path})]
            )
        if len(done) == 1:
            edit = {"file_path": path, "old_string": found["old"], "new_string": found["new"]}
            return self._reply([ToolUse("Edit", edit)])
        return self._reply([Text(f"EDITED {found['path']}: {first_line(done[-1][1], 120)}")])

    def _reply(self, content: Sequence[Text | ToolUse]) -> Reply:
        return Reply(list(content), usage=self.usage, delay_s=self.delay_s)


def read_then_summarize(*, delay_s: float = 0.0, usage: Usage | None = None) -> ReadThenSummarize:
    """A :class:`ReadThenSummarize` brain (see there)."""
    if usage is None:
        return ReadThenSummarize(delay_s=delay_s)
    return ReadThenSummarize(delay_s=delay_s, usage=usage)


def structured_output(
    value: Mapping[str, Any], *, usage: Usage | None = None, delay_s: float = 0.0
) -> Reply:
    """The model's answer to a ``--json-schema`` session: one ``StructuredOutput`` call with
    ``value``. The CLI checks it against the schema; a valid one ends the session (its result
    carries ``structured_output``), an invalid one comes back as an error tool_result."""
    return Reply(
        [ToolUse(STRUCTURED_OUTPUT_TOOL, value)],
        usage=usage if usage is not None else Usage(input_tokens=10, output_tokens=5),
        delay_s=delay_s,
    )


def scripted(*replies: Reply | ErrorReply, then: Reply | None = None) -> Handler:
    """Serve ``replies`` in order to each session's main-loop calls, then ``then`` (or a short
    final text) forever. Side calls get :func:`side_call_reply`."""
    final = then if then is not None else Reply([Text("Done.")])
    counters: dict[str | None, Iterator[int]] = {}
    lock = threading.Lock()

    def handle(request: Request) -> Reply | ErrorReply:
        if request.is_side_call:
            return side_call_reply(request)
        with lock:
            n = next(counters.setdefault(request.session_id, itertools.count()))
        return replies[n] if n < len(replies) else final

    return handle


# --------------------------------------------------------------------------- a whole fan-out


def is_worker(request: Request) -> bool:
    text = request.first_user_text()
    return WORKER_MARK in text or EDIT_MARK in text


class ScriptedConductor:
    """The Conductor's scripted model, reacting to what the CLI sends: it reads a file a worker
    owns, waits with Bash when that is denied, ends its turn, and merges once handed the
    results."""

    def __init__(
        self, project: Path, *, claimed: str, wait_for: str, last_word: str = "MERGED."
    ) -> None:
        self.project = project
        self.claimed = claimed
        self.last_word = last_word
        # Waits with Bash until this worker has finished, so that its result is injected
        # after the call whatever the machine's speed (bounded by the Bash tool's timeout).
        self.wait_command = (
            f'until grep -qs \'"task":"{wait_for}"[^}}]*"type":"task_exited"\' '
            ".claude/runs/*/events.jsonl; do sleep 0.1; done"
        )

    def __call__(self, request: Request) -> Reply:
        feedback = "\n".join(request.hook_feedback())
        if feedback:
            if FINAL_MARK in feedback:
                return Reply([Text(self.last_word)])
            return Reply([Text("Still waiting for the workers.")])
        results = request.tool_results()
        if not results and "tool_result" not in json.dumps(request.messages):
            read = ToolUse("Read", {"file_path": str(self.project / self.claimed)})
            return Reply([Text("Let me look at the code first."), read])
        if results and "claimed by worker" in results[-1][1]:
            wait = ToolUse(
                "Bash", {"command": self.wait_command, "description": "wait for that worker"}
            )
            return Reply([Text("A worker owns that file; I will wait."), wait])
        return Reply([Text("I will wait for the workers' results.")])


def scripted_model(project: Path, *, model_delay_s: float, files: Sequence[str]) -> Handler:
    """One handler for everyone: workers read and summarise their file (the last one slowly,
    so the Conductor has to wait for it at Stop); the Conductor follows its script."""
    workers = ReadThenSummarize(delay_s=model_delay_s)
    slow = ReadThenSummarize(delay_s=model_delay_s * 4)
    writers = EditThenReport(delay_s=model_delay_s)
    ordered = sorted(files)  # `src/*.py` order: W1, W2, W3
    slowest = ordered[-1]
    reviewer = ScriptedConductor(
        project, claimed=ordered[0], wait_for="W1", last_word="MERGED: three reviews combined."
    )
    editor = ScriptedConductor(
        project, claimed="src/billing.py", wait_for="W1", last_word="Edits reviewed."
    )

    def handle(request: Request) -> Reply:
        if request.is_side_call:
            return Reply([Text("Fan-out review")])
        if EDIT_MARK in request.first_user_text():
            reply = writers(request)
            assert isinstance(reply, Reply)
            return reply
        if is_worker(request):
            brain = slow if slowest in request.first_user_text() else workers
            reply = brain(request)
            assert isinstance(reply, Reply)
            return reply
        # The CLI expands /fanout into its command file; the arguments stay.
        if "edits.json" in request.first_user_text():
            return editor(request)
        return reviewer(request)

    return handle
