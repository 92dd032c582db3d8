"""Opening a mailbox stays cheap however big the account (issue 6, scaling): the newest-first
page of a Mailbox, collapsed by Thread (RFC 8621 §4.4, §4.4.3), is read from one index alone,
in sort order, so SQLite reads index entries until the page is full: no table row per
candidate and no sort of the whole Mailbox.  Checked on the plan SQLite chooses, not by time."""

from __future__ import annotations

import pytest
from jmap_host_mail import pgsearch
from jmap_host_mail.email import EMAIL, EmailQuery

from jmap_host.testing import running_server

OPEN_A_MAILBOX = [{"property": "receivedAt", "isAscending": False}]


def plan(db, account: str, query: EmailQuery) -> list[str]:
    sql = (
        f"EXPLAIN QUERY PLAN SELECT id, [p_threadId] FROM mail_email WHERE account = ? "
        f"AND ({query.where[0]}) ORDER BY {query.order}"
    )
    rows = db.execute(sql, [account, *query.where[1], *query.order_params]).fetchall()
    return [row[3] for row in rows]


@pytest.mark.backend("sqlite")  # SQLite's EXPLAIN QUERY PLAN
async def test_open_a_mailbox_reads_one_covering_index_in_order(jmap_config):
    assert ("-receivedAt", "id", "threadId") in EMAIL.indexes
    async with running_server(jmap_config) as server:
        query = EmailQuery({"inMailbox": "m1"}, OPEN_A_MAILBOX, True, server.host.store.dialect)
        steps = await server.host.store.read(lambda db: plan(db, "a1", query))
    index = "idx_mail_email_desc_k_receivedAt_id_threadId"  # on the instant key
    assert f"SEARCH mail_email USING COVERING INDEX {index} (account=?)" in steps, steps
    assert not any("TEMP B-TREE" in step for step in steps), steps  # no sort step


@pytest.mark.backend("postgresql")
async def test_open_a_mailbox_can_read_one_index_in_order_on_postgresql(jmap_config):
    """The same on PostgreSQL: the page can be read from the same index in sort order, with
    no Sort of the Mailbox (sequential scans off: on the empty table of a test one would
    be cheaper, and the question is whether the ordered path exists)."""
    async with running_server(jmap_config) as server:
        query = EmailQuery({"inMailbox": "m1"}, OPEN_A_MAILBOX, True, server.host.store.dialect)

        def explain(db) -> list[str]:
            db.execute("SET LOCAL enable_seqscan = off")
            sql = (
                "EXPLAIN SELECT id, [p_threadId] FROM mail_email WHERE account = ? "
                f"AND ({query.where[0]}) ORDER BY {query.order}"
            )
            rows = db.execute(sql, ["a1", *query.where[1], *query.order_params]).fetchall()
            return [row[0] for row in rows]

        steps = await server.host.store.read(explain)
    index = "idx_mail_email_desc_k_receivedAt_id_threadId"
    assert any(f'Index Only Scan using "{index}" on mail_email' in s for s in steps), steps
    assert not any("Sort" in s for s in steps), steps


@pytest.mark.backend("postgresql")
async def test_text_filters_search_the_gin_index_on_postgresql(jmap_config):
    """A text filter (RFC 8621 §4.4.1) on PostgreSQL can look its words up in the GIN index
    of the full-text table (pgsearch), for one field and for every field (``text``).  (On
    the empty table of a test a scan would be cheaper, so scans of the table and of its
    primary key are turned off: the question is whether the index path exists.)"""
    async with running_server(jmap_config) as server:

        def explain(db, column: str | None) -> list[str]:
            db.execute("SET LOCAL enable_seqscan = off")
            db.execute("SET LOCAL enable_indexscan = off")
            where, params = pgsearch.condition(column, ["budget report", "q3"])
            rows = db.execute(f"EXPLAIN SELECT rowid FROM {pgsearch.FTS} WHERE {where}", params)
            return [row[0] for row in rows.fetchall()]

        for column in ("body", None):
            steps = await server.host.store.read(lambda db, c=column: explain(db, c))
            assert any("Bitmap Index Scan on mail_fts_words" in s for s in steps), "\n".join(steps)
