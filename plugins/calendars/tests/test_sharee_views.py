"""What a sharee is shown of events outside CalendarEvent/get, at the wire: notifications
(draft-ietf-jmap-calendars §7, with §5.4 per-user properties and §5.7 privacy), errors of
CalendarEvent/set on ids they may not see (§5.7 "secret", §5.9 utcStart/utcEnd and
instance ids), and the events of Principal/getAvailability (§2.2)."""

from __future__ import annotations

import functools
from typing import Any

from jmap_host_calendars.testing import (
    ALICE,
    AVAILABILITY,
    BOB,
    CALENDARS,
    CORE,
    PRINCIPALS,
    Client,
    create,
    share_team,
    standup,
)

from jmap_host.testing import running_server, write_config

USING = [CORE, CALENDARS, PRINCIPALS, AVAILABILITY]
setup = functools.partial(share_team, using=USING)  # (alice shares "Team" with bob)


NOTE = "CalendarEventNotification"


async def new_notes(client: Client, state: str) -> list[dict[str, Any]]:
    changes = await client.ok(f"{NOTE}/changes", sinceState=state)
    return (await client.ok(f"{NOTE}/get", ids=changes["created"]))["list"]


async def note_state(client: Client) -> str:
    return str((await client.ok(f"{NOTE}/get", ids=[]))["state"])


async def test_notification_event_has_no_per_user_values_nor_private_details(tmp_path):
    """§7: a notification "does not have any per-user data", so the owner's per-occurrence
    per-user values (§5.4: inside recurrenceOverrides too) are not in it; §5.7: of a
    "private" event a sharee's notification shows only what their CalendarEvent/get would,
    in its overrides as well."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await setup(server, mayReadItems=True, mayUpdatePrivate=True)
        await bob.ok("Calendar/set", update={team: {"isSubscribed": True}})
        state = await note_state(bob)
        rule = {"frequency": "daily", "count": 5}
        await create(alice, standup(team, recurrenceRule=rule, recurrenceOverrides={
            "2026-06-02T09:00:00": {"title": "Long standup", "color": "green"}}))
        [public] = await new_notes(bob, state)
        assert public["event"]["recurrenceOverrides"] == {
            "2026-06-02T09:00:00": {"title": "Long standup"}}
        state = await note_state(bob)
        await create(alice, standup(team, privacy="private", recurrenceRule=rule,
                                  recurrenceOverrides={"2026-06-02T09:00:00": {
                                      "title": "Secret meeting with HR", "color": "teal",
                                      "duration": "PT1H"}}))  # fmt: skip
        [private] = await new_notes(bob, state)
        shown = private["event"]
        assert "title" not in shown
        assert shown["recurrenceOverrides"] == {"2026-06-02T09:00:00": {"duration": "PT1H"}}
        assert "Secret meeting" not in str(private) and "teal" not in str(private)


async def test_notification_follows_what_each_sharee_may_read(tmp_path):
    """§7 with §5.7: an event moved out of the calendar shared with bob into one he may
    not read is, for him, destroyed: a "destroyed" notification with the event as he knew
    it, nothing of what it became; moved back in, it is "created" for him; calendarIds
    only name the calendars he may read.  Alice (the owner) is not told of her own
    changes; bob, subscribed, is."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await setup(server, mayReadItems=True, mayUpdatePrivate=True)
        await bob.ok("Calendar/set", update={team: {"isSubscribed": True}})
        made = await alice.ok("Calendar/set", create={"p": {"name": "Mine"}})
        mine = made["created"]["p"]["id"]
        event_id = await create(alice, standup(team))
        state = await note_state(bob)
        await alice.ok("CalendarEvent/set", update={event_id: {
            "calendarIds": {mine: True}, "title": "Job interview at competitor"}})
        assert (await bob.ok("CalendarEvent/get", ids=[event_id]))["notFound"] == [event_id]
        [gone] = await new_notes(bob, state)
        assert gone["type"] == "destroyed" and gone["eventPatch"] is None
        assert gone["event"]["title"] == "Standup"
        assert gone["event"]["calendarIds"] == {team: True}
        assert "competitor" not in str(gone) and mine not in str(gone)
        state = await note_state(bob)
        await alice.ok("CalendarEvent/set", update={event_id: {
            "calendarIds": {mine: True, team: True}, "title": "Interview"}})
        [back] = await new_notes(bob, state)
        assert back["type"] == "created" and back["event"]["title"] == "Interview"
        assert back["event"]["calendarIds"] == {team: True}
        state = await note_state(bob)
        await alice.ok("CalendarEvent/set", update={event_id: {"title": "Lunch"}})
        [changed] = await new_notes(bob, state)
        assert changed["type"] == "updated" and changed["eventPatch"]["title"] == "Lunch"
        assert changed["event"]["calendarIds"] == {team: True} and mine not in str(changed)


async def test_utc_times_on_an_event_a_sharee_cannot_see_are_not_found(tmp_path):
    """§5.7: a "secret" event does not exist for a sharee, so CalendarEvent/set's
    utcStart/utcEnd (§5.9, translated against the event's start) on it answer notFound,
    whatever the times: an error on them would tell its start."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await setup(server, mayReadItems=True, mayWriteAll=True)
        event_id = await create(alice, standup(team, privacy="secret"))
        assert (await bob.ok("CalendarEvent/get", ids=[event_id]))["notFound"] == [event_id]
        for end in ("2026-06-01T06:00:00Z", "2026-06-01T08:00:00Z", "nonsense"):
            r = await bob.ok("CalendarEvent/set", update={event_id: {"utcEnd": end}})
            assert r["notUpdated"][event_id]["type"] == "notFound", r
        # (the owner's own, still translated)
        early = {"utcEnd": "2026-06-01T06:00:00Z"}
        r = await alice.ok("CalendarEvent/set", update={event_id: early})
        assert r["notUpdated"][event_id]["type"] == "invalidProperties", r


async def test_instance_ids_of_an_event_a_sharee_cannot_see_are_not_found(tmp_path):
    """§5.7 and §5.9: updating an occurrence of a "secret" event by its instance id is
    notFound for a sharee, an occurrence of the series or not, before its patch is
    looked at: invalidPatch would tell which occurrences it has."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await setup(server, mayReadItems=True, mayWriteAll=True)
        event_id = await create(alice, standup(team, privacy="secret",
                                             recurrenceRule={"frequency": "daily", "count": 3}))
        for digits in ("20260602T090000", "20260609T090000"):
            key = f"{event_id}.{digits}"
            r = await bob.ok("CalendarEvent/set", update={key: "x"})
            assert r["notUpdated"][key]["type"] == "notFound", r
            r = await bob.ok("CalendarEvent/set", update={key: {"title": "Mine"}})
            assert r["notUpdated"][key]["type"] == "notFound", r
            r = await bob.ok("CalendarEvent/set", destroy=[key])
            assert r["notDestroyed"][key]["type"] == "notFound", r
        key = f"{event_id}.20260602T090000"
        r = await alice.ok("CalendarEvent/set", update={key: "x"})
        assert r["notUpdated"][key]["type"] == "invalidPatch", r


async def test_availability_shows_the_event_as_the_users_get_would(tmp_path):
    """§2.2: a BusyPeriod's event is "the CalendarEvent representation of the event"
    (§5), so the asking user's: their own per-user values (§5.4, the defaults), not the owner's
    keywords and alerts; of a hideAttendees event only its owners and themselves
    (§5.7); calendarIds only those they see."""
    async with running_server(write_config(tmp_path)) as server:
        alice = Client(await server.client("alice").__aenter__(), ALICE, USING)
        bob_own = Client(await server.client("bob").__aenter__(), BOB, USING)
        await bob_own.ok("Calendar/get", ids=None)
        calendars = (await alice.ok("Calendar/get", ids=None))["list"]
        main = next(c["id"] for c in calendars if c["isDefault"])
        made = await alice.ok("Calendar/set", create={"p": {"name": "Private"}})
        hidden = made["created"]["p"]["id"]
        event_id = await create(alice, {
            "calendarIds": {main: True, hidden: True}, "title": "Board",
            "start": "2030-03-05T10:00:00", "duration": "PT1H", "timeZone": "Etc/UTC",
            "hideAttendees": True, "keywords": {"alice-private-tag": True},
            "alerts": {"a1": {"trigger": {"@type": "OffsetTrigger", "offset": "-PT15M"}}},
            "participants": {
                "o": {"calendarAddress": "mailto:alice@example.org", "roles": {"owner": True}},
                "b": {"calendarAddress": "mailto:bob@example.org", "roles": {"attendee": True}},
                "c": {"calendarAddress": "mailto:c@example.net", "roles": {"attendee": True}}},
        })  # fmt: skip
        await alice.ok("Calendar/set", update={main: {"shareWith": {BOB: {
            "mayReadFreeBusy": True, "mayReadItems": True, "mayUpdatePrivate": True}}}})
        bob = Client(bob_own.http, ALICE, USING)
        [got] = (await bob.ok("CalendarEvent/get", ids=[event_id]))["list"]
        window = {"utcStart": "2030-03-04T00:00:00Z", "utcEnd": "2030-03-07T00:00:00Z"}
        seen = await bob_own.ok("Principal/getAvailability", id=ALICE, showDetails=True,
                                **window)  # fmt: skip
        [period] = seen["list"]
        shown = period["event"]
        assert sorted(shown["participants"]) == sorted(got["participants"]) == ["b", "o"]
        assert shown["keywords"] is None and got["keywords"] is None  # (a sharee's default)
        assert not shown.get("alerts") and not got.get("alerts")
        assert shown["calendarIds"] == got["calendarIds"] == {main: True}
        # alice, who owns the event, sees all of it, and her own values
        mine = await alice.ok("Principal/getAvailability", id=ALICE, showDetails=True,
                              accountId=ALICE, **window)  # fmt: skip
        [own] = mine["list"]
        assert sorted(own["event"]["participants"]) == ["b", "c", "o"]
        assert own["event"]["keywords"] == {"alice-private-tag": True}


async def test_availability_occurrence_holds_the_users_per_occurrence_values(tmp_path):
    """§2.2 with §5.4: an occurrence's event shows the override's shared values (its
    title), not the owner's per-occurrence per-user ones (her color for it)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, _, bob_own, team = await setup(server, mayReadFreeBusy=True, mayReadItems=True)
        await create(alice, {
            "calendarIds": {team: True}, "title": "Daily", "start": "2030-03-04T10:00:00",
            "duration": "PT1H", "timeZone": "Etc/UTC",
            "recurrenceRule": {"frequency": "daily", "count": 2},
            "recurrenceOverrides": {"2030-03-05T10:00:00": {"title": "Long daily",
                                                            "color": "green"}}})  # fmt: skip
        window = {"utcStart": "2030-03-04T00:00:00Z", "utcEnd": "2030-03-07T00:00:00Z"}
        seen = await bob_own.ok("Principal/getAvailability", id=ALICE, showDetails=True,
                                **window)  # fmt: skip
        shown = [p["event"] for p in seen["list"]]
        assert [e["title"] for e in shown] == ["Daily", "Long daily"]
        assert [e.get("color") for e in shown] == [None, None]
        mine = await alice.ok("Principal/getAvailability", id=ALICE, showDetails=True,
                              accountId=ALICE, **window)  # fmt: skip
        assert [p["event"].get("color") for p in mine["list"]] == [None, "green"]
