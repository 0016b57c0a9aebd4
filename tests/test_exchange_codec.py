"""Journal codec: every command survives the round trip; damage is reported with its seq."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import COMMANDS, JournalCorrupt, checksum, decode, encode, register_commands
from exchange._codec import MAX_BODY_BYTES, encode_record
from matching import (
    AmendOrder,
    CancelOrder,
    Instrument,
    ListInstrument,
    MassCancel,
    NewOrder,
    SessionPhase,
    SetTradingState,
)

text = st.text(max_size=40)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
phases = st.builds(SessionPhase, st.integers(0, 1439), st.integers(0, 3))
instruments = st.builds(
    Instrument, text, text, text, text, text, ints, ints, ints, ints, ints, ints, ints, ints, ints, ints, ints, ints,
    st.lists(phases, max_size=6).map(tuple), st.booleans(),
)  # fmt: skip
receipt_lists = st.lists(text, max_size=5).map(tuple)
commands = st.one_of(
    st.builds(NewOrder, text, text, text, ints, ints, ints, ints, ints, st.booleans(), ints),
    st.builds(NewOrder, text, text, text, ints, ints, ints, ints, ints, st.booleans(), ints, receipt_lists),
    st.builds(CancelOrder, text, ints),
    st.builds(AmendOrder, text, ints, ints, ints),
    st.builds(MassCancel, text, text),
    st.builds(SetTradingState, text, ints),
    st.builds(ListInstrument, instruments),
)


def test_every_matching_command_is_registered() -> None:
    for cls in (NewOrder, CancelOrder, AmendOrder, MassCancel, SetTradingState, ListInstrument):
        assert COMMANDS[cls.KIND] is cls


@settings(max_examples=300, deadline=None)
@given(commands, st.integers(1, 2**62))
def test_round_trip(command, seq: int) -> None:
    kind, body = encode(command)
    assert kind == type(command).KIND
    decoded = decode(seq, kind, body, checksum(kind, body))
    assert decoded == command
    assert type(decoded) is type(command)
    assert encode(decoded) == (kind, body)


def test_body_is_field_values_in_declaration_order() -> None:
    kind, body = encode(NewOrder("M1", "RB", "c1", 0, 3500, 3))
    assert kind == "new_order"
    assert orjson.loads(body) == ["M1", "RB", "c1", 0, 3500, 3, 0, 0, False, 1]


@settings(max_examples=200, deadline=None)
@given(commands, st.integers(1, 2**40), st.data())
def test_flipped_byte_fails_the_checksum(command, seq: int, data) -> None:
    kind, body = encode(command)
    crc = checksum(kind, body)
    position = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :]
    with pytest.raises(JournalCorrupt, match=f"seq {seq} ") as info:
        decode(seq, kind, damaged, crc)
    assert info.value.seq == seq


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)), st.binary(max_size=200))
def test_any_body_decodes_or_is_reported_corrupt(kind: str, body: bytes) -> None:
    """A record with a valid checksum but a nonsense body is rejected with JournalCorrupt, never another error."""
    error: JournalCorrupt | None = None
    try:
        command = decode(7, kind, body, checksum(kind, body))
    except JournalCorrupt as exc:
        error = exc
    if error is not None:
        assert error.seq == 7
    else:
        assert encode(command)[0] == kind


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("new_order", b'["M1","RB","c1",0,"3500",3,0,0,false,1]', "price_ticks: expected int"),
        ("new_order", b'["M1","RB","c1",0,3500,3,0,0,0,1]', "post_only: expected a boolean"),
        ("new_order", b'["M1","RB","c1",true,3500,3,0,0,false,1]', "side: expected int"),
        ("new_order", b'["M1","RB"]', "expected an array of 6 to 11 values"),
        ("new_order", b'["M1","RB","c1",1,3500,3,0,0,false,1,"R1"]', "receipts: expected an array"),
        ("new_order", b'["M1","RB","c1",1,3500,3,0,0,false,1,[7]]', "receipts\\[\\]: expected str"),
        ("cancel_order", b'{"account":"M1"}', "expected an array of 2 values"),
        ("cancel_order", b'["M1",1', "does not decode"),
        ("no_such_kind", b"[]", "unknown command kind"),
        ("list_instrument", b'[["RB","s","p","g","w",10,100,3500,700,1,5,1,2,3,4,5,6,[[1]]]]', "sessions"),
    ],
)
def test_wrong_values_are_reported(kind: str, body: bytes, reason: str) -> None:
    with pytest.raises(JournalCorrupt, match=reason) as info:
        decode(42, kind, body, checksum(kind, body))
    assert "seq 42" in str(info.value)


def test_checksum_is_a_signed_32_bit_integer() -> None:
    values = {checksum("k", bytes([n])) for n in range(256)}
    assert all(-(2**31) <= v < 2**31 for v in values)
    assert any(v < 0 for v in values)


def test_register_refuses_a_second_class_for_a_kind() -> None:
    @dataclass(slots=True)
    class Impostor:
        KIND: ClassVar[str] = "new_order"
        account: str

    with pytest.raises(AssertionError, match="registered twice"):
        register_commands([Impostor])
    register_commands([NewOrder])  # the same class again is fine


@settings(max_examples=300, deadline=None)
@given(commands)
def test_encode_record_is_kind_body_and_checksum(command) -> None:
    """The submitter's fast path writes exactly what encode and checksum define."""
    kind, body = encode(command)
    assert encode_record(command) == (kind, body, checksum(kind, body))


def test_encode_record_refuses_what_cannot_be_journaled() -> None:
    with pytest.raises(TypeError, match="not a registered command"):
        encode_record(object())
    with pytest.raises(ValueError, match="more than"):
        encode_record(CancelOrder("x" * MAX_BODY_BYTES, 1))


def test_an_order_without_receipts_keeps_its_old_body_and_old_bodies_decode() -> None:
    """A journal written before NewOrder.receipts existed (10 values) decodes with
    no receipts; such an order encodes to the same 10 values, so its body is
    unchanged; named receipts add an eleventh value."""
    old = b'["M1","RB","c1",1,3500,3,0,0,false,1]'
    order = decode(1, "new_order", old, checksum("new_order", old))
    assert order == NewOrder("M1", "RB", "c1", 1, 3500, 3, 0, 0, False, 1)
    assert order.receipts == ()
    assert encode(order) == ("new_order", old)
    assert encode_record(order) == ("new_order", old, checksum("new_order", old))
    named = NewOrder("M1", "RB", "c1", 1, 3500, 3, 0, 0, False, 1, ("R1", "R2"))
    kind, body, crc = encode_record(named)
    assert body == b'["M1","RB","c1",1,3500,3,0,0,false,1,["R1","R2"]]'
    assert encode(named) == (kind, body)
    assert decode(2, kind, body, crc) == named


def test_an_instrument_listed_before_the_receipt_rule_field_keeps_its_old_rule() -> None:
    """ListInstrument bodies without receipts_required (18 values) were written when instruments
    sold without receipts: they decode with Instrument.JOURNAL_DEFAULTS (False), so an old journal
    replays to the state it had; a new body always carries the field, either way."""
    old = b'[["RB","steel","rebar","g","W",10,100,3500,700,1,5,1000,2,5,2,5,300,[]]]'
    listed = decode(1, "list_instrument", old, checksum("list_instrument", old))
    assert listed.instrument.receipts_required is False
    assert listed.instrument == Instrument(
        "RB", "steel", "rebar", "g", "W", 10, 100, 3500, 700, 1, 5, 1000, 2, 5, 2, 5, 300, (), False
    )
    for required in (False, True):
        new = ListInstrument(
            Instrument("RB", "steel", "rebar", "g", "W", 10, 100, 3500, 700, 1, 5, receipts_required=required)
        )
        kind, body, crc = encode_record(new)
        assert body.endswith(b",true]]" if required else b",false]]")
        assert decode(2, kind, body, crc).instrument.receipts_required is required
