"""The paths a plan names (``claims``, ``replaces``): made project-relative POSIX paths, globs
kept, and refused when they reach outside the project, through ``..`` or through a link."""

from __future__ import annotations

import os
from pathlib import Path

from claude_fanout.errors import PlanError

GLOB_CHARS = frozenset("*?[")


def parse_replaces(value: object, *, project: Path, task: str) -> dict[str, str]:
    """``{project path: artifact}``; the artifact is a relative path inside the task's out/."""
    if not isinstance(value, dict):
        raise PlanError(
            "must be an object of project paths to artifact names", task=task, field="replaces"
        )
    out: dict[str, str] = {}
    for path, artifact in value.items():
        if not isinstance(artifact, str) or not artifact or "\0" in artifact:
            raise PlanError(
                f"the artifact for '{path}' must be a file name in the task's out/",
                task=task,
                field="replaces",
            )
        norm = os.path.normpath(artifact)
        if os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
            raise PlanError(
                f"'{artifact}' must stay inside the task's out/ directory",
                task=task,
                field="replaces",
            )
        rel = normalize_claim(path, project=project, task=task, field="replaces")
        if any(char in GLOB_CHARS for char in rel):
            raise PlanError(f"'{path}' must name one file, not a glob", task=task, field="replaces")
        out[rel] = Path(norm).as_posix()
    return out


def normalize_claim(claim: str, *, project: Path, task: str, field: str = "claims") -> str:
    """A claim as a project-relative POSIX path (globs kept); refuse anything outside the project.

    The part before the first glob character is resolved through symlinks, so a claim cannot
    reach outside the project through a link either.
    """
    if not claim or "\0" in claim:
        raise PlanError("claims must be non-empty paths", task=task, field=field)
    root = str(project)
    joined = os.path.normpath(os.path.join(root, claim))
    literal = joined
    # Only the claim's own part may hold glob characters; the project path may contain '[' too.
    start = len(root) if joined.startswith(root + os.sep) else 0
    for i in range(start, len(joined)):
        if joined[i] in GLOB_CHARS:
            literal = os.path.dirname(joined[:i])
            break
    resolved = os.path.realpath(literal)
    for candidate in (joined, resolved):
        if candidate != root and not candidate.startswith(root + os.sep):
            raise PlanError(
                f"'{claim}' is outside the project {root}; claim paths inside it",
                task=task,
                field=field,
            )
    rel = os.path.relpath(joined, root)
    return "." if rel == "." else Path(rel).as_posix()
