"""CalendarEvent/parse (draft-ietf-jmap-calendars §5.13) with its capability
``urn:ietf:params:jmap:calendars:parse`` (§1.5.3): iCalendar blobs the user can see in the
account read as CalendarEvents (ical.py's conversion), nothing stored.

Each blob gives the list of its events (one per UID, overrides folded in), with the
iCalendar object's METHOD as JSCalendar's ``method`` (as the draft's example, §8.5);
the metadata properties id, baseEventId, calendarIds, isDraft and isOrigin are null when
asked for; iCalComponent is returned only when asked for (as in CalendarEvent/get, §5.7).
A blob the user cannot use in the account is notFound; one that is no iCalendar object,
or holds no event, notParsable.
"""

from __future__ import annotations

from typing import Any

from jmap_host import Call, MethodError, parse_blobs

from . import ical, jscalendar
from .event import EVENT

CALENDARS_PARSE = "urn:ietf:params:jmap:calendars:parse"
METADATA = ("id", "baseEventId", "calendarIds", "isDraft", "isOrigin")  # §5.13: null


def _properties(call: Call) -> list[str] | None:
    properties = call.args.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise MethodError("invalidArguments", "properties must be an array of strings or null")
    unknown = [p for p in properties if p != "id" and p not in EVENT.by_name
               and not EVENT.is_open(p) and p != "method"]  # fmt: skip
    if unknown:
        raise MethodError("invalidArguments", f"unknown properties: {', '.join(unknown)}")
    return list(dict.fromkeys(properties))


def _shape(event: dict[str, Any], properties: list[str] | None) -> dict[str, Any]:
    """The event as §5.13 answers it: all its properties but iCalComponent by default, or
    those asked for (the metadata ones null, the UTC times computed)."""
    if properties is None:
        return {k: v for k, v in event.items() if k != "iCalComponent"}
    span = jscalendar.utc_span(event)
    computed = {"utcStart": span[0] if span else None, "utcEnd": span[1] if span else None,
                **dict.fromkeys(METADATA)}  # fmt: skip
    return {name: computed[name] if name in computed else event.get(name)
            for name in properties
            if name in computed or name in event or name in EVENT.by_name}  # fmt: skip


def _parse(data: bytes) -> list[dict[str, Any]] | None:
    """The blob's events, or None when it is no iCalendar object with an event."""
    try:
        method, events = ical.from_ical(data)
    except ical.NotICalendar:
        return None
    if method:
        for event in events:
            event["method"] = method
    return events or None


async def calendar_event_parse(call: Call) -> dict[str, Any]:
    """§5.13 CalendarEvent/parse."""
    properties = _properties(call)

    def parse(data: bytes) -> list[dict[str, Any]] | None:
        events = _parse(data)
        return None if events is None else [_shape(event, properties) for event in events]

    return await parse_blobs(call, parse)
