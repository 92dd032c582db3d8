"""Scheduling at the wire (draft-ietf-jmap-calendars §5.9, §5.9.2, §5.2): CalendarEvent/set
with sendSchedulingMessages sends iTIP (RFC 5546) as iMIP mail (RFC 6047) through the mail
plugin (jmap_host.messaging), and iMIP arriving for a local user updates their calendar.

alice organizes, bob (local) is invited: bob's Inbox gets the REQUEST and his calendar the
event (isOrigin false, needs-action); bob accepts with sendSchedulingMessages and alice's
copy shows it (scheduleSequence, §5.2.1); alice destroys the event and bob's copy is
cancelled.  An external attendee's message goes to the relay; an address that is not
mailto:, or a server without the mail plugin, is noSupportedScheduleMethods (§5.9)."""

from __future__ import annotations

import base64
import functools
from typing import Any

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

from jmap_host.testing import eventually, running_server, write_config

USING = [CORE, CALENDARS, MAIL]
connect = functools.partial(calendars_testing.connect, using=USING)


async def test_invitation_accepted_and_cancelled_between_local_users(tmp_path, sink):
    """§5.9: the server sets organizerCalendarAddress when participants are added;
    §5.9.2.1 REQUEST to bob (not to alice's own address); iMIP in: bob's copy in his
    default calendar, isOrigin false, needs-action; §5.9.2.3 REPLY when bob accepts:
    alice's copy has bob accepted with scheduleSequence (§5.2.1) and scheduleUpdated
    (§5.2.2); §5.9.2.2 CANCEL when alice destroys it: bob's copy is cancelled."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)  # (bob has logged in once)
        event = {**MEETING, "calendarIds": {await default_calendar(alice): True}}
        created = await alice.ok("CalendarEvent/set", create={"e": event},
                                 sendSchedulingMessages=True)  # fmt: skip
        assert "e" in (created["created"] or {}), created
        mine = await by_uid(alice, MEETING["uid"])
        assert mine is not None
        assert mine["organizerCalendarAddress"] == "mailto:alice@example.org"
        assert mine["isOrigin"] is True

        # bob's Inbox gets the invitation, his calendar the event.
        copy = await eventually(lambda: by_uid(bob, MEETING["uid"]))
        assert copy["isOrigin"] is False
        assert copy["calendarIds"] == {await default_calendar(bob): True}
        assert copy["title"] == "Planning" and copy["start"] == "2030-03-02T10:00:00"
        assert copy["organizerCalendarAddress"] == "mailto:alice@example.org"
        [bob_pid] = [p for p, v in copy["participants"].items()
                     if v["calendarAddress"] == "mailto:bob@example.org"]  # fmt: skip
        assert copy["participants"][bob_pid]["participationStatus"] == "needs-action"
        subjects = await inbox_subjects(bob)
        assert any(s.startswith("Invitation: Planning") for s in subjects), subjects
        assert sink.messages == []  # (both are local: nothing went to the relay)

        # bob accepts: a REPLY to alice, whose copy now says so.
        answered = await bob.ok("CalendarEvent/set", update={copy["id"]: {
            f"participants/{bob_pid}/participationStatus": "accepted"}},
            sendSchedulingMessages=True)  # fmt: skip
        assert copy["id"] in (answered["updated"] or {}), answered

        async def accepted() -> dict[str, Any] | None:
            now = await by_uid(alice, MEETING["uid"])
            bob_there = (now or {}).get("participants", {}).get("b", {})
            return now if bob_there.get("participationStatus") == "accepted" else None

        mine = await eventually(accepted)
        assert mine["participants"]["b"]["scheduleSequence"] == mine["sequence"]
        assert "scheduleUpdated" in mine["participants"]["b"]
        assert mine["participants"]["a"]["participationStatus"] == "accepted"
        assert any(s.startswith("Reply (accepted)") for s in await inbox_subjects(alice))
        # §7: a change the server made from an iTIP message notifies the user, changedBy
        # the sender (by address: it came by mail); bob was told of the invitation so.
        told = (await alice.ok("CalendarEventNotification/get", ids=None))["list"]
        [reply] = [n for n in told if n["calendarEventId"] == mine["id"]]
        assert reply["type"] == "updated" and reply["eventPatch"] == {
            "participants/b": mine["participants"]["b"]}  # fmt: skip
        assert reply["changedBy"] == {"name": "Bob", "email": "bob@example.org",
                                      "principalId": None,
                                      "calendarAddress": "mailto:bob@example.org",
                                      "comment": None}  # fmt: skip
        invited = (await bob.ok("CalendarEventNotification/get", ids=None))["list"]
        assert [(n["type"], n["calendarEventId"], n["changedBy"]["email"])
                for n in invited] == [("created", copy["id"], "alice@example.org")]

        # alice moves it (§5.9.2.1: a REQUEST): bob's copy follows, his answer kept; a
        # per-user change alone (§5.4: keywords) sends nothing.
        moved = await alice.ok("CalendarEvent/set", update={mine["id"]: {
            "title": "Planning (moved)", "start": "2030-03-02T11:00:00"}},
            sendSchedulingMessages=True)  # fmt: skip
        assert mine["id"] in moved["updated"]

        async def followed() -> dict[str, Any] | None:
            now = await by_uid(bob, MEETING["uid"])
            return now if now and now["title"] == "Planning (moved)" else None

        copy = await eventually(followed)
        assert copy["start"] == "2030-03-02T11:00:00" and copy["sequence"] == 1
        assert copy["participants"][bob_pid]["participationStatus"] == "accepted"
        count = len(await inbox_subjects(bob))
        await alice.ok("CalendarEvent/set", update={mine["id"]: {"keywords": {"x": True}}},
                       sendSchedulingMessages=True)  # fmt: skip

        # alice cancels: bob's copy becomes cancelled.
        gone = await alice.ok("CalendarEvent/set", destroy=[mine["id"]],
                              sendSchedulingMessages=True)  # fmt: skip
        assert gone["destroyed"] == [mine["id"]]

        async def cancelled() -> dict[str, Any] | None:
            now = await by_uid(bob, MEETING["uid"])
            return now if now and now.get("status") == "cancelled" else None

        await eventually(cancelled)
        subjects = await inbox_subjects(bob)
        assert [s.split(":")[0] for s in subjects[count:]] == ["Cancelled"], subjects


async def test_external_attendee_and_unschedulable_recipients(tmp_path, sink):
    """§5.9.2: an attendee elsewhere gets the REQUEST through the relay; §5.9: a
    participant whose calendarAddress is not mailto: makes the record fail with
    noSupportedScheduleMethods (and nothing of it is stored), the rest of the /set
    succeeds; without sendSchedulingMessages nothing is sent."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        outside = {**MEETING, "uid": "outside-1", "calendarIds": {calendar: True},
                   "participants": {**MEETING["participants"], "b": {
                       "calendarAddress": "mailto:carol@example.net",
                       "roles": {"attendee": True}}}}  # fmt: skip
        phone = {**MEETING, "uid": "phone-1", "calendarIds": {calendar: True},
                 "participants": {**MEETING["participants"], "b": {
                     "calendarAddress": "tel:+15555550100", "roles": {"attendee": True}}}}
        quiet = {**outside, "uid": "quiet-1"}
        result = await alice.ok("CalendarEvent/set", create={"out": outside, "tel": phone},
                                sendSchedulingMessages=True)  # fmt: skip
        assert set(result["created"] or {}) == {"out"}, result
        assert result["notCreated"]["tel"]["type"] == "noSupportedScheduleMethods"
        assert await by_uid(alice, "phone-1") is None

        async def relayed() -> Any:
            return sink.messages

        [(rcpts, data)] = await eventually(relayed)
        assert rcpts == ["carol@example.net"]
        assert b"method=REQUEST" in data or b'method="REQUEST"' in data
        assert b"BEGIN:VCALENDAR" in data and b"UID:outside-1" in data

        await alice.ok("CalendarEvent/set", create={"q": quiet})  # (no messages asked for)
        await trio.sleep(0.5)
        assert len(sink.messages) == 1

        # §5.9.2.2: carol removed gets a CANCEL (and nobody is left to get a REQUEST).
        out_id = result["created"]["out"]["id"]
        await alice.ok("CalendarEvent/set", update={out_id: {"participants/b": None}},
                       sendSchedulingMessages=True)  # fmt: skip

        async def cancelled() -> Any:
            return sink.messages[1:]

        [(rcpts, data)] = await eventually(cancelled)
        assert rcpts == ["carol@example.net"]
        assert b"METHOD:CANCEL" in data and b"STATUS:CANCELLED" in data


async def test_no_mail_plugin_is_no_supported_schedule_methods(tmp_path):
    """§5.9: with the mail plugin disabled the server can send to nobody: a create that
    asks for scheduling messages is noSupportedScheduleMethods; without asking it works."""
    path = write_config(tmp_path, '[plugins]\ndisabled = ["mail"]\n')
    async with running_server(path) as server:
        alice = await connect(server, "alice", ALICE)
        alice.using = [CORE, CALENDARS]
        event = {**MEETING, "calendarIds": {await default_calendar(alice): True}}
        result = await alice.ok("CalendarEvent/set", create={"e": event},
                                sendSchedulingMessages=True)  # fmt: skip
        assert result["created"] is None
        assert result["notCreated"]["e"]["type"] == "noSupportedScheduleMethods"
        plain = await alice.ok("CalendarEvent/set", create={"e": event})
        assert "e" in plain["created"]
        bad = await alice.call("CalendarEvent/set", create={}, sendSchedulingMessages="yes")
        assert bad["error"]["type"] == "invalidArguments"


LMTP = '\n[server.listener."lmtp"]\nbind = ["127.0.0.1:0"]\nprotocol = "lmtp"\n'


def imip(method: str, sender: str, to: str, ical: str) -> bytes:
    """An iMIP message as another server would send it (RFC 6047 §2.4)."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: iTIP\r\nMessage-ID: <{method}-{sender}>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: text/calendar; method={method}; charset="utf-8"\r\n\r\n'
        + ical.replace("\n", "\r\n")
    ).encode()


def vcalendar(method: str, body: str) -> str:
    return (f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//other//EN\nMETHOD:{method}\n"
            f"BEGIN:VEVENT\nUID:ext-1@example.net\nDTSTAMP:20300101T000000Z\n{body}"
            "END:VEVENT\nEND:VCALENDAR\n")  # fmt: skip


async def test_imip_by_lmtp_from_another_server(tmp_path, sink):
    """iMIP in by LMTP (RFC 6047 over the mail plugin's delivery): carol, elsewhere,
    invites bob (REQUEST: his copy, isOrigin false) and a message from anyone else is
    not applied (§9.2: only the event's organizer changes or cancels it; CANCEL makes it
    cancelled); carol answers alice's invitation (REPLY on the organizer's copy, §5.2:
    scheduleSequence), a REPLY about carol sent by someone else and an older one are not
    applied.  §9.4: a message flagged as spam adds nothing; the invitation's alerts are
    replaced by the invitee's defaults."""
    from jmap_host_mail.testing import lmtp_deliver

    path = relay_config(tmp_path, sink.port)
    path.write_text(path.read_text() + LMTP)
    async with running_server(path) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        request = vcalendar("REQUEST", (
            "SEQUENCE:0\nSUMMARY:Offsite\nDTSTART:20300405T090000Z\nDURATION:PT2H\n"
            "ORGANIZER;CN=Carol:mailto:carol@example.net\n"
            "ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.org\n"))
        spoofed = request.replace("SUMMARY:Offsite", "SUMMARY:Hijacked").replace(
            "SEQUENCE:0", "SEQUENCE:5")
        flagged = b"X-Spam-Flag: YES\r\n" + imip("REQUEST", "carol@example.net",
                                                  "bob@example.org", request)
        await lmtp_deliver(server, "bob@example.org", flagged, mail_from="carol@example.net")
        assert await by_uid(bob, "ext-1@example.net") is None  # (§9.4: spam adds nothing)
        with_alarm = request.replace("END:VEVENT", "BEGIN:VALARM\nACTION:DISPLAY\n"
                                     "TRIGGER:-PT5M\nEND:VALARM\nEND:VEVENT")
        await lmtp_deliver(server, "bob@example.org",
                           imip("REQUEST", "carol@example.net", "bob@example.org", with_alarm),
                           mail_from="carol@example.net")  # fmt: skip
        copy = await by_uid(bob, "ext-1@example.net")
        assert copy is not None and copy["title"] == "Offsite" and copy["isOrigin"] is False
        assert not copy.get("alerts") and copy["useDefaultAlerts"] is True  # (§9.4)
        [pid] = [p for p, v in copy["participants"].items()
                 if v.get("calendarAddress") == "mailto:bob@example.org"]  # fmt: skip
        assert copy["participants"][pid]["participationStatus"] == "needs-action"
        await lmtp_deliver(server, "bob@example.org",
                           imip("REQUEST", "mallory@example.net", "bob@example.org", spoofed),
                           mail_from="mallory@example.net")  # fmt: skip
        cancel = vcalendar("CANCEL", "SEQUENCE:1\nORGANIZER:mailto:carol@example.net\n"
                           "ATTENDEE:mailto:bob@example.org\nSTATUS:CANCELLED\n")
        await lmtp_deliver(server, "bob@example.org",
                           imip("CANCEL", "mallory@example.net", "bob@example.org", cancel))
        copy = await by_uid(bob, "ext-1@example.net")
        assert copy["title"] == "Offsite" and copy.get("status") in (None, "confirmed")
        await lmtp_deliver(server, "bob@example.org",
                           imip("CANCEL", "carol@example.net", "bob@example.org", cancel),
                           mail_from="carol@example.net")  # fmt: skip
        assert (await by_uid(bob, "ext-1@example.net"))["status"] == "cancelled"

        # carol answers alice's invitation.
        event = {**MEETING, "uid": "ext-1@example.net",
                 "calendarIds": {await default_calendar(alice): True},
                 "participants": {**MEETING["participants"], "b": {
                     "calendarAddress": "mailto:carol@example.net",
                     "roles": {"attendee": True}, "participationStatus": "needs-action"}}}
        await alice.ok("CalendarEvent/set", create={"e": event}, sendSchedulingMessages=True)
        reply = vcalendar("REPLY", (
            "SEQUENCE:0\nDTSTART:20300302T090000Z\nORGANIZER:mailto:alice@example.org\n"
            "ATTENDEE;PARTSTAT=TENTATIVE:mailto:carol@example.net\n"))
        older = reply.replace("PARTSTAT=TENTATIVE", "PARTSTAT=DECLINED").replace(
            "DTSTAMP:20300101T000000Z", "DTSTAMP:20291201T000000Z")
        for sender in ("mallory@example.net", "carol@example.net"):
            await lmtp_deliver(server, "alice@example.org",
                               imip("REPLY", sender, "alice@example.org",
                                    reply.replace("TENTATIVE", "ACCEPTED")
                                    if sender.startswith("mallory") else reply),
                               mail_from=sender)  # fmt: skip
        await lmtp_deliver(server, "alice@example.org",
                           imip("REPLY", "carol@example.net", "alice@example.org", older),
                           mail_from="carol@example.net")  # fmt: skip
        mine = await by_uid(alice, "ext-1@example.net")
        carol = mine["participants"]["b"]
        assert carol["participationStatus"] == "tentative"
        assert carol["scheduleSequence"] == 0
        assert carol["scheduleUpdated"] == "2030-01-01T00:00:00Z"


async def test_occurrence_excluded_is_cancelled_for_the_invitee(tmp_path, sink):
    """§5.9.2.2: an exclusion added to recurrenceOverrides (an occurrence's id destroyed,
    §5.9), and an added occurrence removed from them, send a CANCEL of that occurrence
    alone (RECURRENCE-ID): bob's copy keeps the series and marks that one cancelled."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        series = {**MEETING, "uid": "weekly-1", "recurrenceRule": {"frequency": "weekly"},
                  "recurrenceOverrides": {"2030-03-10T15:00:00": {"title": "Extra"}},
                  "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        made = await alice.ok("CalendarEvent/set", create={"s": series},
                              sendSchedulingMessages=True)  # fmt: skip
        base = made["created"]["s"]["id"]
        await eventually(lambda: by_uid(bob, "weekly-1"))
        gone = await alice.ok("CalendarEvent/set", destroy=[f"{base}.20300309T100000"],
                              sendSchedulingMessages=True)  # fmt: skip
        assert gone["destroyed"] == [f"{base}.20300309T100000"], gone

        async def cancelled() -> Any:
            now = await by_uid(bob, "weekly-1")
            overrides = (now or {}).get("recurrenceOverrides") or {}
            patch = overrides.get("2030-03-09T10:00:00") or {}
            return now if patch.get("status") == "cancelled" else None

        copy = await eventually(cancelled)
        assert copy.get("status") in (None, "confirmed")
        assert copy["recurrenceRule"]["frequency"] == "weekly"
        assert copy["recurrenceOverrides"]["2030-03-10T15:00:00"]["title"] == "Extra"

        # The added occurrence removed from the overrides: a CANCEL of it alone.
        await alice.ok("CalendarEvent/set", update={base: {
            "recurrenceOverrides/2030-03-10T15:00:00": None}}, sendSchedulingMessages=True)

        async def extra_cancelled() -> Any:
            now = await by_uid(bob, "weekly-1")
            patch = ((now or {}).get("recurrenceOverrides") or {}).get("2030-03-10T15:00:00")
            return now if (patch or {}).get("status") == "cancelled" else None

        copy = await eventually(extra_cancelled)
        assert copy.get("status") in (None, "confirmed")


async def test_hidden_attendees_and_an_invitee_who_removes_the_event(tmp_path, sink):
    """§5.9.2.1: with hideAttendees each recipient gets a message naming no other
    attendee; §5.9.2.3: an invitee destroying an event they had answered sends a REPLY
    (declined), which the organizer's copy shows."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        calendar = {await default_calendar(alice): True}
        people = {
            **MEETING["participants"],
            "c": {"calendarAddress": "mailto:carol@example.net", "roles": {"attendee": True}},
            "d": {"calendarAddress": "mailto:dave@example.net", "roles": {"attendee": True}},
        }
        hidden = {**MEETING, "uid": "hidden-1", "hideAttendees": True, "calendarIds": calendar,
                  "participants": people}  # fmt: skip
        await alice.ok("CalendarEvent/set", create={"h": hidden}, sendSchedulingMessages=True)

        async def both() -> Any:
            return len(sink.messages) == 2 and sink.messages

        messages = dict((tuple(r), d) for r, d in await eventually(both))
        assert set(messages) == {("carol@example.net",), ("dave@example.net",)}
        assert b"dave@" not in messages[("carol@example.net",)]
        assert b"carol@" not in messages[("dave@example.net",)]
        assert b"bob@" not in messages[("carol@example.net",)]

        # bob accepts, then removes the event from his calendar: alice sees him decline.
        copy = await eventually(lambda: by_uid(bob, "hidden-1"))
        [pid] = [p for p, v in copy["participants"].items()
                 if v["calendarAddress"] == "mailto:bob@example.org"]  # fmt: skip
        await bob.ok("CalendarEvent/set", update={copy["id"]: {
            f"participants/{pid}/participationStatus": "accepted"}})  # (no REPLY asked for)
        await bob.ok("CalendarEvent/set", destroy=[copy["id"]], sendSchedulingMessages=True)

        async def declined() -> Any:
            now = await by_uid(alice, "hidden-1")
            return (now["participants"]["b"].get("participationStatus") == "declined") and now

        await eventually(declined)


async def test_imip_by_jmap_host_deliver_updates_the_organizers_copy(tmp_path, sink):
    """The pipe alternative to LMTP (``jmap-host deliver``, the same delivery function):
    dave's REPLY updates alice's copy (§5.9.2.3 received, §5.2.1 scheduleSequence)."""
    from jmap_host_mail.delivery import deliver_command

    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        event = {**MEETING, "uid": "piped-1", "sequence": 3,
                 "calendarIds": {await default_calendar(alice): True},
                 "participants": {**MEETING["participants"], "b": {
                     "calendarAddress": "mailto:dave@example.net",
                     "roles": {"attendee": True}, "participationStatus": "needs-action"}}}
        await alice.ok("CalendarEvent/set", create={"e": event})
        reply = vcalendar("REPLY", (
            "SEQUENCE:3\nDTSTART:20300302T090000Z\nORGANIZER:mailto:alice@example.org\n"
            "ATTENDEE;PARTSTAT=DECLINED:mailto:dave@example.net\n")).replace(
            "ext-1@example.net", "piped-1")
        status, _ = await deliver_command(
            server.host, ["alice@example.org"],
            imip("REPLY", "dave@example.net", "alice@example.org", reply), "dave@example.net")
        assert status == 0
        dave = (await by_uid(alice, "piped-1"))["participants"]["b"]
        assert dave["participationStatus"] == "declined" and dave["scheduleSequence"] == 3


async def test_participants_get_only_their_occurrences(tmp_path, sink):
    """§5.9.2.1: carol, invited to one occurrence only, is sent that occurrence alone
    (RECURRENCE-ID, no RRULE); bob, removed from another by its override, gets the series
    with that occurrence excluded; carol's REPLY for her occurrence lands in its override
    on alice's copy (§5.9.2.3)."""
    from jmap_host_mail.testing import lmtp_deliver

    path = relay_config(tmp_path, sink.port)
    path.write_text(path.read_text() + LMTP)
    async with running_server(path) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        carol = {"calendarAddress": "mailto:carol@example.net", "roles": {"attendee": True}}
        series = {**MEETING, "uid": "series-2", "recurrenceRule": {"frequency": "weekly"},
                  "recurrenceOverrides": {
                      "2030-03-16T10:00:00": {"participants/c": carol},
                      "2030-03-23T10:00:00": {"participants/b": None},
                  }, "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        made = await alice.ok("CalendarEvent/set", create={"s": series},
                              sendSchedulingMessages=True)  # fmt: skip
        assert "s" in made["created"], made

        async def relayed() -> Any:
            return sink.messages

        [(rcpts, data)] = await eventually(relayed)
        assert rcpts == ["carol@example.net"]
        text = data.replace(b"\r\n ", b"").decode()
        assert "RECURRENCE-ID;TZID=Europe/Berlin:20300316T100000" in text
        assert "RRULE" not in text and text.count("BEGIN:VEVENT") == 1

        copy = await eventually(lambda: by_uid(bob, "series-2"))
        assert copy["recurrenceOverrides"]["2030-03-23T10:00:00"] == {"excluded": True}
        added = copy["recurrenceOverrides"]["2030-03-16T10:00:00"]  # (bob sees carol there)
        assert [p["calendarAddress"] for p in added.values()] == ["mailto:carol@example.net"]

        reply = vcalendar("REPLY", (
            "SEQUENCE:0\nRECURRENCE-ID;TZID=Europe/Berlin:20300316T100000\n"
            "DTSTART;TZID=Europe/Berlin:20300316T100000\nORGANIZER:mailto:alice@example.org\n"
            "ATTENDEE;PARTSTAT=ACCEPTED:mailto:carol@example.net\n")).replace(
            "ext-1@example.net", "series-2")
        await lmtp_deliver(server, "alice@example.org",
                           imip("REPLY", "carol@example.net", "alice@example.org", reply),
                           mail_from="carol@example.net")  # fmt: skip
        mine = await by_uid(alice, "series-2")
        patch = mine["recurrenceOverrides"]["2030-03-16T10:00:00"]
        assert patch["participants/c"]["participationStatus"] == "accepted"
        assert patch["participants/c"]["scheduleSequence"] == 0
        assert "participationStatus" not in mine["participants"].get("c", {})


async def test_an_answer_for_one_occurrence(tmp_path, sink):
    """§5.9.2.3: bob declining one occurrence of a series (its instance id updated, §5.9)
    sends a REPLY for that recurrence id alone; alice's copy has it in that override, the
    series' answer unchanged."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        series = {**MEETING, "uid": "series-3", "recurrenceRule": {"frequency": "weekly"},
                  "calendarIds": {await default_calendar(alice): True}}  # fmt: skip
        await alice.ok("CalendarEvent/set", create={"s": series}, sendSchedulingMessages=True)
        copy = await eventually(lambda: by_uid(bob, "series-3"))
        [pid] = [p for p, v in copy["participants"].items()
                 if v["calendarAddress"] == "mailto:bob@example.org"]  # fmt: skip
        one = f"{copy['id']}.20300309T100000"
        answered = await bob.ok("CalendarEvent/set", update={one: {
            f"participants/{pid}/participationStatus": "declined"}},
            sendSchedulingMessages=True)  # fmt: skip
        assert one in answered["updated"], answered

        async def in_override() -> Any:
            mine = await by_uid(alice, "series-3")
            patch = (mine.get("recurrenceOverrides") or {}).get("2030-03-09T10:00:00") or {}
            return patch.get("participants/b", {}).get("participationStatus") == "declined" \
                and mine  # fmt: skip

        mine = await eventually(in_override)
        assert mine["participants"]["b"]["participationStatus"] == "needs-action"


async def test_a_sharee_answers_for_themselves(tmp_path, sink):
    """§5.9.2.3 in a calendar shared with the user (§4 mayWriteAll): the REPLY is for the
    user's own participant (their ParticipantIdentity, not the owner's), from them, to the
    organizer elsewhere."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        rights = dict.fromkeys(("mayReadFreeBusy", "mayReadItems", "mayWriteAll",
                                "mayRSVP"), True)  # fmt: skip
        await alice.ok("Calendar/set", update={calendar: {"shareWith": {BOB: rights}}})
        invited = {**MEETING, "uid": "org-elsewhere", "calendarIds": {calendar: True},
                   "organizerCalendarAddress": "mailto:erin@example.net",
                   "participants": {
                       "e": {"calendarAddress": "mailto:erin@example.net",
                             "roles": {"owner": True}},
                       "a": {"calendarAddress": "mailto:alice@example.org",
                             "roles": {"attendee": True}},
                       "b": {"calendarAddress": "mailto:bob@example.org",
                             "roles": {"attendee": True}}}}  # fmt: skip
        made = await alice.ok("CalendarEvent/set", create={"i": invited})
        event_id = made["created"]["i"]["id"]
        assert (await by_uid(alice, "org-elsewhere"))["isOrigin"] is False
        bob = await connect(server, "bob", ALICE)  # (in alice's account, shared with him)
        answered = await bob.ok("CalendarEvent/set", update={event_id: {
            "participants/b/participationStatus": "accepted"}}, sendSchedulingMessages=True)
        assert event_id in answered["updated"], answered

        async def relayed() -> Any:
            return sink.messages

        [(rcpts, data)] = await eventually(relayed)
        assert rcpts == ["erin@example.net"]
        text = data.replace(b"\r\n ", b"").decode()
        assert "METHOD:REPLY" in text and "From: bob@example.org" in text
        assert "PARTSTAT=ACCEPTED:mailto:bob@example.org" in text
        assert "alice@example.org" not in text.split("BEGIN:VCALENDAR")[1]


async def test_references_and_occurrence_ids_when_scheduling(tmp_path, sink):
    """§5.9.2 with the /set's other ids: an update of "#c" (created by an earlier call of
    the request, RFC 8620 §5.3) is a change of that event (a REQUEST), and an
    occurrence's id destroyed in an event nobody can be sent to is notDestroyed
    noSupportedScheduleMethods, the series unchanged."""
    from jmap_host.testing import api

    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = {await default_calendar(alice): True}
        outside = {**MEETING, "uid": "refs-1", "calendarIds": calendar,
                   "participants": {**MEETING["participants"], "b": {
                       "calendarAddress": "mailto:carol@example.net",
                       "roles": {"attendee": True}}}}  # fmt: skip
        reply = await api(alice.http, [
            ["CalendarEvent/set", {"accountId": ALICE, "create": {"c": outside}}, "0"],
            ["CalendarEvent/set", {"accountId": ALICE, "update": {"#c": {"title": "Renamed"}},
                                   "sendSchedulingMessages": True}, "1"],
        ], USING)  # fmt: skip
        second = reply["methodResponses"][1][1]
        assert second["updated"] and not second.get("notUpdated"), second

        async def relayed() -> Any:
            return sink.messages

        [(rcpts, data)] = await eventually(relayed)
        assert rcpts == ["carol@example.net"] and b"SUMMARY:Renamed" in data

        phone = {**MEETING, "uid": "refs-2", "calendarIds": calendar,
                 "recurrenceRule": {"frequency": "daily"},
                 "participants": {**MEETING["participants"], "b": {
                     "calendarAddress": "tel:+15555550100", "roles": {"attendee": True}}}}
        made = await alice.ok("CalendarEvent/set", create={"p": phone})
        one = f"{made['created']['p']['id']}.20300303T100000"
        refused = await alice.ok("CalendarEvent/set", destroy=[one],
                                 sendSchedulingMessages=True)  # fmt: skip
        assert refused["notDestroyed"][one]["type"] == "noSupportedScheduleMethods"
        assert not refused["destroyed"]
        series = await by_uid(alice, "refs-2")
        assert not series.get("recurrenceOverrides")


async def test_attachments_go_inline_as_data_urls(tmp_path, sink):
    """§5.3: an attachment by blobId is sent as an embedded data: URL (the recipient
    cannot fetch the organizer's blob): bob's copy has the bytes, by href, and no blob id
    of alice's account."""
    async with running_server(relay_config(tmp_path, sink.port)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.ok("Calendar/get", ids=None)
        agenda = b"%PDF-1.4 the agenda\n"
        blob = await alice.upload(agenda, "application/pdf")
        calendar = await default_calendar(alice)
        event = {**MEETING, "uid": "with-agenda", "calendarIds": {calendar: True},
                 "links": {"l1": {"@type": "Link", "blobId": blob, "rel": "enclosure",
                                  "contentType": "application/pdf", "title": "agenda.pdf"}}}
        made = await alice.ok("CalendarEvent/set", create={"e": event},
                              sendSchedulingMessages=True)  # fmt: skip
        assert "e" in made["created"], made
        copy = await eventually(lambda: by_uid(bob, "with-agenda"))
        [link] = copy["links"].values()
        assert "blobId" not in link and link["title"] == "agenda.pdf"
        kind, _, data = link["href"].partition(";base64,")
        assert kind == "data:application/pdf" and base64.b64decode(data) == agenda
