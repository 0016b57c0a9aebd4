"""The client mends a gap in a private stream on a live connection: a message
lost on its way in (dropped here in the client's receive path) is noticed by
the next message or the next heartbeat, and the client resubscribes from the
last seq it holds + 1; the server's replay brings every missed message, in
order, and the reader keeps running (it used to stop on an assert, which
``python -O`` skips)."""

from __future__ import annotations

from typing import Any

import pytest

from api._client import Client
from api._harness import running_exchange
from api._limits import GatewayLimits
from tests.aio import run, wait_for

pytestmark = pytest.mark.timeout(120)

RB = "RB-HRB400E-20"


class LossyClient(Client):
    """A client whose receive path loses the private messages named in `lose` ((channel, seq)),
    once each, as a lost frame would."""

    def __init__(self, *args: Any, lose: set[tuple[str, int]], **options: Any) -> None:
        super().__init__(*args, **options)
        self.lose = set(lose)
        self.lost: list[tuple[str, int]] = []

    def _dispatch(self, message: dict[str, Any]) -> None:
        where = (message.get("type"), message.get("seq"))
        if where in self.lose:
            self.lose.discard(where)
            self.lost.append(where)
            return
        super()._dispatch(message)


def test_a_lost_private_message_is_replayed_and_the_stream_goes_on(database_url: str) -> None:
    async def main() -> None:
        async with running_exchange(database_url) as ex:
            maker_key = ex.trader_key("MAKER")
            lossy = LossyClient(ex.url, *maker_key, lose={("orders", 3), ("orders", 4), ("executions", 2)})
            whole = Client(ex.url, *maker_key)  # a second session of the same member loses nothing
            taker = Client(ex.url, *ex.trader_key("TAKER"))
            async with lossy, whole, taker:
                for client in (lossy, whole):
                    await client.subscribe_private("orders")
                    await client.subscribe_private("executions")
                for i in range(10):
                    await whole.place_order(RB, "sell", f"{3500 + i}.00", 2)
                    if i % 3 == 2:
                        await taker.place_order(RB, "buy", f"{3500 + i}.00", 3, time_in_force="ioc")
                for channel in ("orders", "executions"):
                    stream = ex.gateway.private.stream(channel, "MAKER")

                    def caught_up(ch: str = channel, last: int = stream.seq) -> bool:
                        return lossy.private_seq.get(ch) == last and whole.private_seq.get(ch) == last

                    await wait_for(caught_up)
                    got = lossy.private_messages[channel]
                    assert [m["seq"] for m in got] == list(range(1, stream.seq + 1)), channel
                    assert got == whole.private_messages[channel], channel
                assert sorted(lossy.lost) == [("executions", 2), ("orders", 3), ("orders", 4)]
                assert lossy.private_gaps == 2  # one per stream: the messages after a gap wait for the replay
                assert lossy.replay_lost == 0
                assert lossy._reader is not None
                assert not lossy._reader.done()  # the reader lives on
                await lossy.place_order(RB, "buy", "3400.00", 1)  # and the stream with it
                stream = ex.gateway.private.stream("orders", "MAKER")
                await wait_for(lambda: lossy.private_seq["orders"] == stream.seq)
                assert lossy.private_messages["orders"][-1]["event"] == "accepted"

    run(main)


def test_a_lost_last_message_is_replayed_after_the_next_heartbeat(tmp_path: Any) -> None:
    """Nothing follows the lost message: the heartbeat's seq shows the gap."""

    async def main() -> None:
        limits = GatewayLimits(heartbeat_interval_s=0.2)
        async with running_exchange(f"sqlite:///{tmp_path / 'x.db'}", limits) as ex:
            lossy = LossyClient(ex.url, *ex.trader_key("MAKER"), lose={("orders", 2)})
            async with lossy:
                await lossy.subscribe_private("orders")
                await lossy.place_order(RB, "buy", "3400.00", 1)
                await lossy.place_order(RB, "buy", "3401.00", 1)
                await wait_for(lambda: lossy.private_seq["orders"] == 2)
                assert [m["price"] for m in lossy.private_messages["orders"]] == ["3400.00", "3401.00"]
                assert lossy.lost == [("orders", 2)]
                assert lossy.private_gaps == 1

    run(main)
