"""iMIP (RFC 6047): iTIP messages (RFC 5546) as mail, out and in, for draft-ietf-jmap-
calendars §5.9.2.

Out: :func:`enqueue` writes a scheduling.Message as a multipart/alternative message (a
text/plain summary, then ``text/calendar; method=...``, RFC 6047 §2.4) and queues it with
jmap_host.messaging inside the /set's transaction.  The iCalendar is ical.py's.

In: :func:`receive` is the plugin's jmap_host.MailReceiver, called in the write
transaction of every local delivery.  For each text/calendar part:

- **REQUEST**: creates or updates the invitee's copy in their default calendar (isOrigin
  is then false: the organizer is not theirs), their own participants at needs-action
  when new; an update keeps their per-user properties, calendars and answers; an
  invitation to single occurrences is a copy of each (its recurrenceId set);
- **REPLY**: on the organizer's copy (with a RECURRENCE-ID: in that occurrence's
  override), the replying participant's participationStatus, scheduleSequence and
  scheduleUpdated (§5.2.1, §5.2.2), unless older than the last applied;
- **CANCEL**: the invitee's copy (or the occurrence named: its own copy, or its override
  in the series) becomes cancelled; an occurrence the invitee excluded stays excluded,
  and one the series neither makes nor overrides is not made up.

Each change is logged for /changes like any other and makes CalendarEventNotifications
(§7: "if the server chooses to auto-process scheduling requests") for the users of the
event's calendars, changedBy the sender by address (principalId null: it came by mail).

Spoofing (§9.2): mail's From can say anything, so what a message may change is tied to
what is stored.  A REQUEST or CANCEL is applied only when the message's From address is
the event's ``organizerCalendarAddress`` (for an existing copy, the stored one: nobody
else can take an event over, and a message claiming to come from the account itself is
ignored), and only to an account that is one of its participants; a REPLY only when From
is the address of the participant it changes, on an event this account organizes, and it
changes nothing but that participant's answer (status, scheduleSequence,
scheduleUpdated).  A SEQUENCE older than the copy's (or, for a REPLY, the participant's
scheduleSequence) is ignored.  The envelope sender is not compared (forwarding, SRS and
bounce addresses legitimately differ); DKIM and S/MIME are not checked here: the MTA in
front should (the operator guide says so).  Spam (§9.4): a message the spam filter in
front flagged (``X-Spam-Flag: YES``, ``X-Spam-Status: Yes``) changes no calendar, and an
invitation's alerts are dropped for the invitee's default alerts (useDefaultAlerts).
"""

from __future__ import annotations

import copy
import datetime as dt
import email
import email.policy
import logging
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from jmap_host import Host, Principal, dates, dialect, messaging, objectstore, read_blob, standard

from . import ical, jscalendar, notification, recur
from .calendar import CALENDAR, default_calendar
from .event import EVENT
from .identity import default_identities, identities, normalise
from .scheduling import occurrence_participants

log = logging.getLogger("jmap_host_calendars.imip")
METHODS = ("REQUEST", "REPLY", "CANCEL")


@dataclass
class Incoming:
    """One delivery's iTIP being applied to an account (in the delivery's transaction)."""

    db: Any
    account: str
    sender: str  # the From address as a calendar address, mailto:..., lower case
    mine: set[str]  # the account's ParticipantIdentity addresses
    types: set[str] = field(default_factory=set)  # the data types it changed


def mailto(address: str) -> str:
    """The mail address of a ``mailto:`` calendar address."""
    return address.split(":", 1)[1].split("?", 1)[0]


def one_line(text: str) -> str:
    """``text`` fit for a header (RFC 5322 §2.2: no CR or LF in an unfolded field): each
    run of line breaks (U+2028, U+2029 too) and other control characters becomes one
    space.  A title may have several lines; the summary in the body keeps them."""
    out: list[str] = []
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):  # (U+2028, U+2029 too)
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(char)
    return "".join(out).strip()


def build(message: Any, blob: Any = None) -> bytes:
    """The RFC 5322 message of a scheduling.Message; ``blob(id)`` reads an attachment's
    blob (§5.3: the recipient cannot fetch it, so it goes inline as a data: URL)."""
    events = message.events
    title = next((e.get("title") for e in events if e.get("title")), "") or "(no title)"
    verb = {"REQUEST": "Invitation", "CANCEL": "Cancelled", "REPLY": "Reply"}[message.method]
    if message.method == "REPLY":
        status = next(iter((events[0].get("participants") or {}).values()), {})
        verb = f"Reply ({status.get('participationStatus', 'needs-action')})"
    mail = EmailMessage()
    mail["From"] = mailto(message.sender)
    mail["To"] = ", ".join(mailto(a) for a in message.recipients)
    mail["Subject"] = one_line(f"{verb}: {title}")
    mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mail["Message-ID"] = make_msgid(domain=mailto(message.sender).rpartition("@")[2] or None)
    start = events[0].get("start", "")
    mail.set_content(f"{verb}: {title}\n{start} {events[0].get('timeZone') or ''}\n")
    data = ical.to_ical(events, method=message.method, blob=blob)
    mail.add_alternative(data.decode("utf-8"), subtype="calendar",
                         params={"method": message.method})  # fmt: skip
    return bytes(mail.as_bytes(policy=email.policy.SMTP))


def enqueue(db: Any, host: Host, sender: Principal, message: Any) -> None:
    """Queue ``message`` (a scheduling.Message) inside ``db``'s transaction."""
    data = build(message, lambda blob_id: read_blob(host, blob_id))
    messaging.enqueue(db, host, sender, mailto(message.sender),
                      [mailto(a) for a in message.recipients], data)  # fmt: skip


# -- receiving ---------------------------------------------------------------------------------


def is_spam(parsed: Any) -> bool:
    """§9.4: the spam filter in front said so (SpamAssassin's and rspamd's headers)."""
    flag = str(parsed.get("X-Spam-Flag", "")).strip().lower()
    status = str(parsed.get("X-Spam-Status", "")).strip().lower()
    return flag == "yes" or status.startswith("yes")


def calendar_parts(raw: bytes) -> tuple[str | None, list[tuple[str | None, bytes]]]:
    """(the From address, [(the part's method parameter, its bytes)]) of a message; no
    parts for one the spam filter flagged (§9.4: not added to a calendar by itself)."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    sender = parseaddr(str(parsed.get("From", "")))[1] or None
    if is_spam(parsed):
        return sender, []
    parts = []
    for part in parsed.walk():
        if part.get_content_type() == "text/calendar":
            method = part.get_param("method")
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                parts.append((str(method).upper() if method else None, payload))
    return sender, parts


def receive(
    db: Any, host: Host, principal: Principal, raw: bytes, envelope_from: str | None
) -> list[str] | None:
    """The MailReceiver: apply the iTIP in ``raw`` to ``principal``'s account."""
    sender, parts = calendar_parts(raw)
    if not parts or sender is None:
        return None
    account = principal.account_id
    default_calendar(db, account, principal.time_zone)
    default_identities(db, account, principal)
    incoming = Incoming(db, account, f"mailto:{sender}".lower(), identities(db, account))
    for part_method, data in parts:
        try:
            method, events = ical.from_ical(data)
        except Exception as exc:  # (whatever the iCalendar is, the mail stays delivered)
            log.info("iMIP part not understood: %s", exc)
            continue
        method = (method or part_method or "").upper()
        if method not in METHODS:
            continue
        for event in events:
            apply = {"REQUEST": _request, "REPLY": _reply, "CANCEL": _cancel}[method]
            apply(incoming, event)
    return sorted(incoming.types) or None


def _find(db: Any, account: str, uid: str, rid: str | None = None) -> dict[str, Any] | None:
    """The account's event ``uid`` (the series), or its copy of occurrence ``rid`` alone
    (an invitation to single occurrences, §5.9.2.1)."""
    where, order, _ = standard.compile_query(EVENT, {"uid": uid}, None, dialect(db))
    ids = objectstore.query_ids(db, EVENT, account, where, order)
    found = objectstore.read_records(db, EVENT, account, ids)
    return next((r for r in found if (r.get("recurrenceId") or None) == rid), None)


def _mine_in(event: dict[str, Any], mine: set[str]) -> list[str]:
    return [pid for pid, p in (event.get("participants") or {}).items()
            if isinstance(p, dict) and isinstance(p.get("calendarAddress"), str)
            and normalise(p["calendarAddress"]) in mine]  # fmt: skip


def _write(incoming: Incoming, record: dict[str, Any], before: dict[str, Any] | None) -> None:
    """Store the account's new or changed copy (``before``: what it was; None: new), log
    it for /changes, and notify the users of its calendars (§7: a change "auto-processed"
    from an iTIP message), by the sender's address."""
    db, account = incoming.db, incoming.account
    if before is None:
        objectstore.insert_record(db, EVENT, account, record)
    else:
        objectstore.update_record(db, EVENT, account, record)
    objectstore.record_change(db, account, EVENT.name, record["id"],
                              "updated" if before else "created")  # fmt: skip
    incoming.types.add(EVENT.name)
    name = next((p.get("name") for p in (record.get("participants") or {}).values()
                 if isinstance(p, dict) and isinstance(p.get("calendarAddress"), str)
                 and normalise(p["calendarAddress"]) == incoming.sender), None)  # fmt: skip
    notification.notify(db, account, account, "updated" if before else "created", before,
                        {k: v for k, v in record.items() if v is not None},
                        lambda: notification.by_mail(name, incoming.sender), None,
                        incoming.types)  # fmt: skip


def _organizer(event: dict[str, Any]) -> str | None:
    value = event.get("organizerCalendarAddress")
    return normalise(value) if isinstance(value, str) else None


def _request(incoming: Incoming, event: dict[str, Any]) -> bool:
    db, account, sender, mine = incoming.db, incoming.account, incoming.sender, incoming.mine
    """RFC 5546 §3.2.2 REQUEST: the invitee's copy, created or updated."""
    organizer = _organizer(event)
    if organizer is None or organizer != sender or organizer in mine:
        log.info("iMIP REQUEST from %s for an event organized by %s ignored", sender, organizer)
        return False
    ours = _mine_in(event, mine)
    if not ours or not event.get("uid"):
        return False  # (not addressed to this account's participants)
    existing = _find(db, account, event["uid"], event.get("recurrenceId"))
    if existing is not None:
        if _organizer(existing) != organizer:
            return False  # §9.2: someone else's event
        if (event.get("sequence") or 0) < (existing.get("sequence") or 0):
            return False  # an older update, delivered late
    record = {k: copy.deepcopy(v) for k, v in event.items() if k != "method"}
    # §9.4: the sender's alerts are not the invitee's; their default alerts apply instead
    record.pop("alerts", None)
    for patch in (record.get("recurrenceOverrides") or {}).values():
        for pointer in [p for p in patch or {} if p == "alerts" or p.startswith("alerts/")]:
            del patch[pointer]
    if existing is None:
        calendars = objectstore.read_records(db, CALENDAR, account, None, ["isDefault"])
        default = next((c["id"] for c in calendars if c.get("isDefault")), None)
        if default is None:
            return False
        record.update(id=objectstore.new_id(), calendarIds={default: True}, isDraft=False,
                      useDefaultAlerts=True)  # fmt: skip
        for pid in ours:  # §5.9.2: what the invitee has not answered yet
            record["participants"][pid]["participationStatus"] = "needs-action"
        record.setdefault("created", dates.utcdate())
    else:
        record["id"] = existing["id"]
        for name in ("calendarIds", "isDraft", "keywords", "color", "freeBusyStatus",
                     "useDefaultAlerts", "alerts", "created"):  # fmt: skip
            if name in existing:
                record[name] = existing[name]
        for pid in ours:  # (their answer stands until they change it)
            was = ((existing.get("participants") or {}).get(pid) or {})
            if "participationStatus" in was:
                record["participants"][pid]["participationStatus"] = was["participationStatus"]
    try:
        jscalendar.validate_event({k: v for k, v in record.items()
                                   if k not in ("id", "calendarIds", "isDraft")})  # fmt: skip
    except jscalendar.Invalid as exc:
        log.info("iMIP REQUEST with an invalid event ignored: %s", exc)
        return False
    if existing is not None:
        for name in set(existing) - set(record):
            record[name] = None
    _write(incoming, record, existing)
    return True


def _reply(incoming: Incoming, event: dict[str, Any]) -> bool:
    db, account, sender, mine = incoming.db, incoming.account, incoming.sender, incoming.mine
    """RFC 5546 §3.2.3 REPLY on the organizer's copy: one participant's answer, for the
    event or (with a RECURRENCE-ID) for one occurrence, in its override."""
    existing = _find(db, account, event.get("uid") or "")
    if existing is None or _organizer(existing) not in mine:
        return False  # (not an event this account organizes)
    before = dict(existing)  # (what follows replaces its values, never changes them)
    rid = event.get("recurrenceId")
    overrides = dict(existing.get("recurrenceOverrides") or {})
    patch: dict[str, Any] = {}
    if rid:
        patch = dict(overrides.get(rid) or {})
        if patch == {"excluded": True} or (rid not in overrides
                                           and not recur.makes(existing, rid)):  # fmt: skip
            return False  # (no such occurrence)
        participants = occurrence_participants(existing, patch)
    else:
        participants = dict(existing.get("participants") or {})
    answered = _answered(participants, event, sender)
    if not answered:
        return False
    if not rid:
        existing["participants"] = {**participants, **answered}
    else:
        for pid, participant in answered.items():
            if isinstance(patch.get("participants"), dict):
                patch["participants"] = {**patch["participants"], pid: participant}
                continue
            for pointer in [p for p in patch if p.startswith(f"participants/{pid}/")]:
                del patch[pointer]  # (pointers of a PatchObject may not overlap)
            patch[f"participants/{pid}"] = participant
        overrides[rid] = patch
        existing["recurrenceOverrides"] = overrides
    _write(incoming, existing, before)
    return True


def _answered(
    participants: dict[str, Any], event: dict[str, Any], sender: str
) -> dict[str, dict[str, Any]]:
    """{participant id: the participant with the sender's answer} (§5.2: with
    scheduleSequence and scheduleUpdated), unless the answer is older than the last."""
    sequence = event.get("sequence") or 0
    updated = event.get("updated")
    out: dict[str, dict[str, Any]] = {}
    for reply in (event.get("participants") or {}).values():
        address = reply.get("calendarAddress") if isinstance(reply, dict) else None
        if not isinstance(address, str) or normalise(address) != sender:
            continue  # §9.2: only the sender's own answer
        for pid, stored in participants.items():
            stored_address = stored.get("calendarAddress") if isinstance(stored, dict) else None
            if not isinstance(stored_address, str) or normalise(stored_address) != sender:
                continue
            last = stored.get("scheduleSequence", 0)
            if sequence < last:
                continue
            if sequence == last and updated and stored.get("scheduleUpdated") and \
                    updated < stored["scheduleUpdated"]:  # fmt: skip
                continue  # §5.2.2: an older response of the same sequence
            status = reply.get("participationStatus", "needs-action")
            answer = {**stored, "participationStatus": status, "scheduleSequence": sequence}
            if updated:
                answer["scheduleUpdated"] = updated
            out[pid] = answer
    return out


def _cancel(incoming: Incoming, event: dict[str, Any]) -> bool:
    db, account, sender, mine = incoming.db, incoming.account, incoming.sender, incoming.mine
    """RFC 5546 §3.2.5 CANCEL: the invitee's copy, or the occurrences named, cancelled."""
    rid = event.get("recurrenceId")
    # (the copy of that occurrence alone, else the series it is one of)
    existing = _find(db, account, event.get("uid") or "", rid) if rid else None
    if existing is None:
        existing = _find(db, account, event.get("uid") or "")
    if existing is None:
        return False
    organizer = _organizer(existing)
    if organizer is None or organizer != sender or organizer in mine:
        return False  # §9.2: only the stored organizer cancels
    if (event.get("sequence") or 0) < (existing.get("sequence") or 0):
        return False
    before = dict(existing)  # (what follows replaces its values, never changes them)
    if rid and not existing.get("recurrenceId") and (
            existing.get("recurrenceRule") or existing.get("recurrenceOverrides")):  # fmt: skip
        overrides = dict(existing.get("recurrenceOverrides") or {})
        patch = overrides.get(rid)
        if patch == {"excluded": True}:
            return False  # (not in this calendar: an exclusion stays one, recur.py)
        if patch is None and not recur.makes(existing, rid):
            return False  # (no such occurrence: nothing to cancel, none to make up)
        overrides[rid] = {**(patch or {}), "status": "cancelled"}
        existing["recurrenceOverrides"] = overrides
    else:
        existing["status"] = "cancelled"
    existing["sequence"] = max(existing.get("sequence") or 0, event.get("sequence") or 0)
    _write(incoming, existing, before)
    return True


__all__ = ["build", "calendar_parts", "enqueue", "receive"]
