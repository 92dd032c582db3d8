"""The host: configuration, active plugins and the registries built from their hooks.

Everything here happens once, at start-up.  The per-request path reads the dicts built
here and never calls pluggy (ARCHITECTURE.md, rule 3).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from . import messaging
from .auth import Authenticator
from .blobs import open_blobstore
from .capabilities import CORE, Account, Capability, Method
from .cluster import HostEvents
from .config import Config, build_schema, check_plugins_table, read_toml, validate
from .config_schema import ConfigError, ConfigProblem, Key, Table
from .datatype import DataType
from .directory import Directory, DirectoryType
from .limits import ConcurrencyLimit
from .migrations import ACCOUNT_TABLE, host_migrations
from .plugins import (
    InstalledPlugin,
    StartupError,
    call_for_each,
    choose_active,
    collect,
    discover,
    make_manager,
    sort_plugins,
)
from .push import PushHub
from .routes import Protocol, Route
from .sharing import ShareIndex
from .standard import standard_methods
from .store import datatype_migrations, open_store

log = logging.getLogger("jmap_host")


@dataclass(frozen=True)
class Limits:
    """The RFC 8620 §2 core limits, as configured under ``[jmap.protocol]``."""

    max_size_upload: int
    max_concurrent_upload: int
    max_size_request: int
    max_concurrent_requests: int
    max_calls_in_request: int
    max_objects_in_get: int
    max_objects_in_set: int
    max_json_depth: int

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        p = config.data["jmap"]["protocol"]
        return cls(
            max_size_upload=p["upload"]["max-size"],
            max_concurrent_upload=p["upload"]["max-concurrent"],
            max_size_request=p["request"]["max-size"],
            max_concurrent_requests=p["request"]["max-concurrent"],
            max_calls_in_request=p["request"]["max-calls"],
            max_objects_in_get=p["get"]["max-objects"],
            max_objects_in_set=p["set"]["max-objects"],
            max_json_depth=p["request"]["max-json-depth"],
        )

    def session_object(self) -> dict[str, int]:
        return {
            "maxSizeUpload": self.max_size_upload,
            "maxConcurrentUpload": self.max_concurrent_upload,
            "maxSizeRequest": self.max_size_request,
            "maxConcurrentRequests": self.max_concurrent_requests,
            "maxCallsInRequest": self.max_calls_in_request,
            "maxObjectsInGet": self.max_objects_in_get,
            "maxObjectsInSet": self.max_objects_in_set,
        }


class Host:
    """A configured jmap-host.  Build one with :func:`load_host`."""

    def __init__(
        self,
        config: Config,
        active: list[InstalledPlugin],
        inactive: list[InstalledPlugin],
        directory_types: dict[str, DirectoryType],
        protocols: dict[str, Protocol],
    ):
        self.config = config
        self.active_plugins = active
        self.inactive_plugins = inactive
        self.pm = make_manager(active)
        self.directory_types = directory_types
        self.protocols = protocols
        self.limits = Limits.from_config(config)
        self.store = open_store(config.data["storage"])
        self.store.add_migrations(host_migrations)
        # Where blob bytes live (storage.blob.store); only jmap_host.blobs uses it.
        self.blobstore = open_blobstore(config.data["storage"], self.store)
        for _plugin, sets in call_for_each(self.pm, "migrations", host=self):
            for migration_set in sets:
                self.store.add_migrations(migration_set)
        self._provisioned: set[str] = set()
        self._provision_locks: dict[str, trio.Lock] = {}
        # False in a worker process ([server] workers): its supervisor migrated, once.
        self.migrate_at_startup = True
        self.nursery: trio.Nursery | None = None
        # Set when the server starts shutting down: long-lived streams end on it.
        self.closing = trio.Event()
        # Shared by every listener: limits are per user, whichever listener they come in by.
        self.api_concurrency = ConcurrencyLimit(self.limits.max_concurrent_requests)
        self.upload_concurrency = ConcurrencyLimit(self.limits.max_concurrent_upload)
        # Events for every node on the same database (the cluster bus: jmap_host.cluster);
        # the push hub, the share index and the authenticator hear of other nodes' changes
        # through them.
        self.events = HostEvents()
        self.authenticator = Authenticator(self)
        self.push = PushHub(self.events)
        self.events.on_missed(lambda: self.push.resync(self.store))
        # Who shares what with whom (RFC 9670), cached between share changes.
        self.shares = ShareIndex(self.events)
        server = config.data["server"]
        self.trusted_proxies = (
            server["proxy"]["trusted-networks"] if server["http"]["use-x-forwarded"] else []
        )
        self.capabilities: dict[str, Capability] = {}
        self.methods: dict[str, tuple[Method, str]] = {}
        # Every declared data type by name, with its capability's URN; and the types
        # Blob/lookup can search (RFC 9404 §4.3), with their URN and lookup.
        self.datatypes: dict[str, tuple[DataType, str]] = {}
        self.blob_lookups: dict[str, tuple[str, Any]] = {}
        self.routes: list[Route] = []
        self.directories: dict[str, Directory] = {}
        self._build_capabilities()
        for migration_set in datatype_migrations(self.capabilities.values()):
            self.store.add_migrations(migration_set)
        self._build_routes()
        self._build_directories()
        # Mail for plugins (jmap_host.messaging): the transport and the receivers.
        self.messaging = messaging.build(self.pm, self)

    # -- registries ----------------------------------------------------------------------

    def _build_capabilities(self) -> None:
        self.capabilities = collect(
            self.pm, "register_capabilities", lambda c: c.urn, "capability", host=self
        )
        from .blobapi import default_blob_lookup

        for cap in self.capabilities.values():
            for dt in cap.datatypes:
                cap.methods.extend(standard_methods(dt))
                if dt.name in self.datatypes:
                    other = self.capabilities[self.datatypes[dt.name][1]].plugin
                    raise StartupError(
                        f"data type {dt.name} is declared by both {other!r} and {cap.plugin!r}"
                    )
                self.datatypes[dt.name] = (dt, cap.urn)
                lookup = dt.blob_lookup
                if lookup is None and dt.has_blobs:
                    lookup = default_blob_lookup(dt)
                if lookup is not None:
                    self.blob_lookups[dt.name] = (cap.urn, lookup)
            for method in cap.methods:
                if method.name in self.methods:
                    other = self.capabilities[self.methods[method.name][1]].plugin
                    raise StartupError(
                        f"method {method.name} is registered by both {other!r} and {cap.plugin!r}"
                    )
                self.methods[method.name] = (method, cap.urn)
        if CORE not in self.capabilities:
            raise StartupError(f"no active plugin provides {CORE} (is jmap-host-core installed?)")
        # Push pseudo-types (Capability.push_types): name → EventSource event name.
        self.push_types: dict[str, str] = {}
        for cap in self.capabilities.values():
            for name, event in cap.push_types.items():
                if name in self.push_types or name in self.datatypes:
                    raise StartupError(
                        f"push type {name} of {cap.plugin!r} is already a push or data type"
                    )
                if event in ("state", "ping") or event in self.push_types.values():
                    raise StartupError(f"EventSource event name {event!r} is already taken")
                self.push_types[name] = event
        self.push.push_types = frozenset(self.push_types)
        # What sharing (jmap_host.sharing) asks on every request, known once: the shareable
        # types, each container's member types, and the capabilities shared accounts offer.
        self.shareable_types = frozenset(n for n, (dt, _) in self.datatypes.items() if dt.shareable)
        self.shared_members: dict[str, list[str]] = {}
        for name, (dt, _) in self.datatypes.items():
            if dt.shared_through is not None:
                self.shared_members.setdefault(dt.shared_through.container, []).append(name)
        self.shared_capabilities = frozenset(
            urn for urn, cap in self.capabilities.items()
            if urn == CORE or cap.in_shared_accounts
            or (cap.in_shared_accounts is None and any(dt.shareable for dt in cap.datatypes))
        )  # fmt: skip

    def _build_routes(self) -> None:
        from .app import host_routes  # the host's own routes; plugins' must not clash

        taken = {r.path: "the host" for r in host_routes()}
        for plugin, routes in call_for_each(self.pm, "register_routes", host=self):
            for route in routes:
                route.plugin = plugin
                if route.path in taken:
                    raise StartupError(
                        f"route {route.path} from {plugin!r} clashes with {taken[route.path]}"
                    )
                taken[route.path] = repr(plugin)
                self.routes.append(route)

    def _build_directories(self) -> None:
        for name, table in self.config.data["directory"].items():
            kind = self.directory_types[table["type"]]
            self.directories[name] = kind.create(name, table, self)

    async def provision(self, accounts: Iterable[Account]) -> None:
        """Run ``account_provisioned`` once per account, ever (see the hook's contract)."""
        for account in accounts:
            if account.id in self._provisioned:
                continue
            lock = self._provision_locks.setdefault(account.id, trio.Lock())
            async with lock:
                if account.id in self._provisioned:
                    continue
                known = await self.store.read(
                    lambda db, a=account: bool(
                        list(db[ACCOUNT_TABLE].rows_where("id = ?", [a.id], limit=1))
                    )
                )
                if not known:
                    for _plugin, result in call_for_each(
                        self.pm, "account_provisioned", host=self, account=account
                    ):
                        if inspect.isawaitable(result):
                            await result
                    row = {
                        "id": account.id,
                        "principal": account.owner.name,
                        "created": int(time.time()),
                    }
                    await self.store.write(
                        lambda db, r=row: db[ACCOUNT_TABLE].insert(r, ignore=True)
                    )
                self._provisioned.add(account.id)
                self._provision_locks.pop(account.id, None)

    @property
    def directory(self) -> Directory:
        """The directory that authenticates users (``storage.directory``)."""
        return self.directories[self.config.data["storage"]["directory"]]

    def plugin_config(self, dotted: str, default: Any = None) -> Any:
        """A validated configuration value by dotted path, e.g. ``"jmap.http.headers"``."""
        return self.config.get(dotted, default)

    # -- lifecycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        if self.migrate_at_startup:
            await trio.to_thread.run_sync(self.store.migrate)
        for plugin, result in call_for_each(self.pm, "startup", host=self):
            try:
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                raise StartupError(f"plugin {plugin!r} failed in startup: {exc}") from exc

    async def shutdown(self) -> None:
        for plugin, result in reversed(call_for_each(self.pm, "shutdown", host=self)):
            try:
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %s failed to shut down cleanly", plugin)
        self.store.close()


def load_host(
    path: str | Path | None = None, *, extra_plugins: Iterable[tuple[str, Any]] = ()
) -> Host:
    """Read and validate the configuration at ``path`` (the embedded default when None),
    activate plugins and build a :class:`Host`.

    ``extra_plugins`` are ``(name, object)`` pairs treated exactly like installed plugins,
    for tests that exercise a hook with a throw-away plugin.  Raises :class:`ConfigError`.
    """
    file, base_dir, doc = read_toml(path)
    installed = discover()
    names = {p.name for p in installed}
    for name, obj in extra_plugins:
        if name in names:
            raise ValueError(f"a plugin called {name!r} is already installed")
        from .plugins import implemented_hooks

        installed.append(InstalledPlugin(name=name, obj=obj, hooks=implemented_hooks(obj)))
    installed = sort_plugins(installed)
    active, inactive = choose_active(installed, check_plugins_table(doc, file, base_dir), file)
    pm = make_manager(active)

    directory_types: dict[str, DirectoryType] = collect(
        pm, "register_directories", lambda dt: dt.type, "directory type"
    )
    protocols: dict[str, Protocol] = collect(pm, "register_protocols", lambda p: p.name, "protocol")
    plugin_keys: list[tuple[str, Key]] = []
    for plugin, keys in call_for_each(pm, "config_keys"):
        for table, key in keys:
            key.owner = plugin
            plugin_keys.append((table, key))
    inactive_keys = []
    for p in inactive:
        fn = getattr(p.obj, "config_keys", None)
        if fn is not None and hasattr(fn, "jmap_host_impl"):
            inactive_keys += [(table, key.name, p.name) for table, key in fn()]
    try:
        schema = build_schema(
            plugin_keys,
            inactive_keys,
            {name: dt.keys for name, dt in directory_types.items()},
            list(protocols),
        )
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    config = validate(doc, schema, file, base_dir)
    return Host(config, active, inactive, directory_types, protocols)


__all__ = ["ConfigError", "ConfigProblem", "Host", "Limits", "StartupError", "Table", "load_host"]
