"""ISO 20022 messages for banks that speak them.

Imported: camt.053 (bank to customer statement: deposits and closing
balances per sub-account), camt.054 (debit/credit notifications: deposits),
pain.002 (payment status report: withdrawal results). Exported: pain.001
(customer credit transfer initiation: withdrawal instructions). Writers for
camt.053, camt.054 and pain.002 and a reader for pain.001 exist too, so the
formats round-trip in tests and the docs' examples are generated.

Checks: CNY only; amounts exact to the fen; per statement, opening balance +
booked credits - booked debits == closing balance (ROLL_FORWARD_MISMATCH:
OPBD and CLBD are booked balances; pending and informational entries do not
move them); transaction
summaries (NbOfNtries, Sum) against the entries; pain.001 and pain.002
NbOfTxs / CtrlSum against the transactions. Any version of a message is read
(the elements used are stable across versions); the writers emit
camt.053.001.08, camt.054.001.08, pain.001.001.09 and pain.002.001.10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from typing import Final
from xml.sax.saxutils import escape, quoteattr

from clearing._engine import MAX_ID_CHARS, valid_date, valid_id
from clearing.bankfiles._amounts import format_amount, parse_amount
from clearing.bankfiles._errors import FileError, FileErrorCode
from clearing.bankfiles._records import (
    CAMT053,
    CAMT054,
    PAIN001,
    PAIN002,
    BalanceRecord,
    BankFile,
    BankRecord,
    DepositRecord,
    InstructionRecord,
    Place,
    ResultRecord,
)
from clearing.bankfiles._text import MAX_FILE_BYTES, MAX_RECORDS_PER_FILE
from clearing.bankfiles._xml import Node, parse_xml

__all__ = [
    "EXCHANGE_NAME",
    "ISO_KINDS",
    "ISO_NAMESPACE",
    "OK_STATUSES",
    "REJECTED_STATUS",
    "StatementAccount",
    "looks_like_xml",
    "parse_iso_file",
    "status_record_id",
    "write_camt053",
    "write_camt054",
    "write_pain001",
    "write_pain002",
]

ISO_NAMESPACE: Final = "urn:iso:std:iso:20022:tech:xsd:"
EXCHANGE_NAME: Final = "BULKEX"
OK_STATUSES: Final = ("ACSC", "ACCC")  # settled: the withdrawal is paid
REJECTED_STATUS: Final = "RJCT"
PENDING_STATUSES: Final = ("ACTC", "ACCP", "ACSP", "ACWC", "PDNG", "RCVD")  # not final: skipped
_ROOTS: Final = {
    CAMT053: "BkToCstmrStmt",
    CAMT054: "BkToCstmrDbtCdtNtfctn",
    PAIN001: "CstmrCdtTrfInitn",
    PAIN002: "CstmrPmtStsRpt",
}
ISO_KINDS: Final = tuple(_ROOTS)
BOOKED_STATUS: Final = "BOOK"  # an entry without a status is taken as booked
UTF8_BOM: Final = b"\xef\xbb\xbf"
_VERSIONS: Final = {
    CAMT053: "camt.053.001.08",
    CAMT054: "camt.054.001.08",
    PAIN001: "pain.001.001.09",
    PAIN002: "pain.002.001.10",
}


# ---------------------------------------------------------------- reading


def looks_like_xml(data: bytes) -> bool:
    """Whether `data` is XML (an ISO 20022 message) rather than the text format:
    its first non-blank byte, after an optional UTF-8 byte order mark, is '<'."""
    return data.removeprefix(UTF8_BOM).lstrip()[:1] == b"<"


def parse_iso_file(
    data: bytes,
    bank: str,
    *,
    name: str = "",
    kinds: Collection[str] = ISO_KINDS,
    max_bytes: int = MAX_FILE_BYTES,
    max_records: int = MAX_RECORDS_PER_FILE,
) -> BankFile:
    """Parse an ISO 20022 message from `bank`; FileError (with `name`) at the
    first problem. A UTF-8 byte order mark before the XML is accepted."""
    try:
        return _parse_iso(data, bank, kinds, max_bytes, max_records)
    except FileError as err:
        err.file = name
        raise


def _parse_iso(data: bytes, bank: str, kinds: Collection[str], max_bytes: int, max_records: int) -> BankFile:
    if len(data) > max_bytes:
        raise FileError(FileErrorCode.FILE_TOO_LARGE, f"{len(data)} bytes, limit {max_bytes}")
    if not data.strip():
        raise FileError(FileErrorCode.EMPTY_FILE, line=1)
    root = parse_xml(data)
    if root.name != "Document" or not root.namespace.startswith(ISO_NAMESPACE):
        raise FileError(FileErrorCode.UNKNOWN_MESSAGE, f"{root.namespace} {root.name}", root.line, root.name)
    message = root.namespace[len(ISO_NAMESPACE) :]
    kind = message[:8]
    if kind not in _ROOTS or not root.get(_ROOTS[kind]):
        raise FileError(FileErrorCode.UNKNOWN_MESSAGE, message, root.line, "Document")
    if kind not in kinds:
        accepted = ", ".join(k for k in kinds if k in _ROOTS)
        detail = f"{message[:40]}; accepted here: {accepted}"
        raise FileError(FileErrorCode.UNEXPECTED_KIND, detail, root.line, "Document")
    body = root.need(_ROOTS[kind])
    msg_id = body.need_text("GrpHdr", "MsgId")
    msg_node = body.need("GrpHdr", "MsgId")
    if not valid_id(msg_id):
        raise FileError(FileErrorCode.BAD_FIELD, msg_id[:80], msg_node.line, "GrpHdr/MsgId")
    created = body.need_text("GrpHdr", "CreDtTm")
    business_date = created[:10]
    if not valid_date(business_date):
        raise FileError(FileErrorCode.BAD_DATE, created, body.need("GrpHdr", "CreDtTm").line, "GrpHdr/CreDtTm")
    found: list[tuple[BankRecord, Place]]
    if kind == CAMT053:
        found, business_date = _camt(body, "Stmt", True, business_date, max_records)
    elif kind == CAMT054:
        found, _ = _camt(body, "Ntfctn", False, business_date, max_records)
    elif kind == PAIN001:
        found = _pain001(body, max_records)
    else:
        found = _pain002(body, msg_id, max_records)
    header = Place(msg_node.line, (("file_id", msg_node.path), ("business_date", f"{body.path}/GrpHdr/CreDtTm")))
    return BankFile(kind, bank, msg_id, business_date, tuple(r for r, _ in found), tuple(p for _, p in found), header)


def _amount(node: Node, signed_by: Node | None = None, *, allow_zero: bool = False) -> int:
    currency = node.attrs.get("Ccy", "")
    if currency != "CNY":
        raise FileError(FileErrorCode.BAD_CURRENCY, currency or "no Ccy attribute", node.line, node.path)
    fen = parse_amount(node.text, allow_zero=allow_zero, line=node.line, field=node.path)
    if signed_by is not None:
        indicator = signed_by.need_text("CdtDbtInd")
        if indicator not in ("CRDT", "DBIT"):
            raise FileError(
                FileErrorCode.BAD_FIELD, indicator, signed_by.need("CdtDbtInd").line, f"{signed_by.path}/CdtDbtInd"
            )
        return -fen if indicator == "DBIT" else fen
    return fen


def _account_id(node: Node) -> Node:
    acct = node.need("Acct", "Id")
    ident = acct.get("Othr", "Id") or acct.get("IBAN")
    if ident is None or not valid_id(ident.text):
        raise FileError(FileErrorCode.MISSING_ELEMENT, "Acct/Id/Othr/Id or Acct/Id/IBAN", acct.line, acct.path)
    return ident


def _date_node(node: Node, *names: str) -> Node:
    date_node = node.get(*names, "Dt") or node.get(*names, "DtTm")
    if date_node is None:
        raise FileError(FileErrorCode.MISSING_ELEMENT, f"{'/'.join(names)}/Dt", node.line, f"{node.path}/{names[0]}")
    if not valid_date(date_node.text[:10]):
        raise FileError(FileErrorCode.BAD_DATE, date_node.text[:30], date_node.line, date_node.path)
    return date_node


def _date_of(node: Node, *names: str) -> str:
    return _date_node(node, *names).text[:10]


def _count(node: Node, *names: str) -> tuple[int, Node] | None:
    item = node.get(*names)
    if item is None:
        return None
    if not item.text.isascii() or not item.text.isdigit():
        raise FileError(FileErrorCode.BAD_FIELD, item.text[:20], item.line, item.path)
    return int(item.text), item


def _check_summary(stmt: Node, name: str, entries: list[tuple[int, Node]]) -> None:
    """A transaction summary block (TtlNtries, TtlCdtNtries, TtlDbtNtries) against the entries."""
    summary = stmt.get("TxsSummry")
    if summary is None:
        return
    groups = (
        ("TtlNtries", entries),
        ("TtlCdtNtries", [e for e in entries if e[0] > 0]),
        ("TtlDbtNtries", [e for e in entries if e[0] < 0]),
    )
    for block, items in groups:
        if summary.get(block) is None:
            continue
        counted = _count(summary, block, "NbOfNtries")
        if counted is not None and counted[0] != len(items):
            raise FileError(
                FileErrorCode.COUNT_MISMATCH,
                f"{counted[0]} said, {len(items)} {name} entries",
                counted[1].line,
                counted[1].path,
            )
        total = summary.get(block, "Sum")
        if total is not None:
            said = parse_amount(total.text, line=total.line, field=total.path)
            actual = sum(abs(e[0]) for e in items)
            if said != actual:
                raise FileError(
                    FileErrorCode.CONTROL_SUM_MISMATCH,
                    f"{total.text} said, {format_amount(actual)}",
                    total.line,
                    total.path,
                )


def _camt(
    body: Node, block: str, statement: bool, business_date: str, max_records: int
) -> tuple[list[tuple[BankRecord, Place]], str]:
    """Deposits (booked credits) and, for a statement, each account's closing
    balance, with where they are in the file."""
    records: list[tuple[BankRecord, Place]] = []
    seen_refs: set[str] = set()
    seen_accounts: set[str] = set()
    statement_date = ""
    blocks = body.all(block)
    if not blocks:
        raise FileError(FileErrorCode.MISSING_ELEMENT, block, body.line, f"{body.path}/{block}")
    for stmt in blocks:
        account = _account_id(stmt)
        sub = account.text
        if statement and sub in seen_accounts:
            raise FileError(FileErrorCode.DUPLICATE_RECORD, sub, stmt.line, f"{stmt.path}/Acct")
        seen_accounts.add(sub)
        entries: list[tuple[int, Node]] = []
        booked_fen = 0
        for entry in stmt.all("Ntry"):
            amount_node = entry.need("Amt")
            amount = _amount(amount_node, entry)
            entries.append((amount, entry))
            status = entry.get("Sts", "Cd") or entry.get("Sts")
            if status is not None and status.text and status.text != BOOKED_STATUS:
                continue  # pending (PDNG), informational (INFO) or future (FUTR): no money moved, not in OPBD/CLBD
            booked_fen += amount
            if amount < 0:
                continue  # debits: withdrawals paid, confirmed by pain.002; they count in the roll-forward
            ref_node = entry.get("AcctSvcrRef") or entry.get("NtryRef")
            if ref_node is None or not valid_id(ref_node.text):
                raise FileError(
                    FileErrorCode.MISSING_ELEMENT,
                    "AcctSvcrRef (or NtryRef) of a credit",
                    entry.line,
                    f"{entry.path}/AcctSvcrRef",
                )
            if ref_node.text in seen_refs:
                raise FileError(FileErrorCode.DUPLICATE_RECORD, ref_node.text, ref_node.line, ref_node.path)
            seen_refs.add(ref_node.text)
            date_node = _date_node(entry, "ValDt") if entry.get("ValDt") else _date_node(entry, "BookgDt")
            fields = (
                ("record_id", ref_node.path),
                ("sub_account", account.path),
                ("amount", amount_node.path),
                ("value_date", date_node.path),
            )
            records.append((DepositRecord(ref_node.text, sub, amount, date_node.text[:10]), Place(entry.line, fields)))
            if len(records) > max_records:
                raise FileError(FileErrorCode.TOO_MANY_RECORDS, f"limit {max_records}", entry.line, entry.path)
        _check_summary(stmt, block, entries)
        if not statement:
            continue
        opening: int | None = None
        closing: tuple[int, Node, str] | None = None
        for bal in stmt.all("Bal"):
            code = bal.need_text("Tp", "CdOrPrtry", "Cd")
            if code in ("OPBD", "PRCD"):
                opening = _amount(bal.need("Amt"), bal, allow_zero=True)
            elif code == "CLBD":
                closing = (_amount(bal.need("Amt"), bal, allow_zero=True), bal, _date_of(bal, "Dt"))
        if opening is None or closing is None:
            raise FileError(
                FileErrorCode.MISSING_ELEMENT, "an OPBD (or PRCD) and a CLBD balance", stmt.line, f"{stmt.path}/Bal"
            )
        close_fen, close_node, close_date = closing
        if opening + booked_fen != close_fen:
            raise FileError(
                FileErrorCode.ROLL_FORWARD_MISMATCH,
                f"{format_amount(opening)} + booked entries {format_amount(booked_fen)} != {format_amount(close_fen)}",
                close_node.line,
                f"{close_node.path}/Amt",
            )
        if close_fen < 0:
            raise FileError(
                FileErrorCode.AMOUNT_OUT_OF_RANGE,
                "a negative closing balance",
                close_node.line,
                f"{close_node.path}/Amt",
            )
        if statement_date and close_date != statement_date:
            raise FileError(
                FileErrorCode.BAD_DATE,
                "every statement in a file must close on the same day",
                close_node.line,
                f"{close_node.path}/Dt",
            )
        statement_date = close_date
        balance_fields = (
            ("sub_account", account.path),
            ("balance", f"{close_node.path}/Amt"),
            ("value_date", f"{close_node.path}/Dt"),
        )
        records.append((BalanceRecord(sub, close_fen, close_date), Place(close_node.line, balance_fields)))
    return records, statement_date or business_date


def _check_totals(node: Node, count: int, total: int, count_name: str = "NbOfTxs", sum_name: str = "CtrlSum") -> None:
    counted = _count(node, count_name)
    if counted is not None and counted[0] != count:
        raise FileError(
            FileErrorCode.COUNT_MISMATCH, f"{counted[0]} said, {count} transactions", counted[1].line, counted[1].path
        )
    ctrl = node.get(sum_name)
    if ctrl is not None:
        said = parse_amount(ctrl.text, line=ctrl.line, field=ctrl.path)
        if said != total:
            raise FileError(
                FileErrorCode.CONTROL_SUM_MISMATCH, f"{ctrl.text} said, {format_amount(total)}", ctrl.line, ctrl.path
            )


def _pain001(body: Node, max_records: int) -> list[tuple[BankRecord, Place]]:
    records: list[tuple[BankRecord, Place]] = []
    seen: set[str] = set()
    group = body.need("GrpHdr")
    body.need_text("GrpHdr", "NbOfTxs")
    for info in body.all("PmtInf"):
        member = info.need_text("Dbtr", "Nm")
        sub = info.need_text("DbtrAcct", "Id", "Othr", "Id")
        part: list[tuple[InstructionRecord, Place]] = []
        for tx in info.all("CdtTrfTxInf"):
            request_id = tx.need_text("PmtId", "EndToEndId")
            if not valid_id(request_id):
                raise FileError(FileErrorCode.BAD_FIELD, request_id[:80], tx.line, f"{tx.path}/PmtId/EndToEndId")
            if request_id in seen:
                raise FileError(FileErrorCode.DUPLICATE_RECORD, request_id, tx.line, f"{tx.path}/PmtId/EndToEndId")
            seen.add(request_id)
            amount = _amount(tx.need("Amt", "InstdAmt"))
            ustrd = tx.get("RmtInf", "Ustrd")
            words = ustrd.text.split() if ustrd is not None else []
            requested_by = words[words.index("requested_by") + 1] if "requested_by" in words[:-1] else ""
            approved_by = words[words.index("approved_by") + 1] if "approved_by" in words[:-1] else ""
            part.append((InstructionRecord(request_id, member, sub, amount, requested_by, approved_by), Place(tx.line)))
            if len(records) + len(part) > max_records:
                raise FileError(FileErrorCode.TOO_MANY_RECORDS, f"limit {max_records}", tx.line, tx.path)
        _check_totals(info, len(part), sum(r.amount_fen for r, _ in part))
        records.extend(part)
    _check_totals(group, len(records), sum(r.amount_fen for r, _ in records if isinstance(r, InstructionRecord)))
    return records


def status_record_id(msg_id: str, end_to_end: str) -> str:
    """The record id of a pain.002 status without a StsId: MsgId/OrgnlEndToEndId,
    or, when that is longer than an id may be (each is up to 35 characters in
    ISO 20022), "pain.002/" and 40 hex digits of its SHA-256: the same status
    sent again gets the same id, so it is recognised and applied once."""
    built = f"{msg_id}/{end_to_end}"
    if len(built) <= MAX_ID_CHARS:
        return built
    return "pain.002/" + hashlib.sha256(built.encode()).hexdigest()[:40]


def _pain002(body: Node, msg_id: str, max_records: int) -> list[tuple[BankRecord, Place]]:
    original = body.need("OrgnlGrpInfAndSts")
    original.need_text("OrgnlMsgId")
    records: list[tuple[BankRecord, Place]] = []
    seen: set[str] = set()
    seen_ids: set[str] = set()
    every: list[int] = []
    for info in body.all("OrgnlPmtInfAndSts"):
        for tx in info.all("TxInfAndSts"):
            end_to_end = tx.need_text("OrgnlEndToEndId")
            e2e_node = tx.need("OrgnlEndToEndId")
            if not valid_id(end_to_end):
                raise FileError(FileErrorCode.BAD_FIELD, end_to_end[:80], e2e_node.line, e2e_node.path)
            amount_node = tx.need("OrgnlTxRef", "Amt", "InstdAmt")
            amount = _amount(amount_node)
            every.append(amount)
            if end_to_end in seen:
                raise FileError(FileErrorCode.DUPLICATE_RECORD, end_to_end, e2e_node.line, e2e_node.path)
            seen.add(end_to_end)
            status = tx.need_text("TxSts")
            status_node = tx.need("TxSts")
            if status in PENDING_STATUSES:
                continue
            if status not in OK_STATUSES and status != REJECTED_STATUS:
                raise FileError(FileErrorCode.BAD_STATUS, status, status_node.line, status_node.path)
            sub = tx.need_text("OrgnlTxRef", "DbtrAcct", "Id", "Othr", "Id")
            sub_node = tx.need("OrgnlTxRef", "DbtrAcct", "Id", "Othr", "Id")
            if not valid_id(sub):
                raise FileError(FileErrorCode.BAD_FIELD, sub[:80], sub_node.line, sub_node.path)
            id_node = tx.get("StsId")
            if id_node is not None:
                record_id = id_node.text
                if not valid_id(record_id):
                    raise FileError(FileErrorCode.BAD_FIELD, record_id[:80], id_node.line, id_node.path)
            else:
                record_id = status_record_id(msg_id, end_to_end)
            id_path = (id_node or e2e_node).path
            if record_id in seen_ids:
                raise FileError(FileErrorCode.DUPLICATE_RECORD, record_id, (id_node or e2e_node).line, id_path)
            seen_ids.add(record_id)
            reason = ""
            if status == REJECTED_STATUS:
                code = tx.get("StsRsnInf", "Rsn", "Cd")
                reason = code.text if code is not None else "RJCT"
            fields = (
                ("record_id", id_path),
                ("request_id", e2e_node.path),
                ("sub_account", sub_node.path),
                ("amount", amount_node.path),
                ("status", status_node.path),
            )
            result = ResultRecord(record_id, end_to_end, sub, amount, status in OK_STATUSES, reason[:35])
            records.append((result, Place(tx.line, fields)))
            if len(records) > max_records:
                raise FileError(FileErrorCode.TOO_MANY_RECORDS, f"limit {max_records}", tx.line, tx.path)
    _check_totals(original, len(every), sum(every), "OrgnlNbOfTxs", "OrgnlCtrlSum")
    return records


# ---------------------------------------------------------------- writing


def _doc(kind: str, body: list[str]) -> bytes:
    ns = ISO_NAMESPACE + _VERSIONS[kind]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<Document xmlns={quoteattr(ns)}>",
        f"  <{_ROOTS[kind]}>",
        *("    " + line for line in body),
        f"  </{_ROOTS[kind]}>",
        "</Document>",
    ]
    return ("\n".join(lines) + "\n").encode()


def _amt(tag: str, fen: int) -> str:
    return f'<{tag} Ccy="CNY">{format_amount(fen)}</{tag}>'


def write_pain001(msg_id: str, created: str, instructions: Sequence[InstructionRecord], execution_date: str) -> bytes:
    """Withdrawal instructions as pain.001: one PmtInf per withdrawal (debtor:
    the member's supervised sub-account), EndToEndId = request id. `created`
    is the ISO date-time written as CreDtTm (pass it in: same input, same bytes)."""
    total = sum(i.amount_fen for i in instructions)
    body = [
        "<GrpHdr>",
        f"  <MsgId>{escape(msg_id)}</MsgId>",
        f"  <CreDtTm>{escape(created)}</CreDtTm>",
        f"  <NbOfTxs>{len(instructions)}</NbOfTxs>",
        f"  <CtrlSum>{format_amount(total)}</CtrlSum>",
        f"  <InitgPty><Nm>{EXCHANGE_NAME}</Nm></InitgPty>",
        "</GrpHdr>",
    ]
    for i in instructions:
        note = f"bulkex withdrawal {i.request_id} requested_by {i.requested_by} approved_by {i.approved_by}"
        body += [
            "<PmtInf>",
            f"  <PmtInfId>{escape(i.request_id)}</PmtInfId>",
            "  <PmtMtd>TRF</PmtMtd>",
            "  <NbOfTxs>1</NbOfTxs>",
            f"  <CtrlSum>{format_amount(i.amount_fen)}</CtrlSum>",
            f"  <ReqdExctnDt><Dt>{execution_date}</Dt></ReqdExctnDt>",
            f"  <Dbtr><Nm>{escape(i.member)}</Nm></Dbtr>",
            f"  <DbtrAcct><Id><Othr><Id>{escape(i.sub_account)}</Id></Othr></Id></DbtrAcct>",
            "  <CdtTrfTxInf>",
            f"    <PmtId><InstrId>{escape(i.request_id)}</InstrId>"
            f"<EndToEndId>{escape(i.request_id)}</EndToEndId></PmtId>",
            f"    <Amt>{_amt('InstdAmt', i.amount_fen)}</Amt>",
            f"    <Cdtr><Nm>{escape(i.member)}</Nm></Cdtr>",
            f"    <RmtInf><Ustrd>{escape(note)}</Ustrd></RmtInf>",
            "  </CdtTrfTxInf>",
            "</PmtInf>",
        ]
    return _doc(PAIN001, body)


def write_pain002(
    msg_id: str, created: str, original_msg_id: str, results: Sequence[tuple[ResultRecord, str]]
) -> bytes:
    """A status report (as the bank sends it): (result, TxSts code) pairs;
    StsId is the result's record id."""
    total = sum(r.amount_fen for r, _ in results)
    body = [
        "<GrpHdr>",
        f"  <MsgId>{escape(msg_id)}</MsgId>",
        f"  <CreDtTm>{escape(created)}</CreDtTm>",
        "</GrpHdr>",
        "<OrgnlGrpInfAndSts>",
        f"  <OrgnlMsgId>{escape(original_msg_id)}</OrgnlMsgId>",
        "  <OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>",
        f"  <OrgnlNbOfTxs>{len(results)}</OrgnlNbOfTxs>",
        f"  <OrgnlCtrlSum>{format_amount(total)}</OrgnlCtrlSum>",
        "</OrgnlGrpInfAndSts>",
        "<OrgnlPmtInfAndSts>",
        f"  <OrgnlPmtInfId>{escape(original_msg_id)}</OrgnlPmtInfId>",
    ]
    for r, status in results:
        body += [
            "  <TxInfAndSts>",
            f"    <StsId>{escape(r.record_id)}</StsId>",
            f"    <OrgnlEndToEndId>{escape(r.request_id)}</OrgnlEndToEndId>",
            f"    <TxSts>{status}</TxSts>",
        ]
        if status == REJECTED_STATUS:
            body.append(f"    <StsRsnInf><Rsn><Cd>{escape(r.reason or 'NARR')}</Cd></Rsn></StsRsnInf>")
        body += [
            "    <OrgnlTxRef>",
            f"      <Amt>{_amt('InstdAmt', r.amount_fen)}</Amt>",
            f"      <DbtrAcct><Id><Othr><Id>{escape(r.sub_account)}</Id></Othr></Id></DbtrAcct>",
            "    </OrgnlTxRef>",
            "  </TxInfAndSts>",
        ]
    body.append("</OrgnlPmtInfAndSts>")
    return _doc(PAIN002, body)


class StatementAccount:
    """One sub-account's statement for the camt writers: opening balance and
    entries (reference, signed amount in fen: credits positive, value date)."""

    __slots__ = ("entries", "opening_fen", "sub_account")

    def __init__(self, sub_account: str, opening_fen: int, entries: Sequence[tuple[str, int, str]]) -> None:
        self.sub_account = sub_account
        self.opening_fen = opening_fen
        self.entries = list(entries)

    @property
    def closing_fen(self) -> int:
        return self.opening_fen + sum(e[1] for e in self.entries)


def _entries(account: StatementAccount) -> list[str]:
    out: list[str] = []
    for ref, fen, value_date in account.entries:
        out += [
            "<Ntry>",
            f"  {_amt('Amt', abs(fen))}",
            f"  <CdtDbtInd>{'CRDT' if fen > 0 else 'DBIT'}</CdtDbtInd>",
            "  <Sts><Cd>BOOK</Cd></Sts>",
            f"  <BookgDt><Dt>{value_date}</Dt></BookgDt>",
            f"  <ValDt><Dt>{value_date}</Dt></ValDt>",
            f"  <AcctSvcrRef>{escape(ref)}</AcctSvcrRef>",
            "</Ntry>",
        ]
    return out


def _summary(account: StatementAccount) -> list[str]:
    credits = [e[1] for e in account.entries if e[1] > 0]
    debits = [-e[1] for e in account.entries if e[1] < 0]
    return [
        "<TxsSummry>",
        f"  <TtlNtries><NbOfNtries>{len(account.entries)}</NbOfNtries>"
        f"<Sum>{format_amount(sum(credits) + sum(debits))}</Sum></TtlNtries>",
        f"  <TtlCdtNtries><NbOfNtries>{len(credits)}</NbOfNtries>"
        f"<Sum>{format_amount(sum(credits))}</Sum></TtlCdtNtries>",
        f"  <TtlDbtNtries><NbOfNtries>{len(debits)}</NbOfNtries><Sum>{format_amount(sum(debits))}</Sum></TtlDbtNtries>",
        "</TxsSummry>",
    ]


def _balance(code: str, fen: int, date: str) -> list[str]:
    return [
        "<Bal>",
        f"  <Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>",
        f"  {_amt('Amt', abs(fen))}",
        f"  <CdtDbtInd>{'DBIT' if fen < 0 else 'CRDT'}</CdtDbtInd>",
        f"  <Dt><Dt>{date}</Dt></Dt>",
        "</Bal>",
    ]


def write_camt053(msg_id: str, created: str, statement_date: str, accounts: Sequence[StatementAccount]) -> bytes:
    """A statement per sub-account (as the bank sends it)."""
    body = ["<GrpHdr>", f"  <MsgId>{escape(msg_id)}</MsgId>", f"  <CreDtTm>{escape(created)}</CreDtTm>", "</GrpHdr>"]
    for n, account in enumerate(accounts, start=1):
        body += [
            "<Stmt>",
            f"  <Id>{escape(msg_id)}-{n}</Id>",
            f"  <Acct><Id><Othr><Id>{escape(account.sub_account)}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>",
        ]
        body += ["  " + line for line in _balance("OPBD", account.opening_fen, statement_date)]
        body += ["  " + line for line in _balance("CLBD", account.closing_fen, statement_date)]
        body += ["  " + line for line in _summary(account)]
        body += ["  " + line for line in _entries(account)]
        body.append("</Stmt>")
    return _doc(CAMT053, body)


def write_camt054(msg_id: str, created: str, accounts: Sequence[StatementAccount]) -> bytes:
    """Credit/debit notifications per sub-account (as the bank sends them)."""
    body = ["<GrpHdr>", f"  <MsgId>{escape(msg_id)}</MsgId>", f"  <CreDtTm>{escape(created)}</CreDtTm>", "</GrpHdr>"]
    for n, account in enumerate(accounts, start=1):
        body += [
            "<Ntfctn>",
            f"  <Id>{escape(msg_id)}-{n}</Id>",
            f"  <Acct><Id><Othr><Id>{escape(account.sub_account)}</Id></Othr></Id></Acct>",
        ]
        body += ["  " + line for line in _summary(account)]
        body += ["  " + line for line in _entries(account)]
        body.append("</Ntfctn>")
    return _doc(CAMT054, body)
