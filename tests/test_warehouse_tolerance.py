"""Weight-tolerance settlement: worked examples in exact fen, and the
properties that hold for every input (rounding down, residue with the buyer,
refund/extra exactly the difference, the tolerance edge inside)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warehouse import DISPUTE, WITHIN, amount_for_weight_fen, settle_weight, within_tolerance

REBAR_FEN_PER_T = 350_000  # 3500 CNY/t
COAL_FEN_PER_T = 80_000  # 800 CNY/t


@pytest.mark.parametrize(
    ("contract_kg", "actual_kg", "price", "tolerance_bps", "expected"),
    [
        # rebar, 10 lots of 10 t at 3500 CNY/t, tolerance 3 %: contract amount 35 000 000 fen
        (100_000, 100_000, REBAR_FEN_PER_T, 300, (WITHIN, 35_000_000, 35_000_000, 0, 0)),
        (100_000, 98_765, REBAR_FEN_PER_T, 300, (WITHIN, 35_000_000, 34_567_750, 432_250, 0)),
        (100_000, 103_000, REBAR_FEN_PER_T, 300, (WITHIN, 35_000_000, 36_050_000, 0, 1_050_000)),
        (100_000, 97_000, REBAR_FEN_PER_T, 300, (WITHIN, 35_000_000, 33_950_000, 1_050_000, 0)),
        (100_000, 96_999, REBAR_FEN_PER_T, 300, (DISPUTE, 35_000_000, 33_949_650, 1_050_350, 0)),
        (100_000, 103_001, REBAR_FEN_PER_T, 300, (DISPUTE, 35_000_000, 36_050_350, 0, 1_050_350)),
        # 3501 CNY/t: 98 765 kg x 350 100 / 1000 = 34 577 626.5 -> 34 577 626 (the half fen stays with the buyer)
        (100_000, 98_765, 350_100, 300, (WITHIN, 35_010_000, 34_577_626, 432_374, 0)),
        # 3500.01 CNY/t (350 001 fen/t), 1 kg over: 100 001 x 350 001 / 1000 = 35 000 450.001 -> 35 000 450
        (100_000, 100_001, 350_001, 300, (WITHIN, 35_000_100, 35_000_450, 0, 350)),
        # thermal coal, 2 lots of 50 t at 800 CNY/t, tolerance 5 %
        (100_000, 95_432, COAL_FEN_PER_T, 500, (WITHIN, 8_000_000, 7_634_560, 365_440, 0)),
        (100_000, 94_999, COAL_FEN_PER_T, 500, (DISPUTE, 8_000_000, 7_599_920, 400_080, 0)),
        # zero tolerance: only the exact weight settles
        (50_000, 50_001, COAL_FEN_PER_T, 0, (DISPUTE, 4_000_000, 4_000_080, 0, 80)),
        (50_000, 50_000, COAL_FEN_PER_T, 0, (WITHIN, 4_000_000, 4_000_000, 0, 0)),
    ],
)
def test_worked_examples(
    contract_kg: int, actual_kg: int, price: int, tolerance_bps: int, expected: tuple[str, int, int, int, int]
) -> None:
    result = settle_weight(contract_kg, actual_kg, price, tolerance_bps)
    assert (result.outcome, result.contract_amount_fen, result.amount_due_fen, result.refund_fen, result.extra_fen) == (
        expected
    )
    assert result.difference_kg == actual_kg - contract_kg
    assert result.within == (expected[0] == WITHIN)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 1, 1, 0), "contract_weight_kg"),
        ((1, 0, 1, 0), "actual_weight_kg"),
        ((1, 1, 0, 0), "price_fen_per_t"),
        ((1, 1, 1, 10_001), "tolerance_bps"),
        ((1, 1, 1, -1), "tolerance_bps"),
        ((True, 1, 1, 0), "contract_weight_kg"),
        ((1.0, 1, 1, 0), "contract_weight_kg"),
    ],
)
def test_inputs_no_deal_can_have_are_programmer_errors(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settle_weight(*args)


weights = st.integers(min_value=1, max_value=100_000_000)
prices = st.integers(min_value=1, max_value=10**9)
tolerances = st.integers(min_value=0, max_value=10_000)


@settings(max_examples=500, deadline=None)
@given(weights, weights, prices, tolerances)
def test_settlement_properties(contract_kg: int, actual_kg: int, price: int, tolerance_bps: int) -> None:
    result = settle_weight(contract_kg, actual_kg, price, tolerance_bps)
    # rounding down: the amount is the largest whole fen not above the exact value; the residue (< 1 fen) is the buyer's
    for weight, amount in ((contract_kg, result.contract_amount_fen), (actual_kg, result.amount_due_fen)):
        assert amount * 1_000 <= weight * price < (amount + 1) * 1_000
    # refund and extra are the exact difference, never both
    assert result.contract_amount_fen - result.refund_fen + result.extra_fen == result.amount_due_fen
    assert min(result.refund_fen, result.extra_fen) == 0
    assert (result.extra_fen > 0) <= (actual_kg > contract_kg)
    assert (result.refund_fen > 0) <= (actual_kg < contract_kg)
    # the tolerance test, written another way: |difference| / contract <= tolerance / 10000
    inside = abs(actual_kg - contract_kg) * 10_000 <= contract_kg * tolerance_bps
    assert result.within == inside
    assert within_tolerance(contract_kg, actual_kg, tolerance_bps) == inside


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=1, max_value=10_000), tolerances)
def test_the_edge_of_the_tolerance_is_inside(lots: int, price: int, tolerance_bps: int) -> None:
    contract_kg = lots * 1_000
    edge_kg = contract_kg * tolerance_bps // 10_000  # whole kg at or inside the edge
    for actual in (contract_kg - edge_kg, contract_kg + edge_kg):
        if actual > 0:
            assert settle_weight(contract_kg, actual, price, tolerance_bps).within
    beyond = contract_kg + edge_kg + 1
    assert not settle_weight(contract_kg, beyond, price, tolerance_bps).within


def test_amount_for_weight_rounds_down() -> None:
    assert amount_for_weight_fen(1, 999) == 0
    assert amount_for_weight_fen(1, 1_000) == 1
    assert amount_for_weight_fen(3, 333_333) == 999
    assert amount_for_weight_fen(0, 1) == 0
    with pytest.raises(ValueError, match="weight_kg"):
        amount_for_weight_fen(-1, 1)
