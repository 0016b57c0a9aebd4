"""The compiled build (matching/_native.py) behaves exactly as the source.

The same seeded streams run in two fresh interpreters, one on the compiled
modules and one with ``BULKEX_NATIVE=0``, and must give byte-identical events
and the same state hash. A build that does not match the sources on disk is
never loaded. In CI the compiled build must be present: the figures of record
are taken with it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from matching._native import MANIFEST, NATIVE_MODULES, PACKAGES_FOLDER, native_status

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: a settled order flow over the shipped instruments (orders, amends,
# cancels, trades, deals, payments, deliveries, receipts) and the bench's crossing stream through
# the whole core, then prints which build ran, a digest of every event and the state hash.
_STREAMS = """
import hashlib, json, sys
from exchange import Core, OrderFlow, Settings, load_instruments
from matching import CONTINUOUS, ListInstrument, MatchingEngine, SetTradingState
from matching._native import native_status
import matching._engine, exchange._core

digest = hashlib.sha256()
def run(core, commands, seq):
    out = []
    for command in commands:
        core.apply(command, seq, seq * 1_000_000, out)
        seq += 1
    for event in out:
        digest.update(repr(event).encode())
    return out, seq

n = int(sys.argv[1])
instruments = load_instruments(Settings().instruments_file)
core = Core()
seq = 1
setup = [ListInstrument(i) for i in instruments] + [SetTradingState(i.symbol, CONTINUOUS) for i in instruments]
_, seq = run(core, setup, seq)
flow = OrderFlow(instruments, seed=7, first_seq=seq, settle=True)
_, seq = run(core, flow.setup(), seq)
flow.next_seq = seq
while seq < n:
    commands = flow.take(200) + flow.settlement()
    out, seq = run(core, commands, seq)
    flow.observe(out)
    flow.next_seq = seq
core.check_invariants()
hashes = [core.state_hash()]

from bench.core import fresh_core
from bench.workload import generate
for mix in ("crossing", "exchange-core"):
    prefill, stream = generate(mix, n, 3)
    bench_core, first = fresh_core(prefill)
    run(bench_core, stream, first)
    bench_core.check_invariants()
    hashes.append(bench_core.state_hash())
print(json.dumps({"native": native_status()[0], "files": [matching._engine.__file__, exchange._core.__file__],
                  "events": digest.hexdigest(), "hashes": hashes}))
"""


def _run_streams(env_extra: dict[str, str], n: int) -> dict[str, Any]:
    env = {**os.environ, **env_extra}
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", _STREAMS, str(n)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _require_build() -> None:
    compiled, why = native_status()
    if not compiled:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the compiled build: {why}")
        pytest.skip(why)


# pytest's closing line: "5 passed in 4.42s", "4 passed, 1 skipped, 2 deselected in 65.12s (0:01:05)"
_SUMMARY = re.compile(r"=*\s*(\d+ \w+(?:, \d+ \w+)*) in \d+(?:\.\d+)?s\b.*")


def _outcome_counts(stdout: str) -> dict[str, int]:
    """The counts on the last summary line of a pytest run's output, by outcome ("passed", "skipped", ...)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stdout)  # in case the environment forces colour
    for line in reversed(plain.splitlines()):
        if match := _SUMMARY.fullmatch(line.strip()):
            return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", match.group(1))}
    raise AssertionError(f"no pytest summary line in: {stdout[-2000:]}")


def test_the_pytest_summary_line_is_read_whole() -> None:
    assert _outcome_counts("....\n5 passed in 4.42s\n") == {"passed": 5}
    assert _outcome_counts(
        "FAILED tests/x.py::t - assert 0\n1 failed, 4 passed, 1 skipped, 2 deselected, 3 warnings, 1 error in 65.12s"
        " (0:01:05)\n"
    ) == {"failed": 1, "passed": 4, "skipped": 1, "deselected": 2, "warnings": 3, "error": 1}
    assert _outcome_counts("\x1b[32m\x1b[1m6 passed\x1b[0m\x1b[32m in 0.10s\x1b[0m\n") == {"passed": 6}
    assert _outcome_counts("== 2 passed, 1 xfailed in 1.00s ==") == {"passed": 2, "xfailed": 1}
    with pytest.raises(AssertionError, match="no pytest summary line"):
        _outcome_counts("collected 0 items\n")


def test_compiled_build_gives_the_same_events_and_state_as_the_source() -> None:
    _require_build()
    compiled = _run_streams({}, 12_000)
    source = _run_streams({"BULKEX_NATIVE": "0"}, 12_000)
    assert compiled["native"] is True
    assert all(f.endswith(".so") for f in compiled["files"]), compiled["files"]
    assert source["native"] is False
    assert all(f.endswith(".py") for f in source["files"]), source["files"]
    assert compiled["events"] == source["events"]
    assert compiled["hashes"] == source["hashes"]


def test_the_gateway_runs_the_same_tests_in_plain_python() -> None:
    """The suite runs the gateway compiled; its per-order path (the handlers, the read models, the
    feeds) must still work as plain Python, where no C compiler is at hand: the handlers' tests and
    a real server and client (a local book against the server's after random orders, on SQLite)
    run again in a fresh interpreter with ``BULKEX_NATIVE=0``, and must have run there as source."""
    _require_build()
    env = {**os.environ, "BULKEX_NATIVE": "0"}
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_api_handlers.py",
         "tests/test_api_gateway.py::test_local_book_equals_server_after_random_orders[sqlite-writer-process]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    counts = _outcome_counts(done.stdout)  # every collected test ran and passed: none skipped or deselected
    assert counts.get("passed", 0) >= 5, (counts, done.stdout[-2000:])
    assert set(counts) <= {"passed", "warning", "warnings"}, (counts, done.stdout[-2000:])
    which = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", "import api._server as s, api._views as v; print(s.__file__); print(v.__file__)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert which.returncode == 0, which.stderr[-2000:]
    assert all(line.endswith(".py") for line in which.stdout.split()), which.stdout


def _fake_build(folder: Path, sources: dict[str, str]) -> None:
    from matching._native import interpreter_tag

    (folder / PACKAGES_FOLDER / "matching").mkdir(parents=True)
    # a module that would break every import of the engine, were it ever loaded
    (folder / PACKAGES_FOLDER / "matching" / "_engine.py").write_text("raise ImportError('stale build loaded')\n")
    (folder / MANIFEST).write_text(json.dumps({"interpreter": interpreter_tag(), "sources": sources}))


_PROBE = (
    "import matching._engine as e; from matching._native import native_status;"
    " print(e.__file__); print(native_status()[1])"
)


def _probe(folder: Path) -> list[str]:
    env = {**os.environ, "BULKEX_NATIVE_DIR": str(folder)}
    env.pop("BULKEX_NATIVE", None)
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_a_build_of_other_sources_is_never_loaded(tmp_path: Path) -> None:
    stale = dict.fromkeys(NATIVE_MODULES, "0" * 64)
    _fake_build(tmp_path / "stale", stale)
    path, status = _probe(tmp_path / "stale")
    assert path == str(ROOT / "matching" / "_engine.py")
    assert "sources changed" in status
    path, status = _probe(tmp_path / "none")
    assert path == str(ROOT / "matching" / "_engine.py")
    assert "no compiled build" in status


def test_a_build_matching_the_sources_is_loaded(tmp_path: Path) -> None:
    from matching._native import source_digests

    _fake_build(tmp_path / "current", source_digests())
    env = {**os.environ, "BULKEX_NATIVE_DIR": str(tmp_path / "current")}
    env.pop("BULKEX_NATIVE", None)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], check=False, cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "stale build loaded" in done.stderr  # the folder's module, not the source, was imported


def test_the_console_command_imports_every_package_with_the_build_in_place(tmp_path: Path) -> None:
    """The ``bulkex`` script starts outside the project folder, so the packages come from the
    installed project's path entries, never from the build's folder."""
    script = Path(sys.executable).parent / "bulkex"
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [str(script), "bench", "core", "--mix", "crossing", "--n", "2000", "--repeat", "1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["build"] == native_status()[1]
    assert result["trades"] > 0
