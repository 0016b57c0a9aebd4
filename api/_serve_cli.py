"""Command-line commands of the gateway: ``serve``, ``keys create|revoke|list``,
``protocol schema`` and ``bench gateway``. ``register(app, bench_app)`` adds
them to the ``bulkex`` typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from matching._native import native_status

__all__ = ["register"]

DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", help="Database URL (default: BULKEX_DATABASE_URL or ./var/bulkex.db).")
]


def _settings(database_url: str | None = None, host: str | None = None, port: int | None = None):  # type: ignore[no-untyped-def]
    from exchange import ConfigError, Settings

    overrides: dict[str, object] = {}
    if database_url:
        overrides["database_url"] = database_url
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except (ValueError, ConfigError) as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


def serve_command(
    database_url: DatabaseUrl = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default BULKEX_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default BULKEX_PORT or 8765).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate chain (PEM); serves wss://.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    schedule: Annotated[bool, typer.Option(help="Follow the instruments' trading-session schedule.")] = True,
    demo: Annotated[
        bool,
        typer.Option(
            help="Open every instrument, fund demo members, add a demo warehouse with receipts, print a trader "
            "and an operator key (implies --no-schedule)."
        ),
    ] = False,
    simulate: Annotated[
        bool, typer.Option(help="With --demo: simulated makers and takers trade through the socket.")
    ] = True,
    simulate_rate: Annotated[
        float,
        typer.Option(help="With --demo: requests per second of all simulated traders together.", min=0.1, max=1000),
    ] = 5.0,
    insecure_no_pepper: Annotated[
        bool,
        typer.Option(
            "--insecure-no-pepper",
            help="Serve although BULKEX_API_KEY_PEPPER is not set (a local trial): whoever reads the database "
            "can then log in with any key.",
        ),
    ] = False,
) -> None:
    """Start the exchange: sequencer, core, journal and the WebSocket endpoint (Ctrl-C stops it gracefully)."""
    import logging

    from api._keys import pepper_problem
    from api._server import GatewayServer, serve
    from exchange import ExchangeError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration check is noise here
    if (tls_cert is None) != (tls_key is None):
        typer.echo("error: give both --tls-cert and --tls-key, or neither", err=True)
        raise typer.Exit(2)
    problem = pepper_problem()
    if problem is not None:
        if not (demo or insecure_no_pepper):
            typer.echo(_no_pepper_message(problem), err=True)
            raise typer.Exit(2)
        logging.getLogger("bulkex.serve").warning(
            "%s: the stored API keys are not sealed (%s)", problem, "--demo" if demo else "--insecure-no-pepper"
        )

    settings = _settings(database_url, host, port)
    example: tuple[str, str] | None = None
    background = None
    operator_key: tuple[str, str] | None = None
    if demo:
        from api._demo_setup import DEMO_ACCOUNTS, DEMO_OPERATOR, demo_desk, prepare_demo, simulated_traders
        from api._keys import create_key

        schedule = False
        desk = demo_desk(settings) if simulate else None
        symbol, price = prepare_demo(settings, desk)[:2]
        key_id, secret = create_key(settings.database_url, "trader", DEMO_ACCOUNTS[0], "serve --demo")
        operator_key = create_key(settings.database_url, "operator", DEMO_OPERATOR, "serve --demo")
        example = (symbol, price)
        if simulate:
            background = simulated_traders(settings.database_url, simulate_rate, desk)

    def ready(server: GatewayServer) -> None:
        typer.echo(f"bulkex listening on {server.url} (database {server.settings.database_url})")
        typer.echo(f"core: {native_status()[1]}")
        if example is not None:
            from api._demo_setup import print_demo

            print_demo(
                server.url, key_id, secret, example[0], example[1], typer.echo, operator_key, background is not None
            )

    try:
        serve(settings, tls_cert=tls_cert, tls_key=tls_key, schedule=schedule, ready=ready, background=background)
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _no_pepper_message(problem: str) -> str:
    from api._keys import MIN_PEPPER_CHARS, PEPPER_ENV

    return (
        f"error: {problem}. Without a pepper the api_keys table holds what signs a login: anyone who reads the "
        f"database (a backup, a replica, a copy) can log in with every key, staff keys included.\n"
        f"Set a random secret of at least {MIN_PEPPER_CHARS} characters in the environment of the server and of "
        "`bulkex keys create`, kept outside the database, e.g.\n"
        f"    export {PEPPER_ENV}=\"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"\n"
        "then create the keys again (a key made under another pepper, or none, no longer signs in).\n"
        "A local trial may pass --insecure-no-pepper instead; `bulkex serve --demo` needs no pepper."
    )


keys_app = typer.Typer(help="API keys of the WebSocket gateway.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Argument(help="trader, operator, bank or staff")],
    subject: Annotated[
        str,
        typer.Argument(
            help="member account, operator account (bulkex warehouse operator), bank, or for staff the user name "
            "of the person who holds the key (required: maker-checker compares people)"
        ),
    ] = "",
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    from api._keys import PEPPER_ENV, create_key, pepper_problem

    try:
        key_id, secret = create_key(_settings(database_url).database_url, role, subject, label)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"key_id: {key_id}")
    typer.echo(f"secret: {secret}")
    typer.echo("keep the secret now: it is not stored and cannot be shown again")
    problem = pepper_problem()
    if problem is not None:
        typer.echo(
            f"warning: {problem}: this key is sealed without a pepper; a server that has one will not accept it "
            f"(and `bulkex serve` without one needs --insecure-no-pepper): set {PEPPER_ENV} as the server has it "
            "and create the key again",
            err=True,
        )


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseUrl = None) -> None:
    """Revoke a key (its live sessions are closed within a few seconds)."""
    from api._keys import revoke_key

    if not revoke_key(_settings(database_url).database_url, key_id):
        typer.echo(f"error: no live key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(database_url: DatabaseUrl = None) -> None:
    """List keys (never secrets)."""
    from api._keys import list_keys

    for key in list_keys(_settings(database_url).database_url):
        state = "revoked" if key.revoked else "live"
        typer.echo(f"{key.key_id}  {key.role:8}  {key.subject or '-':12}  {state:7}  {key.label}")


protocol_app = typer.Typer(help="The WebSocket protocol.", no_args_is_help=True)


@protocol_app.command("schema")
def protocol_schema_command(
    output: Annotated[Path | None, typer.Option(help="Where to write (default docs/protocol.schema.json).")] = None,
) -> None:
    """Write the JSON Schema generated from the protocol's models."""
    from api._schema import SCHEMA_PATH, write_schema

    typer.echo(f"wrote {write_schema(output or SCHEMA_PATH)}")


def bench_gateway_command(
    json_only: Annotated[bool, typer.Option("--json", help="Print only the JSON line.")] = False,
    database_url: DatabaseUrl = None,
    clients: Annotated[int, typer.Option(help="Order-sending clients.")] = 50,
    seconds: Annotated[float, typer.Option(help="Length of the order run.")] = 5.0,
    subscribers: Annotated[int, typer.Option(help="Book subscribers in the fan-out run.")] = 1_000,
    rate: Annotated[float, typer.Option(help="Orders/s offered in the open-loop run (the target is 20,000).")] = 20_000,
) -> None:
    """Gateway throughput and latency on loopback: orders, book fan-out, memory per idle connection."""
    from bench.gateway import print_report, run

    result = run(database_url=database_url, clients=clients, seconds=seconds, subscribers=subscribers, rate=rate)
    print_report(result, json_only=json_only)


def register(app: typer.Typer, bench_app: typer.Typer | None = None) -> None:
    """Add serve, keys, protocol (and bench gateway when `bench_app` is given) to `app`."""
    app.command("serve")(serve_command)
    app.add_typer(keys_app, name="keys")
    app.add_typer(protocol_app, name="protocol")
    if bench_app is not None:
        bench_app.command("gateway")(bench_gateway_command)
