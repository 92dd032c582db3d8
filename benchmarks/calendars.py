"""Calendars scenario (issue 15) against any JMAP server with JMAP Calendars, beside the
floor.

  13 month view   CalendarEvent/query {after, before: one month} with expandRecurrences
                  (limit: maxObjectsInGet, calculateTotal) + CalendarEvent/get of #ids
                  (title, start, duration, timeZone, utcStart, utcEnd); the month rotates
                  over a year

It first fills the account's default calendar with ``--count`` generated events (5,000;
seeded; 10 % recurring: weekly, monthly or daily with a count, in four time zones; the rest
one-offs spread over 2026), in CalendarEvent/set batches of the server's maxObjectsInSet
(skipped when they are there).  Figures: p50/p90/p99 and the p50 as a multiple of the
floor's (benchmarks/floor.py, same run).  jmap-host serves calendars only when the
configuration opts in (benchmarks/bench.toml does).

    .venv/bin/jmap-host run -c benchmarks/bench.toml &
    .venv/bin/python benchmarks/calendars.py --count 5000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from jmapclient import Client, new_http  # noqa: E402
from run import Failed, Floor, Loop, floor_op, timed  # noqa: E402

CALENDARS = "urn:ietf:params:jmap:calendars"
USING = ["urn:ietf:params:jmap:core", CALENDARS]
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
WORDS = ["planning", "review", "standup", "lunch", "dentist", "call", "workshop", "retro"]
GET_PROPERTIES = ["title", "start", "duration", "timeZone", "utcStart", "utcEnd"]


def generate(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for n in range(count):
        day = rng.randrange(365)
        month, mday = 1 + day // 31 % 12, 1 + day % 28
        event: dict[str, Any] = {
            "uid": f"bench-{n}",
            "title": f"{rng.choice(WORDS)} {n}",
            "start": f"2026-{month:02d}-{mday:02d}T{rng.randrange(7, 19):02d}:00:00",
            "timeZone": rng.choice(ZONES),
            "duration": rng.choice(["PT30M", "PT1H", "PT2H"]),
        }
        if n % 10 == 0:  # 10 % recurring
            frequency = rng.choice(["weekly", "monthly", "daily"])
            event["recurrenceRule"] = {"frequency": frequency,
                                       "count": {"weekly": 52, "monthly": 24, "daily": 90}[
                                           frequency]}  # fmt: skip
        events.append(event)
    return events


async def call(client: Client, name: str, **args: Any) -> dict[str, Any]:
    responses = await client.request([[name, {"accountId": client.account, **args}, "0"]])
    answered, result, _ = responses[0]
    if answered != name:
        raise RuntimeError(f"{name}: {result}")
    return result


async def prepare(client: Client, count: int, seed: int, log: Any) -> str:
    calendars = (await call(client, "Calendar/get", ids=None))["list"]
    calendar = next(c["id"] for c in calendars if c.get("isDefault"))
    have = (await call(client, "CalendarEvent/query", filter={"inCalendar": calendar},
                       calculateTotal=True, limit=0))["total"]  # fmt: skip
    if have >= count:
        log(f"{have} events already there")
        return str(calendar)
    batch = int(client.session.core.get("maxObjectsInSet", 500))
    start = time.perf_counter()
    events = generate(count, seed)[have:]
    for i in range(0, len(events), batch):
        create = {f"e{j}": {**e, "calendarIds": {calendar: True}}
                  for j, e in enumerate(events[i : i + batch])}  # fmt: skip
        result = await call(client, "CalendarEvent/set", create=create)
        bad = [e for e in (result.get("notCreated") or {}).values() if e["type"] != "alreadyExists"]
        if bad:
            raise RuntimeError(f"events refused: {bad[:3]}")
    log(f"loaded {len(events)} events in {time.perf_counter() - start:.1f}s")
    return str(calendar)


def month_view(client: Client) -> Any:
    # A month can hold more occurrences than one /get may fetch: the first page of them.
    page = int(client.session.core.get("maxObjectsInGet", 500))

    async def op(i: int) -> None:
        month = 1 + i % 12
        after = f"2026-{month:02d}-01T00:00:00"
        before = f"{2026 + month // 12}-{month % 12 + 1:02d}-01T00:00:00"
        responses = await client.request([
            ["CalendarEvent/query", {"accountId": client.account, "expandRecurrences": True,
                                     "filter": {"after": after, "before": before},
                                     "limit": page, "calculateTotal": True}, "q"],
            ["CalendarEvent/get", {"accountId": client.account, "properties": GET_PROPERTIES,
                                   "#ids": {"resultOf": "q", "name": "CalendarEvent/query",
                                            "path": "/ids"}}, "g"],
        ])  # fmt: skip
        if responses[1][0] != "CalendarEvent/get" or not responses[1][1]["list"]:
            raise Failed(f"month view: {str(responses)[:300]}")

    return op


async def main(args: argparse.Namespace) -> dict[str, Any]:
    log = print if not args.quiet else (lambda *a, **k: None)
    client = await Client.connect(args.url, args.user, args.password, max_connections=1)
    client.using = USING
    loop = Loop(args.warmup, args.iterations, args.seconds)
    out: dict[str, Any] = {"count": args.count, "seed": args.seed}
    try:
        await prepare(client, args.count, args.seed, log)
        with Floor() as floor:
            async with new_http(floor.url, args.user, args.password, max_connections=1) as fh:
                out["floor"] = await timed(floor_op(fh, floor.url), loop)
        log("scenario 13: month view")
        result = await timed(month_view(client), loop)
        result["x_floor_p50"] = round(result["p50_ms"] / out["floor"]["p50_ms"], 1)
        out["13"] = {"name": "month view", **result}
    finally:
        await client.aclose()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8765")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--count", type=int, default=5000, help="events in the calendar (5000)")
    p.add_argument("--seed", type=int, default=8984)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    result = trio.run(main, args)
    s = result["13"]
    print(f"13 {s['name']:<14} p50 {s['p50_ms']:7.2f} ms  p90 {s['p90_ms']:7.2f}  "
          f"p99 {s['p99_ms']:7.2f}  {s['x_floor_p50']:6.1f} x floor  errors {s['errors']}")
    print(f"floor p50 {result['floor']['p50_ms']:.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
