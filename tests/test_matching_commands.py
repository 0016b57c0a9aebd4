"""The order-command builders give the same command as the classes, in either build."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import Settings, encode, load_instruments
from matching import (
    AmendOrder,
    CancelOrder,
    ListInstrument,
    MassCancel,
    NewOrder,
    SetTradingState,
    make_amend_order,
    make_cancel_order,
    make_new_order,
)

INSTRUMENTS = load_instruments(Settings().instruments_file)
texts = st.text(max_size=12)
ints = st.integers(min_value=-(2**62), max_value=2**62)


@given(texts, texts, texts, ints, ints, ints, ints, ints, st.booleans(), ints, st.lists(texts, max_size=3))
def test_make_new_order_equals_the_class(account, instrument, clid, side, price, qty, tif, kind, post, stp, receipts):
    args = (account, instrument, clid, side, price, qty, tif, kind, post, stp, tuple(receipts))
    built = make_new_order(*args)
    assert type(built) is NewOrder
    assert built == NewOrder(*args)
    assert encode(built) == encode(NewOrder(*args))
    assert make_new_order(*args[:6]) == NewOrder(*args[:6])  # the defaults are the class's


@given(texts, ints, ints, ints)
def test_make_cancel_and_amend_equal_the_classes(account, order_id, price, qty):
    assert make_cancel_order(account, order_id) == CancelOrder(account, order_id)
    assert type(make_cancel_order(account, order_id)) is CancelOrder
    assert make_amend_order(account, order_id, price, qty) == AmendOrder(account, order_id, price, qty)
    assert type(make_amend_order(account, order_id, price, qty)) is AmendOrder


@pytest.mark.parametrize(
    "command",
    [
        NewOrder("M001", "RB", "c1", 0, 3500, 2, 2, 0, False, 1, ("R1", "R2")),
        CancelOrder("M001", 17),
        AmendOrder("M001", 17, 3501, 5),
        MassCancel("M001", "RB"),
        SetTradingState("RB", 2),
        ListInstrument(INSTRUMENTS[0]),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_command_survives_pickle_and_copy(command: object) -> None:
    """Commands cross process boundaries (multiprocessing, queues) and get copied: the compiled
    classes come back through their ``__init__`` exactly as the plain ones do."""
    for again in (pickle.loads(pickle.dumps(command)), copy.copy(command), copy.deepcopy(command)):
        assert type(again) is type(command)
        assert again == command
        assert encode(again) == encode(command)
