"""The exchange runtime around the deterministic core: settings, database,
journal codec, the one-writer sequencer, snapshots and recovery, and the
instruments file.

    from exchange import Settings, Sequencer
    with Sequencer.from_settings(Settings()) as sequencer:   # locks, migrates, recovers
        sequencer.start()
        ack = sequencer.submit(command).result()             # after commit
"""

from matching._native import native_path

__path__ = native_path(__name__, __path__)  # the compiled build, when it matches these sources

from exchange._clearing_bank import (
    BankSetupError,
    EndOfDayCode,
    EndOfDayError,
    ImportResult,
    bank_keys,
    day_files,
    exchange_date,
    export_bank_files,
    import_bank_file,
    instructions_digest,
    next_trading_day,
    run_end_of_day,
    watch_folder,
)
from exchange._clearing_projection import ClearingProjection, catch_up_clearing, projected_seq
from exchange._codec import COMMANDS, checksum, decode, encode, register_commands
from exchange._core import Core, canonical_json, hash_state
from exchange._db import make_engine, pg_connect_args, upgrade
from exchange._demo import run_demo
from exchange._errors import (
    ConfigError,
    DatabaseTimeout,
    ExchangeError,
    JournalCorrupt,
    JournalError,
    JournalGap,
    QueueFull,
    WriterLocked,
    WriterStopped,
)
from exchange._gc import (
    COLLECTOR_CHECK_S,
    GC_FREEZE_EVERY_COMMANDS,
    GC_SWEEP_MIN_COMMANDS,
    GIL_SWITCH_INTERVAL_S,
    SERVING_YOUNG_THRESHOLD,
    SWEEP_MIN_INTERVAL_S,
    SWEEP_SPACING_MAX,
    YOUNG_THRESHOLD_OBJECTS,
    Freezer,
    serving_collector,
    serving_process,
    tune_collector,
)
from exchange._instruments import (
    DEFAULT_CALENDAR,
    MAX_INSTRUMENTS_IN_FILE,
    STATE_NAMES,
    TradingCalendar,
    desired_states,
    load_calendar,
    load_instruments,
    parse_calendar,
    parse_instruments,
    session_commands,
)
from exchange._projections import BatchProjection, OrdersModel, order_status
from exchange._recovery import RecoveryReport, decode_snapshot, encode_snapshot, recover
from exchange._sequencer import Ack, Listener, Sequencer
from exchange._settings import DEFAULT_COMMIT_TIMEOUT_MS, Settings
from exchange._simulation import (
    SIMULATION_BANK,
    SIMULATION_FUNDING_FEN,
    DeliveryDesk,
    OrderFlow,
    funding_commands,
    receipt_commands,
    simulated_accounts,
    simulation_setup,
    stocking_commands,
    warehouse_commands,
)
from exchange._store import Store
from exchange._ticket import Ticket
from exchange._warehouse_projection import WarehouseRows, list_deliveries, list_receipts
from exchange._warehouse_projection import stock_report as warehouse_stock_report
from exchange._warehouse_tables import DeliveryRow, ReceiptRow, StockRow
from exchange._writer import WriterProcess

__all__ = [
    "COLLECTOR_CHECK_S",
    "COMMANDS",
    "DEFAULT_CALENDAR",
    "DEFAULT_COMMIT_TIMEOUT_MS",
    "GC_FREEZE_EVERY_COMMANDS",
    "GC_SWEEP_MIN_COMMANDS",
    "GIL_SWITCH_INTERVAL_S",
    "MAX_INSTRUMENTS_IN_FILE",
    "SERVING_YOUNG_THRESHOLD",
    "SIMULATION_BANK",
    "SIMULATION_FUNDING_FEN",
    "STATE_NAMES",
    "SWEEP_MIN_INTERVAL_S",
    "SWEEP_SPACING_MAX",
    "YOUNG_THRESHOLD_OBJECTS",
    "Ack",
    "BankSetupError",
    "BatchProjection",
    "ClearingProjection",
    "ConfigError",
    "Core",
    "DatabaseTimeout",
    "DeliveryDesk",
    "DeliveryRow",
    "EndOfDayCode",
    "EndOfDayError",
    "ExchangeError",
    "Freezer",
    "ImportResult",
    "JournalCorrupt",
    "JournalError",
    "JournalGap",
    "Listener",
    "OrderFlow",
    "OrdersModel",
    "QueueFull",
    "ReceiptRow",
    "RecoveryReport",
    "Sequencer",
    "Settings",
    "StockRow",
    "Store",
    "Ticket",
    "TradingCalendar",
    "WarehouseRows",
    "WriterLocked",
    "WriterProcess",
    "WriterStopped",
    "bank_keys",
    "canonical_json",
    "catch_up_clearing",
    "checksum",
    "day_files",
    "decode",
    "decode_snapshot",
    "desired_states",
    "encode",
    "encode_snapshot",
    "exchange_date",
    "export_bank_files",
    "funding_commands",
    "hash_state",
    "import_bank_file",
    "instructions_digest",
    "list_deliveries",
    "list_receipts",
    "load_calendar",
    "load_instruments",
    "make_engine",
    "next_trading_day",
    "order_status",
    "parse_calendar",
    "parse_instruments",
    "pg_connect_args",
    "projected_seq",
    "receipt_commands",
    "recover",
    "register_commands",
    "run_demo",
    "run_end_of_day",
    "serving_collector",
    "serving_process",
    "session_commands",
    "simulated_accounts",
    "simulation_setup",
    "stocking_commands",
    "tune_collector",
    "upgrade",
    "warehouse_commands",
    "warehouse_stock_report",
    "watch_folder",
]
