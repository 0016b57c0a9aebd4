"""The protocol's pieces without a server: schema, error codes, keys, limits
at their edges, the send queue, the private ring and the book checksum."""

from __future__ import annotations

import asyncio
import zlib
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import TEXT, Frame
from websockets.protocol import State
from websockets.streams import StreamReader

from api._errors import ERROR_MESSAGES, ApiError, ErrorCode
from api._keys import KeyStore, derive_signing_key, sign_login
from api._limits import (
    CLOSE_SLOW_CONSUMER,
    CONNECTION_BURST,
    CONNECTION_RATE_PER_S,
    KEY_BURST,
    MAX_SEND_QUEUE_MESSAGES,
    GatewayLimits,
    TokenBucket,
)
from api._marketdata import MarketData, book_checksum
from api._private import PrivateStreams
from api._protocol import NewOrderRequest
from api._schema import SCHEMA_PATH, schema_text
from api._session import WRITE_CHUNK_MESSAGES, Connection
from api._views import fen_to_cny
from exchange import Ack, parse_instruments
from matching import ACCEPTED, AMENDED, BOOK, BUY, CANCELLED, REJECTED, SELL, TRADE, CancelReason, RejectCode


def test_schema_file_is_up_to_date() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "docs/protocol.schema.json is stale: run `bulkex protocol schema`"
    )


def test_every_core_reject_code_is_an_api_code_with_a_message() -> None:
    for code in RejectCode:
        assert ErrorCode.from_reject(code) == ErrorCode(code.name)
    assert set(ERROR_MESSAGES) == set(ErrorCode)
    assert all(ERROR_MESSAGES[c] for c in ErrorCode)


@pytest.mark.parametrize(("burst", "rate"), [(CONNECTION_BURST, CONNECTION_RATE_PER_S), (KEY_BURST, 5_000), (1, 1.0)])
def test_token_bucket_edge(burst: int, rate: float) -> None:
    bucket = TokenBucket(rate, burst, now_s=100.0)
    assert all(bucket.take(100.0) for _ in range(burst))
    assert not bucket.take(100.0)
    assert bucket.take(100.0 + 1 / rate)  # one token back after 1/rate seconds
    assert not bucket.take(100.0 + 1 / rate)
    assert all(bucket.take(1_000.0) for _ in range(burst))  # never more than the burst
    assert not bucket.take(1_000.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=0.01), min_size=1, max_size=200))
def test_token_bucket_never_grants_more_than_burst_plus_refill(gaps: list[float]) -> None:
    rate, burst = 100.0, 5
    bucket = TokenBucket(rate, burst, 0.0)
    now = 0.0
    granted = 0
    for gap in gaps:
        now += gap
        granted += bucket.take(now)
    assert granted <= burst + int(now * rate) + 1


def test_signing_key_is_derived_and_sealed(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    store = KeyStore(url, pepper="pepper-1", migrate=True)
    key_id, secret = store.create("trader", "M1", "desk")
    key = store.get(key_id)
    assert key is not None
    assert key.signing_key == derive_signing_key(key_id, secret)
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT sealed_signing_key FROM api_keys").scalar_one()
    assert secret not in stored
    assert bytes.fromhex(stored) != key.signing_key  # sealed with the pepper
    other = KeyStore(url, pepper="another")
    assert other.get(key_id).signing_key != key.signing_key  # type: ignore[union-attr]
    signature = sign_login(key_id, key.signing_key, 1_700_000_000_000, "nonce-123")
    assert signature == sign_login(key_id, derive_signing_key(key_id, secret), 1_700_000_000_000, "nonce-123")
    assert signature != sign_login(key_id, key.signing_key, 1_700_000_000_001, "nonce-123")
    for role, subject in (("trader", ""), ("staff", "li wei"), ("king", "M1"), ("trader", "has space")):
        with pytest.raises(ValueError, match=r"\w"):
            store.create(role, subject)
    assert store.revoke(key_id)
    assert not store.revoke(key_id)
    assert [k.revoked for k in store.all()] == [True]
    store.close()
    other.close()


def test_wire_models_are_strict() -> None:
    base = {"type": "new_order", "id": "1", "instrument": "X", "client_order_id": "c", "side": "buy",
            "price": "1.00", "quantity_lots": 1}  # fmt: skip
    NewOrderRequest.model_validate(base)
    for bad in ({"quantity_lots": True}, {"quantity_lots": "1"}, {"price": 1}, {"extra": 1}, {"id": ""},
                {"id": "x" * 65}, {"quantity_lots": 1_000_001}, {"order_type": "market"}):  # fmt: skip
        with pytest.raises(ValueError, match=r"\w"):
            NewOrderRequest.model_validate({**base, **bad})


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FakeProtocol:
    def __init__(self) -> None:
        self.state = State.OPEN
        self.extensions: list[Any] = []


class StuckSocket:
    """A socket whose transport is above its high-water mark (a client that stopped reading)."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None
        self.paused = True
        self.protocol = FakeProtocol()
        self.transport = FakeTransport()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_slow_consumer_is_disconnected_at_the_queue_limit() -> None:
    async def main() -> None:
        ws = StuckSocket()
        conn = Connection(ws, GatewayLimits(), 0.0, 1)  # type: ignore[arg-type]
        for _ in range(MAX_SEND_QUEUE_MESSAGES):
            conn.push(b"x")
        await asyncio.sleep(0)  # the outbox runs, the transport takes nothing
        assert ws.transport.written == []
        assert len(conn.queue) == MAX_SEND_QUEUE_MESSAGES
        closing = conn.closing  # read into a local: mypy would keep conn.closing narrowed past push()
        assert not closing
        conn.push(b"one too many")
        assert conn.closing
        await asyncio.sleep(0)
        assert ws.closed == (CLOSE_SLOW_CONSUMER, "slow consumer")

    asyncio.run(main())


def test_queued_messages_are_written_as_frames_once_the_transport_drains() -> None:
    async def main() -> None:
        ws = StuckSocket()
        conn = Connection(ws, GatewayLimits(), 0.0, 1)  # type: ignore[arg-type]
        messages = [b"a" * n for n in (0, 1, 125, 126, 65_535, 65_536)] * 100
        for message in messages:
            conn.push(message)
        await asyncio.sleep(0)
        assert ws.transport.written == []
        ws.paused = False
        conn._writable()  # what GatewayConnection.resume_writing calls
        await asyncio.sleep(0)
        assert not conn.queue
        stream = b"".join(ws.transport.written)
        assert len(ws.transport.written) == -(-len(messages) // WRITE_CHUNK_MESSAGES)
        reader = StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        for message in messages:  # websockets' own parser reads them back, unmasked text frames
            parser = Frame.parse(reader.read_exact, mask=False)
            try:
                next(parser)
                raise AssertionError("incomplete frame")
            except StopIteration as done:
                frame = done.value
            assert frame.opcode is TEXT
            assert frame.fin
            assert frame.data == message

    asyncio.run(main())


class Sink:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def push(self, data: bytes) -> None:
        self.got.append(data)


def _instrument() -> Any:
    return parse_instruments(
        {
            "instrument": [
                {
                    "symbol": "RB",
                    "commodity": "steel",
                    "product": "rebar",
                    "grade": "g",
                    "warehouse_group": "W",
                    "lot_size_t": 10,
                    "tick_fen": 100,
                    "reference_price_ticks": 3500,
                    "price_band_bps": 700,
                    "min_lots": 1,
                    "max_lots": 500,
                }
            ]
        }
    )[0]


def test_private_ring_replays_within_its_bound() -> None:
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=5, budget_messages=1_000)
    for n in range(1, 9):
        streams.apply(Ack(n, n, [(ACCEPTED, n, n, "M1", "RB", f"c{n}", BUY, 3500, 1, 0)]))
    assert streams.stream("orders", "M1").seq == 8
    sink = Sink()
    streams.subscribe("orders", "M1", sink, from_seq=4, epoch=streams.epoch)  # oldest kept: 4
    assert len(sink.got) == 5
    for from_seq in (3, 10):
        with pytest.raises(ApiError) as info:
            streams.subscribe("orders", "M1", Sink(), from_seq=from_seq, epoch=streams.epoch)
        assert info.value.code == ErrorCode.REPLAY_UNAVAILABLE
    with pytest.raises(ApiError):
        streams.subscribe("orders", "M1", Sink(), from_seq=5, epoch="0")
    nothing = Sink()
    streams.subscribe("orders", "M1", nothing, from_seq=9, epoch=streams.epoch)
    assert nothing.got == []


def test_private_replay_budget_drops_the_exchanges_oldest_message_first() -> None:
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=4, budget_messages=5)
    for n, account in enumerate(["M1", "M1", "M2", "M1", "M2", "M2", "M3"], start=1):
        streams.apply(Ack(n, n, [(ACCEPTED, n, n, account, "RB", f"c{n}", BUY, 3500, 1, 0)]))
    # seven messages, five kept: M1's first two went (the oldest of all), M2's three and M3's one stay
    assert [seq for seq, _ in streams.stream("orders", "M1").ring] == [3]
    assert [seq for seq, _ in streams.stream("orders", "M2").ring] == [1, 2, 3]
    assert streams.kept == 5
    with pytest.raises(ApiError) as info:
        streams.subscribe("orders", "M1", Sink(), from_seq=2, epoch=streams.epoch)
    assert info.value.code == ErrorCode.REPLAY_UNAVAILABLE
    assert info.value.detail == "the oldest message kept is seq 3"
    sink = Sink()
    streams.subscribe("orders", "M2", sink, from_seq=1, epoch=streams.epoch)
    assert [orjson.loads(data)["client_order_id"] for data in sink.got] == ["c3", "c5", "c6"]


def test_private_replay_order_stays_bounded_when_the_rings_bound_first() -> None:
    """Below the budget the rings' own bound drops messages: their entries in the order are compacted away."""
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=2, budget_messages=1_000)
    for n in range(1, 20_001):
        streams.apply(Ack(n, n, [(ACCEPTED, n, n, f"M{n % 3}", "RB", f"c{n}", BUY, 3500, 1, 0)]))
        assert len(streams.order) <= 2 * streams.kept + 1024
    assert streams.kept == 6
    assert [seq for seq, _ in streams.stream("orders", "M1").ring] == [6666, 6667]


@settings(max_examples=300, deadline=None)
@given(
    ring_size=st.integers(1, 6),
    budget=st.integers(1, 12),
    accounts=st.lists(st.integers(0, 3), max_size=400),
)
def test_private_replay_keeps_the_newest_within_both_bounds(ring_size: int, budget: int, accounts: list[int]) -> None:
    """After every message: a stream keeps exactly those of its messages that are among its last
    `ring_size` and, of all such messages of all streams, among the newest `budget`; the order of
    all messages kept stays within twice what is kept (plus the compaction's slack)."""
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=ring_size, budget_messages=budget)
    sent: list[tuple[str, int]] = []  # (account, its stream's seq), in the order emitted
    last: dict[str, int] = {}
    for n, number in enumerate(accounts, start=1):
        account = f"M{number}"
        streams.apply(Ack(n, n, [(ACCEPTED, n, n, account, "RB", f"c{n}", BUY, 3500, 1, 0)]))
        last[account] = last.get(account, 0) + 1
        sent.append((account, last[account]))
        within_ring = [(a, seq) for a, seq in sent if seq > last[a] - ring_size]
        expected = within_ring[-budget:]
        for a in last:
            kept = [seq for seq, _ in streams.stream("orders", a).ring]
            assert kept == [seq for b, seq in expected if b == a], (a, kept, expected)
        assert streams.kept == len(expected)
        assert len(streams.order) <= 2 * streams.kept + 1024
    for a, seq in last.items():  # what is kept replays, in order; what is not is refused
        ring = streams.stream("orders", a).ring
        if not ring:
            with pytest.raises(ApiError):
                streams.subscribe("orders", a, Sink(), from_seq=seq, epoch=streams.epoch)
            continue
        first = ring[0][0]
        if first > 1:
            with pytest.raises(ApiError):
                streams.subscribe("orders", a, Sink(), from_seq=first - 1, epoch=streams.epoch)
        sink = Sink()
        streams.subscribe("orders", a, sink, from_seq=first, epoch=streams.epoch)
        assert [orjson.loads(data)["seq"] for data in sink.got] == list(range(first, seq + 1))


def test_private_ring_defers_encoding_without_a_subscriber_and_replays_what_live_got() -> None:
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=10, budget_messages=1_000)
    streams.encoded_at_event = {}
    live = Sink()
    for n in range(1, 7):
        if n == 4:  # a subscriber from here on: messages 4-6 are encoded as they happen, 1-3 were deferred
            streams.subscribe("orders", "M1", live, from_seq=None, epoch=None)
        streams.apply(Ack(n, n, [(ACCEPTED, n, n, "M1", "RB", f"c{n}", BUY, 3500, 1, 0)]))
    ring = streams.stream("orders", "M1").ring
    assert [type(entry) for _seq, entry in ring] == [tuple] * 3 + [bytes] * 3  # (builder, arguments): not built
    assert sorted(streams.encoded_at_event) == [("orders", "M1", n) for n in (1, 2, 3)]
    replayed = Sink()
    streams.subscribe("orders", "M1", replayed, from_seq=1, epoch=streams.epoch)
    at_event = [streams.encoded_at_event[("orders", "M1", n)] for n in (1, 2, 3)]
    assert replayed.got == at_event + live.got
    assert [orjson.loads(data)["seq"] for data in replayed.got] == [1, 2, 3, 4, 5, 6]


_ORDER_EVENTS = [
    Ack(7, 1_000, [(ACCEPTED, 7, 11, "M1", "RB", "c1", BUY, 3500, 5, 0)]),
    Ack(8, 2_000, [(ACCEPTED, 8, 12, "M2", "RB", "c2", SELL, 3499, 3, 2),
                   (TRADE, 8, 90, "RB", 3500, 3, 11, "M1", 2, 12, "M2", 0, SELL)]),
    Ack(9, 3_000, [(TRADE, 9, 91, "RB", 3500, 1, 11, "M1", 1, 13, "M2", 0, -1),
                   (TRADE, 9, 92, "RB", 3501, 1, 14, "M1", 0, 15, "M1", 4, BUY)]),
    Ack(10, 4_000, [(AMENDED, 10, 11, "M1", "RB", 3498, 4, 1, True), (AMENDED, 10, 15, "M1", "RB", 3502, 6, 4, False)]),
    Ack(11, 5_000, [(CANCELLED, 11, 11, "M1", "RB", BUY, 3498, 1, 0, CancelReason.REQUESTED),
                    (CANCELLED, 11, 15, "M1", "RB", SELL, 3502, 2, 2, CancelReason.SELF_TRADE)]),
    Ack(12, 6_000, [(REJECTED, 12, "M1", "c9", RejectCode.UNKNOWN_ORDER, "x"),
                    (REJECTED, 12, "", "RB", RejectCode.UNKNOWN_ORDER, "y")]),
]  # fmt: skip


def _order_streams(subscribed: bool) -> tuple[PrivateStreams, dict[tuple[str, str], Sink]]:
    """The orders and executions of _ORDER_EVENTS, with subscribers from the start (each message built
    at its event) or without (built when a resume replays it)."""
    streams = PrivateStreams(
        lambda _s, ticks: f"{ticks // 100}.{ticks % 100:02d}", ring_size=100, budget_messages=1_000
    )
    streams.encoded_at_event = {}
    sinks = {(channel, account): Sink() for channel in ("orders", "executions") for account in ("M1", "M2")}
    if subscribed:
        for (channel, account), sink in sinks.items():
            streams.subscribe(channel, account, sink, from_seq=None, epoch=None)
    for ack in _ORDER_EVENTS:
        streams.apply(ack)
    if not subscribed:
        for (channel, account), sink in sinks.items():
            streams.subscribe(channel, account, sink, from_seq=1, epoch=streams.epoch)
    return streams, sinks


def test_private_order_and_execution_messages_are_the_same_built_live_or_at_replay() -> None:
    live_streams, live = _order_streams(subscribed=True)
    replay_streams, replayed = _order_streams(subscribed=False)
    for key in live:
        assert replayed[key].got == live[key].got, key
    assert live_streams.open_orders == replay_streams.open_orders == {}
    orders = [orjson.loads(data) for data in live["orders", "M1"].got]
    executions = [orjson.loads(data) for data in live["executions", "M1"].got]
    assert [m["seq"] for m in orders] == list(range(1, 11))
    assert [m["seq"] for m in executions] == [1, 2, 3, 4]
    assert orders[0] == {
        "type": "orders", "account": "M1", "seq": 1, "journal_seq": 7, "ts_ns": 1_000, "event": "accepted",
        "order_id": 11, "instrument": "RB", "client_order_id": "c1", "side": "buy", "price": "35.00",
        "quantity_lots": 5, "open_lots": 5,
    }  # fmt: skip
    assert orders[1] == {
        "type": "orders", "account": "M1", "seq": 2, "journal_seq": 8, "ts_ns": 2_000, "event": "filled",
        "order_id": 11, "instrument": "RB", "side": "buy", "price": "35.00", "filled_lots": 3, "open_lots": 2,
    }  # fmt: skip
    assert [m["liquidity"] for m in executions] == ["maker", "auction", "taker", "maker"]
    assert executions[3] == {
        "type": "executions", "account": "M1", "seq": 4, "journal_seq": 9, "ts_ns": 3_000, "trade_id": 92,
        "order_id": 15, "instrument": "RB", "side": "sell", "price": "35.01", "quantity_lots": 1, "open_lots": 4,
        "liquidity": "maker",
    }  # fmt: skip
    assert orders[5] == {
        "type": "orders", "account": "M1", "seq": 6, "journal_seq": 10, "ts_ns": 4_000, "event": "amended",
        "order_id": 11, "instrument": "RB", "price": "34.98", "quantity_lots": 4, "open_lots": 1,
        "priority_kept": True,
    }  # fmt: skip
    assert orders[9] == {
        "type": "orders", "account": "M1", "seq": 10, "journal_seq": 12, "ts_ns": 6_000, "event": "rejected",
        "reference": "c9", "code": "UNKNOWN_ORDER",
    }  # fmt: skip
    assert [(m["reason"], m["cancelled_lots"], m["open_lots"]) for m in orders[7:9]] == [
        ("requested", 1, 0),
        ("self_trade", 2, 2),
    ]
    assert [orjson.loads(d)["event"] for d in live["orders", "M2"].got] == ["accepted", "filled", "filled"]


def test_a_deferred_private_message_that_changes_after_the_fact_fails_the_replay_check() -> None:
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=10, budget_messages=1_000)
    streams.encoded_at_event = {}
    holds: list[dict[str, Any]] = [{"hold_id": 1, "amount": "1.00"}]
    streams.emit("balances", "M1", {"type": "balances", "account": "M1", "seq": 0, "holds": holds})
    holds[0]["amount"] = "2.00"  # a push sharing live data with the read models: its replay would lie
    with pytest.raises(AssertionError):
        streams.subscribe("balances", "M1", Sink(), from_seq=1, epoch=streams.epoch)


def test_a_message_built_late_from_arguments_that_changed_fails_the_replay_check() -> None:
    streams = PrivateStreams(lambda _s, ticks: f"{ticks}.00", ring_size=10, budget_messages=1_000)
    streams.encoded_at_event = {}

    def build(seq: int, account: str, holds: list[int]) -> dict[str, Any]:
        return {"type": "balances", "account": account, "seq": seq, "holds": list(holds)}

    streams.emit_built("balances", "M1", build, ("M1", (1, 2)))
    holds = [1, 2]
    streams.emit_built("balances", "M1", build, ("M1", holds))
    replayed = Sink()
    streams.subscribe("balances", "M1", replayed, from_seq=1, epoch=streams.epoch)
    streams.unsubscribe("balances", "M1", replayed)
    assert [orjson.loads(data) for data in replayed.got] == [
        {"type": "balances", "account": "M1", "seq": seq, "holds": [1, 2]} for seq in (1, 2)
    ]
    holds.append(3)  # an argument that later events change: its replay would lie
    with pytest.raises(AssertionError):
        streams.subscribe("balances", "M1", Sink(), from_seq=1, epoch=streams.epoch)


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_fen_to_cny_is_the_amount_with_two_places(amount_fen: int) -> None:
    sign, magnitude = ("-", -amount_fen) if amount_fen < 0 else ("", amount_fen)
    assert fen_to_cny(amount_fen) == f"{sign}{magnitude // 100}.{magnitude % 100:02d}"
    assert Decimal(fen_to_cny(amount_fen)) * 100 == amount_fen


def test_book_checksum_is_crc32_of_the_canonical_string() -> None:
    text = "bids:3500.00:12,3499.00:3;asks:3501.00:4"
    assert book_checksum([("3500.00", 12), ("3499.00", 3)], [("3501.00", 4)]) == zlib.crc32(text.encode())


def test_market_data_book_follows_events_and_counts_seq() -> None:
    market = MarketData()
    from api._marketdata import InstrumentData

    market.instruments["RB"] = InstrumentData(_instrument())
    sink = Sink()
    market.subscribe("book", "RB", sink)
    market.apply(None, Ack(1, 1, [(BOOK, 1, "RB", BUY, 3500, 5), (BOOK, 1, "RB", SELL, 3510, 2)]))
    market.apply(None, Ack(2, 2, [(TRADE, 2, 1, "RB", 3510, 2, 9, "A", 0, 1, "B", 0, BUY),
                                  (BOOK, 2, "RB", SELL, 3510, 0)]))  # fmt: skip
    data = market.instruments["RB"]
    assert data.book_seq == 2
    assert data.top(10) == ([("3500.00", 5)], [])
    assert len(sink.got) == 2
    assert data.volume_lots == 2
    assert data.turnover_fen == 3510 * 100 * 2 * 10


def test_protocol_doc_has_an_example_of_every_request_and_push() -> None:
    import re
    from pathlib import Path

    from api._protocol import PUSHES, REQUESTS

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    compact = re.sub(r"\s", "", text)
    missing = [t for t in [*REQUESTS.models, *PUSHES] if f'"type":"{t}"' not in compact]
    assert not missing, f"docs/protocol.md has no example of {missing}"


def test_every_request_example_in_the_protocol_doc_is_a_valid_request() -> None:
    """Every request example in docs/protocol.md, in a JSON code block or inline in the text (an
    object whose first keys are a request `type` and its `id`), is read as the gateway reads a
    frame (``REQUESTS.parse_json`` on the example's own text) and must be that request: the doc
    cannot drift from the models. Request examples hold no placeholders (no `...`: only results
    and pushes are shortened). An object of a request's type without an `id` second must be a push
    of that name (`orders`, `balances`, `receipts`). Every request type has a valid example."""
    import json
    import re
    from collections import Counter
    from pathlib import Path

    from pydantic import ValidationError

    from api._protocol import PUSHES, REQUESTS

    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    checked: Counter[str] = Counter()
    problems: list[str] = []
    for match in re.finditer(r'\{\s*"type"\s*:\s*"([A-Za-z_]+)"\s*(,\s*"id"\s*:)?', text):
        name, with_id = match.group(1), match.group(2)
        where = f"docs/protocol.md:{text.count(chr(10), 0, match.start()) + 1} ({name})"
        if name not in REQUESTS.models:
            continue
        if not with_id:
            if name not in PUSHES:
                problems.append(f"{where}: a request example needs its id right after its type")
            continue
        try:
            _value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc})")
            continue
        try:
            request = REQUESTS.parse_json(text[match.start() : end])
        except ValidationError as exc:
            problems.append(f"{where}: {exc}")
            continue
        assert request.type == name, (where, request)  # type: ignore[attr-defined]
        checked[name] += 1
    assert not problems, "\n".join(problems)
    assert set(checked) == set(REQUESTS.models), set(REQUESTS.models) - set(checked)
    assert sum(checked.values()) >= len(REQUESTS.models)
