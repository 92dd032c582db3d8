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

import time
from datetime import UTC, datetime
from typing import Any

from jmap_host import (
    Call,
    DataType,
    FilterCondition,
    Host,
    Method,
    MethodError,
    Property,
    SetContext,
    SetError,
    add_blob_reference,
    blob_visible,
    check_get_size,
    objectstore,
    read_blob,
    remove_blob_references,
    standard,
    write_blob,
)

from . import store
from .mailbox import MAILBOX
from .message import DEFAULT_BODY_PROPERTIES, invalid_properties, parse_message

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
    marks = ", ".join("?" * len(value)) or "NULL"
    return (
        f"EXISTS (SELECT 1 FROM {store.MEMBERSHIP} m WHERE m.account = [mail_email].account "
        f"AND m.email_id = [mail_email].id AND m.mailbox_id NOT IN ({marks}))",
        list(value),
    )


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


def _text(field: str) -> Any:
    return lambda value: store.fts_condition("mail_email", store.FTS_COLUMNS[field], value)


def _unsupported(name: str) -> Any:
    def condition(value: Any) -> tuple[str, list[Any]]:
        raise MethodError("unsupportedFilter", f"{name} is not supported yet")

    return condition


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
        FilterCondition(
            "header", "subject", "custom", value_type="String[]", sql=_unsupported("header")
        ),
    ],
    methods=("changes",),
    default_sort=("receivedAt",),
    get_all=False,
)

THREAD = DataType(
    name="Thread",
    table="mail_thread",
    properties=[Property("emailIds", "Id[]", server_set=True, default=[])],
    methods=("get", "changes"),
    get_all=False,
)


# -- ingesting a message -----------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _addresses_text(addresses: list[dict[str, Any]] | None) -> str:
    return " ".join(
        " ".join(filter(None, (a.get("name"), a.get("email")))) for a in addresses or []
    )


def ingest(
    db: Any,
    host: Host,
    account: str,
    raw: bytes,
    mailbox_ids: dict[str, bool],
    keywords: dict[str, bool],
    received_at: str | None = None,
) -> dict[str, Any]:
    """Store ``raw`` as a new Email in ``account`` inside the caller's write transaction;
    returns the Email record.  Raises SetError for bad mailboxIds or keywords."""
    existing = {m["id"] for m in objectstore.read_records(db, MAILBOX, account, None, ["name"])}
    unknown = [m for m in mailbox_ids if m not in existing]
    if unknown:
        raise SetError(
            "invalidProperties", f"no such Mailbox: {', '.join(unknown)}", properties=["mailboxIds"]
        )
    parsed = parse_message(raw)
    blob_id = write_blob(host, raw)
    email_id = objectstore.new_id()
    keys, subject = parsed.thread_keys()
    thread_id = store.find_thread(db, account, keys, subject) if keys else None
    if thread_id is None:
        thread_id = objectstore.new_id()
        objectstore.insert_record(db, THREAD, account, {"id": thread_id, "emailIds": [email_id]})
        objectstore.record_change(db, account, THREAD.name, thread_id, "created")
    else:
        thread = objectstore.read_records(db, THREAD, account, [thread_id])[0]
        thread["emailIds"] = [*thread["emailIds"], email_id]
        objectstore.update_record(db, THREAD, account, thread)
        objectstore.record_change(db, account, THREAD.name, thread_id, "updated")
    store.add_thread_keys(db, account, keys, thread_id, subject)
    meta = parsed.get(
        [
            "messageId",
            "inReplyTo",
            "references",
            "sender",
            "from",
            "to",
            "cc",
            "bcc",
            "replyTo",
            "subject",
            "sentAt",
            "hasAttachment",
            "preview",
        ]
    )
    record = {
        "id": email_id,
        "blobId": blob_id,
        "threadId": thread_id,
        "mailboxIds": dict(mailbox_ids),
        "keywords": dict(keywords),
        "size": len(raw),
        "receivedAt": received_at or utc_now(),
        **meta,
    }
    objectstore.insert_record(db, EMAIL, account, record)
    objectstore.record_change(db, account, EMAIL.name, email_id, "created")
    # RFC 8621 §1.5: EmailDelivery changes when, and only when, an Email arrives.
    objectstore.record_change(db, account, "EmailDelivery", email_id, "created")
    add_blob_reference(db, account, blob_id, f"Email:{email_id}")
    parts = {}
    for part_id in parsed.part_ids:
        part_blob = write_blob(host, parsed.part_bytes(part_id))
        parts[part_id] = part_blob
        add_blob_reference(db, account, part_blob, f"EmailPart:{email_id}")
    store.set_parts(db, account, email_id, parts)
    store.set_membership(db, account, email_id, thread_id, mailbox_ids, keywords)
    _mailboxes_changed(db, account, mailbox_ids)
    body_text = " ".join(
        value["value"] for value in parsed.body_values(True, True, False, 200_000).values()
    )
    store.index_text(db, account, email_id, {
        "subject": meta.get("subject") or "", "from": _addresses_text(meta.get("from")),
        "to": _addresses_text(meta.get("to")), "cc": _addresses_text(meta.get("cc")),
        "bcc": _addresses_text(meta.get("bcc")), "body": body_text,
    })  # fmt: skip
    return record


def _mailboxes_changed(db: Any, account: str, mailbox_ids: Any) -> None:
    """Counts are Mailbox properties: a Mailbox whose counts change gets a new state."""
    for mailbox_id in mailbox_ids:
        objectstore.record_change(db, account, MAILBOX.name, mailbox_id, "updated")


# -- Email/set hooks (updates and destroys) ----------------------------------------------------


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new["mailboxIds"] != old["mailboxIds"]:
        existing = {
            m["id"] for m in objectstore.read_records(ctx.db, MAILBOX, ctx.account.id, None, [])
        }
        unknown = [m for m in new["mailboxIds"] if m not in existing]
        if unknown:
            raise SetError(
                "invalidProperties",
                f"no such Mailbox: {', '.join(unknown)}",
                properties=["mailboxIds"],
            )
    if new["mailboxIds"] != old["mailboxIds"] or new["keywords"] != old["keywords"]:
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

MAIL_TYPES = ("Email", "Thread", "Mailbox", "EmailDelivery")


async def publish(host: Host, account: str) -> None:
    """Tell push listeners the new states of the mail types in ``account``."""
    states = await host.store.read(lambda db: dict(objectstore.type_states(db, account)))
    host.push.publish(account, {t: str(states[t]) for t in MAIL_TYPES if t in states})


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
    properties = call.args.get("properties")
    if properties is None:
        properties = DEFAULT_PROPERTIES
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
    stored = [p for p in properties if p in EMAIL.by_name]
    from_message = [p for p in properties if p not in EMAIL.by_name and p != "id"]
    host = call.host

    def read(db: Any) -> tuple[int, list[dict[str, Any]], dict[str, dict[str, str]]]:
        modseq, _ = objectstore.current_modseq(db, account, EMAIL.name)
        valid = [i for i in ids if standard.is_id(i)]
        records = objectstore.read_records(db, EMAIL, account, valid, [*stored, "blobId"])
        parts = {r["id"]: store.get_parts(db, account, r["id"]) for r in records}
        return modseq, records, parts

    modseq, records, parts = await host.store.read(read)
    out = []
    for record in records:
        email = {"id": record["id"], **{p: record[p] for p in stored}}
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


async def email_query(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.4 Email/query: the standard /query with the mail filters and sorts, and
    collapseThreads (§4.4.3: only the first Email of each Thread, in the sort order)."""
    collapse = _bool_arg(call, "collapseThreads")
    if not collapse:
        result = await standard.type_query(EMAIL, call)
        return {**result, "collapseThreads": False}
    assert call.account is not None
    account = call.account.id
    where, order, _ = standard.compile_query(EMAIL, call.args.get("filter"), call.args.get("sort"))
    position = standard.arg(call, "position", "Int", 0)
    anchor = standard.arg(call, "anchor", "Id|null")
    anchor_offset = standard.arg(call, "anchorOffset", "Int", 0)
    limit = standard.arg(call, "limit", "UnsignedInt|null")
    calculate_total = _bool_arg(call, "calculateTotal")
    clamped = limit is None or limit > EMAIL.query_limit
    page_size = EMAIL.query_limit if clamped else limit

    def read(db: Any) -> dict[str, Any]:
        modseq, _ = objectstore.current_modseq(db, account, EMAIL.name)
        ids = collapsed_ids(db, account, where, order)
        if anchor is not None:
            if anchor not in ids:
                raise MethodError("anchorNotFound")
            start = max(0, ids.index(anchor) + anchor_offset)
        else:
            start = max(0, len(ids) + position) if position < 0 else position
        out: dict[str, Any] = {
            "accountId": account, "queryState": str(modseq), "canCalculateChanges": False,
            "position": start, "ids": ids[start : start + page_size], "collapseThreads": True,
        }  # fmt: skip
        if calculate_total:
            out["total"] = len(ids)
        if clamped and limit is not None:
            out["limit"] = page_size
        return out

    return await call.host.store.read(read)


def collapsed_ids(db: Any, account: str, where: tuple[str, list], order: str) -> list[str]:
    """Matching ids in order, keeping only each Thread's first."""
    seen: set[str] = set()
    out = []
    thread_col = objectstore.column(EMAIL.by_name["threadId"])
    rows = db.execute(
        f"SELECT id, [{thread_col}] FROM mail_email WHERE account = ? AND ({where[0]}) "
        f"ORDER BY {order}",
        [account, *where[1]],
    ).fetchall()
    for email_id, thread_id in rows:
        if thread_id not in seen:
            seen.add(thread_id)
            out.append(email_id)
    return out


async def email_query_changes(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.5: the standard /queryChanges; with collapseThreads the server cannot
    calculate it from the log and says so (as its /query answered canCalculateChanges)."""
    if _bool_arg(call, "collapseThreads"):
        raise MethodError("cannotCalculateChanges", "collapseThreads queries: refetch")
    result = await standard.type_query_changes(EMAIL, call)
    return {**result, "collapseThreads": False}


# -- Email/set and Email/import ----------------------------------------------------------------


async def email_set(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.6 Email/set: updates (keywords, mailboxIds) and destroys through the
    standard /set; creation from JSON arrives with compose.py."""
    if call.args.get("create"):
        raise MethodError(
            "invalidArguments", "Email/set create is not available yet; use Email/import"
        )
    result = await standard.type_set(EMAIL, call)
    assert call.account is not None
    await publish(call.host, call.account.id)
    return result


async def email_import(call: Call) -> dict[str, Any]:
    """RFC 8621 §4.8 Email/import: messages uploaded as blobs become Emails."""
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

    def write(db: Any) -> dict[str, Any]:
        old, _ = objectstore.current_modseq(db, account, EMAIL.name)
        if if_in_state is not None and if_in_state != str(old):
            raise MethodError("stateMismatch")
        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        for creation_id, spec in emails.items():
            db.execute("SAVEPOINT jmap_import")
            try:
                record = _import_one(db, host, account, principal, spec)
            except SetError as exc:
                db.execute("ROLLBACK TO jmap_import")
                db.execute("RELEASE jmap_import")
                not_created[creation_id] = exc.to_json()
                continue
            db.execute("RELEASE jmap_import")
            created[creation_id] = {k: record[k] for k in ("id", "blobId", "threadId", "size")}
        new, _ = objectstore.current_modseq(db, account, EMAIL.name)
        return {
            "accountId": account,
            "oldState": str(old),
            "newState": str(new),
            "created": created or None,
            "notCreated": not_created or None,
        }

    result = await host.store.write(write)
    for creation_id, entry in (result["created"] or {}).items():
        call.request.created_ids[creation_id] = entry["id"]
    await publish(host, account)
    return result


def _import_one(db: Any, host: Host, account: str, principal: str, spec: Any) -> dict:
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
    if not blob_visible(db, account, spec["blobId"], principal):
        raise SetError("invalidProperties", "no such blob", properties=["blobId"])
    raw = read_blob(host, spec["blobId"])
    if raw is None:
        raise SetError("invalidProperties", "no such blob", properties=["blobId"])
    return ingest(db, host, account, raw, mailbox_ids, keywords, spec.get("receivedAt"))


def email_methods() -> list[Method]:
    return [
        Method("Email/get", email_get),
        Method("Email/query", email_query),
        Method("Email/queryChanges", email_query_changes),
        Method("Email/set", email_set, writes=True),
        Method("Email/import", email_import, writes=True),
    ]


__all__ = ["DEFAULT_BODY_PROPERTIES", "EMAIL", "THREAD", "email_methods", "ingest", "time"]
