"""The exchange runtime around the deterministic core: settings, database,
journal codec, the one-writer sequencer, snapshots and recovery, and the
instruments file.

    from exchange import Settings, Sequencer
    with Sequencer.from_settings(Settings()) as sequencer:   # locks, migrates, recovers
        sequencer.start()
        ack = sequencer.submit(command).result()             # after commit
"""

from exchange._codec import COMMANDS, checksum, decode, encode, register_commands
from exchange._core import Core, canonical_json, hash_state
from exchange._db import make_engine, upgrade
from exchange._demo import run_demo
from exchange._errors import (
    ConfigError,
    ExchangeError,
    JournalCorrupt,
    JournalError,
    JournalGap,
    QueueFull,
    WriterLocked,
    WriterStopped,
)
from exchange._instruments import (
    MAX_INSTRUMENTS_IN_FILE,
    STATE_NAMES,
    desired_states,
    load_instruments,
    parse_instruments,
    session_commands,
)
from exchange._projections import BatchProjection, OrdersModel, order_status
from exchange._recovery import RecoveryReport, decode_snapshot, encode_snapshot, recover
from exchange._sequencer import Ack, Listener, Sequencer
from exchange._settings import Settings
from exchange._simulation import OrderFlow
from exchange._store import Store
from exchange._ticket import Ticket

__all__ = [
    "COMMANDS",
    "MAX_INSTRUMENTS_IN_FILE",
    "STATE_NAMES",
    "Ack",
    "BatchProjection",
    "ConfigError",
    "Core",
    "ExchangeError",
    "JournalCorrupt",
    "JournalError",
    "JournalGap",
    "Listener",
    "OrderFlow",
    "OrdersModel",
    "QueueFull",
    "RecoveryReport",
    "Sequencer",
    "Settings",
    "Store",
    "Ticket",
    "WriterLocked",
    "WriterStopped",
    "canonical_json",
    "checksum",
    "decode",
    "decode_snapshot",
    "desired_states",
    "encode",
    "encode_snapshot",
    "hash_state",
    "load_instruments",
    "make_engine",
    "order_status",
    "parse_instruments",
    "recover",
    "register_commands",
    "run_demo",
    "session_commands",
    "upgrade",
]
