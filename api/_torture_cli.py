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
COMMIT_TIMEOUT_MS = 10_000  # exchange.DEFAULT_COMMIT_TIMEOUT_MS (not imported: `bulkex --help` stays fast)


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
    rounds: Annotated[
        int, typer.Option(help="Rounds: kill and restart (stop), two freezes (hang), one reset (cut).")
    ] = 5,
    seed: Seed = None,
    fault: Annotated[
        str,
        typer.Option(
            help="stop: the server killed and started again; hang: the connection frozen (a black hole), once "
            "below and once above the commit timeout; cut: every connection reset."
        ),
    ] = "stop",
    commit_timeout_ms: Annotated[
        int, typer.Option(help="hang/cut: the writer's commit timeout (BULKEX_COMMIT_TIMEOUT_MS).")
    ] = COMMIT_TIMEOUT_MS,
    short_freeze: Annotated[float, typer.Option(help="hang: seconds of the freeze below the timeout (0: half).")] = 0.0,
    long_freeze: Annotated[
        float, typer.Option(help="hang: seconds of the freeze above the timeout (0: timeout + 4 s).")
    ] = 0.0,
) -> None:
    """Database faults on a private PostgreSQL (initdb + pg_ctl in a temp dir): check the writer stops
    cleanly, acknowledges nothing it did not commit, and recovers."""
    from bench.dbfault import FAULTS, DbFaultFailure, PostgresMissing, db_faults, db_hang

    if fault not in ("stop", *FAULTS):
        typer.echo(f"FAILED: --fault must be stop, {', '.join(FAULTS)}; not {fault!r}", err=True)
        raise typer.Exit(2)
    chosen = _seed(seed)
    bound_s = commit_timeout_ms / 1000
    try:
        if fault == "stop":
            lines = db_faults(rounds, chosen, log=typer.echo).lines()
        else:
            lines = db_hang(
                fault,
                chosen,
                short_freeze or bound_s / 2,
                long_freeze or bound_s + 4.0,
                commit_timeout_ms,
                rounds=rounds,
                log=typer.echo,
            ).lines()
    except (DbFaultFailure, PostgresMissing, ValueError) as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from None
    for line in lines:
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
    replay: Annotated[
        int, typer.Option(help="Private messages kept for replay in all streams together (0: the default).")
    ] = 0,
    database_url: DatabaseUrl = None,
) -> None:
    """Steady open-loop order rate from many clients: latency percentiles and memory over time."""
    from bench.soak import SoakFailure, soak
    from bench.torture import scratch_database

    try:
        with scratch_database(database_url) as url:
            soak(
                url, seconds, rate, clients, interval_s=interval, log=typer.echo, ring_messages=ring,
                replay_messages=replay,
            )  # fmt: skip
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
