"""PushSubscription (RFC 8620 §7.2) and the delivery of its pushes; VAPID (RFC 9749).

A user's subscriptions live in ``host_push_subscription`` (host migration
``push_subscriptions``), tied to the principal that created them.  Creating one vets the
URL (:mod:`jmap_host.webpush`: https, every resolved address public) and, once the
transaction has committed, POSTs a ``PushVerification`` to it; nothing else goes to the URL
until the client has set the matching ``verificationCode``.  Then a worker follows the
user's accounts on the push hub and POSTs coalesced StateChange objects (filtered by
``types``; a push pseudo-type a plugin declares, e.g. ``CalendarAlert``, when ``types``
names it or is null: each such object is POSTed on its own, as published),
RFC 8291-encrypted when the subscription has ``keys`` and VAPID-signed when the
operator configured ``jmap.push.vapid.private-key``.  Delivery runs in the server's
background nursery (:func:`run_push_service`): a change never waits for a push.

Limits (§8.6): at most ``jmap.push.max-subscriptions`` per user (SetError ``forbidden``),
at most ``jmap.push.creation-limit`` creations per ``creation-window`` (``rateLimit``),
``expires`` capped at ``max-expiry`` (default 7 days, at least 48 hours); expired
subscriptions stop at once and are removed.  A destroyed subscription's URL and keys are
overwritten and deleted with SQLite's ``secure_delete``.
"""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h11
import sqlite_utils
import trio

from . import dates, sqldialect, webpush
from .capabilities import Call, Capability, Method
from .config_schema import Bool, Context, Duration, Int, Invalid, Key, Secret, Str
from .datatype import SetError
from .engine import check_get_size, set_arguments
from .errors import MethodError
from .push import state_change
from .session import push_scope
from .standard import is_id, value_ok

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jmap_host.push")

VAPID_URN = "urn:ietf:params:jmap:webpush-vapid"
TABLE = "host_push_subscription"
CREATIONS = "host_push_creation"

PROPERTIES = ("id", "deviceClientId", "url", "keys", "verificationCode", "expires", "types")
PRIVATE = ("url", "keys")  # §7.2.1: never returned
DEFAULT_GET = [p for p in PROPERTIES if p not in PRIVATE]
IMMUTABLE = ("id", "deviceClientId", "url", "keys")
MIN_MAX_EXPIRY = 48 * 3600  # §7.2: the maximum expiry MUST be at least 48 hours


# -- storage -------------------------------------------------------------------------------


def create_push_tables(db: sqlite_utils.Database) -> None:
    """Push subscriptions (per principal) and the log of creations the rate limit counts."""
    db[TABLE].create(
        {
            "id": str,
            "principal": str,
            "device_client_id": str,
            "url": str,
            "p256dh": str,
            "auth": str,
            "code": str,  # the code sent in the PushVerification
            "verification_code": str,  # what the client set; verified when it equals code
            "expires": float,
            "types": str,  # JSON array, or NULL for every type
            "vapid_key": str,  # applicationServerKey at creation ("" without VAPID)
            "created": float,
        },
        pk="id",
        not_null={"principal", "device_client_id", "url", "code", "expires", "created"},
    )
    db[TABLE].create_index(["principal"])
    db[CREATIONS].create({"principal": str, "at": float})
    db[CREATIONS].create_index(["principal", "at"])


def _rows(db: sqlite_utils.Database, where: str, args: list[Any]) -> list[dict[str, Any]]:
    return list(db[TABLE].rows_where(where, args))


def _erase(db: sqlite_utils.Database, ids: list[str]) -> None:
    """Overwrite, then delete, with the store erasing freed space (§7.2: the URL and keys
    of a destroyed subscription are erased from storage; sqldialect.erasing)."""
    if not ids:
        return
    marks = ",".join("?" * len(ids))
    with sqldialect.dialect(db).erasing(db):
        db.execute(
            f"UPDATE {TABLE} SET url = '', p256dh = NULL, auth = NULL, code = '', "
            f"verification_code = NULL WHERE id IN ({marks})",
            ids,
        )
        db.execute(f"DELETE FROM {TABLE} WHERE id IN ({marks})", ids)


def _to_json(row: dict[str, Any], properties: list[str]) -> dict[str, Any]:
    full = {
        "id": row["id"],
        "deviceClientId": row["device_client_id"],
        "verificationCode": row["verification_code"],
        "expires": utcdate(row["expires"]),
        "types": json.loads(row["types"]) if row["types"] is not None else None,
    }
    return {p: full[p] for p in properties}


def utcdate(epoch: float) -> str:
    return dates.utcdate(int(epoch))


def parse_utcdate(value: str) -> float:
    return dates.epoch(value)


# -- configuration -------------------------------------------------------------------------


class PemKey(Secret):
    """A PEM private key given inline, as ``%{file:...}%``/``%{env:...}%``, or as the path of
    a PEM file (relative to the configuration file); checked to be EC P-256."""

    description = "an EC P-256 private key: PEM text, a PEM file path or %{file:PATH}%"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        value = super().check(value, key, ctx)
        if "-----BEGIN" not in value:
            path = Path(value).expanduser()
            path = path if path.is_absolute() else ctx.base_dir / path
            try:
                value = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise Invalid(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
        try:
            webpush.load_vapid_key(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return value


def _check_max_expiry(value: float) -> float:
    if value < MIN_MAX_EXPIRY:
        raise Invalid("must be at least 48h (RFC 8620 §7.2)")
    return value


def push_config_keys() -> list[tuple[str, Key]]:
    """The ``[jmap.push]`` keys (registered by the core plugin)."""
    return [
        (
            "jmap.push",
            Key(
                "max-expiry",
                Duration(),
                default=7 * 86400.0,
                check=_check_max_expiry,
                doc="longest lifetime of a push subscription; later expires are capped (>= 48h)",
            ),
        ),
        (
            "jmap.push",
            Key("max-subscriptions", Int(min=1), default=15, doc="push subscriptions per user"),
        ),
        (
            "jmap.push",
            Key(
                "creation-limit",
                Int(min=1),
                default=10,
                doc="push subscriptions a user may create per creation-window (then rateLimit)",
            ),
        ),
        (
            "jmap.push",
            Key("creation-window", Duration(), default=3600.0, doc="see creation-limit"),
        ),
        (
            "jmap.push",
            Key(
                "allow-private-targets",
                Bool(),
                default=False,
                doc="TESTING ONLY: allow push URLs on loopback/private addresses and http://",
            ),
        ),
        (
            "jmap.push",
            Key("timeout", Duration(), default=10.0, doc="deadline of one push request"),
        ),
        (
            "jmap.push",
            Key("retries", Int(min=0), default=3, doc="retries of a failed push, with backoff"),
        ),
        (
            "jmap.push",
            Key("retry-delay", Duration(), default=2.0, doc="first backoff; doubles each retry"),
        ),
        (
            "jmap.push",
            Key("ttl", Int(min=0), default=86400, doc="TTL header of pushes, in seconds"),
        ),
        (
            "jmap.push.vapid",
            Key(
                "private-key",
                PemKey(),
                default=None,
                doc="VAPID (RFC 8292) EC P-256 private key; when set, pushes are signed and "
                "the session advertises urn:ietf:params:jmap:webpush-vapid",
            ),
        ),
        (
            "jmap.push.vapid",
            Key(
                "subject",
                Str(pattern=r"(mailto:|https://)\S+", hint="a mailto: or https: URI"),
                default="mailto:postmaster@localhost",
                doc="contact URI in the VAPID token (sub)",
            ),
        ),
    ]


def _settings(host: Host) -> dict[str, Any]:
    return host.config.data["jmap"]["push"]


_signers: weakref.WeakKeyDictionary[Host, webpush.VapidSigner | None] = weakref.WeakKeyDictionary()


def vapid_signer(host: Host) -> webpush.VapidSigner | None:
    """The host's VAPID signer, or None when no key is configured."""
    if host not in _signers:
        vapid = _settings(host).get("vapid") or {}
        pem = vapid.get("private-key")
        _signers[host] = webpush.VapidSigner(pem, vapid["subject"]) if pem else None
    return _signers[host]


def push_capabilities(host: Host) -> list[Capability]:
    """``urn:ietf:params:jmap:webpush-vapid`` (RFC 9749 §3) when a VAPID key is set."""
    signer = vapid_signer(host)
    if signer is None:
        return []
    return [
        Capability(
            urn=VAPID_URN,
            session={"applicationServerKey": signer.application_server_key},
            primary=False,
        )
    ]


def push_subscription_methods() -> list[Method]:
    return [
        Method("PushSubscription/get", push_get, takes_account=False),
        Method("PushSubscription/set", push_set, takes_account=False, writes=True),
    ]


# -- PushSubscription/get ------------------------------------------------------------------


async def push_get(call: Call) -> dict[str, Any]:
    """§7.2.1: the caller's own subscriptions; url and keys are never returned."""
    ids = call.args.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise MethodError("invalidArguments", "ids must be an array of ids or null")
        check_get_size(call, ids)
        ids = list(dict.fromkeys(ids))
    properties = call.args.get("properties")
    if properties is None:
        properties = DEFAULT_GET
    else:
        if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise MethodError("invalidArguments", "properties must be an array of strings or null")
        if any(p in PRIVATE for p in properties):
            raise MethodError("forbidden", "url and keys are write-only (RFC 8620 §7.2.1)")
        unknown = [p for p in properties if p not in PROPERTIES]
        if unknown:
            raise MethodError("invalidArguments", f"unknown properties: {', '.join(unknown)}")
        properties = list(dict.fromkeys(["id", *properties]))
    owner = call.request.principal.name
    now = time.time()
    rows = await call.host.store.read(
        lambda db: _rows(db, "principal = ? AND expires > ? ORDER BY created", [owner, now])
    )
    if ids is not None:  # in the order asked for, as every /get answers
        by_id = {r["id"]: r for r in rows}
        rows = [by_id[i] for i in ids if i in by_id]
    found = {r["id"] for r in rows}
    return {
        "list": [_to_json(r, properties) for r in rows],
        "notFound": [] if ids is None else [i for i in ids if i not in found],
    }


# -- PushSubscription/set ------------------------------------------------------------------


def _cap_expires(host: Host, value: Any, now: float, name: str = "expires") -> float:
    limit = now + _settings(host)["max-expiry"]
    if value is None:
        return float(int(limit))
    if not value_ok("UTCDate", value):
        raise SetError("invalidProperties", f"{name} must be a UTCDate", properties=[name])
    when = parse_utcdate(value)
    if when <= now:
        raise SetError(
            "invalidProperties",
            "expires is in the past (destroy the subscription instead)",
            properties=[name],
        )
    return float(int(min(when, limit)))


def _check_types(value: Any) -> str | None:
    if value is None:
        return None
    if not value_ok("String[]", value) or len(value) > 256:
        raise SetError("invalidProperties", "types must be String[]|null", properties=["types"])
    return json.dumps(list(dict.fromkeys(value)))


def _check_create(obj: Any) -> dict[str, Any]:
    """The synchronous checks of one create (not the URL's addresses)."""
    if not isinstance(obj, dict):
        raise SetError("invalidProperties", "the object must be a JSON object")
    unknown = [k for k in obj if k not in PROPERTIES]
    if unknown:
        raise SetError(
            "invalidProperties", "unknown properties: " + ", ".join(unknown), properties=unknown
        )
    if "id" in obj:
        raise SetError("invalidProperties", "id is server-set", properties=["id"])
    if obj.get("verificationCode") is not None:
        raise SetError(
            "invalidProperties",
            "verificationCode must be null when creating (RFC 8620 §7.2)",
            properties=["verificationCode"],
        )
    device = obj.get("deviceClientId")
    if not isinstance(device, str) or not device or len(device) > 255:
        raise SetError(
            "invalidProperties",
            "deviceClientId must be a non-empty string of at most 255 characters",
            properties=["deviceClientId"],
        )
    if not isinstance(obj.get("url"), str):
        raise SetError("invalidProperties", "url is required", properties=["url"])
    keys = obj.get("keys")
    if keys is not None:
        try:
            webpush.check_keys(keys)
        except ValueError as exc:
            raise SetError("invalidProperties", f"keys: {exc}", properties=["keys"]) from None
    return obj


async def push_set(call: Call) -> dict[str, Any]:
    """§7.2.2: create, verify, extend and destroy the caller's subscriptions."""
    host = call.host
    create, update, destroy = set_arguments(call)
    settings = _settings(host)
    allow_private = settings["allow-private-targets"]
    owner = call.request.principal.name

    # The URL checks resolve names: done before the transaction, on the event loop.
    not_created: dict[str, Any] = {}
    to_create: dict[str, dict[str, Any]] = {}
    for creation_id, obj in (create or {}).items():
        try:
            checked = _check_create(obj)
            try:
                await webpush.vet(checked["url"], allow_private=allow_private)
            except webpush.TargetRefused as exc:
                raise SetError("invalidProperties", f"url: {exc}", properties=["url"]) from None
            to_create[creation_id] = checked
        except SetError as exc:
            not_created[creation_id] = exc.to_json()
    signer = vapid_signer(host)

    def run(db: sqlite_utils.Database) -> dict[str, Any]:
        now = time.time()
        created: dict[str, Any] = {}
        new_rows: list[dict[str, Any]] = []
        for creation_id, obj in to_create.items():
            try:
                count = db.execute(
                    f"SELECT count(*) FROM {TABLE} WHERE principal = ? AND expires > ?",
                    [owner, now],
                ).fetchone()[0]
                if count >= settings["max-subscriptions"]:
                    raise SetError(
                        "forbidden",
                        f"at most {settings['max-subscriptions']} push subscriptions per user",
                    )
                window = now - settings["creation-window"]
                db.execute(f"DELETE FROM {CREATIONS} WHERE at <= ?", [window])
                recent = db.execute(
                    f"SELECT count(*) FROM {CREATIONS} WHERE principal = ? AND at > ?",
                    [owner, window],
                ).fetchone()[0]
                if recent >= settings["creation-limit"]:
                    raise SetError(
                        "rateLimit", "too many push subscriptions created recently; try later"
                    )
                expires = _cap_expires(host, obj.get("expires"), now)
                types = _check_types(obj.get("types"))
                keys = obj.get("keys")
                row = {
                    "id": "P" + secrets.token_hex(12),
                    "principal": owner,
                    "device_client_id": obj["deviceClientId"],
                    "url": obj["url"],
                    "p256dh": keys["p256dh"] if keys else None,
                    "auth": keys["auth"] if keys else None,
                    # 128 bits from the OS CSPRNG: not guessable by brute force (§8.6).
                    "code": secrets.token_hex(16),
                    "verification_code": None,
                    "expires": expires,
                    "types": types,
                    "vapid_key": signer.application_server_key if signer else "",
                    "created": now,
                }
                db[TABLE].insert(row)
                db[CREATIONS].insert({"principal": owner, "at": now})
                entry: dict[str, Any] = {"id": row["id"], "expires": utcdate(expires)}
                for name in ("keys", "types", "verificationCode"):
                    if name not in obj:
                        entry[name] = None
                created[creation_id] = entry
                new_rows.append(row)
            except SetError as exc:
                not_created[creation_id] = exc.to_json()
        new_ids = {k: v["id"] for k, v in created.items()}
        known_ids = {**call.request.created_ids, **new_ids}

        def resolve(key: str) -> str:
            return known_ids.get(key[1:], key) if key.startswith("#") else key

        destroy_ids = [resolve(i) for i in destroy or []]
        updated: dict[str, Any] = {}
        not_updated: dict[str, Any] = {}
        changed_rows: list[dict[str, Any]] = []
        for key, patch in (update or {}).items():
            record_id = resolve(key)
            if record_id in destroy_ids:
                not_updated[key] = {"type": "willDestroy"}
                continue
            try:
                result, row = _update(host, db, owner, record_id, patch, now)
                updated[record_id] = result
                changed_rows.append(row)
            except SetError as exc:
                not_updated[key] = exc.to_json()
        destroyed: list[str] = []
        not_destroyed: dict[str, Any] = {}
        for key, record_id in zip(destroy or [], destroy_ids, strict=True):
            if not is_id(record_id) or not _rows(
                db, "id = ? AND principal = ? AND expires > ?", [record_id, owner, now]
            ):
                not_destroyed[key] = {"type": "notFound"}
                continue
            _erase(db, [record_id])
            destroyed.append(record_id)
        return {
            "_new": new_rows,
            "_changed": changed_rows,
            "_new_ids": new_ids,
            "created": created or None,
            "updated": updated or None,
            "destroyed": destroyed or None,
            "notCreated": not_created or None,
            "notUpdated": not_updated or None,
            "notDestroyed": not_destroyed or None,
        }

    result = await host.store.write(run)
    call.request.created_ids.update(result.pop("_new_ids"))
    service = _services.get(host)
    new_rows, changed_rows = result.pop("_new"), result.pop("_changed")
    if service is not None:
        for row in new_rows:
            service.send_verification(row)
        for row in changed_rows:
            service.restart(row)
        for record_id in result["destroyed"] or []:
            service.stop(record_id)
    elif new_rows:
        log.warning("push delivery is not running: no PushVerification sent")
    return result


def _update(
    host: Host,
    db: sqlite_utils.Database,
    owner: str,
    record_id: str,
    patch: Any,
    now: float,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if not isinstance(patch, dict):
        raise SetError("invalidPatch", "a PatchObject must be a JSON object")
    found = _rows(db, "id = ? AND principal = ? AND expires > ?", [record_id, owner, now])
    if not is_id(record_id) or not found:
        raise SetError("notFound")
    row = dict(found[0])
    unknown = [p for p in patch if p.split("/")[0] not in PROPERTIES]
    if unknown:
        raise SetError(
            "invalidProperties", "unknown properties: " + ", ".join(unknown), properties=unknown
        )
    immutable = [p for p in patch if p.split("/")[0] in IMMUTABLE]
    if immutable:
        names = list(dict.fromkeys(p.split("/")[0] for p in immutable))
        raise SetError(
            "invalidProperties",
            "immutable (destroy and create a new subscription): " + ", ".join(names),
            properties=names,
        )
    nested = [p for p in patch if "/" in p]
    if nested:
        raise SetError("invalidPatch", f"{nested[0]!r} does not point into an object")
    result: dict[str, Any] = {}
    if "verificationCode" in patch:
        given = patch["verificationCode"]
        if not isinstance(given, str) or not secrets.compare_digest(
            given.encode(), row["code"].encode()
        ):
            raise SetError(
                "invalidProperties",
                "verificationCode does not match the code that was pushed",
                properties=["verificationCode"],
            )
        row["verification_code"] = given
    if "expires" in patch:
        row["expires"] = _cap_expires(host, patch["expires"], now)
        if patch["expires"] is None or utcdate(row["expires"]) != patch["expires"]:
            result["expires"] = utcdate(row["expires"])
    if "types" in patch:
        row["types"] = _check_types(patch["types"])
    db[TABLE].update(
        record_id,
        {k: row[k] for k in ("verification_code", "expires", "types")},
    )
    return result or None, row


# -- delivery ------------------------------------------------------------------------------

_services: weakref.WeakKeyDictionary[Host, PushService] = weakref.WeakKeyDictionary()


def push_service(host: Host) -> PushService | None:
    """The running delivery service of ``host`` (None outside :func:`run_push_service`)."""
    return _services.get(host)


# The lease of the subscriptions' workers and sweeper (one process delivers), and how
# often its holder reads the table for subscriptions created or changed elsewhere.
DELIVERY_LEASE = "host.push-delivery"
RESYNC_INTERVAL = 2.0
SWEEP_INTERVAL = 60.0  # at the latest; an expiry due sooner wakes the sweeper sooner


def _worker_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a worker depends on: a change to any of it restarts the worker."""
    return (row["verification_code"], row["expires"], row["types"], row["url"])


def _verified(row: dict[str, Any]) -> bool:
    return bool(row.get("verification_code")) and secrets.compare_digest(
        row["verification_code"].encode(), row["code"].encode()
    )


class PushService:
    """One per serving host: the PushVerification sends of the subscriptions created
    through this process, and, in the one process holding the lease
    :data:`DELIVERY_LEASE` (jmap_host.leases) among those sharing the store, a worker per
    verified subscription and the expiry sweeper, so that a change is pushed once however
    many processes serve the accounts.  The leader follows subscriptions created or
    changed through other processes by reading the table every :attr:`resync_interval`."""

    def __init__(self, host: Host, nursery: trio.Nursery):
        self.host = host
        self.nursery = nursery
        self.settings = _settings(host)
        self.signer = vapid_signer(host)
        self.workers: dict[str, trio.CancelScope] = {}
        # What each worker was started with: a row changed elsewhere restarts it.
        self.running: dict[str, tuple[Any, ...]] = {}
        self.stats: Counter[str] = Counter()
        # Alone on its store, this process hears of every change through restart(); the
        # table is read again only for the expiry sweep's sake.
        alone = host.store.dialect.name == "sqlite" and host.config.data["server"]["workers"] == 1
        self.resync_interval = SWEEP_INTERVAL if alone else RESYNC_INTERVAL
        self._leading: trio.Nursery | None = None  # the workers', while the lease is ours
        self._wake = trio.Event()

    # -- lifecycle of subscriptions ----------------------------------------------------

    def send_verification(self, row: dict[str, Any]) -> None:
        # (Sent by the process that created the subscription: once, whoever leads.)
        obj = {
            "@type": "PushVerification",
            "pushSubscriptionId": row["id"],
            "verificationCode": row["code"],
        }
        self.nursery.start_soon(self._deliver, row, obj, "verification")
        self._wake.set()

    def restart(self, row: dict[str, Any]) -> None:
        if self._leading is None:
            return  # another process delivers: it reads the change at its next resync
        self.stop(row["id"])
        if _verified(row):
            scope = trio.CancelScope()
            self.workers[row["id"]] = scope
            self.running[row["id"]] = _worker_key(row)
            self._leading.start_soon(self._worker, row, scope)
        self._wake.set()

    def stop(self, record_id: str) -> None:
        self.running.pop(record_id, None)
        scope = self.workers.pop(record_id, None)
        if scope is not None:
            scope.cancel()

    def _resync(self, rows: list[dict[str, Any]]) -> None:
        """Workers for exactly the verified subscriptions in ``rows``, as they are now."""
        verified = {r["id"]: r for r in rows if _verified(r)}
        for record_id in [i for i in self.workers if i not in verified]:
            self.stop(record_id)
        for record_id, row in verified.items():
            if self.running.get(record_id) != _worker_key(row):
                self.restart(row)

    async def destroy(self, record_id: str, why: str) -> None:
        log.info("push subscription %s destroyed: %s", record_id, why)
        self.stop(record_id)
        await self.host.store.write(lambda db: _erase(db, [record_id]))

    # -- the loops ---------------------------------------------------------------------

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        _services[self.host] = self
        task_status.started()
        try:
            await self.host.store.run_leased(DELIVERY_LEASE, self._lead)
        finally:
            if _services.get(self.host) is self:
                del _services[self.host]

    async def _lead(self) -> None:
        current = self.signer.application_server_key if self.signer else ""

        def load(db: sqlite_utils.Database) -> list[dict[str, Any]]:
            # RFC 9749 §5: subscriptions made under another VAPID key (or none) are gone.
            stale = [r["id"] for r in _rows(db, "vapid_key IS DISTINCT FROM ?", [current])]
            expired = [r["id"] for r in _rows(db, "expires <= ?", [time.time()])]
            _erase(db, stale + expired)
            return _rows(db, "1 = 1", [])

        try:
            async with trio.open_nursery() as workers:
                self._leading = workers
                self._resync(await self.host.store.write(load))
                await self._sweep()
        finally:
            self._leading = None
            self.workers.clear()  # (their nursery is gone: every scope has ended)
            self.running.clear()

    async def _sweep(self) -> None:
        """Remove expired subscriptions as they expire; follow the others' changes."""
        while True:
            now = time.time()
            rows = await self.host.store.read(lambda db: _rows(db, "1 = 1", []))
            if any(r["expires"] <= now for r in rows):

                def expire(db: sqlite_utils.Database, now: float = now) -> list[str]:
                    gone = [r["id"] for r in _rows(db, "expires <= ?", [now])]
                    _erase(db, gone)
                    return gone

                gone = set(await self.host.store.write(expire))
                self.stats["expired"] += len(gone)
                rows = [r for r in rows if r["id"] not in gone]
            self._resync(rows)
            following = min((r["expires"] for r in rows), default=None)
            delay = self.resync_interval
            if following is not None:
                delay = min(delay, max(0.05, following - now))
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def _worker(self, row: dict[str, Any], scope: trio.CancelScope) -> None:
        with scope:
            principal = await self.host.directory.principal(row["principal"])
            if principal is None:
                await self.destroy(row["id"], "its user no longer exists")
                return
            accounts, only = await push_scope(self.host, principal)
            types = set(json.loads(row["types"])) if row["types"] is not None else None
            deadline = trio.current_time() + (row["expires"] - time.time())
            user = principal.name
            with self.host.push.subscribe(accounts, types, only, user) as subscriber:
                with trio.move_on_at(deadline):
                    while True:
                        changed = await subscriber.wait()
                        objects = subscriber.take_objects()
                        if await self.host.directory.principal(row["principal"]) is None:
                            await self.destroy(row["id"], "its user no longer exists")
                            return
                        for type_name, obj in objects:
                            if await self._deliver(row, obj, type_name) == "gone":
                                return
                        if changed:
                            outcome = await self._deliver(row, state_change(changed), "state")
                            if outcome == "gone":
                                return
            self.wake()  # expired: the sweeper removes it

    async def _deliver(self, row: dict[str, Any], obj: dict[str, Any], kind: str) -> str:
        """POST one push with retries; returns delivered, refused, failed or gone."""
        payload = webpush.json_bytes(obj)
        headers = [("Content-Type", "application/json"), ("TTL", str(self.settings["ttl"]))]
        if row["p256dh"] and row["auth"]:
            payload = webpush.encrypt(payload, row["p256dh"], row["auth"])
            headers.append(("Content-Encoding", "aes128gcm"))
        allow_private = self.settings["allow-private-targets"]
        delay = self.settings["retry-delay"]
        for attempt in range(self.settings["retries"] + 1):
            if time.time() >= row["expires"]:
                return "failed"  # §7.2: no request after expires
            attempt_headers = list(headers)
            if self.signer is not None:
                try:
                    origin = webpush.parse_target(row["url"], allow_http=allow_private).origin
                except webpush.TargetRefused:
                    origin = ""
                attempt_headers.append(("Authorization", self.signer.authorization(origin)))
            wait = delay * 2**attempt
            try:
                response = await webpush.post(
                    row["url"],
                    payload,
                    attempt_headers,
                    allow_private=allow_private,
                    timeout=self.settings["timeout"],
                )
            except webpush.TargetRefused as exc:
                self.stats["refused"] += 1
                log.warning("push to subscription %s refused: %s", row["id"], exc)
                return "refused"
            except (
                OSError,
                ssl.SSLError,
                h11.ProtocolError,
                trio.TooSlowError,
                trio.BrokenResourceError,
            ) as exc:
                log.info("push to %s failed (attempt %d): %r", row["id"], attempt + 1, exc)
            else:
                status = response.status
                if 200 <= status < 300:
                    self.stats[f"{kind} delivered"] += 1
                    return "delivered"
                if status in (404, 410):
                    # RFC 8030 §6.2/§7.3: the push resource is gone.
                    await self.destroy(row["id"], f"the push service answered {status}")
                    return "gone"
                if status == 429 or status >= 500:
                    # §7.2: a 429 MUST reduce the frequency: wait (changes coalesce meanwhile).
                    retry_after = response.retry_after()
                    if retry_after is not None:
                        wait = max(wait, min(retry_after, 3600.0))
                    log.info("push to %s got %d; retrying in %.0fs", row["id"], status, wait)
                else:
                    # Redirects are not followed; other client errors are not retried (RFC
                    # 9749 §6: a rejected PushVerification is not sent again).
                    self.stats["failed"] += 1
                    log.warning("push to subscription %s answered %d", row["id"], status)
                    return "failed"
            if attempt < self.settings["retries"]:
                await trio.sleep(wait)
        self.stats["failed"] += 1
        return "failed"


async def run_push_service(host: Host, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Deliver pushes until cancelled (started in the server's background nursery)."""
    async with trio.open_nursery() as nursery:
        service = PushService(host, nursery)
        await service.run(task_status=task_status)


__all__ = [
    "VAPID_URN",
    "PushService",
    "create_push_tables",
    "push_capabilities",
    "push_config_keys",
    "push_get",
    "push_service",
    "push_set",
    "push_subscription_methods",
    "run_push_service",
    "vapid_signer",
]
