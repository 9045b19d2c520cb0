"""The Ray backend: a run's tasks on a Ray cluster's nodes (the ``ray`` extra).

``seam`` is the supervisor's side (the Ray driver, a process seam for the runtime), ``node`` the
side that runs on a node, ``guard`` the leader of a task's process group there. This module is
stdlib only and never imports ray: which backend a run uses is decided here.
"""

from __future__ import annotations

from claude_fanout.config import Config
from claude_fanout.states import EventType
from claude_fanout.store.eventlog import read_events
from claude_fanout.store.rundir import RunDir


def chosen_backend(run: RunDir, config: Config) -> tuple[str, str]:
    """(backend, address) of ``run``: what ``fanout run --backend`` recorded when the run was
    created, else the project's ``[executor]`` configuration."""
    for event in read_events(run.events_path, 0).events:
        if event.get("type") == EventType.RUN_CREATED:
            backend = event.get("backend")
            if isinstance(backend, str) and backend:
                return backend, config.ray_address
            break
    return config.backend, config.ray_address
