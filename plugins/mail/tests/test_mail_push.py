"""Push for mail (RFC 8620 §7.3, RFC 8621 §1.5) over real sockets: a message delivered over
LMTP reaches the recipient's EventSource stream as one StateChange with the Email,
Mailbox, Thread and EmailDelivery states; a keyword change (Email/set) changes Email and
Mailbox but not EmailDelivery, which changes whenever a new Email is added to the store
(a delivery, an import, a draft); another user's stream hears nothing of it; mail for a
group's address reaches the group account's members' streams, under the group account
only."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from jmap_host_mail.testing import lmtp_deliver

from jmap_host.testing import api, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
USING = [CORE, MAIL]
# (Quota: RFC 9425, its usage moves with every new Email, so its state is pushed too.)
MAIL_TYPES = {"Email", "Mailbox", "Thread", "EmailDelivery", "Quota"}

EXTRA = """
[server.listener."lmtp"]
bind = ["127.0.0.1:0"]
protocol = "lmtp"

[[directory."memory".principals]]
name = "carol"
secret = "carol-password"
email = ["carol@example.org"]
member-of = ["sales"]
"""
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


def message(subject: str, to: str) -> bytes:
    return (
        f"From: Dana <dana@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\nAbout {subject}.\r\n"
    ).encode()


class Stream:
    """An open EventSource stream; ``events`` keeps every state event read so far, so a
    read that times out loses nothing."""

    def __init__(self, response: Any):
        self.response = response
        self.chunks = response.aiter_text()
        self.buffer = ""
        self.events: list[dict[str, Any]] = []

    async def next_state(self) -> dict[str, Any]:
        """The next StateChange's ``changed`` map."""
        while True:
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                fields: dict[str, Any] = {}
                for line in block.split("\n"):
                    if line and not line.startswith(":"):
                        key, _, value = line.partition(": ")
                        fields[key] = value
                if fields.get("event") == "state":
                    data = json.loads(fields["data"])
                    assert data["@type"] == "StateChange" and fields["id"]
                    self.events.append(data["changed"])
                    return dict(data["changed"])
            self.buffer += await self.chunks.__anext__()


class User:
    def __init__(self, server: Any, name: str):
        self.server = server
        self.http = server.client(name, PASSWORDS[name])
        self.name = name

    async def __aenter__(self) -> User:
        await self.http.__aenter__()
        session = (await self.http.get("/jmap/session")).json()
        self.own = session["primaryAccounts"][MAIL]
        self.accounts = list(session["accounts"])
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.__aexit__(*exc)

    async def call(self, name: str, account: str | None = None, **args: Any) -> dict[str, Any]:
        result = await api(
            self.http, [[name, {"accountId": account or self.own, **args}, "c"]], using=USING
        )
        response = result["methodResponses"][0]
        assert response[0] == name, response
        return dict(response[1])

    async def states(self, account: str | None = None) -> dict[str, str]:
        return {
            t: (await self.call(f"{t}/get", account, ids=[]))["state"]
            for t in ("Email", "Mailbox", "Thread")
        }

    async def inbox_email(self, account: str | None = None) -> str:
        boxes = (await self.call("Mailbox/get", account, ids=None))["list"]
        inbox = next(m["id"] for m in boxes if m["role"] == "inbox")
        return str((await self.call("Email/query", account, filter={"inMailbox": inbox}))["ids"][0])


@pytest.fixture
async def world(tmp_path):
    async with running_server(write_config(tmp_path, EXTRA)) as server:
        async with User(server, "alice") as alice, User(server, "bob") as bob:
            yield server, alice, bob


async def open_stream(nursery_client: Any, types: str = "*") -> Any:
    return nursery_client.stream(
        "GET", f"/jmap/eventsource/?types={types}&closeafter=no&ping=0", timeout=None
    )


async def test_delivery_and_keyword_change_reach_the_stream(world):
    server, alice, bob = world
    sales = next(a for a in alice.accounts if a != alice.own)
    async with (
        server.client("alice", PASSWORDS["alice"]) as listener,
        await open_stream(listener) as response,
        server.client("alice", PASSWORDS["alice"]) as delivery_listener,
        await open_stream(delivery_listener, "EmailDelivery") as delivery_response,
        server.client("bob", PASSWORDS["bob"]) as bob_listener,
        await open_stream(bob_listener) as bob_response,
    ):
        stream, deliveries, bobs = (
            Stream(response), Stream(delivery_response), Stream(bob_response)
        )  # fmt: skip
        await trio.sleep(0.1)  # the streams are subscribed

        # Delivery over LMTP: one StateChange with all four mail types, within a second.
        with trio.fail_after(1):
            await lmtp_deliver(server, "alice@example.org", message("First", "alice@example.org"))
            changed = await stream.next_state()
        assert list(changed) == [alice.own]
        assert set(changed[alice.own]) == MAIL_TYPES
        states = await alice.states()
        assert {t: changed[alice.own][t] for t in states} == states
        delivered = changed[alice.own]["EmailDelivery"]
        with trio.fail_after(1):
            assert await deliveries.next_state() == {alice.own: {"EmailDelivery": delivered}}

        # A keyword change: Email and Mailbox (its unread counts), not EmailDelivery or Thread.
        email_id = await alice.inbox_email()
        with trio.fail_after(1):
            await alice.call("Email/set", update={email_id: {"keywords/$seen": True}})
            changed = await stream.next_state()
        assert list(changed) == [alice.own]
        assert set(changed[alice.own]) == {"Email", "Mailbox"}
        states = await alice.states()
        assert changed[alice.own] == {t: states[t] for t in ("Email", "Mailbox")}

        # A draft the client makes is a new Email in the store: EmailDelivery too (§1.5).
        boxes = (await alice.call("Mailbox/get", ids=None))["list"]
        drafts = next(m["id"] for m in boxes if m["role"] == "drafts")
        with trio.fail_after(1):
            await alice.call(
                "Email/set",
                create={"d": {"mailboxIds": {drafts: True}, "keywords": {"$draft": True},
                              "subject": "A draft"}},
            )  # fmt: skip
            changed = await stream.next_state()
        assert list(changed) == [alice.own]
        assert set(changed[alice.own]) == MAIL_TYPES
        delivered = changed[alice.own]["EmailDelivery"]
        with trio.fail_after(1):
            assert (await deliveries.next_state()) == {alice.own: {"EmailDelivery": delivered}}

        # Mail to alice's alias sales@example.org is hers, not the group's.
        with trio.fail_after(1):
            await lmtp_deliver(server, "sales@example.org", message("Alias", "sales@example.org"))
            changed = await stream.next_state()
        assert list(changed) == [alice.own] and set(changed[alice.own]) == MAIL_TYPES
        assert changed[alice.own]["EmailDelivery"] != delivered
        # The EmailDelivery-only stream heard the next delivery and nothing between.
        with trio.fail_after(1):
            second = await deliveries.next_state()
        assert second == {alice.own: {"EmailDelivery": changed[alice.own]["EmailDelivery"]}}

        # Mail for the group address: the group account's states, on alice's stream.
        with trio.fail_after(1):
            await lmtp_deliver(
                server, "sales-team@example.org", message("Team", "sales-team@example.org")
            )
            changed = await stream.next_state()
        assert list(changed) == [sales] and set(changed[sales]) == MAIL_TYPES
        group_states = await alice.states(sales)
        assert {t: changed[sales][t] for t in group_states} == group_states

        # Bob heard none of it: the first event on his stream is his own delivery, alone
        # (anything of alice's published before would have been coalesced into it).
        with trio.fail_after(1):
            await lmtp_deliver(server, "bob@example.org", message("For Bob", "bob@example.org"))
            changed = await bobs.next_state()
        assert list(changed) == [bob.own] and set(changed[bob.own]) == MAIL_TYPES
        assert bobs.events == [changed]
        # ... and alice's stream nothing of bob's.
        with trio.move_on_after(0.3):
            await stream.next_state()
        assert all(bob.own not in e for e in stream.events)


async def test_a_group_members_stream_hears_the_group_not_anothers_personal_mail(world):
    """carol (member of sales) follows the group account: she hears mail for the group's
    address, and nothing of alice's personal mail."""
    server, alice, _bob = world
    sales = next(a for a in alice.accounts if a != alice.own)
    async with (
        User(server, "carol") as carol,
        server.client("carol", PASSWORDS["carol"]) as listener,
        await open_stream(listener, "Email,EmailDelivery") as response,
    ):
        assert sales in carol.accounts
        stream = Stream(response)
        await trio.sleep(0.1)
        await lmtp_deliver(server, "alice@example.org", message("Personal", "alice@example.org"))
        with trio.fail_after(1):
            await lmtp_deliver(
                server, "sales-team@example.org", message("For the team", "sales-team@example.org")
            )
            changed = await stream.next_state()
        assert list(changed) == [sales]  # alice's personal delivery came first, and is absent
        assert set(changed[sales]) == {"Email", "EmailDelivery"}
        assert changed[sales]["Email"] == (await carol.states(sales))["Email"]
        # The Email carol is told about is there for her to fetch.
        email_id = await carol.inbox_email(sales)
        got = await carol.call("Email/get", sales, ids=[email_id], properties=["subject"])
        assert got["list"][0]["subject"] == "For the team"
