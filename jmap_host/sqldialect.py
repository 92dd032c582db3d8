"""The SQL the two store back ends do not share, in one place.

Every statement the host and its plugins run is written in the store's common SQL:
``?`` parameters, ``[name]`` or ``"name"`` identifiers, ``INSERT ... ON CONFLICT``,
``RETURNING``, savepoints, and these functions, which both back ends have (SQLite's own
or registered on its connections; PostgreSQL's created by the store's ``postgresql``
migration, see :mod:`jmap_host.pgstore`):

- ``json_each(text)`` → rows (key, value) of a JSON array (key: the index) or object
- ``json_extract(text, '$.a[0].b')`` → the value at a path, as text for a string
- ``instr(text, text)`` → the 1-based position of the second in the first, 0 if absent
- ``jmap_fold(text)`` → the i;unicode-casemap key (NFKD, then case folded)

What differs (collations, triggers, offsets without a limit, the catalogue) is asked of
the connection's dialect: ``dialect(db).collate(...)`` and so on.  Nothing outside the
store layer (this module, :mod:`jmap_host.store`, :mod:`jmap_host.pgstore`) writes SQL
that only one back end understands.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class SQLiteDialect:
    """The embedded store's SQL (jmap_host.store)."""

    name = "sqlite"

    # RFC 4790 collation names → SQLite collations (UNICODE_CASEMAP is registered on every
    # connection: objectstore.register_functions).
    _collations = {
        "i;octet": "BINARY",
        "i;ascii-casemap": "NOCASE",  # SQLite's NOCASE folds exactly ASCII A-Z
        "i;unicode-casemap": "UNICODE_CASEMAP",
    }

    def collate(self, expression: str, collation: str) -> str:
        """``expression`` compared and sorted by the RFC 4790 ``collation``."""
        return f"({expression}) COLLATE {self._collations[collation]}"

    def offset(self) -> str:
        """The clause skipping ``?`` rows with no limit (SQLite wants a LIMIT first)."""
        return "LIMIT -1 OFFSET ?"

    def direction(self, ascending: bool) -> str:
        """An ORDER BY term's direction, with nulls first when ascending (SQLite's order,
        which JMAP sorts rely on: a record without the value sorts first)."""
        return "ASC" if ascending else "DESC"

    def trigger_names(self, db: Any) -> set[str]:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    def create_trigger(
        self, db: Any, name: str, event: str, table: str, body: list[str], when: str | None = None
    ) -> None:
        """A row trigger ``name`` running the statements ``body`` (each ending in ``;``,
        using NEW and OLD) after ``event`` ("INSERT", "DELETE", "UPDATE OF [col]") on
        ``table``, if ``when`` holds.  Nothing happens if it exists."""
        condition = f"WHEN {when} " if when else ""
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS [{name}] AFTER {event} ON [{table}] "
            f"{condition}BEGIN {' '.join(body)} END"
        )

    def drop_trigger(self, db: Any, name: str, table: str) -> None:
        db.execute(f"DROP TRIGGER IF EXISTS [{name}]")

    def store_uncompressed(self, db: Any, table: str, column: str) -> None:
        """Keep the large values of ``column`` uncompressed, so that reading a slice of
        one (``substring``) reads only its part; SQLite never compresses them."""

    def database_key(self, db: Any) -> str:
        """What tells this database from another one in the same process (caches)."""
        return str(db.execute("PRAGMA database_list").fetchone()[2])

    @contextmanager
    def erasing(self, db: Any) -> Iterator[None]:
        """Within: what is deleted is overwritten in the file (secure_delete zeroes the
        freed pages)."""
        previous = db.execute("PRAGMA secure_delete").fetchone()[0]
        db.execute("PRAGMA secure_delete = ON")
        try:
            yield
        finally:
            db.execute(f"PRAGMA secure_delete = {int(previous)}")


class PostgresDialect:
    """PostgreSQL's SQL (jmap_host.pgstore)."""

    name = "postgresql"

    def collate(self, expression: str, collation: str) -> str:
        # Text columns are created COLLATE "C" (code point order, as SQLite's BINARY), so
        # i;octet is the column itself; the case maps compare folded keys in that order.
        if collation == "i;octet":
            return f'({expression}) COLLATE "C"'
        if collation == "i;ascii-casemap":
            upper, lower = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
            return f"translate({expression}, '{upper}', '{lower}') COLLATE \"C\""
        return f'jmap_fold({expression}) COLLATE "C"'

    def offset(self) -> str:
        return "OFFSET ?"

    def direction(self, ascending: bool) -> str:
        # (PostgreSQL puts nulls last when ascending)
        return "ASC NULLS FIRST" if ascending else "DESC NULLS LAST"

    def trigger_names(self, db: Any) -> set[str]:
        return {
            r[0]
            for r in db.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                "AND tgrelid::regclass::text NOT LIKE 'pg\\_%'"
            )
        }

    def create_trigger(
        self, db: Any, name: str, event: str, table: str, body: list[str], when: str | None = None
    ) -> None:
        # A trigger's statements live in a function of their own in PostgreSQL.
        function = f"{name}_fn"
        db.execute(
            f"CREATE OR REPLACE FUNCTION [{function}]() RETURNS trigger LANGUAGE plpgsql AS "
            f"$body$ BEGIN {' '.join(body)} RETURN NULL; END $body$"
        )
        condition = f"WHEN ({when}) " if when else ""
        db.execute(f"DROP TRIGGER IF EXISTS [{name}] ON [{table}]")
        db.execute(
            f"CREATE TRIGGER [{name}] AFTER {event} ON [{table}] FOR EACH ROW "
            f"{condition}EXECUTE FUNCTION [{function}]()"
        )

    def drop_trigger(self, db: Any, name: str, table: str) -> None:
        db.execute(f"DROP TRIGGER IF EXISTS [{name}] ON [{table}]")

    def store_uncompressed(self, db: Any, table: str, column: str) -> None:
        # EXTERNAL: out of line (TOAST) but not compressed; substring() of a compressed
        # value decompresses everything before the slice, so streaming a blob in ranges
        # would cost the square of its size.
        db.execute(f"ALTER TABLE [{table}] ALTER COLUMN [{column}] SET STORAGE EXTERNAL")

    def database_key(self, db: Any) -> str:
        row = db.execute("SELECT current_database(), inet_server_port()").fetchone()
        return f"postgresql:{row[0]}:{row[1]}"

    @contextmanager
    def erasing(self, db: Any) -> Iterator[None]:
        # PostgreSQL has no secure_delete: the overwritten row versions are reclaimed by
        # (auto)vacuum (docs/operator-guide.md, "PostgreSQL").
        yield


SQLITE = SQLiteDialect()
POSTGRESQL = PostgresDialect()
Dialect = SQLiteDialect | PostgresDialect


def dialect(db: Any) -> Dialect:
    """The dialect of the connection ``db`` a read or write function was given."""
    return getattr(db, "dialect", SQLITE)  # type: ignore[no-any-return]
