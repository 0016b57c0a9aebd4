"""``bulkex bench gateway`` measures what it says: a short run against a real server (its own
process, real sockets) answers every order it sends, in both the paced and the closed-loop run,
counts the fan-out's deltas, and prints its figures with a JSON line last."""

from __future__ import annotations

import json
from typing import Any

from bench.gateway import print_report, run


def test_a_short_run_answers_every_order_and_reports_its_figures(capsys: Any) -> None:
    result = run(clients=4, seconds=1.0, rate=400.0, subscribers=5, processes=2)
    assert result["orders_sent"] == 400
    assert result["outcomes"]["unanswered"] == 0, result["outcomes"]
    assert result["orders_answered"] + result["orders_refused"] == result["orders_sent"], result
    assert result["orders_answered"] > 0
    assert sum(n for name, n in result["outcomes"].items() if name != "unanswered") == 400, result["outcomes"]
    assert 0 < result["order_to_ack_ms_p50"] <= result["order_to_ack_ms_p99"] <= result["order_to_ack_ms_p999"]
    assert result["capacity_outcomes"]["unanswered"] == 0, result["capacity_outcomes"]
    assert result["capacity_orders_per_s"] > 0
    assert result["messages_received"] == result["messages_expected"] > 0
    assert result["load_cpu_us_per_order"] > 0
    assert result["gateway_loop_cpu_us_per_order"] > 0
    assert result["idle_connection_kb"] > 0
    print_report(result)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["orders_sent"] == 400
