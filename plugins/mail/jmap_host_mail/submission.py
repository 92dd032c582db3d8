"""EmailSubmission (RFC 8621 §7): sending an Email, locally and through the SMTP relay.

EmailSubmission is a declared data type; /get and /changes are the host's standard
methods, /set, /query and /queryChanges wrap the standard ones (the implicit Email/set of
``onSuccessUpdateEmail`` / ``onSuccessDestroyEmail``; ``sentAt`` accepted as a sort name
for ``sendAt``, as the RFC's list of sort properties spells it).

When is mail sent?  A create is acknowledged only once it is durable, and nothing leaves
the server for a record that could still roll back.  So the create hook, inside the /set's
write transaction:

* checks the Email, the Identity and the envelope (§7.5 errors, §9.6 From rules);
* delivers to **local** recipients (addresses the directory knows) right there, with
  ``email.ingest`` into each recipient account's Inbox: those copies commit or roll back
  with the EmailSubmission itself (``delivered: "yes"``);
* puts the **remote** recipients in the durable outbound queue (``mail_outbound``,
  ``delivered: "queued"``).

After the commit a background task (started on ``host.nursery``) claims queued rows, sends
them through ``[plugins.mail.smtp]`` with smtplib in a worker thread, and updates the
EmailSubmission's ``deliveryStatus`` (``unknown`` once the relay accepted: relaying is not
final delivery, §7; ``no`` on a 5xx or after ``max-attempts``; temporary failures are
retried with doubling delays).  ``undoStatus`` is ``pending`` while the row waits in the
queue, and may then be set to ``canceled`` (the row is removed); it becomes ``final`` when
the row is claimed for sending, or at once when a local recipient already has the message.
A crash while a row is being sent leaves it claimed; the next start queues it again, so a
message may be sent twice but is never lost (at-least-once, like any MTA queue).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
import trio

from jmap_host import (
    Account,
    Call,
    DataType,
    DirectoryUnavailable,
    FilterCondition,
    Host,
    InvalidAddress,
    Method,
    MethodError,
    Principal,
    Property,
    SetContext,
    SetError,
    objectstore,
    read_blob,
    standard,
)

from .email import EMAIL, ingest_delivered, publish, utc_now
from .identity import IDENTITY, get_identity, may_send_as, provision_identities
from .mailbox import MAILBOX, default_mailboxes
from .message import ParsedMessage, parse_message
from .smtp import RelayConfig, Reply, prepare_for_sending, relay_send, submission_config
from .smtp import valid_address as _valid_address
from .vacation import auto_reply, provision_vacation, send_auto_reply

log = logging.getLogger("jmap_host_mail.submission")

SUBMISSION = "urn:ietf:params:jmap:submission"
OUTBOUND = "mail_outbound"
UNDO_STATUSES = ("pending", "final", "canceled")
MAX_LOOKUPS = 1000  # directory look-ups one /set may cause before its transaction
POLL_INTERVAL = 60.0

migrations = sqlite_utils.Migrations("jmap-host-mail-outbound")


@migrations()
def create_outbound(db: sqlite_utils.Database) -> None:
    db[OUTBOUND].create(
        {
            "id": int, "account": str, "submission_id": str, "mail_from": str, "rcpt_to": str,
            "data": bytes, "state": str, "attempts": int, "next_attempt": float, "created": float,
        },
        pk="id",
    )  # fmt: skip
    db[OUTBOUND].create_index(["state", "next_attempt"])
    db[OUTBOUND].create_index(["account", "submission_id"])


# -- the data type ----------------------------------------------------------------------------


def check_envelope(envelope: dict[str, Any]) -> None:
    """Envelope shape (§7): mailFrom Address, rcptTo Address[].  We advertise no
    submission extensions, so parameters must be null (or empty)."""

    def address(value: Any, where: str) -> None:
        if not isinstance(value, dict) or set(value) - {"email", "parameters"}:
            raise ValueError(f"{where} must be an Address object")
        if not isinstance(value.get("email"), str):
            raise ValueError(f"{where}/email must be a String")
        if value.get("parameters"):
            raise ValueError(f"{where}/parameters: no SMTP extensions are supported")

    if set(envelope) - {"mailFrom", "rcptTo"}:
        raise ValueError("an Envelope has only mailFrom and rcptTo")
    address(envelope.get("mailFrom"), "mailFrom")
    if not isinstance(envelope.get("rcptTo"), list):
        raise ValueError("rcptTo must be an array of Address objects")
    for i, rcpt in enumerate(envelope["rcptTo"]):
        address(rcpt, f"rcptTo/{i}")


def check_undo_status(value: str) -> None:
    if value not in UNDO_STATUSES:
        raise ValueError(f"must be one of {', '.join(UNDO_STATUSES)}")


def _in_list(name: str) -> Any:
    def condition(value: list[str]) -> tuple[str, list[Any]]:
        column = objectstore.column(EMAIL_SUBMISSION.by_name[name])
        # One JSON parameter however long the list (SQLite binds at most 32766).
        sql = f"[mail_submission].[{column}] IN (SELECT value FROM json_each(?))"
        return sql, [json.dumps(list(value))]

    return condition


EMAIL_SUBMISSION = DataType(
    name="EmailSubmission",
    table="mail_submission",
    properties=[
        Property("identityId", "Id", required=True, immutable=True, indexed=True),
        Property("emailId", "Id", required=True, immutable=True, sortable=True),
        Property("threadId", "Id", server_set=True, immutable=True, sortable=True),
        Property("envelope", "Object|null", immutable=True, validate=check_envelope),
        Property("sendAt", "UTCDate", server_set=True, immutable=True, sortable=True),
        Property(
            "undoStatus", "String", default="pending", validate=check_undo_status, indexed=True
        ),
        Property("deliveryStatus", "String[Object]|null", server_set=True),
        Property("dsnBlobIds", "Id[]", server_set=True, default=[]),
        Property("mdnBlobIds", "Id[]", server_set=True, default=[]),
    ],
    filters=[
        FilterCondition("identityIds", "identityId", "custom", "Id[]", _in_list("identityId")),
        FilterCondition("emailIds", "emailId", "custom", "Id[]", _in_list("emailId")),
        FilterCondition("threadIds", "threadId", "custom", "Id[]", _in_list("threadId")),
        FilterCondition("undoStatus", "undoStatus"),
        FilterCondition("before", "sendAt", "lt"),
        FilterCondition("after", "sendAt", "ge"),
    ],
    methods=("get", "changes"),
    default_sort=("sendAt",),
)


# -- what one /set shares between its hooks and the code around it ---------------------------


@dataclass
class Pending:
    """Directory answers fetched before the transaction, and what to do after it."""

    resolved: dict[str, Principal | None] = field(default_factory=dict)
    delivered_accounts: set[str] = field(default_factory=set)
    receiver_changes: dict[str, set[str]] = field(default_factory=dict)  # (messaging)
    email_of: dict[str, str] = field(default_factory=dict)  # submission id -> emailId


_PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "jmap_host_mail_submission", default=None
)


def _pending() -> Pending:
    pending = _PENDING.get()
    if pending is None:  # a hook run outside submission_set: nothing shared, but it works
        pending = Pending()
        _PENDING.set(pending)
    return pending


def _lookup(host: Host, address: str) -> Principal | None:
    """The local principal for ``address``, from the pre-fetched answers; a miss is asked
    of the directory from this worker thread (rare: the Email changed in between)."""
    pending = _pending()
    key = address.lower()
    if key in pending.resolved:
        return pending.resolved[key]
    try:
        principal = trio.from_thread.run(host.directory.lookup_email, address)
    except DirectoryUnavailable:
        raise SetError("forbiddenToSend", "the directory is unavailable; try again") from None
    pending.resolved[key] = principal
    return principal


# -- local delivery ---------------------------------------------------------------------------


def inbox_of(db: Any, host: Host, principal: Principal) -> str:
    """The Inbox of ``principal``'s account, provisioning the mail defaults of an account
    that has not logged in yet (the hooks are idempotent, so its first login is fine)."""
    account = principal.account_id

    def find() -> str | None:
        for m in objectstore.read_records(db, MAILBOX, account, None, ["role"]):
            if m.get("role") == "inbox":
                return str(m["id"])
        return None

    inbox = find()
    if inbox is None:
        default_mailboxes(db, account)
        provision_identities(db, account, principal.description, principal.emails)
        provision_vacation(db, account)
        inbox = find()
    assert inbox is not None
    return inbox


def deliver_local(
    db: Any, host: Host, principal: Principal, data: bytes, mail_from: str, recipient: str
) -> tuple[Reply, set[str]]:
    """Store ``data`` in the Inbox of ``principal``'s account (inside the caller's write
    transaction, email.ingest_delivered: the host's mail receivers are told) and queue its
    vacation reply, if any.  Returns the reply and the data types the receivers changed,
    to push after the commit (email.publish)."""
    account = principal.account_id
    message = f"Return-Path: <{mail_from}>\r\n".encode() + data
    _, changed = ingest_delivered(db, host, principal, message, inbox_of(db, host, principal),
                                  mail_from)  # fmt: skip
    parsed = parse_message(message)
    reply = auto_reply(db, host, account, parsed, message, recipient, mail_from=mail_from)
    if reply is not None:
        send_auto_reply(db, host, account, reply)
    return Reply(250, "250 2.0.0 delivered to the recipient's mailbox"), changed


# -- the outbound queue -----------------------------------------------------------------------


class _Wakeup:
    def __init__(self) -> None:
        self.event = trio.Event()


_WAKEUPS: weakref.WeakKeyDictionary[Any, _Wakeup] = weakref.WeakKeyDictionary()


def _wakeup(host: Host) -> _Wakeup:
    wake = _WAKEUPS.get(host)
    if wake is None:
        wake = _WAKEUPS[host] = _Wakeup()
    return wake


def kick(host: Host) -> None:
    """Wake the queue runner (from the event loop)."""
    _wakeup(host).event.set()


def _kick_from_thread(host: Host) -> None:
    # Outside a trio worker thread there is no loop to wake: the runner polls anyway.
    with contextlib.suppress(RuntimeError):
        trio.from_thread.run_sync(kick, host)


def enqueue(
    db: Any,
    host: Host,
    account: str,
    mail_from: str,
    rcpt_to: list[str],
    data: bytes,
    submission_id: str | None = None,
) -> None:
    """Queue ``data`` for ``rcpt_to`` inside the caller's write transaction; the runner
    sends it once the transaction has committed."""
    now = time.time()
    # The next id as SQLite gives an INTEGER PRIMARY KEY (one above the highest), taken
    # here so that PostgreSQL, which has no such alias of the rowid, gets the same; the
    # write lock makes it safe.
    top = db.execute(f"SELECT max(id) FROM {OUTBOUND}").fetchone()[0]
    db[OUTBOUND].insert(
        {
            "id": int(top or 0) + 1,
            "account": account, "submission_id": submission_id, "mail_from": mail_from,
            "rcpt_to": json.dumps(rcpt_to), "data": data, "state": "queued", "attempts": 0,
            "next_attempt": now, "created": now,
        }
    )  # fmt: skip
    _kick_from_thread(host)


def transport_enqueue(
    db: Any, host: Host, sender: Principal, mail_from: str, recipients: list[str], data: bytes
) -> None:
    """jmap_host.messaging's transport: another plugin's message on the outbound queue,
    sent as ``sender`` once the caller's transaction commits; the queue runner delivers
    to local recipients (deliver_local) and relays the others, as for an EmailSubmission
    without its record."""
    bad = [a for a in [mail_from, *recipients] if not _valid_address(a)]
    if bad:
        raise InvalidAddress(f"not a mail address: {', '.join(bad)}")
    enqueue(db, host, sender.account_id, mail_from, recipients, data)


def _update_submission(
    db: Any, account: str, submission_id: str, statuses: dict[str, Any], undo: str | None
) -> bool:
    found = objectstore.read_records(db, EMAIL_SUBMISSION, account, [submission_id])
    if not found:  # destroyed meanwhile: it only removed the record (§7.5)
        return False
    record = found[0]
    before = json.dumps(record, sort_keys=True)
    record["deliveryStatus"] = {**(record.get("deliveryStatus") or {}), **statuses}
    if undo is not None and record["undoStatus"] == "pending":
        record["undoStatus"] = undo
    if json.dumps(record, sort_keys=True) == before:
        return False
    objectstore.update_record(db, EMAIL_SUBMISSION, account, record)
    objectstore.record_change(db, account, EMAIL_SUBMISSION.name, submission_id, "updated")
    return True


def _claim(db: Any, now: float, limit: int) -> tuple[list[dict[str, Any]], set[str]]:
    """Take due rows for sending; their submissions can no longer be canceled."""
    rows = [
        dict(r)
        for r in db.query(
            f"SELECT * FROM {OUTBOUND} WHERE state = 'queued' AND next_attempt <= ? "
            "ORDER BY next_attempt LIMIT ?",
            [now, limit],
        )
    ]
    changed = set()
    for row in rows:
        db.execute(f"UPDATE {OUTBOUND} SET state = 'sending' WHERE id = ?", [row["id"]])
        if row["submission_id"] and _update_submission(
            db, row["account"], row["submission_id"], {}, "final"
        ):
            changed.add(row["account"])
    return rows, changed


def _next_due(db: Any) -> float | None:
    row = db.execute(f"SELECT min(next_attempt) FROM {OUTBOUND} WHERE state = 'queued'").fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def _publish_submissions(host: Host, accounts: set[str]) -> None:
    for account in accounts:
        state = await host.store.read(
            lambda db, a=account: objectstore.current_modseq(db, a, EMAIL_SUBMISSION.name)[0]
        )
        host.push.publish(account, {EMAIL_SUBMISSION.name: str(state)})


async def _send_row(host: Host, row: dict[str, Any]) -> None:
    rcpts: list[str] = json.loads(row["rcpt_to"])
    data: bytes = row["data"]
    mail_from: str = row["mail_from"]
    results: dict[str, Reply] = {}
    local: set[str] = set()
    remote: list[str] = []
    for rcpt in rcpts:
        try:
            principal = await host.directory.lookup_email(rcpt)
        except DirectoryUnavailable:
            results[rcpt] = Reply(451, "451 4.4.3 directory unavailable; will retry")
            continue
        if principal is None:
            remote.append(rcpt)
            continue
        try:
            results[rcpt], changed = await host.store.write(
                lambda db, p=principal, r=rcpt: deliver_local(db, host, p, data, mail_from, r)
            )  # fmt: skip
            local.add(rcpt)
            await publish(host, principal.account_id, changed)
        except Exception as exc:  # a failed local delivery is retried like a remote one
            log.exception("local delivery to %s failed", rcpt)
            results[rcpt] = Reply(451, f"451 4.3.0 local delivery failed: {exc}")
    if remote:
        relay = RelayConfig.from_host(host)
        if relay is None:
            for rcpt in remote:
                results[rcpt] = Reply(550, "550 5.7.1 no SMTP relay is configured")
        else:
            results.update(
                await trio.to_thread.run_sync(
                    relay_send, relay, mail_from, remote, data, abandon_on_cancel=True
                )
            )
    config = submission_config(host)

    def finish(db: Any) -> bool:
        attempts = row["attempts"] + 1
        retry = [
            r for r, reply in results.items() if reply.temporary
        ] if attempts < config["max-attempts"] else []  # fmt: skip
        statuses = {}
        for rcpt, reply in results.items():
            if reply.ok:
                delivered = "yes" if rcpt in local else "unknown"
            else:
                delivered = "queued" if rcpt in retry else "no"
            statuses[rcpt] = {"smtpReply": reply.text, "delivered": delivered,
                              "displayed": "unknown"}  # fmt: skip
        if retry:
            delay = config["retry-interval"] * 2 ** (attempts - 1)
            db.execute(
                f"UPDATE {OUTBOUND} SET rcpt_to = ?, state = 'queued', attempts = ?, "
                "next_attempt = ? WHERE id = ?",
                [json.dumps(retry), attempts, time.time() + delay, row["id"]],
            )
        else:
            db.execute(f"DELETE FROM {OUTBOUND} WHERE id = ?", [row["id"]])
        if row["submission_id"]:
            return _update_submission(db, row["account"], row["submission_id"], statuses, None)
        return False

    if await host.store.write(finish):
        await _publish_submissions(host, {row["account"]})


async def run_outbound(host: Host) -> None:
    """Send queued mail until cancelled (runs in the server's background nursery)."""
    await host.store.write(
        lambda db: db.execute(f"UPDATE {OUTBOUND} SET state = 'queued' WHERE state = 'sending'")
    )
    wake = _wakeup(host)
    while True:
        wake.event = trio.Event()
        try:
            rows, changed = await host.store.write(lambda db: _claim(db, time.time(), 20))
            await _publish_submissions(host, changed)
        except Exception:
            log.exception("outbound queue: cannot claim messages; will retry")
            rows = []
        for row in rows:
            try:
                await _send_row(host, row)
            except Exception:
                log.exception("outbound queue: sending message %s failed", row["id"])
                await host.store.write(
                    lambda db, i=row["id"]: db.execute(
                        f"UPDATE {OUTBOUND} SET state = 'queued', next_attempt = ? WHERE id = ?",
                        [time.time() + POLL_INTERVAL, i],
                    )
                )
        if rows:
            continue
        due = await host.store.read(_next_due)
        delay = POLL_INTERVAL if due is None else max(0.0, min(POLL_INTERVAL, due - time.time()))
        with trio.move_on_after(delay):
            await wake.event.wait()


# -- the create, update and destroy hooks -----------------------------------------------------


def _all_addresses(parsed: ParsedMessage, name: str) -> list[list[str]]:
    return [
        [a["email"] for a in group or [] if a.get("email")]
        for group in parsed.header(name, "Addresses", all=True) or []
    ]


def _dedupe(addresses: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for a in addresses:
        seen.setdefault(a.lower(), a)
    return list(seen.values())


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    db, host, account = ctx.db, ctx.host, ctx.account
    pending = _pending()
    identity = get_identity(db, account.id, record["identityId"])
    if identity is None:
        raise SetError("invalidProperties", "no such Identity", properties=["identityId"])
    found = objectstore.read_records(db, EMAIL, account.id, [record["emailId"]])
    if not found:
        raise SetError("invalidProperties", "no such Email", properties=["emailId"])
    email = found[0]
    raw = read_blob(host, email["blobId"])
    if raw is None:
        raise SetError("invalidEmail", "the message cannot be read", properties=["blobId"])
    config = submission_config(host)
    data = prepare_for_sending(raw)
    if len(data) > config["max-size"]:
        raise SetError("tooLarge", "the message is too large", maxSize=config["max-size"])
    parsed = parse_message(raw)
    allowed = may_send_as(account)
    identity_email = identity["email"].lower()

    # §9.6: the From header must be the Identity's (a Sender of the Identity lets From be
    # another of the account's addresses).
    froms, senders = _all_addresses(parsed, "From"), _all_addresses(parsed, "Sender")
    from_addresses = [a.lower() for group in froms for a in group]
    if not from_addresses:
        raise SetError("invalidEmail", "the Email has no From address", properties=["from"])
    sender_addresses = [a.lower() for group in senders for a in group]
    if any(a not in allowed for a in from_addresses) or identity_email not in (
        from_addresses + sender_addresses
    ):
        raise SetError(
            "forbiddenFrom", "you may not send with this From address", properties=["from"]
        )

    envelope = record.get("envelope")
    if envelope is None:
        source, name = (senders, "sender") if senders else (froms, "from")
        if len(source) != 1 or len(source[0]) != 1:
            raise SetError(
                "invalidEmail", f"{name}: one address in one header field", properties=[name]
            )
        mail_from = source[0][0]
        if mail_from.lower() != identity_email:
            mail_from = identity["email"]
        rcpts = _dedupe([a["email"] for n in ("to", "cc", "bcc") for a in email.get(n) or []])
        envelope = {
            "mailFrom": {"email": mail_from, "parameters": None},
            "rcptTo": [{"email": r, "parameters": None} for r in rcpts],
        }
        record["envelope"] = envelope
    else:
        mail_from = envelope["mailFrom"]["email"]
        if mail_from.lower() not in allowed:
            raise SetError("forbiddenMailFrom", f"you may not use {mail_from} as MAIL FROM")
        rcpts = _dedupe([r["email"] for r in envelope["rcptTo"]])
    if not rcpts:
        raise SetError("noRecipients", "the envelope has no recipients")
    invalid = [r for r in rcpts if not _valid_address(r)]
    if invalid:
        raise SetError("invalidRecipients", "invalid addresses", invalidRecipients=invalid)
    if len(rcpts) > config["max-recipients"]:
        raise SetError(
            "tooManyRecipients", "too many recipients", maxRecipients=config["max-recipients"]
        )

    local: dict[str, Principal] = {}
    remote: list[str] = []
    for rcpt in rcpts:
        principal = _lookup(host, rcpt)
        if principal is None:
            remote.append(rcpt)
        else:
            local[rcpt] = principal
    if remote and RelayConfig.from_host(host) is None:
        raise SetError(
            "invalidRecipients",
            "no SMTP relay is configured: only local addresses can be sent to",
            invalidRecipients=remote,
        )

    status: dict[str, Any] = {}
    delivered: dict[str, Reply] = {}  # account id -> reply, one copy per account
    for rcpt, principal in local.items():
        acct = principal.account_id
        if acct not in delivered:
            delivered[acct], changed = deliver_local(db, host, principal, data, mail_from, rcpt)
            pending.receiver_changes.setdefault(acct, set()).update(changed)
            pending.delivered_accounts.add(acct)
        status[rcpt] = {"smtpReply": delivered[acct].text, "delivered": "yes",
                        "displayed": "unknown"}  # fmt: skip
    for rcpt in remote:
        status[rcpt] = {"smtpReply": "250 2.0.0 queued for the relay", "delivered": "queued",
                        "displayed": "unknown"}  # fmt: skip
    if remote:
        enqueue(db, host, account.id, mail_from, remote, data, record["id"])
    record["threadId"] = email["threadId"]
    record["sendAt"] = utc_now()
    record["undoStatus"] = "final" if local else "pending"
    record["deliveryStatus"] = status
    record["dsnBlobIds"], record["mdnBlobIds"] = [], []
    pending.email_of[record["id"]] = record["emailId"]


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    _pending().email_of[new["id"]] = new["emailId"]
    if new["undoStatus"] == old["undoStatus"]:
        return
    if new["undoStatus"] != "canceled":
        raise SetError(
            "invalidProperties", "undoStatus can only be set to canceled", properties=["undoStatus"]
        )
    if old["undoStatus"] != "pending":
        raise SetError("cannotUnsend", "the message has already been sent")
    cursor = ctx.db.execute(
        f"DELETE FROM {OUTBOUND} WHERE account = ? AND submission_id = ? AND state = 'queued'",
        [ctx.account.id, new["id"]],
    )
    if cursor.rowcount == 0:
        raise SetError("cannotUnsend", "the message is being sent")
    new["deliveryStatus"] = {
        rcpt: {**s, "delivered": "no", "smtpReply": "554 5.0.0 canceled by the sender"}
        if s.get("delivered") == "queued" else s
        for rcpt, s in (new.get("deliveryStatus") or {}).items()
    }  # fmt: skip


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    _pending().email_of[record["id"]] = record["emailId"]


EMAIL_SUBMISSION.on_create = on_create
EMAIL_SUBMISSION.on_update = on_update
EMAIL_SUBMISSION.on_destroy = on_destroy


# -- methods ----------------------------------------------------------------------------------


async def _prefetch(call: Call) -> Pending:
    """Ask the directory, before the write transaction, about every address the creates
    may send to (the hooks run in the transaction and must not wait on the directory)."""
    pending = Pending()
    create = call.args.get("create")
    if not isinstance(create, dict):
        return pending
    assert call.account is not None
    account = call.account.id
    addresses: set[str] = set()
    email_ids: list[str] = []
    for obj in create.values():
        if not isinstance(obj, dict):
            continue
        envelope = obj.get("envelope")
        if isinstance(envelope, dict) and isinstance(envelope.get("rcptTo"), list):
            addresses |= {
                r["email"]
                for r in envelope["rcptTo"]
                if isinstance(r, dict) and isinstance(r.get("email"), str)
            }
        elif isinstance(obj.get("emailId"), str):
            email_id = obj["emailId"]
            if email_id.startswith("#"):
                email_id = call.request.created_ids.get(email_id[1:], email_id)
            if standard.is_id(email_id):
                email_ids.append(email_id)
    if email_ids:
        emails = await call.host.store.read(
            lambda db: objectstore.read_records(db, EMAIL, account, email_ids, ["to", "cc", "bcc"])
        )
        for e in emails:
            addresses |= {a["email"] for n in ("to", "cc", "bcc") for a in e.get(n) or []}
    for address in sorted(a for a in addresses if _valid_address(a))[:MAX_LOOKUPS]:
        pending.resolved[address.lower()] = await call.host.directory.lookup_email(address)
    return pending


def _success_ids(result: dict[str, Any]) -> dict[str, str]:
    """Reference ("#cid" or id) -> EmailSubmission id, for the successes of this /set."""
    out = {f"#{cid}": v["id"] for cid, v in (result.get("created") or {}).items()}
    out.update({i: i for i in result.get("updated") or {}})
    out.update({i: i for i in result.get("destroyed") or []})
    return out


async def submission_set(call: Call) -> list[tuple[str, dict[str, Any]]]:
    """§7.5 EmailSubmission/set, then the implicit Email/set of onSuccessUpdateEmail and
    onSuccessDestroyEmail (its response follows, with the same call id)."""
    update_email = standard.arg(call, "onSuccessUpdateEmail", "Object|null")
    destroy_email = standard.arg(call, "onSuccessDestroyEmail", "String[]|null")
    assert call.account is not None
    pending = await _prefetch(call)
    token = _PENDING.set(pending)
    try:
        result = await standard.type_set(EMAIL_SUBMISSION, call)
    finally:
        _PENDING.reset(token)
    host = call.host
    kick(host)
    for account in pending.delivered_accounts:
        await publish(host, account, pending.receiver_changes.get(account, ()))
    responses: list[tuple[str, dict[str, Any]]] = [(call.name, result)]
    successes = _success_ids(result)
    updates: dict[str, Any] = {}
    destroys: list[str] = []
    for ref, patch in (update_email or {}).items():
        submission_id = successes.get(ref)
        if submission_id in pending.email_of:
            updates[pending.email_of[submission_id]] = patch
    for ref in destroy_email or []:
        submission_id = successes.get(ref)
        if submission_id in pending.email_of:
            destroys.append(pending.email_of[submission_id])
    for email_id in destroys:
        updates.pop(email_id, None)
    if updates or destroys:
        email_set = host.methods["Email/set"][0]
        set_call = Call(
            name="Email/set",
            args={"accountId": call.account.id, "update": updates or None,
                  "destroy": list(dict.fromkeys(destroys)) or None},
            call_id=call.call_id,
            request=call.request,
            account=call.account,
        )  # fmt: skip
        try:
            answer = await email_set.handler(set_call)
            if isinstance(answer, list):
                responses += answer
            else:
                responses.append(("Email/set", answer))
        except MethodError as exc:
            responses.append(("error", exc.to_json()))
    return responses


def _sort_alias(call: Call) -> Call:
    """§7.3 lists "sentAt" among the sort properties; the property is sendAt."""
    sort = call.args.get("sort")
    if not isinstance(sort, list):
        return call
    fixed = [
        {**c, "property": "sendAt"} if isinstance(c, dict) and c.get("property") == "sentAt" else c
        for c in sort
    ]
    return dataclasses.replace(call, args={**call.args, "sort": fixed})


async def submission_query(call: Call) -> dict[str, Any]:
    return await standard.type_query(EMAIL_SUBMISSION, _sort_alias(call))


async def submission_query_changes(call: Call) -> dict[str, Any]:
    return await standard.type_query_changes(EMAIL_SUBMISSION, _sort_alias(call))


def submission_methods() -> list[Method]:
    return [
        Method("EmailSubmission/set", submission_set, writes=True),
        Method("EmailSubmission/query", submission_query),
        Method("EmailSubmission/queryChanges", submission_query_changes),
    ]


def submission_account_capability(host: Host, account: Account) -> dict[str, Any] | None:
    """§1.3.2; only accounts with an address to send from can submit."""
    if not account.owner.emails:
        return None
    return {"maxDelayedSend": 0, "submissionExtensions": {}}


__all__ = [
    "EMAIL_SUBMISSION",
    "IDENTITY",
    "SUBMISSION",
    "deliver_local",
    "enqueue",
    "kick",
    "migrations",
    "run_outbound",
    "submission_account_capability",
    "submission_methods",
    "transport_enqueue",
]
