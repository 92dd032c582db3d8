"""Leases: a background job that must run once across nodes and worker processes.

Several jmap-host processes may share one store: worker processes on one machine
(``[server] workers``) on either back end, and nodes on one PostgreSQL.  Each starts the
same background jobs; those that must not run twice (sending queued mail, delivering a
push, firing an alert) run while their process holds the job's *lease*, a lock named
after the job that one process at a time holds.  The others wait, trying again every
:data:`LEASE_POLL` seconds, and one of them takes over when the holder stops or dies.

``store.leader(name)`` is the lease as an async context: the body runs once the lease is
taken, and is cancelled if the lease is lost (the ``async with`` then ends, and
``lease.lost`` says so).  ``store.run_leased(name, fn, *args)`` runs ``await fn(*args)``
under the lease, again each time it was lost and taken back, until ``fn`` returns::

    host.nursery.start_soon(host.store.run_leased, "mail.outbound", run_outbound, host)

The jobs, and why each is leased or not:

- ``host.push-delivery`` (pushsubscription.py): each subscription's worker POSTs every
  change it hears of; two workers would push each change twice.  (A PushVerification is
  sent by the process that created the subscription: once.)
- ``mail.outbound``: on start its runner puts back messages left ``sending`` by a
  crashed sender; a second runner would take another's messages in flight for crashed
  ones and send them again.  Claiming rows with ``FOR UPDATE SKIP LOCKED`` would let
  nodes send together, but a row lock lives as long as its transaction, which would then
  span the SMTP conversation and hold the store's write lock (every write is serialised)
  for as long: one sender, which an outbound queue of a mail server's size keeps busy.
- ``calendars.alerts``: an alert (and its email) fired by two schedulers arrives twice.
- ``host.blob-sweeper``, ``host.change-compaction``, ``mail.index-merge``: harmless twice
  (each step is one idempotent write), leased so that N processes do not do the same
  work N times and contend for the write lock.
- Not leased: SQLite's WAL checkpointer (a process's own commits), the garbage collection
  after disconnects (a process's own memory), a vacation auto-reply (started by the one
  delivery that triggers it).

Two implementations, one per store:

- SQLite (:class:`FileLeases`): ``fcntl.flock`` on ``storage.path/leases/<name>.lock``.
  The processes sharing a SQLite file are on one machine; the kernel frees the lock when
  the holder exits, however it ends.  The file holds the holder's pid, for operators.
- PostgreSQL (:class:`PgLeases`): a session-level ``pg_try_advisory_lock`` on a
  connection of the process's own, kept while it holds any lease.  A node that dies loses
  its connection and with it its locks.  The holder checks the connection every
  :data:`LEASE_POLL` seconds and gives its jobs up when the check fails (its locks may
  already be another node's); TCP keepalives on both ends bound how long a dead machine
  or a cut network holds a lease (about 25 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger("jmap_host.leases")

# Seconds between attempts to take a lease held elsewhere, and between the holder's checks
# that it still holds it: how long a job stands still when its holder dies.
LEASE_POLL = 2.0

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


@dataclass
class Lease:
    """A lease being held: ``lost`` once the holder found it gone (the body cancelled)."""

    name: str
    lost: bool = False


class Leases:
    """The lease machinery both stores share; subclasses take, check and release locks
    (blocking calls, run in worker threads)."""

    # False where a lock, once taken, stays until released (flock in a living process).
    can_lose = True

    def __init__(self) -> None:
        self.poll = LEASE_POLL
        # Names held through this object: a process never takes its own lease twice
        # (PostgreSQL's advisory locks are re-entrant within a session).
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    def _take(self, name: str) -> Any | None:
        raise NotImplementedError

    def _alive(self, handle: Any) -> bool:
        return True

    def _release(self, handle: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what the implementation holds beside the leases (a connection)."""

    def try_take(self, name: str) -> Any | None:
        """Take lease ``name`` now if it is free; a handle, or None."""
        if not _NAME.match(name):
            raise ValueError(f"lease name {name!r}: lower-case letters, digits, '.', '_', '-'")
        with self._held_lock:
            if name in self._held:
                return None
            self._held.add(name)
        handle = None
        try:
            handle = self._take(name)
        finally:
            if handle is None:
                with self._held_lock:
                    self._held.discard(name)
        return handle

    def release(self, name: str, handle: Any) -> None:
        try:
            self._release(handle)
        finally:
            with self._held_lock:
                self._held.discard(name)

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[Lease]:
        """Wait until lease ``name`` is this process's, then run the body holding it;
        the body is cancelled if the lease is lost.  Released when the body ends."""
        while (handle := await trio.to_thread.run_sync(self.try_take, name)) is None:
            await trio.sleep(self.poll)
        lease = Lease(name)
        try:
            log.info("lease %s taken (pid %d)", name, os.getpid())
            async with trio.open_nursery() as nursery:
                if self.can_lose:
                    nursery.start_soon(self._watch, handle, lease, nursery.cancel_scope)
                try:
                    yield lease
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.release, name, handle)

    async def _watch(self, handle: Any, lease: Lease, scope: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self.poll)
            if not await trio.to_thread.run_sync(self._alive, handle):
                log.warning("lease %s lost: stopping its job until it is taken again", lease.name)
                lease.lost = True
                scope.cancel()
                return

    async def run(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """``await fn(*args)`` while holding lease ``name``; again whenever the lease was
        lost and is taken back, until ``fn`` returns (or this task is cancelled)."""
        while True:
            async with self.hold(name) as lease:
                await fn(*args)
            if not lease.lost:
                return


class FileLeases(Leases):
    """Leases as ``flock``ed files in ``directory`` (processes on one machine)."""

    can_lose = False

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = Path(directory)

    def _take(self, name: str) -> int | None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # (Each open is a lock of its own, even in one process: two hosts of a test
            # exclude each other as two processes do.)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _release(self, handle: int) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)

    def holder(self, name: str) -> int | None:
        """The pid written by the process that holds (or last held) lease ``name``."""
        try:
            text = (self.directory / f"{name}.lock").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None


# The first key of the two-key advisory locks (a space apart from the store's one-key
# write and migration locks); the second is from the lease's name.
LEASE_SPACE = 0x6A6D  # "jm"


def lease_key(name: str) -> int:
    """The advisory lock's second key for lease ``name`` (a signed 32-bit integer)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


# Client-side TCP settings of the lease connection (libpq): a machine or network gone
# silent fails the holder's check within about 20 s, before the server (below) gives the
# locks to another node.
CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}
# Server-side: the session of a holder gone silent ends after about 25 s.
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)


@dataclass(frozen=True)
class _PgHandle:
    generation: int  # the connection the lock was taken on
    key: int


class PgLeases(Leases):
    """Leases as session-level advisory locks on one connection of this process."""

    def __init__(self, url: str, statement_timeout: float = 30.0):
        super().__init__()
        self.url = url
        self.statement_timeout = statement_timeout
        self._conn: Any = None
        self._generation = 0
        self._lock = threading.Lock()  # the connection serves every lease's thread

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, **CLIENT_KEEPALIVES)
            self._conn.execute(f"SET statement_timeout = {int(self.statement_timeout * 1000)}")
            for statement in SERVER_KEEPALIVES:
                self._conn.execute(statement)
            self._generation += 1
        return self._conn

    def _drop(self) -> None:
        # Every lock on the connection goes with it (the server frees them): the holders'
        # next checks see a new generation and stop their jobs.
        conn, self._conn = self._conn, None
        self._generation += 1
        if conn is not None:
            with contextlib.suppress(Exception):  # (already broken)
                conn.close()

    def _take(self, name: str) -> _PgHandle | None:
        import psycopg

        key = lease_key(name)
        with self._lock:
            try:
                conn = self._connection()
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (LEASE_SPACE, key)
                ).fetchone()
            except psycopg.Error as exc:
                log.warning("lease %s: cannot reach the database: %s", name, exc)
                self._drop()
                return None
            return _PgHandle(self._generation, key) if row and row[0] else None

    def _alive(self, handle: _PgHandle) -> bool:
        import psycopg

        with self._lock:
            if handle.generation != self._generation or self._conn is None:
                return False
            try:
                self._conn.execute("SELECT 1").fetchone()
            except psycopg.Error:
                self._drop()
                return False
            return True

    def _release(self, handle: _PgHandle) -> None:
        import psycopg

        with self._lock:
            if handle.generation != self._generation or self._conn is None:
                return  # that connection, and its lock, are gone
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEASE_SPACE, handle.key))
            except psycopg.Error:
                self._drop()

    def close(self) -> None:
        with self._lock:
            self._drop()


__all__ = ["LEASE_POLL", "FileLeases", "Lease", "Leases", "PgLeases", "lease_key"]
