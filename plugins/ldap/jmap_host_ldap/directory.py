"""The ``ldap`` directory: principals read from an LDAP server with ``ldap3``.

Every LDAP operation is blocking and runs in a worker thread (``trio.to_thread``), at most
``pool.max-connections`` at once; idle service connections are kept for reuse.  A
connection that fails is dropped and the operation retried once on a fresh one, trying
each URL in turn, so a restarted or failed-over server is picked up at the next request.
When no server answers, callers get :class:`DirectoryUnavailable` (the client sees 503).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap3
import trio
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from jmap_host import DirectoryUnavailable, Host, Principal, hash_password, verify_password

from .config import GROUP_CLASSES, LOCATION_CLASSES, RESOURCE_CLASSES

log = logging.getLogger("jmap_host_ldap")

T = TypeVar("T")

SUCCESS = 0
SIZE_LIMIT_EXCEEDED = 4
NO_SUCH_OBJECT = 32
INVALID_CREDENTIALS = 49
# Bind results that mean "this password does not log in", not "the server is in trouble".
BIND_REFUSED = {INVALID_CREDENTIALS, 48, 50, 53, 19}  # inappropriateAuth, access, unwilling
MEMBER_ATTRIBUTES = ("member", "uniqueMember")
# The most entries Principal/query lists from one directory (RFC 9670 §2.4).
LIST_LIMIT = 5000


@dataclass(frozen=True)
class Record:
    """An entry as the directory understands it."""

    dn: str
    principal: Principal
    secrets: tuple[str, ...]


class _Failed(Exception):
    """A connection-level failure inside a worker thread (retried, then unavailable)."""


class LdapDirectory:
    def __init__(self, name: str, config: dict[str, Any], host: Host | None = None):
        self.name = name
        self.label = f'directory "{name}"'
        self.base_dn: str = config["base-dn"]
        self.timeout: float = config["timeout"] or 5.0
        bind = config["bind"]
        self.bind_dn: str | None = bind["dn"]
        self.bind_secret: str | None = bind["secret"]
        self.method: str = bind["auth"]["method"]
        self.template: str = bind["auth"]["template"]
        self.filters: dict[str, str] = config["filter"]
        self.attrs: dict[str, list[str]] = config["attributes"]
        self.hash_mode = self.method in ("default", "hash")
        wanted = [a for key, names in self.attrs.items() if key != "secret" for a in names]
        if self.hash_mode:
            wanted += self.attrs["secret"]
        self.wanted = list(dict.fromkeys(wanted))
        tls_cfg = config["tls"]
        self.start_tls: bool = tls_cfg["enable"]
        tls = ldap3.Tls(
            validate=ssl.CERT_NONE if tls_cfg["allow-invalid-certs"] else ssl.CERT_REQUIRED,
            ca_certs_file=_resolve(tls_cfg["ca-file"], host),
        )
        self.urls: list[str] = list(config["url"])
        self.servers = [self._server(url, tls) for url in self.urls]
        self._preferred = 0
        self.max_connections: int = config["pool"]["max-connections"]
        self._limiter = trio.CapacityLimiter(self.max_connections)
        self._idle: list[ldap3.Connection] = []
        self._idle_lock = threading.Lock()
        cache = config["cache"]
        self.cache_entries: int = cache["entries"]
        self.ttl_positive: float = cache["ttl"]["positive"]
        self.ttl_negative: float = cache["ttl"]["negative"]
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def _server(self, url: str, tls: ldap3.Tls) -> ldap3.Server:
        parts = urlsplit(url)
        secure = parts.scheme.lower() == "ldaps"
        return ldap3.Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=self.timeout,
        )

    # -- connections (worker threads) ---------------------------------------------------------

    def _open(self, dn: str | None, password: str | None) -> tuple[ldap3.Connection | None, int]:
        """A connection bound as ``dn`` (anonymous if None), trying each server from the
        last one that worked.  Returns (connection, SUCCESS) or (None, bind result code) when
        the server refused the credentials; raises :class:`_Failed` when no server answers."""
        errors = []
        count = len(self.servers)
        for i in range(count):
            index = (self._preferred + i) % count
            server = self.servers[index]
            conn = ldap3.Connection(
                server,
                user=dn,
                password=password,
                authentication=ldap3.SIMPLE if dn else ldap3.ANONYMOUS,
                client_strategy=ldap3.SYNC,
                receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 wants whole seconds
                raise_exceptions=False,
                read_only=True,
                check_names=False,
                auto_referrals=False,
            )
            try:
                # ldap3 remembers a refused address for minutes; we fail over ourselves and
                # want a server that is back to be used at once.
                server.reset_availability()
                conn.open()
                if self.start_tls and not server.ssl and not conn.start_tls():
                    raise _Failed(f"StartTLS refused: {conn.result.get('description')}")
                ok = conn.bind()
            except Exception as exc:
                _close(conn)
                errors.append(f"{self.urls[index]}: {exc.__class__.__name__}: {exc}")
                continue
            code = conn.result.get("result", -1) if conn.result else -1
            if ok:
                self._preferred = index
                return conn, SUCCESS
            _close(conn)
            if code in BIND_REFUSED:
                self._preferred = index
                return None, code
            errors.append(f"{self.urls[index]}: bind: {conn.result.get('description')}")
        raise _Failed("; ".join(errors) or "no server")

    def _service(self, fn: Callable[[ldap3.Connection], T]) -> T:
        """Run ``fn`` on a pooled connection bound as ``bind.dn``; one retry on a fresh one."""
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        pooled = conn is not None
        while True:
            try:
                if conn is None:
                    conn, code = self._open(self.bind_dn, self.bind_secret)
                    if conn is None:
                        log.error(
                            "%s: the server refused bind.dn %r (result %d): check bind.dn "
                            "and bind.secret",
                            self.label,
                            self.bind_dn,
                            code,
                        )
                        raise DirectoryUnavailable(f"{self.label}: bind.dn refused")
                result = fn(conn)
            except DirectoryUnavailable:
                raise
            except Exception as exc:
                _close(conn)
                conn = None
                if not isinstance(exc, LDAPException | OSError | _Failed):
                    log.error("%s: unexpected error from ldap3", self.label, exc_info=True)
                if pooled:
                    pooled = False  # a stale pooled connection: retry once on a fresh one
                    continue
                log.warning("%s: LDAP server unavailable: %s", self.label, exc)
                raise DirectoryUnavailable(f"{self.label}: {exc}") from None
            with self._idle_lock:
                if len(self._idle) < self.max_connections:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                _close(conn)
            return result

    async def _run(self, fn: Callable[[ldap3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(self._service, fn, limiter=self._limiter)

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    # -- searches (worker threads) ------------------------------------------------------------

    def _search(
        self,
        conn: ldap3.Connection,
        base: str,
        flt: str,
        scope: Any,
        limit: int,
        attributes: list[str] | None = None,
    ) -> list[tuple[str, dict[str, list[str]]]]:
        active = self.filters["active"]
        if active:
            flt = f"(&{flt}{active})"
        conn.search(
            base,
            flt,
            search_scope=scope,
            attributes=attributes or self.wanted or ["1.1"],
            size_limit=limit,
            time_limit=max(1, int(self.timeout)),
        )
        code = conn.result.get("result", -1) if conn.result else -1
        if code == NO_SUCH_OBJECT:
            return []
        if code not in (SUCCESS, SIZE_LIMIT_EXCEEDED):
            # A bad filter, a missing right, a busy server: the operator must look, the
            # client may retry.  Never "no such user", which would be a wrong answer.
            raise _Failed(f"search {flt!r}: {conn.result.get('description')}")
        found = []
        for item in conn.response or []:
            if item.get("type") != "searchResEntry":
                continue
            found.append((item["dn"], _decode(item.get("raw_attributes") or {})))
        return found

    def _record(
        self, conn: ldap3.Connection, dn: str, attributes: dict[str, list[str]]
    ) -> Record | None:
        def values(key: str) -> list[str]:
            out: list[str] = []
            for attribute in self.attrs[key]:
                out += attributes.get(attribute.lower(), [])
            return out

        def first(key: str) -> str | None:
            for attribute in self.attrs[key]:
                found = attributes.get(attribute.lower())
                if found:
                    return found[0]
            return None

        name = first("name")
        if not name:
            log.warning("%s: %s has none of attributes.name %s", self.label, dn, self.attrs["name"])
            return None
        classes = {c.lower() for c in values("class")}
        kind = "individual"
        if classes & GROUP_CLASSES:
            kind = "group"
        elif classes & RESOURCE_CLASSES:
            kind = "resource"
        elif classes & LOCATION_CLASSES:
            kind = "location"
        emails: dict[str, str] = {}
        for address in values("email") + values("email-alias"):
            emails.setdefault(address.lower(), address)
        groups: dict[str, None] = {}
        for group_dn in values("groups"):
            group = self._name_of(conn, group_dn)
            if group:
                groups[group] = None
        if self.filters["member-of"]:
            flt = self.filters["member-of"].replace("?", escape_filter_chars(dn))
            for _dn, group_attrs in self._search(conn, self.base_dn, flt, ldap3.SUBTREE, 1000):
                group = self._record_name(group_attrs)
                if group:
                    groups[group] = None
        return Record(
            dn=dn,
            principal=Principal(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                emails=tuple(emails.values()),
                description=first("description") or "",
                member_of=tuple(groups),
                quota=_quota(first("quota")),
                time_zone=first("time-zone"),
            ),
            secrets=tuple(values("secret")) if self.hash_mode else (),
        )

    def _record_name(self, attributes: dict[str, list[str]]) -> str | None:
        for attribute in self.attrs["name"]:
            found = attributes.get(attribute.lower())
            if found:
                return found[0]
        return None

    def _name_of(self, conn: ldap3.Connection, dn: str) -> str | None:
        """The principal name of the entry at ``dn`` (a group named by memberOf)."""
        key = ("dn", dn.lower())
        hit, value = self._cached(key)
        if hit:
            return value
        found = self._search(conn, dn, "(objectClass=*)", ldap3.BASE, 1)
        name = self._record_name(found[0][1]) if found else None
        self._remember(key, name)
        return name

    def _by_filter(
        self, conn: ldap3.Connection, template: str, value: str, limit: int
    ) -> list[Record]:
        flt = template.replace("?", escape_filter_chars(value))
        out = []
        for dn, attributes in self._search(conn, self.base_dn, flt, ldap3.SUBTREE, limit):
            record = self._record(conn, dn, attributes)
            if record is not None:
                out.append(record)
        return out

    def _by_name(self, conn: ldap3.Connection, name: str) -> Record | None:
        records = self._by_filter(conn, self.filters["name"], name, 2)
        if len(records) > 1:
            log.warning(
                "%s: filter.name finds several entries for %r (%s): none is used",
                self.label,
                name,
                ", ".join(r.dn for r in records),
            )
            return None
        return records[0] if records else None

    def _by_email(self, conn: ldap3.Connection, address: str) -> list[Record]:
        records = self._by_filter(conn, self.filters["email"], address, 50)
        return sorted(records, key=lambda r: r.dn.lower())

    # -- the cache ----------------------------------------------------------------------------

    def _cached(self, key: tuple[str, str]) -> tuple[bool, Any]:
        entry = self._cache.get(key)
        if entry is None:
            return False, None
        if entry[0] <= time.monotonic():
            self._cache.pop(key, None)
            return False, None
        return True, entry[1]

    def _remember(self, key: tuple[str, str], value: Any) -> None:
        if self.cache_entries <= 0:
            return
        ttl = self.ttl_negative if value is None or value == [] else self.ttl_positive
        if ttl <= 0:
            return
        while len(self._cache) >= self.cache_entries:
            try:
                self._cache.pop(next(iter(self._cache)))
            except (StopIteration, KeyError, RuntimeError):
                break
        self._cache[key] = (time.monotonic() + ttl, value)

    async def _lookup(self, kind: str, value: str) -> Any:
        key = (kind, value if kind == "name" else value.lower())
        hit, found = self._cached(key)
        if hit:
            return found
        if kind == "name":
            found = await self._run(functools.partial(self._by_name, name=value))
        else:
            found = await self._run(functools.partial(self._by_email, address=value))
        self._remember(key, found)
        return found

    # -- the Directory protocol ---------------------------------------------------------------

    async def _for_login(self, username: str) -> Record | None:
        record = await self._lookup("name", username)
        if record is None and "@" in username:
            users = [r for r in await self._lookup("email", username) if not _is_group(r)]
            if len(users) == 1:  # an address shared by several users logs nobody in
                record = users[0]
        return record

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """Basic credentials checked by binding as the user, or against the hash attribute.

        An empty password never logs in: to an LDAP server a simple bind without one is an
        anonymous bind, which succeeds (RFC 4513 §5.1.2)."""
        if not username or not password:
            return None
        record = await self._for_login(username)
        if record is None or _is_group(record):
            if self.hash_mode:
                await trio.to_thread.run_sync(verify_password, password, _dummy_hash())
            return None
        if self.hash_mode:
            ok = await trio.to_thread.run_sync(_verify_any, password, record.secrets)
        else:
            dn = record.dn
            if self.method == "template":
                local, _, domain = username.partition("@")
                dn = (
                    self.template.replace("{username}", _rdn(record.principal.name))
                    .replace("{local}", _rdn(local))
                    .replace("{domain}", _rdn(domain))
                )
            ok = await trio.to_thread.run_sync(self._user_bind, dn, password, limiter=self._limiter)
        return record.principal if ok else None

    def _user_bind(self, dn: str, password: str) -> bool:
        try:
            conn, _code = self._open(dn, password)
        except _Failed as exc:
            log.warning("%s: LDAP server unavailable: %s", self.label, exc)
            raise DirectoryUnavailable(f"{self.label}: {exc}") from None
        if conn is None:
            return False
        _close(conn)
        return True

    async def principal(self, name: str) -> Principal | None:
        record = await self._lookup("name", name)
        return record.principal if record is not None else None

    async def members(self, group: str) -> list[Principal]:
        record = await self._lookup("name", group)
        if record is None or not _is_group(record):
            return []

        def q(conn: ldap3.Connection) -> list[Principal]:
            found: dict[str, Principal] = {}
            for attribute in self.attrs["groups"]:
                flt = f"({attribute}={escape_filter_chars(record.dn)})"
                for dn, attributes in self._search(conn, self.base_dn, flt, ldap3.SUBTREE, 1000):
                    member = self._record(conn, dn, attributes)
                    if member is not None:
                        found[member.principal.name] = member.principal
            if self.filters["member-of"]:
                entries = self._search(
                    conn, record.dn, "(objectClass=*)", ldap3.BASE, 1, list(MEMBER_ATTRIBUTES)
                )
                for attribute in MEMBER_ATTRIBUTES:
                    for dn in entries[0][1].get(attribute.lower(), []) if entries else []:
                        for dn2, attributes in self._search(
                            conn, dn, "(objectClass=*)", ldap3.BASE, 1
                        ):
                            member = self._record(conn, dn2, attributes)
                            if member is not None:
                                found[member.principal.name] = member.principal
            return [found[k] for k in sorted(found)]

        return await self._run(q)

    async def list_principals(self) -> list[Principal]:
        """Every entry filter.name finds with any name (its ``?`` as ``*``), at most
        LIST_LIMIT of them (RFC 9670 Principal/query); cached like single lookups."""
        hit, found = self._cached(("list", ""))
        if hit:
            return list(found)

        def q(conn: ldap3.Connection) -> list[Principal]:
            flt = self.filters["name"].replace("?", "*")
            out: dict[str, Principal] = {}
            for dn, attributes in self._search(conn, self.base_dn, flt, ldap3.SUBTREE, LIST_LIMIT):
                record = self._record(conn, dn, attributes)
                if record is not None:
                    out.setdefault(record.principal.name, record.principal)
            return [out[k] for k in sorted(out)]

        found = await self._run(q)
        self._remember(("list", ""), found)
        return list(found)

    async def lookup_email(self, address: str) -> Principal | None:
        """The principal that receives mail for ``address``: the entry whose email or alias
        attribute holds it (filter.email); with several, the first by DN."""
        if not address:
            return None
        records = await self._lookup("email", address)
        return records[0].principal if records else None

    async def probe(self) -> None:
        """Bind once at start-up, so a wrong URL or bind.dn shows in the log at once."""
        try:
            await self._run(lambda conn: None)
        except Exception as exc:
            log.warning(
                "ldap %s not reachable at start-up (logins answer 503): %s", self.label, exc
            )
        else:
            log.info("ldap %s: connected to %s", self.label, self.urls[self._preferred])


def _is_group(record: Record) -> bool:
    return record.principal.kind == "group"


def _rdn(value: str) -> str:
    return escape_rdn(value) if value else ""


def _close(conn: ldap3.Connection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(Exception):
        conn.unbind()


def _decode(raw: dict[str, list[bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for attribute, values in raw.items():
        # "memberOf;range=0-1499" (Active Directory) and option tags: the type before ';'.
        base = attribute.split(";", 1)[0].lower()
        out.setdefault(base, []).extend(
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
        )
    return out


def _quota(value: str | None) -> int | None:
    try:
        return None if value is None or value == "" else max(0, int(value))
    except ValueError:
        return None


def _verify_any(password: str, secrets: tuple[str, ...]) -> bool:
    if not secrets:
        verify_password(password, _dummy_hash())
        return False
    return any(verify_password(password, secret) for secret in secrets)


def _resolve(path: str | None, host: Host | None) -> str | None:
    if path is None:
        return None
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_absolute() and host is not None:
        p = host.config.base_dir / p
    return str(p)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password anyone has")
