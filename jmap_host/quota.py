"""Quotas (RFC 9425, ``urn:ietf:params:jmap:quota``): limits per account, reported and
enforced.

What counts.  A data type declares what its records weigh (``DataType.quota_octets``: the
property holding a record's size; ``DataType.quota_count``: each record counts one); mail's
Email declares both.  The store keeps, per account, the octets and the count of those
records in ``host_quota_usage``, through SQLite triggers on the types' tables
(objectstore.ensure_quota_triggers): a write and its usage commit or roll back together, so
usage is exact under concurrent writes (one writer) and after a crash, and costs no query
of the records.  Unreferenced uploads are temporary and do not count.

The limits.  ``[jmap.quota]`` gives every account a hard limit in octets and in records
(unset: none), and ``warn-at``/``soft-at`` as fractions of it; the directory's quota of the
account's owner (``Principal.quota``, octets: the SQL and LDAP directories carry one)
replaces the configured octets.  Each limit set is one Quota object of the account (ids
``octets`` and ``count``, scope ``account``).

Enforcement (:func:`check_quota`, inside the write transaction, before the write):

- past the hard limit nothing is created: ``overQuota`` (RFC 8620 §5.3), an upload 413
  with the ``overQuota`` problem type, LMTP 552 5.2.2;
- past the soft limit only what arrives from outside (deliveries) is taken; what the user
  creates (Email/set create and copy, Email/import, uploads) is ``overQuota``: the RFC's
  example of a soft limit;
- the warn limit is for clients to show (and is logged once when an account passes it).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlite_utils

from . import memquery
from .capabilities import Call, Capability, Method
from .config_schema import Fraction, Key, Size, Table
from .datatype import SetError
from .errors import MethodError

if TYPE_CHECKING:
    from .directory import Principal
    from .host import Host

log = logging.getLogger("jmap_host.quota")

QUOTA = "urn:ietf:params:jmap:quota"
USAGE_TABLE = "host_quota_usage"
STATE_TYPE = "Quota"  # its modseq in host_modseq moves with every change of usage
RESOURCES = ("octets", "count")
QUOTA_PROPERTIES = ("id", "resourceType", "used", "hardLimit", "warnLimit", "softLimit",
                    "scope", "name", "description", "types")  # fmt: skip


def create_usage_table(db: sqlite_utils.Database) -> None:
    """Host migration "quota_usage"."""
    db[USAGE_TABLE].create(
        {"account": str, "resource": str, "used": int},
        pk=("account", "resource"),
        not_null={"used"},
    )


def config_table() -> Table:
    """``[jmap.quota]``."""
    return Table(
        [
            Key("octets", Size(), default=None,
                doc="hard limit per account, in octets (the directory's quota replaces it)"),
            Key("count", Size(), default=None,
                doc="hard limit per account, in records (Emails...)"),
            Key("warn-at", Fraction(), default=None,
                doc="warnLimit, as a fraction of each hard limit (e.g. 0.8)"),
            Key("soft-at", Fraction(), default=None,
                doc="softLimit, as a fraction of each hard limit: past it only deliveries "
                "are taken"),
        ]
    )  # fmt: skip


class OverQuota(SetError):
    """A write that would pass a quota (RFC 8620 §5.3 ``overQuota``)."""

    def __init__(self, description: str, resource: str):
        super().__init__("overQuota", description)
        self.resource = resource


@dataclass(frozen=True)
class QuotaLimits:
    """The hard, soft and warn limits of one account, per resource (None: no limit)."""

    hard: dict[str, int]
    warn_at: float | None = None
    soft_at: float | None = None
    name: str = ""

    def soft(self, resource: str) -> int | None:
        hard = self.hard.get(resource)
        return None if hard is None or self.soft_at is None else int(hard * self.soft_at)

    def warn(self, resource: str) -> int | None:
        hard = self.hard.get(resource)
        return None if hard is None or self.warn_at is None else int(hard * self.warn_at)

    def digest(self) -> str:
        text = repr((sorted(self.hard.items()), self.warn_at, self.soft_at, self.name))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def limits_for(host: Host, principal: Principal | None) -> QuotaLimits:
    """The limits of the account owned by ``principal`` (None: the configured defaults)."""
    settings = host.config.get("jmap.quota", {}) or {}
    hard: dict[str, int] = {}
    octets = settings.get("octets")
    if principal is not None and principal.quota is not None:
        octets = principal.quota
    if octets is not None:
        hard["octets"] = int(octets)
    if settings.get("count") is not None:
        hard["count"] = int(settings["count"])
    name = ""
    if principal is not None:
        name = principal.emails[0] if principal.emails else principal.name
    return QuotaLimits(hard, settings.get("warn-at"), settings.get("soft-at"), name)


async def account_limits(host: Host, account_id: str) -> QuotaLimits:
    """:func:`limits_for` the owner of ``account_id`` (looked up in the directory by the
    provisioned accounts table); the defaults when the account has no known owner."""
    from .migrations import ACCOUNT_TABLE

    def owner(db: sqlite_utils.Database) -> str | None:
        row = db.execute(f"SELECT principal FROM [{ACCOUNT_TABLE}] WHERE id = ?", [account_id])
        found = row.fetchone()
        return None if found is None else str(found[0])

    name = await host.store.read(owner)
    principal = await host.directory.principal(name) if name else None
    return limits_for(host, principal)


def usage(db: sqlite_utils.Database, account: str) -> dict[str, int]:
    rows = db.execute(
        f"SELECT resource, used FROM [{USAGE_TABLE}] WHERE account = ?", [account]
    ).fetchall()
    out = dict.fromkeys(RESOURCES, 0)
    out.update({str(r): int(u) for r, u in rows})
    return out


_warned: set[tuple[str, str]] = set()


def check_quota(
    db: sqlite_utils.Database,
    limits: QuotaLimits | None,
    account: str,
    *,
    octets: int = 0,
    count: int = 0,
    incoming: bool = False,
) -> None:
    """Raise :class:`OverQuota` when adding ``octets`` and ``count`` to ``account`` would
    pass its hard limit (its soft limit, unless ``incoming``: a delivery).  Call it inside
    the write transaction, just before the write, so the usage it reads is exact."""
    if limits is None or not limits.hard:
        return
    used = usage(db, account)
    for resource, more in (("octets", octets), ("count", count)):
        hard = limits.hard.get(resource)
        if hard is None or not more:
            continue
        soft = None if incoming else limits.soft(resource)
        limit, which = (soft, "soft") if soft is not None else (hard, "hard")
        if used[resource] + more > limit:
            unit = "octets" if resource == "octets" else "records"
            raise OverQuota(
                f"the account's {which} limit of {limit} {unit} would be passed "
                f"({used[resource]} used, {more} more)",
                resource,
            )
        warn = limits.warn(resource)
        if warn is not None and used[resource] + more > warn and (account, resource) not in _warned:
            _warned.add((account, resource))
            log.warning("account %s passed its %s warn limit (%d)", account, resource, warn)


# -- the capability and Quota/get, /changes, /query, /queryChanges (RFC 9425 §4) --------------


def quota_capability(host: Host) -> Capability:
    """The capability (an empty object in the session and in every account, §2.1)."""
    return Capability(
        urn=QUOTA,
        session={},
        account=lambda host, account: {},
        primary=True,
        methods=[
            Method("Quota/get", quota_get),
            Method("Quota/changes", quota_changes),
            Method("Quota/query", quota_query),
            Method("Quota/queryChanges", quota_query_changes),
        ],
    )


def _types(host: Host, call: Call, resource: str) -> list[str]:
    """The types a quota covers that the request can know (§4.1: only those whose
    capability is in ``using``)."""
    names = []
    for name, (dt, urn) in host.datatypes.items():
        counts = dt.quota_octets is not None if resource == "octets" else dt.quota_count
        if counts and urn in call.request.using:
            names.append(name)
    return sorted(names)


async def _quotas(call: Call) -> tuple[str, list[dict[str, Any]]]:
    """(state, the account's Quota objects the request can see)."""
    host = call.host
    assert call.account is not None
    account = call.account
    limits = limits_for(host, account.owner)

    def read(db: sqlite_utils.Database) -> tuple[int, dict[str, int]]:
        from .objectstore import current_modseq

        return current_modseq(db, account.id, STATE_TYPE)[0], usage(db, account.id)

    modseq, used = await host.store.read(read)
    quotas = []
    for resource in RESOURCES:
        hard = limits.hard.get(resource)
        types = _types(host, call, resource)
        if hard is None or not types:
            continue  # §4.1: no Quota object whose types the client cannot know
        unit = "octets" if resource == "octets" else "records"
        quotas.append(
            {
                "id": resource,
                "resourceType": resource,
                "used": used[resource],
                "hardLimit": hard,
                "warnLimit": limits.warn(resource),
                "softLimit": limits.soft(resource),
                "scope": "account",
                "name": f"{limits.name or account.name} ({unit})",
                "description": f"At most {hard} {unit} in this account"
                + ("; past the soft limit only deliveries are taken." if limits.soft_at else "."),
                "types": types,
            }
        )
    return f"{modseq}-{limits.digest()}", quotas


async def quota_get(call: Call) -> dict[str, Any]:
    """§4.2: a standard /get; ids null fetches every Quota of the account."""
    state, quotas = await _quotas(call)
    return memquery.get_answer(call, state, quotas, QUOTA_PROPERTIES)


async def quota_changes(call: Call) -> dict[str, Any]:
    """§4.3: since a state of the same limits, every Quota's ``used`` may have changed
    (``updatedProperties: ["used"]``); across a change of the limits themselves the server
    cannot tell what changed: cannotCalculateChanges."""
    since, max_changes = memquery.changes_arguments(call)
    state, quotas = await _quotas(call)
    if since.partition("-")[2] != state.partition("-")[2] or not since.partition("-")[0].isdigit():
        raise MethodError("cannotCalculateChanges", "the quota limits changed; refetch")
    updated = [] if since == state else [q["id"] for q in quotas]
    if max_changes is not None and len(updated) > max_changes:
        updated = updated[:max_changes]  # (there are two at most: never in practice)
    assert call.account is not None
    return {
        "accountId": call.account.id,
        "oldState": since,
        "newState": state,
        "hasMoreChanges": False,
        "created": [],
        "updated": updated,
        "destroyed": [],
        "updatedProperties": ["used"] if updated else None,
    }


def _test(quota: dict[str, Any], name: str, value: Any) -> bool:
    if not isinstance(value, str):
        raise MethodError("invalidArguments", f"filter {name} must be a String")
    if name == "name":
        return value.casefold() in quota.get("name", "").casefold()
    if name == "type":
        return value in quota.get("types", ())
    return quota.get(name) == value  # scope, resourceType


async def quota_query(call: Call) -> dict[str, Any]:
    """§4.4: filters name (contains), scope, resourceType and type; sorts name and used."""
    state, quotas = await _quotas(call)
    return memquery.query_answer(
        call, state, quotas, _test, ("name", "scope", "resourceType", "type"),
        {"name": lambda q: q["name"], "used": lambda q: q["used"]},
    )  # fmt: skip


async def quota_query_changes(call: Call) -> dict[str, Any]:
    """§4.5: a query of a handful of computed objects is cheaper to run again (Quota/query
    said canCalculateChanges false)."""
    raise MethodError("cannotCalculateChanges", "run Quota/query again")


__all__ = [
    "QUOTA",
    "OverQuota",
    "QuotaLimits",
    "account_limits",
    "check_quota",
    "limits_for",
    "quota_capability",
]
