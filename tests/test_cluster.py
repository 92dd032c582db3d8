"""Several jmap-host nodes on one PostgreSQL database (issue 16): changes and cache
invalidations reach every node over the host events' LISTEN/NOTIFY bus
(jmap_host.cluster), and a node killed with SIGKILL loses no acknowledged write.

The first tests run two hosts in this process (each its own node id, bus and pool): the
bus's delivery, its large payloads, its reconnection.  The last ones run three
``jmap-host run`` processes on the same database and blob directory."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from jmap_host.cluster import PAYLOAD_LIMIT
from jmap_host.testing import (
    BASE_CONFIG,
    AccountClient,
    RunningServer,
    ServerProcess,
    basic,
    eventually,
    free_port,
    running_server,
    write_config,
)
from jmap_host.websocket import websocket_url

pytestmark = pytest.mark.backend("postgresql")

CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
USING = [CORE, EXAMPLE]
# The host is under test: the example plugin's Note type, none of the big plugins.
PLUGINS = '[plugins]\nopt-in = ["example"]\ndisabled = ["mail", "calendars", "contacts"]\n'


def node_config(directory: Path, name: str, port: int = 0) -> Path:
    """A node's configuration: the data directory (so the database and the blobs) of
    ``directory``, shared by every node written for it, and a port of its own."""
    base = BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}")
    return write_config(directory, PLUGINS, base=base, name=f"{name}.toml")


@asynccontextmanager
async def two_nodes(directory: Path) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    async with (
        running_server(node_config(directory, "a")) as a,
        running_server(node_config(directory, "b")) as b,
    ):
        assert a.host.events.node != b.host.events.node
        yield a, b


def holds(predicate: Any) -> Any:
    """``predicate`` as the async check :func:`eventually` awaits."""

    async def check() -> Any:
        return predicate()

    return check


async def notes_client(http: httpx.AsyncClient) -> AccountClient:
    """Alice's Note calls in her own account, through ``http``."""
    client = AccountClient(http, "", USING)
    client.account = (await client.session())["primaryAccounts"][EXAMPLE]
    return client


async def note_set(client: AccountClient, title: str) -> str:
    result = await client.ok("Note/set", create={"n": {"title": title}})
    return str(result["newState"])


async def first_state_event(chunks: AsyncIterator[str]) -> dict[str, Any]:
    """The first ``state`` event of an EventSource stream's text (RFC 8620 §7.3)."""
    buffer = ""
    async for chunk in chunks:
        buffer += chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if fields.get("event") == "state":
                return dict(json.loads(fields["data"]))
    raise AssertionError("the stream ended without a state event")


async def test_a_change_on_one_node_reaches_a_stream_on_another(tmp_path):
    """A Note/set through node A is a StateChange on an EventSource stream of node B, in
    about the time it takes on one node (printed: the figure of the issue's latency
    target)."""
    async with two_nodes(tmp_path) as (a, b), a.client("alice") as http_a:
        writer = await notes_client(http_a)
        url = "/jmap/eventsource/?types=Note&closeafter=state&ping=0"
        timings: dict[str, list[float]] = {"same node": [], "other node": []}
        for _ in range(5):
            for label, server in (("same node", a), ("other node", b)):
                async with server.client("alice") as listener:
                    async with listener.stream("GET", url) as response:
                        await eventually(holds(server.host.push.subscriber_count))
                        began = time.perf_counter()
                        with trio.fail_after(5):
                            state = await note_set(writer, "hello")
                            event = await first_state_event(response.aiter_text())
                        timings[label].append(time.perf_counter() - began)
                assert event["changed"] == {writer.account: {"Note": state}}
        medians = {k: sorted(v)[len(v) // 2] * 1000 for k, v in timings.items()}
        print("Note/set to StateChange, median ms:", medians)
        # (Generous: the machine is shared; the figure itself is what the print is for.)
        assert medians["other node"] < medians["same node"] + 250


async def test_events_reach_other_nodes_large_or_small(tmp_path):
    """Host events reach the other node in order, once, not back to the sender; one
    larger than NOTIFY's 8000-byte payload (a push object) arrives whole."""
    async with two_nodes(tmp_path) as (a, b):
        heard: dict[str, list[Any]] = {"a": [], "b": []}
        a.host.events.on("test.event", heard["a"].append)
        b.host.events.on("test.event", heard["b"].append)
        big = {"text": "é" * 9000}
        for data in ({"n": 1}, big, {"n": 2}, {"n": 2}):
            a.host.events.emit("test.event", data)
        await eventually(holds(lambda: len(heard["b"]) >= 4))
        await trio.sleep(0.1)
        assert heard["b"] == heard["a"] == [{"n": 1}, big, {"n": 2}, {"n": 2}]

        # The payload limit the bus packs messages up to is PostgreSQL's.
        with psycopg.connect(a.host.store.url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify('test', %s)", ("x" * PAYLOAD_LIMIT,))
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                conn.execute("SELECT pg_notify('test', %s)", ("x" * (PAYLOAD_LIMIT + 1),))
        # Many at once, of every size, share notifications; all arrive, in order.
        heard["b"].clear()
        burst = [{"n": i, "text": "x" * (i * 37 % 9000)} for i in range(200)]
        for data in burst:
            a.host.events.emit("test.event", data)
        await eventually(holds(lambda: len(heard["b"]) >= len(burst)))
        assert heard["b"] == burst

        # The bus's own latency (emit on A to handler on B), for the record.
        arrived = trio.Event()
        b.host.events.on("test.ping", lambda _data: arrived.set())
        delays = []
        for _ in range(20):
            arrived = trio.Event()
            began = time.perf_counter()
            a.host.events.emit("test.ping")
            with trio.fail_after(5):
                await arrived.wait()
            delays.append((time.perf_counter() - began) * 1000)
        print(f"host event A to B: median {sorted(delays)[10]:.2f} ms, max {max(delays):.2f} ms")

        # publish_object is relayed too (a push pseudo-type; here one the test declares).
        for server in (a, b):
            server.host.push.push_types = frozenset({"TestPush"})
        with b.host.push.subscribe([], None, principal="alice") as subscriber:
            obj = {"@type": "TestPush", "body": "x" * 20_000}
            assert a.host.push.publish_object("alice", "TestPush", obj) == 0  # none on A
            with trio.fail_after(5):
                await subscriber.wait()
            assert subscriber.take_objects() == [("TestPush", obj)]


async def test_share_index_is_invalidated_on_every_node(tmp_path):
    async with two_nodes(tmp_path) as (a, b):
        before = b.host.shares.generation
        a.host.shares.changed()
        await eventually(holds(lambda: b.host.shares.generation > before))


async def test_a_websocket_token_is_good_for_one_handshake_on_any_node(tmp_path):
    """A one-time WebSocket token used on node A is refused by node B (the use is a host
    event; a process-local record would let it be replayed on every other node)."""
    async with two_nodes(tmp_path) as (a, b), a.client("alice") as http_a:
        token = (await http_a.post("/jmap/ws/token")).json()["accessToken"]
        page = [(b"origin", b"https://webmail.example")]
        url_a = f"{websocket_url(a.url)}?accessToken={token}"
        async with open_websocket_url(url_a, subprotocols=["jmap"], extra_headers=page):
            pass
        await eventually(holds(lambda: b.host.authenticator._used_tokens))
        url_b = f"{websocket_url(b.url)}?accessToken={token}"
        with pytest.raises(ConnectionRejected) as reused:
            async with open_websocket_url(url_b, subprotocols=["jmap"], extra_headers=page):
                pass
        assert reused.value.status_code == 401


async def test_a_revoked_app_password_stops_working_on_every_node(tmp_path):
    """App passwords are checked against the database on each use (no cache): revoked
    through one node, a token is refused by the others at once."""
    from jmap_host import tokens

    async with two_nodes(tmp_path) as (a, b):
        made, secret = await trio.to_thread.run_sync(tokens.create, a.host.store, "alice", "t")
        bearer = {"Authorization": f"Bearer {secret}"}
        async with b.client(headers=bearer) as http_b:
            assert (await http_b.get("/jmap/session")).status_code == 200
            assert await trio.to_thread.run_sync(tokens.revoke, a.host.store, made.id)
            assert (await http_b.get("/jmap/session")).status_code == 401


async def test_a_dropped_listener_reconnects_and_resynchronises(tmp_path):
    """The listening connection of node B is terminated by the server: B listens again,
    its subscribers are sent the states they may have missed meanwhile, and later
    changes on A reach B again."""
    async with two_nodes(tmp_path) as (a, b), a.client("alice") as http_a:
        writer = await notes_client(http_a)
        bus = b.host.events.bus
        assert bus is not None
        with b.host.push.subscribe([writer.account], {"Note"}) as subscriber:
            url = a.host.store.url
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query = 'LISTEN jmap_host_events' AND datname = current_database()"
                )
            # A change while B is not listening: B hears of it by re-reading on reconnect.
            missed = await note_set(writer, "while B was away")
            await eventually(holds(lambda: bus.reconnects >= 1))  # type: ignore[attr-defined]
            heard: dict[str, str] = {}
            with trio.fail_after(5):
                while heard.get("Note") != missed:
                    heard.update((await subscriber.wait()).get(writer.account, {}))
            later = await note_set(writer, "after")
            with trio.fail_after(5):
                while heard.get("Note") != later:
                    heard.update((await subscriber.wait()).get(writer.account, {}))


async def test_a_sender_that_lost_events_makes_the_others_resynchronise(tmp_path):
    """Node A's sending connection is terminated: what A sent on it meanwhile may be lost,
    so A reconnects and announces a gap, and B runs its on_missed handlers."""
    async with two_nodes(tmp_path) as (a, b):
        heard: list[dict[str, Any]] = []
        missed: list[bool] = []
        b.host.events.on("test.event", heard.append)
        b.host.events.on_missed(lambda: missed.append(True))
        a.host.events.emit("test.event", {"n": 1})
        await eventually(holds(lambda: heard))
        missed.clear()  # (B receiving: its resynchronisation of start-up is over)
        with psycopg.connect(a.host.store.url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE "
                "'SELECT pg_notify%' AND datname = current_database()"
            )
        a.host.events.emit("test.event", {"n": 2})  # (on the dead connection: lost)
        await eventually(holds(lambda: missed))
        a.host.events.emit("test.event", {"n": 3})
        await eventually(holds(lambda: heard[-1] == {"n": 3}))


# -- three nodes as processes ------------------------------------------------------------


class Node(ServerProcess):
    """A node: ``python -m jmap_host run -c FILE`` as a subprocess on its own port."""

    def __init__(self, directory: Path, name: str):
        port = free_port()
        super().__init__(node_config(directory, name, port), f"http://127.0.0.1:{port}")
        self.name = name
        self.directory = directory

    def start(self) -> None:
        self.spawn(self.directory / f"{self.name}.log")

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=basic("alice"), timeout=10, **kwargs)


@pytest.fixture
def three_nodes(tmp_path: Path) -> Any:
    nodes = [Node(tmp_path, name) for name in ("a", "b", "c")]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_three_nodes_push_to_eventsource_and_websocket(three_nodes):
    """A Note/set through node A reaches an EventSource client of node B (RFC 8620 §7.3)
    and a WebSocket push client of node C (RFC 8887 §4.3.5)."""
    a, b, c = three_nodes
    async with a.client() as http_a, b.client() as http_b:
        writer = await notes_client(http_a)
        url = "/jmap/eventsource/?types=Note&closeafter=state&ping=0"
        headers = [(b"authorization", basic("alice")["Authorization"].encode())]
        async with (
            http_b.stream("GET", url) as stream,
            open_websocket_url(
                websocket_url(c.url), subprotocols=["jmap"], extra_headers=headers
            ) as ws,
        ):
            await ws.send_message(json.dumps({"@type": "WebSocketPushEnable", "dataTypes": None}))
            # Both subscribed: an echo on the socket is answered after the enable (in
            # order), and the stream's opening comment has been sent.
            chunks = stream.aiter_text()
            await anext(chunks)
            echo = {"@type": "Request", "using": [CORE], "methodCalls": [["Core/echo", {}, "e"]]}
            await ws.send_message(json.dumps(echo))
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())["@type"] == "Response"
            with trio.fail_after(5):
                state = await note_set(writer, "through A")
                event = await first_state_event(chunks)
                pushed = json.loads(await ws.get_message())
        assert event["changed"] == {writer.account: {"Note": state}}
        assert pushed["@type"] == "StateChange"
        assert pushed["changed"][writer.account]["Note"] == state


def write_notes(url: str, account: str, acknowledged: list[str], stop: threading.Event) -> None:
    """Create notes through one node until ``stop`` or its death, recording each note
    whose Note/set answered 200 with it created."""
    with httpx.Client(base_url=url, headers=basic("alice"), timeout=10) as http:
        while not stop.is_set():
            title = f"note {len(acknowledged)}"
            call = ["Note/set", {"accountId": account, "create": {"n": {"title": title}}}, "c"]
            try:
                response = http.post("/jmap/api", json={"using": USING, "methodCalls": [call]})
            except httpx.TransportError:
                return  # the node is dead: nothing more is acknowledged
            if response.status_code == 200:
                name, result, _ = response.json()["methodResponses"][0]
                if name == "Note/set" and result.get("created"):
                    acknowledged.append(result["created"]["n"]["id"])


async def test_a_killed_node_loses_no_acknowledged_write(three_nodes):
    """Node A is killed with SIGKILL in the middle of a stream of writes to it: every
    write it acknowledged is readable through B and C, which go on serving."""
    a, b, c = three_nodes
    async with b.client() as http_b:
        account = (await notes_client(http_b)).account
    acknowledged: list[str] = []
    stop = threading.Event()
    writer = threading.Thread(target=write_notes, args=(a.url, account, acknowledged, stop))
    writer.start()
    try:
        await eventually(holds(lambda: len(acknowledged) >= 20), timeout=30)
        a.kill()
    finally:
        stop.set()
        await trio.to_thread.run_sync(writer.join, 30)
    assert not writer.is_alive()
    assert len(acknowledged) >= 20
    for node in (b, c):
        async with node.client() as http:
            client = AccountClient(http, account, USING)
            got = await client.ok("Note/get", ids=acknowledged, properties=["id"])
            assert got["notFound"] == [], f"node {node.name}: acknowledged notes lost"
            # Still serving: a write and a read.
            state = await note_set(client, f"after the kill, on {node.name}")
            assert (await client.ok("Note/get", ids=[]))["state"] == state
    # And still pushing to each other: a write through B reaches a stream on C.
    url = "/jmap/eventsource/?types=Note&closeafter=state&ping=0"
    async with b.client() as http_b, c.client() as http_c, http_c.stream("GET", url) as stream:
        chunks = stream.aiter_text()
        await anext(chunks)  # (subscribed)
        with trio.fail_after(5):
            state = await note_set(AccountClient(http_b, account, USING), "pushed")
            event = await first_state_event(chunks)
        assert event["changed"] == {account: {"Note": state}}
