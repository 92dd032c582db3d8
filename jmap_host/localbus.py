"""Host events between the worker processes of one machine on the SQLite store.

With ``[server] workers`` above 1 on SQLite, a change made through one worker must reach
the push streams of the others, as LISTEN/NOTIFY carries it between nodes on PostgreSQL.
:class:`LocalBus` is that transport for one machine: every process binds a Unix datagram
socket in the abstract namespace (Linux; nothing to clean up when a process dies), named
after the data directory and the process's node id, and registers itself with an empty
file ``<storage.path>/bus/<node>.peer``.  A message goes to every registered peer as one
datagram; a peer whose socket is gone (a dead worker) is unregistered by the first sender
that finds it so.

It implements the host event bus's transport interface (``send(message)``, never
blocking, and ``run(events, task_status)``, which hands other processes' messages to
``events.receive`` and calls ``await events.missed()`` when some may have been lost).
Delivery is at most once, as on PostgreSQL: a peer whose receive buffer stays full for
:data:`SEND_TIMEOUT` misses that message, and is first sent :data:`GAP_EVENT` next time,
so that it resynchronises from the database.  A message larger than
:data:`DATAGRAM_LIMIT` travels as a file in the bus directory whose name is sent instead
(removed after :data:`PAYLOAD_RETENTION` seconds by later large sends).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import trio

from .cluster import GAP_EVENT, QueuedBus

log = logging.getLogger(__name__)

Message = dict[str, Any]

DATAGRAM_LIMIT = 60_000
RECEIVE_LIMIT = 256 * 1024
SEND_TIMEOUT = 1.0
PAYLOAD_RETENTION = 60.0


def local_bus_for(host: Any) -> LocalBus | None:
    """The bus of a SQLite host run as several workers; None otherwise (one process has
    no one to tell; PostgreSQL has LISTEN/NOTIFY)."""
    if host.store.dialect.name != "sqlite" or host.config.data["server"]["workers"] < 2:
        return None
    return LocalBus(Path(host.store.directory) / "bus")


class LocalBus(QueuedBus):
    """Messages to every other process registered in ``directory`` (see the module)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        # Every process on the same data directory shares the prefix of its address.
        digest = hashlib.sha256(str(self.directory.resolve()).encode()).hexdigest()[:16]
        self._prefix = f"\0jmap-host-bus/{digest}/"
        super().__init__()  # (when the queue overflows, every peer gets a gap first)
        self._behind: set[str] = set()  # peers that missed a message
        self._sock: trio.socket.SocketType | None = None
        self.node = ""

    async def run(
        self, events: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.node = events.node
        self.directory.mkdir(parents=True, exist_ok=True)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        registration = self.directory / f"{self.node}.peer"
        try:
            await sock.bind(self._prefix + self.node)
            self._sock = sock
            registration.touch()
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop)
                await self._receive_loop(sock, events)
        finally:
            self._sock = None
            registration.unlink(missing_ok=True)
            sock.close()

    # -- receiving -----------------------------------------------------------------------

    async def _receive_loop(self, sock: trio.socket.SocketType, events: Any) -> None:
        while True:
            data = await sock.recv(RECEIVE_LIMIT)
            try:
                message = json.loads(data)
                if "file" in message:
                    payload = self.directory / Path(message["file"]).name
                    message = json.loads(payload.read_bytes())
            except (ValueError, OSError) as exc:  # a torn or expired message: say so
                log.warning("host event bus: unreadable message (%s)", exc)
                await events.missed()
                continue
            if message.get("event") == GAP_EVENT:
                await events.missed()
            else:
                events.receive(message)

    # -- sending -------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            while self._queue:
                message = self._queue.popleft()
                if self._dropped:
                    self._dropped = False
                    self._behind.update(self._peers())
                await self._send_all(self._encode(message))

    def _encode(self, message: Message) -> bytes:
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) <= DATAGRAM_LIMIT:
            return data
        self._remove_old_payloads()
        name = f"payload-{secrets.token_hex(8)}.json"
        (self.directory / name).write_bytes(data)
        return json.dumps({"node": self.node, "file": name}).encode()

    def _remove_old_payloads(self) -> None:
        cutoff = time.time() - PAYLOAD_RETENTION
        for old in self.directory.glob("payload-*.json"):
            with contextlib.suppress(FileNotFoundError):
                if old.stat().st_mtime < cutoff:
                    old.unlink()

    def _peers(self) -> list[str]:
        return [p.stem for p in self.directory.glob("*.peer") if p.stem != self.node]

    async def _send_all(self, data: bytes) -> None:
        assert self._sock is not None
        gap = json.dumps({"node": self.node, "event": GAP_EVENT}).encode()
        for peer in self._peers():
            address = self._prefix + peer
            try:
                if peer in self._behind:
                    await self._send_one(address, gap)
                    self._behind.discard(peer)
                await self._send_one(address, data)
            except (ConnectionRefusedError, FileNotFoundError):
                # Nobody has that address any more: a worker that died unregistered.
                (self.directory / f"{peer}.peer").unlink(missing_ok=True)
            except trio.TooSlowError:
                log.warning("host event bus: peer %s is not reading; it will resync", peer)
                self._behind.add(peer)

    async def _send_one(self, address: str, data: bytes) -> None:
        assert self._sock is not None
        with trio.fail_after(SEND_TIMEOUT):
            await self._sock.sendto(data, address)


__all__ = ["GAP_EVENT", "LocalBus", "local_bus_for"]
