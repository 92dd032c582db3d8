"""The Mailbox counts over real HTTP (RFC 8621 §2): totalEmails, unreadEmails,
totalThreads and unreadThreads, kept by triggers on the membership rows.

RFC 8621 §2 defines each count exactly: totalEmails is "The number of Emails in this
Mailbox", unreadEmails "The number of Emails in this Mailbox that have neither the $seen
keyword nor the $draft keyword", totalThreads "The number of Threads where at least one
Email in the Thread is in this Mailbox"; for unreadThreads the server takes "the simplest
solution": "the number of Threads where at least one Email in the Thread is both in this
Mailbox and has neither the $seen nor $draft keywords".  So every test here compares
Mailbox/get with those definitions evaluated on what Email/get returns, after each kind of
write: imports (one Email and batches), keyword changes to and from $seen and $draft,
moves, an Email in two Mailboxes, a Thread spanning Mailboxes, destroys of Emails and of
Mailboxes, and /set records that fail and are rolled back."""

from __future__ import annotations

from typing import Any

import pytest
from jmap_host_mail import email as email_module
from jmap_host_mail import store
from jmap_host_mail.testing import MailClient

from jmap_host import SetError, dialect
from jmap_host.pgstore import MIGRATIONS_TABLE
from jmap_host.testing import running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]
COUNTS = ("totalEmails", "unreadEmails", "totalThreads", "unreadThreads")


def message(subject: str, msgid: str, reply_to: str | None = None) -> bytes:
    lines = [
        "From: Bob <bob@example.org>",
        "To: Alice <alice@example.org>",
        f"Subject: {'Re: ' if reply_to else ''}{subject}",
        "Date: Tue, 24 Nov 2026 10:00:00 +0100",
        f"Message-ID: <{msgid}>",
    ]
    if reply_to:
        lines += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    return ("\r\n".join(lines) + "\r\n\r\nHello\r\n").encode()


class Mail(MailClient):
    def __init__(self, http: Any, account: str, server: Any):
        self.http = http
        self.account = account
        self.server = server
        self.roles: dict[str, str] = {}

    async def import_(self, *emails: tuple[bytes, list[str], dict[str, bool]]) -> list[dict]:
        """Email/import of these (message, mailbox roles or ids, keywords) in one call."""
        batch = {}
        for n, (raw, boxes, keywords) in enumerate(emails):
            batch[f"e{n}"] = {
                "blobId": await self.upload(raw),
                "mailboxIds": {self.roles.get(b, b): True for b in boxes},
                "keywords": keywords,
            }
        result = await self.call("Email/import", emails=batch)
        assert not result.get("notCreated"), result
        return [result["created"][f"e{n}"] for n in range(len(emails))]

    async def counts(self) -> dict[str, tuple[int, ...]]:
        """Mailbox/get of every Mailbox: its counts by id."""
        listed = (await self.call("Mailbox/get", ids=None, properties=list(COUNTS)))["list"]
        return {m["id"]: tuple(m[c] for c in COUNTS) for m in listed}

    async def expected(self) -> dict[str, tuple[int, ...]]:
        """The §2 definitions evaluated on every Email (Email/get), for every Mailbox."""
        boxes = (await self.call("Mailbox/get", ids=None, properties=["id"]))["list"]
        ids = (await self.call("Email/query", limit=10000))["ids"]
        emails = (
            await self.call("Email/get", ids=ids, properties=["threadId", "mailboxIds", "keywords"])
        )["list"]
        out = {}
        for box in boxes:
            inside = [e for e in emails if e["mailboxIds"].get(box["id"])]
            unread = [e for e in inside if not {"$seen", "$draft"} & set(e["keywords"])]
            out[box["id"]] = (
                len(inside),
                len(unread),
                len({e["threadId"] for e in inside}),
                len({e["threadId"] for e in unread}),
            )
        return out

    async def assert_exact(self) -> dict[str, tuple[int, ...]]:
        counts = await self.counts()
        assert counts == await self.expected()
        return counts


@pytest.fixture
async def mail(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        client = Mail(http, session["primaryAccounts"][MAIL], server)
        boxes = (await client.call("Mailbox/get", ids=None))["list"]
        client.roles = {m["role"]: m["id"] for m in boxes if m["role"]}
        yield client


async def populate(mail: Mail) -> dict[str, str]:
    """A batch and single imports: three Threads, one spanning Inbox and Archive, one Email
    in two Mailboxes, read, unread and draft Emails.  Returns the Email ids by name."""
    made = await mail.import_(
        (message("Plans", "p1@x"), ["inbox"], {}),
        (message("Plans", "p2@x", reply_to="p1@x"), ["archive"], {"$seen": True}),
        (message("Plans", "p3@x", reply_to="p2@x"), ["inbox"], {"$seen": True}),
        (message("Lunch", "l1@x"), ["inbox", "archive"], {}),
        (message("Draft", "d1@x"), ["drafts"], {"$draft": True}),
    )
    [single] = await mail.import_((message("Lunch", "l2@x", reply_to="l1@x"), ["inbox"], {}))
    names = dict(zip(["p1", "p2", "p3", "l1", "d1"], (m["id"] for m in made), strict=True))
    names["l2"] = single["id"]
    return names


async def test_counts_after_imports_and_thread_spanning_mailboxes(mail):
    """§2 counts after a batch import and a single one; a Thread with Emails in Inbox and
    Archive counts once in each, and is unread only where an unread Email of it is."""
    await populate(mail)
    counts = await mail.assert_exact()
    inbox, archive, drafts = (mail.roles[r] for r in ("inbox", "archive", "drafts"))
    # Inbox: p1 (unread), p3 (read), l1 (unread, also in Archive), l2 (unread).
    assert counts[inbox] == (4, 3, 2, 2)
    # Archive: p2 (read) of the Plans Thread, l1 (unread) of the Lunch Thread.
    assert counts[archive] == (2, 1, 2, 1)
    # Drafts: a $draft Email is not unread (§2 unreadEmails).
    assert counts[drafts] == (1, 0, 1, 0)
    assert counts[mail.roles["trash"]] == (0, 0, 0, 0)


async def test_keyword_changes_to_and_from_seen(mail):
    """§2 unreadEmails and unreadThreads follow $seen and $draft both ways; other keywords
    change nothing."""
    ids = await populate(mail)
    inbox = mail.roles["inbox"]
    await mail.call("Email/set", update={ids["p1"]: {"keywords/$seen": True}})
    assert (await mail.assert_exact())[inbox] == (4, 2, 2, 1)
    # Both unread Lunch Emails read: no unread Thread left in the Inbox.
    await mail.call(
        "Email/set",
        update={ids["l1"]: {"keywords/$seen": True}, ids["l2"]: {"keywords/$seen": True}},
    )
    assert (await mail.assert_exact())[inbox] == (4, 0, 2, 0)
    await mail.call("Email/set", update={ids["p3"]: {"keywords/$seen": None}})
    assert (await mail.assert_exact())[inbox] == (4, 1, 2, 1)
    await mail.call("Email/set", update={ids["p3"]: {"keywords": {"$draft": True}}})
    assert (await mail.assert_exact())[inbox] == (4, 0, 2, 0)
    await mail.call("Email/set", update={ids["p3"]: {"keywords": {"$flagged": True}}})
    before = await mail.assert_exact()
    await mail.call("Email/set", update={ids["p3"]: {"keywords/$flagged": None}})
    assert await mail.assert_exact() == before


async def test_moves_between_mailboxes(mail):
    """§2 counts of both Mailboxes after moves, adds and removals (mailboxIds patches)."""
    ids = await populate(mail)
    inbox, archive, trash = (mail.roles[r] for r in ("inbox", "archive", "trash"))
    await mail.call(
        "Email/set",
        update={ids["p1"]: {f"mailboxIds/{inbox}": None, f"mailboxIds/{archive}": True}},
    )
    counts = await mail.assert_exact()
    assert counts[inbox] == (3, 2, 2, 1) and counts[archive] == (3, 2, 2, 2)
    await mail.call(
        "Email/set",
        update={
            ids["l1"]: {"mailboxIds": {trash: True}},
            ids["l2"]: {f"mailboxIds/{trash}": True},
            ids["p3"]: {"mailboxIds": {archive: True}, "keywords": {}},
        },
    )
    counts = await mail.assert_exact()
    assert counts[inbox] == (1, 1, 1, 1)
    assert counts[archive] == (3, 2, 1, 1)
    assert counts[trash] == (2, 2, 1, 1)


async def test_destroys(mail):
    """§2 counts after Email/set destroy and Mailbox/set destroy with
    onDestroyRemoveEmails (§2.5), which moves Emails out or destroys them."""
    ids = await populate(mail)
    inbox, archive = mail.roles["inbox"], mail.roles["archive"]
    destroyed = await mail.call("Email/set", destroy=[ids["p1"], ids["l2"]])
    assert set(destroyed["destroyed"]) == {ids["p1"], ids["l2"]}
    counts = await mail.assert_exact()
    assert counts[inbox] == (2, 1, 2, 1)
    made = await mail.call("Mailbox/set", create={"w": {"name": "Work"}})
    work = made["created"]["w"]["id"]
    await mail.call(
        "Email/set",
        update={ids["p3"]: {f"mailboxIds/{work}": True}, ids["d1"]: {"mailboxIds": {work: True}}},
    )
    assert (await mail.assert_exact())[work] == (2, 0, 2, 0)
    gone = await mail.call("Mailbox/set", destroy=[work], onDestroyRemoveEmails=True)
    assert gone["destroyed"] == [work]
    counts = await mail.assert_exact()
    assert work not in counts and counts[inbox] == (2, 1, 2, 1)
    destroyed = await mail.call("Email/set", destroy=[ids["l1"], ids["p2"], ids["p3"]])
    assert len(destroyed["destroyed"]) == 3
    counts = await mail.assert_exact()
    assert counts[inbox] == (0, 0, 0, 0) and counts[archive] == (0, 0, 0, 0)


async def test_failed_set_record_is_rolled_back(mail, monkeypatch):
    """A /set record that fails after its membership rows were written is rolled back to
    its savepoint, count changes included (§2 counts stay exact), while the other records
    of the same call are applied."""
    ids = await populate(mail)
    inbox, archive = mail.roles["inbox"], mail.roles["archive"]
    before = await mail.assert_exact()
    original = email_module.EMAIL.on_update

    def failing(ctx: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
        original(ctx, old, new)  # writes the membership rows (and so the counts)
        if new["id"] == ids["p1"]:
            raise SetError("forbidden", "refused after the membership was written")

    monkeypatch.setattr(email_module.EMAIL, "on_update", failing)
    result = await mail.call(
        "Email/set",
        update={
            ids["p1"]: {"mailboxIds": {archive: True}, "keywords/$seen": True},
            ids["l2"]: {"keywords/$seen": True},
        },
    )
    assert result["notUpdated"][ids["p1"]]["type"] == "forbidden"
    assert set(result["updated"]) == {ids["l2"]}
    counts = await mail.assert_exact()
    assert counts[inbox] == (4, 2, 2, 2) and counts[archive] == before[archive]
    # A failing destroy, too.
    monkeypatch.setattr(email_module.EMAIL, "on_update", original)
    original_destroy = email_module.EMAIL.on_destroy

    def failing_destroy(ctx: Any, record: dict[str, Any]) -> None:
        original_destroy(ctx, record)
        raise SetError("forbidden", "refused after the membership was removed")

    monkeypatch.setattr(email_module.EMAIL, "on_destroy", failing_destroy)
    result = await mail.call("Email/set", destroy=[ids["l1"]])
    assert result["notDestroyed"][ids["l1"]]["type"] == "forbidden"
    assert (await mail.assert_exact())[inbox] == (4, 2, 2, 2)


def group_by_counts(db: Any) -> dict[tuple[str, str], tuple[int, ...]]:
    """The counts as Mailbox/get computed them before the count tables: one GROUP BY over
    every membership row (the reference for the backfill)."""
    rows = db.execute(
        "SELECT account, mailbox_id, count(*), sum(unread), count(DISTINCT thread_id), "
        f"count(DISTINCT CASE WHEN unread != 0 THEN thread_id END) FROM {store.MEMBERSHIP} "
        "GROUP BY account, mailbox_id"
    ).fetchall()
    return {(r[0], r[1]): (r[2], r[3] or 0, r[4], r[5]) for r in rows}


def kept_counts(db: Any) -> dict[tuple[str, str], tuple[int, ...]]:
    rows = db.execute(
        "SELECT account, mailbox_id, emails, unread_emails, threads, unread_threads "
        f"FROM {store.MAILBOX_COUNTS}"
    ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


async def test_backfill_migration_matches_group_by(mail):
    """An existing database (membership rows, no count tables) comes out of the migration
    with the counts the old GROUP BY gives, and the triggers keep them exact afterwards
    (RFC 8621 §2)."""
    ids = await populate(mail)
    await mail.call("Email/set", update={ids["p3"]: {"keywords/$seen": None}})
    db_store = mail.server.host.store
    before = await mail.counts()

    def downgrade(db: Any) -> None:
        for kind in ("insert", "delete", "update"):
            dialect(db).drop_trigger(db, f"mail_mailbox_counts_{kind}", store.MEMBERSHIP)
        db.execute(f"DROP TABLE {store.MAILBOX_COUNTS}")
        db.execute(f"DROP TABLE {store.THREAD_COUNTS}")
        records = "_sqlite_migrations" if dialect(db).name == "sqlite" else MIGRATIONS_TABLE
        db.execute(
            f"DELETE FROM {records} WHERE migration_set = ? AND name = ?",
            ["jmap-host-mail", "create_mailbox_counts"],
        )

    db_store.write_sync(downgrade)
    reference = db_store.read_sync(group_by_counts)
    assert sum(c[0] for c in reference.values()) == 7  # l1 is in two Mailboxes
    assert "jmap-host-mail:create_mailbox_counts" in db_store.migrate()
    assert db_store.read_sync(kept_counts) == reference
    assert await mail.counts() == before
    await mail.assert_exact()
    # The recreated triggers keep counting.
    await mail.call("Email/set", update={ids["l2"]: {"keywords/$seen": True}})
    await mail.import_((message("Later", "n1@x"), ["inbox"], {}))
    await mail.assert_exact()
    assert db_store.read_sync(kept_counts) == db_store.read_sync(group_by_counts)
