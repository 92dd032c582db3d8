"""The kept occurrences (timeline.py) answer exactly what expanding the event for each query
answers (recur.py: JSCalendar 2.0 §3.3, draft-ietf-jmap-calendars §5.11), and a query sees
a change to a series made after the occurrences were kept."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from jmap_host_calendars import recur, timeline
from jmap_host_calendars.testing import (
    ALICE,
    USING,
    run_cli,
)

from jmap_host.testing import AccountClient, running_server, write_config

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]


def _events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    found = []
    for i in range(n):
        start = dt.datetime(2026, 1, 1) + dt.timedelta(hours=rng.randrange(24 * 365))
        rule: dict[str, Any] = {"frequency": rng.choice(["daily", "weekly", "monthly"])}
        ending = rng.choice(["count", "until", "never"])
        if ending == "count":
            rule["count"] = rng.randrange(1, 60)
        elif ending == "until":
            rule["until"] = (start + dt.timedelta(days=rng.randrange(1, 400))).isoformat()
        if rng.random() < 0.3:
            rule["byDay"] = [{"day": d} for d in rng.sample(["mo", "we", "fr", "su"], 2)]
        event: dict[str, Any] = {
            "id": f"e{i}", "start": start.isoformat(), "timeZone": rng.choice(ZONES),
            "duration": rng.choice(["PT0S", "PT45M", "PT3H", "P1D", "P2DT1H", "PT120H"]),
            "recurrenceRule": rule,
        }  # fmt: skip
        if rng.random() < 0.5:  # overrides: exclusions, moves (far too), added dates
            overrides: dict[str, Any] = {}
            for k in range(rng.randrange(1, 4)):
                at = start + dt.timedelta(days=rng.randrange(0, 200))
                key = at.replace(hour=start.hour, minute=start.minute).isoformat()
                overrides[key] = rng.choice([
                    {"excluded": True}, {},
                    {"start": (at + dt.timedelta(days=rng.randrange(-90, 90))).isoformat()},
                    {"duration": "PT5H", "title": f"moved {k}"},
                ])  # fmt: skip
            event["recurrenceOverrides"] = overrides
        found.append(event)
    return found


def test_kept_occurrences_are_the_expanded_ones():
    """For random series (counts, untils, no end; byDay; exclusions, moved and added
    occurrences; zero and multi-day lengths; four zones across their DST changes) and
    random windows, Series.between gives recur.occurrences' answer, occurrence for
    occurrence."""
    rng = random.Random(20261203)
    for event in _events(rng, 150):
        held = timeline.series_for(event)
        assert not held.live
        for _ in range(8):
            low = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                hours=rng.randrange(24 * 500))  # fmt: skip
            high = low + dt.timedelta(hours=rng.randrange(1, 24 * 40))
            if not held.covers(high):
                continue
            assert held.between(low, high) == recur.occurrences(event, low, high, "Etc/UTC")


def test_what_is_expanded_live():
    """Floating events (their UTC time is the query's zone's) and rules expanded only over
    a window are not kept; a rule with no end is kept up to the horizon only."""
    floating = {"id": "f", "start": "2026-01-01T09:00:00",
                "recurrenceRule": {"frequency": "daily"}}  # fmt: skip
    assert timeline.series_for(floating).live
    fast = {"id": "s", "start": "2026-01-01T09:00:00", "timeZone": "Europe/Paris",
            "recurrenceRule": {"frequency": "minutely"}}  # fmt: skip
    assert timeline.series_for(fast).live
    endless = {"id": "d", "start": "2026-01-01T09:00:00", "timeZone": "Europe/Paris",
               "recurrenceRule": {"frequency": "weekly"}}  # fmt: skip
    held = timeline.series_for(endless)
    assert held.until is not None and not held.covers(held.until + dt.timedelta(days=1))
    counted = {**endless, "id": "c", "recurrenceRule": {"frequency": "weekly", "count": 3}}
    assert timeline.series_for(counted).until is None


async def test_a_query_sees_the_series_as_it_is_now(tmp_path):
    """§5.11: after the occurrences of a series were kept by one query, an update to its
    rule, an override, another event's creation and a destroy all show in the next one."""
    async with running_server(write_config(tmp_path)) as server:
        http = server.client("alice")
        await http.__aenter__()
        alice = AccountClient(http, ALICE, USING)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = {calendar["id"]: True}
        made = await alice.ok("CalendarEvent/set", create={"w": {
            "calendarIds": cal, "title": "Weekly", "start": "2026-06-01T10:00:00",
            "timeZone": "Europe/Paris", "recurrenceRule": {"frequency": "weekly"}}})  # fmt: skip
        weekly = made["created"]["w"]["id"]
        june = {"after": "2026-06-01T00:00:00", "before": "2026-07-01T00:00:00"}

        async def june_ids() -> list[str]:
            return (await alice.ok("CalendarEvent/query", filter=june,
                                   expandRecurrences=True))["ids"]  # fmt: skip

        assert len(await june_ids()) == 5  # 1, 8, 15, 22, 29 June
        await alice.ok("CalendarEvent/set", update={weekly: {
            "recurrenceRule": {"frequency": "weekly", "interval": 2}}})  # fmt: skip
        assert len(await june_ids()) == 3  # 1, 15, 29
        await alice.ok("CalendarEvent/set", update={
            f"{weekly}.20260615T100000": {"start": "2026-07-02T10:00:00"}})  # fmt: skip
        assert [i[-15:] for i in await june_ids()] == ["20260601T100000", "20260629T100000"]
        # A per-user value alone (§5.4: the owner's are the record's, with no change row of
        # the account's) at a date the rule does not produce adds that occurrence.
        await alice.ok("CalendarEvent/set", update={weekly: {
            "recurrenceOverrides/2026-06-17T10:00:00": {"color": "red"}}})  # fmt: skip
        assert [i[-15:] for i in await june_ids()] == [
            "20260601T100000", "20260617T100000", "20260629T100000"]
        more = await alice.ok("CalendarEvent/set", create={"d": {
            "calendarIds": cal, "title": "Daily", "start": "2026-06-28T08:00:00",
            "timeZone": "Asia/Tokyo", "recurrenceRule": {"frequency": "daily"}}})  # fmt: skip
        daily = more["created"]["d"]["id"]
        ids = await june_ids()
        # (08:00 in Tokyo is 23:00Z the day before: 1 July's is still in June in UTC)
        assert [i[-15:] for i in ids if i.startswith(daily)] == [
            "20260628T080000", "20260629T080000", "20260630T080000", "20260701T080000"]
        await alice.ok("CalendarEvent/set", destroy=[weekly])
        assert all(i.startswith(daily) for i in await june_ids())


WEEKLY_ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//jmap-host tests//EN
BEGIN:VEVENT
UID:weekly@example.com
DTSTAMP:20260501T100000Z
DTSTART;TZID=Europe/Paris:20260601T100000
DURATION:PT1H
RRULE:FREQ=WEEKLY
SUMMARY:Weekly
END:VEVENT
END:VCALENDAR
"""


async def test_a_change_by_another_process_is_seen(tmp_path):
    """Several processes (worker processes, nodes on one PostgreSQL database) each keep
    their own timelines and tell no one what they write: a kept Timeline is checked against
    the CalendarEvent state its query's read transaction sees.  So a series changed by
    another process (``jmap-host calendars import`` updating it in place, while this
    server has its occurrences kept) shows in this server's next query."""
    config = write_config(tmp_path)
    source = tmp_path / "weekly.ics"
    source.write_text(WEEKLY_ICS, encoding="utf-8")
    args = ("calendars", "import", "-c", str(config), "--account", "alice", str(source))
    async with running_server(config) as server:
        async with server.client("alice") as http:
            alice = AccountClient(http, ALICE, USING)
            imported = await run_cli(*args)
            assert "1 events created" in imported.stdout, imported.stderr
            june = {"after": "2026-06-01T00:00:00", "before": "2026-07-01T00:00:00"}

            async def june_ids() -> list[str]:
                return (await alice.ok("CalendarEvent/query", filter=june,
                                       expandRecurrences=True))["ids"]  # fmt: skip

            assert len(await june_ids()) == 5  # 1, 8, 15, 22, 29 June
            assert any(account == ALICE for _, account in timeline._timelines)  # (kept)
            source.write_text(WEEKLY_ICS.replace("FREQ=WEEKLY", "FREQ=WEEKLY;INTERVAL=2"),
                              encoding="utf-8")  # fmt: skip
            updated = await run_cli(*args)
            assert "0 events created, 1 updated" in updated.stdout, updated.stderr
            assert [i[-15:] for i in await june_ids()] == [
                "20260601T100000", "20260615T100000", "20260629T100000"]  # fmt: skip


def test_long_occurrences_written_in_hours():
    """An occurrence of PT120H (five days written as hours) that began before a window
    overlaps it: expanding for the window finds it as the kept series does."""
    event = {"id": "h", "start": "2026-01-05T09:00:00", "timeZone": "Europe/Paris",
             "duration": "PT120H", "recurrenceRule": {"frequency": "weekly", "count": 3}}
    low = dt.datetime(2026, 1, 9, tzinfo=dt.UTC)
    high = low + dt.timedelta(hours=1)
    found = recur.occurrences(event, low, high, "Etc/UTC")
    assert [o.recurrence_id for o in found] == ["2026-01-05T09:00:00"]
    assert timeline.series_for(event).between(low, high) == found


def test_rules_that_never_match_and_far_overrides():
    """JSCalendar §3.3.3: a rule that can produce no date (the 30th of February) leaves
    the start as the only occurrence, found without walking to the year 9999; an override
    of a minutely rule a year away is past what is looked at (cannotCalculateOccurrences,
    draft §5.11) instead of a walk of half a million steps."""
    never = {"id": "n", "start": "2026-01-01T09:00:00", "timeZone": "Europe/Paris",
             "recurrenceRule": {"frequency": "daily", "byMonth": ["2"], "byMonthDay": [30],
                                "count": 2}}  # fmt: skip
    low, high = dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert [o.recurrence_id for o in recur.occurrences(never, low, high, "Etc/UTC")] == [
        "2026-01-01T09:00:00"]  # fmt: skip
    june = {**never, "id": "j", "recurrenceRule": {"frequency": "yearly", "byMonth": ["6"],
                                                   "byYearDay": [1]}}  # fmt: skip
    assert [o.recurrence_id for o in recur.occurrences(june, low, high, "Etc/UTC")] == [
        "2026-01-01T09:00:00"]  # fmt: skip
    leap = {**never, "id": "l", "recurrenceRule": {"frequency": "yearly", "byMonth": ["2"],
                                                   "byMonthDay": [29]}}  # fmt: skip
    assert [o.recurrence_id for o in recur.occurrences(leap, low, high, "Etc/UTC")] == [
        "2026-01-01T09:00:00"]  # (2028 is past the window; the rule can match)
    far = {"id": "m", "start": "2026-01-01T09:00:00", "timeZone": "Europe/Paris",
           "recurrenceRule": {"frequency": "minutely"},
           "recurrenceOverrides": {"2027-01-01T09:00:00": {"title": "x"}}}  # fmt: skip
    try:
        recur.occurrences(far, dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                          dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "Etc/UTC")  # fmt: skip
    except recur.CannotExpand:
        pass
    else:
        raise AssertionError("an override 525,600 steps away was walked to")


async def test_a_range_open_on_one_side(tmp_path):
    """§5.11.1: after alone, or before alone, bound the range on one side only: an
    endless series, a long one and a floating one are each found (or not) on either side,
    not refused."""
    async with running_server(write_config(tmp_path)) as server:
        http = server.client("alice")
        await http.__aenter__()
        alice = AccountClient(http, ALICE, USING)
        [calendar] = (await alice.ok("Calendar/get", ids=None))["list"]
        cal = {calendar["id"]: True}
        made = await alice.ok("CalendarEvent/set", create={
            "endless": {"calendarIds": cal, "title": "Endless", "start": "2026-06-01T10:00:00",
                        "timeZone": "Europe/Paris", "recurrenceRule": {"frequency": "weekly"}},
            "long": {"calendarIds": cal, "title": "Long", "start": "2026-06-01T10:00:00",
                     "timeZone": "Europe/Paris", "duration": "P2D",
                     "recurrenceRule": {"frequency": "daily", "count": 3}},
            "floating": {"calendarIds": cal, "title": "Floating",
                         "start": "2026-06-01T10:00:00",
                         "recurrenceRule": {"frequency": "daily", "count": 2}},
        })  # fmt: skip
        ids = {k: v["id"] for k, v in made["created"].items()}
        later = await alice.ok("CalendarEvent/query", filter={"after": "2030-01-01T00:00:00"})
        assert later["ids"] == [ids["endless"]]
        earlier = await alice.ok("CalendarEvent/query",
                                 filter={"before": "2026-06-02T00:00:00"})  # fmt: skip
        assert set(earlier["ids"]) == set(ids.values())
        none = await alice.ok("CalendarEvent/query", filter={"before": "2026-01-01T00:00:00"})
        assert none["ids"] == []


def test_the_cache_is_bounded(monkeypatch):
    """At most MAX_KEPT occurrences are kept: the least recently used series go, and
    whoever still holds one expands that event per query instead (it covers nothing)."""
    monkeypatch.setattr(timeline, "MAX_KEPT", 60)
    weekly = {"start": "2026-01-05T09:00:00", "timeZone": "Europe/Paris",
              "recurrenceRule": {"frequency": "weekly", "count": 25}}  # fmt: skip
    first = timeline.series_for({**weekly, "id": "bound-1"})
    second = timeline.series_for({**weekly, "id": "bound-2"})
    assert first.covers(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    third = timeline.series_for({**weekly, "id": "bound-3"})
    assert first.live and not first.occurrences  # dropped: 75 > 60
    assert not second.live and not third.live
    assert timeline.kept({**weekly, "id": "bound-1"}) is None
