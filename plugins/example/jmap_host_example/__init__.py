"""A worked example: a small capability with one method, one config key and a route.

Copy this directory to start a plugin (see docs/plugin-guide.md).  It registers:

- the capability ``https://jmap-host.org/ext/example`` with a session object and a
  per-account object (so it appears in the session of every account);
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
    Host,
    Key,
    Method,
    MethodError,
    Request,
    Response,
    Route,
    Str,
    check_get_size,
    hookimpl,
    json_response,
)

URN = "https://jmap-host.org/ext/example"


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
