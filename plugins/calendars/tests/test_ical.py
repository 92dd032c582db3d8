"""iCalendar (RFC 5545) in and out of the calendars plugin: the conversion of
ical.py ("JSCalendar: Converting from and to iCalendar", draft-ietf-calext-jscalendar-
icalendar), CalendarEvent/parse (draft-ietf-jmap-calendars §5.13, §1.5.3) at the wire,
iCalComponent returned only when asked for (§5.7), and ``jmap-host calendars
import|export``.

The awkward .ics below is the round trip's material: a weekly series in Berlin across the
start of summer time with an EXDATE given in New York time and an override whose
RECURRENCE-ID is in New York time too, an all-day event, a floating one, one that ends
in another zone, attendees, alarms (relative, absolute, acknowledged), X- properties with
parameters, a property this plugin does not convert (GEO) and an unknown component.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import icalendar
import pytest
from jmap_host_calendars import ical, jscalendar
from jmap_host_calendars.testing import cli, run_cli

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, running_server, write_config

AWKWARD = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Example Corp//Awkward Calendar 1.0//EN
BEGIN:VTIMEZONE
TZID:America/New_York
BEGIN:DAYLIGHT
DTSTART:20070311T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
TZNAME:EDT
TZOFFSETFROM:-0500
TZOFFSETTO:-0400
END:DAYLIGHT
BEGIN:STANDARD
DTSTART:20071104T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
TZNAME:EST
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:weekly-sync@example.com
DTSTAMP:20260301T100000Z
CREATED:20260301T090000Z
LAST-MODIFIED:20260301T100000Z
SEQUENCE:2
DTSTART;TZID=Europe/Berlin:20260320T090000
DTEND;TZID=Europe/Berlin:20260320T100000
RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=FR
EXDATE;TZID=America/New_York:20260327T040000
SUMMARY:Weekly sync
DESCRIPTION:Agenda:\\n1. numbers\\, 2. plans; 3. rest
LOCATION:Room 101
URL:https://example.com/sync
ATTACH;FMTTYPE=application/pdf;FILENAME=agenda.pdf:https://example.com/agenda.pdf
ORGANIZER;CN=Alice Example;X-ORG-ID=7:mailto:alice@example.org
ATTENDEE;CN=Alice Example;PARTSTAT=ACCEPTED:mailto:alice@example.org
ATTENDEE;CN="Bob, the Builder";PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CUTYPE=INDIVIDUAL:
 mailto:bob@example.com
ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=TENTATIVE;CN=Carol;X-NUM-GUESTS=2;
 SCHEDULE-STATUS=2.0:mailto:carol@example.net
ATTENDEE;CUTYPE=ROOM;ROLE=NON-PARTICIPANT;CN=Room 101:mailto:room101@example.com
STATUS:CONFIRMED
TRANSP:OPAQUE
CLASS:PRIVATE
CATEGORIES:work,meetings
COLOR:darkred
PRIORITY:3
GEO:52.52;13.40
X-MS-OLK-SENDER;X-ORIGIN="a:b";X-LIST=one,two:mailto:assistant@example.org
X-EXAMPLE-NOTE:kept\\, as it was
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Sync in 15 minutes
TRIGGER:-PT15M
X-WR-ALARMUID:0A1B
END:VALARM
BEGIN:VALARM
ACTION:EMAIL
SUMMARY:Sync today
DESCRIPTION:The weekly sync is today
ATTENDEE:mailto:alice@example.org
TRIGGER;VALUE=DATE-TIME:20260320T060000Z
ACKNOWLEDGED:20260320T060100Z
END:VALARM
BEGIN:X-VENDOR-WIDGET
X-WIDGET-STATE:folded
BEGIN:X-VENDOR-PART
X-PART:1
END:X-VENDOR-PART
END:X-VENDOR-WIDGET
END:VEVENT
BEGIN:VEVENT
UID:weekly-sync@example.com
DTSTAMP:20260301T100000Z
CREATED:20260301T090000Z
RECURRENCE-ID;TZID=America/New_York:20260403T030000
DTSTART;TZID=Europe/Berlin:20260403T100000
DTEND;TZID=Europe/Berlin:20260403T110000
SEQUENCE:2
SUMMARY:Weekly sync (moved)
DESCRIPTION:Agenda:\\n1. numbers\\, 2. plans; 3. rest
LOCATION:Room 101
URL:https://example.com/sync
ATTACH;FMTTYPE=application/pdf;FILENAME=agenda.pdf:https://example.com/agenda.pdf
ORGANIZER;CN=Alice Example;X-ORG-ID=7:mailto:alice@example.org
ATTENDEE;CN=Alice Example;PARTSTAT=ACCEPTED:mailto:alice@example.org
ATTENDEE;CN="Bob, the Builder";PARTSTAT=DECLINED;RSVP=TRUE;CUTYPE=INDIVIDUAL:
 mailto:bob@example.com
ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=TENTATIVE;CN=Carol;X-NUM-GUESTS=2;
 SCHEDULE-STATUS=2.0:mailto:carol@example.net
ATTENDEE;CUTYPE=ROOM;ROLE=NON-PARTICIPANT;CN=Room 101:mailto:room101@example.com
STATUS:CONFIRMED
TRANSP:OPAQUE
CLASS:PRIVATE
CATEGORIES:work,meetings
COLOR:darkred
PRIORITY:3
GEO:52.52;13.40
X-MS-OLK-SENDER;X-ORIGIN="a:b";X-LIST=one,two:mailto:assistant@example.org
X-EXAMPLE-NOTE:kept\\, as it was
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Sync in 15 minutes
TRIGGER:-PT15M
X-WR-ALARMUID:0A1B
END:VALARM
BEGIN:VALARM
ACTION:EMAIL
SUMMARY:Sync today
DESCRIPTION:The weekly sync is today
ATTENDEE:mailto:alice@example.org
TRIGGER;VALUE=DATE-TIME:20260320T060000Z
ACKNOWLEDGED:20260320T060100Z
END:VALARM
BEGIN:X-VENDOR-WIDGET
X-WIDGET-STATE:folded
BEGIN:X-VENDOR-PART
X-PART:1
END:X-VENDOR-PART
END:X-VENDOR-WIDGET
END:VEVENT
BEGIN:VEVENT
UID:holidays@example.com
DTSTAMP:20260301T100000Z
DTSTART;VALUE=DATE:20261224
DTEND;VALUE=DATE:20261226
SUMMARY:Holidays
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:lunch@example.com
DTSTAMP:20260301T100000Z
DTSTART:20260601T120000
DURATION:PT45M
SUMMARY:Lunch\\, wherever I am
CLASS:CONFIDENTIAL
BEGIN:VALARM
ACTION:DISPLAY
DESCRIPTION:Lunch
TRIGGER;RELATED=END:PT0S
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:flight@example.com
DTSTAMP:20260301T100000Z
DTSTART;TZID=Europe/Berlin:20260710T100000
DTEND;TZID=America/New_York:20260710T130000
SUMMARY:Flight to New York
STATUS:TENTATIVE
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")

# Set by the server, or written as the server has them (DTSTAMP, LAST-MODIFIED: the
# origin's time, §5.9); VTIMEZONEs are written for the zones used; DTEND or DURATION is
# compared as the end.
NOT_COMPARED = {"DTSTAMP", "LAST-MODIFIED", "DTEND", "DURATION"}
# Parameters the other side may write or leave out, for the same meaning.
DEFAULT_PARAMETERS = {("ROLE", "REQ-PARTICIPANT"), ("VALUE", "DATE-TIME"), ("VALUE", "URI"),
                      ("VALUE", "DATE"), ("RELATED", "START")}  # fmt: skip


def _moment(value: Any) -> Any:
    """A date, a date-time (as its instant, or floating) or a duration, comparable."""
    if isinstance(value, tuple):
        return tuple(_moment(v) for v in value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return ("floating", value)
        return ("at", value.astimezone(dt.UTC))
    if isinstance(value, dt.date):
        return ("date", value)
    if isinstance(value, dt.timedelta):
        return ("duration", value)
    return value


def _value(name: str, value: Any) -> Any:
    params = {(k.upper(), str(v)) for k, v in value.params.items()
              if k.upper() != "TZID"} - DEFAULT_PARAMETERS  # fmt: skip
    if hasattr(value, "dts"):  # EXDATE, RDATE: the set of instants
        return frozenset(_moment(d.dt) for d in value.dts), frozenset(params)
    if hasattr(value, "dt"):
        return _moment(value.dt), frozenset(params)
    if name == "RRULE":
        rule = {k: tuple(_moment(x) for x in v) for k, v in value.items()}
        return tuple(sorted(rule.items())), frozenset(params)
    if name == "CATEGORIES":
        return frozenset(str(c) for c in value.cats), frozenset(params)
    return value.to_ical(), frozenset(params)


def _normal(component: Any) -> dict[str, Any]:
    """A component property by property (each name: the set of its values with their
    parameters), its end as an instant, and its subcomponents likewise."""
    props: dict[str, set[Any]] = {}
    for name, value in component.property_items(recursive=False):
        if name in ("BEGIN", "END") or name in NOT_COMPARED:
            continue
        props.setdefault(name, set()).add(_value(name, value))
    if "DTSTART" in component:
        start = component["DTSTART"].dt
        if "DTEND" in component:
            end = component["DTEND"].dt
        elif "DURATION" in component:
            end = start + component["DURATION"].dt
        else:
            end = start
        props["END"] = {_moment(end)}
    subs = sorted(repr(_normal(s)) for s in component.subcomponents)
    return {"name": component.name, "props": props, "subs": subs}


def events_of(text: bytes | str) -> dict[tuple[str, Any], dict[str, Any]]:
    """The VEVENTs of an iCalendar object, by UID and RECURRENCE-ID instant, normalized."""
    calendar = icalendar.Calendar.from_ical(text)
    found = {}
    for event in calendar.walk("VEVENT"):
        rid = _moment(event["RECURRENCE-ID"].dt) if "RECURRENCE-ID" in event else None
        found[(str(event["UID"]), rid)] = _normal(event)
    return found


def assert_same_events(
    before: bytes | str, after: bytes | str, created_by_server: bool = False
) -> None:
    """Every VEVENT of ``before`` is in ``after`` with the same properties and components
    (with ``created_by_server``, a CREATED the server gave what had none, §5.9, aside)."""
    old, new = events_of(before), events_of(after)
    assert set(old) == set(new)
    for key in old:
        for name in set(old[key]["props"]) | set(new[key]["props"]):
            if created_by_server and name == "CREATED" and name not in old[key]["props"]:
                continue
            assert old[key]["props"].get(name) == new[key]["props"].get(name), (key, name)
        assert old[key]["subs"] == new[key]["subs"], key


# -- the conversion, without a server ------------------------------------------------------


def test_awkward_calendar_round_trips():
    """from_ical then to_ical keeps every VEVENT property by property: the converted ones
    with their meaning (an instant is the same instant, whichever zone wrote it), the rest
    (X-, GEO, the unknown component, a VALARM's DESCRIPTION...) as they were."""
    method, events = ical.from_ical(AWKWARD.encode())
    assert method is None
    for event in events:
        jscalendar.validate_event(event)  # (what CalendarEvent/set accepts)
    out = ical.to_ical(events)
    assert_same_events(AWKWARD, out)
    # VTIMEZONEs for the zones the events use.
    zones = {str(z["TZID"]) for z in icalendar.Calendar.from_ical(out).walk("VTIMEZONE")}
    assert zones == {"Europe/Berlin", "America/New_York"}


def test_mapping_to_jscalendar():
    """The draft's mapping of what is stored: the start in its zone, floating, or a date
    (showWithoutTime); DTEND as a duration (endTimeZone when it differs); the override as
    a patch of what differs, the EXDATE as an exclusion, both keyed in the master's zone;
    participants, alerts, keywords, privacy, freeBusyStatus; the rest in iCalComponent."""
    _, events = ical.from_ical(AWKWARD)
    sync, holidays, lunch, flight = events
    assert sync["uid"] == "weekly-sync@example.com" and sync["title"] == "Weekly sync"
    assert sync["description"] == "Agenda:\n1. numbers, 2. plans; 3. rest"
    assert (sync["start"], sync["timeZone"], sync["duration"]) == (
        "2026-03-20T09:00:00", "Europe/Berlin", "PT1H")  # fmt: skip
    assert sync["recurrenceRule"] == {"@type": "RecurrenceRule", "frequency": "weekly",
                                      "count": 6, "byDay": [{"@type": "NDay", "day": "fr"}]}
    bob = ical._id("mailto:bob@example.com")
    # 04:00 in New York on 27 March is 09:00 in Berlin (08:00Z); 03:00 on 3 April is
    # 09:00 in Berlin, which is in summer time by then.
    assert sync["recurrenceOverrides"] == {
        "2026-03-27T09:00:00": {"excluded": True},
        "2026-04-03T09:00:00": {"start": "2026-04-03T10:00:00", "title": "Weekly sync (moved)",
                                f"participants/{bob}/participationStatus": "declined"},
    }  # fmt: skip
    assert sync["organizerCalendarAddress"] == "mailto:alice@example.org"
    people = {p["calendarAddress"]: p for p in sync["participants"].values()}
    assert people["mailto:alice@example.org"]["roles"] == {"owner": True, "attendee": True}
    assert people["mailto:bob@example.com"] == {
        "@type": "Participant", "calendarAddress": "mailto:bob@example.com",
        "name": "Bob, the Builder", "email": "bob@example.com", "kind": "individual",
        "roles": {"attendee": True}, "participationStatus": "needs-action",
        "expectReply": True,
    }  # fmt: skip
    assert people["mailto:carol@example.net"]["roles"] == {"attendee": True, "optional": True}
    # (parameters a Participant has no property for)
    assert people["mailto:carol@example.net"]["iCalParameters"] == {
        "attendee": {"x-num-guests": "2", "schedule-status": "2.0"}}
    assert people["mailto:alice@example.org"]["iCalParameters"] == {
        "organizer": {"x-org-id": "7"}}
    assert people["mailto:room101@example.com"]["kind"] == "location"
    assert people["mailto:room101@example.com"]["roles"] == {"informational": True}
    display, email = sync["alerts"].values()
    assert display["trigger"] == {"@type": "OffsetTrigger", "offset": "-PT15M"}
    assert display["action"] == "display"
    assert email["trigger"] == {"@type": "AbsoluteTrigger", "when": "2026-03-20T06:00:00Z"}
    assert email["acknowledged"] == "2026-03-20T06:01:00Z" and email["action"] == "email"
    assert ["description", {}, "unknown", "Sync in 15 minutes"] in display["iCalComponent"][1]
    assert sync["keywords"] == {"work": True, "meetings": True}
    assert (sync["privacy"], sync["freeBusyStatus"], sync["status"]) == (
        "private", "busy", "confirmed")  # fmt: skip
    assert (sync["priority"], sync["sequence"], sync["color"]) == (3, 2, "darkred")
    assert (sync["created"], sync["updated"]) == ("2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z")
    assert [loc["name"] for loc in sync["locations"].values()] == ["Room 101"]
    assert sorted((k["rel"], k["href"]) for k in sync["links"].values()) == [
        ("describedby", "https://example.com/sync"),
        ("enclosure", "https://example.com/agenda.pdf"),
    ]
    assert sync["prodId"] == "-//Example Corp//Awkward Calendar 1.0//EN"
    name, kept, components = sync["iCalComponent"]
    assert name == "vevent"
    assert ["x-ms-olk-sender", {"x-origin": "a:b", "x-list": ["one", "two"]}, "unknown",
            "mailto:assistant@example.org"] in kept  # fmt: skip
    assert ["x-example-note", {}, "unknown", "kept\\, as it was"] in kept
    assert ["geo", {}, "unknown", "52.52;13.4"] in kept or ["geo", {}, "unknown",
                                                            "52.52;13.40"] in kept
    assert components == [["x-vendor-widget", [["x-widget-state", {}, "unknown", "folded"]],
                           [["x-vendor-part", [["x-part", {}, "unknown", "1"]], []]]]]
    assert (holidays["start"], holidays["showWithoutTime"], holidays["duration"]) == (
        "2026-12-24T00:00:00", True, "P2D")  # fmt: skip
    assert "timeZone" not in holidays and holidays["freeBusyStatus"] == "free"
    assert (lunch["start"], lunch["duration"], lunch.get("timeZone")) == (
        "2026-06-01T12:00:00", "PT45M", None)  # fmt: skip
    assert lunch["title"] == "Lunch, wherever I am" and lunch["privacy"] == "secret"
    assert [a["trigger"] for a in lunch["alerts"].values()] == [
        {"@type": "OffsetTrigger", "offset": "PT0S", "relativeTo": "end"}]
    # 10:00 in Berlin (08:00Z) to 13:00 in New York (17:00Z): nine hours.
    assert (flight["duration"], flight["endTimeZone"]) == ("PT9H", "America/New_York")


def test_jscalendar_to_icalendar_and_back():
    """An event made in JMAP (no iCalComponent): to_ical writes METHOD, the master with
    RRULE and EXDATE, an RDATE for an added date and a VEVENT for the patched occurrence;
    from_ical gives the same event back."""
    event = {
        "@type": "Event", "uid": "made-in-jmap", "title": "Stand-up",
        "start": "2026-10-20T09:30:00",
        "timeZone": "Europe/Paris", "duration": "PT15M",
        "recurrenceRule": {"@type": "RecurrenceRule", "frequency": "daily", "interval": 2,
                           "until": "2026-11-03T09:30:00"},
        "recurrenceOverrides": {
            "2026-10-22T09:30:00": {"excluded": True},
            "2026-10-26T09:30:00": {"title": "Stand-up (long)", "duration": "PT1H"},
            "2026-10-31T11:00:00": {},
        },
        "participants": {"p1": {"@type": "Participant", "calendarAddress": "mailto:a@example.org",
                                "roles": {"owner": True}}},
        "alerts": {"a1": {"@type": "Alert", "trigger": {"@type": "OffsetTrigger",
                                                        "offset": "-PT5M"}}},
    }  # fmt: skip
    out = ical.to_ical([event], method="request")
    calendar = icalendar.Calendar.from_ical(out)
    assert str(calendar["METHOD"]) == "REQUEST"
    master, moved = calendar.walk("VEVENT")
    assert str(master["RRULE"].to_ical(), "ascii") == "FREQ=DAILY;UNTIL=20261103T083000Z;INTERVAL=2"
    assert [d.dt.isoformat() for d in master["EXDATE"].dts] == ["2026-10-22T09:30:00+02:00"]
    assert [d.dt.isoformat() for d in master["RDATE"].dts] == ["2026-10-31T11:00:00+01:00"]
    assert moved["RECURRENCE-ID"].dt.isoformat() == "2026-10-26T09:30:00+01:00"
    assert str(master["ORGANIZER"]) == "mailto:a@example.org" and "ATTENDEE" not in master
    method, [back] = ical.from_ical(out)
    assert method == "request"
    assert back["recurrenceRule"] == event["recurrenceRule"]
    assert back["recurrenceOverrides"] == event["recurrenceOverrides"]
    assert back["alerts"]["a1"]["trigger"] == event["alerts"]["a1"]["trigger"]
    assert [p["roles"] for p in back["participants"].values()] == [{"owner": True}]


def test_an_occurrence_alone():
    """An override whose master is not in the object (an iMIP REQUEST for one occurrence)
    is an Event with its recurrenceId (and recurrenceIdTimeZone), and is written back so."""
    text = AWKWARD.split("BEGIN:VEVENT", 1)[0] + "BEGIN:VEVENT" + AWKWARD.split(
        "BEGIN:VEVENT")[2].split("END:VEVENT")[0] + "END:VEVENT\r\nEND:VCALENDAR\r\n"  # fmt: skip
    _, [alone] = ical.from_ical(text)
    assert (alone["recurrenceId"], alone["recurrenceIdTimeZone"]) == (
        "2026-04-03T03:00:00", "America/New_York")  # fmt: skip
    jscalendar.validate_event(alone)
    out = ical.to_ical([alone])
    [vevent] = icalendar.Calendar.from_ical(out).walk("VEVENT")
    assert vevent["RECURRENCE-ID"].dt.isoformat() == "2026-04-03T03:00:00-04:00"


@pytest.mark.parametrize("data", [b"", b"hello", b"BEGIN:VCARD\r\nVERSION:4.0\r\nEND:VCARD\r\n",
                                  b"BEGIN:VCALENDAR\r\nnot a content line\r\nEND:VCALENDAR\r\n",
                                  b"\xff\xfe\x00garbage"])  # fmt: skip
def test_not_icalendar(data):
    """What is no iCalendar object raises NotICalendar (CalendarEvent/parse: notParsable)."""
    with pytest.raises(ical.NotICalendar):
        ical.from_ical(data)


def test_what_is_not_an_event_is_reported():
    """A VTODO is not an event: read_calendar says it left it out, and why."""
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:PUBLISH\r\nBEGIN:VTODO\r\n"
            "UID:t1\r\nSUMMARY:a task\r\nEND:VTODO\r\nEND:VCALENDAR\r\n")  # fmt: skip
    parsed = ical.read_calendar(text)
    assert (parsed.method, parsed.events, parsed.skipped) == (
        "publish", [], ["a VTODO is not an event"])  # fmt: skip


# -- at the wire, and the command line -----------------------------------------------------

CORE = "urn:ietf:params:jmap:core"
CALENDARS = "urn:ietf:params:jmap:calendars"
PARSE = "urn:ietf:params:jmap:calendars:parse"
ALICE, BOB = account_id_for("alice"), account_id_for("bob")


async def test_import_get_export_round_trip(tmp_path):
    """``jmap-host calendars import`` (a progress bar; one event per UID, the override
    folded in), the events at the wire (§5.7: iCalComponent only when asked for), and
    ``export``: every VEVENT property of the awkward file comes back.  Importing again
    changes nothing (idempotent by uid); a changed file updates in place; what is not an
    event, or what the server refuses, is skipped with the reason."""
    config = write_config(tmp_path)
    source = tmp_path / "awkward.ics"
    source.write_bytes(AWKWARD.encode())
    first = await run_cli("calendars", "import", "-c", str(config), "--account", "alice",
                          str(source))  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "4 events created, 0 updated, 0 skipped" in first.stdout
    assert "importing" in first.stderr  # the progress bar
    async with running_server(config) as server:
        async with server.client("alice") as http:
            alice = AccountClient(http, ALICE, [CORE, CALENDARS])
            ids = (await alice.ok("CalendarEvent/query", filter={"uid": "weekly-sync@example.com"},
                                  ))["ids"]  # fmt: skip
            [sync] = (await alice.ok("CalendarEvent/get", ids=ids))["list"]
            assert "iCalComponent" not in sync  # §5.7
            # Written by the standard /set: in the change log like a client's creates.
            changes = await alice.ok("CalendarEvent/changes", sinceState="0")
            assert len(changes["created"]) == 4 and ids[0] in changes["created"]
            _, [expected, *_] = ical.from_ical(AWKWARD)
            for name in ("title", "start", "timeZone", "duration", "recurrenceRule",
                         "recurrenceOverrides", "participants", "alerts", "keywords",
                         "privacy", "organizerCalendarAddress", "links", "locations",
                         "created", "sequence"):  # fmt: skip
                assert sync[name] == expected[name], name
            asked = (await alice.ok("CalendarEvent/get", ids=ids,
                                    properties=["iCalComponent"]))["list"]  # fmt: skip
            assert asked == [{"id": ids[0], "iCalComponent": expected["iCalComponent"]}]
            # The occurrence moved by the override, in Berlin's summer time.
            moved = await alice.ok("CalendarEvent/query", expandRecurrences=True, filter={
                "after": "2026-04-03T00:00:00", "before": "2026-04-04T00:00:00"})  # fmt: skip
            [occurrence] = (await alice.ok("CalendarEvent/get", ids=moved["ids"],
                                           properties=["title", "utcStart"]))["list"]  # fmt: skip
            assert occurrence["title"] == "Weekly sync (moved)"
            assert occurrence["utcStart"] == "2026-04-03T08:00:00Z"
        target = tmp_path / "out.ics"
        out = await run_cli("calendars", "export", "-c", str(config), "--account", "alice",
                            str(target))  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "5 VEVENTs exported" in out.stdout and "exporting" in out.stderr
    assert_same_events(AWKWARD, target.read_bytes(), created_by_server=True)

    again = cli("calendars", "import", "-c", str(config), "--account", "alice", str(source))
    assert "0 events created, 0 updated, 4 skipped" in again.stdout, again.stderr
    assert "skipped holidays@example.com: already there, unchanged" in again.stderr
    changed = AWKWARD.replace("SUMMARY:Holidays", "SUMMARY:Winter holidays").replace(
        "END:VCALENDAR", "BEGIN:VTODO\r\nUID:t1\r\nEND:VTODO\r\nBEGIN:VEVENT\r\nUID:bad\r\n"
        "DTSTAMP:20260301T100000Z\r\nSUMMARY:no start\r\nEND:VEVENT\r\nEND:VCALENDAR")
    source.write_bytes(changed.encode())
    third = cli("calendars", "import", "-c", str(config), "--account", "alice", str(source))
    assert "0 events created, 1 updated, 5 skipped" in third.stdout, third.stderr
    assert "skipped a VTODO is not an event" in third.stderr
    assert "skipped bad: invalidProperties" in third.stderr
    other = tmp_path / "other.ics"
    calendar_only = cli("calendars", "export", "-c", str(config), "--account", "alice",
                        "--calendar", "nope", str(other))  # fmt: skip
    assert calendar_only.returncode == 1 and "no calendar 'nope'" in calendar_only.stderr
    (tmp_path / "junk.ics").write_bytes(b"hello")
    junk = cli("calendars", "import", "-c", str(config), "--account", "alice",
               str(tmp_path / "junk.ics"))  # fmt: skip
    assert junk.returncode == 1 and "not iCalendar" in junk.stderr
    async with running_server(config) as server:
        async with server.client("alice") as http:
            alice = AccountClient(http, ALICE, [CORE, CALENDARS])
            found = await alice.ok("CalendarEvent/query", filter={"uid": "holidays@example.com"})
            [holidays] = (await alice.ok("CalendarEvent/get", ids=found["ids"]))["list"]
            assert holidays["title"] == "Winter holidays" and holidays["sequence"] == 1
            everything = await alice.ok("CalendarEvent/query")
            assert len(everything["ids"]) == 4  # nothing doubled


async def test_calendar_event_parse(tmp_path):
    """§5.13 CalendarEvent/parse, §1.5.3 its capability (an empty object in the session and
    the account): a blob's events (one per UID, overrides folded in, the METHOD as
    ``method``), the metadata properties null when asked for, ``properties``; a blob that
    is no iCalendar, or holds no event, notParsable; another account's blob and an unknown
    id notFound; nothing stored."""
    invitation = AWKWARD.replace("PRODID:-//Example Corp//Awkward Calendar 1.0//EN",
                                 "PRODID:x\r\nMETHOD:REQUEST")  # fmt: skip
    todo = b"BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    async with running_server(write_config(tmp_path)) as server:
        async with server.client("alice") as http, server.client("bob") as bob_http:
            alice = AccountClient(http, ALICE, [CORE, CALENDARS, PARSE])
            bob = AccountClient(bob_http, BOB, [CORE, CALENDARS, PARSE])
            session = (await http.get("/jmap/session")).json()
            assert session["capabilities"][PARSE] == {}
            assert session["accounts"][ALICE]["accountCapabilities"][PARSE] == {}
            mine = await alice.upload(invitation.encode(), "text/calendar")
            junk = await alice.upload(b"hello", "text/calendar")
            tasks = await alice.upload(todo, "text/calendar")
            theirs = await bob.upload(AWKWARD.encode(), "text/calendar")
            result = await alice.ok("CalendarEvent/parse",
                                    blobIds=[mine, junk, tasks, theirs, "Gnope"])  # fmt: skip
            assert result["notParsable"] == [junk, tasks]
            assert sorted(result["notFound"]) == sorted([theirs, "Gnope"])
            events = result["parsed"][mine]
            assert [e["uid"] for e in events] == ["weekly-sync@example.com",
                                                  "holidays@example.com", "lunch@example.com",
                                                  "flight@example.com"]  # fmt: skip
            assert all(e["method"] == "request" for e in events)
            assert "iCalComponent" not in events[0]  # (as CalendarEvent/get, §5.7)
            _, expected = ical.from_ical(AWKWARD)
            assert events[0]["recurrenceOverrides"] == expected[0]["recurrenceOverrides"]
            some = await alice.ok("CalendarEvent/parse", blobIds=[mine], properties=[
                "id", "baseEventId", "calendarIds", "isDraft", "isOrigin", "title",
                "utcStart", "iCalComponent"])  # fmt: skip
            first = some["parsed"][mine][0]
            assert first == {"id": None, "baseEventId": None, "calendarIds": None,
                             "isDraft": None, "isOrigin": None, "title": "Weekly sync",
                             "utcStart": "2026-03-20T08:00:00Z",
                             "iCalComponent": expected[0]["iCalComponent"]}  # fmt: skip
            assert (some["notFound"], some["notParsable"]) == (None, None)
            bad = await alice.call("CalendarEvent/parse", blobIds=[mine], properties=["Title"])
            assert bad["error"]["type"] == "invalidArguments"
            # Parsing stores nothing.
            assert (await alice.ok("CalendarEvent/query"))["ids"] == []
            # The method needs its own capability in "using".
            plain = AccountClient(http, ALICE, [CORE, CALENDARS])
            refused = await plain.call("CalendarEvent/parse", blobIds=[mine])
            assert refused["error"]["type"] == "unknownMethod"


def test_events_without_uid_stay_apart():
    """RFC 5545 makes UID mandatory; two VEVENTs without one are two events, not one event
    and a "second master" (the import command then gives each a uid of its content)."""
    text = ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20260101T100000Z\r\nEND:VEVENT\r\n"
            "BEGIN:VEVENT\r\nDTSTART:20260102T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    _, events = ical.from_ical(text)
    assert [(e["start"], e["timeZone"]) for e in events] == [
        ("2026-01-01T10:00:00", "Etc/UTC"), ("2026-01-02T10:00:00", "Etc/UTC")]
