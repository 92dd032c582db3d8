"""A worked example: a small capability with a data type, a method, a config key and a route.

Copy this directory to start a plugin (see docs/plugin-guide.md).  It registers:

- the capability ``https://jmap-host.org/ext/example`` with a session object and a
  per-account object (so it appears in the session of every account);
- the data type ``Note``: declared once, it gets ``Note/get``, ``Note/changes``,
  ``Note/set``, ``Note/copy``, ``Note/query`` and ``Note/queryChanges`` from the host
  (RFC 8620 §5), stored in the table ``example_note``;
- the method ``Example/greet`` (arguments ``accountId`` and ``names``; returns one
  greeting per name), which honours ``maxObjectsInGet`` like a /get would;
- the key ``[plugins.example] greeting`` (default "Hello");
- an unauthenticated route ``GET /example/ping``;
- a command, ``jmap-host example greet NAME``.
"""

from __future__ import annotations

from typing import Any

import click

from jmap_host import (
    Account,
    Call,
    Capability,
    DataType,
    FilterCondition,
    Host,
    Key,
    Method,
    MethodError,
    Property,
    Request,
    Response,
    Route,
    SetContext,
    Str,
    check_get_size,
    hookimpl,
    json_response,
)

URN = "https://jmap-host.org/ext/example"

# Opt-in: installed with the server (it is the plugin guide's worked example and the host
# tests' sample type) but active only where the configuration asks for it, with
# `[plugins] opt-in = ["example"]`, so no real deployment advertises it to its clients.
JMAP_HOST_OPT_IN = True


def check_title(title: str) -> None:
    if not title.strip():
        raise ValueError("must not be blank")


def stamp(ctx: SetContext, note: dict[str, Any]) -> None:
    """Note/set create hook: the server sets ``created`` (runs inside the transaction)."""
    from datetime import UTC, datetime

    note["created"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NOTE = DataType(
    name="Note",
    table="example_note",
    properties=[
        Property("title", "String", required=True, sortable=True, validate=check_title),
        Property("body", "String", default=""),
        Property("done", "Boolean", default=False, sortable=True),
        Property("tags", "String[]", default=[]),
        Property("attachment", "BlobId|null"),
        Property("created", "UTCDate|null", server_set=True, sortable=True),
    ],
    filters=[
        FilterCondition("text", "title", "contains"),
        FilterCondition("done", "done"),
        FilterCondition("tag", "tags", "hasItem"),
    ],
    on_create=stamp,
    default_sort=("created",),
)


async def example_greet(call: Call) -> dict[str, Any]:
    """Example/greet: one greeting per name in ``names``."""
    names = call.args.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MethodError("invalidArguments", "names must be an array of strings")
    check_get_size(call, names)
    greeting = call.host.plugin_config("plugins.example.greeting")
    assert call.account is not None
    return {
        "accountId": call.account.id,
        "greetings": [f"{greeting}, {name}!" for name in names],
    }


def account_capability(host: Host, account: Account) -> dict[str, Any]:
    return {"maxNames": host.limits.max_objects_in_get}


async def ping(request: Request) -> Response:
    return json_response({"pong": True})


@hookimpl
def config_keys() -> list[tuple[str, Key]]:
    return [
        (
            "plugins.example",
            Key(
                "greeting",
                Str(non_empty=True),
                default="Hello",
                doc="the word Example/greet greets with",
            ),
        )
    ]


@hookimpl
def register_capabilities(host: Host) -> list[Capability]:
    return [
        Capability(
            urn=URN,
            session={"version": 1},
            account=account_capability,
            methods=[Method("Example/greet", example_greet)],
            datatypes=[NOTE],
        )
    ]


@hookimpl
def register_routes(host: Host) -> list[Route]:
    return [Route("/example/ping", ping, ("GET",), auth=False, name="example ping")]


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.group()
    def example() -> None:
        """Commands of the example plugin."""

    @example.command()
    @click.argument("name")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    def greet(name: str, config: str | None) -> None:
        """Print the greeting Example/greet would give NAME."""
        from jmap_host import load_host

        greeting = load_host(config).plugin_config("plugins.example.greeting")
        click.echo(f"{greeting}, {name}!")
