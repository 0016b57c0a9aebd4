"""Kill the writer with SIGKILL at random moments and check that nothing
acknowledged is lost and nothing is half-applied.

A child process (this file run as a program) sequences simulated orders
and prints "seq kind" for each command after its commit. The parent kills
it at a random moment (the seed is printed), then recovers: every printed
seq must be in the journal with that kind, recovery from the snapshot must
give the same state hash as a full replay, and the projections must equal a
fresh replay of the journal. Repeated on the same database, so each round
also recovers from the state the previous crash left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from exchange import Ack, Sequencer, decode
from tests.test_exchange_sequencer import INSTRUMENTS, assert_projections_match_replay, fetch

ROUNDS = 3


def child(url: str, seed: int, committer_process: bool) -> None:
    """Sequence orders as fast as they are acknowledged until killed."""
    from exchange import OrderFlow, simulated_accounts, simulation_setup
    from matching import CONTINUOUS, SetTradingState

    sequencer = Sequencer(
        url, snapshot_every_commands=1500, batch_max_commands=200, committer_process=committer_process
    )
    sequencer.open()
    if sequencer.list_on_first_start(INSTRUMENTS):
        sequencer.execute(simulation_setup(INSTRUMENTS, simulated_accounts(50)))
    out = sys.stdout

    def print_acks(pairs: Sequence[tuple[Any, Ack]]) -> None:
        out.write("".join(f"{ack.seq} {type(command).KIND}\n" for command, ack in pairs))
        out.flush()

    sequencer.listeners.append(print_acks)
    sequencer.start()
    states = sequencer.core.trading_states()
    for symbol, state in states.items():
        if state != CONTINUOUS:
            sequencer.submit(SetTradingState(symbol, CONTINUOUS)).result()
    out.write("ready\n")
    out.flush()
    flow = OrderFlow(INSTRUMENTS, seed=seed, first_seq=sequencer.last_seq + 1, client_prefix=f"s{seed}-")
    while True:
        pending = [sequencer.submit(command) for command in flow.take(300)]
        pending[-1].result()


def _read_lines(stream, lines: list[bytes], ready: threading.Event) -> None:
    for line in stream:
        lines.append(line)
        if line == b"ready\n":
            ready.set()


def test_sigkill_loses_nothing_acknowledged(database_url: str, tmp_path) -> None:
    master_seed = random.randrange(1 << 30)
    print(f"crash test seed {master_seed}")
    rnd = random.Random(master_seed)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for round_number in range(ROUNDS):
        seed = rnd.randrange(1 << 30)
        kill_after_s = rnd.uniform(0.2, 1.5)
        committer_process = round_number != 1  # the default of `bulkex serve`; one round in one process
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), database_url, str(seed), str(int(committer_process))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
        )
        assert process.stdout is not None
        lines: list[bytes] = []
        ready = threading.Event()

        thread = threading.Thread(target=_read_lines, args=(process.stdout, lines, ready))
        thread.start()
        started = ready.wait(timeout=60)
        time.sleep(kill_after_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        thread.join(timeout=30)
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
        process.stdout.close()
        process.stderr.close()
        assert started, f"round {round_number} (seed {master_seed}): the child never got ready: {stderr}"
        acked: dict[int, str] = {}
        for line in lines:
            if line.endswith(b"\n") and line != b"ready\n":
                seq_text, kind = line.decode().split()
                acked[int(seq_text)] = kind
        assert acked, f"round {round_number} (seed {master_seed}): nothing was acknowledged before the kill"

        print(
            f"round {round_number}: seed {seed}, committer process {committer_process}, killed after "
            f"{kill_after_s:.2f} s, {len(acked)} acknowledged"
        )
        with Sequencer(database_url) as recovered:
            live_hash = recovered.state_hash()
            last_seq = recovered.last_seq
        assert max(acked) <= last_seq, f"seed {master_seed}: acknowledged seq {max(acked)} lost"
        kinds = dict(fetch(database_url, f"SELECT seq, kind FROM journal WHERE seq >= {min(acked)}"))
        for seq, kind in acked.items():
            assert kinds.get(seq) == kind, f"seed {master_seed}: acknowledged seq {seq} ({kind}) not journaled"
        with Sequencer(database_url, use_snapshots=False) as replayed:
            assert replayed.state_hash() == live_hash, f"seed {master_seed}: snapshot+tail differs from replay"
        assert_projections_match_replay(database_url)
        # every journal record decodes (no torn record)
        for record in fetch(database_url, "SELECT seq, ts_ns, kind, body, crc32 FROM journal"):
            decode(record[0], record[2], bytes(record[3]), record[4])


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
