"""The built-in schema (tables prefixed ``sql_``) and the writes that manage it.

Every function here takes a ``sqlite3.Connection`` and runs inside the caller's
transaction (``Backend.write_sync``); none commits.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from sqlite_utils import Database, Migrations

sql_migrations = Migrations("jmap-host-sql")


@sql_migrations(name="principals")
def create_principals(db: Database) -> None:
    db.execute(
        """CREATE TABLE sql_principal (
            name TEXT PRIMARY KEY,
            class TEXT NOT NULL DEFAULT 'individual' CHECK (class IN ('individual', 'group')),
            secret TEXT,
            description TEXT NOT NULL DEFAULT '',
            quota INTEGER,
            enabled INTEGER NOT NULL DEFAULT 1,
            created INTEGER NOT NULL
        )"""
    )
    # One row per address, lower-cased; position 0 is the primary address.
    db.execute(
        "CREATE TABLE sql_email (address TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "position INTEGER NOT NULL)"
    )
    db.execute("CREATE INDEX sql_email_name ON sql_email (name, position)")
    db.execute(
        "CREATE TABLE sql_member (name TEXT NOT NULL, member_of TEXT NOT NULL, "
        "PRIMARY KEY (name, member_of))"
    )
    db.execute("CREATE INDEX sql_member_group ON sql_member (member_of)")
    # Flags such as "seeded" (the seed list was considered once, on the first start).
    db.execute("CREATE TABLE sql_meta (key TEXT PRIMARY KEY, value TEXT)")


@sql_migrations(name="kinds_and_time_zones")
def principal_kinds(db: Database) -> None:
    """Resources and locations (RFC 9670 principal types) and a time zone per principal:
    the table is made again with the wider CHECK (SQLite cannot alter one), rows kept."""
    db.execute(
        """CREATE TABLE sql_principal_new (
            name TEXT PRIMARY KEY,
            class TEXT NOT NULL DEFAULT 'individual'
                CHECK (class IN ('individual', 'group', 'resource', 'location')),
            secret TEXT,
            description TEXT NOT NULL DEFAULT '',
            quota INTEGER,
            enabled INTEGER NOT NULL DEFAULT 1,
            created INTEGER NOT NULL,
            time_zone TEXT
        )"""
    )
    db.execute(
        "INSERT INTO sql_principal_new (name, class, secret, description, quota, enabled, "
        "created) SELECT name, class, secret, description, quota, enabled, created "
        "FROM sql_principal"
    )
    db.execute("DROP TABLE sql_principal")
    db.execute("ALTER TABLE sql_principal_new RENAME TO sql_principal")


class ManageError(Exception):
    """A management request that cannot be done (unknown name, taken address...)."""


@dataclass
class NewPrincipal:
    name: str
    kind: str = "individual"
    secret: str | None = None  # already hashed
    emails: list[str] = field(default_factory=list)
    description: str = ""
    member_of: list[str] = field(default_factory=list)
    quota: int | None = None
    time_zone: str | None = None


def _exists(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT class FROM sql_principal WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def add(conn: sqlite3.Connection, p: NewPrincipal) -> None:
    if _exists(conn, p.name) is not None:
        raise ManageError(f"a principal called {p.name!r} already exists")
    for group in p.member_of:
        kind = _exists(conn, group)
        if kind != "group":
            raise ManageError(f"no group called {group!r}" + (" (it is a user)" if kind else ""))
    addresses = [a.lower() for a in p.emails]
    if len(set(addresses)) != len(addresses):
        raise ManageError("the same address is given twice")
    for address in addresses:
        row = conn.execute("SELECT name FROM sql_email WHERE address = ?", (address,)).fetchone()
        if row is not None:
            raise ManageError(f"address {address!r} already belongs to {row[0]!r}")
    conn.execute(
        "INSERT INTO sql_principal (name, class, secret, description, quota, enabled, created, "
        "time_zone) VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
        (p.name, p.kind, p.secret, p.description, p.quota, int(time.time()), p.time_zone),
    )
    conn.executemany(
        "INSERT INTO sql_email (address, name, position) VALUES (?, ?, ?)",
        [(address, p.name, i) for i, address in enumerate(addresses)],
    )
    conn.executemany(
        "INSERT INTO sql_member (name, member_of) VALUES (?, ?)",
        [(p.name, group) for group in dict.fromkeys(p.member_of)],
    )


def _require(conn: sqlite3.Connection, name: str) -> str:
    kind = _exists(conn, name)
    if kind is None:
        raise ManageError(f"no principal called {name!r}")
    return kind


def set_secret(conn: sqlite3.Connection, name: str, secret: str) -> None:
    if _require(conn, name) != "individual":
        raise ManageError(f"{name!r} is a group; groups do not log in")
    conn.execute("UPDATE sql_principal SET secret = ? WHERE name = ?", (secret, name))


def set_enabled(conn: sqlite3.Connection, name: str, enabled: bool) -> None:
    _require(conn, name)
    conn.execute("UPDATE sql_principal SET enabled = ? WHERE name = ?", (int(enabled), name))


def delete(conn: sqlite3.Connection, name: str) -> None:
    _require(conn, name)
    conn.execute("DELETE FROM sql_email WHERE name = ?", (name,))
    conn.execute("DELETE FROM sql_member WHERE name = ? OR member_of = ?", (name, name))
    conn.execute("DELETE FROM sql_principal WHERE name = ?", (name,))


@dataclass
class Row:
    name: str
    kind: str
    enabled: bool
    emails: list[str]


def list_all(conn: sqlite3.Connection) -> list[Row]:
    emails: dict[str, list[str]] = {}
    for name, address in conn.execute(
        "SELECT name, address FROM sql_email ORDER BY name, position"
    ):
        emails.setdefault(name, []).append(address)
    return [
        Row(name, kind, bool(enabled), emails.get(name, []))
        for name, kind, enabled in conn.execute(
            "SELECT name, class, enabled FROM sql_principal ORDER BY name"
        )
    ]


def seed(conn: sqlite3.Connection, principals: list[NewPrincipal]) -> bool:
    """Create ``principals`` if this is the first time and the directory is empty.

    Runs at most once per database: a directory an operator emptied on purpose is not
    filled with demo accounts again at the next start.  Returns whether it seeded.
    """
    if conn.execute("SELECT 1 FROM sql_meta WHERE key = 'seeded'").fetchone():
        return False
    conn.execute("INSERT INTO sql_meta (key, value) VALUES ('seeded', ?)", (str(int(time.time())),))
    if conn.execute("SELECT 1 FROM sql_principal LIMIT 1").fetchone():
        return False
    # Groups first, so members can name them.
    for p in sorted(principals, key=lambda p: p.kind != "group"):
        add(conn, p)
    return True
