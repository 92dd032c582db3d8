"""Load a generated corpus into a JMAP account through upload + Email/import (scenario 7).

Messages go in batches of 50: each message of a batch is uploaded (RFC 8620 §6.1; as many
at once as the session's maxConcurrentUpload allows, at most 4), then one ``Email/import``
(RFC 8621 §4.8) files the batch with its mailbox, keywords and receivedAt.  Mailboxes are
found by role, else by name, else created with ``Mailbox/set``.

    python benchmarks/load.py --url http://127.0.0.1:8765 --user bench --password bench \\
        --corpus benchmarks/.data/corpus-10000
    python benchmarks/load.py ... --generate 10000          # stream, nothing written to disk

It prints, and with ``--json`` writes, messages per second end to end (uploads included),
the time spent in Email/import alone, and the latency of each import request.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import DEFAULT_SEED, MAILBOXES, Message, generate, read_directory
from jmapclient import Client, JMAPError
from stats import summarize

BATCH = 50


async def resolve_mailboxes(client: Client) -> dict[str, str]:
    """Corpus mailbox key -> mailbox id on the server (creating what is missing)."""
    existing = (await client.call("Mailbox/get", ids=None))["list"]
    by_role = {m["role"]: m["id"] for m in existing if m.get("role")}
    by_name = {m["name"]: m["id"] for m in existing if m.get("parentId") is None}
    ids: dict[str, str] = {}
    create: dict[str, dict[str, Any]] = {}
    for key, (name, role) in MAILBOXES.items():
        if role and role in by_role:
            ids[key] = by_role[role]
        elif name in by_name:
            ids[key] = by_name[name]
        else:
            create[key] = {"name": name, "parentId": None}
            if role:
                create[key]["role"] = role
    if create:
        result = await client.call("Mailbox/set", create=create)
        for key in create:
            if key in (result.get("created") or {}):
                ids[key] = result["created"][key]["id"]
            else:  # e.g. a server that refuses the role: create it as a plain folder
                retry = await client.call(
                    "Mailbox/set", create={key: {"name": MAILBOXES[key][0], "parentId": None}}
                )
                if key not in (retry.get("created") or {}):
                    raise JMAPError(f"cannot create mailbox {key}: {result.get('notCreated')}")
                ids[key] = retry["created"][key]["id"]
    return ids


def _batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    it = iter(messages)
    while batch := list(itertools.islice(it, size)):
        yield batch


async def load(
    client: Client,
    messages: Iterable[Message],
    *,
    batch_size: int = BATCH,
    time_limit: float = float("inf"),
    progress: bool = False,
) -> dict[str, Any]:
    """Import ``messages``; returns the throughput figures.  Stops after ``time_limit``
    seconds (between batches), so a run on a slow server still ends."""
    mailboxes = await resolve_mailboxes(client)
    upload_limit = max(1, min(4, int(client.session.core.get("maxConcurrentUpload", 4))))
    imported = failed = octets = 0
    import_latencies: list[float] = []
    upload_seconds = 0.0
    errors: dict[str, int] = {}
    start = time.perf_counter()
    for batch in _batches(messages, batch_size):
        if time.perf_counter() - start > time_limit:
            break
        blob_ids: dict[int, str] = {}
        limiter = trio.Semaphore(upload_limit)

        async def upload(
            message: Message, limiter: trio.Semaphore = limiter, blob_ids: dict = blob_ids
        ) -> None:
            async with limiter:
                blob_ids[message.index] = await client.upload(message.raw)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for message in batch:
                nursery.start_soon(upload, message)
        t1 = time.perf_counter()
        upload_seconds += t1 - t0
        emails = {
            f"m{m.index}": {
                "blobId": blob_ids[m.index],
                "mailboxIds": {mailboxes[m.mailbox]: True},
                "keywords": m.keywords,
                "receivedAt": m.received_at,
            }
            for m in batch
        }
        result = await client.call("Email/import", emails=emails)
        import_latencies.append(time.perf_counter() - t1)
        created = result.get("created") or {}
        imported += len(created)
        octets += sum(len(m.raw) for m in batch if f"m{m.index}" in created)
        for error in (result.get("notCreated") or {}).values():
            failed += 1
            errors[error.get("type", "?")] = errors.get(error.get("type", "?"), 0) + 1
        if progress and imported and (imported // batch_size) % 20 == 0:
            rate = imported / (time.perf_counter() - start)
            print(f"  {imported} imported, {rate:.0f} msg/s", file=sys.stderr)
    elapsed = time.perf_counter() - start
    import_seconds = sum(import_latencies)
    return {
        "imported": imported,
        "failed": failed,
        "errors": errors,
        "octets": octets,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(imported / elapsed, 1) if elapsed else 0.0,
        "megabytes_per_s": round(octets / elapsed / 1e6, 2) if elapsed else 0.0,
        "upload_seconds": round(upload_seconds, 3),
        "import_seconds": round(import_seconds, 3),
        "import_only_messages_per_s": round(imported / import_seconds, 1) if import_seconds else 0,
        "import_request": summarize(import_latencies, len(import_latencies), import_seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765", help="server base URL")
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="bench")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="a directory written by generate.py")
    source.add_argument("--generate", type=int, metavar="N", help="stream N generated messages")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="with --generate")
    parser.add_argument("--limit", type=int, help="import at most this many messages")
    parser.add_argument("--time-limit", type=float, default=4 * 3600, help="seconds (4h)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    messages: Iterable[Message] = (
        read_directory(args.corpus) if args.corpus else generate(args.generate, args.seed)
    )
    if args.limit is not None:
        messages = itertools.islice(messages, args.limit)

    async def run() -> dict[str, Any]:
        client = await Client.connect(args.url, args.user, args.password)
        try:
            return await load(client, messages, time_limit=args.time_limit, progress=True)
        finally:
            await client.aclose()

    result = trio.run(run)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if result["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
