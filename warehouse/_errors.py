"""Refusal codes of the warehouse core, one enumeration, each with a message
that tells the sender how to fix the command.

    WarehouseCode
    ├── setup:      UNKNOWN_WAREHOUSE, WAREHOUSE_EXISTS, BAD_WAREHOUSE,
    │               UNKNOWN_OPERATOR, OPERATOR_EXISTS, NOT_YOUR_WAREHOUSE,
    │               GROUP_NOT_DESIGNATED, UNKNOWN_INSTRUMENT
    ├── input:      BAD_RECEIPT_NUMBER, RECEIPT_EXISTS, BAD_WEIGHT, BAD_PIECES,
    │               BAD_CERTIFICATE, BAD_TEXT, UNSUPPORTED_COMMODITY, BAD_ID
    ├── receipts:   UNKNOWN_RECEIPT, NOT_YOUR_RECEIPT, BAD_RECEIPT_STATE,
    │               RECEIPT_IN_DISPUTE, NOT_PLEDGEE, MERGE_MISMATCH,
    │               REPEATED_RECEIPT, NOT_DELIVERABLE, INSUFFICIENT_RECEIPTS
    ├── sell locks: UNKNOWN_LOCK, LOCK_EXISTS, BAD_QUANTITY, ONE_WAREHOUSE,
    │               CORE_ONLY
    ├── deliveries: UNKNOWN_DEAL, DEAL_EXISTS, BAD_DEAL_STATE, NOT_BUYER,
    │               PAYMENT_DEADLINE_PASSED, DELIVERY_DEADLINE_PASSED,
    │               DEADLINE_NOT_PASSED, BAD_RESOLUTION, BAD_AMOUNT,
    │               BAD_DEADLINE, LEDGER_REFUSED
    ├── load-out:   BAD_LOAD_OUT_WEIGHT
    └── limits:     TOO_MANY_WAREHOUSES, TOO_MANY_OPERATORS, TOO_MANY_RECEIPTS,
                    TOO_MANY_DEALS, TOO_MANY_IN_LIST

INSUFFICIENT_RECEIPTS has the number of matching's code of that name, so one
table of codes serves a trader whichever core refused the sell order. The
other codes start at 200 (matching uses 1..99, clearing 100..199).
LEDGER_REFUSED carries the clearing code and its detail in the detail text.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["WAREHOUSE_MESSAGES", "WarehouseCode", "warehouse_message"]


class WarehouseCode(IntEnum):
    INSUFFICIENT_RECEIPTS = 81
    UNKNOWN_WAREHOUSE = 200
    WAREHOUSE_EXISTS = 201
    BAD_WAREHOUSE = 202
    UNKNOWN_OPERATOR = 203
    OPERATOR_EXISTS = 204
    NOT_YOUR_WAREHOUSE = 205
    GROUP_NOT_DESIGNATED = 206
    UNKNOWN_INSTRUMENT = 207
    BAD_RECEIPT_NUMBER = 210
    RECEIPT_EXISTS = 211
    BAD_WEIGHT = 212
    BAD_PIECES = 213
    BAD_CERTIFICATE = 214
    BAD_TEXT = 215
    UNSUPPORTED_COMMODITY = 216
    BAD_ID = 217
    UNKNOWN_RECEIPT = 220
    NOT_YOUR_RECEIPT = 221
    BAD_RECEIPT_STATE = 222
    RECEIPT_IN_DISPUTE = 223
    NOT_PLEDGEE = 224
    MERGE_MISMATCH = 225
    REPEATED_RECEIPT = 226
    NOT_DELIVERABLE = 227
    UNKNOWN_LOCK = 230
    LOCK_EXISTS = 231
    BAD_QUANTITY = 232
    ONE_WAREHOUSE = 233
    CORE_ONLY = 234
    UNKNOWN_DEAL = 240
    DEAL_EXISTS = 241
    BAD_DEAL_STATE = 242
    NOT_BUYER = 243
    PAYMENT_DEADLINE_PASSED = 244
    DELIVERY_DEADLINE_PASSED = 245
    DEADLINE_NOT_PASSED = 246
    BAD_RESOLUTION = 247
    BAD_AMOUNT = 248
    BAD_DEADLINE = 249
    LEDGER_REFUSED = 250
    BAD_LOAD_OUT_WEIGHT = 260
    TOO_MANY_WAREHOUSES = 270
    TOO_MANY_OPERATORS = 271
    TOO_MANY_RECEIPTS = 272
    TOO_MANY_DEALS = 273
    TOO_MANY_IN_LIST = 274


WAREHOUSE_MESSAGES: dict[WarehouseCode, str] = {
    WarehouseCode.INSUFFICIENT_RECEIPTS: (
        "unencumbered warehouse receipts do not cover the quantity (a steel receipt counts only when it has "
        "a piece for every part the lots may cut it into); register or confirm receipts, release pledges, "
        "name other receipts, or change the quantity"
    ),
    WarehouseCode.UNKNOWN_WAREHOUSE: "no warehouse with this id; staff add warehouses first",
    WarehouseCode.WAREHOUSE_EXISTS: "a warehouse with this id already exists; use another id",
    WarehouseCode.BAD_WAREHOUSE: (
        "a warehouse needs an id, a name and 1 or more designated instrument groups, each printable text "
        "within the length limits and the groups without repeats"
    ),
    WarehouseCode.UNKNOWN_OPERATOR: "no operator account with this id; staff add operator accounts first",
    WarehouseCode.OPERATOR_EXISTS: "an operator account with this id already exists; use another id",
    WarehouseCode.NOT_YOUR_WAREHOUSE: (
        "an operator acts only for their own warehouse; send this from an operator of the receipt's warehouse"
    ),
    WarehouseCode.GROUP_NOT_DESIGNATED: (
        "the warehouse is not designated for this instrument's group; register the goods at a designated warehouse"
    ),
    WarehouseCode.UNKNOWN_INSTRUMENT: "no instrument with this symbol is listed; use a symbol from the instrument list",
    WarehouseCode.BAD_RECEIPT_NUMBER: (
        "a receipt number must be 1 to 40 printable characters without spaces, commas or '#'"
    ),
    WarehouseCode.RECEIPT_EXISTS: "a receipt with this number already exists; number the receipt uniquely",
    WarehouseCode.BAD_WEIGHT: "the weight must be a whole number of kg, positive and within the per-receipt limit",
    WarehouseCode.BAD_PIECES: (
        "pieces: steel needs a positive count of pieces or bundles, coal 0; a split or delivery cannot take "
        "more pieces than the receipt holds"
    ),
    WarehouseCode.BAD_CERTIFICATE: (
        "the inspection certificate is incomplete: coal needs calorific value (kcal/kg, positive), moisture and "
        "sulphur (basis points, 0 to 10000) and no steel fields; steel needs grade and dimensions and no coal fields"
    ),
    WarehouseCode.BAD_TEXT: "a text field is empty where required, too long, or not printable; correct the field",
    WarehouseCode.UNSUPPORTED_COMMODITY: "receipts are issued for steel and coal only",
    WarehouseCode.BAD_ID: "member, operator, bank and staff ids must be 1 to 64 printable characters without commas",
    WarehouseCode.UNKNOWN_RECEIPT: "no receipt with this number; check the number",
    WarehouseCode.NOT_YOUR_RECEIPT: "the receipt is held by another member; only its holder may do this",
    WarehouseCode.BAD_RECEIPT_STATE: (
        "the receipt is not in a state that allows this step (the detail names its state)"
    ),
    WarehouseCode.RECEIPT_IN_DISPUTE: (
        "the receipt is frozen by a delivery dispute; staff resolve the deal's dispute instead"
    ),
    WarehouseCode.NOT_PLEDGEE: "only the bank the receipt is pledged to may release the pledge",
    WarehouseCode.MERGE_MISMATCH: (
        "receipts merge only when all are active and share warehouse, holder, instrument group, commodity, grade "
        "and, for steel, the certified grade and dimensions"
    ),
    WarehouseCode.REPEATED_RECEIPT: "the same receipt number appears twice in the list; name each receipt once",
    WarehouseCode.NOT_DELIVERABLE: (
        "the receipt's goods do not match the instrument (group, commodity and grade); name receipts that do"
    ),
    WarehouseCode.UNKNOWN_LOCK: "no receipts are locked for this sell order",
    WarehouseCode.LOCK_EXISTS: "receipts are already locked for this sell order",
    WarehouseCode.BAD_QUANTITY: (
        "the quantity must be a positive number of lots, at most what is still open on the sell order"
    ),
    WarehouseCode.ONE_WAREHOUSE: "the receipts locked for one sell order must all lie in one warehouse",
    WarehouseCode.CORE_ONLY: (
        "in the running exchange receipts are locked, unlocked and allocated by sell orders, cancels, "
        "amends and trades; send those instead"
    ),
    WarehouseCode.UNKNOWN_DEAL: "no delivery record for this deal id",
    WarehouseCode.DEAL_EXISTS: "a delivery record for this deal id already exists",
    WarehouseCode.BAD_DEAL_STATE: "the delivery is not in a state that allows this step (the detail names its state)",
    WarehouseCode.NOT_BUYER: "only the deal's buyer may pay for it",
    WarehouseCode.PAYMENT_DEADLINE_PASSED: "the payment deadline has passed; the buyer is in default",
    WarehouseCode.DELIVERY_DEADLINE_PASSED: "the delivery deadline has passed; the seller is in default",
    WarehouseCode.DEADLINE_NOT_PASSED: "no deadline of this delivery has passed yet; nobody is in default",
    WarehouseCode.BAD_RESOLUTION: "a dispute is resolved by 'adjust' (with a positive amount) or 'cancel'",
    WarehouseCode.BAD_AMOUNT: "the amount must be a positive whole number of fen within the per-deal limit",
    WarehouseCode.BAD_DEADLINE: "deadlines must be 0 (computed from the instrument) or after the trade time",
    WarehouseCode.LEDGER_REFUSED: (
        "clearing refused the money leg, so nothing changed (the detail gives clearing's code and reason); "
        "fix the funds or the deal and try again"
    ),
    WarehouseCode.BAD_LOAD_OUT_WEIGHT: (
        "the weight loaded out must be positive and within the load-out limit of the receipt's weight; "
        "re-weigh and confirm again"
    ),
    WarehouseCode.TOO_MANY_WAREHOUSES: "the exchange has reached its limit of warehouses",
    WarehouseCode.TOO_MANY_OPERATORS: "the exchange has reached its limit of operator accounts",
    WarehouseCode.TOO_MANY_RECEIPTS: "the exchange has reached its limit of receipts",
    WarehouseCode.TOO_MANY_DEALS: "the exchange has reached its limit of open deliveries",
    WarehouseCode.TOO_MANY_IN_LIST: "too many receipts named or needed in one command; use fewer, larger receipts",
}


def warehouse_message(code: int, detail: str = "") -> str:
    """The message for `code`, with an optional detail appended."""
    text = WAREHOUSE_MESSAGES[WarehouseCode(code)]
    return f"{text} ({detail})" if detail else text
