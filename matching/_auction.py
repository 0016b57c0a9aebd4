"""Call auction uncross price: a pure function of the book's levels.

The uncross price is the price at which the most lots would trade. Ties are
broken by the smallest imbalance (|buy volume - sell volume| at that price),
then by nearness to the reference price, then by the lower price. Every
limit price on either side and the reference price are candidates: between
two neighbouring limit prices volumes are constant, so each gap is
represented by its price nearest the reference price.
"""

from __future__ import annotations

import itertools

__all__ = ["uncross"]


def uncross(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference_price_ticks: int
) -> tuple[int, int, int]:
    """(price_ticks, volume_lots, imbalance_lots) for levels given as
    (price_ticks, lots) pairs, in any order. (0, 0, 0) when nothing crosses.
    imbalance_lots is buy volume less sell volume at the chosen price."""
    if not bids or not asks:
        return (0, 0, 0)
    bids_desc = sorted(bids, reverse=True)
    asks_asc = sorted(asks)
    if bids_desc[0][0] < asks_asc[0][0]:
        return (0, 0, 0)
    limit_prices = sorted({p for p, _ in bids_desc} | {p for p, _ in asks_asc})
    points = set(limit_prices)
    for low, high in itertools.pairwise(limit_prices):
        if high - low > 1:  # the gap's price nearest the reference
            points.add(min(max(reference_price_ticks, low + 1), high - 1))
    candidates = sorted(points)
    # sell volume at p: asks with price <= p (ascending walk)
    sell_at: list[int] = []
    i = 0
    cumulative = 0
    for p in candidates:
        while i < len(asks_asc) and asks_asc[i][0] <= p:
            cumulative += asks_asc[i][1]
            i += 1
        sell_at.append(cumulative)
    # buy volume at p: bids with price >= p (descending walk)
    buy_at = [0] * len(candidates)
    j = 0
    cumulative = 0
    for k in range(len(candidates) - 1, -1, -1):
        p = candidates[k]
        while j < len(bids_desc) and bids_desc[j][0] >= p:
            cumulative += bids_desc[j][1]
            j += 1
        buy_at[k] = cumulative
    best_key: tuple[int, int, int, int] | None = None
    best = (0, 0, 0)
    for k, p in enumerate(candidates):
        volume = min(buy_at[k], sell_at[k])
        if volume <= 0:
            continue
        imbalance = buy_at[k] - sell_at[k]
        key = (-volume, abs(imbalance), abs(p - reference_price_ticks), p)
        if best_key is None or key < best_key:
            best_key = key
            best = (p, volume, imbalance)
    return best
