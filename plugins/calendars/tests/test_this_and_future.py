"""JMAP for Calendars §5.6, "this and future" edits of a recurring event, at the wire: the
split of §5.6.1 (the original's rule ends before the split point, a copy starts there,
linked by "next" and "first" relations, JSCalendar 2.0 §4.1.2) and the base update with
overrides that restore the earlier occurrences (§5.6.2), both across a DST change."""

from __future__ import annotations

from jmap_host_calendars.testing import (
    ALICE,
    connect,
)

from jmap_host.testing import running_server, write_config

# A weekly Monday 18:00 in Europe/London, from 2 March 2026 (GMT) over the change to BST on
# 29 March: 18:00Z in March, 17:00Z from 30 March.
SERIES = {"title": "Choir", "start": "2026-03-02T18:00:00", "timeZone": "Europe/London",
          "duration": "PT2H", "recurrenceRule": {"frequency": "weekly", "count": 8}}  # fmt: skip
SPRING = {"after": "2026-03-01T00:00:00", "before": "2026-05-01T00:00:00"}


async def _occurrences(client, **extra) -> list[tuple[str, str, str]]:
    """(utcStart, title, baseEventId or id) of every occurrence in SPRING, in time order."""
    found = await client.ok("CalendarEvent/query", filter=SPRING, expandRecurrences=True)
    got = await client.ok("CalendarEvent/get", ids=found["ids"],
                          properties=["utcStart", "title", "baseEventId"])  # fmt: skip
    return [(o["utcStart"], o["title"], o.get("baseEventId") or o["id"]) for o in got["list"]]


async def test_split_an_event_at_an_occurrence(tmp_path):
    """§5.6.1: the original ends before the split point (its rule's until), the duplicate
    starts at it with the changed title and the rest of the count; relatedTo "next" on the
    original and "first" on the new one (JSCalendar 2.0 §4.1.2: Relation) are stored and
    returned; the occurrences across the DST change are each at 18:00 London time."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = {calendar["id"]: True}
        made = await alice.ok("CalendarEvent/set", create={"s": {"calendarIds": cal, **SERIES}})
        original = made["created"]["s"]["id"]
        uid = (await alice.ok("CalendarEvent/get", ids=[original], properties=["uid"]))[
            "list"][0]["uid"]  # fmt: skip
        # Split at the fifth occurrence (30 March, the first in summer time): one /set
        # ends the original and creates the rest, so no client sees a half-made split.
        split = await alice.ok("CalendarEvent/set", update={original: {
            "recurrenceRule": {"frequency": "weekly", "until": "2026-03-29T23:59:59"},
        }}, create={"rest": {
            "calendarIds": cal, **SERIES, "title": "Choir (new hall)",
            "start": "2026-03-30T18:00:00", "recurrenceRule": {"frequency": "weekly", "count": 4},
            "relatedTo": {uid: {"@type": "Relation", "relation": {"first": True}}},
        }})  # fmt: skip
        rest = split["created"]["rest"]["id"]
        rest_uid = (await alice.ok("CalendarEvent/get", ids=[rest], properties=["uid"]))[
            "list"][0]["uid"]  # fmt: skip
        assert rest_uid != uid  # a new series (JSCalendar: a new uid)
        next_ = {rest_uid: {"@type": "Relation", "relation": {"next": True}}}
        # The original has no relatedTo yet, so a patch into it is not a patch (RFC 8620
        # §5.3: the pointer's parent must exist); setting the whole map is.
        into = await alice.ok("CalendarEvent/set", update={
            original: {f"relatedTo/{rest_uid}": next_[rest_uid]}})  # fmt: skip
        assert into["notUpdated"][original]["type"] == "invalidPatch"
        linked = await alice.ok("CalendarEvent/set", update={original: {"relatedTo": next_}})
        assert original in linked["updated"]
        both = (await alice.ok("CalendarEvent/get", ids=[original, rest],
                               properties=["relatedTo"]))["list"]  # fmt: skip
        assert both[0]["relatedTo"] == {rest_uid: {"@type": "Relation",
                                                   "relation": {"next": True}}}  # fmt: skip
        assert both[1]["relatedTo"] == {uid: {"@type": "Relation", "relation": {"first": True}}}

        seen = await _occurrences(alice)
        assert [s for s, _, _ in seen] == [
            "2026-03-02T18:00:00Z", "2026-03-09T18:00:00Z", "2026-03-16T18:00:00Z",
            "2026-03-23T18:00:00Z",  # GMT
            "2026-03-30T17:00:00Z", "2026-04-06T17:00:00Z", "2026-04-13T17:00:00Z",
            "2026-04-20T17:00:00Z",  # BST
        ]  # fmt: skip
        assert {t for _, t, b in seen if b == original} == {"Choir"}
        assert {t for _, t, b in seen if b == rest} == {"Choir (new hall)"}
        assert [b for _, _, b in seen].count(original) == 4

        # A relation whose type is not a Relation is refused, naming the property.
        bad = await alice.ok("CalendarEvent/set", update={
            rest: {f"relatedTo/{uid}": {"relation": {"first": "yes"}}}})  # fmt: skip
        assert bad["notUpdated"][rest]["type"] == "invalidProperties"


async def test_update_the_base_and_override_earlier_occurrences(tmp_path):
    """§5.6.2: the base event takes the change for "this and future" and overrides put the
    earlier occurrences back as they were; each occurrence reads accordingly, at its own
    UTC time on either side of the DST change, and one /set does both."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        made = await alice.ok("CalendarEvent/set", create={
            "s": {"calendarIds": {calendar["id"]: True}, **SERIES,
                  "locations": {"l": {"@type": "Location", "name": "Old hall"}}}})  # fmt: skip
        base = made["created"]["s"]["id"]
        before_split = ["2026-03-02T18:00:00", "2026-03-09T18:00:00", "2026-03-16T18:00:00",
                        "2026-03-23T18:00:00"]  # fmt: skip
        done = await alice.ok("CalendarEvent/set", update={base: {
            "title": "Choir (new hall)", "locations/l/name": "New hall",
            "recurrenceOverrides": {rid: {"title": "Choir", "locations/l/name": "Old hall"}
                                    for rid in before_split},
        }})  # fmt: skip
        assert base in done["updated"]
        seen = await _occurrences(alice)
        assert [(s, t) for s, t, _ in seen] == [
            ("2026-03-02T18:00:00Z", "Choir"), ("2026-03-09T18:00:00Z", "Choir"),
            ("2026-03-16T18:00:00Z", "Choir"), ("2026-03-23T18:00:00Z", "Choir"),
            ("2026-03-30T17:00:00Z", "Choir (new hall)"),
            ("2026-04-06T17:00:00Z", "Choir (new hall)"),
            ("2026-04-13T17:00:00Z", "Choir (new hall)"),
            ("2026-04-20T17:00:00Z", "Choir (new hall)"),
        ]  # fmt: skip
        first, fifth = f"{base}.20260302T180000", f"{base}.20260330T180000"
        rooms = (await alice.ok("CalendarEvent/get", ids=[first, fifth],
                                properties=["locations"]))["list"]  # fmt: skip
        assert [r["locations"]["l"]["name"] for r in rooms] == ["Old hall", "New hall"]
        # The location text search sees the overridden value too (§5.11.1).
        old = await alice.ok("CalendarEvent/query", filter={"location": "old hall"})
        assert old["ids"] == [base]
