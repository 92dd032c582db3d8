"""Where declared data types live in SQL: tables, the change log and queries.

This is the store layer for typed records (ARCHITECTURE.md: nothing outside the store
writes SQLite-specific SQL).  Every function here is synchronous and takes the
``sqlite_utils.Database`` of a transaction the caller opened with ``Store.read`` or
``Store.write``.

Per account and per data type there is one modification sequence (``host_modseq``); every
created, updated or destroyed record takes the next number and leaves a row in
``host_change``.  State strings are that number.  /changes reads the log; compaction
removes old rows and raises the account's ``low`` mark, below which /changes answers
``cannotCalculateChanges`` (RFC 8620 §5.2).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import sqlite_utils

from . import sqldialect
from .datatype import DataType, FilterCondition, Property
from .dates import instant_key

MODSEQ_TABLE = "host_modseq"
OPEN_COLUMN = "x_open"  # an open type's undeclared properties (DataType.open_properties)
CHANGE_TABLE = "host_change"
# Whose each destroyed record of a DataType.per_principal type was (its per_principal
# column), so that /changes and /queryChanges name a destroyed id to its user alone.
DESTROYED_FOR_TABLE = "host_destroyed_for"

SCALAR_SQL = {
    "String": str,
    "Id": str,
    "BlobId": str,
    "UTCDate": str,
    "Date": str,
    "Int": int,
    "UnsignedInt": int,
    "Number": float,
    "Boolean": int,
}

# RFC 4790 collations, by name, as SQLite collations registered on every connection.
COLLATIONS = {
    "i;octet": "BINARY",
    "i;ascii-casemap": "NOCASE",  # SQLite's NOCASE folds exactly ASCII A-Z
    "i;unicode-casemap": "UNICODE_CASEMAP",
}
DEFAULT_COLLATION = "i;unicode-casemap"  # §5.5: the default must be Unicode-aware


def unicode_casemap_key(value: str) -> str:
    """RFC 5051 i;unicode-casemap, approximated by NFKD decomposition then case folding."""
    return unicodedata.normalize("NFKD", value).casefold()


def _unicode_casemap(a: str, b: str) -> int:
    ka, kb = unicode_casemap_key(a), unicode_casemap_key(b)
    return (ka > kb) - (ka < kb)


# SQL functions plugins declare (sql_function), added to every connection.
_PLUGIN_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {}


def sql_function(name: str, nargs: int, fn: Callable[..., Any]) -> None:
    """Declare a deterministic SQL function for a plugin's queries, e.g. a sort key: every
    connection the store opens from now on has it.  Call it when the plugin's module is
    imported (before the store opens connections), once, not per query."""
    _PLUGIN_FUNCTIONS[name] = (nargs, fn)


def register_functions(conn: Any) -> None:
    """Collations and functions the queries below (and the plugins', sql_function) use;
    called for every connection."""
    conn.create_collation("UNICODE_CASEMAP", _unicode_casemap)
    conn.create_function(
        "jmap_fold",
        1,
        lambda v: None if v is None else unicode_casemap_key(str(v)),
        deterministic=True,
    )
    conn.create_function(
        "jmap_instant_key", 1, lambda v: None if v is None else instant_key(str(v)),
        deterministic=True,
    )  # fmt: skip
    for name, (nargs, fn) in _PLUGIN_FUNCTIONS.items():
        conn.create_function(name, nargs, fn, deterministic=True)


# -- schema ------------------------------------------------------------------------------


def column(prop: Property) -> str:
    """The column holding ``prop``'s value, as the client reads it."""
    return "p_" + prop.name


DATE_TYPES = frozenset(("UTCDate", "Date"))


def is_date(prop: Property) -> bool:
    return prop.base_type in DATE_TYPES


def key_column(prop: Property) -> str:
    """A Date or UTCDate property's second column: its instant key (jmap_host.dates), the
    text that sorts and compares in time order, which the value itself does not
    (``...:05Z`` sorts after ``...:05.5Z``; ``08:00+05:00`` is before ``04:00Z``)."""
    return "k_" + prop.name


def order_column(prop: Property) -> str:
    """The column to sort, compare and index ``prop`` by: its key column for a date, else
    its value column.  Plugins writing their own SQL for a sort or a range use this."""
    return key_column(prop) if is_date(prop) else column(prop)


def derived_column(name: str) -> str:
    """The column of a derived value (DataType.derived) called ``name``."""
    return "d_" + re.sub(r"[^A-Za-z0-9]", "_", name)


def _derived(dt: DataType, record: dict[str, Any]) -> dict[str, Any]:
    return {derived_column(n): fn(record) for n, fn in dt.derived.items()}


def column_type(prop: Property) -> type:
    return SCALAR_SQL.get(prop.base_type, str)


def is_json(prop: Property) -> bool:
    return prop.base_type not in SCALAR_SQL


def create_changelog(db: sqlite_utils.Database) -> None:
    db[MODSEQ_TABLE].create(
        {"account": str, "type": str, "modseq": int, "low": int},
        pk=("account", "type"),
        not_null={"modseq", "low"},
    )
    db[CHANGE_TABLE].create(
        {"account": str, "type": str, "modseq": int, "id": str, "kind": str, "at": int},
        pk=("account", "type", "modseq"),
    )
    db[CHANGE_TABLE].create_index(["at"])


def create_destroyed_for(db: sqlite_utils.Database) -> None:
    """Host migration "destroyed_for": (account, type, record id) -> the principal a
    destroyed per_principal record was for; rows go when compaction drops the record's
    change rows."""
    db[DESTROYED_FOR_TABLE].create(
        {"account": str, "type": str, "record": str, "principal": str},
        pk=("account", "type", "record"),
    )


def destroyed_for(
    db: sqlite_utils.Database, dt: DataType, account: str, principal: str, ids: list[str]
) -> set[str]:
    """Those of ``ids`` that were destroyed records of ``principal`` (per_principal types)."""
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        rows = db.execute(
            f"SELECT record FROM [{DESTROYED_FOR_TABLE}] WHERE account = ? AND type = ? "
            "AND principal = ? AND record IN (SELECT value FROM json_each(?))",
            [account, dt.name, principal, json.dumps(ids[start : start + 500])],
        ).fetchall()
        found.update(str(r[0]) for r in rows)
    return found


def create_type_table(db: sqlite_utils.Database, dt: DataType) -> None:
    columns: dict[str, type] = {"account": str, "id": str, "modseq": int}
    for p in dt.properties:
        if not p.computed:
            columns[column(p)] = column_type(p)
            if is_date(p):
                columns[key_column(p)] = str
    if dt.open_properties is not None:
        columns[OPEN_COLUMN] = str
    for name in dt.derived:
        columns[derived_column(name)] = str
    db[dt.table].create(columns, pk=("account", "id"), if_not_exists=True)
    ensure_columns(db, dt)


def ensure_columns(db: sqlite_utils.Database, dt: DataType) -> None:
    """Add columns (and indexes) for properties declared since the table was created, the
    instant keys of date properties stored before keys existed, and the quota triggers."""
    table = db[dt.table]
    existing = set(table.columns_dict)
    for prop in dt.properties:
        if not prop.computed and column(prop) not in existing:
            table.add_column(column(prop), column_type(prop))
        if is_date(prop) and not prop.computed and key_column(prop) not in existing:
            _add_key_column(db, dt, prop, backfill=column(prop) in existing)
    if dt.open_properties is not None and OPEN_COLUMN not in existing:
        table.add_column(OPEN_COLUMN, str)
    added = [n for n in dt.derived if derived_column(n) not in existing]
    for name in added:
        table.add_column(derived_column(name), str)
    if added and table.count:  # rows stored before the column: fill it in
        for row in db.execute(f"SELECT account, id FROM [{dt.table}]").fetchall():
            record = read_records(db, dt, row[0], [row[1]])[0]
            values = _derived(dt, record)
            sets = ", ".join(f"[{c}] = ?" for c in values)
            db.execute(f"UPDATE [{dt.table}] SET {sets} WHERE account = ? AND id = ?",
                       [*values.values(), row[0], row[1]])  # fmt: skip
    for name in dt.derived:
        db.execute(
            f"CREATE INDEX IF NOT EXISTS [idx_{dt.table}_{derived_column(name)}] "
            f"ON [{dt.table}] (account, [{derived_column(name)}])"
        )
    indexes = {tuple(i.columns) for i in table.indexes}
    for prop in dt.properties:
        if (prop.sortable or prop.indexed) and ("account", order_column(prop)) not in indexes:
            table.create_index(["account", order_column(prop)], if_not_exists=True)
    for index in dt.indexes:
        names = [n.lstrip("-") for n in index]
        props = [None if n == "id" else dt.by_name[n] for n in names]
        cols = ["id" if p is None else order_column(p) for p in props]
        desc = [" DESC" if n.startswith("-") else "" for n in index]
        terms = [f"[{c}]{d}" for c, d in zip(cols, desc, strict=True)]
        # (A date's part of the name says "k_": its index is on the key column.)
        parts = [
            n.replace("-", "desc_").replace(p.name, "k_" + p.name) if p and is_date(p) else
            n.replace("-", "desc_")
            for n, p in zip(index, props, strict=True)
        ]  # fmt: skip
        name = f"idx_{dt.table}_" + "_".join(parts)
        db.execute(
            f"CREATE INDEX IF NOT EXISTS [{name}] ON [{dt.table}] (account, {', '.join(terms)})"
        )
    ensure_quota_triggers(db, dt)


def ensure_quota_triggers(db: sqlite_utils.Database, dt: DataType) -> None:
    """Keep the account's quota usage (jmap_host.quota: octets and count in
    host_quota_usage, and the Quota state in host_modseq) in step with the type's rows:
    triggers, so that every write of a row, however it is made, moves the usage in the same
    transaction.  Rows stored before the triggers existed are counted once, here."""
    sql = sqldialect.dialect(db)
    names = sql.trigger_names(db)
    table = dt.table
    col = column(dt.by_name[dt.quota_octets]) if dt.quota_octets else None

    def add(resource: str, amount: str, account: str) -> str:
        return (
            f"INSERT INTO host_quota_usage (account, resource, used) VALUES ({account}, "
            f"'{resource}', {amount}) ON CONFLICT (account, resource) DO UPDATE SET "
            "used = host_quota_usage.used + excluded.used;"
        )

    def state(account: str) -> str:
        return (
            f"INSERT INTO {MODSEQ_TABLE} (account, type, modseq, low) VALUES ({account}, "
            "'Quota', 1, 0) ON CONFLICT (account, type) DO UPDATE SET "
            f"modseq = {MODSEQ_TABLE}.modseq + 1;"
        )

    on_insert, on_delete, sums = [], [], []
    if dt.quota_count:
        on_insert.append(add("count", "1", "NEW.account"))
        on_delete.append(add("count", "-1", "OLD.account"))
        sums.append(("count", "count(*)"))
    if col is not None:
        on_insert.append(add("octets", f"coalesce(NEW.[{col}], 0)", "NEW.account"))
        on_delete.append(add("octets", f"-coalesce(OLD.[{col}], 0)", "OLD.account"))
        sums.append(("octets", f"coalesce(sum([{col}]), 0)"))
    if not sums:
        return
    created = f"quota_{table}_insert" not in names
    sql.create_trigger(
        db, f"quota_{table}_insert", "INSERT", table, [*on_insert, state("NEW.account")]
    )
    sql.create_trigger(
        db, f"quota_{table}_delete", "DELETE", table, [*on_delete, state("OLD.account")]
    )
    if col is not None:
        change = f"coalesce(NEW.[{col}], 0) - coalesce(OLD.[{col}], 0)"
        sql.create_trigger(
            db, f"quota_{table}_resize", f"UPDATE OF [{col}]", table,
            [add("octets", change, "NEW.account"), state("NEW.account")], when=f"{change} != 0",
        )  # fmt: skip
    if created:
        for resource, amount in sums:
            db.execute(
                "INSERT INTO host_quota_usage (account, resource, used) "
                f"SELECT account, '{resource}', {amount} FROM [{table}] WHERE true "
                "GROUP BY account ON CONFLICT (account, resource) DO UPDATE SET "
                "used = host_quota_usage.used + excluded.used"
            )


def _add_key_column(
    db: sqlite_utils.Database, dt: DataType, prop: Property, backfill: bool
) -> None:
    """Give a date property its key column; rows stored before get their keys, and the
    indexes on its value column (which sorted by text, not time) are dropped: ensure_columns
    makes them again on the key column."""
    db[dt.table].add_column(key_column(prop), str)
    if not backfill:
        return
    db.execute(
        f"UPDATE [{dt.table}] SET [{key_column(prop)}] = jmap_instant_key([{column(prop)}]) "
        f"WHERE [{column(prop)}] IS NOT NULL"
    )  # (SQLite only: a PostgreSQL store's tables were made with their key columns)
    for index in db[dt.table].indexes:
        if column(prop) in index.columns and index.name.startswith("idx_"):
            db.execute(f"DROP INDEX [{index.name}]")


# -- records -----------------------------------------------------------------------------


# The URL and filename safe base64 alphabet (RFC 8620 §1.2) in ASCII order, so that ids
# written with it sort (SQLite BINARY) in the order of the numbers they encode.
ID_ALPHABET = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_ID_TIME_BITS = 42  # milliseconds since 1970: until the year 2109
_ID_RANDOM_BITS = 66  # from the system CSPRNG; 42 + 66 = 108 bits = 18 characters
_ID_CHARS = (_ID_TIME_BITS + _ID_RANDOM_BITS) // 6


def new_id() -> str:
    """A fresh record id: RFC 8620 §1.2 syntax (base64url characters, starting with a
    letter), unguessable, and in creation order.

    "y", then the creation time in milliseconds (7 characters), then 66 random bits (11),
    all in ID_ALPHABET: 19 characters.  Ids made later sort after earlier ones, so a new
    row of every index keyed by a record id ((account, id) of each type's table, an
    Email's membership, part, header and blob-reference rows...) goes next to the
    previous new row instead of onto a random leaf page of an index that grows with the
    account: at 100,000 Emails an Email/import of 50 wrote ~1,740 pages to the WAL with
    random ids and ~1,130 with these, and its checkpoint took 39 -> 24 ms.

    What an id tells its reader: when the record was created, to the millisecond, and
    nothing else: no counter, no host or account data, so nothing about other accounts
    or their records; the 66 random bits keep it unguessable (and unique, even for ids
    made in the same millisecond).  Ids made before ("x" + 16 hex digits, random) stay
    valid: ids are opaque strings everywhere, and "y" sorts after "x", so new ids simply
    follow the old ones in each index."""
    value = (time.time_ns() // 1_000_000 % (1 << _ID_TIME_BITS)) << _ID_RANDOM_BITS
    value |= secrets.randbits(_ID_RANDOM_BITS)
    chars = []
    for _ in range(_ID_CHARS):
        chars.append(ID_ALPHABET[value & 63])
        value >>= 6
    return "y" + "".join(reversed(chars))


def encode(dt: DataType, record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if dt.open_properties is not None:
        row[OPEN_COLUMN] = _open_text(dt, record)
    if dt.derived:
        row.update(_derived(dt, record))
    for name, value in record.items():
        if name == "id" or name not in dt.by_name or dt.by_name[name].computed:
            continue
        prop = dt.by_name[name]
        row[column(prop)] = _encoded(value, _kind(prop))
        if is_date(prop):
            row[key_column(prop)] = instant_key(value)
    return row


def _open_text(dt: DataType, record: dict[str, Any]) -> str | None:
    """The JSON of a record's undeclared properties (None: it has none)."""
    extra = {k: v for k, v in record.items() if k != "id" and k not in dt.by_name}
    return _dumps(extra) if extra else None


def _encoded(value: Any, kind: str) -> Any:
    """A property value as its column stores it: JSON text, 0/1 for a bool, else as is."""
    if value is not None and kind is _JSON:
        return _dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def decode(dt: DataType, row: dict[str, Any], properties: Iterable[str] | None = None) -> dict:
    out: dict[str, Any] = {"id": row["id"]}
    for name in properties if properties is not None else dt.by_name:
        if name == "id":
            continue
        prop = dt.by_name[name]
        value = row.get(column(prop))
        if value is not None:
            if is_json(prop):
                value = _loads(value)
            elif prop.base_type == "Boolean":
                value = bool(value)
        out[name] = value
    return out


_PLAIN, _JSON, _BOOL, _DATE = "plain", "json", "bool", "date"


def _kind(prop: Property) -> str:
    """How a property's value is stored: JSON text, 0/1, a date (stored as is, and its
    instant key beside it) or as is."""
    if is_json(prop):
        return _JSON
    if prop.base_type == "Boolean":
        return _BOOL
    return _DATE if is_date(prop) else _PLAIN


def _dumps(value: Any) -> str:
    """A JSON column's text: compact, UTF-8 as is.  orjson writes the same text as
    ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` an order of magnitude faster;
    the stdlib takes what orjson refuses (integers beyond 64 bits, lone surrogates,
    non-string keys) and non-finite floats, which orjson would write as null."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if b"null" in out and _non_finite(value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return out.decode()


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


def _loads(text: str) -> Any:
    """A stored JSON column: orjson, or the stdlib for what orjson refuses (NaN, integers
    beyond 64 bits, escaped lone surrogates), so every stored value reads back as before."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def read_records(
    db: sqlite_utils.Database,
    dt: DataType,
    account: str,
    ids: list[str] | None,
    properties: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The records of ``ids`` (None: all of the account's, in creation order) that exist,
    in the order of ``ids``, with ``properties`` (None: all) and their ids."""
    wanted = list(properties) if properties is not None else list(dt.by_name)
    # An open type's undeclared properties: all of them for a whole record, else those
    # asked for by name.
    open_wanted: set[str] | None = None
    if dt.open_properties is not None:
        asked = {p for p in wanted if p != "id" and p not in dt.by_name}
        if properties is None or asked:
            open_wanted = None if properties is None else asked
            wanted = [p for p in wanted if p not in asked]
        else:
            open_wanted = set()
    computed = [p for p in wanted if p != "id" and dt.by_name[p].computed]
    props = [p for p in wanted if p not in computed]
    cols = ", ".join(["id", *(f"[{column(dt.by_name[p])}]" for p in props if p != "id")])
    reads_open = (open_wanted is None and dt.open_properties is not None) or bool(open_wanted)
    if reads_open:
        cols += f", [{OPEN_COLUMN}]"
    if ids is None:
        sql = f"SELECT {cols} FROM [{dt.table}] WHERE account = ? ORDER BY rowid"
        rows = db.execute(sql, [account]).fetchall()
    else:
        rows = []
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT {cols} FROM [{dt.table}] WHERE account = ? AND id IN ({marks})"
            rows += db.execute(sql, [account, *chunk]).fetchall()
    # decode() per row, unrolled: the conversion of each column is decided once.
    plan = [(p, _kind(dt.by_name[p])) for p in props if p != "id"]
    records = []
    for row in rows:
        record = {"id": row[0]}
        for i, (name, kind) in enumerate(plan, 1):
            value = row[i]
            if value is not None:
                if kind is _JSON:
                    value = _loads(value)
                elif kind is _BOOL:
                    value = bool(value)
            record[name] = value
        if reads_open and row[-1] is not None:
            extra = _loads(row[-1])
            if open_wanted is not None:
                extra = {k: v for k, v in extra.items() if k in open_wanted}
            record.update(extra)
        records.append(record)
    if ids is not None and len(records) > 1:
        # In the order asked for: RFC 8620 §5.1 allows any, but clients show records in
        # the order they get them (a newest-first query's page came back oldest-first).
        by_id = {r["id"]: r for r in records}
        records = [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
    if computed and records and dt.compute is not None:
        dt.compute(db, account, records, computed)
    elif computed:  # (filled by whoever presents them: the sharing service's myRights)
        for record in records:
            for name in computed:
                record.setdefault(name, None)
    return records


def count_records(db: sqlite_utils.Database, dt: DataType, account: str) -> int:
    sql = f"SELECT count(*) FROM [{dt.table}] WHERE account = ?"
    return int(db.execute(sql, [account]).fetchone()[0])


def write_generation(db: sqlite_utils.Database, dt: DataType) -> int:
    """How many times this connection has written ``dt``'s rows (through insert_record,
    update_record and delete_record, the only ways its rows are written).  A caller that
    read records and sees the same number later knows nobody has changed them since."""
    return _generations(db).get(dt.table, 0)


def _generations(db: sqlite_utils.Database) -> dict[str, int]:
    gens = db.__dict__.get("_jmap_write_generations")
    if gens is None:
        gens = db.__dict__["_jmap_write_generations"] = {}
    return gens


def _wrote(db: sqlite_utils.Database, dt: DataType) -> None:
    gens = _generations(db)
    gens[dt.table] = gens.get(dt.table, 0) + 1


def insert_record(db: sqlite_utils.Database, dt: DataType, account: str, record: dict) -> int:
    """Insert ``record``; returns the new row's rowid.  A plain parameterised INSERT
    (sqlite-utils' ``Table.insert`` reads the table's schema on every call)."""
    _wrote(db, dt)
    row = encode(dt, record)
    row.update({"account": account, "id": record["id"]})
    cols = ", ".join(f"[{c}]" for c in row)
    marks = ", ".join("?" * len(row))
    cursor = db.execute(
        f"INSERT INTO [{dt.table}] ({cols}) VALUES ({marks}) RETURNING rowid", list(row.values())
    )
    return int(cursor.fetchone()[0])


def update_record(
    db: sqlite_utils.Database,
    dt: DataType,
    account: str,
    record: dict,
    properties: Iterable[str] | None = None,
) -> None:
    """Write ``record``'s stored properties, or only those named in ``properties``."""
    _wrote(db, dt)
    given = record if properties is None else properties
    names = tuple(n for n in given if n in record and n in dt.by_name)
    # An open type's undeclared properties are one column: written whole when any of them
    # is among the properties to write (or, writing everything, always).
    write_open = dt.open_properties is not None and (
        properties is None or any(n != "id" and n not in dt.by_name for n in given)
    )
    sql, plan = _update_statement(dt, names)
    values: list[Any] = []
    for name, kind in plan:
        value = record[name]
        values.append(_encoded(value, kind))
        if kind is _DATE:
            values.append(instant_key(value))
    if dt.derived:  # (whole records on update: DataType.derived)
        derived = _derived(dt, record)
        extra = ", ".join(f"[{c}] = ?" for c in derived)
        sql = (
            sql.replace(" WHERE account", f", {extra} WHERE account", 1)
            if sql is not None
            else f"UPDATE [{dt.table}] SET {extra} WHERE account = ? AND id = ?"
        )
        values.extend(derived.values())
    if write_open:
        sets = f"[{OPEN_COLUMN}] = ?"
        sql = (
            sql.replace(" WHERE account", f", {sets} WHERE account", 1)
            if sql is not None
            else f"UPDATE [{dt.table}] SET {sets} WHERE account = ? AND id = ?"
        )
        values.append(_open_text(dt, record))
    if sql is None:
        return
    db.conn.execute(sql, [*values, account, record["id"]])


def _update_statement(
    dt: DataType, names: tuple[str, ...]
) -> tuple[str | None, list[tuple[str, str]]]:
    """The UPDATE writing these properties (id and computed ones left out) and how each
    value is encoded, as encode() does; made once per type and set of names, because a
    /set of 50 records writes the same few columns 50 times."""
    cache = dt.__dict__.setdefault("_update_statements", {})
    found = cache.get(names)
    if found is None:
        if len(cache) >= 256:  # (names in a new order each time would make it grow)
            cache.clear()
        plan = [
            (n, _kind(dt.by_name[n])) for n in names if n != "id" and not dt.by_name[n].computed
        ]
        sets = ", ".join(
            f"[{column(dt.by_name[n])}] = ?"
            + (f", [{key_column(dt.by_name[n])}] = ?" if k is _DATE else "")
            for n, k in plan
        )
        sql = f"UPDATE [{dt.table}] SET {sets} WHERE account = ? AND id = ?" if plan else None
        found = cache[names] = (sql, plan)
    return found


def delete_record(db: sqlite_utils.Database, dt: DataType, account: str, record_id: str) -> None:
    _wrote(db, dt)
    if dt.per_principal is not None:  # (whose it was: their /changes alone names it)
        db.execute(
            f"INSERT INTO [{DESTROYED_FOR_TABLE}] (account, type, record, principal) "
            f"SELECT account, ?, id, [{derived_column(dt.per_principal)}] FROM [{dt.table}] "
            "WHERE account = ? AND id = ? ON CONFLICT (account, type, record) "
            "DO UPDATE SET principal = excluded.principal",
            [dt.name, account, record_id],
        )
    db.execute(f"DELETE FROM [{dt.table}] WHERE account = ? AND id = ?", [account, record_id])


# -- modification sequence and change log ------------------------------------------------


def current_modseq(db: sqlite_utils.Database, account: str, type_name: str) -> tuple[int, int]:
    """(modseq, low): the state now, and the oldest state /changes can start from."""
    row = db.execute(
        f"SELECT modseq, low FROM {MODSEQ_TABLE} WHERE account = ? AND type = ?",
        [account, type_name],
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def type_states(db: sqlite_utils.Database, account: str) -> list[tuple[str, int]]:
    """(type name, modseq) of every type with a state in ``account``."""
    rows = db.execute(
        f"SELECT type, modseq FROM {MODSEQ_TABLE} WHERE account = ?", [account]
    ).fetchall()
    return [(str(t), int(m)) for t, m in rows]


def record_change(
    db: sqlite_utils.Database, account: str, type_name: str, record_id: str, kind: str
) -> int:
    """Take the next modseq for a change to ``record_id``; ``kind`` is created, updated or
    destroyed.  Must run inside a write transaction."""
    # One statement takes the next modseq and returns it (RETURNING: SQLite >= 3.35).
    modseq = int(
        db.execute(
            f"INSERT INTO {MODSEQ_TABLE} (account, type, modseq, low) VALUES (?, ?, 1, 0) "
            f"ON CONFLICT (account, type) DO UPDATE SET modseq = {MODSEQ_TABLE}.modseq + 1 "
            "RETURNING modseq",
            [account, type_name],
        ).fetchone()[0]
    )
    db.execute(
        f"INSERT INTO {CHANGE_TABLE} (account, type, modseq, id, kind, at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [account, type_name, modseq, record_id, kind, int(time.time())],
    )
    return modseq


def bump_modseq(db: sqlite_utils.Database, account: str, type_name: str) -> int:
    """Take the next modseq of ``type_name`` without a record change: its state moves (push
    tells clients) though no record did, as when a share changes what a sharee sees."""
    return int(
        db.execute(
            f"INSERT INTO {MODSEQ_TABLE} (account, type, modseq, low) VALUES (?, ?, 1, 0) "
            f"ON CONFLICT (account, type) DO UPDATE SET modseq = {MODSEQ_TABLE}.modseq + 1 "
            "RETURNING modseq",
            [account, type_name],
        ).fetchone()[0]
    )


def record_changes(
    db: sqlite_utils.Database, account: str, type_name: str, changes: list[tuple[str, str]]
) -> int:
    """:func:`record_change` for many (record id, kind) at once, in order: the modseq
    advances by ``len(changes)`` in one statement and the rows go in one executemany.
    Returns the last modseq taken (the current one when ``changes`` is empty)."""
    if not changes:
        return current_modseq(db, account, type_name)[0]
    n = len(changes)
    last = int(
        db.execute(
            f"INSERT INTO {MODSEQ_TABLE} (account, type, modseq, low) VALUES (?, ?, ?, 0) "
            f"ON CONFLICT (account, type) DO UPDATE SET modseq = {MODSEQ_TABLE}.modseq + ? "
            "RETURNING modseq",
            [account, type_name, n, n],
        ).fetchone()[0]
    )
    now = int(time.time())
    db.conn.executemany(
        f"INSERT INTO {CHANGE_TABLE} (account, type, modseq, id, kind, at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (account, type_name, last - n + 1 + i, record_id, kind, now)
            for i, (record_id, kind) in enumerate(changes)
        ],
    )
    return last


def changes_since(
    db: sqlite_utils.Database, account: str, type_name: str, since: int, limit: int
) -> list[tuple[int, str, str]]:
    """Up to ``limit`` change rows (modseq, id, kind) after ``since``, oldest first."""
    rows = db.execute(
        f"SELECT modseq, id, kind FROM {CHANGE_TABLE} WHERE account = ? AND type = ? "
        "AND modseq > ? ORDER BY modseq LIMIT ?",
        [account, type_name, since, limit],
    ).fetchall()
    return [(int(m), str(i), str(k)) for m, i, k in rows]


def compact_changes(db: sqlite_utils.Database, older_than: int) -> int:
    """Drop change rows older than the timestamp ``older_than``; raise each account's low
    mark past them, so /changes from before answers cannotCalculateChanges."""
    rows = db.execute(
        f"SELECT account, type, max(modseq) FROM {CHANGE_TABLE} WHERE at < ? "
        "GROUP BY account, type",
        [older_than],
    ).fetchall()
    for account, type_name, modseq in rows:
        db.execute(
            f"UPDATE {MODSEQ_TABLE} SET low = CASE WHEN low > ? THEN low ELSE ? END "
            "WHERE account = ? AND type = ?",
            [modseq, modseq, account, type_name],
        )
        db.execute(
            f"DELETE FROM {CHANGE_TABLE} WHERE account = ? AND type = ? AND modseq <= ?",
            [account, type_name, modseq],
        )
        db.execute(  # (a destroyed record no change row names is in no /changes now)
            f"DELETE FROM [{DESTROYED_FOR_TABLE}] WHERE account = ? AND type = ? AND NOT "
            f"EXISTS (SELECT 1 FROM {CHANGE_TABLE} AS c WHERE c.account = ? AND c.type = ? "
            f"AND c.id = [{DESTROYED_FOR_TABLE}].record)",
            [account, type_name, account, type_name],
        )
    return len(rows)


# -- queries -----------------------------------------------------------------------------


class UnsupportedFilter(Exception):
    pass


class UnsupportedSort(Exception):
    pass


def compile_condition(dt: DataType, cond: FilterCondition, value: Any) -> tuple[str, list]:
    prop = dt.by_name[cond.property]
    col = f"[{column(prop)}]"
    op = cond.operator
    if op == "custom":
        assert cond.sql is not None
        return cond.sql(value)
    if op == "isNull":
        return (f"{col} IS NULL" if value else f"{col} IS NOT NULL"), []
    if op == "in":
        if value is None:
            return "true", []
        if is_date(prop):
            col, value = f"[{key_column(prop)}]", [instant_key(v) for v in value]
        return f"{col} IN (SELECT value FROM json_each(?))", [json.dumps(value)]
    if is_date(prop) and op not in ("contains", "hasItem", "hasKey"):
        col, value = f"[{key_column(prop)}]", instant_key(value)  # instants, not text
    if op == "contains":
        return f"instr(jmap_fold({col}), jmap_fold(?)) > 0", [value]
    if op == "hasItem":
        return f"EXISTS (SELECT 1 FROM json_each({col}) WHERE value = ?)", [value]
    if op == "hasKey":
        return f"EXISTS (SELECT 1 FROM json_each({col}) WHERE key = ?)", [value]
    if isinstance(value, bool):
        value = int(value)
    sql_op = {"equals": "=", "notEquals": "IS NOT", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[
        op
    ]
    if op == "equals":
        return f"{col} IS NOT DISTINCT FROM ?", [value]
    return f"{col} {sql_op} ?", [value]


def compile_filter(dt: DataType, node: Any, compile_value: Any) -> tuple[str, list]:
    """A FilterOperator/FilterCondition tree to SQL.  ``compile_value(cond, value)`` checks
    a condition's value (raising for a bad one) and returns it."""
    if node is None:
        return "true", []
    if "operator" in node:
        parts = [compile_filter(dt, c, compile_value) for c in node["conditions"]]
        if not parts:
            return ("true", []) if node["operator"] in ("AND", "NOT") else ("false", [])
        joined = {"AND": " AND ", "OR": " OR ", "NOT": " OR "}[node["operator"]]
        sql = joined.join(f"({s})" for s, _ in parts)
        params = [p for _, ps in parts for p in ps]
        return (f"NOT ({sql})" if node["operator"] == "NOT" else sql), params
    clauses, params = [], []
    for name, value in node.items():
        cond = dt.filters_by_name.get(name)
        if cond is None:
            raise UnsupportedFilter(f"unknown filter condition {name!r}")
        value = compile_value(cond, value)
        sql, ps = compile_condition(dt, cond, value)
        clauses.append(sql)
        params += ps
    return (" AND ".join(f"({c})" for c in clauses) or "true"), params


def compile_sort(
    dt: DataType, sort: list[dict[str, Any]], dialect: sqldialect.Dialect = sqldialect.SQLITE
) -> str:
    terms = []
    for comparator in sort:
        direction = dialect.direction(comparator.get("isAscending", True))
        expression = dt.sort_sql.get(comparator["property"])
        if expression is not None:  # a derived sort key (DataType.sort_sql)
            name = comparator.get("collation") or DEFAULT_COLLATION
            if name not in COLLATIONS:
                raise UnsupportedSort(f"unsupported collation {name!r}")
            folded = dt.folded_sort_sql.get(comparator["property"])
            if folded is not None and name == DEFAULT_COLLATION:
                terms.append(f"{folded} {direction}")
            else:
                terms.append(f"{dialect.collate(expression, name)} {direction}")
            continue
        prop = dt.by_name.get(comparator["property"])
        if prop is None or not prop.sortable:
            raise UnsupportedSort(f"cannot sort on {comparator['property']!r}")
        if is_date(prop):  # in time order: the key column, whose text order is that
            terms.append(f"[{key_column(prop)}] {direction}")
            continue
        if column_type(prop) is str and not is_json(prop):
            name = comparator.get("collation") or DEFAULT_COLLATION
            if name not in COLLATIONS:
                raise UnsupportedSort(f"unsupported collation {name!r}")
            terms.append(f"{dialect.collate(f'[{column(prop)}]', name)} {direction}")
            continue
        terms.append(f"[{column(prop)}] {direction}")
    # §5.5: the order must be stable between calls; the id breaks every tie.
    terms.append("id ASC")
    return ", ".join(terms)


def query_ids(
    db: sqlite_utils.Database,
    dt: DataType,
    account: str,
    where: tuple[str, list],
    order: str,
    limit: int | None = None,
    offset: int = 0,
) -> list[str]:
    sql = f"SELECT id FROM [{dt.table}] WHERE account = ? AND ({where[0]}) ORDER BY {order}"
    params: list[Any] = [account, *where[1]]
    if limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params += [limit, offset]
    return [r[0] for r in db.execute(sql, params).fetchall()]


def query_count(
    db: sqlite_utils.Database, dt: DataType, account: str, where: tuple[str, list]
) -> int:
    sql = f"SELECT count(*) FROM [{dt.table}] WHERE account = ? AND ({where[0]})"
    return int(db.execute(sql, [account, *where[1]]).fetchone()[0])
