"""Money and goods over the gateway, real server and real sockets: receipts
from registration to delivery versus payment and load-out, withdrawals with
maker-checker, disputes, the bank's view; every actor sees and touches only
what is theirs; the read models equal the core; the new private channels
resume without a gap."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from api._client import Client, RequestError
from api._harness import RunningExchange, running_exchange
from api._protocol import PUSHES
from api._views import fen_to_cny
from clearing import BankFileImport
from exchange import SIMULATION_FUNDING_FEN, Sequencer
from exchange._warehouse_rule import RequireReceipts

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"
DEPOSIT = fen_to_cny(SIMULATION_FUNDING_FEN)


def run(make: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(make())  # type: ignore[arg-type]


async def refused(call: Awaitable[Any], code: str) -> RequestError:
    with pytest.raises(RequestError) as info:
        await call
    assert info.value.code == code, info.value
    return info.value


def steel(number: str, holder: str, weight_kg: int) -> dict[str, Any]:
    return {
        "number": number, "holder": holder, "instrument": RB, "weight_kg": weight_kg, "pieces": weight_kg // 2_000,
        "lot_numbers": f"HEAT-{number}", "certificate_no": f"CERT-{number}", "steel_grade": "HRB400E",
        "dimensions": "20 mm x 12 m", "location": "bay 1",
    }  # fmt: skip


def assert_views_match_core(ex: RunningExchange) -> None:
    """Every read model of the gateway equals the core's own state (nothing in flight)."""
    views = ex.gateway.views
    clearing = ex.sequencer.core.clearing
    ledger = clearing.ledger
    assert views.balances == {m: list(b) for m, b in ledger.balances.items()}
    assert {h: (v[0], v[1], v[2]) for h, v in views.holds.items()} == {
        h: (hold.member, hold.account, hold.amount_fen) for h, hold in ledger.holds.items()
    }
    assert {m: b for m, (b, _s) in clearing.members.items()} == views.member_bank
    for request_id, w in clearing.withdrawals.items():
        assert views.withdrawals[request_id]["status"] == w.status, request_id
        assert views.withdrawals[request_id]["amount"] == fen_to_cny(w.amount_fen)
    for deal_id, deal in clearing.deals.items():
        assert views.deals[deal_id]["state"] == deal.state, deal_id
    for deal_id, state in clearing.closed_deals.items():
        if deal_id in views.deals:
            assert views.deals[deal_id]["state"] == state, deal_id
    warehouse = ex.sequencer.core.warehouse
    assert set(views.receipts) == set(warehouse.receipts)
    for number, r in warehouse.receipts.items():
        view = views.receipts[number]
        assert (view["holder"], view["state"], view["weight_kg"], view["pieces"], view["warehouse_id"]) == (
            r.holder, r.state, r.weight_kg, r.pieces, r.warehouse_id,
        ), number  # fmt: skip
    assert set(views.deliveries) == set(warehouse.deliveries)
    for deal_id, d in warehouse.deliveries.items():
        assert views.deliveries[deal_id]["state"] == d.state, deal_id
        assert views.deliveries[deal_id]["receipts"] == d.receipts, deal_id
    assert views.operators == warehouse.operators
    assert {n: r["pledgee"] for n, r in views.receipts.items()} == {n: r.pledgee for n, r in warehouse.receipts.items()}
    pledged = {(bank, n) for bank, numbers in views.bank_pledges.items() for n in numbers}
    assert pledged == {(r.pledgee, n) for n, r in warehouse.receipts.items() if r.pledgee}
    assert views.receipts_required == ex.sequencer.core.receipts_required


def check_private(client: Client) -> None:
    """Every private message a client kept validates against its model and counts 1, 2, 3, ..."""
    for channel, messages in client.private_messages.items():
        assert [m["seq"] for m in messages] == list(range(messages[0]["seq"], messages[0]["seq"] + len(messages)))
        for m in messages:
            PUSHES[channel].model_validate(m)


class Sink:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def push(self, data: bytes) -> None:
        self.got.append(data)


def check_replays_equal_events(ex: RunningExchange) -> int:
    """Every private stream, replayed from its oldest kept message, sends what it sent (or, with no
    subscriber, would have sent) at each event: the ring keeps the bodies nobody subscribed to
    unencoded until a replay, so nothing they hold may change after the fact. Returns the number of
    such deferred messages compared (`setup` turns the private streams' check on)."""
    private = ex.gateway.private
    at_event = private.encoded_at_event
    assert at_event is not None
    compared = 0
    for (channel, account), stream in list(private.streams.items()):
        if not stream.ring:
            continue
        sink = Sink()
        private.subscribe(channel, account, sink, stream.ring[0][0], private.epoch)
        private.unsubscribe(channel, account, sink)
        for (seq, entry), data in zip(stream.ring, sink.got, strict=True):
            assert orjson.loads(data)["seq"] == seq, (channel, account)
            if type(entry) is not bytes and (channel, account, seq) in at_event:
                assert data == at_event[(channel, account, seq)], (channel, account, seq)
                compared += 1
    return compared


async def setup(ex: RunningExchange) -> dict[str, Client]:
    """Members SELLER, BUYER, OTHER funded; warehouses W1 (op1) and W2 (op2) for steel; rebar sells
    only against receipts. Returns logged-in clients by name. Turns on the private streams' check
    that a message encoded late (at a replay) is the one its event made."""
    ex.gateway.private.encoded_at_event = {}
    keys = {name: ex.trader_key(name, receipts=False) for name in ("SELLER", "BUYER", "OTHER")}
    keys["op1"] = ex.warehouse("W1", ("EAST-STEEL",), "op1")
    keys["op2"] = ex.warehouse("W2", ("EAST-STEEL",), "op2")
    keys["bank"] = ex.bank_key()
    keys["staff"] = ex.staff
    keys["staff2"] = ex.keys.create("staff", "", "second staff user")
    ex.execute([RequireReceipts(RB, True, "harness")])
    clients = {name: Client(ex.url, *key) for name, key in keys.items()}
    for client in clients.values():
        await client.connect()
    return clients


async def close_all(clients: dict[str, Client]) -> None:
    for client in clients.values():
        await client.close()


def test_receipt_to_settlement_and_load_out_over_the_gateway(database_url: str) -> None:
    async def main() -> None:
        async with running_exchange(database_url) as ex:
            sequencer = ex.sequencer
            assert isinstance(sequencer, Sequencer)  # running_exchange's default: in this process
            c = await setup(ex)
            seller, buyer, other, op1, op2 = c["SELLER"], c["BUYER"], c["OTHER"], c["op1"], c["op2"]
            assert op1.session["warehouse"] == "W1"
            for channel in ("balances", "receipts", "deliveries"):
                await seller.subscribe_private(channel)
                await buyer.subscribe_private(channel)
            for channel in ("receipts", "deliveries"):  # an operator follows its own warehouse
                assert (await op1.subscribe_private(channel))["account"] == "warehouse:W1"
                await op2.subscribe_private(channel)
                await refused(other.request("subscribe", channel=channel, account="warehouse:W1"), "FORBIDDEN")
            await refused(c["op2"].request("subscribe", channel="balances"), "FORBIDDEN")
            with_key = Client(ex.url, *ex.keys.create("operator", "op2"))
            await with_key.connect()
            await refused(with_key.request("subscribe", channel="receipts", account="warehouse:W1"), "FORBIDDEN")
            await with_key.close()
            # the operator registers goods; the holder confirms them
            registered = await op1.request("register_receipt", **steel("R1", "SELLER", 120_000))
            assert registered["receipt"]["state"] == "registered"
            assert registered["receipt"]["warehouse_id"] == "W1"
            await refused(other.request("confirm_receipt", number="R1"), "NOT_YOUR_RECEIPT")
            await refused(op2.request("register_receipt", **steel("R1", "SELLER", 1_000)), "RECEIPT_EXISTS")
            confirmed = await seller.request("confirm_receipt", number="R1")
            assert confirmed["receipt"]["state"] == "active"
            assert [r["number"] for r in await seller.receipts()] == ["R1"]
            assert await other.receipts() == []
            await refused(other.receipts(account="SELLER"), "FORBIDDEN")
            assert [r["number"] for r in await op1.receipts()] == ["R1"]
            assert await op2.receipts() == []
            await refused(op2.receipts(warehouse="W1"), "FORBIDDEN")
            # a member without receipts cannot sell; the seller's order locks R1 and trades
            await refused(other.place_order(RB, "sell", "3500.00", 1), "INSUFFICIENT_RECEIPTS")
            await seller.place_order(RB, "sell", "3500.00", 10)
            assert (await seller.receipts())[0]["state"] == "locked"
            bought = await buyer.place_order(RB, "buy", "3500.00", 10, time_in_force="ioc")
            deal_id = bought["fills"][0]["trade_id"]
            mine = await buyer.deals()
            assert [(d["deal_id"], d["side"], d["buyer"], d["seller"]) for d in mine] == [(deal_id, "buy", None, None)]
            assert mine[0]["delivery"]["state"] == "awaiting_payment"
            assert mine[0]["notional"] == "350000.00"
            theirs = await seller.deals()
            assert [(d["deal_id"], d["side"]) for d in theirs] == [(deal_id, "sell")]
            assert await other.deals() == []
            await refused(other.deals(account="BUYER"), "FORBIDDEN")
            at_w1 = await op1.deals()
            assert [(d["deal_id"], d["buyer"], d["seller"]) for d in at_w1] == [(deal_id, "BUYER", "SELLER")]
            assert await op2.deals() == []
            # only the buyer pays; only W1's operator confirms, and only after payment
            await refused(other.request("pay_deal", deal_id=deal_id), "NOT_BUYER")
            await refused(seller.request("pay_deal", deal_id=deal_id), "NOT_BUYER")
            await refused(op1.request("confirm_delivery", deal_id=deal_id, actual_weight_kg=98_765,
                                      quality_pass=True, pieces=49), "BAD_DEAL_STATE")  # fmt: skip
            before = (await buyer.balances())[0]
            paid = await buyer.request("pay_deal", deal_id=deal_id)
            assert paid["deal"]["delivery"]["state"] == "paid"
            after = (await buyer.balances())[0]
            assert after["frozen_escrow"] != before["frozen_escrow"]
            hash_before = sequencer.state_hash()
            error = await refused(
                op2.request("confirm_delivery", deal_id=deal_id, actual_weight_kg=98_765, quality_pass=True, pieces=49),
                "NOT_YOUR_WAREHOUSE",
            )
            assert error.seq == sequencer.last_seq
            assert sequencer.state_hash() == hash_before
            settled = await op1.request(
                "confirm_delivery", deal_id=deal_id, actual_weight_kg=98_765, quality_pass=True, pieces=49
            )
            assert settled["settlement"] is None
            delivery = settled["deal"]["delivery"]
            # 98 765 kg x 3 500 CNY/t = 345 677.50 CNY; the contract's 350 000.00 less that comes back
            assert (delivery["state"], delivery["amount"], delivery["refund"]) == ("settled", "345677.50", "4322.50")
            assert settled["deal"]["state"] == "settled"
            # the buyer now holds a receipt for the delivered weight; the buyer's money is exact
            held = await buyer.receipts()
            assert [(r["weight_kg"], r["state"], r["origin"]) for r in held] == [
                (98_765, "active", f"delivery:{deal_id}")
            ]
            funds = (await buyer.balances())[0]
            taker_fee_fen = 17_500  # 5 bps of 35 000 000 fen
            assert funds["available"] == fen_to_cny(SIMULATION_FUNDING_FEN - 34_567_750 - taker_fee_fen)
            assert (funds["frozen_margin"], funds["frozen_escrow"], funds["open_holds"]) == ("0.00", "0.00", 0)
            # load-out: the holder asks, only W1's operator confirms, with a plausible scale weight
            number = held[0]["number"]
            await refused(op1.request("confirm_load_out", number=number, weight_kg=98_700), "BAD_RECEIPT_STATE")
            await buyer.request("request_load_out", number=number)
            await refused(op2.request("confirm_load_out", number=number, weight_kg=98_700), "NOT_YOUR_WAREHOUSE")
            await refused(op1.request("confirm_load_out", number=number, weight_kg=50_000), "BAD_LOAD_OUT_WEIGHT")
            out = await op1.request("confirm_load_out", number=number, weight_kg=98_700)
            assert out["receipt"]["state"] == "cancelled"
            assert await buyer.receipts() == []
            assert [r["number"] for r in await buyer.receipts(state="all")] == [number]
            # the private channels told each side everything, in order
            await asyncio.sleep(0.05)
            for client in (seller, buyer):
                check_private(client)
            transitions = [m["transition"] for m in seller.private_messages["receipts"]]
            assert transitions[:3] == ["registered", "confirmed", "locked"]
            assert "delivered" in transitions
            assert all(m["account"] == "SELLER" for ms in seller.private_messages.values() for m in ms)
            events = [m["event"] for m in buyer.private_messages["deliveries"]]
            assert events[:2] == ["deal_opened", "delivery_opened"]
            steps = [(m["event"], m["deal"]["state"], m["deal"]["delivery"]["state"])
                     for m in buyer.private_messages["deliveries"][2:]]  # fmt: skip
            assert steps == [
                ("deal_state", "escrowed", "awaiting_payment"),  # the money leg first, in the same command
                ("delivery_state", "escrowed", "paid"),
                ("delivery_state", "escrowed", "delivery_confirmed"),
                ("deal_state", "settled", "delivery_confirmed"),
                ("delivery_state", "settled", "settled"),
            ]
            check_private(op1)
            at_warehouse = op1.private_messages
            assert {m["receipt"]["warehouse_id"] for m in at_warehouse["receipts"]} == {"W1"}
            assert [m["receipt"]["number"] for m in at_warehouse["receipts"][:2]] == ["R1", "R1"]
            assert {(m["deal"]["buyer"], m["deal"]["seller"]) for m in at_warehouse["deliveries"]} == {
                ("BUYER", "SELLER")
            }
            assert at_warehouse["deliveries"][-1]["deal"]["delivery"]["state"] == "settled"
            assert op2.private_messages["receipts"] == op2.private_messages["deliveries"] == []
            last = buyer.private_messages["balances"][-1]
            assert (last["available"], last["frozen_escrow"]) == (funds["available"], "0.00")
            assert_views_match_core(ex)
            assert check_replays_equal_events(ex) > 0
            await close_all(c)

    run(main)


def test_dispute_resolved_by_staff(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            await c["op1"].request("register_receipt", **steel("R1", "SELLER", 100_000))
            await c["SELLER"].request("confirm_receipt", number="R1")
            await c["SELLER"].place_order(RB, "sell", "3500.00", 10)
            deal_id = (await c["BUYER"].place_order(RB, "buy", "3500.00", 10))["fills"][0]["trade_id"]
            await refused(c["staff"].request("resolve_dispute", deal_id=deal_id, resolution="cancel"), "BAD_DEAL_STATE")
            await c["BUYER"].request("pay_deal", deal_id=deal_id)
            failed = await c["op1"].request(
                "confirm_delivery", deal_id=deal_id, actual_weight_kg=100_000, quality_pass=False, pieces=50
            )
            assert failed["deal"]["delivery"]["state"] == "disputed"
            assert failed["deal"]["delivery"]["detail"] == "quality failed"
            await refused(c["BUYER"].request("resolve_dispute", deal_id=deal_id, resolution="cancel"), "FORBIDDEN")
            await refused(c["op1"].request("resolve_dispute", deal_id=deal_id, resolution="cancel"), "FORBIDDEN")
            await refused(c["staff"].request("resolve_dispute", deal_id=deal_id, resolution="adjust"), "INVALID_FIELD")
            await refused(
                c["staff"].request("resolve_dispute", deal_id=deal_id, resolution="cancel", amount="1.00"),
                "INVALID_FIELD",
            )
            resolved = await c["staff"].request(
                "resolve_dispute", deal_id=deal_id, resolution="adjust", amount="330000.00"
            )
            assert resolved["deal"]["delivery"]["state"] == "settled"
            assert resolved["deal"]["delivery"]["amount"] == "330000.00"
            held = await c["BUYER"].receipts()
            assert [r["weight_kg"] for r in held] == [100_000]
            assert_views_match_core(ex)
            check_replays_equal_events(ex)
            await close_all(c)

    run(main)


def test_receipts_page_by_number_while_they_come_and_go(tmp_path: Any) -> None:
    """A holder with more receipts than a page could not list them all: `receipts` had no cursor."""

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            numbers = [f"R{n:02d}" for n in range(23)]
            for number in numbers:
                await c["op1"].request("register_receipt", **steel(number, "SELLER", 10_000))

            async def walk(client: Client, limit: int, **filters: Any) -> list[str]:
                seen: list[str] = []
                after = None
                while page := await client.receipts(after_number=after, limit=limit, **filters):
                    assert len(page) <= limit
                    seen.extend(r["number"] for r in page)
                    after = page[-1]["number"]
                return seen

            for limit in (1, 4, 100):
                assert await walk(c["SELLER"], limit) == numbers
                assert await walk(c["op1"], limit) == numbers
                assert await walk(c["staff"], limit, account="SELLER") == numbers
            # a receipt that goes meanwhile leaves the rest of the walk whole
            first = await c["SELLER"].receipts(limit=5)
            for gone in ("R02", "R07"):  # one on the page read, one ahead: neither shifts the rest
                await c["op1"].request("void_receipt", number=gone)
            await c["op1"].request("register_receipt", **steel("R99", "SELLER", 10_000))
            rest = await c["SELLER"].receipts(after_number=first[-1]["number"], limit=100)
            assert [r["number"] for r in rest] == [n for n in [*numbers[5:], "R99"] if n != "R07"]
            await refused(c["SELLER"].receipts(after_number="", limit=5), "INVALID_FIELD")
            await close_all(c)

    run(main)


def test_withdrawals_maker_checker_and_the_banks_view(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            buyer, other, staff, staff2, bank = c["BUYER"], c["OTHER"], c["staff"], c["staff2"], c["bank"]
            small = await buyer.request("request_withdrawal", withdrawal_id="w-small", amount="100.00")
            assert small["withdrawal"]["status"] == "approved"  # at or below the threshold: approved at once
            again = await buyer.request("request_withdrawal", withdrawal_id="w-small", amount="100.00")
            assert again["duplicate"] is True
            await refused(other.request("request_withdrawal", withdrawal_id="w-small", amount="1.00"), "INVALID_FIELD")
            big = await buyer.request("request_withdrawal", withdrawal_id="w-big", amount="2000000.00")
            assert big["withdrawal"]["status"] == "pending_approval"
            funds = (await buyer.balances())[0]
            assert funds["frozen_escrow"] == "2000100.00"
            assert funds["available"] == fen_to_cny(SIMULATION_FUNDING_FEN - 200_010_000)
            await refused(buyer.request("approve_withdrawal", withdrawal_id="w-big"), "FORBIDDEN")
            await refused(bank.request("approve_withdrawal", withdrawal_id="w-big"), "FORBIDDEN")
            await refused(c["op1"].request("request_withdrawal", withdrawal_id="w-op", amount="1.00"), "FORBIDDEN")
            await refused(bank.request("request_withdrawal", withdrawal_id="w-bank", amount="1.00"), "FORBIDDEN")
            approved = await staff.request("approve_withdrawal", withdrawal_id="w-big")
            assert approved["withdrawal"]["status"] == "approved"
            # staff asking for a member: the same staff key cannot also approve (maker-checker)
            await refused(staff.request("request_withdrawal", withdrawal_id="w-staff", amount="3000000.00"),
                          "INVALID_FIELD")  # fmt: skip
            await staff.request("request_withdrawal", withdrawal_id="w-staff", amount="3000000.00", account="OTHER")
            await refused(staff.request("approve_withdrawal", withdrawal_id="w-staff"), "SAME_APPROVER")
            assert (await staff2.request("approve_withdrawal", withdrawal_id="w-staff"))["withdrawal"]["approved_by"]
            await refused(staff2.request("approve_withdrawal", withdrawal_id="w-staff"), "BAD_REQUEST_STATE")
            await refused(staff2.request("approve_withdrawal", withdrawal_id="nope"), "UNKNOWN_REQUEST")
            await refused(buyer.request("request_withdrawal", withdrawal_id="w-huge", amount="99999999999.00"),
                          "INSUFFICIENT_FUNDS")  # fmt: skip
            assert (await buyer.balances())[0] == funds  # refused: nothing frozen
            mine = (await buyer.request("withdrawals"))["withdrawals"]
            assert {w["withdrawal_id"] for w in mine} == {"w-small", "w-big"}
            await refused(buyer.request("withdrawals", account="OTHER"), "FORBIDDEN")
            await refused(buyer.balances("OTHER"), "FORBIDDEN")
            # the bank sees its members' money and the instructions waiting for it, nothing else
            seen = await bank.balances()
            assert {b["account"] for b in seen} == {"SELLER", "BUYER", "OTHER"}
            assert (await bank.balances("BUYER"))[0]["frozen_escrow"] == "2000100.00"
            other_bank = Client(ex.url, *ex.bank_key("OTHERBANK"))
            await other_bank.connect()
            assert await other_bank.balances() == []
            await refused(other_bank.balances("BUYER"), "FORBIDDEN")
            await refused(other_bank.request("subscribe", channel="balances", account="BUYER"), "FORBIDDEN")
            await refused(other_bank.request("bank_files", bank="SIMBANK"), "FORBIDDEN")
            await refused(bank.request("new_order", instrument=RB, client_order_id="b", side="buy",
                                       price="3500.00", quantity_lots=1), "FORBIDDEN")  # fmt: skip
            assert await bank.receipts() == []  # a bank sees only the receipts pledged to it: none yet
            await refused(bank.deals(), "INVALID_FIELD")  # a bank names the member (see the test below)
            await refused(bank.request("subscribe", channel="orders", account="BUYER"), "FORBIDDEN")
            await bank.subscribe_private("balances", account="BUYER")
            ex.execute([BankFileImport("SIMBANK", "F-1", "0" * 64, "deposits", "not json")])
            files = await bank.request("bank_files")
            assert [(f["file_id"], f["status"], f["code"]) for f in files["files"]] == [
                ("F-1", "refused", "BAD_FILE_RECORDS")
            ]
            assert {w["withdrawal_id"] for w in files["instructions"]} == {"w-small", "w-big", "w-staff"}
            assert files["members"] == 3
            await refused(staff.request("bank_files"), "INVALID_FIELD")
            await refused(staff.balances("NOBODY"), "UNKNOWN_MEMBER")
            await refused(staff.request("request_withdrawal", withdrawal_id="w-x", amount="1.00", account="NOBODY"),
                          "UNKNOWN_MEMBER")  # fmt: skip
            assert (await staff.request("bank_files", bank="SIMBANK"))["files"] == files["files"]
            await buyer.request("request_withdrawal", withdrawal_id="w-late", amount="5.00")
            now = (await buyer.balances())[0]
            await asyncio.sleep(0.05)
            pushed = bank.private_messages["balances"]
            assert [(m["account"], m["available"], m["frozen_escrow"]) for m in pushed] == [
                ("BUYER", now["available"], now["frozen_escrow"])
            ]
            check_private(bank)
            assert_views_match_core(ex)
            await other_bank.close()
            await close_all(c)

    run(main)


def test_a_bank_sees_the_deals_of_its_members_as_they_do_and_nothing_else(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            seller = Client(ex.url, *ex.trader_key("S1"))
            buyer = Client(ex.url, *ex.trader_key("B1", receipts=False))
            bank = Client(ex.url, *ex.bank_key())
            other_bank = Client(ex.url, *ex.bank_key("OTHERBANK"))
            for client in (seller, buyer, bank, other_bank):
                await client.connect()
            await seller.place_order(RB, "sell", "3500.00", 3)
            await buyer.place_order(RB, "buy", "3500.00", 3)
            bought, sold = await buyer.deals(), await seller.deals()
            assert len(bought) == 1
            assert (bought[0]["side"], sold[0]["side"]) == ("buy", "sell")
            assert await bank.deals(account="B1") == bought, "the member's own side, as the member sees it"
            assert await bank.deals(account="S1") == sold
            assert (bought[0]["buyer"], bought[0]["seller"]) == (None, None), "never the counterparty"
            await refused(bank.deals(), "INVALID_FIELD")
            await refused(other_bank.deals(account="B1"), "FORBIDDEN")
            await refused(bank.deals(account="NOBODY"), "FORBIDDEN")
            await refused(bank.request("pay_deal", deal_id=bought[0]["deal_id"]), "FORBIDDEN")
            for client in (seller, buyer, bank, other_bank):
                await client.close()

    run(main)


def test_new_private_channels_resume_without_a_gap(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            seller_key = ex.trader_key("SELLER", receipts=False)
            watcher = Client(ex.url, *seller_key)
            await watcher.connect()
            channels = ("balances", "receipts", "deliveries")
            start = {channel: (await watcher.subscribe_private(channel))["seq"] for channel in channels}
            assert start["balances"] > 0  # the deposit moved money before: the stream continues from there
            seller, buyer, op1 = c["SELLER"], c["BUYER"], c["op1"]
            serial = 0
            for round_number in range(6):
                for _ in range(3):
                    serial += 1
                    await op1.request("register_receipt", **steel(f"R{serial}", "SELLER", 10_000))
                    await seller.request("confirm_receipt", number=f"R{serial}")
                order = await seller.place_order(RB, "sell", "3500.00", 2)
                await buyer.place_order(RB, "buy", "3500.00", 1, time_in_force="ioc")
                if round_number % 2 == 0:
                    await watcher.close()  # away while money, receipts and deals move
                    await buyer.place_order(RB, "buy", "3500.00", 1, time_in_force="ioc")
                    deal_id = (await buyer.deals())[0]["deal_id"]
                    await buyer.request("pay_deal", deal_id=deal_id)
                    await seller.request("request_withdrawal", withdrawal_id=f"w{round_number}", amount="10.00")
                    await watcher.connect()  # resumes every channel from its next seq
                else:
                    await seller.cancel_order(order["order_id"])
            for channel in channels:
                stream = ex.gateway.private.stream(channel, "SELLER")

                def caught_up(s: Any = stream, ch: str = channel) -> bool:
                    return bool(watcher.private_seq.get(ch) == s.seq)

                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not caught_up():
                    assert loop.time() < deadline, channel
                    await asyncio.sleep(0.01)
                got = watcher.private_messages[channel]
                assert [m["seq"] for m in got] == list(range(start[channel] + 1, stream.seq + 1)), channel
                assert stream.seq > 10, (channel, stream.seq)
            assert watcher.replay_lost == 0
            check_private(watcher)
            assert check_replays_equal_events(ex) > 0
            # the last balances message is the balance the query shows
            last = watcher.private_messages["balances"][-1]
            now = (await watcher.balances())[0]
            assert (last["available"], last["frozen_margin"], last["frozen_escrow"]) == (
                now["available"], now["frozen_margin"], now["frozen_escrow"],
            )  # fmt: skip
            await watcher.close()
            await close_all(c)

    run(main)


def test_read_models_equal_the_core_after_random_flow(tmp_path: Any) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            c = await setup(ex)
            members = ("SELLER", "BUYER", "OTHER")
            for n, member in enumerate(members):
                for k in range(3):
                    number = f"R{n}-{k}"
                    await c["op1" if k % 2 else "op2"].request("register_receipt", **steel(number, member, 50_000))
                    await c[member].request("confirm_receipt", number=number)
            live: list[tuple[str, int]] = []
            refusals: list[str] = []
            for step in range(400):
                member = rnd.choice(members)
                client = c[member]
                roll = rnd.random()
                try:
                    if live and roll < 0.2:
                        owner, order_id = live.pop(rnd.randrange(len(live)))
                        await c[owner].cancel_order(order_id)
                    elif roll < 0.25:
                        deals = await client.deals()
                        unpaid = [d for d in deals if d["side"] == "buy" and d["delivery"]
                                  and d["delivery"]["state"] == "awaiting_payment"]  # fmt: skip
                        if unpaid:
                            await client.request("pay_deal", deal_id=unpaid[0]["deal_id"])
                    elif roll < 0.3:
                        await client.request("request_withdrawal", withdrawal_id=f"w{step}",
                                             amount=f"{rnd.randint(1, 3_000_000)}.00")  # fmt: skip
                    else:
                        side = rnd.choice(("buy", "sell"))
                        price = f"{3500 + rnd.randint(-5, 5)}.00"
                        answer = await client.place_order(RB, side, price, rnd.randint(1, 3))
                        if answer["open_lots"]:
                            live.append((member, answer["order_id"]))
                except RequestError as exc:
                    refusals.append(exc.code)
            assert set(refusals) <= {"INSUFFICIENT_RECEIPTS", "UNKNOWN_ORDER"}, (seed, refusals)
            for w in (await c["staff"].request("withdrawals"))["withdrawals"]:
                if w["status"] == "pending_approval":
                    await c["staff"].request("approve_withdrawal", withdrawal_id=w["withdrawal_id"])
            assert ex.sequencer.core.clearing.deals, seed
            try:
                assert_views_match_core(ex)
            except AssertionError as exc:
                raise AssertionError(f"read models differ from the core (seed {seed}): {exc}") from exc
            assert check_replays_equal_events(ex) > 100, seed
            await close_all(c)

    run(main)


def unknown_after_restart(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as a restarted gateway shows them: what the core does not keep (the seq of a deal's,
    delivery's or withdrawal's last change; the detail of a receipt's origin) is documented unknown."""
    out = []
    for original in rows:
        row = dict(original)
        if "delivery" in row and row["delivery"] is not None:
            row["delivery"] = {**row["delivery"], "last_seq": 0}
        if "withdrawal_id" in row:
            row["last_seq"] = 0
        if "origin" in row and row["origin"] != "registered":
            row["origin"] = "issued"
        out.append(row)
    return out


def test_read_models_load_from_the_recovered_core_after_a_restart(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    before: dict[str, Any] = {}

    async def first() -> None:
        async with running_exchange(url) as ex:
            c = await setup(ex)
            await c["op1"].request("register_receipt", **steel("R1", "SELLER", 100_000))
            await c["op1"].request("register_receipt", **steel("R2", "SELLER", 30_000))
            await c["SELLER"].request("confirm_receipt", number="R1")
            await c["SELLER"].place_order(RB, "sell", "3500.00", 10)
            await c["BUYER"].place_order(RB, "buy", "3500.00", 4)  # a part of R1 allocated, the rest locked
            deal_id = (await c["BUYER"].deals())[0]["deal_id"]
            await c["BUYER"].request("pay_deal", deal_id=deal_id)
            await c["BUYER"].place_order(RB, "buy", "3400.00", 2)  # a resting order's hold
            await c["BUYER"].request("request_withdrawal", withdrawal_id="w-big", amount="2000000.00")
            ex.execute([BankFileImport("SIMBANK", "F-1", "0" * 64, "deposits", "not json")])
            await c["SELLER"].request("confirm_receipt", number="R2")
            await c["SELLER"].request("pledge_receipt", number="R2", bank="SIMBANK")
            free = next(s for s in ex.symbols if s != RB)
            await c["staff"].request("require_receipts", instrument=free, required=False)
            before["pledged"] = await c["bank"].receipts()
            assert [r["number"] for r in before["pledged"]] == ["R2"]
            before["instruments"] = (await c["OTHER"].request("instruments"))["instruments"]
            assert [i["symbol"] for i in before["instruments"] if not i["receipts_required"]] == [free]
            before["deals"] = await c["BUYER"].deals()
            before["receipts"] = await c["SELLER"].receipts(state="all")
            before["balances"] = await c["bank"].balances()
            before["withdrawals"] = (await c["staff"].request("withdrawals"))["withdrawals"]
            before["op"] = await c["op1"].deals()
            assert_views_match_core(ex)
            check_replays_equal_events(ex)
            await close_all(c)

    async def second() -> None:
        async with running_exchange(url, open_markets=False) as ex:
            assert_views_match_core(ex)
            buyer = Client(ex.url, *ex.trader_key("BUYER", receipts=False))
            seller = Client(ex.url, *ex.trader_key("SELLER", receipts=False))
            bank = Client(ex.url, *ex.bank_key())
            op1 = Client(ex.url, *ex.keys.create("operator", "op1"))
            for client in (buyer, seller, bank, op1):
                await client.connect()
            assert op1.session["warehouse"] == "W1"
            assert await buyer.deals() == unknown_after_restart(before["deals"])
            assert await seller.receipts(state="all") == unknown_after_restart(before["receipts"])
            assert await bank.balances() == before["balances"]
            assert await bank.receipts() == unknown_after_restart(before["pledged"])
            assert (await bank.request("instruments"))["instruments"] == before["instruments"]
            assert (await bank.request("release_pledge", number="R2"))["receipt"]["pledgee"] == ""
            async with ex.staff_client() as staff:
                withdrawals = (await staff.request("withdrawals"))["withdrawals"]
                assert withdrawals == unknown_after_restart(before["withdrawals"])
            assert await op1.deals() == unknown_after_restart(before["op"])
            # and the recovered views go on: the operator settles the paid delivery
            deal_id = before["deals"][0]["deal_id"]
            settled = await op1.request(
                "confirm_delivery", deal_id=deal_id, actual_weight_kg=40_000, quality_pass=True, pieces=20
            )
            assert settled["deal"]["delivery"]["state"] == "settled"
            assert_views_match_core(ex)
            for client in (buyer, seller, bank, op1):
                await client.close()

    asyncio.run(first())
    asyncio.run(second())
