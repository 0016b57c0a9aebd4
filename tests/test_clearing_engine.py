"""The clearing engine with the real matching engine: pre-trade holds,
trades into deals, deal money, bank records, withdrawals, reconciliation,
worked rounding examples with exact fen, and state export round trips."""

from __future__ import annotations

from typing import Any

import pytest

from clearing import (
    AVAILABLE,
    BANK_CUSTODY,
    C_BREAK,
    C_DEAL,
    C_DUPLICATE,
    C_HOLD_CLOSED,
    C_ORDER_REJECTED,
    C_REJECTED,
    C_WITHDRAWAL,
    EXCHANGE,
    FEE_INCOME,
    FROZEN_ESCROW,
    FROZEN_MARGIN,
    RISK_FUND,
    ApproveWithdrawal,
    BankBalance,
    BankDeposit,
    CancelWithdrawal,
    ClearingCode,
    ClearingConfig,
    ClearingEngine,
    CloseDay,
    CloseStatement,
    HoldState,
    RegisterMember,
    RequestWithdrawal,
    ResolveBreak,
    WithdrawalResult,
    fee_fen,
    forfeit_split,
    margin_fen,
)
from matching import (
    BUY,
    CONTINUOUS,
    IOC,
    MARKET,
    SELL,
    AmendOrder,
    CancelOrder,
    Instrument,
    ListInstrument,
    MatchingEngine,
    NewOrder,
    SetTradingState,
)

# Rebar: 10 t lots, tick 1.00 CNY/t, reference 3,800.00 CNY/t; margin 10 %, maker 2 bp, taker 5 bp.
REBAR = Instrument(
    symbol="RB2510",
    commodity="steel",
    product="rebar",
    grade="HRB400E 20mm",
    warehouse_group="east",
    lot_size_t=10,
    tick_fen=100,
    reference_price_ticks=3800,
    price_band_bps=1000,
    min_lots=1,
    max_lots=500,
    margin_rate_bps=1000,
    maker_fee_bps=2,
    taker_fee_bps=5,
)
# Thermal coal with odd numbers so every rounding rule is exercised: 33 t lots, tick 0.07 CNY/t,
# margin 7.77 %, maker 1.3 bp (rounded to 1), taker 3 bp.
COAL = Instrument(
    symbol="TC5500",
    commodity="coal",
    product="thermal coal",
    grade="5500 kcal NAR",
    warehouse_group="north",
    lot_size_t=33,
    tick_fen=7,
    reference_price_ticks=11_111,
    price_band_bps=1000,
    min_lots=1,
    max_lots=100,
    margin_rate_bps=777,
    maker_fee_bps=1,
    taker_fee_bps=3,
)
BANK = "ICBC"


class Combined:
    """The matching and clearing cores glued the way the combined core does it."""

    def __init__(self, config: ClearingConfig | None = None) -> None:
        self.matching = MatchingEngine()
        self.clearing = ClearingEngine(config)
        self.seq = 0
        self.events: list[Any] = []

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def list_instrument(self, inst: Instrument) -> None:
        out: list[Any] = []
        self.matching.apply(ListInstrument(inst), self.next_seq(), out)
        self.matching.apply(SetTradingState(inst.symbol, CONTINUOUS), self.next_seq(), out)
        self.clearing.list_instrument(inst)

    def cmd(self, command: Any) -> list[Any]:
        seq = self.next_seq()
        out: list[Any] = []
        self.clearing.apply(command, seq, 0, out)
        self.events += out
        return out

    def order(self, command: NewOrder) -> list[Any]:
        seq = self.next_seq()
        out: list[Any] = []
        price = command.price_ticks
        if command.order_type == MARKET:
            price = self.matching.books[command.instrument].band_high_ticks
        if self.clearing.freeze_order(
            seq, command.account, command.instrument, command.side, price, command.quantity_lots, seq, out
        ):
            start = len(out)
            self.matching.apply(command, seq, out)
            self.clearing.absorb(out, start, seq)
        self.events += out
        return out

    def cancel(self, account: str, order_id: int) -> list[Any]:
        seq = self.next_seq()
        out: list[Any] = []
        self.matching.apply(CancelOrder(account, order_id), seq, out)
        self.clearing.absorb(out, 0, seq)
        self.events += out
        return out

    def amend(self, account: str, order_id: int, price_ticks: int, quantity_lots: int) -> list[Any]:
        seq = self.next_seq()
        out: list[Any] = []
        if self.clearing.reserve_amend(order_id, account, price_ticks, quantity_lots, seq, out):
            start = len(out)
            self.matching.apply(AmendOrder(account, order_id, price_ticks, quantity_lots), seq, out)
            self.clearing.absorb(out, start, seq)
        self.events += out
        return out

    def deal(self, name: str, *args: Any) -> tuple[int, str]:
        """Call a deal-money method (escrow_payment, settle_deal, ...) as the warehouse flow does."""
        seq = self.next_seq()
        out: list[Any] = []
        result: tuple[int, str] = getattr(self.clearing, name)(*args, seq, out)
        self.events += out
        return result

    def member(self, member: str, deposit_fen: int = 0) -> None:
        self.cmd(RegisterMember(member, BANK, f"SUB-{member}"))
        if deposit_fen:
            self.cmd(BankDeposit(BANK, f"dep-{member}-{self.seq}", member, deposit_fen, "2025-03-03"))

    def bal(self, member: str, account: int = AVAILABLE) -> int:
        return self.clearing.ledger.balance(member, account)

    def check(self) -> None:
        self.clearing.check_invariants()


def deals_of(events: list[Any]) -> list[Any]:
    return [e for e in events if e[0] == C_DEAL]


@pytest.fixture
def ex() -> Combined:
    c = Combined()
    c.list_instrument(REBAR)
    c.list_instrument(COAL)
    c.member("BUYER", 100_000_000)  # 1,000,000.00 CNY
    c.member("SELLER", 100_000_000)
    return c


# ------------------------------------------------------------ rounding worked examples


def test_rounding_rules_worked_examples() -> None:
    # margin rounds up: 1234567 fen x 7.77 % = 95925.8559 -> 95926
    assert margin_fen(1_234_567, 777) == 95_926
    assert margin_fen(1_000_000, 1000) == 100_000  # exact stays exact
    # fee rounds half up: 1234567 x 3 bp = 370.3701 -> 370; 1235000 x 3 bp = 370.5 -> 371; 370.49 -> 370
    assert fee_fen(1_234_567, 3) == 370
    assert fee_fen(1_235_000, 3) == 371
    assert fee_fen(1_234_966, 3) == 370
    # forfeit: risk fund share rounded down, residue to the other side
    assert forfeit_split(95_926, 2000) == (19_185, 76_741)
    assert forfeit_split(1, 2000) == (0, 1)


def test_order_hold_is_per_lot_rounded_up(ex: Combined) -> None:
    # one coal lot at 11,111 ticks: 11111 x 7 x 33 = 2,566,641 fen notional
    # margin per lot ceil(2566641 x 0.0777) = ceil(199428.0057) = 199429; taker fee per lot ceil(769.9923) = 770
    assert ex.clearing.order_hold_fen("TC5500", BUY, 11_111, 1) == 199_429 + 770
    assert ex.clearing.order_hold_fen("TC5500", BUY, 11_111, 3) == 3 * (199_429 + 770)
    assert ex.clearing.order_hold_fen("TC5500", SELL, 11_111, 3) == 3 * 199_429
    # rebar: 3800 x 100 x 10 = 3,800,000 fen per lot; margin 380,000; taker fee 1,900
    assert ex.clearing.order_hold_fen("RB2510", BUY, 3800, 2) == 2 * (380_000 + 1_900)


def test_trade_worked_example_coal(ex: Combined) -> None:
    ex.order(NewOrder("SELLER", "TC5500", "s1", SELL, 11_111, 3))
    sell_hold = 3 * 199_429
    assert ex.bal("SELLER", FROZEN_MARGIN) == sell_hold
    out = ex.order(NewOrder("BUYER", "TC5500", "b1", BUY, 11_200, 3))
    (deal,) = deals_of(out)
    notional = 3 * 11_111 * 7 * 33
    assert notional == 7_699_923
    # buyer margin ceil(7699923 x 0.0777) = ceil(598284.0171) = 598285; taker fee 7699923 x 3bp = 2309.98 -> 2310
    # seller maker fee 7699923 x 1bp = 769.99 -> 770; seller margin 598285
    assert deal[6:13] == (notional, "BUYER", "SELLER", 598_285, 2_310, 598_285, 770)
    assert ex.bal("BUYER", FROZEN_MARGIN) == 598_285
    assert ex.bal("BUYER", FROZEN_ESCROW) == 2_310
    assert ex.bal("BUYER", AVAILABLE) == 100_000_000 - 598_285 - 2_310
    assert ex.bal("SELLER", FROZEN_MARGIN) == 598_285
    assert ex.bal("SELLER", AVAILABLE) == 100_000_000 - 598_285
    ex.check()


def test_buy_price_improvement_released(ex: Combined) -> None:
    ex.order(NewOrder("SELLER", "RB2510", "s1", SELL, 3790, 1))
    ex.order(NewOrder("BUYER", "RB2510", "b1", BUY, 3800, 2))  # 1 lot trades at 3790, 1 rests at 3800
    # resting: 1 lot x (380000 + 1900); deal: margin 379000 + taker fee 3,790,000 x 5bp = 1895
    assert ex.bal("BUYER", FROZEN_MARGIN) == 381_900 + 379_000
    assert ex.bal("BUYER", FROZEN_ESCROW) == 1_895
    assert ex.bal("BUYER") == 100_000_000 - 381_900 - 379_000 - 1_895
    ex.check()
    (resting_id,) = ex.matching.account_orders["BUYER"]
    ex.cancel("BUYER", resting_id)
    assert ex.bal("BUYER", FROZEN_MARGIN) == 379_000
    assert ex.bal("BUYER") == 100_000_000 - 379_000 - 1_895
    ex.check()


def test_cancel_partial_and_full_release(ex: Combined) -> None:
    out = ex.order(NewOrder("BUYER", "RB2510", "b1", BUY, 3700, 5))
    order_id = next(e[2] for e in out if e[0] == 1)
    per_lot = 370_000 + 1_850
    assert ex.bal("BUYER", FROZEN_MARGIN) == 5 * per_lot
    ex.amend("BUYER", order_id, 3700, 3)  # size down to 3 lots: 2 lots released exactly
    assert ex.bal("BUYER", FROZEN_MARGIN) == 3 * per_lot
    ex.check()
    ex.amend("BUYER", order_id, 3750, 3)  # price up: topped up to 3 x (375000 + 1875)
    assert ex.bal("BUYER", FROZEN_MARGIN) == 3 * (375_000 + 1_875)
    ex.check()
    ex.cancel("BUYER", order_id)
    assert ex.bal("BUYER", FROZEN_MARGIN) == 0
    assert ex.bal("BUYER") == 100_000_000
    ex.check()


def test_unaffordable_order_rejected_with_shortfall(ex: Combined) -> None:
    ex.member("POOR", 300_000)  # 3,000.00 CNY; one rebar lot at 3800 needs 381,900 fen
    out = ex.order(NewOrder("POOR", "RB2510", "p1", BUY, 3800, 1))
    (rej,) = [e for e in out if e[0] == C_ORDER_REJECTED]
    assert rej[4] == ClearingCode.INSUFFICIENT_FUNDS
    assert rej[5] == "needs 381900 fen, shortfall 81900 fen"
    assert not [e for e in out if e[0] == 1]  # never reached the book
    assert not ex.matching.account_orders.get("POOR")
    assert ex.bal("POOR") == 300_000
    ex.check()


def test_ioc_remainder_and_matching_reject_release(ex: Combined) -> None:
    ex.order(NewOrder("SELLER", "RB2510", "s1", SELL, 3800, 1))
    ex.order(NewOrder("BUYER", "RB2510", "b1", BUY, 3800, 4, time_in_force=IOC))
    assert ex.bal("BUYER", FROZEN_MARGIN) == 380_000  # only the deal margin stays
    ex.order(NewOrder("BUYER", "RB2510", "b2", BUY, 9999, 1))  # out of band: matching rejects, hold released
    ex.order(NewOrder("BUYER", "RB2510", "b1", BUY, 3700, 1))  # duplicate client order id: released
    assert ex.bal("BUYER", FROZEN_MARGIN) == 380_000
    ex.check()


# ------------------------------------------------------------------- deal money


def make_deal(ex: Combined, lots: int = 2, price: int = 3800) -> int:
    ex.order(NewOrder("SELLER", "RB2510", f"s{ex.seq}", SELL, price, lots))
    out = ex.order(NewOrder("BUYER", "RB2510", f"b{ex.seq}", BUY, price, lots))
    (deal,) = deals_of(out)
    return int(deal[2])


def test_settle_at_actual_weight_refunds_and_pays(ex: Combined) -> None:
    deal_id = make_deal(ex)  # 2 lots x 10 t x 3800.00 = 7,600,000 fen; margin 760,000; fees 3,800 / 1,520
    assert ex.deal("escrow_payment", deal_id) == (0, "")
    assert ex.bal("BUYER", FROZEN_ESCROW) == 6_840_000 + 3_800
    # delivered 19.8 t instead of 20 t: 7,524,000 fen; the buyer gets 76,000 back
    assert ex.deal("settle_deal", deal_id, 7_524_000) == (0, "")
    assert ex.bal("BUYER") == 100_000_000 - 7_524_000 - 3_800
    assert ex.bal("SELLER") == 100_000_000 + 7_524_000 - 1_520
    assert ex.clearing.ledger.balance(EXCHANGE, FEE_INCOME) == 3_800 + 1_520
    for member in ("BUYER", "SELLER"):
        assert ex.bal(member, FROZEN_MARGIN) == 0
        assert ex.bal(member, FROZEN_ESCROW) == 0
    assert ex.deal("settle_deal", deal_id, 7_524_000)[0] == ClearingCode.BAD_DEAL_STATE
    ex.check()


def test_settle_above_price_charges_buyer_or_refuses(ex: Combined) -> None:
    deal_id = make_deal(ex)
    ex.deal("escrow_payment", deal_id)
    # 20.3 t delivered: 7,714,000 fen, 114,000 more than the escrowed price
    before = ex.clearing.export_state()
    code, detail = ex.deal("settle_deal", deal_id, 200_000_000)
    assert code == ClearingCode.INSUFFICIENT_FUNDS
    assert "shortfall" in detail
    assert ex.clearing.export_state() == before  # nothing changed
    assert ex.deal("settle_deal", deal_id, 7_714_000) == (0, "")
    assert ex.bal("BUYER") == 100_000_000 - 7_714_000 - 3_800
    assert ex.bal("SELLER") == 100_000_000 + 7_714_000 - 1_520
    ex.check()


def test_escrow_shortfall_then_buyer_default(ex: Combined) -> None:
    ex.member("THIN", 800_000)
    ex.order(NewOrder("SELLER", "RB2510", "s9", SELL, 3800, 2))
    (deal,) = deals_of(ex.order(NewOrder("THIN", "RB2510", "t1", BUY, 3800, 1)))
    deal_id = deal[2]  # 1 lot: 3,800,000 fen; margin 380,000; taker fee 1,900
    code, detail = ex.deal("escrow_payment", deal_id)
    assert code == ClearingCode.INSUFFICIENT_FUNDS
    assert detail == f"shortfall {3_420_000 - (800_000 - 380_000 - 1_900)} fen"
    seller_before = ex.bal("SELLER")
    assert ex.deal("default_deal", deal_id, BUY) == (0, "")
    # 380,000 forfeited: 20 % = 76,000 to the risk fund, 304,000 to the seller; the buyer's fee hold released
    assert ex.clearing.ledger.balance(EXCHANGE, RISK_FUND) == 76_000
    assert ex.bal("SELLER") == seller_before + 304_000 + 380_000  # forfeit in, own deal margin released
    assert ex.bal("THIN") == 800_000 - 380_000
    ex.check()


def test_seller_default_and_cancel(ex: Combined) -> None:
    first = make_deal(ex, 1)
    second = make_deal(ex, 1)
    ex.deal("escrow_payment", first)
    assert ex.deal("default_deal", first, SELL) == (0, "")
    # seller's 380,000 forfeited: 76,000 fund, 304,000 buyer; buyer's margin, fee hold and escrow released
    assert ex.bal("SELLER", FROZEN_MARGIN) == 380_000  # the second deal's margin only
    assert ex.deal("cancel_deal", second) == (0, "")
    assert ex.bal("BUYER") == 100_000_000 + 304_000
    assert ex.bal("SELLER") == 100_000_000 - 380_000
    assert ex.deal("default_deal", second, BUY)[0] == ClearingCode.BAD_DEAL_STATE
    assert ex.deal("cancel_deal", 999_999)[0] == ClearingCode.UNKNOWN_DEAL
    assert ex.deal("default_deal", first, 7)[0] == ClearingCode.BAD_SIDE
    ex.check()


# ------------------------------------------------------------- bank, withdrawals


def test_deposit_exactly_once(ex: Combined) -> None:
    first = ex.cmd(BankDeposit(BANK, "R-1", "BUYER", 12_345, "2025-03-03"))
    again = ex.cmd(BankDeposit(BANK, "R-1", "BUYER", 12_345, "2025-03-03"))
    assert again == [(C_DUPLICATE, ex.seq, "R-1", ex.seq - 1, 0)]
    assert ex.bal("BUYER") == 100_012_345
    bad = ex.cmd(BankDeposit(BANK, "R-2", "NOBODY", 5, "2025-03-03"))
    assert bad[0][0] == C_REJECTED
    assert bad[0][3] == ClearingCode.UNKNOWN_MEMBER
    again = ex.cmd(BankDeposit(BANK, "R-2", "BUYER", 5, "2025-03-03"))
    assert again[0][0] == C_DUPLICATE
    assert again[0][4] == ClearingCode.UNKNOWN_MEMBER  # answered as the first, not re-applied
    assert ex.cmd(BankDeposit("OTHER", "R-3", "BUYER", 5, "2025-03-03"))[0][3] == ClearingCode.WRONG_BANK
    assert ex.cmd(BankDeposit(BANK, "R-4", "BUYER", 0, "2025-03-03"))[0][3] == ClearingCode.BAD_AMOUNT
    assert ex.cmd(BankDeposit(BANK, "R-5", "BUYER", 5, "2025-02-30"))[0][3] == ClearingCode.BAD_DATE
    assert first[-1][0] != C_REJECTED
    ex.check()


def test_withdrawal_maker_checker_and_bank_result() -> None:
    ex = Combined(ClearingConfig(withdrawal_approval_threshold_fen=1_000_000))
    ex.member("M", 5_000_000)
    out = ex.cmd(RequestWithdrawal("M", "W-1", 2_000_000, "alice"))
    assert [e[5] for e in out if e[0] == C_WITHDRAWAL] == ["pending_approval"]
    assert ex.bal("M") == 3_000_000
    assert ex.cmd(ApproveWithdrawal("W-1", "alice"))[0][3] == ClearingCode.SAME_APPROVER
    assert ex.cmd(WithdrawalResult(BANK, "X-1", "W-1", True))[0][3] == ClearingCode.BAD_REQUEST_STATE
    ex.cmd(ApproveWithdrawal("W-1", "bob"))
    assert [w.request_id for w in ex.clearing.pending_instructions(BANK)] == ["W-1"]
    ex.cmd(WithdrawalResult(BANK, "X-2", "W-1", True))
    assert ex.bal("M") == 3_000_000
    assert ex.bal("M", FROZEN_ESCROW) == 0
    assert ex.clearing.ledger.balance(EXCHANGE, BANK_CUSTODY) == 3_000_000
    assert ex.cmd(WithdrawalResult(BANK, "X-2", "W-1", True))[0][0] == C_DUPLICATE
    # small one: approved at once; the bank rejects it, the hold is released
    out = ex.cmd(RequestWithdrawal("M", "W-2", 500_000, "alice"))
    assert [e[5] for e in out if e[0] == C_WITHDRAWAL] == ["pending_approval", "approved"]
    ex.cmd(WithdrawalResult(BANK, "X-3", "W-2", False, "AC04 closed account"))
    assert ex.bal("M") == 3_000_000
    # a pending one can be cancelled
    ex.cmd(RequestWithdrawal("M", "W-3", 1_500_000, "alice"))
    ex.cmd(CancelWithdrawal("W-3", "alice"))
    assert ex.bal("M") == 3_000_000
    assert ex.cmd(RequestWithdrawal("M", "W-3", 1, "alice"))[0][0] == C_DUPLICATE
    ex.check()


def test_two_withdrawals_for_the_same_money_exactly_one_succeeds() -> None:
    ex = Combined()
    ex.member("M", 1_000_000)
    a = ex.cmd(RequestWithdrawal("M", "W-A", 800_000, "alice"))
    b = ex.cmd(RequestWithdrawal("M", "W-B", 800_000, "alice"))
    results = [any(e[0] == C_REJECTED for e in out) for out in (a, b)]
    assert results == [False, True]
    assert b[0][3] == ClearingCode.INSUFFICIENT_FUNDS
    assert b[0][4] == "shortfall 600000 fen"
    ex.cmd(WithdrawalResult(BANK, "X-A", "W-A", True))
    assert ex.bal("M") == 200_000
    ex.check()


def test_reconciliation_breaks_block_withdrawals(ex: Combined) -> None:
    ex.member("IDLE")
    ex.cmd(CloseDay("2025-03-03"))
    ex.cmd(BankBalance(BANK, "ST-1", "SUB-BUYER", 100_000_000, "2025-03-03"))
    ex.cmd(BankBalance(BANK, "ST-1", "SUB-SELLER", 99_999_999, "2025-03-03"))
    ex.cmd(BankBalance(BANK, "ST-1", "SUB-GHOST", 5, "2025-03-03"))
    out = ex.cmd(CloseStatement(BANK, "ST-1", "2025-03-03", 3))
    breaks = [(e[4], e[6], e[7], e[8]) for e in out if e[0] == C_BREAK]
    assert breaks == [("SUB-GHOST", "unknown_member", 5, 0), ("SUB-SELLER", "amount_differs", 99_999_999, 100_000_000)]
    assert ex.cmd(RequestWithdrawal("SELLER", "W-S", 1, "s"))[0][3] == ClearingCode.OPEN_BREAK
    assert ex.cmd(RequestWithdrawal("BUYER", "W-B", 1, "b"))[0][0] != C_REJECTED
    break_id = next(e[2] for e in out if e[0] == C_BREAK and e[4] == "SUB-SELLER")
    ex.cmd(ResolveBreak(break_id, "staff", "bank corrected"))
    assert ex.cmd(ResolveBreak(break_id, "staff"))[0][3] == ClearingCode.BREAK_RESOLVED
    assert ex.cmd(RequestWithdrawal("SELLER", "W-S2", 1, "s"))[0][0] != C_REJECTED
    # a statement missing a member with money: missing_at_bank
    ex.cmd(BankBalance(BANK, "ST-2", "SUB-BUYER", 100_000_000, "2025-03-03"))
    out = ex.cmd(CloseStatement(BANK, "ST-2", "2025-03-03", 1))
    assert [(e[4], e[6]) for e in out if e[0] == C_BREAK and e[9]] == [("SUB-SELLER", "missing_at_bank")]
    assert ex.cmd(CloseStatement(BANK, "ST-3", "2025-03-04", 0))[0][3] == ClearingCode.UNKNOWN_STATEMENT
    ex.check()


def test_export_state_round_trip(ex: Combined) -> None:
    make_deal(ex)
    ex.order(NewOrder("BUYER", "TC5500", "open1", BUY, 11_000, 3))
    ex.cmd(RequestWithdrawal("SELLER", "W-1", 1_000, "s"))
    ex.cmd(CloseDay("2025-03-03"))
    state = ex.clearing.export_state()
    again = ClearingEngine.from_state(state)
    assert again.export_state() == state
    again.check_invariants()
    # both continue identically
    out1: list[Any] = []
    out2: list[Any] = []
    ex.clearing.apply(BankDeposit(BANK, "Z", "BUYER", 7, "2025-03-04"), 999, 0, out1)
    again.apply(BankDeposit(BANK, "Z", "BUYER", 7, "2025-03-04"), 999, 0, out2)
    assert out1 == out2
    assert ex.clearing.export_state() == again.export_state()


def test_every_hold_closes_once(ex: Combined) -> None:
    deal_id = make_deal(ex, 3)
    ex.deal("escrow_payment", deal_id)
    ex.deal("settle_deal", deal_id, 11_400_000)
    closed = [e[2] for e in ex.events if e[0] == C_HOLD_CLOSED]
    assert len(closed) == len(set(closed))
    assert {e[3] for e in ex.events if e[0] == C_HOLD_CLOSED} <= {HoldState.SETTLED, HoldState.RELEASED}
    assert not ex.clearing.ledger.holds
    ex.check()
