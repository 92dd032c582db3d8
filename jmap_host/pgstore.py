"""The PostgreSQL store: the host database on a PostgreSQL server, for several nodes.

``[storage] type = "postgresql"`` puts every table of the host and of its plugins in one
PostgreSQL database, so that several jmap-host nodes (and several worker processes on
one machine) serve the same accounts.  It has the interface of the SQLite store
(:class:`jmap_host.store.Store`: ``read``, ``write``, their ``_sync`` forms, migration
sets), and the functions given to them get a :class:`PgDatabase`, which answers the part
of sqlite-utils' ``Database`` the host and plugins use (``execute``, ``query``,
``db[table].create``/``insert``/``rows_where``/..., ``conn``).

The statements are the store's common SQL (jmap_host.sqldialect): ``?`` parameters and
``[name]`` identifiers become ``%s`` and ``"name"`` here, once per distinct statement.

Transactions keep the SQLite store's rules:

- a read runs in one ``REPEATABLE READ READ ONLY`` transaction: every statement sees the
  same snapshot, so a state read with its records matches them;
- a write runs in one transaction that first takes a transaction-level advisory lock
  (WRITE_LOCK), so writes are serialised across every node as SQLite serialises them on
  one machine (the /set machinery reads a modseq and writes the next one); it is
  acknowledged when COMMIT returns, which with PostgreSQL's default
  ``synchronous_commit = on`` is after the commit record is flushed to disk;
- a lock or statement waiting past ``storage.busy-timeout`` / ``statement-timeout``, a
  pool with no free connection, or a lost server raise StoreUnavailable (the client gets
  serverUnavailable or 503), after rolling back.

Connections come from a psycopg-pool ``ConnectionPool`` and are used in worker threads
(psycopg's async API is asyncio's; the host runs on trio).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg.adapt
import psycopg.errors
import psycopg_pool
import sqlite_utils
import sqlite_utils.db
import trio

from .leases import Lease, PgLeases
from .sqldialect import POSTGRESQL
from .store import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

# The advisory lock every write transaction holds (pg_advisory_xact_lock): one writer at a
# time across the nodes.  The number is arbitrary; it only has to be ours.
WRITE_LOCK = 0x6A6D6170  # "jmap"
MIGRATIONS_TABLE = "_jmap_migrations"
MIGRATION_LOCK = WRITE_LOCK + 1


# -- the common SQL, as PostgreSQL wants it ----------------------------------------------

# A name in brackets starts with a letter or _ (an array subscript, [1], is not one) and
# may hold what property names do (p_@type).
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\[([A-Za-z_][^\]\['\"\s]*)\]|\?|%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """The store's common SQL as psycopg takes it: ``?`` → ``%s``, ``[name]`` →
    ``"name"``, ``%`` → ``%%``; string literals and quoted names keep their text (a ``%``
    in a literal is doubled all the same: psycopg reads the whole statement)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1) is not None:
            return f'"{match.group(1)}"'
        return token.replace("%", "%%") if token.startswith("'") else token

    return _TOKENS.sub(one, sql)


class _BoolDumper(psycopg.adapt.Dumper):
    """Booleans as the integers SQLite keeps them as (columns of Boolean properties are
    integers in both stores)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class PgCursor:
    """The part of a DB-API cursor the store's callers use, over a psycopg cursor."""

    def __init__(self, cursor: psycopg.Cursor[Any]):
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class PgConnection:
    """``db.conn``: the statements of the common SQL on the psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]):
        self.raw = conn
        # Rows inserted, updated or deleted through this object, as sqlite3's total_changes
        # (standard.write_set asks whether a failed update wrote anything).
        self.total_changes = 0

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), tuple(params or ()))  # type: ignore[arg-type]
        self._count(cursor)
        return PgCursor(cursor)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> PgCursor:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [tuple(p) for p in seq])  # type: ignore[arg-type]
        self._count(cursor)
        return PgCursor(cursor)

    def _count(self, cursor: psycopg.Cursor[Any]) -> None:
        tag = cursor.statusmessage or ""
        if tag.startswith(("INSERT", "UPDATE", "DELETE")) and cursor.rowcount > 0:
            self.total_changes += cursor.rowcount


_COLUMN_TYPES: dict[Any, str] = {
    str: 'TEXT COLLATE "C"',
    int: "BIGINT",
    float: "DOUBLE PRECISION",
    bytes: "BYTEA",
    bool: "BIGINT",
    dict: "TEXT",
    list: "TEXT",
}


def column_type(kind: Any) -> str:
    if isinstance(kind, str):  # sqlite-utils also takes the SQL type's name
        return {"TEXT": 'TEXT COLLATE "C"', "INTEGER": "BIGINT", "FLOAT": "DOUBLE PRECISION",
                "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}.get(kind.upper(), kind)  # fmt: skip
    return _COLUMN_TYPES[kind]


@dataclass
class Index:
    name: str
    columns: list[str]
    unique: bool


class PgTable:
    """``db[name]``: the sqlite-utils Table methods the host and plugins use."""

    def __init__(self, db: PgDatabase, name: str):
        self.db, self.name = db, name

    def exists(self) -> bool:
        return self.name in self.db.table_names()

    @property
    def columns_dict(self) -> dict[str, str]:
        return {
            r[0]: r[1]
            for r in self.db.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ? "
                "ORDER BY ordinal_position",
                [self.name],
            )
            if r[0] != "rowid"
        }

    @property
    def pks(self) -> list[str]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = ?::regclass "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                [f'"{self.name}"'],
            )
        ]

    @property
    def count(self) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM [{self.name}]").fetchone()[0])

    @property
    def indexes(self) -> list[Index]:
        rows = self.db.execute(
            "SELECT ic.relname, i.indisunique, array_agg(a.attname ORDER BY k.n) "
            "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = ?::regclass AND NOT i.indisprimary GROUP BY ic.relname, "
            "i.indisunique",
            [f'"{self.name}"'],
        )
        return [Index(r[0], list(r[2]), bool(r[1])) for r in rows]

    def create(
        self,
        columns: dict[str, Any],
        pk: str | Sequence[str] | None = None,
        not_null: Iterable[str] = (),
        defaults: dict[str, Any] | None = None,
        if_not_exists: bool = False,
    ) -> PgTable:
        # Every table has a rowid as SQLite's do (the order rows were inserted in, which
        # the change log and some queries read): an identity column here.
        not_null = set(not_null)
        defaults = defaults or {}
        parts = ["rowid BIGINT GENERATED BY DEFAULT AS IDENTITY"]
        # SQLite numbers a row whose one-column primary key is an INTEGER (the key is its
        # rowid): that column is an identity here.
        counter = pk if isinstance(pk, str) and columns.get(pk) is int else None
        for name, kind in columns.items():
            part = f"[{name}] {column_type(kind)}"
            if name == counter:
                part += " GENERATED BY DEFAULT AS IDENTITY"
            if name in not_null:
                part += " NOT NULL"
            if name in defaults:
                part += f" DEFAULT {_literal(defaults[name])}"
            parts.append(part)
        if pk is not None:
            keys = [pk] if isinstance(pk, str) else list(pk)
            parts.append("PRIMARY KEY (" + ", ".join(f"[{k}]" for k in keys) + ")")
        exists = "IF NOT EXISTS " if if_not_exists else ""
        self.db.execute(f"CREATE TABLE {exists}[{self.name}] ({', '.join(parts)})")
        self.db.forget_tables()
        return self

    def create_index(
        self,
        columns: Sequence[str],
        index_name: str | None = None,
        unique: bool = False,
        if_not_exists: bool = False,
    ) -> PgTable:
        name = index_name or f"idx_{self.name}_" + "_".join(columns)
        exists = "IF NOT EXISTS " if if_not_exists else ""
        cols = ", ".join(f"[{c}]" for c in columns)
        kind = "UNIQUE INDEX" if unique else "INDEX"
        self.db.execute(f"CREATE {kind} {exists}[{name}] ON [{self.name}] ({cols})")
        return self

    def add_column(self, name: str, kind: Any = str) -> PgTable:
        self.db.execute(f"ALTER TABLE [{self.name}] ADD COLUMN [{name}] {column_type(kind)}")
        return self

    def drop(self, ignore: bool = False) -> None:
        self.db.execute(f"DROP TABLE {'IF EXISTS ' if ignore else ''}[{self.name}]")
        self.db.forget_tables()

    def insert(
        self,
        record: dict[str, Any],
        pk: Any = None,
        replace: bool = False,
        ignore: bool = False,
        **_: Any,
    ) -> PgTable:
        return self.insert_all([record], pk=pk, replace=replace, ignore=ignore)

    def insert_all(
        self,
        records: Iterable[dict[str, Any]],
        pk: Any = None,
        replace: bool = False,
        ignore: bool = False,
        **_: Any,
    ) -> PgTable:
        records = list(records)
        if not records:
            return self
        cols = list(records[0])
        sql = (
            f"INSERT INTO [{self.name}] ({', '.join(f'[{c}]' for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})"
        )
        if replace or ignore:
            keys = self.pks if pk is None else ([pk] if isinstance(pk, str) else list(pk))
            conflict = ", ".join(f"[{k}]" for k in keys)
            rest = [c for c in cols if c not in keys]
            if ignore or not rest:
                sql += f" ON CONFLICT ({conflict}) DO NOTHING"
            else:
                sets = ", ".join(f"[{c}] = excluded.[{c}]" for c in rest)
                sql += f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
        self.db.conn.executemany(sql, [[_value(r.get(c)) for c in cols] for r in records])
        return self

    def upsert(self, record: dict[str, Any], pk: Any) -> PgTable:
        return self.insert_all([record], pk=pk, replace=True)

    def _where_pk(self, pk_values: Any) -> tuple[str, list[Any]]:
        keys = self.pks
        values = list(pk_values) if isinstance(pk_values, list | tuple) else [pk_values]
        return " AND ".join(f"[{k}] = ?" for k in keys), values

    def update(self, pk_values: Any, updates: dict[str, Any]) -> PgTable:
        where, args = self._where_pk(pk_values)
        sets = ", ".join(f"[{c}] = ?" for c in updates)
        self.db.execute(
            f"UPDATE [{self.name}] SET {sets} WHERE {where}",
            [*(_value(v) for v in updates.values()), *args],
        )
        return self

    def delete(self, pk_values: Any) -> PgTable:
        where, args = self._where_pk(pk_values)
        self.db.execute(f"DELETE FROM [{self.name}] WHERE {where}", args)
        return self

    def get(self, pk_values: Any) -> dict[str, Any]:
        """The row with this primary key; sqlite-utils' NotFoundError if there is none."""
        where, args = self._where_pk(pk_values)
        for row in self.rows_where(where, args):
            return row
        raise sqlite_utils.db.NotFoundError(f"no row {pk_values!r} in {self.name}")

    def count_where(self, where: str | None = None, where_args: Sequence[Any] = ()) -> int:
        sql = f"SELECT count(*) FROM [{self.name}]" + (f" WHERE {where}" if where else "")
        return int(self.db.execute(sql, where_args).fetchone()[0])

    def rows_where(
        self,
        where: str | None = None,
        where_args: Sequence[Any] | None = None,
        order_by: str | None = None,
        select: str = "*",
        limit: int | None = None,
        offset: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        # (SELECT * with the identity column left out of each row: asking the catalogue
        # for the column list would cost a query on every call, an app password's check
        # on every request among them.)
        sql = f"SELECT {select} FROM [{self.name}]"
        if where:
            sql += f" WHERE {where}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if offset is not None:
            sql += f" OFFSET {int(offset)}"
        for row in self.db.query(sql, where_args or []):
            if select == "*":
                row.pop("rowid", None)
            yield row

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()


def _value(value: Any) -> Any:
    # sqlite-utils stores dicts and lists as JSON text.
    if isinstance(value, dict | list | tuple):
        import json

        return json.dumps(value)
    return value


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class PgDatabase:
    """What a read or write function gets on PostgreSQL: sqlite-utils' Database, as far as
    the host and plugins use it."""

    dialect = POSTGRESQL

    def __init__(self, conn: psycopg.Connection[Any], *, read_only: bool = False):
        self.conn = PgConnection(conn)
        self.read_only = read_only
        self._tables: set[str] | None = None

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PgCursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Iterator[dict[str, Any]]:
        cursor = self.conn.raw.cursor()
        cursor.execute(translate(sql), tuple(params or ()))  # type: ignore[arg-type]
        self.conn._count(cursor)
        if cursor.description is None:
            return
        names = [c.name for c in cursor.description]
        for row in cursor.fetchall():
            yield dict(zip(names, row, strict=True))

    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table_names(self) -> list[str]:
        if self._tables is None:
            self._tables = {
                r[0]
                for r in self.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
        return sorted(self._tables)

    def forget_tables(self) -> None:
        self._tables = None


# -- the store ---------------------------------------------------------------------------

# The functions of the common SQL (jmap_host.sqldialect) that PostgreSQL lacks, made by
# the first migration.  They are SQL functions (no procedural language beyond PL/pgSQL,
# which every PostgreSQL has), so managed servers that refuse extensions run them.
COMPAT_FUNCTIONS = [
    # SQLite's json_each over a JSON array (key: index) or object, values as text (a
    # string's value without its quotes, as SQLite gives it).
    """CREATE OR REPLACE FUNCTION json_each(doc text) RETURNS TABLE(key text, value text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT o.key, o.value FROM jsonb_each_text(
        CASE WHEN jsonb_typeof(doc::jsonb) = 'object' THEN doc::jsonb END) AS o
      UNION ALL
      SELECT (a.n - 1)::text, a.value FROM jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(doc::jsonb) = 'array' THEN doc::jsonb END)
        WITH ORDINALITY AS a(value, n)
    $$""",
    # SQLite's json_extract for the paths the store's SQL uses ('$.a', '$[0].b').
    """CREATE OR REPLACE FUNCTION json_extract(doc text, path text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT doc::jsonb #>> regexp_split_to_array(
        trim(both '.' from regexp_replace(substr(path, 2), '\\[(\\d+)\\]', '.\\1', 'g')),
        '\\.')
    $$""",
    """CREATE OR REPLACE FUNCTION instr(haystack text, needle text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT strpos(haystack, needle) $$""",
    # i;unicode-casemap (RFC 5051) as objectstore.unicode_casemap_key approximates it:
    # NFKD, then lower case (Python's casefold() also folds a few characters, as ß → ss,
    # that lower() keeps; PostgreSQL 15 has no casefold).
    """CREATE OR REPLACE FUNCTION jmap_fold(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT lower(normalize(value, NFKD)) $$""",
]


class PgStore:
    """The host database on PostgreSQL.  Use :meth:`read` and :meth:`write` from async
    code, as with :class:`jmap_host.store.Store`."""

    dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        directory: Any,
        pool_size: int = 10,
        busy_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ):
        from pathlib import Path

        # Files beside the database (blobs, unless they are in it): storage.path.
        self.directory = Path(directory)
        self.url = url
        self.busy_timeout = busy_timeout
        self.statement_timeout = statement_timeout
        self.pool_size = pool_size
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._migrations: list[sqlite_utils.Migrations] = []
        self.inline_reads = False  # every read goes to a worker thread (a network round trip)
        self.background_checkpoint = False
        # The transaction the function of read_sync / write_sync running in this thread is
        # in (current()).
        self._running = threading.local()
        # Background jobs that run once across the nodes (leases.py): advisory locks on a
        # connection of their own, outside the pool.
        self.leases = PgLeases(url, statement_timeout=statement_timeout)

    def leader(self, name: str) -> AbstractAsyncContextManager[Lease]:
        """Hold lease ``name`` for the body (jmap_host.leases: once across nodes)."""
        return self.leases.hold(name)

    async def run_leased(self, name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """``await fn(*args)`` while this process holds lease ``name`` (jmap_host.leases)."""
        await self.leases.run(name, fn, *args)

    # -- connections -------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.adapters.register_dumper(bool, _BoolDumper)
        # Times in the server's session, so that no statement runs unbounded.
        conn.execute(f"SET statement_timeout = {int(self.statement_timeout * 1000)}")
        conn.execute(f"SET lock_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("SET idle_in_transaction_session_timeout = 60000")

    @property
    def pool(self) -> psycopg_pool.ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = psycopg_pool.ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    configure=self._configure,
                    # Autocommit: the store says BEGIN and COMMIT itself (psycopg would
                    # otherwise open a transaction of its own before the first statement).
                    kwargs={"autocommit": True},
                    timeout=self.busy_timeout,
                    open=True,
                    name="jmap-host",
                )
            return self._pool

    def _connection(self) -> Any:
        try:
            return self.pool.connection(timeout=self.busy_timeout)
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(f"no database connection free: {exc}") from exc

    def connect(self) -> PgDatabase:
        """A connection of its own, in autocommit (commands, tests); close it with
        ``db.conn.raw.close()``."""
        conn = psycopg.connect(self.url, autocommit=True)
        self._configure(conn)
        return PgDatabase(conn)

    # -- migrations --------------------------------------------------------------------

    def add_migrations(self, migrations: sqlite_utils.Migrations) -> None:
        self._migrations.append(migrations)

    def migrate(self) -> list[str]:
        """Apply every pending migration of every set, each in a transaction with its
        record; nodes starting together wait for one another (an advisory lock)."""
        applied: list[str] = []
        with self._connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                with conn.transaction():
                    db = PgDatabase(conn)
                    db.execute(
                        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (migration_set TEXT, "
                        "name TEXT, applied_at TIMESTAMPTZ DEFAULT now(), "
                        "PRIMARY KEY (migration_set, name))"
                    )
                    for statement in COMPAT_FUNCTIONS:
                        db.execute(statement)
                for m in self._migrations:
                    done = {
                        r[0]
                        for r in conn.execute(
                            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = %s",
                            (m.name,),
                        )
                    }
                    for migration in m._migrations:  # (sqlite-utils keeps them in order)
                        if migration.name in done:
                            continue
                        with conn.transaction():
                            migration.fn(PgDatabase(conn))
                            conn.execute(
                                f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name) "
                                "VALUES (%s, %s)",
                                (m.name, migration.name),
                            )
                        applied.append(f"{m.name}:{migration.name}")
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return applied

    # -- transactions ------------------------------------------------------------------

    def current(self) -> PgDatabase | None:
        """The transaction of the read or write function running in this thread, or None
        (code the function calls that is not given ``db``, e.g. the database blob store,
        works in it: what it writes commits or rolls back with the rest)."""
        return getattr(self._running, "db", None)

    def _run(self, fn: Callable[[PgDatabase], T], db: PgDatabase) -> T:
        previous = self.current()
        self._running.db = db
        try:
            return fn(db)
        finally:
            self._running.db = previous

    def read_sync(self, fn: Callable[[PgDatabase], T]) -> T:
        """Run ``fn`` in one read-only snapshot transaction."""
        try:
            with self._connection() as conn:
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                try:
                    return self._run(fn, PgDatabase(conn, read_only=True))
                finally:
                    _end(conn, "ROLLBACK")
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    def write_sync(self, fn: Callable[[PgDatabase], T], *, lock: bool = True) -> T:
        """Run ``fn`` in one transaction holding the write lock; committed (durable)
        when this returns, rolled back if ``fn`` raises.  ``lock=False``: without the
        write lock, for a write that commutes with every other (an idempotent insert of
        content-addressed bytes), so that other writes need not wait for it."""
        try:
            with self._connection() as conn:
                conn.execute("BEGIN")
                try:
                    if lock:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    result = self._run(fn, PgDatabase(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    _end(conn, "ROLLBACK")
                    raise
                return result
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def read(self, fn: Callable[[PgDatabase], T], *, inline: bool = True) -> T:
        return await trio.to_thread.run_sync(self.read_sync, fn)

    async def write(self, fn: Callable[[PgDatabase], T], *, lock: bool = True) -> T:
        return await trio.to_thread.run_sync(functools.partial(self.write_sync, fn, lock=lock))

    async def checkpointer(self, interval: float = 0.0) -> None:
        """PostgreSQL checkpoints by itself: nothing to do (the SQLite store's task)."""
        await trio.sleep_forever()

    def close(self) -> None:
        self.leases.close()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _end(conn: psycopg.Connection[Any], statement: str) -> None:
    # (A connection the server dropped has no transaction to end: the pool replaces it.)
    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute(statement)


# Temporary conditions: a lock or statement waited too long, the server went away, the
# pool had no connection (PoolTimeout is handled in _connection).
_UNAVAILABLE = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.QueryCanceled,
    psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow,
    psycopg.OperationalError,
)
