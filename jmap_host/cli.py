"""The ``jmap-host`` command line."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
import trio

from . import tokens
from .config import DEFAULT_CONFIG_NAME
from .config_schema import ConfigError
from .host import Host, StartupError, load_host
from .passwords import hash_password
from .plugins import discover, hook_names

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONFIG_HELP = "TOML configuration file (default: the embedded demo configuration)"


def _load(config: str | None) -> Host:
    try:
        return load_host(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        click.echo(f"{len(exc.problems)} problem(s); nothing was started.", err=True)
        sys.exit(2)
    except StartupError as exc:
        click.echo(f"{config or DEFAULT_CONFIG_NAME}: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="jmap-host")
def cli() -> None:
    """jmap-host: a plugin-based JMAP server."""


def _print_listeners(host: Host, config: str | None, bound: dict[str, list[str]]) -> None:
    # Every listener, every address it is bound to, and for each JMAP one the session
    # URL of each address (or the public url, when one is configured).
    listeners = host.config.data["server"]["listener"]
    for name, urls in bound.items():
        protocol = listeners[name]["protocol"]
        click.echo(f"listener {name!r} ({protocol}): " + ", ".join(urls))
        if protocol == "jmap":
            public = listeners[name].get("url")
            for url in [public] if public else urls:
                if url.startswith("http"):
                    click.echo(f"  JMAP session: {url}/.well-known/jmap")
    if config is None:
        click.echo(
            "Demo account: user 'demo', password 'demo' (embedded default configuration), e.g."
        )
        click.echo("  curl -u demo:demo http://127.0.0.1:8080/.well-known/jmap")
    click.echo("Press Ctrl+C to stop.")


def _cannot_start(exc: BaseException) -> None:
    click.echo(f"cannot start: {exc}", err=True)
    sys.exit(1)


@cli.command()
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option("--worker", is_flag=True, hidden=True, help="(started by the supervisor)")
def run(config: str | None, log_level: str, worker: bool) -> None:
    """Serve every configured listener until SIGINT or SIGTERM."""
    from .workers import WorkerSpec, supervise

    spec = WorkerSpec.from_environment() if worker else None
    if worker and spec is None:
        click.echo("--worker: only a supervisor starts workers ([server] workers)", err=True)
        sys.exit(2)
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    host = _load(config)
    from .server import run_until_signal

    several = spec is not None or host.config.data["server"]["workers"] > 1
    if several:  # several processes write to one log: each line says which
        name = f"worker {spec.index}" if spec else "supervisor"
        for handler in logging.getLogger().handlers:
            handler.setFormatter(
                logging.Formatter(
                    LOG_FORMAT.replace(" %(name)s", f" [{name} %(process)d] %(name)s")
                )
            )
    if spec is None and several:
        try:
            status = supervise(
                host, config, log_level, lambda bound: _print_listeners(host, config, bound)
            )
        except OSError as exc:
            _cannot_start(exc)
        sys.exit(status)

    def ready(bound: dict[str, list[str]]) -> None:
        if spec is not None:
            spec.report_ready()  # the supervisor prints the listeners, once
        else:
            _print_listeners(host, config, bound)

    if spec is not None:
        spec.prepare(host)
    try:
        trio.run(run_until_signal, host, ready, spec.lifeline_ends if spec else None)
    except (OSError, StartupError) as exc:
        _cannot_start(exc)
    except BaseExceptionGroup as group:
        # trio nests errors from the listeners' tasks in exception groups; an address in
        # use or a failing start-up hook is the operator's to fix, not a traceback.
        matched, _ = group.split((OSError, StartupError))
        if matched is None:
            raise
        leaf: BaseException = matched
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        _cannot_start(leaf)


@cli.command("check-config")
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def check_config(config: str | None) -> None:
    """Validate the configuration and exit (non-zero when it has problems)."""
    host = _load(config)
    listeners = host.config.data["server"]["listener"]
    click.echo(
        f"{host.config.file}: OK ({len(listeners)} listener(s), "
        f"{len(host.active_plugins)} active plugin(s))"
    )


@cli.command()
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def plugins(config: str | None) -> None:
    """List installed plugins, whether each is active, its version and hooks."""
    installed = discover()
    active: set[str] | None = None
    try:
        active = {p.name for p in load_host(config).active_plugins}
    except (ConfigError, StartupError) as exc:
        click.echo(f"(configuration not usable, active plugins unknown: {exc})", err=True)
    width = max((len(p.name) for p in installed), default=4)
    for p in installed:
        state = "?" if active is None else ("active" if p.name in active else "inactive")
        if p.opt_in and state != "active":
            state += " (opt-in)"
        click.echo(f"{p.name:<{width}}  {state:<8}  {p.distribution} {p.version}")
        click.echo(f"{'':<{width}}  hooks: {', '.join(p.hooks) or '-'}")


@cli.command("hooks")
def hooks() -> None:
    """List every hook a plugin can implement."""
    for name in hook_names():
        click.echo(name)


@cli.command("hash-password")
@click.password_option()
def hash_password_cmd(password: str) -> None:
    """Print an argon2id hash for a principal's `secret`."""
    click.echo(hash_password(password))


@cli.group()
def token() -> None:
    """App passwords: Bearer tokens per client, revocable one by one."""


def _store(config: str | None) -> Any:
    host = _load(config)
    host.store.migrate()
    return host


@token.command("create")
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--user", required=True, help="principal the token logs in as")
@click.option("--label", default="", help="what the token is for, e.g. 'phone'")
def token_create(config: str | None, user: str, label: str) -> None:
    """Create a token and print it (it is shown only once)."""
    host = _store(config)
    principal = trio.run(host.directory.principal, user)
    if principal is None or principal.kind != "individual":
        click.echo(
            f"no user {user!r} in directory {host.config.data['storage']['directory']!r}", err=True
        )
        sys.exit(1)
    record, secret = tokens.create(host.store, user, label)
    click.echo(f"created token {record.id} for {user}; use it as 'Authorization: Bearer <token>':")
    click.echo(secret)


@token.command("list")
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.option("--user", default=None, help="only this principal's tokens")
def token_list(config: str | None, user: str | None) -> None:
    """List tokens (ids and labels; secrets are not stored)."""
    import datetime

    host = _store(config)
    for t in tokens.list_tokens(host.store, user):
        created = datetime.datetime.fromtimestamp(t.created, datetime.UTC).isoformat(
            timespec="seconds"
        )
        click.echo(f"{t.id}  {t.principal}  {created}  {t.label}")


@token.command("revoke")
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.argument("token_id")
def token_revoke(config: str | None, token_id: str) -> None:
    """Revoke a token by id; requests using it fail from now on."""
    host = _store(config)
    if not tokens.revoke(host.store, token_id):
        click.echo(f"no token {token_id!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {token_id}")


@cli.command()
@click.option("-c", "--config", type=click.Path(dir_okay=False), help=CONFIG_HELP)
def migrate(config: str | None) -> None:
    """Apply pending database migrations of the host and active plugins."""
    host = _load(config)
    applied = host.store.migrate()
    click.echo("\n".join(applied) if applied else "nothing to apply")


@cli.group()
def storage() -> None:
    """Moving an installation between storage back ends."""


@storage.command("copy")
@click.option(
    "--from-config",
    "source",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="configuration of the store to copy (SQLite)",
)
@click.option(
    "--to-config",
    "target",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="configuration of the store to fill (PostgreSQL)",
)
@click.option("--force", is_flag=True, help="replace what the target holds")
def storage_copy(source: str, target: str, force: bool) -> None:
    """Copy every table of the host and its plugins, and the blob files, from the store
    of one configuration into another's (SQLite to PostgreSQL).  Stop the server first."""
    from .storagecopy import CopyRefused, StoreCopy

    source_host, target_host = _load(source), _load(target)
    show = lambda item: item  # noqa: E731  (the blob or table being copied)
    try:
        copy = StoreCopy.prepare(source_host, target_host, force=force)
        report = copy.report
        if report.migrated_source:
            click.echo(f"source: applied {len(report.migrated_source)} pending migration(s)")
        if report.skipped:
            click.echo("not copied (SQLite's own, full-text indexes): " + ", ".join(report.skipped))
        if report.left_out:
            click.echo("left out (--force): " + "; ".join(report.left_out))
        click.echo(
            f"{len(report.tables)} tables, {copy.total_rows} rows, "
            f"{len(copy.blob_files)} blob files"
        )
        try:
            blobs = click.progressbar(
                copy.blobs(), length=len(copy.blob_files), label="blobs", item_show_func=show
            )
            with blobs:
                for _ in blobs:
                    pass
            with click.progressbar(
                length=copy.total_rows, label="rows ", item_show_func=show
            ) as bar:
                for table, rows in copy.rows():
                    bar.update(rows, table)
        except BaseException:
            copy.close()
            raise
        report = copy.verify()
    except CopyRefused as exc:
        click.echo(f"storage copy: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"copied {sum(s for s, _ in report.counts.values())} rows in {len(report.counts)} "
        f"tables (counts verified), {report.blobs_copied} blob files "
        f"({report.blobs_present} already there)"
    )


def main() -> None:
    for plugin in discover():
        fn = getattr(plugin.obj, "register_commands", None)
        if fn is not None and hasattr(fn, "jmap_host_impl"):
            fn(cli=cli)
    cli()
