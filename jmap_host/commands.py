"""Helpers for plugins' commands (``jmap-host import``, ``jmap-host contacts import``...):
the configured host, and the principal a command acts for."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    from .directory import Principal
    from .host import Host


def host_for_command(config: str | None, package: str, what: str) -> Host:
    """The host of ``config`` with its store migrated, for a command of the plugin whose
    import package is ``package`` (``__name__.rpartition(".")[0]`` in its module).  A bad
    configuration, or the plugin (called ``what`` in the message) not active in it, prints
    why and exits with status 2."""
    import click

    from .config_schema import ConfigError
    from .host import StartupError, load_host

    try:
        host = load_host(config)
    except (ConfigError, StartupError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    module = sys.modules[package]
    if not any(p.obj is module for p in host.active_plugins):
        click.echo(f"the {what} plugin is not active in this configuration", err=True)
        sys.exit(2)
    host.store.migrate()
    return host


@overload
def principal_for_command(host: Host, name: str) -> Principal | None: ...
@overload
def principal_for_command(host: Host, name: str, required: Literal[True]) -> Principal: ...
def principal_for_command(host: Host, name: str, required: bool = False) -> Principal | None:
    """The principal called ``name`` (or receiving mail for it, with an ``@``), its account
    provisioned; None when the directory has neither, or with ``required`` the message
    "no user or group" and exit status 1.  Runs its own trio loop."""
    import trio

    from .capabilities import Account

    async def find() -> Any:
        principal = await host.directory.principal(name)
        if principal is None and "@" in name:
            principal = await host.directory.lookup_email(name)
        if principal is not None:
            account = Account(
                id=principal.account_id,
                name=principal.emails[0] if principal.emails else principal.name,
                owner=principal,
                is_personal=principal.kind == "individual",
            )
            await host.provision([account])
        return principal

    found = trio.run(find)
    if found is None and required:
        import click

        click.echo(f"no user or group {name!r} in the directory", err=True)
        sys.exit(1)
    return found
