"""Selling against warehouse receipts in the core: receipts are required by
default, a sell order may name the receipts it locks (every refusal changes
nothing), and an amend up locks more receipts or is refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from clearing import BankDeposit, RegisterMember
from exchange import ConfigError, Core, Settings, load_instruments, parse_instruments
from exchange._warehouse_rule import RequireReceipts
from matching import (
    ACCEPTED,
    BUY,
    CONTINUOUS,
    DUPLICATE,
    HALTED,
    REJECTED,
    SELL,
    TRADE,
    AmendOrder,
    ListInstrument,
    NewOrder,
    RejectCode,
    SetTradingState,
    message_for,
)
from warehouse import W_REJECTED, AddOperator, AddWarehouse, ConfirmReceipt, PledgeReceipt, RegisterReceipt
from warehouse._model import ACTIVE, LOCKED

INSTRUMENTS = load_instruments(Settings().instruments_file)
REBAR = next(i for i in INSTRUMENTS if i.symbol == "RB-HRB400E-20")
COIL = next(i for i in INSTRUMENTS if i.symbol == "HC-Q235B-5.75")
COAL = next(i for i in INSTRUMENTS if i.symbol == "TC-5500-NAR")
BANK = "ICBC"
DATE = "2025-03-03"
T0 = 1_750_000_000 * 10**9
PRICE = 3_500


def receipt(operator: str, number: str, holder: str, symbol: str, weight_kg: int) -> RegisterReceipt:
    return RegisterReceipt(
        operator, number, holder, symbol, weight_kg, weight_kg // 1_000, f"HEAT-{number}", f"CERT-{number}",
        0, 0, 0, "HRB400E" if symbol == REBAR.symbol else "Q235B", "as graded", "bay 1",
    )  # fmt: skip


class Exchange:
    """A core with rebar and coil open, three funded members and two steel warehouses.

    SELLER holds, oldest first: R1 60 t (W1), R2 50 t (W1), R3 40 t (W2), R5 20 t
    (W1, registered, not confirmed), R6 30 t of coil (W1), R7 10 t (W1, pledged),
    R8 100 t of coal in the coal port W3 (not designated for steel); OTHER holds
    R4 30 t (W1)."""

    def __init__(self, seller_fen: int = 10**12) -> None:
        self.core = Core()
        self.seq = 0
        commands: list[Any] = [
            ListInstrument(REBAR),
            ListInstrument(COIL),
            ListInstrument(COAL),
            SetTradingState(REBAR.symbol, CONTINUOUS),
            SetTradingState(COIL.symbol, CONTINUOUS),
        ]
        for member, amount in (("SELLER", seller_fen), ("OTHER", 10**12), ("BUYER", 10**12)):
            commands += [
                RegisterMember(member, BANK, f"SUB-{member}"),
                BankDeposit(BANK, f"D-{member}", member, amount, DATE),
            ]
        commands += [
            AddWarehouse("W1", "East Steel Yard", ("EAST-STEEL",), "staff1"),
            AddWarehouse("W2", "River Port", ("EAST-STEEL",), "staff1"),
            AddOperator("op1", "W1", "staff1"),
            AddOperator("op2", "W2", "staff1"),
            AddWarehouse("W3", "North Coal Port", (COAL.warehouse_group,), "staff1"),
            AddOperator("op3", "W3", "staff1"),
        ]
        for operator, number, holder, symbol, weight_kg in (
            ("op1", "R1", "SELLER", REBAR.symbol, 60_000),
            ("op1", "R2", "SELLER", REBAR.symbol, 50_000),
            ("op2", "R3", "SELLER", REBAR.symbol, 40_000),
            ("op1", "R4", "OTHER", REBAR.symbol, 30_000),
            ("op1", "R6", "SELLER", COIL.symbol, 30_000),
            ("op1", "R7", "SELLER", REBAR.symbol, 10_000),
        ):
            commands += [receipt(operator, number, holder, symbol, weight_kg), ConfirmReceipt(number, holder)]
        coal = RegisterReceipt(
            "op3", "R8", "SELLER", COAL.symbol, 100_000, 0, "L8", "C8", 5_500, 1_000, 60, "", "", "pile 2"
        )
        commands += [coal, ConfirmReceipt("R8", "SELLER")]
        commands += [receipt("op1", "R5", "SELLER", REBAR.symbol, 20_000), PledgeReceipt("R7", "SELLER", BANK)]
        for command in commands:
            out = self.run(command)
            assert not [e for e in out if e[0] in (REJECTED, W_REJECTED)], (command, out)

    def run(self, command: Any) -> list[Any]:
        self.seq += 1
        out: list[Any] = []
        self.core.apply(command, self.seq, T0 + self.seq, out)
        self.core.check_invariants()
        return out

    def sell(self, lots: int, receipts: tuple[str, ...] = (), member: str = "SELLER", symbol: str = "") -> list[Any]:
        return self.run(NewOrder(member, symbol or REBAR.symbol, f"s{self.seq}", SELL, PRICE, lots, receipts=receipts))

    def state(self, number: str) -> str:
        return self.core.warehouse.receipts[number].state


def state_but_client_ids(core: Core) -> dict[str, Any]:
    """The core's state without matching's memory of client order ids: a refused order changes
    nothing else (its id is remembered so that a repeat gets the first answer)."""
    state = core.export_state()
    del state["matching"]["client_ids"]
    return state


def rejected(out: list[Any]) -> tuple[int, str]:
    found = [e for e in out if e[0] == REJECTED]
    assert len(found) == 1, out
    assert ACCEPTED not in [e[0] for e in out]
    return found[0][4], found[0][5]


# ------------------------------------------------------------ required by default


def test_every_listed_instrument_requires_receipts_unless_it_says_otherwise() -> None:
    assert all(i.receipts_required for i in INSTRUMENTS), "the packaged instruments require receipts"
    core = Core()
    out: list[Any] = []
    relaxed = dataclasses.replace(COIL, receipts_required=False)
    for seq, command in enumerate(
        [
            ListInstrument(REBAR),
            ListInstrument(relaxed),
            SetTradingState(REBAR.symbol, CONTINUOUS),
            SetTradingState(COIL.symbol, CONTINUOUS),
            RegisterMember("M1", BANK, "S1"),
            BankDeposit(BANK, "D1", "M1", 10**12, DATE),
        ],
        1,
    ):
        core.apply(command, seq, T0, out)
    assert core.receipts_required == {REBAR.symbol}
    before = core.export_state()
    out.clear()
    core.apply(NewOrder("M1", REBAR.symbol, "s1", SELL, PRICE, 1), 7, T0, out)
    assert rejected(out)[0] == RejectCode.INSUFFICIENT_RECEIPTS
    after = core.export_state()
    assert core.matching.client_ids == {"M1": {"s1": 7 << 8 | RejectCode.INSUFFICIENT_RECEIPTS}}
    after["matching"]["client_ids"] = before["matching"]["client_ids"]
    assert after == before, "a refused sell order changes nothing but the memory of its client order id"
    assert core.clearing.ledger.available("M1") == 10**12
    out.clear()
    core.apply(NewOrder("M1", REBAR.symbol, "s1", SELL, PRICE, 1), 8, T0, out)
    assert [e[0] for e in out] == [DUPLICATE], "a repeat is answered with the first answer"
    assert out[0][4:] == (7, RejectCode.INSUFFICIENT_RECEIPTS)
    out.clear()
    core.apply(NewOrder("M1", COIL.symbol, "s2", SELL, 3_800, 1), 9, T0, out)
    assert ACCEPTED in [e[0] for e in out], "an instrument listed without the rule sells without receipts"
    assert not core.warehouse.locks
    core.check_invariants()


def test_the_instruments_file_may_turn_the_rule_off_and_checks_its_type() -> None:
    entry = {
        "symbol": "X1", "commodity": "steel", "product": "rebar", "grade": "g", "warehouse_group": "W",
        "lot_size_t": 10, "tick_fen": 100, "reference_price_ticks": 3500, "price_band_bps": 700,
        "min_lots": 1, "max_lots": 10,
    }  # fmt: skip
    assert parse_instruments({"instrument": [entry]})[0].receipts_required is True
    assert parse_instruments({"instrument": [{**entry, "receipts_required": False}]})[0].receipts_required is False
    with pytest.raises(ConfigError, match="receipts_required` must be true or false"):
        parse_instruments({"instrument": [{**entry, "receipts_required": "no"}]})


# ------------------------------------------------------------------ named receipts


@pytest.mark.parametrize(
    ("lots", "names", "code", "detail"),
    [
        (1, ("NOPE",), RejectCode.UNKNOWN_RECEIPT, "NOPE"),
        (1, ("R4",), RejectCode.UNKNOWN_RECEIPT, "R4"),  # OTHER's: answered as unknown
        (1, ("R5",), RejectCode.RECEIPT_NOT_ACTIVE, "R5: registered"),
        (1, ("R7",), RejectCode.RECEIPT_NOT_ACTIVE, "R7: pledged"),
        (1, ("R6",), RejectCode.RECEIPT_NOT_DELIVERABLE, "R6"),  # coil named on a rebar order
        (1, ("R8",), RejectCode.RECEIPT_NOT_DELIVERABLE, "R8"),  # in a warehouse not designated for rebar
        (1, ("R1", "R3"), RejectCode.RECEIPTS_IN_TWO_WAREHOUSES, "R3"),
        (1, ("R1", "R2", "R1"), RejectCode.RECEIPT_REPEATED, ""),
        (1, tuple(f"N{n}" for n in range(101)), RejectCode.TOO_MANY_RECEIPTS, "100"),
        (6, ("R2",), RejectCode.INSUFFICIENT_RECEIPTS, "need 60000 kg, named 50000 kg"),
        (12, ("R1", "R2"), RejectCode.INSUFFICIENT_RECEIPTS, "need 120000 kg, named 110000 kg"),
    ],
)
def test_a_named_receipt_that_cannot_be_locked_refuses_the_order_and_changes_nothing(
    lots: int, names: tuple[str, ...], code: int, detail: str
) -> None:
    ex = Exchange()
    before = state_but_client_ids(ex.core)
    out = ex.sell(lots, names)
    assert rejected(out) == (code, detail)
    assert message_for(code, detail)  # every code has a message that says how to fix the order
    assert state_but_client_ids(ex.core) == before
    assert not ex.core.warehouse.locks
    assert not ex.core.matching.orders


def test_named_receipts_are_refused_even_where_the_rule_is_off_and_on_a_buy() -> None:
    ex = Exchange()
    ex.run(RequireReceipts(REBAR.symbol, False, "staff1"))
    before = state_but_client_ids(ex.core)
    assert rejected(ex.sell(1, ("NOPE",)))[0] == RejectCode.UNKNOWN_RECEIPT
    out = ex.run(NewOrder("BUYER", REBAR.symbol, "b1", BUY, PRICE, 1, receipts=("R1",)))
    assert rejected(out)[0] == RejectCode.RECEIPTS_ON_BUY
    assert state_but_client_ids(ex.core) == before


def test_named_receipts_are_locked_in_the_order_given_not_oldest_first() -> None:
    ex = Exchange()
    out = ex.sell(5, ("R2",))
    assert ACCEPTED in [e[0] for e in out]
    order_id = ex.seq
    assert ex.core.warehouse.locks[order_id].receipts == ["R2"]
    assert (ex.state("R1"), ex.state("R2")) == (ACTIVE, LOCKED)  # R1 is older, but R2 was named
    # R3 alone is in W2: an order may sell there by naming it
    out = ex.sell(4, ("R3",))
    assert ex.core.warehouse.locks[ex.seq].warehouse_id == "W2"
    # the names are used in order as far as the quantity needs them: 6 lots take R1 only
    out = ex.sell(6, ("R1", "R2"))
    assert rejected(out)[0] == RejectCode.RECEIPT_NOT_ACTIVE  # R2 is locked to the first order
    out = ex.sell(6, ("R1",))
    assert ex.core.warehouse.locks[ex.seq].receipts == ["R1"]
    # a buyer lifts the first order: its deal takes R2's goods
    out = ex.run(NewOrder("BUYER", REBAR.symbol, "b1", BUY, PRICE, 5))
    trades = [e for e in out if e[0] == TRADE]
    assert [t[9] for t in trades] == [order_id]
    delivery = ex.core.warehouse.deliveries[trades[0][2]]
    assert delivery.receipts == ["R2"]
    assert not ex.core.warehouse.conservation_problems()


# ------------------------------------------------------------------------ amend up


def test_amend_up_uses_the_locked_receipt_first_then_locks_more_oldest_first() -> None:
    ex = Exchange()
    ex.sell(5)  # oldest first: R1 (60 t) is locked whole for 50 t
    order_id = ex.seq
    lock = ex.core.warehouse.locks[order_id]
    assert lock.receipts == ["R1"]
    ex.run(AmendOrder("SELLER", order_id, PRICE, 6))  # within what R1 holds: nothing more to lock
    assert (lock.receipts, lock.open_weight_kg) == (["R1"], 60_000)
    out = ex.run(AmendOrder("SELLER", order_id, PRICE, 9))  # 30 t more: R2, the next oldest in W1
    assert REJECTED not in [e[0] for e in out]
    assert (lock.receipts, lock.open_weight_kg) == (["R1", "R2"], 90_000)
    assert ex.core.matching.orders[order_id].open_lots == 9
    assert ex.state("R3") == ACTIVE  # W2's receipt is never mixed into a W1 lock
    # beyond the seller's receipts in W1 (R5 unconfirmed, R6 coil, R7 pledged): refused, nothing changed
    before = ex.core.state_hash()
    out = ex.run(AmendOrder("SELLER", order_id, PRICE, 12))
    code, detail = rejected(out)
    assert code == RejectCode.INSUFFICIENT_RECEIPTS
    assert detail == "need 10000 kg more in W1, the seller has 0 kg active there"
    assert ex.core.state_hash() == before
    # down again: the newest receipt it no longer needs goes back
    ex.run(AmendOrder("SELLER", order_id, PRICE, 4))
    assert (lock.receipts, ex.state("R2")) == (["R1"], ACTIVE)
    # up again, then traded in full: both receipts go to the deal
    ex.run(AmendOrder("SELLER", order_id, PRICE, 11))
    assert lock.receipts == ["R1", "R2"]
    out = ex.run(NewOrder("BUYER", REBAR.symbol, "b1", BUY, PRICE, 11))
    deal_id = next(e for e in out if e[0] == TRADE)[2]
    assert ex.core.warehouse.deliveries[deal_id].contract_weight_kg == 110_000
    assert order_id not in ex.core.warehouse.locks
    assert not ex.core.warehouse.conservation_problems()


def test_amend_up_refused_by_matching_or_clearing_leaves_the_receipts_as_they_were() -> None:
    ex = Exchange()
    ex.sell(5)
    order_id = ex.seq
    ex.run(SetTradingState(REBAR.symbol, HALTED))
    out = ex.run(AmendOrder("SELLER", order_id, PRICE, 9))
    assert rejected(out)[0] == RejectCode.MARKET_HALTED
    assert ex.core.warehouse.locks[order_id].receipts == ["R1"]
    assert ex.state("R2") == ACTIVE
    # a seller whose money covers the first order only: clearing refuses the bigger hold
    # the margin of 5 lots is 10 % of 5 x 10 t x 3 500 CNY/t = 1 750 000 fen; of 9 lots 3 150 000 fen
    poor = Exchange(seller_fen=2_000_000)
    poor.sell(5)
    order_id = poor.seq
    assert poor.core.warehouse.locks[order_id].receipts == ["R1"]
    out = poor.run(AmendOrder("SELLER", order_id, PRICE, 9))
    assert rejected(out)[0] == RejectCode.INSUFFICIENT_FUNDS
    assert poor.core.warehouse.locks[order_id].receipts == ["R1"]
    assert poor.state("R2") == ACTIVE
    assert poor.core.matching.orders[order_id].open_lots == 5


# ----------------------------------------------------------------- the gateway


def test_a_sell_order_names_its_receipts_over_the_gateway(tmp_path: Any) -> None:
    import asyncio

    from api._client import Client, RequestError
    from api._harness import running_exchange

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'gw.db'}") as ex:
            client = Client(ex.url, *ex.trader_key("S1"))  # the harness stocks S1: S1-<symbol>-<n>
            await client.connect()
            named = f"S1-{REBAR.symbol}-7"
            answer = await client.place_order(REBAR.symbol, "sell", "3500.00", 3, receipts=[named])
            lock = ex.sequencer.core.warehouse.locks[answer["order_id"]]
            assert lock.receipts == [named]  # not S1-...-0, the oldest
            before = state_but_client_ids(ex.sequencer.core)
            for receipts, code in (
                (["NOPE"], "UNKNOWN_RECEIPT"),
                ([named], "RECEIPT_NOT_ACTIVE"),
                ([f"S1-{COIL.symbol}-0"], "RECEIPT_NOT_DELIVERABLE"),
                ([f"S1-{REBAR.symbol}-1", f"S1-{REBAR.symbol}-1"], "RECEIPT_REPEATED"),
                ([f"S1-{REBAR.symbol}-1"], "INSUFFICIENT_RECEIPTS"),  # 10 lots named for 11
                (["has space"], "INVALID_FIELD"),
                ([f"R{n}" for n in range(101)], "INVALID_FIELD"),
            ):
                lots = 11 if code == "INSUFFICIENT_RECEIPTS" else 1
                with pytest.raises(RequestError) as info:
                    await client.place_order(REBAR.symbol, "sell", "3500.00", lots, receipts=receipts)
                assert info.value.code == code, (receipts, info.value)
            with pytest.raises(RequestError) as info:
                await client.place_order(REBAR.symbol, "buy", "3500.00", 1, receipts=[named])
            assert info.value.code == "RECEIPTS_ON_BUY"
            # the refused orders changed nothing but the memory of their client order ids (journaled,
            # they were answered with a rejection only)
            assert state_but_client_ids(ex.sequencer.core) == before
            assert lock.receipts == [named]
            await client.close()

    asyncio.run(main())


def test_serve_demo_gives_the_demo_members_receipts_once(tmp_path: Any) -> None:
    from api._demo_setup import DEMO_ACCOUNTS, DEMO_WAREHOUSE, prepare_demo
    from exchange import Sequencer
    from exchange._simulation import SIMULATION_RECEIPTS_PER_INSTRUMENT

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}")
    prepare_demo(settings)
    with Sequencer(settings.database_url) as seq:
        receipts = dict(seq.core.warehouse.receipts)
        first_seq = seq.last_seq
    stocked = [r for r in receipts.values() if r.warehouse_id != DEMO_WAREHOUSE]  # beside the operator's demo goods
    assert len(stocked) == len(DEMO_ACCOUNTS) * len(INSTRUMENTS) * SIMULATION_RECEIPTS_PER_INSTRUMENT
    assert {r.state for r in receipts.values()} == {ACTIVE}
    assert {r.holder for r in receipts.values()} == set(DEMO_ACCOUNTS)
    prepare_demo(settings)  # again: no warehouse, operator or receipt is sent twice
    with Sequencer(settings.database_url) as seq:
        assert set(seq.core.warehouse.receipts) == set(receipts)
        assert seq.last_seq - first_seq == 2 * len(DEMO_ACCOUNTS)  # the repeated registrations and deposits
