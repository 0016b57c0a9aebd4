"""The instruments file and the session schedule."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import (
    DEFAULT_CALENDAR,
    ConfigError,
    Settings,
    desired_states,
    load_calendar,
    load_instruments,
    parse_calendar,
    parse_instruments,
    session_commands,
)
from exchange._instruments import MAX_HOLIDAYS_IN_FILE
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


# ------------------------------------------------------------------------ calendar


def test_the_packaged_calendar_trades_monday_to_friday() -> None:
    calendar = load_calendar(PACKAGED)
    assert calendar == DEFAULT_CALENDAR
    assert [calendar.is_trading_day(dt.date(2026, 12, d)) for d in range(7, 14)] == [True] * 5 + [False] * 2
    assert parse_calendar({"instrument": []}) == DEFAULT_CALENDAR, "a file without [calendar]"


def test_a_calendar_with_holidays_and_other_weekdays() -> None:
    calendar = parse_calendar(
        {"calendar": {"trading_days": ["mon", "TUE", "sat"], "holidays": [dt.date(2027, 1, 4), "2027-01-05"]}}
    )
    assert calendar.weekdays == {0, 1, 5}
    assert not calendar.is_trading_day(dt.date(2027, 1, 4)), "a Monday that is a holiday"
    assert not calendar.is_trading_day(dt.date(2027, 1, 5)), "a Tuesday that is a holiday, as a string"
    assert calendar.is_trading_day(dt.date(2027, 1, 9)), "a Saturday, named"
    assert not calendar.is_trading_day(dt.date(2027, 1, 6)), "a Wednesday, not named"
    assert calendar.is_trading_day(dt.date(2027, 1, 11))


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ("nope", r"\[calendar\] must be a table"),
        ({"days": []}, r"unknown keys \['days'\]"),
        ({"trading_days": []}, "`trading_days` must be a non-empty list"),
        ({"trading_days": ["mon", "funday"]}, "`trading_days` entry 2 must be one of mon, tue"),
        ({"trading_days": [1]}, "`trading_days` entry 1 must be one of"),
        ({"holidays": "2027-01-01"}, "`holidays` must be a list of dates"),
        (
            {"holidays": ["2027-01-01", "2027-02-30"]},
            "`holidays` entry 2 must be a date YYYY-MM-DD, found '2027-02-30'",
        ),
        ({"holidays": ["2027-1-1"]}, "`holidays` entry 1 must be a date"),
        ({"holidays": [20270101]}, "`holidays` entry 1 must be a date"),
        ({"holidays": ["2027-01-01"] * (MAX_HOLIDAYS_IN_FILE + 1)}, "at most 2000"),
    ],
)
def test_a_bad_calendar_is_refused_naming_the_field(calendar: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_calendar({"calendar": calendar}, "instruments file x.toml")
    with pytest.raises(ConfigError, match=r"^instruments file x.toml: \[calendar\]"):
        parse_calendar({"calendar": calendar}, "instruments file x.toml")


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 1439))
def test_on_a_day_without_trading_every_scheduled_instrument_is_closed(minute: int) -> None:
    instruments = load_instruments(PACKAGED)
    assert set(desired_states(instruments, minute, trading_day=False).values()) == {CLOSED}
    current = {i.symbol: CONTINUOUS for i in instruments}
    current[instruments[0].symbol] = HALTED
    commands = session_commands(instruments, current, minute, trading_day=False)
    assert commands == [SetTradingState(i.symbol, CLOSED) for i in instruments[1:]], "halted stays halted"


def test_the_server_closes_the_market_on_a_saturday_and_opens_it_on_monday(tmp_path: Path) -> None:
    """The gateway's schedule loop against the calendar, with the gateway's clock set to a Saturday
    and then a Monday morning (exchange time)."""
    import asyncio

    from api._harness import running_exchange

    def at(day: int, hour: int, minute: int) -> int:  # December 2026, China Standard Time
        moment = dt.datetime(2026, 12, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=8)))
        return int(moment.timestamp()) * 1_000_000_000

    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            gateway = ex.gateway
            gateway.calendar = load_calendar(PACKAGED)
            states = lambda: set(gateway.sequencer.core.trading_states().values())  # noqa: E731
            assert states() == {CONTINUOUS}, "the harness opens every instrument"
            gateway.clock_ns = lambda: at(12, 10, 0)  # Saturday 10:00
            task = asyncio.create_task(gateway.schedule())
            try:
                for _ in range(500):
                    if states() == {CLOSED}:
                        break
                    await asyncio.sleep(0.01)
                assert states() == {CLOSED}, "closed all Saturday"
                gateway.clock_ns = lambda: at(14, 10, 0)  # Monday 10:00
                for _ in range(300):  # (the loop looks again after SCHEDULE_INTERVAL_S)
                    if states() == {CONTINUOUS}:
                        break
                    await asyncio.sleep(0.01)
                assert states() == {CONTINUOUS}, "continuous trading on Monday morning"
            finally:
                task.cancel()

    asyncio.run(main())
