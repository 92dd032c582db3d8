"""Reading the operator's TOML file and the host's own keys.

Key names follow the Stalwart documentation operators already know
(``[server.listener."jmap"] bind = [...]``, ``storage.directory``, ``[directory."x"] type``,
``jmap.protocol.request.max-calls``).  Plugins add keys through the ``config_keys`` hook;
see :func:`build_schema`.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit
import tomlkit.exceptions

from .config_schema import (
    REQUIRED,
    Bool,
    Choice,
    ConfigError,
    ConfigProblem,
    Context,
    Duration,
    Int,
    Invalid,
    Key,
    List,
    Map,
    Secret,
    Str,
    Table,
    join,
)
from .numbers import parse_digits
from .quota import config_table as quota_config_table

DEFAULT_CONFIG_NAME = "<embedded default configuration>"
# [server] workers: more processes than this on one machine only contend for its locks.
MAX_WORKERS = 64


@dataclass
class Config:
    """A validated configuration: ``data`` is a tree of plain values, defaults filled in."""

    file: str
    base_dir: Path
    data: dict[str, Any]

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def read_toml(path: str | Path | None) -> tuple[str, Path, dict[str, Any]]:
    """Parse the file (or the embedded default when ``path`` is None).

    Returns (name for messages, directory relative paths resolve against, document).
    """
    if path is None:
        text = resources.files("jmap_host").joinpath("default-config.toml").read_text("utf-8")
        name, base = DEFAULT_CONFIG_NAME, Path.cwd()
    else:
        p = Path(path)
        name, base = str(p), p.resolve().parent
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(name, [ConfigProblem("", "file not found")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(name, [ConfigProblem("", f"cannot read: {exc}")]) from None
    try:
        doc = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.TOMLKitError as exc:
        raise ConfigError(name, [ConfigProblem("", f"not valid TOML: {exc}")]) from None
    return name, base, doc


# -- listeners ---------------------------------------------------------------------------


def _check_bind(value: str) -> str:
    if value.startswith("unix:"):
        # A Unix domain socket (hypercorn's syntax; stream protocols such as LMTP too).
        if not value[5:].startswith("/"):
            raise Invalid(f'{value!r}: a Unix socket needs an absolute path, "unix:/run/x.sock"')
        return value
    host, sep, port = value.rpartition(":")
    number = parse_digits(port, max_digits=5)
    if not sep or number is None or number > 65535:
        raise Invalid(f'{value!r} is not an address:port such as "[::]:8080" or "0.0.0.0:8080"')
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise Invalid(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise Invalid(f'IPv6 addresses need brackets: "[{host}]:{port}"')
    elif host and host != "localhost":
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise Invalid(f"{host!r} is not an IP address (use a literal address)") from None
    else:
        raise Invalid(f'{value!r} needs an IP address, e.g. "127.0.0.1:{port}"')
    return value


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(
            f'{value!r} is not an absolute http(s) URL such as "https://mail.example.org"'
        )
    if parts.query or parts.fragment:
        raise Invalid("the public base URL must not have a query or fragment")
    return value.rstrip("/")


class _Listener(Table):
    def __init__(self) -> None:
        super().__init__(
            [
                Key(
                    "bind",
                    List(Str(), min_items=1),
                    doc='addresses to listen on, "IP:port" (IPv6 in brackets) or "unix:/path"',
                ),
                Key(
                    "url",
                    Str(),
                    default=None,
                    check=_check_url,
                    doc="public base URL (scheme, host, port, path) session URLs are built from; "
                    "when unset, taken from each request's Host header",
                ),
                Key(
                    "protocol",
                    Str(),
                    default="jmap",
                    doc="what this listener serves; plugins add protocols",
                ),
                Key(
                    "tls",
                    Table(
                        [
                            Key(
                                "certificate", Str(non_empty=True), doc="PEM certificate chain file"
                            ),
                            Key("private-key", Str(non_empty=True), doc="PEM private key file"),
                        ]
                    ),
                    default=None,
                    doc="serve HTTPS with this certificate and key",
                ),
                Key(
                    "graceful-timeout",
                    Duration(),
                    default=10.0,
                    doc="on SIGINT/SIGTERM, how long requests in flight may take to finish",
                ),
            ]
        )

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        out = super().check(value, key, ctx)
        for i, bind in enumerate(out.get("bind") or []):
            try:
                _check_bind(bind)
            except Invalid as exc:
                ctx.problem(f"{key}.bind[{i}]", str(exc))
        tls = out.get("tls")
        if tls and "certificate" in tls and "private-key" in tls:
            cert = _resolve(ctx.base_dir, tls["certificate"])
            pkey = _resolve(ctx.base_dir, tls["private-key"])
            tls["certificate"], tls["private-key"] = str(cert), str(pkey)
            for name, path in (("certificate", cert), ("private-key", pkey)):
                if not path.is_file():
                    ctx.problem(f"{key}.tls.{name}", f"file {str(path)!r} does not exist")
                    return out
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, pkey)
            except (ssl.SSLError, OSError) as exc:
                ctx.problem(f"{key}.tls", f"cannot load certificate and key: {exc}")
        return out


def _check_networks(values: list[str]) -> list[Any]:
    networks = []
    for i, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise Invalid(f'item {i} ({value!r}) is not a network such as "10.0.0.0/8"') from None
    return networks


def _check_upload_expiry(value: float) -> float:
    if value < 3600:
        raise Invalid(
            "must be at least 1h: RFC 8620 §6 keeps an unreferenced upload for at least an hour"
        )
    return value


def _at_least_a_day(seconds: float) -> None:
    if seconds < 86400:
        raise Invalid("must be at least 1d (clients keep states for days)")


def _resolve(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


# -- the whole file ----------------------------------------------------------------------


def plugins_table() -> Table:
    return Table(
        [
            Key(
                "enabled",
                List(Str()),
                default=None,
                doc="installed plugins to activate (default: all installed but the opt-in "
                "ones); core is always active",
            ),
            Key(
                "opt-in",
                List(Str()),
                default=[],
                doc="opt-in plugins (such as example) to activate as well",
            ),
            Key("disabled", List(Str()), default=[], doc="installed plugins not to activate"),
        ]
    )


def _limits() -> Table:
    def limit(name: str, default: int, doc: str, low: int = 1) -> Key:
        return Key(name, Int(min=low), default=default, doc=doc)

    return Table(
        [
            Key(
                "request",
                Table(
                    [
                        limit(
                            "max-size",
                            10_000_000,
                            "maxSizeRequest: octets in one API request",
                            1024,
                        ),
                        limit(
                            "max-calls", 16, "maxCallsInRequest: method calls in one API request"
                        ),
                        limit(
                            "max-concurrent",
                            4,
                            "maxConcurrentRequests: API requests per user at once",
                        ),
                        limit(
                            "max-json-depth", 128, "deepest JSON nesting accepted in a request", 8
                        ),
                    ]
                ),
                default={},
            ),
            Key("get", Table([limit("max-objects", 500, "maxObjectsInGet")]), default={}),
            Key("set", Table([limit("max-objects", 500, "maxObjectsInSet")]), default={}),
            Key(
                "upload",
                Table(
                    [
                        limit("max-size", 50_000_000, "maxSizeUpload: octets in one upload", 1024),
                        limit("max-concurrent", 4, "maxConcurrentUpload: uploads per user at once"),
                    ]
                ),
                default={},
            ),
        ]
    )


def build_schema(
    plugin_keys: list[tuple[str, Key]],
    inactive_keys: list[tuple[str, str, str]],
    directory_types: dict[str, Table],
    protocols: list[str],
) -> Table:
    """The schema of the whole file: the host's keys plus those of the active plugins.

    ``plugin_keys`` are (dotted table path, key) pairs from active plugins;
    ``inactive_keys`` are (table path, key name, plugin) from installed but inactive plugins,
    so that an operator who configures a disabled plugin is told so.
    """

    def check_protocol(value: str) -> None:
        if value not in protocols:
            served = ", ".join(repr(p) for p in sorted(protocols)) or "none"
            raise Invalid(f"no active plugin serves protocol {value!r} (served: {served})")

    listener = _Listener()
    listener.keys["protocol"].check = check_protocol

    root = Table(
        [
            Key(
                "server",
                Table(
                    [
                        Key(
                            "listener",
                            Map(listener, min_items=1),
                            default=REQUIRED,
                            doc="network listeners",
                        ),
                        Key(
                            "workers",
                            Int(min=1, max=MAX_WORKERS),
                            default=1,
                            doc="processes serving the listeners (more than one: a "
                            "supervisor starts them and restarts one that dies)",
                        ),
                        Key(
                            "http",
                            Table(
                                [
                                    Key(
                                        "use-x-forwarded",
                                        Bool(),
                                        default=False,
                                        doc="take the client address from X-Forwarded-For "
                                        "when the peer is a trusted proxy",
                                    )
                                ]
                            ),
                            default={},
                        ),
                        Key(
                            "proxy",
                            Table(
                                [
                                    Key(
                                        "trusted-networks",
                                        List(Str(), min_items=0),
                                        default=["127.0.0.0/8", "::1/128"],
                                        check=_check_networks,
                                        doc="reverse proxies whose X-Forwarded-For is believed",
                                    )
                                ]
                            ),
                            default={},
                        ),
                    ]
                ),
                doc="network listeners",
            ),
            Key("plugins", plugins_table(), default={}),
            Key(
                "storage",
                Table(
                    [
                        Key(
                            "type",
                            Choice("sqlite", "postgresql"),
                            default="sqlite",
                            doc='the database: "sqlite" (one file under path, one machine) or '
                            '"postgresql" (a server several nodes share: [storage.postgresql])',
                        ),
                        Key("postgresql", postgresql_table(), default={}),
                        Key(
                            "directory",
                            Str(),
                            default=None,
                            doc='which [directory."..."] authenticates users (default: the only one)',  # noqa: E501
                        ),
                        Key(
                            "path",
                            Str(non_empty=True),
                            default="jmap-data",
                            doc="data directory (relative to the config file)",
                        ),
                        Key(
                            "change-retention",
                            Duration(),
                            default=90 * 86400.0,
                            check=_at_least_a_day,
                            doc="how long the change log keeps changes: /changes and "
                            "/queryChanges work from any state this recent (RFC 8620 §5.2 "
                            "asks for 30 days); older states get cannotCalculateChanges",
                        ),
                        Key(
                            "busy-timeout",
                            Duration(),
                            default=5.0,
                            doc="how long a database access waits for a lock held by another "
                            "connection; past it the client gets serverUnavailable (or 503)",
                        ),
                        Key(
                            "blob",
                            Table(
                                [
                                    Key(
                                        "upload-expiry",
                                        Duration(),
                                        default=24 * 3600.0,
                                        check=_check_upload_expiry,
                                        doc="how long an unreferenced upload is kept "
                                        "(RFC 8620 §6: at least 1h)",
                                    ),
                                    Key(
                                        "store",
                                        Choice("directory", "database"),
                                        default="directory",
                                        doc='where blob bytes live: "directory" (files, '
                                        'see directory) or "database" (in PostgreSQL, only '
                                        'with storage.type = "postgresql")',
                                    ),
                                    Key(
                                        "directory",
                                        Str(non_empty=True),
                                        default=None,
                                        doc="the blob files' directory, e.g. a mount the "
                                        "nodes share (default: blobs under path; relative "
                                        "to the config file)",
                                    ),
                                ]
                            ),
                            default={},
                        ),
                    ]
                ),
                default={},
            ),
            Key("directory", Map(_DirectoryKind(directory_types), min_items=1), default=REQUIRED),
            Key(
                "authentication",
                Table(
                    [
                        Key(
                            "max-failures",
                            Int(min=1),
                            default=10,
                            doc="failed logins per client address",
                        ),
                        Key(
                            "failure-window",
                            Duration(),
                            default=300.0,
                            doc="...within this time, then 429",
                        ),
                        Key(
                            "realm",
                            Str(non_empty=True),
                            default="jmap-host",
                            doc="realm in WWW-Authenticate",
                        ),
                    ]
                ),
                default={},
            ),
            Key(
                "jmap",
                Table(
                    [
                        Key("protocol", _limits(), default={}),
                        Key("quota", quota_config_table(), default={}),
                        Key("http", Table(), default={}),
                        Key(
                            "session",
                            Table(
                                [
                                    Key(
                                        "core-primary-account",
                                        Bool(),
                                        default=True,
                                        doc="list the user's account under the core URN in "
                                        "primaryAccounts (see docs/operator-guide.md)",
                                    )
                                ]
                            ),
                            default={},
                        ),
                    ]
                ),
                default={},
            ),
        ],
        validate=_check_storage_directory,
    )
    for table_path, key in plugin_keys:
        _table_at(root, table_path).add(key)
    for table_path, name, plugin in inactive_keys:
        table = _table_at(root, table_path)
        if name not in table.keys:
            table.inactive[name] = plugin
    return root


def _table_at(root: Table, dotted: str) -> Table:
    table = root
    for part in dotted.split("."):
        if part not in table.keys:
            table.add(Key(part, Table(), default={}))
        kind = table.keys[part].kind
        if not isinstance(kind, Table):
            raise ValueError(f"config path {dotted!r} is not a table")
        table = kind
    return table


def _check_storage_directory(out: dict[str, Any], key: str, ctx: Context) -> None:
    directories = out.get("directory") or {}
    storage = out.setdefault("storage", {})
    name = storage.get("directory")
    if name is None:
        if len(directories) == 1:
            storage["directory"] = next(iter(directories))
        elif directories:
            ctx.problem("storage.directory", "several directories are configured; name one")
    elif name not in directories:
        from .config_schema import _did_you_mean

        ctx.problem(
            "storage.directory",
            f"no [directory.{name!r}] table is configured" + _did_you_mean(name, directories),
        )
    storage["path"] = str(_resolve(ctx.base_dir, storage.get("path", "jmap-data")))
    if storage.get("type") == "postgresql" and not storage.get("postgresql", {}).get("url"):
        ctx.problem("storage.postgresql.url", 'required when storage.type is "postgresql"')
    _check_blob_store(storage, ctx)


def _check_blob_store(storage: dict[str, Any], ctx: Context) -> None:
    """``[storage.blob]``: the database store needs the PostgreSQL one; the directory
    defaults to ``blobs`` under ``storage.path`` and resolves against the config file."""
    blob = storage.setdefault("blob", {})
    store = blob.setdefault("store", "directory")
    if store == "database" and storage.get("type") != "postgresql":
        ctx.problem(
            "storage.blob.store",
            '"database" keeps blobs in PostgreSQL: it needs storage.type = "postgresql"',
        )
    directory = blob.get("directory")
    if store == "database" and directory is not None:
        ctx.problem("storage.blob.directory", 'only used with storage.blob.store = "directory"')
    blob["directory"] = str(
        _resolve(ctx.base_dir, directory) if directory else Path(storage["path"]) / "blobs"
    )


def postgresql_table() -> Table:
    """``[storage.postgresql]``: the server of ``storage.type = "postgresql"``."""
    return Table(
        [
            Key(
                "url",
                Secret(non_empty=True),
                default=None,
                doc='libpq connection URL, e.g. "postgresql://jmap@db.example/jmap" (a '
                "password in it, or the whole URL, may come from %{env:...}% or %{file:...}%)",
            ),
            Key(
                "pool-size",
                Int(min=1, max=1000),
                default=10,
                doc="connections this process keeps open to the server at most",
            ),
            Key(
                "statement-timeout",
                Duration(),
                default=30.0,
                doc="longest a statement may run before the server cancels it (the client "
                "gets serverUnavailable)",
            ),
        ]
    )


class _DirectoryKind(Table):
    """``[directory."x"]``: ``type`` picks which plugin's keys apply to the rest."""

    def __init__(self, types: dict[str, Table]):
        super().__init__()
        self.types = types
        self.description = "a directory table"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            raise Invalid("expected a table")
        kind = value.get("type")
        if kind is None:
            raise Invalid(f"needs a type ({', '.join(repr(t) for t in sorted(self.types))})")
        if not self.types:
            ctx.problem(
                join(key, "type"), f"{kind!r}: no active plugin provides any directory type"
            )
            return {"type": kind}
        try:
            Choice(*sorted(self.types)).check(kind, join(key, "type"), ctx)
        except Invalid as exc:
            ctx.problem(join(key, "type"), str(exc) + " (no active plugin provides it)")
            return {"type": kind}
        table = self.types[kind]
        rest = {k: v for k, v in value.items() if k != "type"}
        out = table.check(rest, key, ctx)
        out["type"] = kind
        return out


def validate(doc: dict[str, Any], schema: Table, file: str, base_dir: Path) -> Config:
    """Check ``doc`` against ``schema``; raise :class:`ConfigError` listing every problem."""
    ctx = Context(file=file, base_dir=base_dir)
    data = schema.check(doc, "", ctx)
    if ctx.problems:
        raise ConfigError(file, ctx.problems)
    return Config(file=file, base_dir=base_dir, data=data)


def check_plugins_table(doc: dict[str, Any], file: str, base_dir: Path) -> dict[str, Any]:
    """Validate only ``[plugins]``: it decides which plugins' keys the rest may use."""
    ctx = Context(file=file, base_dir=base_dir)
    value = doc.get("plugins", {})
    data: dict[str, Any] = {}
    if isinstance(value, dict):
        # Sub-tables are plugins' own sections ([plugins.example]); checked with the rest.
        own = {k: v for k, v in value.items() if not isinstance(v, dict)}
        data = plugins_table().check(own, "plugins", ctx)
    else:
        ctx.problem("plugins", "expected a table")
    if ctx.problems:
        raise ConfigError(file, ctx.problems)
    return data
