"""Error codes of the WebSocket API, one enumeration, each with a message that
tells the client how to fix its request. Every request gets exactly one
response: ``accepted``, or ``error`` with one of these codes.

    ErrorCode
    ├── frame:     MALFORMED_JSON, MESSAGE_TOO_LARGE, BINARY_FRAME
    ├── schema:    UNKNOWN_TYPE, INVALID_FIELD (missing, unknown, wrong type,
    │              out of bounds), DUPLICATE_REQUEST_ID
    ├── auth:      NOT_AUTHENTICATED, ALREADY_AUTHENTICATED, UNKNOWN_KEY,
    │              KEY_REVOKED, BAD_SIGNATURE, STALE_TIMESTAMP, REPLAYED_NONCE,
    │              FORBIDDEN
    ├── limits:    RATE_LIMITED, KEY_RATE_LIMITED, TOO_MANY_PENDING,
    │              TOO_MANY_SUBSCRIPTIONS, TOO_MANY_SESSIONS
    ├── channels:  UNKNOWN_CHANNEL, ALREADY_SUBSCRIBED, NOT_SUBSCRIBED,
    │              REPLAY_UNAVAILABLE
    ├── service:   BUSY (the sequencer's queue is full), UNAVAILABLE (stopping
    │              or stopped), INTERNAL_ERROR (the gateway failed on the
    │              request: logged; with the seq when it was sequenced)
    ├── parties:   UNKNOWN_BANK (a pledge to a bank that supervises no member)
    ├── core:      every reject code of the matching core, by the same name
    │              (UNKNOWN_INSTRUMENT, PRICE_OFF_TICK, PRICE_OUT_OF_BAND,
    │              UNKNOWN_ORDER, NOT_YOUR_ORDER, ...; see matching/_errors.py)
    ├── clearing:  every clearing refusal (clearing/_errors.py) by its name
    │              (UNKNOWN_MEMBER, SAME_APPROVER, OPEN_BREAK, ...), except
    │              TOO_MANY_PENDING, which is TOO_MANY_WITHDRAWALS here
    └── warehouse: every warehouse refusal (warehouse/_errors.py) by its name
                   (UNKNOWN_RECEIPT, NOT_YOUR_WAREHOUSE, BAD_WEIGHT, ...);
                   LEDGER_REFUSED is answered with the clearing code it
                   carries (INSUFFICIENT_FUNDS for a buyer short of money)

Codes travel as their names (``"PRICE_OFF_TICK"``); the names never change
meaning, new codes are only added.
"""

from __future__ import annotations

from enum import StrEnum

from clearing import CLEARING_MESSAGES, ClearingCode
from matching import MESSAGES as CORE_MESSAGES
from matching import RejectCode
from warehouse import WAREHOUSE_MESSAGES, WarehouseCode

__all__ = ["ERROR_MESSAGES", "ApiError", "ErrorCode", "error_message"]


class ErrorCode(StrEnum):
    # frame
    MALFORMED_JSON = "MALFORMED_JSON"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    BINARY_FRAME = "BINARY_FRAME"
    # schema
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    INVALID_FIELD = "INVALID_FIELD"
    DUPLICATE_REQUEST_ID = "DUPLICATE_REQUEST_ID"
    # auth
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"
    ALREADY_AUTHENTICATED = "ALREADY_AUTHENTICATED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    KEY_REVOKED = "KEY_REVOKED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"
    REPLAYED_NONCE = "REPLAYED_NONCE"
    FORBIDDEN = "FORBIDDEN"
    # limits
    RATE_LIMITED = "RATE_LIMITED"
    KEY_RATE_LIMITED = "KEY_RATE_LIMITED"
    TOO_MANY_PENDING = "TOO_MANY_PENDING"
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    TOO_MANY_SESSIONS = "TOO_MANY_SESSIONS"
    # channels
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    ALREADY_SUBSCRIBED = "ALREADY_SUBSCRIBED"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    REPLAY_UNAVAILABLE = "REPLAY_UNAVAILABLE"
    # service
    BUSY = "BUSY"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # parties
    UNKNOWN_BANK = "UNKNOWN_BANK"
    # core (same names as matching.RejectCode)
    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    INSTRUMENT_EXISTS = "INSTRUMENT_EXISTS"
    BAD_INSTRUMENT = "BAD_INSTRUMENT"
    MARKET_CLOSED = "MARKET_CLOSED"
    MARKET_HALTED = "MARKET_HALTED"
    NOT_IN_AUCTION = "NOT_IN_AUCTION"
    BAD_STATE = "BAD_STATE"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    PRICE_OFF_TICK = "PRICE_OFF_TICK"
    PRICE_NOT_POSITIVE = "PRICE_NOT_POSITIVE"
    QUANTITY_BELOW_MIN = "QUANTITY_BELOW_MIN"
    QUANTITY_ABOVE_MAX = "QUANTITY_ABOVE_MAX"
    BAD_SIDE = "BAD_SIDE"
    BAD_TIME_IN_FORCE = "BAD_TIME_IN_FORCE"
    BAD_ORDER_TYPE = "BAD_ORDER_TYPE"
    BAD_STP_MODE = "BAD_STP_MODE"
    BAD_CLIENT_ORDER_ID = "BAD_CLIENT_ORDER_ID"
    MARKET_ORDER_NEEDS_IOC_FOK = "MARKET_ORDER_NEEDS_IOC_FOK"
    POST_ONLY_NEEDS_LIMIT = "POST_ONLY_NEEDS_LIMIT"
    POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    NOT_YOUR_ORDER = "NOT_YOUR_ORDER"
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"
    TOO_MANY_LEVELS = "TOO_MANY_LEVELS"
    TOO_MANY_INSTRUMENTS = "TOO_MANY_INSTRUMENTS"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    INSUFFICIENT_RECEIPTS = "INSUFFICIENT_RECEIPTS"
    RECEIPT_NOT_ACTIVE = "RECEIPT_NOT_ACTIVE"
    RECEIPT_NOT_DELIVERABLE = "RECEIPT_NOT_DELIVERABLE"
    RECEIPTS_IN_TWO_WAREHOUSES = "RECEIPTS_IN_TWO_WAREHOUSES"
    RECEIPT_REPEATED = "RECEIPT_REPEATED"
    RECEIPTS_ON_BUY = "RECEIPTS_ON_BUY"
    # clearing (clearing.ClearingCode by name; TOO_MANY_PENDING is TOO_MANY_WITHDRAWALS)
    UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
    MEMBER_EXISTS = "MEMBER_EXISTS"
    SUB_ACCOUNT_TAKEN = "SUB_ACCOUNT_TAKEN"
    BAD_MEMBER = "BAD_MEMBER"
    WRONG_BANK = "WRONG_BANK"
    BAD_AMOUNT = "BAD_AMOUNT"
    AMOUNT_ABOVE_LIMIT = "AMOUNT_ABOVE_LIMIT"
    BAD_RECORD_ID = "BAD_RECORD_ID"
    BAD_DATE = "BAD_DATE"
    FILE_ID_REUSED = "FILE_ID_REUSED"
    BAD_FILE_RECORDS = "BAD_FILE_RECORDS"
    UNKNOWN_REQUEST = "UNKNOWN_REQUEST"
    BAD_REQUEST_STATE = "BAD_REQUEST_STATE"
    SAME_APPROVER = "SAME_APPROVER"
    OPEN_BREAK = "OPEN_BREAK"
    TOO_MANY_WITHDRAWALS = "TOO_MANY_WITHDRAWALS"
    ORDER_EXISTS = "ORDER_EXISTS"
    UNKNOWN_DEAL = "UNKNOWN_DEAL"
    BAD_DEAL_STATE = "BAD_DEAL_STATE"
    DAY_ALREADY_CLOSED = "DAY_ALREADY_CLOSED"
    UNKNOWN_STATEMENT = "UNKNOWN_STATEMENT"
    UNKNOWN_BREAK = "UNKNOWN_BREAK"
    BREAK_RESOLVED = "BREAK_RESOLVED"
    TOO_MANY_MEMBERS = "TOO_MANY_MEMBERS"
    TOO_MANY_RECORDS = "TOO_MANY_RECORDS"
    # warehouse (warehouse.WarehouseCode by name)
    UNKNOWN_WAREHOUSE = "UNKNOWN_WAREHOUSE"
    WAREHOUSE_EXISTS = "WAREHOUSE_EXISTS"
    BAD_WAREHOUSE = "BAD_WAREHOUSE"
    UNKNOWN_OPERATOR = "UNKNOWN_OPERATOR"
    OPERATOR_EXISTS = "OPERATOR_EXISTS"
    NOT_YOUR_WAREHOUSE = "NOT_YOUR_WAREHOUSE"
    GROUP_NOT_DESIGNATED = "GROUP_NOT_DESIGNATED"
    BAD_RECEIPT_NUMBER = "BAD_RECEIPT_NUMBER"
    RECEIPT_EXISTS = "RECEIPT_EXISTS"
    BAD_WEIGHT = "BAD_WEIGHT"
    BAD_PIECES = "BAD_PIECES"
    BAD_CERTIFICATE = "BAD_CERTIFICATE"
    BAD_TEXT = "BAD_TEXT"
    UNSUPPORTED_COMMODITY = "UNSUPPORTED_COMMODITY"
    BAD_ID = "BAD_ID"
    UNKNOWN_RECEIPT = "UNKNOWN_RECEIPT"
    NOT_YOUR_RECEIPT = "NOT_YOUR_RECEIPT"
    BAD_RECEIPT_STATE = "BAD_RECEIPT_STATE"
    RECEIPT_IN_DISPUTE = "RECEIPT_IN_DISPUTE"
    NOT_PLEDGEE = "NOT_PLEDGEE"
    MERGE_MISMATCH = "MERGE_MISMATCH"
    REPEATED_RECEIPT = "REPEATED_RECEIPT"
    NOT_DELIVERABLE = "NOT_DELIVERABLE"
    UNKNOWN_LOCK = "UNKNOWN_LOCK"
    LOCK_EXISTS = "LOCK_EXISTS"
    BAD_QUANTITY = "BAD_QUANTITY"
    ONE_WAREHOUSE = "ONE_WAREHOUSE"
    CORE_ONLY = "CORE_ONLY"
    DEAL_EXISTS = "DEAL_EXISTS"
    NOT_BUYER = "NOT_BUYER"
    PAYMENT_DEADLINE_PASSED = "PAYMENT_DEADLINE_PASSED"
    DELIVERY_DEADLINE_PASSED = "DELIVERY_DEADLINE_PASSED"
    DEADLINE_NOT_PASSED = "DEADLINE_NOT_PASSED"
    BAD_RESOLUTION = "BAD_RESOLUTION"
    BAD_DEADLINE = "BAD_DEADLINE"
    LEDGER_REFUSED = "LEDGER_REFUSED"
    BAD_LOAD_OUT_WEIGHT = "BAD_LOAD_OUT_WEIGHT"
    TOO_MANY_WAREHOUSES = "TOO_MANY_WAREHOUSES"
    TOO_MANY_OPERATORS = "TOO_MANY_OPERATORS"
    TOO_MANY_RECEIPTS = "TOO_MANY_RECEIPTS"
    TOO_MANY_DEALS = "TOO_MANY_DEALS"
    TOO_MANY_IN_LIST = "TOO_MANY_IN_LIST"

    @classmethod
    def from_reject(cls, code: int) -> ErrorCode:
        """The API code of a core reject code."""
        return cls(RejectCode(code).name)

    @classmethod
    def from_clearing(cls, code: int) -> ErrorCode:
        """The API code of a clearing refusal."""
        name = ClearingCode(code).name
        return cls(_CLEARING_RENAMED.get(name, name))

    @classmethod
    def from_warehouse(cls, code: int) -> ErrorCode:
        """The API code of a warehouse refusal."""
        return cls(WarehouseCode(code).name)


_CLEARING_RENAMED = {"TOO_MANY_PENDING": "TOO_MANY_WITHDRAWALS"}


_OWN_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_JSON: "the frame is not a JSON object; send one UTF-8 JSON object per text frame",
    ErrorCode.MESSAGE_TOO_LARGE: "the message is larger than the limit; send smaller messages",
    ErrorCode.BINARY_FRAME: "binary frames are not accepted; send JSON in text frames",
    ErrorCode.UNKNOWN_TYPE: "the `type` field names no request; see docs/protocol.md for the list",
    ErrorCode.INVALID_FIELD: "a field is missing, unknown, of the wrong type or out of bounds",
    ErrorCode.DUPLICATE_REQUEST_ID: "a request with this id is still in flight on this connection; use a fresh id",
    ErrorCode.NOT_AUTHENTICATED: "log in first (send a `login` request signed with your API key)",
    ErrorCode.ALREADY_AUTHENTICATED: "this connection is already logged in; open a new connection for another key",
    ErrorCode.UNKNOWN_KEY: "no API key with this key id; check the key id or ask staff for a key",
    ErrorCode.KEY_REVOKED: "this API key was revoked; ask staff for a new key",
    ErrorCode.BAD_SIGNATURE: "the signature does not match; sign key_id, timestamp_ms and nonce as documented",
    ErrorCode.STALE_TIMESTAMP: "the login timestamp is too far from the server's clock; sync your clock and sign again",
    ErrorCode.REPLAYED_NONCE: "this nonce was already used with this key; sign a new login with a fresh nonce",
    ErrorCode.FORBIDDEN: "your role may not send this request or see this data",
    ErrorCode.RATE_LIMITED: "too many messages on this connection; slow down and retry",
    ErrorCode.KEY_RATE_LIMITED: "too many messages for this API key across its connections; slow down and retry",
    ErrorCode.TOO_MANY_PENDING: "too many requests of this connection await their answer; wait for answers first",
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: "this connection holds its limit of subscriptions; unsubscribe first",
    ErrorCode.TOO_MANY_SESSIONS: "this API key has its limit of logged-in connections; close one first",
    ErrorCode.UNKNOWN_CHANNEL: "no such channel; see docs/protocol.md for the channels",
    ErrorCode.ALREADY_SUBSCRIBED: "this connection is already subscribed to this channel and instrument",
    ErrorCode.NOT_SUBSCRIBED: "this connection is not subscribed to this channel and instrument",
    ErrorCode.REPLAY_UNAVAILABLE: (
        "the messages from this sequence number are no longer kept; query orders and fills, "
        "then subscribe without from_seq"
    ),
    ErrorCode.BUSY: "the exchange is busy (its command queue is full); retry shortly",
    ErrorCode.UNAVAILABLE: "the exchange is shutting down or stopped; reconnect later",
    ErrorCode.INTERNAL_ERROR: (
        "the gateway failed while handling this request (logged for the operators; the connection stays "
        "open); with a seq the command was sequenced: query orders or fills for its outcome before retrying"
    ),
    ErrorCode.UNKNOWN_BANK: "no partner bank with this id supervises a member; pledge to a bank from `balances`",
}

# Codes two cores share keep one message that serves both.
_SHARED_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UNKNOWN_DEAL: "no deal (or delivery record) with this id; check the deal id",
    ErrorCode.BAD_DEAL_STATE: "the deal is not in a state that allows this step (the detail names its state)",
    ErrorCode.BAD_AMOUNT: "the amount must be a positive whole number of fen (two decimals in CNY) within the limit",
}

ERROR_MESSAGES: dict[ErrorCode, str] = {
    **{ErrorCode.from_warehouse(code): text for code, text in WAREHOUSE_MESSAGES.items()},
    **{ErrorCode.from_clearing(code): text for code, text in CLEARING_MESSAGES.items()},
    **{ErrorCode(code.name): text for code, text in CORE_MESSAGES.items()},
    **_SHARED_MESSAGES,
    **_OWN_MESSAGES,
}
assert set(ERROR_MESSAGES) == set(ErrorCode), set(ErrorCode) - set(ERROR_MESSAGES)


def error_message(code: ErrorCode, detail: str = "") -> str:
    text = ERROR_MESSAGES[code]
    return f"{text} ({detail})" if detail else text


class ApiError(Exception):
    """Raised inside the gateway to answer a request with an error."""

    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(error_message(code, detail))
        self.code = code
        self.detail = detail
