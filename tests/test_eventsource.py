"""The EventSource endpoint's shape (RFC 8620 §7.3).  StateChange delivery arrives with
push (issue 5); here: authentication, parameters, content type, no buffering, pings."""

from __future__ import annotations

import json

import trio

from jmap_host.testing import running_server


async def test_event_stream_pings_with_interval(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        url = (
            session["eventSourceUrl"]
            .replace("{types}", "*")
            .replace("{closeafter}", "no")
            .replace("{ping}", "1")
        )
        with trio.fail_after(5):
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream"
                assert response.headers["x-accel-buffering"] == "no"
                text = ""
                async for chunk in response.aiter_text():
                    text += chunk
                    if "event: ping" in text and text.endswith("\n\n"):
                        break
        data = text.split("event: ping\ndata: ", 1)[1].split("\n", 1)[0]
        assert json.loads(data) == {"interval": 1}


async def test_event_stream_needs_auth_and_valid_parameters(jmap_config):
    async with running_server(jmap_config) as server:
        async with server.client() as anonymous:
            assert (await anonymous.get("/jmap/eventsource/?types=*")).status_code == 401
        async with server.client("alice") as client:
            bad = await client.get("/jmap/eventsource/?types=*&closeafter=maybe&ping=0")
            assert bad.status_code == 400
            bad = await client.get("/jmap/eventsource/?types=*&closeafter=no&ping=-1")
            assert bad.status_code == 400


async def test_open_streams_do_not_hold_up_shutdown(jmap_config):
    """A graceful shutdown ends idle event streams at once instead of waiting out the
    listener's graceful-timeout (10 s by default)."""
    opened = trio.Event()
    with trio.fail_after(5):
        async with running_server(jmap_config) as server, server.client("alice") as client:

            async def listen():
                url = "/jmap/eventsource/?types=*&closeafter=no&ping=0"
                async with client.stream("GET", url) as response:
                    opened.set()
                    async for _ in response.aiter_bytes():
                        pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await opened.wait()
                server.host.closing.set()  # what a SIGTERM does first


EXAMPLE = "https://jmap-host.org/ext/example"


async def read_events(response, count: int) -> list[dict]:
    """Parse server-sent events (name, id, data) until ``count`` non-comment events."""
    events: list[dict] = []
    buffer = ""
    async for chunk in response.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields: dict = {}
            for line in block.split("\n"):
                if line.startswith(":") or not line:
                    continue
                key, _, value = line.partition(": ")
                fields[key] = value
            if fields:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                events.append(fields)
                if len(events) == count:
                    return events
    return events


async def create_note(client, account: str, title: str) -> str:
    from jmap_host.testing import api

    result = await api(
        client,
        [["Note/set", {"accountId": account, "create": {"n": {"title": title}}}, "s"]],
        using=["urn:ietf:params:jmap:core", EXAMPLE],
    )
    return result["methodResponses"][0][1]["newState"]


async def test_a_change_reaches_the_stream_as_a_state_change(jmap_config):
    """§7.1, §7.3: a Note/set on one connection produces a StateChange event, with an id,
    on the EventSource stream of another, within a second; closeafter=state ends it."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        account = session["primaryAccounts"][EXAMPLE]
        url = "/jmap/eventsource/?types=*&closeafter=state&ping=0"
        async with server.client("alice") as listener, listener.stream("GET", url) as response:
            await trio.sleep(0.1)  # the stream is subscribed
            with trio.fail_after(1):
                new_state = await create_note(client, account, "hello")
                [event] = await read_events(response, 1)
        assert event["event"] == "state"
        assert event["data"] == {"@type": "StateChange", "changed": {account: {"Note": new_state}}}
        assert event["id"]


async def test_last_event_id_resume_delivers_missed_changes(jmap_config):
    """§7.3: a client that reconnects with Last-Event-ID gets what changed meanwhile, at
    once; types filters what is pushed."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        url = "/jmap/eventsource/?types=Note&closeafter=state&ping=0"
        async with server.client("alice") as listener, listener.stream("GET", url) as response:
            await trio.sleep(0.1)
            await create_note(client, account, "one")
            [first] = await read_events(response, 1)
        # Offline: two more changes.
        await create_note(client, account, "two")
        latest = await create_note(client, account, "three")
        headers = {"Last-Event-ID": first["id"]}
        with trio.fail_after(2):
            async with (
                server.client("alice") as listener,
                listener.stream("GET", url, headers=headers) as response,
            ):
                [missed] = await read_events(response, 1)
        assert missed["data"]["changed"] == {account: {"Note": latest}}
        # Up to date: reconnecting with the newest id (same types) sends nothing: a ping.
        async with (
            server.client("alice") as listener,
            listener.stream(
                "GET",
                "/jmap/eventsource/?types=Note&closeafter=no&ping=1",
                headers={"Last-Event-ID": missed["id"]},
            ) as response,
        ):
            [ping] = await read_events(response, 1)
        assert ping["event"] == "ping" and "id" not in ping


async def test_stream_token_for_browsers(jmap_config):
    """Browsers' EventSource cannot send Authorization: a short-lived, stream-only token
    in the URL stands in for it (jmap_host/streamtoken.py documents its properties)."""
    from jmap_host import streamtoken

    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        issued = (await client.post("/jmap/eventsource/token")).json()
        token = issued["accessToken"]
        assert issued["expiresIn"] == 60
        url = f"/jmap/eventsource/?types=*&closeafter=state&ping=0&accessToken={token}"
        async with server.client() as browser:
            assert (await browser.post("/jmap/eventsource/token")).status_code == 401
            # Stream-only: the token opens no other door.
            for path in ("/jmap/session", f"/jmap/session?accessToken={token}"):
                assert (await browser.get(path)).status_code == 401
            api_url = f"/jmap/api?accessToken={token}"
            assert (await browser.post(api_url, json={})).status_code == 401
            with trio.fail_after(2):
                async with browser.stream("GET", url) as response:
                    assert response.status_code == 200
                    await trio.sleep(0.1)
                    new_state = await create_note(client, account, "via token")
                    [event] = await read_events(response, 1)
            assert event["data"]["changed"] == {account: {"Note": new_state}}
            tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
            expired, _ = streamtoken.issue(
                server.host.config.data["storage"]["path"], "alice", now=1_000_000
            )
            for bad in (tampered, expired, "garbage"):
                response = await browser.get(f"/jmap/eventsource/?types=*&accessToken={bad}")
                assert response.status_code == 401, bad


def test_hub_counts_open_and_closed_subscribers():
    """The hub keeps how many subscribers are open and how many have gone, so the server
    can collect the garbage of mass disconnects (server.collect_after_disconnects)."""
    from jmap_host.push import PushHub

    hub = PushHub()
    with hub.subscribe(["a1"]) as first, hub.subscribe(["a1", "a2"], {"Email"}):
        assert (hub.open, hub.closed) == (2, 0)
        hub.publish("a1", {"Email": "7", "Mailbox": "3"})
        assert first.take() == {"a1": {"Email": "7", "Mailbox": "3"}}
    assert (hub.open, hub.closed) == (0, 2)
    assert hub.subscriber_count() == 0


def test_event_encoding_is_compact_json_with_the_state_in_the_id():
    """§7.3 event format: ``event``, ``id``, ``data`` lines, compact JSON, blank line; the
    id decodes to every state the stream has seen (sorted, so equal states give equal ids)."""
    from jmap_host.eventsource import _event
    from jmap_host.push import decode_event_id, encode_event_id, state_change

    seen = {"b": {"Mailbox": "2", "Email": "9"}, "a": {"Email": "1"}}
    event_id = encode_event_id(seen)
    assert decode_event_id(event_id) == seen
    assert event_id == encode_event_id({"a": {"Email": "1"}, "b": {"Email": "9", "Mailbox": "2"}})
    data = state_change({"b": {"Email": "9"}})
    assert (
        _event("state", data, event_id)
        == (
            f"event: state\nid: {event_id}\n"
            'data: {"@type":"StateChange","changed":{"b":{"Email":"9"}}}\n\n'
        ).encode()
    )
    assert _event("ping", {"interval": 30}) == b'event: ping\ndata: {"interval":30}\n\n'


def test_hub_offers_only_the_types_whose_state_changed():
    """Publishers send every type's state on each change; the hub offers only the types
    whose state moved since it last published, so a stream following other types is not
    woken (EmailDelivery streams and a keyword change), and a repeat wakes nobody."""
    from jmap_host.push import PushHub

    hub = PushHub()
    with hub.subscribe(["a1"]) as every, hub.subscribe(["a1"], {"EmailDelivery"}) as deliveries:
        hub.publish("a1", {"Email": "1", "EmailDelivery": "5"})
        assert every.take() == {"a1": {"Email": "1", "EmailDelivery": "5"}}
        assert deliveries.take() == {"a1": {"EmailDelivery": "5"}}
        hub.publish("a1", {"Email": "2", "EmailDelivery": "5"})  # a keyword change
        assert every.take() == {"a1": {"Email": "2"}}
        assert not deliveries.pending
        hub.publish("a1", {"Email": "2", "EmailDelivery": "5"})  # nothing new
        assert not every.pending and not deliveries.pending
    with hub.subscribe(["a1"]) as later:
        # The last subscriber left: what was published is forgotten, a newcomer (which
        # read the states itself) gets the next publication whole.
        hub.publish("a1", {"Email": "2", "EmailDelivery": "5"})
        assert later.take() == {"a1": {"Email": "2", "EmailDelivery": "5"}}
