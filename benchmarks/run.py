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
  9 push           N EventSource streams open, one change, time until every stream saw it
  10 memory        VmRSS of --server-pid at rest and with the N streams open

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
from jmapclient import Client, JMAPError, method_errors, new_http  # noqa: E402
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


class Stream:
    """One EventSource connection on a raw socket: records when each ``event: state``
    arrives.  (Plain sockets keep 1,000+ connections cheap on the client side.)"""

    MARK = b"event: state"

    def __init__(self) -> None:
        self.status = 0
        self.body_seen = trio.Event()
        self.headers_seen = trio.Event()
        self.events: list[float] = []
        self.error: str | None = None

    async def run(self, url: str, authorization: str) -> None:
        parts = urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        except OSError as exc:
            self.error = f"connect: {exc}"
            self.headers_seen.set()
            return
        async with stream:
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Authorization: {authorization}\r\nAccept: text/event-stream\r\n"
                "Cache-Control: no-cache\r\n\r\n"
            )
            await stream.send_all(request.encode())
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
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
            while True:
                if buffer:
                    self.body_seen.set()
                    count = buffer.count(self.MARK)
                    now = time.perf_counter()
                    self.events.extend([now] * count)
                    buffer = buffer[-len(self.MARK) :] if count == 0 else b""
                data = await stream.receive_some(65536)
                if not data:
                    self.error = "closed"
                    return
                buffer += data


async def push_fanout(
    scen: Scenarios, args: argparse.Namespace, server_pid: int | None
) -> dict[str, Any]:
    client = scen.client
    template = client.session.event_source_url
    url = template.replace("{types}", "*").replace("{closeafter}", "no").replace("{ping}", "0")
    authorization = "Basic " + base64.b64encode(f"{args.user}:{args.password}".encode()).decode()
    streams = [Stream() for _ in range(args.streams)]
    result: dict[str, Any] = {"streams": args.streams}
    async with trio.open_nursery() as nursery:
        connect_start = time.perf_counter()
        limiter = trio.Semaphore(64)  # connect in waves, as clients reconnecting would

        async def open_one(s: Stream) -> None:
            async with limiter:
                nursery.start_soon(s.run, url, authorization)
                await s.headers_seen.wait()

        with trio.move_on_after(args.push_connect_timeout):
            async with trio.open_nursery() as opening:
                for s in streams:
                    opening.start_soon(open_one, s)
        # A server may answer the headers before it subscribes the stream: wait for each
        # stream's first body bytes (jmap-host sends a comment line) for a short while.
        with trio.move_on_after(5):
            for s in streams:
                if s.status == 200:
                    await s.body_seen.wait()
        await trio.sleep(0.5)
        connected = [s for s in streams if s.status == 200 and s.error is None]
        result["connected"] = len(connected)
        result["connect_seconds"] = round(time.perf_counter() - connect_start, 3)
        errors: dict[str, int] = {}
        for s in streams:
            if s.error:
                errors[s.error] = errors.get(s.error, 0) + 1
        if errors:
            result["connect_errors"] = errors
        result["rss_mib_streams_open"] = rss_mib(server_pid)
        latencies: list[float] = []
        rounds = []
        target = [scen.flag_ids[0]]
        for r in range(args.push_rounds):
            baseline = [len(s.events) for s in connected]
            t0 = time.perf_counter()
            await scen.flag_op(client, target)(r)
            with trio.move_on_after(args.push_timeout):
                while any(len(s.events) <= b for s, b in zip(connected, baseline, strict=True)):
                    await trio.sleep(0.005)
            seen = [
                s.events[b] - t0
                for s, b in zip(connected, baseline, strict=True)
                if len(s.events) > b
            ]
            latencies += seen
            rounds.append(
                {"saw": len(seen), "max_ms": round(max(seen) * 1000, 1) if seen else None}
            )
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    result["rounds"] = rounds
    result["missed"] = sum(len(connected) - r["saw"] for r in rounds)
    result["delivery"] = summarize(latencies, len(latencies), 1.0)
    del result["delivery"]["req_per_s"]
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
                    http = new_http(args.url, args.user, args.password, max_connections=1)
                    mix_client = Client(http, client.session)
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
            log(f"scenario 9: {args.streams} EventSource streams")
            push = await push_fanout(scen, args, args.server_pid)
            ok = push["connected"] == args.streams and push["missed"] == 0
            scenarios["9"] = {"name": "push fan-out", "status": "ok" if ok else "errors", **push}
            out["memory"]["rss_mib_streams_open"] = push["rss_mib_streams_open"]
            out["memory"]["streams"] = args.streams
        if "10" in wanted:
            scenarios["10"] = {"name": "memory", "status": "ok", **out["memory"]}
            if not args.server_pid:
                scenarios["10"]["status"] = "skipped"
                scenarios["10"]["detail"] = "no --server-pid"
    await client.aclose()
    return out


# -- output ----------------------------------------------------------------------------------


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
            rows.append(
                (label, status, d["n"], d["p50_ms"], d["p90_ms"], d["p99_ms"], "", "", note)
            )
        elif key == "10":
            note = (
                f"at rest {s.get('rss_mib_at_rest')} MiB; "
                f"before push {s.get('rss_mib_before_push')} MiB; "
                f"{s.get('streams', '?')} streams open {s.get('rss_mib_streams_open')} MiB; "
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
