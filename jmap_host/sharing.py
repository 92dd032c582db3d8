"""Sharing (RFC 9670 §4): one service of the host for every capability's shareable types.

A plugin declares two kinds of types:

- a **container** (Mailbox, AddressBook, Calendar) with ``DataType.sharing =
  Sharing(rights=..., read=...)``: the host adds its ``shareWith`` property (stored with
  the record, so the standard /set patches it like any other) and fills ``myRights``;
- a **member** (Email, ContactCard, CalendarEvent; Thread) with ``DataType.shared_through
  = SharedThrough(container=..., property=...)``: a member is visible to a sharee when one
  of its containers grants the ``read`` right, and written as the rights of its containers
  say.

Who sees what.  An account's owner, and the members of a group account, have every right.
A principal named in a container's ``shareWith`` gets a *shared account*: the owner's
account, in their Session with ``isPersonal`` false and ``isReadOnly`` true unless some
container grants them more than reading.  In a shared account every standard method (and
the plugins' own, through :func:`access_for`, :func:`visible_where`, :func:`present`) shows
only the containers shared with them and the members those let them read; everything else
answers exactly as a record that does not exist (``notFound``, absent from /query).  Types
that are neither containers nor members are not served in shared accounts (``forbidden``),
and a capability without shareable types is not listed in them.

Groups.  A record shared with a group principal is shared with each of its members: a
user's rights are those given to them and to the groups they are a member of, together.

Storage.  ``host_share`` mirrors every ``shareWith`` (account, type, record, grantee,
rights) for the grantee's side; ``host_share_subscription`` holds each user's own
``isSubscribed`` (a per-user property) where they changed it; ``host_share_epoch``
remembers when a grantee's view of an account last changed (a /changes from before it
answers cannotCalculateChanges: records that became visible were not "created").  All are
written in the /set's transaction.

Notifications.  Every change of a principal's rights on a container writes a
ShareNotification (RFC 9670 §3) into the grantee's personal account, and push tells them.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlite_utils

from . import dates, sqldialect
from .datatype import DataType, FilterCondition, Property, SetError, read_and_destroy

if TYPE_CHECKING:
    from .capabilities import Account, Call
    from .cluster import HostEvents
    from .directory import Principal
    from .host import Host

SHARE_TABLE = "host_share"
SUBSCRIPTION_TABLE = "host_share_subscription"
EPOCH_TABLE = "host_share_epoch"
MEMBER_PREFS_TABLE = "host_member_prefs"
NOTIFICATION_TYPE = "ShareNotification"
SHARES_CHANGED = "sharing.changed"  # the host event of ShareIndex.changed
# The most ShareNotifications kept per user (§3 allows a limit): the oldest go first.
MAX_NOTIFICATIONS = 1000


@dataclass(frozen=True)
class Sharing:
    """How a container type is shared (``DataType.sharing``).

    ``rights`` are the keys of its ``myRights`` and of each ``shareWith`` value; ``read`` the
    right that lets a sharee read the members (Mailbox: ``mayReadItems``).  A container
    with any right true is visible to the sharee.  ``share_right`` lets a sharee change
    ``shareWith`` (giving only rights they hold themselves); None: only the owner may.
    ``update_right`` lets a sharee change the container's other properties (Mailbox:
    ``mayRename``), ``delete_right`` destroy it (``mayDelete``); ``parent_property`` and
    ``create_child_right`` let a sharee create a container inside one where they hold that
    right (Mailbox: ``parentId``, ``mayCreateChild``), the new one shared with them as its
    parent is.  ``per_user`` properties are each sharee's own (``isSubscribed``; a
    calendar's name, color, sortOrder...): a sharee's update of them changes their copy
    only, whatever their rights; a sharee starts with ``per_user_defaults[name]``, or, for a
    name not in it, the owner's value (until they set their own).  ``name_property`` names
    the record in ShareNotifications.  ``implied`` rights come with another (a calendar's
    mayWriteAll brings mayWriteOwn, mayUpdatePrivate and mayRSVP): shareWith is stored
    with them set.  ``visible_with``: the rights that make a container visible to a sharee
    (None: any right; a calendar shared for free/busy alone is not seen).
    """

    rights: tuple[str, ...]
    read: str
    share_right: str | None = None
    update_right: str | None = None
    delete_right: str | None = None
    parent_property: str | None = None
    create_child_right: str | None = None
    per_user: tuple[str, ...] = ("isSubscribed",)
    per_user_defaults: dict[str, Any] = field(default_factory=lambda: {"isSubscribed": True})
    name_property: str = "name"
    implied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    visible_with: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for right in (self.read, self.share_right, self.update_right, self.delete_right,
                      self.create_child_right):  # fmt: skip
            if right is not None and right not in self.rights:
                raise ValueError(f"sharing: {right!r} is not one of the rights")

    def full(self) -> dict[str, bool]:
        return dict.fromkeys(self.rights, True)


@dataclass(frozen=True)
class SharedThrough:
    """How a member type is shared (``DataType.shared_through``): through the containers
    its ``property`` (an ``Id[Boolean]`` map) names.

    ``add`` is the container right needed to put a member in it (create, copy, import, or
    add the container to ``property``), ``remove`` to take it out (and, in every container,
    to destroy it); ``update`` the right needed in every container to change the member's
    other properties (None: ``check_update`` decides, e.g. mail's keyword rights).
    ``check_update(rights_of_its_containers, old, new)`` may raise SetError.

    A type whose visibility is not a property (mail's Thread: visible through its Emails)
    gives ``visible_sql(readable_ids_json) -> (SQL condition, params)``; such a type is
    read-only in shared accounts.  ``restrict(db, access, records)`` hides what the sharee
    may not see inside visible records (any member type).

    ``per_user`` names the member's per-user properties (a CalendarEvent's keywords,
    color, alerts...): each user of the account sees and sets their own value; the stored
    record holds the account's (its owner's), a sharee starts with
    ``per_user_defaults[name]`` or the property's default.  ``per_user_patches`` names
    properties holding maps of PatchObjects (recurrenceOverrides) whose pointers into a
    per-user property are per user too.  ``per_user_updated`` names the last-modified
    property: a write of per-user properties alone stores the writer's own time, and
    /get answers the later of theirs and the record's.  ``validate_per_user(view)``
    checks a sharee's whole view after their change (SetError).  A per-user change is
    not a change of the record: it is in the writer's /changes only.
    """

    container: str
    property: str | None = None
    add: str | None = None
    remove: str | None = None
    update: str | None = None
    check_update: Callable[[list[dict[str, bool]], dict, dict], None] | None = None
    visible_sql: Callable[[str], tuple[str, list[Any]]] | None = None
    restrict: Callable[[Any, Access, list[dict[str, Any]]], None] | None = None
    # Per-user properties of members (see "Per-user member properties" below).
    per_user: tuple[str, ...] = ()
    per_user_defaults: dict[str, Any] = field(default_factory=dict)
    per_user_patches: tuple[str, ...] = ()
    per_user_updated: str | None = None
    validate_per_user: Callable[[dict[str, Any]], None] | None = None
    # Every write of a sharee (operation create, update, destroy or "per-user"), after the
    # host refused containers they cannot see: decides the rights instead of add, remove,
    # update, check_update (``check_sharee(db, access, operation, old, new)``).
    check_sharee: Callable[[Any, Access, str, dict | None, dict | None], None] | None = None
    # An SQL condition (on the member's table) for the members only the account's owner
    # (and whoever has every right in it) sees: to a sharee they do not exist.
    owner_only_sql: str | None = None


@dataclass
class Access:
    """What one principal may do in a shared account: their rights per container."""

    host: Host
    account: str
    grantee: str  # the principal's id (their account id)
    principal_name: str
    grantees: tuple[str, ...] = ()  # theirs and their groups' ids: whose shares count
    rights: dict[str, dict[str, dict[str, bool]]] = field(default_factory=dict)
    # {type: {record: {per-user property: the sharee's own value}}} (Sharing.per_user)
    prefs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def containers(self, type_name: str) -> dict[str, dict[str, bool]]:
        """{container id: rights} of the visible containers of ``type_name``."""
        return self.rights.get(type_name, {})

    def readable(self, container: DataType) -> list[str]:
        assert container.sharing is not None
        read = container.sharing.read
        return [i for i, r in self.containers(container.name).items() if r.get(read)]

    def right(self, type_name: str, record_id: str, name: str | None) -> bool:
        if name is None:
            return False
        return bool(self.containers(type_name).get(record_id, {}).get(name))


# The accounts and principal of the method call (or download) being served, for code far
# from the call (blob visibility): set by the engine and the download route.  trio.to_thread
# copies the context, so the store's worker threads see it too.
CURRENT_SHARE: contextvars.ContextVar[tuple[Host, dict[str, Account], Principal] | None] = (
    contextvars.ContextVar("jmap_host_share", default=None)
)


# -- tables ----------------------------------------------------------------------------------


def add_share_prefs(db: sqlite_utils.Database) -> None:
    """Host migration "share_prefs": a sharee's own values of every per-user property
    (JSON), beside isSubscribed (its own column: the Session lists accounts by it)."""
    db[SUBSCRIPTION_TABLE].add_column("prefs", str)


def create_share_tables(db: sqlite_utils.Database) -> None:
    """Host migration "sharing"."""
    db[SHARE_TABLE].create(
        {"account": str, "type": str, "record": str, "grantee": str, "rights": str},
        pk=("account", "type", "record", "grantee"),
    )
    db[SHARE_TABLE].create_index(["grantee", "account"])
    db[SUBSCRIPTION_TABLE].create(
        {"account": str, "type": str, "record": str, "principal": str, "subscribed": int},
        pk=("account", "type", "record", "principal"),
    )
    db[EPOCH_TABLE].create(
        {"account": str, "grantee": str, "type": str, "modseq": int},
        pk=("account", "grantee", "type"),
    )


# -- the grantee's side: shared accounts -------------------------------------------------------


@dataclass(frozen=True)
class SharedAccount:
    account: str
    owner: str  # the owner's principal name
    writable: bool
    subscribed: bool


class ShareIndex:
    """The accounts shared with each principal, cached between share changes (every API
    request asks; shares change rarely).  A share written through this host calls
    :meth:`changed`, which empties the cache here and, through the host events
    (``sharing.changed``), on every other node; so does a gap in those events."""

    def __init__(self, events: HostEvents | None = None) -> None:
        self.generation = 0
        self._cache: dict[str, tuple[int, list[SharedAccount]]] = {}
        self._events = events
        if events is not None:
            events.on(SHARES_CHANGED, lambda _data: self._forget())
            events.on_missed(self._forget)

    def changed(self) -> None:
        """Shares were written: forget them on every node."""
        if self._events is not None:
            self._events.emit(SHARES_CHANGED)
        else:
            self._forget()

    def _forget(self) -> None:
        self.generation += 1
        self._cache.clear()

    async def shared_with(self, host: Host, principal: Principal) -> list[SharedAccount]:
        ids = grantee_ids(principal)
        key = "\n".join(ids)
        cached = self._cache.get(key)
        generation = self.generation
        if cached is not None and cached[0] == generation:
            return cached[1]
        found = await host.store.read(lambda db: _shared_accounts(db, host, ids))
        self._cache[key] = (generation, found)
        return found


def grantee_ids(principal: Principal) -> tuple[str, ...]:
    """Whose shares give ``principal`` access: their own id, then their groups'."""
    from .directory import account_id_for

    return (principal.account_id, *(account_id_for(g) for g in principal.member_of))


def _shared_accounts(
    db: sqlite_utils.Database, host: Host, ids: tuple[str, ...]
) -> list[SharedAccount]:
    from .migrations import ACCOUNT_TABLE

    try:
        rows = db.execute(
            f"SELECT s.account, a.principal, s.type, s.rights, u.subscribed "
            f"FROM [{SHARE_TABLE}] s JOIN [{ACCOUNT_TABLE}] a ON a.id = s.account "
            f"LEFT JOIN [{SUBSCRIPTION_TABLE}] u ON u.account = s.account AND u.type = s.type "
            "AND u.record = s.record AND u.principal = ? "
            "WHERE s.grantee IN (SELECT value FROM json_each(?)) AND s.account != ? "
            "ORDER BY s.account",
            [ids[0], json.dumps(list(ids)), ids[0]],
        ).fetchall()
    except Exception as exc:  # before the migration ran (start-up)
        if "no such table" in str(exc):
            return []
        raise
    found: dict[str, SharedAccount] = {}
    for account, owner, type_name, rights_text, subscribed in rows:
        if subscribed is None:  # the sharee's own value, else the type's initial one
            entry = host.datatypes.get(type_name)
            sharing = entry[0].sharing if entry else None
            subscribed = bool(sharing and sharing.per_user_defaults.get("isSubscribed", True))
        rights = json.loads(rights_text)
        entry = host.datatypes.get(type_name)
        sharing = entry[0].sharing if entry else None
        # (more than reading: the account is not read-only)
        writable = sharing is not None and any(
            v for r, v in rights.items() if r != sharing.read and r in sharing.rights
        )
        old = found.get(account)
        found[account] = SharedAccount(
            account,
            owner,
            writable or (old is not None and old.writable),
            bool(subscribed) or (old is not None and old.subscribed),
        )
    return list(found.values())


async def shared_accounts(host: Host, principal: Principal) -> list[Account]:
    """The accounts other principals share with ``principal`` (Account.shared set)."""
    from .capabilities import Account

    out = []
    for shared in await host.shares.shared_with(host, principal):
        owner = await host.directory.principal(shared.owner)
        if owner is None or owner.account_id != shared.account:
            continue  # the owner left the directory: nothing is served from their account
        out.append(
            Account(
                id=shared.account,
                name=owner.emails[0] if owner.emails else owner.name,
                owner=owner,
                is_personal=False,
                is_read_only=not shared.writable,
                shared=True,
                listed=shared.subscribed,
            )
        )
    return out


def shared_rights(
    db: sqlite_utils.Database, account: str, principal: Principal, type_name: str | None = None
) -> dict[str, dict[str, dict[str, bool]]]:
    """{type: {container id: rights}} that ``account``'s shares give ``principal`` (theirs
    and their groups', together), of every type or of ``type_name``: all of them, also
    those that show nothing (a calendar shared for free/busy alone, which
    :func:`load_access` leaves out)."""
    sql = (f"SELECT type, record, rights FROM [{SHARE_TABLE}] "
           "WHERE account = ? AND grantee IN (SELECT value FROM json_each(?))")  # fmt: skip
    params: list[Any] = [account, json.dumps(list(grantee_ids(principal)))]
    if type_name is not None:
        sql += " AND type = ?"
        params.append(type_name)
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for kind, record, rights in db.execute(sql, params).fetchall():
        mine = out.setdefault(kind, {}).setdefault(record, {})
        for right, value in json.loads(rights).items():  # a user's, and their groups'
            mine[right] = bool(mine.get(right)) or bool(value)
    return out


def grantees(
    db: sqlite_utils.Database, type_name: str, accounts: Iterable[str] | None = None
) -> dict[str, set[str]]:
    """{account: the principal ids its containers of ``type_name`` are shared with} (of
    ``accounts``, or of every account that shares one)."""
    sql = f"SELECT DISTINCT account, grantee FROM [{SHARE_TABLE}] WHERE type = ?"
    params: list[Any] = [type_name]
    if accounts is not None:
        sql += " AND account IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(accounts)))
    out: dict[str, set[str]] = {}
    for account, grantee in db.execute(sql, params).fetchall():
        out.setdefault(str(account), set()).add(str(grantee))
    return out


def load_access(db: sqlite_utils.Database, host: Host, account: Account, principal: Principal):
    """The :class:`Access` of ``principal`` to the shared ``account``, read in ``db``."""
    ids = grantee_ids(principal)
    access = Access(host, account.id, principal.account_id, principal.name, ids)
    access.rights = shared_rights(db, account.id, principal)
    for type_name, records in access.rights.items():
        entry = host.datatypes.get(type_name)
        visible_with = entry[0].sharing.visible_with if entry and entry[0].sharing else None
        if visible_with is not None:  # rights that show nothing (free/busy alone)
            for record in [r for r, got in records.items()
                           if not any(got.get(v) for v in visible_with)]:  # fmt: skip
                del records[record]
    for type_name, record, subscribed, prefs in db.execute(
        f"SELECT type, record, subscribed, prefs FROM [{SUBSCRIPTION_TABLE}] "
        "WHERE account = ? AND principal = ?",
        [account.id, principal.account_id],
    ).fetchall():
        values = json.loads(prefs) if prefs else {}
        if subscribed is not None:
            values["isSubscribed"] = bool(subscribed)
        access.prefs.setdefault(type_name, {})[record] = values
    return access


def access_for(
    db: sqlite_utils.Database, call: Call, dt: DataType | None = None
) -> Access | None:
    """The caller's access to the call's account, or None when they have every right (their
    own account, a group's).  Read in the call's transaction, so it agrees with the
    records read beside it.  For a DataType.per_principal ``dt`` there is always one: each
    user sees only their own records."""
    account = call.account
    if account is None:
        return None
    if not account.shared:
        return own_access(call.host, account, call.request.principal, dt)
    return load_access(db, call.host, account, call.request.principal)


def own_access(host: Host, account: Account, principal: Principal, dt: DataType | None):
    """In a user's own account: None (every right), but for a per_principal type an Access
    that shows them only their own records."""
    if dt is None or dt.per_principal is None:
        return None
    return Access(host, account.id, principal.account_id, principal.name, (principal.account_id,))


def column_for(derived: str) -> str:
    from .objectstore import derived_column

    return derived_column(derived)


def push_types(host: Host, accounts: dict[str, Account]) -> dict[str, set[str]]:
    """For push: the types each account shared with the user may tell of (the shareable
    ones; RFC 9670 §1.4: no state changes for data the user does not see)."""
    names = set(host.shareable_types)
    return {account_id: names for account_id, account in accounts.items() if account.shared}


def check_shareable(dt: DataType, call: Call) -> None:
    """Types that are neither containers nor members are not served in shared accounts."""
    from .errors import MethodError

    if call.account is not None and call.account.shared and not dt.shareable:
        raise MethodError("forbidden", f"{dt.name} is not shared with you in this account")


# -- what a sharee sees --------------------------------------------------------------------------


def _ids_json(ids: list[str]) -> str:
    return json.dumps(ids)


def visible_where(dt: DataType, access: Access | None) -> tuple[str, list[Any]]:
    """The SQL condition (on ``dt``'s table) for the records ``access`` may see: "1" for
    full access, nothing ("0") for types that are not shared."""
    from .objectstore import column

    if access is None:
        return "true", []
    host = access.host
    if dt.per_principal is not None:
        return f"[{column_for(dt.per_principal)}] = ?", [access.grantee]
    if dt.sharing is not None:
        ids = _ids_json(list(access.containers(dt.name)))
        return "id IN (SELECT value FROM json_each(?))", [ids]
    through = dt.shared_through
    if through is None:
        return "false", []
    container = host.datatypes[through.container][0]
    readable = _ids_json(access.readable(container))
    if through.visible_sql is not None:
        return through.visible_sql(readable)
    prop = dt.by_name[through.property]  # type: ignore[index]
    col = f"[{dt.table}].[{column(prop)}]"
    where = f"EXISTS (SELECT 1 FROM json_each({col}) WHERE key IN (SELECT value FROM json_each(?)))"
    if through.owner_only_sql is not None:
        where = f"{where} AND NOT ({through.owner_only_sql})"
    return where, [readable]


def visible_ids(
    db: sqlite_utils.Database, dt: DataType, access: Access | None, account: str, ids: list[str]
) -> set[str]:
    """Those of ``ids`` that ``access`` may see."""
    if access is None:
        return set(ids)
    where, params = visible_where(dt, access)
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT id FROM [{dt.table}] WHERE account = ? AND id IN ({marks}) AND ({where})",
            [account, *chunk, *params],
        ).fetchall()
        found.update(r[0] for r in rows)
    return found


def present(
    db: Any, dt: DataType, access: Access | None, records: list[dict[str, Any]],
    account: str | None = None,
) -> None:
    """Make records (already known visible) what the caller may see of them: ``myRights``
    of a container, a sharee's per-user values, no ``shareWith`` without the right to
    change it, no hidden parent; a member's containers only those the sharee sees."""
    if dt.sharing is not None:
        sharing = dt.sharing
        for record in records:
            if access is None:
                if "myRights" in record:
                    record["myRights"] = sharing.full()
                continue
            rights = access.containers(dt.name).get(record["id"], {})
            if "myRights" in record:
                record["myRights"] = {r: bool(rights.get(r)) for r in sharing.rights}
            mine = access.prefs.get(dt.name, {}).get(record["id"], {})
            for name in sharing.per_user:
                if name in record:
                    if name in mine:
                        record[name] = mine[name]
                    elif name in sharing.per_user_defaults:
                        record[name] = sharing.per_user_defaults[name]
            if "shareWith" in record and not (
                sharing.share_right and rights.get(sharing.share_right)
            ):
                record["shareWith"] = None
            parent = sharing.parent_property
            if parent and record.get(parent) and record[parent] not in access.containers(dt.name):
                record[parent] = None
        return
    through = dt.shared_through
    if through is not None and through.per_user:
        # (the account's own users: their per-user updated times; sharees: their values)
        where = access.account if access is not None else account
        viewer = access.grantee if access is not None else account
        if where is not None and viewer is not None:
            present_per_user(db, dt, where, viewer, access is not None, records)
    if access is None or through is None:
        return
    if through.property is not None:
        seen = access.containers(through.container)
        for record in records:
            value = record.get(through.property)
            if isinstance(value, dict):
                record[through.property] = {k: v for k, v in value.items() if k in seen}
    if through.restrict is not None:
        through.restrict(db, access, records)


# -- writes: shareWith, and what a sharee may change ------------------------------------------


def normalise_share_with(
    dt: DataType, value: Any, owner_id: str, known: dict[str, Any], before: Any = None
) -> Any:
    """``shareWith`` checked and in its stored form: every right of the type present (false
    when not given), principals with no right left out, null when nobody is left.  The
    principals it adds must be in ``known`` (those already in ``before`` stay)."""
    assert dt.sharing is not None
    if value is None:
        return None
    bad = SetError("invalidProperties", "shareWith must map Principal ids to rights",
                   properties=["shareWith"])  # fmt: skip
    if not isinstance(value, dict):
        raise bad
    out: dict[str, dict[str, bool]] = {}
    for principal_id, rights in value.items():
        if not isinstance(rights, dict) or not all(isinstance(v, bool) for v in rights.values()):
            raise bad
        unknown = [r for r in rights if r not in dt.sharing.rights]
        if unknown:
            raise SetError(
                "invalidProperties",
                f"shareWith: unknown rights {', '.join(unknown)} (a {dt.name} has "
                f"{', '.join(dt.sharing.rights)})",
                properties=["shareWith"],
            )
        if principal_id == owner_id:
            raise SetError(
                "invalidProperties",
                "shareWith: the account's owner has every right already (RFC 9670 §4)",
                properties=["shareWith"],
            )
        if principal_id not in known and principal_id not in (before or {}):
            raise SetError(
                "invalidProperties",
                f"shareWith: no Principal {principal_id!r}",
                properties=["shareWith"],
            )
        full = {r: bool(rights.get(r)) for r in dt.sharing.rights}
        for right, implied in dt.sharing.implied.items():
            if full.get(right):
                full.update(dict.fromkeys(implied, True))
        if any(full.values()):
            out[principal_id] = full
    return out or None


async def resolve_principals(host: Host, ids: set[str]) -> dict[str, Principal]:
    """{principal id: Principal} for those of ``ids`` the directory knows (shareWith keys
    are checked before the write transaction opens: the directory is async)."""
    from .directory import DirectoryUnavailable
    from .push import account_owners

    if not ids:
        return {}
    wanted = sorted(ids)
    found: dict[str, Principal] = {}
    owners = await host.store.read(lambda db: account_owners(db, wanted))
    for principal_id, name in owners.items():
        principal = await host.directory.principal(name)
        if principal is not None and principal.account_id == principal_id:
            found[principal_id] = principal
    missing = ids - set(found)
    lister = getattr(host.directory, "list_principals", None)
    if missing and lister is not None:
        try:
            for principal in await lister():
                if principal.account_id in missing:
                    found[principal.account_id] = principal
        except DirectoryUnavailable:
            pass
    return found


def share_with_ids(create: Any, update: Any) -> set[str]:
    """Every principal id a /set's creates and updates put in ``shareWith``."""
    ids: set[str] = set()
    for obj in (create or {}).values():
        if isinstance(obj, dict) and isinstance(obj.get("shareWith"), dict):
            ids.update(obj["shareWith"])
    for patch in (update or {}).values():
        if not isinstance(patch, dict):
            continue
        for path, value in patch.items():
            if path == "shareWith" and isinstance(value, dict):
                ids.update(value)
            elif path.startswith("shareWith/"):
                ids.add(path.split("/")[1].replace("~1", "/").replace("~0", "~"))
    return ids


@dataclass
class ShareWrites:
    """What a /set changed in shares, for after its commit: whom to tell."""

    grantees: set[str] = field(default_factory=set)
    subscriptions: bool = False  # a sharee's isSubscribed changed (their Session may)
    changed_types: set[str] = field(default_factory=set)  # SetContext.changed_types


def check_container_write(
    dt: DataType,
    access: Access | None,
    operation: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    """May the caller create, update or destroy this container?  SetError if not."""
    sharing = dt.sharing
    assert sharing is not None
    if access is None:
        return
    mine = access.containers(dt.name)
    if operation == "create":
        parent_prop = sharing.parent_property
        parent = (new or {}).get(parent_prop) if parent_prop else None
        if parent is None or not access.right(dt.name, parent, sharing.create_child_right):
            raise SetError("forbidden", f"you may not create a {dt.name} here")
        return
    assert old is not None
    rights = mine.get(old["id"], {})
    if operation == "destroy":
        if not (sharing.delete_right and rights.get(sharing.delete_right)):
            raise SetError("forbidden", f"you may not destroy this {dt.name}")
        return
    assert new is not None
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    changed -= set(sharing.per_user) | {"myRights"}
    if "shareWith" in changed:
        changed.discard("shareWith")
        if not (sharing.share_right and rights.get(sharing.share_right)):
            raise SetError("forbidden", f"you may not change who shares this {dt.name}")
        given = new.get("shareWith") or {}
        before = old.get("shareWith") or {}
        for principal_id, granted in given.items():
            for right, value in granted.items():
                had = (before.get(principal_id) or {}).get(right)
                if value and not had and not rights.get(right):
                    raise SetError("forbidden", f"you cannot give {right}: you do not hold it")
    if changed:
        if not (sharing.update_right and rights.get(sharing.update_right)):
            raise SetError("forbidden", f"you may not change this {dt.name}")
        parent_prop = sharing.parent_property
        moved_to = new.get(parent_prop) if parent_prop in changed else None
        if moved_to is not None and not access.right(dt.name, moved_to, sharing.create_child_right):
            raise SetError("forbidden", f"you may not move this {dt.name} there")


def container_rights(access: Access, container: str, ids: Any) -> list[dict[str, bool]]:
    return [access.containers(container).get(i, {}) for i in (ids or {})]


def check_member_write(
    dt: DataType,
    access: Access | None,
    operation: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    db: Any = None,
) -> None:
    """May the caller create, update (``new`` already merged with what they cannot see,
    :func:`merge_hidden`) or destroy this member?  SetError if not.  ``operation``
    "per-user": a change of the sharee's own per-user values alone (``new`` their view
    after it): SharedThrough.check_sharee decides, or nobody needs a right."""
    through = dt.shared_through
    assert through is not None
    if access is None:
        return
    if through.property is None:
        raise SetError("forbidden", f"{dt.name} is read-only in a shared account")
    if operation == "per-user":
        if through.check_sharee is not None:
            through.check_sharee(db, access, operation, old, new)
        return
    prop = through.property
    seen = access.containers(through.container)
    if operation == "create":
        targets = (new or {}).get(prop) or {}
        hidden = [i for i in targets if i not in seen]
        if hidden:
            raise SetError("invalidProperties", f"{prop}: no such {through.container}",
                           properties=[prop])  # fmt: skip
        if through.check_sharee is not None:
            through.check_sharee(db, access, operation, None, new)
            return
        if not targets or not all(seen[i].get(through.add or "") for i in targets):
            raise SetError("forbidden", f"you may not add to that {through.container}")
        return
    assert old is not None
    before = old.get(prop) or {}
    if operation == "destroy":
        if through.check_sharee is not None:
            through.check_sharee(db, access, operation, old, None)
            return
        if not before or not all(seen.get(i, {}).get(through.remove or "") for i in before):
            raise SetError("forbidden", f"you may not remove this {dt.name}")
        return
    assert new is not None
    after = new.get(prop) or {}
    added = [i for i in after if i not in before]
    removed = [i for i in before if i not in after]
    hidden = [i for i in added if i not in seen]
    if hidden:
        raise SetError("invalidProperties", f"{prop}: no such {through.container}",
                       properties=[prop])  # fmt: skip
    if through.check_sharee is not None:
        # (also for an update that changes nothing: the type may refuse any, a private event)
        through.check_sharee(db, access, operation, old, new)
        return
    if not all(seen[i].get(through.add or "") for i in added):
        raise SetError("forbidden", f"you may not add to that {through.container}")
    if not all(seen.get(i, {}).get(through.remove or "") for i in removed):
        raise SetError("forbidden", f"you may not remove from that {through.container}")
    others = {k for k in set(old) | set(new) if k != prop and old.get(k) != new.get(k)}
    if others:
        rights = container_rights(access, through.container, before)
        if through.check_update is not None:
            through.check_update(rights, old, new)
        elif not (through.update and rights and all(r.get(through.update) for r in rights)):
            raise SetError("forbidden", f"you may not change this {dt.name}")


def merge_hidden(dt: DataType, access: Access | None, old: dict, new: dict) -> None:
    """Keep the containers a sharee cannot see in a member they update: their view of
    ``property`` lacks them, and replacing it must not take the member out of them."""
    through = dt.shared_through
    if access is None or through is None or through.property is None:
        return
    prop = through.property
    seen = access.containers(through.container)
    hidden = {k: v for k, v in (old.get(prop) or {}).items() if k not in seen}
    if hidden and isinstance(new.get(prop), dict):
        new[prop] = {**hidden, **new[prop]}


def record_share(
    db: sqlite_utils.Database,
    ctx: Any,
    dt: DataType,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    writes: ShareWrites,
) -> None:
    """Mirror a container's ``shareWith`` into host_share, write the ShareNotifications and
    the grantees' epochs, after the record itself was written (same transaction)."""
    from . import objectstore

    sharing = dt.sharing
    assert sharing is not None
    account = ctx.account.id
    record_id = (new or old or {})["id"]
    before = (old or {}).get("shareWith") or {}
    after = (new or {}).get("shareWith") or {}
    if before == after and new is not None:
        return
    db.execute(
        f"DELETE FROM [{SHARE_TABLE}] WHERE account = ? AND type = ? AND record = ? "
        + ("" if new is None else "AND grantee NOT IN (SELECT value FROM json_each(?))"),
        [account, dt.name, record_id, *([] if new is None else [json.dumps(list(after))])],
    )
    for grantee, rights in after.items():
        db.execute(
            f"INSERT INTO [{SHARE_TABLE}] (account, type, record, grantee, rights) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, type, record, grantee) "
            "DO UPDATE SET rights = excluded.rights",
            [account, dt.name, record_id, grantee, json.dumps(rights)],
        )
    if new is None:
        db.execute(
            f"DELETE FROM [{SUBSCRIPTION_TABLE}] WHERE account = ? AND type = ? AND record = ?",
            [account, dt.name, record_id],
        )
    changed = {g for g in set(before) | set(after) if before.get(g) != after.get(g)}
    if new is None:
        changed = set(before)
    if not changed:
        return
    writes.grantees |= changed
    # The grantees' views of this account changed: /changes from before cannot say how.
    for type_name in [dt.name, *ctx.host.shared_members.get(dt.name, ())]:
        modseq = objectstore.bump_modseq(db, account, type_name)
        for grantee in changed:
            db.execute(
                f"INSERT INTO [{EPOCH_TABLE}] (account, grantee, type, modseq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (account, grantee, type) DO UPDATE SET modseq = excluded.modseq",
                [account, grantee, type_name, modseq],
            )
    name = (new or old or {}).get(sharing.name_property) or ""
    by = ctx.principal
    for grantee in changed:
        old_rights = before.get(grantee)
        new_rights = after.get(grantee) if new is not None else None
        write_notification(db, grantee, {
            "created": dates.utcdate(),
            "changedBy": {
                "name": by.description or by.name,
                "email": by.emails[0] if by.emails else None,
                "principalId": by.account_id,
            },
            "objectType": dt.name,
            "objectAccountId": account,
            "objectId": record_id,
            "oldRights": old_rights,
            "newRights": new_rights,
            "name": name,
        })  # fmt: skip


def sharees(
    db: sqlite_utils.Database, dt: DataType, account: str, record_ids: list[str]
) -> list[tuple[str, str, dict[str, bool], dict[str, Any]]]:
    """(container id, grantee, rights, the grantee's per-user values with the defaults)
    of each share of these containers: whom a change in them concerns (a calendar's
    CalendarEventNotifications)."""
    assert dt.sharing is not None
    rows = db.execute(
        f"SELECT s.record, s.grantee, s.rights, u.subscribed, u.prefs FROM [{SHARE_TABLE}] s "
        f"LEFT JOIN [{SUBSCRIPTION_TABLE}] u ON u.account = s.account AND u.type = s.type "
        "AND u.record = s.record AND u.principal = s.grantee "
        "WHERE s.account = ? AND s.type = ? AND s.record IN (SELECT value FROM json_each(?))",
        [account, dt.name, json.dumps(record_ids)],
    ).fetchall()
    out = []
    for record, grantee, rights, subscribed, prefs in rows:
        values = {**dt.sharing.per_user_defaults, **(json.loads(prefs) if prefs else {})}
        if subscribed is not None:
            values["isSubscribed"] = bool(subscribed)
        out.append((str(record), str(grantee), json.loads(rights), values))
    return out


def epoch(db: sqlite_utils.Database, access: Access, type_name: str) -> int:
    """The state of ``type_name`` when the sharee's view of the account last changed."""
    row = db.execute(
        f"SELECT max(modseq) FROM [{EPOCH_TABLE}] WHERE account = ? AND type = ? "
        "AND grantee IN (SELECT value FROM json_each(?))",
        [access.account, type_name, json.dumps(list(access.grantees))],
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def set_per_user(
    db: sqlite_utils.Database, dt: DataType, access: Access, record_id: str, values: dict
) -> None:
    """A sharee's own values of a container's per-user properties (already checked against
    their types); null drops their own value (back to the default or the owner's)."""
    mine = dict(access.prefs.get(dt.name, {}).get(record_id, {}))
    for name, value in values.items():
        if value is None:
            mine.pop(name, None)
        else:
            mine[name] = value
    subscribed = mine.pop("isSubscribed", None)
    db.execute(
        f"INSERT INTO [{SUBSCRIPTION_TABLE}] (account, type, record, principal, subscribed, "
        "prefs) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account, type, record, principal) "
        "DO UPDATE SET subscribed = excluded.subscribed, prefs = excluded.prefs",
        [access.account, dt.name, record_id, access.grantee,
         None if subscribed is None else int(bool(subscribed)),
         json.dumps(mine) if mine else None],
    )  # fmt: skip
    if subscribed is not None:
        mine["isSubscribed"] = subscribed
    access.prefs.setdefault(dt.name, {})[record_id] = mine


# -- per-user member properties (SharedThrough.per_user) ------------------------------------


def create_member_prefs(db: sqlite_utils.Database) -> None:
    """Host migration "member_prefs": each user's own values of a member's per-user
    properties (JSON; null for the account's own users, whose values are the record's),
    the time and modseq of their last per-user write."""
    db[MEMBER_PREFS_TABLE].create(
        {"account": str, "type": str, "record": str, "principal": str, "prefs": str,
         "updated": str, "modseq": int},
        pk=("account", "type", "record", "principal"),
    )  # fmt: skip
    db[MEMBER_PREFS_TABLE].create_index(["account", "type", "principal", "modseq"])


def _per_user_pointer(through: SharedThrough, pointer: str) -> bool:
    return pointer.split("/", 1)[0].replace("~1", "/").replace("~0", "~") in through.per_user


def split_per_user(through: SharedThrough, record: dict[str, Any]) -> tuple[dict, dict]:
    """(the record without its per-user values, those values): the per-user properties
    and, in each ``per_user_patches`` map, the pointers into them (an entry left empty by
    that goes with them)."""
    shared = {k: v for k, v in record.items() if k not in through.per_user}
    mine: dict[str, Any] = {k: record[k] for k in through.per_user if k in record}
    for name in through.per_user_patches:
        value = record.get(name)
        if not isinstance(value, dict):
            continue
        kept: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, patch in value.items():
            if not isinstance(patch, dict):
                kept[key] = patch
                continue
            left = {p: v for p, v in patch.items() if not _per_user_pointer(through, p)}
            taken = {p: v for p, v in patch.items() if _per_user_pointer(through, p)}
            if left or not taken:
                kept[key] = left
            if taken:
                own[key] = taken
        shared[name] = kept or None
        if own:
            mine[name] = own
    return shared, mine


def join_per_user(
    through: SharedThrough, shared: dict[str, Any], mine: dict[str, Any], before: dict | None
) -> dict[str, Any]:
    """The record of ``shared`` values with ``mine`` per-user ones (split_per_user's
    inverse).  An entry of a patches map that held per-user pointers only comes back
    unless ``before`` (the shared values the writer saw) had it and ``shared`` dropped it."""
    record = dict(shared)
    record.update((k, v) for k, v in mine.items() if k in through.per_user)
    for name in through.per_user_patches:
        own = mine.get(name)
        if not own or name not in record:
            continue
        merged = {k: dict(v) if isinstance(v, dict) else v
                  for k, v in (record.get(name) or {}).items()}  # fmt: skip
        seen = (before or {}).get(name) or {}
        for key, patch in own.items():
            if key in merged and isinstance(merged[key], dict):
                merged[key].update(patch)
            elif key not in merged and key not in seen:
                merged[key] = dict(patch)
        record[name] = merged or None
    return record


def member_prefs(
    db: sqlite_utils.Database, dt: DataType, account: str, principal: str, ids: list[str]
) -> dict[str, tuple[dict[str, Any] | None, str | None]]:
    """{record id: (the user's per-user values or None, their per-user updated time)}."""
    found: dict[str, tuple[dict[str, Any] | None, str | None]] = {}
    for start in range(0, len(ids), 500):
        rows = db.execute(
            f"SELECT record, prefs, updated FROM [{MEMBER_PREFS_TABLE}] WHERE account = ? "
            "AND type = ? AND principal = ? AND record IN (SELECT value FROM json_each(?))",
            [account, dt.name, principal, json.dumps(ids[start : start + 500])],
        ).fetchall()
        for record, prefs, updated in rows:
            found[str(record)] = (json.loads(prefs) if prefs else None, updated)
    return found


def view_per_user(
    dt: DataType, record: dict[str, Any], prefs: dict[str, Any] | None, sharee: bool
) -> dict[str, Any]:
    """A sharee's view of a stored record: their own per-user values (``prefs``), else the
    defaults; the account's own users (``sharee`` false) see the record's."""
    through = dt.shared_through
    assert through is not None
    if not sharee:
        return record
    shared, _ = split_per_user(through, record)
    own = {}
    for name in through.per_user:
        if name in record:
            default = dt.by_name[name].default if name in dt.by_name else None
            own[name] = (prefs or {}).get(name, through.per_user_defaults.get(name, default))
    for name in through.per_user_patches:
        if name in record and (prefs or {}).get(name):
            own[name] = prefs[name]  # type: ignore[index]
    view = join_per_user(through, shared, own, None)
    return view


def present_per_user(
    db: sqlite_utils.Database, dt: DataType, account: str, viewer: str, sharee: bool,
    records: list[dict[str, Any]],
) -> None:
    """Make each record the ``viewer``'s view of it (view_per_user), with the later of
    their per-user ``updated`` and the record's."""
    through = dt.shared_through
    if through is None or not through.per_user or not records:
        return
    prefs = member_prefs(db, dt, account, viewer, [r["id"] for r in records])
    for index, record in enumerate(records):
        values, updated = prefs.get(record["id"], (None, None))
        view = view_per_user(dt, record, values, sharee)
        stamp = through.per_user_updated
        if stamp and stamp in view and updated and (view[stamp] or "") < updated:
            view[stamp] = updated
        if view is not record:
            record.clear()
            record.update(view)
        records[index] = record


def set_member_prefs(
    db: sqlite_utils.Database, dt: DataType, account: str, principal: str, record_id: str,
    values: dict[str, Any] | None, updated: str | None,
) -> int:
    """Store a user's per-user write of a member (``values`` None: the account's own user,
    whose values are in the record): a new state of the type, the change theirs alone."""
    from . import objectstore

    modseq = objectstore.bump_modseq(db, account, dt.name)
    db.execute(
        f"INSERT INTO [{MEMBER_PREFS_TABLE}] (account, type, record, principal, prefs, "
        "updated, modseq) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, type, record, "
        "principal) DO UPDATE SET prefs = excluded.prefs, updated = excluded.updated, "
        "modseq = excluded.modseq",
        [account, dt.name, record_id, principal,
         None if values is None else json.dumps(values), updated, modseq],
    )  # fmt: skip
    return modseq


def drop_member_prefs(db: sqlite_utils.Database, dt: DataType, account: str, record_id: str):
    """A destroyed member's per-user values go with it."""
    db.execute(
        f"DELETE FROM [{MEMBER_PREFS_TABLE}] WHERE account = ? AND type = ? AND record = ?",
        [account, dt.name, record_id],
    )


def per_user_changes(
    db: sqlite_utils.Database, dt: DataType, account: str, principal: str, since: int
) -> list[tuple[int, str, str]]:
    """(modseq, record id, "updated") of ``principal``'s own per-user writes after
    ``since``, oldest first: their /changes merges these into the account's log."""
    if dt.shared_through is None or not dt.shared_through.per_user:
        return []
    rows = db.execute(
        f"SELECT modseq, record FROM [{MEMBER_PREFS_TABLE}] WHERE account = ? AND type = ? "
        "AND principal = ? AND modseq > ? ORDER BY modseq",
        [account, dt.name, principal, since],
    ).fetchall()
    return [(int(m), str(r), "updated") for m, r in rows]


def inherit_share(
    db: sqlite_utils.Database, dt: DataType, access: Access, record: dict[str, Any]
) -> None:
    """A container a sharee creates inside one shared with them is shared with them as its
    parent is (else it would vanish from their view as it is made)."""
    sharing = dt.sharing
    assert sharing is not None and sharing.parent_property is not None
    rights = access.containers(dt.name).get(record.get(sharing.parent_property) or "", {})
    share_with = dict(record.get("shareWith") or {})
    share_with[access.grantee] = {r: bool(rights.get(r)) for r in sharing.rights}
    record["shareWith"] = share_with
    access.rights.setdefault(dt.name, {})[record["id"]] = share_with[access.grantee]


# -- ShareNotification (RFC 9670 §3) -------------------------------------------------------------


# The ShareNotification data type: the host's, in each user's personal account (served by
# the principals capability).
SHARE_NOTIFICATION = DataType(
    name=NOTIFICATION_TYPE,
    table="host_share_notification",
    properties=[
        Property("created", "UTCDate", server_set=True, immutable=True, sortable=True),
        Property("changedBy", "Object", server_set=True, immutable=True),
        Property("objectType", "String", server_set=True, immutable=True, indexed=True),
        Property("objectAccountId", "Id", server_set=True, immutable=True, indexed=True),
        Property("objectId", "Id", server_set=True, immutable=True),
        Property("oldRights", "Object|null", server_set=True, immutable=True),
        Property("newRights", "Object|null", server_set=True, immutable=True),
        Property("name", "String", server_set=True, immutable=True),
    ],
    filters=[
        FilterCondition("after", "created", "ge", value_type="UTCDate"),
        FilterCondition("before", "created", "lt", value_type="UTCDate"),
        FilterCondition("objectType", "objectType"),
        FilterCondition("objectAccountId", "objectAccountId"),
    ],
    access=read_and_destroy,  # §3.3: created by the server, destroyed to dismiss
    default_sort=("created",),
    methods=("get", "changes", "set", "query", "queryChanges"),  # §3.1-§3.5: no /copy
)


def write_notification(db: sqlite_utils.Database, account: str, values: dict[str, Any]) -> None:
    """Write a ShareNotification into ``account`` (in the caller's transaction), dropping
    the oldest past MAX_NOTIFICATIONS."""
    from . import objectstore

    dt = SHARE_NOTIFICATION
    record = {"id": objectstore.new_id(), **values}
    objectstore.insert_record(db, dt, account, record)
    objectstore.record_change(db, account, dt.name, record["id"], "created")
    over = db.execute(
        f"SELECT id FROM [{dt.table}] WHERE account = ? ORDER BY rowid DESC "
        + sqldialect.dialect(db).offset(),
        [account, MAX_NOTIFICATIONS],
    ).fetchall()
    for (old_id,) in over:
        objectstore.delete_record(db, dt, account, old_id)
        objectstore.record_change(db, account, dt.name, old_id, "destroyed")


async def tell_grantees(host: Host, writes: ShareWrites) -> None:
    """After a commit that changed shares: drop the cached shared accounts and push the
    grantees their new ShareNotification state."""
    from . import objectstore

    if not writes.grantees:
        return
    host.shares.changed()
    for grantee in writes.grantees:
        modseq = await host.store.read(
            lambda db, g=grantee: objectstore.current_modseq(db, g, NOTIFICATION_TYPE)[0]
        )
        host.push.publish(grantee, {NOTIFICATION_TYPE: str(modseq)})


def blob_refs_visible(db: sqlite_utils.Database, account: str, blob_ids: list[str]) -> set[str]:
    """Those of ``blob_ids`` that a record the sharee of the current call (CURRENT_SHARE)
    sees in ``account`` references (the member and container types' Blob/lookup); all of
    them outside a shared account."""
    current = CURRENT_SHARE.get()
    shared = None if current is None else current[1].get(account)
    if current is None or shared is None or not shared.shared:
        return set(blob_ids)
    access = load_access(db, current[0], shared, current[2])
    found: set[str] = set()
    for name, (_urn, lookup) in access.host.blob_lookups.items():
        if name not in access.host.shareable_types:
            continue
        dt = access.host.datatypes[name][0]
        refs = lookup(db, access.account, [b for b in blob_ids if b not in found])
        for blob_id, record_ids in refs.items():
            if visible_ids(db, dt, access, access.account, list(record_ids)):
                found.add(blob_id)
    return found
