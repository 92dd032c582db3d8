"""Grow a loaded jmap-host database by replicating its mail: the scaling check of scenario 3
at 1,000,000 messages without importing a million messages (at 500 messages/s that alone is
over half an hour, and the generated corpus would be ~18 GB).

Every Email of the account is copied ``--factor - 1`` times with new ids, in new Threads (so
collapseThreads sees as many distinct Threads as a real mailbox ten times the size), in the
same Mailboxes, with the same keywords, and received a few seconds to minutes after the
original, so the copies interleave with the originals in time across the whole range.  Copied
are what Email/query (inMailbox, receivedAt, collapseThreads), Email/get of the scenario's
properties, Thread/get, Mailbox/get and the Mailbox counts read: the ``mail_email`` rows and
their indexes, the membership rows and the Thread rows.  Not copied: the full-text index,
header rows and body parts (search, the ``header`` filter and body properties of a copy see
nothing), so use the grown database for scenarios 1, 2, 3 and 5 only.

The type states are advanced and older states made unusable (``cannotCalculateChanges``),
as they would be after a change the change log no longer holds.  The server must be stopped.

    .venv/bin/python benchmarks/scale.py --data benchmarks/.data/server-1m --factor 10
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

DATABASE = "jmap-host.db"


def replicate(db: sqlite3.Connection, account: str, factor: int) -> int:
    """Add ``factor - 1`` copies of the account's Emails; returns the Email count after."""
    # The originals, remembered before the first copy is added.
    db.execute(
        "CREATE TEMP TABLE orig_email AS SELECT id FROM mail_email WHERE account = ?", [account]
    )
    db.execute(
        "CREATE TEMP TABLE orig_thread AS SELECT id FROM mail_thread WHERE account = ?", [account]
    )
    cols = [r[1] for r in db.execute("PRAGMA table_info(mail_email)")]
    renamed = {
        "id": "id || :s",
        "p_threadId": "p_threadId || :s",
        "p_receivedAt": "strftime('%Y-%m-%dT%H:%M:%SZ', p_receivedAt, :o)",
    }
    select = ", ".join(renamed.get(c, f"[{c}]") for c in cols)
    names = ", ".join(f"[{c}]" for c in cols)
    for k in range(1, factor):
        params = {"s": f"r{k}", "o": f"+{k * 37} seconds", "a": account}
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            f"INSERT INTO mail_email ({names}) SELECT {select} FROM mail_email "
            "WHERE account = :a AND id IN (SELECT id FROM orig_email)",
            params,
        )
        db.execute(
            "INSERT INTO mail_email_mailbox (account, mailbox_id, email_id, thread_id, unread) "
            "SELECT account, mailbox_id, email_id || :s, thread_id || :s, unread "
            "FROM mail_email_mailbox WHERE account = :a "
            "AND email_id IN (SELECT id FROM orig_email)",
            params,
        )
        db.execute(
            "INSERT INTO mail_thread (account, id, modseq, p_emailIds) "
            "SELECT account, id || :s, modseq, "
            "(SELECT json_group_array(value || :s) FROM json_each(p_emailIds)) "
            "FROM mail_thread WHERE account = :a AND id IN (SELECT id FROM orig_thread)",
            params,
        )
        db.execute("COMMIT")
        count = db.execute("SELECT count(*) FROM mail_email WHERE account = ?", [account])
        print(f"  copy {k}: {count.fetchone()[0]} Emails", flush=True)
    db.execute(
        "UPDATE host_modseq SET modseq = modseq + 1, low = modseq + 1 "
        "WHERE account = ? AND type IN ('Email', 'Thread', 'Mailbox')",
        [account],
    )
    count = db.execute("SELECT count(*) FROM mail_email WHERE account = ?", [account])
    return int(count.fetchone()[0])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the server's storage.path")
    p.add_argument("--factor", type=int, default=10, help="final size / current size (10)")
    p.add_argument("--account", help="account id (default: the only one with mail)")
    args = p.parse_args(argv)
    db = sqlite3.connect(args.data / DATABASE, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    accounts = [r[0] for r in db.execute("SELECT DISTINCT account FROM mail_email")]
    account = args.account or (accounts[0] if len(accounts) == 1 else None)
    if account is None:
        sys.exit(f"give --account: the database has mail in {len(accounts)} accounts")
    started = time.monotonic()
    total = replicate(db, account, args.factor)
    # No ANALYZE: the grown database must plan queries as the server's own would.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    print(f"{total} Emails in account {account} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
