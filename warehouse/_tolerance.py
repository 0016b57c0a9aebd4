"""Weight-tolerance settlement: what the buyer owes for the weight delivered.

A deal is struck for a contract weight (lots x lot size); the warehouse
weighs what is actually delivered. Within the instrument's tolerance the
seller is paid for the actual weight at the deal price, and the buyer is
refunded the difference (under-weight) or charged it (over-weight). Outside
the tolerance the delivery goes to a dispute that exchange staff resolve.

Rounding: an amount for a weight is ``weight_kg * price_fen_per_t / 1000``
rounded DOWN (toward zero; every input is positive) to a whole fen. The
sub-fen residue stays with the buyer: the buyer is never charged for a
fraction of a fen, the seller never paid for one. Contract amount and
actual amount are rounded the same way, and refund/extra are their exact
difference, so refund - extra = contract amount - amount due, to the fen.

Tolerance test (exact, integers only): the delivery is within tolerance
when ``|actual - contract| * 10000 <= contract * tolerance_bps``; the edge
itself is inside.

Worked examples (rebar at 3500 CNY/t = 350 000 fen/t, 10 lots of 10 t,
tolerance 300 bps = 3 %, contract 100 000 kg, contract amount 35 000 000 fen):

    actual 98 765 kg -> due 34 567 750 fen, refund 432 250 fen to the buyer
    actual 103 000 kg (exactly +3 %) -> due 36 050 000, extra 1 050 000 charged
    actual 96 999 kg (-3.001 %) -> outside tolerance: dispute
    at 3501 CNY/t (350 100 fen/t), actual 98 765 kg: 98 765 x 350 100 / 1000
    = 34 577 626.5 -> due 34 577 626 fen (the half fen stays with the buyer),
    contract 35 010 000, refund 432 374 fen
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "BPS",
    "DISPUTE",
    "KG_PER_T",
    "WITHIN",
    "ToleranceResult",
    "amount_for_weight_fen",
    "settle_weight",
    "within_tolerance",
]

BPS: Final = 10_000
KG_PER_T: Final = 1_000
WITHIN: Final = "within"
DISPUTE: Final = "dispute"


@dataclass(frozen=True, slots=True)
class ToleranceResult:
    """The tolerance settlement of one delivery.

    outcome: WITHIN (settle for amount_due_fen) or DISPUTE (outside the
    tolerance: the amounts are then what an adjustment to the actual weight
    at the deal price would give, for staff to consider; nothing is settled).
    """

    outcome: str
    contract_amount_fen: int
    amount_due_fen: int
    refund_fen: int
    extra_fen: int
    difference_kg: int

    @property
    def within(self) -> bool:
        return self.outcome == WITHIN


def amount_for_weight_fen(weight_kg: int, price_fen_per_t: int) -> int:
    """Amount for `weight_kg` at `price_fen_per_t`, rounded down to the fen
    (the residue stays with the buyer)."""
    if type(weight_kg) is not int or weight_kg < 0:
        raise ValueError(f"weight_kg must be a non-negative int, not {weight_kg!r}")
    if type(price_fen_per_t) is not int or price_fen_per_t <= 0:
        raise ValueError(f"price_fen_per_t must be a positive int, not {price_fen_per_t!r}")
    return weight_kg * price_fen_per_t // KG_PER_T


def within_tolerance(contract_weight_kg: int, actual_weight_kg: int, tolerance_bps: int) -> bool:
    """True when the actual weight is within `tolerance_bps` of the contract weight (edge included)."""
    return abs(actual_weight_kg - contract_weight_kg) * BPS <= contract_weight_kg * tolerance_bps


def settle_weight(
    contract_weight_kg: int, actual_weight_kg: int, price_fen_per_t: int, tolerance_bps: int
) -> ToleranceResult:
    """The tolerance settlement for a delivery (see the module docstring).

    Raises ValueError for inputs no deal can have (programmer error at the
    caller): weights must be positive ints, the price a positive int, the
    tolerance an int from 0 to 10000 bps.
    """
    if type(contract_weight_kg) is not int or contract_weight_kg <= 0:
        raise ValueError(f"contract_weight_kg must be a positive int, not {contract_weight_kg!r}")
    if type(actual_weight_kg) is not int or actual_weight_kg <= 0:
        raise ValueError(f"actual_weight_kg must be a positive int, not {actual_weight_kg!r}")
    if type(tolerance_bps) is not int or not (0 <= tolerance_bps <= BPS):
        raise ValueError(f"tolerance_bps must be an int from 0 to {BPS}, not {tolerance_bps!r}")
    contract_fen = amount_for_weight_fen(contract_weight_kg, price_fen_per_t)
    due_fen = amount_for_weight_fen(actual_weight_kg, price_fen_per_t)
    outcome = WITHIN if within_tolerance(contract_weight_kg, actual_weight_kg, tolerance_bps) else DISPUTE
    refund = max(contract_fen - due_fen, 0)
    extra = max(due_fen - contract_fen, 0)
    assert refund == 0 or extra == 0
    assert contract_fen - refund + extra == due_fen
    return ToleranceResult(outcome, contract_fen, due_fen, refund, extra, actual_weight_kg - contract_weight_kg)
