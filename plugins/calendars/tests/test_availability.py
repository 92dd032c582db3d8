"""Free/busy at the wire (draft-ietf-jmap-calendars §1.5.2, §2): the availability
capability, the calendars entry of a Principal's capabilities (§2.1),
Principal/getAvailability (§2.2: which events count, recurrences expanded, merging and
splitting of detail-less periods by confirmed > unavailable > tentative, details only with
showDetails and mayReadItems and not private, notFound / forbidden / tooLarge) and the
Principal/query calendarAddress condition (§2.3)."""

from __future__ import annotations

import functools
from typing import Any

from jmap_host_calendars import testing as calendars_testing
from jmap_host_calendars.testing import (
    ALICE,
    AVAILABILITY,
    BOB,
    CALENDARS,
    CORE,
    PRINCIPALS,
    rights,
)

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, running_server, write_config

USING = [CORE, CALENDARS, PRINCIPALS, AVAILABILITY]
SALES = account_id_for("sales")
connect = functools.partial(calendars_testing.connect, using=USING)
DAY = {"utcStart": "2030-03-04T00:00:00Z", "utcEnd": "2030-03-07T00:00:00Z"}
ME = "mailto:alice@example.org"


def event(title: str, start: str, duration: str = "PT1H", **more: Any) -> dict[str, Any]:
    return {"title": title, "start": start, "duration": duration, "timeZone": "Etc/UTC",
            **more}  # fmt: skip


def attending(status: str) -> dict[str, Any]:
    return {"participants": {"me": {"calendarAddress": ME, "roles": {"attendee": True},
                                    "participationStatus": status},
                             "o": {"calendarAddress": "mailto:boss@example.net",
                                   "roles": {"owner": True}}},
            "organizerCalendarAddress": "mailto:boss@example.net"}  # fmt: skip


async def setup(alice: AccountClient) -> dict[str, str]:
    calendars = (await alice.ok("Calendar/get", ids=None))["list"]
    main = next(c["id"] for c in calendars if c["isDefault"])
    made = await alice.ok("Calendar/set", create={
        "att": {"name": "Invitations", "includeInAvailability": "attending"},
        "off": {"name": "Hidden", "isSubscribed": False},
        "none": {"name": "Not counted", "includeInAvailability": "none"},
    })  # fmt: skip
    ids = {"main": main, **{k: v["id"] for k, v in made["created"].items()}}

    def into(name: str, record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "calendarIds": {ids[name]: True}}

    result = await alice.ok("CalendarEvent/set", create={
        "confirmed": into("main", event("Work", "2030-03-04T10:00:00")),
        "tentative": into("main", event("Maybe", "2030-03-04T10:30:00", "PT90M",
                                        status="tentative")),
        "free": into("main", event("Free", "2030-03-04T13:00:00", freeBusyStatus="free")),
        "cancelled": into("main", event("Off", "2030-03-04T13:00:00", status="cancelled")),
        "secret": into("main", event("Secret", "2030-03-04T13:00:00", privacy="secret")),
        "private": into("main", event("Doctor", "2030-03-04T16:00:00", privacy="private")),
        "daily": into("main", event("Standup", "2030-03-04T09:00:00", "PT15M",
                                    recurrenceRule={"frequency": "daily", "count": 10},
                                    recurrenceOverrides={"2030-03-05T09:00:00": {
                                        "excluded": True}})),
        "accepted": into("att", event("Board", "2030-03-05T11:00:00", **attending("accepted"))),
        "maybe": into("att", event("Lunch", "2030-03-05T12:00:00", **attending("tentative"))),
        "unanswered": into("att", event("Party", "2030-03-05T18:00:00",
                                        **attending("needs-action"))),
        "hidden": into("off", event("Hidden", "2030-03-06T10:00:00")),
        "uncounted": into("none", event("Uncounted", "2030-03-06T10:00:00")),
        "outside": into("main", event("Later", "2030-03-08T10:00:00")),
    })  # fmt: skip
    assert not result["notCreated"], result
    return {**ids, **{k: v["id"] for k, v in result["created"].items()}}


def period(start: str, end: str, status: str) -> dict[str, Any]:
    return {"utcStart": start, "utcEnd": end, "busyStatus": status, "event": None,
            "accountId": None}  # fmt: skip


EXPECTED = [
    period("2030-03-04T09:00:00Z", "2030-03-04T09:15:00Z", "confirmed"),
    # (Work and Maybe overlap: confirmed wins, then the tentative rest)
    period("2030-03-04T10:00:00Z", "2030-03-04T11:00:00Z", "confirmed"),
    period("2030-03-04T11:00:00Z", "2030-03-04T12:00:00Z", "tentative"),
    period("2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z", "confirmed"),
    # (the occurrence of the 5th is excluded; Board was accepted, Lunch tentatively;
    # the events of an "attending" calendar are the organizer's: status confirmed, but
    # the Principal only attends)
    period("2030-03-05T11:00:00Z", "2030-03-05T12:00:00Z", "confirmed"),
    period("2030-03-05T12:00:00Z", "2030-03-05T13:00:00Z", "tentative"),
    period("2030-03-06T09:00:00Z", "2030-03-06T09:15:00Z", "confirmed"),
]


async def test_own_availability_follows_the_relevance_rules(tmp_path):
    """§1.5.2 maxAvailabilityDuration; §2.2: subscribed calendars with
    includeInAvailability all / attending (accepted or tentative only), not secret, busy,
    not cancelled, recurrences expanded with their exclusions; overlapping periods split
    by confirmed > unavailable > tentative."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        session = await alice.session()
        caps = session["accounts"][ALICE]["accountCapabilities"]
        assert caps[AVAILABILITY] == {"maxAvailabilityDuration": "P400D"}
        assert session["capabilities"][AVAILABILITY] == {}
        await setup(alice)
        found = await alice.ok("Principal/getAvailability", id=ALICE, **DAY)
        assert found["list"] == EXPECTED
        # Touching periods of one status become one (§2.2 "a gap in time ... or a
        # different busyStatus").
        more = await alice.ok("CalendarEvent/set", create={"next": {
            **event("Next", "2030-03-04T11:00:00"), "calendarIds": {
                (await alice.ok("Calendar/get", ids=None))["list"][0]["id"]: True}}})
        assert "next" in more["created"]
        found = await alice.ok("Principal/getAvailability", id=ALICE, **DAY)
        assert period("2030-03-04T10:00:00Z", "2030-03-04T12:00:00Z", "confirmed") in found["list"]


async def test_details_rights_and_errors(tmp_path):
    """§2.2: another user needs mayReadFreeBusy (forbidden otherwise), sees events only
    with showDetails and mayReadItems and never a private one's; eventProperties; an id
    they may not see is notFound, a window past maxAvailabilityDuration tooLarge."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.session()
        bob.account = BOB
        ids = await setup(alice)
        denied = await bob.call("Principal/getAvailability", id=ALICE, **DAY)
        assert denied["error"]["type"] == "forbidden"
        assert (await bob.call("Principal/getAvailability", id="nobody", **DAY))["error"][
            "type"] == "notFound"  # fmt: skip
        too_long = {"utcStart": "2030-01-01T00:00:00Z", "utcEnd": "2031-03-01T00:00:00Z"}
        assert (await alice.call("Principal/getAvailability", id=ALICE, **too_long))["error"][
            "type"] == "tooLarge"  # fmt: skip
        bad = await alice.call("Principal/getAvailability", id=ALICE, utcStart="soon",
                               utcEnd=DAY["utcEnd"])  # fmt: skip
        assert bad["error"]["type"] == "invalidArguments"

        share = {ids[c]: {"shareWith": {BOB: rights("mayReadFreeBusy")}}
                 for c in ("main", "att")}  # fmt: skip
        await alice.ok("Calendar/set", update=share)
        seen = await bob.ok("Principal/getAvailability", id=ALICE, showDetails=True, **DAY)
        assert seen["list"] == EXPECTED  # (free/busy alone: no details)

        await alice.ok("Calendar/set", update={ids["main"]: {
            "shareWith": {BOB: rights("mayReadFreeBusy", "mayReadItems")}}})  # fmt: skip
        seen = await bob.ok("Principal/getAvailability", id=ALICE, showDetails=True,
                            eventProperties=["id", "title", "start"], **DAY)  # fmt: skip
        shown = [p for p in seen["list"] if p["event"] is not None]
        titles = sorted((p["event"]["title"], p["utcStart"]) for p in shown)
        assert titles == [("Maybe", "2030-03-04T10:30:00Z"), ("Standup", "2030-03-04T09:00:00Z"),
                          ("Standup", "2030-03-06T09:00:00Z"), ("Work", "2030-03-04T10:00:00Z")]
        work = next(p for p in shown if p["event"]["title"] == "Work")
        assert work["event"] == {"id": ids["confirmed"], "title": "Work",
                                 "start": "2030-03-04T10:00:00"}  # fmt: skip
        assert work["accountId"] == ALICE and work["busyStatus"] == "confirmed"
        # The private event and the "attending" calendar's (no mayReadItems) stay bare.
        assert period("2030-03-04T16:00:00Z", "2030-03-04T17:00:00Z", "confirmed") in seen["list"]
        assert period("2030-03-05T11:00:00Z", "2030-03-05T12:00:00Z", "confirmed") in seen["list"]
        hidden = await bob.ok("Principal/getAvailability", id=ALICE, showDetails=False, **DAY)
        assert all(p["event"] is None for p in hidden["list"])


async def test_principal_capability_and_calendar_address_filter(tmp_path):
    """§2.1: accountId (null without access), mayGetAvailability, mayShareWith and
    calendarAddress in a Principal's capabilities; §2.3 Principal/query calendarAddress."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server, "alice", ALICE)
        bob = await connect(server, "bob", BOB)
        await bob.session()
        got = await alice.ok("Principal/get", ids=[ALICE, BOB])
        entries = {p["id"]: p["capabilities"][CALENDARS] for p in got["list"]}
        assert entries[ALICE] == {"accountId": ALICE, "mayGetAvailability": True,
                                  "mayShareWith": False,
                                  "calendarAddress": "mailto:alice@example.org"}  # fmt: skip
        assert entries[BOB] == {"accountId": None, "mayGetAvailability": False,
                                "mayShareWith": True, "calendarAddress": "mailto:bob@example.org"}
        # (alice is a member of sales: its account is hers too)
        sales = (await alice.ok("Principal/get", ids=[SALES]))["list"][0]
        assert sales["capabilities"][CALENDARS]["mayGetAvailability"] is True
        assert sales["capabilities"][CALENDARS]["accountId"] == SALES
        assert (await alice.ok("Principal/getAvailability", id=SALES, **DAY))["list"] == []
        calendars = (await bob.ok("Calendar/get", ids=None))["list"]
        bob.account = BOB
        await bob.ok("Calendar/set", update={calendars[0]["id"]: {
            "shareWith": {ALICE: rights("mayReadFreeBusy")}}})  # fmt: skip
        got = await alice.ok("Principal/get", ids=[BOB])  # (free/busy alone: no account)
        assert got["list"][0]["capabilities"][CALENDARS]["mayGetAvailability"] is True
        assert got["list"][0]["capabilities"][CALENDARS]["accountId"] is None
        await bob.ok("Calendar/set", update={calendars[0]["id"]: {
            "shareWith": {ALICE: rights("mayReadFreeBusy", "mayReadItems")}}})  # fmt: skip
        got = await alice.ok("Principal/get", ids=[BOB])
        assert got["list"][0]["capabilities"][CALENDARS]["mayGetAvailability"] is True
        assert got["list"][0]["capabilities"][CALENDARS]["accountId"] == BOB

        found = await alice.ok("Principal/query",
                               filter={"calendarAddress": "mailto:BOB@example.org"})
        assert found["ids"] == [BOB]
        alice.using = [CORE, PRINCIPALS]  # (§2.3: only with the availability capability)
        refused = await alice.call("Principal/query", filter={"calendarAddress": "x"})
        assert refused["error"]["type"] == "unsupportedFilter"
