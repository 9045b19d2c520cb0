"""``fanout doctor``: is fanout installed and working here, and with which Claude Code?

Read-only and quick (well under a second): it parses the settings files Claude Code reads, checks
that every fanout hook command points at an interpreter and an entry script that exist, looks at
the ``/fanout`` command file, the plugin, ``.claude/fanout.toml``, the run store's safety, live
runs, leftover worktrees and branches, processes of finished runs that are still alive, and the
Claude Code CLIs (the Conductor's on PATH, the workers') against the measured range in
:mod:`claude_fanout.compat`. ``--probe`` (:mod:`claude_fanout.probe`) then tries every Claude
Code mechanism fanout depends on against the real CLI.

Each finding is a :class:`Check`: ``ok``, ``warn`` (works, but look) or ``fail`` (fanout is
broken here until it is fixed; the detail says how).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from claude_fanout import compat, defaults, settings
from claude_fanout.executors.claude import CLAUDE_BIN_ENV, cli_path

__all__ = ["Check", "Status", "command", "diagnose", "failed", "hook_targets", "render"]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but look
    FAIL = "fail"  # fanout is broken here until this is fixed


OK: Final = Status.OK
WARN: Final = Status.WARN
FAIL: Final = Status.FAIL
PLUGIN_PREFIX: Final = "fanout@"
PLUGIN_HOOK_COMMAND: Final = "fanout-hook"
# Claude Code reads them all: user, then project (shared), then local (yours).
_SCOPES: Final = (settings.Scope.USER, settings.Scope.PROJECT, settings.Scope.LOCAL)


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "section": self.section,
            "name": self.name,
            "status": str(self.status),
            "detail": self.detail,
        }


def diagnose(
    project: Path, *, env: Mapping[str, str] | None = None, home: Path | None = None
) -> list[Check]:
    """Every finding about ``project``, in sections: install, claude, runs."""
    env = os.environ if env is None else env
    checks = list(_install_checks(project, env, home))
    checks += _claude_checks(env)
    checks += _store_checks(project)
    return checks


# -- install -----------------------------------------------------------------------------------


def hook_targets(command: str) -> tuple[str, str] | None:
    """(interpreter, entry script) of a hook command ``fanout install`` wrote; None for any other
    shape (the plugin's ``fanout-hook EVENT``, or a command edited by hand)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for i, word in enumerate(words[:-3]):
        if words[i + 1 : i + 3] == ["-I", "-S"]:
            return word, words[i + 3]
    return None


def _read_settings(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the parsed file or None when absent, why it cannot be used)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    problem = settings.shape_problem(data, events=settings.FANOUT_HOOKS)
    if problem is not None:
        return None, f"has the wrong shape ({problem})"
    return data, None


def _fanout_commands(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(event, command) of every fanout hook in a settings object."""
    found: list[tuple[str, str]] = []
    hooks = data.get("hooks")
    for event, groups in (hooks or {}).items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else ():
            inner = group.get("hooks") if isinstance(group, dict) else None
            for hook in inner if isinstance(inner, list) else ():
                if settings.is_fanout_hook(hook):
                    found.append((str(event), str(hook["command"])))
    return found


def _expected_events() -> Counter[str]:
    return Counter(spec.event or name for name, spec in settings.FANOUT_HOOKS.items())


def _runnable(path: str) -> bool:
    return os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def _install_checks(project: Path, env: Mapping[str, str], home: Path | None) -> Iterator[Check]:
    section = "install"
    installed: dict[str, frozenset[str]] = {}
    plugin_enabled = False
    for scope in _SCOPES:
        path = settings.settings_path(scope, project=project, home=home)
        data, problem = _read_settings(path)
        where = f"{scope} settings ({path})"
        if problem is not None:
            yield Check(
                section,
                f"{scope} settings",
                FAIL,
                f"{path} {problem}: Claude Code cannot use it; fix it by hand",
            )
            continue
        if data is None:
            continue
        plugins = data.get("enabledPlugins")
        if isinstance(plugins, dict) and any(
            str(k).startswith(PLUGIN_PREFIX) and v is True for k, v in plugins.items()
        ):
            plugin_enabled = True
        commands = _fanout_commands(data)
        if not commands:
            continue
        installed[str(scope)] = frozenset(command for _, command in commands)
        yield from _hook_checks(section, str(scope), where, commands, env)
    if len(set(installed.values())) > 1:
        yield Check(
            section,
            "scopes",
            WARN,
            f"fanout's hooks differ between {', '.join(installed)} settings: Claude Code runs "
            "each, so every event is handled twice; keep one (`fanout uninstall --scope …`)",
        )
    if plugin_enabled:
        yield from _plugin_checks(section, env, direct=bool(installed))
    if not installed and not plugin_enabled:
        yield Check(
            section,
            "hooks",
            FAIL,
            "fanout's hooks are not installed for this project: run `fanout install` "
            "(`--scope local` for you alone, `--scope user` for every project)",
        )
    yield from _command_checks(section, project, home, hooks=bool(installed))
    yield _config_check(section, project)


def _hook_checks(
    section: str,
    scope: str,
    where: str,
    commands: list[tuple[str, str]],
    env: Mapping[str, str],
) -> Iterator[Check]:
    name = f"{scope} hooks"
    broken: list[str] = []
    entries: set[str] = set()
    for event, command in commands:
        targets = hook_targets(command)
        if targets is None:
            if PLUGIN_HOOK_COMMAND not in command:
                broken.append(f"{event}: a command fanout cannot read ({command[:80]})")
            elif shutil.which(PLUGIN_HOOK_COMMAND, path=env.get("PATH")) is None:
                broken.append(f"{event}: `{PLUGIN_HOOK_COMMAND}` is not on PATH")
            continue
        python, entry = targets
        entries.add(os.path.realpath(entry))
        if not _runnable(python):
            broken.append(f"{event}: interpreter {python} is missing")
        elif not os.path.isfile(entry):
            broken.append(f"{event}: entry {entry} is missing")
    if broken:
        unique = list(dict.fromkeys(broken))
        yield Check(
            section,
            name,
            FAIL,
            f"{where}: hook commands point nowhere ({'; '.join(unique[:3])}"
            f"{' …' if len(unique) > 3 else ''}), so fanout does nothing in a session: run "
            f"`fanout install --scope {scope}` with the Python that has claude-fanout, or "
            f"`fanout uninstall --scope {scope}`",
        )
        return
    missing = _expected_events() - Counter(event for event, _ in commands)
    if missing:
        yield Check(
            section,
            name,
            WARN,
            f"{where}: fanout's hooks for {', '.join(sorted(missing))} are missing: run "
            f"`fanout install --scope {scope}`",
        )
        return
    ours = os.path.realpath(settings.default_entry())
    if entries and ours not in entries:
        yield Check(
            section,
            name,
            WARN,
            f"{where}: the hooks run another installation of fanout ({sorted(entries)[0]}), "
            f"not this one ({ours}): run `fanout install --scope {scope}` to switch",
        )
        return
    yield Check(section, name, OK, f"{where}: {len(commands)} hooks, each one runnable")


def _plugin_checks(section: str, env: Mapping[str, str], *, direct: bool) -> Iterator[Check]:
    if shutil.which(PLUGIN_HOOK_COMMAND, path=env.get("PATH")) is None:
        yield Check(
            section,
            "plugin",
            FAIL,
            f"the fanout plugin is enabled but its hooks run `{PLUGIN_HOOK_COMMAND}`, which is "
            "not on PATH: install claude-fanout where PATH finds it (pipx), or disable the plugin",
        )
    elif direct:
        yield Check(
            section,
            "plugin",
            WARN,
            "the fanout plugin is enabled and fanout's hooks are in settings too: every event "
            "is handled twice; disable the plugin or `fanout uninstall`",
        )
    else:
        yield Check(section, "plugin", OK, f"enabled; `{PLUGIN_HOOK_COMMAND}` is on PATH")


def _command_checks(
    section: str, project: Path, home: Path | None, *, hooks: bool
) -> Iterator[Check]:
    found = False
    for scope in (settings.Scope.PROJECT, settings.Scope.USER):
        path = settings.command_path(scope, project=project, home=home)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            yield Check(section, "/fanout", WARN, f"{path} cannot be read ({exc})")
            continue
        if settings.COMMAND_MARKER not in text:
            yield Check(
                section,
                "/fanout",
                WARN,
                f"{path} is not fanout's (no {settings.COMMAND_MARKER} line): /fanout runs it "
                "instead of fanout's command",
            )
            continue
        found = True
        if text != settings.command_text():
            yield Check(
                section,
                "/fanout",
                WARN,
                f"{path} is from another version of fanout: run `fanout install --scope {scope}`",
            )
        else:
            yield Check(section, "/fanout", OK, f"{path}")
    if hooks and not found:
        yield Check(
            section,
            "/fanout",
            WARN,
            "fanout's hooks are installed but the /fanout command file is not: "
            "run `fanout install`",
        )


def _config_check(section: str, project: Path) -> Check:
    from claude_fanout.config import CONFIG_FILE, load_config
    from claude_fanout.errors import FanoutError

    try:
        load_config(project)
    except FanoutError as exc:
        return Check(section, "config", FAIL, str(exc))
    path = project / CONFIG_FILE
    return Check(
        section, "config", OK, f"{path} is valid" if path.exists() else "no fanout.toml: defaults"
    )


# -- Claude Code -------------------------------------------------------------------------------


def _claude_checks(env: Mapping[str, str]) -> list[Check]:
    section = "claude"
    checks = []
    on_path = shutil.which("claude", path=env.get("PATH"))
    if on_path is None:
        checks.append(
            Check(
                section,
                "Conductor CLI",
                WARN,
                "no `claude` on PATH: your sessions need Claude Code (workers use their own)",
            )
        )
    else:
        checks.append(_version_check(section, "Conductor CLI", on_path, "`claude` on PATH"))
    workers = cli_path(env)
    resolved = workers if os.path.sep in workers else shutil.which(workers, path=env.get("PATH"))
    if resolved is None or not _runnable(os.path.abspath(resolved)):
        checks.append(
            Check(
                section,
                "workers' CLI",
                FAIL,
                f"claude workers have no Claude Code ({workers} is not an executable file): "
                f"install claude-agent-sdk (it bundles one) or set {CLAUDE_BIN_ENV}",
            )
        )
    else:
        source = f"${CLAUDE_BIN_ENV}" if env.get(CLAUDE_BIN_ENV) else "what workers run"
        checks.append(_version_check(section, "workers' CLI", resolved, source))
    return checks


def _version_check(section: str, name: str, path: str, source: str) -> Check:
    version = compat.cli_version(path)
    tested = f"tested {compat.TESTED_MIN} to {compat.TESTED_MAX}"
    if version is None:
        return Check(section, name, FAIL, f"{path} ({source}) does not run or print its version")
    if compat.in_tested_range(version):
        return Check(section, name, OK, f"{version} at {path} ({source}; {tested})")
    return Check(
        section,
        name,
        WARN,
        f"{version} at {path} ({source}) is outside the measured range ({tested}): "
        "`fanout doctor --probe` shows what works with it",
    )


# -- the run store -----------------------------------------------------------------------------


def _store_checks(project: Path) -> list[Check]:
    from claude_fanout.store.files import private_dir_problem

    section = "runs"
    root = project / defaults.RUNS_DIR
    if not os.path.lexists(root):
        return [Check(section, "run store", OK, f"no runs yet ({root})")]
    problem = private_dir_problem(root)
    if problem is not None:
        return [Check(section, "run store", FAIL, problem)]
    checks: list[Check] = []
    loose: list[str] = []
    unsafe: list[str] = []
    for path in [root, *sorted(root.iterdir())]:
        st = os.lstat(path)
        if path != root and path.name.startswith(".") and not stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISLNK(st.st_mode) or (path != root and not stat.S_ISDIR(st.st_mode)):
            unsafe.append(f"{path.name} is a {'symlink' if stat.S_ISLNK(st.st_mode) else 'file'}")
        elif st.st_uid != os.geteuid():
            unsafe.append(f"{path.name} belongs to uid {st.st_uid}")
        elif st.st_mode & 0o077:
            loose.append(f"{path.name} ({stat.S_IMODE(st.st_mode):o})")
    if unsafe:
        checks.append(
            Check(
                section,
                "run store",
                FAIL,
                f"{root}: {'; '.join(unsafe[:3])}: fanout never follows links or uses others' "
                "files in its store; remove them",
            )
        )
    elif loose:
        checks.append(
            Check(
                section,
                "run store",
                WARN,
                f"{root}: readable by others: {', '.join(loose[:3])}; fanout tightens what it "
                "writes to 0700, `chmod -R go= .claude/runs` fixes the rest",
            )
        )
    else:
        checks.append(Check(section, "run store", OK, f"{root}: private (0700, yours, no links)"))
    return [*checks, *_run_checks(project)]


def _run_checks(project: Path) -> list[Check]:
    from claude_fanout.errors import FanoutError, UnsafePathError
    from claude_fanout.store.rundir import list_runs
    from claude_fanout.store.state import observe

    section = "runs"
    states: dict[str, str] = {}
    live: list[str] = []
    unreadable: list[str] = []
    unsafe = False
    for run in list_runs(project):
        try:
            status = observe(run)
        except (FanoutError, OSError) as exc:
            unreadable.append(f"{run.run_id}: {exc}")
            unsafe = unsafe or isinstance(exc, UnsafePathError)
            continue
        states[run.run_id] = str(status.state)
        if not status.state.terminal:
            running = sum(1 for t in status.tasks.values() if str(t.state) == "running")
            live.append(f"{run.run_id} ({status.state}, {running} running)")
    checks = [
        Check(
            section,
            "live runs",
            OK,
            f"{len(live)} live: {', '.join(live[:5])} (`fanout status RUN`)" if live else "none",
        )
    ]
    if unreadable:
        checks.append(
            Check(
                section,
                "unreadable runs",
                FAIL if unsafe else WARN,
                f"{'; '.join(unreadable[:3])} (`fanout gc RUN` removes a run you no longer need)",
            )
        )
    checks += _leftover_checks(project, states)
    checks += _orphan_checks(project, states)
    return checks


def _leftover_checks(project: Path, states: Mapping[str, str]) -> list[Check]:
    from claude_fanout import worktree

    try:
        root = worktree.repo_root(project)
        worktrees = worktree.list_worktrees(root)
        refs = worktree.run_git(
            [
                "for-each-ref",
                "--format=%(refname:strip=2)",
                f"refs/heads/{worktree.BRANCH_PREFIX}/",
            ],
            cwd=root,
        )
    except (worktree.GitError, OSError):  # not a git repository, or no git at all
        return []
    base = os.path.realpath(project / defaults.WORKTREES_DIR)
    finished: Counter[str] = Counter()
    gone: list[str] = []
    for info in worktrees[1:]:
        rel = os.path.relpath(os.path.realpath(info.path), base)
        if rel.startswith(".."):
            continue
        run_id = rel.split(os.sep)[0]
        _tally(run_id, f"worktree {info.path}", states, finished, gone)
    for branch in refs.stdout.decode("utf-8", "replace").splitlines():
        parts = branch.split("/")
        if len(parts) >= 3:
            _tally(parts[1], f"branch {branch}", states, finished, gone)
    checks = []
    if finished:
        runs = ", ".join(sorted(finished))
        checks.append(
            Check(
                "runs",
                "leftovers",
                WARN,
                f"finished runs keep {sum(finished.values())} worktree(s)/branch(es) ({runs}): "
                "merge what you want, then `fanout gc --all-finished`",
            )
        )
    if gone:
        checks.append(
            Check(
                "runs",
                "leftovers",
                WARN,
                f"no run directory for {', '.join(gone[:3])}{' …' if len(gone) > 3 else ''}: "
                "`git worktree remove PATH` / `git branch -D BRANCH` once you have what you need",
            )
        )
    if not checks:
        checks.append(Check("runs", "leftovers", OK, "no leftover worktrees or branches"))
    return checks


def _tally(
    run_id: str, what: str, states: Mapping[str, str], finished: Counter[str], gone: list[str]
) -> None:
    state = states.get(run_id)
    if state is None:
        gone.append(what)
    elif state in ("succeeded", "failed", "cancelled", "lost"):
        finished[run_id] += 1


def _orphan_checks(project: Path, states: Mapping[str, str]) -> list[Check]:
    """Processes started for a run of this project (``FANOUT_RUN_DIR`` in their environment)
    that outlive it: the run is finished, lost or gone."""
    from claude_fanout import procs

    root = os.path.realpath(project / defaults.RUNS_DIR)
    orphans: list[str] = []
    for pid, run_dir in sorted(procs.processes_with_env("FANOUT_RUN_DIR").items()):
        if os.path.dirname(os.path.realpath(run_dir)) != root:
            continue
        state = states.get(os.path.basename(run_dir))
        if state is None or state in ("succeeded", "failed", "cancelled", "lost"):
            orphans.append(
                f"pid {pid} ({(procs.command_line(pid) or '?')[:60]}) of "
                f"{state or 'a removed'} run {os.path.basename(run_dir)}"
            )
    if orphans:
        return [
            Check(
                "runs",
                "orphans",
                FAIL,
                f"{len(orphans)} process(es) outlived their run: {'; '.join(orphans[:3])}: "
                "stop them with `kill -- -PGID` (`ps -o pgid= PID`)",
            )
        ]
    return [Check("runs", "orphans", OK, "no process outlives its run")]


# -- output ------------------------------------------------------------------------------------

_MARKS: Final = {OK: "✓", WARN: "!", FAIL: "✗"}
_TITLES: Final = {"install": "installation", "claude": "Claude Code", "runs": "runs"}


def render(checks: list[Check]) -> Iterator[str]:
    section = None
    for check in checks:
        if check.section != section:
            section = check.section
            yield _TITLES.get(section, section)
        yield f"  {_MARKS[check.status]} {check.name}: {check.detail}"


def failed(checks: list[Check]) -> bool:
    return any(check.status == FAIL for check in checks)


def command(
    project: Path, *, probe: bool = False, as_json: bool = False, cli: str | None = None
) -> int:
    """``fanout doctor [--probe] [--json] [--cli PATH]``: print the findings; 1 on any failure."""
    import sys

    checks = diagnose(project)
    report = None
    if probe:
        from claude_fanout import probe as probing

        report = probing.run_probe(cli=cli)
    bad = failed(checks) or (report is not None and not report.ok)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": not bad,
                    "project": str(project),
                    "checks": [check.to_dict() for check in checks],
                    "probe": None if report is None else report.to_dict(),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(f"fanout doctor: {project}")
        for line in render(checks):
            print(line)
        if report is not None:
            print("Claude Code mechanisms (--probe, offline)")
            for line in probing.render(report):
                print(line)
        sys.stdout.flush()
    return 1 if bad else 0
