"""``fanout report`` of a real run, rendered by a real headless Chromium.

The run: shell tasks with dependencies, one that fails and is retried, one whose result.md is
hostile markup, and a Claude writer (the real CLI against the scripted fake API) whose change is
merged back. The page is loaded by Chromium; the assertions are on the DOM it produced after load,
and a screenshot is kept (``.artifacts/report.png``, or ``$FANOUT_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_fanout.testing.fake_api import cli_env
from claude_fanout.testing.models import EditThenReport
from tests.browser import Dom, dump_dom, screenshot
from tests.e2e.conftest import StartFake
from tests.helpers import CLIResult, git

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# What a worker may write: it must reach the person as text and run nothing.
HOSTILE = (
    "<script>document.title='pwned';"
    "document.body.insertAdjacentHTML('beforeend','<p id=\"pwned\">x</p>')</script>\n"
    '</textarea></pre><img src=x onerror="document.title=\'pwned\'"><b id="bold">bold</b>\n'
    '<a href="javascript:alert(1)" id="link">click</a> & "quotes" \' done\n'
)


def test_report_of_a_real_run_renders_in_chromium_and_runs_nothing_a_worker_wrote(
    project: Path,
    tmp_path: Path,
    fanout: Callable[..., CLIResult],
    fake_api: StartFake,
    claude_home: Path,
) -> None:
    (project / "a.py").write_text("alpha = 1\n")
    (project / ".gitignore").write_text(".claude/runs/\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "start")
    hostile = tmp_path / "hostile.md"
    hostile.write_text(HOSTILE)
    out = '"$FANOUT_OUT_DIR"'
    tasks = [
        {"id": "prep", "kind": "shell", "argv": ["sh", "-c", f"cp {hostile} {out}/result.md"]},
        {
            # Fails its first attempt, succeeds on the retry.
            "id": "flaky",
            "kind": "shell",
            "retries": 1,
            "argv": [
                "sh",
                "-c",
                f"if [ -e {out}/tried ]; then echo second; else touch {out}/tried; exit 3; fi",
            ],
        },
        {
            "id": "W1",
            "kind": "claude",
            "deps": ["prep"],
            "prompt": "In a.py, replace `alpha = 1` with `alpha = 100`.",
            "write": True,
            "claims": ["a.py"],
            "max_turns": 5,
        },
        {"id": "final", "kind": "shell", "deps": ["W1", "flaky"], "argv": ["sleep", "0.2"]},
    ]
    (project / "plan.json").write_text(json.dumps({"version": 1, "tasks": tasks}))
    api = fake_api(EditThenReport())

    ran = fanout("run", "plan.json", env=cli_env(api.base_url, claude_home), timeout=150)
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[-1]
    assert (project / "a.py").read_text() == "alpha = 100\n"  # merged back

    made = fanout("report", run_id)
    assert made.returncode == 0, made.stderr
    page = Path(made.stdout.strip())
    assert page == project / ".claude" / "runs" / run_id / "report.html"

    dom = Dom(dump_dom(page, tmp_path))
    # Nothing the worker wrote ran or became an element: the title is ours, no script added
    # anything, and the markup is text.
    assert dom.title == f"fanout run {run_id}"
    assert not dom.with_attr("id", "pwned")
    assert not dom.with_attr("id", "bold") and not dom.with_attr("id", "link")
    for tag in ("script", "img", "textarea", "iframe", "a"):
        assert not dom.tags(tag), tag
    assert dom.sections["prep"] == HOSTILE  # shown whole, as text

    rows = {attrs["data-task"]: attrs for attrs in dom.tags("tr") if "data-task" in attrs}
    assert list(rows) == ["prep", "flaky", "W1", "final"]
    assert {attrs["data-state"] for attrs in rows.values()} == {"succeeded"}
    cells = dom.rows
    assert cells["flaky"][3] == "2"  # attempts
    assert cells["W1"][8].startswith("$") and cells["W1"][5] != ""  # cost, turns
    assert cells["W1"][9] == "merged"
    # The timeline: each attempt of the flaky task, its wait to retry, W1's wait on prep.
    assert "flaky attempt 1: failed" in dom.text and "flaky attempt 2: succeeded" in dom.text
    assert "flaky waits to retry" in dom.text and "W1 waits on prep" in dom.text
    assert [tag for tag, attrs in dom.elements if attrs.get("class") == "retry"] == ["rect"]
    # The critical path ends with the task that waited on both chains.
    assert dom.with_attr("id", "critical") and "\u2192 final," in dom.text
    assert "merged W1" in dom.text

    # Kept as docs/report.png: the project's directory reads as ~/src/app there.
    shot = screenshot(page, tmp_path, "report.png", paths={project: "~/src/app"})
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
