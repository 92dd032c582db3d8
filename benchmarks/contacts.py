"""Contacts scenarios (issue 14) against any JMAP server with RFC 9610, beside the floor.

  11 open an address book   ContactCard/query (inAddressBook, sort name/surname, limit 50)
                            + ContactCard/get of #ids (name, emails, phones, organizations)
  12 search                 ContactCard/query {"text": term} (limit 50) + ContactCard/get;
                            the term rotates over a common surname, a company, an accented
                            city and a phone fragment

It first fills the account's default address book with ``--count`` generated cards (10,000;
seeded, so every run has the same cards; skipped when they are there already), in
ContactCard/set batches of the server's maxObjectsInSet.  Figures are p50/p90/p99 and the
p50 as a multiple of the floor's (benchmarks/floor.py on the same machine, same run).

    .venv/bin/jmap-host run -c benchmarks/bench.toml &
    .venv/bin/python benchmarks/contacts.py --url http://127.0.0.1:8765 --user bench \\
        --password bench --count 10000
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

CONTACTS = "urn:ietf:params:jmap:contacts"
USING = ["urn:ietf:params:jmap:core", CONTACTS]
GIVEN = ["Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Greta", "Hugo", "Ida", "Jonas",
         "Karin", "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Yusuf"]
SURNAMES = ["Smith", "Müller", "García", "Rossi", "Dubois", "Kowalski", "Nakamura", "Olsen",
            "Novak", "Jensen", "Silva", "Schmidt", "Fischer", "Weber", "Meyer", "Wagner",
            "Becker", "Hoffmann", "Schulz", "Koch"] + [f"Name{i}" for i in range(180)]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
CITIES = ["Zürich", "Berlin", "Paris", "Kraków", "Lisboa", "Oslo", "Praha", "Wien"]
TERMS = ["smith", "globex", "zürich", "555-01"]
GET_PROPERTIES = ["name", "emails", "phones", "organizations", "addressBookIds"]


def generate(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cards = []
    for n in range(count):
        given, surname = rng.choice(GIVEN), rng.choice(SURNAMES)
        card: dict[str, Any] = {
            "uid": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
            "name": {"components": [{"kind": "given", "value": given},
                                    {"kind": "surname", "value": surname}]},
            "emails": {"e1": {"address": f"{given}.{surname}{n}@example.com".lower()}},
            "phones": {"p1": {"number": f"+1 555-{n % 100:02d}{n:05d}"}},
        }  # fmt: skip
        if rng.random() < 0.6:
            card["organizations"] = {"o1": {"name": rng.choice(COMPANIES) + " Inc."}}
        if rng.random() < 0.4:
            card["addresses"] = {"a1": {"components": [
                {"kind": "locality", "value": rng.choice(CITIES)}]}}  # fmt: skip
        if rng.random() < 0.2:
            card["notes"] = {"n1": {"note": f"met at {rng.choice(CITIES)} in {2000 + n % 25}"}}
        cards.append(card)
    return cards


async def call(client: Client, name: str, **args: Any) -> dict[str, Any]:
    responses = await client.request([[name, {"accountId": client.account, **args}, "0"]])
    answered, result, _ = responses[0]
    if answered != name:
        raise RuntimeError(f"{name}: {result}")
    return result


async def prepare(client: Client, count: int, seed: int, log: Any) -> str:
    """The default address book's id, holding ``count`` generated cards."""
    books = (await call(client, "AddressBook/get", ids=None))["list"]
    book = next(b["id"] for b in books if b.get("isDefault")) if books else None
    if book is None:
        raise RuntimeError("no default AddressBook")
    have = (await call(client, "ContactCard/query", filter={"inAddressBook": book},
                       calculateTotal=True, limit=0))["total"]  # fmt: skip
    if have >= count:
        log(f"{have} cards already there")
        return str(book)
    batch = int(client.session.core.get("maxObjectsInSet", 500))
    start = time.perf_counter()
    cards = generate(count, seed)[have:]
    for i in range(0, len(cards), batch):
        create = {f"c{j}": {**c, "addressBookIds": {book: True}}
                  for j, c in enumerate(cards[i : i + batch])}  # fmt: skip
        result = await call(client, "ContactCard/set", create=create)
        bad = [e for e in (result.get("notCreated") or {}).values() if e["type"] != "alreadyExists"]
        if bad:
            raise RuntimeError(f"cards refused: {bad[:3]}")
    log(f"loaded {len(cards)} cards in {time.perf_counter() - start:.1f}s")
    return str(book)


def open_book(client: Client, book: str) -> Any:
    async def op(i: int) -> None:
        responses = await client.request([
            ["ContactCard/query", {"accountId": client.account, "filter": {"inAddressBook": book},
                                   "sort": [{"property": "name/surname"}], "limit": 50}, "q"],
            ["ContactCard/get", {"accountId": client.account, "properties": GET_PROPERTIES,
                                 "#ids": {"resultOf": "q", "name": "ContactCard/query",
                                          "path": "/ids"}}, "g"],
        ])  # fmt: skip
        if len(responses[1][1].get("list", [])) != 50:
            raise Failed(f"open: {str(responses)[:300]}")

    return op


def search(client: Client) -> Any:
    async def op(i: int) -> None:
        term = TERMS[i % len(TERMS)]
        responses = await client.request([
            ["ContactCard/query", {"accountId": client.account, "filter": {"text": term},
                                   "limit": 50}, "q"],
            ["ContactCard/get", {"accountId": client.account, "properties": GET_PROPERTIES,
                                 "#ids": {"resultOf": "q", "name": "ContactCard/query",
                                          "path": "/ids"}}, "g"],
        ])  # fmt: skip
        if responses[0][0] != "ContactCard/query" or not responses[0][1]["ids"]:
            raise Failed(f"search {term}: {str(responses[0])[:300]}")

    return op


async def main(args: argparse.Namespace) -> dict[str, Any]:
    log = print if not args.quiet else (lambda *a, **k: None)
    client = await Client.connect(args.url, args.user, args.password, max_connections=1)
    client.using = USING
    loop = Loop(args.warmup, args.iterations, args.seconds)
    out: dict[str, Any] = {"count": args.count, "seed": args.seed}
    try:
        book = await prepare(client, args.count, args.seed, log)
        with Floor() as floor:
            async with new_http(floor.url, args.user, args.password, max_connections=1) as fh:
                out["floor"] = await timed(floor_op(fh, floor.url), loop)
        for key, name, op in (("11", "open an address book", open_book(client, book)),
                              ("12", "search", search(client))):  # fmt: skip
            log(f"scenario {key}: {name}")
            result = await timed(op, loop)
            result["x_floor_p50"] = round(result["p50_ms"] / out["floor"]["p50_ms"], 1)
            out[key] = {"name": name, **result}
    finally:
        await client.aclose()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8765")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--count", type=int, default=10000, help="cards in the address book (10000)")
    p.add_argument("--seed", type=int, default=9610)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    result = trio.run(main, args)
    for key in ("11", "12"):
        s = result[key]
        print(f"{key} {s['name']:<22} p50 {s['p50_ms']:7.2f} ms  p90 {s['p90_ms']:7.2f}  "
              f"p99 {s['p99_ms']:7.2f}  {s['x_floor_p50']:6.1f} x floor  errors {s['errors']}")
    print(f"floor p50 {result['floor']['p50_ms']:.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
