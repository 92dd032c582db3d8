"""A test holds 1,000 EventSource connections on one server and every one receives a change.

The server runs in a subprocess (``python -m jmap_host run``), so the two sides' file
descriptors are counted apart; both raise RLIMIT_NOFILE's soft limit to the hard one.  The
streams are plain trio TCP streams with a hand-written ``GET`` (Basic auth), far lighter
than 1,000 HTTP clients.  A stream counts as subscribed once the server's opening comment
(``: jmap-host event stream``) has arrived, which it sends after subscribing to the push
hub.  Then one Note/set is made, and every stream must get the ``state`` event with the
same StateChange (RFC 8620 §7.1, §7.3); the time until the last one saw it is printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from jmap_host.testing import PASSWORDS, api, basic, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

STREAMS = 1000
EXAMPLE = "https://jmap-host.org/ext/example"
PATH = "/jmap/eventsource/?types=*&closeafter=no&ping=0"
FDS_NEEDED = STREAMS + 200


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _start_server(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jmap_host", "run", "-c", str(config), "--log-level", "WARNING"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_raise_nofile,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ctrl+C" in text:
            match = re.search(r"listener 'jmap' \(jmap\): (http://\S+)", text)
            assert match, text
            return proc, match.group(1).rstrip(",")
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start:\n" + log.read_text(errors="replace"))


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fleet:
    """Counts of what the streams have seen."""

    def __init__(self) -> None:
        self.subscribed = 0
        self.all_subscribed = trio.Event()
        self.received: list[tuple[float, dict]] = []
        self.all_received = trio.Event()
        self.failures: list[str] = []


async def hold_stream(
    port: int, fleet: Fleet, connects: trio.CapacityLimiter, first: trio.Event | None
) -> None:
    token = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    async with connects:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        buffer = b""
        while b": jmap-host event stream" not in buffer:
            chunk = await stream.receive_some(65536)
            if not chunk:
                fleet.failures.append(f"closed before subscribing: {buffer[:200]!r}")
                return
            buffer += chunk
        if not buffer.startswith(b"HTTP/1.1 200"):
            fleet.failures.append(f"not 200: {buffer[:200]!r}")
            return
        if first is not None:
            first.set()  # the Basic credentials are now cached: the others skip argon2
        fleet.subscribed += 1
        if fleet.subscribed == STREAMS:
            fleet.all_subscribed.set()
        buffer = buffer.split(b": jmap-host event stream", 1)[1]
        while True:
            match = re.search(rb"event: state\n(?:id: [^\n]*\n)?data: ([^\n]*)\n", buffer)
            if match:
                break
            chunk = await stream.receive_some(65536)
            if not chunk:
                fleet.failures.append("closed before the state event")
                return
            buffer += chunk
        fleet.received.append((time.perf_counter(), json.loads(match.group(1))))
        if len(fleet.received) == STREAMS:
            fleet.all_received.set()
        await trio.sleep_forever()  # hold the connection until the test ends


async def test_thousand_event_streams_all_receive_a_change(tmp_path):
    _raise_nofile()
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {soft} is below the {FDS_NEEDED} needed")
    proc, url = _start_server(write_config(tmp_path, EXAMPLE_ON), tmp_path / "server.log")
    port = int(url.rsplit(":", 1)[1])
    try:
        async with httpx.AsyncClient(base_url=url, headers=basic("alice"), timeout=10) as client:
            session = (await client.get("/jmap/session")).json()
            account = session["primaryAccounts"][EXAMPLE]
            fleet = Fleet()
            connects = trio.CapacityLimiter(100)  # within the listen backlog
            began = time.perf_counter()
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    first = trio.Event()
                    nursery.start_soon(hold_stream, port, fleet, connects, first)
                    await first.wait()
                    for _ in range(STREAMS - 1):
                        nursery.start_soon(hold_stream, port, fleet, connects, None)
                    with trio.move_on_after(30):
                        await fleet.all_subscribed.wait()
                    assert not fleet.failures, fleet.failures[:5]
                    assert fleet.subscribed == STREAMS
                    opened = time.perf_counter() - began

                    changed_at = time.perf_counter()
                    create = {"accountId": account, "create": {"n": {"title": "x"}}}
                    result = await api(
                        client,
                        [["Note/set", create, "s"]],
                        using=["urn:ietf:params:jmap:core", EXAMPLE],
                    )
                    new_state = result["methodResponses"][0][1]["newState"]
                    with trio.move_on_after(20):
                        await fleet.all_received.wait()
                    nursery.cancel_scope.cancel()
        assert not fleet.failures, fleet.failures[:5]
        assert len(fleet.received) == STREAMS
        expected = {"@type": "StateChange", "changed": {account: {"Note": new_state}}}
        assert all(data == expected for _, data in fleet.received)
        delivery = max(t for t, _ in fleet.received) - changed_at
        first_seen = min(t for t, _ in fleet.received) - changed_at
        print(
            f"\n{STREAMS} EventSource streams open and subscribed in {opened:.2f} s; "
            f"one change reached the first in {first_seen * 1000:.0f} ms, "
            f"all of them in {delivery * 1000:.0f} ms"
        )
    finally:
        _stop_server(proc)
    assert proc.returncode == 0, (tmp_path / "server.log").read_text(errors="replace")
