"""JSCalendar 2.0 (draft-ietf-calext-jscalendarbis) Event validation, with the JMAP for
Calendars additions (draft-ietf-jmap-calendars §5), and the time arithmetic the server needs
(LocalDateTime in a time zone to UTC, Duration addition, §1.5.5, §1.5.6).

As for JSContact (plugins/contacts jscontact.py): every registered property is checked
against its type, with the JSON pointer of the first wrong value; unknown properties of the
registered name syntax and vendor-specific ones are kept (§1.7.4, §1.8.1); a name that
differs from a known one only in case is invalid (§1.7.1); enumerated values may be
vendor-specific (§1.8.2).  RFC 8984's ``recurrenceRules`` and ``excludedRecurrenceRules``
are obsolete in 2.0 (Appendix A.2.1): they are refused, naming ``recurrenceRule``.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import re
import zoneinfo
from typing import Any

from jmap_host import jsobject

# The host's (jmap_host.jsobject), by their short names.
ID, REGISTERED_NAME, Invalid = jsobject.ID, jsobject.REGISTERED_NAME, jsobject.Invalid
Schema, escape, is_vendor = jsobject.Schema, jsobject.escape, jsobject.is_vendor

UTC_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")  # §1.5.4
LOCAL_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})")  # §1.5.5
DURATION = re.compile(  # §1.5.6
    r"P(?:(?P<w>\d+)W(?:(?P<wd>\d+)D)?|(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?"
)
SIGNED_DURATION = re.compile(r"[+-]?(P.*)")  # §1.5.7


DAYS = ("mo", "tu", "we", "th", "fr", "sa", "su")
FREQUENCIES = ("yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly")
STATUS = {"confirmed", "cancelled", "tentative"}
FREE_BUSY = {"free", "busy"}
PRIVACY = {"public", "private", "secret"}
PARTICIPANT_KINDS = {"individual", "group", "location", "resource"}
ROLES = {"owner", "attendee", "optional", "informational", "chair", "contact"}
PARTICIPATION = {"needs-action", "accepted", "declined", "tentative", "delegated"}
RELATIONS = {"first", "next", "child", "parent", "snooze"}
ACTIONS = {"display", "email"}
RELATIVE_TO = {"start", "end"}
OBSOLETE = {"recurrenceRules": "recurrenceRule", "excludedRecurrenceRules": "recurrenceRule",
            "timeZones": "timeZone"}  # fmt: skip


# Type signatures (jmap_host.jsobject): a name, ("map", key, value), ("list", item),
# ("set", enum or None), ("enum", values).
LINK = {"@type": "String", "href": "String", "blobId": "Id", "contentType": "String",
        "size": "UnsignedInt", "rel": "String", "display": ("set", None), "title": "String"}
TYPES: dict[str, dict[str, Any]] = {
    "Link": LINK,
    "Relation": {"@type": "String", "relation": ("set", None)},
    "Location": {"@type": "String", "name": "String", "description": "String",
                 "locationTypes": ("set", None), "coordinates": "String",
                 "links": ("map", "Id", "Link")},
    "VirtualLocation": {"@type": "String", "name": "String", "description": "String",
                        "uri": "String", "features": ("set", None)},
    "NDay": {"@type": "String", "day": ("enum", set(DAYS)), "nthOfPeriod": "NonZeroInt"},
    "RecurrenceRule": {
        "@type": "String", "frequency": ("enum", set(FREQUENCIES)), "interval": "PositiveInt",
        "rscale": "String", "skip": ("enum", {"omit", "backward", "forward"}),
        "firstDayOfWeek": ("enum", set(DAYS)), "byDay": ("list", "NDay"),
        "byMonthDay": ("list", "Int"), "byMonth": ("list", "String"),
        "byYearDay": ("list", "Int"), "byWeekNo": ("list", "Int"),
        "byHour": ("list", "UnsignedInt"), "byMinute": ("list", "UnsignedInt"),
        "bySecond": ("list", "UnsignedInt"), "bySetPosition": ("list", "Int"),
        "count": "UnsignedInt", "until": "LocalDateTime",
    },
    "Participant": {
        "@type": "String", "name": "String", "email": "String", "description": "String",
        "descriptionContentType": "String", "calendarAddress": "String",
        "kind": ("enum", PARTICIPANT_KINDS), "roles": ("set", ROLES),
        "participationStatus": ("enum", PARTICIPATION), "expectReply": "Boolean",
        "sentBy": "String", "delegatedTo": ("set", None), "delegatedFrom": ("set", None),
        "memberOf": ("set", None), "links": ("map", "Id", "Link"), "progress": "String",
        # JMAP for Calendars §5.2 (reserved for it by JSCalendar 2.0, A.2.2.1)
        "scheduleSequence": "UnsignedInt", "scheduleUpdated": "UTCDateTime",
    },
    "Alert": {"@type": "String", "trigger": "Trigger", "acknowledged": "UTCDateTime",
              "relatedTo": ("map", "String", "Relation"), "action": ("enum", ACTIONS)},
    "OffsetTrigger": {"@type": "String", "offset": "SignedDuration",
                      "relativeTo": ("enum", RELATIVE_TO)},
    "AbsoluteTrigger": {"@type": "String", "when": "UTCDateTime"},
}  # fmt: skip
MANDATORY = {
    "VirtualLocation": ("uri",), "NDay": ("day",), "RecurrenceRule": ("frequency",),
    "Alert": ("trigger",), "OffsetTrigger": ("offset",), "AbsoluteTrigger": ("when",),
}  # fmt: skip

EVENT: dict[str, Any] = {
    "@type": "String", "uid": "NonEmpty", "version": "String",
    "relatedTo": ("map", "String", "Relation"), "prodId": "String",
    "created": "UTCDateTime", "updated": "UTCDateTime", "sequence": "UnsignedInt",
    "title": "String", "description": "String", "descriptionContentType": "String",
    "showWithoutTime": "Boolean", "locations": ("map", "Id", "Location"),
    "mainLocationId": "Id", "virtualLocations": ("map", "Id", "VirtualLocation"),
    "links": ("map", "Id", "Link"), "locale": "String", "keywords": ("set", None),
    "categories": ("set", None), "color": "String", "recurrenceId": "LocalDateTime",
    "recurrenceIdTimeZone": "TimeZoneId", "recurrenceRule": "RecurrenceRule",
    "recurrenceOverrides": ("map", "LocalDateTime", "Patch"), "priority": "Priority",
    "freeBusyStatus": ("enum", FREE_BUSY), "privacy": ("enum", PRIVACY),
    "organizerCalendarAddress": "String", "participants": ("map", "Id", "Participant"),
    "alerts": ("map", "Id", "Alert"), "timeZone": "TimeZoneId", "start": "LocalDateTime",
    "duration": "Duration", "endTimeZone": "TimeZoneId", "status": ("enum", STATUS),
    # JMAP for Calendars §5, §5.1
    "useDefaultAlerts": "Boolean", "mayInviteSelf": "Boolean", "mayInviteOthers": "Boolean",
    "hideAttendees": "Boolean",
}  # fmt: skip
JMAP_PROPERTIES = {"id", "calendarIds", "isDraft", "isOrigin", "baseEventId", "utcStart",
                   "utcEnd"}  # fmt: skip
def local_datetime(text: str) -> dt.datetime:
    """A LocalDateTime as a naive datetime (ValueError if it is none)."""
    m = LOCAL_DATETIME.fullmatch(text)
    if not m:
        raise ValueError(text)
    return dt.datetime(*map(int, m.groups()))


def duration(text: str) -> tuple[int, int]:
    """A Duration as (days, seconds): the nominal days apart from the exact time (§1.5.6)."""
    m = DURATION.fullmatch(text)
    if not m or text in ("P", "PT"):
        raise ValueError(text)
    g = {k: int(v) for k, v in m.groupdict().items() if v}
    days = 7 * g.get("w", 0) + g.get("wd", 0) + g.get("d", 0)
    return days, 3600 * g.get("h", 0) + 60 * g.get("m", 0) + g.get("s", 0)


def _scalar(schema: Schema, value: Any, signature: str, path: str) -> None:
    """JSCalendar's scalar types, the alert trigger (one of three objects) and overrides."""
    def integer(low: int | None, high: int | None, what: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(path, f"must be {what}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise Invalid(path, f"must be {what}")

    strings = ("String", "NonEmpty", "Id", "UTCDateTime", "LocalDateTime", "TimeZoneId",
               "Duration", "SignedDuration")  # fmt: skip
    if signature in strings and not isinstance(value, str):
        raise Invalid(path, "must be a String")
    if signature == "NonEmpty" and not value:
        raise Invalid(path, "must not be empty")
    elif signature == "Id" and not ID.fullmatch(value):
        raise Invalid(path, "must be an Id")
    elif signature == "UTCDateTime" and not UTC_DATETIME.fullmatch(value):
        raise Invalid(path, "must be a UTCDateTime (e.g. 2026-01-02T03:04:05Z, §1.5.4)")
    elif signature == "LocalDateTime":
        try:
            local_datetime(value)
        except ValueError:
            why = "must be a LocalDateTime (e.g. 2026-01-02T03:04:05, §1.5.5)"
            raise Invalid(path, why) from None
    elif signature == "TimeZoneId":
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Invalid(path, "must be an IANA time zone (e.g. Europe/Paris, §1.5.8)") from None
    elif signature == "Duration":
        try:
            duration(value)
        except ValueError:
            raise Invalid(path, "must be a Duration (e.g. PT1H30M, P1D, §1.5.6)") from None
    elif signature == "SignedDuration":
        m = SIGNED_DURATION.fullmatch(value)
        try:
            duration(m.group(1) if m else "")
        except ValueError:
            raise Invalid(path, "must be a SignedDuration (e.g. -PT15M, §1.5.7)") from None
    elif signature == "Boolean":
        if not isinstance(value, bool):
            raise Invalid(path, "must be a Boolean")
    elif signature in ("Int", "UnsignedInt", "PositiveInt", "NonZeroInt", "Priority"):
        low = {"UnsignedInt": 0, "PositiveInt": 1, "Priority": 0}.get(signature, -(2**53) + 1)
        high = 9 if signature == "Priority" else 2**53 - 1
        integer(low, high, {"Int": "an Int", "UnsignedInt": "an UnsignedInt",
                            "PositiveInt": "an integer >= 1", "NonZeroInt": "a non-zero Int",
                            "Priority": "an integer 0 to 9"}[signature])  # fmt: skip
        if signature == "NonZeroInt" and value == 0:
            raise Invalid(path, "must not be 0")
    elif signature == "Trigger":
        if not isinstance(value, dict):
            raise Invalid(path, "must be an OffsetTrigger or an AbsoluteTrigger")
        kind = value.get("@type", "OffsetTrigger")
        if kind in ("OffsetTrigger", "AbsoluteTrigger"):
            schema.check_object(value, kind, path)
        elif not is_vendor(str(kind)) and not REGISTERED_NAME.fullmatch(str(kind)):
            raise Invalid(f"{path}/@type", "unknown trigger type")  # (an UnknownTrigger is kept)
    elif signature == "Patch":
        if not isinstance(value, dict):
            raise Invalid(path, "must be a PatchObject")
        if value.get("excluded") is not None and value != {"excluded": True}:
            raise Invalid(path, "an excluded occurrence's patch is {\"excluded\": true} only")
        pointers = sorted(value)
        for a, b in itertools.pairwise(pointers):
            if b.startswith(a + "/"):
                raise Invalid(f"{path}/{escape(b)}", f"overlaps the patch of {a!r} (§1.5.9)")
    elif signature not in strings:  # pragma: no cover - a schema mistake
        raise AssertionError(signature)


def _rules(schema: Schema, type_name: str, value: dict[str, Any], path: str) -> None:
    if type_name == "Link" and "href" not in value and "blobId" not in value:
        raise Invalid(f"{path}/href", "a Link needs href (or, in JMAP, a blobId)")
    if type_name == "RecurrenceRule" and "count" in value and "until" in value:
        raise Invalid(f"{path}/count", "count and until do not go together")


# "method" is reserved here: a CalendarEvent has none (JMAP Calendars §5); RFC 8984's
# obsoleted names are not kept either (validate_event names their replacement).
SCHEMA = Schema("JSCalendar", TYPES, _scalar, MANDATORY, _rules,
                reserved=frozenset({"extra", "method", *OBSOLETE}), known=EVENT)  # fmt: skip
keepable = SCHEMA.keepable


def check(value: Any, signature: Any, path: str) -> None:
    SCHEMA.check(value, signature, path)


def validate_event(event: dict[str, Any]) -> None:
    """Check a CalendarEvent's JSCalendar properties (the JMAP ones are the host's)."""
    if event.get("@type", "Event") != "Event":
        raise Invalid("/@type", "must be 'Event'")
    if "method" in event:
        raise Invalid("/method", "a CalendarEvent has no method (JMAP Calendars §5)")
    for name in OBSOLETE:
        if name in event:
            raise Invalid(f"/{name}", f"is obsolete in JSCalendar 2.0: use {OBSOLETE[name]}")
    SCHEMA.check_top(event, EVENT, skip=JMAP_PROPERTIES)
    if event.get("start") is None:
        raise Invalid("/start", "is mandatory in an Event")
    if event.get("endTimeZone") and not event.get("timeZone"):
        raise Invalid("/endTimeZone", "needs a timeZone")
    if event.get("recurrenceId") and (event.get("recurrenceRule")
                                      or event.get("recurrenceOverrides")):  # fmt: skip
        raise Invalid("/recurrenceId", "an occurrence has no recurrence rule or overrides")
    if event.get("recurrenceIdTimeZone") and not event.get("recurrenceId"):
        raise Invalid("/recurrenceIdTimeZone", "needs a recurrenceId")


# -- time (§1.5.5, §1.5.6) ----------------------------------------------------------------------

UTC = dt.UTC


def link_blobs(event: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, blobId) of every Link that names a blob (JMAP Calendars §5.3: an attachment
    by blobId instead of href), wherever a Link may be: the event's, its locations' and
    participants', and inside the patches of recurrenceOverrides and localizations (whose
    keys are paths: "links/l1/blobId").  For DataType.embedded_blobs."""
    found: list[tuple[str, Any]] = []

    def walk(segments: list[str], value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    walk([*segments, *key.split("/")], item)
        elif len(segments) >= 3 and segments[-1] == "blobId" and segments[-3] == "links":
            found.append(("/".join(segments), value))

    for name, value in event.items():
        if isinstance(value, dict):
            walk([name], value)
    return found


def to_utc(local: dt.datetime, zone: str | None) -> dt.datetime:
    """A LocalDateTime in ``zone`` (None: floating, taken as UTC) as an aware UTC datetime.
    In a discontinuity the offset before the transition applies (§1.5.5): zoneinfo's
    fold=0 is exactly that, for the repeated hour and for the skipped one."""
    if zone is None:
        return local.replace(tzinfo=UTC)
    return local.replace(tzinfo=zoneinfo.ZoneInfo(zone), fold=0).astimezone(UTC)


def add_duration(local: dt.datetime, zone: str | None, text: str) -> dt.datetime:
    """§1.5.6: the days to the date, then the time in absolute time; the UTC result."""
    days, seconds = duration(text)
    return to_utc(local + dt.timedelta(days=days), zone) + dt.timedelta(seconds=seconds)


def utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_span(event: dict[str, Any]) -> tuple[str, str] | None:
    """(utcStart, utcEnd) of the event's first occurrence, or None without a start."""
    try:
        start = local_datetime(event["start"])
        zone = event.get("timeZone")
        begin = to_utc(start, zone)
        end = add_duration(start, zone, event.get("duration") or "PT0S")
    except (KeyError, TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None
    return utc_text(begin), utc_text(end)


# -- PatchObjects (§1.5.9): recurrence overrides and their occurrences ----------------------------

# What an override's patch may not change (JSCalendar 2.0 §3.3.4): ignored in one.
NOT_OVERRIDDEN = ("uid", "recurrenceId", "recurrenceOverrides", "recurrenceRule", "@type",
                  "method", "prodId", "relatedTo", "privacy")  # fmt: skip


def apply_patch(record: dict[str, Any], pointer: str, value: Any) -> None:
    """One patch of a JSCalendar PatchObject (§1.5.9), in place: ``value`` at the JSON
    pointer (null removes; an array member is replaced, never removed)."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")]
    if tokens[0] in NOT_OVERRIDDEN:
        return
    target: Any = record
    for token in tokens[:-1]:
        if isinstance(target, list) and token.isdigit():
            target = target[int(token)] if int(token) < len(target) else None
        elif isinstance(target, dict):
            target = target.setdefault(token, {})
        if target is None:
            return
    last = tokens[-1]
    if isinstance(target, dict):
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    elif isinstance(target, list) and last.isdigit() and int(last) < len(target) and (
        value is not None
    ):
        target[int(last)] = value


def patched(
    record: dict[str, Any], patch: dict[str, Any] | None, only: set[str] | None = None
) -> dict[str, Any]:
    """A deep copy of ``record`` with ``patch`` applied (only its pointers into the
    top-level properties ``only``, when given); ``record`` itself when there is no patch."""
    if not patch:
        return record
    out = copy.deepcopy(record)
    for pointer, value in patch.items():
        if only is None or pointer.split("/")[0] in only:
            apply_patch(out, pointer, value)
    return out


def occurrence(
    event: dict[str, Any], key: str, patch: dict[str, Any] | None, share: bool = False
) -> dict[str, Any]:
    """The occurrence ``key`` (a recurrence id) of ``event`` as an event of its own: the
    event without its recurrenceRule and recurrenceOverrides, starting at ``key``, with the
    override's ``patch`` applied.  ``share``: without a patch, the event's values are
    shared, not copied (for a caller that only reads them)."""
    single = {k: v for k, v in event.items()
              if k not in ("recurrenceRule", "recurrenceOverrides")}  # fmt: skip
    single["start"] = key
    if not patch and not share:
        return copy.deepcopy(single)
    return patched(single, patch)


def diff(
    before: dict[str, Any], after: dict[str, Any], depth: int | None = None
) -> dict[str, Any]:
    """The PatchObject (§1.5.9) that turns ``before`` into ``after``: pointers into the
    objects both have, ``depth`` levels down at most (None: all the way), a value where
    they differ, null where ``after`` has none (a null value is no value)."""
    patch: dict[str, Any] = {}

    def walk(old: dict[str, Any], new: dict[str, Any], path: str, levels: int | None) -> None:
        for key in dict.fromkeys([*old, *new]):
            was, now = old.get(key), new.get(key)  # (null is absent: §1.5.9)
            if was == now:
                continue
            pointer = f"{path}/{escape(key)}" if path else escape(key)
            if isinstance(was, dict) and isinstance(now, dict) and levels != 1:
                walk(was, now, pointer, None if levels is None else levels - 1)
            else:
                patch[pointer] = now

    walk(before, after, "", depth)
    return patch
