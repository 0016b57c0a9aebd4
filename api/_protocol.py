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

from collections.abc import Callable
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
    "AddOperatorRequest",
    "AddWarehouseRequest",
    "AmendOrderRequest",
    "AmendResult",
    "ApproveWithdrawalRequest",
    "BalanceInfo",
    "BalancesPush",
    "BalancesRequest",
    "BalancesResult",
    "BankFileInfo",
    "BankFilesRequest",
    "BankFilesResult",
    "BookPush",
    "BreakInfo",
    "BreakResolvedResult",
    "CancelOrderRequest",
    "CancelResult",
    "CancelWithdrawalRequest",
    "ConfirmDeliveryRequest",
    "ConfirmLoadOutRequest",
    "ConfirmReceiptRequest",
    "DealActionResult",
    "DealInfo",
    "DealsRequest",
    "DealsResult",
    "DeclareDefaultRequest",
    "DeliveryInfo",
    "DeliveryPush",
    "ErrorResponse",
    "ExecutionPush",
    "Fill",
    "FillsRequest",
    "FillsResult",
    "FreezeReceiptRequest",
    "HeartbeatPush",
    "HoldInfo",
    "InstrumentInfo",
    "InstrumentsRequest",
    "InstrumentsResult",
    "ListInstrumentRequest",
    "ListedResult",
    "LoginRequest",
    "LoginResult",
    "MassCancelRequest",
    "MassCancelResult",
    "MergeReceiptsRequest",
    "NewOrderRequest",
    "OperatorResult",
    "OrderInfo",
    "OrderPush",
    "OrderResult",
    "OrdersRequest",
    "OrdersResult",
    "PayDealRequest",
    "PingRequest",
    "PledgeReceiptRequest",
    "PongResult",
    "ReceiptActionResult",
    "ReceiptInfo",
    "ReceiptPush",
    "ReceiptRuleResult",
    "ReceiptsChangedResult",
    "ReceiptsRequest",
    "ReceiptsResult",
    "RegisterReceiptRequest",
    "ReleasePledgeRequest",
    "RequestLoadOutRequest",
    "RequestRegistry",
    "RequestWithdrawalRequest",
    "RequireReceiptsRequest",
    "ResolveBreakRequest",
    "ResolveDisputeRequest",
    "SessionPhaseWire",
    "SetTradingStateRequest",
    "SettleDeliveryRequest",
    "SnapshotRequest",
    "SplitReceiptRequest",
    "StateName",
    "StatePush",
    "StatementInfo",
    "SubscribeRequest",
    "SubscribeResult",
    "SweepDeadlinesRequest",
    "SweepResult",
    "TickerPush",
    "TopPush",
    "TradeInfo",
    "TradesPush",
    "TradingStateResult",
    "UnfreezeReceiptRequest",
    "UnsubscribeRequest",
    "VoidReceiptRequest",
    "WarehouseResult",
    "WireModel",
    "WithdrawLoadOutRequest",
    "WithdrawalInfo",
    "WithdrawalResult",
    "WithdrawalsRequest",
    "WithdrawalsResult",
]

MAX_ORDER_ID = (1 << 63) - 1
MAX_WEIGHT_KG = 10**12
"""The largest weight the wire takes (the warehouse's own per-receipt limit is lower and answered BAD_WEIGHT)."""
MAX_TEXT_CHARS = 200
"""The longest free text (lot numbers, certificate, location) the wire takes; the warehouse checks its own limits."""
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
Amount = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,13}(\.[0-9]{1,2})?$",
        description="CNY, a decimal string with at most two places (a whole number of fen)",
        examples=["1250000.00"],
    ),
]
DealId = Annotated[int, Field(ge=1, le=MAX_ORDER_ID, description="the deal id (the id of the trade that made it)")]
Identifier = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$")]
WeightKg = Annotated[int, Field(ge=1, le=MAX_WEIGHT_KG, description="kilograms, a positive integer")]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]

PUBLIC_CHANNELS = ("book", "top", "trades", "ticker", "state")
PRIVATE_CHANNELS = ("orders", "executions", "balances", "receipts", "deliveries")
CHANNELS = PUBLIC_CHANNELS + PRIVATE_CHANNELS
Channel = Literal[
    "book", "top", "trades", "ticker", "state", "orders", "executions", "balances", "receipts", "deliveries"
]
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
    """Staff only: halt, resume, open or close an instrument, or move it to the midday break. The
    core's state machine decides which moves exist (another is BAD_STATE)."""

    type: Literal["set_trading_state"]
    id: RequestId
    instrument: Symbol
    state: StateName


class InstrumentsRequest(WireModel):
    type: Literal["instruments"]
    id: RequestId


class OrdersRequest(WireModel):
    """The account's orders, newest first. Staff name `account`; a bank names one member it
    supervises (read-only)."""

    type: Literal["orders"]
    id: RequestId
    status: Literal["open", "all"] = "open"
    instrument: Symbol | None = None
    before_order_id: OrderId | None = None
    limit: QueryLimit = 100
    account: Account | None = None


class FillsRequest(WireModel):
    """The account's fills with seq > `since_seq`, oldest first: at most `limit` trades, in whole
    commands (the next page: `since_seq` = the last fill's seq). Staff name `account`; a bank names
    one member it supervises (read-only)."""

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


# --------------------------------------------------- money and goods: queries


class BalancesRequest(WireModel):
    """Balances and open holds: a trader's own member; staff name `account`; a bank sees its members
    (all of them, or the one named in `account`); staff without `account` see every member.
    Holds are listed newest first, up to `holds_limit` per account."""

    type: Literal["balances"]
    id: RequestId
    account: Account | None = None
    holds_limit: QueryLimit = 100
    limit: QueryLimit = Field(default=100, description="at most this many accounts (sorted by id)")


class WithdrawalsRequest(WireModel):
    """Withdrawal requests: a trader's own member's; a bank's members'; staff all (or one `account`).
    `status` "open": pending approval or approved (waiting for the bank)."""

    type: Literal["withdrawals"]
    id: RequestId
    account: Account | None = None
    status: Literal["open", "all"] = "open"
    limit: QueryLimit = 100


class ReceiptsRequest(WireModel):
    """Warehouse receipts: a trader's member holds; an operator's warehouse keeps; a bank those
    pledged to it; staff name `account` or `warehouse`. `state` "live": registered, active,
    locked, pledged, frozen, loading. In order of their numbers (as strings), `limit` at a time:
    the next page has `after_number` = the last number of this one."""

    type: Literal["receipts"]
    id: RequestId
    account: Account | None = None
    warehouse: Identifier | None = None
    state: Literal["live", "all"] = "live"
    after_number: ReceiptNumber | None = None
    limit: QueryLimit = 100


class DealsRequest(WireModel):
    """Deals and their deliveries, newest first: a trader's member's side of its deals; an
    operator's the deliveries at its warehouse; staff name `account` or `warehouse`."""

    type: Literal["deals"]
    id: RequestId
    account: Account | None = None
    warehouse: Identifier | None = None
    status: Literal["open", "all"] = "open"
    before_deal_id: DealId | None = None
    limit: QueryLimit = 100


class BankFilesRequest(WireModel):
    """A bank's files (imported, duplicate or refused), statements, open reconciliation breaks and
    the withdrawal instructions waiting for its answer. A bank key sees its own; staff name `bank`."""

    type: Literal["bank_files"]
    id: RequestId
    bank: Identifier | None = None


# -------------------------------------------------- money and goods: commands


class RequestWithdrawalRequest(WireModel):
    """A trader asks to take `amount` out of its member's available funds (staff name `account`).
    The amount is frozen at once; above the approval threshold a staff user other than the
    requester approves. `withdrawal_id` is the client's id: a repeat is answered as the first."""

    type: Literal["request_withdrawal"]
    id: RequestId
    withdrawal_id: Identifier
    amount: Amount
    account: Account | None = None


class ApproveWithdrawalRequest(WireModel):
    """Staff approve a withdrawal waiting for approval (maker-checker: not its requester)."""

    type: Literal["approve_withdrawal"]
    id: RequestId
    withdrawal_id: Identifier


class PayDealRequest(WireModel):
    """The buyer pays a deal: the rest of the price (beyond the margin) is frozen into escrow,
    and the delivery waits for the warehouse's confirmation."""

    type: Literal["pay_deal"]
    id: RequestId
    deal_id: DealId


class ResolveDisputeRequest(WireModel):
    """Staff resolve a disputed delivery: "adjust" settles at `amount` (paid to the seller before
    fees) for the delivered weight; "cancel" cancels the deal and returns the receipts."""

    type: Literal["resolve_dispute"]
    id: RequestId
    deal_id: DealId
    resolution: Literal["adjust", "cancel"]
    amount: Amount | None = None

    @model_validator(mode="after")
    def _amount_matches_resolution(self) -> ResolveDisputeRequest:
        if self.resolution == "adjust" and self.amount is None:
            raise ValueError("an adjust resolution needs an amount")
        if self.resolution == "cancel" and self.amount is not None:
            raise ValueError("a cancel resolution takes no amount")
        return self


class ConfirmReceiptRequest(WireModel):
    """The holder confirms a receipt the warehouse registered for it: it becomes active (sellable)."""

    type: Literal["confirm_receipt"]
    id: RequestId
    number: ReceiptNumber


class RequestLoadOutRequest(WireModel):
    """The holder asks to take the goods of an active receipt out of the warehouse."""

    type: Literal["request_load_out"]
    id: RequestId
    number: ReceiptNumber


class RegisterReceiptRequest(WireModel):
    """An operator registers goods taken in at its warehouse, after inspection, for member `holder`.
    Steel: `pieces` > 0, `steel_grade` and `dimensions`; coal: `calorific_kcal_per_kg`,
    `moisture_bps` and `sulphur_bps`, pieces 0. The receipt waits for the holder's confirmation."""

    type: Literal["register_receipt"]
    id: RequestId
    number: ReceiptNumber
    holder: Account
    instrument: Symbol
    weight_kg: WeightKg
    pieces: Annotated[int, Field(ge=0, le=10**9)] = 0
    lot_numbers: Text = ""
    certificate_no: Text
    calorific_kcal_per_kg: Annotated[int, Field(ge=0, le=100_000)] = 0
    moisture_bps: Annotated[int, Field(ge=0, le=10_000)] = 0
    sulphur_bps: Annotated[int, Field(ge=0, le=10_000)] = 0
    steel_grade: Text = ""
    dimensions: Text = ""
    location: Text = ""


class ConfirmDeliveryRequest(WireModel):
    """An operator confirms delivery of a paid deal at its warehouse: the weight actually delivered
    and the quality result (`pieces` for steel, 0 for coal). Within tolerance and passed: settled at
    once (delivery versus payment); otherwise the delivery is disputed and staff resolve it."""

    type: Literal["confirm_delivery"]
    id: RequestId
    deal_id: DealId
    actual_weight_kg: WeightKg
    quality_pass: bool
    pieces: Annotated[int, Field(ge=0, le=10**9)] = 0


class ConfirmLoadOutRequest(WireModel):
    """An operator confirms the goods of a receipt in load-out left its warehouse (`weight_kg` from
    the scale); the receipt is cancelled."""

    type: Literal["confirm_load_out"]
    id: RequestId
    number: ReceiptNumber
    weight_kg: WeightKg


# ------------------------------------------ receipts, pledges and staff actions


class CancelWithdrawalRequest(WireModel):
    """Withdraw a withdrawal request that waits for approval; its hold is released. A trader
    cancels its own member's requests (another member's id is answered UNKNOWN_REQUEST); staff any."""

    type: Literal["cancel_withdrawal"]
    id: RequestId
    withdrawal_id: Identifier


class PledgeReceiptRequest(WireModel):
    """The holder pledges an active receipt to `bank` (a partner bank of the exchange): the receipt
    cannot be sold, split, merged or loaded out until the bank releases it."""

    type: Literal["pledge_receipt"]
    id: RequestId
    number: ReceiptNumber
    bank: Identifier


class ReleasePledgeRequest(WireModel):
    """A bank releases a receipt pledged to it: the receipt is active again."""

    type: Literal["release_pledge"]
    id: RequestId
    number: ReceiptNumber


class SplitReceiptRequest(WireModel):
    """The holder splits `weight_kg` (steel: and `pieces`; coal: pieces 0) off an active receipt
    into a new active receipt numbered ``<warehouse>#<serial>``."""

    type: Literal["split_receipt"]
    id: RequestId
    number: ReceiptNumber
    weight_kg: WeightKg
    pieces: Annotated[int, Field(ge=0, le=10**9)] = 0


class MergeReceiptsRequest(WireModel):
    """The holder merges 2 or more active receipts of the same warehouse and goods into one new
    receipt (coal: the least favourable quality of the sources; steel: equal grade and dimensions)."""

    type: Literal["merge_receipts"]
    id: RequestId
    numbers: Annotated[tuple[ReceiptNumber, ...], Field(min_length=2, max_length=MAX_RECEIPTS_PER_ORDER)]


class WithdrawLoadOutRequest(WireModel):
    """The holder withdraws its load-out request before the goods leave: the receipt is active again."""

    type: Literal["withdraw_load_out"]
    id: RequestId
    number: ReceiptNumber


class VoidReceiptRequest(WireModel):
    """An operator withdraws a registration at its warehouse that the holder has not confirmed."""

    type: Literal["void_receipt"]
    id: RequestId
    number: ReceiptNumber


class FreezeReceiptRequest(WireModel):
    """Staff freeze an active or pledged receipt (a dispute over the goods); `reason` is recorded."""

    type: Literal["freeze_receipt"]
    id: RequestId
    number: ReceiptNumber
    reason: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class UnfreezeReceiptRequest(WireModel):
    """Staff lift their freeze: the receipt returns to the state it was frozen from."""

    type: Literal["unfreeze_receipt"]
    id: RequestId
    number: ReceiptNumber
    reason: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class DeclareDefaultRequest(WireModel):
    """Staff declare the party that missed a deadline of this deal in default: its margin is
    forfeited, the other side's holds released, the receipts returned to the seller."""

    type: Literal["declare_default"]
    id: RequestId
    deal_id: DealId


class SweepDeadlinesRequest(WireModel):
    """Staff declare every deal whose deadline has passed in default (in deal id order, at most
    the warehouse's ``max_defaults_per_sweep`` per request; send again while `defaulted` is full)."""

    type: Literal["sweep_deadlines"]
    id: RequestId


class SettleDeliveryRequest(WireModel):
    """Staff retry the settlement of a confirmed delivery whose money leg clearing refused
    (the `settlement` of confirm_delivery said why)."""

    type: Literal["settle_delivery"]
    id: RequestId
    deal_id: DealId


class RequireReceiptsRequest(WireModel):
    """Staff turn an instrument's receipt rule on (sell orders only against receipts) or off."""

    type: Literal["require_receipts"]
    id: RequestId
    instrument: Symbol
    required: bool


class SessionPhaseWire(WireModel):
    at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, exchange time")]
    state: Literal["auction", "continuous", "break", "closed"]


Bps = Annotated[int, Field(ge=0, le=10_000, description="basis points")]
Days = Annotated[int, Field(ge=0, le=60, description="days")]


class ListInstrumentRequest(WireModel):
    """Staff list a new instrument (it starts `closed`; open it with set_trading_state). `tick` and
    `reference_price` are CNY per tonne, the reference a whole number of ticks; `sessions` is the
    optional daily schedule, phases at increasing times."""

    type: Literal["list_instrument"]
    id: RequestId
    symbol: Symbol
    commodity: Identifier
    product: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    grade: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    warehouse_group: Identifier
    lot_size_t: Annotated[int, Field(ge=1, le=100_000)]
    tick: Price
    reference_price: Price
    price_band_bps: Annotated[int, Field(ge=1, le=9_999)]
    min_lots: Lots
    max_lots: Lots
    margin_rate_bps: Bps = 1000
    maker_fee_bps: Bps = 2
    taker_fee_bps: Bps = 5
    payment_days: Days = 2
    delivery_days: Days = 5
    weight_tolerance_bps: Bps = 300
    sessions: Annotated[tuple[SessionPhaseWire, ...], Field(max_length=24)] = ()
    receipts_required: bool = True


class AddWarehouseRequest(WireModel):
    """Staff add a warehouse designated for instrument groups (the instruments' `warehouse_group`)."""

    type: Literal["add_warehouse"]
    id: RequestId
    warehouse_id: Annotated[str, Field(pattern=r"^[\x21-\x22\x24-\x7e]{1,64}$", description="no '#'")]
    name: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    groups: Annotated[tuple[Identifier, ...], Field(min_length=1, max_length=32)]


class AddOperatorRequest(WireModel):
    """Staff open an operator account acting for one warehouse (its API key is made with
    ``bulkex keys create operator <operator_id>``)."""

    type: Literal["add_operator"]
    id: RequestId
    operator_id: Identifier
    warehouse_id: Identifier


class ResolveBreakRequest(WireModel):
    """Staff mark a reconciliation break resolved (after a correction or an explanation, in `note`);
    a member's withdrawals wait while its break is open."""

    type: Literal["resolve_break"]
    id: RequestId
    break_id: Annotated[int, Field(ge=1, le=MAX_ORDER_ID)]
    note: Text = ""


class RequestRegistry:
    """The request models by `type`; ``parse`` validates a frame into one of them."""

    def __init__(self) -> None:
        self.models: dict[str, type[WireModel]] = {}
        self._validate_json: Callable[[str | bytes], Any] | None = None

    def register(self, model: type[WireModel]) -> type[WireModel]:
        field = model.model_fields["type"]
        args: tuple[Any, ...] = tuple(getattr(field.annotation, "__args__", ()))
        assert len(args) == 1, f"{model.__name__}.type must be one Literal"
        name = args[0]
        assert isinstance(name, str), name
        assert name not in self.models or self.models[name] is model, f"request type {name!r} registered twice"
        assert "id" in model.model_fields, model
        self.models[name] = model
        self._validate_json = None
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
        validate = self._validate_json
        if validate is None:
            models = tuple(self.models.values())
            union: Any = Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
            adapter: TypeAdapter[Any] = TypeAdapter(union)
            # the schema validator itself: TypeAdapter.validate_json's keyword handling costs about
            # a tenth of the call for a new_order frame (2.99 against 2.68 µs)
            validate = self._validate_json = adapter.validator.validate_json
        request: WireModel = validate(text)
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
    BalancesRequest,
    WithdrawalsRequest,
    ReceiptsRequest,
    DealsRequest,
    BankFilesRequest,
    RequestWithdrawalRequest,
    ApproveWithdrawalRequest,
    PayDealRequest,
    ResolveDisputeRequest,
    ConfirmReceiptRequest,
    RequestLoadOutRequest,
    RegisterReceiptRequest,
    ConfirmDeliveryRequest,
    ConfirmLoadOutRequest,
    CancelWithdrawalRequest,
    PledgeReceiptRequest,
    ReleasePledgeRequest,
    SplitReceiptRequest,
    MergeReceiptsRequest,
    WithdrawLoadOutRequest,
    VoidReceiptRequest,
    FreezeReceiptRequest,
    UnfreezeReceiptRequest,
    DeclareDefaultRequest,
    SweepDeadlinesRequest,
    SettleDeliveryRequest,
    RequireReceiptsRequest,
    ListInstrumentRequest,
    AddWarehouseRequest,
    AddOperatorRequest,
    ResolveBreakRequest,
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
    subject: str = Field(description="the member account, operator account or bank the key acts for ('' for staff)")
    warehouse: str | None = Field(
        default=None, description="an operator's warehouse (null when its operator account is not registered yet)"
    )
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
    receipts_required: bool = Field(description="sell orders must lock warehouse receipts (the receipt rule)")


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


class HoldInfo(WireModel):
    hold_id: int
    account: Literal["frozen_margin", "frozen_escrow"]
    purpose: str = Field(description="order, deal_margin, deal_fee, escrow or withdrawal")
    ref: str = Field(description="what the money is held for: order:<id>, deal:<id>, wd:<withdrawal id>")
    amount: str = Field(description="CNY held after the change (0.00 once closed)")
    state: Literal["open", "settled", "released", "forfeited"]


class BalanceInfo(WireModel):
    account: str
    bank: str | None
    available: str
    frozen_margin: str
    frozen_escrow: str
    open_holds: int
    holds: list[HoldInfo]


class BalancesResult(WireModel):
    balances: list[BalanceInfo]


class WithdrawalInfo(WireModel):
    withdrawal_id: str
    account: str
    amount: str
    status: Literal["pending_approval", "approved", "paid", "rejected_by_bank", "cancelled"]
    requested_by: str = Field(description="the key id (or bank or CLI user) that requested it")
    approved_by: str
    reason: str
    last_seq: int = Field(description="journal seq of its last change (0: before this server run)")


class WithdrawalsResult(WireModel):
    withdrawals: list[WithdrawalInfo]


class ReceiptInfo(WireModel):
    number: str
    warehouse_id: str
    holder: str
    commodity: str
    group: str
    grade: str
    weight_kg: int
    pieces: int
    lot_numbers: str
    certificate_no: str
    calorific_kcal_per_kg: int
    moisture_bps: int
    sulphur_bps: int
    steel_grade: str
    dimensions: str
    location: str
    state: Literal[
        "registered", "active", "locked", "pledged", "frozen", "loading", "void", "delivered", "merged", "cancelled"
    ]
    origin: str = Field(
        description="registered, split:<parent>, merged, delivery:<deal>, residual:<deal>, part:<deal>, extra:<deal>; "
        "for a receipt issued before this server run only 'issued'"
    )
    last_transition: str
    last_seq: int
    pledgee: str = Field(description="the bank a pledged receipt is pledged to ('' when not pledged)")


class ReceiptsResult(WireModel):
    receipts: list[ReceiptInfo]


class DeliveryInfo(WireModel):
    warehouse_id: str
    contract_weight_kg: int
    payment_deadline_ns: int
    delivery_deadline_ns: int
    receipts: list[str]
    state: Literal["awaiting_payment", "paid", "delivery_confirmed", "settled", "disputed", "defaulted", "cancelled"]
    actual_weight_kg: int
    quality_pass: bool | None
    amount: str | None = Field(description="CNY paid to the seller before fees (at confirmation or settlement)")
    refund: str | None = Field(description="CNY returned to the buyer by the tolerance settlement")
    extra: str | None = Field(description="CNY the buyer pays beyond the contract for over-weight")
    detail: str
    last_seq: int = Field(description="journal seq of its last change (0: before this server run)")


class DealInfo(WireModel):
    """A deal as the viewer sees it: a trader its own side (`side`, its margin and fee; no
    counterparty); an operator or staff both parties (`buyer`, `seller`)."""

    deal_id: int
    instrument: str
    price: Price
    quantity_lots: int
    side: SideName | None
    buyer: str | None
    seller: str | None
    notional: str | None = Field(description="CNY; null when only the delivery record is known")
    margin: str | None
    fee: str | None
    state: Literal["open", "escrowed", "settled", "defaulted", "cancelled"] | None
    state_amount: str | None
    delivery: DeliveryInfo | None


class DealsResult(WireModel):
    deals: list[DealInfo]


class BankFileInfo(WireModel):
    file_id: str
    file_kind: str
    status: Literal["applied", "refused"]
    applied: int | None = Field(description="records applied (null for files imported before this server run)")
    duplicates: int | None
    code: ErrorCode | None = Field(description="why a refused file was refused")
    detail: str
    seq: int


class StatementInfo(WireModel):
    statement_id: str
    value_date: str
    lines: int
    breaks: int
    seq: int


class BreakInfo(WireModel):
    break_id: int
    bank: str
    sub_account: str
    member: str
    reason: str
    bank_amount: str
    exchange_amount: str


class BankFilesResult(WireModel):
    bank: str
    members: int
    files: list[BankFileInfo]
    statements: list[StatementInfo]
    breaks: list[BreakInfo]
    instructions: list[WithdrawalInfo] = Field(description="approved withdrawals waiting for the bank's result")


class WithdrawalResult(WireModel):
    seq: int
    ts_ns: int
    duplicate: bool = Field(description="true when the withdrawal id was used before; nothing was applied")
    withdrawal: WithdrawalInfo


class DealActionResult(WireModel):
    seq: int
    ts_ns: int
    deal: DealInfo
    settlement: str | None = Field(
        default=None, description="confirm_delivery: why settlement must wait (staff retry it), else null"
    )


class ReceiptActionResult(WireModel):
    seq: int
    ts_ns: int
    receipt: ReceiptInfo


class ReceiptsChangedResult(WireModel):
    """split_receipt and merge_receipts: the new receipt and its sources after the step."""

    seq: int
    ts_ns: int
    receipt: ReceiptInfo
    sources: list[ReceiptInfo]


class SweepResult(WireModel):
    seq: int
    ts_ns: int
    defaulted: list[DealInfo] = Field(description="the deals this sweep declared in default, in deal id order")
    refused: list[str] = Field(description="defaults clearing refused (deal id, code and detail); they stay open")


class ReceiptRuleResult(WireModel):
    seq: int
    ts_ns: int
    instrument: str
    receipts_required: bool


class ListedResult(WireModel):
    seq: int
    ts_ns: int
    instrument: InstrumentInfo


class WarehouseResult(WireModel):
    seq: int
    ts_ns: int
    warehouse_id: str
    name: str
    groups: list[str]


class OperatorResult(WireModel):
    seq: int
    ts_ns: int
    operator_id: str
    warehouse_id: str


class BreakResolvedResult(WireModel):
    seq: int
    ts_ns: int
    break_id: int
    open_breaks: int = Field(description="reconciliation breaks still open at the break's bank")


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
    "balances": BalancesResult,
    "withdrawals": WithdrawalsResult,
    "receipts": ReceiptsResult,
    "deals": DealsResult,
    "bank_files": BankFilesResult,
    "request_withdrawal": WithdrawalResult,
    "approve_withdrawal": WithdrawalResult,
    "pay_deal": DealActionResult,
    "resolve_dispute": DealActionResult,
    "confirm_delivery": DealActionResult,
    "confirm_receipt": ReceiptActionResult,
    "request_load_out": ReceiptActionResult,
    "register_receipt": ReceiptActionResult,
    "confirm_load_out": ReceiptActionResult,
    "cancel_withdrawal": WithdrawalResult,
    "pledge_receipt": ReceiptActionResult,
    "release_pledge": ReceiptActionResult,
    "split_receipt": ReceiptsChangedResult,
    "merge_receipts": ReceiptsChangedResult,
    "withdraw_load_out": ReceiptActionResult,
    "void_receipt": ReceiptActionResult,
    "freeze_receipt": ReceiptActionResult,
    "unfreeze_receipt": ReceiptActionResult,
    "declare_default": DealActionResult,
    "sweep_deadlines": SweepResult,
    "settle_delivery": DealActionResult,
    "require_receipts": ReceiptRuleResult,
    "list_instrument": ListedResult,
    "add_warehouse": WarehouseResult,
    "add_operator": OperatorResult,
    "resolve_break": BreakResolvedResult,
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


class BalancesPush(WireModel):
    """The account's balances after a command that moved its money (private channel `balances`),
    with the holds that command opened, changed or closed and its withdrawals' new states."""

    type: Literal["balances"]
    account: str
    seq: int
    journal_seq: int
    ts_ns: int
    available: str
    frozen_margin: str
    frozen_escrow: str
    open_holds: int
    holds: list[HoldInfo]
    withdrawals: list[WithdrawalInfo]


class ReceiptPush(WireModel):
    """A receipt of the account came into being or moved (private channel `receipts`)."""

    type: Literal["receipts"]
    account: str
    seq: int
    journal_seq: int
    ts_ns: int
    transition: str = Field(description="the step (registered, confirmed, locked, delivered, loaded_out, ...)")
    receipt: ReceiptInfo


class DeliveryPush(WireModel):
    """A deal of the account opened or moved, or its delivery record did (private channel `deliveries`)."""

    type: Literal["deliveries"]
    account: str
    seq: int
    journal_seq: int
    ts_ns: int
    event: Literal["deal_opened", "deal_state", "delivery_opened", "delivery_state"]
    deal: DealInfo


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
    "balances": BalancesPush,
    "receipts": ReceiptPush,
    "deliveries": DeliveryPush,
    "heartbeat": HeartbeatPush,
}
