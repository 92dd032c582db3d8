"""The full-text index on PostgreSQL: its own text search (tsvector, tsquery, GIN indexes)
where the SQLite store has an FTS5 table (store.py).  The store module calls these when
``dialect(db).name`` is "postgresql"; nothing else writes this SQL.

``mail_fts`` has one row per Email, keyed by the Email row's rowid as the FTS5 table is:
the body text as indexed (SearchSnippet reads it back, store.indexed_bodies), the base
subject (the subject sort's key) and the words of RFC 8621 §4.4.1's fields:

- ``w_all``: every field's words, each field's labelled with a weight (subject A, from B,
  to, cc and bcc C, body D) and a gap of one position after it, so that a phrase lies in
  one field.  The ``text`` filter is one search of it (its own GIN index: one lookup per
  word, where an OR over a vector per field cost six and was planned as a table scan),
  and subject, from and body are the same search restricted to their weight;
- ``w_to``, ``w_cc``, ``w_bcc``: the recipients again, which share weight C in ``w_all``
  (four weights for six fields), for the to, cc and bcc filters (small: addresses).

As in FTS5, each term of a filter may be found in another field than the next.

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
# store.FTS_COLUMNS' fields -> (the column searched, the weight restricting it or "").
FIELDS = {
    "subject": ("w_all", "A"), "sender": ("w_all", "B"), "recipients_to": ("w_to", ""),
    "recipients_cc": ("w_cc", ""), "recipients_bcc": ("w_bcc", ""), "body": ("w_all", "D"),
}  # fmt: skip
# The weights of the fields in w_all, in the order of store.add_new_emails' texts
# (subject, from, to, cc, bcc, body).
WEIGHTS = ("A", "B", "C", "C", "C", "D")
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
    db.execute(
        f'CREATE TABLE {FTS} (rowid BIGINT PRIMARY KEY, email_id TEXT COLLATE "C" NOT NULL, '
        'account TEXT COLLATE "C" NOT NULL, body TEXT, base_subject TEXT COLLATE "C", '
        "w_all tsvector NOT NULL, w_to tsvector NOT NULL, w_cc tsvector NOT NULL, "
        "w_bcc tsvector NOT NULL)"
    )
    db.execute(f"CREATE INDEX {FTS}_email ON {FTS} (account, email_id)")
    # fastupdate off: new mail goes into the index itself, as FTS5 takes it, not into a
    # pending list that every search reads until a vacuum merges it (after 5,000 imported
    # Emails the planner costed that list above a scan of the table: 60 ms a search, not 5).
    db.execute(f"CREATE INDEX {FTS}_words ON {FTS} USING gin (w_all) WITH (fastupdate = off)")
    db.execute(
        f"CREATE INDEX {FTS}_recipients ON {FTS} USING gin (w_to, w_cc, w_bcc) "
        "WITH (fastupdate = off)"
    )


def words(text: str) -> list[str]:
    """The words of ``text`` as the index keeps them (see the module docstring)."""
    if text.isascii():  # (most mail: nothing to decompose, fold or strip beyond lower())
        return [w for w in _WORD.findall(text.lower()) if len(w) < MAX_WORD]
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return [w for w in _WORD.findall(bare.casefold()) if len(w.encode()) < MAX_WORD]


def _quote(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(fields: list[tuple[str, str]]) -> str:
    """The tsvector literal of the (text, weight) ``fields``: each word with its
    positions, each labelled with its field's weight ("": none), a field's words one
    position apart and two from the next field's."""
    places: dict[str, dict[int, str]] = {}
    size, n = 0, 0
    for text, weight in fields:
        for word in words(text):
            n += 1
            seen = places.get(word)
            if seen is None:
                size += len(word.encode()) + 8
                if size > MAX_VECTOR:
                    continue
                places[word] = seen = {}
            if len(seen) < MAX_POSITIONS:
                size += 2
                seen.setdefault((n - 1) % MAX_POSITION + 1, weight)
        n += 1  # the gap: no phrase across two fields
    return " ".join(
        _quote(w) + ":" + ",".join(f"{p}{seen[p]}" for p in sorted(seen))
        for w, seen in places.items()
    )


def tsquery(phrase: str, weight: str = "") -> str:
    """The tsquery literal of a phrase (its words in order, adjacent, each in a field of
    ``weight`` if given); "" when it has no word (such a phrase matches nothing, as in
    FTS5)."""
    label = f":{weight}" if weight else ""
    return " <-> ".join(_quote(w) + label for w in words(phrase))


def add_texts(db: Any, texts: list[tuple[Any, ...]]) -> None:
    """Index rows for new Emails: (Email rowid, email id, account, subject, from, to, cc,
    bcc, body), as store.add_new_emails takes them.  The row also keeps the Email's base
    subject, the subject sort's key (store.base_subject_key): PostgreSQL has no Python
    functions to compute it in a query, and an Email's subject never changes."""
    rows = []
    for rowid, email_id, account, *fields in texts:
        subject, _, to, cc, bcc, body = fields
        every = tsvector(list(zip(fields, WEIGHTS, strict=True)))
        recipients = [tsvector([(text, "")]) for text in (to, cc, bcc)]
        rows.append((rowid, email_id, account, body, base_subject(subject), every, *recipients))
    db.conn.executemany(
        f"INSERT INTO {FTS} (rowid, email_id, account, body, base_subject, w_all, w_to, "
        "w_cc, w_bcc) VALUES (?, ?, ?, ?, ?, ?::tsvector, ?::tsvector, ?::tsvector, "
        "?::tsvector)",
        rows,
    )


def condition(field: str | None, phrases: list[str]) -> tuple[str, list[Any]]:
    """SQL true for the index rows with every phrase in ``field`` (a store.FTS_COLUMNS
    value; None: each phrase in some field, the text filter), and its parameters."""
    column, weight = FIELDS[field] if field is not None else ("w_all", "")
    queries = [tsquery(p, weight) for p in phrases]
    if not all(queries):
        return "false", []
    return f"{column} @@ ?::tsquery", [" & ".join(f"({q})" for q in queries)]
