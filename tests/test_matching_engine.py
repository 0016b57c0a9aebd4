"""The matching engine's rules one by one: validation, limits at their edges,
self-trade prevention, sessions, duplicates, determinism and state transfer."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import (
    ACCEPTED,
    AMENDED,
    AUCTION,
    BOOK,
    BREAK,
    BUY,
    CANCELLED,
    CLOSED,
    CONTINUOUS,
    DAY,
    DUPLICATE,
    FOK,
    GTC,
    HALTED,
    IOC,
    LIMIT,
    MARKET,
    REJECTED,
    SELL,
    STATE,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_DECREMENT,
    STP_NONE,
    TRADE,
    AmendOrder,
    CancelOrder,
    CancelReason,
    Instrument,
    Limits,
    ListInstrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
    RejectCode,
    Rejected,
    SetTradingState,
)

RB = Instrument("RB", "steel", "rebar", "HRB400E 20mm", "east", 10, 100, 3500, 700, 1, 500)
BAND_LOW, BAND_HIGH = 3500 - 245, 3500 + 245


class Venue:
    """An engine with RB (or another instrument of that symbol) listed and open, and a sequence counter."""

    def __init__(self, limits: Limits | None = None, state: int = CONTINUOUS, instrument: Instrument = RB) -> None:
        assert instrument.symbol == "RB", instrument.symbol
        self.engine = MatchingEngine(limits)
        self.seq = 0
        self.do(ListInstrument(instrument))
        self.do(SetTradingState("RB", state))

    def do(self, command: Any) -> list[Any]:
        self.seq += 1
        out: list[Any] = []
        self.engine.apply(command, self.seq, out)
        return out

    def order(self, account: str, clid: str, side: int, price: int, qty: int, **kw: Any) -> list[Any]:
        return self.do(NewOrder(account, "RB", clid, side, price, qty, **kw))


def kinds(out: list[Any]) -> list[int]:
    return [e[0] for e in out]


def reject_code(out: list[Any]) -> int:
    assert out[-1][0] == REJECTED, out
    return int(out[-1][4])


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (NewOrder("A", "XX", "c", BUY, 3500, 1), RejectCode.UNKNOWN_INSTRUMENT),
        (NewOrder("A", "RB", "c", 2, 3500, 1), RejectCode.BAD_SIDE),
        (NewOrder("A", "RB", "c", BUY, 3500, 1, 9), RejectCode.BAD_TIME_IN_FORCE),
        (NewOrder("A", "RB", "c", BUY, 3500, 1, GTC, 7), RejectCode.BAD_ORDER_TYPE),
        (NewOrder("A", "RB", "c", BUY, 3500, 1, GTC, LIMIT, False, 9), RejectCode.BAD_STP_MODE),
        (NewOrder("A", "RB", "", BUY, 3500, 1), RejectCode.BAD_CLIENT_ORDER_ID),
        (NewOrder("A", "RB", "x" * 37, BUY, 3500, 1), RejectCode.BAD_CLIENT_ORDER_ID),
        (NewOrder("A", "RB", "c", BUY, 3500, 0), RejectCode.QUANTITY_BELOW_MIN),
        (NewOrder("A", "RB", "c", BUY, 3500, 501), RejectCode.QUANTITY_ABOVE_MAX),
        (NewOrder("A", "RB", "c", BUY, BAND_LOW - 1, 1), RejectCode.PRICE_OUT_OF_BAND),
        (NewOrder("A", "RB", "c", BUY, BAND_HIGH + 1, 1), RejectCode.PRICE_OUT_OF_BAND),
        (NewOrder("A", "RB", "c", BUY, 0, 1), RejectCode.PRICE_NOT_POSITIVE),
        (NewOrder("A", "RB", "c", BUY, 3500, 1, GTC, MARKET), RejectCode.MARKET_ORDER_NEEDS_IOC_FOK),
        (NewOrder("A", "RB", "c", BUY, 3500, 1, IOC, LIMIT, True), RejectCode.POST_ONLY_NEEDS_LIMIT),
    ],
)
def test_bad_orders_are_rejected_with_their_code_and_change_nothing(command: NewOrder, code: int) -> None:
    venue = Venue()
    before = venue.engine.export_state()
    out = venue.do(command)
    assert kinds(out) == [REJECTED]
    assert reject_code(out) == code
    after = venue.engine.export_state()
    after["client_ids"] = before["client_ids"]  # a rejected order's client id is remembered, nothing else
    assert after == before


def test_band_edges_are_accepted() -> None:
    venue = Venue()
    assert kinds(venue.order("A", "lo", BUY, BAND_LOW, 1))[0] == ACCEPTED
    assert kinds(venue.order("A", "hi", SELL, BAND_HIGH, 500))[0] == ACCEPTED


def test_price_conversion_refuses_off_tick_and_sub_fen() -> None:
    coal = Instrument("TC", "coal", "thermal", "5500", "north", 50, 20, 40000, 700, 1, 100)  # tick 0.20 CNY/t
    assert coal.price_to_ticks("800.40") == 4002
    assert coal.ticks_to_price(4002) == "800.40"
    for bad, code in (
        ("800.30", RejectCode.PRICE_OFF_TICK),
        ("800.401", RejectCode.PRICE_OFF_TICK),
        ("abc", RejectCode.PRICE_OFF_TICK),
        ("-5", RejectCode.PRICE_NOT_POSITIVE),
        ("NaN", RejectCode.PRICE_OFF_TICK),
    ):
        with pytest.raises(Rejected) as caught:
            coal.price_to_ticks(bad)
        assert caught.value.code == code, bad


def test_trades_print_at_the_resting_price_in_time_priority() -> None:
    venue = Venue()
    venue.order("S1", "a", SELL, 3510, 3)
    venue.order("S2", "b", SELL, 3505, 2)
    venue.order("S3", "c", SELL, 3505, 2)
    out = venue.order("B", "d", BUY, 3520, 6)
    trades = [(e[4], e[5], e[9]) for e in out if e[0] == TRADE]
    assert trades == [(3505, 2, 4), (3505, 2, 5), (3510, 2, 3)]
    assert venue.engine.depth("RB", SELL) == [(3510, 1)]


def test_ioc_fok_market_and_post_only() -> None:
    venue = Venue()
    venue.order("S", "a", SELL, 3500, 5)
    out = venue.order("B", "ioc", BUY, 3500, 8, time_in_force=IOC)
    assert [e[7] for e in out if e[0] == CANCELLED] == [3]
    assert [e[9] for e in out if e[0] == CANCELLED] == [CancelReason.IOC_REMAINDER]
    venue.order("S", "b", SELL, 3501, 5)
    assert reject_code(venue.order("B", "fok", BUY, 3501, 6, time_in_force=FOK)) == RejectCode.FOK_NOT_FILLABLE
    assert venue.engine.depth("RB", SELL) == [(3501, 5)], "a refused FOK leaves the book alone"
    assert reject_code(venue.order("B", "po", BUY, 3501, 1, post_only=True)) == RejectCode.POST_ONLY_WOULD_CROSS
    assert kinds(venue.order("B", "po2", BUY, 3500, 1, post_only=True))[0] == ACCEPTED
    out = venue.order("B", "mkt", BUY, 0, 5, time_in_force=IOC, order_type=MARKET)
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == [(3501, 5)]
    out = venue.order("B", "mkt2", BUY, 0, 5, time_in_force=FOK, order_type=MARKET)
    assert reject_code(out) == RejectCode.FOK_NOT_FILLABLE


def test_market_order_stops_at_the_band_edge() -> None:
    venue = Venue()
    venue.order("S", "a", SELL, BAND_HIGH, 2)
    out = venue.order("B", "m", BUY, 0, 5, time_in_force=IOC, order_type=MARKET)
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == [(BAND_HIGH, 2)]


@pytest.mark.parametrize(
    ("mode", "trades", "resting_sells", "cancelled"),
    [
        (STP_NONE, [(3500, 2), (3501, 3)], [(3501, 1)], []),
        (STP_CANCEL_NEWEST, [(3500, 2)], [(3501, 4)], [("taker", 3)]),
        (STP_CANCEL_OLDEST, [(3500, 2), (3502, 3)], [], [("own", 4)]),
        (STP_CANCEL_BOTH, [(3500, 2)], [], [("own", 4), ("taker", 3)]),
        (STP_DECREMENT, [(3500, 2)], [(3501, 1)], [("own", 3), ("taker", 3)]),
    ],
)
def test_self_trade_prevention_modes(
    mode: int, trades: list[tuple[int, int]], resting_sells: list[tuple[int, int]], cancelled: list[tuple[str, int]]
) -> None:
    venue = Venue()
    venue.order("X", "s1", SELL, 3500, 2)  # seq 3
    venue.order("A", "s2", SELL, 3501, 4)  # seq 4: A's own order
    venue.order("Y", "s3", SELL, 3502, 3)  # seq 5
    out = venue.order("A", "b", BUY, 3501 if mode != STP_CANCEL_OLDEST else 3502, 5, stp_mode=mode)
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == trades
    sells = venue.engine.depth("RB", SELL)
    assert [s for s in sells if s[0] <= 3501] == resting_sells
    names = {4: "own", 6: "taker"}
    assert [(names[e[2]], e[7]) for e in out if e[0] == CANCELLED] == cancelled
    venue.engine.check_invariants()


def test_amend_priority_rules() -> None:
    venue = Venue()
    venue.order("A", "a", SELL, 3500, 5)  # 3
    venue.order("B", "b", SELL, 3500, 5)  # 4
    out = venue.do(AmendOrder("A", 3, 3500, 4))
    assert [e[8] for e in out if e[0] == AMENDED] == [True], "size down keeps priority"
    assert [o.order_id for o in venue.engine.orders_at("RB", SELL, 3500)] == [3, 4]
    out = venue.do(AmendOrder("A", 3, 3500, 6))
    assert [e[8] for e in out if e[0] == AMENDED] == [False], "size up loses priority"
    assert [o.order_id for o in venue.engine.orders_at("RB", SELL, 3500)] == [4, 3]
    venue.order("C", "c", BUY, 3490, 3)  # 7
    out = venue.do(AmendOrder("C", 7, 3500, 3))
    assert [(e[4], e[5], e[9]) for e in out if e[0] == TRADE] == [(3500, 3, 4)], "an amend that crosses trades"
    out = venue.do(AmendOrder("B", 4, 3500, 1))
    assert kinds(out)[:2] == [AMENDED, CANCELLED], "a size at or below filled ends the order"
    assert 4 not in venue.engine.orders
    assert reject_code(venue.do(AmendOrder("B", 3, 3500, 1))) == RejectCode.UNKNOWN_ORDER, "not B's order"
    venue.engine.check_invariants()


def test_cancel_of_another_accounts_order_looks_unknown() -> None:
    venue = Venue()
    venue.order("A", "a", SELL, 3500, 5)
    out = venue.do(CancelOrder("B", 3))
    assert reject_code(out) == RejectCode.UNKNOWN_ORDER
    assert out[-1][2] == "B"
    assert kinds(venue.do(CancelOrder("A", 3))) == [CANCELLED, BOOK]


def test_mass_cancel_by_account_and_instrument() -> None:
    venue = Venue()
    venue.do(ListInstrument(Instrument("HC", "steel", "hot-rolled coil", "Q235B", "east", 10, 100, 3800, 700, 1, 500)))
    venue.do(SetTradingState("HC", CONTINUOUS))
    venue.order("A", "a", SELL, 3500, 5)
    venue.do(NewOrder("A", "HC", "b", BUY, 3790, 5))
    venue.order("B", "c", SELL, 3501, 5)
    out = venue.do(MassCancel("A", "RB"))
    assert [e[2] for e in out if e[0] == CANCELLED] == [5]
    out = venue.do(MassCancel("A"))
    assert [e[2] for e in out if e[0] == CANCELLED] == [6]
    assert sorted(venue.engine.orders) == [7]


def test_duplicate_client_order_id_is_answered_not_applied() -> None:
    venue = Venue()
    first = venue.order("A", "same", SELL, 3500, 5)
    again = venue.order("A", "same", SELL, 3400, 9)
    assert kinds(first)[0] == ACCEPTED
    assert again == [(DUPLICATE, 4, "A", "same", 3, 0)]
    bad = venue.order("A", "bad", SELL, 1, 5)
    assert venue.order("A", "bad", SELL, 3500, 5) == [(DUPLICATE, 6, "A", "bad", 5, reject_code(bad))]
    assert kinds(venue.order("B", "same", SELL, 3500, 5))[0] == ACCEPTED, "ids are per account"


def test_limits_at_their_edges() -> None:
    venue = Venue(Limits(max_open_orders_per_account=2, max_levels_per_side=2, max_fills_per_order=2))
    venue.order("A", "1", SELL, 3500, 1)
    venue.order("A", "2", SELL, 3501, 1)
    assert reject_code(venue.order("A", "3", SELL, 3502, 1)) == RejectCode.TOO_MANY_ORDERS
    out = venue.order("B", "4", SELL, 3502, 1)
    assert [e[9] for e in out if e[0] == CANCELLED] == [CancelReason.LEVEL_LIMIT]
    venue.order("B", "5", SELL, 3501, 1)
    out = venue.order("C", "6", BUY, 3501, 3)
    assert len([e for e in out if e[0] == TRADE]) == 2
    assert [e[9] for e in out if e[0] == CANCELLED] == [CancelReason.FILL_LIMIT]


def test_sessions_halt_close_and_day_orders() -> None:
    venue = Venue()
    venue.order("A", "g", SELL, 3500, 5, time_in_force=GTC)
    venue.order("A", "d", SELL, 3501, 5, time_in_force=DAY)
    venue.order("B", "t", BUY, 3500, 2)  # trades: last price 3500
    venue.order("B", "t2", BUY, 3500, 1, time_in_force=IOC)  # trades: last price 3500
    assert kinds(venue.do(SetTradingState("RB", HALTED)))[-1] == STATE
    assert reject_code(venue.order("B", "h", BUY, 3500, 1)) == RejectCode.MARKET_HALTED
    assert reject_code(venue.do(AmendOrder("A", 3, 3500, 1))) == RejectCode.MARKET_HALTED
    assert kinds(venue.do(CancelOrder("A", 3)))[0] == CANCELLED, "cancel works during a halt"
    out = venue.do(SetTradingState("RB", CLOSED))
    assert [(e[2], e[9]) for e in out if e[0] == CANCELLED] == [(4, CancelReason.EXPIRED)]
    assert out[-1] == (STATE, venue.seq, "RB", CLOSED, 3500)
    assert venue.engine.client_ids == {}, "client ids are forgotten when every instrument is closed"
    assert reject_code(venue.order("B", "c", BUY, 3500, 1)) == RejectCode.MARKET_CLOSED
    assert reject_code(venue.do(SetTradingState("RB", HALTED))) == RejectCode.BAD_STATE


def _random_commands(seed: int, n: int) -> list[Any]:
    rng = random.Random(seed)
    commands: list[Any] = []
    for i in range(n):
        r = rng.random()
        account = f"A{rng.randint(1, 5)}"
        if r < 0.6:
            commands.append(
                NewOrder(
                    account,
                    "RB",
                    f"c{i}",
                    rng.randint(0, 1),
                    3500 + rng.randint(-10, 10),
                    rng.randint(1, 20),
                    rng.choice((GTC, GTC, DAY, IOC, FOK)),
                    LIMIT,
                    rng.random() < 0.1,
                    rng.randint(0, 4),
                )
            )
        elif r < 0.8:
            commands.append(CancelOrder(account, rng.randint(1, i + 2)))
        else:
            commands.append(AmendOrder(account, rng.randint(1, i + 2), 3500 + rng.randint(-10, 10), rng.randint(1, 25)))
    return commands


def _run(commands: list[Any]) -> tuple[MatchingEngine, list[Any]]:
    venue = Venue()
    events: list[Any] = []
    for command in commands:
        events += venue.do(command)
    return venue.engine, events


def test_same_commands_give_byte_identical_events() -> None:
    commands = _random_commands(7, 3000)
    _, first = _run(commands)
    _, second = _run(commands)
    assert repr(first).encode() == repr(second).encode()
    assert any(e[0] == TRADE for e in first)


def test_state_transfer_round_trip_continues_identically() -> None:
    commands = _random_commands(11, 2000)
    engine, _ = _run(commands[:1000])
    restored = MatchingEngine.from_state(engine.export_state())
    assert restored.export_state() == engine.export_state()
    restored.check_invariants()
    out_a: list[Any] = []
    out_b: list[Any] = []
    for seq, command in enumerate(commands[1000:], start=5000):
        engine.apply(command, seq, out_a)
        restored.apply(command, seq, out_b)
    assert out_a == out_b
    assert restored.export_state() == engine.export_state()


def test_auction_state_is_transferred() -> None:
    venue = Venue(state=AUCTION)
    venue.order("A", "a", BUY, 3501, 5)
    venue.order("B", "b", SELL, 3499, 3)
    restored = MatchingEngine.from_state(venue.engine.export_state())
    assert restored.export_state() == venue.engine.export_state()


def test_midday_break_keeps_day_orders_and_accepts_cancels() -> None:
    venue = Venue()
    venue.order("A", "d", SELL, 3501, 5, time_in_force=DAY)
    venue.order("A", "g", SELL, 3502, 5)
    out = venue.do(SetTradingState("RB", BREAK))
    assert not [e for e in out if e[0] == CANCELLED], "a break expires nothing"
    assert reject_code(venue.order("B", "x", BUY, 3501, 1)) == RejectCode.MARKET_CLOSED
    assert reject_code(venue.do(AmendOrder("A", 3, 3500, 5))) == RejectCode.MARKET_CLOSED
    assert kinds(venue.do(CancelOrder("A", 4)))[0] == CANCELLED
    venue.do(SetTradingState("RB", CONTINUOUS))
    out = venue.order("B", "y", BUY, 3501, 5)
    assert [(e[4], e[5]) for e in out if e[0] == TRADE] == [(3501, 5)], "the DAY order trades after the break"


@pytest.mark.parametrize("how", ["fills", "cancels"])
def test_a_deep_level_taken_oldest_first_is_rebuilt_and_keeps_time_order(how: str) -> None:
    """A dict keeps the slots of deleted entries, and finding the oldest order walks past them.
    A deep level taken one order at a time from the front is rebuilt before the dead slots in
    front of its first order outnumber 64 + sqrt(32 n) (64 more once fewer than 64 are left):
    each fill or cancel then costs about the same however many went before it (nothing here is
    timed; the walk is bounded). Time priority holds throughout."""
    depth, left = 3_000, 10
    venue = Venue(Limits(max_open_orders_per_account=depth + 1))
    ids = []
    for i in range(depth):
        out = venue.order("M", f"m{i}", SELL, 3500, 1, stp_mode=STP_NONE)
        ids.append(out[0][2])
    levels = venue.engine.books["RB"].levels[SELL]
    level, dead, rebuilds = levels[3500], 0, 0
    for i, order_id in enumerate(ids[: depth - left]):
        if how == "fills":
            out = venue.order("T", f"t{i}", BUY, 3500, 1, time_in_force=IOC, stp_mode=STP_NONE)
            trade = next(e for e in out if e[0] == TRADE)
            assert trade[9] == order_id, "the oldest order fills first"
        else:
            assert kinds(venue.do(CancelOrder("M", order_id)))[0] == CANCELLED
        dead += 1
        if levels[3500] is not level:  # rebuilt: no dead slot left
            level, dead, rebuilds = levels[3500], 0, rebuilds + 1
        assert len(level) == depth - i - 1
        # counted while the level holds 64 or more: up to 64 more below that
        assert dead <= 64 + 64 + math.isqrt(32 * (len(level) + dead)), (i, dead)
    assert rebuilds >= 10
    assert list(level) == ids[depth - left :]
    assert venue.engine.books["RB"].level_lots[SELL][3500] == left
    venue.engine.check_invariants()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=150, max_size=400),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 10_000), st.integers(1, 8)), min_size=200, max_size=500),
)
def test_a_deep_level_keeps_time_order_and_lots_through_fills_cancels_and_rebuilds(
    sizes: list[int], steps: list[tuple[bool, int, int]]
) -> None:
    """Against a plain list of (order id, open lots) in arrival order: takers fill from the
    front, cancels take any order, new orders join the back; the level's orders, their open
    lots and its total stay equal to the list's after every step, rebuilt or not (the sizes
    take well over 64 + sqrt(32 n) orders off the level, so it is rebuilt along the way)."""
    venue = Venue(Limits(max_open_orders_per_account=10_000))
    model: list[list[int]] = []  # [order id, open lots], oldest first
    for i, size in enumerate(sizes):
        out = venue.order("M", f"m{i}", SELL, 3500, size, stp_mode=STP_NONE)
        model.append([out[0][2], size])
    book = venue.engine.books["RB"]
    for n, (take, pick, lots) in enumerate(steps):
        if take and model:
            out = venue.order("T", f"t{n}", BUY, 3500, lots, time_in_force=IOC, stp_mode=STP_NONE)
            left = lots
            while left and model:
                used = min(left, model[0][1])
                model[0][1] -= used
                left -= used
                if not model[0][1]:
                    model.pop(0)
            assert sum(e[5] for e in out if e[0] == TRADE) == lots - left
        elif model and pick % 3:
            order_id = model.pop(pick % len(model))[0]
            assert kinds(venue.do(CancelOrder("M", order_id)))[0] == CANCELLED
        else:
            out = venue.order("M", f"n{n}", SELL, 3500, lots, stp_mode=STP_NONE)
            model.append([out[0][2], lots])
        level = book.levels[SELL].get(3500, {})
        assert [[order_id, order.open_lots] for order_id, order in level.items()] == model
        assert book.level_lots[SELL].get(3500, 0) == sum(lots for _, lots in model)
    venue.engine.check_invariants()
