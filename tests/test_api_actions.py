"""The rest of the core's capabilities over the gateway, real server and real sockets: receipts
split, merged, pledged to a bank and released, frozen by staff, voided by their operator, load-out
withdrawn; a member's own withdrawal cancelled; a settlement retried by staff after clearing
refused it; defaults declared and swept; the receipt rule changed and a new instrument listed; a
bank's read-only view of its members' orders and fills. Every actor touches only what is theirs,
and the read models equal the core."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from api._client import Client
from api._harness import running_exchange
from clearing import BankBalance, CloseDay, CloseStatement
from exchange import SIMULATION_FUNDING_FEN, Sequencer
from tests.test_api_operations import RB, assert_views_match_core, check_private, close_all, refused, run, setup, steel

pytestmark = pytest.mark.timeout(120)

FAST = "RB-FAST-20"
LISTING: dict[str, Any] = {
    "symbol": FAST, "commodity": "steel", "product": "rebar", "grade": "HRB400E 20 mm, same-day deadlines",
    "warehouse_group": "EAST-STEEL", "lot_size_t": 10, "tick": "1.00", "reference_price": "3500.00",
    "price_band_bps": 500, "min_lots": 1, "max_lots": 100, "payment_days": 0, "delivery_days": 0,
    "sessions": [{"at": "09:00", "state": "auction"}, {"at": "09:30", "state": "continuous"}],
}  # fmt: skip


async def goods(op: Client, holder: Client, number: str, weight_kg: int, instrument: str = RB) -> dict[str, Any]:
    """Register a steel receipt at the operator's warehouse and have its holder confirm it."""
    await op.request("register_receipt", **{**steel(number, holder.session["subject"], weight_kg),
                                            "instrument": instrument})  # fmt: skip
    receipt: dict[str, Any] = (await holder.request("confirm_receipt", number=number))["receipt"]
    return receipt


async def deal(seller: Client, buyer: Client, instrument: str = RB, lots: int = 10) -> int:
    await seller.place_order(instrument, "sell", "3500.00", lots)
    bought = await buyer.place_order(instrument, "buy", "3500.00", lots, time_in_force="ioc")
    return int(bought["fills"][0]["trade_id"])


def test_split_merge_pledge_freeze_void_and_load_out_withdrawal(database_url: str) -> None:
    async def main() -> None:
        async with running_exchange(database_url) as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            c = await setup(ex)
            seller, other, op1, op2, bank, staff = c["SELLER"], c["OTHER"], c["op1"], c["op2"], c["bank"], c["staff"]
            other_bank = Client(ex.url, *ex.bank_key("OTHERBANK"))
            await other_bank.connect()
            for client in (seller, other):
                await client.subscribe_private("receipts")
            await op1.subscribe_private("receipts")
            await goods(op1, seller, "R1", 120_000)
            await goods(op1, seller, "R2", 40_000)
            # the operator voids a registration the holder has not confirmed; only its own warehouse's
            await op1.request("register_receipt", **steel("R3", "SELLER", 10_000))
            await refused(op2.request("void_receipt", number="R3"), "NOT_YOUR_WAREHOUSE")
            assert (await op1.request("void_receipt", number="R3"))["receipt"]["state"] == "void"
            await refused(seller.request("confirm_receipt", number="R3"), "BAD_RECEIPT_STATE")
            await refused(op1.request("void_receipt", number="R1"), "BAD_RECEIPT_STATE")
            # split: only the holder, within the receipt's weight and pieces
            await refused(other.request("split_receipt", number="R1", weight_kg=20_000, pieces=10), "NOT_YOUR_RECEIPT")
            await refused(seller.request("split_receipt", number="R1", weight_kg=120_000, pieces=10), "BAD_WEIGHT")
            await refused(seller.request("split_receipt", number="R1", weight_kg=20_000, pieces=60), "BAD_PIECES")
            split = await seller.request("split_receipt", number="R1", weight_kg=20_000, pieces=10)
            part = split["receipt"]
            assert (part["weight_kg"], part["pieces"], part["state"], part["origin"], part["holder"]) == (
                20_000, 10, "active", "split:R1", "SELLER",
            )  # fmt: skip
            assert part["number"].startswith("W1#")
            assert [(s["number"], s["weight_kg"], s["pieces"]) for s in split["sources"]] == [("R1", 100_000, 50)]
            # merge: only the holder's active receipts, two or more
            await refused(other.request("merge_receipts", numbers=[part["number"], "R2"]), "NOT_YOUR_RECEIPT")
            await refused(seller.request("merge_receipts", numbers=["R2", "R2"]), "REPEATED_RECEIPT")
            await refused(seller.request("merge_receipts", numbers=["R2", "R3"]), "BAD_RECEIPT_STATE")
            merged = await seller.request("merge_receipts", numbers=[part["number"], "R2"])
            m = merged["receipt"]
            assert (m["weight_kg"], m["pieces"], m["state"], m["origin"]) == (60_000, 30, "active", "merged")
            assert [s["state"] for s in merged["sources"]] == ["merged", "merged"]
            number = m["number"]
            # pledge to a bank: only the holder, only to a partner bank; the pledged receipt is not for sale
            seq_before = sequencer.last_seq
            await refused(seller.request("pledge_receipt", number=number, bank="NOBANK"), "UNKNOWN_BANK")
            assert sequencer.last_seq == seq_before  # answered by the gateway, nothing sequenced
            await refused(other.request("pledge_receipt", number=number, bank="SIMBANK"), "NOT_YOUR_RECEIPT")
            pledged = await seller.request("pledge_receipt", number=number, bank="SIMBANK")
            assert (pledged["receipt"]["state"], pledged["receipt"]["pledgee"]) == ("pledged", "SIMBANK")
            await refused(seller.place_order(RB, "sell", "3500.00", 6, receipts=[number]), "RECEIPT_NOT_ACTIVE")
            await refused(seller.request("split_receipt", number=number, weight_kg=10_000, pieces=5),
                          "BAD_RECEIPT_STATE")  # fmt: skip
            await refused(seller.request("request_load_out", number=number), "BAD_RECEIPT_STATE")
            assert [r["number"] for r in await bank.receipts()] == [number]
            assert await other_bank.receipts() == []
            # only the bank it is pledged to releases it; a frozen pledge waits for staff
            hash_before = sequencer.state_hash()
            await refused(other_bank.request("release_pledge", number=number), "NOT_PLEDGEE")
            await refused(other_bank.request("release_pledge", number="R2"), "NOT_PLEDGEE")
            await refused(seller.request("release_pledge", number=number), "FORBIDDEN")
            assert sequencer.state_hash() == hash_before
            frozen = await staff.request("freeze_receipt", number=number, reason="ownership disputed")
            assert frozen["receipt"]["state"] == "frozen"
            await refused(bank.request("release_pledge", number=number), "BAD_RECEIPT_STATE")
            await refused(staff.request("freeze_receipt", number=number, reason="again"), "BAD_RECEIPT_STATE")
            unfrozen = await staff.request("unfreeze_receipt", number=number, reason="settled out of court")
            assert (unfrozen["receipt"]["state"], unfrozen["receipt"]["pledgee"]) == ("pledged", "SIMBANK")
            released = await bank.request("release_pledge", number=number)
            assert (released["receipt"]["state"], released["receipt"]["pledgee"]) == ("active", "")
            assert await bank.receipts() == []
            await refused(bank.request("release_pledge", number=number), "NOT_PLEDGEE")
            # load-out asked and withdrawn by the holder only
            await seller.request("request_load_out", number="R1")
            await refused(other.request("withdraw_load_out", number="R1"), "NOT_YOUR_RECEIPT")
            back = await seller.request("withdraw_load_out", number="R1")
            assert (back["receipt"]["state"], back["receipt"]["last_transition"]) == ("active", "load_out_withdrawn")
            await refused(seller.request("withdraw_load_out", number="R1"), "BAD_RECEIPT_STATE")
            # the private channels carried every step to the holder and the warehouse, nobody else
            await asyncio.sleep(0.05)
            for client in (seller, op1):
                check_private(client)
            steps = [msg["transition"] for msg in seller.private_messages["receipts"]]
            for step in ("split", "split:R1", "merged", "pledged", "frozen", "unfrozen", "released",
                         "load_out_requested", "load_out_withdrawn"):  # fmt: skip
                assert step in steps, (step, steps)
            assert "voided" in [msg["transition"] for msg in op1.private_messages["receipts"]]
            assert other.private_messages["receipts"] == []
            after_split = [msg for msg in seller.private_messages["receipts"] if msg["transition"] == "split"]
            assert (after_split[0]["receipt"]["weight_kg"], after_split[0]["receipt"]["pieces"]) == (100_000, 50)
            assert_views_match_core(ex)
            await other_bank.close()
            await close_all(c)

    run(main)


def test_cancel_withdrawal_and_a_retried_settlement(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            c = await setup(ex)
            seller, buyer, other, op1, staff = c["SELLER"], c["BUYER"], c["OTHER"], c["op1"], c["staff"]
            full = (await buyer.balances())[0]
            await buyer.request("request_withdrawal", withdrawal_id="w-big", amount="2000000.00")
            seq_before = sequencer.last_seq
            await refused(other.request("cancel_withdrawal", withdrawal_id="w-big"), "UNKNOWN_REQUEST")
            await refused(other.request("cancel_withdrawal", withdrawal_id="w-none"), "UNKNOWN_REQUEST")
            assert sequencer.last_seq == seq_before  # another member's id is refused before the sequencer
            cancelled = await buyer.request("cancel_withdrawal", withdrawal_id="w-big")
            assert (cancelled["withdrawal"]["status"], cancelled["withdrawal"]["account"]) == ("cancelled", "BUYER")
            assert (await buyer.balances())[0] == full
            await refused(buyer.request("cancel_withdrawal", withdrawal_id="w-big"), "BAD_REQUEST_STATE")
            await other.request("request_withdrawal", withdrawal_id="w-other", amount="3000000.00")
            by_staff = await staff.request("cancel_withdrawal", withdrawal_id="w-other")
            assert by_staff["withdrawal"]["status"] == "cancelled"
            await refused(staff.request("cancel_withdrawal", withdrawal_id="w-none"), "UNKNOWN_REQUEST")
            # an over-weight delivery the buyer cannot pay for waits; staff retry it once the money is there
            await goods(op1, seller, "R1", 120_000)
            deal_id = await deal(seller, buyer)
            await buyer.request("pay_deal", deal_id=deal_id)
            available = (await buyer.balances())[0]["available"]
            await buyer.request("request_withdrawal", withdrawal_id="w-all", amount=available)
            confirmed = await op1.request(
                "confirm_delivery", deal_id=deal_id, actual_weight_kg=102_000, quality_pass=True, pieces=50
            )
            assert confirmed["settlement"] is not None
            assert confirmed["settlement"].startswith("INSUFFICIENT_FUNDS")
            assert confirmed["deal"]["delivery"]["state"] == "delivery_confirmed"
            hash_before = sequencer.state_hash()
            await refused(staff.request("settle_delivery", deal_id=deal_id), "INSUFFICIENT_FUNDS")
            assert sequencer.state_hash() == hash_before
            await refused(buyer.request("settle_delivery", deal_id=deal_id), "FORBIDDEN")
            await buyer.request("cancel_withdrawal", withdrawal_id="w-all")
            settled = await staff.request("settle_delivery", deal_id=deal_id)
            delivery = settled["deal"]["delivery"]
            # 102 000 kg x 3 500 CNY/t = 357 000.00 CNY: 7 000.00 beyond the contract
            assert (delivery["state"], delivery["amount"], delivery["extra"]) == ("settled", "357000.00", "7000.00")
            await refused(staff.request("settle_delivery", deal_id=deal_id), "BAD_DEAL_STATE")
            await refused(staff.request("settle_delivery", deal_id=424_242), "UNKNOWN_DEAL")
            assert_views_match_core(ex)
            await close_all(c)

    run(main)


def test_listing_the_receipt_rule_defaults_and_the_deadline_sweep(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            c = await setup(ex)
            seller, buyer, other, op1, staff = c["SELLER"], c["BUYER"], c["OTHER"], c["op1"], c["staff"]
            seq_before = sequencer.last_seq
            await refused(staff.request("list_instrument", **{**LISTING, "reference_price": "3500.50"}),
                          "PRICE_OFF_TICK")  # fmt: skip
            inverted = {**LISTING, "min_lots": 5, "max_lots": 2}
            await refused(staff.request("list_instrument", **inverted), "INVALID_FIELD")
            await refused(staff.request("list_instrument", **{**LISTING, "symbol": RB}), "INSTRUMENT_EXISTS")
            await refused(staff.request("require_receipts", instrument="GOLD-999", required=False),
                          "UNKNOWN_INSTRUMENT")  # fmt: skip
            assert sequencer.last_seq == seq_before
            hash_before = sequencer.state_hash()
            backwards = [{"at": "10:00", "state": "continuous"}, {"at": "09:00", "state": "auction"}]
            await refused(staff.request("list_instrument", **{**LISTING, "sessions": backwards}), "BAD_INSTRUMENT")
            assert sequencer.state_hash() == hash_before
            # a new instrument, with deadlines on the trade day: listed closed, under the receipt rule
            listed = await staff.request("list_instrument", **LISTING)
            info = listed["instrument"]
            assert (info["symbol"], info["state"], info["receipts_required"], info["tick"]) == (
                FAST, "closed", True, "1.00"
            )  # fmt: skip
            assert (info["band_low"], info["band_high"]) == ("3325.00", "3675.00")
            instruments = {i["symbol"]: i for i in (await other.request("instruments"))["instruments"]}
            assert instruments[FAST] == info
            assert instruments[RB]["receipts_required"] is True
            await staff.request("set_trading_state", instrument=FAST, state="continuous")
            await buyer.subscribe_book(FAST)
            await refused(other.place_order(FAST, "sell", "3500.00", 1), "INSUFFICIENT_RECEIPTS")
            # the receipt rule off: a member without receipts sells (clearing alone settles its deals)
            rule = await staff.request("require_receipts", instrument=FAST, required=False)
            assert rule["receipts_required"] is False
            order = await other.place_order(FAST, "sell", "3500.00", 1)
            assert order["status"] == "open"
            await other.cancel_order(order["order_id"])
            instruments = {i["symbol"]: i for i in (await other.request("instruments"))["instruments"]}
            assert instruments[FAST]["receipts_required"] is False
            await staff.request("require_receipts", instrument=FAST, required=True)
            await refused(other.place_order(FAST, "sell", "3500.00", 1), "INSUFFICIENT_RECEIPTS")
            # defaults: not before a deadline passed; a declared one ends the deal once
            await goods(op1, seller, "R-RB", 100_000)
            await goods(op1, seller, "R-F1", 100_000, FAST)
            await goods(op1, seller, "R-F2", 100_000, FAST)
            not_due = await deal(seller, buyer)
            await refused(staff.request("declare_default", deal_id=not_due), "DEADLINE_NOT_PASSED")
            first = await deal(seller, buyer, FAST)
            second = await deal(seller, buyer, FAST)
            await refused(buyer.request("declare_default", deal_id=first), "FORBIDDEN")
            defaulted = await staff.request("declare_default", deal_id=first)
            assert (defaulted["deal"]["state"], defaulted["deal"]["delivery"]["state"]) == ("defaulted", "defaulted")
            assert defaulted["deal"]["delivery"]["detail"] == "buyer"
            await refused(staff.request("declare_default", deal_id=first), "BAD_DEAL_STATE")
            await refused(staff.request("declare_default", deal_id=424_242), "UNKNOWN_DEAL")
            # the sweep takes every overdue deal, and only those
            swept = await staff.request("sweep_deadlines")
            assert [(d["deal_id"], d["state"]) for d in swept["defaulted"]] == [(second, "defaulted")]
            assert swept["refused"] == []
            assert (await staff.request("sweep_deadlines"))["defaulted"] == []
            open_deals = await buyer.deals()
            assert [d["deal_id"] for d in open_deals] == [not_due]
            # the seller's receipts came back; the buyer's margin went to the seller
            assert {r["number"] for r in await seller.receipts() if r["state"] == "active"} >= {"R-F1", "R-F2"}
            assert_views_match_core(ex)
            await close_all(c)

    run(main)


def test_a_bank_reads_its_members_orders_and_fills(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            seller, buyer, op1, bank = c["SELLER"], c["BUYER"], c["op1"], c["bank"]
            other_bank = Client(ex.url, *ex.bank_key("OTHERBANK"))
            await other_bank.connect()
            await goods(op1, seller, "R1", 100_000)
            resting = await buyer.place_order(RB, "buy", "3400.00", 2)
            deal_id = await deal(seller, buyer)
            orders = await bank.request("orders", account="BUYER", status="all")
            assert orders["account"] == "BUYER"
            assert {o["order_id"] for o in orders["orders"]} >= {resting["order_id"]}
            assert orders == await buyer.request("orders", status="all")
            fills = await bank.request("fills", account="SELLER")
            assert [f["trade_id"] for f in fills["fills"]] == [deal_id]
            assert fills == await seller.request("fills")
            await refused(bank.request("orders"), "INVALID_FIELD")
            await refused(bank.request("fills"), "INVALID_FIELD")
            await refused(other_bank.request("orders", account="BUYER"), "FORBIDDEN")
            await refused(other_bank.request("fills", account="BUYER"), "FORBIDDEN")
            await refused(bank.request("orders", account="NOBODY"), "FORBIDDEN")
            # read-only: the bank's key sends no order of any member
            await refused(bank.request("cancel_order", order_id=resting["order_id"]), "FORBIDDEN")
            assert (await buyer.request("orders"))["orders"][0]["order_id"] == resting["order_id"]
            await other_bank.close()
            await close_all(c)

    run(main)


def test_staff_add_a_warehouse_and_its_operator_and_resolve_a_break(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            staff, seller, other, bank = c["staff"], c["SELLER"], c["OTHER"], c["bank"]
            added = await staff.request("add_warehouse", warehouse_id="W9", name="Tianjin port yard 9",
                                        groups=["EAST-STEEL"])  # fmt: skip
            assert (added["warehouse_id"], added["groups"]) == ("W9", ["EAST-STEEL"])
            await refused(staff.request("add_warehouse", warehouse_id="W9", name="again", groups=["EAST-STEEL"]),
                          "WAREHOUSE_EXISTS")  # fmt: skip
            await refused(staff.request("add_operator", operator_id="op9", warehouse_id="W404"), "UNKNOWN_WAREHOUSE")
            opened = await staff.request("add_operator", operator_id="op9", warehouse_id="W9")
            assert (opened["operator_id"], opened["warehouse_id"]) == ("op9", "W9")
            await refused(staff.request("add_operator", operator_id="op9", warehouse_id="W1"), "OPERATOR_EXISTS")
            await refused(c["op1"].request("add_operator", operator_id="op10", warehouse_id="W1"), "FORBIDDEN")
            op9 = Client(ex.url, *ex.keys.create("operator", "op9"))
            await op9.connect()
            assert op9.session["warehouse"] == "W9"
            receipt = await goods(op9, seller, "R9", 30_000)
            assert (receipt["warehouse_id"], receipt["state"]) == ("W9", "active")
            assert [r["number"] for r in await op9.receipts()] == ["R9"]
            assert await c["op1"].receipts() == []
            # a reconciliation break holds a member's withdrawals until staff resolve it
            ex.execute([
                CloseDay("2030-01-02"),
                BankBalance("SIMBANK", "ST-1", "S-OTHER", 5, "2030-01-02"),
                BankBalance("SIMBANK", "ST-1", "S-SELLER", SIMULATION_FUNDING_FEN, "2030-01-02"),
                BankBalance("SIMBANK", "ST-1", "S-BUYER", SIMULATION_FUNDING_FEN, "2030-01-02"),
                CloseStatement("SIMBANK", "ST-1", "2030-01-02", 3),
            ])  # fmt: skip
            breaks = (await bank.request("bank_files"))["breaks"]
            assert [(b["member"], b["reason"]) for b in breaks] == [("OTHER", "amount_differs")]
            await refused(other.request("request_withdrawal", withdrawal_id="w-1", amount="1.00"), "OPEN_BREAK")
            resolved = await staff.request("resolve_break", break_id=breaks[0]["break_id"], note="bank corrected")
            assert (resolved["break_id"], resolved["open_breaks"]) == (breaks[0]["break_id"], 0)
            await refused(staff.request("resolve_break", break_id=breaks[0]["break_id"]), "BREAK_RESOLVED")
            await refused(staff.request("resolve_break", break_id=999), "UNKNOWN_BREAK")
            assert (await bank.request("bank_files"))["breaks"] == []
            await refused(other.request("request_withdrawal", withdrawal_id="w-1", amount="1.00"), "OPEN_BREAK")
            paid = await other.request("request_withdrawal", withdrawal_id="w-2", amount="1.00")
            assert paid["withdrawal"]["status"] == "approved"
            assert_views_match_core(ex)
            await op9.close()
            await close_all(c)

    run(main)
