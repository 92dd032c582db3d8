"""What the groupware scenarios (contacts.py, calendars.py) share: their arguments, filling a
default container with generated records, timing each scenario beside the floor of the same
run, and printing and saving the figures."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from jmapclient import Client, new_http  # noqa: E402
from run import Floor, Loop, floor_op, timed  # noqa: E402


async def call(client: Client, name: str, **args: Any) -> dict[str, Any]:
    """One method call in the client's account; a method error stops the benchmark."""
    responses = await client.request([[name, {"accountId": client.account, **args}, "0"]])
    answered, result, _ = responses[0]
    if answered != name:
        raise RuntimeError(f"{name}: {result}")
    return result


async def fill(
    client: Client, container_type: str, member_type: str, filter_name: str, prop: str,
    records: Callable[[], list[dict[str, Any]]], count: int, log: Any,
) -> str:
    """The id of the account's default ``container_type`` once it holds ``count`` records of
    ``member_type`` (``records()`` generates them; those already there are not made again),
    created in batches of the server's maxObjectsInSet."""
    containers = (await call(client, f"{container_type}/get", ids=None))["list"]
    container = next((c["id"] for c in containers if c.get("isDefault")), None)
    if container is None:
        raise RuntimeError(f"no default {container_type}")
    have = (await call(client, f"{member_type}/query", filter={filter_name: container},
                       calculateTotal=True, limit=0))["total"]  # fmt: skip
    if have >= count:
        log(f"{have} {member_type} records already there")
        return str(container)
    batch = int(client.session.core.get("maxObjectsInSet", 500))
    start = time.perf_counter()
    todo = records()[have:count]
    for i in range(0, len(todo), batch):
        create = {f"r{j}": {**r, prop: {container: True}}
                  for j, r in enumerate(todo[i : i + batch])}  # fmt: skip
        result = await call(client, f"{member_type}/set", create=create)
        bad = [e for e in (result.get("notCreated") or {}).values() if e["type"] != "alreadyExists"]
        if bad:
            raise RuntimeError(f"records refused: {bad[:3]}")
    log(f"loaded {len(todo)} {member_type} records in {time.perf_counter() - start:.1f}s")
    return str(container)


async def run_scenarios(
    args: argparse.Namespace,
    using: list[str],
    prepare: Callable[[Client, Any], Any],
    scenarios: list[tuple[str, str, Callable[[Client, Any], Any]]],
) -> dict[str, Any]:
    """Connect, ``prepare(client, log)`` (its value goes to each scenario's op maker), time
    the floor and then each ``(key, name, make_op(client, prepared))``; the figures with
    each p50 as a multiple of the floor's."""
    log = print if not args.quiet else (lambda *a, **k: None)
    client = await Client.connect(args.url, args.user, args.password, max_connections=1)
    client.using = using
    loop = Loop(args.warmup, args.iterations, args.seconds)
    out: dict[str, Any] = {"count": args.count, "seed": args.seed}
    try:
        prepared = await prepare(client, log)
        with Floor() as floor:
            async with new_http(floor.url, args.user, args.password, max_connections=1) as fh:
                out["floor"] = await timed(floor_op(fh, floor.url), loop)
        for key, name, make_op in scenarios:
            log(f"scenario {key}: {name}")
            result = await timed(make_op(client, prepared), loop)
            result["x_floor_p50"] = round(result["p50_ms"] / out["floor"]["p50_ms"], 1)
            out[key] = {"name": name, **result}
    finally:
        await client.aclose()
    return out


def parser(description: str, count: int, seed: int, what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8765")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--count", type=int, default=count, help=f"{what} ({count})")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--quiet", action="store_true")
    return p


def main(
    args: argparse.Namespace, run: Callable[[argparse.Namespace], Any], keys: list[str]
) -> None:
    """Run, print a line per scenario and the floor, write the JSON if asked."""
    result = trio.run(run, args)
    for key in keys:
        s = result[key]
        print(f"{key} {s['name']:<22} p50 {s['p50_ms']:7.2f} ms  p90 {s['p90_ms']:7.2f}  "
              f"p99 {s['p99_ms']:7.2f}  {s['x_floor_p50']:6.1f} x floor  errors {s['errors']}")
    print(f"floor p50 {result['floor']['p50_ms']:.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
