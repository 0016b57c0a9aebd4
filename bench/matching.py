"""Benchmark of the order books alone: seeded streams through
``MatchingEngine.apply`` (validation and events included, no I/O).

    bulkex bench matching --mix exchange-core [--n 200000] [--seed 1] [--repeat 3] [--json]

Each repeat runs two passes on a fresh engine: one times the whole stream
(commands/s), one times each command (latency percentiles). The median of
the repeats is reported. Prints figures, and with --json one JSON object as
the last line.
"""

from __future__ import annotations

import gc
import json
import platform
import time
from statistics import median
from typing import Any

from bench.workload import MIXES, bench_engine, generate
from matching import TRADE
from matching._native import native_status

__all__ = ["MIXES", "run"]


def _fresh(prefill: list[Any]) -> tuple[Any, int]:
    engine, seq = bench_engine()
    out: list[Any] = []
    for command in prefill:
        engine.apply(command, seq, out)
        seq += 1
    out.clear()
    return engine, seq


def _throughput(prefill: list[Any], stream: list[Any]) -> tuple[float, int, int]:
    engine, seq = _fresh(prefill)
    apply = engine.apply
    out: list[Any] = []
    clear = out.clear
    trades = 0
    traded = 0
    gc.collect()
    start = time.perf_counter()
    for command in stream:
        apply(command, seq, out)
        seq += 1
        if len(out) > 256:  # events are consumed in batches, as the sequencer does
            for event in out:
                if event[0] == TRADE:
                    trades += 1
                    traded += event[5]
            clear()
    for event in out:
        if event[0] == TRADE:
            trades += 1
            traded += event[5]
    elapsed = time.perf_counter() - start
    return len(stream) / elapsed, trades, traded


def _latency(prefill: list[Any], stream: list[Any]) -> list[int]:
    engine, seq = _fresh(prefill)
    apply = engine.apply
    out: list[Any] = []
    ns = time.perf_counter_ns
    samples = [0] * len(stream)
    gc.collect()
    for i, command in enumerate(stream):
        start = ns()
        apply(command, seq, out)
        samples[i] = ns() - start
        seq += 1
        out.clear()
    samples.sort()
    return samples


def _percentile_us(samples: list[int], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] / 1000


def run(mix: str, n: int = 200_000, seed: int = 1, repeat: int = 3) -> dict[str, Any]:
    prefill, stream = generate(mix, n, seed)
    rates: list[float] = []
    p50: list[float] = []
    p99: list[float] = []
    p999: list[float] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(repeat):
        rate, trades, traded = _throughput(prefill, stream)
        rates.append(rate)
        seen.add((trades, traded))
        samples = _latency(prefill, stream)
        p50.append(_percentile_us(samples, 0.50))
        p99.append(_percentile_us(samples, 0.99))
        p999.append(_percentile_us(samples, 0.999))
    assert len(seen) == 1, f"trade counts differed between repeats: {seen}"
    trades, traded = seen.pop()
    return {
        "benchmark": "matching",
        "mix": mix,
        "n": n,
        "seed": seed,
        "repeat": repeat,
        "python": platform.python_version(),
        "build": native_status()[1],
        "commands_per_s": round(median(rates)),
        "latency_us_p50": round(median(p50), 2),
        "latency_us_p99": round(median(p99), 2),
        "latency_us_p999": round(median(p999), 2),
        "trades": trades,
        "traded_lots": traded,
    }


def report(result: dict[str, Any], as_json: bool) -> None:
    print(
        f"matching {result['mix']}: {result['commands_per_s']:,} commands/s, "
        f"p50 {result['latency_us_p50']} us, p99 {result['latency_us_p99']} us, "
        f"p99.9 {result['latency_us_p999']} us, {result['trades']:,} trades "
        f"(N={result['n']:,}, seed {result['seed']}, median of {result['repeat']})"
    )
    if as_json:
        print(json.dumps(result))
