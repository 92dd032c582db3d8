"""iCalendar (RFC 5545) in and out: JSCalendar Events (the CalendarEvents this plugin
stores) from and to VCALENDAR objects, following the mapping of "JSCalendar: Converting
from and to iCalendar" (draft-ietf-calext-jscalendar-icalendar) for the properties stored
here.  The icalendar library does the content lines (folding, escaping, value types) and
writes the VTIMEZONEs of the zones used; time zones are IANA names (zoneinfo).

What is converted: UID, SUMMARY, DESCRIPTION, DTSTART (TZID, UTC, floating, or a DATE:
showWithoutTime), DTEND/DURATION (duration, endTimeZone), RRULE, EXDATE, RDATE and the
VEVENTs with a RECURRENCE-ID (recurrenceOverrides: a patch of what differs from the
master), LOCATION, URL and ATTACH by URI (links), ORGANIZER and ATTENDEE (participants,
organizerCalendarAddress), VALARM (alerts), STATUS, TRANSP (freeBusyStatus), CLASS
(privacy), CATEGORIES (keywords), COLOR, PRIORITY, SEQUENCE, CREATED, LAST-MODIFIED or
DTSTAMP (updated), and the VCALENDAR's PRODID (prodId).

What is not converted is kept so that import then export gives it back: the other
properties (X- ones included) and components of a VEVENT as its ``iCalComponent``, and
those of a VALARM as its Alert's: a jCal component (RFC 7265 §3.2)
``[name, [properties], [components]]`` whose properties are
``[name, {parameters}, "unknown", "the iCalendar value text"]`` (jCal's "unknown" type,
§5: the value as it was).  The ORGANIZER's and ATTENDEEs' parameters a Participant has no
property for are kept as its ``iCalParameters`` (``{"attendee": {jCal parameters}}``).
JMAP for Calendars §5.7 returns ``iCalComponent`` only when it is asked for.

The public API, also used for iMIP: ``to_ical(events, method)``, ``from_ical(data)``
(and ``read_calendar``, which also says what it left out and why); bad input raises
``NotICalendar``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import icalendar
from icalendar import prop
from icalendar.cal import Component

from . import jscalendar, recur

PRODID = "-//jmap-host//calendars//EN"
UTC_ZONES = {"Etc/UTC", "UTC", "Etc/Zulu", "Zulu"}
LOCAL_FORMAT = "%Y-%m-%dT%H:%M:%S"

# What a VEVENT property converts to; anything else is kept in iCalComponent.
CONVERTED = {
    "UID", "SUMMARY", "DESCRIPTION", "DTSTART", "DTEND", "DURATION", "RRULE", "EXDATE",
    "RDATE", "RECURRENCE-ID", "LOCATION", "URL", "ATTACH", "ORGANIZER", "ATTENDEE",
    "STATUS", "TRANSP", "CLASS", "CATEGORIES", "COLOR", "PRIORITY", "SEQUENCE", "CREATED",
    "DTSTAMP", "LAST-MODIFIED",
}  # fmt: skip
STATUS = {"TENTATIVE": "tentative", "CONFIRMED": "confirmed", "CANCELLED": "cancelled"}
TRANSP = {"OPAQUE": "busy", "TRANSPARENT": "free"}
CLASS = {"PUBLIC": "public", "PRIVATE": "private", "CONFIDENTIAL": "secret"}
PARTSTAT = {"NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED"}
CUTYPE = {"INDIVIDUAL": "individual", "GROUP": "group", "RESOURCE": "resource",
          "ROOM": "location"}  # fmt: skip
ROLE_TO_ROLES = {
    "REQ-PARTICIPANT": {"attendee": True},
    "OPT-PARTICIPANT": {"attendee": True, "optional": True},
    "NON-PARTICIPANT": {"informational": True},
    "CHAIR": {"attendee": True, "chair": True},
}
ALARM_ACTIONS = {"DISPLAY": "display", "EMAIL": "email"}
# A patch never carries these (JSCalendar §3.3.4: ignored in an override, or the
# recurrence's own), nor the override's own DTSTAMP and CREATED.
NOT_PATCHED = {"uid", "recurrenceRule", "recurrenceOverrides", "recurrenceId",
               "recurrenceIdTimeZone", "@type", "prodId", "method", "relatedTo", "created",
               "updated"}  # fmt: skip


class NotICalendar(ValueError):
    """The data is no iCalendar object (RFC 5545 §3.4) this module can read."""


@dataclass
class Parsed:
    """What ``read_calendar`` found: the METHOD (lower case, as JSCalendar's ``method``),
    one Event per UID (its overrides folded in) and what was left out, with why."""

    method: str | None
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# -- small conversions ---------------------------------------------------------------------


def _id(*parts: str) -> str:
    """A stable JSCalendar Id for what an iCalendar property names (the same attendee gets
    the same id in the master and in its overrides, so their patches stay small)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _local(moment: dt.datetime) -> str:
    return moment.strftime(LOCAL_FORMAT)


def _utc(moment: dt.datetime | dt.date) -> str:
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return jscalendar.utc_text(moment)


def format_duration(delta: dt.timedelta, signed: bool = False) -> str:
    """A timedelta as a JSCalendar (Signed)Duration: days nominal, the rest exact."""
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    days, seconds = delta.days, delta.seconds
    text = "P" + (f"{days}D" if days else "")
    if seconds or not days:
        h, rest = divmod(seconds, 3600)
        m, s = divmod(rest, 60)
        text += "T" + (f"{h}H" if h else "") + (f"{m}M" if m else "")
        text += f"{s}S" if s or not (h or m) else ""
    return (sign if signed else "") + text


def parse_duration(text: str) -> dt.timedelta:
    """A JSCalendar (Signed)Duration as a timedelta (days as 24 hours: for iCalendar's
    DURATION and TRIGGER values, which icalendar writes with their days)."""
    negative = text.startswith("-")
    days, seconds = jscalendar.duration(text.lstrip("+-"))
    delta = dt.timedelta(days=days, seconds=seconds)
    return -delta if negative else delta


def _zone_name(tzid: str | None) -> str | None:
    """The IANA name of an iCalendar TZID: itself, a Windows name's, or a vendor path's
    last segments (/mozilla.org/20050126_1/Europe/Berlin)."""
    if not tzid:
        return None
    windows = icalendar.timezone.windows_to_olson.WINDOWS_TO_OLSON
    candidates = [tzid, windows.get(tzid, ""), *("/".join(tzid.split("/")[-n:]) for n in (3, 2))]
    for name in candidates:
        if name:
            try:
                zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return None


@dataclass(frozen=True)
class When:
    """A DATE or DATE-TIME as JSCalendar sees it: a LocalDateTime in a zone (None:
    floating), or a date."""

    local: dt.datetime
    zone: str | None
    is_date: bool

    @property
    def instant(self) -> dt.datetime:
        return jscalendar.to_utc(self.local, self.zone)

    def in_zone(self, zone: str | None) -> dt.datetime:
        """This time as a LocalDateTime of ``zone`` (an EXDATE given in another zone)."""
        if self.is_date or zone == self.zone or self.zone is None or zone is None:
            return self.local
        return self.instant.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None)


def _when(value: Any) -> When | None:
    """A vDDDTypes (or its .dt) of DTSTART, DTEND, EXDATE...; None if it is none."""
    moment = getattr(value, "dt", value)
    params = getattr(value, "params", {}) or {}
    if isinstance(moment, tuple):  # a PERIOD (RDATE): its start
        moment = moment[0]
    if isinstance(moment, dt.datetime):
        if moment.tzinfo is None:
            return When(moment, None, False)
        zone = _zone_name(params.get("TZID"))
        if zone is None and icalendar.timezone.is_utc(moment):
            zone = "Etc/UTC"
        if zone is None:  # a zone known only by its VTIMEZONE: the instant, in UTC
            zone = "Etc/UTC"
            moment = moment.astimezone(dt.UTC)
        return When(moment.replace(tzinfo=None), zone, False)
    if isinstance(moment, dt.date):
        return When(dt.datetime.combine(moment, dt.time()), None, True)
    return None


def _duration_between(start: When, end: When) -> str:
    """JSCalendar §1.5.6: the nominal days in the start's zone, then the exact time."""
    if start.is_date:
        return format_duration(dt.timedelta(days=max(0, (end.local - start.local).days)))
    # (a floating start is read in any one zone, its end with it: UTC here)
    end_utc = end.instant if start.zone is not None else end.local.replace(tzinfo=dt.UTC)
    days = max(0, (end.in_zone(start.zone).date() - start.local.date()).days)
    while days > 0 and jscalendar.to_utc(start.local + dt.timedelta(days=days),
                                         start.zone) > end_utc:  # fmt: skip
        days -= 1
    rest = end_utc - jscalendar.to_utc(start.local + dt.timedelta(days=days), start.zone)
    if rest < dt.timedelta(0):
        return "PT0S"
    return format_duration(dt.timedelta(days=days) + rest)


def _raw(value: Any) -> str:
    text = value.to_ical() if hasattr(value, "to_ical") else str(value)
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def _jcal_params(params: Any) -> dict[str, Any]:
    return {k.lower(): (list(v) if isinstance(v, list | tuple) else str(v))
            for k, v in (params or {}).items()}  # fmt: skip


def _jcal_property(name: str, value: Any) -> list[Any]:
    """RFC 7265 §3.4, with the "unknown" type of §5: the value's iCalendar text as it was."""
    return [name.lower(), _jcal_params(getattr(value, "params", {})), "unknown", _raw(value)]


def _jcal_component(component: Component) -> list[Any]:
    props = [_jcal_property(n, v) for n, v in component.property_items(recursive=False)
             if n not in ("BEGIN", "END")]  # fmt: skip
    return [component.name.lower(), props, [_jcal_component(c) for c in component.subcomponents]]


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- iCalendar to JSCalendar ---------------------------------------------------------------


def _recurrence_rule(value: Any, start: When) -> dict[str, Any]:
    """RRULE as JSCalendar's RecurrenceRule (§3.3.3); UNTIL in the event's local time."""
    rule: dict[str, Any] = {"@type": "RecurrenceRule",
                            "frequency": str(value["FREQ"][0]).lower()}  # fmt: skip
    if "INTERVAL" in value and int(value["INTERVAL"][0]) != 1:
        rule["interval"] = int(value["INTERVAL"][0])
    for key, name in (("RSCALE", "rscale"), ("SKIP", "skip"), ("WKST", "firstDayOfWeek")):
        if key in value:
            rule[name] = str(value[key][0]).lower()
    if "BYDAY" in value:
        days = []
        for item in value["BYDAY"]:
            text = str(item)
            nday: dict[str, Any] = {"@type": "NDay", "day": text[-2:].lower()}
            if text[:-2]:
                nday["nthOfPeriod"] = int(text[:-2])
            days.append(nday)
        rule["byDay"] = days
    for key, name in (("BYMONTHDAY", "byMonthDay"), ("BYYEARDAY", "byYearDay"),
                      ("BYWEEKNO", "byWeekNo"), ("BYHOUR", "byHour"), ("BYMINUTE", "byMinute"),
                      ("BYSECOND", "bySecond"), ("BYSETPOS", "bySetPosition")):  # fmt: skip
        if key in value:
            rule[name] = [int(v) for v in value[key]]
    if "BYMONTH" in value:
        rule["byMonth"] = [str(v) for v in value["BYMONTH"]]
    if "COUNT" in value:
        rule["count"] = int(value["COUNT"][0])
    if "UNTIL" in value:
        until = _when(value["UNTIL"][0])
        if until is not None:
            rule["until"] = _local(until.in_zone(start.zone))
    return rule


def _participant(address: str, params: Any) -> dict[str, Any]:
    participant: dict[str, Any] = {"@type": "Participant", "calendarAddress": address}
    if params.get("CN"):
        participant["name"] = str(params["CN"])
    email = params.get("EMAIL") or (address[7:] if address.lower().startswith("mailto:")
                                    else None)  # fmt: skip
    if email:
        participant["email"] = str(email)
    if str(params.get("CUTYPE", "")).upper() in CUTYPE:
        participant["kind"] = CUTYPE[str(params["CUTYPE"]).upper()]
    if params.get("SENT-BY"):
        participant["sentBy"] = str(params["SENT-BY"])
    return participant


# The ATTENDEE and ORGANIZER parameters a Participant converts (when their values map).
PARTICIPANT_PARAMETERS = {"CN", "EMAIL", "CUTYPE", "SENT-BY", "ROLE", "PARTSTAT", "RSVP"}


def _other_parameters(participant: dict[str, Any], name: str, params: Any) -> None:
    """Keep the parameters the Participant has no property for (X-NUM-GUESTS,
    SCHEDULE-STATUS, DELEGATED-TO, DIR, LANGUAGE...), and those whose value did not map,
    as ``iCalParameters`` of the property (jCal parameters, RFC 7265 §3.5)."""
    converted = {k for k in PARTICIPANT_PARAMETERS if k in params}
    if str(params.get("CUTYPE", "INDIVIDUAL")).upper() not in CUTYPE:
        converted.discard("CUTYPE")
    if str(params.get("ROLE", "REQ-PARTICIPANT")).upper() not in ROLE_TO_ROLES:
        converted.discard("ROLE")
    if str(params.get("PARTSTAT", "ACCEPTED")).upper() not in PARTSTAT:
        converted.discard("PARTSTAT")
    if name == "ORGANIZER":
        converted &= {"CN", "EMAIL", "SENT-BY"}
    others = _jcal_params({k: v for k, v in params.items() if k.upper() not in converted})
    if others:
        kept = dict(participant.get("iCalParameters") or {})
        kept[name.lower()] = others
        participant["iCalParameters"] = kept


def _attendee(participant: dict[str, Any], params: Any) -> None:
    role = str(params.get("ROLE", "REQ-PARTICIPANT")).upper()
    participant["roles"] = {**participant.get("roles", {}),
                            **ROLE_TO_ROLES.get(role, {"attendee": True})}  # fmt: skip
    partstat = str(params.get("PARTSTAT", "")).upper()
    if partstat in PARTSTAT:
        participant["participationStatus"] = partstat.lower()
    if "RSVP" in params:
        participant["expectReply"] = str(params["RSVP"]).upper() == "TRUE"


def _alert(alarm: Component, title: str | None) -> dict[str, Any]:
    """A VALARM as an Alert (JSCalendar §4.5.2): TRIGGER, ACTION, ACKNOWLEDGED; the rest
    (DESCRIPTION, REPEAT, X-...) kept in the Alert's iCalComponent, but for a display
    alarm's DESCRIPTION that is what export writes anyway (the title)."""
    alert: dict[str, Any] = {"@type": "Alert"}
    kept = []
    display = str(alarm.get("ACTION", "DISPLAY")).upper() == "DISPLAY"
    for name, value in alarm.property_items(recursive=False):
        if name in ("BEGIN", "END"):
            continue
        moment = getattr(value, "dt", None)
        if name == "TRIGGER" and isinstance(moment, dt.timedelta):
            trigger = {"@type": "OffsetTrigger", "offset": format_duration(moment, signed=True)}
            if str(value.params.get("RELATED", "")).upper() == "END":
                trigger["relativeTo"] = "end"
            alert["trigger"] = trigger
        elif name == "TRIGGER" and isinstance(moment, dt.datetime):
            alert["trigger"] = {"@type": "AbsoluteTrigger", "when": _utc(moment)}
        elif name == "ACTION" and str(value).upper() in ALARM_ACTIONS:
            alert["action"] = ALARM_ACTIONS[str(value).upper()]
        elif name == "ACKNOWLEDGED" and isinstance(moment, dt.datetime):
            alert["acknowledged"] = _utc(moment)
        elif name == "DESCRIPTION" and display and str(value) == (title or "Reminder"):
            pass
        else:
            kept.append(_jcal_property(name, value))
    if kept or alarm.subcomponents:
        alert["iCalComponent"] = ["valarm", kept, [_jcal_component(c) for c in alarm.subcomponents]]
    return alert


def _event(vevent: Component, prodid: str | None) -> tuple[dict[str, Any], When | None]:
    """One VEVENT as a JSCalendar Event, with its RECURRENCE-ID (None for a master)."""
    event: dict[str, Any] = {"@type": "Event"}
    if prodid:
        event["prodId"] = prodid
    start = _when(vevent.get("DTSTART")) if "DTSTART" in vevent else None
    kept: list[list[Any]] = []
    participants: dict[str, dict[str, Any]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    stamp = None
    recurrence_id = None
    for name, value in vevent.property_items(recursive=False):
        if name in ("BEGIN", "END"):
            continue
        handled = name in CONVERTED
        moment = getattr(value, "dt", None)
        if name == "UID":
            event["uid"] = str(value)
        elif name == "SUMMARY":
            event["title"] = str(value)
        elif name == "DESCRIPTION":
            event["description"] = str(value)
        elif name == "DTSTART" and start is not None:
            event["start"] = _local(start.local)
            if start.is_date:
                event["showWithoutTime"] = True
            if start.zone is not None:
                event["timeZone"] = start.zone
        elif name == "DTEND" and start is not None and (end := _when(value)) is not None:
            event["duration"] = _duration_between(start, end)
            if end.zone is not None and end.zone != start.zone and start.zone is not None:
                event["endTimeZone"] = end.zone
        elif name == "DURATION" and isinstance(moment, dt.timedelta):
            event["duration"] = format_duration(moment)
        elif name == "RRULE" and start is not None and "recurrenceRule" not in event:
            event["recurrenceRule"] = _recurrence_rule(value, start)
        elif name in ("EXDATE", "RDATE") and start is not None:
            for dates in _values(value):
                for item in getattr(dates, "dts", []):
                    when = _when(item)
                    if when is None:
                        continue
                    key = _local(when.in_zone(start.zone))
                    if name == "EXDATE":
                        overrides[key] = {"excluded": True}
                    else:
                        patch: dict[str, Any] = {}
                        period = getattr(item, "dt", None)
                        if isinstance(period, tuple) and len(period) == 2:
                            end = period[1]
                            length = end if isinstance(end, dt.timedelta) else end - period[0]
                            patch["duration"] = format_duration(length)
                        overrides.setdefault(key, patch)
        elif name == "RECURRENCE-ID":
            recurrence_id = _when(value)
        elif name == "LOCATION":
            event["locations"] = {"1": {"@type": "Location", "name": str(value)}}
        elif name in ("URL", "ATTACH") and not (name == "ATTACH" and "ENCODING" in value.params):
            href = str(value)
            link: dict[str, Any] = {"@type": "Link", "href": href}
            if name == "ATTACH":
                link["rel"] = "enclosure"
                if value.params.get("FMTTYPE"):
                    link["contentType"] = str(value.params["FMTTYPE"])
                if str(value.params.get("SIZE", "")).isdigit():
                    link["size"] = int(value.params["SIZE"])
                if value.params.get("FILENAME"):
                    link["title"] = str(value.params["FILENAME"])
            else:
                link["rel"] = "describedby"
            event.setdefault("links", {})[_id(name, href)] = link
        elif name in ("ORGANIZER", "ATTENDEE"):
            address = str(value)
            key = _id(address.lower())
            participant = participants.setdefault(key, _participant(address, value.params))
            _other_parameters(participant, name, value.params)
            if name == "ORGANIZER":
                event["organizerCalendarAddress"] = address
                participant["roles"] = {**participant.get("roles", {}), "owner": True}
            else:
                for param, item in _participant(address, value.params).items():
                    participant.setdefault(param, item)
                _attendee(participant, value.params)
        elif name == "STATUS" and str(value).upper() in STATUS:
            event["status"] = STATUS[str(value).upper()]
        elif name == "TRANSP" and str(value).upper() in TRANSP:
            event["freeBusyStatus"] = TRANSP[str(value).upper()]
        elif name == "CLASS" and str(value).upper() in CLASS:
            event["privacy"] = CLASS[str(value).upper()]
        elif name == "CATEGORIES":
            for category in getattr(value, "cats", []):
                event.setdefault("keywords", {})[str(category)] = True
        elif name == "COLOR":
            event["color"] = str(value)
        elif name == "PRIORITY" and str(value).isdigit() and int(value) <= 9:
            event["priority"] = int(value)
        elif name == "SEQUENCE" and str(value).isdigit():
            event["sequence"] = int(value)
        elif name == "CREATED" and isinstance(moment, dt.datetime):
            event["created"] = _utc(moment)
        elif name == "LAST-MODIFIED" and isinstance(moment, dt.datetime):
            event["updated"] = _utc(moment)
        elif name == "DTSTAMP" and isinstance(moment, dt.datetime):
            stamp = _utc(moment)
        else:
            handled = False
        if not handled and name != "DTSTAMP":
            kept.append(_jcal_property(name, value))
    if stamp and "updated" not in event:
        event["updated"] = stamp
    if "duration" not in event and start is not None and start.is_date:
        event["duration"] = "P1D"  # RFC 5545 §3.6.1: a DATE start alone lasts the day
    if participants:
        event["participants"] = participants
    alarms, others = [], []
    for sub in vevent.subcomponents:
        (alarms if sub.name == "VALARM" else others).append(sub)
    if alarms:
        event["alerts"] = {f"a{n}": _alert(a, event.get("title")) for n, a in enumerate(alarms, 1)}
    if overrides:
        event["recurrenceOverrides"] = overrides
    if kept or others:
        event["iCalComponent"] = ["vevent", kept, [_jcal_component(c) for c in others]]
    return event, recurrence_id


def _override_patch(master: dict[str, Any], occurrence: dict[str, Any], key: str) -> dict:
    """What an override VEVENT changes in the occurrence ``key`` of ``master``."""
    base = {k: v for k, v in master.items() if k not in NOT_PATCHED}
    base["start"] = key
    other = {k: v for k, v in occurrence.items() if k not in NOT_PATCHED}
    return jscalendar.diff(base, other)


def read_calendar(data: bytes | str) -> Parsed:
    """Every VEVENT of the iCalendar object(s) in ``data`` as JSCalendar Events: one per
    UID, the overrides (RECURRENCE-ID) folded into the master's recurrenceOverrides; an
    override without its master stays an Event of its own, with its recurrenceId."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    try:
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise NotICalendar(f"not iCalendar: {exc}") from None
    calendars = [c for c in calendars if c.name == "VCALENDAR"]
    if not calendars:
        raise NotICalendar("no VCALENDAR object")
    parsed = Parsed(method=None)
    masters: dict[str, dict[str, Any]] = {}
    pending: list[tuple[dict[str, Any], When]] = []
    order: list[dict[str, Any]] = []
    for calendar in calendars:
        if "METHOD" in calendar and parsed.method is None:
            parsed.method = str(calendar["METHOD"]).lower()
        prodid = str(calendar["PRODID"]) if "PRODID" in calendar else None
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                continue  # (zones are IANA names here)
            if component.name != "VEVENT":
                parsed.skipped.append(f"a {component.name} is not an event")
                continue
            try:
                event, recurrence_id = _event(component, prodid)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                parsed.skipped.append(f"VEVENT {component.get('UID', '')}: {exc}")
                continue
            if recurrence_id is None and not event.get("uid"):
                order.append(event)  # (nothing to fold into it: UID is mandatory)
            elif recurrence_id is None:
                uid = event["uid"]
                if uid in masters:
                    parsed.skipped.append(f"VEVENT {uid}: a second master for its UID")
                    continue
                masters[uid] = event
                order.append(event)
            else:
                pending.append((event, recurrence_id))
    for occurrence, recurrence_id in pending:
        master = masters.get(occurrence.get("uid") or "")
        if master is None or "start" not in master:
            occurrence["recurrenceId"] = _local(recurrence_id.local)
            if recurrence_id.zone is not None:
                occurrence["recurrenceIdTimeZone"] = recurrence_id.zone
            order.append(occurrence)
            continue
        key = _local(recurrence_id.in_zone(master.get("timeZone")))
        overrides = master.setdefault("recurrenceOverrides", {})
        overrides[key] = _override_patch(master, occurrence, key)
    parsed.events = order
    return parsed


def from_ical(data: bytes | str) -> tuple[str | None, list[dict[str, Any]]]:
    """The METHOD of the iCalendar object (lower case, None without one) and its events as
    JSCalendar Events, one per UID; raises NotICalendar when ``data`` is none."""
    parsed = read_calendar(data)
    return parsed.method, parsed.events


# -- JSCalendar to iCalendar ---------------------------------------------------------------


def _moment(local: str, zone: str | None, is_date: bool) -> dt.datetime | dt.date:
    moment = jscalendar.local_datetime(local)
    if is_date:
        return moment.date()
    if zone in UTC_ZONES:
        return moment.replace(tzinfo=dt.UTC)
    if zone:
        return moment.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return moment


def _kept(component: Component, jcal: Any) -> None:
    """Put back what the import kept (a jCal component's properties and components)."""
    if not isinstance(jcal, list) or len(jcal) != 3:
        return
    _, props, comps = jcal
    for item in props if isinstance(props, list) else []:
        if not (isinstance(item, list) and len(item) >= 4 and isinstance(item[0], str)):
            continue
        name, params, _kind, value = item[0], item[1], item[2], item[3]
        parameters = {str(k).upper(): v for k, v in (params or {}).items()}
        component.add(name.upper(), prop.vInline(str(value), params=parameters))
    for item in comps if isinstance(comps, list) else []:
        if isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            sub = Component()
            sub.name = item[0].upper()
            _kept(sub, item)
            component.add_component(sub)


def _kept_names(jcal: Any) -> set[str]:
    if isinstance(jcal, list) and len(jcal) == 3 and isinstance(jcal[1], list):
        return {str(p[0]).upper() for p in jcal[1] if isinstance(p, list) and p}
    return set()


def _rrule(rule: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"FREQ": rule["frequency"].upper()}
    if rule.get("interval", 1) != 1:
        out["INTERVAL"] = rule["interval"]
    for name, key in (("rscale", "RSCALE"), ("skip", "SKIP"), ("firstDayOfWeek", "WKST")):
        if rule.get(name):
            out[key] = rule[name].upper()
    if rule.get("byDay"):
        out["BYDAY"] = [f"{d.get('nthOfPeriod', '')}{d['day'].upper()}" for d in rule["byDay"]]
    for name, key in (("byMonthDay", "BYMONTHDAY"), ("byYearDay", "BYYEARDAY"),
                      ("byWeekNo", "BYWEEKNO"), ("byHour", "BYHOUR"), ("byMinute", "BYMINUTE"),
                      ("bySecond", "BYSECOND"), ("bySetPosition", "BYSETPOS"),
                      ("byMonth", "BYMONTH")):  # fmt: skip
        if rule.get(name):
            out[key] = list(rule[name])
    if rule.get("count") is not None:
        out["COUNT"] = rule["count"]
    if rule.get("until"):
        zone = event.get("timeZone")
        until = _moment(rule["until"], zone, bool(event.get("showWithoutTime")))
        if isinstance(until, dt.datetime) and until.tzinfo is not None:
            until = until.astimezone(dt.UTC)  # RFC 5545 §3.3.10: UTC with a zoned DTSTART
        out["UNTIL"] = until
    return out


def _alarm(alert: dict[str, Any], event: dict[str, Any]) -> icalendar.Alarm:
    alarm = icalendar.Alarm()
    kept = alert.get("iCalComponent")
    names = _kept_names(kept)
    if "ACTION" not in names:
        alarm.add("ACTION", (alert.get("action") or "display").upper())
    trigger = alert.get("trigger") or {}
    if trigger.get("@type") == "AbsoluteTrigger" and trigger.get("when"):
        when = jscalendar.local_datetime(trigger["when"].rstrip("Z")).replace(tzinfo=dt.UTC)
        alarm.add("TRIGGER", when, parameters={"VALUE": "DATE-TIME"})
    elif trigger.get("offset"):
        params = {"RELATED": "END"} if trigger.get("relativeTo") == "end" else {}
        alarm.add("TRIGGER", parse_duration(trigger["offset"]), parameters=params)
    if alert.get("acknowledged"):
        alarm.add("ACKNOWLEDGED", jscalendar.local_datetime(
            alert["acknowledged"].rstrip("Z")).replace(tzinfo=dt.UTC))  # fmt: skip
    if "DESCRIPTION" not in names and (alert.get("action") or "display") == "display":
        alarm.add("DESCRIPTION", event.get("title") or "Reminder")  # (§3.6.6: required)
    _kept(alarm, kept)
    return alarm


def _vevent(
    event: dict[str, Any], recurrence_id: str | None = None, rid_zone: str | None = None
) -> icalendar.Event:
    vevent = icalendar.Event()
    zone = event.get("timeZone")
    is_date = bool(event.get("showWithoutTime"))
    kept = event.get("iCalComponent")
    vevent.add("UID", event.get("uid") or "")
    vevent.add("DTSTAMP", _stamp(event.get("updated")))
    if recurrence_id is not None:
        vevent.add("RECURRENCE-ID", _moment(recurrence_id, rid_zone or zone, is_date))
    if event.get("start"):
        vevent.add("DTSTART", _moment(event["start"], zone, is_date))
        if event.get("duration"):
            vevent.add("DTEND", _end(event))
    if event.get("title"):
        vevent.add("SUMMARY", event["title"])
    if event.get("description"):
        vevent.add("DESCRIPTION", event["description"])
    if event.get("recurrenceRule") and recurrence_id is None:
        vevent.add("RRULE", _rrule(event["recurrenceRule"], event))
    if recurrence_id is None:
        overrides = event.get("recurrenceOverrides") or {}
        excluded = [k for k, p in overrides.items() if p == {"excluded": True}]
        # (an override of a date the rule does not make is an RDATE too)
        added = [k for k, p in overrides.items() if p != {"excluded": True}
                 and not recur.makes(event, k, otherwise=True)]  # fmt: skip
        for name, keys in (("EXDATE", excluded), ("RDATE", added)):
            if keys:
                vevent.add(name, [_moment(k, zone, is_date) for k in sorted(keys)])
    locations = event.get("locations") or {}
    main = locations.get(event.get("mainLocationId") or "") or next(iter(locations.values()), None)
    if isinstance(main, dict) and main.get("name"):
        vevent.add("LOCATION", main["name"])
    url_written = False
    for link in (event.get("links") or {}).values():
        if not isinstance(link, dict) or not link.get("href"):
            continue  # (a blobId alone: the blob is not inlined)
        if link.get("rel") != "enclosure" and not url_written:
            vevent.add("URL", link["href"], parameters={"VALUE": "URI"})
            url_written = True
            continue
        params = {}
        if link.get("contentType"):
            params["FMTTYPE"] = link["contentType"]
        if link.get("size") is not None:
            params["SIZE"] = str(link["size"])
        if link.get("title"):
            params["FILENAME"] = link["title"]
        vevent.add("ATTACH", prop.vUri(link["href"]), parameters=params)
    _people(vevent, event)
    if event.get("status"):
        vevent.add("STATUS", event["status"].upper())
    if event.get("freeBusyStatus"):
        vevent.add("TRANSP", "TRANSPARENT" if event["freeBusyStatus"] == "free" else "OPAQUE")
    if event.get("privacy"):
        vevent.add("CLASS", {v: k for k, v in CLASS.items()}.get(event["privacy"], "PUBLIC"))
    if event.get("keywords"):
        vevent.add("CATEGORIES", list(event["keywords"]))
    if event.get("color"):
        vevent.add("COLOR", event["color"])
    if event.get("priority"):
        vevent.add("PRIORITY", event["priority"])
    if event.get("sequence"):
        vevent.add("SEQUENCE", event["sequence"])
    for name, key in (("CREATED", "created"), ("LAST-MODIFIED", "updated")):
        if event.get(key):
            vevent.add(name, _stamp(event[key]))
    for alert in (event.get("alerts") or {}).values():
        if isinstance(alert, dict):
            vevent.add_component(_alarm(alert, event))
    _kept(vevent, kept)
    return vevent


def _stamp(text: str | None) -> dt.datetime:
    if text:
        return jscalendar.local_datetime(text.rstrip("Z")).replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _end(event: dict[str, Any]) -> dt.datetime | dt.date:
    """DTEND: the start plus the duration (§1.5.6), in endTimeZone when there is one."""
    start = jscalendar.local_datetime(event["start"])
    if event.get("showWithoutTime"):
        return (start + parse_duration(event["duration"])).date()
    zone = event.get("timeZone")
    end = jscalendar.add_duration(start, zone, event["duration"])
    if zone is None:  # floating: the same arithmetic, read as local
        return end.replace(tzinfo=None)
    target = event.get("endTimeZone") or zone
    if target in UTC_ZONES:
        return end
    return end.astimezone(zoneinfo.ZoneInfo(target))


def _people(vevent: icalendar.Event, event: dict[str, Any]) -> None:
    participants = [p for p in (event.get("participants") or {}).values() if isinstance(p, dict)]
    organizer = event.get("organizerCalendarAddress")
    for participant in participants:
        roles = participant.get("roles") or {"attendee": True}
        address = participant.get("calendarAddress") or (
            f"mailto:{participant['email']}" if participant.get("email") else None)
        if not address:
            continue
        params: dict[str, Any] = {}
        if participant.get("name"):
            params["CN"] = participant["name"]
        if participant.get("sentBy"):
            params["SENT-BY"] = participant["sentBy"]
        if organizer is None and roles.get("owner"):
            organizer = address
        email = participant.get("email")
        if email and address.lower() != f"mailto:{email}".lower():
            params["EMAIL"] = email
        kept = participant.get("iCalParameters") or {}
        if address == organizer and "ORGANIZER" not in vevent:
            extra = {str(k).upper(): v for k, v in (kept.get("organizer") or {}).items()}
            vevent.add("ORGANIZER", prop.vCalAddress(address), parameters={**params, **extra})
        if set(roles) - {"owner"}:
            kind = participant.get("kind")
            if kind:
                params["CUTYPE"] = {v: k for k, v in CUTYPE.items()}.get(kind, "UNKNOWN")
            if roles.get("chair"):
                params["ROLE"] = "CHAIR"
            elif roles.get("optional"):
                params["ROLE"] = "OPT-PARTICIPANT"
            elif roles.get("informational") and not roles.get("attendee"):
                params["ROLE"] = "NON-PARTICIPANT"
            if participant.get("participationStatus"):
                params["PARTSTAT"] = participant["participationStatus"].upper()
            if participant.get("expectReply") is not None:
                params["RSVP"] = "TRUE" if participant["expectReply"] else "FALSE"
            params.update({str(k).upper(): v for k, v in (kept.get("attendee") or {}).items()})
            vevent.add("ATTENDEE", prop.vCalAddress(address), parameters=params)
    if organizer and "ORGANIZER" not in vevent:
        vevent.add("ORGANIZER", prop.vCalAddress(organizer))


def _inline_blobs(value: Any, blob: Callable[[str], bytes | None]) -> Any:
    """``value`` with each Link that names a blob and no href given the blob as a data:
    URL (JMAP Calendars §5.3: "The server MUST translate this to an embedded data: URL
    when sending the event to a system that cannot access the blob"), wherever a Link is:
    the event's, a location's or participant's, inside overrides."""
    if isinstance(value, list):
        return [_inline_blobs(v, blob) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _inline_blobs(v, blob) for k, v in value.items()}
    blob_id = out.get("blobId")
    if isinstance(blob_id, str) and not out.get("href") and out.get("@type", "Link") == "Link":
        data = blob(blob_id)
        if data is not None:
            kind = out.get("contentType") or "application/octet-stream"
            out["href"] = f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
    return out


def to_ical(
    events: list[dict[str, Any]], method: str | None = None,
    blob: Callable[[str], bytes | None] | None = None,
) -> bytes:
    """One VCALENDAR of ``events`` (JSCalendar Events): each recurring one as its master
    VEVENT and a VEVENT per overridden occurrence; METHOD when given; a VTIMEZONE for
    each zone used.  ``blob(id)`` gives a blob's bytes: attachments by blobId then go
    inline as data: URLs (§5.3); without it they are left out."""
    if blob is not None:
        events = [_inline_blobs(event, blob) for event in events]
    calendar = icalendar.Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    if method:
        calendar.add("METHOD", method.upper())
    for event in events:
        if event.get("recurrenceId") and not event.get("recurrenceRule"):
            alone = {k: v for k, v in event.items()
                     if k not in ("recurrenceId", "recurrenceIdTimeZone")}  # fmt: skip
            calendar.add_component(_vevent(alone, event["recurrenceId"],
                                           event.get("recurrenceIdTimeZone")))  # fmt: skip
            continue
        calendar.add_component(_vevent(event))
        for key, patch in sorted((event.get("recurrenceOverrides") or {}).items()):
            if isinstance(patch, dict) and patch and patch != {"excluded": True}:
                calendar.add_component(_vevent(jscalendar.occurrence(event, key, patch), key))
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())


__all__ = ["NotICalendar", "Parsed", "from_ical", "read_calendar", "to_ical"]
