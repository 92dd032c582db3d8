"""The host event bus between worker processes on SQLite (jmap_host.localbus): a message
from one process reaches every other, not itself; a large one travels as a file; a dead
process's registration is removed by the next sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from jmap_host.localbus import DATAGRAM_LIMIT, LocalBus


class Events:
    """What the bus talks to (the host's events): an id, received messages, resyncs."""

    def __init__(self, node: str):
        self.node = node
        self.received: list[dict[str, Any]] = []
        self.resyncs = 0
        self.arrived = trio.Event()

    def receive(self, message: dict[str, Any]) -> None:
        self.received.append(message)
        self.arrived.set()

    async def missed(self) -> None:
        self.resyncs += 1


async def next_message(events: Events) -> dict[str, Any]:
    with trio.fail_after(5):
        await events.arrived.wait()
    events.arrived = trio.Event()
    return events.received.pop(0)


async def test_messages_reach_the_other_processes_only(tmp_path: Path) -> None:
    directory = tmp_path / "bus"
    buses = [LocalBus(directory) for _ in range(3)]
    events = [Events(f"node{i}") for i in range(3)]
    async with trio.open_nursery() as nursery:
        for bus, ev in zip(buses, events, strict=True):
            await nursery.start(bus.run, ev)
        message = {"node": "node0", "event": "push.changed", "data": {"a": 1}}
        buses[0].send(message)
        assert await next_message(events[1]) == message
        assert await next_message(events[2]) == message
        big = {"node": "node2", "event": "push.objects", "data": {"x": "y" * DATAGRAM_LIMIT}}
        buses[2].send(big)
        assert await next_message(events[0]) == big
        assert await next_message(events[1]) == big
        assert list(directory.glob("payload-*.json"))
        await trio.sleep(0.1)
        assert events[0].received == [] and events[2].received == []

        # A process that died without unregistering: the next send removes it.
        (directory / "gone.peer").touch()
        buses[1].send({"node": "node1", "event": "e", "data": {}})
        assert (await next_message(events[0]))["event"] == "e"
        with trio.fail_after(5):
            while (directory / "gone.peer").exists():
                await trio.sleep(0.02)
        assert all(ev.resyncs == 0 for ev in events)
        nursery.cancel_scope.cancel()
    assert not list(directory.glob("*.peer"))  # each unregistered when it stopped
