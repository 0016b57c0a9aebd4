"""The order-command builders give the same command as the classes, in either build."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exchange import encode
from matching import (
    AmendOrder,
    CancelOrder,
    NewOrder,
    make_amend_order,
    make_cancel_order,
    make_new_order,
)

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
