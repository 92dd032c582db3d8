"""Principals (RFC 9670 §2, ``urn:ietf:params:jmap:principals``): the users, groups,
resources and locations of the configured directory, as JMAP objects.

Where they live.  A Principal's id is the id of the account it owns
(:func:`jmap_host.account_id_for`), so a ``shareWith`` key, an ``accounts`` key and
``principals:owner``'s ``principalId`` are one id.  The Principal objects are served in
every user's personal account (its ``currentUserPrincipalId`` is the user's own id); every
account a user can use names that account in ``principals:owner``.

What a user sees.  Every principal the directory lists (``list_principals``; memory, SQL
and LDAP directories can), or, for a directory that cannot list, the user, their groups and
the owners of accounts shared with them.

Principal/set.  §2.3: a user may change the ``name``, ``description`` and ``timeZone`` of
their own Principal; anything else is ``forbidden``.  The directory is never written (an
LDAP or SQL directory stays read-only): the values are kept by the host
(``host_principal``) and win over the directory's.

/changes and /queryChanges.  The directory does not log its changes, so the state is a
digest of what the user sees: the same state means nothing changed, any other
``cannotCalculateChanges`` (§2.2 allows exactly this for external directories).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from typing import TYPE_CHECKING, Any

import orjson
import sqlite_utils

from . import memquery
from .capabilities import Account, Call, Capability, Method
from .datatype import SetError
from .directory import DirectoryUnavailable, Principal, time_zone_known
from .engine import set_arguments
from .errors import MethodError
from .validators import check_name

if TYPE_CHECKING:
    from .host import Host

PRINCIPALS = "urn:ietf:params:jmap:principals"
PRINCIPALS_OWNER = "urn:ietf:params:jmap:principals:owner"
OVERLAY_TABLE = "host_principal"
PROPERTIES = ("id", "type", "name", "description", "email", "timeZone", "capabilities",
              "accounts")  # fmt: skip
USER_SETTABLE = ("name", "description", "timeZone")  # §2.3
MAX_DESCRIPTION_OCTETS = 4096


def create_overlay_table(db: sqlite_utils.Database) -> None:
    """Host migration "principals": what users set on their own Principal (§2.3)."""
    db[OVERLAY_TABLE].create(
        {"id": str, "name": str, "description": str, "timeZone": str, "set_description": int},
        pk="id",
    )


def principals_capability(host: Host) -> Capability:
    """The capability: ``{}`` in the session; ``currentUserPrincipalId`` in the user's
    personal account, the only account that holds Principal objects (§1.5.1)."""
    from .sharing import SHARE_NOTIFICATION

    def account(host: Host, account: Account) -> dict[str, Any] | None:
        if not account.is_personal:
            return None
        return {"currentUserPrincipalId": account.owner.account_id}

    return Capability(
        urn=PRINCIPALS,
        session={},
        account=account,
        primary=True,
        methods=[
            Method("Principal/get", principal_get),
            Method("Principal/changes", principal_changes),
            Method("Principal/query", principal_query),
            Method("Principal/queryChanges", principal_query_changes),
            Method("Principal/set", principal_set, writes=True),
        ],
        datatypes=[SHARE_NOTIFICATION],
    )


def owner_entry(account: Account, viewer_account: str) -> dict[str, str]:
    """``principals:owner`` of ``account`` (§1.5.2) for a user whose Principal objects are in
    ``viewer_account``."""
    return {"accountIdForPrincipal": viewer_account, "principalId": account.owner.account_id}


async def visible_principals(host: Host, user: Principal, accounts: dict[str, Account]) -> list:
    """The principals ``user`` may see: the directory's list, and always the user, the
    owners of the accounts they use (their groups, those sharing with them)."""
    found: dict[str, Principal] = {}
    lister = getattr(host.directory, "list_principals", None)
    if lister is not None:
        try:
            for principal in await lister():
                found[principal.name] = principal
        except DirectoryUnavailable:
            pass  # the list is a convenience: the principals below are known anyway
    found.setdefault(user.name, user)
    for account in accounts.values():
        found.setdefault(account.owner.name, account.owner)
    return sorted(found.values(), key=lambda p: p.name)


def _overlays(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    rows = db.execute(
        f"SELECT id, name, description, [timeZone], set_description FROM [{OVERLAY_TABLE}]"
    ).fetchall()
    return {r[0]: {"name": r[1], "description": r[2], "timeZone": r[3], "desc": r[4]} for r in rows}


@functools.cache
def _takes_viewer(fn: Any) -> bool:
    """Whether a Capability.principal function takes the viewer (a third parameter)."""
    return len(inspect.signature(fn).parameters) >= 3


def principal_object(
    host: Host,
    principal: Principal,
    overlay: dict[str, Any] | None,
    call: Call,
) -> dict[str, Any]:
    """The Principal object of ``principal`` as the calling user sees it (§2)."""
    ctx = call.request
    accounts = {
        account_id: {
            "name": account.name,
            "isPersonal": account.is_personal,
            "isReadOnly": account.is_read_only,
            "accountCapabilities": ctx.account_capabilities[account_id],
        }
        for account_id, account in ctx.accounts.items()
        if account.owner.name == principal.name
    }
    capabilities: dict[str, Any] = {}
    for urn, cap in host.capabilities.items():
        if cap.principal is not None:
            if _takes_viewer(cap.principal):
                value = cap.principal(host, principal, ctx)
            else:
                value = cap.principal(host, principal)
            if value is not None:
                capabilities[urn] = value
    obj = {
        "id": principal.account_id,
        "type": principal.kind,
        "name": principal.description or principal.name,
        "description": None,
        "email": principal.emails[0] if principal.emails else None,
        "timeZone": principal.time_zone,
        "capabilities": capabilities,
        "accounts": accounts or None,
    }
    if overlay:
        if overlay["name"] is not None:
            obj["name"] = overlay["name"]
        if overlay["desc"]:
            obj["description"] = overlay["description"]
        if overlay["timeZone"] is not None:
            obj["timeZone"] = overlay["timeZone"] or None
    return obj


async def _principals(call: Call) -> tuple[str, list[dict[str, Any]]]:
    """(state, the Principal objects the user sees)."""
    host = call.host
    user = call.request.principal
    listed = await visible_principals(host, user, call.request.accounts)
    overlays = await host.store.read(_overlays)
    objects = [principal_object(host, p, overlays.get(p.account_id), call) for p in listed]
    digest = hashlib.sha256(orjson.dumps(objects, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return digest[:16], objects


async def principal_get(call: Call) -> dict[str, Any]:
    """§2.1: a standard /get."""
    state, objects = await _principals(call)
    return memquery.get_answer(call, state, objects, PROPERTIES)


async def principal_changes(call: Call) -> dict[str, Any]:
    """§2.2: the directory keeps no log; see the module docstring."""
    state, _ = await _principals(call)
    return memquery.changes_answer(
        call, state, "the directory does not log its changes: fetch the Principals again"
    )


def _contains(haystack: Any, needle: str) -> bool:
    return isinstance(haystack, str) and needle.casefold() in haystack.casefold()


def _plugin_filters(call: Call) -> dict[str, Any]:
    """The FilterCondition properties capabilities in ``using`` add (principal_filters)."""
    found: dict[str, Any] = {}
    for urn in call.request.using:
        cap = call.host.capabilities.get(urn)
        if cap is not None:
            found.update(cap.principal_filters)
    return found


def _test(principal: dict[str, Any], name: str, value: Any, extra: Any = None) -> bool:
    """One FilterCondition property of §2.4.1 (or a capability's, ``extra``)."""
    if extra and name in extra:
        return bool(extra[name](principal, value))
    if name == "accountIds":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MethodError("invalidArguments", "filter accountIds must be a String[]")
        return any(a in (principal.get("accounts") or {}) for a in value)
    if not isinstance(value, str):
        raise MethodError("invalidArguments", f"filter {name} must be a String")
    if name == "text":
        return any(_contains(principal.get(p), value) for p in ("name", "email", "description"))
    if name in ("email", "name"):
        return _contains(principal.get(name), value)
    return principal.get(name) == value  # type, timeZone: exactly as given


async def principal_query(call: Call) -> dict[str, Any]:
    """§2.4: filters accountIds, email, name, text, type and timeZone; sorts on name,
    email and type (by name when none is given)."""
    state, objects = await _principals(call)
    extra = _plugin_filters(call)
    return memquery.query_answer(
        call, state, objects, functools.partial(_test, extra=extra),
        ("accountIds", "email", "name", "text", "type", "timeZone", *extra),
        {
            "name": lambda p: p["name"].casefold(),
            "email": lambda p: (p["email"] or "").casefold(),
            "type": lambda p: p["type"],
        },
        default_sort=("name",),
    )  # fmt: skip


async def principal_query_changes(call: Call) -> dict[str, Any]:
    """§2.5: as /changes (Principal/query said canCalculateChanges false)."""
    state, _ = await _principals(call)
    return memquery.query_changes_answer(
        call, state, "the directory does not log its changes: run Principal/query again"
    )


def _check_update(patch: Any) -> dict[str, Any]:
    """The values a user's update of their own Principal sets; SetError otherwise."""
    if not isinstance(patch, dict):
        raise SetError("invalidPatch", "a PatchObject must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in patch.items():
        if key not in USER_SETTABLE:
            raise SetError(
                "forbidden", f"{key} comes from the directory and cannot be changed here"
            )
        if key == "name":
            try:
                if not isinstance(value, str) or not value.strip():
                    raise ValueError("must be a non-empty String")
                check_name(value)
            except ValueError as exc:
                raise SetError("invalidProperties", f"name: {exc}", properties=["name"]) from None
        elif key == "description":
            if value is not None and not isinstance(value, str):
                raise SetError("invalidProperties", "description must be a String or null",
                               properties=["description"])  # fmt: skip
            if value is not None and len(value.encode()) > MAX_DESCRIPTION_OCTETS:
                raise SetError("invalidProperties",
                               f"description: at most {MAX_DESCRIPTION_OCTETS} octets",
                               properties=["description"])  # fmt: skip
        elif value is not None and (not isinstance(value, str) or not time_zone_known(value)):
            raise SetError("invalidProperties", "timeZone must be an IANA time zone name or null",
                           properties=["timeZone"])  # fmt: skip
        out[key] = value
    return out


async def principal_set(call: Call) -> dict[str, Any]:
    """§2.3: updates of the user's own name, description and timeZone; creates, destroys
    and every other change are ``forbidden``."""
    create, update, destroy = set_arguments(call)
    if_in_state = call.args.get("ifInState")
    if if_in_state is not None and not isinstance(if_in_state, str):
        raise MethodError("invalidArguments", "ifInState must be a String or null")
    old_state, objects = await _principals(call)
    if if_in_state is not None and if_in_state != old_state:
        raise MethodError("stateMismatch")
    known = {o["id"] for o in objects}
    own = call.request.principal.account_id
    not_created = {
        cid: SetError("forbidden", "principals come from the directory").to_json()
        for cid in (create or {})
    }
    not_destroyed = {}
    for record_id in destroy or []:
        error = "forbidden" if record_id in known else "notFound"
        not_destroyed[record_id] = SetError(error).to_json()
    updates: dict[str, dict[str, Any]] = {}
    not_updated: dict[str, Any] = {}
    for record_id, patch in (update or {}).items():
        try:
            if record_id not in known:
                raise SetError("notFound")
            if record_id != own:
                raise SetError("forbidden", "only your own Principal may be changed (§2.3)")
            updates[record_id] = _check_update(patch)
        except SetError as exc:
            not_updated[record_id] = exc.to_json()
    if updates:

        def write(db: sqlite_utils.Database) -> None:
            for record_id, values in updates.items():
                row = db.execute(
                    f"SELECT name, description, [timeZone], set_description FROM [{OVERLAY_TABLE}] "
                    "WHERE id = ?",
                    [record_id],
                ).fetchone()
                name, description, tz, set_desc = row if row else (None, None, None, 0)
                if "name" in values:
                    name = values["name"]
                if "description" in values:
                    description, set_desc = values["description"], 1
                if "timeZone" in values:
                    tz = values["timeZone"] or ""  # "" (not null): set to null by the user
                db.execute(
                    f"INSERT INTO [{OVERLAY_TABLE}] "
                    "(id, name, description, [timeZone], set_description) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, description = "
                    "excluded.description, [timeZone] = excluded.[timeZone], "
                    "set_description = excluded.set_description",
                    [record_id, name, description, tz, set_desc],
                )

        await call.host.store.write(write)
    new_state, _ = await _principals(call) if updates else (old_state, None)
    if new_state != old_state:
        call.host.push.publish(own, {"Principal": new_state})
    assert call.account is not None
    return {
        "accountId": call.account.id,
        "oldState": old_state,
        "newState": new_state,
        "created": None,
        "updated": {record_id: None for record_id in updates} or None,
        "destroyed": None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }
