"""The ``bulkex`` command line.

    bulkex demo                     a short trading demo on the configured database
    bulkex db upgrade               bring the database schema up to date
    bulkex bench journal [--json]   sequencer + journal throughput, latency and restart time
    bulkex bench store [--json]     the journal's write path alone: statements, commit, database CPU a command
    bulkex bench core|clearing      pre-trade risk + ledger + books; end of day and bank import at scale
    bulkex bench delivery [--json]  deals from trade to settled delivery (receipts, DvP) through the journal
    bulkex bank import FILE         apply a bank file (bulkex text or ISO 20022) whole or not at all
    bulkex bank export --date D     withdrawal instructions (text, pain.001) and the day's clearing file
    bulkex bank watch DIR           drop folder: DIR/in -> DIR/done or DIR/rejected (+ NAME.reason.txt)
    bulkex clearing run --date D    close the day: clearing files, statements, reconciliation report
    bulkex clearing register|withdraw|approve   members and withdrawals (staff)
    bulkex warehouse add|operator|require-receipts|rules   warehouses, operators, the receipt rule (staff)
    bulkex warehouse stock|receipts [--json]   stock per warehouse and instrument, receipts (read models)
    bulkex torture crash|dbfault|fuzz|soak   reliability runs (docs/reliability.md;
                                             dbfault --fault stop|hang|cut)

Groups: ``db_app`` and ``bench_app`` are typer apps; add a subcommand with
``@bench_app.command("name")`` in this module (import heavy modules inside
the function so ``bulkex --help`` stays fast), or add a group with
``app.add_typer(group, name=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "bank_app", "bench_app", "clearing_app", "db_app", "main", "warehouse_app"]

app = typer.Typer(help="bulkex: a spot exchange for steel and coal.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database administration.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: programs that print figures and, last, one JSON line.", no_args_is_help=True)
bank_app = typer.Typer(
    help="Files exchanged with the partner banks. HMAC keys: BULKEX_BANK_KEY_<BANK> or BULKEX_BANK_KEYS_FILE (TOML).",
    no_args_is_help=True,
)
clearing_app = typer.Typer(help="Clearing: members, withdrawals and the end of day.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
app.add_typer(bank_app, name="bank")
app.add_typer(clearing_app, name="clearing")
warehouse_app = typer.Typer(help="Warehouses: operators, the receipt rule, stock, receipts.", no_args_is_help=True)
app.add_typer(warehouse_app, name="warehouse")

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


@bench_app.command("store")
def bench_store(
    database_url: DatabaseUrl = None,
    json_only: Annotated[bool, typer.Option("--json", help="Print only the JSON line.")] = False,
    batches: Annotated[int, typer.Option(help="Batches written (after the opening one).")] = 1_000,
    batch_commands: Annotated[int, typer.Option(help="Commands in a batch.")] = 200,
) -> None:
    """The journal's write path alone: a batch's statements, their execution and the database's CPU a command."""
    from bench.store import run

    run(database_url=database_url, json_only=json_only, batches=batches, batch_commands=batch_commands)


MixOption = Annotated[str, typer.Option(help="exchange-core or crossing (see bench/workload.py).")]
CountOption = Annotated[int, typer.Option(help="Timed commands per pass.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the command stream.")]
RepeatOption = Annotated[int, typer.Option(help="Repeats; the median is reported.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")]


def _check_mix(mix: str) -> None:
    from bench.workload import MIXES

    if mix not in MIXES:
        typer.echo(f"error: unknown mix {mix!r}; choose from {', '.join(MIXES)}", err=True)
        raise typer.Exit(2)


@bench_app.command("matching")
def bench_matching(
    mix: MixOption = "exchange-core",
    n: CountOption = 200_000,
    seed: SeedOption = 1,
    repeat: RepeatOption = 3,
    json_out: JsonOption = False,
) -> None:
    """The order books alone: seeded streams through MatchingEngine.apply (validation and events, no I/O)."""
    from bench.matching import report, run

    _check_mix(mix)
    report(run(mix, n, seed, repeat), json_out)


@bench_app.command("core")
def bench_core(
    mix: MixOption = "crossing",
    n: CountOption = 200_000,
    seed: SeedOption = 1,
    repeat: RepeatOption = 3,
    json_out: JsonOption = False,
) -> None:
    """The core with funded members: pre-trade risk, the ledger and the books (Core.apply, no I/O)."""
    from bench.core import report, run

    _check_mix(mix)
    report(run(mix, n, seed, repeat), json_out)


@bench_app.command("clearing")
def bench_clearing(
    database_url: DatabaseUrl = None,
    members: Annotated[int, typer.Option(help="Members (all at one bank).")] = 10_000,
    trades: Annotated[int, typer.Option(help="Trades in the day.")] = 1_000_000,
    deposits: Annotated[int, typer.Option(help="Deposit records in the imported bank file.")] = 100_000,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """End of day (clearing file, instructions, reconciliation) and a bank file import, at scale."""
    from bench.clearing import report, run

    report(run(database_url, members, trades, deposits), json_out)


@bench_app.command("delivery")
def bench_delivery(
    database_url: DatabaseUrl = None,
    deals: Annotated[int, typer.Option(help="Deals taken from trade to settled delivery.")] = 10_000,
    sellers: Annotated[int, typer.Option(help="Sellers (each with one receipt) and as many buyers.")] = 100,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
) -> None:
    """Receipts locked by sell orders, trades, payment, delivery confirmed and settled (DvP), journaled."""
    from bench.delivery import report, run

    report(run(database_url, deals, sellers), json_out)


# ------------------------------------------------------------------ bank and clearing


def _open_writer(database_url: str | None) -> Any:
    """The sequencer of the configured database, opened (instruments listed on a new journal)."""
    from exchange import ExchangeError, Sequencer, load_instruments

    settings = _settings(database_url)
    sequencer = Sequencer.from_settings(settings)
    try:
        sequencer.open()
        sequencer.list_on_first_start(load_instruments(settings.instruments_file))
    except ExchangeError as exc:
        sequencer.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    return sequencer


def _keys() -> dict[str, bytes]:
    from exchange import BankSetupError, bank_keys

    try:
        return bank_keys()
    except BankSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


Bank = Annotated[
    str | None, typer.Option(help="The bank an ISO 20022 file comes from (default: the only bank with a key).")
]
Date = Annotated[str, typer.Option("--date", help="Business date, YYYY-MM-DD.")]
OutDir = Annotated[Path, typer.Option("--out", help="Folder for the files (a sub-folder per date).")]
AnyDate = Annotated[
    bool,
    typer.Option(
        "--any-date",
        help="Accept a date after the exchange's current day (UTC+8) or off the calendar's trading days.",
    ),
]


@bank_app.command("import")
def bank_import(
    file: Annotated[Path, typer.Argument(help="A bank file: bulkex text format or ISO 20022 XML.")],
    database_url: DatabaseUrl = None,
    bank: Bank = None,
) -> None:
    """Apply one bank file whole or not at all; a file seen before changes nothing."""
    from exchange import import_bank_file

    keys = _keys()
    sequencer = _open_writer(database_url)
    try:
        result = import_bank_file(sequencer, file, keys, bank)
    finally:
        sequencer.close()
    typer.echo(result.message, err=result.status == "rejected")
    if result.status == "rejected":
        raise typer.Exit(1)


@bank_app.command("export")
def bank_export(
    date: Date, database_url: DatabaseUrl = None, out: OutDir = Path("bank-out"), any_date: AnyDate = False
) -> None:
    """Withdrawal instructions (text and pain.001) and, for a closed day, the clearing file."""
    from exchange import export_bank_files

    _write_files(export_bank_files, date, database_url, out, any_date)


@bank_app.command("watch")
def bank_watch(
    folder: Annotated[Path, typer.Argument(help="The drop folder: files arrive in FOLDER/in.")],
    database_url: DatabaseUrl = None,
    bank: Bank = None,
    once: Annotated[bool, typer.Option("--once", help="Process the files there now and exit.")] = False,
) -> None:
    """Import every new file of FOLDER/in; move it to FOLDER/done or FOLDER/rejected (with NAME.reason.txt)."""
    from exchange import watch_folder

    keys = _keys()
    sequencer = _open_writer(database_url)
    try:
        rejected = watch_folder(sequencer, folder, keys, once=once, bank=bank, write=typer.echo)
    except KeyboardInterrupt:
        rejected = 0
    finally:
        sequencer.close()
    if once and rejected:
        raise typer.Exit(1)


@clearing_app.command("run")
def clearing_run(
    date: Date, database_url: DatabaseUrl = None, out: OutDir = Path("clearing-out"), any_date: AnyDate = False
) -> None:
    """Close the business day through the sequencer and write its files; a re-run writes the same bytes."""
    from exchange import run_end_of_day

    _write_files(run_end_of_day, date, database_url, out, any_date)


def _write_files(
    write: Callable[..., list[Path]], date: str, database_url: str | None, out: Path, any_date: bool
) -> None:
    """Open the writer, run `write(sequencer, date, out, keys, echo, calendar=..., any_date=...)` and
    list the files it wrote; exit 1 with the reason when the exchange refuses."""
    from exchange import ExchangeError, load_calendar

    keys = _keys()
    try:
        calendar = load_calendar(_settings(database_url).instruments_file)
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    sequencer = _open_writer(database_url)
    try:
        paths = write(sequencer, date, out, keys, typer.echo, calendar=calendar, any_date=any_date)
    except ExchangeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        sequencer.close()
    for path in paths:
        typer.echo(f"wrote {path}")


def _clearing_command(database_url: str | None, command: Any) -> None:
    """Journal one clearing command and print its outcome; exit 1 when clearing refused it."""
    from clearing import C_REJECTED, ClearingCode, clearing_event_to_dict, clearing_message

    sequencer = _open_writer(database_url)
    try:
        ack = sequencer.execute([command])[0]
    finally:
        sequencer.close()
    refused = [e for e in ack.events if e[0] == C_REJECTED]
    for e in ack.events:
        if e[0] != C_REJECTED:
            typer.echo(f"seq {ack.seq}: {clearing_event_to_dict(e)}")
    if refused:
        code = refused[0][3]
        typer.echo(f"error: {ClearingCode(code).name}: {clearing_message(code, refused[0][4])}", err=True)
        raise typer.Exit(1)


@clearing_app.command("register")
def clearing_register(member: str, bank: str, sub_account: str, database_url: DatabaseUrl = None) -> None:
    """Register MEMBER with its supervised SUB_ACCOUNT at BANK."""
    from clearing import RegisterMember

    _clearing_command(database_url, RegisterMember(member, bank, sub_account))


@clearing_app.command("withdraw")
def clearing_withdraw(
    member: str,
    request_id: str,
    amount_fen: int,
    requested_by: Annotated[str, typer.Option("--by", help="The staff user or member user asking.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Request a withdrawal of AMOUNT_FEN (integer fen) for MEMBER; above the threshold a second user approves."""
    from clearing import RequestWithdrawal

    _clearing_command(database_url, RequestWithdrawal(member, request_id, amount_fen, requested_by))


@clearing_app.command("approve")
def clearing_approve(
    request_id: str,
    approver: Annotated[str, typer.Option("--by", help="The approving staff user (not the requester).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Approve a withdrawal request (maker-checker)."""
    from clearing import ApproveWithdrawal

    _clearing_command(database_url, ApproveWithdrawal(request_id, approver))


def _register_gateway() -> None:
    from api._serve_cli import register

    register(app, bench_app)
    from api._torture_cli import register as register_torture

    register_torture(app)


# ------------------------------------------------------------------ warehouse

Staff = Annotated[str, typer.Option("--by", help="The staff user.")]


def _warehouse_command(database_url: str | None, command: Any) -> None:
    """Journal one warehouse command and print its outcome; exit 1 when it was refused."""
    from warehouse import W_REJECTED, WAREHOUSE_EVENT_FIELDS, warehouse_event_to_dict, warehouse_message

    sequencer = _open_writer(database_url)
    try:
        ack = sequencer.execute([command])[0]
    finally:
        sequencer.close()
    refused = [e for e in ack.events if e[0] == W_REJECTED]
    for e in ack.events:
        if e[0] != W_REJECTED:
            typer.echo(f"seq {ack.seq}: {warehouse_event_to_dict(e) if e[0] in WAREHOUSE_EVENT_FIELDS else e}")
    if refused:
        typer.echo(f"error: {warehouse_message(refused[0][3], refused[0][4])}", err=True)
        raise typer.Exit(1)


@warehouse_app.command("add")
def warehouse_add(
    warehouse_id: str,
    name: str,
    groups: Annotated[list[str], typer.Option("--group", help="A designated instrument group (repeat).")],
    staff: Staff,
    database_url: DatabaseUrl = None,
) -> None:
    """Add warehouse WAREHOUSE_ID called NAME, designated for the instrument groups given."""
    from warehouse import AddWarehouse

    _warehouse_command(database_url, AddWarehouse(warehouse_id, name, tuple(groups), staff))


@warehouse_app.command("operator")
def warehouse_operator(operator_id: str, warehouse_id: str, staff: Staff, database_url: DatabaseUrl = None) -> None:
    """Open operator account OPERATOR_ID acting for WAREHOUSE_ID only."""
    from warehouse import AddOperator

    _warehouse_command(database_url, AddOperator(operator_id, warehouse_id, staff))


@warehouse_app.command("require-receipts")
def warehouse_require_receipts(
    symbol: str,
    staff: Staff,
    off: Annotated[bool, typer.Option("--off", help="Turn the rule off (sellers without receipts may sell).")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Sell orders of SYMBOL must lock warehouse receipts covering their quantity (or, with --off, need not)."""
    from exchange._warehouse_rule import RequireReceipts

    _warehouse_command(database_url, RequireReceipts(symbol, not off, staff))


@warehouse_app.command("rules")
def warehouse_rules(database_url: DatabaseUrl = None) -> None:
    """The instruments whose sell orders must lock warehouse receipts (the default for every instrument)."""
    sequencer = _open_writer(database_url)
    try:
        required = sorted(sequencer.core.receipts_required)
        listed = sorted(sequencer.core.matching.books)
    finally:
        sequencer.close()
    typer.echo(f"receipts required for: {', '.join(required) or 'no instrument'}")
    free = [symbol for symbol in listed if symbol not in required]
    typer.echo(f"receipts not required for: {', '.join(free) or 'no instrument'}")


def _read_models(database_url: str | None) -> Any:
    """An engine on the configured database with the schema brought up to date (read-only use)."""
    from exchange import make_engine, upgrade

    url = _settings(database_url).database_url
    upgrade(url)
    return make_engine(url)


@warehouse_app.command("stock")
def warehouse_stock(database_url: DatabaseUrl = None, json_out: JsonOption = False) -> None:
    """Stock per warehouse and instrument, in kg: taken in, loaded out, live receipts, locked, pledged, in delivery.

    Read from the warehouse read models (written with the journal), not from the core."""
    import json

    from exchange._warehouse_projection import stock_report

    engine = _read_models(database_url)
    try:
        with engine.connect() as conn:
            rows = stock_report(conn)
    finally:
        engine.dispose()
    if json_out:
        typer.echo(json.dumps({"stock": rows}))
        return
    if not rows:
        typer.echo("no stock")
        return
    names = ("taken_in_kg", "loaded_out_kg", "live_kg", "locked_kg", "pledged_kg", "in_delivery_kg")
    typer.echo("stock per warehouse and instrument, in kg")
    typer.echo(f"{'warehouse':<20} {'instrument':<16} " + " ".join(f"{n[:-3]:>14}" for n in names))
    for row in rows:
        typer.echo(f"{row['warehouse_id']:<20} {row['instrument']:<16} " + " ".join(f"{row[n]:>14,}" for n in names))


@warehouse_app.command("receipts")
def warehouse_receipts(
    holder: Annotated[str | None, typer.Option("--holder", help="Only this member's receipts.")] = None,
    warehouse_id: Annotated[str | None, typer.Option("--warehouse", help="Only this warehouse's receipts.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only receipts in this state (active, locked, pledged, ...).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 100,
    database_url: DatabaseUrl = None,
    json_out: JsonOption = False,
) -> None:
    """List warehouse receipts from the read models, the most recently changed first."""
    import json

    from exchange._warehouse_projection import list_receipts

    engine = _read_models(database_url)
    try:
        with engine.connect() as conn:
            rows = list_receipts(conn, holder, warehouse_id, state, limit)
    finally:
        engine.dispose()
    if json_out:
        typer.echo(json.dumps({"receipts": rows}))
        return
    if not rows:
        typer.echo("no receipts")
        return
    typer.echo(
        f"{'number':<28} {'warehouse':<18} {'instrument':<16} {'holder':<10} {'state':<10} {'weight_kg':>11}  locked to"
    )
    for r in rows:
        to = f"deal {r['deal_id']}" if r["deal_id"] else f"order {r['order_id']}" if r["order_id"] else r["pledgee"]
        typer.echo(
            f"{r['number']:<28} {r['warehouse_id']:<18} {r['instrument']:<16} {r['holder']:<10} {r['state']:<10} "
            f"{r['weight_kg']:>11,}  {to}"
        )


_register_gateway()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
