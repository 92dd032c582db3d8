"""What a sharee's writes and copies may do with an event's per-user properties, at the
wire (draft-ietf-jmap-calendars §5.4 per-user properties, §5.7 private events, §5.9
CalendarEvent/set, §5.10 CalendarEvent/copy, §7 CalendarEventNotification; RFC 8620 §5.3
/set "updated", §5.4 /copy): a mixed patch stores the sharee's own values too, /copy
from a shared account copies what the sharee sees, a no-op update writes nothing, and a
user's /changes of notifications names only their own."""

from __future__ import annotations

import trio
from jmap_host_calendars.testing import (
    ALICE,
    ALICE_OWNER,
    BOB_ATTENDEE,
    CAROL,
    create,
    get,
    share_team,
    standup,
)

from jmap_host.testing import running_server, write_config


async def test_mixed_patch_keeps_sharee_per_user(tmp_path):
    """§5.4: a sharee's patch that changes shared properties (title) and their own per-user
    ones (keywords, color) at once stores both: the per-user values as theirs (the owner's
    stay), in their /changes."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteAll=True,
                                          mayUpdatePrivate=True)  # fmt: skip
        event_id = await create(alice, standup(team, keywords={"alice": True}, color="red"))
        state = (await bob.ok("CalendarEvent/get", ids=[]))["state"]
        r = await bob.ok("CalendarEvent/set", update={event_id: {
            "title": "Renamed", "keywords": {"bob": True}, "color": "blue"}})  # fmt: skip
        assert event_id in (r.get("updated") or {}), r
        seen = await get(bob, event_id)
        assert seen["title"] == "Renamed"
        assert seen["keywords"] == {"bob": True} and seen["color"] == "blue", seen
        alices = await get(alice, event_id)
        assert alices["title"] == "Renamed"
        assert alices["keywords"] == {"alice": True} and alices["color"] == "red", alices
        assert (await bob.ok("CalendarEvent/changes", sinceState=state))["updated"] == [event_id]


async def test_noop_patch_by_sharee_writes_nothing(tmp_path):
    """RFC 8620 §5.3: an update that changes nothing may be answered "updated" with null;
    a sharee's (§5.9) writes nothing: no new "updated" time or sequence, no change in
    /changes, no CalendarEventNotification (§7) and no new state.  The rights still
    apply: a "private" event only the calendar's owner may change (§5.9), so the same
    no-op patch of one by a sharee is forbidden."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayUpdatePrivate=True)
        await alice.ok("Calendar/set", update={team: {"isSubscribed": True}})
        event_id = await create(alice, standup(team))
        private_id = await create(alice, standup(team, privacy="private",
                                               uid="private-one"))  # fmt: skip
        first = await get(alice, event_id)
        state = (await alice.ok("CalendarEvent/get", ids=[]))["state"]
        notes = (await alice.ok("CalendarEventNotification/get", ids=[]))["state"]
        await trio.sleep(1.1)  # (so that a new "updated" time would be a later second)
        r = await bob.ok("CalendarEvent/set", update={event_id: {"title": "Standup"}})
        assert r["updated"] == {event_id: None}, r
        assert r["newState"] == r["oldState"] == state, r
        after = await get(alice, event_id)
        assert after["updated"] == first["updated"] and after["sequence"] == first["sequence"]
        changes = await alice.ok("CalendarEvent/changes", sinceState=state)
        assert changes["updated"] == [] and changes["newState"] == state, changes
        told = await alice.ok("CalendarEventNotification/changes", sinceState=notes)
        assert told["created"] == [], told
        r = await bob.ok("CalendarEvent/set", update={private_id: {"title": "Standup"}})
        assert r["notUpdated"][private_id]["type"] == "forbidden", r
        r = await bob.ok("CalendarEvent/set", update={private_id: {}})
        assert r["notUpdated"][private_id]["type"] == "forbidden", r


async def test_copy_from_shared_account_copies_what_the_sharee_sees(tmp_path):
    """§5.10 (RFC 8620 §5.4 /copy) reads the original as the caller's /get shows it: of a
    "private" event a sharee sees the basic time and metadata alone (§5.7), so its title
    and the owner's keywords (§5.4: per user, the sharee's own are null) are not copied;
    of an event with hideAttendees (§5.1.3) only the owners and the sharee themselves."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, bob_own, team = await share_team(server, mayReadItems=True)
        private_id = await create(alice, standup(team, privacy="private", uid="p",
                                               title="HR: reorganisation",
                                               keywords={"alice-secret": True}))  # fmt: skip
        hidden_id = await create(alice, standup(team, uid="h", hideAttendees=True, participants={
            "a": ALICE_OWNER, "b": BOB_ATTENDEE, "c": CAROL}))  # fmt: skip
        seen = await get(bob, private_id)
        assert "title" not in seen and "keywords" not in seen, seen
        assert set((await get(bob, hidden_id))["participants"]) == {"a", "b"}
        made = await bob_own.ok("Calendar/set", create={"c": {"name": "Bobs"}})
        mine = made["created"]["c"]["id"]
        r = await bob_own.ok("CalendarEvent/copy", fromAccountId=ALICE, create={
            "k": {"id": private_id, "calendarIds": {mine: True}, "privacy": "public"},
            "h": {"id": hidden_id, "calendarIds": {mine: True}}})  # fmt: skip
        assert set(r.get("created") or {}) == {"k", "h"}, r
        copied = await get(bob_own, r["created"]["k"]["id"])
        assert copied["title"] == "" and not copied["keywords"], copied
        assert copied["start"] == "2026-06-01T09:00:00"  # (what the sharee sees is copied)
        copied = await get(bob_own, r["created"]["h"]["id"])
        assert set(copied["participants"]) == {"a", "b"}, copied["participants"]


async def test_notification_changes_name_only_the_users_own(tmp_path):
    """§7: a CalendarEventNotification is for one user; its /changes (§7.2, RFC 8620 §5.2)
    and /queryChanges (§7.5, RFC 8620 §5.6) name only that user's: another user's
    notification that they dismissed (destroyed, §7.3) is not in "destroyed" or
    "removed" (it never was theirs to see), their own dismissed one is."""
    async with running_server(write_config(tmp_path)) as server:
        alice, bob, _, team = await share_team(server, mayReadItems=True, mayWriteAll=True)
        await bob.ok("Calendar/set", update={team: {"isSubscribed": True}})
        await create(bob, standup(team, uid="by-bob"))  # (alice is told)
        await create(alice, standup(team, uid="by-alice"))  # (bob is told)
        alices = (await alice.ok("CalendarEventNotification/get", ids=None))["list"]
        bobs = (await bob.ok("CalendarEventNotification/get", ids=None))["list"]
        assert len(alices) == 1 and len(bobs) == 1, (alices, bobs)
        state = (await bob.ok("CalendarEventNotification/get", ids=[]))["state"]
        query = await alice.ok("CalendarEventNotification/query")
        assert query["ids"] == [alices[0]["id"]] and query["canCalculateChanges"], query
        await alice.ok("CalendarEventNotification/set", destroy=[alices[0]["id"]])
        await bob.ok("CalendarEventNotification/set", destroy=[bobs[0]["id"]])
        for client, own in ((bob, bobs), (alice, alices)):
            changes = await client.ok("CalendarEventNotification/changes", sinceState=state)
            assert changes["destroyed"] == [own[0]["id"]], changes
            assert changes["created"] == [] and changes["updated"] == [], changes
        later = await alice.ok("CalendarEventNotification/queryChanges",
                               sinceQueryState=query["queryState"])  # fmt: skip
        assert later["removed"] == [alices[0]["id"]] and later["added"] == [], later
