"""The ``sql`` directory: principals in SQLite, read with configurable queries."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import trio
from sqlite_utils import Database

from jmap_host import DirectoryUnavailable, Host, Principal, hash_password, verify_password

from . import schema
from .config import DEFAULT_COLUMNS, DEFAULT_QUERIES, is_customised

log = logging.getLogger("jmap_host_sql")

T = TypeVar("T")


def _unavailable(where: str, exc: sqlite3.Error) -> DirectoryUnavailable:
    log.error("sql directory %s: %s", where, exc)
    return DirectoryUnavailable(f"{where}: {exc}")


class HostBackend:
    """The host's own database (``host.store``): the host's writer lock and threads."""

    def __init__(self, host: Host, label: str):
        self.store = host.store
        self.label = label

    def _wrap(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[Database], T]:
        def run(db: Database) -> T:
            try:
                return fn(db.conn)
            except sqlite3.Error as exc:
                raise _unavailable(self.label, exc) from None

        return run

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.store.read_sync(self._wrap(fn))

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.store.write_sync(self._wrap(fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # In a worker thread (inline=False): _wrap turns every sqlite3.Error into the
        # directory's own error, so the store could not see an inline read interrupted or
        # busy and retry it.  Lookups are rare (the authenticator caches them).
        return await self.store.read(self._wrap(fn), inline=False)

    def prepare_sync(self) -> None:
        self.store.migrate()  # the host applies our set with its own (migrations hook)


class FileBackend:
    """A separate SQLite file.  One short-lived connection per operation, in a worker
    thread: a file replaced, locked or made unreadable is noticed at the next request."""

    def __init__(self, path: Path, timeout: float, label: str, managed: bool):
        self.path = path
        self.timeout = timeout
        self.label = label
        self.managed = managed

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        mode = "rwc" if create else "rw"  # never create an empty file by reading
        conn = sqlite3.connect(
            f"file:{quote(str(self.path))}?mode={mode}",
            uri=True,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA synchronous=FULL")
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "readonly" not in str(exc):
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connect()
            try:
                return fn(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _unavailable(f"{self.label} ({self.path})", exc) from None

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _unavailable(f"{self.label} ({self.path})", exc) from None

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self.read_sync, fn)

    def prepare_sync(self) -> None:
        """Create the file and the built-in tables (unless the operator brought their own)."""
        if not self.managed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(create=True)
            try:
                schema.sql_migrations.apply(Database(conn))
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _unavailable(f"{self.label} ({self.path})", exc) from None


@dataclass
class Record:
    """A principal as the queries describe it, with what the host's Principal omits."""

    principal: Principal
    secret: str | None
    enabled: bool


_FALSE = {"0", "false", "no", "off", "n", "f", "disabled", ""}


def _enabled(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


class SqlDirectory:
    def __init__(self, name: str, config: dict[str, Any], host: Host):
        self.name = name
        self.queries: dict[str, str] = config["query"]
        self.columns = {k: v.lower() for k, v in config["columns"].items()}
        self.managed = not is_customised(config)
        if not self.managed and self.queries["list"] == DEFAULT_QUERIES["list"]:
            # The built-in list query names the built-in table: with the operator's own
            # schema there is no listing unless they give their own.
            self.queries = {**self.queries, "list": ""}
        if not self.managed and self.columns["time-zone"] == DEFAULT_COLUMNS["time-zone"]:
            self.columns["time-zone"] = ""
        self.seed = [
            schema.NewPrincipal(
                name=p["name"],
                kind=p["class"],
                secret=p["secret"],
                emails=list(p["email"]),
                description=p["description"],
                member_of=list(p["member-of"]),
                quota=p["quota"],
                time_zone=p["time-zone"],
            )
            for p in config["seed"]
        ]
        label = f'directory "{name}"'
        self.backend: HostBackend | FileBackend
        if config["path"] is None:
            self.path = None
            self.backend = HostBackend(host, label)
        else:
            path = Path(config["path"]).expanduser()
            self.path = path if path.is_absolute() else host.config.base_dir / path
            self.backend = FileBackend(self.path, config["timeout"], label, self.managed)

    # -- queries (in a worker thread) ------------------------------------------------------

    def _column(self, conn: sqlite3.Connection, key: str, arg: str) -> list[Any]:
        sql = self.queries[key]
        if not sql:
            return []
        return [row[0] for row in conn.execute(sql, (arg,)) if row and row[0] is not None]

    def _load(self, conn: sqlite3.Connection, name: str) -> Record | None:
        cursor = conn.execute(self.queries["name"], (name,))
        row = cursor.fetchone()
        if row is None:
            return None
        names = [d[0].lower() for d in cursor.description]
        rec = dict(zip(names, row, strict=True))
        c = self.columns
        real_name = rec.get("name")
        if not isinstance(real_name, str) or not real_name:
            real_name = name
        kind = str(rec.get(c["class"]) or "").strip().lower()
        if kind not in ("group", "resource", "location"):
            kind = "individual"
        zone = rec.get(c["time-zone"])
        emails: list[str] = []
        primary = rec.get(c["email"])
        if isinstance(primary, str) and primary:
            emails.append(primary)
        for address in self._column(conn, "emails", real_name):
            if str(address) not in emails:
                emails.append(str(address))
        secret = rec.get(c["secret"])
        return Record(
            principal=Principal(
                name=real_name,
                kind=kind,  # type: ignore[arg-type]
                emails=tuple(emails),
                description=str(rec.get(c["description"]) or ""),
                member_of=tuple(str(g) for g in self._column(conn, "members", real_name)),
                quota=_quota(rec.get(c["quota"])),
                time_zone=str(zone) if zone else None,
            ),
            secret=str(secret) if secret else None,
            enabled=_enabled(rec[c["enabled"]]) if c["enabled"] in rec else True,
        )

    def _by_address(self, conn: sqlite3.Connection, address: str) -> list[Record]:
        found = []
        for name in dict.fromkeys(self._column(conn, "recipients", address.lower())):
            record = self._load(conn, str(name))
            if record is not None:
                found.append(record)
        return found

    def _for_login(self, conn: sqlite3.Connection, username: str) -> Record | None:
        record = self._load(conn, username)
        if record is None and "@" in username:
            users = [r for r in self._by_address(conn, username) if r.principal.kind != "group"]
            if len(users) == 1:  # an address shared by several users logs nobody in
                record = users[0]
        return record

    # -- the Directory protocol --------------------------------------------------------------

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """Basic credentials (RFC 7617) checked against the login name or any address."""
        record = await self.backend.read(functools.partial(self._for_login, username=username))
        if (
            record is None
            or record.principal.kind != "individual"
            or not record.enabled
            or not record.secret
        ):
            # Verify against a dummy so an unknown user costs as much as a wrong password.
            await trio.to_thread.run_sync(verify_password, password, _dummy_hash())
            return None
        ok = await trio.to_thread.run_sync(verify_password, password, record.secret)
        return record.principal if ok else None

    async def principal(self, name: str) -> Principal | None:
        """A disabled principal is treated as absent: its Bearer tokens stop working and
        group accounts it owns leave members' sessions."""
        record = await self.backend.read(functools.partial(self._load, name=name))
        return record.principal if record is not None and record.enabled else None

    async def members(self, group: str) -> list[Principal]:
        def q(conn: sqlite3.Connection) -> list[Principal]:
            out = []
            for name in dict.fromkeys(self._column(conn, "group-members", group)):
                record = self._load(conn, str(name))
                if record is not None and record.enabled:
                    out.append(record.principal)
            return out

        return await self.backend.read(q)

    async def lookup_email(self, address: str) -> Principal | None:
        records = await self.backend.read(functools.partial(self._by_address, address=address))
        for record in records:
            if record.enabled:
                return record.principal
        return None

    async def list_principals(self) -> list[Principal]:
        """Every enabled principal, by the ``list`` query (RFC 9670 Principal/query)."""

        def q(conn: sqlite3.Connection) -> list[Principal]:
            out = []
            for name in dict.fromkeys(self._column(conn, "list", "%")):
                record = self._load(conn, str(name))
                if record is not None and record.enabled:
                    out.append(record.principal)
            return out

        return await self.backend.read(q)

    # -- start-up and management --------------------------------------------------------------

    def probe_sync(self) -> None:
        """Run every query once, so a wrong table or column name stops the start-up with
        the key to fix instead of failing the first login."""

        def q(conn: sqlite3.Connection) -> None:
            for key, sql in self.queries.items():
                if not sql:
                    continue
                try:
                    conn.execute(sql, ("",)).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such" in str(exc) or "syntax" in str(exc):
                        raise ValueError(f'directory."{self.name}".query.{key}: {exc}') from None
                    raise

        self.backend.read_sync(q)

    def seed_sync(self) -> bool:
        if not (self.managed and self.seed):
            return False
        # Hashing is slow (argon2): only when the seed may be used.
        needed = self.backend.read_sync(
            lambda conn: (
                conn.execute("SELECT 1 FROM sql_meta WHERE key = 'seeded'").fetchone() is None
            )
        )
        if not needed:
            return False
        principals = [
            schema.NewPrincipal(**{**p.__dict__, "secret": _hashed(p.secret)}) for p in self.seed
        ]
        return self.backend.write_sync(lambda conn: schema.seed(conn, principals))

    def load_any_sync(self, name: str) -> Record | None:
        """Like :meth:`principal` but disabled principals too (for `principal show`)."""
        return self.backend.read_sync(functools.partial(self._load, name=name))

    def members_any_sync(self, group: str) -> list[str]:
        return self.backend.read_sync(
            lambda conn: [str(n) for n in self._column(conn, "group-members", group)]
        )


def _quota(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else max(0, int(value))
    except (TypeError, ValueError):
        return None


def _hashed(secret: str | None) -> str | None:
    """A plain-text seed password becomes an argon2id hash; a hash is kept as it is."""
    if not secret or secret.startswith(("$", "{")):
        return secret
    return hash_password(secret)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password anyone has")
