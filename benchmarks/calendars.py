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
floor's (benchmarks/floor.py, same run).

    .venv/bin/jmap-host run -c benchmarks/bench.toml &
    .venv/bin/python benchmarks/calendars.py --count 5000
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import groupware  # noqa: E402
from jmapclient import Client  # noqa: E402
from run import Failed  # noqa: E402

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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async def prepare(client: Client, log: Any) -> str:
        return await groupware.fill(
            client, "Calendar", "CalendarEvent", "inCalendar", "calendarIds",
            lambda: generate(args.count, args.seed), args.count, log,
        )  # fmt: skip

    return await groupware.run_scenarios(
        args, USING, prepare, [("13", "month view", lambda client, _: month_view(client))]
    )


if __name__ == "__main__":
    options = groupware.parser(__doc__ or "", 5000, 8984, "events in the calendar")
    options.set_defaults(warmup=10, iterations=200)
    groupware.main(options.parse_args(), run, ["13"])
