"""The gateway's read models of money and goods, and the private channels
``balances``, ``receipts`` and ``deliveries``.

    sequencer.open()  ──► Views.load(core): a read-only copy of the recovered
                          core's clearing and warehouse state, taken before the
                          writer thread starts
    each committed batch ──► Views.apply(command, ack) on the event loop: the
                          events fold forward into the copy, and every change
                          is published on the owner's private channel

The receipts and deliveries channels also have one stream per warehouse
(account ``warehouse:<id>``), which the warehouse's operators subscribe to.

So the views show exactly what has been acknowledged (never what is applied
but not yet committed), queries are answered from memory on the event loop,
and the gateway never touches the core's objects after the start: every
change to the exchange is a command through the sequencer.

What is kept, and for whom:

- members: balances (available, frozen margin, frozen escrow) and open
  holds, the member's bank; withdrawals by id;
- deals (clearing's, one per trade; open ones at the start, every one opened
  since) and delivery records (warehouse's, open and ended);
- receipts (every one, with its holder, warehouse and the bank it is pledged
  to), operators (-> their warehouse), the instruments under the receipt rule;

Loaded at the start, what the core does not keep is not known: the journal
seq of a deal's, delivery's or withdrawal's last change (``last_seq`` 0), and
the detail of a receipt's origin (``registered`` or ``issued`` instead of
``delivery:<deal>``, ``residual:<deal>``, ...); deals that ended before the
start are shown through their delivery record only.
- per bank: the bank files it sent (applied, duplicate, or refused with the
  code), its statements and open reconciliation breaks.

A test drives random orders, trades, deliveries and withdrawals through the
gateway and compares every view with the core's own state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from api._errors import ErrorCode
from api._private import PrivateStreams
from clearing import (
    ACCOUNT_NAMES,
    C_BREAK,
    C_DEAL,
    C_DEAL_STATE,
    C_DUPLICATE,
    C_FILE,
    C_HOLD,
    C_HOLD_CHANGED,
    C_HOLD_CLOSED,
    C_MEMBER,
    C_REJECTED,
    C_STATEMENT,
    C_TRANSFER,
    C_WITHDRAWAL,
    BankFileImport,
    HoldState,
)
from exchange import Ack, Core
from exchange._warehouse_rule import X_RECEIPT_RULE
from matching import LISTED, ListInstrument
from warehouse import (
    W_DELIVERY,
    W_DELIVERY_STATE,
    W_OPERATOR,
    W_RECEIPT,
    W_RECEIPT_STATE,
    W_REJECTED,
    WarehouseCode,
)

__all__ = ["Views", "core_refusal", "fen_to_cny", "warehouse_stream"]

_SIDES = ("buy", "sell")
_ENDED_DEALS = frozenset(("settled", "defaulted", "cancelled"))
_LEDGER_DETAIL = re.compile(r"^(\d+): ?(.*)$", re.DOTALL)

Price = Callable[[str, int], str]


def warehouse_stream(warehouse_id: str) -> str:
    """The `account` of a warehouse's own receipts and deliveries streams (its operators subscribe)."""
    return f"warehouse:{warehouse_id}"


_CENTS = tuple(f"{cents:02d}" for cents in range(100))


def fen_to_cny(amount_fen: int) -> str:
    """Integer fen as a decimal string in CNY with two places (``-`` for a negative amount)."""
    if amount_fen >= 0:
        return f"{amount_fen // 100}.{_CENTS[amount_fen % 100]}"
    return "-" + fen_to_cny(-amount_fen)


HoldChange = tuple[int, int, str, str, int, str]
"""A hold as a command left it: hold id, ledger account, purpose, ref, amount in fen, state."""


def _hold_change(hold_id: int, account: int, purpose: str, ref: str, amount_fen: int, state: str) -> dict[str, Any]:
    return {"hold_id": hold_id, "account": ACCOUNT_NAMES[account], "purpose": purpose, "ref": ref,
            "amount": fen_to_cny(amount_fen), "state": state}  # fmt: skip


def _balances_body(
    seq: int, member: str, journal_seq: int, ts_ns: int, available_fen: int, frozen_margin_fen: int,
    frozen_escrow_fen: int, open_holds: int, holds: tuple[HoldChange, ...], withdrawals: tuple[dict[str, Any], ...],
) -> dict[str, Any]:  # fmt: skip
    """A ``balances`` message, from the figures captured when its command committed (`withdrawals`: copies)."""
    return {
        "type": "balances", "account": member, "seq": seq, "journal_seq": journal_seq, "ts_ns": ts_ns,
        "available": fen_to_cny(available_fen), "frozen_margin": fen_to_cny(frozen_margin_fen),
        "frozen_escrow": fen_to_cny(frozen_escrow_fen), "open_holds": open_holds,
        "holds": [_hold_change(*h) for h in holds], "withdrawals": [dict(w) for w in withdrawals],
    }  # fmt: skip


def core_refusal(ack: Ack) -> tuple[ErrorCode, str] | None:
    """The first clearing or warehouse refusal among a command's events, as an API code and detail.

    A warehouse LEDGER_REFUSED carries clearing's code in its detail ("80: shortfall ..."): the
    clearing code is answered (INSUFFICIENT_FUNDS tells a buyer more than LEDGER_REFUSED would).
    A repeat (C_DUPLICATE) of a refused command answers the first refusal's code."""
    for e in ack.events:
        kind = e[0]
        if kind == W_REJECTED:
            code, detail = e[3], e[4]
            if code == WarehouseCode.LEDGER_REFUSED:
                match = _LEDGER_DETAIL.match(detail)
                if match is not None:
                    try:
                        return ErrorCode.from_clearing(int(match.group(1))), match.group(2)
                    except ValueError:
                        pass
            return ErrorCode.from_warehouse(code), detail
        if kind == C_REJECTED:
            return ErrorCode.from_clearing(e[3]), e[4]
        if kind == C_DUPLICATE and e[4]:
            return ErrorCode.from_clearing(e[4]), f"a repeat of command {e[3]}, refused then"
    return None


class Views:
    """Read models folded from committed events; publishes the private money and goods channels."""

    def __init__(self, price: Price, private: PrivateStreams) -> None:
        self.price = price
        self.private = private
        self.member_bank: dict[str, str] = {}
        self.balances: dict[str, list[int]] = {}  # member -> [available, frozen margin, frozen escrow]
        self.holds: dict[int, list[Any]] = {}  # open hold id -> [member, account, amount_fen, purpose, ref]
        self.member_holds: dict[str, dict[int, None]] = {}
        self.withdrawals: dict[str, dict[str, Any]] = {}
        self.member_withdrawals: dict[str, list[str]] = {}
        self.deals: dict[int, dict[str, Any]] = {}  # deal id -> clearing's deal (state included)
        self.member_deals: dict[str, dict[int, None]] = {}
        self.deliveries: dict[int, dict[str, Any]] = {}  # deal id -> delivery record
        self.warehouse_deliveries: dict[str, dict[int, None]] = {}
        self.receipts: dict[str, dict[str, Any]] = {}
        self.holder_receipts: dict[str, dict[str, None]] = {}
        self.warehouse_receipts: dict[str, dict[str, None]] = {}
        self.operators: dict[str, str] = {}  # operator id -> warehouse id
        self.bank_pledges: dict[str, dict[str, None]] = {}  # bank -> numbers of receipts pledged to it
        self.receipts_required: set[str] = set()  # instruments whose sell orders must lock receipts
        self.bank_files: dict[str, dict[str, dict[str, Any]]] = {}  # bank -> file id -> status
        self.bank_statements: dict[str, list[dict[str, Any]]] = {}
        self.breaks: dict[int, dict[str, Any]] = {}  # open breaks
        self._splitting: dict[str, tuple[str, dict[str, Any]]] = {}  # part's number -> (parent, parent's push)

    # ------------------------------------------------------------ loading

    def load(self, core: Core) -> None:
        """Copy the recovered core's state (before the writer thread starts)."""
        clearing = core.clearing
        ledger = clearing.ledger
        for member, (bank, _sub) in clearing.members.items():
            self.member_bank[member] = bank
        for member, balance in ledger.balances.items():
            self.balances[member] = list(balance)
        for hold_id, hold in ledger.holds.items():
            self._open_hold(hold_id, hold.member, hold.account, hold.amount_fen, hold.purpose, hold.ref)
        for w in clearing.withdrawals.values():
            self._withdrawal(w.request_id, w.member, w.amount_fen, w.status, w.requested_by, 0)
            self.withdrawals[w.request_id]["approved_by"] = w.approved_by
        for deal in clearing.deals.values():
            self._open_deal(
                deal.deal_id, deal.symbol, deal.price_ticks, deal.quantity_lots, deal.notional_fen, deal.buyer,
                deal.seller, deal.buyer_margin_fen, deal.buyer_fee_fen, deal.seller_margin_fen, deal.seller_fee_fen, 0,
            )  # fmt: skip
            self.deals[deal.deal_id]["state"] = deal.state
            if deal.escrow_fen:
                self.deals[deal.deal_id]["state_amount"] = fen_to_cny(deal.escrow_fen)
        warehouse = core.warehouse
        self.operators.update(warehouse.operators)
        self.receipts_required.update(core.receipts_required)
        for r in warehouse.receipts.values():
            # the core keeps a receipt's first and latest transitions, not its origin's detail
            first, last = r.history[0], r.history[-1]
            loaded = self._add_receipt(r.number, "registered" if first[0] == "registered" else "issued",
                                       r.describe(), r.state, last[2])  # fmt: skip
            loaded["last_transition"] = last[0]
            if r.pledgee:
                loaded["pledgee"] = r.pledgee
                self.bank_pledges.setdefault(r.pledgee, {})[r.number] = None
        for d in warehouse.deliveries.values():
            self._open_delivery(
                d.deal_id, d.instrument, d.warehouse_id, d.buyer, d.seller, d.price_ticks, d.quantity_lots,
                d.contract_weight_kg, d.payment_deadline_ns, d.delivery_deadline_ns, ",".join(d.receipts), 0,
            )  # fmt: skip
            self._delivery_state(
                d.deal_id, d.state, d.actual_weight_kg, d.quality_pass, d.amount_fen, d.refund_fen, d.extra_fen,
                d.detail, 0,
            )  # fmt: skip
        for key in clearing.file_hashes:
            bank, file_id = key.split("|", 1)
            self.bank_files.setdefault(bank, {})[file_id] = {
                "file_id": file_id, "file_kind": "", "status": "applied", "applied": None, "duplicates": None,
                "code": None, "detail": "", "seq": 0,
            }  # fmt: skip
        for break_id, (bank, sub, member, reason, bank_fen, ours) in clearing.breaks.items():
            self.breaks[break_id] = {
                "break_id": break_id, "bank": bank, "sub_account": sub, "member": member, "reason": reason,
                "bank_amount": fen_to_cny(bank_fen), "exchange_amount": fen_to_cny(ours),
            }  # fmt: skip

    # ------------------------------------------------------------- records

    def _open_hold(self, hold_id: int, member: str, account: int, amount: int, purpose: str, ref: str) -> None:
        self.holds[hold_id] = [member, account, amount, purpose, ref]
        self.member_holds.setdefault(member, {})[hold_id] = None

    def _withdrawal(self, request_id: str, member: str, amount: int, status: str, actor: str, seq: int) -> None:
        w = self.withdrawals.get(request_id)
        if w is None:
            w = self.withdrawals[request_id] = {
                "withdrawal_id": request_id, "account": member, "amount": fen_to_cny(amount), "status": status,
                "requested_by": actor, "approved_by": "", "reason": "", "last_seq": seq,
            }  # fmt: skip
            self.member_withdrawals.setdefault(member, []).append(request_id)
        w["status"] = status
        w["last_seq"] = seq

    def _open_deal(
        self, deal_id: int, symbol: str, price_ticks: int, lots: int, notional: int, buyer: str, seller: str,
        buyer_margin: int, buyer_fee: int, seller_margin: int, seller_fee: int, seq: int,
    ) -> dict[str, Any]:  # fmt: skip
        deal = self.deals[deal_id] = {
            "deal_id": deal_id, "instrument": symbol, "price": self.price(symbol, price_ticks),
            "quantity_lots": lots, "notional": fen_to_cny(notional), "buyer": buyer, "seller": seller,
            "margin": (fen_to_cny(buyer_margin), fen_to_cny(seller_margin)),
            "fee": (fen_to_cny(buyer_fee), fen_to_cny(seller_fee)), "state": "open", "state_amount": None,
            "detail": "", "opened_seq": seq, "last_seq": seq,
        }  # fmt: skip
        self.member_deals.setdefault(buyer, {})[deal_id] = None
        self.member_deals.setdefault(seller, {})[deal_id] = None
        return deal

    def _open_delivery(
        self, deal_id: int, symbol: str, warehouse_id: str, buyer: str, seller: str, price_ticks: int, lots: int,
        contract_kg: int, payment_deadline_ns: int, delivery_deadline_ns: int, receipts: str, seq: int,
    ) -> dict[str, Any]:  # fmt: skip
        d = self.deliveries[deal_id] = {
            "deal_id": deal_id, "instrument": symbol, "warehouse_id": warehouse_id, "buyer": buyer, "seller": seller,
            "price": self.price(symbol, price_ticks), "quantity_lots": lots, "contract_weight_kg": contract_kg,
            "payment_deadline_ns": payment_deadline_ns, "delivery_deadline_ns": delivery_deadline_ns,
            "receipts": [n for n in receipts.split(",") if n], "state": "awaiting_payment", "actual_weight_kg": 0,
            "quality_pass": None, "amount": None, "refund": None, "extra": None, "detail": "", "last_seq": seq,
        }  # fmt: skip
        self.warehouse_deliveries.setdefault(warehouse_id, {})[deal_id] = None
        # a delivery is also the trace of its deal for either member
        self.member_deals.setdefault(buyer, {})[deal_id] = None
        self.member_deals.setdefault(seller, {})[deal_id] = None
        return d

    def _delivery_state(
        self, deal_id: int, state: str, actual_kg: int, quality_pass: bool, amount: int, refund: int, extra: int,
        detail: str, seq: int,
    ) -> dict[str, Any]:  # fmt: skip
        d = self.deliveries[deal_id]
        d["state"] = state
        if actual_kg:
            d["actual_weight_kg"] = actual_kg
            d["quality_pass"] = quality_pass
        if amount or refund or extra:
            d["amount"] = fen_to_cny(amount)
            d["refund"] = fen_to_cny(refund)
            d["extra"] = fen_to_cny(extra)
        d["detail"] = detail
        d["last_seq"] = seq
        return d

    def _add_receipt(
        self, number: str, origin: str, described: tuple[Any, ...], state: str, seq: int
    ) -> dict[str, Any]:
        """`described`: the items of a W_RECEIPT event from warehouse_id to location (``Receipt.describe``)."""
        (warehouse_id, holder, commodity, group, grade, weight_kg, pieces, lot_numbers, certificate_no, calorific,
         moisture, sulphur, steel_grade, dimensions, location) = described  # fmt: skip
        r = self.receipts[number] = {
            "number": number, "warehouse_id": warehouse_id, "holder": holder, "commodity": commodity,
            "group": group, "grade": grade, "weight_kg": weight_kg, "pieces": pieces, "lot_numbers": lot_numbers,
            "certificate_no": certificate_no, "calorific_kcal_per_kg": calorific, "moisture_bps": moisture,
            "sulphur_bps": sulphur, "steel_grade": steel_grade, "dimensions": dimensions, "location": location,
            "state": state, "origin": origin, "last_transition": "registered" if state == "registered" else "issued",
            "last_seq": seq, "pledgee": "",
        }  # fmt: skip
        self.holder_receipts.setdefault(holder, {})[number] = None
        self.warehouse_receipts.setdefault(warehouse_id, {})[number] = None
        return r

    # ------------------------------------------------------------ applying

    def apply_batch(self, batch: Sequence[tuple[Any, Ack]]) -> None:
        for command, ack in batch:
            self.apply(command, ack)

    def apply(self, command: Any, ack: Ack) -> None:
        """Fold one committed command's events in; publish each owner's changes once per command."""
        balances = self.balances
        holds = self.holds
        touched: dict[str, list[HoldChange]] | None = None  # member -> hold changes of this command
        wd_changes: dict[str, list[dict[str, Any]]] | None = None
        deal_pushes: list[tuple[str, str, dict[str, Any]]] | None = None
        receipt_pushes: list[tuple[str, dict[str, Any]]] | None = None
        seq = ack.seq
        for e in ack.events:
            kind = e[0]
            if kind < 101:
                continue  # matching's events: the private orders and executions channels
            if kind == C_TRANSFER:
                d_owner, d_account, c_owner, c_account, amount = e[4], e[5], e[6], e[7], e[8]
                if touched is None:
                    touched = {}
                if d_owner:
                    balances[d_owner][d_account] -= amount
                    touched.setdefault(d_owner, [])
                if c_owner:
                    balances[c_owner][c_account] += amount
                    touched.setdefault(c_owner, [])
            elif kind == C_HOLD:
                _, _, hold_id, member, account, amount, purpose, ref = e
                self._open_hold(hold_id, member, account, amount, purpose, ref)
                if touched is None:
                    touched = {}
                touched.setdefault(member, []).append((hold_id, account, purpose, ref, amount, "open"))
            elif kind == C_HOLD_CHANGED:
                hold = holds[e[2]]
                hold[2] = e[3]
                if touched is None:
                    touched = {}
                touched.setdefault(hold[0], []).append((e[2], hold[1], hold[3], hold[4], e[3], "open"))
            elif kind == C_HOLD_CLOSED:
                hold = holds.pop(e[2])
                member_holds = self.member_holds[hold[0]]
                del member_holds[e[2]]
                if touched is None:
                    touched = {}
                touched.setdefault(hold[0], []).append((e[2], hold[1], hold[3], hold[4], 0, HoldState.NAMES[e[3]]))
            elif kind == C_DEAL:
                _, _, deal_id, symbol, price_ticks, lots, notional, buyer, seller, bm, bf, sm, sf = e
                self._open_deal(deal_id, symbol, price_ticks, lots, notional, buyer, seller, bm, bf, sm, sf, seq)
                if deal_pushes is None:
                    deal_pushes = []
                self._deal_push(deal_pushes, "deal_opened", deal_id)
            elif kind == C_DEAL_STATE:
                changed = self.deals.get(e[2])
                if changed is not None:
                    changed["state"] = e[3]
                    changed["state_amount"] = fen_to_cny(e[4])
                    changed["detail"] = e[5]
                    changed["last_seq"] = seq
                    if deal_pushes is None:
                        deal_pushes = []
                    self._deal_push(deal_pushes, "deal_state", e[2])
            elif kind >= 201:
                if receipt_pushes is None:
                    receipt_pushes = []
                if deal_pushes is None:
                    deal_pushes = []
                self._warehouse_event(e, seq, receipt_pushes, deal_pushes)
            elif kind == C_MEMBER:
                self.member_bank[e[2]] = e[3]
                balances.setdefault(e[2], [0, 0, 0])
            elif kind == C_WITHDRAWAL:
                _, _, request_id, member, amount, status, actor, reason = e
                self._withdrawal(request_id, member, amount, status, actor, seq)
                w = self.withdrawals[request_id]
                if status == "approved":
                    w["approved_by"] = actor
                if reason:
                    w["reason"] = reason
                if wd_changes is None:
                    wd_changes = {}
                wd_changes.setdefault(member, []).append(dict(w))
                if touched is None:
                    touched = {}
                touched.setdefault(member, [])
            elif kind == C_FILE:
                _, _, bank, file_id, file_kind, applied, duplicates = e
                self.bank_files.setdefault(bank, {})[file_id] = {
                    "file_id": file_id, "file_kind": file_kind, "status": "applied", "applied": applied,
                    "duplicates": duplicates, "code": None, "detail": "", "seq": seq,
                }  # fmt: skip
            elif kind == C_STATEMENT:
                _, _, bank, statement_id, value_date, lines, breaks = e
                self.bank_statements.setdefault(bank, []).append(
                    {"statement_id": statement_id, "value_date": value_date, "lines": lines, "breaks": breaks,
                     "seq": seq}
                )  # fmt: skip
            elif kind == C_BREAK:
                _, _, break_id, bank, sub, member, reason, bank_fen, ours, is_open = e
                if is_open:
                    self.breaks[break_id] = {
                        "break_id": break_id, "bank": bank, "sub_account": sub, "member": member, "reason": reason,
                        "bank_amount": fen_to_cny(bank_fen), "exchange_amount": fen_to_cny(ours),
                    }  # fmt: skip
                else:
                    self.breaks.pop(break_id, None)
            elif kind == C_REJECTED and type(command) is BankFileImport:
                files = self.bank_files.setdefault(str(command.bank), {})
                if command.file_id not in files or files[command.file_id]["status"] == "refused":
                    files[str(command.file_id)] = {
                        "file_id": command.file_id, "file_kind": command.file_kind, "status": "refused",
                        "applied": 0, "duplicates": 0, "code": ErrorCode.from_clearing(e[3]).value, "detail": e[4],
                        "seq": seq,
                    }  # fmt: skip
        listed = type(command) is ListInstrument and command.instrument.receipts_required
        if listed and any(e[0] == LISTED for e in ack.events):
            self.receipts_required.add(command.instrument.symbol)
        if touched is not None:
            self._publish_balances(touched, wd_changes, ack)
        if receipt_pushes:
            self._publish_receipts(receipt_pushes, ack)
        if deal_pushes:
            self._publish_deals(deal_pushes, ack)
        if self._splitting:
            # a part still to come in a later command: what it changes goes to a copy, never to a
            # push already emitted (the ring may keep that push unencoded until a resume replays it)
            self._splitting = {part: (parent, dict(pushed)) for part, (parent, pushed) in self._splitting.items()}

    def _warehouse_event(
        self, e: tuple[Any, ...], seq: int, receipts: list[tuple[str, dict[str, Any]]],
        deals: list[tuple[str, str, dict[str, Any]]],
    ) -> None:  # fmt: skip
        kind = e[0]
        if kind == W_RECEIPT:
            r = self._add_receipt(e[2], e[3], e[4:19], e[19], seq)
            parent = self._splitting.pop(e[2], None)
            if parent is not None:  # the split's event names the part, not its pieces: they leave the parent here
                parent_number, pushed = parent
                self.receipts[parent_number]["pieces"] -= r["pieces"]
                pushed["pieces"] = self.receipts[parent_number]["pieces"]
            receipts.append((e[3], dict(r)))
        elif kind == W_RECEIPT_STATE:
            _, _, number, transition, state, holder, weight_kg, _actor, ref = e
            r = self.receipts[number]
            if holder != r["holder"]:
                del self.holder_receipts[r["holder"]][number]
                self.holder_receipts.setdefault(holder, {})[number] = None
                r["holder"] = holder
            r["state"] = state
            r["weight_kg"] = weight_kg
            r["last_transition"] = transition
            r["last_seq"] = seq
            if transition == "pledged":
                r["pledgee"] = ref
                self.bank_pledges.setdefault(ref, {})[number] = None
            elif transition == "released":
                self.bank_pledges.get(r["pledgee"], {}).pop(number, None)
                r["pledgee"] = ""
            if transition == "split":
                self._splitting[ref] = (number, snapshot := dict(r))
                receipts.append((transition, snapshot))
                return
            if transition == "allocated" and ref.isdigit():
                d = self.deliveries.get(int(ref))
                if d is not None and number not in d["receipts"]:
                    d["receipts"].append(number)
            receipts.append((transition, dict(r)))
        elif kind == W_DELIVERY:
            _, _, deal_id, symbol, warehouse_id, _order_id, buyer, seller, price_ticks, lots, contract_kg, pay_ns, \
                deliver_ns, numbers = e  # fmt: skip
            self._open_delivery(
                deal_id, symbol, warehouse_id, buyer, seller, price_ticks, lots, contract_kg, pay_ns, deliver_ns,
                numbers, seq,
            )  # fmt: skip
            self._deal_push(deals, "delivery_opened", deal_id)
        elif kind == W_DELIVERY_STATE:
            _, _, deal_id, state, actual_kg, quality_pass, amount, refund, extra, detail = e
            self._delivery_state(deal_id, state, actual_kg, quality_pass, amount, refund, extra, detail, seq)
            self._deal_push(deals, "delivery_state", deal_id)
        elif kind == W_OPERATOR:
            self.operators[e[2]] = e[3]
        elif kind == X_RECEIPT_RULE:
            if e[3]:
                self.receipts_required.add(e[2])
            else:
                self.receipts_required.discard(e[2])

    # ----------------------------------------------------------- publishing

    def balance_info(self, member: str, holds_limit: int) -> dict[str, Any]:
        """A member's balances and (up to `holds_limit`, newest first) open holds."""
        b = self.balances.get(member, [0, 0, 0])
        hold_ids = list(self.member_holds.get(member, ()))
        shown = []
        for hold_id in reversed(hold_ids[-holds_limit:]):
            h = self.holds[hold_id]
            shown.append({"hold_id": hold_id, "account": ACCOUNT_NAMES[h[1]], "purpose": h[3], "ref": h[4],
                          "amount": fen_to_cny(h[2]), "state": "open"})  # fmt: skip
        return {
            "account": member, "bank": self.member_bank.get(member), "available": fen_to_cny(b[0]),
            "frozen_margin": fen_to_cny(b[1]), "frozen_escrow": fen_to_cny(b[2]), "open_holds": len(hold_ids),
            "holds": shown,
        }  # fmt: skip

    def _publish_balances(
        self, touched: dict[str, list[HoldChange]], withdrawals: dict[str, list[dict[str, Any]]] | None, ack: Ack
    ) -> None:
        """One ``balances`` message per member the command touched, built only when a subscriber or a
        replay needs it, from the figures as they are now (integers, tuples and copies: nothing that
        later commands change)."""
        emit_built = self.private.emit_built
        member_holds = self.member_holds
        for member, changes in touched.items():
            b = self.balances.get(member)
            if b is None:
                continue
            emit_built("balances", member, _balances_body, (
                member, ack.seq, ack.ts_ns, b[0], b[1], b[2], len(member_holds.get(member, ())), tuple(changes),
                tuple((withdrawals or {}).get(member, ())),
            ))  # fmt: skip

    def _publish_receipts(self, pushes: list[tuple[str, dict[str, Any]]], ack: Ack) -> None:
        emit = self.private.emit
        for transition, r in pushes:
            for account in (r["holder"], warehouse_stream(r["warehouse_id"])):
                emit("receipts", account, {
                    "type": "receipts", "account": account, "seq": 0, "journal_seq": ack.seq, "ts_ns": ack.ts_ns,
                    "transition": transition, "receipt": r,
                })  # fmt: skip

    def _deal_push(self, pushes: list[tuple[str, str, dict[str, Any]]], event: str, deal_id: int) -> None:
        """Queue the deal as each party sees it at this event (later events of the command may move it on)."""
        record = self.deals.get(deal_id) or self.deliveries[deal_id]
        for member in dict.fromkeys((record["buyer"], record["seller"])):
            pushes.append((member, event, self.deal_info(deal_id, member)))
        delivery = self.deliveries.get(deal_id)
        if delivery is not None:  # the warehouse's operators follow its deliveries, both parties named
            pushes.append((warehouse_stream(delivery["warehouse_id"]), event, self.deal_info(deal_id, None)))

    def _publish_deals(self, pushes: list[tuple[str, str, dict[str, Any]]], ack: Ack) -> None:
        emit = self.private.emit
        for member, event, info in pushes:
            emit("deliveries", member, {
                "type": "deliveries", "account": member, "seq": 0, "journal_seq": ack.seq, "ts_ns": ack.ts_ns,
                "event": event, "deal": info,
            })  # fmt: skip

    # -------------------------------------------------------------- reading

    def deal_info(self, deal_id: int, member: str | None) -> dict[str, Any]:
        """A deal and its delivery as `member` sees it (its own side only; None: staff or an operator,
        who see both parties)."""
        deal = self.deals.get(deal_id)
        d = self.deliveries.get(deal_id)
        base = deal if deal is not None else d
        assert base is not None, deal_id
        buyer, seller = base["buyer"], base["seller"]
        side_index = None if member is None else (0 if buyer == member else 1)
        info: dict[str, Any] = {
            "deal_id": deal_id, "instrument": base["instrument"], "price": base["price"],
            "quantity_lots": base["quantity_lots"], "side": None if side_index is None else _SIDES[side_index],
            "buyer": buyer if member is None else None, "seller": seller if member is None else None,
            "notional": None, "margin": None, "fee": None, "state": None, "state_amount": None, "delivery": None,
        }  # fmt: skip
        if deal is not None:
            info["notional"] = deal["notional"]
            info["state"] = deal["state"]
            info["state_amount"] = deal["state_amount"]
            if side_index is not None:
                info["margin"] = deal["margin"][side_index]
                info["fee"] = deal["fee"][side_index]
        if d is not None:
            info["delivery"] = {k: d[k] for k in (
                "warehouse_id", "contract_weight_kg", "payment_deadline_ns", "delivery_deadline_ns", "receipts",
                "state", "actual_weight_kg", "quality_pass", "amount", "refund", "extra", "detail", "last_seq",
            )}  # fmt: skip
            info["delivery"]["receipts"] = list(d["receipts"])
        return info

    def deal_is_open(self, deal_id: int) -> bool:
        deal = self.deals.get(deal_id)
        d = self.deliveries.get(deal_id)
        if d is not None:
            return d["state"] not in _ENDED_DEALS
        return deal is not None and deal["state"] not in _ENDED_DEALS
