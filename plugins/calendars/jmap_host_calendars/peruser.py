"""Per-user event properties, CalendarRights on events and the privacy rules
(draft-ietf-jmap-calendars §4 CalendarRights, §5.4, §5.7, §5.9).

The host keeps each user's own per-user values (jmap_host.sharing, SharedThrough.per_user);
this module says what a sharee may write (``check_sharee``: mayWriteAll, mayWriteOwn,
mayUpdatePrivate, mayRSVP, and "private" events only the calendar's owner changes), what
they see of a private event (``restrict``), and the CalendarEvent/get arguments of §5.7
(recurrenceOverridesBefore/After, reduceParticipants, timeZone) with hideAttendees.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from jmap_host import Access, DataType, FilterCondition, SetError, objectstore

from . import jscalendar
from .identity import identities, normalise

# §5.4 and §10.8.2: the properties registered "Is Per-User: yes".
PER_USER = ("keywords", "color", "freeBusyStatus", "useDefaultAlerts", "alerts")
# §4 mayRSVP: what a user may change of their own Participant.
RSVP_FIELDS = ("participationStatus", "expectReply", "scheduleSequence", "scheduleUpdated")
# §5.7 "private": jscalendarbis §4.4.3's basic time and metadata, what is derived from them
# and the CalendarEvent properties not from the JSCalendar data.
PRIVATE_VISIBLE = frozenset((
    "@type", "created", "due", "duration", "estimatedDuration", "freeBusyStatus", "privacy",
    "recurrenceId", "recurrenceIdTimeZone", "recurrenceOverrides", "recurrenceRule",
    "sequence", "showWithoutTime", "start", "timeZone", "uid", "updated", "version",
    "utcStart", "utcEnd", "id", "baseEventId", "calendarIds", "isDraft", "isOrigin",
))  # fmt: skip




def _is_mine(participant: Any, mine: set[str]) -> bool:
    address = participant.get("calendarAddress") if isinstance(participant, dict) else None
    return isinstance(address, str) and normalise(address) in mine


def _owners(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in (event.get("participants") or {}).values()
            if isinstance(p, dict) and (p.get("roles") or {}).get("owner")]  # fmt: skip


def owned_by(event: dict[str, Any], mine: set[str]) -> bool:
    """§4: the user is an owner (an owner Participant is one of their identities), or the
    event has no owner at all."""
    owners = _owners(event)
    return not owners or any(_is_mine(p, mine) for p in owners)


def _may_write(rights: dict[str, bool], event: dict[str, Any], mine: set[str]) -> bool:
    return bool(rights.get("mayWriteAll")) or (
        bool(rights.get("mayWriteOwn")) and owned_by(event, mine)
    )


def _without_rsvp(event: dict[str, Any], mine: set[str]) -> dict[str, Any]:
    """The event without what mayRSVP lets the user change of their own participants,
    on the base event and in its overrides (§4 mayRSVP)."""
    out = {k: v for k, v in event.items() if k != "calendarIds"}
    own = set()
    participants = {}
    for pid, p in (event.get("participants") or {}).items():
        if _is_mine(p, mine):
            own.add(pid)
            p = {k: v for k, v in p.items() if k not in RSVP_FIELDS}
        participants[pid] = p
    if event.get("participants") is not None:
        out["participants"] = participants
    overrides = {}
    for rid, patch in (event.get("recurrenceOverrides") or {}).items():
        if isinstance(patch, dict):
            patch = {k: v for k, v in patch.items() if not (
                k.startswith("participants/") and len(k.split("/")) == 3
                and k.split("/")[1] in own and k.split("/")[2] in RSVP_FIELDS)}  # fmt: skip
            if not patch:
                continue
        overrides[rid] = patch
    out["recurrenceOverrides"] = overrides or None
    return out


def _without_invited(old: dict[str, Any], new: dict[str, Any], mine: set[str]) -> dict:
    """``new`` without the participants mayRSVP lets the user add (§4, §5.1.1, §5.1.2):
    themselves as an attendee when the event has mayInviteSelf; other attendees when it
    has mayInviteOthers and they are already a participant.  Roles: attendee alone."""
    before = old.get("participants") or {}
    after = new.get("participants")
    if not isinstance(after, dict):
        return new
    am_in = any(_is_mine(p, mine) for p in before.values())
    kept = {}
    for pid, p in after.items():
        added = pid not in before and isinstance(p, dict) and p.get("roles") == {"attendee": True}
        if added and ((old.get("mayInviteSelf") and _is_mine(p, mine))
                      or (old.get("mayInviteOthers") and am_in)):  # fmt: skip
            continue
        kept[pid] = p
    return {**new, "participants": kept or (None if old.get("participants") is None else {})}


def check_sharee(
    db: Any, access: Access, operation: str, old: dict | None, new: dict | None
) -> None:
    """What a sharee may write of an event (SharedThrough.check_sharee), by the rights of
    its calendars (§4): mayWriteAll anything; mayWriteOwn events they own or that have no
    owner (and so create only such, and give ownership away); mayUpdatePrivate their
    per-user values on any event; mayRSVP their own participants' replies (and adding
    themselves or others as attendees when the event allows it).  A "private"
    event only the calendar's owner may change (§5.9: forbidden, per-user values too)."""
    calendars = access.containers("Calendar")
    if old is not None and old.get("privacy") == "private":
        raise SetError("forbidden", "a private event is changed only by the calendar's "
                       "owner (JMAP Calendars §5.9)")  # fmt: skip
    mine = identities(db, access.grantee)

    def rights(ids: Any) -> list[dict[str, bool]]:
        return [calendars.get(i, {}) for i in (ids or {})]

    if operation == "create":
        assert new is not None
        if not all(_may_write(r, new, mine) for r in rights(new.get("calendarIds"))):
            raise SetError("forbidden", "you may not create this event in that calendar "
                           "(mayWriteAll, or mayWriteOwn for an event you own)")  # fmt: skip
        return
    assert old is not None
    before = old.get("calendarIds") or {}
    if operation == "destroy":
        if not all(_may_write(r, old, mine) for r in rights(before)):
            raise SetError("forbidden", "you may not destroy this event")
        return
    assert new is not None
    if operation == "per-user":
        if not all(r.get("mayUpdatePrivate") or _may_write(r, old, mine) for r in rights(before)):
            raise SetError("forbidden", "you may not change your per-user properties of this "
                           "event (mayUpdatePrivate)")  # fmt: skip
        return
    after = new.get("calendarIds") or {}
    added = {i: True for i in after if i not in before}
    removed = {i: True for i in before if i not in after}
    if not all(_may_write(r, new, mine) for r in rights(added)):
        raise SetError("forbidden", "you may not add this event to that calendar")
    if not all(_may_write(r, old, mine) for r in rights(removed)):
        raise SetError("forbidden", "you may not remove this event from that calendar")
    others = {k for k in set(old) | set(new) if k != "calendarIds" and old.get(k) != new.get(k)}
    if not others or all(_may_write(r, old, mine) for r in rights(before)):
        return
    if _without_rsvp(old, mine) == _without_rsvp(_without_invited(old, new, mine), mine) and all(
        r.get("mayRSVP") for r in rights(before)
    ):
        return
    raise SetError("forbidden", "you may not change this event (mayWriteAll, mayWriteOwn "
                   "of an event you own, or mayRSVP for your own reply)")  # fmt: skip


def restrict(db: Any, access: Access, records: list[dict[str, Any]]) -> None:
    """§5.7: of a "private" event another user sees the basic time and metadata alone
    (and of its overrides, the patches of those)."""
    from .event import EVENT

    unknown = [r["id"] for r in records if "privacy" not in r]
    privacy = {r["id"]: r.get("privacy") for r in records if "privacy" in r}
    for found in objectstore.read_records(db, EVENT, access.account, unknown, ["privacy"]):
        privacy[found["id"]] = found.get("privacy")
    for record in records:
        if privacy.get(record["id"]) == "private":
            private_view(record)


def private_view(record: dict[str, Any]) -> None:
    """§5.7: make ``record`` what another user sees of a "private" event: its basic time
    and metadata alone, in its overrides' patches too (CalendarEvent/get and the event of
    a sharee's CalendarEventNotification, §7)."""
    for name in [k for k in record if k not in PRIVATE_VISIBLE]:
        del record[name]
    overrides = record.get("recurrenceOverrides")
    if isinstance(overrides, dict):
        record["recurrenceOverrides"] = {
            rid: {p: v for p, v in patch.items() if p.split("/")[0] in PRIVATE_VISIBLE}
            if isinstance(patch, dict) else patch
            for rid, patch in overrides.items()
        } or None  # fmt: skip


_SHAREE_TYPES: dict[str, DataType] = {}


def sharee_filters(event: DataType) -> DataType:
    """The event type as a sharee's /query compiles it: a text condition (title,
    description, location, owner, attendee, text) never matches a "private" event, whose
    details they may not see (§5.7), so a search cannot tell what is in one."""
    from .event import TEXT_FILTERS

    def hide(cond: FilterCondition) -> FilterCondition:
        inner = cond.sql
        if cond.name not in TEXT_FILTERS or inner is None:
            return cond

        def sql(value: Any) -> tuple[str, list[Any]]:
            where, params = inner(value)
            return f"({where}) AND [p_privacy] IS DISTINCT FROM 'private'", params

        return dataclasses.replace(cond, sql=sql)

    if event.name not in _SHAREE_TYPES:  # (built once: /query asks on every call)
        _SHAREE_TYPES[event.name] = dataclasses.replace(
            event, filters=[hide(c) for c in event.filters]
        )
    return _SHAREE_TYPES[event.name]


def reduce_participants(record: dict[str, Any], mine: set[str]) -> None:
    """Only the owner participants and the user's own, in the event and its overrides
    (§5.7 reduceParticipants, and hideAttendees for a user who is not an owner)."""
    participants = record.get("participants")
    if not isinstance(participants, dict):
        return
    kept = {pid: p for pid, p in participants.items()
            if isinstance(p, dict) and ((p.get("roles") or {}).get("owner") or _is_mine(p, mine))}
    record["participants"] = kept or None
    overrides = record.get("recurrenceOverrides")
    if not isinstance(overrides, dict):
        return
    for rid, patch in overrides.items():
        if not isinstance(patch, dict):
            continue
        out = {}
        for pointer, value in patch.items():
            parts = pointer.split("/")
            if parts[0] == "participants" and len(parts) > 1 and parts[1] not in kept and not (
                isinstance(value, dict)
                and ((value.get("roles") or {}).get("owner") or _is_mine(value, mine))
            ):
                continue  # (another attendee, or a change of one)
            if pointer == "participants" and isinstance(value, dict):
                value = {k: p for k, p in value.items() if isinstance(p, dict) and (
                    (p.get("roles") or {}).get("owner") or _is_mine(p, mine))}  # fmt: skip
            out[pointer] = value
        overrides[rid] = out


def hides_attendees(record: dict[str, Any], mine: set[str]) -> bool:
    """§5.1.3: hideAttendees, and the user is not one of the event's owners."""
    return bool(record.get("hideAttendees")) and not any(
        _is_mine(p, mine) for p in _owners(record)
    )


def overrides_between(
    record: dict[str, Any], after: dt.datetime | None, before: dt.datetime | None, zone: str
) -> None:
    """§5.7 recurrenceOverridesAfter/Before: the overrides whose recurrence id, in UTC
    (the event's time zone; a floating one in the /get's timeZone), is on or after
    ``after`` and before ``before``."""
    overrides = record.get("recurrenceOverrides")
    if not isinstance(overrides, dict):
        return
    tz = record.get("timeZone") or zone
    kept = {}
    for rid, patch in overrides.items():
        try:
            moment = jscalendar.to_utc(jscalendar.local_datetime(rid), tz)
        except (TypeError, ValueError):
            continue
        if (after is None or moment >= after) and (before is None or moment < before):
            kept[rid] = patch
    record["recurrenceOverrides"] = kept or None


def floating_span(record: dict[str, Any], zone: str) -> None:
    """§5.7 timeZone: utcStart/utcEnd of a floating event in the /get's time zone."""
    if record.get("timeZone") or "start" not in record:
        return
    span = jscalendar.utc_span({**record, "timeZone": zone})
    for name, value in zip(("utcStart", "utcEnd"), span or (None, None), strict=True):
        if name in record:
            record[name] = value
