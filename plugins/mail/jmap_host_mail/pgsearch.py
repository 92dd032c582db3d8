"""The full-text index on PostgreSQL: its own text search (tsvector, tsquery, a GIN index)
where the SQLite store has an FTS5 table (store.py).  The store module calls these when
``dialect(db).name`` is "postgresql"; nothing else writes this SQL.

``mail_fts`` has one row per Email, keyed by the Email row's rowid as the FTS5 table is:
the body text as indexed (SearchSnippet reads it back, store.indexed_bodies), the base
subject (the subject sort's key) and one
tsvector per searchable field (RFC 8621 §4.4.1 from, to, cc, bcc, subject, body), all in
one multicolumn GIN index.  The ``text`` filter is the same query on every field (a term
may match one field and the next term another, as in FTS5, but a phrase lies in one).

The words are cut here, in Python, the way FTS5's unicode61 tokenizer with
remove_diacritics 2 cuts them (runs of letters and digits; case folded, accents removed),
for the index and for the query alike, and handed to PostgreSQL as tsvector and tsquery
literals: no text search configuration, parser or dictionary of the server decides what
a word is, so the answers do not depend on the server's locale and need no extension.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .message import base_subject

FTS = "mail_fts"
# The filter's field -> its tsvector column (None: the text filter, every field).
FIELDS = {
    "subject": "w_subject", "sender": "w_sender", "recipients_to": "w_to",
    "recipients_cc": "w_cc", "recipients_bcc": "w_bcc", "body": "w_body",
}  # fmt: skip
_WORD = re.compile(r"[^\W_]+")
# PostgreSQL's limits on a tsvector: positions 1-16383, 256 positions per word, words
# under 2 KiB, 1 MiB in all.  Positions past the first 16383 words start again at 1 (it
# would keep 16383 for every one of them, and no phrase there would be found): words
# stay adjacent but at each wrap, at the cost of a phrase whose words happen to lie at
# the same place of two stretches matching.  A word's 257th and later places are not
# kept (a phrase with a word that common may be missed there), nor the words past the
# size budget (a body of some 100,000 different words).
MAX_POSITION, MAX_POSITIONS, MAX_WORD, MAX_VECTOR = 16383, 256, 2000, 900_000


def create_index(db: Any) -> None:
    """The index table (the SQLite store's FTS5 table, create_threads_parts_fts)."""
    words = ", ".join(f"{column} tsvector NOT NULL" for column in FIELDS.values())
    db.execute(
        f'CREATE TABLE {FTS} (rowid BIGINT PRIMARY KEY, email_id TEXT COLLATE "C" NOT NULL, '
        f'account TEXT COLLATE "C" NOT NULL, body TEXT, '
        f'base_subject TEXT COLLATE "C", {words})'
    )
    db.execute(f"CREATE INDEX {FTS}_email ON {FTS} (account, email_id)")
    db.execute(f"CREATE INDEX {FTS}_words ON {FTS} USING gin ({', '.join(FIELDS.values())})")


def words(text: str) -> list[str]:
    """The words of ``text`` as the index keeps them (see the module docstring)."""
    if text.isascii():  # (most mail: nothing to decompose, fold or strip beyond lower())
        return [w for w in _WORD.findall(text.lower()) if len(w) < MAX_WORD]
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return [w for w in _WORD.findall(bare.casefold()) if len(w.encode()) < MAX_WORD]


def _quote(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(text: str) -> str:
    """The tsvector literal of ``text``: each word with its positions."""
    positions: dict[str, list[int]] = {}
    size = 0
    for n, word in enumerate(words(text), start=1):
        seen = positions.get(word)
        if seen is None:
            size += len(word.encode()) + 8
            if size > MAX_VECTOR:
                continue
            positions[word] = seen = []
        if len(seen) < MAX_POSITIONS:
            size += 2
            seen.append((n - 1) % MAX_POSITION + 1)
    return " ".join(
        f"{_quote(w)}:{','.join(map(str, sorted(set(p))))}" for w, p in positions.items()
    )


def tsquery(phrase: str) -> str:
    """The tsquery literal of a phrase (its words in order, adjacent); "" when it has no
    word (such a phrase matches nothing, as in FTS5)."""
    return " <-> ".join(map(_quote, words(phrase)))


def add_texts(db: Any, texts: list[tuple[Any, ...]]) -> None:
    """Index rows for new Emails: (Email rowid, email id, account, subject, from, to, cc,
    bcc, body), as store.add_new_emails takes them.  The row also keeps the Email's base
    subject, the subject sort's key (store.base_subject_key): PostgreSQL has no Python
    functions to compute it in a query, and an Email's subject never changes."""
    columns = ", ".join(FIELDS.values())
    marks = ", ".join("?::tsvector" for _ in FIELDS)
    db.conn.executemany(
        f"INSERT INTO {FTS} (rowid, email_id, account, body, base_subject, {columns}) "
        f"VALUES (?, ?, ?, ?, ?, {marks})",
        [(rowid, email_id, account, fields[-1], base_subject(fields[0]), *map(tsvector, fields))
         for rowid, email_id, account, *fields in texts],
    )  # fmt: skip


def condition(column: str | None, phrases: list[str]) -> tuple[str, list[Any]]:
    """SQL true for the index rows with every phrase in ``column`` (a store.FTS_COLUMNS
    value; None: each phrase in some field, the text filter), and its parameters."""
    queries = [tsquery(p) for p in phrases]
    if not all(queries):
        return "false", []
    if column is not None:
        return f"{FIELDS[column]} @@ ?::tsquery", [" & ".join(f"({q})" for q in queries)]
    any_field = "(" + " OR ".join(f"{c} @@ ?::tsquery" for c in FIELDS.values()) + ")"
    return " AND ".join([any_field] * len(queries)), [q for q in queries for _ in FIELDS]
