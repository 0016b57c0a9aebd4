"""The wire protocol: one pydantic model per request, result and push message.

Every frame is one JSON object in a text frame. A request names its `type`
and carries a client request `id`; it gets exactly one response, either
``{"type": "accepted", "id", "request", "result"}`` or
``{"type": "error", "id", "code", "message"}``. Pushes (market data, private
streams, heartbeats) carry no request id.

Units on the wire: prices are decimal strings in CNY per tonne (at most two
decimals, a whole number of the instrument's ticks); quantities are integer
lots; amounts are decimal strings in CNY; times are integer nanoseconds
(``ts_ns``) or milliseconds (``timestamp_ms``) since the Unix epoch.

All models forbid unknown fields and are strict (a number in a string, or a
string for a number, is refused). New request types are added with
``REQUESTS.register(model)``; the gateway pairs each with a handler.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from api._errors import ErrorCode
from api._limits import MAX_QUERY_ROWS
from matching import MAX_LOTS_PER_ORDER

__all__ = [
    "CHANNELS",
    "PRIVATE_CHANNELS",
    "PUBLIC_CHANNELS",
    "PUSHES",
    "REQUESTS",
    "RESULTS",
    "Accepted",
    "AmendOrderRequest",
    "AmendResult",
    "BookPush",
    "CancelOrderRequest",
    "CancelResult",
    "ErrorResponse",
    "ExecutionPush",
    "Fill",
    "FillsRequest",
    "FillsResult",
    "HeartbeatPush",
    "InstrumentInfo",
    "InstrumentsRequest",
    "InstrumentsResult",
    "LoginRequest",
    "LoginResult",
    "MassCancelRequest",
    "MassCancelResult",
    "NewOrderRequest",
    "OrderInfo",
    "OrderPush",
    "OrderResult",
    "OrdersRequest",
    "OrdersResult",
    "PingRequest",
    "PongResult",
    "RequestRegistry",
    "SetTradingStateRequest",
    "SnapshotRequest",
    "StatePush",
    "SubscribeRequest",
    "SubscribeResult",
    "TickerPush",
    "TopPush",
    "TradeInfo",
    "TradesPush",
    "TradingStateResult",
    "UnsubscribeRequest",
    "WireModel",
]

MAX_ORDER_ID = (1 << 63) - 1
MAX_TIMESTAMP_MS = 1 << 53

RequestId = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$", description="client request id, echoed back")]
Symbol = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,32}$", description="instrument symbol")]
Account = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$", description="member account")]
Price = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,9}(\.[0-9]{1,2})?$",
        description="CNY per tonne, a decimal string with at most two places, a whole number of ticks",
        examples=["3500.00"],
    ),
]
Lots = Annotated[int, Field(ge=1, le=MAX_LOTS_PER_ORDER, description="quantity in lots")]
OrderId = Annotated[int, Field(ge=1, le=MAX_ORDER_ID)]
MAX_RECEIPTS_PER_ORDER = 100
"""Receipts a sell order may name (the warehouse's list limit)."""
ReceiptNumber = Annotated[
    str,
    Field(
        pattern=r"^[\x21-\x2b\x2d-\x7e]{1,96}$",
        description="warehouse receipt number (registered, or <warehouse>#<serial> as the exchange issues them)",
    ),
]
Seq = Annotated[int, Field(ge=0, le=MAX_ORDER_ID)]
QueryLimit = Annotated[int, Field(ge=1, le=MAX_QUERY_ROWS)]

PUBLIC_CHANNELS = ("book", "top", "trades", "ticker", "state")
PRIVATE_CHANNELS = ("orders", "executions")
CHANNELS = PUBLIC_CHANNELS + PRIVATE_CHANNELS
Channel = Literal["book", "top", "trades", "ticker", "state", "orders", "executions"]
PublicChannel = Literal["book", "top", "trades", "ticker", "state"]
SideName = Literal["buy", "sell"]
StateName = Literal["closed", "auction", "continuous", "halted", "break"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ----------------------------------------------------------------- requests


class LoginRequest(WireModel):
    """Authenticate the connection. `signature` is the lowercase hex
    HMAC-SHA256, keyed with the key's signing key, of
    ``f"{key_id}\\n{timestamp_ms}\\n{nonce}"`` (see docs/protocol.md)."""

    type: Literal["login"]
    id: RequestId
    key_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
    timestamp_ms: Annotated[int, Field(ge=0, le=MAX_TIMESTAMP_MS)]
    nonce: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    cancel_on_disconnect: bool = False


class PingRequest(WireModel):
    type: Literal["ping"]
    id: RequestId


class NewOrderRequest(WireModel):
    type: Literal["new_order"]
    id: RequestId
    instrument: Symbol
    client_order_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,36}$")]
    side: SideName
    price: Price | None = None
    quantity_lots: Lots
    time_in_force: Literal["gtc", "day", "ioc", "fok"] = "gtc"
    order_type: Literal["limit", "market"] = "limit"
    post_only: bool = False
    stp_mode: Literal["none", "cancel_newest", "cancel_oldest", "cancel_both", "decrement"] = "cancel_newest"
    receipts: Annotated[
        tuple[ReceiptNumber, ...],
        Field(
            max_length=MAX_RECEIPTS_PER_ORDER,
            description="sell only: the warehouse receipts the order locks, in this order (else the oldest)",
        ),
    ] = ()

    @model_validator(mode="after")
    def _price_matches_type(self) -> NewOrderRequest:
        if self.order_type == "limit" and self.price is None:
            raise ValueError("a limit order needs a price")
        if self.order_type == "market" and self.price is not None:
            raise ValueError("a market order takes no price")
        return self


class CancelOrderRequest(WireModel):
    type: Literal["cancel_order"]
    id: RequestId
    order_id: OrderId


class AmendOrderRequest(WireModel):
    """`quantity_lots` is the new total size (filled lots included)."""

    type: Literal["amend_order"]
    id: RequestId
    order_id: OrderId
    price: Price
    quantity_lots: Lots


class MassCancelRequest(WireModel):
    """Cancel every open order of the account, or only those in `instrument`."""

    type: Literal["mass_cancel"]
    id: RequestId
    instrument: Symbol | None = None


class SetTradingStateRequest(WireModel):
    """Staff only: halt, resume, open or close an instrument."""

    type: Literal["set_trading_state"]
    id: RequestId
    instrument: Symbol
    state: StateName


class InstrumentsRequest(WireModel):
    type: Literal["instruments"]
    id: RequestId


class OrdersRequest(WireModel):
    """The account's orders, newest first. `account` only for staff."""

    type: Literal["orders"]
    id: RequestId
    status: Literal["open", "all"] = "open"
    instrument: Symbol | None = None
    before_order_id: OrderId | None = None
    limit: QueryLimit = 100
    account: Account | None = None


class FillsRequest(WireModel):
    """The account's fills with seq > `since_seq`, oldest first. `account` only for staff."""

    type: Literal["fills"]
    id: RequestId
    instrument: Symbol | None = None
    since_seq: Seq = 0
    limit: QueryLimit = 100
    account: Account | None = None


class SubscribeRequest(WireModel):
    """Public channels need `instrument`; private channels take the account
    from the key (staff name it in `account`) and may resume with `from_seq`
    (the first sequence number wanted) within the same `epoch`."""

    type: Literal["subscribe"]
    id: RequestId
    channel: Channel
    instrument: Symbol | None = None
    account: Account | None = None
    from_seq: Annotated[int, Field(ge=1, le=MAX_ORDER_ID)] | None = None
    epoch: Annotated[str, Field(pattern=r"^[0-9a-f]{1,32}$")] | None = None


class UnsubscribeRequest(WireModel):
    type: Literal["unsubscribe"]
    id: RequestId
    channel: Channel
    instrument: Symbol | None = None
    account: Account | None = None


class SnapshotRequest(WireModel):
    """Send a fresh snapshot of a subscribed public channel (after a gap)."""

    type: Literal["snapshot"]
    id: RequestId
    channel: PublicChannel
    instrument: Symbol


class RequestRegistry:
    """The request models by `type`; ``parse`` validates a frame into one of them."""

    def __init__(self) -> None:
        self.models: dict[str, type[WireModel]] = {}
        self._adapter: TypeAdapter[Any] | None = None

    def register(self, model: type[WireModel]) -> type[WireModel]:
        field = model.model_fields["type"]
        args: tuple[Any, ...] = tuple(getattr(field.annotation, "__args__", ()))
        assert len(args) == 1, f"{model.__name__}.type must be one Literal"
        name = args[0]
        assert isinstance(name, str), name
        assert name not in self.models or self.models[name] is model, f"request type {name!r} registered twice"
        assert "id" in model.model_fields, model
        self.models[name] = model
        self._adapter = None
        return model

    def parse(self, data: dict[str, Any]) -> WireModel:
        """Validate an already-decoded object (its `type` known to be registered)."""
        model = self.models[data["type"]]
        return model.model_validate(data)

    def parse_json(self, text: str | bytes) -> WireModel:
        """Decode and validate a frame in one pass (pydantic's JSON parser, the model chosen by `type`).

        Raises ValidationError for anything that is not a valid registered request: the caller then
        decodes the frame step by step to tell which error it is. A frame this accepts is one that
        decoding first and validating the object (``parse``) accepts, with the same result."""
        adapter = self._adapter
        if adapter is None:
            models = tuple(self.models.values())
            union: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
            adapter = self._adapter = TypeAdapter(union)
        request: WireModel = adapter.validate_json(text)
        return request


REQUESTS = RequestRegistry()
for _model in (
    LoginRequest,
    PingRequest,
    NewOrderRequest,
    CancelOrderRequest,
    AmendOrderRequest,
    MassCancelRequest,
    SetTradingStateRequest,
    InstrumentsRequest,
    OrdersRequest,
    FillsRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    SnapshotRequest,
):
    REQUESTS.register(_model)


# ---------------------------------------------------------------- responses


class Accepted(WireModel):
    type: Literal["accepted"]
    id: RequestId
    request: str = Field(description="the type of the request answered")
    result: dict[str, Any] = Field(description="the result model of that request type (see RESULTS)")


class ErrorResponse(WireModel):
    type: Literal["error"]
    id: RequestId | None = Field(description="null when the frame could not be read far enough to find an id")
    code: ErrorCode
    message: str
    seq: Seq | None = Field(default=None, description="the journal seq when the core rejected a sequenced command")


class LoginResult(WireModel):
    role: Literal["trader", "operator", "bank", "staff"]
    subject: str = Field(description="the member account, warehouse or bank the key acts for ('' for staff)")
    session_id: str
    epoch: str = Field(description="identifies this server run; private sequence numbers are valid within it")
    server_time_ms: int
    cancel_on_disconnect: bool


class PongResult(WireModel):
    server_time_ms: int


class Fill(WireModel):
    trade_id: int
    price: Price
    quantity_lots: int


class OrderResult(WireModel):
    """The answer to new_order: what happened on entry."""

    order_id: int
    client_order_id: str
    seq: int
    ts_ns: int
    duplicate: bool = Field(description="true when the client order id was used before; nothing was applied")
    status: Literal["open", "partially_filled", "filled", "cancelled", "duplicate"]
    filled_lots: int
    open_lots: int
    cancelled_lots: int
    fills: list[Fill]


class CancelResult(WireModel):
    order_id: int
    seq: int
    ts_ns: int
    cancelled_lots: int


class AmendResult(WireModel):
    order_id: int
    seq: int
    ts_ns: int
    price: Price
    quantity_lots: int
    open_lots: int
    priority_kept: bool
    fills: list[Fill]


class MassCancelResult(WireModel):
    seq: int
    ts_ns: int
    cancelled_orders: int


class TradingStateResult(WireModel):
    seq: int
    ts_ns: int
    instrument: str
    state: StateName


class InstrumentInfo(WireModel):
    symbol: str
    commodity: str
    product: str
    grade: str
    warehouse_group: str
    lot_size_t: int
    tick: Price
    reference_price: Price
    band_low: Price
    band_high: Price
    min_lots: int
    max_lots: int
    state: StateName


class InstrumentsResult(WireModel):
    instruments: list[InstrumentInfo]


class OrderInfo(WireModel):
    order_id: int
    instrument: str
    client_order_id: str
    side: SideName
    time_in_force: Literal["gtc", "day", "ioc", "fok"]
    price: Price
    quantity_lots: int
    filled_lots: int
    open_lots: int
    cancelled_lots: int
    status: Literal["open", "partially_filled", "filled", "cancelled"]
    last_seq: int


class OrdersResult(WireModel):
    account: str
    orders: list[OrderInfo]


class TradeInfo(WireModel):
    trade_id: int
    seq: int
    ts_ns: int
    instrument: str
    price: Price
    quantity_lots: int
    side: SideName
    order_id: int
    liquidity: Literal["maker", "taker", "auction"]


class FillsResult(WireModel):
    account: str
    fills: list[TradeInfo]


class SubscribeResult(WireModel):
    channel: Channel
    instrument: str | None = None
    account: str | None = None
    seq: int = Field(description="the last sequence number already published on the channel")
    epoch: str | None = None


RESULTS: dict[str, type[WireModel]] = {
    "login": LoginResult,
    "ping": PongResult,
    "new_order": OrderResult,
    "cancel_order": CancelResult,
    "amend_order": AmendResult,
    "mass_cancel": MassCancelResult,
    "set_trading_state": TradingStateResult,
    "instruments": InstrumentsResult,
    "orders": OrdersResult,
    "fills": FillsResult,
    "subscribe": SubscribeResult,
    "unsubscribe": SubscribeResult,
    "snapshot": SubscribeResult,
}

# -------------------------------------------------------------------- pushes

Level = tuple[Price, int]


class BookPush(WireModel):
    """Full-depth book: a snapshot (all levels) then deltas (changed levels,
    lots 0 = level gone). `checksum`: CRC-32 of the top CHECKSUM_LEVELS
    levels after applying this message (see docs/protocol.md)."""

    type: Literal["book"]
    instrument: str
    seq: int
    snapshot: bool
    bids: list[Level]
    asks: list[Level]
    checksum: int


class TopPush(WireModel):
    """The top BOOK_TOP_LEVELS levels of each side, whole, whenever they change."""

    type: Literal["top"]
    instrument: str
    seq: int
    bids: list[Level]
    asks: list[Level]
    checksum: int


class PublicTrade(WireModel):
    trade_id: int
    ts_ns: int
    price: Price
    quantity_lots: int
    aggressor: Literal["buy", "sell", "auction"]


class TradesPush(WireModel):
    type: Literal["trades"]
    instrument: str
    seq: int
    snapshot: bool
    trades: list[PublicTrade]


class TickerPush(WireModel):
    """Daily statistics (the day is the exchange's calendar day, UTC+8)."""

    type: Literal["ticker"]
    instrument: str
    seq: int
    last: Price | None
    open: Price | None
    high: Price | None
    low: Price | None
    volume_lots: int
    turnover: str = Field(description="CNY, decimal string with two places")
    trade_count: int
    best_bid: Price | None
    best_ask: Price | None
    reference_price: Price


class StatePush(WireModel):
    """Trading state and, during the call auction, the indicative uncross."""

    type: Literal["state"]
    instrument: str
    seq: int
    state: StateName
    reference_price: Price
    indicative_price: Price | None
    indicative_volume_lots: int
    indicative_imbalance_lots: int


class OrderPush(WireModel):
    """A change to one of the account's orders (private channel `orders`)."""

    type: Literal["orders"]
    account: str
    seq: int
    journal_seq: int
    ts_ns: int
    event: Literal["accepted", "cancelled", "amended", "filled", "rejected"]
    order_id: int | None = None
    instrument: str | None = None
    client_order_id: str | None = None
    side: SideName | None = None
    price: Price | None = None
    quantity_lots: int | None = None
    open_lots: int | None = None
    filled_lots: int | None = None
    cancelled_lots: int | None = None
    reason: str | None = None
    priority_kept: bool | None = None
    code: ErrorCode | None = None
    reference: str | None = None


class ExecutionPush(WireModel):
    """A fill of one of the account's orders (private channel `executions`)."""

    type: Literal["executions"]
    account: str
    seq: int
    journal_seq: int
    ts_ns: int
    trade_id: int
    order_id: int
    instrument: str
    side: SideName
    price: Price
    quantity_lots: int
    open_lots: int
    liquidity: Literal["maker", "taker", "auction"]


class HeartbeatEntry(WireModel):
    channel: Channel
    instrument: str | None = None
    account: str | None = None
    seq: int


class HeartbeatPush(WireModel):
    type: Literal["heartbeat"]
    ts_ns: int
    subscriptions: list[HeartbeatEntry]


PUSHES: dict[str, type[WireModel]] = {
    "book": BookPush,
    "top": TopPush,
    "trades": TradesPush,
    "ticker": TickerPush,
    "state": StatePush,
    "orders": OrderPush,
    "executions": ExecutionPush,
    "heartbeat": HeartbeatPush,
}
