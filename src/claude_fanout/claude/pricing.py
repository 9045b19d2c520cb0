"""What a model's tokens cost, to estimate a running worker's spend from its stream.

An estimate, not a bill: the CLI prices its session itself and reports ``total_cost_usd`` in its
result, which replaces the estimate once the worker exits. Until then fanout multiplies the tokens
each API call reported by these list prices (US dollars per million tokens), the ones Claude Code
2.1.332 prices its sessions with (its model catalog; ``tests/unit/test_live_usage.py`` checks the
estimate against the CLI's own total on recorded streams). Not modelled: long-prompt surcharges,
one-hour cache writes (priced as five-minute ones), web searches. A model not in the table is
priced as the most expensive one, so an unknown model can only make a run's budget stop early,
never late. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

__all__ = ["PRICES", "UNKNOWN_MODEL_PRICE", "Price", "cost_usd", "price_of"]


class Price(NamedTuple):
    """Dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


_TIER_2_10: Final = Price(2, 10, 2.5, 0.2)
_TIER_3_15: Final = Price(3, 15, 3.75, 0.3)
_TIER_5_25: Final = Price(5, 25, 6.25, 0.5)
_TIER_10_50: Final = Price(10, 50, 12.5, 1)
_TIER_15_75: Final = Price(15, 75, 18.75, 1.5)

# Model ids as the API reports them, without a date suffix (``claude-sonnet-4-5-20250929``) or a
# context suffix (``[1m]``): the longest id a model's name starts with wins.
PRICES: Final[Mapping[str, Price]] = {
    "claude-3-5-haiku": Price(0.8, 4, 1, 0.08),
    "claude-3-5-sonnet": _TIER_3_15,
    "claude-3-7-sonnet": _TIER_3_15,
    "claude-haiku-4-5": Price(1, 5, 1.25, 0.1),
    "claude-haiku-5-5": Price(0.1, 0.5, 0.125, 0.01),
    "claude-sonnet-4": _TIER_3_15,
    "claude-sonnet-4-0": _TIER_3_15,
    "claude-sonnet-4-5": _TIER_3_15,
    "claude-sonnet-4-6": _TIER_3_15,
    "claude-sonnet-5": _TIER_2_10,
    "claude-sonnet-5-5": Price(2, 10, 2.5, 0.1),
    "claude-opus-4": _TIER_15_75,
    "claude-opus-4-0": _TIER_15_75,
    "claude-opus-4-1": _TIER_15_75,
    "claude-opus-4-5": _TIER_5_25,
    "claude-opus-4-6": _TIER_5_25,
    "claude-opus-4-7": _TIER_5_25,
    "claude-opus-4-8": _TIER_5_25,
    "claude-opus-5": _TIER_5_25,
    "claude-opus-5-5": Price(4, 20, 5, 0.2),
    "claude-fable-5": _TIER_10_50,
    "claude-fable-5-1": Price(10, 50, 12.5, 0.25),
    "claude-fable-5-2": Price(8, 40, 10, 0.2),
    "claude-mythos-5": _TIER_10_50,
    "claude-mythos-5-1": Price(10, 50, 12.5, 0.25),
    "claude-mythos-5-2": Price(8, 40, 10, 0.2),
}

# The most expensive row: what a model fanout does not know costs in an estimate.
UNKNOWN_MODEL_PRICE: Final = max(PRICES.values(), key=lambda p: (p.output, p.input))

_BY_LENGTH: Final = sorted(PRICES, key=len, reverse=True)


def price_of(model: str | None) -> Price:
    """The list price of ``model`` (an API model id, with or without a date or ``[1m]``)."""
    if not model:
        return UNKNOWN_MODEL_PRICE
    name = model.split("[", 1)[0].strip().lower()
    name = name.rsplit("/", 1)[-1]  # a gateway's ``anthropic/claude-…``
    for known in _BY_LENGTH:
        # The id itself, or the id and a date (``-20250929``): ``claude-opus-4-9`` is not
        # ``claude-opus-4``, it is a model this table does not know.
        rest = name[len(known) :] if name.startswith(known) else None
        if rest == "" or (
            rest is not None and len(rest) == 9 and rest[0] == "-" and rest[1:].isdigit()
        ):
            return PRICES[known]
    return UNKNOWN_MODEL_PRICE


def cost_usd(model: str | None, usage: Mapping[str, float]) -> float:
    """Dollars for one API call's ``usage`` (the Messages API's token counts) on ``model``."""
    price = price_of(model)
    return (
        usage.get("input_tokens", 0) * price.input
        + usage.get("output_tokens", 0) * price.output
        + usage.get("cache_creation_input_tokens", 0) * price.cache_write
        + usage.get("cache_read_input_tokens", 0) * price.cache_read
    ) / 1_000_000
