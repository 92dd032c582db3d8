"""VacationResponse (RFC 8621 §8) and the RFC 3834 auto-reply it sends.

The VacationResponse is a singleton data type: one record per account, id ``singleton``,
created by the ``account_provisioned`` hook (:func:`provision_vacation`); /get and /set are
the host's standard methods (create and destroy answer the ``singleton`` SetError).

A delivery path (LMTP, or local delivery of an EmailSubmission) calls :func:`auto_reply`
inside its write transaction once the message is stored.  It returns the reply to send, or
None, following RFC 3834 §2-§3: only while the response is enabled and in its window; at
most once per sender per ``plugins.mail.vacation.period`` (7 days), remembered in
``mail_vacation_sent``; never to mailing lists (List-Id, List-* fields, ``Precedence:
bulk|list|junk``), to automatic mail (``Auto-Submitted`` other than ``no``), to
mailer-daemon / no-reply style senders, to a null envelope sender, or for a message that
does not name one of the user's addresses in To/Cc/Bcc.  The reply carries
``Auto-Submitted: auto-replied``, In-Reply-To and References.  :func:`send_auto_reply`
queues it for delivery with a null MAIL FROM (RFC 3834 §3.3), in the same transaction.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

import sqlite_utils

from jmap_host import DataType, Duration, Key, Property, SetContext, dates, objectstore

from .identity import identities
from .message import ParsedMessage, html_to_text

VACATION_TABLE = "plugins.mail.vacation"
SENT = "mail_vacation_sent"
SINGLETON = "singleton"
DEFAULT_PERIOD = 7 * 86400.0
DEFAULT_TEXT = "I am away at the moment and will read your message when I am back."

migrations = sqlite_utils.Migrations("jmap-host-mail-vacation")


@migrations()
def create_sent(db: sqlite_utils.Database) -> None:
    db[SENT].create({"account": str, "sender": str, "sent_at": int}, pk=("account", "sender"))


def config_keys() -> list[tuple[str, Key]]:
    return [
        (
            VACATION_TABLE,
            Key(
                "period",
                Duration(),
                default=DEFAULT_PERIOD,
                doc="one vacation reply per sender per period (RFC 3834 §2)",
            ),
        )
    ]


def _forget_replies(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    """A changed vacation message goes again to senders who had the old one."""
    if old != new:
        ctx.db.execute(f"DELETE FROM {SENT} WHERE account = ?", [ctx.account.id])


VACATION = DataType(
    name="VacationResponse",
    table="mail_vacation",
    properties=[
        Property("isEnabled", "Boolean", default=False),
        Property("fromDate", "UTCDate|null"),
        Property("toDate", "UTCDate|null"),
        Property("subject", "String|null"),
        Property("textBody", "String|null"),
        Property("htmlBody", "String|null"),
    ],
    methods=("get", "set"),
    singleton=True,
    on_update=_forget_replies,
)


def provision_vacation(db: Any, account_id: str) -> None:
    """The account's one VacationResponse, disabled (idempotent)."""
    if objectstore.read_records(db, VACATION, account_id, [SINGLETON]):
        return
    record = {"id": SINGLETON, "isEnabled": False, "fromDate": None, "toDate": None,
              "subject": None, "textBody": None, "htmlBody": None}  # fmt: skip
    objectstore.insert_record(db, VACATION, account_id, record)
    objectstore.record_change(db, account_id, VACATION.name, SINGLETON, "created")


# -- the auto-reply --------------------------------------------------------------------------

# RFC 5230 §4.5 and common practice: senders that are programs, not people.
NO_REPLY_LOCAL = re.compile(
    r"(mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|.*-bounces?|bounces?"
    r"|bounce[-+].*|no-?reply|do-?not-?reply|noreply[-+].*)",
    re.IGNORECASE,
)
LIST_FIELDS = ("list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post",
               "list-owner", "list-archive")  # fmt: skip


def _period(host: Any) -> float:
    try:
        value = host.plugin_config(f"{VACATION_TABLE}.period", DEFAULT_PERIOD)
    except Exception:  # pragma: no cover - a host without the key
        value = DEFAULT_PERIOD
    return float(DEFAULT_PERIOD if value is None else value)


def _parse_utc(value: str) -> float:
    return dates.epoch(value)


def _field(parsed: ParsedMessage, name: str) -> str | None:
    value = parsed.header(name, "Text")
    return value.strip() if isinstance(value, str) else None


def _addresses(parsed: ParsedMessage, name: str) -> list[str]:
    out = []
    for group in parsed.header(name, "Addresses", all=True) or []:
        out += [a["email"] for a in group or [] if a.get("email")]
    return out


def _reply_to_address(parsed: ParsedMessage, mail_from: str | None) -> str | None:
    """RFC 3834 §4: answer the envelope sender (the Return-Path), not the From."""
    if mail_from is not None:
        return mail_from.strip().strip("<>").strip() or None
    return_path = parsed.header("Return-Path", "Raw")
    if return_path is not None:
        return return_path.strip().strip("<>").strip() or None
    senders = _addresses(parsed, "Sender") or _addresses(parsed, "From")
    return senders[-1] if senders else None


def auto_reply(
    db: Any = None,
    host: Any = None,
    account: Any = None,
    parsed_message: ParsedMessage | None = None,
    raw: bytes = b"",
    recipient: str = "",
    *,
    mail_from: str | None = None,
    envelope_from: str | None = None,
    now: float | None = None,
) -> Any:
    """The RFC 3834 auto-reply (bytes) to the message just delivered to ``recipient`` (an
    address of ``account``, an id or an Account), or None.  Runs in the caller's write
    transaction and records the reply as sent: call :func:`send_auto_reply` with the result
    in the same transaction.  ``mail_from`` (or ``envelope_from``) is the envelope sender
    when the caller knows it ("" for a null reverse path).

    Called without ``db`` (from an async delivery path, after its transaction), it returns
    the awaitable :func:`respond`, which does all of it in a transaction of its own."""
    if mail_from is None:
        mail_from = envelope_from
    if db is None:
        return respond(host, account, raw, recipient, mail_from)
    if parsed_message is None:
        from .message import parse_message

        parsed_message = parse_message(raw)
    account_id = account if isinstance(account, str) else account.id
    found = objectstore.read_records(db, VACATION, account_id, [SINGLETON])
    if not found or not found[0].get("isEnabled"):
        return None
    vacation = found[0]
    now = time.time() if now is None else now
    if vacation.get("fromDate") and now < _parse_utc(vacation["fromDate"]):
        return None
    if vacation.get("toDate") and now >= _parse_utc(vacation["toDate"]):
        return None
    parsed = parsed_message
    auto = _field(parsed, "Auto-Submitted")
    if auto is not None and auto.split(";")[0].strip().lower() != "no":
        return None
    names = {h["name"].lower() for h in parsed.headers}
    if names & set(LIST_FIELDS):
        return None
    precedence = (_field(parsed, "Precedence") or "").lower()
    if precedence in ("bulk", "list", "junk"):
        return None
    suppress = (_field(parsed, "X-Auto-Response-Suppress") or "").lower()
    if "all" in suppress or "oof" in suppress:
        return None
    sender = _reply_to_address(parsed, mail_from)
    if not sender or "@" not in sender:
        return None
    if NO_REPLY_LOCAL.fullmatch(sender.rsplit("@", 1)[0]):
        return None
    mine = {recipient.lower()} | {i["email"].lower() for i in identities(db, account_id)}
    if sender.lower() in mine:
        return None
    addressed = {
        a.lower()
        for name in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
        for a in _addresses(parsed, name)
    }
    if not addressed & mine:
        return None
    key = sender.lower()
    row = db.execute(
        f"SELECT sent_at FROM {SENT} WHERE account = ? AND sender = ?", [account_id, key]
    ).fetchone()
    if row is not None and now - row[0] < _period(host):
        return None
    db.execute(
        f"INSERT INTO {SENT} (account, sender, sent_at) VALUES (?, ?, ?) "
        "ON CONFLICT (account, sender) DO UPDATE SET sent_at = excluded.sent_at",
        [account_id, key, int(now)],
    )
    return build_reply(db, account_id, vacation, parsed, recipient, sender, now)


def build_reply(
    db: Any,
    account_id: str,
    vacation: dict[str, Any],
    parsed: ParsedMessage,
    recipient: str,
    sender: str,
    now: float,
) -> bytes:
    name = next(
        (i["name"] for i in identities(db, account_id) if i["email"].lower() == recipient.lower()),
        "",
    )
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = formataddr((name, recipient)) if name else recipient
    msg["To"] = sender
    original = parsed.subject or ""
    subject = vacation.get("subject") or (f"Auto: {original}" if original else "Auto: away")
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    msg["Message-ID"] = make_msgid(domain=recipient.rsplit("@", 1)[-1])
    ids = parsed.message_id or []
    if ids:
        msg["In-Reply-To"] = f"<{ids[0]}>"
        refs = [*(parsed.references or parsed.in_reply_to or []), ids[0]]
        msg["References"] = " ".join(f"<{r}>" for r in refs[-20:])
    msg["Auto-Submitted"] = "auto-replied"
    text, html = vacation.get("textBody"), vacation.get("htmlBody")
    if text is None:
        text = html_to_text(html) if html is not None else DEFAULT_TEXT
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def send_auto_reply(db: Any, host: Any, account: Any, reply: bytes) -> None:
    """Queue ``reply`` (from :func:`auto_reply`) for delivery to its To address with a null
    MAIL FROM, inside the caller's transaction; the outbound queue sends it after commit."""
    from .message import parse_message
    from .submission import enqueue

    account_id = account if isinstance(account, str) else account.id
    parsed = parse_message(reply)
    recipients = _addresses(parsed, "To")
    if recipients:
        enqueue(db, host, account_id, "", recipients, reply)


async def respond(
    host: Any, account: Any, raw: bytes, recipient: str, mail_from: str | None = None
) -> bool:
    """Decide and queue the auto-reply to a message already stored for ``recipient``, in
    a write transaction of its own; True when a reply was queued."""
    from .message import parse_message

    account_id = account if isinstance(account, str) else account.id
    parsed = parse_message(raw)

    def write(db: Any) -> bool:
        reply = auto_reply(db, host, account_id, parsed, raw, recipient, mail_from=mail_from)
        if reply is not None:
            send_auto_reply(db, host, account_id, reply)
        return reply is not None

    return bool(await host.store.write(write))


__all__ = [
    "VACATION",
    "auto_reply",
    "build_reply",
    "provision_vacation",
    "respond",
    "send_auto_reply",
]
