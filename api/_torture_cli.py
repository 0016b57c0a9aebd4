"""``bulkex torture ...``: the reliability runs of docs/reliability.md. ``register(app)`` adds
the group to the ``bulkex`` typer app."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register"]

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="A PostgreSQL server URL (a scratch database is created and dropped) or a SQLite URL "
        "(default: a temporary SQLite file).",
    ),
]
Seed = Annotated[int | None, typer.Option(help="Random seed (default: chosen and printed).")]


def _seed(seed: int | None) -> int:
    import random

    chosen = seed if seed is not None else random.randrange(1 << 30)
    typer.echo(f"seed {chosen}")
    return chosen


def crash_command(
    iterations: Annotated[int, typer.Option(help="Kill and restart this many times.")] = 10,
    seed: Seed = None,
    clients: Annotated[int, typer.Option(help="Trader clients over WebSocket.")] = 4,
    max_run_s: Annotated[float, typer.Option(help="Longest run before a kill, seconds.")] = 2.5,
    database_url: DatabaseUrl = None,
) -> None:
    """SIGKILL the real server at random moments under load; check nothing acknowledged is lost."""
    from bench.torture import TortureFailure, crash, scratch_database

    chosen = _seed(seed)
    try:
        with scratch_database(database_url) as url:
            report = crash(url, iterations, chosen, clients=clients, max_run_s=max_run_s, log=typer.echo)
    except (TortureFailure, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        typer.echo(line)


def dbfault_command(
    rounds: Annotated[int, typer.Option(help="Kill the database and bring it back this many times.")] = 5,
    seed: Seed = None,
) -> None:
    """Kill a private PostgreSQL (initdb + pg_ctl in a temp dir) under the writer; check it stops and recovers."""
    from bench.dbfault import DbFaultFailure, PostgresMissing, db_faults

    chosen = _seed(seed)
    try:
        report = db_faults(rounds, chosen, log=typer.echo)
    except (DbFaultFailure, PostgresMissing, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in report.lines():
        typer.echo(line)


def conservation_command(
    seconds: Annotated[float, typer.Option(help="How long the load runs.")] = 30.0,
    seed: Seed = None,
    traders: Annotated[int, typer.Option(help="Trader threads.")] = 8,
    database_url: DatabaseUrl = None,
) -> None:
    """Concurrent orders, deposits, withdrawals, deliveries, defaults, pledges; readers check every total."""
    from bench.conservation import ConservationFailure, conservation
    from bench.torture import scratch_database

    chosen = _seed(seed)
    try:
        with scratch_database(database_url) as url:
            conservation(url, seconds, chosen, traders=traders, log=typer.echo)
    except (ConservationFailure, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None


def soak_command(
    seconds: Annotated[float, typer.Option(help="How long the soak runs.")] = 600.0,
    rate: Annotated[int, typer.Option(help="Orders per second offered, all clients together.")] = 1_000,
    clients: Annotated[int, typer.Option(help="Connected trader clients.")] = 200,
    interval: Annotated[float, typer.Option(help="Seconds per reported interval.")] = 30.0,
    ring: Annotated[int, typer.Option(help="Private stream ring per account, messages (0: the default).")] = 0,
    database_url: DatabaseUrl = None,
) -> None:
    """Steady open-loop order rate from many clients: latency percentiles and memory over time."""
    from bench.soak import SoakFailure, soak
    from bench.torture import scratch_database

    try:
        with scratch_database(database_url) as url:
            soak(url, seconds, rate, clients, interval_s=interval, log=typer.echo, ring_messages=ring)
    except (SoakFailure, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    torture = typer.Typer(help="Reliability runs: crash loop, database faults, fuzzing, soak.", no_args_is_help=True)
    torture.command("crash")(crash_command)
    torture.command("dbfault")(dbfault_command)
    torture.command("conservation")(conservation_command)
    torture.command("soak")(soak_command)
    app.add_typer(torture, name="torture")
