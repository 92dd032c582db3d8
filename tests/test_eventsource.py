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
