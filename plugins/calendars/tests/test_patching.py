"""JMAP for Calendars §5.9.1, patching a property whose value is itself a PatchObject
(recurrenceOverrides), at the wire, with the draft's own example (Figures 1 to 6): a
pointer through an override adds a patch to it (``~1`` escapes the inner pointer's
slashes), null removes one, and a participant is removed from an occurrence only by
sending the whole override with that participant mapped to null."""

from __future__ import annotations

from typing import Any

from jmap_host_calendars.testing import (
    ALICE,
    USING,
)

from jmap_host.testing import AccountClient, running_server, write_config

TOM, ZOE = "dG9tQGZvb2Jhci5xlLmNvbQ", "em9lQGZvb2GFtcGxlLmNvbQ"
RID = "2025-03-05T09:00:00"


def figure_1(calendar: str) -> dict[str, Any]:
    return {
        "calendarIds": {calendar: True},
        "title": "FooBar team meeting",
        "start": "2025-01-08T09:00:00",
        "timeZone": "Europe/London",
        "recurrenceRule": {"@type": "RecurrenceRule", "frequency": "weekly"},
        "organizerCalendarAddress": "mailto:6489-4f14-a57f-c1@schedule.example.com",
        "participants": {
            TOM: {"@type": "Participant", "name": "Tom", "email": "tom@foobar.example.com",
                  "calendarAddress": "mailto:6489-4f14-a57f-c1@calendar.example.com",
                  "participationStatus": "accepted", "roles": {"attendee": True}},
            ZOE: {"@type": "Participant", "name": "Zoe", "email": "zoe@foobar.example.com",
                  "calendarAddress": "mailto:zoe@foobar.example.com",
                  "participationStatus": "accepted",
                  "roles": {"owner": True, "attendee": True, "chair": True}},
        },
        "recurrenceOverrides": {RID: {
            "start": "2025-03-05T10:00:00",
            f"participants/{TOM}/participationStatus": "declined"}},
    }  # fmt: skip


async def test_patching_a_recurrence_override(tmp_path):
    """§5.9.1 Figures 2 to 6, and the occurrence each leaves (§5.7)."""
    async with running_server(write_config(tmp_path)) as server:
        http = server.client("alice")
        await http.__aenter__()
        alice = AccountClient(http, ALICE, USING)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        made = await alice.ok("CalendarEvent/set", create={"e": figure_1(calendar["id"])})
        event = made["created"]["e"]["id"]
        occurrence = f"{event}.20250305T090000"

        async def overrides() -> Any:
            got = await alice.ok("CalendarEvent/get", ids=[event],
                                 properties=["recurrenceOverrides"])  # fmt: skip
            return got["list"][0]["recurrenceOverrides"]

        async def participants() -> dict[str, Any]:
            got = await alice.ok("CalendarEvent/get", ids=[occurrence],
                                 properties=["participants", "start"])  # fmt: skip
            assert got["list"][0]["start"] == "2025-03-05T10:00:00"
            return got["list"][0]["participants"]

        # Figure 2: Zoe declines that occurrence too (Figure 3).
        zoe = f"recurrenceOverrides/{RID}/participants~1{ZOE}~1participationStatus"
        assert event in (await alice.ok("CalendarEvent/set", update={
            event: {zoe: "declined"}}))["updated"]  # fmt: skip
        assert await overrides() == {RID: {
            "start": "2025-03-05T10:00:00",
            f"participants/{TOM}/participationStatus": "declined",
            f"participants/{ZOE}/participationStatus": "declined"}}  # fmt: skip
        assert {p["participationStatus"] for p in (await participants()).values()} == {
            "declined"}  # fmt: skip

        # Figure 4: Tom takes his patch back: he attends, as the series says.
        tom = f"recurrenceOverrides/{RID}/participants~1{TOM}~1participationStatus"
        await alice.ok("CalendarEvent/set", update={event: {tom: None}})
        assert f"participants/{TOM}/participationStatus" not in (await overrides())[RID]
        assert (await participants())[TOM]["participationStatus"] == "accepted"

        # Figure 5 removes a property the override does not have: nothing is removed.
        await alice.ok("CalendarEvent/set", update={
            event: {f"recurrenceOverrides/{RID}/participants~1{TOM}": None}})  # fmt: skip
        assert TOM in await participants()

        # Figure 6: the whole override, Tom mapped to null: he is not in that occurrence.
        await alice.ok("CalendarEvent/set", update={event: {f"recurrenceOverrides/{RID}": {
            "start": "2025-03-05T10:00:00",
            f"participants/{ZOE}/participationStatus": "declined",
            f"participants/{TOM}": None}}})  # fmt: skip
        assert list(await participants()) == [ZOE]
        series = await alice.ok("CalendarEvent/get", ids=[event], properties=["participants"])
        assert set(series["list"][0]["participants"]) == {TOM, ZOE}  # (the series keeps him)
