"""Opening a mailbox stays cheap however big the account (issue 6, scaling): the newest-first
page of a Mailbox, collapsed by Thread (RFC 8621 §4.4, §4.4.3), is read from one index alone,
in sort order, so SQLite reads index entries until the page is full: no table row per
candidate and no sort of the whole Mailbox.  Checked on the plan SQLite chooses, not by time."""

from __future__ import annotations

import pytest
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
