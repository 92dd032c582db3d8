"""Scheduling (draft-ietf-jmap-calendars §5.9, §5.9.2): who is the origin of an event,
the organizer address the server chooses, and the iTIP messages (RFC 5546) a
CalendarEvent/set with ``sendSchedulingMessages`` sends as iMIP mail (imip.py) through
the host's messaging service.

- **Origin** (§5, isOrigin): an event is this account's when it has no
  organizerCalendarAddress or that address is one of the account's ParticipantIdentities;
  otherwise the organizer is elsewhere and this is an invitee's copy.
- **REQUEST** (§5.9.2.1), origin only: on create, and on an update of anything but the
  per-user properties (§5.4; in recurrenceOverrides too, and those never go in a
  message), to every participant but the account's own addresses.
- **CANCEL** (§5.9.2.2), origin only: to a participant removed; to everyone when the event
  is destroyed, an occurrence is excluded or an added one removed (then without a REQUEST
  for that change alone).
- **REPLY** (§5.9.2.3), not the origin: to the organizer, for each participant that is one
  of the user's identities (in a calendar shared with them, their own) whose
  participationStatus changed to anything but needs-action (or was created so, or
  destroyed when it was not: declined); for one occurrence when it changed only there.

Who sends (§9): a message goes only as one of the user's (or the account's) identities,
as the principal whose address it is (sender_of; the host's messaging refuses any other
From), and event.py keeps an origin event's organizer one of the account's identities.

The messages are queued inside the /set's transaction (jmap_host.messaging.enqueue), so
they leave if and only if the change committed.  A record whose recipients include one
without a ``mailto:`` address, or any when no plugin sends mail, is rejected with
noSupportedScheduleMethods (§5.9) and the rest of the /set is run again without it.
A participant is sent only the occurrences they are in (§5.9.2.1): the others excluded,
or, when they are not in the event itself, their occurrences alone (RECURRENCE-ID); with
hideAttendees each message names no other attendee.  Drafts send nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jmap_host import dates, messaging, objectstore, standard

from . import jscalendar, peruser, recur
from .identity import default_address, identities, normalise

# What of a stored record is JMAP's, not the JSCalendar Event's (left out of iTIP).
# Not for an iTIP message: the JMAP properties, and the sender's per-user ones (§5.4).
JMAP_ONLY = (*jscalendar.JMAP_PROPERTIES, "keywords", "color", "useDefaultAlerts", "alerts")


class Unschedulable(Exception):
    """A recipient this server cannot send to (§5.9 noSupportedScheduleMethods)."""


@dataclass
class Message:
    """One iTIP message: its method, the events as sent (one, or the occurrences a
    CANCEL names), who sends and who gets it (calendar addresses)."""

    method: str
    events: list[dict[str, Any]]
    sender: str
    recipients: list[str]


def is_origin(record: dict[str, Any], mine: set[str]) -> bool:
    """§5 isOrigin: no organizer, or one of the account's addresses."""
    organizer = record.get("organizerCalendarAddress")
    return not organizer or normalise(organizer) in mine


def choose_organizer(db: Any, account: str, old: dict[str, Any] | None,
                     new: dict[str, Any]) -> None:  # fmt: skip
    """§5.9: creating an event with participants, or adding the first ones, sets
    organizerCalendarAddress when the client did not: the owner participant's address
    when it is one of the user's, else the user's default identity."""
    if new.get("organizerCalendarAddress") or not new.get("participants"):
        return
    if old is not None and old.get("participants"):
        return
    mine = identities(db, account)
    for participant in new["participants"].values():
        address = participant.get("calendarAddress") if isinstance(participant, dict) else None
        if (participant.get("roles") or {}).get("owner") and address and normalise(address) in mine:
            new["organizerCalendarAddress"] = address
            return
    default = default_address(db, account)
    if default is not None:
        new["organizerCalendarAddress"] = default


def mailable(address: str | None) -> bool:
    """Whether iMIP can reach ``address``: a ``mailto:`` URI of one mail address."""
    if not address or not address.lower().startswith("mailto:"):
        return False
    mail = address[7:].split("?", 1)[0]
    local, _, domain = mail.rpartition("@")
    return bool(local) and "." in domain and not any(c.isspace() for c in mail)


def _participants(record: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in ((record or {}).get("participants") or {}).items()
            if isinstance(v, dict)}  # fmt: skip


def _address(participant: dict[str, Any]) -> str | None:
    address = participant.get("calendarAddress")
    return normalise(address) if isinstance(address, str) else None


def _excluded(record: dict[str, Any] | None) -> set[str]:
    return {rid for rid, patch in ((record or {}).get("recurrenceOverrides") or {}).items()
            if patch == {"excluded": True}}  # fmt: skip


def _added_removed(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """The override keys gone from ``new`` that its recurrence does not produce: added
    occurrences (RDATEs) removed."""
    removed = set(_patches(old)) - set(new.get("recurrenceOverrides") or {})
    return {key for key in removed if not recur.makes(new, key)}


def itip_event(record: dict[str, Any], method: str) -> dict[str, Any]:
    """The JSCalendar Event of a stored record as iTIP carries it (RFC 5546: the
    METHOD is the message's; per-user and JMAP properties are the account's own)."""
    event = {k: copy.deepcopy(v) for k, v in record.items() if k not in JMAP_ONLY}
    event.setdefault("@type", "Event")
    if method == "CANCEL":
        event["status"] = "cancelled"
    return event


def _recipients_of(record: dict[str, Any], mine: set[str]) -> dict[str, str | None]:
    """{key: calendar address or None} of everyone but the user (§5.9.2), in the event and
    in its occurrences (a participant may be invited to some only); the key is the
    normalised address (``#id`` for a participant without one)."""
    out: dict[str, str | None] = {}
    for patch in [None, *_patches(record).values()]:
        for pid, participant in occurrence_participants(record, patch).items():
            address = _address(participant)
            if address is not None and address in mine:
                continue
            out.setdefault(address or f"#{pid}", participant.get("calendarAddress"))
    return out


def _patches(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The overrides of occurrences that exist (not the exclusions)."""
    return {k: p for k, p in (record.get("recurrenceOverrides") or {}).items()
            if isinstance(p, dict) and p != {"excluded": True}}  # fmt: skip


def occurrence_participants(
    record: dict[str, Any], patch: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The participants of the event, or of the occurrence ``patch`` overrides."""
    if not patch:
        return _participants(record)
    view = {"participants": record.get("participants") or {}}
    return _participants(jscalendar.patched(view, patch, only={"participants"}))


def _standalone(event: dict[str, Any], key: str, patch: dict[str, Any] | None) -> dict:
    """One occurrence of ``event`` as its own event (RFC 5546: a RECURRENCE-ID VEVENT)."""
    return {**jscalendar.occurrence(event, key, patch), "recurrenceId": key}


def _has(participants: dict[str, dict], key: str) -> bool:
    return any((_address(p) or f"#{pid}") == key for pid, p in participants.items())


def _view(events: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """What of ``events`` the recipient ``key`` is sent (§5.9.2.1): a recurring event with
    the occurrences they are not in excluded (or left out, when the rule does not make
    them); only their occurrences when they are not in the event itself."""
    out: list[dict[str, Any]] = []
    for event in events:
        if event.get("recurrenceId") and not event.get("recurrenceRule"):
            if _has(_participants(event), key):
                out.append(event)
            continue
        patches = _patches(event)
        if _has(_participants(event), key):
            overrides = dict(event.get("recurrenceOverrides") or {})
            for k, patch in patches.items():
                if not _has(occurrence_participants(event, patch), key):
                    if recur.makes(event, k):
                        overrides[k] = {"excluded": True}
                    else:
                        overrides.pop(k)
            out.append({**event, "recurrenceOverrides": overrides or None})
            continue
        out += [_standalone(event, k, patch) for k, patch in sorted(patches.items())
                if _has(occurrence_participants(event, patch), key)]  # fmt: skip
    return out


def _only(event: dict[str, Any], keep: set[str]) -> dict[str, Any]:
    """The event with only the participants whose key is in ``keep`` (hideAttendees,
    REPLY), in its overrides too."""
    def kept(participants: Any) -> dict[str, Any]:
        return {pid: p for pid, p in (participants or {}).items() if isinstance(p, dict)
                and (_address(p) or f"#{pid}") in keep}  # fmt: skip

    event = dict(event)
    event["participants"] = kept(event.get("participants"))
    ids = set(event["participants"])
    overrides = {}
    for k, patch in (event.get("recurrenceOverrides") or {}).items():
        if isinstance(patch, dict):
            patch = {p: (kept(v) if p == "participants" else v) for p, v in patch.items()
                     if not p.startswith("participants/") or p.split("/")[1] in ids
                     or (isinstance(v, dict) and (_address(v) or "") in keep)}  # fmt: skip
        overrides[k] = patch
    if overrides:
        event["recurrenceOverrides"] = overrides
    return event


def _per_user(pointer: str) -> bool:
    """Whether an override's key (a property or a pointer into one) is per-user (§5.4)."""
    return pointer.split("/", 1)[0] in peruser.PER_USER


def shared(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the per-user properties (§5.4: alerts, keywords, color, ...) left
    out of its overrides: they are nobody else's, so a change of them sends nothing and
    no iTIP message carries them (an alert on one occurrence is no VALARM for the
    attendees).  An override left empty goes when the rule makes that occurrence anyway
    (an added one stays, as it is)."""
    overrides = record.get("recurrenceOverrides")
    if not isinstance(overrides, dict):
        return record
    kept: dict[str, Any] = {}
    for key, patch in overrides.items():
        if isinstance(patch, dict) and any(_per_user(p) for p in patch):
            patch = {p: v for p, v in patch.items() if not _per_user(p)}
            if not patch and recur.makes(record, key):
                continue
        kept[key] = patch
    return {**record, "recurrenceOverrides": kept or None}


def plan(
    old: dict[str, Any] | None, new: dict[str, Any] | None, mine: set[str],
    users: set[str] | None = None,
) -> list[Message]:
    """The iTIP messages a change from ``old`` to ``new`` (None: created / destroyed)
    sends (§5.9.2).  ``mine``: the account's addresses (who is the origin, who gets
    nothing); ``users``: the acting user's too (in an account shared with them, their own
    participants are the ones they answer for, §5.9.2.3)."""
    old = shared(old) if old is not None else None
    new = shared(new) if new is not None else None
    current = new if new is not None else old
    assert current is not None
    if current.get("isDraft") or (new is None and old is not None and old.get("isDraft")):
        return []  # (a draft is nobody's business yet)
    if is_origin(old if old is not None else current, mine):
        return _as_organizer(old, new, mine)
    return _as_attendee(old, new, mine | (users or set()))


def _as_organizer(
    old: dict[str, Any] | None, new: dict[str, Any] | None, mine: set[str]
) -> list[Message]:
    base = new if new is not None else old
    assert base is not None
    sender = base.get("organizerCalendarAddress")
    if not sender:
        return []  # (no organizer: nobody was ever invited)
    messages: list[Message] = []
    hide = bool(base.get("hideAttendees"))

    def send(method: str, record: dict[str, Any], to: dict[str, str | None],
             occurrences: set[str] | None = None) -> None:  # fmt: skip
        if not to:
            return
        missing = [k for k, a in to.items() if not mailable(a)]
        if missing:
            raise Unschedulable(f"participants {', '.join(sorted(missing))} have no mailto: "
                                "calendarAddress to send to")  # fmt: skip
        event = itip_event(record, method)
        events = [event]
        if occurrences:  # a CANCEL of occurrences names each (RFC 5546 §3.2.5 RECURRENCE-ID)
            patches = _patches(record)
            events = [_standalone(event, rid, patches.get(rid)) for rid in sorted(occurrences)]
        groups: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
        for key, address in to.items():
            view = _view(events, key)
            if hide:  # §5.9.2.1: each recipient sees itself as the only attendee
                view = [_only(e, mine | {key}) for e in view]
            if not view:
                continue
            text = json.dumps(view, sort_keys=True)
            groups.setdefault(text, (view, []))[1].append(str(address))
        for view, addresses in groups.values():
            messages.append(Message(method, view, sender, addresses))

    if new is None:  # destroyed
        assert old is not None
        send("CANCEL", old, _recipients_of(old, mine))
        return messages
    now = _recipients_of(new, mine)
    if old is None:
        send("REQUEST", new, now)
        return messages
    before = _recipients_of(old, mine)
    send("CANCEL", old, {k: a for k, a in before.items() if k not in now})
    # §5.9.2.1: what moves "sequence" (event.py: not the per-user properties of §5.4,
    # calendarIds, isDraft) is what a REQUEST tells
    from .event import NOT_SEQUENCED

    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)} - NOT_SEQUENCED
    # §5.9.2.2: occurrences the rule makes that are now excluded, and added ones (not the
    # rule's) removed from the overrides: a CANCEL of them, to everyone.
    gone = (_excluded(new) - _excluded(old)) | _added_removed(old, new)
    if gone:
        send("CANCEL", old, {k: a for k, a in before.items() if k in now}, gone)
        overrides_only = changed <= {"recurrenceOverrides"}
        rest_old = {k: v for k, v in (old.get("recurrenceOverrides") or {}).items()
                    if k not in gone}  # fmt: skip
        rest_new = {k: v for k, v in (new.get("recurrenceOverrides") or {}).items()
                    if k not in gone}  # fmt: skip
        if overrides_only and rest_old == rest_new:
            return messages  # (no REQUEST for that change alone, §5.9.2.1)
    if changed or (old.get("isDraft") and not new.get("isDraft")):
        send("REQUEST", new, now)
    return messages


def _as_attendee(
    old: dict[str, Any] | None, new: dict[str, Any] | None, mine: set[str]
) -> list[Message]:
    base = new if new is not None else old
    assert base is not None
    organizer = base.get("organizerCalendarAddress")
    if not isinstance(organizer, str):
        return []
    messages: list[Message] = []

    def reply(event: dict[str, Any], pid: str, participant: dict[str, Any], status: str) -> None:
        if not mailable(organizer) or not mailable(participant.get("calendarAddress")):
            raise Unschedulable("the organizer has no mailto: address to reply to")
        event = _only(event, {str(_address(participant))})
        event["participants"][pid] = {**event["participants"][pid],
                                      "participationStatus": status}  # fmt: skip
        # (RFC 5546 §3.2.3: DTSTAMP is when the reply was made; the organizer orders
        # replies of one SEQUENCE by it, §5.2.2 scheduleUpdated)
        event["updated"] = dates.utcdate()
        messages.append(Message("REPLY", [event], str(participant["calendarAddress"]),
                                [organizer]))  # fmt: skip

    def status_of(participants: dict[str, dict[str, Any]], pid: str) -> str:
        return str((participants.get(pid) or {}).get("participationStatus") or "needs-action")

    now_base = _participants(base)
    old_base = _participants(old)
    ours = [pid for pid, p in now_base.items() if (_address(p) or "") in mine]
    for pid in ours:
        status_now = status_of(now_base, pid)
        if new is None:
            if status_now == "needs-action":
                continue
            status_now = "declined"  # (the invitee removed it from their calendar)
        elif old is not None and status_now == status_of(old_base, pid):
            continue
        if status_now != "needs-action":
            reply(itip_event(base, "REPLY"), pid, now_base[pid], status_now)
    if new is None or old is None:
        return messages
    # §5.9.2.3: an answer for one occurrence only (set in its override) is a REPLY for
    # that recurrence id alone: whenever the occurrence's answer changed (back to the
    # series' answer too), but not when it only followed the series' (answered above).
    old_patches, new_patches = _patches(old), _patches(new)
    for key in sorted(set(old_patches) | set(new_patches)):
        patch = new_patches.get(key)
        if patch is None and (key in _excluded(new) or not recur.makes(new, key)):
            continue  # (the occurrence is gone: no answer for it)
        occurrence = occurrence_participants(new, patch)
        before = occurrence_participants(old, old_patches.get(key))
        for pid, participant in occurrence.items():
            if (_address(participant) or "") not in mine:
                continue
            status, was = status_of(occurrence, pid), status_of(before, pid)
            if status in ("needs-action", was):
                continue
            if was == status_of(old_base, pid) and status == status_of(now_base, pid):
                continue  # (it follows the series: the series' REPLY says it)
            reply(_standalone(itip_event(new, "REPLY"), key, patch), pid, participant, status)
    return messages


# -- CalendarEvent/set with sendSchedulingMessages -------------------------------------------


class _Rejected(Exception):
    """Records whose messages cannot be sent: roll back, run the /set again without them."""

    def __init__(self, keys: dict[tuple[str, str], str]):
        self.keys = keys


Writer = Callable[[Any], Callable[[Any, bool], dict[str, Any]]]


async def commit_with_messages(
    request: Any, writer: Writer, base_of: Callable[[str], str], event_type: Any
) -> dict[str, Any]:
    """Commit the /set ``request`` (``writer(request)`` is its write transaction) and
    queue the §5.9.2 messages of what it changed in the same transaction.  ``base_of``
    maps an id of the /set (an occurrence's too) to the stored event's.  A record that
    cannot be scheduled fails alone: the transaction rolls back and runs without it."""
    rejected: dict[tuple[str, str], str] = {}
    while True:
        try:
            result = await request.commit(
                _scheduled(request, writer(request), base_of, event_type))
        except _Rejected as exc:
            rejected.update(exc.keys)
            fewer = _without(request, exc.keys)
            if fewer == request:  # (a key not of this /set: never loop)
                raise RuntimeError(f"cannot leave out {sorted(exc.keys)}") from None
            request = fewer
            continue
        return _with_rejections(result, rejected)


def _scheduled(
    request: Any, write: Callable[[Any, bool], dict[str, Any]], base_of: Callable[[str], str],
    event_type: Any,
) -> Callable[[Any, bool], dict[str, Any]]:
    host = request.call.host
    account = request.account

    def scheduled(db: Any, careful: bool) -> dict[str, Any]:
        mine = identities(db, account.id)
        user = request.call.request.principal  # (who acts: a sharee in a shared account)
        users = identities(db, user.account_id) if account.shared else set()
        # The ids the /set names (a "#c1" is a creation id of an earlier call, or of this
        # /set: then there is nothing before) and the stored event each is (an occurrence's
        # id: its base event's).
        earlier = request.call.request.created_ids

        def resolved(key: str, created: dict[str, str]) -> str:
            return created.get(key[1:], key) if key.startswith("#") else key

        keys = [*(request.update or {}), *(request.destroy or [])]
        bases = {resolved(k, earlier): base_of(resolved(k, earlier)) for k in keys}
        before = {r["id"]: r for r in objectstore.read_records(
            db, event_type, account.id, [b for b in set(bases.values()) if b[0] != "#"])}
        result = write(db, careful)
        ids = {**earlier, **result.get("_created_ids", {})}
        asked = {("update", resolved(k, ids)): k for k in request.update or {}}
        asked.update({("destroy", resolved(k, ids)): k for k in request.destroy or []})
        created = {cid: r["id"] for cid, r in (result["created"] or {}).items()}
        changed = {k: base_of(k) for k in result["updated"] or {}}
        gone = {k: base_of(k) for k in result["destroyed"] or []}
        # (an occurrence destroyed is its base event updated: an exclusion added)
        after_ids = {*created.values(), *changed.values(),
                     *(rid for key, rid in gone.items() if rid != key)}  # fmt: skip
        after = {r["id"]: r for r in objectstore.read_records(
            db, event_type, account.id, list(after_ids))}  # fmt: skip
        # {event id: ([(the /set's list, the key it was asked with)], before, after)}
        pairs: dict[str, tuple[list[tuple[str, str]], Any, Any]] = {}
        for cid, rid in created.items():
            pairs.setdefault(rid, ([], None, after.get(rid)))[0].append(("create", cid))
        for key, rid in changed.items():
            entry = pairs.setdefault(rid, ([], before.get(rid), after.get(rid)))
            entry[0].append(("update", asked.get(("update", key), key)))
        for key, rid in gone.items():
            kept = after.get(rid) if rid != key else None  # (an occurrence: the series stays)
            entry = pairs.setdefault(rid, ([], before.get(rid), kept))
            entry[0].append(("destroy", asked.get(("destroy", key), key)))
        from . import imip  # (imip.py reads events: event.py needs this module first)

        bad: dict[tuple[str, str], str] = {}
        for where, old, new in pairs.values():
            if old is None and new is None:
                continue
            try:
                messages = plan(old, new, mine, users)
                if messages and not messaging.can_send(host):
                    raise Unschedulable("this server sends no mail (the mail plugin is "
                                        "not enabled)")  # fmt: skip
                for message in messages:  # (rolled back with the rest if any is bad)
                    imip.enqueue(db, host, sender_of(message, mine | users, user,
                                                     account.owner), message)  # fmt: skip
            except (Unschedulable, messaging.InvalidAddress) as exc:
                for kind_key in where:
                    bad[kind_key] = str(exc)
        if bad:
            raise _Rejected(bad)
        return result

    return scheduled


def sender_of(message: Message, mine: set[str], *principals: Any) -> Any:
    """The principal ``message`` is sent as (§9): only as one of the user's (or the
    account's) identities, and as the principal whose address that is (the host refuses
    any other From); anything else is Unschedulable."""
    address = normalise(message.sender)
    if address in mine and address.startswith("mailto:"):
        mail = address[7:]
        for principal in principals:
            if mail in {e.lower() for e in principal.emails}:
                return principal
    raise Unschedulable(f"{message.sender} is not one of your identities to send as")


def _without(request: Any, keys: dict[tuple[str, str], str]) -> Any:
    create = {k: v for k, v in (request.create or {}).items() if ("create", k) not in keys}
    update = {k: v for k, v in (request.update or {}).items() if ("update", k) not in keys}
    destroy = [k for k in request.destroy or [] if ("destroy", k) not in keys]
    return dataclasses.replace(request, create=create or None, update=update or None,
                               destroy=destroy or None)  # fmt: skip


def _with_rejections(result: dict[str, Any], rejected: dict[tuple[str, str], str]) -> dict:
    names = {"create": "notCreated", "update": "notUpdated", "destroy": "notDestroyed"}
    for (kind, key), why in rejected.items():
        failed = dict(result.get(names[kind]) or {})
        failed[key] = {"type": "noSupportedScheduleMethods", "description": why}
        result[names[kind]] = failed
    return result


def send_argument(call: Any) -> bool:
    """§5.9: sendSchedulingMessages, a Boolean, false by default."""
    return bool(standard.arg(call, "sendSchedulingMessages", "Boolean", False))
