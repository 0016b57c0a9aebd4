"""The cost of locking receipts for a sell order when the seller holds many.

    .venv/bin/python -m bench.receipt_lock [--receipts 1000,5000,20000] [--rounds 2000] [--json]

No I/O, the warehouse engine alone (through the core that composes it): one
steel warehouse, one member holding `receipts` active one-lot receipts of
rebar (and as many of hot-rolled coil, deliverable on another instrument,
so the lock has to look past them), then `rounds` times a one-lot lock
(``lock_for_order``, oldest receipt first) and its release
(``unlock_order``). Prints microseconds per lock plus unlock.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

from exchange import Core, Settings, load_instruments
from matching import ListInstrument
from matching._native import native_status
from warehouse import AddOperator, AddWarehouse, ConfirmReceipt, RegisterReceipt

__all__ = ["run"]

MEMBER = "M001"
SYMBOLS = ("RB-HRB400E-20", "HC-Q235B-5.75")


def _core(receipts: int) -> tuple[Core, int]:
    core = Core()
    seq = 0
    out: list[Any] = []
    commands: list[Any] = [ListInstrument(i) for i in load_instruments(Settings().instruments_file)]
    commands += [AddWarehouse("W1", "East Steel Yard", ("EAST-STEEL",), "staff"), AddOperator("op1", "W1", "staff")]
    for n in range(receipts):
        for symbol in SYMBOLS:
            number = f"R-{symbol[:2]}-{n}"
            commands.append(
                RegisterReceipt(
                    "op1", number, MEMBER, symbol, 10_000, 10, f"HEAT-{n}", f"CERT-{n}", 0, 0, 0, "HRB400E",
                    "20 mm x 12 m", "bay 1",
                )
            )  # fmt: skip
            commands.append(ConfirmReceipt(number, MEMBER))
    for command in commands:
        seq += 1
        core.apply(command, seq, seq, out)
    assert not [e for e in out if e[0] == 201], "set-up refused"
    return core, seq


def run(receipt_counts: list[int], rounds: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for receipts in receipt_counts:
        core, seq = _core(receipts)
        w = core.warehouse
        out: list[Any] = []
        started = time.perf_counter()
        for n in range(rounds):
            seq += 1
            code, detail = w.lock_for_order(seq, MEMBER, SYMBOLS[0], 1, (), seq, seq, out)
            assert code == 0, (code, detail)
            code, detail = w.unlock_order(seq, 1, seq, seq, out)
            assert code == 0, (code, detail)
            if n % 256 == 0:
                out.clear()
        elapsed = time.perf_counter() - started
        w.check_invariants()
        figures[str(receipts)] = round(elapsed / rounds * 1e6, 1)
    return {
        "benchmark": "receipt_lock",
        "python": platform.python_version(),
        "build": native_status()[1],
        "machine": f"{platform.machine()} {platform.system()}",
        "rounds": rounds,
        "us_per_lock_and_unlock": figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", default="1000,5000,20000")
    parser.add_argument("--rounds", type=int, default=2_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run([int(x) for x in args.receipts.split(",")], args.rounds)
    for receipts, us in result["us_per_lock_and_unlock"].items():
        print(f"seller with {int(receipts):>6,} active receipts per instrument: {us:>8.1f} us per lock + unlock")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
