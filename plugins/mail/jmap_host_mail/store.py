"""The mail plugin's store layer: the tables beside the declared types, and the SQL that
keeps them in step.  Everything here is synchronous and runs inside a transaction the
host opened (``host.store.read`` / ``host.store.write`` or a type hook's ``ctx.db``).

``mail_email_mailbox`` holds one row per (Email, Mailbox) with the thread and the unread
flag, so membership filters are indexed SQL, never a scan of every message; triggers on it
keep the Mailbox counts (RFC 8621 §2) in two tables beside it (see mailbox_counts).
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from jmap_host import Dialect, SetContext, dialect

from . import pgsearch

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
    """totalEmails, unreadEmails, totalThreads, unreadThreads per Mailbox: one row of
    MAILBOX_COUNTS per Mailbox, whatever the number of Emails in it (a Mailbox without a
    row holds no Email).

    unreadThreads is the RFC's "simplest solution": Threads with an unread Email in the
    Mailbox (RFC 8621 §2 leaves the exact rule to the server)."""
    out: dict[str, dict[str, int]] = {}
    for start in range(0, len(mailbox_ids), 500):
        chunk = mailbox_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            "SELECT mailbox_id, emails, unread_emails, threads, unread_threads "
            f"FROM {MAILBOX_COUNTS} WHERE account = ? AND mailbox_id IN ({marks})",
            [account, *chunk],
        ).fetchall()
        for mailbox_id, total, unread, threads, unread_threads in rows:
            out[mailbox_id] = {
                "totalEmails": int(total),
                "unreadEmails": int(unread),
                "totalThreads": int(threads),
                "unreadThreads": int(unread_threads),
            }
    return out


# -- the Mailbox counts, kept by triggers --------------------------------------------------
#
# RFC 8621 §2 defines the counts of a Mailbox exactly ("The number of Emails in this
# Mailbox", "... Threads where at least one Email in the Thread is in this Mailbox"), and
# every client reads them on every sync: counting the membership rows on each Mailbox/get
# (a GROUP BY with count(DISTINCT thread_id)) cost time in proportion to the mailbox,
# over 100 ms at 100,000 Emails.  So the counts are kept instead, by SQLite triggers on
# MEMBERSHIP rather than in Python beside each write: every statement that changes the
# membership rows (the per-Email writes, an import's executemany, a future bulk
# statement) updates them in the same transaction, and a rolled-back savepoint or
# transaction takes its count changes back with it, so they cannot drift.
#
#   THREAD_COUNTS   (account, mailbox_id, thread_id) -> emails, unread: how many Emails of
#                   the Thread are in the Mailbox and how many of those are unread; a row
#                   exists only while emails > 0.
#   MAILBOX_COUNTS  (account, mailbox_id) -> emails, unread_emails, threads (THREAD_COUNTS
#                   rows of the Mailbox), unread_threads (those rows with unread > 0); a
#                   row exists only while the Mailbox holds an Email.
#
# A row's unread counts as 1 when its ``unread`` is true in SQL (as the GROUP BY read it).
# Writers must not use INSERT OR REPLACE on MEMBERSHIP: SQLite fires no DELETE trigger for
# the row a REPLACE removes (unless recursive_triggers is on), so the counts would drift.

THREAD_COUNTS = "mail_mailbox_thread_count"
MAILBOX_COUNTS = "mail_mailbox_count"

_ADD = """
    INSERT INTO {threads} (account, mailbox_id, thread_id, emails, unread)
    VALUES ({r}.account, {r}.mailbox_id, {r}.thread_id, 1, {unread})
    ON CONFLICT (account, mailbox_id, thread_id)
    DO UPDATE SET emails = {threads}.emails + 1, unread = {threads}.unread + excluded.unread;
    INSERT INTO {mailboxes} (account, mailbox_id, emails, unread_emails, threads, unread_threads)
    SELECT {r}.account, {r}.mailbox_id, 1, {unread},
      CASE WHEN t.emails = 1 THEN 1 ELSE 0 END,
      CASE WHEN {r}.unread != 0 AND t.unread = 1 THEN 1 ELSE 0 END
    FROM {threads} t
    WHERE t.account = {r}.account AND t.mailbox_id = {r}.mailbox_id
    AND t.thread_id = {r}.thread_id
    ON CONFLICT (account, mailbox_id) DO UPDATE SET
      emails = {mailboxes}.emails + 1,
      unread_emails = {mailboxes}.unread_emails + excluded.unread_emails,
      threads = {mailboxes}.threads + excluded.threads,
      unread_threads = {mailboxes}.unread_threads + excluded.unread_threads;
"""

_REMOVE = """
    UPDATE {threads} SET emails = emails - 1, unread = unread - {unread}
    WHERE account = {r}.account AND mailbox_id = {r}.mailbox_id AND thread_id = {r}.thread_id;
    UPDATE {mailboxes} SET
      emails = emails - 1,
      unread_emails = unread_emails - {unread},
      threads = threads - coalesce((SELECT CASE WHEN t.emails = 0 THEN 1 ELSE 0 END
        FROM {threads} t WHERE t.account = {r}.account AND t.mailbox_id = {r}.mailbox_id
        AND t.thread_id = {r}.thread_id), 0),
      unread_threads = unread_threads - (CASE WHEN {r}.unread != 0 AND coalesce((SELECT
        t.unread = 0 FROM {threads} t WHERE t.account = {r}.account
        AND t.mailbox_id = {r}.mailbox_id AND t.thread_id = {r}.thread_id), false)
        THEN 1 ELSE 0 END)
    WHERE account = {r}.account AND mailbox_id = {r}.mailbox_id;
    DELETE FROM {threads} WHERE account = {r}.account AND mailbox_id = {r}.mailbox_id
    AND thread_id = {r}.thread_id AND emails = 0;
    DELETE FROM {mailboxes} WHERE account = {r}.account AND mailbox_id = {r}.mailbox_id
    AND emails = 0;
"""


def _steps(template: str, row: str) -> str:
    return template.format(
        threads=THREAD_COUNTS,
        mailboxes=MAILBOX_COUNTS,
        r=row,
        unread=f"(CASE WHEN {row}.unread != 0 THEN 1 ELSE 0 END)",
    )


def _statements(template: str, row: str) -> list[str]:
    """The statements of a trigger body (each ending in ``;``) for ``row`` (NEW or OLD)."""
    return [part.strip() + ";" for part in _steps(template, row).split(";") if part.strip()]


def create_count_triggers(db: sqlite_utils.Database) -> None:
    """The triggers that keep THREAD_COUNTS and MAILBOX_COUNTS (see above) in step with
    every insert, delete and update of MEMBERSHIP rows."""
    prefix = "mail_mailbox_counts"
    sql = dialect(db)
    sql.create_trigger(db, f"{prefix}_insert", "INSERT", MEMBERSHIP, _statements(_ADD, "NEW"))
    sql.create_trigger(db, f"{prefix}_delete", "DELETE", MEMBERSHIP, _statements(_REMOVE, "OLD"))
    # An update of a counted column is the old row leaving and the new one arriving.
    sql.create_trigger(
        db,
        f"{prefix}_update",
        "UPDATE OF account, mailbox_id, thread_id, unread",
        MEMBERSHIP,
        _statements(_REMOVE, "OLD") + _statements(_ADD, "NEW"),
        when="OLD.account IS DISTINCT FROM NEW.account "
        "OR OLD.mailbox_id IS DISTINCT FROM NEW.mailbox_id "
        "OR OLD.thread_id IS DISTINCT FROM NEW.thread_id "
        "OR (CASE WHEN OLD.unread != 0 THEN 1 ELSE 0 END) "
        "<> (CASE WHEN NEW.unread != 0 THEN 1 ELSE 0 END)",
    )


@migrations()
def create_mailbox_counts(db: sqlite_utils.Database) -> None:
    """The count tables and their triggers, filled from the membership rows already there
    (one GROUP BY, once), so an existing database comes out with exact counts."""
    db[THREAD_COUNTS].create(
        {"account": str, "mailbox_id": str, "thread_id": str, "emails": int, "unread": int},
        pk=("account", "mailbox_id", "thread_id"),
        not_null={"emails", "unread"},
    )
    db[MAILBOX_COUNTS].create(
        {
            "account": str, "mailbox_id": str, "emails": int, "unread_emails": int,
            "threads": int, "unread_threads": int,
        },
        pk=("account", "mailbox_id"),
        not_null={"emails", "unread_emails", "threads", "unread_threads"},
    )  # fmt: skip
    db.execute(
        f"INSERT INTO {THREAD_COUNTS} (account, mailbox_id, thread_id, emails, unread) "
        "SELECT account, mailbox_id, thread_id, count(*), "
        f"sum(CASE WHEN unread != 0 THEN 1 ELSE 0 END) FROM {MEMBERSHIP} "
        "GROUP BY account, mailbox_id, thread_id"
    )
    db.execute(
        f"INSERT INTO {MAILBOX_COUNTS} "
        "(account, mailbox_id, emails, unread_emails, threads, unread_threads) "
        "SELECT account, mailbox_id, sum(emails), sum(unread), count(*), "
        "sum(CASE WHEN unread > 0 THEN 1 ELSE 0 END) "
        f"FROM {THREAD_COUNTS} GROUP BY account, mailbox_id"
    )
    create_count_triggers(db)


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


# -- threads, parts and the full-text index -------------------------------------------------

THREAD_KEYS = "mail_thread_key"
PARTS = "mail_email_part"
FTS = "mail_fts"


@migrations()
def create_threads_parts_fts(db: sqlite_utils.Database) -> None:
    db[THREAD_KEYS].create(
        {"account": str, "key": str, "thread_id": str, "subject": str},
        pk=("account", "key", "thread_id"),
    )
    db[PARTS].create(
        {"account": str, "email_id": str, "part_id": str, "blob_id": str},
        pk=("account", "email_id", "part_id"),
    )
    # FTS5 over the searchable text of each Email (RFC 8621 §4.4.1 text, from, to, cc, bcc,
    # subject, body), kept in the same transaction as the Email itself; PostgreSQL's own
    # text search on that back end (pgsearch).
    if dialect(db).name == "postgresql":
        pgsearch.create_index(db)
        return
    db.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(email_id UNINDEXED, account UNINDEXED, "
        "subject, sender, recipients_to, recipients_cc, recipients_bcc, body, "
        "tokenize = 'unicode61 remove_diacritics 2')"
    )


FTS_MERGE = "mail_fts_merge"


@migrations()
def create_fts_merge(db: sqlite_utils.Database) -> None:
    """Where the background merge of the index got to (index_merge): one row."""
    db.execute(f"CREATE TABLE {FTS_MERGE} (id INTEGER PRIMARY KEY, merged_at INTEGER NOT NULL)")


def find_thread(
    db: sqlite_utils.Database, account: str, keys: list[str], subject: str
) -> str | None:
    """RFC 8621 §3: the Thread sharing a message id with these keys and the same base
    subject, if any."""
    for start in range(0, len(keys), 400):
        chunk = keys[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        row = db.execute(
            f"SELECT thread_id FROM {THREAD_KEYS} WHERE account = ? AND key IN ({marks}) "
            "AND subject = ? LIMIT 1",
            [account, *chunk, subject],
        ).fetchone()
        if row:
            return str(row[0])
    return None


def get_parts(db: sqlite_utils.Database, account: str, email_id: str) -> dict[str, str]:
    rows = db.execute(
        f"SELECT part_id, blob_id FROM {PARTS} WHERE account = ? AND email_id = ?",
        [account, email_id],
    ).fetchall()
    return {str(p): str(b) for p, b in rows}


def delete_parts(db: sqlite_utils.Database, account: str, email_id: str) -> None:
    db.execute(f"DELETE FROM {PARTS} WHERE account = ? AND email_id = ?", [account, email_id])


def unindex_text(db: sqlite_utils.Database, account: str, email_id: str) -> None:
    db.execute(f"DELETE FROM {FTS} WHERE email_id = ? AND account = ?", [email_id, account])


FTS_COLUMNS = {
    "text": None, "from": "sender", "to": "recipients_to", "cc": "recipients_cc",
    "bcc": "recipients_bcc", "subject": "subject", "body": "body",
}  # fmt: skip


def fts_query(text: str, column: str | None) -> str:
    """A user's search text (§4.4.1: quoted phrases, whitespace-separated tokens that must
    all match) as an FTS5 query that cannot be misread as FTS5 syntax."""
    phrases = search_terms(text)
    terms = ['"' + p.replace('"', '""') + '"' for p in phrases if p.strip()]
    if not terms:
        return ""
    body = " AND ".join(terms)
    return f"{column} : ({body})" if column else f"({body})"


def _fts_in(table: str) -> str:
    return f"[{table}].rowid IN (SELECT rowid FROM {FTS} WHERE {FTS} MATCH ?)"


def _fts_each(table: str) -> str:
    return f"EXISTS (SELECT 1 FROM {FTS} WHERE {FTS} MATCH ? AND rowid = [{table}].rowid)"


def fts_condition(sql: Dialect, table: str, column: str | None, text: str) -> tuple[str, list[Any]]:
    """A text filter as SQL for a store of dialect ``sql``: the rowids the index finds,
    looked up once per statement (an Email's index row shares its rowid; see
    add_new_emails)."""
    if sql.name == "postgresql":
        phrases = search_terms(text)
        if not phrases:
            return "true", []
        where, params = pgsearch.condition(column, phrases)
        return f"[{table}].rowid IN (SELECT rowid FROM {FTS} WHERE {where})", params
    query = fts_query(text, column)
    if not query:
        return "true", []
    return _fts_in(table), [query]


def plans_text_search(sql: Dialect) -> bool:
    """Whether Email/query chooses how to run a text search itself (EmailQuery._plan,
    from the FTS5 index: fts_estimate, fts_newest); PostgreSQL's planner costs a search of
    its GIN index from the index's own statistics."""
    return sql.name == "sqlite"


def base_subject_key(sql: Dialect, table: str, subject: str) -> str:
    """SQL for the base subject (RFC 8621 §4.4.2 subject sort) of the Email rows of
    ``table`` whose subject column is ``subject``: SQLite computes it (mail_base_subject,
    a Python function on its connections), PostgreSQL reads the one its index row keeps
    (pgsearch.add_texts)."""
    if sql.name == "postgresql":
        return f"(SELECT f.base_subject FROM {FTS} f WHERE f.rowid = [{table}].rowid)"
    return f"mail_base_subject({subject})"


def fts_per_row(table: str, where: str) -> str:
    """``where`` (SQL with fts_condition conditions) with every text condition tested
    row by row instead: a MATCH restricted to the row's rowid, an index seek, where the
    form fts_condition gives first collects every rowid the MATCH finds.  The parameters
    are the same, in the same order.  For walking an ordered index until a page is full
    when most Emails match: collecting 80,000 rowids to keep 50 is the cost it avoids."""
    return where.replace(_fts_in(table), _fts_each(table))


def fts_from_rowid(table: str, where: str, low: int) -> str:
    """``where`` with every text condition reading only the index rows from rowid ``low``
    up: the same answer for Email rows whose rowid is at least ``low``, from the tail of
    each doclist only.  The parameters are the same, in the same order."""
    ranged = f"[{table}].rowid IN (SELECT rowid FROM {FTS} WHERE {FTS} MATCH ? AND rowid >= %d)"
    return where.replace(_fts_in(table), ranged % int(low))


def fts_newest(db: sqlite_utils.Database, query: str, count: int) -> tuple[int, int]:
    """(n, lowest rowid) of the ``count`` hits of a MATCH with the highest rowids: the
    most recently stored (n < count: that is every hit)."""
    n, low = db.execute(
        f"SELECT count(*), min(rowid) FROM (SELECT rowid FROM {FTS} WHERE {FTS} MATCH ? "
        "ORDER BY rowid DESC LIMIT ?)",
        [query, count],
    ).fetchone()
    return int(n), int(low or 0)


FTS_SAMPLE = 2000


def last_email_rowid(db: sqlite_utils.Database) -> int:
    """The highest Email rowid (every account's): about how many Emails were ever stored,
    as rowids are given in insertion order; an Email's index row shares it."""
    return int(db.execute("SELECT max(rowid) FROM mail_email").fetchone()[0] or 0)


def fts_estimate(db: sqlite_utils.Database, query: str) -> tuple[int, int]:
    """(hits, Emails): how many index rows (of every account) a MATCH finds, and about
    how many Emails there are, from at most FTS_SAMPLE hits, the highest rowids first (an
    FTS5 doclist read in order, nothing collected or sorted).  Below FTS_SAMPLE the count
    is exact; otherwise it is scaled by the share of Emails the sample is of the rowid span
    it covers (rowids are given in insertion order, so a span is about that many Emails).
    For choosing a query plan only: a wrong guess costs time, never a wrong answer."""
    count, low = fts_newest(db, query, FTS_SAMPLE)
    emails = last_email_rowid(db)
    if count < FTS_SAMPLE:
        return count, max(emails, count)
    share = min(1.0, count / max(emails - low + 1, 1))
    return max(int(count), round(share * emails)), max(emails, count)


def indexed_bodies(db: sqlite_utils.Database, account: str, ids: list[str]) -> dict[str, str]:
    """The body text the index holds for these Emails of ``account`` (their searchable
    text, see ParsedMessage.searchable_text), by Email id; Emails without an index row
    are left out.  One primary-key lookup per Email, no message read (SearchSnippet)."""
    out: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT e.id, f.body FROM mail_email AS e JOIN {FTS} AS f ON f.rowid = e.rowid "
            f"WHERE e.account = ? AND e.id IN ({marks}) AND f.email_id = e.id "
            "AND f.account = e.account",
            [account, *chunk],
        ).fetchall()
        out.update((str(i), str(b or "")) for i, b in rows)
    return out


def search_terms(text: str) -> list[str]:
    """The phrases and tokens of a §4.4.1 search text (quoted phrases with backslash
    escapes, whitespace-separated tokens), as fts_query reads them: for highlighting."""
    phrases: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            quote, i, buf = ch, i + 1, []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            phrases.append("".join(buf))
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            phrases.append(text[start:i])
    return [p for p in phrases if p.strip()]


# -- header fields, for the ``header`` filter (RFC 8621 §4.4.1) ----------------------------
#
# One row per header field of the top-level message: the lowercased name and the value in
# the Text form (RFC 2047 decoded, unfolded).  A table rather than an FTS5 column because
# the filter matches a named field: ``[name]`` is an indexed lookup on (account, name,
# email_rowid), ``[name, text]`` a case-insensitive substring test on that field's values
# only, with no FTS tokenizer deciding what a "word" is in a Message-ID or a List-Id.
# ``email_rowid`` is the Email row's rowid (as for the FTS rows): it grows, so a new
# Email's rows go at the end of each field name's range of the index, a page or two per
# name for a whole Email/import, where the Email's random id put each row on a page of
# its own (about 650 index pages written per 50 imported messages, a third of the WAL).

HEADERS = "mail_email_header"
MAX_HEADER_ROWS = 500
MAX_HEADER_VALUE = 4000


@migrations()
def create_headers(db: sqlite_utils.Database) -> None:
    db[HEADERS].create({"account": str, "email_id": str, "name": str, "value": str})
    db[HEADERS].create_index(["account", "name", "email_id"])
    db[HEADERS].create_index(["account", "email_id"])


@migrations()
def header_rows_by_email_rowid(db: sqlite_utils.Database) -> None:
    """The name index keyed by the Email's rowid instead of its id (see above)."""
    db.execute(f"ALTER TABLE {HEADERS} ADD COLUMN email_rowid INTEGER")
    if db["mail_email"].exists():  # else no Email yet, so no header rows either
        db.execute(
            f"UPDATE {HEADERS} SET email_rowid = (SELECT e.rowid FROM mail_email e "
            f"WHERE e.account = {HEADERS}.account AND e.id = {HEADERS}.email_id)"
        )
    db.execute("DROP INDEX IF EXISTS idx_mail_email_header_account_name_email_id")
    db[HEADERS].create_index(["account", "name", "email_rowid"])


def header_rows(
    account: str, email_id: str, fields: list[tuple[str, str]], email_rowid: int
) -> list[tuple[str, str, str, str, int]]:
    """The rows of ``HEADERS`` for an Email's header fields (name, Text value)."""
    return [
        (account, email_id, name.lower(), value[:MAX_HEADER_VALUE], email_rowid)
        for name, value in fields[:MAX_HEADER_ROWS]
    ]


_INSERT_HEADER = (
    f"INSERT INTO {HEADERS} (account, email_id, name, value, email_rowid) VALUES (?, ?, ?, ?, ?)"
)


def add_new_emails(
    db: sqlite_utils.Database,
    thread_keys: list[tuple[str, str, str, str]],
    parts: list[tuple[str, str, str, str]],
    membership: list[tuple[str, str, str, str, int]],
    texts: list[tuple[Any, ...]],
    headers: list[tuple[str, str, str, str, int]],
) -> None:
    """The rows beside new Emails (just inserted, so they have none yet), one executemany
    per table: thread keys (account, key, thread, base subject), parts (account, email,
    partId, blobId), membership (account, mailbox, email, thread, unread), the text index
    (Email rowid — the index row shares the Email row's rowid, so a search is one MATCH
    joined on rowid — email, account, subject, from, to, cc, bcc, body) and
    header fields (see header_rows)."""
    conn = db.conn
    conn.executemany(
        f"INSERT INTO {THREAD_KEYS} (account, key, thread_id, subject) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account, key, thread_id) DO NOTHING",
        thread_keys,
    )
    conn.executemany(
        f"INSERT INTO {PARTS} (account, email_id, part_id, blob_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (account, email_id, part_id) DO UPDATE SET blob_id = excluded.blob_id",
        parts,
    )
    conn.executemany(
        f"INSERT INTO {MEMBERSHIP} (account, mailbox_id, email_id, thread_id, unread) "
        "VALUES (?, ?, ?, ?, ?)",
        membership,
    )
    if dialect(db).name == "postgresql":
        pgsearch.add_texts(db, texts)
    else:
        conn.executemany(
            f"INSERT INTO {FTS} (rowid, email_id, account, subject, sender, recipients_to, "
            "recipients_cc, recipients_bcc, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            texts,
        )
    conn.executemany(_INSERT_HEADER, headers)


def unindex_headers(db: sqlite_utils.Database, account: str, email_id: str) -> None:
    db.execute(f"DELETE FROM {HEADERS} WHERE account = ? AND email_id = ?", [account, email_id])


def header_condition(table: str, name: str, text: str | None) -> tuple[str, list[Any]]:
    """SQL for ``header: [name]`` or ``header: [name, text]`` on the Email table."""
    sql = (
        f"EXISTS (SELECT 1 FROM {HEADERS} h WHERE h.account = [{table}].account "
        f"AND h.name = ? AND h.email_rowid = [{table}].rowid"
    )
    params: list[Any] = [name.lower()]
    if text is not None:
        sql += " AND instr(jmap_fold(h.value), jmap_fold(?)) > 0"
        params.append(text)
    return sql + ")", params
