"""The core: every deterministic state machine of the exchange behind one
``apply``. Commands are routed by type.

No clock, no I/O: the sequencer passes `seq` and `ts_ns` in, events come out
in `out`. Same commands in, byte-identical events out.

Matching and clearing are composed here (pre-trade risk):

    NewOrder           clearing.freeze_order (the hold: margin, plus the taker fee for a buy)
                       ├─ refused: C_ORDER_REJECTED, then a matching REJECTED with code
                       │  INSUFFICIENT_FUNDS (80) and the shortfall; the order never reaches the book
                       └─ frozen: matching.apply, then clearing.absorb (trades become deals,
                          cancels and expiries release, a rejected order's hold is released)
    AmendOrder         clearing.reserve_amend (top up the hold), matching.apply, clearing.absorb
    CancelOrder, MassCancel, SetTradingState
                       matching.apply, clearing.absorb
    ListInstrument     matching.apply; clearing.list_instrument when matching listed it
    clearing commands  clearing.apply (RegisterMember, BankDeposit, withdrawals, files, CloseDay, ...)

An order that matching is certain to refuse before it could rest or trade
(unknown instrument, bad side, quantity outside the instrument's limits, a
limit price outside the band, a repeated client order id) goes to matching
directly: it answers with its own reject code (or the first answer of a
duplicate) and no money is frozen. A clearing refusal is reported to the
trader with matching's REJECTED event so that every consumer of order
events (gateway, projections) sees one kind of answer; the clearing code
and detail stay in the C_ORDER_REJECTED event before it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

import orjson

from clearing import CLEARING_COMMANDS, ClearingCode, ClearingEngine
from exchange._codec import register_commands
from matching import (
    BUY,
    LIMIT,
    LISTED,
    MARKET,
    REJECTED,
    SELL,
    AmendOrder,
    CancelOrder,
    Event,
    Limits,
    ListInstrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
    RejectCode,
    SetTradingState,
)

__all__ = ["Core", "canonical_json", "hash_state"]

register_commands(CLEARING_COMMANDS.values())

# The matching reject code a trader sees when clearing refuses an order (the
# gateway speaks matching's codes). An unregistered member has no funds.
_RISK_TO_REJECT: Final[dict[int, int]] = {
    ClearingCode.INSUFFICIENT_FUNDS: RejectCode.INSUFFICIENT_FUNDS,
    ClearingCode.UNKNOWN_MEMBER: RejectCode.INSUFFICIENT_FUNDS,
    ClearingCode.UNKNOWN_INSTRUMENT: RejectCode.UNKNOWN_INSTRUMENT,
    ClearingCode.BAD_SIDE: RejectCode.BAD_SIDE,
    ClearingCode.BAD_AMOUNT: RejectCode.PRICE_NOT_POSITIVE,
}


def canonical_json(state: dict[str, Any]) -> bytes:
    """The canonical bytes of a state: orjson with sorted keys."""
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


def hash_state(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _risk_reject(out: list[Event], seq: int, account: str, reference: str) -> None:
    """Answer a clearing refusal (the C_ORDER_REJECTED just appended) as a matching REJECTED."""
    refusal = out[-1]
    code = _RISK_TO_REJECT.get(refusal[4], RejectCode.INSUFFICIENT_FUNDS)
    detail = refusal[5] if refusal[4] != ClearingCode.UNKNOWN_MEMBER else f"member {account} has no funds: register it"
    out.append((REJECTED, seq, account, reference, code, detail))


class Core:
    """Composes the matching engine and the clearing engine (warehouse joins the same way)."""

    def __init__(self, matching: MatchingEngine | None = None, clearing: ClearingEngine | None = None) -> None:
        self.matching = matching if matching is not None else MatchingEngine(Limits())
        self.clearing = clearing if clearing is not None else ClearingEngine()
        m = self.matching
        c = self.clearing
        self._matching_apply = m.apply
        self._books = m.books
        self._client_ids = m.client_ids
        self._matching_orders = m.orders
        self._freeze = c.freeze_order
        self._absorb = c.absorb
        # type -> apply(command, seq, ts_ns, out)
        self._routes: dict[type[Any], Callable[[Any, int, int, list[Event]], None]] = {
            NewOrder: self._new_order,
            AmendOrder: self._amend,
            CancelOrder: self._follow,
            MassCancel: self._follow,
            SetTradingState: self._follow,
            ListInstrument: self._list,
        }
        for cls in CLEARING_COMMANDS.values():
            self._routes[cls] = c.apply

    def apply(self, command: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        """Apply one sequenced command, appending its events to `out`."""
        route = self._routes.get(type(command))
        assert route is not None, f"no state machine handles {type(command).__name__}"
        route(command, seq, ts_ns, out)

    # --------------------------------------------------------------- routes

    def _new_order(self, c: NewOrder, seq: int, ts_ns: int, out: list[Event]) -> None:
        book = self._books.get(c.instrument)
        side = c.side
        qty = c.quantity_lots
        if book is None or not (BUY <= side <= SELL) or not (book.min_lots <= qty <= book.max_lots):
            self._matching_apply(c, seq, out)  # matching refuses it; nothing to freeze
            return
        order_type = c.order_type
        if order_type == LIMIT:
            price = c.price_ticks
            if not (book.band_low_ticks <= price <= book.band_high_ticks) or price <= 0:
                self._matching_apply(c, seq, out)
                return
        elif order_type == MARKET:
            price = book.band_high_ticks  # the hold covers any price it can trade at (both sides)
        else:
            self._matching_apply(c, seq, out)
            return
        ids = self._client_ids.get(c.account)
        if ids is not None and c.client_order_id in ids:
            self._matching_apply(c, seq, out)  # a repeat: answered as the first, nothing applied
            return
        if not self._freeze(seq, c.account, c.instrument, side, price, qty, seq, out):
            _risk_reject(out, seq, c.account, c.client_order_id)
            return
        start = len(out)
        self._matching_apply(c, seq, out)
        self._absorb(out, start, seq)

    def _amend(self, c: AmendOrder, seq: int, ts_ns: int, out: list[Event]) -> None:
        order = self._matching_orders.get(c.order_id)
        if order is not None and order.account == c.account:
            book = self._books[order.instrument]
            if (
                book.band_low_ticks <= c.price_ticks <= book.band_high_ticks
                and c.price_ticks > 0
                and c.quantity_lots <= book.max_lots
                and not self.clearing.reserve_amend(c.order_id, c.account, c.price_ticks, c.quantity_lots, seq, out)
            ):
                _risk_reject(out, seq, c.account, str(c.order_id))
                return
        start = len(out)
        self._matching_apply(c, seq, out)
        self._absorb(out, start, seq)

    def _follow(self, c: Any, seq: int, ts_ns: int, out: list[Event]) -> None:
        start = len(out)
        self._matching_apply(c, seq, out)
        self._absorb(out, start, seq)

    def _list(self, c: ListInstrument, seq: int, ts_ns: int, out: list[Event]) -> None:
        start = len(out)
        self._matching_apply(c, seq, out)
        if any(e[0] == LISTED for e in out[start:]):
            self.clearing.list_instrument(c.instrument)

    # ---------------------------------------------------------------- state

    def trading_states(self) -> dict[str, int]:
        """Symbol -> trading state of every listed instrument."""
        return {symbol: book.state for symbol, book in self.matching.books.items()}

    def check_invariants(self) -> None:
        """Assert the invariants of every machine and that they agree: every
        order on a book has its clearing hold and no hold outlives its order."""
        self.matching.check_invariants()
        self.clearing.check_invariants()
        on_books = set(self.matching.orders)
        held = set(self.clearing.orders)
        assert on_books == held, (sorted(on_books ^ held)[:10], len(on_books), len(held))

    def export_state(self) -> dict[str, Any]:
        """The whole state as canonical plain data (keys are strings)."""
        return {"matching": self.matching.export_state(), "clearing": self.clearing.export_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Core:
        return cls(MatchingEngine.from_state(state["matching"], Limits()), ClearingEngine.from_state(state["clearing"]))

    def state_bytes(self) -> bytes:
        return canonical_json(self.export_state())

    def state_hash(self) -> str:
        """SHA-256 hex of the canonical JSON of ``export_state()``."""
        return hash_state(self.state_bytes())
