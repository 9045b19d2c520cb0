"""Where runs live: project discovery, private run directories, run ids and resolving them."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claude_fanout import defaults
from claude_fanout.errors import FanoutError, RunNotFoundError, StoreError, UnsafePathError
from claude_fanout.store import active, layout, rundir
from claude_fanout.store.files import check_private_dir, make_private_dir, write_atomic
from claude_fanout.store.rundir import (
    RunDir,
    create_run,
    list_runs,
    new_run_id,
    resolve_run,
)

RUN_ID = re.compile(r"\d{8}-\d{6}-\d{3}-[0-9a-f]{4}")
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def find_project(start: Path | None = None) -> Path:
    return Path(layout.find_project(start))


def runs_root(project: Path) -> Path:
    return Path(layout.runs_root(project))


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    return root


@pytest.fixture(params=[0o022, 0o000, 0o077], ids=["umask022", "umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def fixed_suffixes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run-id suffixes handed out in order, so collisions and same-second ids are reproducible."""
    queue: list[str] = []
    monkeypatch.setattr(rundir.secrets, "token_hex", lambda nbytes: queue.pop(0))
    return queue


# --- find_project ----------------------------------------------------------------------------


def test_find_project_stops_at_the_nearest_git_ancestor(project: Path) -> None:
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)

    assert find_project(deep) == project.resolve()
    assert find_project(project) == project.resolve()


def test_find_project_accepts_a_claude_dir(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / ".claude").mkdir(parents=True)
    (root / "a" / "b").mkdir(parents=True)

    assert find_project(root / "a" / "b") == root.resolve()


def test_find_project_accepts_a_git_file_of_a_worktree(tmp_path: Path) -> None:
    root = tmp_path / "worktree"
    root.mkdir()
    (root / ".git").write_text("gitdir: /elsewhere/.git/worktrees/wt\n")

    assert find_project(root) == root.resolve()


def test_find_project_prefers_the_nearest_marker(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "vendor" / "inner"
    (outer / ".git").mkdir(parents=True)
    (inner / ".claude").mkdir(parents=True)

    assert find_project(inner / ".claude") == inner.resolve()
    assert find_project(outer / "vendor") == outer.resolve()


def test_find_project_ignores_a_claude_file(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / ".claude").write_text("not a directory")
    if any((p / ".git").exists() or (p / ".claude").is_dir() for p in tmp_path.resolve().parents):
        pytest.skip("an ancestor of the temp dir is itself a project")

    assert find_project(root) == root.resolve()


def test_find_project_falls_back_to_the_start_dir(tmp_path: Path) -> None:
    start = tmp_path / "loose" / "dir"
    start.mkdir(parents=True)
    if any((p / ".git").exists() or (p / ".claude").is_dir() for p in start.resolve().parents):
        pytest.skip("an ancestor of the temp dir is itself a project")

    assert find_project(start) == start.resolve()


def test_find_project_defaults_to_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")

    assert find_project() == project.resolve()


# --- create_run and private dirs -----------------------------------------------------------------


def test_create_run_makes_private_dirs_whatever_the_umask(project: Path, umask: int) -> None:
    run = create_run(project, now=T0)

    assert run.path.parent == runs_root(project) == project / defaults.RUNS_DIR
    assert RUN_ID.fullmatch(run.run_id)
    assert run.run_id.startswith("20260921-141320-")
    assert mode(runs_root(project)) == 0o700
    assert mode(run.path) == 0o700
    assert run.project == project
    run.check()


@pytest.mark.parametrize("how", ["create_run", "active.mark"])
def test_the_runs_dir_keeps_itself_out_of_git(tmp_path: Path, how: str) -> None:
    """Whichever makes the store first (a run, or a hook marking one active), it holds a
    .gitignore of "*": git sees nothing of it, and the person's .gitignore is not edited."""
    project = tmp_path / "repo"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    if how == "create_run":
        create_run(project, now=T0)
    else:
        (project / ".claude").mkdir()
        active.mark(project, "20260921-141320-000-abcd")
    ignore = runs_root(project) / ".gitignore"
    assert ignore.read_text().splitlines()[-1] == "*"
    assert mode(ignore) == 0o600
    (runs_root(project) / ".slots").mkdir()
    (runs_root(project) / ".slots" / "0").write_text("")
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert untracked == ""
    assert not (project / ".gitignore").exists()

    # One the person changed is theirs: never rewritten.
    ignore.write_text("*\n!keep.txt\n")
    create_run(project, now=T0 + 1)
    assert ignore.read_text() == "*\n!keep.txt\n"


def test_create_run_makes_the_claude_dir_when_missing(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()

    run = create_run(bare, now=T0)

    assert (bare / ".claude").is_dir()
    assert run.path.is_dir()


def test_worker_dirs_are_private(project: Path, umask: int) -> None:
    run = create_run(project, now=T0)

    run.make_worker_dirs("W1")
    run.make_worker_dirs("W1")  # idempotent

    for path in (run.path / "workers", run.worker_dir("W1"), run.out_dir("W1")):
        assert mode(path) == 0o700
    assert run.log_path("W1") == run.path / "workers" / "W1" / "log"


def test_run_dir_names_its_files(project: Path) -> None:
    run = RunDir(runs_root(project) / "20260101-000000-abcdef")

    assert run.run_id == "20260101-000000-abcdef"
    assert run.project == project
    assert run.plan_path.name == "plan.json"
    assert run.events_path.name == "events.jsonl"
    assert run.state_path.name == "state.json"
    assert run.supervisor_path.name == "supervisor.json"
    assert run.log.path == run.events_path
    assert "20260101-000000-abcdef" in repr(run)


@pytest.fixture
def runs_dir_symlinked_elsewhere(project: Path, tmp_path: Path) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (project / ".claude").mkdir()
    runs_root(project).symlink_to(elsewhere, target_is_directory=True)
    return elsewhere


def test_a_symlinked_runs_dir_is_refused(project: Path, runs_dir_symlinked_elsewhere: Path) -> None:
    for attempt in (
        lambda: create_run(project, now=T0),
        lambda: list_runs(project),
        lambda: resolve_run(project, None),
    ):
        with pytest.raises(UnsafePathError, match="symlink") as info:
            attempt()
        assert "\n" not in str(info.value)

    assert list(runs_dir_symlinked_elsewhere.iterdir()) == []


@pytest.fixture
def runs_dir_that_is_a_file(project: Path) -> Path:
    (project / ".claude").mkdir()
    runs_root(project).write_text("oops")
    return runs_root(project)


def test_a_runs_path_that_is_a_file_is_refused(
    project: Path, runs_dir_that_is_a_file: Path
) -> None:
    with pytest.raises(UnsafePathError, match="not a directory"):
        create_run(project, now=T0)


@pytest.fixture
def runs_dir_owned_by_someone_else(project: Path) -> Path:
    root = runs_root(project)
    root.mkdir(parents=True, mode=0o700)
    try:
        os.chown(root, os.geteuid() + 1, -1)
    except PermissionError:
        pytest.skip("changing a directory's owner needs root")
    return root


def test_a_runs_dir_owned_by_someone_else_is_refused(
    project: Path, runs_dir_owned_by_someone_else: Path
) -> None:
    with pytest.raises(UnsafePathError, match=r"belongs to uid \d+, not you"):
        create_run(project, now=T0)
    with pytest.raises(UnsafePathError, match="another user"):
        list_runs(project)


def test_check_private_dir_refuses_a_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError, match="does not exist"):
        check_private_dir(tmp_path / "missing")


def test_make_private_dir_refuses_an_existing_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)

    with pytest.raises(UnsafePathError, match="symlink"):
        make_private_dir(link)


def test_make_private_dir_exist_ok_false_raises_file_exists(tmp_path: Path) -> None:
    make_private_dir(tmp_path / "d")

    with pytest.raises(FileExistsError):
        make_private_dir(tmp_path / "d", exist_ok=False)


def test_create_run_retries_a_colliding_id(project: Path, fixed_suffixes: list[str]) -> None:
    fixed_suffixes.extend(["aaaaaa", "aaaaaa", "bbbbbb"])

    first = create_run(project, now=T0)
    second = create_run(project, now=T0)

    assert first.run_id.endswith("-aaaaaa")
    assert second.run_id.endswith("-bbbbbb")
    assert fixed_suffixes == []


def test_create_run_gives_up_after_repeated_collisions(
    project: Path, fixed_suffixes: list[str]
) -> None:
    fixed_suffixes.extend(["cccccc"] * 6)
    create_run(project, now=T0)

    with pytest.raises(StoreError, match="could not create a fresh run directory"):
        create_run(project, now=T0)


# --- run ids, listing and resolving ------------------------------------------------------------


def test_new_run_id_is_utc_and_well_formed() -> None:
    run_id = new_run_id(now=0.0)

    assert RUN_ID.fullmatch(run_id)
    assert run_id.startswith("19700101-000000-")


def test_new_run_ids_sort_by_time() -> None:
    times = [0.0, 1.0, 59.0, 60.0, 3599.0, 3600.0, 86_399.0, 86_400.0, T0, 4_102_444_800.0]

    ids = [new_run_id(now=t) for t in times]

    assert sorted(ids) == ids


@settings(derandomize=True, deadline=None, max_examples=100)
@given(
    first=st.integers(min_value=0, max_value=4_000_000_000),
    gap=st.integers(min_value=1, max_value=10**8),
)
def test_ids_a_second_or_more_apart_sort_by_time(first: int, gap: int) -> None:
    assert new_run_id(now=float(first)) < new_run_id(now=float(first + gap))


def test_list_runs_without_a_runs_dir_is_empty_and_creates_nothing(project: Path) -> None:
    assert list_runs(project) == []
    assert not (project / ".claude").exists()


def test_list_runs_is_oldest_first_and_skips_strays(project: Path, tmp_path: Path) -> None:
    newest = create_run(project, now=T0 + 7200)
    oldest = create_run(project, now=T0)
    middle = create_run(project, now=T0 + 60)
    root = runs_root(project)
    (root / ".state.json.123.tmp").write_text("")
    (root / ".hidden-run").mkdir()
    (root / "notes.txt").write_text("")
    outside = tmp_path / "outside-run"
    outside.mkdir()
    (root / "99999999-999999-ffffff").symlink_to(outside, target_is_directory=True)

    runs = list_runs(project)

    assert [r.run_id for r in runs] == [oldest.run_id, middle.run_id, newest.run_id]


@pytest.fixture
def three_runs(project: Path, fixed_suffixes: list[str]) -> list[RunDir]:
    fixed_suffixes.extend(["a1a1a1", "a1b2c3", "ffffff"])
    return [create_run(project, now=T0 + n * 3600) for n in range(3)]


def test_resolve_run_latest_and_none_give_the_newest(
    project: Path, three_runs: list[RunDir]
) -> None:
    assert resolve_run(project, None).path == three_runs[-1].path
    assert resolve_run(project, "latest").path == three_runs[-1].path


def test_resolve_run_by_exact_id_and_unique_prefix(project: Path, three_runs: list[RunDir]) -> None:
    first, second, third = three_runs

    assert resolve_run(project, first.run_id).path == first.path
    assert resolve_run(project, second.run_id[:12]).path == second.path
    assert resolve_run(project, third.run_id[:-2]).path == third.path


def test_an_exact_id_wins_over_a_longer_one_it_prefixes(project: Path) -> None:
    root = runs_root(project)
    make_private_dir(project / ".claude")
    make_private_dir(root)
    make_private_dir(root / "r1")
    make_private_dir(root / "r10")

    assert resolve_run(project, "r1").path == root / "r1"


def test_an_ambiguous_prefix_names_the_candidates(project: Path, three_runs: list[RunDir]) -> None:
    with pytest.raises(RunNotFoundError) as info:
        resolve_run(project, "2026")

    message = str(info.value)
    assert "\n" not in message
    assert "'2026' matches several runs" in message
    assert all(run.run_id in message for run in three_runs)
    assert "give more of the id" in message


def test_an_unknown_id_says_where_it_looked(project: Path, three_runs: list[RunDir]) -> None:
    with pytest.raises(RunNotFoundError) as info:
        resolve_run(project, "nope")

    message = str(info.value)
    assert "\n" not in message
    assert "no run 'nope'" in message
    assert str(runs_root(project)) in message
    assert "fanout runs" in message
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, FanoutError)


def test_resolving_without_any_runs_says_how_to_start_one(project: Path) -> None:
    with pytest.raises(RunNotFoundError, match="start one with 'fanout run PLAN'") as info:
        resolve_run(project, None)

    assert "\n" not in str(info.value)


def test_latest_is_the_newest_run_even_within_one_second(
    project: Path, fixed_suffixes: list[str]
) -> None:
    fixed_suffixes.extend(["ffffff", "000000"])
    create_run(project, now=T0 + 0.1)
    newer = create_run(project, now=T0 + 0.6)

    assert resolve_run(project, None).path == newer.path


# --- write_atomic ------------------------------------------------------------------------------


def test_write_atomic_writes_a_private_file_and_leaves_no_temp(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "state.json"

    write_atomic(path, b"one")
    write_atomic(path, b"two, longer")

    assert path.read_bytes() == b"two, longer"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_atomic_makes_an_existing_open_file_private(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_bytes(b"old")
    path.chmod(0o644)

    write_atomic(path, b"new")

    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / "state.json"
    path.symlink_to(victim)

    write_atomic(path, b"data")

    assert victim.read_bytes() == b"precious"
    assert not path.is_symlink()
    assert path.read_bytes() == b"data"


@pytest.fixture
def planted_temp_symlink(tmp_path: Path) -> tuple[Path, Path]:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = tmp_path / "state.json"
    (tmp_path / f".state.json.{os.getpid()}.tmp").symlink_to(victim)
    return path, victim


def test_write_atomic_refuses_a_planted_temp_symlink(
    planted_temp_symlink: tuple[Path, Path],
) -> None:
    path, victim = planted_temp_symlink

    with pytest.raises(UnsafePathError, match="symlink"):
        write_atomic(path, b"data")

    assert victim.read_bytes() == b"precious"
    assert not path.exists()


def test_write_atomic_handles_large_payloads(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "big"

    write_atomic(path, data)

    assert path.read_bytes() == data


def test_a_failed_write_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()

    with pytest.raises(OSError):
        write_atomic(target, b"data")

    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
