"""JMAP for Calendars (draft-ietf-jmap-calendars), the part served so far, at the wire: the
capability (§1.5.1), Calendars (§4: the default calendar, every property's rules,
onSuccessSetIsDefault, sharing with CalendarRights and a sharee's own per-user properties,
a free/busy-only share that shows nothing), ParticipantIdentities (§3) and CalendarEvents
(§5: JSCalendar, attachments as blobs, filters and sorts, recurrences, occurrences)."""

from __future__ import annotations

from typing import Any

from jmap_host_calendars.testing import (
    ALICE,
    BOB,
    CALENDARS,
    RIGHTS,
    USING,
    Client,
    connect,
    rights,
)

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, running_server, write_config


async def test_served_unless_disabled(tmp_path):
    """The plugin is active wherever it is installed (like mail and contacts), and
    ``[plugins] disabled`` leaves it out."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        session = (await alice.http.get("/jmap/session")).json()
        assert CALENDARS in session["capabilities"]
    off = tmp_path / "off"
    off.mkdir()
    async with running_server(write_config(off, '[plugins]\ndisabled = ["calendars"]\n')) as server:
        alice = await connect(server, "alice", ALICE)
        session = (await alice.http.get("/jmap/session")).json()
        assert CALENDARS not in session["capabilities"]


async def test_capability_default_calendar_and_identities(tmp_path):
    """§1.5.1 account capability; §4: one default calendar per account, every right for
    its owner; §3: a default ParticipantIdentity per address of the user."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        session = (await alice.http.get("/jmap/session")).json()
        assert session["capabilities"][CALENDARS] == {}
        caps = session["accounts"][ALICE]["accountCapabilities"][CALENDARS]
        assert caps["mayCreateCalendar"] is True and caps["maxCalendarsPerEvent"] is None
        assert caps["minDateTime"] < caps["maxDateTime"]
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        assert calendar["isDefault"] is True and calendar["name"] == "Calendar"
        assert calendar["myRights"] == dict.fromkeys(RIGHTS, True)
        assert calendar["includeInAvailability"] == "all" and calendar["isVisible"] is True
        identities = (await alice.ok("ParticipantIdentity/get", ids=None))["list"]
        assert [i["calendarAddress"] for i in identities] == [
            "mailto:alice@example.org", "mailto:sales@example.org",
        ]  # fmt: skip
        assert [i["isDefault"] for i in identities] == [True, False]
        assert identities[0]["name"] == "Alice Example"


async def test_calendar_properties_are_checked(tmp_path):
    """§4: name (1-255 octets), CSS colours, sortOrder < 2^31, includeInAvailability's
    three values, IANA time zones, default alerts with an OffsetTrigger only and ids
    unique across the account's calendars; isDefault is server-set."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        alert = {"trigger": {"@type": "OffsetTrigger", "offset": "-PT15M"}}
        good = await alice.ok("Calendar/set", create={"w": {
            "name": "Work", "color": "DarkSlateBlue", "timeZone": "Europe/Berlin",
            "includeInAvailability": "attending", "defaultAlertsWithTime": {"a1": alert},
            "defaultAlertsWithoutTime": {"a2": {**alert, "trigger": {"offset": "PT9H"}}},
        }})  # fmt: skip
        assert "w" in good["created"], good
        bad_cases = {
            "name": {"name": ""},
            "color": {"name": "x", "color": "not-a-colour"},
            "sortOrder": {"name": "x", "sortOrder": 2**31},
            "includeInAvailability": {"name": "x", "includeInAvailability": "some"},
            "timeZone": {"name": "x", "timeZone": "Mars/Olympus"},
            "defaultAlertsWithTime": {"name": "x", "defaultAlertsWithTime": {"b": {"trigger": {
                "@type": "AbsoluteTrigger", "when": "2026-01-01T00:00:00Z"}}}},
            "defaultAlertsWithoutTime": {"name": "x", "defaultAlertsWithoutTime": {"b": {
                "trigger": {"offset": "15 minutes"}}}},
            "isDefault": {"name": "x", "isDefault": True},
        }  # fmt: skip
        for prop, calendar in bad_cases.items():
            result = await alice.ok("Calendar/set", create={"c": calendar})
            error = result["notCreated"]["c"]
            assert error["type"] == "invalidProperties" and prop in error["properties"], prop
        clash = await alice.ok("Calendar/set", create={"c": {
            "name": "Other", "defaultAlertsWithTime": {"a1": alert}}})  # fmt: skip
        assert clash["notCreated"]["c"]["type"] == "invalidProperties"  # a1 is Work's
        hexed = await alice.ok("Calendar/set", create={"h": {"name": "Hex", "color": "#1a2B3c"}})
        assert "h" in hexed["created"]


async def test_on_success_set_is_default(tmp_path):
    """§4.3 onSuccessSetIsDefault: the default moves and both changes are reported; with
    a failure in the /set, it is ignored."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [first] = (await alice.ok("Calendar/get", ids=None))["list"]
        made = await alice.ok("Calendar/set", create={"n": {"name": "New"}},
                              onSuccessSetIsDefault="#n")  # fmt: skip
        new = made["created"]["n"]["id"]
        assert made["created"]["n"]["isDefault"] is True
        assert made["updated"][first["id"]] == {"isDefault": False}
        ignored = await alice.ok("Calendar/set", create={"x": {"name": ""}},
                                 onSuccessSetIsDefault=first["id"])  # fmt: skip
        assert ignored["notCreated"] and not ignored.get("updated")
        defaults = [c["id"] for c in (await alice.ok("Calendar/get", ids=None))["list"]
                    if c["isDefault"]]  # fmt: skip
        assert defaults == [new]
        bad = await alice.call("Calendar/set", onDestroyRemoveEvents="yes")
        assert bad["error"]["type"] == "invalidArguments"


async def test_sharing_a_calendar(tmp_path):
    """§4: CalendarRights through the host's sharing (RFC 9670); mayWriteAll brings
    mayWriteOwn, mayUpdatePrivate and mayRSVP; a sharee starts unsubscribed with
    includeInAvailability none, and their name, color, sortOrder... are their own (§4.3);
    only mayShare changes shareWith; §4.1: a free/busy-only share shows nothing."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        bob_own = await connect(server, "bob", BOB)
        await bob_own.ok("Calendar/get", ids=None)  # (bob's account exists)
        bob = Client(bob_own.http, ALICE)
        made = await alice.ok("Calendar/set", create={
            "t": {"name": "Team", "color": "red", "description": "the team's"},
            "f": {"name": "Busy"}})  # fmt: skip
        team, busy = made["created"]["t"]["id"], made["created"]["f"]["id"]
        shared = await alice.ok("Calendar/set", update={
            team: {"shareWith": {BOB: {"mayReadItems": True, "mayWriteAll": True}}},
            busy: {"shareWith": {BOB: {"mayReadFreeBusy": True}}},
        })  # fmt: skip
        assert shared["updated"][team]["shareWith"][BOB] == rights(
            "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate", "mayRSVP"
        )
        seen = (await bob.ok("Calendar/get", ids=None))["list"]
        assert [c["id"] for c in seen] == [team]  # not the free/busy one
        view = seen[0]
        assert view["isSubscribed"] is False and view["includeInAvailability"] == "none"
        assert view["name"] == "Team" and view["color"] == "red"  # inherited
        assert view["shareWith"] is None and view["myRights"]["mayShare"] is False
        assert (await bob.ok("Calendar/get", ids=[busy]))["notFound"] == [busy]
        mine = await bob.ok("Calendar/set", update={team: {
            "name": "Alice's team", "color": "#00ff00", "sortOrder": 3, "isSubscribed": True,
            "isVisible": False}})  # fmt: skip
        assert team in mine["updated"], mine
        bobs = (await bob.ok("Calendar/get", ids=[team]))["list"][0]
        assert (bobs["name"], bobs["color"], bobs["sortOrder"], bobs["isVisible"]) == (
            "Alice's team", "#00ff00", 3, False)  # fmt: skip
        alices = (await alice.ok("Calendar/get", ids=[team]))["list"][0]
        assert (alices["name"], alices["color"], alices["sortOrder"], alices["isVisible"]) == (
            "Team", "red", 0, True)  # fmt: skip
        assert (await bob.ok("Calendar/set", update={team: {"color": "mauve"}}))[
            "notUpdated"][team]["type"] == "invalidProperties"  # his copy is checked too
        owner_only = await bob.ok("Calendar/set", update={team: {"description": "mine"}})
        assert owner_only["notUpdated"][team]["type"] == "forbidden"
        reshare = await bob.ok("Calendar/set", update={team: {
            f"shareWith/{account_id_for('sales')}": {"mayReadItems": True}}})  # fmt: skip
        assert reshare["notUpdated"][team]["type"] == "forbidden"  # no mayShare
        destroy = await bob.ok("Calendar/set", destroy=[team])
        assert destroy["notDestroyed"][team]["type"] == "forbidden"  # no mayDelete
        caps = (await bob_own.http.get("/jmap/session")).json()["accounts"][ALICE]
        assert caps["accountCapabilities"][CALENDARS]["mayCreateCalendar"] is False


async def test_participant_identities(tmp_path):
    """§3.3: standard /set with onSuccessSetIsDefault; a mailto: address must be one of the
    account's own (the server may restrict, "forbidden"); a URI is needed."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        made = await alice.ok("ParticipantIdentity/set", create={
            "tel": {"name": "Alice (phone)", "calendarAddress": "tel:+15555550100"},
            "own": {"calendarAddress": "MAILTO:Alice@Example.org"},
            "other": {"calendarAddress": "mailto:bob@example.org"},
            "bad": {"calendarAddress": "not a uri"},
        }, onSuccessSetIsDefault="#tel")  # fmt: skip
        assert set(made["created"]) == {"tel", "own"}
        assert made["notCreated"]["other"]["type"] == "forbidden"
        assert made["notCreated"]["bad"]["type"] == "invalidProperties"
        defaults = [i["calendarAddress"] for i in
                    (await alice.ok("ParticipantIdentity/get", ids=None))["list"]
                    if i["isDefault"]]  # fmt: skip
        assert defaults == ["mailto:alice@example.org"]  # a failure: onSuccess... ignored
        moved = await alice.ok("ParticipantIdentity/set", update={},
                               onSuccessSetIsDefault=made["created"]["tel"]["id"])  # fmt: skip
        assert moved["updated"][made["created"]["tel"]["id"]] == {"isDefault": True}


MEETING = {
    "@type": "Event",
    "uid": "a8df6573-0474-496d-8496-033ad45d7fea",
    "title": "Planning meeting",
    "description": "Quarterly planning, in Berlin",
    "start": "2026-03-27T09:00:00",
    "timeZone": "Europe/Berlin",
    "duration": "PT1H30M",
    "status": "confirmed",
    "locations": {"l1": {"name": "Room Zürich", "description": "3rd floor"}},
    "virtualLocations": {"v1": {"uri": "https://meet.example.com/planning"}},
    "participants": {
        "p1": {"name": "Alice", "email": "alice@example.org", "roles": {"owner": True},
               "calendarAddress": "mailto:alice@example.org"},
        "p2": {"name": "Bob Builder", "roles": {"attendee": True},
               "participationStatus": "needs-action"},
    },
    "alerts": {"a1": {"trigger": {"offset": "-PT15M"}}},
    "recurrenceRule": {"frequency": "weekly", "byDay": [{"day": "fr"}], "count": 10},
    "recurrenceOverrides": {"2026-04-03T09:00:00": {"excluded": True},
                            "2026-04-10T09:00:00": {"title": "Planning (moved)",
                                                    "start": "2026-04-10T11:00:00"}},
    "keywords": {"work": True},
    "example.com:ticket": "PLAN-7",
}  # fmt: skip


async def test_events_are_jscalendar(tmp_path):
    """§5, JSCalendar 2.0: an Event is stored and returned as given (unknown and vendor
    properties kept); uid, created and updated are set when missing; uid+recurrenceId is
    unique; utcStart/utcEnd on request (§5: DST: 09:00 in Berlin on 2026-03-27 is 08:00Z,
    after the change on the 29th 07:00Z); wrong values name their property and pointer;
    RFC 8984's recurrenceRules is obsolete (jscalendarbis A.2.1); method is refused."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = calendar["id"]
        made = await alice.ok("CalendarEvent/set", create={"m": {**MEETING, "calendarIds": {
            cal: True}}})  # fmt: skip
        event_id = made["created"]["m"]["id"]
        got = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"][0]
        for key, value in MEETING.items():
            assert got[key] == value, key
        assert got["created"] and got["updated"] and got["isDraft"] is False
        times = (await alice.ok("CalendarEvent/get", ids=[event_id],
                                properties=["utcStart", "utcEnd"]))["list"][0]  # fmt: skip
        assert (times["utcStart"], times["utcEnd"]) == ("2026-03-27T08:00:00Z",
                                                        "2026-03-27T09:30:00Z")  # fmt: skip
        later = await alice.ok("CalendarEvent/set", create={"x": {
            "calendarIds": {cal: True}, "start": "2026-03-30T09:00:00",
            "timeZone": "Europe/Berlin", "duration": "P1D"}})  # fmt: skip
        x = later["created"]["x"]
        assert x["uid"]
        span = (await alice.ok("CalendarEvent/get", ids=[x["id"]],
                               properties=["utcStart", "utcEnd"]))["list"][0]  # fmt: skip
        assert (span["utcStart"], span["utcEnd"]) == ("2026-03-30T07:00:00Z",
                                                      "2026-03-31T07:00:00Z")  # fmt: skip
        again = await alice.ok("CalendarEvent/set", create={"d": {
            "calendarIds": {cal: True}, "uid": MEETING["uid"], "start": "2026-01-01T00:00:00"}})
        assert again["notCreated"]["d"]["type"] == "alreadyExists"
        cases = {
            "start": {"start": "2026-03-27 09:00"},
            "timeZone": {"start": "2026-03-27T09:00:00", "timeZone": "Europe/Atlantis"},
            "duration": {"start": "2026-03-27T09:00:00", "duration": "1 hour"},
            "recurrenceRule": {"start": "2026-03-27T09:00:00", "recurrenceRule": {
                "frequency": "fortnightly"}},
            "recurrenceRules": {"start": "2026-03-27T09:00:00", "recurrenceRules": []},
            "method": {"start": "2026-03-27T09:00:00", "method": "request"},
            "participants": {"start": "2026-03-27T09:00:00", "participants": {"p": {
                "roles": {"boss": True}}}},
            "alerts": {"start": "2026-03-27T09:00:00", "alerts": {"a": {"trigger": {
                "offset": "15m"}}}},
            "Title": {"start": "2026-03-27T09:00:00", "Title": "case matters"},
            "priority": {"start": "2026-03-27T09:00:00", "priority": 10},
            "calendarIds": {"start": "2026-03-27T09:00:00", "calendarIds": {"nope": True}},
        }  # fmt: skip
        for prop, event in cases.items():
            result = await alice.ok("CalendarEvent/set", create={"e": {
                "calendarIds": {cal: True}, **event}})  # fmt: skip
            error = result["notCreated"]["e"]
            assert error["type"] == "invalidProperties" and error["properties"] == [prop], (
                prop, error)
        missing = await alice.ok("CalendarEvent/set", create={"e": {"calendarIds": {cal: True}}})
        assert missing["notCreated"]["e"]["properties"] == ["start"]


async def test_attachments_are_blobs(tmp_path):
    """§5.3: a Link may name a blob of the account by blobId instead of href (RFC 8620 §6):
    one the user cannot use there (unknown, or another account's) is invalidProperties
    naming the property the Link is in; the event references its blobs, so Blob/lookup
    finds it (RFC 9404 §4.3) until it is destroyed."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        blobs = AccountClient(alice.http, ALICE, [*USING, "urn:ietf:params:jmap:blob"])
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = {calendar["id"]: True}
        agenda = await alice.upload(b"%PDF-1.4 agenda", "application/pdf")
        bobs = await bob.upload(b"bob's notes", "text/plain")
        link = {"rel": "enclosure", "contentType": "application/pdf"}
        made = await alice.ok("CalendarEvent/set", create={"m": {
            "calendarIds": cal, "start": "2026-06-01T10:00:00",
            "links": {"a": {**link, "blobId": agenda}}}})  # fmt: skip
        event_id = made["created"]["m"]["id"]
        got = (await alice.ok("CalendarEvent/get", ids=[event_id], properties=["links"]))
        assert got["list"][0]["links"]["a"]["blobId"] == agenda
        found = await blobs.ok("Blob/lookup", typeNames=["CalendarEvent"], ids=[agenda])
        assert found["list"][0]["matchedIds"]["CalendarEvent"] == [event_id]
        for blob_id in ("Gnope", bobs):
            bad = await alice.ok("CalendarEvent/set", create={"b": {
                "calendarIds": cal, "start": "2026-06-01T10:00:00",
                "links": {"a": {**link, "blobId": blob_id}}}})  # fmt: skip
            error = bad["notCreated"]["b"]
            assert error["type"] == "invalidProperties" and error["properties"] == ["links"]
        patched = await alice.ok("CalendarEvent/set", update={event_id: {
            "participants": {"p1": {"name": "Bob", "links": {"n": {"blobId": bobs}}}}}})
        error = patched["notUpdated"][event_id]
        assert error["type"] == "invalidProperties" and error["properties"] == ["participants"]
        override = await alice.ok("CalendarEvent/set", update={event_id: {
            "recurrenceRule": {"frequency": "daily", "count": 3},
            "recurrenceOverrides": {"2026-06-02T10:00:00": {"links/a/blobId": bobs}}}})
        error = override["notUpdated"][event_id]
        assert error["type"] == "invalidProperties"
        assert error["properties"] == ["recurrenceOverrides"]
        await alice.ok("CalendarEvent/set", destroy=[event_id])
        found = await blobs.ok("Blob/lookup", typeNames=["CalendarEvent"], ids=[agenda])
        assert found["list"][0]["matchedIds"]["CalendarEvent"] == []


async def test_event_filters_sorts_and_calendar_destroy(tmp_path):
    """§5.11.1 inCalendar, uid, text, title, description, location, owner, attendee;
    §5.11.2 sorts on start (in time), uid, created; §4.3 calendarHasEvent and
    onDestroyRemoveEvents."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = calendar["id"]
        other = (await alice.ok("Calendar/set", create={"o": {"name": "Other"}}))["created"]
        other_id = other["o"]["id"]
        made = await alice.ok("CalendarEvent/set", create={
            "m": {**MEETING, "calendarIds": {cal: True}},
            # 08:00 in New York is after 09:00 in Berlin on the same day: sorted in time.
            "ny": {"calendarIds": {other_id: True}, "title": "Call with New York",
                   "start": "2026-03-27T08:00:00", "timeZone": "America/New_York"},
            "both": {"calendarIds": {cal: True, other_id: True}, "title": "Offsite",
                     "start": "2026-03-27T05:00:00", "timeZone": "Europe/Berlin"},
        })  # fmt: skip
        m, ny, both = (made["created"][k]["id"] for k in ("m", "ny", "both"))

        async def ids(filter_: Any = None, sort: Any = None) -> list[str]:
            args: dict[str, Any] = {"filter": filter_}
            if sort is not None:
                args["sort"] = sort
            return (await alice.ok("CalendarEvent/query", **args))["ids"]

        assert set(await ids({"inCalendar": other_id})) == {ny, both}
        assert await ids({"uid": MEETING["uid"]}) == [m]
        assert await ids({"title": "new york"}) == [ny]
        assert await ids({"description": "quarterly"}) == [m]
        assert await ids({"location": "zürich"}) == [m]
        assert await ids({"owner": "alice@example.org"}) == [m]
        assert await ids({"attendee": "builder"}) == [m]
        assert await ids({"owner": "builder"}) == []
        assert await ids({"text": '"planning meeting" berlin'}) == [m]
        assert await ids(sort=[{"property": "start"}]) == [both, m, ny]
        assert await ids(sort=[{"property": "start", "isAscending": False}]) == [ny, m, both]
        assert await ids(sort=[{"property": "uid"}])
        nested = await alice.call("CalendarEvent/query", filter={"operator": "OR", "conditions": [
            {"after": "2026-03-01T00:00:00"}]})  # fmt: skip
        assert nested["error"]["type"] == "unsupportedFilter"
        kept = await alice.ok("Calendar/set", destroy=[other_id])
        assert kept["notDestroyed"][other_id]["type"] == "calendarHasEvent"
        gone = await alice.ok("Calendar/set", destroy=[other_id], onDestroyRemoveEvents=True)
        assert gone["destroyed"] == [other_id]
        left = await alice.ok("CalendarEvent/get", ids=[ny, both], properties=["calendarIds"])
        assert left["notFound"] == [ny]
        assert left["list"][0]["calendarIds"] == {cal: True}


async def test_recurring_events_across_dst_in_two_zones(tmp_path):
    """§5.11 with jscalendarbis §3.3: a weekly Friday 09:00 in Berlin and a weekly Friday
    09:00 in New York over March 2026, when New York changes on the 8th and Berlin on the
    29th: each occurrence keeps its local 09:00 and its UTC time moves with its own zone;
    an excluded occurrence is gone, an overridden one moved (and found at its new time),
    an added date (an override key the rule does not produce) is there; the start counts
    for count even when the rule would not produce it; expandRecurrences gives instance ids
    that CalendarEvent/get answers; ranges past maxExpandedQueryDuration are refused."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = {calendar["id"]: True}
        made = await alice.ok("CalendarEvent/set", create={
            "berlin": {"calendarIds": cal, "title": "Berlin stand-up",
                       "start": "2026-03-06T09:00:00", "timeZone": "Europe/Berlin",
                       "duration": "PT30M",
                       "recurrenceRule": {"frequency": "weekly", "byDay": [{"day": "fr"}]},
                       "recurrenceOverrides": {
                           "2026-03-13T09:00:00": {"excluded": True},
                           "2026-03-20T09:00:00": {"start": "2026-03-20T14:00:00",
                                                   "title": "Berlin stand-up (late)"},
                           "2026-03-25T09:00:00": {},  # an added Wednesday
                       }},
            "newyork": {"calendarIds": cal, "title": "New York sync",
                        "start": "2026-03-06T09:00:00", "timeZone": "America/New_York",
                        "duration": "PT1H",
                        "recurrenceRule": {"frequency": "weekly", "until": "2026-03-27T09:00:00"}},
            # Starts on a Monday, repeats on Fridays, count 3: Monday + two Fridays.
            "counted": {"calendarIds": cal, "title": "Counted", "start": "2026-03-02T12:00:00",
                        "timeZone": "Etc/UTC",
                        "recurrenceRule": {"frequency": "weekly", "byDay": [{"day": "fr"}],
                                           "count": 3}},
            "once": {"calendarIds": cal, "title": "Once", "start": "2026-03-18T10:00:00",
                     "timeZone": "Europe/Berlin"},
        })  # fmt: skip
        ids = {k: v["id"] for k, v in made["created"].items()}
        march = {"after": "2026-03-01T00:00:00", "before": "2026-04-01T00:00:00"}
        expanded = await alice.ok("CalendarEvent/query", filter=march, expandRecurrences=True)
        occurrences = (await alice.ok("CalendarEvent/get", ids=expanded["ids"], properties=[
            "title", "start", "utcStart", "recurrenceId", "baseEventId"]))["list"]  # fmt: skip
        berlin = [o for o in occurrences if o.get("baseEventId") == ids["berlin"]]
        assert [(o["recurrenceId"], o["start"]) for o in berlin] == [
            ("2026-03-06T09:00:00", "2026-03-06T09:00:00"),
            ("2026-03-20T09:00:00", "2026-03-20T14:00:00"),  # moved; the 13th excluded
            ("2026-03-25T09:00:00", "2026-03-25T09:00:00"),  # added
            ("2026-03-27T09:00:00", "2026-03-27T09:00:00"),
        ]  # fmt: skip
        assert berlin[1]["title"] == "Berlin stand-up (late)"
        newyork = [o for o in occurrences if o.get("baseEventId") == ids["newyork"]]
        assert [o["start"] for o in newyork] == [
            "2026-03-06T09:00:00", "2026-03-13T09:00:00", "2026-03-20T09:00:00",
            "2026-03-27T09:00:00",
        ]  # fmt: skip
        counted = [o["start"] for o in occurrences if o.get("baseEventId") == ids["counted"]]
        assert counted == ["2026-03-02T12:00:00", "2026-03-06T12:00:00", "2026-03-13T12:00:00"]
        # In UTC: New York 14:00Z before its DST change (8 March), 13:00Z after; Berlin 08:00Z
        # until its change on 29 March (after every Berlin occurrence here).
        assert expanded["ids"].index(newyork[0]["id"]) > expanded["ids"].index(berlin[0]["id"])
        starts = [o["start"] for o in occurrences]
        assert "2026-03-13T09:00:00" not in [o["start"] for o in berlin]
        assert ids["once"] in expanded["ids"] and len(starts) == len(expanded["ids"])
        utc = {(o.get("baseEventId"), o["recurrenceId"]): o.get("utcStart") for o in occurrences
               if o.get("baseEventId")}  # fmt: skip
        assert utc[(ids["newyork"], "2026-03-06T09:00:00")] == "2026-03-06T14:00:00Z"
        assert utc[(ids["newyork"], "2026-03-13T09:00:00")] == "2026-03-13T13:00:00Z"

        # Without expansion: each event once, if any occurrence is in the range.
        week = {"after": "2026-03-13T00:00:00", "before": "2026-03-14T00:00:00"}
        plain = await alice.ok("CalendarEvent/query", filter=week)
        assert set(plain["ids"]) == {ids["newyork"], ids["counted"]}  # Berlin's 13th excluded
        late = {"after": "2026-03-20T13:30:00", "before": "2026-03-20T14:10:00",
                "title": "late"}  # fmt: skip
        assert (await alice.ok("CalendarEvent/query", filter=late, timeZone="Europe/Berlin"))[
            "ids"] == [ids["berlin"]]  # the moved one, at its new time
        too_long = await alice.call("CalendarEvent/query", expandRecurrences=True, filter={
            "after": "2026-01-01T00:00:00", "before": "2027-06-01T00:00:00"})  # fmt: skip
        assert too_long["error"]["type"] == "expandDurationTooLarge"
        no_range = await alice.call("CalendarEvent/query", expandRecurrences=True)
        assert no_range["error"]["type"] == "invalidArguments"
        gone = await alice.ok("CalendarEvent/get", ids=[f"{ids['berlin']}.20260313T090000"])
        assert gone["notFound"] == [f"{ids['berlin']}.20260313T090000"]


async def test_changing_occurrences_and_the_series(tmp_path):
    """§5.9: an update to an instance id updates that occurrence's override on the base
    event; a destroy excludes it; the base event's sequence moves with a change that
    matters (and not with calendarIds or per-user properties); updated is the server's."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        made = await alice.ok("CalendarEvent/set", create={"w": {
            "calendarIds": {calendar["id"]: True}, "title": "Weekly",
            "start": "2026-05-04T10:00:00", "timeZone": "Europe/Paris", "duration": "PT1H",
            "recurrenceRule": {"frequency": "weekly", "count": 4},
            "updated": "2000-01-01T00:00:00Z"}})  # fmt: skip
        base = made["created"]["w"]["id"]
        got = (await alice.ok("CalendarEvent/get", ids=[base]))["list"][0]
        assert got["updated"] > "2026-01-01T00:00:00Z"  # the server's time, not the client's
        assert got["sequence"] == 0
        second, third = f"{base}.20260511T100000", f"{base}.20260518T100000"
        changed = await alice.ok("CalendarEvent/set", update={
            second: {"title": "Weekly (special)", "duration": "PT2H"}}, destroy=[third])
        assert changed["updated"] == {second: None} and changed["destroyed"] == [third]
        stored = (await alice.ok("CalendarEvent/get", ids=[base],
                                 properties=["recurrenceOverrides", "sequence"]))["list"][0]
        assert stored["recurrenceOverrides"] == {
            "2026-05-11T10:00:00": {"title": "Weekly (special)", "duration": "PT2H"},
            "2026-05-18T10:00:00": {"excluded": True},
        }  # fmt: skip
        assert stored["sequence"] == 1
        may = {"after": "2026-05-01T00:00:00", "before": "2026-06-01T00:00:00"}
        ids = (await alice.ok("CalendarEvent/query", filter=may, expandRecurrences=True))["ids"]
        assert ids == [f"{base}.20260504T100000", second, f"{base}.20260525T100000"]
        instance = (await alice.ok("CalendarEvent/get", ids=[second], properties=[
            "title", "utcEnd", "recurrenceRule"]))["list"][0]  # fmt: skip
        assert instance["title"] == "Weekly (special)"
        assert instance["utcEnd"] == "2026-05-11T10:00:00Z"  # 10:00 Paris (CEST) + 2 h
        assert instance["recurrenceRule"] is None  # §5.7
        gone = await alice.ok("CalendarEvent/set", update={third: {"title": "x"}},
                              destroy=[f"{base}.20990101T100000"])  # fmt: skip
        assert gone["notUpdated"][third]["type"] == "notFound"  # it was excluded
        other = await alice.ok("CalendarEvent/set", update={base: {"color": "red"}})
        assert base in other["updated"]
        after = (await alice.ok("CalendarEvent/get", ids=[base], properties=["sequence"]))
        assert after["list"][0]["sequence"] == 1  # color is per-user: no new sequence


async def test_jmaplib_creates_lists_queries_and_deletes_events(tmp_path):
    """An unmodified client from the registries (jmaplib, draft-29 support, experimental)."""
    import trio
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient

    async with running_server(write_config(tmp_path)) as server:

        def run() -> tuple[Any, ...]:
            with JMAPClient.connect(
                server.url + "/.well-known/jmap", auth=BasicAuth("alice", "alice-password"),
                experimental=True,
            ) as client:
                with client.batch() as batch:
                    calendars = batch.calendars.calendar.get(ids=None)
                calendar = calendars.result.items[0].id
                with client.batch() as batch:
                    made = batch.calendars.calendar_event.set(create={"e": {
                        "calendarIds": {calendar: True}, "title": "Dentist",
                        "start": "2026-06-02T15:00:00", "timeZone": "Europe/London",
                        "duration": "PT45M",
                        "recurrenceRule": {"frequency": "monthly", "count": 3}}})  # fmt: skip
                event_id = made.result.created["e"].id
                with client.batch() as batch:
                    found = batch.calendars.calendar_event.query(
                        filter={"after": "2026-06-01T00:00:00", "before": "2026-09-01T00:00:00"},
                        expandRecurrences=True)  # fmt: skip
                with client.batch() as batch:
                    listed = batch.calendars.calendar_event.get(ids=[event_id])
                with client.batch() as batch:
                    batch.calendars.calendar_event.set(destroy=[event_id])
                with client.batch() as batch:
                    after = batch.calendars.calendar_event.get(ids=[event_id])
                return (event_id, list(found.result.ids), listed.result.items,
                        list(after.result.not_found))  # fmt: skip

        event_id, found, items, not_found = await trio.to_thread.run_sync(run)
        assert len(found) == 3 and all(i.startswith(event_id + ".") for i in found)
        assert items[0].title == "Dentist" and items[0].recurrence_rule is not None
        assert not_found == [event_id]
