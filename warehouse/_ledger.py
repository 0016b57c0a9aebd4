"""The money legs of a delivery, as the warehouse core needs them.

Clearing owns the money; the warehouse calls it at the transitions of a
delivery. Each method either does all of its step and returns ``(0, "")``,
or changes nothing and returns ``(code, detail)`` with a clearing code.
That promise is what makes delivery versus payment one atomic step: the
warehouse checks everything of its own first, then asks the ledger, and
moves the receipts only when the ledger said yes.

    escrow_payment  the buyer's payment is frozen into escrow (pay)
    settle_deal     the buyer pays `amount_fen` (the price adjusted to the
                    delivered weight), the seller is paid less fees, the
                    margins are released (delivery versus payment)
    default_deal    `defaulter_side` (0 buyer, 1 seller, as matching's
                    BUY/SELL) missed a deadline: its margin is forfeited,
                    the other side's holds released
    cancel_deal     a dispute resolved by cancellation: every hold released
"""

from __future__ import annotations

from typing import Any, Final, Protocol

__all__ = ["BUYER_SIDE", "SELLER_SIDE", "DeliveryLedger"]

BUYER_SIDE: Final = 0
SELLER_SIDE: Final = 1


class DeliveryLedger(Protocol):
    """What clearing offers the warehouse (``clearing.ClearingEngine`` has these methods)."""

    def escrow_payment(self, deal_id: int, seq: int, out: list[tuple[Any, ...]]) -> tuple[int, str]: ...

    def settle_deal(self, deal_id: int, amount_fen: int, seq: int, out: list[tuple[Any, ...]]) -> tuple[int, str]: ...

    def default_deal(
        self, deal_id: int, defaulter_side: int, seq: int, out: list[tuple[Any, ...]]
    ) -> tuple[int, str]: ...

    def cancel_deal(self, deal_id: int, seq: int, out: list[tuple[Any, ...]]) -> tuple[int, str]: ...
