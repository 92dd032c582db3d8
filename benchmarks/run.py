"""The benchmark scenarios (issue 6, §1) against any JMAP server, with the floor beside them.

    python benchmarks/run.py --url http://127.0.0.1:8765 --user bench --password bench \\
        --server-pid PID

Scenarios (benchmarks/README.md says what each one measures):

  1 session        GET the session resource
  2 mailboxes      Mailbox/get of all mailboxes
  3 open           Email/query (inMailbox, receivedAt desc, collapseThreads, limit 50)
                   + Email/get of those ids + Thread/get, one request, result references
  4 search         Email/query with a text filter, limit 50, + SearchSnippet/get
  5 sync           Email/changes + Mailbox/changes from the current states (nothing changed)
  6 flag50         Email/set: a keyword patch on 50 messages (alternately set and removed)
  7 import         upload + Email/import in batches of 50 (messages per second)
  8 mix            scenarios 3/5/6 in rotation from 1, 10 and 50 concurrent clients
  9 push           N EventSource streams open, one change, time until every stream saw it;
                   then --hold-streams (10,000) open together, and a change reaches them all
  10 memory        VmRSS of --server-pid at rest and with the streams open

The floor: benchmarks/floor.py (one static JSON response on hypercorn + trio) is started as
a subprocess and measured by the same client with the same loop; latencies are reported as
multiples of the floor's p50 and concurrent throughput as a fraction of the floor's at the
same number of clients.

Every loop has a warmup, a fixed number of iterations and a time bound, so a run always
ends.  A scenario whose methods the server answers with unknownMethod is reported as
"unsupported" (or "partial" when only part of it is).  Results go to a table on the terminal
and to a JSON file (--out).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import SEARCH_TERMS, generate  # noqa: E402
from jmapclient import Client, JMAPError, method_errors, new_http, on_node  # noqa: E402
from load import load  # noqa: E402
from stats import summarize  # noqa: E402

EMAIL_PROPERTIES = [
    "threadId",
    "mailboxIds",
    "keywords",
    "from",
    "subject",
    "receivedAt",
    "size",
    "preview",
]
ALL_SCENARIOS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]


class Unsupported(Exception):
    """The server answered a method of the scenario with unknownMethod."""


class Failed(Exception):
    """The request did not succeed (HTTP status or method error other than unknownMethod)."""


def check(responses: list[list[Any]]) -> None:
    errors = method_errors(responses)
    if "unknownMethod" in errors:
        names = [r[0] for r in responses]
        raise Unsupported(f"unknownMethod in {names}")
    if errors:
        raise Failed(", ".join(errors))


# -- loops --------------------------------------------------------------------------------


@dataclass
class Loop:
    warmup: int
    iterations: int
    seconds: float


async def timed(op: Callable[[int], Awaitable[Any]], loop: Loop) -> dict[str, Any]:
    """Run ``op`` sequentially: ``warmup`` untimed calls, then up to ``iterations`` timed
    ones within ``seconds``.  Errors are counted, not retried."""
    for i in range(loop.warmup):
        await op(i)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    for i in range(loop.iterations):
        if time.perf_counter() - start > loop.seconds:
            break
        t0 = time.perf_counter()
        try:
            await op(loop.warmup + i)
        except (Failed, JMAPError):
            errors += 1
        else:
            latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return summarize(latencies, len(latencies) + errors, elapsed, errors)


async def concurrent(
    clients: int,
    make_op: Callable[[int], Awaitable[Callable[[int], Awaitable[Any]]]],
    seconds: float,
) -> dict[str, Any]:
    """``clients`` tasks, each calling its own op back to back for ``seconds`` (after two
    untimed warmup calls each, all started together)."""
    ops = [await make_op(c) for c in range(clients)]
    for c, op in enumerate(ops):
        for i in range(2):
            await op(c + i)
    latencies: list[float] = []
    errors = 0
    error_kinds: dict[str, int] = {}
    deadline = time.perf_counter() + seconds

    async def worker(c: int) -> None:
        nonlocal errors
        i = c
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                await ops[c](i)
                latencies.append(time.perf_counter() - t0)
            except (Failed, JMAPError, OSError) as exc:
                errors += 1
                kind = str(exc)[:60]
                error_kinds[kind] = error_kinds.get(kind, 0) + 1
            i += 1

    start = time.perf_counter()
    with trio.move_on_after(seconds + 60):  # a stuck request cannot hold the run forever
        async with trio.open_nursery() as nursery:
            for c in range(clients):
                nursery.start_soon(worker, c)
    elapsed = time.perf_counter() - start
    result = summarize(latencies, len(latencies) + errors, elapsed, errors)
    if error_kinds:
        result["error_kinds"] = error_kinds
    return result


# -- the floor ------------------------------------------------------------------------------


class Floor:
    """benchmarks/floor.py in a subprocess on a free port."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Floor:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "floor.py"), "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("LISTENING "):
            self.process.kill()
            raise RuntimeError(f"floor did not start: {line!r}")
        self.url = line.split()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


FLOOR_BODY = {"using": ["urn:ietf:params:jmap:core"], "methodCalls": [["Core/echo", {}, "0"]]}


def floor_op(http: Any, url: str, get: bool = False) -> Callable[[int], Awaitable[None]]:
    """A POST of a small JMAP request (or a GET) to the floor."""

    async def op(i: int) -> None:
        if get:
            response = await http.get(url + "/.well-known/jmap")
        else:
            response = await http.post(url + "/jmap/api", json=FLOOR_BODY)
        if response.status_code != 200:
            raise Failed(f"HTTP {response.status_code}")

    return op


# -- memory ---------------------------------------------------------------------------------


def rss_mib(pid: int | None) -> float | None:
    """VmRSS of ``pid`` in MiB (None without a pid or outside Linux)."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# -- the JMAP scenarios ----------------------------------------------------------------------


class Scenarios:
    def __init__(self, client: Client, args: argparse.Namespace):
        self.client = client
        self.args = args
        self.inbox = ""
        self.flag_ids: list[str] = []

    async def prepare(self) -> dict[str, Any]:
        boxes = (await self.client.call("Mailbox/get", ids=None))["list"]
        inbox = next((m for m in boxes if m.get("role") == "inbox"), None)
        if inbox is None:
            raise SystemExit("the account has no inbox: load a corpus first (load.py)")
        self.inbox = inbox["id"]
        query = await self.client.call(
            "Email/query",
            filter={"inMailbox": self.inbox},
            sort=[{"property": "receivedAt", "isAscending": False}],
            limit=2600,
            calculateTotal=True,
        )
        self.flag_ids = query["ids"]
        total = await self.client.call("Email/query", limit=0, calculateTotal=True)
        if len(self.flag_ids) < 50:  # a tiny corpus (the smoke test): flag from anywhere
            self.flag_ids = (await self.client.call("Email/query", limit=2600))["ids"]
        if len(self.flag_ids) < 50:
            raise SystemExit("the account has fewer than 50 messages: load a corpus first")
        return {
            "mailboxes": len(boxes),
            "emails": total.get("total"),
            "inbox_emails": query.get("total"),
        }

    # Each op takes the iteration number, so that loops can vary what they ask for.

    def session_op(self, client: Client) -> Callable[[int], Awaitable[None]]:
        async def op(i: int) -> None:
            response = await client.http.get(client.session.url)
            if response.status_code != 200:
                raise Failed(f"HTTP {response.status_code}")

        return op

    def mailboxes_op(self, client: Client) -> Callable[[int], Awaitable[None]]:
        async def op(i: int) -> None:
            check(await client.request([["Mailbox/get", {"ids": None}, "m"]]))

        return op

    def open_op(self, client: Client) -> Callable[[int], Awaitable[None]]:
        async def op(i: int) -> None:
            responses = await client.request(
                [
                    [
                        "Email/query",
                        {
                            "filter": {"inMailbox": self.inbox},
                            "sort": [{"property": "receivedAt", "isAscending": False}],
                            "collapseThreads": True,
                            "limit": 50,
                        },
                        "q",
                    ],
                    [
                        "Email/get",
                        {
                            "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                            "properties": EMAIL_PROPERTIES,
                        },
                        "g",
                    ],
                    [
                        "Thread/get",
                        {
                            "#ids": {
                                "resultOf": "g",
                                "name": "Email/get",
                                "path": "/list/*/threadId",
                            }
                        },
                        "t",
                    ],
                ]
            )
            check(responses)

        return op

    def search_op(self, client: Client, snippets: bool) -> Callable[[int], Awaitable[None]]:
        async def op(i: int) -> None:
            term = SEARCH_TERMS[i % len(SEARCH_TERMS)]
            calls: list[list[Any]] = [
                ["Email/query", {"filter": {"text": term}, "limit": 50}, "q"],
            ]
            if snippets:
                calls.append(
                    [
                        "SearchSnippet/get",
                        {
                            "filter": {"text": term},
                            "#emailIds": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                        },
                        "s",
                    ]
                )
            check(await client.request(calls))

        return op

    async def states(self, client: Client) -> tuple[str, str]:
        responses = await client.request(
            [["Email/get", {"ids": []}, "e"], ["Mailbox/get", {"ids": []}, "m"]]
        )
        check(responses)
        return responses[0][1]["state"], responses[1][1]["state"]

    def sync_op(
        self, client: Client, states: list[str], follow: bool
    ) -> Callable[[int], Awaitable[None]]:
        """Email/changes + Mailbox/changes from ``states``; with ``follow`` the states move
        on to newState (a client in the mix), without it they stay (nothing changed)."""

        async def op(i: int) -> None:
            responses = await client.request(
                [
                    ["Email/changes", {"sinceState": states[0], "maxChanges": 500}, "e"],
                    ["Mailbox/changes", {"sinceState": states[1], "maxChanges": 500}, "m"],
                ]
            )
            check(responses)
            if follow:
                states[0] = responses[0][1]["newState"]
                states[1] = responses[1][1]["newState"]
            elif responses[0][1]["created"] or responses[0][1]["updated"]:
                raise Failed("Email/changes reported changes in a quiet account")

        return op

    def flag_op(self, client: Client, ids: list[str]) -> Callable[[int], Awaitable[None]]:
        """Set $flagged on the 50 ids on even iterations, remove it on odd ones."""

        async def op(i: int) -> None:
            value = True if i % 2 == 0 else None
            update = {eid: {"keywords/$flagged": value} for eid in ids}
            responses = await client.request([["Email/set", {"update": update}, "s"]])
            check(responses)
            if len(responses[0][1].get("updated") or {}) != len(ids):
                raise Failed(f"notUpdated: {responses[0][1].get('notUpdated')}")

        return op

    def slice_for(self, c: int) -> list[str]:
        """50 inbox ids for client ``c``: disjoint while the inbox has enough messages."""
        n = len(self.flag_ids)
        start = (c * 50) % max(1, n - 49)
        return self.flag_ids[start : start + 50]


# -- push (scenario 9) -------------------------------------------------------------------------


class Tally:
    """What a fleet of streams has seen: ``state`` events counted as they arrive, so the
    waiting side needs no scan of every stream."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = trio.Event()

    def expect(self, events: int) -> None:
        self.target = self.count + events
        self.reached = trio.Event()

    def add(self, events: int) -> None:
        self.count += events
        if self.count >= self.target:
            self.reached.set()


class Stream:
    """One EventSource connection on a raw socket with a minimal HTTP/1.1 reading: records
    when each ``event: state`` arrives.  Plain sockets keep 10,000 connections cheap on the
    client side (a few KiB each, against tens of KiB for an httpx stream)."""

    MARK = b"event: state"

    __slots__ = ("body_seen", "error", "events", "headers_seen", "status", "tally")

    def __init__(self, tally: Tally) -> None:
        self.status = 0
        self.body_seen = trio.Event()
        self.headers_seen = trio.Event()
        self.events: list[float] = []
        self.error: str | None = None
        self.tally = tally

    async def run(self, url: str, authorization: str) -> None:
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        except OSError as exc:
            self.error = f"connect: {exc}"
            self.headers_seen.set()
            return
        try:
            async with stream:
                await self._read(stream, parts.netloc, path, authorization)
        except (OSError, trio.BrokenResourceError) as exc:
            self.error = f"connection: {exc}"
            self.headers_seen.set()

    async def _read(
        self, stream: trio.SocketStream, netloc: str, path: str, authorization: str
    ) -> None:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\n"
            f"Authorization: {authorization}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        )
        await stream.send_all(request.encode())
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(16384)
            if not data:
                self.error = "closed before headers"
                self.headers_seen.set()
                return
            buffer += data
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers_seen.set()
        if self.status != 200:
            self.error = f"HTTP {self.status}"
            return
        mark = self.MARK
        while True:
            if buffer:
                self.body_seen.set()
                count = buffer.count(mark)
                if count:
                    now = time.perf_counter()
                    self.events.extend([now] * count)
                    self.tally.add(count)
                    buffer = b""
                else:
                    buffer = buffer[-len(mark) :]
            data = await stream.receive_some(16384)
            if not data:
                self.error = "closed"
                return
            buffer += data


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards the hard one (enough for
    ``wanted`` descriptors if it can); returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not a Unix
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            return soft
        return new
    return soft if soft != resource.RLIM_INFINITY else wanted


def open_fds(pid: int | None) -> int | None:
    """How many file descriptors ``pid`` has open (None without a pid or outside Linux)."""
    if not pid:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time ``pid`` has used (None without a pid or outside Linux): the
    server's own work, which the other processes on a shared machine do not inflate."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def open_streams(
    nursery: trio.Nursery,
    count: int,
    url: str,
    authorization: str,
    tally: Tally,
    args: argparse.Namespace,
) -> tuple[list[Stream], dict[str, Any]]:
    """Open ``count`` streams in ``nursery``, at most ``--push-connect-concurrency`` being
    set up at a time (clients reconnecting in waves); wait until each has its response
    headers and first body bytes (or the bounds pass).  Returns the streams and figures.
    With ``--nodes``, the streams are spread over every node (the changes are made through
    ``--url``: what reaches the others crossed the nodes' fan-out)."""
    urls = [url, *(url.replace(args.url.rstrip("/"), n.rstrip("/"), 1) for n in nodes(args))]
    streams = [Stream(tally) for _ in range(count)]
    start = time.perf_counter()
    limiter = trio.Semaphore(args.push_connect_concurrency)

    async def open_one(i: int, s: Stream) -> None:
        async with limiter:
            nursery.start_soon(s.run, urls[i % len(urls)], authorization)
            await s.headers_seen.wait()

    with trio.move_on_after(args.push_connect_timeout):
        async with trio.open_nursery() as opening:
            for i, s in enumerate(streams):
                opening.start_soon(open_one, i, s)
    headers_seconds = time.perf_counter() - start
    # A server may answer the headers before it subscribes the stream: wait for each
    # stream's first body bytes (jmap-host sends a comment line) for a short while.
    with trio.move_on_after(5):
        for s in streams:
            if s.status == 200:
                await s.body_seen.wait()
    seconds = time.perf_counter() - start
    await trio.sleep(0.5)
    errors: dict[str, int] = {}
    for s in streams:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    figures: dict[str, Any] = {
        "connected": sum(1 for s in streams if s.status == 200 and s.error is None),
        "connect_seconds": round(seconds, 3),
        "headers_seconds": round(headers_seconds, 3),
        "connects_per_s": round(count / seconds, 1) if seconds > 0 else None,
    }
    if errors:
        figures["connect_errors"] = errors
    return streams, figures


Change = Callable[[int], Awaitable[Callable[[], Awaitable[Any]]]]


def flag_change(scen: Scenarios) -> Change:
    """A keyword change on one Email (set and removed alternately): the Email type's state
    changes, and nothing else in RFC 8621 terms (no new message: EmailDelivery does not)."""

    async def prepare(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: scen.flag_op(scen.client, [scen.flag_ids[0]])(i)

    return prepare


def delivery_change(scen: Scenarios, imported: list[str]) -> Change:
    """A new message: one small RFC 5322 message uploaded (untimed), then the timed
    ``Email/import`` into the Inbox, which changes EmailDelivery (RFC 8621 §1.5) as well
    as Email, Thread and Mailbox.  The created ids go to ``imported``."""

    async def prepare(i: int) -> Callable[[], Awaitable[Any]]:
        stamp = f"{time.time():.6f}"
        raw = (
            f"From: Push Bench <push@example.org>\r\nTo: bench@example.org\r\n"
            f"Subject: push fan-out {i} {stamp}\r\nMessage-ID: <push-{i}-{stamp}@example.org>\r\n"
            f"Date: {datetime.now(UTC).strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nA new message for scenario 9.\r\n"
        ).encode()
        blob = await scen.client.upload(raw)

        async def send() -> None:
            emails = {"m": {"blobId": blob, "mailboxIds": {scen.inbox: True}, "keywords": {}}}
            result = await scen.client.call("Email/import", emails=emails)
            created = (result.get("created") or {}).get("m")
            if created is None:
                raise Failed(f"Email/import: {result.get('notCreated')}")
            imported.append(created["id"])

        return send

    return prepare


async def push_rounds(
    scen: Scenarios,
    groups: list[tuple[list[Stream], Tally]],
    quiet: tuple[list[Stream], Tally] | None,
    change: Change,
    rounds: int,
    timeout: float,
    first: int,
    server_pid: int | None,
) -> dict[str, Any]:
    """``rounds`` times: one change, then wait until every open stream of ``groups`` has
    seen an ``event: state`` (or ``timeout``); the time from sending the change to each
    stream's first event after it is one delivery.  Streams of ``quiet`` follow types the
    change does not touch: any event they get is counted as ``unexpected``.  Each round
    also records the server's CPU time from the change until the last delivery."""
    expected = [([s for s in ss if s.status == 200 and s.error is None], t) for ss, t in groups]
    connected = [s for ss, _ in expected for s in ss]
    idle = [s for s in quiet[0] if s.status == 200 and s.error is None] if quiet else []
    latencies: list[float] = []
    per_round = []
    unexpected = 0
    for r in range(rounds):
        send = await change(first + r)
        baseline = [len(s.events) for s in connected]
        idle_baseline = sum(len(s.events) for s in idle)
        for streams, tally in expected:
            tally.expect(len(streams))
        cpu0 = cpu_seconds(server_pid)
        t0 = time.perf_counter()
        await send()
        with trio.move_on_after(timeout):
            for _, tally in expected:
                await tally.reached.wait()
        cpu1 = cpu_seconds(server_pid)
        seen = [
            s.events[b] - t0 for s, b in zip(connected, baseline, strict=True) if len(s.events) > b
        ]
        latencies += seen
        per_round.append(
            {
                "saw": len(seen),
                "p50_ms": round(sorted(seen)[len(seen) // 2] * 1000, 1) if seen else None,
                "max_ms": round(max(seen) * 1000, 1) if seen else None,
                "server_cpu_ms": (
                    round((cpu1 - cpu0) * 1000) if cpu0 is not None and cpu1 is not None else None
                ),
            }
        )
        await trio.sleep(0.5)
        unexpected += sum(len(s.events) for s in idle) - idle_baseline
    delivery = summarize(latencies, len(latencies), 1.0)
    del delivery["req_per_s"]
    result: dict[str, Any] = {
        "rounds": per_round,
        "missed": sum(len(connected) - r["saw"] for r in per_round),
        "delivery": delivery,
    }
    if quiet:
        result["idle_streams"] = len(idle)
        result["unexpected_events"] = unexpected
    return result


async def push_fanout(
    scen: Scenarios, args: argparse.Namespace, server_pid: int | None
) -> dict[str, Any]:
    """Scenario 9 on one set of connections, in three steps.

    1. ``--streams`` (1,000) streams following every type, ``--push-rounds`` keyword
       changes: the delivery figures.
    2. More streams up to ``--hold-streams`` (10,000) in all, the new ones following only
       EmailDelivery, which a keyword change does not touch (RFC 8621 §1.5): how many
       connect and how fast, the server's memory and descriptors with them all open, and
       the same keyword changes, which must reach the first 1,000 and none of the others
       (``with_idle``).
    3. ``--push-rounds`` new messages (``Email/import``), which change EmailDelivery: each
       must reach all the streams (``hold``).  The imported messages are destroyed after.
    """
    client = scen.client
    template = client.session.event_source_url.replace("{closeafter}", "no")
    template = template.replace("{ping}", "0")
    url = template.replace("{types}", "*")
    idle_url = template.replace("{types}", "EmailDelivery")
    authorization = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    total = max(args.streams, args.hold_streams)
    nofile = raise_nofile(total + 256)
    result: dict[str, Any] = {"streams": args.streams, "client_nofile": nofile}
    if nofile < total + 64:
        result["detail"] = f"client RLIMIT_NOFILE {nofile} is too low for {total} streams"
    tally, idle_tally = Tally(), Tally()
    rounds, timeout = args.push_rounds, args.push_timeout
    imported: list[str] = []
    async with trio.open_nursery() as nursery:
        streams, figures = await open_streams(
            nursery, args.streams, url, authorization, tally, args
        )
        result.update(figures)
        result["rss_mib_streams_open"] = rss_mib(server_pid)
        result.update(
            await push_rounds(
                scen, [(streams, tally)], None, flag_change(scen), rounds, timeout, 0, server_pid
            )
        )
        extra = total - args.streams
        if extra > 0:
            idle, figures = await open_streams(
                nursery, extra, idle_url, authorization, idle_tally, args
            )
            everyone = streams + idle
            hold: dict[str, Any] = {
                "streams": total,
                "connected": sum(1 for s in everyone if s.status == 200 and s.error is None),
                "opened_after_first": extra,
                **{k: v for k, v in figures.items() if k != "connected"},
                "rss_mib_open": rss_mib(server_pid),
                "server_fds": open_fds(server_pid),
            }
            result["with_idle"] = await push_rounds(
                scen,
                [(streams, tally)],
                (idle, idle_tally),
                flag_change(scen),
                rounds,
                timeout,
                rounds,
                server_pid,
            )
            try:
                hold.update(
                    await push_rounds(
                        scen,
                        [(streams, tally), (idle, idle_tally)],
                        None,
                        delivery_change(scen, imported),
                        rounds,
                        max(timeout, 60),
                        0,
                        server_pid,
                    )
                )
            except (Failed, JMAPError) as exc:
                hold["detail"] = f"cannot add a message: {exc}"
                hold["missed"] = None
            result["hold"] = hold
        if imported:
            await client.call("Email/set", destroy=imported)
        nursery.cancel_scope.cancel()
    return result


# -- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = set(args.scenarios.split(",")) if args.scenarios != "all" else set(ALL_SCENARIOS)
    loop = Loop(args.warmup, args.iterations, args.seconds)
    out: dict[str, Any] = {"scenarios": {}}
    scenarios: dict[str, Any] = out["scenarios"]
    client = await Client.connect(args.url, args.user, args.password, max_connections=1)
    scen = Scenarios(client, args)
    out["account"] = await scen.prepare()
    out["memory"] = {"rss_mib_at_rest": rss_mib(args.server_pid)}
    log = print if not args.quiet else (lambda *a, **k: None)

    with Floor() as floor:
        out["memory"]["floor_rss_mib"] = rss_mib(floor.pid)
        async with new_http(floor.url, args.user, args.password, max_connections=1) as fhttp:
            log("floor: sequential POST and GET")
            out["floor"] = await timed(floor_op(fhttp, floor.url), loop)
            out["floor_get"] = await timed(floor_op(fhttp, floor.url, get=True), loop)

        async def latency(
            key: str, name: str, op: Callable[[int], Awaitable[None]], get: bool = False
        ) -> None:
            """A sequential scenario; its ratio is to the floor's POST (GET for ``get``)."""
            floor_p50 = out["floor_get" if get else "floor"]["p50_ms"]
            log(f"scenario {key}: {name}")
            try:
                result = await timed(op, loop)
                result["status"] = "ok" if not result["errors"] else "errors"
            except Unsupported as exc:
                result = {"status": "unsupported", "detail": str(exc)}
            except (Failed, JMAPError) as exc:
                result = {"status": "failed", "detail": str(exc)}
            if result.get("p50_ms") and floor_p50:
                result["x_floor_p50"] = round(result["p50_ms"] / floor_p50, 2)
            scenarios[key] = {"name": name, **result}

        if "1" in wanted:
            await latency("1", "session", scen.session_op(client), get=True)
        if "2" in wanted:
            await latency("2", "Mailbox/get all", scen.mailboxes_op(client))
        if "3" in wanted:
            await latency("3", "open a mailbox", scen.open_op(client))
        if "4" in wanted:
            try:
                await scen.search_op(client, snippets=True)(0)
                await latency("4", "search + snippets", scen.search_op(client, True))
            except Unsupported:
                await latency("4", "search (no snippets)", scen.search_op(client, False))
                if scenarios["4"]["status"] == "ok":
                    scenarios["4"]["status"] = "partial"
                    scenarios["4"]["detail"] = "SearchSnippet/get: unknownMethod"
        if "5" in wanted:
            try:
                states = list(await scen.states(client))
                await latency("5", "sync, nothing changed", scen.sync_op(client, states, False))
            except Unsupported as exc:
                scenarios["5"] = {"name": "sync", "status": "unsupported", "detail": str(exc)}
        if "6" in wanted:
            await latency("6", "flag 50", scen.flag_op(client, scen.flag_ids[:50]))

        if "7" in wanted:
            log(f"scenario 7: import {args.import_count} messages")
            seed = args.import_seed if args.import_seed is not None else int(time.time())
            try:
                result = await load(
                    client, generate(args.import_count, seed), time_limit=args.import_seconds
                )
                result["status"] = "ok" if not result["failed"] else "errors"
            except Unsupported as exc:
                result = {"status": "unsupported", "detail": str(exc)}
            except JMAPError as exc:
                result = {"status": "failed", "detail": str(exc)}
            scenarios["7"] = {"name": "import", "seed": seed, **result}

        if "8" in wanted:
            mix: dict[str, Any] = {"name": "mix 3/5/6", "status": "ok", "levels": {}}
            for clients in args.clients:
                log(f"scenario 8: {clients} clients")
                opened: list[Client] = []
                floor_clients: list[Any] = []

                async def make_mix(
                    c: int, opened: list[Client] = opened
                ) -> Callable[[int], Awaitable[None]]:
                    # (with --nodes, client c on node c mod n, as a load balancer spreads them)
                    bases = [args.url, *nodes(args)]
                    base = bases[c % len(bases)]
                    http = new_http(base, args.user, args.password, max_connections=1)
                    session = client.session if base == args.url else on_node(client.session, base)
                    mix_client = Client(http, session)
                    opened.append(mix_client)
                    states = list(await scen.states(mix_client))
                    ops = [
                        scen.open_op(mix_client),
                        scen.sync_op(mix_client, states, True),
                        scen.flag_op(mix_client, scen.slice_for(c)),
                    ]

                    async def op(i: int) -> None:
                        await ops[i % 3](i // 3)

                    return op

                async def make_floor(
                    c: int, floor_clients: list[Any] = floor_clients
                ) -> Callable[[int], Awaitable[None]]:
                    http = new_http(floor.url, args.user, args.password, max_connections=1)
                    floor_clients.append(http)
                    return floor_op(http, floor.url)

                try:
                    level = await concurrent(clients, make_mix, args.mix_seconds)
                    floor_level = await concurrent(clients, make_floor, args.mix_seconds)
                except Unsupported as exc:
                    mix = {"name": "mix 3/5/6", "status": "unsupported", "detail": str(exc)}
                    break
                finally:
                    for c in opened:
                        await c.aclose()
                    for h in floor_clients:
                        await h.aclose()
                level["floor_req_per_s"] = floor_level["req_per_s"]
                level["floor_p50_ms"] = floor_level["p50_ms"]
                if floor_level["req_per_s"]:
                    level["throughput_vs_floor"] = round(
                        level["req_per_s"] / floor_level["req_per_s"], 3
                    )
                if level["p50_ms"]:
                    level["p99_over_p50"] = round(level["p99_ms"] / level["p50_ms"], 2)
                if level["errors"]:
                    mix["status"] = "errors"
                mix["levels"][str(clients)] = level
            scenarios["8"] = mix

        if "9" in wanted or "10" in wanted:
            out["memory"]["rss_mib_before_push"] = rss_mib(args.server_pid)
        if "9" in wanted:
            log(
                f"scenario 9: {args.streams} EventSource streams, "
                f"then {max(args.streams, args.hold_streams)} held"
            )
            push = await push_fanout(scen, args, args.server_pid)
            ok = push["connected"] == args.streams and push["missed"] == 0
            hold = push.get("hold")
            if hold is not None:
                ok = ok and hold["connected"] == hold["streams"] and hold["missed"] == 0
                quiet = push["with_idle"]
                ok = ok and quiet["missed"] == 0 and quiet["unexpected_events"] == 0
            scenarios["9"] = {"name": "push fan-out", "status": "ok" if ok else "errors", **push}
            out["memory"]["rss_mib_streams_open"] = push["rss_mib_streams_open"]
            out["memory"]["streams"] = args.streams
            if hold is not None:
                out["memory"]["rss_mib_hold_open"] = hold["rss_mib_open"]
                out["memory"]["hold_streams"] = hold["streams"]
        if "10" in wanted:
            scenarios["10"] = {"name": "memory", "status": "ok", **out["memory"]}
            if not args.server_pid:
                scenarios["10"]["status"] = "skipped"
                scenarios["10"]["detail"] = "no --server-pid"
    await client.aclose()
    return out


# -- output ----------------------------------------------------------------------------------


def nodes(args: argparse.Namespace) -> list[str]:
    """The further nodes of ``--nodes``."""
    return [n.strip() for n in args.nodes.split(",") if n.strip()]


def delivery_row(label: str, status: str, d: dict[str, Any], note: str) -> tuple:
    """A table row for a push delivery distribution (no rate, no floor ratio)."""
    return (label, status, d["n"], d["p50_ms"], d["p90_ms"], d["p99_ms"], "", "", note)


def table(out: dict[str, Any]) -> str:
    rows = [("scenario", "status", "n", "p50 ms", "p90 ms", "p99 ms", "req/s", "x floor", "notes")]
    for key, label in (("floor", "floor POST"), ("floor_get", "floor GET")):
        f = out[key]
        rows.append(
            (
                label,
                "ok",
                f["n"],
                f["p50_ms"],
                f["p90_ms"],
                f["p99_ms"],
                f["req_per_s"],
                1.0,
                "static JSON" + (" (ratio base for 1)" if key == "floor_get" else ""),
            )
        )
    for key, s in out["scenarios"].items():
        label = f"{key} {s['name']}"
        status = s["status"]
        if key == "7" and "messages_per_s" in s:
            r = s["import_request"]
            note = (
                f"{s['messages_per_s']} msg/s end to end, {s['import_only_messages_per_s']} msg/s "
                f"in Email/import; {s['imported']} imported, {s['failed']} failed"
            )
            rows.append(
                (
                    label,
                    status,
                    r["n"],
                    r["p50_ms"],
                    r["p90_ms"],
                    r["p99_ms"],
                    r["req_per_s"],
                    "",
                    note,
                )
            )
        elif key == "8" and "levels" in s:
            for clients, lv in s["levels"].items():
                note = (
                    f"{lv.get('throughput_vs_floor', '?')} of the floor's "
                    f"{lv['floor_req_per_s']} req/s; "
                    f"errors {lv['errors']}; p99/p50 {lv.get('p99_over_p50', '?')}"
                )
                rows.append(
                    (
                        f"8 mix, {clients} clients",
                        status,
                        lv["n"],
                        lv["p50_ms"],
                        lv["p90_ms"],
                        lv["p99_ms"],
                        lv["req_per_s"],
                        "",
                        note,
                    )
                )
        elif key == "9" and "delivery" in s:
            d = s["delivery"]
            note = (
                f"{s['connected']}/{s['streams']} streams, {len(s['rounds'])} changes, "
                f"missed {s['missed']}, connect {s['connect_seconds']} s"
            )
            rows.append(delivery_row(label, status, d, note))
            q = s.get("with_idle")
            if q is not None:
                d = q["delivery"]
                note = (
                    f"the first {s['connected']} streams with {q['idle_streams']} idle ones "
                    f"open, {len(q['rounds'])} changes, missed {q['missed']}, events to idle "
                    f"streams {q['unexpected_events']}"
                )
                rows.append(delivery_row("9 push, others idle", status, d, note))
            h = s.get("hold")
            if h is not None and "delivery" in h:
                d = h["delivery"]
                note = (
                    f"{h['connected']}/{h['streams']} streams held ({h['opened_after_first']} "
                    f"opened in {h['connect_seconds']} s), {len(h['rounds'])} new messages, "
                    f"missed {h['missed']}, max {d['max_ms']} ms, server "
                    f"{h.get('rss_mib_open')} MiB, {h.get('server_fds')} fds"
                )
                rows.append(delivery_row(f"9 push, {h['streams']} held", status, d, note))
        elif key == "10":
            note = (
                f"at rest {s.get('rss_mib_at_rest')} MiB; "
                f"before push {s.get('rss_mib_before_push')} MiB; "
                f"{s.get('streams', '?')} streams open {s.get('rss_mib_streams_open')} MiB; "
                f"{s.get('hold_streams', '?')} streams open {s.get('rss_mib_hold_open')} MiB; "
                f"floor {s.get('floor_rss_mib')} MiB"
            )
            rows.append((label, status, "", "", "", "", "", "", note))
        elif "p50_ms" in s:
            rows.append(
                (
                    label,
                    status,
                    s["n"],
                    s["p50_ms"],
                    s["p90_ms"],
                    s["p99_ms"],
                    s["req_per_s"],
                    s.get("x_floor_p50", ""),
                    s.get("detail", "") + (f" errors {s['errors']}" if s["errors"] else ""),
                )
            )
        else:
            rows.append((label, status, "", "", "", "", "", "", s.get("detail", "")))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for n, r in enumerate(rows):
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join(cells) + "  " + str(r[-1]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  -----")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default="http://127.0.0.1:8765", help="server base URL")
    p.add_argument(
        "--nodes",
        default="",
        help="comma-separated base URLs of further nodes of the same deployment (one "
        "database): scenario 8's clients and scenario 9's streams are spread over --url and "
        "these, the changes going through --url",
    )
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--server-pid", type=int, help="server process, for VmRSS (scenario 10)")
    p.add_argument("--scenarios", default="all", help="comma-separated numbers (all)")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls per scenario (20)")
    p.add_argument("--iterations", type=int, default=300, help="timed calls per scenario (300)")
    p.add_argument("--seconds", type=float, default=30, help="time bound per scenario (30)")
    p.add_argument("--import-count", type=int, default=1000, help="scenario 7 messages (1000)")
    p.add_argument("--import-seconds", type=float, default=180, help="scenario 7 bound (180)")
    p.add_argument("--import-seed", type=int, help="scenario 7 corpus seed (default: the time)")
    p.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10, 50],
        help="scenario 8 client counts (1,10,50)",
    )
    p.add_argument("--mix-seconds", type=float, default=10, help="scenario 8 per level (10)")
    p.add_argument("--streams", type=int, default=1000, help="scenario 9 streams (1000)")
    p.add_argument("--push-rounds", type=int, default=3, help="scenario 9 changes (3)")
    p.add_argument("--push-timeout", type=float, default=30, help="scenario 9 wait per change")
    p.add_argument("--push-connect-timeout", type=float, default=120)
    p.add_argument(
        "--hold-streams",
        type=int,
        default=10000,
        help="scenario 9: streams held open together after the --streams rounds (10000; "
        "no more than --streams skips this step)",
    )
    p.add_argument(
        "--push-connect-concurrency",
        type=int,
        default=64,
        help="scenario 9: streams being connected at once (64)",
    )
    p.add_argument("--out", type=Path, help="JSON file (default benchmarks/.results/run-*.json)")
    p.add_argument("--label", default="", help="free text stored in the JSON (e.g. server name)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI preset: every scenario for a few seconds on a small corpus, to check that the "
        "suite runs, not to measure (flags given explicitly still win)",
    )
    args = p.parse_args(argv)
    if args.quick:  # the preset becomes the defaults, so explicit flags override it
        p.set_defaults(
            warmup=3,
            iterations=100,
            seconds=2.0,
            import_count=100,
            mix_seconds=2.0,
            streams=100,
            push_rounds=1,
            hold_streams=200,  # scenario 9's held streams: a few more than --streams
        )
        args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = datetime.now(UTC)
    out = trio.run(run, args)
    out["meta"] = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "url": args.url,
        "nodes": nodes(args),
        "label": args.label,
        "server_pid": args.server_pid,
        "git_commit": git_commit(),
        "machine": machine(),
        "args": {k: v for k, v in vars(args).items() if k not in ("password", "out")},
    }
    path = args.out or HERE / ".results" / f"run-{started:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if not args.quiet:
        print()
        print(table(out))
        print(f"\nJSON: {path}")
    return out


if __name__ == "__main__":
    main()
