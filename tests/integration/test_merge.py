"""Merge-back of writer branches into the Conductor's working tree, against real git
repositories: clean merges, conflicts reported and not applied, the person's own edits kept,
adds, deletes, binaries, exec bits, dry runs, re-merges; `fanout merge` and `fanout gc`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claude_fanout.git import merge, snapshot, worktrees
from claude_fanout.git.repo import changed_files
from claude_fanout.store.eventlog import read_events
from tests.helpers import CLIResult, FakeRun, git

BASE_TEXT = "".join(f"line {n}\n" for n in range(1, 21))


def edit(text: str, line: int, new: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    return "".join(lines)


@pytest.fixture
def repo(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.name", "Test User")
    git(project, "config", "user.email", "user@example.invalid")
    (project / "src").mkdir()
    (project / "src" / "a.py").write_text(BASE_TEXT)
    (project / "src" / "b.py").write_text(BASE_TEXT)
    (project / "docs.md").write_text("docs\n")
    (project / "logo.bin").write_bytes(b"\x89PNG\0\0base")
    (project / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (project / ".gitignore").write_text(".claude/runs/\n.claude/wt/\n")
    git(project, "add", ".")
    git(project, "commit", "-qm", "initial")
    return project


class Writers:
    """A run's writers: one snapshot, one worktree per task, each task's edits committed."""

    def __init__(self, repo: Path, run_id: str = "R1", directory: Path | None = None) -> None:
        self.repo = repo
        self.run_id = run_id
        self.base = snapshot.snapshot(repo)
        self.dir = directory or repo / ".claude" / "wt" / run_id
        self.paths: dict[str, Path] = {}

    def task(self, task: str, change: Callable[[Path], object]) -> tuple[str, str]:
        path = worktrees.create(
            self.repo, worktrees_dir=self.dir, run_id=self.run_id, task_id=task, base=self.base
        )
        change(path)
        assert worktrees.commit(path, f"{task}: work") is not None
        self.paths[task] = path
        return task, worktrees.branch_name(self.run_id, task)


def writes(rel: str, text: str) -> Callable[[Path], object]:
    return lambda root: (root / rel).write_text(text)


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts and ".claude" not in p.parts
    }


def test_branches_changing_different_files_both_merge(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 2, "W1 was here")))
    w2 = run.task("W2", writes("docs.md", "W2 docs\n"))

    report = merge.merge_run(repo, run.base, [w1, w2])

    assert report.merged == ["W1", "W2"]
    assert report.conflicts == []
    assert report.overlaps == []
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 2, "W1 was here")
    assert (repo / "docs.md").read_text() == "W2 docs\n"
    assert report.files == {"W1": ["src/a.py"], "W2": ["docs.md"]}
    # Working tree only: HEAD and the index never move.
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert git(repo, "diff", "--cached", "--name-only") == ""
    assert json.loads(json.dumps(report.to_dict()))["merged"] == ["W1", "W2"]


def test_same_file_different_hunks_merges_and_is_predicted_clean(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/b.py", edit(BASE_TEXT, 2, "W1 top")))
    w3 = run.task("W3", writes("src/b.py", edit(BASE_TEXT, 18, "W3 bottom")))

    predicted = merge.predict(repo, run.base, [w1, w3])
    report = merge.merge_run(repo, run.base, [w1, w3])

    assert [o.describe() for o in predicted] == [
        "W1 and W3 both change src/b.py, different hunks: merge cleanly"
    ]
    assert report.merged == ["W1", "W3"]
    assert (repo / "src" / "b.py").read_text() == edit(
        edit(BASE_TEXT, 2, "W1 top"), 18, "W3 bottom"
    )


def test_same_hunk_conflicts_second_is_reported_and_not_applied(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1 version")))

    def w2_change(root: Path) -> None:
        (root / "src" / "a.py").write_text(edit(BASE_TEXT, 5, "W2 version"))
        (root / "docs.md").write_text("W2 also touched the docs\n")  # would merge on its own

    w2 = run.task("W2", w2_change)

    report = merge.merge_run(repo, run.base, [w1, w2])

    assert report.merged == ["W1"]
    assert [c.to_dict() for c in report.conflicts] == [
        {
            "task": "W2",
            "branch": "fanout/R1/W2",
            "files": ["src/a.py"],
            "with": ["W1"],
            "reasons": {"src/a.py": "overlapping hunks"},
        }
    ]
    assert [o.describe() for o in report.overlaps] == [
        "W2 conflicts with W1 in src/a.py (overlapping hunks)"
    ]
    # Exactly W1's change: nothing of W2, not even its clean file.
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W1 version")
    assert (repo / "docs.md").read_text() == "docs\n"
    assert "W2 version" in git(repo, "show", "fanout/R1/W2:src/a.py")
    assert not report.clean


def test_working_tree_edits_are_kept_and_a_branch_over_them_conflicts(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 3, "W1 change")))
    w2 = run.task("W2", writes("src/b.py", edit(BASE_TEXT, 10, "W2 change")))
    # The person keeps working while the writers run.
    (repo / "src" / "a.py").write_text(edit(BASE_TEXT, 15, "my edit far away"))
    (repo / "src" / "b.py").write_text(edit(BASE_TEXT, 10, "my edit, same line"))

    report = merge.merge_run(repo, run.base, [w1, w2])

    assert report.merged == ["W1"]
    assert (repo / "src" / "a.py").read_text() == edit(
        edit(BASE_TEXT, 15, "my edit far away"), 3, "W1 change"
    )
    assert report.conflicts[0].task == "W2"
    assert report.conflicts[0].with_ == ("working tree",)
    assert (repo / "src" / "b.py").read_text() == edit(BASE_TEXT, 10, "my edit, same line")
    assert "W2 conflicts with the working tree in src/b.py (overlapping hunks)" in [
        o.describe() for o in report.overlaps
    ]


def test_adds_deletes_and_exec_bits(repo: Path) -> None:
    run = Writers(repo)

    def w1_change(root: Path) -> None:
        (root / "src" / "pkg" / "deep").mkdir(parents=True)
        (root / "src" / "pkg" / "deep" / "new.py").write_text("added\n")
        (root / "docs.md").unlink()
        (root / "run.sh").chmod(0o755)

    w1 = run.task("W1", w1_change)
    w2 = run.task("W2", lambda root: (root / "src" / "b.py").unlink())
    (repo / "src" / "b.py").write_text(edit(BASE_TEXT, 1, "edited here"))  # vs W2's delete

    report = merge.merge_run(repo, run.base, [w1, w2])

    assert report.merged == ["W1"]
    assert (repo / "src" / "pkg" / "deep" / "new.py").read_text() == "added\n"
    assert not (repo / "docs.md").exists()
    assert os.stat(repo / "run.sh").st_mode & 0o111
    assert report.conflicts[0].reasons == {"src/b.py": "deleted on one side, changed on the other"}
    assert (repo / "src" / "b.py").exists()


def test_add_add_with_the_working_tree(repo: Path) -> None:
    run = Writers(repo)
    same = run.task("W1", writes("same.txt", "identical\n"))
    other = run.task("W2", writes("other.txt", "from W2\n"))
    (repo / "same.txt").write_text("identical\n")
    (repo / "other.txt").write_text("mine\n")

    report = merge.merge_run(repo, run.base, [same, other])

    assert report.already_merged == ["W1"]
    assert report.conflicts[0].reasons == {
        "other.txt": "added on both sides with different content"
    }
    assert (repo / "other.txt").read_text() == "mine\n"


def test_binary_taken_only_when_untouched_here(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", lambda root: (root / "logo.bin").write_bytes(b"\x89PNG\0\0W1"))
    w2 = run.task("W2", lambda root: (root / "logo.bin").write_bytes(b"\x89PNG\0\0W2"))

    report = merge.merge_run(repo, run.base, [w1, w2])

    assert report.merged == ["W1"]
    assert (repo / "logo.bin").read_bytes() == b"\x89PNG\0\0W1"
    assert report.conflicts[0].reasons == {"logo.bin": "binary file changed on both sides"}
    assert report.conflicts[0].with_ == ("W1",)


def test_dry_run_writes_nothing_and_reports_the_same(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1")))
    w2 = run.task("W2", writes("src/a.py", edit(BASE_TEXT, 5, "W2")))
    w3 = run.task("W3", writes("new.txt", "W3\n"))
    (repo / "docs.md").write_text("mine\n")
    before = files_of(repo)
    stat_before = {p: os.stat(repo / p).st_mtime_ns for p in before}

    dry = merge.merge_run(repo, run.base, [w1, w2, w3], dry_run=True)

    assert files_of(repo) == before
    assert {p: os.stat(repo / p).st_mtime_ns for p in before} == stat_before
    real = merge.merge_run(repo, run.base, [w1, w2, w3])
    expected = real.to_dict() | {"dry_run": True}
    assert dry.to_dict() == expected
    assert dry.merged == ["W1", "W3"]


def test_merging_twice_is_a_no_op(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 2, "W1")))
    w2 = run.task("W2", writes("src/a.py", edit(BASE_TEXT, 2, "W2")))
    first = merge.merge_run(repo, run.base, [w1, w2])
    # The person edits elsewhere in the merged file before merging again.
    (repo / "src" / "a.py").write_text(edit(edit(BASE_TEXT, 2, "W1"), 20, "later edit"))
    after_first = files_of(repo)

    second = merge.merge_run(repo, run.base, [w1, w2])

    assert first.merged == ["W1"]
    assert second.merged == []
    assert second.already_merged == ["W1"]
    assert [c.task for c in second.conflicts] == ["W2"]
    assert second.conflicts[0].with_ == ("W1",)
    assert files_of(repo) == after_first


def test_never_writes_through_a_symlinked_directory(repo: Path, tmp_path: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 1, "W1")))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.py").write_text(BASE_TEXT)
    for name in os.listdir(repo / "src"):
        os.unlink(repo / "src" / name)
    os.rmdir(repo / "src")
    os.symlink(outside, repo / "src")

    report = merge.merge_run(repo, run.base, [w1])

    assert report.merged == []
    assert report.conflicts[0].reasons == {"src/a.py": "src is a symlink in the working tree"}
    assert (outside / "a.py").read_text() == BASE_TEXT
    assert sorted(os.listdir(outside)) == ["a.py"]


def test_a_branch_with_no_changes_is_unchanged(repo: Path) -> None:
    run = Writers(repo)
    path = worktrees.create(repo, worktrees_dir=run.dir, run_id="R1", task_id="W1", base=run.base)
    assert worktrees.commit(path, "nothing") is None
    report = merge.merge_run(repo, run.base, [("W1", "fanout/R1/W1")])
    assert report.unchanged == ["W1"]
    assert report.clean


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_clean_text_merge_never_loses_a_line(data: st.DataObject) -> None:
    """With distinct lines: a merge reported clean keeps every base line neither side deleted,
    drops every line either side deleted, and has every line either side added."""
    size = data.draw(st.integers(min_value=0, max_value=12))
    base = [f"base {i}" for i in range(size)]

    def variant(tag: str) -> tuple[list[str], set[str], set[str]]:
        keep = [line for line in base if data.draw(st.booleans(), label=f"{tag} keeps {line}")]
        out: list[str] = []
        added: set[str] = set()
        for i in range(len(keep) + 1):
            if data.draw(st.integers(0, 4), label=f"{tag} inserts at {i}") == 0:
                new = f"{tag} {i}"
                out.append(new)
                added.add(new)
            if i < len(keep):
                out.append(keep[i])
        return out, set(base) - set(keep), added

    ours, ours_deleted, ours_added = variant("ours")
    theirs, theirs_deleted, theirs_added = variant("theirs")

    def text(lines: list[str]) -> bytes:
        return "".join(f"{line}\n" for line in lines).encode()

    merged = merge.three_way(text(base), text(ours), text(theirs))
    if merged is None:
        return
    lines = merged.decode().splitlines()
    expected = (set(base) - ours_deleted - theirs_deleted) | ours_added | theirs_added
    assert set(lines) == expected
    assert len(lines) == len(set(lines))


# -- the CLI -----------------------------------------------------------------------------------


def record_writers(fake: FakeRun, run: Writers, committed: dict[str, str | None]) -> None:
    """The events the supervisor writes for writers: created, then committed on success."""
    for task in ("W1", "W2", "W3"):
        if task not in run.paths and task not in committed:
            continue
        path = run.paths.get(task) or run.dir / task
        branch = worktrees.branch_name(run.run_id, task)
        fake.log.append("worktree_created", task=task, branch=branch, path=str(path), base=run.base)
        if task in committed:
            commit = committed[task]
            files = changed_files(run.repo, run.base, commit) if commit else []
            fake.log.append(
                "worktree_committed", task=task, branch=branch, commit=commit, files=files
            )


def test_fanout_merge_reports_merges_conflicts_and_records_the_event(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake = FakeRun(repo, "20260101-000000-000-abcd", {"W1": {}, "W2": {}, "W3": {}}, None)
    run = Writers(repo, run_id=fake.run_id)
    run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1 version")))
    run.task("W2", writes("src/a.py", edit(BASE_TEXT, 5, "W2 version")))
    heads = {
        t: git(repo, "rev-parse", worktrees.branch_name(fake.run_id, t)).strip() for t in run.paths
    }
    record_writers(fake, run, {"W1": heads["W1"], "W2": heads["W2"]})
    fake.log.append(
        "worktree_created", task="W3", branch="fanout/x/W3", path="/nowhere", base=run.base
    )
    fake.finish("W3", "failed")
    fake.end("failed")

    dry = fanout("merge", fake.run_id, "--dry-run")
    assert dry.returncode == 3, dry.stderr
    assert (repo / "src" / "a.py").read_text() == BASE_TEXT
    result = fanout("merge", fake.run_id[:12])

    assert result.returncode == 3, result.stderr  # not every change merged
    assert "W2 conflicts with W1 in src/a.py (overlapping hunks)" in result.stdout
    assert "W1: merged (1 file: src/a.py)" in result.stdout
    assert f"git diff {run.base[:12]} fanout/{fake.run_id}/W2" in result.stdout
    # The way to take a kept branch is fanout's own merge of it, never `git merge`.
    assert f"take it:   fanout merge {fake.run_id} W2" in result.stdout
    assert "git merge" not in result.stdout
    assert "W3: not merged" in result.stdout
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W1 version")
    merged = [
        e for e in read_events(fake.path / "events.jsonl").events if e["type"] == "run_merged"
    ]
    assert len(merged) == 1
    assert merged[0]["merged"] == ["W1"]
    assert merged[0]["skipped"] == ["W3"]
    assert merged[0]["conflicts"][0]["with"] == ["W1"]
    assert merged[0]["branches"] == {
        "W1": f"fanout/{fake.run_id}/W1",
        "W2": f"fanout/{fake.run_id}/W2",
    }
    assert merged[0]["base"] == run.base

    again = fanout("merge", fake.run_id)
    assert "W1: already merged" in again.stdout
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W1 version")


def test_fanout_merge_exits_0_when_everything_merged(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake = FakeRun(repo, "20260101-000000-000-abce", {"W1": {}, "W2": {}}, None)
    run = Writers(repo, run_id=fake.run_id)
    run.task("W1", writes("src/a.py", edit(BASE_TEXT, 1, "W1")))
    path = worktrees.create(
        repo, worktrees_dir=run.dir, run_id=fake.run_id, task_id="W2", base=run.base
    )
    run.paths["W2"] = path
    head = git(repo, "rev-parse", f"fanout/{fake.run_id}/W1").strip()
    record_writers(fake, run, {"W1": head, "W2": None})
    fake.end("succeeded")

    result = fanout("merge", fake.run_id)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "W2: changed nothing" in result.stdout
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 1, "W1")


def test_gc_refuses_a_live_run_and_removes_a_finished_ones_worktrees_and_branches(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    live = FakeRun(repo, "20260101-000000-000-aaaa", {"W1": {}}, None)
    done = FakeRun(repo, "20260101-000001-000-bbbb", {"W1": {}, "W2": {}}, None)
    live_run = Writers(repo, run_id=live.run_id)
    live_run.task("W1", writes("docs.md", "live\n"))
    record_writers(live, live_run, {})
    # Like the supervisor: the run's worktrees live in its run directory.
    done_run = Writers(repo, run_id=done.run_id, directory=done.path / "worktrees")
    done_run.task("W1", writes("docs.md", "done\n"))
    done_run.task("W2", writes("docs.md", "done 2\n"))
    record_writers(done, done_run, {})
    done_run.task("W3", writes("docs.md", "never recorded\n"))  # created, then a crash
    done.end("succeeded")

    nothing = fanout("gc")
    assert nothing.returncode == 2
    assert "--all-finished" in nothing.stderr

    refused = fanout("gc", live.run_id)
    assert refused.returncode == 1
    assert "running" in refused.stderr and "fanout cancel" in refused.stderr
    assert live.path.is_dir()

    removed = fanout("gc", "--all-finished")

    assert removed.returncode == 0, removed.stderr
    assert f"removed run {done.run_id}" in removed.stdout
    for task in ("W1", "W2", "W3"):
        assert f"worktree {done.path / 'worktrees' / task}" in removed.stdout
        assert f"branch fanout/{done.run_id}/{task}" in removed.stdout
    assert not done.path.exists()
    assert not done_run.dir.exists()
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/fanout")
    assert branches.split() == [f"fanout/{live.run_id}/W1"]
    listed = git(repo, "worktree", "list", "--porcelain")
    assert done.run_id not in listed
    assert live.run_id in listed
    assert live.path.is_dir()
    assert (repo / "docs.md").read_text() == "docs\n"


def test_a_change_merged_before_and_undone_since_is_left_out_unless_named(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1")))
    w2 = run.task("W2", writes("src/a.py", edit(BASE_TEXT, 5, "W2")))
    w3 = run.task("W3", writes("src/b.py", edit(BASE_TEXT, 1, "W3")))
    first = merge.merge_run(repo, run.base, [w1, w2, w3])
    assert (first.merged, [c.task for c in first.conflicts]) == (["W1", "W3"], ["W2"])
    (repo / "src" / "a.py").write_text(BASE_TEXT)  # the person takes W1's change back out

    again = merge.merge_run(
        repo, run.base, [w1, w2, w3], settled=merge.settled_tasks(first.to_dict())
    )

    assert again.undone == ["W1"]
    assert again.merged == ["W2"]
    assert again.already_merged == ["W3"]
    assert again.conflicts == []
    assert [o.describe() for o in again.overlaps] == []  # W1 is out of the picture
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W2")
    # Named, W1 is merged onto what is there now: W2's line, which the conflict names.
    named = merge.merge_run(repo, run.base, [w1], dry_run=True, context=[w2, w3])
    assert [(c.with_, c.reasons) for c in named.conflicts] == [
        (("W2",), {"src/a.py": "overlapping hunks"})
    ]
    assert [o.describe() for o in named.overlaps] == [
        "W1 conflicts with W2 in src/a.py (overlapping hunks)"
    ]


def test_two_clean_merges_into_one_file_both_read_already_merged(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/b.py", edit(BASE_TEXT, 2, "W1 top")))
    w3 = run.task("W3", writes("src/b.py", edit(BASE_TEXT, 18, "W3 bottom")))
    first = merge.merge_run(repo, run.base, [w1, w3])

    again = merge.merge_run(repo, run.base, [w1, w3], settled=merge.settled_tasks(first.to_dict()))

    assert (again.already_merged, again.undone, again.merged) == (["W1", "W3"], [], [])


def test_editing_next_to_a_merged_change_is_no_conflict_on_the_next_merge(repo: Path) -> None:
    run = Writers(repo)
    w1 = run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1")))
    first = merge.merge_run(repo, run.base, [w1])
    mine = edit(edit(BASE_TEXT, 5, "W1"), 6, "my edit right below W1's line")
    (repo / "src" / "a.py").write_text(mine)

    again = merge.merge_run(repo, run.base, [w1], settled=merge.settled_tasks(first.to_dict()))

    assert (again.undone, again.conflicts, again.merged) == (["W1"], [], [])
    assert (repo / "src" / "a.py").read_text() == mine


def conflicting_run(repo: Path, run_id: str) -> tuple[FakeRun, Writers]:
    """A finished run whose writers W1 and W2 changed line 5 of src/a.py differently."""
    fake = FakeRun(repo, run_id, {"W1": {}, "W2": {}, "W3": {}}, None)
    run = Writers(repo, run_id=fake.run_id)
    run.task("W1", writes("src/a.py", edit(BASE_TEXT, 5, "W1 version")))
    run.task("W2", writes("src/a.py", edit(BASE_TEXT, 5, "W2 version")))
    heads = {t: git(repo, "rev-parse", worktrees.branch_name(run_id, t)).strip() for t in run.paths}
    record_writers(fake, run, {"W1": heads["W1"], "W2": heads["W2"]})
    for task in ("W1", "W2"):
        fake.finish(task)
    fake.end("succeeded")
    return fake, run


def test_a_kept_branch_is_taken_into_the_working_tree_never_into_head_or_the_index(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake, _ = conflicting_run(repo, "20260101-000000-000-ab01")
    first = fanout("merge", fake.run_id)
    assert first.returncode == 3, first.stdout + first.stderr
    assert f"take it:   fanout merge {fake.run_id} W2" in first.stdout
    # The person's tree is dirty, as fanout leaves it: merged changes, their own edits and
    # untracked files (notes, settings) that no command of fanout's may commit.
    (repo / "docs.md").write_text("my own docs edit\n")
    (repo / "notes.txt").write_text("my notes, untracked\n")
    (repo / ".claude" / "settings.json").write_text("{}\n")
    (repo / "src" / "a.py").write_text(BASE_TEXT)  # W1's change undone, to take W2's instead
    head, index = git(repo, "rev-parse", "HEAD"), git(repo, "ls-files", "-s", "--debug")
    status_before = git(repo, "status", "--porcelain", "--untracked-files=all")

    taken = fanout("merge", fake.run_id, "W2")

    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "W2: merged (1 file: src/a.py)" in taken.stdout
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W2 version")
    assert (repo / "docs.md").read_text() == "my own docs edit\n"
    assert (repo / "notes.txt").read_text() == "my notes, untracked\n"
    # Neither HEAD, the branch, the index nor the stash moved; nothing was committed.
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "ls-files", "-s", "--debug") == index
    assert git(repo, "log", "--format=%s", "main").split("\n")[:-1] == ["initial"]
    assert git(repo, "stash", "list") == ""
    assert sorted(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()) == (
        sorted([*status_before.splitlines(), " M src/a.py"])
    )


def test_choosing_which_writer_wins_and_in_which_order(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake, run = conflicting_run(repo, "20260101-000000-000-ab02")
    assert fanout("merge", fake.run_id).returncode == 3  # W1 merged, W2 kept
    (repo / "src" / "a.py").write_text(BASE_TEXT)  # the person undoes W1 to take W2 instead

    # The prediction reflects the working tree now: W1 stays out, W2 merges cleanly.
    plain = fanout("merge", fake.run_id, "--dry-run")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "W1: merged before, since undone" in plain.stdout
    assert "W2: would merge (1 file: src/a.py)" in plain.stdout
    assert "CONFLICT" not in plain.stdout
    # A chosen subset, in a chosen order: the first named wins, the second conflicts with it.
    ordered = fanout("merge", fake.run_id, "W2", "W1", "--dry-run")
    assert ordered.returncode == 3
    assert f"(base {run.base[:12]}): W2, W1, in this order" in ordered.stdout
    assert "W2: would merge (1 file: src/a.py)" in ordered.stdout
    assert "W1 conflicts with W2 in src/a.py (overlapping hunks)" in ordered.stdout
    assert "W1: CONFLICT with W2, not applied" in ordered.stdout
    only = fanout("merge", fake.run_id, "W1", "--dry-run")  # merged before: named, it applies
    assert "W1: would merge (1 file: src/a.py)" in only.stdout and "W2" not in only.stdout
    assert (repo / "src" / "a.py").read_text() == BASE_TEXT  # dry runs wrote nothing

    done = fanout("merge", fake.run_id, "W2")

    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W2 version")
    back = fanout("merge", fake.run_id, "W1", "--dry-run")  # what W1 collides with: W2 now
    assert back.returncode == 3
    assert "W1: CONFLICT with W2, not applied" in back.stdout
    after = fanout("merge", fake.run_id)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "W1: merged before, since undone" in after.stdout
    assert "W2: already merged" in after.stdout
    assert (repo / "src" / "a.py").read_text() == edit(BASE_TEXT, 5, "W2 version")
    merge_state = fanout("status", fake.run_id, "--json").json()["merge"]
    assert merge_state["conflicts"] == []
    assert (merge_state["undone"], merge_state["already_merged"]) == (["W1"], ["W2"])


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (["W9"], "has no writer 'W9' (writers: W1, W2, W3)"),
        (["W3"], "task W3 did not succeed, so it has no change to merge"),
        (["W2", "W2"], "task W2 is named twice"),
    ],
)
def test_naming_a_task_that_cannot_be_merged_is_one_line_and_writes_nothing(
    repo: Path, fanout: Callable[..., CLIResult], tasks: list[str], message: str
) -> None:
    fake, run = conflicting_run(repo, "20260101-000000-000-ab03")
    fake.log.append(
        "worktree_created", task="W3", branch="fanout/x/W3", path="/nowhere", base=run.base
    )

    result = fanout("merge", fake.run_id, *tasks)

    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert (repo / "src" / "a.py").read_text() == BASE_TEXT
    assert not [
        e for e in read_events(fake.path / "events.jsonl").events if e["type"] == "run_merged"
    ]


def test_wait_exits_3_and_names_each_collision_when_a_change_was_not_merged(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake = FakeRun(repo, "20260101-000000-000-ab04", {"W1": {}, "W2": {}}, None)
    for task in ("W1", "W2"):
        branch = f"fanout/{fake.run_id}/{task}"
        fake.log.append("worktree_created", task=task, branch=branch, path="/w", base="a" * 40)
        fake.log.append("worktree_committed", task=task, branch=branch, commit="b" * 40)
        fake.finish(task)
    fake.log.append(
        "run_merged",
        base="a" * 40,
        merged=["W1"],
        conflicts=[
            {
                "task": "W2",
                "branch": f"fanout/{fake.run_id}/W2",
                "files": ["src/x.py"],
                "with": ["W1"],
                "reasons": {"src/x.py": "overlapping hunks"},
            }
        ],
    )
    fake.end("succeeded")

    waited = fanout("wait", fake.run_id, "--timeout", "5")

    assert waited.returncode == 3, waited.stdout + waited.stderr
    assert "merge: merged W1; NOT merged: W2 conflicts with W1 in src/x.py" in waited.stdout
    assert f"`fanout merge {fake.run_id} W2`" in waited.stdout
    # Once the person took it, the run reads as fully merged.
    fake.log.append("run_merged", base="a" * 40, merged=["W2"], conflicts=[])
    assert fanout("wait", fake.run_id, "--timeout", "5").returncode == 0


def test_gc_keeps_a_run_with_unmerged_changes_unless_forced_and_names_what_it_deletes(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake, _ = conflicting_run(repo, "20260101-000000-000-ab05")
    assert fanout("merge", fake.run_id).returncode == 3  # W2 kept: it conflicts with W1
    kept_branch = f"fanout/{fake.run_id}/W2"

    named = fanout("gc", fake.run_id)
    every = fanout("gc", "--all-finished")

    assert named.returncode == 1
    for result in (named, every):
        assert f"run {fake.run_id} kept" in result.stderr
        assert "W2 conflicts with W1 in src/a.py" in result.stderr
        assert f"'fanout merge {fake.run_id} W2'" in result.stderr
        assert f"'fanout gc --force {fake.run_id}'" in result.stderr
        assert f"removed run {fake.run_id}" not in result.stdout
    assert every.returncode == 0
    assert fake.path.is_dir()
    assert git(repo, "rev-parse", "--verify", "--quiet", kept_branch).strip()

    forced = fanout("gc", "--force", fake.run_id)

    assert forced.returncode == 0, forced.stderr
    assert f"removed run {fake.run_id}" in forced.stdout
    assert (
        f"branch {kept_branch} (deleted unmerged: W2 conflicts with W1 in src/a.py)"
        in forced.stdout
    )
    assert f"branch fanout/{fake.run_id}/W1\n" in forced.stdout  # merged: nothing to say
    assert not fake.path.exists()
    assert git(repo, "branch", "--list", "fanout/*") == ""


def test_gc_keeps_a_run_never_merged_and_removes_it_once_merged(
    repo: Path, fanout: Callable[..., CLIResult]
) -> None:
    fake = FakeRun(repo, "20260101-000000-000-ab06", {"W1": {}}, None)
    run = Writers(repo, run_id=fake.run_id)
    run.task("W1", writes("docs.md", "W1 docs\n"))
    record_writers(fake, run, {"W1": git(repo, "rev-parse", f"fanout/{fake.run_id}/W1").strip()})
    fake.end("succeeded")  # merge.auto = false: nothing merged

    kept = fanout("gc", fake.run_id)
    assert kept.returncode == 1
    assert "W1 was never merged" in kept.stderr
    assert fanout("merge", fake.run_id).returncode == 0
    removed = fanout("gc", fake.run_id)
    assert removed.returncode == 0, removed.stderr
    assert not fake.path.exists()
    assert (repo / "docs.md").read_text() == "W1 docs\n"
