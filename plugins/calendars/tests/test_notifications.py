"""CalendarEventNotifications at the wire (draft-ietf-jmap-calendars §7): written when
someone else creates, updates or destroys an event in a calendar the user is subscribed
to, in the event's account; each user sees only their own; /set only destroys (§7.3);
/query filters after, before, type, calendarEventIds and sorts by created (§7.4);
/changes, /queryChanges and push follow them."""

from __future__ import annotations

from typing import Any

import trio
from jmap_host_calendars import notification
from jmap_host_calendars.testing import ALICE, BOB, Client, share_team, standup

from jmap_host.testing import running_server, write_config

NOTE = "CalendarEventNotification"


async def setup(server: Any) -> tuple[Client, Client, str]:
    """alice's calendar "Team" shared with bob (mayWriteAll), who subscribed to it."""
    alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteAll=True)
    await bob.ok("Calendar/set", update={team: {"isSubscribed": True}})
    return alice, bob, team


async def notes(client: Client, **args: Any) -> list[dict[str, Any]]:
    ids = (await client.ok(f"{NOTE}/query", **args))["ids"]
    return (await client.ok(f"{NOTE}/get", ids=ids))["list"] if ids else []


async def test_a_sharees_change_notifies_the_owner(tmp_path):
    """§7: bob creates, updates and destroys an event in alice's calendar: alice gets a
    notification each, with changedBy, type, calendarEventId, isDraft, event (after for
    created, before otherwise) and eventPatch (updated); her own changes make none for
    her, but do for bob, who is subscribed; bob never sees alice's.  Per-user properties
    are no part of them."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, team = await setup(server)
        made = await bob.ok("CalendarEvent/set", create={"e": {
            "calendarIds": {team: True}, "title": "Lunch", "start": "2026-06-01T12:00:00",
            "timeZone": "Europe/Berlin", "keywords": {"mine": True}}})  # fmt: skip
        event_id = made["created"]["e"]["id"]
        await bob.ok("CalendarEvent/set", update={event_id: {"title": "Long lunch"}})
        await bob.ok("CalendarEvent/set", update={event_id: {"color": "red"}})  # (per-user)
        got = await notes(alice)
        assert [n["type"] for n in got] == ["created", "updated"]
        created, updated = got
        assert created["calendarEventId"] == event_id and created["isDraft"] is False
        assert created["event"]["title"] == "Lunch" and "keywords" not in created["event"]
        by = created["changedBy"]
        assert (by["email"], by["principalId"], by["calendarAddress"]) == (
            "bob@example.org", BOB, "mailto:bob@example.org")  # fmt: skip
        assert by["name"] and by["comment"] is None
        assert updated["event"]["title"] == "Lunch"  # before the change
        assert updated["eventPatch"]["title"] == "Long lunch"
        assert await notes(bob) == []  # bob's own changes: nothing for him
        # alice's edit: one for bob (subscribed), none for her
        await alice.ok("CalendarEvent/set", update={event_id: {"description": "at noon"}})
        [for_bob] = await notes(bob)
        assert for_bob["changedBy"]["principalId"] == ALICE
        assert for_bob["eventPatch"]["description"] == "at noon"
        assert len(await notes(alice)) == 2
        # each sees only their own: ids of the other's are notFound, not destroyable
        alices = [n["id"] for n in await notes(alice)]
        assert (await bob.ok(f"{NOTE}/get", ids=alices))["notFound"] == alices
        refused = await bob.ok(f"{NOTE}/set", destroy=alices[:1])
        assert refused["notDestroyed"][alices[0]]["type"] == "notFound"
        assert (await alice.ok(f"{NOTE}/get", ids=[for_bob["id"]]))["notFound"] == [
            for_bob["id"]]  # fmt: skip
        await bob.ok("CalendarEvent/set", destroy=[event_id])
        destroyed = (await notes(alice, filter={"type": "destroyed"}))
        assert [n["event"]["title"] for n in destroyed] == ["Long lunch"]
        assert destroyed[0]["isDraft"] is None and destroyed[0]["eventPatch"] is None


async def test_set_destroys_only(tmp_path):
    """§7.3: only destroy; create and update are forbidden.  A destroy is in /changes."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, team = await setup(server)
        await bob.ok("CalendarEvent/set", create={"e": {
            "calendarIds": {team: True}, "title": "x", "start": "2026-06-01T12:00:00"}})
        [note] = await notes(alice)
        state = (await alice.ok(f"{NOTE}/get", ids=[]))["state"]
        refused = await alice.ok(f"{NOTE}/set", create={"n": {"type": "created"}},
                                 update={note["id"]: {"type": "updated"}})  # fmt: skip
        assert refused["notCreated"]["n"]["type"] == "forbidden"
        assert refused["notUpdated"][note["id"]]["type"] == "forbidden"
        gone = await alice.ok(f"{NOTE}/set", destroy=[note["id"]])
        assert gone["destroyed"] == [note["id"]]
        changes = await alice.ok(f"{NOTE}/changes", sinceState=state)
        assert changes["destroyed"] == [note["id"]]
        assert await notes(alice) == []


async def test_query_filters_sort_and_changes(tmp_path):
    """§7.4.1 after, before, type, calendarEventIds; §7.4.2 sort by created; §7.5
    queryChanges; §7.2 changes; a new notification's state is pushed (RFC 8620 §7)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, team = await setup(server)
        first = await bob.ok("CalendarEvent/set", create={"e": {
            "calendarIds": {team: True}, "title": "One", "start": "2026-06-01T12:00:00"}})
        one = first["created"]["e"]["id"]
        query = await alice.ok(f"{NOTE}/query", sort=[{"property": "created"}])
        assert query["canCalculateChanges"] is True
        state = (await alice.ok(f"{NOTE}/get", ids=[]))["state"]
        await trio.sleep(1.1)  # (created is to the second)
        second = await bob.ok("CalendarEvent/set", create={"e": {
            "calendarIds": {team: True}, "title": "Two", "start": "2026-06-02T12:00:00"}})
        two = second["created"]["e"]["id"]
        await bob.ok("CalendarEvent/set", update={one: {"title": "One!"}})
        everything = await notes(alice, sort=[{"property": "created", "isAscending": False}])
        assert [n["calendarEventId"] for n in everything][-1] == one  # the oldest last
        assert len(everything) == 3
        by_event = await notes(alice, filter={"calendarEventIds": [two]})
        assert [n["calendarEventId"] for n in by_event] == [two]
        later = await notes(alice, filter={"after": "2026-01-01T00:00:00Z", "type": "updated"})
        assert [n["calendarEventId"] for n in later] == [one]
        middle = next(n["created"] for n in everything if n["calendarEventId"] == two)
        before = await notes(alice, filter={"before": middle})
        assert [n["calendarEventId"] for n in before] == [one]
        changes = await alice.ok(f"{NOTE}/changes", sinceState=state)
        assert len(changes["created"]) == 2
        since = await alice.ok(f"{NOTE}/queryChanges", sinceQueryState=query["queryState"],
                               sort=[{"property": "created"}])  # fmt: skip
        assert len(since["added"]) == 2
        bad = await alice.call(f"{NOTE}/query", filter={"type": 5})
        assert bad["error"]["type"] == "invalidArguments"


async def test_push_tells_the_owner(tmp_path):
    """§7: "Pushed as a state change": alice's EventSource says CalendarEventNotification
    changed when bob's edit wrote her one; "calendarEventNotifications" is a data type of
    the capability (listed in the Session's push types)."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, team = await setup(server)
        session = (await alice.http.get("/jmap/session")).json()
        url = session["eventSourceUrl"].replace("{types}", NOTE).replace(
            "{closeafter}", "state").replace("{ping}", "0")  # fmt: skip
        async with alice.http.stream("GET", url) as stream:
            lines = stream.aiter_lines()
            await bob.ok("CalendarEvent/set", create={"e": {
                "calendarIds": {team: True}, "title": "x", "start": "2026-06-01T12:00:00"}})
            with trio.fail_after(10):
                async for line in lines:
                    if line.startswith("data:") and NOTE in line:
                        break


async def test_at_most_so_many_per_user(tmp_path, monkeypatch):
    """§7: "The server MAY limit the maximum number of notifications it will store for a
    user. When the limit is reached, any new notification will cause the previously
    oldest notification to be automatically deleted" (here MAX_NOTIFICATIONS, 2 for the
    test): the oldest goes, and alice's /changes says it was destroyed."""
    monkeypatch.setattr(notification, "MAX_NOTIFICATIONS", 2)
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, team = await setup(server)
        state = (await alice.ok(f"{NOTE}/get", ids=[]))["state"]
        made = {}
        for title in ("one", "two", "three"):
            made[title] = (await bob.ok("CalendarEvent/set", create={
                "e": standup(team, title=title)}))["created"]["e"]["id"]  # fmt: skip
        kept = await notes(alice, sort=[{"property": "created"}])
        assert [n["calendarEventId"] for n in kept] == [made["two"], made["three"]]
        changes = await alice.ok(f"{NOTE}/changes", sinceState=state)
        assert set(changes["created"]) == {n["id"] for n in kept}
        assert changes["destroyed"] == []  # (created and destroyed since: not listed)
