"""The instruments file (TOML), the trading-session schedule and the calendar.

``load_instruments(path)`` reads and validates the file: any mistake is a
ConfigError naming the instrument and the field. ``load_calendar(path)`` reads
its ``[calendar]``: the weekdays the exchange trades on and its holidays (Monday
to Friday, no holiday, when the file has none). ``desired_states`` is a pure
function from the minute of the day (and whether the day trades) to the state
each instrument's schedule asks for; ``session_commands`` turns it into the
SetTradingState commands the server submits (a halted instrument stays halted
until staff resume it; on a day without trading every scheduled instrument is
closed).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange._errors import ConfigError
from matching import AUCTION, BREAK, CLOSED, CONTINUOUS, HALTED, Instrument, SessionPhase, SetTradingState

__all__ = [
    "DEFAULT_CALENDAR",
    "MAX_HOLIDAYS_IN_FILE",
    "MAX_INSTRUMENTS_IN_FILE",
    "STATE_NAMES",
    "TradingCalendar",
    "desired_states",
    "load_calendar",
    "load_instruments",
    "parse_calendar",
    "parse_instruments",
    "session_commands",
]

MAX_INSTRUMENTS_IN_FILE = 256
MAX_HOLIDAYS_IN_FILE = 2_000
"""Holidays the calendar may list (some years of them; old ones may stay in the file)."""
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATE_NAMES = {"auction": AUCTION, "continuous": CONTINUOUS, "break": BREAK, "closed": CLOSED}
_MINUTES_PER_DAY = 24 * 60
_INT_FIELDS = (
    "lot_size_t", "tick_fen", "reference_price_ticks", "price_band_bps", "min_lots", "max_lots",
    "margin_rate_bps", "maker_fee_bps", "taker_fee_bps", "payment_days", "delivery_days", "weight_tolerance_bps",
)  # fmt: skip
_REQUIRED_INT_FIELDS = _INT_FIELDS[:6]
_STR_FIELDS = ("symbol", "commodity", "product", "grade", "warehouse_group")
_KNOWN_FIELDS = {*_INT_FIELDS, *_STR_FIELDS, "sessions", "receipts_required"}


def _minute(text: Any, where: str) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise ConfigError(f'{where}: `at` must be a time "HH:MM", found {text!r}')
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 23 or minutes > 59:
        raise ConfigError(f"{where}: `at` {text!r} is not a time of day")
    return hours * 60 + minutes


def _schedule(name: str, phases: Any) -> tuple[SessionPhase, ...]:
    where = f"schedule {name!r}"
    if not isinstance(phases, list) or not phases:
        raise ConfigError(f'{where}: must be a non-empty list of {{ at = "HH:MM", state = ... }}')
    out = []
    for number, phase in enumerate(phases, 1):
        here = f"{where}, phase {number}"
        if not isinstance(phase, dict) or set(phase) != {"at", "state"}:
            raise ConfigError(f"{here}: must have exactly the keys `at` and `state`")
        state = STATE_NAMES.get(phase["state"]) if isinstance(phase["state"], str) else None
        if state is None:
            raise ConfigError(f"{here}: state must be one of {', '.join(STATE_NAMES)}, found {phase['state']!r}")
        out.append(SessionPhase(_minute(phase["at"], here), state))
    return tuple(out)


def parse_instruments(data: Mapping[str, Any], source: str = "instruments file") -> list[Instrument]:
    """Instruments from parsed TOML data; ConfigError naming instrument and field."""
    unknown_top = set(data) - {"schedules", "instrument", "calendar"}
    if unknown_top:
        raise ConfigError(
            f"{source}: unknown top-level keys {sorted(unknown_top)}; expected [schedules], [calendar], [[instrument]]"
        )
    raw_schedules = data.get("schedules", {})
    if not isinstance(raw_schedules, dict):
        raise ConfigError(f"{source}: [schedules] must be a table of named phase lists")
    try:
        schedules = {name: _schedule(name, phases) for name, phases in raw_schedules.items()}
    except ConfigError as exc:  # name the file, as every other error of the file does
        raise ConfigError(f"{source}: {exc}") from None
    entries = data.get("instrument", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: define at least one [[instrument]]")
    if len(entries) > MAX_INSTRUMENTS_IN_FILE:
        raise ConfigError(f"{source}: at most {MAX_INSTRUMENTS_IN_FILE} instruments, found {len(entries)}")
    out: list[Instrument] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, 1):
        name = f"instrument {entry.get('symbol', number)!r}" if isinstance(entry, dict) else f"instrument {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: {name} must be a table")
        unknown = set(entry) - _KNOWN_FIELDS
        if unknown:
            raise ConfigError(f"{source}: {name}: unknown field(s) {sorted(unknown)}")
        fields: dict[str, Any] = {}
        for field in _STR_FIELDS:
            value = entry.get(field)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: {name}: field `{field}` must be a non-empty string")
            fields[field] = value
        for field in _INT_FIELDS:
            if field not in entry:
                if field in _REQUIRED_INT_FIELDS:
                    raise ConfigError(f"{source}: {name}: field `{field}` is required")
                continue
            value = entry[field]
            if type(value) is not int:
                raise ConfigError(f"{source}: {name}: field `{field}` must be a whole number, found {value!r}")
            fields[field] = value
        if "receipts_required" in entry:
            required = entry["receipts_required"]
            if type(required) is not bool:
                raise ConfigError(
                    f"{source}: {name}: field `receipts_required` must be true or false, found {required!r}"
                )
            fields["receipts_required"] = required
        schedule_name = entry.get("sessions")
        if schedule_name is not None:
            if not isinstance(schedule_name, str) or schedule_name not in schedules:
                raise ConfigError(f"{source}: {name}: field `sessions` names no schedule: {schedule_name!r}")
            fields["sessions"] = schedules[schedule_name]
        instrument = Instrument(**fields)
        problems = instrument.problems()
        if problems:
            raise ConfigError(f"{source}: {name}: " + "; ".join(problems))
        if instrument.symbol in seen:
            raise ConfigError(f"{source}: {name}: field `symbol` repeats an earlier instrument")
        seen.add(instrument.symbol)
        out.append(instrument)
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    """The instruments file's TOML; ConfigError naming the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"instruments file {path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"instruments file {path}: not UTF-8 (byte {exc.start}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"instruments file {path}: not valid TOML: {exc}") from None


def load_instruments(path: str | Path) -> list[Instrument]:
    path = Path(path)
    return parse_instruments(_read_toml(path), f"instruments file {path}")


@dataclass(frozen=True, slots=True)
class TradingCalendar:
    """The days the exchange trades on (exchange time, China Standard Time): its weekdays (0 =
    Monday) other than its holidays."""

    weekdays: frozenset[int]
    holidays: frozenset[dt.date]

    def __post_init__(self) -> None:
        assert self.weekdays <= set(range(7)), self.weekdays
        assert len(self.holidays) <= MAX_HOLIDAYS_IN_FILE, len(self.holidays)

    def is_trading_day(self, day: dt.date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays


DEFAULT_CALENDAR = TradingCalendar(frozenset(range(5)), frozenset())
"""Monday to Friday, no holidays: the calendar of a file without ``[calendar]``."""


def parse_calendar(data: Mapping[str, Any], source: str = "instruments file") -> TradingCalendar:
    """The ``[calendar]`` table of parsed TOML data (DEFAULT_CALENDAR without one): ``trading_days``,
    a list of weekday names ("mon" .. "sun"), and ``holidays``, a list of dates (TOML dates or
    "YYYY-MM-DD" strings); ConfigError naming the field and the entry."""
    raw = data.get("calendar")
    if raw is None:
        return DEFAULT_CALENDAR
    where = f"{source}: [calendar]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with `trading_days` and `holidays`")
    unknown = set(raw) - {"trading_days", "holidays"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected `trading_days`, `holidays`")
    days = raw.get("trading_days", list(WEEKDAY_NAMES[:5]))
    if not isinstance(days, list) or not days:
        raise ConfigError(f'{where}: `trading_days` must be a non-empty list of weekday names ("mon" .. "sun")')
    weekdays: set[int] = set()
    for number, name in enumerate(days, 1):
        if not isinstance(name, str) or name.lower() not in WEEKDAY_NAMES:
            raise ConfigError(
                f"{where}: `trading_days` entry {number} must be one of {', '.join(WEEKDAY_NAMES)}, found {name!r}"
            )
        weekdays.add(WEEKDAY_NAMES.index(name.lower()))
    entries = raw.get("holidays", [])
    if not isinstance(entries, list):
        raise ConfigError(f'{where}: `holidays` must be a list of dates (2027-01-01 or "2027-01-01")')
    if len(entries) > MAX_HOLIDAYS_IN_FILE:
        raise ConfigError(f"{where}: `holidays` lists {len(entries)} dates, at most {MAX_HOLIDAYS_IN_FILE}")
    holidays: set[dt.date] = set()
    for number, entry in enumerate(entries, 1):
        day: dt.date | None = None
        if type(entry) is dt.date:
            day = entry
        elif isinstance(entry, str):
            try:
                day = dt.date.fromisoformat(entry) if len(entry) == 10 else None
            except ValueError:
                day = None
        if day is None:
            raise ConfigError(f"{where}: `holidays` entry {number} must be a date YYYY-MM-DD, found {entry!r}")
        holidays.add(day)
    return TradingCalendar(frozenset(weekdays), frozenset(holidays))


def load_calendar(path: str | Path) -> TradingCalendar:
    """The calendar of the instruments file at `path` (see ``parse_calendar``)."""
    path = Path(path)
    return parse_calendar(_read_toml(path), f"instruments file {path}")


def desired_states(instruments: Iterable[Instrument], minute_of_day: int, trading_day: bool = True) -> dict[str, int]:
    """The state each instrument's schedule asks for at `minute_of_day`
    (0..1439). Before the day's first phase the last phase of the previous
    day still holds; on a day without trading (`trading_day` false) every
    scheduled instrument is closed; an instrument without a schedule is left
    out."""
    assert 0 <= minute_of_day < _MINUTES_PER_DAY, minute_of_day
    out: dict[str, int] = {}
    for instrument in instruments:
        phases = instrument.sessions
        if not phases:
            continue
        if not trading_day:
            out[instrument.symbol] = CLOSED
            continue
        state = phases[-1].state
        for phase in phases:
            if phase.start_minute > minute_of_day:
                break
            state = phase.state
        out[instrument.symbol] = state
    return out


def session_commands(
    instruments: Iterable[Instrument], current: Mapping[str, int], minute_of_day: int, trading_day: bool = True
) -> list[SetTradingState]:
    """SetTradingState commands that bring `current` states to the schedule (of a day without
    trading when `trading_day` is false). A HALTED instrument is left alone: resuming is a staff
    decision."""
    out = []
    for symbol, state in desired_states(instruments, minute_of_day, trading_day).items():
        now = current.get(symbol)
        if now is None or now in (HALTED, state):
            continue
        out.append(SetTradingState(symbol, state))
    return out
