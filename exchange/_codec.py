"""Commands to journal records and back.

A record is ``(kind, body)``: `kind` is the command class's ``KIND`` and
`body` the orjson array of its field values in declaration order. A field
that holds a dataclass (``Instrument``, ``SessionPhase``) is itself an array
of its field values, a tuple field an array. The checksum is CRC-32 over the
kind's UTF-8 bytes followed by the body, stored as a signed 32-bit integer.

Fields added later keep old records decodable: a body may leave out
trailing fields that have defaults (they take their defaults). A trailing
run of tuple fields whose default is ``()`` (``NewOrder.receipts``) is left
out of the body while empty, so an ordinary order's body is what it was
before the field existed. Where leaving a field out meant something else
before the field existed, the class says so in ``JOURNAL_DEFAULTS``
(``Instrument.receipts_required``: False, the rule of the journals written
before it), and a body without the field takes that value.

``COMMANDS`` maps kind -> class; clearing and warehouse add theirs with
``register_commands``. Decoding checks every value's type against the
class's annotations, so a damaged record is reported, never half-applied.

``encode_record`` is the submitter's hot path: one precomputed function per
class gives ``(kind, body, crc32)`` with one attribute fetch for all the
fields (``operator.attrgetter``, a tuple orjson writes as the same array),
one ``orjson.dumps`` and one ``crc32`` seeded with the kind's CRC.
"""

from __future__ import annotations

import dataclasses
import typing
import zlib
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

import orjson

from exchange._errors import JournalCorrupt
from matching import COMMAND_FIELD_TYPES, MATCHING_COMMANDS, command_fields

__all__ = [
    "COMMANDS",
    "MAX_BODY_BYTES",
    "Command",
    "JournalRecordBody",
    "checksum",
    "decode",
    "encode",
    "encode_record",
    "register_commands",
]

Command = Any
"""A command: an instance of a registered dataclass with a ``KIND`` class variable."""

MAX_BODY_BYTES = 16 << 20  # a 200,000-record bank file (about 12 MB) is one command, applied whole
"""A journal body is at most 1 MiB (an instrument definition is the largest, a few hundred bytes)."""

COMMANDS: dict[str, type[Any]] = {}
_ENCODERS: dict[type[Any], Callable[[Any], Any]] = {}
_DECODERS: dict[str, Callable[[Any], Any]] = {}

JournalRecordBody = tuple[str, bytes, int]
"""(kind, body, crc32) of one command: what the journal stores besides seq and ts_ns."""

_RECORDERS: dict[type[Any], Callable[[Any], JournalRecordBody]] = {}


_KIND_CRCS: dict[str, int] = {}
"""CRC-32 of each registered kind's UTF-8 bytes, the seed of its records' checksums (replay
checks every record; an unregistered kind is computed, not kept)."""


def checksum(kind: str, body: bytes) -> int:
    """CRC-32 of kind then body, as a signed 32-bit integer (fits an SQL INTEGER)."""
    seed = _KIND_CRCS.get(kind)
    if seed is None:
        seed = zlib.crc32(kind.encode())
    crc = zlib.crc32(body, seed)
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def _is_plain(hint: Any) -> bool:
    return hint in (int, str, bool)


def _value_encoder(hint: Any) -> Callable[[Any], Any] | None:
    """None when the value is stored as it is."""
    if _is_plain(hint):
        return None
    if dataclasses.is_dataclass(hint):
        return _dataclass_encoder(hint)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = _value_encoder(typing.get_args(hint)[0])
        if item is None:
            return list
        return lambda values: [item(v) for v in values]
    raise TypeError(f"cannot journal a field of type {hint!r}")


def _hints(cls: type[Any]) -> dict[str, Any]:
    """The field types of `cls`. The compiled build records a parametrised annotation by its
    origin alone (``tuple[str, ...]`` as ``tuple``); ``COMMAND_FIELD_TYPES`` restores those."""
    return {**typing.get_type_hints(cls), **COMMAND_FIELD_TYPES.get(cls, {})}


def _omitted_tail(cls: type[Any]) -> int:
    """How many trailing fields of `cls` are tuples defaulting to () (left out of a body while empty)."""
    count = 0
    hints = _hints(cls)
    for f in reversed(command_fields(cls)):
        if f.default != () or typing.get_origin(hints[f.name]) is not tuple:
            break
        count += 1
    return count


def _minimum_values(cls: type[Any]) -> int:
    """The fewest values a body of `cls` may hold: up to its last field without a default."""
    fields = command_fields(cls)
    for index in range(len(fields), 0, -1):
        f = fields[index - 1]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            return index
    return 0


def _dataclass_encoder(cls: type[Any]) -> Callable[[Any], list[Any]]:
    hints = _hints(cls)
    names = [f.name for f in command_fields(cls)]
    encoders = [_value_encoder(hints[name]) for name in names]
    tail = _omitted_tail(cls)
    if tail:
        keep = len(names) - tail
        pairs_all = list(zip(names, encoders, strict=True))

        def encode_with_tail(obj: Any) -> list[Any]:
            values = [getattr(obj, n) if e is None else e(getattr(obj, n)) for n, e in pairs_all]
            end = len(values)
            while end > keep and not values[end - 1]:
                end -= 1
            return values[:end]

        return encode_with_tail
    if all(e is None for e in encoders):
        getter = attrgetter(*names)
        if len(names) == 1:
            return lambda obj: [getter(obj)]
        return lambda obj: list(getter(obj))
    pairs = list(zip(names, encoders, strict=True))
    return lambda obj: [getattr(obj, n) if e is None else e(getattr(obj, n)) for n, e in pairs]


def _value_decoder(hint: Any, where: str) -> Callable[[Any], Any]:
    if hint is bool:

        def check_bool(value: Any) -> bool:
            if type(value) is not bool:
                raise ValueError(f"{where}: expected a boolean, found {value!r}")
            return value

        return check_bool
    if hint is int or hint is str:
        expected = hint

        def check_plain(value: Any) -> Any:
            if type(value) is not expected:
                raise ValueError(f"{where}: expected {expected.__name__}, found {value!r}")
            return value

        return check_plain
    if dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint, where)  # type: ignore[arg-type]
    if typing.get_origin(hint) is tuple:
        item = _value_decoder(typing.get_args(hint)[0], where + "[]")

        def check_tuple(value: Any) -> tuple[Any, ...]:
            if type(value) is not list:
                raise ValueError(f"{where}: expected an array, found {value!r}")
            return tuple(item(v) for v in value)

        return check_tuple
    raise TypeError(f"cannot journal a field of type {hint!r}")


def _dataclass_decoder(cls: type[Any], where: str) -> Callable[[Any], Any]:
    hints = _hints(cls)
    names = [f.name for f in command_fields(cls)]
    checks = [_value_decoder(hints[name], f"{where}.{name}") for name in names]
    count = len(names)
    minimum = _minimum_values(cls)
    head = count - _omitted_tail(cls)
    plain = all(hints[name] in (int, str, bool) for name in names[:head])
    types_ = tuple(hints[name] for name in names[:head])

    # a field left out of an older body takes the class's JOURNAL_DEFAULTS value when it names one
    legacy: dict[str, Any] = dict(getattr(cls, "JOURNAL_DEFAULTS", {}))
    assert set(legacy) <= set(names[minimum:]), (cls, legacy)

    def decode_dataclass(values: Any) -> Any:
        if type(values) is not list or not (minimum <= len(values) <= count):
            expected = count if minimum == count else f"{minimum} to {count}"
            raise ValueError(f"{where}: expected an array of {expected} values, found {values!r}"[:300])
        # Fast path for the common case: compare exact types, no per-field calls.
        if plain and len(values) == head and tuple(map(type, values)) == types_ and (head == count or not legacy):
            return cls(*values)
        checked = [check(v) for check, v in zip(checks[: len(values)], values, strict=True)]
        if legacy and len(values) < count:
            return cls(*checked, **{name: legacy[name] for name in names[len(values) :] if name in legacy})
        return cls(*checked)

    return decode_dataclass


def _record_encoder(cls: type[Any]) -> Callable[[Any], JournalRecordBody]:
    """(kind, body, crc32) of an instance of `cls`; ValueError when the body exceeds MAX_BODY_BYTES."""
    kind: str = cls.KIND
    kind_crc = zlib.crc32(kind.encode())
    hints = _hints(cls)
    names = [f.name for f in command_fields(cls)]
    dumps = orjson.dumps
    crc32 = zlib.crc32
    limit = MAX_BODY_BYTES
    # attrgetter gives a tuple of the fields (orjson writes it as the same array as a list).
    tail = _omitted_tail(cls)
    head = names[: len(names) - tail]
    plain = len(head) > 1 and all(_is_plain(hints[name]) for name in head)
    values: Callable[[Any], Any] = attrgetter(*names) if plain else _ENCODERS[cls]

    def record(command: Any) -> JournalRecordBody:
        body = dumps(values(command))
        if len(body) > limit:
            raise ValueError(f"{kind} command encodes to {len(body)} bytes, more than {limit}")
        crc = crc32(body, kind_crc)
        return kind, body, crc - ((crc & 0x8000_0000) << 1)  # as a signed 32-bit integer

    if plain and tail:
        # the common case (an empty tail) stays one attrgetter, in the same frame; a filled
        # tail takes the full encoder
        head_values = attrgetter(*head)
        tail_values = attrgetter(*names[len(head) :]) if tail == 1 else None
        full = _ENCODERS[cls]
        tail_names = names[len(head) :]

        def record_with_tail(command: Any) -> JournalRecordBody:
            filled = tail_values(command) if tail_values is not None else any(getattr(command, n) for n in tail_names)
            body = dumps(full(command) if filled else head_values(command))
            if len(body) > limit:
                raise ValueError(f"{kind} command encodes to {len(body)} bytes, more than {limit}")
            crc = crc32(body, kind_crc)
            return kind, body, crc - ((crc & 0x8000_0000) << 1)  # as a signed 32-bit integer

        return record_with_tail
    return record


def register_commands(classes: Iterable[type[Any]]) -> None:
    """Make command classes journalable. Each must be a dataclass with a
    unique ``KIND`` and fields of int, str, bool, dataclasses of those, or
    tuples of them."""
    for cls in classes:
        kind = cls.KIND
        assert isinstance(kind, str), cls
        assert dataclasses.is_dataclass(cls), cls
        existing = COMMANDS.get(kind)
        if existing is cls:
            continue
        assert existing is None, f"command kind {kind!r} registered twice ({existing} and {cls})"
        _ENCODERS[cls] = _dataclass_encoder(cls)
        _DECODERS[kind] = _dataclass_decoder(cls, kind)
        _RECORDERS[cls] = _record_encoder(cls)
        _KIND_CRCS[kind] = zlib.crc32(kind.encode())
        COMMANDS[kind] = cls


register_commands(MATCHING_COMMANDS.values())

_dumps = orjson.dumps
_loads = orjson.loads


def encode(command: Command) -> tuple[str, bytes]:
    """(kind, body) of a registered command."""
    cls = type(command)
    return cls.KIND, _dumps(_ENCODERS[cls](command))


def encode_record(command: Command) -> JournalRecordBody:
    """(kind, body, crc32) of a registered command; TypeError for any other object,
    ValueError when its body would exceed MAX_BODY_BYTES."""
    recorder = _RECORDERS.get(type(command))
    if recorder is None:
        raise TypeError(f"{type(command).__name__} is not a registered command")
    return recorder(command)


def encode_records(commands: Iterable[Command]) -> list[JournalRecordBody]:
    """The (kind, body, crc32) of each command, in a loop for many (TypeError naming the first
    unregistered command, ValueError for an oversized body)."""
    recorders = _RECORDERS
    commands = tuple(commands)
    try:
        return [recorders[type(command)](command) for command in commands]
    except KeyError:
        return [encode_record(command) for command in commands]  # names the unregistered command


def decode(seq: int, kind: str, body: bytes, crc32: int) -> Command:
    """The command of journal record `seq`; JournalCorrupt when the checksum,
    the kind or the body is wrong."""
    if checksum(kind, body) != crc32:
        raise JournalCorrupt(seq, "checksum mismatch")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise JournalCorrupt(seq, f"unknown command kind {kind!r} (is its package registered?)")
    try:
        return decoder(_loads(body))
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise JournalCorrupt(seq, f"body does not decode: {exc}") from None
