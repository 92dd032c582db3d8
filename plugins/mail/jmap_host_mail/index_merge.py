"""Keeping the full-text index in one segment: a background merge.

FTS5 keeps its index as b-tree segments.  Every write transaction that indexes mail adds
one, and FTS5's automerge folds them together a level at a time.  That leaves a large
index in a score of segments: 20 at 100,000 Emails loaded through Email/import.  A MATCH
looks each term up in every segment, so the search plan that tests walked rows one at a
time (EmailQuery's "seek") cost 54 us a row on such an index and 6 us on one segment, and
a search for a common word, oldest first, 3.2 ms against 0.36 ms (at 100,000).

This task merges the index back into one segment in the background, in small write
transactions: FTS5's 'merge' command with a negative page count, the incremental form
of 'optimize'.  Merging rewrites the whole index (2.8 s of work at 100,000 Emails), so it
runs only when the index has grown by a tenth, and by at least MERGE_MIN Emails, since
the last merge, and no Email has been added for QUIET seconds.  It does not run during a
bulk import, whose new segments it would merge again and again, but once the import is
over.  Growth is read from the Email table's highest rowid, which the index row shares
(store.add_new_emails).  Where the last merge got to is kept in the database
(``mail_fts_merge``), so a restart does not rewrite the index again (at 100,000 Emails a
merge writes some 330 MB); a database never merged is merged at start-up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from jmap_host import Host

from .store import FTS, FTS_MERGE, last_email_rowid

log = logging.getLogger(__name__)

MERGE_PAGES = 200  # index pages written per write transaction: ~10 ms of the write lock
GROWTH = 0.1  # merge again once the index has grown by this share ...
MERGE_MIN = 1000  # ... and by at least this many Emails
QUIET = 30.0  # seconds without a new Email before merging
POLL = 5.0  # seconds between looks at the Email table
PAUSE = 0.01  # seconds between two merge transactions, to let other writers in
RETRY = 60.0  # seconds before trying again after a failure


def merge_step(db: Any, pages: int = MERGE_PAGES) -> bool:
    """One write transaction's share of merging the index into one segment; True if
    there was work to do.  (FTS5 changes at least two rows of its data table when it
    merges anything: the 'merge' command's documented test of whether work was done.)"""
    before = db.conn.total_changes
    db.execute(f"INSERT INTO {FTS} ({FTS}, rank) VALUES ('merge', ?)", [-abs(pages)])
    return db.conn.total_changes - before >= 2


def merge_due(merged_at: int, now: int, quiet_for: float) -> bool:
    """Whether to merge: grown by GROWTH (and MERGE_MIN Emails) since the last merge at
    rowid ``merged_at``, the highest rowid being ``now``, and quiet for QUIET seconds."""
    grown = now - merged_at
    return grown >= max(MERGE_MIN, GROWTH * merged_at) and quiet_for >= QUIET


async def merge_index(host: Host) -> int:
    """Merge the index into one segment; returns the number of write transactions."""
    steps = 0
    while await host.store.write(merge_step):
        steps += 1
        await trio.sleep(PAUSE)
    return steps


def merged_at(db: Any) -> int | None:
    """The highest Email rowid when the index was last merged (None: never)."""
    row = db.execute(f"SELECT merged_at FROM {FTS_MERGE} WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def set_merged_at(db: Any, rowid: int) -> None:
    db.execute(
        f"INSERT INTO {FTS_MERGE} (id, merged_at) VALUES (1, ?) "
        "ON CONFLICT (id) DO UPDATE SET merged_at = excluded.merged_at",
        [rowid],
    )


async def keep_index_merged(host: Host) -> None:
    """Merge whenever merge_due says so (at start-up if never merged), until cancelled.
    A failure (the database busy past its timeout, say) is logged and the merge tried
    again later: this task must never take the server down with it.  Only FTS5 has
    segments: PostgreSQL's GIN index (pgsearch) is kept by the server itself."""
    if host.store.dialect.name != "sqlite":
        return
    done: int | None = None
    seen, changed, started_up = -1, time.monotonic(), False
    while True:
        try:
            if not started_up:
                done = await host.store.read(merged_at)
                seen = await host.store.read(last_email_rowid)
                started_up = True
            now = await host.store.read(last_email_rowid)
            if now != seen:
                seen, changed = now, time.monotonic()
            if done is None or merge_due(done, now, time.monotonic() - changed):
                began = time.perf_counter()
                steps = await merge_index(host)
                if steps:
                    log.info(
                        "full-text index merged into one segment in %d steps, %.1f s",
                        steps, time.perf_counter() - began,
                    )  # fmt: skip
                await host.store.write(lambda db, at=now: set_merged_at(db, at))
                done = now
        except Exception:
            log.exception("merging the full-text index failed; will try again")
            await trio.sleep(RETRY)
        await trio.sleep(POLL)
