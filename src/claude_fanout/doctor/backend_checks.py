"""``fanout doctor``'s backend section: where the project's workers run and, for the Ray backend,
whether the extra is installed, whether runs ship this machine's code and CLI to the nodes,
and what the cluster has (its live nodes and their resources)."""

from __future__ import annotations

import os
from pathlib import Path

from claude_fanout.config import ConfigError, load_config
from claude_fanout.doctor.findings import FAIL, OK, Check

SECTION = "backend"


def backend_checks(project: Path) -> list[Check]:
    try:
        config = load_config(project)
    except ConfigError as exc:
        return [Check(SECTION, "backend", FAIL, str(exc))]
    if config.backend != "ray":
        return [Check(SECTION, "backend", OK, "local: workers are children of the supervisor")]
    checks = [Check(SECTION, "backend", OK, f"ray, address {config.ray_address}")]
    from importlib import metadata

    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        fix = "pip install 'claude-fanout[ray]'"
        return [*checks, Check(SECTION, "ray", FAIL, f"not installed; {fix}")]
    checks.append(Check(SECTION, "ray", OK, f"ray {version}"))
    checks.append(Check(SECTION, "shipping", OK, _shipping(config.ray_ship)))
    from claude_fanout.cluster.seam import ClusterError, describe

    try:
        nodes = describe(config.ray_address)
    except ClusterError as exc:
        return [*checks, Check(SECTION, "cluster", FAIL, str(exc))]
    total_cpus = sum(float(n["resources"].get("CPU", 0)) for n in nodes)
    checks.append(
        Check(SECTION, "cluster", OK, f"{len(nodes)} live node(s), {total_cpus:g} CPUs for tasks")
    )
    for found in nodes:
        resources = found["resources"]
        memory_gb = float(resources.get("memory", 0)) / 2**30
        checks.append(
            Check(
                SECTION,
                f"node {str(found['node_id'])[:12]}",
                OK,
                f"{found['address']}: {float(resources.get('CPU', 0)):g} CPUs, "
                f"{memory_gb:.1f} GiB memory",
            )
        )
    return checks


def _shipping(ship: bool) -> str:
    """What the nodes get from this machine (``executor.ship``)."""
    from claude_fanout import __version__

    if not ship:
        return (
            f"off (executor.ship = false): every node needs claude-fanout {__version__} and "
            "the Claude Code CLI installed"
        )
    from claude_fanout.cluster.shipping import shippable_cli

    found, what = shippable_cli(os.environ)
    cli = what if found is not None else f"not shipped, {what}: the nodes run their own"
    return f"on: each run ships this claude-fanout {__version__} and the Claude Code CLI ({cli})"
