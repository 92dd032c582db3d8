"""Scheduling rules at the wire (draft-ietf-jmap-calendars §5.9, §5.9.2, §9; RFC 5546,
RFC 6047): who the server sends as, what a message says, what a CANCEL changes.  Each
test is a regression test of a reviewer's finding (self-contained: the helpers are
test_scheduling.py's)."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
from jmap_host_calendars import testing as calendars_testing
from jmap_host_calendars.testing import (
    ALICE,
    BOB,
    CALENDARS,
    CORE,
    MAIL,
    MEETING,
    by_uid,
    default_calendar,
    inbox_subjects,
    relay_config,
)

from jmap_host import ForbiddenFrom, messaging
from jmap_host.testing import eventually, running_server, write_config

USING = [CORE, CALENDARS, MAIL]
connect = functools.partial(calendars_testing.connect, using=USING)


async def test_the_origin_cannot_make_itself_somebody_else(tmp_path, sink):
    """§5.9, §9: an event this account organizes (isOrigin) cannot get an
    organizerCalendarAddress that is not one of its ParticipantIdentities
    (invalidProperties), so no invitation leaves From somebody else; and the host's
    mail service refuses a From that is not the sending principal's (as
    EmailSubmission's forbiddenFrom, RFC 8621 §7.5)."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        cal = await default_calendar(alice)
        plain = {"calendarIds": {cal: True}, "uid": "spoof-1", "title": "Board meeting",
                 "start": "2030-03-02T10:00:00", "timeZone": "Europe/Berlin",
                 "duration": "PT1H"}  # fmt: skip
        eid = (await alice.ok("CalendarEvent/set", create={"e": plain}))["created"]["e"]["id"]
        r = await alice.ok("CalendarEvent/set", update={eid: {
            "organizerCalendarAddress": "mailto:ceo@example.net",
            "participants": {
                "c": {"calendarAddress": "mailto:ceo@example.net", "roles": {"owner": True}},
                "b": {"calendarAddress": "mailto:bob@example.org", "roles": {"attendee": True}},
                "x": {"calendarAddress": "mailto:victim@example.com",
                      "roles": {"attendee": True}},
            }}}, sendSchedulingMessages=True)  # fmt: skip
        assert r["notUpdated"][eid]["type"] == "invalidProperties"
        assert r["notUpdated"][eid]["properties"] == ["organizerCalendarAddress"]
        # (an address of alice's own is fine: the update goes through and is sent)
        r = await alice.ok("CalendarEvent/set", update={eid: {
            "participants": {
                "a": {"calendarAddress": "mailto:alice@example.org", "roles": {"owner": True}},
                "b": {"calendarAddress": "mailto:bob@example.org", "roles": {"attendee": True}},
            }}}, sendSchedulingMessages=True)  # fmt: skip
        assert eid in r["updated"]
        copy = await eventually(lambda: by_uid(bob, "spoof-1"))
        assert copy["organizerCalendarAddress"] == "mailto:alice@example.org"
        host = server.host
        who = await host.directory.lookup_email("alice@example.org")
        with pytest.raises(ForbiddenFrom):
            await messaging.send(host, who, "ceo@example.net", ["bob@example.org"],
                                 b"From: ceo@example.net\r\nSubject: x\r\n\r\nx\r\n")  # fmt: skip


async def test_a_title_of_several_lines_is_sent(tmp_path, sink):
    """§5.9.2.1: an event whose title has line breaks (and other control characters) is
    still sent (RFC 6047 via RFC 5322 §2.2: the Subject is one line, the breaks become
    spaces), not refused as noSupportedScheduleMethods."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        event = {**MEETING, "uid": "nl-1", "title": "Planning\r\nRoom 4\tand\x0bmore",
                 "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        r = await alice.ok("CalendarEvent/set", create={"e": event}, sendSchedulingMessages=True)
        assert "e" in (r["created"] or {}), r
        subjects = await eventually(lambda: inbox_subjects(bob))
        assert subjects == ["Invitation: Planning Room 4 and more"]
        copy = await eventually(lambda: by_uid(bob, "nl-1"))
        assert copy["title"].replace("\r\n", "\n") == "Planning\nRoom 4\tand\x0bmore"


def _brute_merged(periods: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """§2.2 by definition, minute by minute: the strongest status open in each minute,
    neighbours of one status joined."""
    rank = {"confirmed": 3, "unavailable": 2, "tentative": 1}
    out: list[list[str]] = []
    for minute in range(0, 24 * 60):
        at = f"2030-03-04T{minute // 60:02d}:{minute % 60:02d}:00Z"
        over = [p["busyStatus"] for p in periods if p["utcStart"] <= at < p["utcEnd"]]
        if not over:
            continue
        status = max(over, key=rank.__getitem__)
        end = f"2030-03-04T{(minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00Z"
        if out and out[-1][1] == at and out[-1][2] == status:
            out[-1][1] = end
        else:
            out.append([at, end, status])
    return [tuple(p) for p in out]  # type: ignore[misc]


def test_busy_periods_merge_in_n_log_n():
    """§2.2 Principal/getAvailability: periods merged and split (no overlaps, no touching
    neighbours of one status, the strongest status where they overlap) are the
    definition's on random periods, and 9,000 periods merge in well under a second
    (the pairwise merge took about 12 s)."""
    import random
    import time

    from jmap_host_calendars.availability import _merged

    def stamp(minute: int) -> str:
        return f"2030-03-04T{minute // 60:02d}:{minute % 60:02d}:00Z"

    rng = random.Random(5)
    statuses = ["confirmed", "unavailable", "tentative"]
    for _ in range(30):
        periods = []
        for _ in range(rng.randrange(1, 40)):
            start = rng.randrange(0, 23 * 60)
            periods.append({"utcStart": stamp(start),
                            "utcEnd": stamp(start + rng.randrange(1, 60)),
                            "busyStatus": rng.choice(statuses),
                            "event": None, "accountId": None})  # fmt: skip
        got = [(p["utcStart"], p["utcEnd"], p["busyStatus"]) for p in _merged(periods)]
        assert got == _brute_merged(periods)
    many = [{"utcStart": f"2030-03-04T10:00:{n % 60:02d}.{n:04d}Z",
             "utcEnd": f"2030-03-04T10:01:{n % 60:02d}.{n:04d}Z",
             "busyStatus": statuses[n % 3], "event": None, "accountId": None}
            for n in range(9000)]  # fmt: skip
    began = time.perf_counter()
    _merged(many)
    assert time.perf_counter() - began < 2.0


async def test_too_many_busy_periods_is_too_large(tmp_path):
    """§2.2: the server may refuse an answer too large: over MAX_BUSY_PERIODS (10,000)
    periods, here 13,000 occurrences of an event every 30 minutes, is tooLarge."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        alice.using = [*USING, "urn:ietf:params:jmap:principals",
                       "urn:ietf:params:jmap:principals:availability"]  # fmt: skip
        cal = await default_calendar(alice)
        often = {"calendarIds": {cal: True}, "title": "Often", "timeZone": "Etc/UTC",
                 "start": "2030-01-01T00:00:00", "duration": "PT10M",
                 "recurrenceRule": {"@type": "RecurrenceRule", "frequency": "minutely",
                                    "interval": 30}}  # fmt: skip
        await alice.ok("CalendarEvent/set", create={"e": often})
        window = {"utcStart": "2030-01-01T00:00:00Z", "utcEnd": "2030-10-01T00:00:00Z"}
        answer = await alice.call("Principal/getAvailability", id=ALICE, **window)
        assert answer["error"]["type"] == "tooLarge"
        short = {"utcStart": "2030-01-01T00:00:00Z", "utcEnd": "2030-01-02T00:00:00Z"}
        assert len((await alice.ok("Principal/getAvailability", id=ALICE, **short))["list"]) == 48


async def test_a_cancel_of_one_occurrence_leaves_exclusions_and_makes_none_up(tmp_path, sink):
    """RFC 5546 §3.2.5 CANCEL with a RECURRENCE-ID (§5.9.2.2): in the invitee's series the
    occurrence becomes cancelled, but one they excluded stays exactly {"excluded": true}
    (so it stays out of their calendar, JSCalendar §4.3.5), and a recurrence id the rule
    does not make and no override has is not added as a new, cancelled occurrence."""
    from jmap_host_calendars import imip, scheduling

    x, y, z = "2030-03-16T10:00:00", "2030-03-16T11:00:00", "2030-03-23T10:00:00"
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        series = {**MEETING, "uid": "cancel-1", "recurrenceRule": {"frequency": "weekly"},
                  "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        made = await alice.ok("CalendarEvent/set", create={"s": series},
                              sendSchedulingMessages=True)  # fmt: skip
        sid = made["created"]["s"]["id"]
        copy = await eventually(lambda: by_uid(bob, "cancel-1"))
        # bob leaves x out of his calendar (his copy only, nothing sent)
        r = await bob.ok("CalendarEvent/set", update={copy["id"]: {
            "recurrenceOverrides": {x: {"excluded": True}}}})  # fmt: skip
        assert copy["id"] in r["updated"], r
        # alice cancels x and z: two CANCELs to bob
        r = await alice.ok("CalendarEvent/set", update={sid: {
            "recurrenceOverrides": {x: {"excluded": True}, z: {"excluded": True}}}},
            sendSchedulingMessages=True)  # fmt: skip
        assert sid in r["updated"]

        async def cancelled() -> Any:
            return len(await inbox_subjects(bob)) == 2 and await by_uid(bob, "cancel-1")

        copy = await eventually(cancelled)
        assert copy["recurrenceOverrides"][x] == {"excluded": True}
        assert copy["recurrenceOverrides"][z] == {"status": "cancelled"}
        # a CANCEL from the organizer of an occurrence the series does not have
        event = {"@type": "Event", "uid": "cancel-1", "recurrenceId": y, "start": y,
                 "timeZone": "Europe/Berlin", "duration": "PT1H", "title": "Planning",
                 "sequence": copy["sequence"], "status": "cancelled",
                 "organizerCalendarAddress": "mailto:alice@example.org",
                 "participants": copy["participants"]}  # fmt: skip
        message = scheduling.Message("CANCEL", [event], "mailto:alice@example.org",
                                     ["mailto:bob@example.org"])  # fmt: skip
        who = await server.host.directory.lookup_email("alice@example.org")
        await messaging.send(server.host, who, "alice@example.org", ["bob@example.org"],
                             imip.build(message))  # fmt: skip

        async def third() -> Any:
            return len(await inbox_subjects(bob)) == 3 and await by_uid(bob, "cancel-1")

        copy = await eventually(third)
        assert sorted(copy["recurrenceOverrides"]) == [x, z]
        assert copy.get("status") != "cancelled"


async def test_an_alert_on_one_occurrence_is_nobody_elses(tmp_path, sink):
    """§5.4, §5.9.2.1: alerts (and the other per-user properties) are the user's own,
    inside recurrenceOverrides too: adding an alert to one occurrence sends no REQUEST
    and moves no sequence; a real change of that occurrence is sent without the alert
    (no VALARM)."""
    x = "2030-03-16T10:00:00"
    alert = {"trigger": {"@type": "OffsetTrigger", "offset": "-PT5M"}}
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        series = {**MEETING, "uid": "pu-1", "recurrenceRule": {"frequency": "weekly"},
                  "participants": {**MEETING["participants"], "b": {
                      "calendarAddress": "mailto:carol@example.net",
                      "roles": {"attendee": True}}},
                  "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        made = await alice.ok("CalendarEvent/set", create={"s": series},
                              sendSchedulingMessages=True)  # fmt: skip
        sid = made["created"]["s"]["id"]

        async def sent(n: int) -> Any:
            return len(sink.messages) >= n and sink.messages

        await eventually(lambda: sent(1))
        r = await alice.ok("CalendarEvent/set", update={sid: {
            "recurrenceOverrides": {x: {"alerts": {"x": alert}}}}},
            sendSchedulingMessages=True)  # fmt: skip
        assert sid in r["updated"]
        [stored] = (await alice.ok("CalendarEvent/get", ids=[sid]))["list"]
        assert stored["sequence"] == 0
        assert stored["recurrenceOverrides"][x]["alerts"]["x"]["trigger"]["offset"] == "-PT5M"
        r = await alice.ok("CalendarEvent/set", update={sid: {
            "recurrenceOverrides": {x: {"alerts": {"x": alert}, "title": "Planning (long)"}}}},
            sendSchedulingMessages=True)  # fmt: skip
        assert sid in r["updated"]
        messages = await eventually(lambda: sent(2))
        await trio.sleep(0.3)  # (nothing else follows)
        assert len(sink.messages) == 2
        second = messages[1][1]
        assert b"Planning (long)" in second and b"VALARM" not in second


async def test_an_occurrence_answer_back_to_the_series_answer_is_sent(tmp_path, sink):
    """§5.9.2.3: the invitee's answer for one occurrence is a REPLY for that recurrence id
    whenever the occurrence's answer changes, also back to the series' answer (bob
    accepts the series, declines one occurrence, then accepts it again: the organizer
    sees it accepted); one that only follows the series' new answer sends nothing more
    than the series' REPLY."""
    x = "2030-03-09T10:00:00"
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        series = {**MEETING, "uid": "series-r", "recurrenceRule": {"frequency": "weekly"},
                  "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        await alice.ok("CalendarEvent/set", create={"s": series}, sendSchedulingMessages=True)
        copy = await eventually(lambda: by_uid(bob, "series-r"))
        [pid] = [p for p, v in copy["participants"].items()
                 if v["calendarAddress"] == "mailto:bob@example.org"]  # fmt: skip

        def status_x(event: dict[str, Any]) -> Any:
            patch = (event.get("recurrenceOverrides") or {}).get(x) or {}
            return patch.get("participants/b", {}).get("participationStatus")

        async def alice_sees(series_status: str, occurrence_status: Any) -> Any:
            event = await by_uid(alice, "series-r")
            return (event["participants"]["b"]["participationStatus"] == series_status
                    and status_x(event) == occurrence_status)  # fmt: skip

        async def replies() -> int:
            return sum(s.startswith("Reply") for s in await inbox_subjects(alice))

        await bob.ok("CalendarEvent/set", update={copy["id"]: {
            f"participants/{pid}/participationStatus": "accepted"}},
            sendSchedulingMessages=True)  # fmt: skip
        await eventually(lambda: alice_sees("accepted", None))
        one = f"{copy['id']}.20300309T100000"
        for answer in ("declined", "accepted"):
            r = await bob.ok("CalendarEvent/set", update={one: {
                f"participants/{pid}/participationStatus": answer}},
                sendSchedulingMessages=True)  # fmt: skip
            assert one in r["updated"], r
            await eventually(lambda a=answer: alice_sees("accepted", a))
        assert await replies() == 3
        # the series' answer changes; the occurrence (its own "accepted") stays: one REPLY
        await bob.ok("CalendarEvent/set", update={copy["id"]: {
            f"participants/{pid}/participationStatus": "tentative"}},
            sendSchedulingMessages=True)  # fmt: skip
        await eventually(lambda: alice_sees("tentative", "accepted"))
        await trio.sleep(0.3)
        assert await replies() == 4
