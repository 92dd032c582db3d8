"""The keys of a ``[directory."<name>"] type = "sql"`` table.

Query and column names follow Stalwart's SQL directory (``query.name``, ``query.members``,
``query.recipients``, ``query.emails``; ``columns.class``, ``columns.secret``...), so an
operator can point jmap-host at a user table they already have.  ``group-members``,
``columns.enabled``, ``path``, ``timeout`` and ``seed`` are jmap-host's own.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from jmap_host import (
    Context,
    Duration,
    Invalid,
    Key,
    Str,
    Table,
    TableList,
    check_principal_list,
    principal_table,
)

# The built-in schema (tables prefixed sql_, created by the plugin's migration set).
DEFAULT_QUERIES = {
    "name": "SELECT name, class, secret, description, quota, enabled, time_zone "
    "FROM sql_principal WHERE name = ?",
    "members": "SELECT member_of FROM sql_member WHERE name = ? ORDER BY member_of",
    "recipients": "SELECT name FROM sql_email WHERE address = ?",
    "emails": "SELECT address FROM sql_email WHERE name = ? ORDER BY position",
    "group-members": "SELECT name FROM sql_member WHERE member_of = ? ORDER BY name",
    "list": "SELECT name FROM sql_principal WHERE enabled = 1 AND name LIKE ? ORDER BY name",
}

QUERY_DOCS = {
    "name": (
        "the principal called ? (the login name): one row whose columns are named in [columns]",
        "the login name",
    ),
    "members": ("the groups principal ? is a member of (first column)", "the principal's name"),
    "recipients": (
        "the principal name(s) that receive mail for address ? (lower-cased); used to log in "
        "with an address",
        "the address",
    ),
    "emails": (
        "the addresses of principal ?, primary first, then aliases (first column)",
        "the principal's name",
    ),
    "group-members": ("the principals that are members of group ? (first column)", "the group"),
    "list": (
        "every principal (first column: the name) whose name is LIKE ? ('%': all), for "
        "Principal/query (RFC 9670); empty: the directory does not list",
        "a LIKE pattern",
    ),
}

DEFAULT_COLUMNS = {
    "class": "class",
    "secret": "secret",
    "description": "description",
    "quota": "quota",
    "enabled": "enabled",
    "email": "email",
    "time-zone": "time_zone",
}

COLUMN_DOCS = {
    "class": "principal type: 'group', 'resource' or 'location' (any case), anything else an "
    "individual",
    "secret": "password hash (argon2, bcrypt, SHA-512-crypt, SSHA; plain text for testing)",
    "description": "display name",
    "quota": "storage quota in octets (NULL: none)",
    "enabled": "0/false/'no'/NULL disables the principal; a missing column means enabled",
    "email": "a primary address returned by the name query itself (optional)",
    "time-zone": "IANA time zone name (optional)",
}

# String literals, quoted identifiers and comments: a '?' inside them is not a placeholder.
_NOT_CODE = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|$)", re.S
)


def check_query(value: str, what: str, optional: bool) -> str:
    """A read-only statement with exactly one ``?`` placeholder, which receives ``what``."""
    if not value.strip():
        if optional:
            return ""
        raise Invalid("must not be empty")
    code = _NOT_CODE.sub(" ", value)
    if not re.match(r"\s*(SELECT|WITH)\b", code, re.I):
        raise Invalid("must be a SELECT statement (the directory only reads)")
    if ";" in code.strip().rstrip(";"):
        raise Invalid("must be a single statement")
    if re.search(r"\?\d|[:@$][A-Za-z_]", code):
        raise Invalid("use '?' as the only placeholder (not ?NNN, :name, @name or $name)")
    count = code.count("?")
    if count != 1:
        raise Invalid(f"needs exactly one '?' placeholder (for {what}), found {count}")
    # Catch syntax errors now rather than at the first login: prepare the statement on an
    # empty database, where only "no such table/column" may fail.
    with sqlite3.connect(":memory:") as probe:
        try:
            probe.execute("EXPLAIN " + value.strip().rstrip(";"), ("",))
        except sqlite3.Error as exc:
            message = str(exc)
            if not message.startswith(("no such table", "no such column", "no such function")):
                raise Invalid(f"not valid SQLite: {message}") from None
    return value.strip().rstrip(";").strip()


def _query_key(name: str) -> Key:
    doc, what = QUERY_DOCS[name]
    optional = name != "name"

    def check(value: str) -> str:
        return check_query(value, what, optional)

    return Key(name, Str(), default=DEFAULT_QUERIES[name], doc=doc, check=check)


def _check_column(value: str) -> None:
    if not value.strip():
        raise Invalid("must name a column")


SEED = principal_table("password: a hash, or plain text, which is hashed (argon2id) when seeded")


def is_customised(table: dict[str, Any]) -> bool:
    """True when the operator replaced a query or column: the tables are theirs, not ours."""
    return (
        table.get("query", DEFAULT_QUERIES) != DEFAULT_QUERIES
        or table.get("columns", DEFAULT_COLUMNS) != DEFAULT_COLUMNS
    )


def _check_directory(table: dict[str, Any], key: str, ctx: Context) -> None:
    seed = table.get("seed") or []
    if seed and is_customised(table):
        ctx.problem(
            f"{key}.seed",
            "seeding needs the built-in schema; with your own queries or columns, add "
            "principals to your own tables",
        )
    check_principal_list(seed, f"{key}.seed", ctx)


def keys() -> Table:
    query: list[Key] = [_query_key(name) for name in DEFAULT_QUERIES]
    columns = [
        Key(name, Str(), default=default, doc=COLUMN_DOCS[name], check=_check_column)
        for name, default in DEFAULT_COLUMNS.items()
    ]
    return Table(
        [
            Key(
                "path",
                Str(non_empty=True),
                default=None,
                doc="a separate SQLite file (relative to the config file); default: the host "
                "database (storage.path/jmap-host.db)",
            ),
            Key(
                "timeout",
                Duration(),
                default=5.0,
                doc="how long to wait for a locked separate file before answering 503",
            ),
            Key("query", Table(query), default={}, doc="the SQL the directory runs"),
            Key("columns", Table(columns), default={}, doc="column names in the name query"),
            Key(
                "seed",
                TableList(SEED),
                default=[],
                doc="principals created on the first start, if the directory is empty",
            ),
        ],
        validate=_check_directory,
    )
