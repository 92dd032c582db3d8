"""JMAP over WebSocket (RFC 8887) over real sockets: discovery, handshake, requests,
request-level errors and push.  The client is trio-websocket (wsproto underneath)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from jmap_host.testing import BASE_CONFIG, api, basic, running_server, write_config
from jmap_host.websocket import websocket_url

WS = "urn:ietf:params:jmap:websocket"
CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
ERR = "urn:ietf:params:jmap:error:"


def ws_url(server) -> str:
    return websocket_url(server.url)


@asynccontextmanager
async def connect(
    server, user: str | None = "alice", subprotocols: list[str] | None = None, **kw: Any
) -> AsyncIterator[Any]:
    headers = [(b"authorization", basic(user, **kw)["Authorization"].encode())] if user else []
    async with open_websocket_url(
        ws_url(server),
        subprotocols=["jmap"] if subprotocols is None else subprotocols,
        extra_headers=headers,
        connect_timeout=5,
        disconnect_timeout=2,
    ) as ws:
        yield ws


async def send(ws, message: Any) -> None:
    await ws.send_message(message if isinstance(message, str | bytes) else json.dumps(message))


async def receive(ws, timeout: float = 1.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        return json.loads(await ws.get_message())


def echo(request_id: str | None = "R1", **args: Any) -> dict[str, Any]:
    request = {
        "@type": "Request",
        "using": [CORE],
        "methodCalls": [["Core/echo", args or {"hello": True, "high": 5}, "b3ff"]],
    }
    if request_id is not None:
        request["id"] = request_id
    return request


async def note_change(client, account: str, title: str) -> str:
    """A Note/set over HTTP (another connection); returns the new Note state."""
    result = await api(
        client,
        [["Note/set", {"accountId": account, "create": {"n": {"title": title}}}, "s"]],
        using=[CORE, EXAMPLE],
    )
    return result["methodResponses"][0][1]["newState"]


async def assert_quiet(ws, request_id: str = "quiet") -> None:
    """Nothing is pending on ``ws``: an echo sent now is answered before anything else.
    (Push enable/disable are handled in order with the reading of the connection.)"""
    await trio.sleep(0.2)  # time for a wrongly-pushed StateChange to be sent
    await send(ws, echo(request_id))
    message = await receive(ws)
    assert message["@type"] == "Response", message
    assert message["requestId"] == request_id


# §3 Discovery ----------------------------------------------------------------------------


async def test_session_advertises_the_websocket_capability(jmap_config):
    """RFC 8887 §3: the capability holds the WebSocket URL and supportsPush; it has no
    methods, so no account lists it and it is no primary account's."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
    assert server.url.startswith("http://")
    assert session["capabilities"][WS] == {
        "url": "ws://" + server.url.removeprefix("http://") + "/jmap/ws",
        "supportsPush": True,
    }
    for account in session["accounts"].values():
        assert WS not in account["accountCapabilities"]
    assert WS not in session["primaryAccounts"]


async def test_websocket_url_follows_the_public_url(tmp_path):
    """An https public URL (behind a TLS proxy) advertises wss (RFC 8887 §3: a wss-URI)."""
    base = BASE_CONFIG.replace(
        'protocol = "jmap"\n', 'protocol = "jmap"\nurl = "https://jmap.example.org"\n', 1
    )
    async with (
        running_server(write_config(tmp_path, base=base)) as server,
        server.client("alice") as client,
    ):
        session = (await client.get("/jmap/session")).json()
    assert session["capabilities"][WS]["url"] == "wss://jmap.example.org/jmap/ws"
    assert websocket_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/jmap/ws"


# §4.1, §4.2 Authentication and handshake ------------------------------------------------


async def test_handshake_needs_credentials(jmap_config):
    """§4.1: the handshake request is authenticated like an HTTP request; without valid
    credentials it is refused with 401 and a challenge."""
    async with running_server(jmap_config) as server:
        with pytest.raises(ConnectionRejected) as rejected:
            async with connect(server, user=None):
                pass
        assert rejected.value.status_code == 401
        headers = {k.lower(): v for k, v in rejected.value.headers}
        assert b"www-authenticate" in headers
        assert json.loads(rejected.value.body)["status"] == 401
        with pytest.raises(ConnectionRejected) as rejected:
            async with connect(server, password="wrong"):
                pass
        assert rejected.value.status_code == 401


async def test_handshake_needs_the_jmap_subprotocol(jmap_config):
    """§4.2: the client MUST offer "jmap"; the server answers with it."""
    async with running_server(jmap_config) as server:
        for offered in (["chat"], []):
            with pytest.raises(ConnectionRejected) as rejected:
                async with connect(server, subprotocols=offered):
                    pass
            assert rejected.value.status_code == 400
        async with connect(server, subprotocols=["chat", "jmap"]) as ws:
            assert ws.subprotocol == "jmap"


async def test_unknown_websocket_path_is_refused(jmap_config):
    async with running_server(jmap_config) as server:
        headers = [(b"authorization", basic("alice")["Authorization"].encode())]
        url = server.url.replace("http://", "ws://") + "/jmap/other"
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url, subprotocols=["jmap"], extra_headers=headers):
                pass
        assert rejected.value.status_code == 404


# §4.3.2, §4.3.3 Requests and responses ---------------------------------------------------


async def test_echo_request_and_response(jmap_config):
    """§4.3.2/§4.3.3 (and the §4.4 example): a Request with id gets a Response with that
    requestId; without id, no requestId."""
    async with running_server(jmap_config) as server, connect(server) as ws:
        await send(ws, echo("R1"))
        response = await receive(ws)
        assert response["@type"] == "Response"
        assert response["requestId"] == "R1"
        assert response["methodResponses"] == [["Core/echo", {"hello": True, "high": 5}, "b3ff"]]
        assert isinstance(response["sessionState"], str)
        await send(ws, echo(None))
        response = await receive(ws)
        assert response["@type"] == "Response" and "requestId" not in response


async def test_requests_use_the_data_of_the_user_who_connected(jmap_config):
    """§4.2: the handshake credentials hold for every request on the connection."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        async with connect(server) as ws:
            await send(
                ws,
                {
                    "@type": "Request",
                    "id": "set",
                    "using": [CORE, EXAMPLE],
                    "methodCalls": [
                        ["Note/set", {"accountId": account, "create": {"a": {"title": "ws"}}}, "0"],
                        ["Note/get", {"accountId": account, "ids": None}, "1"],
                    ],
                },
            )  # fmt: skip
            response = await receive(ws)
        assert response["requestId"] == "set"
        [note] = response["methodResponses"][1][1]["list"]
        assert note["title"] == "ws"
        # The same Note, over HTTP as alice.
        over_http = await api(
            client, [["Note/get", {"accountId": account, "ids": None}, "0"]], using=[CORE, EXAMPLE]
        )
        assert over_http["methodResponses"][0][1]["list"] == [note]


# §4.3.1, §4.3.4 Request-level errors ------------------------------------------------------


async def test_request_level_errors_are_request_error_objects(jmap_config):
    """§4.3.4: RequestError problem documents with requestId; the connection stays open."""
    async with running_server(jmap_config) as server, connect(server) as ws:
        # The §4.4 example: text that is not JSON; no id to echo.
        await send(ws, "The quick brown fox jumps\n over the lazy dog.")
        error = await receive(ws)
        assert error["@type"] == "RequestError"
        assert error["requestId"] is None
        assert error["type"] == ERR + "notJSON" and error["status"] == 400
        assert error["detail"]

        await send(ws, "[]")
        assert (await receive(ws))["type"] == ERR + "notRequest"

        await send(ws, {"@type": "Request", "id": "n", "using": [CORE]})  # no methodCalls
        error = await receive(ws)
        assert (error["type"], error["requestId"]) == (ERR + "notRequest", "n")

        await send(ws, {**echo("u"), "using": [CORE, "urn:example:nope"]})
        error = await receive(ws)
        assert (error["type"], error["requestId"]) == (ERR + "unknownCapability", "u")

        calls = [["Core/echo", {}, str(i)] for i in range(17)]  # maxCallsInRequest is 16
        await send(ws, {"@type": "Request", "id": "big", "using": [CORE], "methodCalls": calls})
        error = await receive(ws)
        assert error["@type"] == "RequestError" and error["requestId"] == "big"
        assert (error["type"], error["limit"]) == (ERR + "limit", "maxCallsInRequest")

        # I-JSON strictness, as over HTTP (RFC 8620 §3.6.1): duplicate member names.
        await send(ws, '{"@type": "Request", "using": [], "using": [], "methodCalls": []}')
        assert (await receive(ws))["type"] == ERR + "notJSON"

        # §4.3: only Request, WebSocketPushEnable and WebSocketPushDisable are sent.
        await send(ws, {"@type": "Frobnicate", "id": "f"})
        assert (await receive(ws))["type"] == ERR + "notRequest"
        await send(ws, {"@type": "Request", "id": 5, "using": [CORE], "methodCalls": []})
        assert (await receive(ws))["type"] == ERR + "notRequest"

        # §4.3.1: a binary frame is not a JMAP message.
        await send(ws, b'{"@type": "Request"}')
        error = await receive(ws)
        assert (error["@type"], error["type"]) == ("RequestError", ERR + "notJSON")

        await send(ws, echo("still-open"))
        assert (await receive(ws))["requestId"] == "still-open"


async def test_message_size_limit(tmp_path):
    """maxSizeRequest applies to each message (RFC 8620 §2, RFC 8887 §4.3.1)."""
    config = write_config(tmp_path, "[jmap.protocol.request]\nmax-size = 2000\n")
    async with running_server(config) as server, connect(server) as ws:
        await send(ws, echo("big", padding="x" * 3000))
        error = await receive(ws)
        assert (error["type"], error["limit"], error["requestId"]) == (
            ERR + "limit",
            "maxSizeRequest",
            None,
        )


async def test_max_concurrent_requests_counts_with_http(jmap_config):
    """§4.3.2: maxConcurrentRequests applies to requests on the WebSocket, summed with the
    user's other requests; one more is refused at once."""
    async with running_server(jmap_config) as server, connect(server) as ws:
        limiter = server.host.api_concurrency
        with ExitStack() as held:
            for _ in range(server.host.limits.max_concurrent_requests):
                held.enter_context(limiter.hold("alice"))  # as if HTTP requests were running
            await send(ws, echo("over"))
            error = await receive(ws)
        assert (error["@type"], error["requestId"]) == ("RequestError", "over")
        assert error["status"] == 429
        assert (error["type"], error["limit"]) == (ERR + "limit", "maxConcurrentRequests")
        await send(ws, echo("again"))
        assert (await receive(ws))["requestId"] == "again"


# §4.3.5 Push ------------------------------------------------------------------------------


async def test_push_enable_then_a_change_is_pushed(jmap_config):
    """§4.3.5.1/§4.3.5.2: after WebSocketPushEnable a change made over HTTP on another
    connection arrives as a StateChange with a pushState, within a second."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        async with connect(server) as ws:
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": None})
            await assert_quiet(ws, "enabled")  # handled in order: subscribed by now
            with trio.fail_after(1):
                new_state = await note_change(client, account, "hello")
                change = await receive(ws)
        assert change["@type"] == "StateChange"
        assert change["changed"] == {account: {"Note": new_state}}
        assert isinstance(change["pushState"], str) and change["pushState"]


async def test_push_state_resume_sends_missed_changes(jmap_config):
    """§4.3.5.2: an enable with the last pushState is sent everything since, at once; with
    an up-to-date pushState nothing is sent."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        async with connect(server) as ws:
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": ["Note"]})
            await assert_quiet(ws)
            await note_change(client, account, "one")
            first = await receive(ws)
        # Disconnected: two more changes.
        await note_change(client, account, "two")
        latest = await note_change(client, account, "three")
        async with connect(server) as ws:
            enable = {"@type": "WebSocketPushEnable", "dataTypes": ["Note"]}
            await send(ws, {**enable, "pushState": first["pushState"]})
            missed = await receive(ws)
            assert missed["@type"] == "StateChange"
            assert missed["changed"] == {account: {"Note": latest}}
            assert missed["pushState"] != first["pushState"]
        async with connect(server) as ws:
            # Same types as the pushState covers: nothing was missed, nothing is sent.
            enable = {"@type": "WebSocketPushEnable", "dataTypes": ["Note"]}
            await send(ws, {**enable, "pushState": missed["pushState"]})
            await assert_quiet(ws)


async def test_push_disable_stops_pushes(jmap_config):
    """§4.3.5.3: after WebSocketPushDisable no StateChange is sent."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        async with connect(server) as ws:
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": None})
            await assert_quiet(ws)
            await note_change(client, account, "pushed")
            assert (await receive(ws))["@type"] == "StateChange"
            await send(ws, {"@type": "WebSocketPushDisable"})
            await assert_quiet(ws, "disabled")
            assert server.host.push.subscriber_count() == 0
            await note_change(client, account, "not pushed")
            await assert_quiet(ws)


async def test_data_types_filter(jmap_config):
    """§4.3.5.2: only changes to the listed dataTypes are pushed, and only those types
    appear in the TypeState; a new enable replaces the old one."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = (await client.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        async with connect(server) as ws:
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"]})
            await assert_quiet(ws)
            await note_change(client, account, "not a Mailbox")
            await assert_quiet(ws)
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox", "Note"]})
            await assert_quiet(ws)
            state = await note_change(client, account, "a Note")
            change = await receive(ws)
            assert change["changed"] == {account: {"Note": state}}
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": "Note"})
            error = await receive(ws)
            assert (error["@type"], error["type"]) == ("RequestError", ERR + "notRequest")


async def test_server_shutdown_closes_the_connection(jmap_config):
    """A graceful shutdown closes open WebSockets with 1001 (Going Away) at once."""
    with trio.fail_after(5):
        async with running_server(jmap_config) as server, connect(server) as ws:
            await send(ws, {"@type": "WebSocketPushEnable", "dataTypes": None})
            await assert_quiet(ws)
            server.host.closing.set()  # what a SIGTERM does first
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws, timeout=2)
            assert closed.value.reason.code == 1001


async def test_browsers_on_other_origins_need_a_one_time_token(jmap_config):
    """Cross-site WebSocket hijacking: a browser sends cached credentials with any page's
    handshake, so a handshake whose Origin is another site must bring a token from
    POST /jmap/ws/token (a CORS-governed, authenticated request); the token is good for one
    handshake, for WebSockets only."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        auth = [(b"authorization", basic("alice")["Authorization"].encode())]
        hostile = [*auth, (b"origin", b"https://evil.example")]
        with pytest.raises(ConnectionRejected) as refused:
            async with open_websocket_url(
                ws_url(server), subprotocols=["jmap"], extra_headers=hostile, connect_timeout=5
            ):
                pass
        assert refused.value.status_code == 403
        same_origin = [*auth, (b"origin", server.url.encode())]
        async with open_websocket_url(
            ws_url(server), subprotocols=["jmap"], extra_headers=same_origin, connect_timeout=5
        ) as ws:
            await send(ws, echo("same"))
            assert (await receive(ws))["@type"] == "Response"
        token = (await client.post("/jmap/ws/token")).json()["accessToken"]
        url = f"{ws_url(server)}?accessToken={token}"
        page = [(b"origin", b"https://webmail.example")]
        async with open_websocket_url(
            url, subprotocols=["jmap"], extra_headers=page, connect_timeout=5
        ) as ws:
            await send(ws, echo("token"))
            assert (await receive(ws))["requestId"] == "token"
        with pytest.raises(ConnectionRejected) as reused:
            async with open_websocket_url(
                url, subprotocols=["jmap"], extra_headers=page, connect_timeout=5
            ):
                pass
        assert reused.value.status_code == 401
        stream_token = (await client.post("/jmap/eventsource/token")).json()["accessToken"]
        with pytest.raises(ConnectionRejected) as wrong_scope:
            async with open_websocket_url(
                f"{ws_url(server)}?accessToken={stream_token}",
                subprotocols=["jmap"],
                extra_headers=page,
                connect_timeout=5,
            ):
                pass
        assert wrong_scope.value.status_code == 401
        # And a WebSocket token opens no EventSource stream.
        async with server.client() as anonymous:
            fresh = (await client.post("/jmap/ws/token")).json()["accessToken"]
            got = await anonymous.get(f"/jmap/eventsource/?types=*&accessToken={fresh}")
            assert got.status_code == 401
