"""The client example ``bulkex serve --demo`` prints is five lines (connect, sign
in, place an order, print the answer) and runs as printed: saved to a file and
started with this interpreter against a real server, it prints the order's
answer."""

from __future__ import annotations

import ast
import asyncio
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from api._demo_setup import print_demo
from api._harness import running_exchange
from tests.aio import run

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent


def printed_example(url: str, key_id: str, secret: str, symbol: str, price: str) -> str:
    """The example as ``print_demo`` shows it, taken back out of its output."""
    lines: list[str] = []
    print_demo(url, key_id, secret, symbol, price, lines.append, ("okid", "osec"), simulated=True)
    start = lines.index("", next(i for i, line in enumerate(lines) if line.startswith("connect with"))) + 1
    end = lines.index("", start)
    return textwrap.dedent("\n".join(lines[start:end])) + "\n"


def test_the_printed_example_has_five_lines() -> None:
    code = printed_example("ws://127.0.0.1:8765", "k0123", "s3cr3t", "RB-HRB400E-20", "3500.00")
    assert len(code.splitlines()) == 5, code
    ast.parse(code)


def test_the_printed_example_runs_as_printed(tmp_path: Any) -> None:
    async def main() -> None:
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}") as ex:
            book = ex.sequencer.core.matching.books["RB-HRB400E-20"]
            price = book.instrument.ticks_to_price(book.reference_price_ticks)
            script = tmp_path / "try.py"
            script.write_text(printed_example(ex.url, *ex.trader_key("M001"), "RB-HRB400E-20", price))
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(script), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            answer = ast.literal_eval(out.decode().strip())  # the accepted order, as the client returns it
            assert (answer["status"], answer["open_lots"]) == ("open", 2)
            assert ex.sequencer.core.matching.orders[answer["order_id"]].account == "M001"  # resting on the book

    run(main)
