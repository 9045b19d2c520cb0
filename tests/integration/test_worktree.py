"""Worktrees for writer tasks, against real git repositories: the snapshot of the Conductor's
tree, worktree creation with .worktreeinclude, commits that need no user set-up, dependent
writers' bases, and clean-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claude_fanout.errors import FanoutError
from claude_fanout.git import snapshot, worktrees
from claude_fanout.git.repo import GitError, NotAGitRepoError, changed_files
from tests.helpers import git


@pytest.fixture
def repo(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``project`` as a git repository with one commit; the user's git config is an empty file
    of the test's own, so nothing from the machine leaks in."""
    config = tmp_path / "gitconfig"
    config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(project, "init", "-q", "-b", "main")
    git(project, "config", "user.name", "Test User")
    git(project, "config", "user.email", "user@example.invalid")
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("def main():\n    return 1\n")
    (project / "README.md").write_text("readme\n")
    (project / ".gitignore").write_text(".env\n.env.*\nbuild/\n.claude/runs/\n.claude/wt/\n")
    git(project, "add", ".")
    git(project, "commit", "-qm", "initial")
    return project


def tree_of(repo: Path, commit: str) -> dict[str, str]:
    """path -> content of every file in ``commit``."""
    names = git(repo, "ls-tree", "-r", "--name-only", "-z", commit).split("\0")
    return {n: git(repo, "show", f"{commit}:{n}") for n in names if n}


def test_snapshot_has_uncommitted_and_untracked_files_and_touches_nothing(repo: Path) -> None:
    (repo / "src" / "app.py").write_text("def main():\n    return 2\n")  # unstaged
    (repo / "README.md").write_text("staged\n")
    git(repo, "add", "README.md")
    (repo / "README.md").write_text("staged, then edited again\n")  # the file wins
    (repo / "notes.txt").write_text("untracked\n")
    (repo / ".env").write_text("SECRET=1\n")  # ignored
    (repo / ".claude" / "runs" / "R").mkdir(parents=True)
    (repo / ".claude" / "runs" / "R" / "events.jsonl").write_text("{}\n")
    git(repo, "stash", "list")
    before: dict[str, object] = {
        "index": (repo / ".git" / "index").read_bytes(),
        "HEAD": (repo / ".git" / "HEAD").read_bytes(),
        "head": git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain=v2", "--untracked-files=all"),
        "stash": git(repo, "stash", "list"),
        "refs": git(repo, "for-each-ref"),
    }

    commit = snapshot.snapshot(repo)

    after = {
        "index": (repo / ".git" / "index").read_bytes(),
        "HEAD": (repo / ".git" / "HEAD").read_bytes(),
        "head": git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain=v2", "--untracked-files=all"),
        "stash": git(repo, "stash", "list"),
        "refs": git(repo, "for-each-ref"),
    }
    assert after == before
    files = tree_of(repo, commit)
    assert files["src/app.py"] == "def main():\n    return 2\n"
    assert files["README.md"] == "staged, then edited again\n"
    assert files["notes.txt"] == "untracked\n"
    assert ".env" not in files
    assert not any(name.startswith(".claude/") for name in files)
    assert git(repo, "rev-parse", f"{commit}^") == before["head"]
    assert "claude-fanout" in git(repo, "log", "-1", "--format=%an %cn", commit)


def test_snapshot_of_an_unborn_branch_has_no_parent(project: Path, tmp_path: Path) -> None:
    git(project, "init", "-q")
    (project / "first.txt").write_text("hello\n")
    commit = snapshot.snapshot(project)
    assert tree_of(project, commit) == {"first.txt": "hello\n"}
    assert git(project, "rev-list", "--parents", "-n1", commit).split() == [commit]
    assert git(project, "status", "--porcelain") == "?? first.txt\n"


def test_snapshot_refuses_a_directory_outside_git_with_a_one_line_fix(project: Path) -> None:
    with pytest.raises(NotAGitRepoError) as caught:
        snapshot.snapshot(project)
    message = str(caught.value)
    assert isinstance(caught.value, FanoutError)
    assert "\n" not in message
    assert str(project) in message
    assert "git init" in message


def test_snapshot_leaves_out_worktrees_inside_the_project(repo: Path) -> None:
    base = snapshot.snapshot(repo)
    made = worktrees.create(
        repo, worktrees_dir=repo / "wt-unignored", run_id="R1", task_id="W1", base=base
    )
    assert made.is_dir()
    again = snapshot.snapshot(repo)
    assert not any(name.startswith("wt-unignored") for name in tree_of(repo, again))


def test_create_checks_out_the_snapshot_on_the_task_branch(repo: Path) -> None:
    (repo / "src" / "app.py").write_text("uncommitted\n")
    (repo / "new.txt").write_text("untracked\n")
    base = snapshot.snapshot(repo)
    path = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
    )
    assert path == repo / ".claude" / "wt" / "R1" / "W1"
    assert (path / "src" / "app.py").read_text() == "uncommitted\n"
    assert (path / "new.txt").read_text() == "untracked\n"
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == "fanout/R1/W1"
    assert git(path, "rev-parse", "HEAD").strip() == base
    # The user's checkout is where it was.
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    with pytest.raises(GitError, match="already exists"):
        worktrees.create(
            repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
        )


def test_worktreeinclude_copies_ignored_files_like_claude_code(repo: Path, tmp_path: Path) -> None:
    (repo / ".worktreeinclude").write_text("# local set-up\n.env\n.env.*\n!.env.example\nbuild/\n")
    (repo / ".env").write_text("SECRET=1\n")
    (repo / ".env.local").write_text("LOCAL=1\n")
    (repo / ".env.example").write_text("SECRET=\n")  # excluded by the negation
    (repo / "build" / "cache").mkdir(parents=True)
    (repo / "build" / "cache" / "data.bin").write_bytes(b"\0\1\2")
    os.chmod(repo / ".env", 0o600)
    outside = tmp_path / "outside-secret"
    outside.write_text("not yours\n")
    (repo / ".env.link").symlink_to(outside)  # matches, ignored, but leaves the project
    (repo / ".env.inside").symlink_to(".env")  # matches, ignored, stays inside
    base = snapshot.snapshot(repo)

    path = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
    )

    assert (path / ".env").read_text() == "SECRET=1\n"
    assert (path / ".env").stat().st_mode & 0o777 == 0o600
    assert (path / ".env.local").read_text() == "LOCAL=1\n"
    assert (path / "build" / "cache" / "data.bin").read_bytes() == b"\0\1\2"
    assert not (path / ".env.example").exists()
    assert not os.path.lexists(path / ".env.link")
    assert os.readlink(path / ".env.inside") == ".env"
    # Tracked files come from the checkout, never from the copy (README.md is not ignored).
    assert (path / ".worktreeinclude").read_text().startswith("# local set-up")
    assert git(path, "status", "--porcelain") == ""


def test_worktreeinclude_never_copies_a_file_that_is_not_ignored(repo: Path) -> None:
    (repo / ".worktreeinclude").write_text("*.txt\n")
    (repo / "draft.txt").write_text("untracked, not ignored\n")
    base = snapshot.snapshot(repo)
    (repo / "draft.txt").write_text("changed after the snapshot\n")
    path = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
    )
    # It is in the worktree because the snapshot has it, not because it was copied.
    assert (path / "draft.txt").read_text() == "untracked, not ignored\n"


def test_commit_needs_no_identity_and_ignores_signing_and_hooks(repo: Path, tmp_path: Path) -> None:
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    git(repo, "config", "user.useConfigOnly", "true")
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "false")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("pre-commit", "commit-msg", "post-commit"):
        (hooks / name).write_text(f"#!/bin/sh\necho {name} > {tmp_path}/{name}.ran\nexit 1\n")
        (hooks / name).chmod(0o755)
    git(repo, "config", "core.hooksPath", str(hooks))
    base = snapshot.snapshot(repo)
    path = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
    )
    assert worktrees.commit(path, "W1: nothing") is None

    (path / "src" / "app.py").write_text("changed\n")
    (path / "added.txt").write_text("new\n")
    (path / "README.md").unlink()
    (path / ".env").write_text("ignored stays out\n")
    made = worktrees.commit(path, "W1: review fixes")

    assert made is not None
    assert git(repo, "rev-parse", "fanout/R1/W1").strip() == made
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn|%s", made).strip() == (
        "claude-fanout <fanout@claude-fanout.invalid>|claude-fanout|W1: review fixes"
    )
    assert changed_files(repo, base, made) == ["README.md", "added.txt", "src/app.py"]
    assert not list(tmp_path.glob("*.ran"))
    assert worktrees.commit(path, "W1: again") is None


def test_base_with_deps_merges_the_dependencies_branches(repo: Path) -> None:
    (repo / "src" / "b.py").write_text("one\ntwo\nthree\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "b")
    base = snapshot.snapshot(repo)
    wt_dir = repo / ".claude" / "wt" / "R1"
    w1 = worktrees.create(repo, worktrees_dir=wt_dir, run_id="R1", task_id="W1", base=base)
    w2 = worktrees.create(repo, worktrees_dir=wt_dir, run_id="R1", task_id="W2", base=base)
    (w1 / "src" / "app.py").write_text("W1\n")
    (w2 / "src" / "b.py").write_text("one\ntwo\nthree\nW2\n")
    worktrees.commit(w1, "W1")
    worktrees.commit(w2, "W2")

    assert snapshot.base_with_deps(repo, base, []) == base
    merged = snapshot.base_with_deps(repo, base, ["fanout/R1/W1", "fanout/R1/W2"])
    files = tree_of(repo, merged)
    assert files["src/app.py"] == "W1\n"
    assert files["src/b.py"] == "one\ntwo\nthree\nW2\n"
    w3 = worktrees.create(repo, worktrees_dir=wt_dir, run_id="R1", task_id="W3", base=merged)
    assert (w3 / "src" / "app.py").read_text() == "W1\n"


def test_base_with_deps_names_conflicting_branches_and_files(repo: Path) -> None:
    base = snapshot.snapshot(repo)
    wt_dir = repo / ".claude" / "wt" / "R1"
    for task in ("W1", "W2"):
        path = worktrees.create(repo, worktrees_dir=wt_dir, run_id="R1", task_id=task, base=base)
        (path / "src" / "app.py").write_text(f"def main():\n    return '{task}'\n")
        worktrees.commit(path, task)
    with pytest.raises(snapshot.DepsConflictError) as caught:
        snapshot.base_with_deps(repo, base, ["fanout/R1/W1", "fanout/R1/W2"])
    message = str(caught.value)
    assert "\n" not in message
    assert "fanout/R1/W1" in message
    assert "fanout/R1/W2" in message
    assert "src/app.py" in message
    assert caught.value.files == ["src/app.py"]


def test_an_id_git_cannot_take_as_a_branch_is_refused(repo: Path) -> None:
    base = snapshot.snapshot(repo)
    with pytest.raises(GitError, match=r"W1\.lock.*rename the task"):
        worktrees.create(
            repo, worktrees_dir=repo / ".claude" / "wt", run_id="R1", task_id="W1.lock", base=base
        )


def test_cleanup_removes_the_runs_worktrees_and_branches_only(repo: Path) -> None:
    base = snapshot.snapshot(repo)
    keep = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R2", run_id="R2", task_id="W1", base=base
    )
    wt_dir = repo / ".claude" / "wt" / "R1"
    made = [
        worktrees.create(repo, worktrees_dir=wt_dir, run_id="R1", task_id=t, base=base)
        for t in ("W1", "W2")
    ]
    (made[0] / "dirty.txt").write_text("uncommitted work in a worktree\n")
    # A worker moved its worktree to another branch: the branch still goes with the run.
    git(repo, "branch", "fanout/R1/extra", base)

    removed = worktrees.remove_run_worktrees(repo, wt_dir)
    deleted = worktrees.delete_run_branches(repo, "R1")

    assert sorted(p.name for p in removed) == ["W1", "W2"]
    assert not wt_dir.exists()
    assert deleted == ["fanout/R1/W1", "fanout/R1/W2", "fanout/R1/extra"]
    assert git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/fanout").split() == [
        "fanout/R2/W1"
    ]
    listed = git(repo, "worktree", "list", "--porcelain")
    assert str(keep) in listed
    assert str(wt_dir) not in listed
    assert keep.is_dir()


def test_deleting_branches_removes_worktrees_still_on_them(repo: Path) -> None:
    base = snapshot.snapshot(repo)
    path = worktrees.create(
        repo, worktrees_dir=repo / ".claude" / "wt" / "R1", run_id="R1", task_id="W1", base=base
    )
    assert worktrees.delete_run_branches(repo, "R1") == ["fanout/R1/W1"]
    assert not path.exists()
    assert "fanout/R1" not in git(repo, "worktree", "list", "--porcelain")
    with pytest.raises(GitError, match="no run id"):
        worktrees.delete_run_branches(repo, "../x")
