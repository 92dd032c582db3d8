"""Host events: what must reach every node serving the same database (the cluster bus).

Several jmap-host nodes (or worker processes) on one PostgreSQL database each keep
process-local state that another node's writes make stale: the push hub's subscribers
(a Note/set through node A must wake an EventSource stream on node B) and caches such as
the share index.  :class:`HostEvents` (``host.events``) carries named events to every
node::

    host.events.on("myplugin.settings-changed", lambda data: cache.pop(data["account"]))
    host.events.on_missed(cache.clear)            # events may have been lost: forget all
    host.events.emit("myplugin.settings-changed", {"account": account_id})

``emit`` runs this node's handlers at once (synchronously, in order) and sends the event
to the other nodes, whose handlers run when it arrives, in the order it was sent.  A
handler takes the event's data (a JSON object) and returns nothing; it runs on the event
loop and must not block.  Delivery is at most once: an event can be lost when a node's
connection to the bus drops; every node then runs the ``on_missed`` handlers (sync or
async, no argument) once it is connected again, so a handler's state must be rebuildable
from the database (the push hub re-reads every subscribed account's states, the share
index empties itself).  An event is sent after the write it tells of has committed (its
publisher calls ``emit`` after ``store.write`` returns): a node that dies between the
two loses that one event (see docs/architecture.md).

The transport is a :class:`Bus`.  With one process (the SQLite store) there is none and
``emit`` only runs the local handlers.  :class:`PgBus` is PostgreSQL's LISTEN/NOTIFY: one
connection per node LISTENs on :data:`CHANNEL` (waited on by the event loop itself,
without a thread), another sends with ``pg_notify``, the messages queued meanwhile
together in one payload.  A message larger than PostgreSQL's 8000-byte payload limit is
stored in :data:`PAYLOAD_TABLE` and its row id is notified instead, in the transaction
that inserts it; receivers read the row (rows older than :data:`PAYLOAD_RETENTION` are
deleted by later large sends).  A sender that may have lost messages (its connection
failed mid-send, its queue overflowed) first sends :data:`GAP_EVENT`, on which every
receiver resynchronises.  Another transport (worker processes of one machine on SQLite)
implements :class:`Bus` the same way and is chosen in :func:`bus_for`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]
MissedHandler = Callable[[], Awaitable[None] | None]
Message = dict[str, Any]  # {"node": sender, "event": name, "data": {...}}


class Bus(Protocol):
    """A transport of messages between the nodes."""

    def send(self, message: Message) -> None:
        """Queue ``message`` for every other node; never blocks (called on the event loop)."""

    async def run(
        self,
        events: HostEvents,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Carry messages until cancelled: queued ones out, other nodes' ones to
        ``events.receive``; after a reconnection ``await events.missed()``.  Reports
        started once it first tried to connect (a server starts even if the bus is down)."""


class HostEvents:
    """Named events for every node (see the module's docstring); ``host.events``."""

    def __init__(self, node: str | None = None):
        # Unique per process: a restarted node is a new one, and a node ignores its own
        # messages (it ran their handlers when it emitted them).
        self.node = node or secrets.token_hex(8)
        self.bus: Bus | None = None
        self._handlers: dict[str, list[Handler]] = {}
        self._missed: list[MissedHandler] = []

    def on(self, name: str, handler: Handler) -> None:
        """Run ``handler(data)`` for every event ``name``, from this node or another."""
        self._handlers.setdefault(name, []).append(handler)

    def on_missed(self, handler: MissedHandler) -> None:
        """Run ``handler()`` (awaited if it is a coroutine function) when events from other
        nodes may have been lost: after the bus reconnects."""
        self._missed.append(handler)

    def emit(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Run the handlers of ``name`` here, then on every other node."""
        payload = data or {}
        self._dispatch(name, payload)
        self.relay(name, payload)

    def relay(self, name: str, data: dict[str, Any]) -> None:
        """Send the event to the other nodes only (what it tells of was done here already:
        the push hub delivers to its own subscribers before relaying)."""
        if self.bus is not None:
            self.bus.send({"node": self.node, "event": name, "data": data})

    def receive(self, message: Message) -> None:
        """A message from the bus: run its handlers unless this node sent it."""
        if message.get("node") == self.node:
            return
        name, data = message.get("event"), message.get("data")
        if isinstance(name, str) and isinstance(data, dict):
            self._dispatch(name, data)

    def _dispatch(self, name: str, data: dict[str, Any]) -> None:
        for handler in self._handlers.get(name, ()):
            try:
                handler(data)
            except Exception:  # one plugin's broken handler must not stop the others
                log.exception("handler of host event %s failed", name)

    async def missed(self) -> None:
        """Run every on_missed handler (after the bus reconnected)."""
        for handler in self._missed:
            try:
                result = handler()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("host event resynchronisation %r failed", handler)

    async def run(
        self, bus: Bus, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Carry events over ``bus`` until cancelled (the server's background task)."""
        self.bus = bus
        try:
            await bus.run(self, task_status=task_status)
        finally:
            self.bus = None


# -- PostgreSQL LISTEN/NOTIFY ------------------------------------------------------------

CHANNEL = "jmap_host_events"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (in the server encoding).
PAYLOAD_LIMIT = 7999
PAYLOAD_TABLE = "_jmap_event_payload"
PAYLOAD_RETENTION = "5 minutes"
# How many messages the sender queues while disconnected before dropping them (the others
# then hear of a gap and resynchronise: nothing is lost that the database does not have).
MAX_QUEUED = 10_000
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 10.0
# A dead peer or network is found by TCP keepalives on the listening connection (it sends
# nothing by itself): after about idle + interval * count seconds.
KEEPALIVES = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
              "keepalives_interval": 5, "keepalives_count": 3}  # fmt: skip
# A message that says "the sender lost messages": every receiver resynchronises.
GAP_EVENT = "host.events-lost"


def encode(message: Message) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class QueuedBus:
    """What every transport shares: :meth:`send` queues (never blocks, never fails); past
    MAX_QUEUED the queue is dropped and ``_dropped`` says the others must first be told
    of the gap (GAP_EVENT)."""

    def __init__(self) -> None:
        self._queue: deque[Message] = deque()
        self._queued = trio.Event()
        self._dropped = False

    def send(self, message: Message) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self._queue.clear()
            self._dropped = True
        self._queue.append(message)
        self._queued.set()


class PgBus(QueuedBus):
    """Host events over PostgreSQL LISTEN/NOTIFY on the store's database."""

    def __init__(self, url: str, *, statement_timeout: float = 30.0):
        super().__init__()
        self.url = url
        self.statement_timeout = statement_timeout
        self.reconnects = 0  # (for tests and logs)

    async def run(
        self, events: HostEvents, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_loop, events.node)
            await self._listen_loop(events, task_status)

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True, **KEEPALIVES)  # type: ignore[arg-type]
        conn.execute(f"SET statement_timeout = {int(self.statement_timeout * 1000)}")
        return conn

    # -- sending -----------------------------------------------------------------------

    async def _send_loop(self, node: str) -> None:
        """Send what is queued, in order, on a connection of its own; reconnect with
        backoff when it fails (the batch in flight may be lost: the others hear of a gap)."""
        delay = BACKOFF_FIRST
        conn: psycopg.Connection[Any] | None = None
        try:
            while True:
                if self._dropped:
                    self._dropped = False
                    self._queue.appendleft({"node": node, "event": GAP_EVENT, "data": {}})
                if not self._queue:
                    self._queued = trio.Event()
                    await self._queued.wait()
                    continue
                batch = list(self._queue)
                self._queue.clear()
                try:
                    if conn is None:
                        conn = await trio.to_thread.run_sync(self._connect)
                        await trio.to_thread.run_sync(_create_payload_table, conn)
                    await trio.to_thread.run_sync(_notify_all, conn, node, batch)
                    delay = BACKOFF_FIRST
                except Exception as exc:
                    log.warning("host events: cannot send (%s); retrying in %.1f s", exc, delay)
                    self._dropped = True  # (whether the batch went out is unknown)
                    if conn is not None:
                        conn.close()
                        conn = None
                    await trio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
        finally:
            if conn is not None:
                conn.close()

    # -- listening ---------------------------------------------------------------------

    async def _listen_loop(self, events: HostEvents, task_status: trio.TaskStatus[None]) -> None:
        delay = BACKOFF_FIRST
        first = True
        while True:
            inbox: deque[str] = deque()
            conn = await self._listening(inbox, delay, first, task_status)
            if not first:
                self.reconnects += 1
                log.warning("host events: listening again; resynchronising")
            first = False
            delay = BACKOFF_FIRST
            try:
                # Whatever happened while not listening (or before LISTEN took effect)
                # is unknown: every handler's state is rebuilt from the database.
                await events.missed()
                await self._receive(conn, inbox, events)
            except Exception as exc:
                log.warning("host events: listening connection lost (%s); reconnecting", exc)
            finally:
                conn.close()
            await trio.sleep(delay)

    async def _listening(
        self, inbox: deque[str], delay: float, first: bool, task_status: trio.TaskStatus[None]
    ) -> psycopg.Connection[Any]:
        """A connection LISTENing on CHANNEL, retried with exponential backoff.
        Notifications that arrive while psycopg runs a statement on it (LISTEN, reading a
        stored payload) go to ``inbox`` through its notify handler."""
        while True:
            try:
                conn = await trio.to_thread.run_sync(self._connect)
                conn.add_notify_handler(lambda notify: inbox.append(notify.payload))
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {CHANNEL}")
                if first:
                    task_status.started()
                return conn
            except Exception as exc:
                log.warning("host events: cannot listen (%s); retrying in %.1f s", exc, delay)
                if first:
                    task_status.started()  # serve meanwhile; resynchronised once connected
                    first = False
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    async def _receive(
        self, conn: psycopg.Connection[Any], inbox: deque[str], events: HostEvents
    ) -> None:
        """Hand every notification to ``events``, in order, until the connection fails.
        The event loop waits on the socket itself; libpq's consume_input reads what has
        arrived without blocking (and raises once the server has gone)."""
        pgconn = conn.pgconn
        while True:
            # (libpq may hold parsed notifications already: those that came in with the
            # answer to a statement psycopg ran.)
            while (notify := pgconn.notifies()) is not None:
                inbox.append(notify.extra.decode("utf-8"))
            if not inbox:
                await trio.lowlevel.wait_readable(pgconn.socket)
                pgconn.consume_input()
                continue
            while inbox:
                for message in await self._messages(conn, inbox.popleft(), events.node):
                    if message.get("event") == GAP_EVENT:
                        await events.missed()
                    else:
                        events.receive(message)

    async def _messages(
        self, conn: psycopg.Connection[Any], payload: str, node: str
    ) -> list[Message]:
        """The messages of a notification (see :func:`_payloads`): none for this node's
        own; a gap for a stored payload already deleted (this node was far behind)."""
        try:
            notified = json.loads(payload)
        except ValueError:
            notified = None
        if not isinstance(notified, dict):
            log.warning("host events: a notification that is not ours, ignored")
            return []
        sender = notified.get("node")
        if sender == node:
            return []
        batch = notified.get("batch")
        stored = notified.get("stored")
        if isinstance(stored, int):
            row = await trio.to_thread.run_sync(_stored_payload, conn, stored)
            if row is None:
                log.warning("host events: a stored event was gone before it was read")
                return [{"node": sender, "event": GAP_EVENT, "data": {}}]
            batch = json.loads(row)
        if not isinstance(batch, list):
            return []
        return [{**item, "node": sender} for item in batch if isinstance(item, dict)]


def _create_payload_table(conn: psycopg.Connection[Any]) -> None:
    import psycopg.errors

    # (UniqueViolation: another node created it at the same moment; IF NOT EXISTS is not
    # atomic.)
    with contextlib.suppress(psycopg.errors.UniqueViolation):
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {PAYLOAD_TABLE} (id BIGINT GENERATED ALWAYS AS "
            "IDENTITY PRIMARY KEY, payload TEXT NOT NULL, created TIMESTAMPTZ NOT NULL "
            "DEFAULT now())"
        )


def _payloads(node: str, batch: list[Message]) -> Iterator[tuple[str, bool]]:
    """The notifications that carry ``batch`` (messages of ``node``), as (payload, whether
    it is too large for a NOTIFY and goes through PAYLOAD_TABLE): consecutive messages
    share one ``{"node": ..., "batch": [{"event", "data"}...]}`` while it fits (one NOTIFY
    wakes every listening backend: fewer is cheaper); a stored payload is the batch's
    list."""
    head = encode({"node": node, "batch": []})[:-2]  # '{"node":"...","batch":['
    items: list[str] = []
    size = len(head) + 2
    for message in batch:
        item = encode({"event": message["event"], "data": message["data"]})
        length = len(item.encode("utf-8")) + 1
        if items and size + length > PAYLOAD_LIMIT:
            yield head + ",".join(items) + "]}", False
            items, size = [], len(head) + 2
        if size + length > PAYLOAD_LIMIT:
            yield "[" + item + "]", True
            continue
        items.append(item)
        size += length
    if items:
        yield head + ",".join(items) + "]}", False


def _notify_all(conn: psycopg.Connection[Any], node: str, batch: list[Message]) -> None:
    """Send ``batch``: each notification in its own (autocommit) transaction, so that
    identical payloads are not folded into one as PostgreSQL does within a transaction."""
    for payload, large in _payloads(node, batch):
        if not large:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            continue
        with conn.transaction():
            conn.execute(
                f"DELETE FROM {PAYLOAD_TABLE} WHERE created < now() - interval "
                f"'{PAYLOAD_RETENTION}'"
            )
            row = conn.execute(
                f"INSERT INTO {PAYLOAD_TABLE} (payload) VALUES (%s) RETURNING id", (payload,)
            ).fetchone()
            assert row is not None
            # (Inside the transaction: delivered only once the row is visible.)
            reference = encode({"node": node, "stored": row[0]})
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, reference))


def _stored_payload(conn: psycopg.Connection[Any], row_id: int) -> str | None:
    row = conn.execute(f"SELECT payload FROM {PAYLOAD_TABLE} WHERE id = %s", (row_id,)).fetchone()
    return None if row is None else str(row[0])


def bus_for(host: Any) -> Bus | None:
    """The bus of ``host``: LISTEN/NOTIFY on the PostgreSQL store; none on SQLite in one
    process (the in-process handlers are all there is; several worker processes on one
    machine need a local transport, chosen here)."""
    store = host.store
    if store.dialect.name == "postgresql":
        return PgBus(store.url, statement_timeout=store.statement_timeout)
    from .localbus import local_bus_for

    return local_bus_for(host)
