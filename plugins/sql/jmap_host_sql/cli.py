"""``jmap-host principal add|list|show|set-password|disable|enable|delete``.

Passwords are never taken from the command line, where other users can read them in the
process list and shells keep them in history: they are prompted for (hidden, twice) or read
as one line from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from jmap_host import (
    ConfigError,
    DirectoryUnavailable,
    Host,
    StartupError,
    account_id_for,
    email_problem,
    hash_password,
    load_host,
    name_problem,
    time_zone_known,
    tokens,
)

from . import schema
from .directory import SqlDirectory

CONFIG_HELP = "TOML configuration file (default: the embedded demo configuration)"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _open(config: str | None, directory: str | None) -> tuple[Host, SqlDirectory]:
    try:
        host = load_host(config)
    except ConfigError as exc:
        _fail(f"{exc}\n{len(exc.problems)} problem(s); nothing was changed.", 2)
    except StartupError as exc:
        _fail(f"{config or 'embedded default configuration'}: {exc}", 2)
    name = directory or host.config.data["storage"]["directory"]
    found = host.directories.get(name)
    if found is None:
        _fail(f"no [directory.{name!r}] table in the configuration", 2)
    if not isinstance(found, SqlDirectory):
        kind = host.config.data["directory"][name]["type"]
        _fail(f'directory {name!r} has type "{kind}"; these commands manage type "sql"', 2)
    try:
        host.store.migrate()
        found.backend.prepare_sync()
    except DirectoryUnavailable as exc:
        _fail(f"directory unavailable: {exc}")
    return host, found


def _managed(directory: SqlDirectory) -> None:
    if not directory.managed:
        _fail(
            f"directory {directory.name!r} reads your own tables (query/columns are overridden); "
            "manage its principals in that database"
        )


def _write(directory: SqlDirectory, fn: Callable[[Any], Any]) -> Any:
    try:
        return directory.backend.write_sync(fn)
    except schema.ManageError as exc:
        _fail(str(exc))
    except DirectoryUnavailable as exc:
        _fail(f"directory unavailable: {exc}")


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password must not be empty")
    return password


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--directory",
        default=None,
        metavar="NAME",
        help='the [directory."NAME"] to manage (default: storage.directory)',
    )(fn)
    return click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)(fn)


PASSWORD_STDIN = click.option(
    "--password-stdin",
    is_flag=True,
    help="read the password as one line from standard input instead of prompting",
)


@click.group()
def principal() -> None:
    """Users and groups of an SQL directory (type = "sql")."""


@principal.command("add")
@click.argument("name")
@_options
@click.option(
    "--class",
    "kind",
    type=click.Choice(["individual", "group", "resource", "location"]),
    default="individual",
    show_default=True,
)
@click.option("--email", multiple=True, help="an address; repeat for aliases (first is primary)")
@click.option("--description", default="", help="display name")
@click.option("--member-of", multiple=True, metavar="GROUP", help="a group; repeatable")
@click.option("--quota", type=click.IntRange(min=0), default=None, help="quota in octets")
@click.option("--time-zone", default=None, help="IANA time zone, e.g. Europe/Paris")
@PASSWORD_STDIN
def add(
    name: str,
    config: str | None,
    directory: str | None,
    kind: str,
    email: tuple[str, ...],
    description: str,
    member_of: tuple[str, ...],
    quota: int | None,
    time_zone: str | None,
    password_stdin: bool,
) -> None:
    """Add the user (asks for its password), group, resource or location NAME."""
    problem = name_problem(name)
    if problem:
        _fail(f"name {name!r}: {problem}", 2)
    for address in email:
        problem = email_problem(address)
        if problem:
            _fail(problem, 2)
    if kind != "individual" and password_stdin:
        _fail(f"a {kind} has no password", 2)
    if time_zone is not None and not time_zone_known(time_zone):
        _fail(f"{time_zone!r} is not an IANA time zone name (e.g. Europe/Paris)", 2)
    _host, d = _open(config, directory)
    _managed(d)
    secret = hash_password(_read_password(password_stdin)) if kind == "individual" else None
    new = schema.NewPrincipal(
        name=name,
        kind=kind,
        secret=secret,
        emails=list(email),
        description=description,
        member_of=list(member_of),
        quota=quota,
        time_zone=time_zone,
    )
    _write(d, lambda conn: schema.add(conn, new))
    click.echo(f"added {kind} {name!r} to directory {d.name!r}")


@principal.command("list")
@_options
def list_(config: str | None, directory: str | None) -> None:
    """List principals: name, class, enabled, addresses."""
    _host, d = _open(config, directory)
    _managed(d)
    try:
        rows = d.backend.read_sync(schema.list_all)
    except DirectoryUnavailable as exc:
        _fail(f"directory unavailable: {exc}")
    width = max((len(r.name) for r in rows), default=4)
    for r in rows:
        state = "enabled" if r.enabled else "disabled"
        click.echo(f"{r.name:<{width}}  {r.kind:<10}  {state:<8}  {', '.join(r.emails)}")


@principal.command("show")
@click.argument("name")
@_options
def show(name: str, config: str | None, directory: str | None) -> None:
    """Show one principal (never its password hash)."""
    host, d = _open(config, directory)
    try:
        record = d.load_any_sync(name)
        members = d.members_any_sync(name) if record and record.principal.kind == "group" else []
    except DirectoryUnavailable as exc:
        _fail(f"directory unavailable: {exc}")
    if record is None:
        _fail(f"no principal called {name!r} in directory {d.name!r}")
    p = record.principal
    lines = [
        ("name", p.name),
        ("class", p.kind),
        ("enabled", "yes" if record.enabled else "no"),
        ("description", p.description),
        ("emails", ", ".join(p.emails)),
        ("member-of", ", ".join(p.member_of)),
        ("quota", "none" if p.quota is None else str(p.quota)),
        ("account", account_id_for(p.name)),
    ]
    if p.kind == "group":
        lines.append(("members", ", ".join(members)))
    else:
        lines.append(("password", "set" if record.secret else "not set"))
        lines.append(("tokens", str(len(tokens.list_tokens(host.store, p.name)))))
    for key, value in lines:
        click.echo(f"{key + ':':<13}{value}")


@principal.command("set-password")
@click.argument("name")
@_options
@PASSWORD_STDIN
def set_password(
    name: str, config: str | None, directory: str | None, password_stdin: bool
) -> None:
    """Set the password of user NAME (asks for it)."""
    _host, d = _open(config, directory)
    _managed(d)
    secret = hash_password(_read_password(password_stdin))
    _write(d, lambda conn: schema.set_secret(conn, name, secret))
    click.echo(f"password of {name!r} changed")


def _set_enabled(name: str, config: str | None, directory: str | None, enabled: bool) -> None:
    _host, d = _open(config, directory)
    _managed(d)
    _write(d, lambda conn: schema.set_enabled(conn, name, enabled))
    click.echo(f"{'enabled' if enabled else 'disabled'} {name!r}")


@principal.command("disable")
@click.argument("name")
@_options
def disable(name: str, config: str | None, directory: str | None) -> None:
    """Disable NAME: its password and Bearer tokens stop working; nothing is deleted."""
    _set_enabled(name, config, directory, False)


@principal.command("enable")
@click.argument("name")
@_options
def enable(name: str, config: str | None, directory: str | None) -> None:
    """Enable NAME again."""
    _set_enabled(name, config, directory, True)


@principal.command("delete")
@click.argument("name")
@_options
def delete(name: str, config: str | None, directory: str | None) -> None:
    """Delete NAME, its addresses and memberships, and revoke its Bearer tokens."""
    host, d = _open(config, directory)
    _managed(d)
    _write(d, lambda conn: schema.delete(conn, name))
    revoked = 0
    for t in tokens.list_tokens(host.store, name):
        revoked += tokens.revoke(host.store, t.id)
    click.echo(f"deleted {name!r}; revoked {revoked} token(s)")
