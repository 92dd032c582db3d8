"""Alerts (draft-ietf-jmap-calendars §6) at the wire: CalendarAlert push objects (§6.4) on
EventSource and WebSocket (RFC 8620 §7.3, RFC 8887 §4.3.5), which alerts fire (§6: only
in subscribed calendars; §6.1 default alerts; §6.2 acknowledged ones do not; §6.3 snoozes
do; JSCalendar §3.5.1 triggers over recurrences), and that each fires once, also across a
restart, late within the catch-up window (§9.3.2 rate limit too).

Alerts are made due a second or two from now (or a minute ago: due at once), so the
tests wait on the real clock for seconds, never minutes."""

from __future__ import annotations

import datetime as dt
import json
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from jmap_host_calendars.testing import (
    ALICE,
    BOB,
    CORE,
    UTC,
    alert,
    connect,
    create_events,
    default_calendar,
    event_due,
    local,
    streams,
    utc,
)
from trio_websocket import open_websocket_url

from jmap_host.testing import AccountClient, basic, running_server, write_config
from jmap_host.websocket import websocket_url


async def test_due_alert_pushed_on_event_source(tmp_path):
    """§6.4: a stream whose types name CalendarAlert, and one with ``*``, receive the event
    ``calendarAlert`` carrying the CalendarAlert object (with its recurrenceId null for an
    event that does not recur, §8.3); a stream of other types and another user do not."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        await connect(server, "bob", BOB)  # (bob's account provisioned)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert", "*", "CalendarEvent") as (
            named, every, other,
        ), streams(server, "bob", "*") as (bob,):  # fmt: skip
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
            created = await create_events(alice, e=event_due(due, calendar))
            expected = {"@type": "CalendarAlert", "accountId": ALICE,
                        "calendarEventId": created["e"]["id"], "uid": created["e"]["uid"],
                        "recurrenceId": None, "alertId": "a1"}  # fmt: skip
            assert await named.wait_alerts(1) == [expected]
            assert await every.wait_alerts(1) == [expected]
            assert named.events == [("calendarAlert", expected)]  # (nothing but the alert)
            await trio.sleep(0.3)
            assert other.alerts() == [] and bob.alerts() == []
            assert any(name == "state" for name, _ in other.events)


async def test_due_alert_pushed_on_websocket(tmp_path):
    """RFC 8887 §4.3.5: a connection with WebSocketPushEnable whose dataTypes include
    CalendarAlert (or are null) receives the CalendarAlert object (§6.4) as a message."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        headers = [(b"authorization", basic("alice")["Authorization"].encode())]
        url = websocket_url(server.url)
        async with open_websocket_url(url, subprotocols=["jmap"], extra_headers=headers,
                                      connect_timeout=5, disconnect_timeout=2) as ws:  # fmt: skip
            enable = {"@type": "WebSocketPushEnable", "dataTypes": ["CalendarAlert"]}
            await ws.send_message(json.dumps(enable))
            await ws.send_message(json.dumps({"@type": "Request", "id": "R1", "using": [CORE],
                                              "methodCalls": [["Core/echo", {}, "0"]]}))
            with trio.fail_after(2):  # (the enable is handled before the request)
                assert json.loads(await ws.get_message())["@type"] == "Response"
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
            created = await create_events(alice, e=event_due(due, calendar))
            with trio.fail_after(6):
                message = json.loads(await ws.get_message())
            assert message == {"@type": "CalendarAlert", "accountId": ALICE,
                               "calendarEventId": created["e"]["id"], "uid": created["e"]["uid"],
                               "recurrenceId": None, "alertId": "a1"}  # fmt: skip


async def test_which_alerts_fire(tmp_path):
    """§6: only events in calendars the user is subscribed to, drafts never; §6.2: an
    alert acknowledged at or after its trigger does not fire; §6.1: with useDefaultAlerts
    the calendars' defaultAlertsWithTime (defaultAlertsWithoutTime for showWithoutTime),
    the event's own alerts ignored; an alert that came due a minute ago (within the
    catch-up window) fires at once, one two hours late is dropped; AbsoluteTrigger fires at
    its time; an end-relative OffsetTrigger counts from the end (JSCalendar §3.5.1)."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        home = await default_calendar(alice)
        now = dt.datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        since = int((now - dt.timedelta(minutes=1) - midnight).total_seconds())
        without_time = f"PT{since}S" if since >= 0 else f"-PT{-since}S"
        made = await alice.ok("Calendar/set", create={
            "off": {"name": "Unsubscribed", "isSubscribed": False},
            "defaults": {"name": "Defaults", "timeZone": "Etc/UTC",
                         "defaultAlertsWithTime": {"d-time": alert()},
                         "defaultAlertsWithoutTime": {"d-day": alert(without_time)}},
        })  # fmt: skip
        off, defaults = made["created"]["off"]["id"], made["created"]["defaults"]["id"]
        ago = now - dt.timedelta(minutes=1)
        end_alert = {"@type": "Alert", "trigger": {"offset": "PT0S", "relativeTo": "end"}}
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            created = await create_events(
                alice,
                plain=event_due(ago, home),
                acked=event_due(ago, home, {"a1": alert(acknowledged=utc(now))}),
                unsubscribed=event_due(ago, off),
                draft=event_due(ago, home, isDraft=True),
                too_late=event_due(now - dt.timedelta(hours=2), home),
                defaults=event_due(ago, defaults, useDefaultAlerts=True),  # (its a1 ignored)
                all_day={"calendarIds": {defaults: True}, "title": "Holiday",
                         "start": local(midnight), "duration": "P1D", "showWithoutTime": True,
                         "useDefaultAlerts": True},
                absolute=event_due(now + dt.timedelta(days=1), home, {"abs": {
                    "@type": "Alert", "trigger": {"@type": "AbsoluteTrigger", "when": utc(ago)}}}),
                end=event_due(ago - dt.timedelta(minutes=75), home, {"end": end_alert}),
            )  # fmt: skip
            by_id = {v["id"]: k for k, v in created.items()}
            await stream.wait_alerts(5)
            await trio.sleep(0.5)
            pushed = sorted((by_id[a["calendarEventId"]], a["alertId"]) for a in stream.alerts())
        assert pushed == [
            ("absolute", "abs"), ("all_day", "d-day"), ("defaults", "d-time"),
            ("end", "end"), ("plain", "a1"),
        ]  # fmt: skip
        fired = await fired_rows(server, 5)
        assert sorted((by_id[e], a) for e, _, a, _ in fired) == pushed


async def fired_rows(
    server: Any, count: int = 1, settle: float = 6.0
) -> list[tuple[str, str, str, str]]:
    """The alert firings recorded (event, recurrence id, alert id, outcome), once at least
    ``count`` are and two reads half a second apart agree."""

    def read(db: Any) -> list[tuple[str, str, str, str]]:
        return [tuple(r) for r in db.execute(
            "SELECT event, recurrence_id, alert, outcome FROM calendars_alert_fired "
            "ORDER BY event, alert").fetchall()]  # fmt: skip

    previous: list[Any] = []
    with trio.move_on_after(settle):
        while True:
            rows = await server.host.store.read(read)
            if len(rows) >= count and rows == previous:
                return rows
            previous = rows
            await trio.sleep(0.5)
    return previous


async def test_recurring_alert_acknowledge_and_snooze(tmp_path):
    """JSCalendar §3.5.1 over a recurrence: today's occurrence's alert fires with its
    recurrenceId and the base event's id (§6.4).  §6.2, §6.3, §8.3: acknowledging it and
    adding a snooze alert (AbsoluteTrigger, relatedTo snooze) on the base event is accepted
    without a recurrence override and without moving ``sequence`` (§5.9: alerts are
    per-user); the acknowledged alert does not fire again, the snooze fires at its time."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            ago = dt.datetime.now(UTC) - dt.timedelta(seconds=30)
            series = event_due(ago, calendar, recurrenceRule={"@type": "RecurrenceRule",
                                                              "frequency": "daily"})
            series["start"] = local(ago - dt.timedelta(days=3) + dt.timedelta(minutes=15))
            created = await create_events(alice, s=series)
            event_id = created["s"]["id"]
            occurrence = local(ago + dt.timedelta(minutes=15))
            [first] = await stream.wait_alerts(1)
            assert first == {"@type": "CalendarAlert", "accountId": ALICE,
                             "calendarEventId": event_id, "uid": created["s"]["uid"],
                             "recurrenceId": occurrence, "alertId": "a1"}  # fmt: skip
            [before] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
            now = dt.datetime.now(UTC)
            snooze = {"@type": "Alert", "action": "display",
                      "trigger": {"@type": "AbsoluteTrigger",
                                  "when": utc(now + dt.timedelta(seconds=2))},
                      "relatedTo": {"a1": {"@type": "Relation", "relation": {"snooze": True}}}}
            result = await alice.ok("CalendarEvent/set", update={event_id: {
                "alerts/a1/acknowledged": utc(now), "alerts/snooze1": snooze}})  # fmt: skip
            assert event_id in result["updated"], result
            [after] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
            assert after["recurrenceOverrides"] is None
            assert after["sequence"] == before["sequence"]
            assert after["alerts"]["a1"]["acknowledged"] == utc(now)
            alerts = await stream.wait_alerts(2)
            assert alerts[1] == {**first, "alertId": "snooze1"}
            await trio.sleep(0.5)
            assert len(stream.alerts()) == 2  # (a1 not again)


async def test_restart_neither_refires_nor_loses(tmp_path):
    """Each alert fires once, recorded durably: after a restart the alert that fired does
    not fire again, and one that came due while the server was down fires late, once."""
    config = write_config(tmp_path)
    async with running_server(config) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            now = dt.datetime.now(UTC)
            created = await create_events(
                alice, soon=event_due(now + dt.timedelta(seconds=1), calendar),
                later=event_due(now + dt.timedelta(seconds=4), calendar),
            )  # fmt: skip
            [fired] = await stream.wait_alerts(1)
            assert fired["calendarEventId"] == created["soon"]["id"]
    await trio.sleep(4)  # ("later" comes due while the server is down)
    async with running_server(config) as server:
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            alice = await connect(server, "alice", ALICE)
            rows = await fired_rows(server, 2)
            # (an edit wakes the scheduler: "soon" is in its index again, and not fired)
            await alice.ok("CalendarEvent/set", update={created["soon"]["id"]: {"title": "x"}})
            await trio.sleep(1)
        assert sorted((e, o) for e, _, _, o in rows) == sorted(
            [(created["soon"]["id"], "pushed"), (created["later"]["id"], "pushed")])
        assert await fired_rows(server) == rows
        # ("later" fired at start-up, perhaps before the stream opened; "soon" never again)
        assert all(a["calendarEventId"] == created["later"]["id"] for a in stream.alerts())
        assert len(stream.alerts()) <= 1


async def test_rate_limit_per_user(tmp_path):
    """§9.3.2: at most max-per-minute alerts fire per user; the rest are dropped (and
    recorded, so they do not come back)."""
    config = write_config(tmp_path, "[plugins.calendars.alerts]\nmax-per-minute = 2\n")
    async with running_server(config) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "CalendarAlert") as (stream,):
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=1)
            await create_events(alice, **{f"e{i}": event_due(due, calendar) for i in range(3)})
            await stream.wait_alerts(2)
            rows = await fired_rows(server, 3)
            await trio.sleep(0.3)
            assert len(stream.alerts()) == 2
        assert sorted(o for *_, o in rows) == ["pushed", "pushed", "rate-limited"]


async def test_email_alert_mails_the_user_and_is_acknowledged(tmp_path):
    """§6: an "email" alert is not pushed to clients (they MUST NOT act on it); the server
    mails the user, at their own (directory, so verified, §9.3.2) address, through the
    host's messaging service; JSCalendar §3.5.1: its acknowledged is then set at once, on
    the base event, and ``sequence`` does not move (§5.9)."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        mail = AccountClient(alice.http, ALICE, [CORE, "urn:ietf:params:jmap:mail"])
        calendar = await default_calendar(alice)
        async with streams(server, "alice", "*") as (stream,):
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=1)
            created = await create_events(alice, e=event_due(
                due, calendar, {"m": alert(action="email")}, title="Dentist"))  # fmt: skip
            event_id = created["e"]["id"]
            with trio.fail_after(8):
                while True:
                    found = await mail.ok("Email/query", filter={"subject": "Dentist"})
                    if found["ids"]:
                        break
                    await trio.sleep(0.2)
            [message] = (await mail.ok("Email/get", ids=found["ids"],
                                       properties=["subject", "from", "to"]))["list"]  # fmt: skip
            assert message["subject"] == "Reminder: Dentist"
            assert message["from"][0]["email"] == "alice@example.org"
            assert message["to"][0]["email"] == "alice@example.org"
            with trio.fail_after(5):
                while True:
                    [event] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
                    if event["alerts"]["m"].get("acknowledged"):
                        break
                    await trio.sleep(0.2)
            assert event["sequence"] == 0 and event["recurrenceOverrides"] is None
            assert stream.alerts() == []


@asynccontextmanager
async def push_receiver():
    """A push endpoint on 127.0.0.1 that hands over the JSON bodies POSTed to it."""
    send, receive = trio.open_memory_channel[dict](100)

    async def app(scope: Any, rx: Any, tx: Any) -> None:
        if scope["type"] == "lifespan":
            while (await rx())["type"] != "lifespan.shutdown":
                await tx({"type": "lifespan.startup.complete"})
            await tx({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await rx()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        send.send_nowait(json.loads(body))
        await tx({"type": "http.response.start", "status": 201, "headers": []})
        await tx({"type": "http.response.body", "body": b""})

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: hypercorn_serve(
            app, config, shutdown_trigger=shutdown.wait, task_status=task_status))  # fmt: skip
        try:
            yield binds[0] + "/push", receive
        finally:
            shutdown.set()


async def test_due_alert_delivered_to_push_subscription(tmp_path):
    """§6.4, RFC 8620 §7.2: a verified PushSubscription whose types include CalendarAlert
    gets the CalendarAlert object POSTed; one for other types does not."""
    allow = '[jmap.push]\nallow-private-targets = true\nretry-delay = "0.05s"\n'
    async with running_server(write_config(tmp_path, allow)) as server, \
            push_receiver() as (url, received), push_receiver() as (other_url, other):
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        for target, types in ((url, ["CalendarAlert"]), (other_url, ["CalendarEvent"])):
            made = await alice.ok("PushSubscription/set", create={"k": {
                "deviceClientId": "d1", "url": target, "types": types}})  # fmt: skip
            sub_id = made["created"]["k"]["id"]
            with trio.fail_after(5):
                verification = await (received if target == url else other).receive()
            await alice.ok("PushSubscription/set", update={sub_id: {
                "verificationCode": verification["verificationCode"]}})  # fmt: skip
        due = dt.datetime.now(UTC) + dt.timedelta(seconds=2)
        created = await create_events(alice, e=event_due(due, calendar))
        with trio.fail_after(6):
            pushed = await received.receive()
        assert pushed == {"@type": "CalendarAlert", "accountId": ALICE,
                          "calendarEventId": created["e"]["id"], "uid": created["e"]["uid"],
                          "recurrenceId": None, "alertId": "a1"}  # fmt: skip
        with trio.fail_after(10):  # (the other hears of the CalendarEvent change only)
            assert (await other.receive())["@type"] == "StateChange"
        with trio.move_on_after(0.5):
            extra = await other.receive()
            raise AssertionError(f"unexpected push: {extra}")


def test_trigger_times_follow_the_events_time_zone_across_dst():
    """JSCalendar §3.5.1 over §3.3: a weekly Sunday 09:00 Europe/Berlin event's -PT15M alert
    is at 07:45Z in winter and 06:45Z on 29 March 2026, the day summer time begins (the
    recurrence expanded in local time, recur.py); a -P1D offset is a nominal day in that
    zone (09:00 local the day before), -PT24H exact time; end-relative counts from each
    occurrence's end.  The scheduler's own computation, called directly: waiting for a DST
    change at the wire is not an option."""
    from jmap_host_calendars.alerts import event_triggers

    event = {"id": "e1", "uid": "u1", "start": "2026-03-22T09:00:00", "timeZone": "Europe/Berlin",
             "duration": "PT1H", "recurrenceRule": {"frequency": "weekly", "count": 2},
             "alerts": {"q": alert(), "exact": alert("-PT24H"), "nominal": alert("-P1D"),
                        "end": {"trigger": {"offset": "PT0S", "relativeTo": "end"}}}}  # fmt: skip
    low, high = dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 4, 30, tzinfo=UTC)
    found = sorted(event_triggers(ALICE, event, [], "Etc/UTC", low, high))
    got = {(d.recurrence_id, d.alert_id): utc(d.at) for d in found}
    assert got == {
        ("2026-03-22T09:00:00", "q"): "2026-03-22T07:45:00Z",  # CET, UTC+1
        ("2026-03-29T09:00:00", "q"): "2026-03-29T06:45:00Z",  # CEST, UTC+2
        ("2026-03-22T09:00:00", "exact"): "2026-03-21T08:00:00Z",
        ("2026-03-29T09:00:00", "exact"): "2026-03-28T07:00:00Z",  # 24 hours before
        ("2026-03-22T09:00:00", "nominal"): "2026-03-21T08:00:00Z",
        ("2026-03-29T09:00:00", "nominal"): "2026-03-28T08:00:00Z",  # 09:00 CET the day before
        ("2026-03-22T09:00:00", "end"): "2026-03-22T09:00:00Z",
        ("2026-03-29T09:00:00", "end"): "2026-03-29T08:00:00Z",
    }


async def test_sharees_own_alerts_fire_for_them(tmp_path):
    """§5.4: alerts are per-user: in a calendar shared with bob, alice's alert fires for
    alice, bob's own alert (his per-user ``alerts``) for bob, with the shared account's id
    (§6.4); §6 and §4: only in a calendar bob subscribed to (a sharee starts
    unsubscribed)."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        await connect(server, "bob", BOB)
        bob = await connect(server, "bob", ALICE)  # (bob in alice's account)
        made = await alice.ok("Calendar/set", create={"t": {"name": "Team"},
                                                      "o": {"name": "Other"}})  # fmt: skip
        team, other = made["created"]["t"]["id"], made["created"]["o"]["id"]
        granted = {"mayReadItems": True, "mayUpdatePrivate": True}
        await alice.ok("Calendar/set", update={c: {"shareWith": {BOB: granted}}
                                               for c in (team, other)})  # fmt: skip
        subscribed = await bob.ok("Calendar/set", update={team: {"isSubscribed": True}})
        assert team in subscribed["updated"], subscribed
        async with streams(server, "alice", "CalendarAlert") as (alices,), \
                streams(server, "bob", "CalendarAlert") as (bobs,):  # fmt: skip
            due = dt.datetime.now(UTC) + dt.timedelta(seconds=3)
            created = await create_events(alice, t=event_due(due, team),
                                          o=event_due(due, other))  # fmt: skip
            mine = {"b1": alert()}
            result = await bob.ok("CalendarEvent/set", update={
                created[k]["id"]: {"alerts": mine} for k in ("t", "o")})  # fmt: skip
            assert len(result["updated"]) == 2, result
            alice_got = await alices.wait_alerts(2)
            [bob_got] = await bobs.wait_alerts(1)
            await trio.sleep(0.5)
            assert sorted((a["calendarEventId"], a["alertId"]) for a in alice_got) == sorted(
                [(created["t"]["id"], "a1"), (created["o"]["id"], "a1")])
            assert bob_got == {"@type": "CalendarAlert", "accountId": ALICE,
                               "calendarEventId": created["t"]["id"], "uid": created["t"]["uid"],
                               "recurrenceId": None, "alertId": "b1"}  # fmt: skip
            assert len(bobs.alerts()) == 1 and len(alices.alerts()) == 2


async def test_acknowledge_and_snooze_by_occurrence_id_stay_on_the_base_event(tmp_path):
    """§6.2: setting acknowledged MUST NOT create a recurrence override, even when a
    client sends it with an occurrence's id (§5.9 instance ids): it goes to the base
    event's alert; so do a snooze alert (§6.3) and its removal; an alert the occurrence
    already overrides is acknowledged in its override."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        calendar = await default_calendar(alice)
        series = {"calendarIds": {calendar: True}, "title": "Daily", "timeZone": "Etc/UTC",
                  "start": "2030-01-01T09:00:00", "duration": "PT1H",
                  "recurrenceRule": {"frequency": "daily"}, "alerts": {"a1": alert()},
                  "recurrenceOverrides": {"2030-01-05T09:00:00": {
                      "alerts/a1/trigger/offset": "-PT5M"}}}  # fmt: skip
        event_id = (await create_events(alice, s=series))["s"]["id"]
        second = f"{event_id}.20300102T090000"
        snooze = {"@type": "Alert", "trigger": {"@type": "AbsoluteTrigger",
                                                "when": "2030-01-02T08:55:00Z"},
                  "relatedTo": {"a1": {"@type": "Relation", "relation": {"snooze": True}}}}
        result = await alice.ok("CalendarEvent/set", update={second: {
            "alerts/a1/acknowledged": "2030-01-02T08:45:10Z", "alerts/z": snooze}})  # fmt: skip
        assert second in result["updated"], result
        [base] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
        assert base["alerts"]["a1"]["acknowledged"] == "2030-01-02T08:45:10Z"
        assert base["alerts"]["z"] == snooze and base["sequence"] == 0
        assert base["recurrenceOverrides"] == series["recurrenceOverrides"]  # (no new one)
        await alice.ok("CalendarEvent/set", update={second: {"alerts/z": None}})
        [base] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
        assert set(base["alerts"]) == {"a1"}
        assert base["recurrenceOverrides"] == series["recurrenceOverrides"]
        fifth = f"{event_id}.20300105T090000"
        await alice.ok("CalendarEvent/set", update={fifth: {
            "alerts/a1/acknowledged": "2030-01-05T08:55:10Z"}})  # fmt: skip
        [base] = (await alice.ok("CalendarEvent/get", ids=[event_id]))["list"]
        assert base["alerts"]["a1"]["acknowledged"] == "2030-01-02T08:45:10Z"
        assert base["recurrenceOverrides"]["2030-01-05T09:00:00"] == {
            "alerts/a1/trigger/offset": "-PT5M", "alerts/a1/acknowledged": "2030-01-05T08:55:10Z"}


def test_push_type_names_are_checked_at_start_up(tmp_path):
    """Capability.push_types: the calendars plugin declares CalendarAlert (§6.4, sent on an
    event source as calendarAlert); another plugin declaring it again, a data type's name,
    or an event name already taken is a start-up error, not a silent clash."""
    from jmap_host import Capability, StartupError, hookimpl, load_host

    config = write_config(tmp_path)
    assert load_host(config).push_types == {"CalendarAlert": "calendarAlert"}
    for declared in ({"CalendarAlert": "other"}, {"CalendarEvent": "event"},
                     {"Other": "calendarAlert"}, {"Other": "state"}):  # fmt: skip

        class Clash:
            @hookimpl
            def register_capabilities(self, host: Any, declared: Any = declared) -> Any:
                return [Capability(urn="https://test.example/clash", push_types=declared)]

        try:
            load_host(config, extra_plugins=[("clash", Clash())])
        except StartupError as exc:
            assert "push type" in str(exc) or "event name" in str(exc)
        else:
            raise AssertionError(f"{declared} was accepted")
