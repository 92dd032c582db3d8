"""Every hook a jmap-host plugin can implement.

Hooks run at start-up (and for the CLI), never on the per-request path: the host builds
its registries once and dispatches from plain dicts.  Implementations may accept any
subset of a hook's arguments (pluggy passes them by name), so arguments will be added but
never removed or renamed.  Each hook has a section in ``docs/plugin-hooks.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from sqlite_utils import Migrations

    from .capabilities import Account, Capability
    from .config_schema import Key
    from .directory import DirectoryType
    from .host import Host
    from .messaging import MailReceiver, MailTransport
    from .routes import Protocol, Route

hookspec = pluggy.HookspecMarker("jmap_host")
hookimpl = pluggy.HookimplMarker("jmap_host")


@hookspec
def config_keys() -> list[tuple[str, Key]]:
    """Declare the configuration keys this plugin reads.

    Return a list of ``(table, key)`` pairs: ``table`` is the dotted path of the TOML table
    the key lives in (``"jmap.http"``, ``"plugins.example"``), ``key`` a
    :class:`jmap_host.Key` with its kind, default, one-line doc and optional check.
    The host validates the whole file in one pass, so an operator sees every problem at
    once with the file and dotted key named, and unknown keys get a "did you mean" hint.
    Two plugins declaring the same key is a start-up error.  Read the validated values
    with ``host.config.get("jmap.http.headers")``.
    """


@hookspec
def register_capabilities(host: Host) -> list[Capability]:
    """Return the JMAP capabilities this plugin provides.

    Each :class:`jmap_host.Capability` carries its URN, its session capability object
    (under ``capabilities``), a function giving the per-account object (under
    ``accountCapabilities``, or None where the account does not support it) and its
    :class:`jmap_host.Method` list.  A URN or method name registered twice is a start-up
    error naming both plugins.  Called once, after the configuration is validated.
    """


@hookspec
def register_directories() -> list[DirectoryType]:
    """Return the directory types this plugin provides (``[directory."x"] type = ...``).

    A :class:`jmap_host.DirectoryType` names the ``type`` value, declares the schema of the
    rest of the table (a :class:`jmap_host.Table`) and a ``create(name, config, host)``
    factory returning an object with the :class:`jmap_host.Directory` methods.  Called
    before the configuration is validated, so the directory's keys are checked with the
    rest of the file.
    """


@hookspec
def register_protocols() -> list[Protocol]:
    """Return the listener protocols this plugin serves (``protocol = "..."``).

    A :class:`jmap_host.Protocol` with ``transport="http"`` is served by the host's HTTP
    app; ``transport="stream"`` gets a ``handler(stream, host, listener)`` per TCP
    connection.  A listener naming a protocol no active plugin serves is a config error.
    """


@hookspec
def register_routes(host: Host) -> list[Route]:
    """Return extra HTTP routes served on every HTTP listener.

    A :class:`jmap_host.Route` has a path pattern (``"/example/{name}"``), methods, an
    async handler taking a :class:`jmap_host.Request` and returning a
    :class:`jmap_host.Response`, and ``auth`` (default true: the host authenticates first
    and sets ``request.principal``).  A path that clashes with a host route or another
    plugin's is a start-up error.
    """


@hookspec
def asgi_wrapper(host: Host) -> Any:
    """Return a function that wraps the host's ASGI app, or None.

    The function receives an ASGI app and returns one: the natural shape for HTTP
    middleware (headers, CORS, logging).  Wrappers apply in plugin order, each around the
    previous, so the first active plugin's wrapper is innermost.  The wrapped app sees every
    HTTP request before authentication, including CORS preflight.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``jmap-host`` command line.

    ``cli`` is the top-level :class:`click.Group`; add commands or groups with
    ``@cli.command()``.  Installed plugins' commands are available whether or not the
    configuration activates them, so they must load the configuration themselves when they
    need it (``jmap_host.load_host(path)``).
    """


@hookspec
def migrations(host: Host) -> list[Migrations]:
    """Return this plugin's database migration sets (``sqlite_utils.Migrations``).

    A plugin owns its tables: give them one prefix (``mail_``, ``card_``) and create and
    change them only in migrations, one named set per plugin
    (``Migrations("jmap-host-mail")``), never by hand at run time.  The host applies every
    pending migration of every active plugin, in plugin order, before the start-up hooks
    run, and ``jmap-host migrate`` applies them explicitly; applied migrations are recorded
    and never run twice.  A migration gets a ``sqlite_utils.Database`` and runs in a
    transaction with the record of it being applied.
    """


@hookspec
def account_provisioned(host: Host, account: Account) -> Any:
    """Set up a new account's defaults (mailboxes, a default calendar, an address book).

    Called once per account, the first time a user of it logs in (for a group account,
    the first time any member logs in), before that request is served.  May return an
    awaitable, which the host awaits.  Use ``host.store.write`` so the defaults are
    durable before the client sees the account.  The account is recorded as provisioned
    only after every plugin's hook returned, so an exception here means the hook runs
    again at the next login: make it idempotent.
    """


@hookspec
def startup(host: Host) -> Any:
    """Run once when the server starts, before it accepts connections.

    May return an awaitable, which the host awaits (on trio).  Raising aborts the
    start-up with the error shown to the operator.  Use it to open connections, apply
    migrations or start background work (``host.nursery`` is available).
    """


@hookspec
def shutdown(host: Host) -> Any:
    """Run once when the server stops, after requests in flight have finished.

    May return an awaitable, which the host awaits.  Called in reverse plugin order; an
    exception is logged and does not stop other plugins' shutdown.
    """


@hookspec
def register_mail_transport(host: Host) -> MailTransport | None:
    """Return the :class:`jmap_host.MailTransport` that sends mail for every plugin, or None.

    The mail plugin returns one: ``enqueue(db, host, sender, mail_from, recipients,
    message)`` puts an RFC 5322 message on its durable outbound queue inside the caller's
    write transaction; once that commits, local recipients get it in their Inbox (their
    vacation reply, quota and push apply) and the others through the relay.  Other plugins
    send with ``jmap_host.messaging.send`` / ``enqueue`` and never call the transport
    themselves.  Two plugins returning a transport is a start-up error.  Called once.
    """


@hookspec
def register_mail_receivers(host: Host) -> list[MailReceiver]:
    """Return :class:`jmap_host.MailReceiver` objects: code to run on every message
    delivered to a local account.

    ``receive(db, host, principal, message, envelope_from)`` runs inside the delivery's
    write transaction, after the message is stored (so what it writes commits with it),
    in a savepoint of its own: an exception is logged and the message is delivered all
    the same.  It returns the names of the data types it changed in the account, for push.
    The calendars plugin reads iMIP (RFC 6047) messages this way.  A receiver name
    registered twice is a start-up error.  Called once.
    """
