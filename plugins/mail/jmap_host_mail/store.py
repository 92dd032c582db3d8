"""The mail plugin's store layer: the tables beside the declared types, and the SQL that
keeps them in step.  Everything here is synchronous and runs inside a transaction the
host opened (``host.store.read`` / ``host.store.write`` or a type hook's ``ctx.db``).

``mail_email_mailbox`` holds one row per (Email, Mailbox) with the thread and the unread
flag, so membership filters and the Mailbox counts (RFC 8621 §2, "always exact") are
indexed SQL, never a scan of every message.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from jmap_host import SetContext

MEMBERSHIP = "mail_email_mailbox"

migrations = sqlite_utils.Migrations("jmap-host-mail")


@migrations()
def create_membership(db: sqlite_utils.Database) -> None:
    db[MEMBERSHIP].create(
        {"account": str, "mailbox_id": str, "email_id": str, "thread_id": str, "unread": int},
        pk=("account", "mailbox_id", "email_id"),
    )
    db[MEMBERSHIP].create_index(["account", "email_id"])
    db[MEMBERSHIP].create_index(["account", "mailbox_id", "thread_id"])


def is_unread(keywords: dict[str, bool] | None) -> bool:
    """RFC 8621 §2: unread is neither $seen nor $draft."""
    keywords = keywords or {}
    return not keywords.get("$seen") and not keywords.get("$draft")


def set_membership(
    db: sqlite_utils.Database,
    account: str,
    email_id: str,
    thread_id: str,
    mailbox_ids: dict[str, bool],
    keywords: dict[str, bool] | None,
) -> None:
    """Make the membership rows of an Email match its mailboxIds and keywords."""
    db.execute(f"DELETE FROM {MEMBERSHIP} WHERE account = ? AND email_id = ?", [account, email_id])
    unread = int(is_unread(keywords))
    for mailbox_id, member in mailbox_ids.items():
        if member:
            db.execute(
                f"INSERT INTO {MEMBERSHIP} (account, mailbox_id, email_id, thread_id, unread) "
                "VALUES (?, ?, ?, ?, ?)",
                [account, mailbox_id, email_id, thread_id, unread],
            )


def clear_membership(db: sqlite_utils.Database, account: str, email_id: str) -> list[str]:
    """Remove an Email's rows; returns the Mailboxes it was in."""
    mailboxes = [
        r[0]
        for r in db.execute(
            f"SELECT mailbox_id FROM {MEMBERSHIP} WHERE account = ? AND email_id = ?",
            [account, email_id],
        ).fetchall()
    ]
    db.execute(f"DELETE FROM {MEMBERSHIP} WHERE account = ? AND email_id = ?", [account, email_id])
    return mailboxes


def emails_in_mailbox(db: sqlite_utils.Database, account: str, mailbox_id: str) -> list[str]:
    rows = db.execute(
        f"SELECT email_id FROM {MEMBERSHIP} WHERE account = ? AND mailbox_id = ?",
        [account, mailbox_id],
    ).fetchall()
    return [r[0] for r in rows]


def mailbox_counts(
    db: sqlite_utils.Database, account: str, mailbox_ids: list[str]
) -> dict[str, dict[str, int]]:
    """totalEmails, unreadEmails, totalThreads, unreadThreads per Mailbox.

    unreadThreads is the RFC's "simplest solution": Threads with an unread Email in the
    Mailbox (RFC 8621 §2 leaves the exact rule to the server)."""
    out: dict[str, dict[str, int]] = {}
    for start in range(0, len(mailbox_ids), 500):
        chunk = mailbox_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT mailbox_id, count(*), sum(unread), count(DISTINCT thread_id), "
            f"count(DISTINCT CASE WHEN unread THEN thread_id END) FROM {MEMBERSHIP} "
            f"WHERE account = ? AND mailbox_id IN ({marks}) GROUP BY mailbox_id",
            [account, *chunk],
        ).fetchall()
        for mailbox_id, total, unread, threads, unread_threads in rows:
            out[mailbox_id] = {
                "totalEmails": int(total),
                "unreadEmails": int(unread or 0),
                "totalThreads": int(threads),
                "unreadThreads": int(unread_threads or 0),
            }
    return out


def remove_from_mailbox(ctx: SetContext, email_id: str, mailbox_id: str) -> None:
    """Take an Email out of a Mailbox being destroyed; an Email left in no Mailbox is
    destroyed (RFC 8621 §2.5 onDestroyRemoveEmails).  Implemented by the Email module,
    which owns Email records; registered there to keep this layer free of Email logic."""
    handler = _EMAIL_HANDLERS.get("remove_from_mailbox")
    if handler is None:  # no Email type yet: nothing can be in a Mailbox
        return
    handler(ctx, email_id, mailbox_id)


_EMAIL_HANDLERS: dict[str, Any] = {}


def register_email_handler(name: str, handler: Any) -> None:
    _EMAIL_HANDLERS[name] = handler
