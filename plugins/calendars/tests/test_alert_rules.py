"""Alert firing rules (draft-ietf-jmap-calendars §6, §6.1-§6.4, §9.3.2; JSCalendar Alert
triggers): an alert no datetime can hold never stops the others, absolute triggers in
recurrence overrides, the occurrence a snooze is about, caps on the alerts indexed, and
an email alert's acknowledgement patched alone.

Self-contained (importlib mode): the helpers are copies of test_alerts.py's."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import trio
from jmap_host_calendars.testing import (
    ALICE,
    UTC,
    absolute,
    alert,
    connect,
    create_events,
    default_calendar,
    event_due,
    local,
    snooze_of,
    streams,
    utc,
)

from jmap_host.testing import running_server, write_config


def triggers(event: dict[str, Any], low: dt.datetime, high: dt.datetime) -> list[Any]:
    from jmap_host_calendars.alerts import event_triggers

    base = {"id": "e1", "uid": "u1", "timeZone": "Etc/UTC", "duration": "PT1H", **event}
    return sorted(event_triggers(ALICE, base, [], "Etc/UTC", low, high))


# -- 1. an alert out of datetime's range ------------------------------------------------------


def test_trigger_outside_datetimes_range_never_fires():
    """JSCalendar Alert OffsetTrigger: an offset is any SignedDuration; one that puts the
    trigger outside the years a datetime can hold (-P3000000D, P1000000000D, a huge
    PT..S) never fires, and the event's other alerts still do (§9.3.2: one event must
    not deny the server's alerts)."""
    low, high = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC)
    alerts = {"far": alert("-P3000000D"), "later": alert("P1000000000D"),
              "past": alert("P3000000D"), "huge": alert("-PT99999999999999S"),
              "ok": alert()}  # fmt: skip
    found = triggers({"start": "2026-01-02T09:00:00", "alerts": alerts}, low, high)
    assert [(d.alert_id, utc(d.at)) for d in found] == [("ok", "2026-01-02T08:45:00Z")]
    daily = triggers({"start": "2026-01-01T09:00:00", "alerts": alerts,
                      "recurrenceRule": {"frequency": "daily"}}, low, high)  # fmt: skip
    assert {d.alert_id for d in daily} == {"ok"} and len(daily) == 2


def test_one_events_failure_skips_that_event_only(monkeypatch):
    """§9.3.2: an event whose alerts cannot be computed is logged and skipped; the
    account's other events' alerts are still indexed."""
    from jmap_host_calendars import alerts as module

    real = module.event_triggers

    def failing(account: str, event: dict[str, Any], *rest: Any) -> list[Any]:
        if event["id"] == "bad":
            raise RuntimeError("boom")
        return real(account, event, *rest)

    monkeypatch.setattr(module, "event_triggers", failing)
    calendar = {"id": "c1", "isSubscribed": True}
    events = [{"id": i, "uid": i, "calendarIds": {"c1": True}, "start": "2026-01-02T09:00:00",
               "timeZone": "Etc/UTC", "duration": "PT1H", "alerts": {"a1": alert()}}
              for i in ("bad", "good")]  # fmt: skip
    low, high = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC)
    found = module._dues(ALICE, "", [calendar], events, low, high)
    assert [(d.event_id, d.alert_id) for d in found] == [("good", "a1")]


async def test_alert_out_of_range_does_not_stop_the_server_alerts(tmp_path):
    """§6.4 at the wire: with an event whose alert is -P3000000D (accepted, never due) in
    the account, another event's alert still fires."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=1)
            created = await create_events(
                alice, bad=event_due(due, calendar, {"x": alert("-P3000000D")}),
                good=event_due(due, calendar))  # fmt: skip
            [fired] = await stream.wait_alerts(1)
            assert fired["calendarEventId"] == created["good"]["id"]


# -- 2. absolute triggers in overrides --------------------------------------------------------


def test_absolute_trigger_in_an_override_fires_for_its_occurrence():
    """§6.3: a snooze of an overridden alert goes in the same alerts property, the
    override's; JSCalendar AbsoluteTrigger: it fires once at its time, §6.4 with that
    occurrence's recurrenceId, whether or not the occurrence is in the window; an
    override that does not touch the alerts fires nothing of its own."""
    when = dt.datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    event = {"start": "2026-01-01T09:00:00", "recurrenceRule": {"frequency": "daily"},
             "alerts": {"a1": alert()}, "recurrenceOverrides": {
                 "2026-01-03T09:00:00": {"alerts/a1/trigger/offset": "-PT5M",
                                         "alerts/a1/acknowledged": utc(when),
                                         "alerts/z": snooze_of("a1", when)},
                 "2026-01-04T09:00:00": {"title": "moved"},
                 "2026-01-05T09:00:00": {"alerts": {"own": absolute(when)}}}}  # fmt: skip
    low, high = when - dt.timedelta(minutes=1), when + dt.timedelta(minutes=1)
    found = triggers(event, low, high)
    assert sorted((d.recurrence_id, d.alert_id, utc(d.at)) for d in found) == [
        ("2026-01-03T09:00:00", "z", "2026-01-10T12:00:00Z"),
        ("2026-01-05T09:00:00", "own", "2026-01-10T12:00:00Z"),
    ]


# -- 3. the occurrence a snooze is about ------------------------------------------------------


def test_snooze_names_the_occurrence_of_its_parent_alert():
    """§6.3, §6.4: a snooze (AbsoluteTrigger, relatedTo snooze) on a recurring event's
    base alerts fires with the recurrenceId of the occurrence whose alert it snoozed,
    even when set after that occurrence is over (not the next one's), and a snooze of a
    snooze too; an absolute alert of a recurring event never has a null recurrenceId."""
    start = dt.datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    acked = dt.datetime(2026, 1, 3, 8, 50, tzinfo=UTC)  # (the 3rd's a1 was due at 08:45)
    late = dt.datetime(2026, 1, 3, 11, 0, tzinfo=UTC)  # (the 3rd's occurrence is over)
    event = {"start": local(start), "recurrenceRule": {"frequency": "daily"},
             "alerts": {"a1": alert(acknowledged=utc(acked)), "z": snooze_of("a1", late),
                        "zz": snooze_of("z", late), "orphan": absolute(late),
                        "lost": snooze_of("gone", late)}}  # fmt: skip
    found = triggers(event, late - dt.timedelta(minutes=1), late + dt.timedelta(minutes=1))
    assert {d.alert_id: d.recurrence_id for d in found} == {
        "z": "2026-01-03T09:00:00", "zz": "2026-01-03T09:00:00",
        "orphan": "2026-01-04T09:00:00", "lost": "2026-01-04T09:00:00"}  # fmt: skip
    ended = {**event, "recurrenceRule": {"frequency": "daily", "count": 2}}
    ended["alerts"] = {"a1": alert(), "x": absolute(late)}
    [after_last] = triggers(ended, late - dt.timedelta(minutes=1), late + dt.timedelta(minutes=1))
    assert after_last.recurrence_id == "2026-01-01T09:00:00"
    assert after_last.push_object()["recurrenceId"] == "2026-01-01T09:00:00"


# -- 4. caps on the alerts indexed ------------------------------------------------------------


def test_firings_indexed_are_capped_per_event_and_per_user():
    """§9.3.2: a minutely event with 50 alerts defines far more firings than the rate
    limit lets through; the index holds at most ``limit`` of them per event (the
    earliest), and at most ``limit`` per
    alerted user across events and accounts."""
    from jmap_host_calendars.alerts import cap_per_user, event_triggers

    event = {"start": "2026-01-01T00:00:00", "recurrenceRule": {"frequency": "minutely"},
             "alerts": {f"a{i}": alert(f"-PT{i}M") for i in range(50)}}  # fmt: skip
    low, high = dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 3, tzinfo=UTC)
    base = {"id": "e1", "uid": "u1", "timeZone": "Etc/UTC", "duration": "PT1M", **event}
    kept = event_triggers(ALICE, base, [], "Etc/UTC", low, high, 600)
    everything = event_triggers(ALICE, base, [], "Etc/UTC", low, high)
    assert len(everything) > 100_000 and len(kept) == 600
    assert kept == sorted(everything)[:600]
    as_sharee = [dataclasses.replace(d, account="B", user=ALICE) for d in kept[:400]]
    index = {ALICE: kept[:400], "B": as_sharee}
    capped = cap_per_user({ALICE: kept[:400], "C": [dataclasses.replace(d, account="C")
                                                    for d in kept[400:]]}, 500)  # fmt: skip
    assert len(capped[ALICE]) == 400 and len(capped["C"]) == 200  # (C's owner: another user)
    assert cap_per_user({ALICE: kept}, 500)[ALICE] == kept[:500]
    shared = cap_per_user(index, 500)  # (alice's own 400, and 400 as a sharee in B)
    assert len(shared[ALICE]) + len(shared["B"]) == 500


async def test_an_account_changed_many_times_in_a_row_is_read_once(tmp_path, monkeypatch):
    """§9.3.2 (load): twenty changes in quick succession to an account's events lead to
    a few re-reads of its alerts, not twenty; its alert still fires."""
    from jmap_host_calendars import alerts as module

    reads: list[str] = []
    real = module.account_due

    def counted(db: Any, account: str, *rest: Any) -> list[Any]:
        reads.append(account)
        return real(db, account, *rest)

    monkeypatch.setattr(module, "account_due", counted)
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=3)
            created = await create_events(alice, e=event_due(due, calendar))
            await trio.sleep(0.5)
            before = len(reads)
            for i in range(20):
                await alice.ok("CalendarEvent/set", update={
                    created["e"]["id"]: {"title": f"t{i}"}})  # fmt: skip
                await trio.sleep(0.02)
            await trio.sleep(0.5)
            assert 1 <= len(reads) - before <= 8, len(reads) - before
            [fired] = await stream.wait_alerts(1)
            assert fired["calendarEventId"] == created["e"]["id"]


# -- 5. an email alert's acknowledgement, patched alone ---------------------------------------


async def acknowledged_with_a_race(tmp_path: Any, monkeypatch: Any, make: Any, race: Any):
    """Run the server; create the event ``make(calendar, due)`` returns; just before the
    scheduler's acknowledging CalendarEvent/set, apply ``race`` (a client's concurrent
    patch); return the event once its email alert's acknowledgement is written."""
    from jmap_host_calendars import alerts as module

    raced = trio.Event()
    holder: dict[str, Any] = {}

    class Racing(module.LocalClient):  # type: ignore[misc, name-defined]
        async def call(self, method: str, **arguments: Any) -> Any:
            if method == "CalendarEvent/set" and not raced.is_set():
                await holder["alice"].ok("CalendarEvent/set", update={holder["id"]: race})
                raced.set()
            return await super().call(method, **arguments)

    monkeypatch.setattr(module, "LocalClient", Racing)
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        due = dt.datetime.now(UTC) + dt.timedelta(seconds=1)
        created = await create_events(alice, e=make(calendar, due))
        holder.update(alice=alice, id=created["e"]["id"])
        with trio.fail_after(8):
            await raced.wait()
        await trio.sleep(0.5)
        [event] = (await alice.ok("CalendarEvent/get", ids=[holder["id"]]))["list"]
        return event


async def test_email_acknowledgement_keeps_a_concurrent_change(tmp_path, monkeypatch):
    """§6.2, RFC 8620 §5.3: the server's acknowledgement of a sent email alert patches
    ``alerts/<id>/acknowledged`` only: an alert a client added meanwhile is kept."""
    snooze = absolute(dt.datetime(2030, 1, 1, tzinfo=UTC))
    event = await acknowledged_with_a_race(
        tmp_path, monkeypatch,
        lambda calendar, due: event_due(due, calendar, {"m": alert(action="email")}),
        {"alerts/added": snooze})  # fmt: skip
    assert set(event["alerts"]) == {"m", "added"}
    assert event["alerts"]["added"] == snooze
    assert event["alerts"]["m"]["acknowledged"]
    assert event["recurrenceOverrides"] is None and event["sequence"] == 0


async def test_email_acknowledgement_of_an_overridden_alert_goes_to_its_override(
    tmp_path, monkeypatch
):
    """§6.2: an alert already overridden in ``recurrenceOverrides`` is acknowledged
    there, not on the base event; the base event's alerts, changed meanwhile by a
    client, are left as the client made them."""
    rid: dict[str, str] = {}

    def make(calendar: str, due: dt.datetime) -> dict[str, Any]:
        series = event_due(
            due,
            calendar,
            {"far": alert("-P300D")},
            recurrenceRule={"@type": "RecurrenceRule", "frequency": "daily"},
        )
        today = series["start"]
        series["start"] = local(due + dt.timedelta(minutes=15) - dt.timedelta(days=3))
        rid["today"] = today
        series["recurrenceOverrides"] = {today: {"alerts/m": alert(action="email")}}
        return series

    event = await acknowledged_with_a_race(
        tmp_path, monkeypatch, make, {"alerts/far/trigger/offset": "-P200D"}
    )
    assert event["alerts"] == {"far": alert("-P200D")}
    [override] = event["recurrenceOverrides"].values()
    assert list(event["recurrenceOverrides"]) == [rid["today"]]
    assert set(override) == {"alerts/m"}
    assert override["alerts/m"]["action"] == "email" and override["alerts/m"]["acknowledged"]
