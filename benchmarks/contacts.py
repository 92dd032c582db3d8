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
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import groupware  # noqa: E402
from jmapclient import Client  # noqa: E402
from run import Failed  # noqa: E402

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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async def prepare(client: Client, log: Any) -> str:
        return await groupware.fill(
            client, "AddressBook", "ContactCard", "inAddressBook", "addressBookIds",
            lambda: generate(args.count, args.seed), args.count, log,
        )  # fmt: skip

    return await groupware.run_scenarios(args, USING, prepare, [
        ("11", "open an address book", open_book),
        ("12", "search", lambda client, book: search(client)),
    ])  # fmt: skip


if __name__ == "__main__":
    options = groupware.parser(__doc__ or "", 10000, 9610, "cards in the address book")
    groupware.main(options.parse_args(), run, ["11", "12"])
