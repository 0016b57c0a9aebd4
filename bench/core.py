"""Benchmark of the whole core: the same seeded streams as ``bench matching``
(``bench.workload.generate``) through ``exchange.Core.apply`` with funded
members, so every new order and amend passes pre-trade risk (a hold in the
ledger), every trade becomes a deal (margins and fees held) and every
cancel releases money. No I/O.

    bulkex bench core --mix crossing [--n 200000] [--seed 1] [--repeat 3] [--json]

The 100 members of the streams (M001..M100) are registered at one bank and
funded with 10 billion CNY each before the prefill. Each repeat times the
whole stream on a fresh core (commands/s) and each command (latency
percentiles); the median of the repeats is reported, and the core's
invariants (money conserved, every order's hold equal to its open lots) are
checked after the first pass.
"""

from __future__ import annotations

import gc
import json
import platform
import time
from statistics import median
from typing import Any

from bench.workload import BENCH_INSTRUMENT, BENCH_LIMITS, MIXES, SYMBOL, generate
from clearing import C_DEAL, C_ORDER_REJECTED
from exchange import Core, funding_commands, tune_collector
from exchange._gc import Freezer
from matching import CONTINUOUS, TRADE, ListInstrument, MatchingEngine, SetTradingState
from matching._native import native_status

__all__ = ["MIXES", "fresh_core", "report", "run"]

MEMBERS = [f"M{n:03d}" for n in range(1, 101)]
"""The accounts of bench.workload's streams."""


def fresh_core(prefill: list[Any]) -> tuple[Core, int]:
    """A core with the bench instrument open, the members funded and the prefill applied; the next seq."""
    core = Core(MatchingEngine(BENCH_LIMITS))
    out: list[Any] = []
    core.apply(ListInstrument(BENCH_INSTRUMENT), 1, 0, out)
    core.apply(SetTradingState(SYMBOL, CONTINUOUS), 2, 0, out)
    for command in funding_commands(MEMBERS):
        core.apply(command, 2, 0, out)  # order ids are seqs: the streams expect the first order at seq 3
    seq = 3
    for command in prefill:
        core.apply(command, seq, 0, out)
        seq += 1
    assert not any(e[0] == C_ORDER_REJECTED for e in out), "funded members pass pre-trade risk"
    return core, seq


def _collector_as_the_sequencer() -> Freezer:
    """The garbage collector set up as in the sequencing thread (``exchange.tune_collector``,
    the state built so far frozen); the timed loops tell the returned ``Freezer`` what they
    applied, as the sequencer does."""
    tune_collector()
    gc.collect()
    gc.freeze()
    freezer = Freezer()
    freezer.start()
    return freezer


def _throughput(prefill: list[Any], stream: list[Any], check: bool) -> tuple[float, int, int, int]:
    core, seq = fresh_core(prefill)
    apply = core.apply
    out: list[Any] = []
    trades = deals = refused = 0
    freezer = _collector_as_the_sequencer()
    start = time.perf_counter()
    for command in stream:
        apply(command, seq, 0, out)
        seq += 1
        freezer.applied(1)  # as the sequencing thread does
        if len(out) > 256:  # events are consumed in batches, as the sequencer does
            for event in out:
                kind = event[0]
                if kind == TRADE:
                    trades += 1
                elif kind == C_DEAL:
                    deals += 1
                elif kind == C_ORDER_REJECTED:
                    refused += 1
            out.clear()
    for event in out:
        kind = event[0]
        if kind == TRADE:
            trades += 1
        elif kind == C_DEAL:
            deals += 1
        elif kind == C_ORDER_REJECTED:
            refused += 1
    elapsed = time.perf_counter() - start
    if check:
        core.check_invariants()
    return len(stream) / elapsed, trades, deals, refused


def _latency(prefill: list[Any], stream: list[Any]) -> list[int]:
    core, seq = fresh_core(prefill)
    apply = core.apply
    out: list[Any] = []
    ns = time.perf_counter_ns
    samples = [0] * len(stream)
    freezer = _collector_as_the_sequencer()
    for i, command in enumerate(stream):
        start = ns()
        apply(command, seq, 0, out)
        samples[i] = ns() - start
        seq += 1
        out.clear()
        freezer.applied(1)
    samples.sort()
    return samples


def _percentile_us(samples: list[int], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] / 1000


def run(mix: str, n: int = 200_000, seed: int = 1, repeat: int = 3) -> dict[str, Any]:
    prefill, stream = generate(mix, n, seed)
    rates: list[float] = []
    p50: list[float] = []
    p99: list[float] = []
    seen: set[tuple[int, int, int]] = set()
    for i in range(repeat):
        rate, trades, deals, refused = _throughput(prefill, stream, check=i == 0)
        rates.append(rate)
        seen.add((trades, deals, refused))
        samples = _latency(prefill, stream)
        p50.append(_percentile_us(samples, 0.50))
        p99.append(_percentile_us(samples, 0.99))
    assert len(seen) == 1, f"counts differed between repeats: {seen}"
    trades, deals, refused = seen.pop()
    assert trades == deals, (trades, deals)
    return {
        "benchmark": "core",
        "mix": mix,
        "n": n,
        "seed": seed,
        "repeat": repeat,
        "python": platform.python_version(),
        "build": native_status()[1],
        "commands_per_s": round(median(rates)),
        "latency_us_p50": round(median(p50), 2),
        "latency_us_p99": round(median(p99), 2),
        "trades": trades,
        "deals": deals,
        "refused_by_risk": refused,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    print(
        f"core {result['mix']} (risk, ledger, books): {result['commands_per_s']:,} commands/s, "
        f"p50 {result['latency_us_p50']} us, p99 {result['latency_us_p99']} us, {result['trades']:,} trades "
        f"= {result['deals']:,} deals, {result['refused_by_risk']} refused by risk "
        f"(N={result['n']:,}, seed {result['seed']}, median of {result['repeat']})"
    )
    if as_json:
        print(json.dumps(result))
