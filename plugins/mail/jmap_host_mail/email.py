"""Emails and Threads (RFC 8621 §3, §4).

Email and Thread are declared data types, so their records, states and change logs are the
host's: Email/changes, Thread/get and Thread/changes are the standard methods, and
Email/set's updates (keywords and mailboxIds patches) and destroys go through the standard
/set with this module's hooks.  What the RFC adds lives here: Email/get's body and header
arguments (answered from the stored message, parsed by message.py), Email/query's filters,
sorts and collapseThreads, and Email/import.

Ingesting a message (``ingest``) stores the raw message and every decoded part as blobs,
assigns the Thread (§3: a shared message id and the same base subject), fills the Mailbox
membership that the counts and ``inMailbox`` use, and indexes the text for search, all in
one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial
from typing import Any

import trio

from jmap_host import (
    Call,
    DataType,
    Dialect,
    FilterCondition,
    Host,
    Method,
    MethodError,
    Principal,
    Property,
    QuotaLimits,
    SetContext,
    SetError,
    SharedThrough,
    StagedBlobs,
    add_blob_reference,
    add_blob_references,
    atomically,
    blob_refs,
    blob_visible,
    blobs_visible,
    check_get_size,
    check_quota,
    dates,
    dialect,
    expect_long_read,
    limits_for,
    messaging,
    objectstore,
    publish_states,
    read_blob,
    remove_blob_references,
    set_arguments,
    sharing,
    standard,
    write_blob,
)

from . import store
from .compose import ComposeError, compose_message, validate_create
from .mailbox import MAILBOX
from .message import (
    DEFAULT_BODY_PROPERTIES,
    base_subject,
    header_form,
    invalid_properties,
    parse_message,
)

MAIL_URN = "urn:ietf:params:jmap:mail"
KEYWORD_CHARS = set(map(chr, range(0x21, 0x7F))) - set('(){]%*"\\')

# RFC 8621 §4.2: the properties Email/get returns when the client names none.
DEFAULT_PROPERTIES = [
    "id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
    "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
    "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments",
]  # fmt: skip
# Email properties computed from the message on /get rather than stored.
MESSAGE_PROPERTIES = {
    "headers",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
}


def check_keywords(keywords: dict[str, bool]) -> None:
    for keyword, value in keywords.items():
        if value is not True:
            raise ValueError("keyword values must be true")
        if not keyword or len(keyword) > 255 or set(keyword) - KEYWORD_CHARS:
            raise ValueError(f"{keyword!r} is not a valid keyword")


def check_mailbox_ids(mailbox_ids: dict[str, bool]) -> None:
    if not mailbox_ids:
        raise ValueError("an Email must be in at least one Mailbox")
    if any(value is not True for value in mailbox_ids.values()):
        raise ValueError("mailboxIds values must be true")


def _email_col(name: str) -> str:
    return f"[mail_email].[{objectstore.column(EMAIL.by_name[name])}]"


def _in_mailbox(value: str) -> tuple[str, list[Any]]:
    return (
        f"EXISTS (SELECT 1 FROM {store.MEMBERSHIP} m WHERE m.account = [mail_email].account "
        "AND m.email_id = [mail_email].id AND m.mailbox_id = ?)",
        [value],
    )


def _in_mailbox_other_than(value: list[str]) -> tuple[str, list[Any]]:
    # The ids as one JSON parameter: a list of any length stays one bound parameter.
    return (
        f"EXISTS (SELECT 1 FROM {store.MEMBERSHIP} m WHERE m.account = [mail_email].account "
        "AND m.email_id = [mail_email].id AND m.mailbox_id NOT IN "
        "(SELECT value FROM json_each(?)))",
        [json.dumps(list(value))],
    )


def _in_readable(mailboxes_json: str) -> tuple[str, list[Any]]:
    """Emails in one of these (JSON list) Mailboxes: what a sharee may read."""
    return (
        f"EXISTS (SELECT 1 FROM {store.MEMBERSHIP} m WHERE m.account = [mail_email].account "
        "AND m.email_id = [mail_email].id AND m.mailbox_id IN (SELECT value FROM json_each(?)))",
        [mailboxes_json],
    )


def _thread_readable(mailboxes_json: str) -> tuple[str, list[Any]]:
    """Threads with an Email in one of these Mailboxes."""
    thread = objectstore.column(EMAIL.by_name["threadId"])
    return (
        f"EXISTS (SELECT 1 FROM mail_email e JOIN {store.MEMBERSHIP} m ON m.account = e.account "
        f"AND m.email_id = e.id WHERE e.account = [mail_thread].account AND e.[{thread}] = "
        "[mail_thread].id AND m.mailbox_id IN (SELECT value FROM json_each(?)))",
        [mailboxes_json],
    )


def _thread_emails(db: Any, access: Any, records: list[dict[str, Any]]) -> None:
    """A sharee sees only the Emails of a Thread they may read."""
    ids = [i for r in records for i in r.get("emailIds") or []]
    seen = sharing.visible_ids(db, EMAIL, access, access.account, ids)
    for record in records:
        if "emailIds" in record:
            record["emailIds"] = [i for i in record["emailIds"] if i in seen]


def _keyword_rights(rights: list[dict[str, bool]], old: dict, new: dict) -> None:
    """RFC 8621 §2: $seen needs maySetSeen, other keywords maySetKeywords, in every
    Mailbox of the Email; nothing else of an Email changes."""
    if any(k != "keywords" and old.get(k) != new.get(k) for k in set(old) | set(new)
           if k != "mailboxIds"):  # fmt: skip
        raise SetError("forbidden", "you may not change this Email")
    before, after = old.get("keywords") or {}, new.get("keywords") or {}
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if "$seen" in changed and not all(r.get("maySetSeen") for r in rights):
        raise SetError("forbidden", "you may not change $seen here (maySetSeen)")
    if changed - {"$seen"} and not all(r.get("maySetKeywords") for r in rights):
        raise SetError("forbidden", "you may not change keywords here (maySetKeywords)")


def _not_keyword(value: str) -> tuple[str, list[Any]]:
    return (
        f"NOT EXISTS (SELECT 1 FROM json_each({_email_col('keywords')}) WHERE key = ?)",
        [value],
    )


def _thread_keyword(mode: str) -> Any:
    def condition(value: str) -> tuple[str, list[Any]]:
        has = "EXISTS (SELECT 1 FROM json_each(e2.[p_keywords]) WHERE key = ?)"
        sibling = (
            "SELECT 1 FROM mail_email e2 WHERE e2.account = [mail_email].account "
            f"AND e2.[p_threadId] = {_email_col('threadId')}"
        )
        if mode == "all":
            return f"NOT EXISTS ({sibling} AND NOT {has})", [value]
        if mode == "some":
            return f"EXISTS ({sibling} AND {has})", [value]
        return f"NOT EXISTS ({sibling} AND {has})", [value]

    return condition


# The dialect of the store an Email filter is being compiled for (EmailQuery sets it):
# the text conditions' SQL is the back end's own (store.fts_condition), and the host
# compiles a custom condition from its value alone.  Unset when the filter is only
# checked (SearchSnippet/get): SQLite's then (dialect of no connection).
_FILTER_DIALECT: ContextVar[Dialect | None] = ContextVar("mail_filter_dialect", default=None)


def _text(field: str) -> Any:
    def condition(value: str) -> tuple[str, list[Any]]:
        sql = _FILTER_DIALECT.get() or dialect(None)
        return store.fts_condition(sql, "mail_email", store.FTS_COLUMNS[field], value)

    return condition


def _header(value: list[str]) -> tuple[str, list[Any]]:
    """§4.4.1 ``header``: [name] (the field is present) or [name, text] (its value, decoded,
    contains the text, case-insensitively)."""
    if len(value) not in (1, 2) or not value[0]:
        raise MethodError("invalidArguments", "header must be [name] or [name, text]")
    return store.header_condition("mail_email", value[0], value[1] if len(value) == 2 else None)


EMAIL = DataType(
    name="Email",
    table="mail_email",
    properties=[
        Property("blobId", "BlobId", server_set=True),
        Property("threadId", "Id", server_set=True, indexed=True),
        Property("mailboxIds", "Id[Boolean]", required=True, validate=check_mailbox_ids),
        Property("keywords", "String[Boolean]", default={}, validate=check_keywords),
        Property("size", "UnsignedInt", server_set=True, sortable=True),
        Property("receivedAt", "UTCDate", immutable=True, sortable=True),
        Property("messageId", "String[]|null", server_set=True),
        Property("inReplyTo", "String[]|null", server_set=True),
        Property("references", "String[]|null", server_set=True),
        Property("sender", "Object[]|null", server_set=True),
        Property("from", "Object[]|null", server_set=True),
        Property("to", "Object[]|null", server_set=True),
        Property("cc", "Object[]|null", server_set=True),
        Property("bcc", "Object[]|null", server_set=True),
        Property("replyTo", "Object[]|null", server_set=True),
        Property("subject", "String|null", server_set=True, sortable=True),
        Property("sentAt", "Date|null", server_set=True, sortable=True),
        Property("hasAttachment", "Boolean", server_set=True, default=False),
        Property("preview", "String", server_set=True, default=""),
    ],
    filters=[
        FilterCondition("inMailbox", "mailboxIds", "custom", value_type="Id", sql=_in_mailbox),
        FilterCondition(
            "inMailboxOtherThan",
            "mailboxIds",
            "custom",
            value_type="Id[]",
            sql=_in_mailbox_other_than,
        ),
        FilterCondition("before", "receivedAt", "lt"),
        FilterCondition("after", "receivedAt", "ge"),
        FilterCondition("minSize", "size", "ge"),
        FilterCondition("maxSize", "size", "lt"),
        FilterCondition(
            "allInThreadHaveKeyword",
            "keywords",
            "custom",
            value_type="String",
            sql=_thread_keyword("all"),
        ),
        FilterCondition(
            "someInThreadHaveKeyword",
            "keywords",
            "custom",
            value_type="String",
            sql=_thread_keyword("some"),
        ),
        FilterCondition(
            "noneInThreadHaveKeyword",
            "keywords",
            "custom",
            value_type="String",
            sql=_thread_keyword("none"),
        ),
        FilterCondition("hasKeyword", "keywords", "hasKey", value_type="String"),
        FilterCondition("notKeyword", "keywords", "custom", value_type="String", sql=_not_keyword),
        FilterCondition("hasAttachment", "hasAttachment"),
        *(
            FilterCondition(name, "subject", "custom", value_type="String", sql=_text(name))
            for name in ("text", "from", "to", "cc", "bcc", "subject", "body")
        ),
        FilterCondition("header", "subject", "custom", value_type="String[]", sql=_header),
    ],
    methods=("changes",),
    default_sort=("receivedAt",),
    get_all=False,
    # Opening a mailbox (newest first, collapsed by Thread) reads the page from this index
    # alone, in order: no table row per candidate, the same cost at 10,000 or 1,000,000.
    indexes=[("-receivedAt", "id", "threadId")],
    # What on_update reads (below): a keyword update of 50 Emails reads these 3 of their
    # 21 properties, not the addresses, headers and preview it never looks at.
    update_reads=("mailboxIds", "keywords", "threadId"),
    # RFC 9425: an Email weighs its size in octets, and counts one (jmap_host.quota).
    quota_octets="size",
    quota_count=True,
    # Shared through its Mailboxes (RFC 8621 §2 rights, jmap_host.sharing).
    shared_through=SharedThrough(
        container="Mailbox",
        property="mailboxIds",
        add="mayAddItems",
        remove="mayRemoveItems",
        check_update=_keyword_rights,
        visible_sql=_in_readable,
    ),
)

THREAD = DataType(
    name="Thread",
    table="mail_thread",
    properties=[Property("emailIds", "Id[]", server_set=True, default=[])],
    methods=("get", "changes"),
    get_all=False,
    # A sharee sees the Threads of the Emails they may read, and only those Emails.
    shared_through=SharedThrough(
        container="Mailbox", visible_sql=_thread_readable, restrict=_thread_emails
    ),
)


# RFC 9404 §4.3 Blob/lookup: an Email references its message and every part of it; a
# Thread and a Mailbox reference what their Emails do.
def _email_blob_lookup(db: Any, account: str, blob_ids: list[str]) -> dict[str, list[str]]:
    return blob_refs(db, account, blob_ids, ("Email:", "EmailPart:"))


def _through_emails(table: str, email_column: str, column: str) -> Any:
    """The lookup of a type whose records hold Emails: ``column`` of the rows of ``table``
    whose ``email_column`` names an Email referencing the blob."""

    def lookup(db: Any, account: str, blob_ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for blob_id, email_ids in _email_blob_lookup(db, account, blob_ids).items():
            marks = ", ".join("?" * len(email_ids))
            rows = db.execute(
                f"SELECT DISTINCT [{column}] FROM [{table}] WHERE account = ? AND "
                f"[{email_column}] IN ({marks}) ORDER BY [{column}]",
                [account, *email_ids],
            ).fetchall()
            out[blob_id] = [r[0] for r in rows]
        return out

    return lookup


EMAIL.blob_lookup = _email_blob_lookup
THREAD.blob_lookup = _through_emails(
    EMAIL.table, "id", objectstore.column(EMAIL.by_name["threadId"])
)
MAILBOX.blob_lookup = _through_emails(store.MEMBERSHIP, "email_id", "mailbox_id")


# -- ingesting a message -----------------------------------------------------------------------


def utc_now() -> str:
    return dates.utcdate()


def _addresses_text(addresses: list[dict[str, Any]] | None) -> str:
    return " ".join(
        " ".join(filter(None, (a.get("name"), a.get("email")))) for a in addresses or []
    )


# The Email properties taken from the message when it is stored.
STORED_MESSAGE_PROPERTIES = [
    "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo",
    "subject", "sentAt", "hasAttachment", "preview",
]  # fmt: skip


@dataclasses.dataclass
class PreparedMessage:
    """Everything storing a message needs from its bytes, computed without the database
    (so outside the write transaction for Email/import): the Email's message properties,
    the Thread keys, the blob ids of the message and its parts, the text to index."""

    blob_id: str
    size: int
    meta: dict[str, Any]
    thread_keys: list[str]
    base_subject: str
    parts: dict[str, str]  # partId -> blobId
    text: tuple[str, str, str, str, str, str]  # subject, from, to, cc, bcc, body
    headers: list[tuple[str, str]]  # (name, value in the Text form), in order


def prepare_message(raw: bytes, store_blob: Any, blob_id: str | None = None) -> PreparedMessage:
    """Parse ``raw``; ``store_blob(data) -> blob id`` is called for the message (unless its
    ``blob_id`` is known: an uploaded blob is content-addressed) and then each part."""
    parsed = parse_message(raw)
    if blob_id is None:
        blob_id = store_blob(raw)
    keys, subject = parsed.thread_keys()
    meta = parsed.get(STORED_MESSAGE_PROPERTIES)
    parts = {part_id: store_blob(parsed.part_bytes(part_id)) for part_id in parsed.part_ids}
    body_text = parsed.searchable_text(200_000)
    text = (
        meta.get("subject") or "", _addresses_text(meta.get("from")),
        _addresses_text(meta.get("to")), _addresses_text(meta.get("cc")),
        _addresses_text(meta.get("bcc")), body_text,
    )  # fmt: skip
    headers = [(h["name"], header_form(h["value"], "Text")) for h in parsed.headers]
    return PreparedMessage(blob_id, len(raw), meta, keys, subject, parts, text, headers)


def ingest(
    db: Any,
    host: Host,
    account: str,
    raw: bytes,
    mailbox_ids: dict[str, bool],
    keywords: dict[str, bool],
    received_at: str | None = None,
    *,
    delivered: bool = True,
    mailboxes: set[str] | None = None,
    limits: QuotaLimits | None = None,
    incoming: bool = False,
) -> dict[str, Any]:
    """Store ``raw`` as a new Email in ``account`` inside the caller's write transaction;
    returns the Email record.  Raises SetError for bad mailboxIds or keywords, OverQuota
    past the account's quota ``limits`` (its soft limit too, unless ``incoming``).
    ``delivered``: whether EmailDelivery changes.  RFC 8621 §1.5 says it MUST change
    "whenever a new Email is added to the store", so every ingest path (delivery, import,
    Email/set create, Email/copy) leaves it true; a plugin re-storing an existing message
    would pass False.
    Each blob file is written and fsynced here (Email/import stages a batch's files
    before its transaction instead: StagedBlobs).
    ``mailboxes``: the account's Mailbox ids, when the caller has read them already in
    this transaction (one read per batch, not one per message)."""
    existing = mailboxes
    if existing is None:
        existing = {m["id"] for m in objectstore.read_records(db, MAILBOX, account, None, [])}
    check_mailboxes_exist(mailbox_ids, existing)
    check_quota(db, limits, account, octets=len(raw), count=1, incoming=incoming)
    prepared = prepare_message(raw, lambda data: write_blob(host, data))
    return ingest_prepared(
        db, account, [(prepared, mailbox_ids, keywords, received_at)], delivered=delivered
    )[0]


def ingest_delivered(
    db: Any, host: Host, principal: Principal, raw: bytes, inbox: str, envelope_from: str | None,
    limits: QuotaLimits | None = None,
) -> tuple[dict[str, Any], set[str]]:
    """The one step of every local delivery (LMTP, ``jmap-host deliver``, a local
    EmailSubmission, the queue's local recipients), inside the caller's write transaction:
    ``raw`` stored in ``principal``'s Inbox, then the host's mail receivers told
    (jmap_host.messaging: what they write commits with the message).  Returns the Email
    record and the data types the receivers changed, to push after the commit with the
    mail types (:func:`publish`)."""
    account = principal.account_id
    record = ingest(db, host, account, raw, {inbox: True}, {}, limits=limits, incoming=True)
    return record, messaging.received(db, host, principal, raw, envelope_from)


def check_mailboxes_exist(mailbox_ids: dict[str, bool], existing: set[str]) -> None:
    unknown = [m for m in mailbox_ids if m not in existing]
    if unknown:
        raise SetError(
            "invalidProperties", f"no such Mailbox: {', '.join(unknown)}", properties=["mailboxIds"]
        )


def ingest_prepared(
    db: Any,
    account: str,
    items: list[tuple[PreparedMessage, dict[str, bool], dict[str, bool], str | None]],
    *,
    delivered: bool = True,
) -> list[dict[str, Any]]:
    """Store prepared messages as new Emails, in order, inside the caller's write
    transaction: (message, mailboxIds, keywords, receivedAt) each, the Mailboxes already
    checked (:func:`check_mailboxes_exist`) and every blob the messages name already stored
    or staged by the caller.  Returns the Email records.  The Thread of each message is
    assigned in order (a reply finds a Thread made by an earlier message of the same
    batch); the rows of the batch then go in with one executemany per table, each Thread
    touched is written once, and each Mailbox gets one change."""
    records: list[dict[str, Any]] = []
    threads: dict[str, dict[str, Any]] = {}  # Thread id -> record, touched by this batch
    new_threads: set[str] = set()
    batch_keys: dict[tuple[str, str], str] = {}  # (base subject, key) -> Thread id
    key_rows: list[tuple[str, str, str, str]] = []
    refs: list[tuple[str, str]] = []
    part_rows: list[tuple[str, str, str, str]] = []
    member_rows: list[tuple[str, str, str, str, int]] = []
    text_rows: list[tuple[Any, ...]] = []
    header_rows: list[tuple[str, str, str, str, int]] = []
    mailboxes_changed: dict[str, None] = {}
    for prepared, mailbox_ids, keywords, received_at in items:
        email_id = objectstore.new_id()
        keys, subject = prepared.thread_keys, prepared.base_subject
        thread_id = None
        if keys:
            thread_id = next(
                (batch_keys[(subject, k)] for k in keys if (subject, k) in batch_keys), None
            )
            if thread_id is None:
                thread_id = store.find_thread(db, account, keys, subject)
            if thread_id is not None and thread_id not in threads:
                found = objectstore.read_records(db, THREAD, account, [thread_id])
                if found:
                    threads[thread_id] = found[0]
                else:  # its Emails were all destroyed: the keys outlived the Thread
                    thread_id = None
        if thread_id is None:
            thread_id = objectstore.new_id()
            threads[thread_id] = {"id": thread_id, "emailIds": []}
            new_threads.add(thread_id)
        thread = threads[thread_id]
        thread["emailIds"] = [*thread["emailIds"], email_id]
        for key in keys:
            batch_keys.setdefault((subject, key), thread_id)
            key_rows.append((account, key, thread_id, subject))
        record = {
            "id": email_id,
            "blobId": prepared.blob_id,
            "threadId": thread_id,
            "mailboxIds": dict(mailbox_ids),
            "keywords": dict(keywords),
            "size": prepared.size,
            "receivedAt": received_at or utc_now(),
            **prepared.meta,
        }
        rowid = objectstore.insert_record(db, EMAIL, account, record)
        records.append(record)
        refs.append((prepared.blob_id, f"Email:{email_id}"))
        refs += [(blob_id, f"EmailPart:{email_id}") for blob_id in prepared.parts.values()]
        part_rows += [(account, email_id, p, b) for p, b in prepared.parts.items()]
        unread = int(store.is_unread(keywords))
        member_rows += [
            (account, mailbox_id, email_id, thread_id, unread)
            for mailbox_id, member in mailbox_ids.items()
            if member
        ]
        mailboxes_changed.update(dict.fromkeys(mailbox_ids))
        text_rows.append((rowid, email_id, account, *prepared.text))
        header_rows += store.header_rows(account, email_id, prepared.headers, rowid)
    for thread_id, thread in threads.items():
        if thread_id in new_threads:
            objectstore.insert_record(db, THREAD, account, thread)
        else:
            objectstore.update_record(db, THREAD, account, thread)
    objectstore.record_changes(
        db, account, THREAD.name,
        [(t, "created" if t in new_threads else "updated") for t in threads],
    )  # fmt: skip
    email_changes = [(r["id"], "created") for r in records]
    objectstore.record_changes(db, account, EMAIL.name, email_changes)
    if delivered:
        # RFC 8621 §1.5: EmailDelivery changes when, and only when, an Email arrives.
        objectstore.record_changes(db, account, "EmailDelivery", email_changes)
    # Counts are Mailbox properties: a Mailbox whose counts change gets a new state.
    objectstore.record_changes(
        db, account, MAILBOX.name, [(m, "updated") for m in mailboxes_changed]
    )
    add_blob_references(db, account, refs)
    store.add_new_emails(db, key_rows, part_rows, member_rows, text_rows, header_rows)
    return records


def _mailboxes_changed(db: Any, account: str, mailbox_ids: Any) -> None:
    """Counts are Mailbox properties: a Mailbox whose counts change gets a new state."""
    for mailbox_id in mailbox_ids:
        objectstore.record_change(db, account, MAILBOX.name, mailbox_id, "updated")


# -- Email/set hooks (updates and destroys) ----------------------------------------------------


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    # (That the new Mailboxes exist the host has checked: Email is shared through them.)
    # The membership rows hold only the Mailboxes and the unread flag, and the Mailbox
    # counts follow from them: a keyword change that leaves unread alone ($flagged, say)
    # changes neither, so no Mailbox gets a new state.
    if new["mailboxIds"] != old["mailboxIds"] or store.is_unread(
        new["keywords"]
    ) != store.is_unread(old["keywords"]):
        store.set_membership(
            ctx.db, ctx.account.id, new["id"], new["threadId"], new["mailboxIds"], new["keywords"]
        )
        _mailboxes_changed(ctx.db, ctx.account.id, set(old["mailboxIds"]) | set(new["mailboxIds"]))


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    destroy_email(ctx.db, ctx.account.id, record)


def destroy_email(db: Any, account: str, record: dict[str, Any]) -> None:
    """Everything beside the Email row itself: membership, Thread, parts, index, blobs."""
    email_id = record["id"]
    mailboxes = store.clear_membership(db, account, email_id)
    _mailboxes_changed(db, account, mailboxes)
    found = objectstore.read_records(db, THREAD, account, [record["threadId"]])
    if found:
        thread = found[0]
        thread["emailIds"] = [e for e in thread["emailIds"] if e != email_id]
        if thread["emailIds"]:
            objectstore.update_record(db, THREAD, account, thread)
            objectstore.record_change(db, account, THREAD.name, thread["id"], "updated")
        else:
            objectstore.delete_record(db, THREAD, account, thread["id"])
            objectstore.record_change(db, account, THREAD.name, thread["id"], "destroyed")
    store.delete_parts(db, account, email_id)
    store.unindex_text(db, account, email_id)
    store.unindex_headers(db, account, email_id)
    remove_blob_references(db, account, f"EmailPart:{email_id}")
    remove_blob_references(db, account, f"Email:{email_id}")


def remove_from_mailbox(ctx: SetContext, email_id: str, mailbox_id: str) -> None:
    """Mailbox/set onDestroyRemoveEmails (RFC 8621 §2.5)."""
    db, account = ctx.db, ctx.account.id
    record = objectstore.read_records(db, EMAIL, account, [email_id])[0]
    remaining = {m: True for m in record["mailboxIds"] if m != mailbox_id}
    if remaining:
        record["mailboxIds"] = remaining
        objectstore.update_record(db, EMAIL, account, record)
        objectstore.record_change(db, account, EMAIL.name, email_id, "updated")
        store.set_membership(
            db, account, email_id, record["threadId"], remaining, record["keywords"]
        )
    else:
        destroy_email(db, account, record)
        objectstore.delete_record(db, EMAIL, account, email_id)
        objectstore.record_change(db, account, EMAIL.name, email_id, "destroyed")


EMAIL.on_update = on_update
EMAIL.on_destroy = on_destroy
store.register_email_handler("remove_from_mailbox", remove_from_mailbox)

# (Quota: the host's, whose usage moves with every Email, RFC 9425.)
MAIL_TYPES = ("Email", "Thread", "Mailbox", "EmailDelivery", "Quota")


async def publish(host: Host, account: str, also: Iterable[str] = ()) -> None:
    """Tell push listeners the new states of the mail types in ``account``, and of the
    types ``also`` names (what mail receivers changed in the same delivery)."""
    await publish_states(host, account, [*MAIL_TYPES, *also])


# -- Email/get ---------------------------------------------------------------------------------


def _bool_arg(call: Call, name: str) -> bool:
    value = call.args.get(name, False)
    if not isinstance(value, bool):
        raise MethodError("invalidArguments", f"{name} must be a Boolean")
    return value


async def email_get(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.2 Email/get."""
    assert call.account is not None
    account = call.account.id
    ids = call.args.get("ids")
    if ids is None:
        raise MethodError("requestTooLarge", "Email/get needs ids (there may be millions)")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "ids must be an array of ids")
    check_get_size(call, ids)
    created = call.request.created_ids
    ids = list(dict.fromkeys(created.get(i[1:], i) if i.startswith("#") else i for i in ids))
    properties, body_properties, fetch = _get_arguments(call, DEFAULT_PROPERTIES)
    stored = [p for p in properties if p in EMAIL.by_name]
    from_message = [p for p in properties if p not in EMAIL.by_name and p != "id"]
    host = call.host

    def read(db: Any) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, str]]]:
        modseq, _ = objectstore.current_modseq(db, account, EMAIL.name)
        valid = [i for i in ids if standard.is_id(i)]
        access = sharing.access_for(db, call)
        if access is not None:
            seen = sharing.visible_ids(db, EMAIL, access, account, valid)
            valid = [i for i in valid if i in seen]
        records = objectstore.read_records(db, EMAIL, account, valid, [*stored, "blobId"])
        sharing.present(db, EMAIL, access, records)
        # The part blob ids are only wanted for properties read from the message itself.
        parts = (
            {r["id"]: store.get_parts(db, account, r["id"]) for r in records}
            if from_message
            else {}
        )
        return modseq, records, parts

    modseq, records, parts = await host.store.read(read)
    fields = list(dict.fromkeys(["id", *stored]))
    out = []
    for record in records:
        email = {p: record[p] for p in fields}
        if from_message:
            raw = await _read_blob(host, record["blobId"])
            parsed = parse_message(raw or b"")
            email.update(
                parsed.get(
                    from_message,
                    blob_id_for=parts[record["id"]].get,
                    body_properties=body_properties,
                    **fetch,
                )
            )
        out.append(email)
    found = {r["id"] for r in records}
    return {
        "accountId": account,
        "state": str(modseq),
        "list": out,
        "notFound": [i for i in ids if i not in found],
    }


async def _read_blob(host: Host, blob_id: str) -> bytes | None:
    import trio

    return await trio.to_thread.run_sync(read_blob, host, blob_id)


# -- Email/query -------------------------------------------------------------------------------


# RFC 8621 §4.4.2: what Email/query sorts on.  The stored sortable properties go through
# the host's comparator rules; from, to, the base subject and the keyword comparators are
# this module's own SQL (they need expressions and parameters, not just a column).
KEYWORD_SORTS = ("hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword")
ADDRESS_SORTS = ("from", "to")
SORT_OPTIONS = sorted({"receivedAt", "size", "subject", "sentAt", *ADDRESS_SORTS, *KEYWORD_SORTS})
THREAD_FILTERS = ("allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword")


def _collate(expression: str, comparator: dict[str, Any], sql: Dialect) -> str:
    name = comparator.get("collation") or objectstore.DEFAULT_COLLATION
    if name not in objectstore.COLLATIONS:
        raise MethodError("unsupportedSort", f"unsupported collation {name!r}")
    return sql.collate(expression, name)


def compile_email_sort(sort: Any, sql: Dialect) -> tuple[str, list[Any], bool, bool]:
    """(ORDER BY, parameters, mutable, thread-dependent) for an Email/query sort on a
    store of the dialect ``sql``."""
    comparators = standard.check_sort(sort) or [{"property": "receivedAt"}]
    terms: list[str] = []
    params: list[Any] = []
    mutable = thread = False
    for comparator in comparators:
        name = comparator["property"]
        direction = "ASC" if comparator.get("isAscending", True) else "DESC"
        if name in KEYWORD_SORTS:
            keyword = comparator.get("keyword")
            if not isinstance(keyword, str) or not keyword:
                raise MethodError("invalidArguments", f"a {name} comparator needs a keyword")
            if name == "hasKeyword":
                sql = f"EXISTS (SELECT 1 FROM json_each({_email_col('keywords')}) WHERE key = ?)"
                ps: list[Any] = [keyword]
            else:
                sql, ps = _thread_keyword("all" if name.startswith("all") else "some")(keyword)
                thread = True
            terms.append(f"({sql}) {direction}")
            params += ps
            mutable = True
        elif name in ADDRESS_SORTS:
            col = _email_col(name)
            expr = (
                f"COALESCE(NULLIF(json_extract({col}, '$[0].name'), ''), "
                f"json_extract({col}, '$[0].email'), '')"
            )
            terms.append(f"{_collate(expr, comparator, sql)} {direction}")
        elif name == "subject":
            key = store.base_subject_key(sql, "mail_email", _email_col("subject"))
            terms.append(f"{_collate(key, comparator, sql)} {direction}")
        elif name in EMAIL.sortable:  # receivedAt, sentAt (in time order: order_column), size
            col = objectstore.order_column(EMAIL.by_name[name])
            terms.append(f"[mail_email].[{col}] {direction}")
        else:
            raise MethodError("unsupportedSort", f"cannot sort on {name!r}")
    terms.append("[mail_email].id ASC")  # stable between calls
    return ", ".join(terms), params, mutable, thread


def _thread_filter(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    if "operator" in node:
        return any(_thread_filter(c) for c in node.get("conditions") or [])
    return any(name in THREAD_FILTERS for name in node)


# Search plans (EmailQuery._plan): the cost, in microseconds, of one unit of work of each,
# measured at 100,000 Emails (SQLite 3.40): looking up and sorting one hit; collecting one
# rowid a MATCH finds; walking one entry of an ordered index, tested against the collected
# rowids; and testing one walked row with a MATCH of its own: 4-6 us on an index in one
# segment (as index_merge keeps it), 30-54 us on one built by imports, with a score of
# segments to seek in, until the background merge has run.
HIT_COST, COLLECT_COST, WALK_COST, SEEK_COST = 1.3, 0.085, 0.12, 10.0
# The estimates are rough (a factor of two either way), and the costs of a wrong guess
# are not alike: a read moved to a worker thread needlessly costs a thread hop (~0.2 ms),
# one left on the event loop's thread costs the whole inline budget before it is moved.
LONG_READ_MARGIN = 2.0
# Newest-first text searches first try this many of the newest hits per id wanted (and at
# least NEWEST_MIN).
NEWEST_SAMPLE, NEWEST_MIN = 4, 200
# The sorts whose first property has an (account, property) index to walk in order.
WALKABLE_SORTS = ("receivedAt", "size", "sentAt")
TEXT_FILTERS = tuple(store.FTS_COLUMNS)


def _required_text(node: Any) -> list[str]:
    """The FTS queries of the text conditions every result must satisfy: the filter's own
    and its AND operators', not those under OR or NOT."""
    if not isinstance(node, dict):
        return []
    if "operator" in node:
        if node.get("operator") != "AND":
            return []
        return [q for c in node.get("conditions") or [] for q in _required_text(c)]
    queries = []
    for name in TEXT_FILTERS:
        if isinstance(node.get(name), str):
            query = store.fts_query(node[name], store.FTS_COLUMNS[name])
            if query:
                queries.append(query)
    return queries


def sharee_query(db: Any, access: Any, call: Call) -> EmailQuery:
    """The Email/query of a sharee: over the Emails they may read, with the Mailboxes they
    cannot see taken for Mailboxes that do not exist (an ``inMailbox`` of one matches
    nothing, ``inMailboxOtherThan`` does not count them)."""
    seen = set(access.containers(MAILBOX.name))
    hidden = [
        m["id"] for m in objectstore.read_records(db, MAILBOX, access.account, None, [])
        if m["id"] not in seen
    ]  # fmt: skip

    def rewrite(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("conditions"), list):
            return {**node, "conditions": [rewrite(c) for c in node["conditions"]]}
        out = dict(node)
        if isinstance(out.get("inMailbox"), str) and out["inMailbox"] not in seen:
            out["inMailbox"] = "-"  # (no Mailbox has this id)
        if isinstance(out.get("inMailboxOtherThan"), list):
            out["inMailboxOtherThan"] = [*out["inMailboxOtherThan"], *hidden]
        return out

    query = EmailQuery(
        rewrite(call.args.get("filter")),
        call.args.get("sort"),
        _bool_arg(call, "collapseThreads"),
        call.host.store.dialect,
    )
    query.where = standard.and_where(query.where, sharing.visible_where(EMAIL, access))
    query.calculable = False  # what a sharee sees moves with the shares
    return query


class EmailQuery:
    """A compiled Email/query: the WHERE and ORDER BY, and whether /queryChanges can follow
    it from the change log (not when Threads decide membership or order: a sibling's change
    moves an Email that is not itself in the log).

    A query with text conditions (§4.4.1 text, from, to, cc, bcc, subject, body) chooses
    its plan by how many Emails match (``_plan``): few, look them up from the index and sort
    them; many, walk the sort's index and test each row until the page is full; in between,
    collect the matches once and walk the index against them.  Every plan runs the same
    WHERE and ORDER BY, so the answer is the same whichever is chosen."""

    def __init__(self, filter_: Any, sort: Any, collapse: bool, sql: Dialect):
        # The host compiles and checks the filter; the sort is this module's.  ``sql``: the
        # store's dialect (host.store.dialect).
        compiling = _FILTER_DIALECT.set(sql)
        try:
            self.where, _, filter_mutable = standard.compile_query(
                EMAIL, filter_, [{"property": "receivedAt"}], sql
            )
        finally:
            _FILTER_DIALECT.reset(compiling)
        self.order, self.order_params, sort_mutable, sort_thread = compile_email_sort(sort, sql)
        self.mutable = filter_mutable or sort_mutable
        self.collapse = collapse
        self.calculable = not collapse and not sort_thread and not _thread_filter(filter_)
        # The plans below read the FTS5 index (store.fts_estimate, ...); PostgreSQL's own
        # planner chooses how to search its GIN index (pgsearch).
        self.planned = store.plans_text_search(sql)
        queries = _required_text(filter_) if self.planned else []
        self.text = " AND ".join(f"({q})" for q in queries) if queries else None
        first = (standard.check_sort(sort) or [{"property": "receivedAt"}])[0]
        self.walkable = first["property"] in WALKABLE_SORTS
        newest_first = first["property"] == "receivedAt" and first.get("isAscending") is False
        self.newest = self.text is not None and newest_first and not collapse

    def _newest(self, db: Any, account: str, want: int) -> list[str] | None:
        """The first ``want`` ids of a newest-first text search taken from the most
        recently stored hits alone (mail mostly arrives in time order, so the newest
        Emails have the highest rowids), when that is provably the answer, else None.
        Proof: every hit not in the sample has a lower rowid than all of it, and no Email
        at all with a lower rowid was received at or after the last id returned."""
        sample = max(NEWEST_SAMPLE * want, NEWEST_MIN)
        hits, low = store.fts_newest(db, self.text, sample)
        received = objectstore.order_column(EMAIL.by_name["receivedAt"])  # the instant key
        where = store.fts_from_rowid("mail_email", self.where[0], low)
        rows = db.execute(
            f"SELECT mail_email.id, mail_email.[{received}] FROM (SELECT rowid AS hit FROM "
            f"{store.FTS} WHERE {store.FTS} MATCH ? ORDER BY rowid DESC LIMIT ?) AS hits "
            "CROSS JOIN mail_email ON mail_email.rowid = hits.hit WHERE mail_email.account = ? "
            f"AND ({where}) ORDER BY {self.order} LIMIT ?",
            [self.text, sample, account, *self.where[1], *self.order_params, want],
        ).fetchall()
        if hits < sample:  # the sample is every hit
            return [r[0] for r in rows]
        if len(rows) < want or rows[-1][1] is None:
            return None
        older = db.execute(
            f"SELECT 1 FROM mail_email WHERE account = ? AND [{received}] >= ? AND rowid < ? "
            "LIMIT 1",
            [account, rows[-1][1], low],
        ).fetchone()
        return None if older else [r[0] for r in rows]

    def _plan(self, db: Any, want: int | None) -> str:
        """The plan (see the class: "hits", "walk" or "seek") for the first ``want`` rows
        in order (None: all of them), by the estimated cost of each."""
        if self.text is None:
            return "walk"
        hits, emails = store.fts_estimate(db, self.text)
        ordered = self.walkable and want is not None
        if not ordered or hits <= (want or 0):
            walked = emails  # every row is walked (or sorted)
        else:
            walked = min(emails, (want or 0) * emails / max(hits, 1))
        costs = {
            "hits": HIT_COST * hits,
            "walk": COLLECT_COST * hits + WALK_COST * walked,
            "seek": SEEK_COST * walked if ordered else float("inf"),
        }
        plan = min(costs, key=costs.__getitem__)
        # On the event loop's thread a read is interrupted after the store's budget (2 ms)
        # and run again in a worker; one the estimate says is long goes there at once.
        expect_long_read(db, costs[plan] * LONG_READ_MARGIN / 1e6)
        return plan

    def _select(self, db: Any, account: str, columns: str, want: int | None) -> tuple:
        """SQL and parameters selecting ``columns`` of the matching Emails, by the plan."""
        plan = self._plan(db, want) if self.planned else "walk"
        where, params = self.where[0], [*self.where[1]]
        if plan == "seek":
            where = store.fts_per_row("mail_email", where)
        if plan == "hits" and self.text is not None:
            source = (
                f"(SELECT rowid AS hit FROM {store.FTS} WHERE {store.FTS} MATCH ?) AS hits "
                "CROSS JOIN mail_email ON mail_email.rowid = hits.hit"
            )
            params = [self.text, account, *params]
        else:
            source = "mail_email"
            params = [account, *params]
        sql = f"SELECT {columns} FROM {source} WHERE mail_email.account = ? AND ({where})"
        return sql, params

    def ids(self, db: Any, account: str, limit: int | None = None, offset: int = 0) -> list:
        thread_col = objectstore.column(EMAIL.by_name["threadId"])
        want = None if limit is None else offset + limit
        if want is not None and self.newest:
            page = self._newest(db, account, want)
            if page is not None:
                return page[offset:]
        if want is not None and self.collapse:
            want *= 2  # rows walked per Thread kept: a guess, for the plan only
        columns = f"mail_email.id, mail_email.[{thread_col}]"
        sql, params = self._select(db, account, columns, want)
        sql += f" ORDER BY {self.order}"
        params += self.order_params
        if limit is not None and not self.collapse:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        rows = db.execute(sql, params)
        if not self.collapse:
            return [r[0] for r in rows]
        # Collapsing reads the ordered rows only until the page is full: the sort walks an
        # index, so opening a mailbox costs the page, not the whole mailbox.
        wanted = None if limit is None else offset + limit
        seen: set[str] = set()
        out = []
        for email_id, thread_id in rows:
            if thread_id not in seen:  # §4.4.3: each Thread once, at its first Email
                seen.add(thread_id)
                out.append(email_id)
                if wanted is not None and len(out) >= wanted:
                    break
        return out if limit is None else out[offset : offset + limit]

    def count(self, db: Any, account: str) -> int:
        if self.collapse:
            return len(self.ids(db, account))
        sql, params = self._select(db, account, "count(*)", None)
        return int(db.execute(sql, params).fetchone()[0])


# The subject sort's key (RFC 8621 §4.4.2: the base subject), on every connection.
objectstore.sql_function("mail_base_subject", 1, lambda s: base_subject(s) if s else "")


async def email_query(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.4 Email/query: the standard /query with the mail filters, the §4.4.2
    sorts (incl. from, to and the keyword comparators) and collapseThreads (§4.4.3)."""
    assert call.account is not None
    account = call.account.id
    standard.check_read(EMAIL, call)
    query = EmailQuery(
        call.args.get("filter"),
        call.args.get("sort"),
        _bool_arg(call, "collapseThreads"),
        call.host.store.dialect,
    )
    position = standard.arg(call, "position", "Int", 0)
    anchor = standard.arg(call, "anchor", "Id|null")
    anchor_offset = standard.arg(call, "anchorOffset", "Int", 0)
    limit = standard.arg(call, "limit", "UnsignedInt|null")
    calculate_total = _bool_arg(call, "calculateTotal")
    clamped = limit is None or limit > EMAIL.query_limit
    page_size = EMAIL.query_limit if clamped else limit

    def read(db: Any) -> dict[str, Any]:
        nonlocal query
        modseq, _ = objectstore.current_modseq(db, account, EMAIL.name)
        access = sharing.access_for(db, call)
        if access is not None:
            query = sharee_query(db, access, call)
        total = None
        if anchor is not None:
            ids = query.ids(db, account)
            if anchor not in ids:
                raise MethodError("anchorNotFound")
            start = max(0, ids.index(anchor) + anchor_offset)
            page, total = ids[start : start + page_size], len(ids)
        else:
            if position < 0 or calculate_total:
                total = query.count(db, account)
            start = max(0, total + position) if position < 0 and total is not None else position
            page = query.ids(db, account, page_size, start)
        out: dict[str, Any] = {
            "accountId": account, "queryState": str(modseq),
            "canCalculateChanges": query.calculable, "position": start, "ids": page,
            "collapseThreads": query.collapse,
        }  # fmt: skip
        if calculate_total:
            out["total"] = total
        if clamped and limit is not None:
            out["limit"] = page_size
        return out

    return await call.host.store.read(read)


async def email_query_changes(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.5: the standard /queryChanges (RFC 8620 §5.6) from the change log, with
    this module's sorts.  Queries whose results depend on other Emails of the Thread
    (collapseThreads, the *InThreadHaveKeyword filters and sorts) cannot be followed from
    the log, and say so, as their /query answered canCalculateChanges false."""
    assert call.account is not None
    account = call.account.id
    standard.check_read(EMAIL, call)
    query = EmailQuery(
        call.args.get("filter"),
        call.args.get("sort"),
        _bool_arg(call, "collapseThreads"),
        call.host.store.dialect,
    )
    if not query.calculable:
        raise MethodError("cannotCalculateChanges", "this query depends on whole Threads")
    since = standard.parse_state(standard.arg(call, "sinceQueryState", "String"))

    def read(db: Any) -> dict[str, Any]:
        result = standard.query_changes_result(
            db, EMAIL, call, since, query.mutable, lambda: query.ids(db, account)
        )
        return {**result, "collapseThreads": False}

    return await call.host.store.read(read)


# -- Email/set and Email/import ----------------------------------------------------------------


async def email_set(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.6 Email/set.  Creates are built from the JSON (compose.py) and ingested
    like any message; updates (keywords, mailboxIds) and destroys go through the host's
    standard /set with this module's hooks, in the same write transaction, after the
    creates, so ``#creationId`` may name a new Email in update and destroy."""
    assert call.account is not None
    account = call.account
    if_in_state = standard.arg(call, "ifInState", "String|null")
    create, update, destroy = set_arguments(call)
    host = call.host
    principal = call.request.principal.name
    known_ids = dict(call.request.created_ids)
    limits = limits_for(host, account.owner)

    def write(db: Any, careful: bool) -> dict[str, Any]:
        old, _ = objectstore.current_modseq(db, account.id, EMAIL.name)
        access = sharing.access_for(db, call)
        if if_in_state is not None and if_in_state != str(old):
            raise MethodError("stateMismatch")
        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        new_ids = dict(known_ids)
        for creation_id, obj in (create or {}).items():
            try:
                record = atomically(
                    db,
                    partial(
                        _create_one, db, host, account.id, principal, obj, new_ids, limits, access
                    ),
                )
            except SetError as exc:
                not_created[creation_id] = exc.to_json()
                continue
            created[creation_id] = {k: record[k] for k in ("id", "blobId", "threadId", "size")}
            new_ids[creation_id] = record["id"]

        def resolve(value: str) -> str:
            return new_ids.get(value[1:], value) if value.startswith("#") else value

        rest = standard.run_set(
            EMAIL,
            call,
            account,
            db,
            None,
            None,
            None if update is None else {resolve(k): v for k, v in update.items()},
            None if destroy is None else [resolve(i) for i in destroy],
            careful,
        )
        rest.pop("_created_ids", None)
        rest.pop("_share_writes", None)  # (Email is no container: it changes no share)
        rest.update(oldState=str(old), created=created or None, notCreated=not_created or None)
        return {"result": rest, "ids": {k: new_ids[k] for k in created}}

    out = await standard.write_set(host.store, write)
    call.request.created_ids.update(out["ids"])
    await publish(host, account.id)
    return out["result"]


def _creation_ids(value: Any, created: dict[str, str]) -> Any:
    if not isinstance(value, dict):
        return value
    try:
        return standard.resolve_creation_ids(EMAIL.by_name["mailboxIds"], value, created)
    except SetError:
        raise SetError(
            "invalidProperties", "mailboxIds: unknown creation id", properties=["mailboxIds"]
        ) from None


def _check_metadata(spec: dict[str, Any], created: dict[str, str]) -> tuple[dict, dict, Any]:
    """mailboxIds (with #creation ids), keywords and receivedAt of a create, import or copy;
    SetError invalidProperties naming the bad ones."""
    mailbox_ids = _creation_ids(spec.get("mailboxIds"), created)
    keywords = spec.get("keywords") or {}
    received_at = spec.get("receivedAt")
    bad: list[str] = []
    for name, jmap_type, value, check in (
        ("mailboxIds", "Id[Boolean]", mailbox_ids, check_mailbox_ids),
        ("keywords", "String[Boolean]", keywords, check_keywords),
        ("receivedAt", "UTCDate|null", received_at, None),
    ):
        if not standard.value_ok(jmap_type, value):
            bad.append(name)
            continue
        if check is not None:
            try:
                check(value)
            except ValueError:
                bad.append(name)
    if bad:
        raise SetError("invalidProperties", "invalid " + ", ".join(bad), properties=bad)
    # Stored canonical (RFC 8620 §1.4): `.50Z` is kept as `.5Z`, `.000Z` as `Z`.
    return mailbox_ids, keywords, None if received_at is None else dates.canonical(received_at)


def _create_one(
    db: Any,
    host: Host,
    account: str,
    principal: str,
    obj: Any,
    created: dict[str, str],
    limits: QuotaLimits,
    access: Any = None,
) -> dict[str, Any]:
    """One Email/set create: validate, compose the message from blobs the user can see,
    ingest it."""
    bad = validate_create(obj)
    if bad:
        raise SetError("invalidProperties", "invalid " + ", ".join(bad), properties=bad)
    mailbox_ids, keywords, received_at = _check_metadata(obj, created)
    sharing.check_member_write(EMAIL, access, "create", None, {"mailboxIds": mailbox_ids})

    def blob_bytes(blob_id: str) -> bytes | None:
        if not standard.is_id(blob_id) or not blob_visible(db, account, blob_id, principal):
            return None
        return read_blob(host, blob_id)

    try:
        raw = compose_message(obj, blob_bytes)
    except ComposeError as exc:
        if exc.type == "blobNotFound":
            raise SetError("blobNotFound", exc.description, notFound=exc.not_found) from None
        raise SetError(exc.type, exc.description, properties=exc.properties) from None
    return ingest(db, host, account, raw, mailbox_ids, keywords, received_at, limits=limits)


# -- Email/copy (§4.7) -------------------------------------------------------------------------

COPY_PROPERTIES = {"id", "mailboxIds", "keywords", "receivedAt"}


async def email_copy(call: Call) -> list[tuple[str, dict[str, Any]]]:
    """RFC 8621 §4.7 Email/copy (RFC 8620 §5.4): the message is the same blob, referenced
    from the target account; the copy gets a new id, a Thread of the target account and the
    given mailboxIds (required: the original's are the other account's), keywords and
    receivedAt (default: the original's).  onSuccessDestroyOriginal runs the implicit
    Email/set destroy in the from account."""
    assert call.account is not None
    target = call.account
    from_id = standard.arg(call, "fromAccountId", "Id")
    if_from = standard.arg(call, "ifFromInState", "String|null")
    if_in = standard.arg(call, "ifInState", "String|null")
    create = standard.arg(call, "create", "Object")
    destroy_original = standard.arg(call, "onSuccessDestroyOriginal", "Boolean", False)
    destroy_if = standard.arg(call, "destroyFromIfInState", "String|null")
    if from_id == target.id:
        raise MethodError("invalidArguments", "fromAccountId must differ from accountId")
    source = call.request.accounts.get(from_id)
    if source is None:
        raise MethodError("fromAccountNotFound")
    if MAIL_URN not in call.request.account_capabilities.get(from_id, {}):
        raise MethodError("fromAccountNotSupportedByMethod")
    if len(create) > call.host.limits.max_objects_in_set:
        raise MethodError("requestTooLarge")
    host = call.host
    known_ids = dict(call.request.created_ids)
    limits = limits_for(host, target.owner)

    def write(db: Any) -> dict[str, Any]:
        from_modseq, _ = objectstore.current_modseq(db, source.id, EMAIL.name)
        seen_from = (
            sharing.load_access(db, host, source, call.request.principal) if source.shared else None
        )
        access = sharing.access_for(db, call)
        if if_from is not None and if_from != str(from_modseq):
            raise MethodError("stateMismatch", "ifFromInState does not match")
        old, _ = objectstore.current_modseq(db, target.id, EMAIL.name)
        if if_in is not None and if_in != str(old):
            raise MethodError("stateMismatch")
        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        originals: list[str] = []
        new_ids = dict(known_ids)
        for creation_id, obj in create.items():
            try:
                record, original = atomically(
                    db,
                    partial(
                        _copy_one, db, host, source.id, target.id, obj, new_ids, limits,
                        seen_from, access,
                    ),
                )
            except SetError as exc:
                not_created[creation_id] = exc.to_json()
                continue
            created[creation_id] = {k: record[k] for k in ("id", "blobId", "threadId", "size")}
            new_ids[creation_id] = record["id"]
            originals.append(original)
        new, _ = objectstore.current_modseq(db, target.id, EMAIL.name)
        return {
            "response": {
                "fromAccountId": source.id, "accountId": target.id, "oldState": str(old),
                "newState": str(new), "created": created or None,
                "notCreated": not_created or None,
            },
            "ids": {k: new_ids[k] for k in created},
            "originals": originals,
        }  # fmt: skip

    out = await host.store.write(write)
    call.request.created_ids.update(out["ids"])
    await publish(host, target.id)
    responses: list[tuple[str, dict[str, Any]]] = [(call.name, out["response"])]
    if destroy_original and out["originals"]:
        set_call = Call(
            name="Email/set",
            args={"accountId": source.id, "destroy": out["originals"], "ifInState": destroy_if},
            call_id=call.call_id,
            request=call.request,
            account=source,
        )
        try:
            responses.append(("Email/set", await email_set(set_call)))
        except MethodError as exc:
            responses.append(("error", exc.to_json()))
    return responses


def _copy_one(
    db: Any,
    host: Host,
    source: str,
    target: str,
    obj: Any,
    created: dict[str, str],
    limits: QuotaLimits,
    seen_from: Any = None,
    access: Any = None,
) -> tuple[dict[str, Any], str]:
    if not isinstance(obj, dict) or not standard.is_id(obj.get("id")):
        raise SetError("invalidProperties", "a copy needs the id of the Email", properties=["id"])
    other = sorted(set(obj) - COPY_PROPERTIES)
    if other:
        raise SetError(
            "invalidProperties", "only mailboxIds, keywords and receivedAt", properties=other
        )
    found = objectstore.read_records(db, EMAIL, source, [obj["id"]])
    if found and not sharing.visible_ids(db, EMAIL, seen_from, source, [obj["id"]]):
        found = []  # what a sharee cannot see does not exist
    if not found:
        raise SetError("notFound", f"no Email {obj['id']} in the from account")
    original = found[0]
    spec = {
        "mailboxIds": obj.get("mailboxIds"),
        "keywords": obj.get("keywords", original["keywords"]),
        "receivedAt": obj.get("receivedAt", original["receivedAt"]),
    }
    mailbox_ids, keywords, received_at = _check_metadata(spec, created)
    sharing.check_member_write(EMAIL, access, "create", None, {"mailboxIds": mailbox_ids})
    raw = read_blob(host, original["blobId"])
    if raw is None:
        raise SetError("notFound", "the message of this Email is gone")
    record = ingest(db, host, target, raw, mailbox_ids, keywords, received_at, limits=limits)
    return record, original["id"]


# -- Email/parse (§4.9) ------------------------------------------------------------------------

PARSE_DEFAULT_PROPERTIES = [
    "messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo",
    "subject", "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody",
    "attachments",
]  # fmt: skip
PARSE_NULL = {"id", "mailboxIds", "keywords", "receivedAt"}
BODY_PART_PROPERTIES = {"bodyStructure", "textBody", "htmlBody", "attachments"}


def _get_arguments(call: Call, default: list[str]) -> tuple[list[str], Any, dict[str, Any]]:
    """properties, bodyProperties and the fetch* arguments of Email/get and Email/parse."""
    properties = call.args.get("properties")
    if properties is None:
        properties = default
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise MethodError("invalidArguments", "properties must be an array of strings")
    body_properties = call.args.get("bodyProperties")
    if body_properties is not None and (
        not isinstance(body_properties, list)
        or not all(isinstance(p, str) for p in body_properties)
    ):
        raise MethodError("invalidArguments", "bodyProperties must be an array of strings")
    known = set(EMAIL.by_name) | MESSAGE_PROPERTIES | {"id"}
    bad = [p for p in properties if p not in known and not p.startswith("header:")]
    bad += invalid_properties(properties)
    if body_properties is not None:
        bad += invalid_properties(body_properties, body=True)
    if bad:
        raise MethodError("invalidArguments", f"invalid properties: {', '.join(bad)}")
    max_bytes = call.args.get("maxBodyValueBytes", 0)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
        raise MethodError("invalidArguments", "maxBodyValueBytes must be an UnsignedInt")
    fetch = {
        "fetch_text_body_values": _bool_arg(call, "fetchTextBodyValues"),
        "fetch_html_body_values": _bool_arg(call, "fetchHTMLBodyValues"),
        "fetch_all_body_values": _bool_arg(call, "fetchAllBodyValues"),
        "max_body_value_bytes": max_bytes,
    }
    return properties, body_properties, fetch


def parsable(parsed: Any) -> bool:
    """A blob is taken for a message when it starts with at least one header field."""
    return bool(parsed.headers)


async def email_parse(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.9 Email/parse: blobs the user can see, parsed as messages.  id,
    mailboxIds, keywords and receivedAt are null; threadId is the Thread the message would
    join if imported (or null); the parts' blobIds are the parts' own content-addressed
    blobs, stored and referenced in the account (they can only be named by someone who
    knows their content) so the client can download them."""
    assert call.account is not None
    account = call.account.id
    blob_ids = standard.arg(call, "blobIds", "String[]")
    check_get_size(call, blob_ids)
    properties, body_properties, fetch = _get_arguments(call, PARSE_DEFAULT_PROPERTIES)
    blob_ids = list(dict.fromkeys(blob_ids))
    principal = call.request.principal.name
    host = call.host
    with_parts = bool(BODY_PART_PROPERTIES & set(properties)) and (
        body_properties is None or "blobId" in body_properties
    )

    def write(db: Any) -> dict[str, Any]:
        parsed_out: dict[str, Any] = {}
        not_parsable: list[str] = []
        not_found: list[str] = []
        for blob_id in blob_ids:
            raw = None
            if standard.is_id(blob_id) and blob_visible(db, account, blob_id, principal):
                raw = read_blob(host, blob_id)
            if raw is None:
                not_found.append(blob_id)
                continue
            parsed = parse_message(raw)
            if not parsable(parsed):
                not_parsable.append(blob_id)
                continue
            parts: dict[str, str] = {}
            if with_parts:
                for part_id in parsed.part_ids:
                    parts[part_id] = write_blob(host, parsed.part_bytes(part_id))
                    add_blob_reference(db, account, parts[part_id], f"EmailParse:{blob_id}")
            email = parsed.get(
                properties, blob_id_for=parts.get, body_properties=body_properties, **fetch
            )
            for name in properties:
                if name in PARSE_NULL:
                    email[name] = None
                elif name == "blobId":
                    email[name] = blob_id
                elif name == "size":
                    email[name] = len(raw)
                elif name == "threadId":
                    keys, subject = parsed.thread_keys()
                    email[name] = store.find_thread(db, account, keys, subject) if keys else None
            parsed_out[blob_id] = email
        return {
            "accountId": account,
            "parsed": parsed_out or None,
            "notParsable": not_parsable or None,
            "notFound": not_found or None,
        }

    return await host.store.write(write)


# -- Mailbox/set (§2.5) ------------------------------------------------------------------------

# Mailbox/set is this module's, not the host's standard one: onDestroyRemoveEmails changes
# Emails and Threads (and other Mailboxes' counts) in the same transaction, and push
# listeners must hear every type that changed, not only Mailbox.  The Mailbox type is
# registered without its standard "set" (MAILBOX_TYPE) and this method takes its place; the
# work is still the standard /set with mailbox.py's hooks.
MAILBOX_TYPE = dataclasses.replace(MAILBOX, methods=tuple(m for m in MAILBOX.methods if m != "set"))


async def mailbox_set(call: Call) -> dict[str, Any]:
    result = await standard.type_set(MAILBOX, call)
    assert call.account is not None
    await publish(call.host, call.account.id)
    return result


async def email_import(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.8 Email/import: messages uploaded as blobs become Emails.

    The work is split so the write lock is held only for the SQL: (1) one read transaction
    checks which blobs the user may use; (2) a worker thread reads and parses those
    messages and stages their part blobs (files written, fsyncs started: they overlap the
    parsing of the next message); (3) the write transaction checks everything again
    (blobs, Mailboxes, state), places the staged files, inserts every row of the batch and
    waits for the files' directory fsyncs before it commits."""
    assert call.account is not None
    account = call.account.id
    if_in_state = standard.arg(call, "ifInState", "String|null")
    emails = call.args.get("emails")
    if not isinstance(emails, dict):
        raise MethodError("invalidArguments", "emails must be a map of creation id to EmailImport")
    if len(emails) > call.host.limits.max_objects_in_set:
        raise MethodError("requestTooLarge")
    principal = call.request.principal.name
    host = call.host
    # creation id -> the SetError of a malformed EmailImport, or its (blobId, mailboxIds,
    # keywords, receivedAt)
    specs: dict[str, SetError | tuple[str, dict[str, bool], dict[str, bool], str | None]] = {}
    for creation_id, spec in emails.items():
        try:
            specs[creation_id] = _check_import(spec)
        except SetError as exc:
            specs[creation_id] = exc
    wanted = list(dict.fromkeys(s[0] for s in specs.values() if not isinstance(s, SetError)))

    def visible(db: Any) -> set[str]:
        return blobs_visible(db, account, wanted, principal)

    limits = limits_for(host, call.account.owner)

    staged = StagedBlobs(host)
    prepared: dict[str, PreparedMessage | None] = {}  # blobId -> message (None: no file)

    def prepare(blob_id: str, raw: bytes | None) -> PreparedMessage | None:
        if raw is None:
            return None
        # The uploaded message is there already (content-addressed: no hashing); place()
        # checks again under the write lock that it still is.
        staged.stage(raw, blob_id, present=True)
        return prepare_message(raw, staged.stage, blob_id)

    def prepare_all(blob_ids: set[str]) -> None:
        # The files are read ahead by other threads while this one parses.
        reads = {b: _READERS.submit(read_blob, host, b) for b in wanted if b in blob_ids}
        for blob_id, raw in reads.items():
            prepared[blob_id] = prepare(blob_id, raw.result())

    def write(db: Any) -> dict[str, Any]:
        old, _ = objectstore.current_modseq(db, account, EMAIL.name)
        if if_in_state is not None and if_in_state != str(old):
            raise MethodError("stateMismatch")
        not_created: dict[str, Any] = {}
        # One read of the Mailboxes for the batch: nothing below creates or destroys one.
        mailboxes = {m["id"] for m in objectstore.read_records(db, MAILBOX, account, None, [])}
        access = sharing.access_for(db, call)
        accepted: list[tuple[str, PreparedMessage, dict, dict, str | None]] = []
        accepted_octets = 0  # (what the batch adds, for the quota: it is inserted at once)
        # Again under the write lock: visibility may have changed since the read.
        still_visible = blobs_visible(db, account, wanted, principal)
        for creation_id, spec in specs.items():
            if isinstance(spec, SetError):
                not_created[creation_id] = spec.to_json()
                continue
            blob_id, mailbox_ids, keywords, received_at = spec
            try:
                if blob_id not in still_visible:
                    raise SetError("invalidProperties", "no such blob", properties=["blobId"])
                if blob_id not in prepared:  # became visible since: prepare it now
                    prepared[blob_id] = prepare(blob_id, read_blob(host, blob_id))
                message = prepared[blob_id]
                if message is None:
                    raise SetError("invalidProperties", "no such blob", properties=["blobId"])
                sharing.check_member_write(EMAIL, access, "create", None,
                                           {"mailboxIds": mailbox_ids})  # fmt: skip
                check_mailboxes_exist(mailbox_ids, mailboxes)
                check_quota(
                    db, limits, account, octets=accepted_octets + message.size,
                    count=len(accepted) + 1,
                )  # fmt: skip
            except SetError as exc:
                not_created[creation_id] = exc.to_json()
                continue
            accepted_octets += message.size
            accepted.append((creation_id, message, mailbox_ids, keywords, received_at))
        # The staged files of the accepted messages go into place now; their directories
        # are fsynced while the rows are inserted, and waited for before COMMIT (below): an
        # acknowledged import never names a file a crash could lose.  Waited for on failure
        # too, before the lock is released: the next import may find a file renamed here.
        try:
            staged.place(b for _, m, *_ in accepted for b in (m.blob_id, *m.parts.values()))
            records = ingest_prepared(db, account, [a[1:] for a in accepted])
        finally:
            staged.wait()
        created = {
            a[0]: {k: record[k] for k in ("id", "blobId", "threadId", "size")}
            for a, record in zip(accepted, records, strict=True)
        }
        new, _ = objectstore.current_modseq(db, account, EMAIL.name)
        return {
            "accountId": account,
            "oldState": str(old),
            "newState": str(new),
            "created": created or None,
            "notCreated": {c: not_created[c] for c in specs if c in not_created} or None,
        }

    try:
        if wanted:
            allowed = await host.store.read(visible)
            await trio.to_thread.run_sync(prepare_all, allowed)
        result = await host.store.write(write)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(staged.close)
    for creation_id, entry in (result["created"] or {}).items():
        call.request.created_ids[creation_id] = entry["id"]
    await publish(host, account)
    return result


# Threads reading the messages of an Email/import ahead of the one parsing them.
_READERS = ThreadPoolExecutor(4, thread_name_prefix="jmap-mail-read")


def _check_import(spec: Any) -> tuple[str, dict[str, bool], dict[str, bool], str | None]:
    """An EmailImport's (blobId, mailboxIds, keywords, receivedAt), or SetError."""
    if not isinstance(spec, dict):
        raise SetError("invalidProperties", "an EmailImport must be an object")
    bad = [
        name
        for name, jmap_type in (
            ("blobId", "Id"),
            ("mailboxIds", "Id[Boolean]"),
            ("keywords", "String[Boolean]|null"),
            ("receivedAt", "UTCDate|null"),
        )
        if not standard.value_ok(jmap_type, spec.get(name))
    ]
    if bad:
        raise SetError("invalidProperties", "invalid " + ", ".join(bad), properties=bad)
    mailbox_ids, keywords = spec["mailboxIds"], spec.get("keywords") or {}
    for name, check, value in (
        ("mailboxIds", check_mailbox_ids, mailbox_ids),
        ("keywords", check_keywords, keywords),
    ):
        try:
            check(value)
        except ValueError as exc:
            raise SetError("invalidProperties", f"{name}: {exc}", properties=[name]) from None
    received_at = spec.get("receivedAt")
    if received_at is not None:
        received_at = dates.canonical(received_at)  # stored as sent back (RFC 8620 §1.4)
    return spec["blobId"], mailbox_ids, keywords, received_at


def email_methods() -> list[Method]:
    from .snippet import search_snippet_get

    return [
        Method("Email/get", email_get),
        Method("Email/query", email_query),
        Method("Email/queryChanges", email_query_changes),
        Method("Email/set", email_set, writes=True),
        Method("Email/copy", email_copy, writes=True),
        Method("Email/import", email_import, writes=True),
        Method("Email/parse", email_parse, writes=True),
        Method("SearchSnippet/get", search_snippet_get),
        Method("Mailbox/set", mailbox_set, writes=True),
    ]


__all__ = [
    "DEFAULT_BODY_PROPERTIES",
    "EMAIL",
    "MAILBOX_TYPE",
    "SORT_OPTIONS",
    "THREAD",
    "email_methods",
    "ingest",
    "time",
]
