"""Every default in one place, so a reader can see the system's dials at a glance."""

from __future__ import annotations

PLAN_VERSION = 1
MAX_PARALLEL = 4
TASK_TIMEOUT_S = 600.0
RETRIES = 0
# Backoff before retry n (1-based) is min(RETRY_BACKOFF_BASE_S * 2 ** (n - 1), RETRY_BACKOFF_MAX_S).
RETRY_BACKOFF_BASE_S = 1.0
RETRY_BACKOFF_MAX_S = 60.0
CLAUDE_TOOLS = ("Read", "Grep", "Glob")
PERMISSION_MODE = "dontAsk"
# What one task reserves on a cluster node when its plan says nothing (the Ray backend).
TASK_CPUS = 1.0

# Where a run's workers run: "local" (children of the supervisor) or "ray" (a Ray cluster's
# nodes; the `ray` extra). RAY_ADDRESS is what `ray.init` is given: "auto" finds a cluster started
# on this machine with `ray start`, "ray://host:port" reaches a remote one.
BACKENDS = ("local", "ray")
BACKEND = "local"
RAY_ADDRESS = "auto"
# The Ray backend ships this machine's claude-fanout (runtime_env py_modules) and, for a run with
# claude tasks, its Claude Code CLI (the object store, once per node per run) to the nodes; off
# for clusters that install both themselves.
RAY_SHIP = True
# The most a task's output chunk streamed back from a node holds (bytes).
RAY_CHUNK_BYTES = 64 * 1024
# At a run's end its supervisor waits at most this long for the nodes to drop the run's scratch.
RAY_FORGET_TIMEOUT_S = 10.0

# Between SIGTERM to a worker's process group and SIGKILL.
KILL_GRACE_S = 3.0
# The same for what a lost run left running, stopped by the next hook or CLI that finds it lost
# (shorter: a hook is waiting, SessionEnd's whole budget is 1.5 s).
SWEEP_GRACE_S = 0.5
# The supervisor rewrites supervisor.json this often; readers call a run lost when the heartbeat is
# older than HEARTBEAT_STALE_S (a SIGSTOPped supervisor) or its process is gone.
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_STALE_S = 15.0
# How long `fanout run` waits for a new supervisor to report in before calling the start failed.
SUPERVISOR_START_TIMEOUT_S = 10.0
# A reader of a run's state that folds this much of the log past state.json publishes the snapshot
# itself (the supervisor republishes whenever the log grew): readers' cost stays flat in log length.
SNAPSHOT_TAIL_BYTES = 32 * 1024
# `fanout wait` and `fanout run` poll the log this often.
WAIT_POLL_S = 0.05
# `fanout watch` redraws at least this often (elapsed times tick, a lost supervisor shows) and at
# most every WATCH_MIN_REDRAW_S however fast the log grows; it reads at most WATCH_TAIL_BYTES of a
# worker's log for its last line.
WATCH_TICK_S = 1.0
WATCH_MIN_REDRAW_S = 0.1
WATCH_TAIL_BYTES = 4096

RUNS_DIR = ".claude/runs"
# Writers' git worktrees (.fanout/ holds a .gitignore of "*", so git and ripgrep skip it).
WORKTREES_DIR = ".fanout/worktrees"
DIR_MODE = 0o700
FILE_MODE = 0o600

# Limits that keep a hostile or broken plan from exhausting the machine.
MAX_TASKS = 1000
MAX_ID_LEN = 64
MAX_PLAN_BYTES = 4 * 1024 * 1024

# Hooks and the Conductor (overridable in .claude/fanout.toml, see config.py).
MAX_LIVE_WORKERS = 8
STOP_WAIT_S = 300.0
STOP_MAX_BLOCKS = 6
STOP_MAX_HOLD_S = 1800.0
CONDUCTOR_GRACE_S = 5.0
MAX_DEPTH = 1
INJECT_MAX_CHARS = 4000
DELIVERY = "auto"
REWAKE_MAX_WAIT_S = 7200.0
# `claude` workers: a project-wide cap and start spacing (API rate limits), and the retries of a
# worker the API rate-limited (backoff n is base * 2 ** (n - 1), jittered +-50%, capped at max).
MAX_LIVE_CLAUDE_WORKERS = 4
CLAUDE_START_INTERVAL_S = 0.2
RATE_LIMIT_RETRIES = 5
RATE_LIMIT_BACKOFF_S = 10.0
RATE_LIMIT_BACKOFF_MAX_S = 300.0
# The supervisor renders at most this much of a claude worker's stream into its log per pass.
STREAM_READ_MAX = 4 * 1024 * 1024
# A running claude worker's `task_progress` record (usage so far, what it is doing): at most one
# per task this often, plus one at its end when its usage changed since the last.
PROGRESS_INTERVAL_S = 1.0
# What a running worker is doing (its tool in use, its last line), at most this many characters.
DOING_MAX_CHARS = 120
# How much of a shell or python worker's log is read back for its last line.
LAST_LINE_READ_MAX = 8 * 1024
# A writer's changed files whose reads are redirected to its version until the merge-back.
MAX_PREVIEW_FILES = 200
# While every live-worker slot is taken, the supervisor looks for a free one this often.
SLOT_RETRY_S = 0.25

# Planning: `/fanout <instruction>` with no paths asks Claude for a plan (see planner.py).
PLANNER_TIMEOUT_S = 90.0
# planner.timeout_s may not exceed this: the UserPromptSubmit hook's own timeout (settings_hooks) is
# this plus PLANNER_HOOK_MARGIN_S, time enough to stop the planner and start the run.
PLANNER_MAX_TIMEOUT_S = 300.0
PLANNER_HOOK_MARGIN_S = 30
PLANNER_MAX_TASKS = 8
PLANNER_TASK_LIMIT = 64
PLANNER_MAX_TURNS = 12

# `fanout status` / `runs` into a pipe or a file: the width tables may take (nothing is cut).
PIPED_OUTPUT_WIDTH = 10_000

# `/fanout <instruction> -- <paths>`: the most files one request may fan out to.
MAX_FANOUT_FILES = 64
# While the Stop and Rewake hooks wait (woken by the runs' logs), liveness (a supervisor dying
# writes nothing until its watchdog notices) is re-checked at least this often.
STOP_RECHECK_S = 1.0
REWAKE_RECHECK_S = 2.0
# The most a hook reads of its payload on stdin; a bigger one is ignored (the hook does nothing).
HOOK_PAYLOAD_MAX_BYTES = 16 * 1024 * 1024

# What a hook hands the Conductor about a worker (hooks/report.py): an excerpt of its result
# (the first, or for a log the last, lines), none when less room than EXCERPT_MIN_CHARS is left.
EXCERPT_LINES = 8
EXCERPT_LINE_CHARS = 200
EXCERPT_CHARS = 700
EXCERPT_MIN_CHARS = 120
EXCERPT_READ_BYTES = 8192
# A published notice, and a failure's reason, on one line.
NOTICE_CHARS = 300
REASON_CHARS = 200
# What the person is shown (hooks/shown.py, a hook's systemMessage): lines of at most
# SHOWN_LINE_CHARS, ids and what a task does cut, at most SHOWN_MAX_TASKS workers named; the
# plan read for it and the Rewake hook's outbox (lines kept for the next prompt) are bounded.
SHOWN_LINE_CHARS = 300
SHOWN_ID_CHARS = 64
SHOWN_TASK_CHARS = 60
SHOWN_MAX_TASKS = 4
SHOWN_PLAN_MAX_BYTES = 8 * 1024 * 1024
SHOWN_OUTBOX_MAX_BYTES = 64 * 1024
SHOWN_OUTBOX_LINES = 6
# A run a Bash call started (``fanout run --detach``) was created while it ran, give or take this.
SHOWN_BASH_SLACK_S = 2.0
# Merge-back: conflicts listed one by one, files named per conflict.
MERGE_MAX_CONFLICTS = 6
MERGE_MAX_FILES = 4
# ``fanout report``: how much of each worker's result.md (or, without one, of the end of its log)
# the page shows, in bytes read.
REPORT_EXCERPT_BYTES = 4000

# `fanout statusline`: Claude Code re-runs the status line this often (seconds) while nothing else
# redraws it (a person's own refreshInterval wins), so an idle session still sees its workers.
STATUSLINE_REFRESH_S = 2
# The person's own status line command, run by fanout's beside its own segment, gets this long.
STATUSLINE_THEIRS_TIMEOUT_S = 5.0
# Claude Code's status line input (its session JSON) is small; more than this is not it.
STATUSLINE_INPUT_MAX_BYTES = 1024 * 1024
# What a running worker is doing, in the status line, at most this long.
STATUSLINE_DOING_CHARS = 40

# A writer of a run's log waits at most this long for its lock before appending without it (the
# lock only orders the repair of a dead writer's partial line; a frozen holder must stall nobody).
APPEND_LOCK_WAIT_S = 2.0
