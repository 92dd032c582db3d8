"""Per-user event properties, CalendarRights on events and privacy, at the wire
(draft-ietf-jmap-calendars §4 CalendarRights, §5.4, §5.7, §5.9): alice shares a calendar
with bob; each sees and sets their own keywords, color, freeBusyStatus, useDefaultAlerts
and alerts; mayWriteOwn, mayUpdatePrivate and mayRSVP; private and secret events;
hideAttendees and reduceParticipants; recurrenceOverridesBefore/After; utcStart and
utcEnd given on /set."""

from __future__ import annotations

import trio
from jmap_host_calendars.testing import (
    ALICE_OWNER,
    BOB,
    BOB_ATTENDEE,
    CAROL,
    create,
    get,
    share_team,
    standup,
)

from jmap_host.testing import running_server, write_config


async def test_per_user_properties_are_each_users_own(tmp_path):
    """§5.4: keywords, color, freeBusyStatus, useDefaultAlerts and alerts are stored per
    user; a sharee starts with the defaults, not the owner's values; their change leaves
    the owner's alone and shows in their /changes only; per-occurrence per-user values
    (inside recurrenceOverrides) are per user too; "updated" is the later of theirs and
    the event's.  §4 mayUpdatePrivate: per-user changes need it (or a write right)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayUpdatePrivate=True)
        event_id = await create(alice, standup(
            team, keywords={"alice": True}, color="red", freeBusyStatus="free",
            alerts={"a": {"trigger": {"offset": "-PT5M"}}},
            recurrenceRule={"frequency": "daily", "count": 5},
            recurrenceOverrides={"2026-06-02T09:00:00": {"title": "Long standup",
                                                         "color": "green"}}))  # fmt: skip
        first = await get(alice, event_id)
        seen = await get(bob, event_id)
        assert seen["keywords"] is None and seen["color"] is None and seen["alerts"] is None
        assert seen["useDefaultAlerts"] is False and seen["freeBusyStatus"] is None
        # the occurrence's title is shared, alice's colour for it is not
        assert seen["recurrenceOverrides"] == {"2026-06-02T09:00:00": {"title": "Long standup"}}
        state = (await bob.ok("CalendarEvent/get", ids=[]))["state"]
        alice_state = (await alice.ok("CalendarEvent/get", ids=[]))["state"]
        await trio.sleep(1.1)  # (so that bob's per-user updated time is a later second)
        mine = await bob.ok("CalendarEvent/set", update={event_id: {
            "keywords": {"bob": True}, "color": "blue", "useDefaultAlerts": True,
            "alerts": {"b": {"trigger": {"offset": "-PT1H"}}},
            "recurrenceOverrides/2026-06-03T09:00:00": {"freeBusyStatus": "free"}}})  # fmt: skip
        assert event_id in (mine.get("updated") or {}), mine
        bobs = await get(bob, event_id)
        assert bobs["keywords"] == {"bob": True} and bobs["color"] == "blue"
        assert bobs["useDefaultAlerts"] is True and list(bobs["alerts"]) == ["b"]
        assert bobs["recurrenceOverrides"]["2026-06-03T09:00:00"] == {"freeBusyStatus": "free"}
        assert bobs["updated"] > first["updated"]  # his own per-user time (§5.4)
        alices = await get(alice, event_id)
        assert alices["keywords"] == {"alice": True} and alices["color"] == "red"
        assert list(alices["alerts"]) == ["a"] and alices["useDefaultAlerts"] is False
        assert "2026-06-03T09:00:00" not in alices["recurrenceOverrides"]
        assert alices["recurrenceOverrides"]["2026-06-02T09:00:00"]["color"] == "green"
        assert alices["updated"] == first["updated"] and alices["sequence"] == first["sequence"]
        # in bob's /changes, not in alice's
        assert (await bob.ok("CalendarEvent/changes", sinceState=state))["updated"] == [event_id]
        assert (await alice.ok("CalendarEvent/changes", sinceState=alice_state))["updated"] == []
        # alice's own per-user change is hers: bob sees nothing of it
        state = (await bob.ok("CalendarEvent/get", ids=[]))["state"]
        await alice.ok("CalendarEvent/set", update={event_id: {"keywords/urgent": True}})
        assert (await get(bob, event_id))["keywords"] == {"bob": True}
        assert (await bob.ok("CalendarEvent/changes", sinceState=state))["updated"] == []
        assert (await get(alice, event_id))["keywords"] == {"alice": True, "urgent": True}
        # a shared property: both see it, in both /changes
        state = (await bob.ok("CalendarEvent/get", ids=[]))["state"]
        await alice.ok("CalendarEvent/set", update={event_id: {"title": "Daily"}})
        assert (await get(bob, event_id))["title"] == "Daily"
        assert (await bob.ok("CalendarEvent/changes", sinceState=state))["updated"] == [event_id]
        bad = await bob.ok("CalendarEvent/set", update={event_id: {"alerts": {"x": 5}}})
        assert bad["notUpdated"][event_id]["type"] == "invalidProperties"
        # an occurrence by its instance id (§5.9): bob's per-occurrence colour is his
        instance = f"{event_id}.20260604T090000"
        await bob.ok("CalendarEvent/set", update={instance: {"color": "teal"}})
        assert (await get(bob, instance))["color"] == "teal"
        bobs = (await get(bob, event_id))["recurrenceOverrides"]
        assert bobs["2026-06-03T09:00:00"] == {"freeBusyStatus": "free"}  # (kept)
        alices = (await get(alice, event_id))["recurrenceOverrides"]
        assert "2026-06-04T09:00:00" not in alices
        assert alices["2026-06-02T09:00:00"] == {"title": "Long standup", "color": "green"}
        assert "2026-06-02T09:00:00" not in bobs or "color" not in bobs["2026-06-02T09:00:00"]


async def test_a_sharees_new_event_keeps_their_values(tmp_path):
    """§5.4: the per-user values bob gives when he creates an event are his; alice (and
    any other user) starts with the defaults; a destroyed event's per-user values go."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteAll=True)
        event_id = await create(bob, standup(team, keywords={"bob": True}, color="blue",
                                           recurrenceRule={"frequency": "daily", "count": 2},
                                           recurrenceOverrides={"2026-06-02T09:00:00": {
                                               "title": "Two", "color": "red"}}))  # fmt: skip
        bobs = await get(bob, event_id)
        assert bobs["keywords"] == {"bob": True} and bobs["color"] == "blue"
        assert bobs["recurrenceOverrides"]["2026-06-02T09:00:00"] == {"title": "Two",
                                                                      "color": "red"}
        alices = await get(alice, event_id)
        assert alices["keywords"] is None and alices["color"] is None
        assert alices["recurrenceOverrides"] == {"2026-06-02T09:00:00": {"title": "Two"}}
        bad = await bob.ok("CalendarEvent/set", create={"x": standup(team, alerts={"a": 1})})
        assert bad["notCreated"]["x"]["type"] == "invalidProperties"
        assert (await bob.ok("CalendarEvent/set", destroy=[event_id]))["destroyed"] == [event_id]


async def test_per_user_needs_may_update_private(tmp_path):
    """§4 mayUpdatePrivate: "The user may modify per-user properties ... on all events in
    the calendar": with mayReadItems alone bob may not (his view of the account is
    read-only: accountReadOnly, RFC 8620 §5.3); with mayRSVP but not mayUpdatePrivate, his
    per-user change is forbidden."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True)
        event_id = await create(alice, standup(team))
        refused = await bob.call("CalendarEvent/set", update={event_id: {"color": "blue"}})
        assert refused["error"]["type"] == "accountReadOnly"
        await alice.ok("Calendar/set", update={team: {"shareWith": {BOB: {
            "mayReadItems": True, "mayRSVP": True}}}})  # fmt: skip
        refused = await bob.ok("CalendarEvent/set", update={event_id: {"color": "blue"}})
        assert refused["notUpdated"][event_id]["type"] == "forbidden"
        refused = await bob.ok("CalendarEvent/set", update={event_id: {"title": "x"}})
        assert refused["notUpdated"][event_id]["type"] == "forbidden"
        assert (await get(bob, event_id))["color"] is None


async def test_may_write_own(tmp_path):
    """§4 mayWriteOwn: bob may create events he owns or with no owner, and change or
    destroy only those (an owner Participant being one of his ParticipantIdentities);
    not alice's."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteOwn=True)
        bob_owner = {**BOB_ATTENDEE, "roles": {"owner": True}}
        his = await create(bob, standup(team, participants={"b": bob_owner}))
        unowned = await create(bob, standup(team))
        theirs = await bob.ok("CalendarEvent/set", create={"x": standup(
            team, participants={"a": ALICE_OWNER})})  # fmt: skip
        assert theirs["notCreated"]["x"]["type"] == "forbidden"
        alices = await create(alice, standup(team, participants={"a": ALICE_OWNER}))
        changed = await bob.ok("CalendarEvent/set", update={
            his: {"title": "Mine"}, unowned: {"title": "Nobody's"}, alices: {"title": "No"}})
        assert set(changed["updated"]) == {his, unowned}
        assert changed["notUpdated"][alices]["type"] == "forbidden"
        gone = await bob.ok("CalendarEvent/set", destroy=[his, alices])
        assert gone["destroyed"] == [his] and gone["notDestroyed"][alices]["type"] == "forbidden"


async def test_may_rsvp(tmp_path):
    """§4 mayRSVP: bob may change his own participant's participationStatus (also in an
    override), nothing else, nor another participant's; add himself with mayInviteSelf
    (§5.1.1) and others with mayInviteOthers (§5.1.2), as attendees only."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayRSVP=True)
        event_id = await create(alice, standup(
            team, participants={"a": ALICE_OWNER, "b": BOB_ATTENDEE, "c": CAROL},
            recurrenceRule={"frequency": "daily", "count": 3},
            recurrenceOverrides={"2026-06-03T09:00:00": {"title": "Last"}}))  # fmt: skip
        reply = await bob.ok("CalendarEvent/set", update={event_id: {
            "participants/b/participationStatus": "accepted", "participants/b/expectReply": False,
            "recurrenceOverrides/2026-06-02T09:00:00": {
                "participants/b/participationStatus": "declined"}}})  # fmt: skip
        assert event_id in reply["updated"], reply
        seen = await get(alice, event_id)
        assert seen["participants"]["b"]["participationStatus"] == "accepted"
        for patch in ({"participants/c/participationStatus": "declined"},
                      {"participants/b/name": "Robert"}, {"title": "Bob's"},
                      {"participants/d": {**CAROL, "name": "Dan"}}):  # fmt: skip
            refused = await bob.ok("CalendarEvent/set", update={event_id: patch})
            assert refused["notUpdated"][event_id]["type"] == "forbidden", patch
        # §5.1.1 mayInviteSelf: he may add himself, as an attendee only
        open_event = await create(alice, standup(team, mayInviteSelf=True,
                                               participants={"a": ALICE_OWNER}))  # fmt: skip
        chair = {**BOB_ATTENDEE, "roles": {"attendee": True, "chair": True}}
        refused = await bob.ok("CalendarEvent/set", update={open_event: {"participants/b": chair}})
        assert refused["notUpdated"][open_event]["type"] == "forbidden"
        joined = await bob.ok("CalendarEvent/set", update={open_event: {
            "participants/b": BOB_ATTENDEE}})  # fmt: skip
        assert open_event in joined["updated"], joined
        # §5.1.2 mayInviteOthers: a participant may add other attendees
        others = await create(alice, standup(team, mayInviteOthers=True,
                                           participants={"a": ALICE_OWNER, "b": BOB_ATTENDEE}))
        invited = await bob.ok("CalendarEvent/set", update={others: {"participants/c": CAROL}})
        assert others in invited["updated"], invited


async def test_private_and_secret_events(tmp_path):
    """§5.7: of a "private" event another user sees only the basic time and metadata
    (jscalendarbis §4.4.3) and the CalendarEvent properties; §5.9: only the calendar's
    owner may change it (forbidden, even per-user properties).  "secret": to bob it does
    not exist (notFound, absent from /query; /changes shows it destroyed when it becomes
    secret).  §5.9: a sharee's event must stay public (invalidProperties)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteAll=True)
        private = await create(alice, standup(team, privacy="private", description="doctor",
                                            locations={"l": {"name": "Clinic"}}))  # fmt: skip
        secret = await create(alice, standup(team, privacy="secret", title="Surprise"))
        public = await create(alice, standup(team))
        seen = await get(bob, private)
        assert "title" not in seen and "description" not in seen and "locations" not in seen
        assert seen["start"] == "2026-06-01T09:00:00" and seen["calendarIds"] == {team: True}
        assert seen["privacy"] == "private"
        assert (await get(alice, private))["description"] == "doctor"
        for patch in ({"title": "x"}, {"color": "red"}):
            refused = await bob.ok("CalendarEvent/set", update={private: patch})
            assert refused["notUpdated"][private]["type"] == "forbidden", patch
        refused = await bob.ok("CalendarEvent/set", destroy=[private])
        assert refused["notDestroyed"][private]["type"] == "forbidden"
        assert (await bob.ok("CalendarEvent/get", ids=[secret]))["notFound"] == [secret]
        ids = (await bob.ok("CalendarEvent/query"))["ids"]
        assert secret not in ids and {private, public} <= set(ids)
        # a search cannot tell what a private event holds, nor find a secret one
        for condition in ({"text": "doctor"}, {"location": "Clinic"}, {"title": "Surprise"}):
            assert (await bob.ok("CalendarEvent/query", filter=condition))["ids"] == []
        assert (await alice.ok("CalendarEvent/query", filter={"text": "doctor"}))["ids"] == [
            private]  # fmt: skip
        gone = await bob.ok("CalendarEvent/set", update={secret: {"title": "x"}},
                            destroy=[secret])  # fmt: skip
        assert gone["notDestroyed"][secret]["type"] == "notFound"
        state = (await bob.ok("CalendarEvent/get", ids=[]))["state"]
        await alice.ok("CalendarEvent/set", update={public: {"privacy": "secret"}})
        changes = await bob.ok("CalendarEvent/changes", sinceState=state)
        assert changes["destroyed"] == [public]
        made = await bob.ok("CalendarEvent/set", create={"p": standup(team, privacy="private")})
        assert made["notCreated"]["p"]["type"] == "invalidProperties"


async def test_hide_attendees_and_reduce_participants(tmp_path):
    """§5.1.3 and §5.7: with hideAttendees a user who is not an owner sees the owners and
    themselves only; reduceParticipants asks that of any event (overrides too)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True)
        people = {"a": ALICE_OWNER, "b": BOB_ATTENDEE, "c": CAROL}
        hidden = await create(alice, standup(team, participants=people, hideAttendees=True))
        assert set((await get(bob, hidden))["participants"]) == {"a", "b"}
        assert set((await get(alice, hidden))["participants"]) == {"a", "b", "c"}
        plain = await create(alice, standup(
            team, participants={"b": BOB_ATTENDEE, "c": CAROL},
            recurrenceRule={"frequency": "daily", "count": 3},
            recurrenceOverrides={"2026-06-02T09:00:00": {
                "participants/c/participationStatus": "declined"}}))  # fmt: skip
        assert set((await get(bob, plain))["participants"]) == {"b", "c"}
        reduced = await get(bob, plain, reduceParticipants=True)
        assert set(reduced["participants"]) == {"b"}
        assert reduced["recurrenceOverrides"] == {"2026-06-02T09:00:00": {}}


async def test_get_arguments(tmp_path):
    """§5.7: recurrenceOverridesAfter (on or after) and recurrenceOverridesBefore (before),
    by the recurrence id in UTC; timeZone for a floating event's utcStart/utcEnd;
    utcStart with recurrenceOverrides is invalidArguments."""
    async with running_server(write_config(tmp_path)) as server:
        alice, _, _, team = await share_team(server, mayReadItems=True)
        overrides = {f"2026-06-0{d}T09:00:00": {"title": f"Day {d}"} for d in (2, 3, 4)}
        event_id = await create(alice, standup(
            team, recurrenceRule={"frequency": "daily", "count": 5},
            recurrenceOverrides=overrides))  # fmt: skip
        # 09:00 in Berlin is 07:00Z in June
        found = await get(alice, event_id, recurrenceOverridesAfter="2026-06-03T07:00:00Z",
                          recurrenceOverridesBefore="2026-06-04T07:00:00Z")  # fmt: skip
        assert list(found["recurrenceOverrides"]) == ["2026-06-03T09:00:00"]
        floating = await create(alice, standup(team, timeZone=None))
        utc = await get(alice, floating, properties=["utcStart", "utcEnd"],
                        timeZone="America/New_York")  # fmt: skip
        assert (utc["utcStart"], utc["utcEnd"]) == ("2026-06-01T13:00:00Z",
                                                    "2026-06-01T13:15:00Z")  # fmt: skip
        both = await alice.call("CalendarEvent/get", ids=[event_id],
                                properties=["utcStart", "recurrenceOverrides"])  # fmt: skip
        assert both["error"]["type"] == "invalidArguments"
        zone = await alice.call("CalendarEvent/get", ids=[event_id], timeZone="Mars/Base")
        assert zone["error"]["type"] == "invalidArguments"


async def test_utc_start_on_set(tmp_path):
    """§5.9: utcStart given is translated into start (in the event's time zone; a floating
    event gets its calendars' time zone, or Etc/UTC), utcEnd into duration; with start /
    duration, or inside recurrenceOverrides, invalidProperties."""
    async with running_server(write_config(tmp_path)) as server:
        alice, _, _, team = await share_team(server, mayReadItems=True)
        base = {"calendarIds": {team: True}, "title": "Call"}
        made = await alice.ok("CalendarEvent/set", create={
            "z": {**base, "timeZone": "Europe/Berlin", "utcStart": "2026-06-01T07:00:00Z",
                  "utcEnd": "2026-06-01T08:30:00Z"},
            "f": {**base, "utcStart": "2026-06-01T07:00:00Z"},
            "both": {**base, "start": "2026-06-01T09:00:00", "utcStart": "2026-06-01T07:00:00Z"},
            "inside": {**base, "start": "2026-06-01T09:00:00",
                       "recurrenceRule": {"frequency": "daily", "count": 2},
                       "recurrenceOverrides": {"2026-06-02T09:00:00": {
                           "utcStart": "2026-06-02T08:00:00Z"}}},
        })  # fmt: skip
        zoned = await get(alice, made["created"]["z"]["id"])
        assert (zoned["start"], zoned["duration"]) == ("2026-06-01T09:00:00", "PT1H30M")
        assert made["created"]["f"]["timeZone"] == "Etc/UTC"  # (returned: the server set it)
        floating = await get(alice, made["created"]["f"]["id"])
        assert floating["start"] == "2026-06-01T07:00:00"
        assert made["notCreated"]["both"]["type"] == "invalidProperties"
        assert made["notCreated"]["inside"]["type"] == "invalidProperties"
        moved = await alice.ok("CalendarEvent/set", update={
            zoned["id"]: {"utcStart": "2026-06-01T10:00:00Z"}})  # fmt: skip
        assert moved["updated"][zoned["id"]]["start"] == "2026-06-01T12:00:00"
        refused = await alice.ok("CalendarEvent/set", update={
            zoned["id"]: {"utcEnd": "2026-06-01T12:00:00Z", "duration": "PT1H"}})  # fmt: skip
        assert refused["notUpdated"][zoned["id"]]["type"] == "invalidProperties"
