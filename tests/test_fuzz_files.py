"""Bad input fuzzing of the files the exchange reads: bank files (bulkex signed text and ISO
20022) and the instruments file.

Valid files are mutated (bytes flipped, inserted, cut; lines dropped, repeated, swapped; one
field replaced by an awkward value), text files half of the time signed again (a bank signing
a wrong file, so the checks behind the signature are reached). Each input goes the whole way a
real import goes: parse, import command, the core. It must be accepted, or refused with a
FileError naming file, line (and field where one is at fault) / a clearing reject code, and
then the core's state hash is unchanged. The instruments file: mutated TOML text and mutated
tables, accepted (and then listable by the core) or refused with ConfigError; nothing else.
The inputs tried are counted and printed (``-s`` shows them). ``-m slow`` runs 20x as many.
"""

from __future__ import annotations

import copy
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing import C_REJECTED, RegisterMember
from clearing.bankfiles import (
    DEPOSITS,
    WITHDRAWAL_RESULTS,
    DepositRecord,
    FileError,
    FileErrorCode,
    ResultRecord,
    StatementAccount,
    parse_iso_file,
    parse_text_file,
    sign_body,
    to_import_command,
    write_camt053,
    write_camt054,
    write_pain002,
    write_text_file,
)
from exchange import ConfigError, Core, Settings, load_instruments, parse_instruments
from matching import LISTED, ListInstrument

BANK = "ICBC"
KEY = b"bank-shared-secret-0123456789abcdef"
KEYS = {BANK: KEY}
EXAMPLES = 400
SLOW_EXAMPLES = 8_000
AWKWARD = [
    "", " ", "-1", "0", "0.001", "1e9", "99999999999999999999999", "NaN", "2025-02-30", "2025-13-01",
    "ICBC", "62220A", "DEP-001", "\u00e9\u00e9", "\x00", ",", "\"", "<", "&amp;", "-0.00", "1,000.00",
]  # fmt: skip


def _core() -> Core:
    core = Core()
    out: list[Any] = []
    seq = 0
    for instrument in load_instruments(Settings().instruments_file)[:1]:
        seq += 1
        core.apply(ListInstrument(instrument), seq, 0, out)
    for member in ("A", "B", "C"):
        seq += 1
        core.apply(RegisterMember(member, BANK, f"62220{member}"), seq, 0, out)
    return core


def _valid_files() -> list[tuple[str, bytes]]:
    deposits = write_text_file(
        DEPOSITS,
        BANK,
        "ICBC-DEP-20250303-1",
        "2025-03-03",
        [
            DepositRecord("DEP-001", "62220A", 50_000_000, "2025-03-03"),
            DepositRecord("DEP-002", "62220B", 12_345_678, "2025-03-03"),
            DepositRecord("DEP-003", "62220C", 1, "2025-03-03"),
        ],
        KEY,
    )
    results = write_text_file(
        WITHDRAWAL_RESULTS,
        BANK,
        "ICBC-RES-20250303-1",
        "2025-03-03",
        [ResultRecord("RES-1", "WD-1", "62220A", 1_000, True, "")],
        KEY,
    )
    camt054 = write_camt054(
        "N-1", "2025-03-03T10:00:00", [StatementAccount("62220A", 0, [("R1", 250_000, "2025-03-03")])]
    )
    camt053 = write_camt053(
        "S-1",
        "2025-03-04T06:00:00",
        "2025-03-03",
        [StatementAccount("62220B", 1_000, [("R2", 250_000, "2025-03-03"), ("R3", -100, "2025-03-03")])],
    )
    pain002 = write_pain002(
        "ST-1", "2025-03-04T09:00:00", "PAY-1", [(ResultRecord("RES-2", "WD-2", "62220A", 500, True, ""), "ACSC")]
    )
    return [("text", deposits), ("text", results), ("iso", camt054), ("iso", camt053), ("iso", pain002)]


VALID = _valid_files()


def _resign(data: bytes) -> bytes:
    mark = data.rfind(b"S,HMAC-SHA256,")
    if mark < 0:
        return data
    body = data[:mark]
    return body + sign_body(body, KEY)


@st.composite
def mutated_file(draw: st.DrawFn) -> tuple[str, bytes]:
    kind, data = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        lines = data.split(b"\n")
        op = draw(st.sampled_from(["flip", "insert", "cut", "drop", "repeat", "swap", "field", "field"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data = data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
        elif op == "cut" and data:
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif op in ("drop", "repeat", "swap") and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "drop":
                del lines[i]
            elif op == "repeat":
                lines.insert(i, lines[j])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif op == "field":
            i = draw(st.integers(0, len(lines) - 1))
            value = draw(st.one_of(st.sampled_from(AWKWARD), st.text(max_size=12))).encode("utf-8", "surrogatepass")
            if kind == "text":
                fields = lines[i].split(b",")
                fields[draw(st.integers(0, len(fields) - 1))] = value
                lines[i] = b",".join(fields)
            elif b">" in lines[i] and b"</" in lines[i][lines[i].index(b">") :]:  # the text of one XML element
                start = lines[i].index(b">") + 1
                lines[i] = lines[i][:start] + value + lines[i][lines[i].index(b"</", start) :]
            data = b"\n".join(lines)
    if kind == "text" and draw(st.booleans()):
        data = _resign(data)
    return kind, data


def _import(core: Core, kind: str, data: bytes, seq: int) -> str:
    """The whole import path; 'accepted' or why it was refused. Asserts every refusal is documented."""
    refusal: FileError | None = None
    try:
        parsed = parse_text_file(data, KEYS, name="f.txt") if kind == "text" else parse_iso_file(data, BANK, name="f")
    except FileError as caught:
        refusal = caught
    if refusal is not None:
        err = refusal
        assert isinstance(err.code, FileErrorCode), err
        assert err.file in ("f.txt", "f"), err.to_dict()
        assert err.line >= 0, err.to_dict()
        assert err.message.startswith(f"{err.file}:{err.line}"), err.message
        assert err.code.name in err.message, err.message
        return f"file {err.code.name}"
    try:
        command = to_import_command(parsed, data)
    except ValueError:
        return "not imported"  # statements and instructions are read, not imported (documented)
    out: list[Any] = []
    core.apply(command, seq, 0, out)
    rejected = [e for e in out if e[0] == C_REJECTED]
    return f"core {rejected[0][3]}" if rejected else "accepted"


def _fuzz_files(examples: int) -> None:
    tried = {"n": 0, "accepted": 0, "refused": 0}
    reasons: Counter[str] = Counter()
    core = _core()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(mutated_file())
    def run(case: tuple[str, bytes]) -> None:
        kind, data = case
        tried["n"] += 1
        before = core.state_hash()
        outcome = _import(core, kind, data, 1_000 + tried["n"])
        reasons[outcome] += 1
        if outcome == "accepted":
            tried["accepted"] += 1
        else:
            tried["refused"] += 1
            assert core.state_hash() == before, f"a refused file ({outcome}) changed the state"
        core.check_invariants()

    run()
    print(f"bank files: {tried['n']} mutated inputs, {tried['accepted']} accepted, {tried['refused']} refused")
    print("  outcomes: " + ", ".join(f"{reason} {count}" for reason, count in reasons.most_common()))
    assert tried["refused"] > 0


def test_valid_files_import() -> None:
    """The seeds of the mutations are valid (else the fuzzing would only try one refusal)."""
    core = _core()
    outcomes = [_import(core, kind, data, 100 + n) for n, (kind, data) in enumerate(VALID)]
    assert outcomes.count("accepted") >= 2, outcomes
    assert all(o in ("accepted", "not imported") or o.startswith("core") for o in outcomes), outcomes


def test_unknown_xml_encoding_is_a_file_error() -> None:
    """Found by the fuzzing: an unknown encoding in the XML declaration raised LookupError
    out of the parser (a crash of the import) instead of a FileError."""
    data = VALID[2][1].replace(b'encoding="UTF-8"', b'encoding="TTF-8"')
    with pytest.raises(FileError) as info:
        parse_iso_file(data, BANK, name="n.xml")
    assert info.value.code == FileErrorCode.BAD_XML
    assert info.value.line == 1
    assert "n.xml:1" in info.value.message


def test_fuzz_bank_files() -> None:
    _fuzz_files(EXAMPLES)


@pytest.mark.slow
def test_fuzz_bank_files_long() -> None:
    _fuzz_files(SLOW_EXAMPLES)


# ------------------------------------------------------------- instruments

PACKAGED = Settings().instruments_file.read_text(encoding="utf-8")
TABLES = tomllib.loads(PACKAGED)
TOML_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans(), st.floats(allow_nan=False),
    st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from([0, -1, 1, 10**6, 10**18, "", "closed", "auction", "25:00", "09:00"]),
)  # fmt: skip


@st.composite
def mutated_tables(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(TABLES)
    for _ in range(draw(st.integers(1, 3))):
        instruments = data.get("instrument")
        op = draw(st.sampled_from(["set", "set", "drop", "add", "duplicate", "schedule"]))
        if not isinstance(instruments, list) or not instruments:
            break
        i = draw(st.integers(0, len(instruments) - 1))
        inst = instruments[i]
        keys = sorted(inst)
        if op == "set":
            inst[draw(st.sampled_from(keys))] = draw(TOML_VALUES)
        elif op == "drop":
            del inst[draw(st.sampled_from(keys))]
        elif op == "add":
            inst[draw(st.text(min_size=1, max_size=10))] = draw(TOML_VALUES)
        elif op == "duplicate":
            instruments.append(copy.deepcopy(inst))
        else:
            phases = data["schedules"]["day"]
            j = draw(st.integers(0, len(phases) - 1))
            phases[j][draw(st.sampled_from(["at", "state", "extra"]))] = draw(TOML_VALUES)
    return data


def test_instruments_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Found by the fuzzing: a byte that is not UTF-8 raised UnicodeDecodeError out of
    load_instruments; and schedule errors did not name the file."""
    path = tmp_path / "instruments.toml"
    path.write_bytes(b"\x80" + PACKAGED.encode())
    with pytest.raises(ConfigError, match=r"not UTF-8 \(byte 0\)"):
        load_instruments(path)
    path.write_text(PACKAGED.replace('at = "08:55"', "at = 0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"instruments file {path}: schedule 'day', phase 1"):
        load_instruments(path)


def test_sessions_not_a_name_is_a_config_error() -> None:
    """Found by the fuzzing: `sessions = []` (a list, unhashable) raised TypeError."""
    data = copy.deepcopy(TABLES)
    data["instrument"][0]["sessions"] = []
    with pytest.raises(ConfigError, match="field `sessions` names no schedule"):
        parse_instruments(data)


def _listable(instruments: list[Any]) -> None:
    core = Core()
    for seq, instrument in enumerate(instruments, 1):
        out: list[Any] = []
        core.apply(ListInstrument(instrument), seq, 0, out)
        assert any(e[0] == LISTED for e in out), (instrument, out)
    core.check_invariants()


def _fuzz_instruments(examples: int, tmp_path: Path) -> None:
    tried = {"tables": 0, "text": 0, "accepted": 0}

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(mutated_tables())
    def tables(data: dict[str, Any]) -> None:
        tried["tables"] += 1
        try:
            instruments = parse_instruments(data)
        except ConfigError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert refusal.startswith("instruments file"), refusal
            return
        tried["accepted"] += 1
        _listable(instruments)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.integers(0, len(PACKAGED) - 1), st.binary(max_size=6), st.integers(0, 4))
    def text(at: int, insert: bytes, cut: int) -> None:
        tried["text"] += 1
        raw = PACKAGED.encode()
        path = tmp_path / "instruments.toml"
        path.write_bytes(raw[:at] + insert + raw[at + cut :])
        try:
            instruments = load_instruments(path)
        except ConfigError as exc:
            refusal = str(exc)
        else:
            refusal = ""
        if refusal:
            assert refusal.startswith(f"instruments file {path}"), refusal
            return
        tried["accepted"] += 1
        _listable(instruments)

    tables()
    text()
    total = tried["tables"] + tried["text"]
    print(f"instruments file: {total} mutated inputs ({tried['tables']} tables, {tried['text']} texts), "
          f"{tried['accepted']} accepted")  # fmt: skip


def test_fuzz_instruments_file(tmp_path: Path) -> None:
    _fuzz_instruments(EXAMPLES // 2, tmp_path)


@pytest.mark.slow
def test_fuzz_instruments_file_long(tmp_path: Path) -> None:
    _fuzz_instruments(SLOW_EXAMPLES, tmp_path)
