"""The sequencer in its writer process (exchange/_writer.py), against the same sequencer in
this process: the same acks for the same commands, every ticket answered once, listeners in
order, the queue's bound, nothing acknowledged lost at close, a dead writer stops the proxy,
and a dead server takes its writer (and the journal's lock) with it."""

from __future__ import annotations

import marshal
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from exchange import (
    QueueFull,
    Sequencer,
    Settings,
    WriterLocked,
    WriterProcess,
    WriterStopped,
    funding_commands,
    load_instruments,
)
from exchange._warehouse_rule import RequireReceipts
from matching import BUY, CONTINUOUS, GTC, IOC, REJECTED, SELL, SetTradingState, make_cancel_order, make_new_order

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = [f"W{n:02d}" for n in range(6)]


def _settings(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, host="127.0.0.1", port=1, **overrides)


def _commands(seed: int, count: int) -> list[Any]:
    """Set-up (funds, no receipt rule, open markets), then random orders and cancels."""
    rnd = random.Random(seed)
    instruments = load_instruments(Settings().instruments_file)
    symbols = [i.symbol for i in instruments[:2]]
    commands: list[Any] = list(funding_commands(ACCOUNTS))
    commands += [RequireReceipts(s, False, "test") for s in symbols]
    commands += [SetTradingState(s, CONTINUOUS) for s in symbols]
    reference = {s: next(i for i in instruments if i.symbol == s).reference_price_ticks for s in symbols}
    for n in range(count):
        symbol = rnd.choice(symbols)
        if n > 10 and rnd.random() < 0.2:
            commands.append(make_cancel_order(rnd.choice(ACCOUNTS), rnd.randrange(1, n + 1)))
            continue
        side = rnd.choice((BUY, SELL))
        ticks = reference[symbol] + rnd.randint(-15, 15)
        tif = IOC if rnd.random() < 0.2 else GTC
        commands.append(make_new_order(rnd.choice(ACCOUNTS), symbol, f"c{n}", side, ticks, rnd.randint(1, 5), tif))
    return commands


def _events(acks: list[Any]) -> list[tuple[int, list[Any]]]:
    return [(ack.seq, [tuple(e) for e in ack.events]) for ack in acks]


def test_the_writer_process_answers_exactly_as_the_sequencer_in_process(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    commands = _commands(seed, 1500)
    with Sequencer(f"sqlite:///{tmp_path / 'here.db'}") as here:
        here.list_on_first_start(load_instruments(Settings().instruments_file))
        expected = _events(here.execute(commands))
        expected_hash = here.state_hash()

    url = f"sqlite:///{tmp_path / 'there.db'}"
    writer = WriterProcess(_settings(url))
    seen: list[tuple[Any, Any]] = []
    writer.open()
    try:
        assert writer.list_on_first_start() > 0
        assert writer.list_on_first_start() == 0, "listed once"
        assert writer.recovery is not None
        assert writer.recovery.last_seq == 0, "a new journal"
        assert writer.core.matching.books, "the copy holds the listed books"
        writer.listeners.append(seen.extend)
        writer.start()
        running = writer.running  # read into a local: mypy would keep writer.running narrowed past close()
        assert running
        # the three ways to submit, interleaved: one ticket, a ticket each, one for a group
        tickets: list[Any] = []
        index = 0
        rnd = random.Random(seed)
        while index < len(commands):
            size = rnd.randint(1, 40)
            part = commands[index : index + size]
            way = rnd.randrange(3)
            if way == 0:
                tickets += [("one", writer.submit(c)) for c in part]
            elif way == 1:
                tickets += [("one", t) for t in writer.submit_many(part)]
            else:
                tickets.append(("group", writer.submit_batch(part)))
            index += size
        acks: list[Any] = []
        for how, ticket in tickets:
            result = ticket.result(timeout=60)
            acks += [result] if how == "one" else result
    finally:
        writer.close()
    assert not writer.running
    assert _events(acks) == expected, seed
    assert [c for c, _a in seen] == commands, "the listeners get the very commands, in order"
    assert [a for _c, a in seen] == acks
    with Sequencer(url) as there:
        assert there.state_hash() == expected_hash, seed


def test_an_empty_group_is_answered_at_once_and_the_next_answers_stay_paired(tmp_path: Path) -> None:
    """An empty submission is answered at once: it takes no place in the order of the answers
    (it used to, and the next batch's answers were then paired with the wrong group)."""
    commands = _commands(5, 200)
    with WriterProcess(_settings(f"sqlite:///{tmp_path / 'x.db'}")) as writer:
        writer.list_on_first_start()
        writer.start()
        empty = writer.submit_batch([])
        assert empty.result(timeout=0) == []
        assert writer.submit_many([]) == []
        acks = writer.submit_batch(commands).result(timeout=60)
        assert [writer.submit_batch([]).result(timeout=0)] == [[]]
        last = writer.submit(commands[0]).result(timeout=60)
        assert writer.running
    assert len(acks) == len(commands)
    assert [a.seq for a in acks] == list(range(acks[0].seq, acks[0].seq + len(commands)))
    assert last.seq == acks[-1].seq + 1


def test_the_core_copy_is_the_writers_state_and_close_commits_what_is_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    commands = _commands(7, 600)
    with WriterProcess(_settings(url)) as writer:
        writer.list_on_first_start()
        copy_hash = writer.core.state_hash()
        writer.start()
        tickets = writer.submit_many(commands)
        # closed at once: the writer sequences and commits everything queued before it stops
    assert all(t.done() and t.exception() is None for t in tickets)
    with Sequencer(url) as reopened:
        assert reopened.last_seq == tickets[-1].result().seq
    with Sequencer(f"sqlite:///{tmp_path / 'y.db'}") as fresh:
        fresh.list_on_first_start(load_instruments(Settings().instruments_file))
        assert fresh.state_hash() == copy_hash


def test_the_queue_bound_and_a_command_that_cannot_be_journaled_refuse_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with WriterProcess(_settings(url, queue_max_commands=5)) as writer:
        writer.list_on_first_start()
        writer.start()
        funding = funding_commands(ACCOUNTS[:3])
        assert len(funding) > 5
        with pytest.raises(QueueFull):
            writer.submit_many(funding)
        with pytest.raises(TypeError):
            writer.submit(object())
        assert writer.running
        done = [t.result(timeout=30) for t in writer.submit_many(funding[:5])]
        assert len(done) == 5
    with Sequencer(url) as reopened:
        assert reopened.last_seq == done[-1].seq, "nothing of the refused submissions was journaled"


def test_a_killed_writer_stops_the_proxy_and_no_ticket_waits_forever(tmp_path: Path) -> None:
    writer = WriterProcess(_settings(f"sqlite:///{tmp_path / 'x.db'}"))
    writer.open()
    try:
        writer.list_on_first_start()
        writer.start()
        assert writer._process is not None
        os.kill(writer._process.pid, signal.SIGSTOP)  # paused: the submissions wait in its pipe
        tickets = writer.submit_many(funding_commands(ACCOUNTS))
        os.kill(writer._process.pid, signal.SIGKILL)
        for ticket in tickets:
            error = ticket.exception(timeout=30)
            assert isinstance(error, WriterStopped), error
        assert not writer.running
        with pytest.raises(WriterStopped):
            writer.submit_many(funding_commands(ACCOUNTS))
    finally:
        writer.close()


def test_a_second_writer_waits_for_the_lock_then_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with Sequencer(url):
        started = time.monotonic()
        with pytest.raises(WriterLocked):
            WriterProcess(_settings(url), lock_wait_s=0.5).open()
        assert time.monotonic() - started >= 0.5


def test_a_killed_server_takes_its_writer_and_the_lock_with_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from exchange import Settings, WriterProcess
            w = WriterProcess(Settings(database_url={url!r}, host="127.0.0.1", port=1))
            w.open()
            w.list_on_first_start()
            w.start()
            print(w._process.pid, flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        writer_pid = int(server.stdout.readline())
        os.kill(server.pid, signal.SIGKILL)
        server.wait(30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{writer_pid}").exists() and _state(writer_pid) != "Z":
            assert time.monotonic() < deadline, "the writer outlived its server"
            time.sleep(0.05)
        # a killed process's threads finish exiting (and let go of its files) just after it shows "Z"
        while True:
            try:
                with Sequencer(url) as recovered:  # the lock is free: a new server can start
                    assert recovered.last_seq > 0
                break
            except WriterLocked:
                assert time.monotonic() < deadline, "the writer's lock outlived its server"
                time.sleep(0.05)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stdout is not None:
            server.stdout.close()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_cores_events_are_plain_values_that_marshal_takes(tmp_path: Path) -> None:
    """Rejection codes travel as ints (not RejectCode members), so a batch's acks go to the
    gateway as marshal data on the writer's fast path, whatever was refused."""
    seed = random.randrange(1 << 30)
    commands = _commands(seed, 600)
    instruments = load_instruments(Settings().instruments_file)
    symbol = instruments[0].symbol
    reference = instruments[0].reference_price_ticks
    commands += [
        make_new_order(ACCOUNTS[0], "NO-SUCH-INSTRUMENT", "x1", BUY, reference, 1, GTC),
        make_new_order(ACCOUNTS[0], symbol, "x2", BUY, reference * 3, 1, GTC),  # outside the band
        make_new_order(ACCOUNTS[0], symbol, "x3", BUY, reference, 10**6, GTC),  # above the max lots
        make_new_order(ACCOUNTS[0], symbol, "x4", BUY, 0, 1, GTC),  # not positive
        make_cancel_order(ACCOUNTS[0], 10**9),  # unknown order
    ]
    with Sequencer(f"sqlite:///{tmp_path / 'plain.db'}") as sequencer:
        sequencer.list_on_first_start(instruments)
        acks = sequencer.execute(commands)
    codes = [e[4] for ack in acks for e in ack.events if e[0] == REJECTED]
    assert len(set(codes)) >= 4, f"seed {seed}: too few kinds of refusal to test: {sorted(set(codes))}"
    assert all(type(code) is int for code in codes), f"seed {seed}: {[c for c in codes if type(c) is not int][:3]}"
    marshal.dumps([tuple(ack) for ack in acks])  # raises ValueError on anything but plain values
