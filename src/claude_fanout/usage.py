"""How tokens, turns and cost read to a person: ``4 turns, $0.03``, ``41k tokens in / 3k out``.

Shared by ``fanout status`` / ``fanout runs`` and the hooks' results message, so the Conductor
and the person see the same numbers. Stdlib only and import-free: hooks use it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def money(cost: float) -> str:
    """``$0.03``; four places below a cent, so a cheap worker does not read as free."""
    if cost >= 0.01 or cost <= 0:
        return f"${max(cost, 0.0):,.2f}"
    return f"${cost:.4f}"


def count(n: float) -> str:
    """``850``, ``4.1k``, ``41k``, ``1.2M``."""
    if n < 1000:
        return f"{n:.0f}"
    if n < 10_000:
        return f"{n / 1000:.1f}k"
    if n < 1_000_000:
        return f"{n / 1000:.0f}k"
    return f"{n / 1_000_000:.1f}M"


def tokens_in(usage: Mapping[str, float]) -> float:
    """Every input token the model read: fresh, from the cache, and written to the cache."""
    return sum(
        usage.get(key, 0)
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )


def turns(usage: Mapping[str, float]) -> str:
    n = int(usage.get("turns", 0))
    return f"{n} turn{'s' * (n != 1)}"


def brief(usage: Mapping[str, float] | None) -> str:
    """One worker: ``4 turns, $0.03`` ('' without usage)."""
    if not usage:
        return ""
    return f"{turns(usage)}, {money(usage.get('cost_usd', 0.0))}"


def tokens(usage: Mapping[str, float]) -> str:
    """``41k tokens in / 3k out``."""
    return f"{count(tokens_in(usage))} tokens in / {count(usage.get('output_tokens', 0))} out"


def total(usage: Mapping[str, float] | None, workers: int) -> str:
    """A run: ``3 workers, $0.09, 41k tokens in / 3k out`` ('' without usage)."""
    if not usage:
        return ""
    return (
        f"{workers} worker{'s' * (workers != 1)}, {money(usage.get('cost_usd', 0.0))}, "
        f"{tokens(usage)}"
    )
