"""utcStart and utcEnd given on CalendarEvent/set (draft-ietf-jmap-calendars §5, §5.9):
translated into ``start`` (in the event's time zone; a floating event gets its calendars'
common time zone, else Etc/UTC) and ``duration``; given with ``start`` / ``duration``, or
inside recurrenceOverrides, they are invalidProperties."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

from jmap_host import SetError, objectstore

from . import jscalendar

NAMES = ("utcStart", "utcEnd")
UTC_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")


def _in_overrides(obj: dict[str, Any]) -> bool:
    for key, value in obj.items():
        top = key.split("/")[0]
        if top != "recurrenceOverrides":
            continue
        if key.count("/") >= 2 and key.split("/")[2] in NAMES:
            return True  # recurrenceOverrides/<id>/utcStart
        patches = value.values() if key == top and isinstance(value, dict) else [value]
        if any(isinstance(p, dict) and any(k.split("/")[0] in NAMES for k in p)
               for p in patches):  # fmt: skip
            return True
    return False


def _moment(text: Any) -> dt.datetime:
    if not isinstance(text, str) or not UTC_DATE.fullmatch(text):
        raise SetError("invalidProperties", "utcStart/utcEnd must be UTCDateTimes",
                       properties=[n for n in NAMES])  # fmt: skip
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    text = f"P{days}D" if days else "P"
    return text + (f"T{time}" if time else ("" if days else "T0S"))


def _calendar_zone(db: Any, account: str, calendar_ids: Any) -> str:
    """§5: the time zone of the event's calendars when they all have the same one."""
    from .calendar import CALENDAR

    ids = [i for i in (calendar_ids or {}) if isinstance(i, str)]
    found = objectstore.read_records(db, CALENDAR, account, ids, ["timeZone"])
    zones = {c.get("timeZone") for c in found}
    if len(zones) == 1 and None not in zones:
        return str(zones.pop())
    return "Etc/UTC"


def translate(
    db: Any, account: str, given: dict[str, Any], current: dict[str, Any] | None
) -> dict[str, Any]:
    """A create's object (``current`` None) or an update's patch with utcStart/utcEnd in
    place of start/duration (and a time zone for a floating event); what the server set
    is returned beside it: (object or patch, {property: value set})."""
    if _in_overrides(given):
        raise SetError("invalidProperties", "utcStart and utcEnd cannot be set inside "
                       "recurrenceOverrides (JMAP Calendars §5.9)",
                       properties=["recurrenceOverrides"])  # fmt: skip
    for utc, local in (("utcStart", "start"), ("utcEnd", "duration")):
        if given.get(utc) is not None and given.get(local) is not None:
            raise SetError("invalidProperties", f"{utc} and {local} cannot both be given "
                           "(JMAP Calendars §5.9)", properties=[utc, local])  # fmt: skip
    if not any(n in given for n in NAMES):
        return given
    out = {k: v for k, v in given.items() if k not in NAMES}
    event = {**(current or {}), **out}
    zone = event.get("timeZone")
    try:
        if given.get("utcStart") is not None:
            if not zone:
                zone = out["timeZone"] = _calendar_zone(db, account, event.get("calendarIds"))
            local = _moment(given["utcStart"]).astimezone(zoneinfo.ZoneInfo(zone))
            out["start"] = event["start"] = local.replace(tzinfo=None).isoformat()
        if given.get("utcEnd") is not None:
            start = jscalendar.to_utc(jscalendar.local_datetime(event["start"]), zone)
            seconds = int((_moment(given["utcEnd"]) - start).total_seconds())
            if seconds < 0:
                raise SetError("invalidProperties", "utcEnd is before the start",
                               properties=["utcEnd"])  # fmt: skip
            out["duration"] = _duration(seconds)
    except (ValueError, KeyError, TypeError, zoneinfo.ZoneInfoNotFoundError):
        raise SetError("invalidProperties", "utcStart/utcEnd cannot be placed in the "
                       "event's time zone", properties=list(NAMES)) from None  # fmt: skip
    return out


def server_set(given: dict[str, Any], translated: dict[str, Any]) -> dict[str, Any]:
    """What :func:`translate` set that the client did not give (for the /set answer)."""
    return {k: v for k, v in translated.items()
            if k in ("start", "duration", "timeZone") and k not in given}  # fmt: skip
