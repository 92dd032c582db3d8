"""Helpers for the calendars plugin's tests, and for a plugin that builds on it: clients
of a running server (jmap_host.testing's AccountClient) with the calendars capability, the
events and shares the tests keep making, a relay that keeps what it is sent (for iMIP
out), and the alert tests' clock helpers and EventSource reader.  Test modules import
these (pytest's importlib mode: they cannot import each other)."""

from __future__ import annotations

import datetime as dt
import json
import socketserver
import subprocess
import sys
import threading
from contextlib import asynccontextmanager
from typing import Any

import trio

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, write_config

CORE = "urn:ietf:params:jmap:core"
CALENDARS = "urn:ietf:params:jmap:calendars"
MAIL = "urn:ietf:params:jmap:mail"
PRINCIPALS = "urn:ietf:params:jmap:principals"
AVAILABILITY = "urn:ietf:params:jmap:principals:availability"
USING = [CORE, CALENDARS]
ALICE, BOB = account_id_for("alice"), account_id_for("bob")
UTC = dt.UTC
# JMAP Calendars §4 CalendarRights.
RIGHTS = ("mayReadFreeBusy", "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate",
          "mayRSVP", "mayShare", "mayDelete")  # fmt: skip


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``jmap-host ARGS`` in a process of its own (another node on the same store)."""
    return subprocess.run(
        [sys.executable, "-m", "jmap_host", *args], capture_output=True, text=True, timeout=120
    )


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """:func:`cli` off the event loop (a server of the test may be serving meanwhile)."""
    return await trio.to_thread.run_sync(lambda: cli(*args))


def rights(*names: str) -> dict[str, bool]:
    """CalendarRights with ``names`` true and the others false."""
    return {r: r in names for r in RIGHTS}


class Client(AccountClient):
    """One account's JMAP API as one user, with the calendars capability (or ``using``)."""

    def __init__(self, http: Any, account: str, using: list[str] | None = None):
        super().__init__(http, account, using or USING)


async def connect(server: Any, user: str, account: str, using: list[str] | None = None) -> Client:
    """A Client of ``account`` as ``user`` on a running server (closed with the server)."""
    http = server.client(user)
    await http.__aenter__()
    return Client(http, account, using)


async def default_calendar(client: AccountClient) -> str:
    """The id of the account's default calendar (§4)."""
    calendars = (await client.ok("Calendar/get", ids=None))["list"]
    return next(c["id"] for c in calendars if c["isDefault"])


async def create_events(client: AccountClient, **events: dict[str, Any]) -> dict[str, dict]:
    """CalendarEvent/set create, each of them created: {creation id: what the server set}."""
    result = await client.ok("CalendarEvent/set", create=events)
    assert set(result["created"] or {}) == set(events), result
    return result["created"]


async def create(client: AccountClient, obj: dict[str, Any]) -> str:
    """Create one event; its id."""
    made = await client.ok("CalendarEvent/set", create={"e": obj})
    assert "e" in made.get("created") or {}, made
    return made["created"]["e"]["id"]


async def get(client: AccountClient, event_id: str, **args: Any) -> dict[str, Any]:
    """CalendarEvent/get of one event, which must be found."""
    found = await client.ok("CalendarEvent/get", ids=[event_id], **args)
    assert found["list"], found
    return found["list"][0]


async def by_uid(client: AccountClient, uid: str) -> dict[str, Any] | None:
    """The account's event ``uid``, or None."""
    ids = (await client.ok("CalendarEvent/query", filter={"uid": uid}))["ids"]
    if not ids:
        return None
    [event] = (await client.ok("CalendarEvent/get", ids=ids))["list"]
    return event


# -- sharing: alice's calendar "Team" shared with bob ------------------------------------------


async def share_team(
    server: Any, using: list[str] | None = None, **granted: bool
) -> tuple[Client, Client, Client, str]:
    """alice, bob in alice's account, bob in his own, and alice's calendar "Team" shared
    with bob with ``granted`` rights."""
    alice = await connect(server, "alice", ALICE, using)
    bob_own = await connect(server, "bob", BOB, using)
    await bob_own.ok("Calendar/get", ids=None)  # (bob's account and identities exist)
    made = await alice.ok("Calendar/set", create={"t": {"name": "Team"}})
    team = made["created"]["t"]["id"]
    await alice.ok("Calendar/set", update={team: {"shareWith": {BOB: granted}}})
    return alice, Client(bob_own.http, ALICE, using), bob_own, team


# Participants (JSCalendar §4.4.6) of the sharing tests' events.
ALICE_OWNER = {"name": "Alice", "roles": {"owner": True, "attendee": True},
               "calendarAddress": "mailto:alice@example.org"}  # fmt: skip
BOB_ATTENDEE = {"name": "Bob", "roles": {"attendee": True},
                "calendarAddress": "mailto:bob@example.org",
                "participationStatus": "needs-action"}  # fmt: skip
CAROL = {"name": "Carol", "roles": {"attendee": True}, "calendarAddress": "mailto:c@example.net"}


def standup(team: str, **extra: Any) -> dict[str, Any]:
    """A one-off event in the calendar ``team``."""
    return {"calendarIds": {team: True}, "title": "Standup", "start": "2026-06-01T09:00:00",
            "timeZone": "Europe/Berlin", "duration": "PT15M", **extra}  # fmt: skip


# -- scheduling: a relay, alice inviting bob ---------------------------------------------------


class Sink:
    """A relay on 127.0.0.1 that accepts every message and keeps it."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink\r\n")
                rcpts: list[str] = []
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb == b"RCPT":
                        rcpts.append(line.decode().split(":", 1)[1].strip().strip("<>"))
                    if verb == b"DATA":
                        self.wfile.write(b"354 go\r\n")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        sink.messages.append((rcpts, data))
                        rcpts = []
                    if verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    if verb != b"DATA":
                        self.wfile.write(b"250 ok\r\n")
                    else:
                        self.wfile.write(b"250 queued\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def relay_config(tmp_path: Any, port: int) -> Any:
    """A configuration whose mail plugin relays to 127.0.0.1:``port`` (a Sink)."""
    return write_config(tmp_path, f"""
        [plugins.mail.smtp]
        host = "127.0.0.1"
        port = {port}
        security = "none"
        timeout = "5s"
        """)  # fmt: skip


async def inbox_subjects(client: AccountClient) -> list[str]:
    """The subjects of the account's Emails, oldest first."""
    ids = (await client.ok("Email/query", sort=[{"property": "receivedAt"}]))["ids"]
    found = (await client.ok("Email/get", ids=ids, properties=["subject"]))["list"]
    return [e["subject"] for e in found]


# alice (owner, accepted) invites bob (needs-action); calendarIds to fill in.
MEETING = {
    "calendarIds": None,
    "uid": "meeting-1@example.org",
    "title": "Planning",
    "start": "2030-03-02T10:00:00",
    "timeZone": "Europe/Berlin",
    "duration": "PT1H",
    "participants": {
        "a": {"calendarAddress": "mailto:alice@example.org", "name": "Alice",
              "roles": {"owner": True, "attendee": True}, "participationStatus": "accepted"},
        "b": {"calendarAddress": "mailto:bob@example.org", "name": "Bob",
              "roles": {"attendee": True}, "participationStatus": "needs-action",
              "expectReply": True},
    },
}  # fmt: skip


# -- alerts: times, alerts, the EventSource ----------------------------------------------------


def local(moment: dt.datetime) -> str:
    """``moment`` as a LocalDateTime in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def utc(moment: dt.datetime) -> str:
    """``moment`` as a UTCDateTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alert(offset: str = "-PT15M", **more: Any) -> dict[str, Any]:
    """An Alert with an OffsetTrigger."""
    return {"@type": "Alert", "trigger": {"@type": "OffsetTrigger", "offset": offset}, **more}


def absolute(when: dt.datetime, **more: Any) -> dict[str, Any]:
    """An Alert with an AbsoluteTrigger."""
    return {"@type": "Alert", "trigger": {"@type": "AbsoluteTrigger", "when": utc(when)},
            **more}  # fmt: skip


def snooze_of(parent: str, when: dt.datetime) -> dict[str, Any]:
    """A snooze (§6.3) of the alert ``parent``, due at ``when``."""
    return absolute(when, relatedTo={parent: {"@type": "Relation",
                                              "relation": {"snooze": True}}})  # fmt: skip


def event_due(at: dt.datetime, calendar: str, alerts: Any = None, **more: Any) -> dict[str, Any]:
    """An event in UTC whose alert "a1" (15 minutes before its start) is due at ``at``."""
    return {"calendarIds": {calendar: True}, "title": "Meeting", "timeZone": "Etc/UTC",
            "start": local(at + dt.timedelta(minutes=15)), "duration": "PT1H",
            "alerts": {"a1": alert()} if alerts is None else alerts, **more}  # fmt: skip


class EventStream:
    """An EventSource connection's events, as (name, data), read in the background."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.opened = trio.Event()

    def alerts(self) -> list[dict[str, Any]]:
        return [data for name, data in self.events if name == "calendarAlert"]

    async def listen(self, http: Any, types: str) -> None:
        url = f"/jmap/eventsource/?types={types}&closeafter=no&ping=0"
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            buffer = ""
            async for chunk in response.aiter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    if block.startswith(":"):
                        self.opened.set()  # (sent once subscribed)
                        continue
                    fields = dict(line.split(": ", 1) for line in block.split("\n"))
                    self.events.append((fields["event"], json.loads(fields["data"])))

    async def wait_alerts(self, count: int, timeout: float = 6.0) -> list[dict[str, Any]]:
        with trio.fail_after(timeout):
            while len(self.alerts()) < count:
                await trio.sleep(0.05)
        return self.alerts()


@asynccontextmanager
async def streams(server: Any, user: str, *types: str):
    """Open one EventSource per ``types`` as ``user``; yield them once all are subscribed."""
    opened = [EventStream() for _ in types]
    async with server.client(user) as http, trio.open_nursery() as nursery:
        for stream, kind in zip(opened, types, strict=True):
            nursery.start_soon(stream.listen, http, kind)
        with trio.fail_after(5):
            for stream in opened:
                await stream.opened.wait()
        yield opened
        nursery.cancel_scope.cancel()
