"""The order handlers on their own: the answer a new order's events make, and the prices they parse."""

from __future__ import annotations

from typing import Any

import pytest

from api._errors import ApiError, ErrorCode
from api._handlers import HANDLERS, PARSED_PRICES_PER_INSTRUMENT, Submit
from api._keys import ApiKey
from api._limits import GatewayLimits
from api._marketdata import InstrumentData
from api._protocol import NewOrderRequest
from api._server import Gateway
from api._session import Connection
from exchange import Ack, parse_instruments
from matching import ACCEPTED, BUY, CANCELLED, DUPLICATE, REJECTED, SELL, TRADE, CancelReason, NewOrder, RejectCode


def _gateway() -> Gateway:
    (instrument,) = parse_instruments(
        {"instrument": [{
            "symbol": "RB", "commodity": "steel", "product": "rebar", "grade": "g", "warehouse_group": "W",
            "lot_size_t": 10, "tick_fen": 100, "reference_price_ticks": 3500, "price_band_bps": 700,
            "min_lots": 1, "max_lots": 500,
        }]}
    )  # fmt: skip
    # a real gateway (the handlers are compiled and check their arguments' types) with nothing
    # behind it: the handler under test reads only the instruments and the parsed prices
    gateway = Gateway(None, None, None, GatewayLimits(), None)  # type: ignore[arg-type]
    gateway.market.instruments["RB"] = InstrumentData(instrument)
    return gateway


def _trader(account: str) -> Connection:
    conn = Connection(None, GatewayLimits(), 0.0, 1)  # type: ignore[arg-type]
    conn.key = ApiKey("k1", "trader", account, "", 0, None, b"")
    return conn


def _submit(gateway: Gateway, **fields: Any) -> Submit:
    request = NewOrderRequest.model_validate(
        {"type": "new_order", "id": "r1", "instrument": "RB", "client_order_id": "c1", "side": "buy",
         "price": "3501.00", "quantity_lots": 5, **fields}
    )  # fmt: skip
    outcome = HANDLERS.handlers["new_order"].run(gateway, _trader("M1"), request)
    assert type(outcome) is Submit
    return outcome


def _trade(trade_id: int, price_ticks: int, lots: int, buy_id: int, sell_id: int) -> tuple[Any, ...]:
    return (TRADE, 9, trade_id, "RB", price_ticks, lots, buy_id, "M1", 0, sell_id, "M2", 0, BUY)


def test_a_new_order_is_the_compiled_builders_command() -> None:
    outcome = _submit(_gateway(), time_in_force="ioc")
    assert outcome.command == NewOrder("M1", "RB", "c1", BUY, 3501, 5, 2, 0, False, 1, ())


def test_the_answer_of_a_new_order_counts_only_its_own_fills_and_cancellations() -> None:
    gateway = _gateway()
    finish = _submit(gateway, time_in_force="ioc").finish
    events = [
        (CANCELLED, 9, 40, "M1", "RB", BUY, 3400, 1, 0, CancelReason.SELF_TRADE),  # another order's
        (ACCEPTED, 9, 41, "M1", "RB", "c1", BUY, 3501, 5, 2),
        _trade(7, 3499, 1, 41, 30),
        _trade(8, 3500, 1, 31, 32),  # another order's
        _trade(9, 3501, 1, 41, 33),
        (CANCELLED, 9, 41, "M1", "RB", BUY, 3501, 3, 0, CancelReason.IOC_REMAINDER),
    ]
    assert finish(Ack(9, 123, events)) == {
        "order_id": 41, "client_order_id": "c1", "seq": 9, "ts_ns": 123, "duplicate": False, "status": "cancelled",
        "filled_lots": 2, "open_lots": 0, "cancelled_lots": 3,
        "fills": [{"trade_id": 7, "price": "3499.00", "quantity_lots": 1},
                  {"trade_id": 9, "price": "3501.00", "quantity_lots": 1}],
    }  # fmt: skip
    resting = [(ACCEPTED, 9, 41, "M1", "RB", "c1", BUY, 3501, 5, 0), _trade(7, 3501, 2, 41, 30)]
    assert finish(Ack(9, 123, resting))["status"] == "partially_filled"
    assert finish(Ack(9, 123, resting))["open_lots"] == 3
    assert finish(Ack(9, 123, resting[:1]))["status"] == "open"
    sold = [(ACCEPTED, 9, 41, "M1", "RB", "c1", SELL, 3501, 5, 0), _trade(7, 3501, 5, 30, 41)]
    assert finish(Ack(9, 123, sold))["status"] == "filled"


def test_a_rejected_or_repeated_new_order_is_answered_as_before() -> None:
    finish = _submit(_gateway()).finish
    with pytest.raises(ApiError) as info:
        finish(Ack(9, 1, [(REJECTED, 9, "M1", "c1", RejectCode.PRICE_OUT_OF_BAND, "band")]))
    assert info.value.code == ErrorCode.from_reject(RejectCode.PRICE_OUT_OF_BAND)
    assert info.value.seq == 9  # type: ignore[attr-defined]
    repeated = finish(Ack(10, 2, [(DUPLICATE, 10, "M1", "c1", 41, 0)]))
    assert repeated["duplicate"] is True
    assert repeated["order_id"] == 41
    assert repeated["fills"] == []


def test_parsed_prices_are_remembered_per_instrument_up_to_the_limit_and_refusals_never() -> None:
    gateway = _gateway()
    assert _submit(gateway, price="3501.00").command.price_ticks == 3501
    assert _submit(gateway, price="3501").command.price_ticks == 3501
    assert gateway.parsed_prices == {"RB": {"3501.00": 3501, "3501": 3501}}
    for price, code in (("3501.5", ErrorCode.from_reject(RejectCode.PRICE_OFF_TICK)),
                        ("0", ErrorCode.from_reject(RejectCode.PRICE_NOT_POSITIVE))):  # fmt: skip
        for _ in range(2):  # refused the second time too: a refusal is not remembered
            with pytest.raises(ApiError) as info:
                _submit(gateway, price=price)
            assert info.value.code == code
    assert set(gateway.parsed_prices["RB"]) == {"3501.00", "3501"}
    with pytest.raises(ApiError) as unknown:
        _submit(gateway, instrument="NOPE")
    assert unknown.value.code == ErrorCode.UNKNOWN_INSTRUMENT
    assert set(gateway.parsed_prices) == {"RB"}
    for ticks in range(1, PARSED_PRICES_PER_INSTRUMENT):  # ("3501.00" among them, remembered already)
        _submit(gateway, price=f"{ticks}.00")
    assert len(gateway.parsed_prices["RB"]) == PARSED_PRICES_PER_INSTRUMENT  # full
    assert _submit(gateway, price="3501.00").command.price_ticks == 3501  # remembered
    assert _submit(gateway, price="5000.00").command.price_ticks == 5000  # a new one: forgets all, keeps it
    assert gateway.parsed_prices["RB"] == {"5000.00": 5000}
