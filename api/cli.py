"""The ``bulkex`` command line.

    bulkex demo                     a short trading demo on the configured database
    bulkex db upgrade               bring the database schema up to date
    bulkex bench journal [--json]   sequencer + journal throughput, latency and restart time

Groups: ``db_app`` and ``bench_app`` are typer apps; add a subcommand with
``@bench_app.command("name")`` in this module (import heavy modules inside
the function so ``bulkex --help`` stays fast), or add a group with
``app.add_typer(group, name=...)``.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app", "bench_app", "db_app", "main"]

app = typer.Typer(help="bulkex: a spot exchange for steel and coal.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: programs that print figures and, last, one JSON line.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Database URL (default: BULKEX_DATABASE_URL or ./var/bulkex.db).")
]


def _settings(database_url: str | None = None):  # type: ignore[no-untyped-def]
    from exchange import ConfigError, Settings

    try:
        return Settings(database_url=database_url) if database_url else Settings()
    except (ValueError, ConfigError) as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    database_url: DatabaseUrl = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the simulated members (default: random).")] = None,
) -> None:
    """List the instruments, run an opening auction and continuous trading, print trades and books."""
    from exchange import ExchangeError, run_demo

    try:
        run_demo(_settings(database_url), write=typer.echo, seed=seed)
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Apply every pending schema migration."""
    from exchange import ExchangeError, upgrade

    settings = _settings(database_url)
    try:
        upgrade(settings.database_url)
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database {settings.database_url} is at the newest schema")


@bench_app.command("journal")
def bench_journal(
    database_url: DatabaseUrl = None,
    json_only: Annotated[bool, typer.Option("--json", help="Print only the JSON line.")] = False,
    commands: Annotated[int, typer.Option(help="Commands in the throughput run.")] = 200_000,
    rate: Annotated[int, typer.Option(help="Offered load of the latency run, commands/s.")] = 50_000,
    latency_seconds: Annotated[float, typer.Option(help="Length of the latency run.")] = 5.0,
    restart_commands: Annotated[int, typer.Option(help="Journal length of the restart run.")] = 1_000_000,
) -> None:
    """Commands sequenced, applied, journaled and committed before acknowledgement: rate, latency, restart."""
    from bench.journal import run

    run(
        database_url=database_url,
        json_only=json_only,
        commands=commands,
        rate=rate,
        latency_seconds=latency_seconds,
        restart_commands=restart_commands,
    )


@bench_app.command("matching")
def bench_matching(
    mix: Annotated[str, typer.Option(help="exchange-core or crossing (see bench/workload.py).")] = "exchange-core",
    n: Annotated[int, typer.Option(help="Timed commands per pass.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Seed of the command stream.")] = 1,
    repeat: Annotated[int, typer.Option(help="Repeats; the median is reported.")] = 3,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """The order books alone: seeded streams through MatchingEngine.apply (validation and events, no I/O)."""
    from bench.matching import MIXES, report, run

    if mix not in MIXES:
        typer.echo(f"error: unknown mix {mix!r}; choose from {', '.join(MIXES)}", err=True)
        raise typer.Exit(2)
    report(run(mix, n, seed, repeat), json_out)


def _register_gateway() -> None:
    from api._serve_cli import register

    register(app, bench_app)


_register_gateway()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
