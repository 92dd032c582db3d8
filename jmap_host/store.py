"""The host's SQLite database: one file under ``storage.path``.

Durability rules (ARCHITECTURE.md): WAL, ``synchronous=FULL`` on every connection, writes
in ``BEGIN IMMEDIATE`` transactions on one writer in a worker thread; reads on the event
loop's thread while they are short (at most INLINE_READ_BUDGET of CPU time, never waiting
for a lock), otherwise in worker threads, so the event loop never waits long on the
database.  Each plugin owns a named migration set (sqlite-utils ``Migrations``) applied at
start-up.  Nothing outside this module writes SQLite-specific SQL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
import trio

from .leases import FileLeases, Lease
from .objectstore import DATE_TYPES, create_type_table, ensure_columns, register_functions
from .sqldialect import SQLITE

T = TypeVar("T")

DATABASE_NAME = "jmap-host.db"


DEFAULT_BUSY_TIMEOUT = 5.0
# A read on the event loop's thread that uses more CPU time than this (seconds) is moved
# to a worker thread.
INLINE_READ_BUDGET = 0.002
CHECKPOINT_INTERVAL = 0.05  # seconds between background WAL checkpoints (if there were commits)
log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The database is busy or locked past the timeout: a temporary condition."""


class _LongRead(BaseException):
    """Raised by :func:`expect_long_read` in a read on the event loop's thread.  Not an
    Exception: a read function's own ``except Exception`` must not take it for an error
    of its query and answer something else."""


def expect_long_read(db: sqlite_utils.Database, seconds: float) -> None:
    """Say that the rest of this read will take about ``seconds`` (a query plan knows its
    cost before it starts).  A read running on the event loop's thread (Store.read) stops
    here when that is more than INLINE_READ_BUDGET and runs again at once in a worker
    thread, instead of first spending the budget until SQLite interrupts it: a search
    estimated at 3 ms then costs 3 ms, not 2 + 3.  Anywhere else this does nothing."""
    if seconds > INLINE_READ_BUDGET and getattr(db, "inline_read", False):
        raise _LongRead


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (any extended code): another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class Store:
    """The host database.  Use :meth:`read` and :meth:`write` from async code."""

    dialect = SQLITE

    def __init__(self, directory: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT):
        self.directory = Path(directory)
        self.path = self.directory / DATABASE_NAME
        # Seconds a statement waits for another connection's lock before "database is
        # locked" (``storage.busy-timeout``); past it the caller sees StoreUnavailable.
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._migrations: list[sqlite_utils.Migrations] = []
        # Commits since the last checkpoint; see checkpointer().
        self._commits = 0
        self._checkpointed = 0
        self.background_checkpoint = False
        # Short reads on the event loop's thread (see read()); False: always a worker.
        self.inline_reads = True
        # Background jobs that run once among the processes sharing this file (leases.py).
        self.leases = FileLeases(self.directory / "leases")

    def leader(self, name: str) -> AbstractAsyncContextManager[Lease]:
        """Hold lease ``name`` for the body (jmap_host.leases: once across processes)."""
        return self.leases.hold(name)

    async def run_leased(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """``await fn(*args)`` while this process holds lease ``name`` (jmap_host.leases)."""
        await self.leases.run(name, fn, *args)

    def connect(self) -> sqlite_utils.Database:
        """This thread's connection (SQLite connections are not shared between threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=True,
            )
            try:
                # Setting WAL needs a lock: a new connection can find the database busy.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                register_functions(conn)
                self._local.autocheckpoint = True
            except BaseException:
                conn.close()
                raise
            db = sqlite_utils.Database(conn)
            self._local.db = db
        return db

    def add_migrations(self, migrations: sqlite_utils.Migrations) -> None:
        self._migrations.append(migrations)

    def migrate(self) -> list[str]:
        """Apply every pending migration of every set; returns "set:name" of those applied."""
        db = self.connect()
        applied = []
        with self._write_lock:
            for m in self._migrations:
                pending = [p.name for p in m.pending(db)]
                m.apply(db)
                applied += [f"{m.name}:{name}" for name in pending]
        return applied

    def read_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn`` in one read transaction: every statement sees the same snapshot, so
        a state read with its records always matches them."""
        try:
            db = self.connect()
            db.execute("BEGIN")
            try:
                return fn(db)
            finally:
                if db.conn.in_transaction:
                    db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise

    def write_sync(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; committed (and, with
        synchronous=FULL, durable) when this returns, rolled back if ``fn`` raises.

        A busy or locked database, whether at ``BEGIN``, inside ``fn`` or at ``COMMIT``,
        raises :class:`StoreUnavailable` after the rollback (never a bare OperationalError,
        which would become a 500 or a serverFail)."""
        try:
            db = self.connect()
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise
        with self._write_lock:
            if self._local.autocheckpoint == self.background_checkpoint:
                # While checkpointer() runs it copies the WAL into the database off the
                # request path; otherwise (SQLite's default) a COMMIT now and then does it.
                on = not self.background_checkpoint
                db.execute(f"PRAGMA wal_autocheckpoint={1000 if on else 0}")
                self._local.autocheckpoint = on
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(str(exc)) from exc
            try:
                result = fn(db)
                db.execute("COMMIT")
                self._commits += 1
            except BaseException as exc:
                if db.conn.in_transaction:  # COMMIT may have failed and left it open
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
                    raise StoreUnavailable(str(exc)) from exc
                raise
            return result

    async def read(self, fn: Callable[[sqlite_utils.Database], T], *, inline: bool = True) -> T:
        """Run ``fn`` in one read transaction (see :meth:`read_sync`).

        A short read runs right here, on the event loop's thread: handing it to a worker
        thread and back costs more than most reads (measured in-process at 100,000
        messages: opening a mailbox 1.35 -> 0.65 ms, a sync with nothing new 0.28 ->
        0.04 ms), because of the thread wake-ups and the GIL changing hands twice.  A read
        that has used INLINE_READ_BUDGET of CPU time and is not done is interrupted by
        SQLite and run again in a worker thread (expect_long_read sends it there at
        once), as is one that finds the database busy, so a long query never holds up the
        other connections for more than the budget and the loop never waits for a lock.
        ``fn`` may therefore run twice: it must only read and return.  Pass
        ``inline=False`` for a function that does heavy work besides SQL (parsing
        messages, reading files), which SQLite cannot interrupt."""
        if inline and self.inline_reads:
            done, result = self._read_inline(fn)
            if done:
                return result  # type: ignore[return-value]
        return await trio.to_thread.run_sync(self.read_sync, fn)

    def _read_inline(self, fn: Callable[[sqlite_utils.Database], T]) -> tuple[bool, T | None]:
        db = getattr(self._local, "inline_db", None)
        if db is None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                conn.execute("PRAGMA foreign_keys=ON")
                register_functions(conn)
            except sqlite3.Error:
                return False, None
            db = self._local.inline_db = sqlite_utils.Database(conn)
            db.inline_read = True  # type: ignore[attr-defined]  # see expect_long_read
        conn = db.conn
        deadline = time.perf_counter() + INLINE_READ_BUDGET
        cpu_deadline = time.thread_time() + INLINE_READ_BUDGET

        def too_long() -> bool:
            # The budget is the read's own CPU time.  Waiting for the GIL (SQLite lets go
            # of it while it steps, and a /set in the writer thread may take it) is no
            # reason to move a read, and did so for 7 % of reads under 50 clients, each
            # then paying for the budget spent and running again.  The thread clock is a
            # system call, so it is only read once the cheap wall-clock one has passed.
            return time.perf_counter() > deadline and time.thread_time() > cpu_deadline

        try:
            conn.execute("BEGIN")
            conn.set_progress_handler(too_long, 1000)
            try:
                return True, fn(db)
            finally:
                conn.set_progress_handler(None, 0)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except (sqlite3.OperationalError, _LongRead) as exc:
            # "interrupted" past the budget, busy/locked (timeout 0 here) or expected to
            # be long: the worker thread does it, with the normal busy timeout.  Anything
            # else surfaces there.
            log.debug("read moved to a worker thread: %r", exc)
            return False, None

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return await trio.to_thread.run_sync(self.write_sync, fn)

    def checkpoint_sync(self) -> tuple[int, int, int]:
        """A PASSIVE checkpoint: copy what the WAL holds into the database file as far as
        no reader still needs it, without blocking readers.  Returns SQLite's (busy, WAL
        frames, frames checkpointed).

        It holds the write lock: with no commit landing meanwhile the checkpoint catches up
        with the whole WAL, so the next write starts the WAL over from its beginning.
        Without the lock, under steady writes a checkpoint never caught up and the WAL
        only grew (129 MB after a benchmark run), and every read slowed down looking pages
        up in it (flag 50 at 100,000 messages: 4.1 ms, 3.7 after a TRUNCATE checkpoint).
        Each checkpoint copies only what the last ~50 ms committed, so writers wait little."""
        with self._write_lock:
            row = self.connect().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    async def checkpointer(self, interval: float = CHECKPOINT_INTERVAL) -> None:
        """Checkpoint the WAL in the background for as long as this task runs.

        By default SQLite checkpoints inside the COMMIT that takes the WAL past 1,000
        pages, so every few requests one of them waits for the WAL to be copied and the
        database file fsynced.  While this task runs, the writer never checkpoints and this
        task does it shortly after commits, in a worker thread.  Durability is the WAL's
        (synchronous=FULL): a checkpoint only moves committed pages, and a crash before
        it loses nothing, the WAL being replayed on open."""
        self.background_checkpoint = True
        try:
            while True:
                await trio.sleep(interval)
                commits = self._commits
                if commits == self._checkpointed:
                    continue
                try:
                    await trio.to_thread.run_sync(self.checkpoint_sync)
                    self._checkpointed = commits
                except sqlite3.Error:  # busy: the next round tries again
                    log.warning("WAL checkpoint failed; retrying", exc_info=True)
        finally:
            self.background_checkpoint = False

    def close(self) -> None:
        for name in ("db", "inline_db"):
            db = getattr(self._local, name, None)
            if db is not None:
                db.conn.close()
                setattr(self._local, name, None)


def open_store(storage: dict[str, Any]) -> Any:
    """The store ``[storage]`` configures: this module's SQLite store, or the
    PostgreSQL one (jmap_host.pgstore) for ``type = "postgresql"``."""
    if storage.get("type") == "postgresql":
        from .pgstore import PgStore

        pg = storage["postgresql"]
        return PgStore(
            pg["url"],
            directory=storage["path"],
            pool_size=pg["pool-size"],
            busy_timeout=storage["busy-timeout"],
            statement_timeout=pg["statement-timeout"],
        )
    return Store(storage["path"], busy_timeout=storage["busy-timeout"])


def atomically(db: sqlite_utils.Database, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside a savepoint of the current transaction: if it raises, everything
    it wrote is rolled back (and the exception goes on), the rest of the transaction not.
    One record of a /set, one message of an import."""
    conn = db.conn  # (not sqlite-utils' execute: this runs for every record of a /set)
    conn.execute("SAVEPOINT jmap_atomically")
    try:
        result = fn()
    except BaseException:
        conn.execute("ROLLBACK TO jmap_atomically")
        conn.execute("RELEASE jmap_atomically")
        raise
    conn.execute("RELEASE jmap_atomically")
    return result


def datatype_migrations(capabilities: Any) -> list[sqlite_utils.Migrations]:
    """One migration set per plugin for the tables of its declared data types: a table is
    created once; a property declared later adds its column through a new migration."""
    import hashlib

    sets: dict[str, sqlite_utils.Migrations] = {}
    for cap in capabilities:
        for dt in cap.datatypes:
            migrations = sets.setdefault(
                cap.plugin, sqlite_utils.Migrations(f"{cap.plugin}:datatypes")
            )

            def create(db: sqlite_utils.Database, dt: Any = dt) -> None:
                create_type_table(db, dt)

            def columns(db: sqlite_utils.Database, dt: Any = dt) -> None:
                ensure_columns(db, dt)

            shape = ",".join(f"{p.name}:{p.type}:{p.sortable or p.indexed}" for p in dt.properties)
            if dt.indexes:  # (only then: the digest of a type without any stays as it was)
                shape += ";" + ";".join(",".join(index) for index in dt.indexes)
            if dt.quota_octets is not None or dt.quota_count:
                shape += f";quota={dt.quota_octets},{dt.quota_count}"
            if any(p.base_type in DATE_TYPES for p in dt.properties):
                # Date properties have had instant-key columns since 2026-12: a table made
                # before gets them (and its rows their keys) through a new digest.
                shape += ";instant-keys"
            if dt.open_properties is not None:
                shape += ";open"
            if dt.derived:  # (a derived value whose function changes wants a new name)
                shape += ";derived=" + ",".join(sorted(dt.derived))
            digest = hashlib.sha256(shape.encode()).hexdigest()[:12]
            migrations(name=f"create {dt.table}")(create)
            migrations(name=f"columns {dt.table} {digest}")(columns)
    return list(sets.values())


def rows(
    db: sqlite_utils.Database, table: str, where: str | None = None, args: Any = None
) -> list[dict]:
    return list(db[table].rows_where(where, args or [])) if db[table].exists() else []
