"""The instruments file and the session schedule."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import ConfigError, Settings, desired_states, load_instruments, parse_instruments, session_commands
from matching import AUCTION, BREAK, CLOSED, CONTINUOUS, HALTED, SetTradingState

PACKAGED = Settings().instruments_file


def _data() -> dict[str, Any]:
    return tomllib.loads(PACKAGED.read_text())


def test_packaged_file_lists_steel_and_coal() -> None:
    instruments = load_instruments(PACKAGED)
    products = {i.product for i in instruments}
    assert {"rebar", "hot-rolled coil", "thermal coal", "coking coal"} <= products
    rebar = next(i for i in instruments if i.product == "rebar")
    assert rebar.tick_fen == 100
    assert rebar.lot_size_t == 10
    assert rebar.reference_price_ticks * rebar.tick_fen == 350_000  # 3500 CNY/t in fen
    assert rebar.price_band_bps == 700
    assert rebar.margin_rate_bps == 1000
    for instrument in instruments:
        assert instrument.problems() == []
        assert [p.state for p in instrument.sessions] == [AUCTION, CONTINUOUS, BREAK, CONTINUOUS, CLOSED]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tick_fen", 0, "tick_fen must be positive"),
        ("price_band_bps", 10_000, "price_band_bps must be between"),
        ("lot_size_t", "10", "field `lot_size_t` must be a whole number"),
        ("lot_size_t", 10.5, "field `lot_size_t` must be a whole number"),
        ("sessions", "night", "field `sessions` names no schedule"),
        ("colour", "red", r"unknown field\(s\) \['colour'\]"),
        ("grade", "", "field `grade` must be a non-empty string"),
    ],
)
def test_bad_field_names_instrument_and_field(field: str, value: object, message: str) -> None:
    data = _data()
    data["instrument"][1][field] = value
    symbol = data["instrument"][1]["symbol"]
    with pytest.raises(ConfigError, match=message) as info:
        parse_instruments(data)
    assert symbol in str(info.value)


def test_missing_required_field() -> None:
    data = _data()
    del data["instrument"][0]["min_lots"]
    with pytest.raises(ConfigError, match="field `min_lots` is required"):
        parse_instruments(data)


def test_repeated_symbol() -> None:
    data = _data()
    data["instrument"][1]["symbol"] = data["instrument"][0]["symbol"]
    with pytest.raises(ConfigError, match="repeats"):
        parse_instruments(data)


@pytest.mark.parametrize(
    ("phase", "message"),
    [({"at": "25:00", "state": "auction"}, "not a time of day"), ({"at": "9:00", "state": "auction"}, "HH:MM"),
     ({"at": "09:00", "state": "lunch"}, "state must be one of"), ({"at": "09:00"}, "exactly the keys")],
)  # fmt: skip
def test_bad_schedule(phase: dict[str, str], message: str) -> None:
    data = _data()
    data["schedules"]["day"][1] = phase
    with pytest.raises(ConfigError, match=message):
        parse_instruments(data)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_instruments(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[instrument]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_instruments(bad)


def test_schedule_through_the_day() -> None:
    instruments = load_instruments(PACKAGED)
    symbol = instruments[0].symbol

    def at(hhmm: str) -> int:
        return desired_states(instruments, int(hhmm[:2]) * 60 + int(hhmm[3:]))[symbol]

    assert at("00:00") == CLOSED
    assert at("08:54") == CLOSED
    assert at("08:55") == AUCTION
    assert at("08:59") == AUCTION
    assert at("09:00") == CONTINUOUS
    assert at("11:29") == CONTINUOUS
    assert at("11:30") == BREAK
    assert at("13:30") == CONTINUOUS
    assert at("14:59") == CONTINUOUS
    assert at("15:00") == CLOSED
    assert at("23:59") == CLOSED


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 1439))
def test_session_commands_reach_the_schedule_and_leave_halted_alone(minute: int) -> None:
    instruments = load_instruments(PACKAGED)
    desired = desired_states(instruments, minute)
    current = {i.symbol: CLOSED for i in instruments}
    current[instruments[0].symbol] = HALTED
    commands = session_commands(instruments, current, minute)
    assert all(isinstance(c, SetTradingState) for c in commands)
    after = dict(current)
    for c in commands:
        after[c.instrument] = c.state
    assert after[instruments[0].symbol] == HALTED
    for i in instruments[1:]:
        assert after[i.symbol] == desired[i.symbol]
    assert session_commands(instruments, after, minute) == []
