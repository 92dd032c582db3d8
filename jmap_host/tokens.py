"""App passwords: Bearer tokens an operator creates, lists and revokes one by one.

A token is ``jmh_<id>_<secret>``: the id finds the row, the secret (32 random bytes) is
checked against its stored SHA-256.  A slow password hash would buy nothing here, because
the secret has 256 bits of entropy and cannot be guessed; the hash only means a copy of the
database does not hand out working tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlite_utils

from .store import Store

TABLE = "host_app_password"


def create_app_passwords(db: sqlite_utils.Database) -> None:
    db[TABLE].create(
        {"id": str, "principal": str, "label": str, "hash": str, "created": int, "last_used": int},
        pk="id",
        not_null={"principal", "hash", "created"},
    )
    db[TABLE].create_index(["principal"])


@dataclass
class AppPassword:
    id: str
    principal: str
    label: str
    created: int
    last_used: int | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def create(store: Store, principal: str, label: str) -> tuple[AppPassword, str]:
    """Create a token for ``principal``; returns it and the only copy of its secret."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = int(time.time())
    store.write_sync(
        lambda db: db[TABLE].insert(
            {
                "id": token_id,
                "principal": principal,
                "label": label,
                "hash": _digest(secret),
                "created": now,
                "last_used": None,
            }
        )
    )
    return AppPassword(token_id, principal, label, now, None), f"jmh_{token_id}_{secret}"


def list_tokens(store: Store, principal: str | None = None) -> list[AppPassword]:
    def q(db: sqlite_utils.Database) -> list[dict]:
        where = "principal = ?" if principal else None
        return list(
            db[TABLE].rows_where(where, [principal] if principal else [], order_by="created")
        )

    return [
        AppPassword(r["id"], r["principal"], r["label"], r["created"], r["last_used"])
        for r in store.read_sync(q)
    ]


def revoke(store: Store, token_id: str) -> bool:
    def delete(db: sqlite_utils.Database) -> int:
        return db.execute(f"DELETE FROM {TABLE} WHERE id = ?", [token_id]).rowcount

    return store.write_sync(delete) > 0


def verify(store: Store, token: str) -> str | None:
    """The principal name a valid token belongs to, or None."""
    parts = token.split("_", 2)
    if not token.isascii() or len(parts) != 3 or parts[0] != "jmh":
        return None
    _, token_id, secret = parts

    def q(db: sqlite_utils.Database) -> list[dict]:
        return list(db[TABLE].rows_where("id = ?", [token_id]))

    found = store.read_sync(q)
    if not found or not hmac.compare_digest(found[0]["hash"], _digest(secret)):
        return None
    return str(found[0]["principal"])
