"""Hypothesis drives the matching and clearing cores together over deposits,
orders, amends, cancels, trades into deals, escrow, settlements, defaults,
deal cancels and withdrawals (request, approve, cancel, bank confirm or
reject). After every step: the sum over all accounts equals bank custody,
nothing is negative, frozen money is covered by open holds, every hold
closes at most once (checked from the events alone), and custody equals the
model's deposits less confirmed withdrawals."""

from __future__ import annotations

from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from clearing import (
    BANK_CUSTODY,
    C_DEAL,
    C_DEAL_STATE,
    C_HOLD,
    C_HOLD_CLOSED,
    C_REJECTED,
    C_WITHDRAWAL,
    EXCHANGE,
    ApproveWithdrawal,
    BankDeposit,
    CancelWithdrawal,
    ClearingConfig,
    RegisterMember,
    RequestWithdrawal,
    WithdrawalResult,
)
from matching import BUY, DAY, GTC, IOC, SELL, NewOrder
from tests.test_clearing_engine import BANK, COAL, REBAR, Combined

MEMBERS = ("A", "B", "C")
INSTRUMENTS = (REBAR, COAL)


class ClearingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ex = Combined(ClearingConfig(withdrawal_approval_threshold_fen=5_000_000, risk_fund_share_bps=3_333))
        for inst in INSTRUMENTS:
            self.ex.list_instrument(inst)
        for m in MEMBERS:
            self.ex.cmd(RegisterMember(m, BANK, f"SUB-{m}"))
            self.ex.cmd(BankDeposit(BANK, f"open-{m}", m, 30_000_000, "2025-03-03"))
        self.deposited = 30_000_000 * len(MEMBERS)
        self.withdrawn = 0
        self.record = 0
        self.opened: set[int] = set()
        self.closed: set[int] = set()
        self.seen_events = 0
        self.requests: list[str] = []

    def _next_id(self, prefix: str) -> str:
        self.record += 1
        return f"{prefix}{self.record}"

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(1, 20_000_000))
    def deposit(self, member: str, amount: int) -> None:
        out = self.ex.cmd(BankDeposit(BANK, self._next_id("D"), member, amount, "2025-03-03"))
        if not any(e[0] == C_REJECTED for e in out):
            self.deposited += amount

    @rule(
        member=st.sampled_from(MEMBERS),
        inst=st.sampled_from(INSTRUMENTS),
        side=st.sampled_from((BUY, SELL)),
        offset=st.integers(-2, 2),
        lots=st.integers(1, 6),
        tif=st.sampled_from((GTC, DAY, IOC)),
    )
    def order(self, member: str, inst: Any, side: int, offset: int, lots: int, tif: int) -> None:
        price = inst.reference_price_ticks + offset
        self.ex.order(NewOrder(member, inst.symbol, self._next_id("o"), side, price, lots, time_in_force=tif))

    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        orders = sorted(self.ex.matching.orders.items())
        if orders:
            order_id, order = orders[pick % len(orders)]
            self.ex.cancel(order.account, order_id)

    @rule(pick=st.integers(0, 1000), offset=st.integers(-6, 6), lots=st.integers(0, 8))
    def amend(self, pick: int, offset: int, lots: int) -> None:
        orders = sorted(self.ex.matching.orders.items())
        if orders:
            order_id, order = orders[pick % len(orders)]
            self.ex.amend(order.account, order_id, order.price_ticks + offset, lots)

    def _deal(self, pick: int) -> int:
        deals = sorted(self.ex.clearing.deals)
        return deals[pick % len(deals)] if deals else -1

    @rule(pick=st.integers(0, 1000))
    def escrow(self, pick: int) -> None:
        deal_id = self._deal(pick)
        if deal_id >= 0:
            self.ex.deal("escrow_payment", deal_id)

    @rule(pick=st.integers(0, 1000), adjust_bps=st.integers(-300, 300))
    def settle(self, pick: int, adjust_bps: int) -> None:
        deal_id = self._deal(pick)
        if deal_id >= 0:
            notional = self.ex.clearing.deals[deal_id].notional_fen
            self.ex.deal("settle_deal", deal_id, max(1, notional + notional * adjust_bps // 10_000))

    @rule(pick=st.integers(0, 1000), adjust_bps=st.integers(-300, 300))
    def pay_and_settle(self, pick: int, adjust_bps: int) -> None:
        deal_id = self._deal(pick)
        if deal_id >= 0:
            self.ex.deal("escrow_payment", deal_id)
            self.settle(pick, adjust_bps)

    @rule(pick=st.integers(0, 1000), side=st.sampled_from((BUY, SELL)))
    def default(self, pick: int, side: int) -> None:
        deal_id = self._deal(pick)
        if deal_id >= 0:
            self.ex.deal("default_deal", deal_id, side)

    @rule(pick=st.integers(0, 1000))
    def cancel_deal(self, pick: int) -> None:
        deal_id = self._deal(pick)
        if deal_id >= 0:
            self.ex.deal("cancel_deal", deal_id)

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(1, 12_000_000))
    def request_withdrawal(self, member: str, amount: int) -> None:
        request_id = self._next_id("W")
        self.ex.cmd(RequestWithdrawal(member, request_id, amount, f"staff-{member}"))
        self.requests.append(request_id)

    @rule(pick=st.integers(0, 1000), same=st.booleans())
    def approve(self, pick: int, same: bool) -> None:
        if self.requests:
            request_id = self.requests[pick % len(self.requests)]
            w = self.ex.clearing.withdrawals.get(request_id)
            approver = w.requested_by if (w is not None and same) else "checker"
            self.ex.cmd(ApproveWithdrawal(request_id, approver))

    @rule(pick=st.integers(0, 1000))
    def cancel_withdrawal(self, pick: int) -> None:
        if self.requests:
            self.ex.cmd(CancelWithdrawal(self.requests[pick % len(self.requests)], "staff"))

    @rule(pick=st.integers(0, 1000), ok=st.booleans(), repeat=st.booleans())
    def bank_result(self, pick: int, ok: bool, repeat: bool) -> None:
        if not self.requests:
            return
        request_id = self.requests[pick % len(self.requests)]
        record_id = self._next_id("R")
        for _ in range(2 if repeat else 1):
            out = self.ex.cmd(WithdrawalResult(BANK, record_id, request_id, ok, "" if ok else "AC04"))
            paid = [e for e in out if e[0] == C_WITHDRAWAL and e[5] == "paid"]
            self.withdrawn += sum(e[4] for e in paid)

    @invariant()
    def clearing_invariants(self) -> None:
        self.ex.check()
        ledger = self.ex.clearing.ledger
        assert ledger.balance(EXCHANGE, BANK_CUSTODY) == self.deposited - self.withdrawn
        events = self.ex.events
        for e in events[self.seen_events :]:
            if e[0] == C_HOLD:
                assert e[2] not in self.opened
                self.opened.add(e[2])
            elif e[0] == C_HOLD_CLOSED:
                assert e[2] in self.opened, e
                assert e[2] not in self.closed, f"hold {e[2]} closed twice"
                self.closed.add(e[2])
            elif e[0] == C_DEAL_STATE:
                event(f"deal {e[3]}")
            elif e[0] == C_DEAL:
                assert e[6] == e[4] * e[5] * (100 * 10 if e[3] == "RB2510" else 7 * 33)
        self.seen_events = len(events)
        assert self.opened - self.closed == set(ledger.holds)


ClearingMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestClearingMachine = ClearingMachine.TestCase
