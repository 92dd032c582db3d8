"""The standard methods of RFC 8620 §5, for every declared :class:`DataType`.

One implementation of /get (§5.1), /changes (§5.2), /set (§5.3), /copy (§5.4), /query
(§5.5) and /queryChanges (§5.6).  Argument checking happens on the event loop; the work
itself runs in one store transaction in a worker thread, so a /set reads and writes a
consistent state, is durable when it answers, and leaves nothing behind on a method-level
error.  Each create, update or destroy is all or nothing: creates and destroys run in a
savepoint each, updates too when one has to be (write_set says when and why).
"""

from __future__ import annotations

import copy
import functools
import heapq
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import sqlite_utils

from . import dates, sharing
from . import objectstore as os_
from .capabilities import Account, Call, Method
from .datatype import COMPOUND, DataType, FilterCondition, Property, SetContext, SetError
from .engine import check_get_size, set_arguments
from .errors import MethodError
from .numbers import parse_digits
from .push import publish_states
from .sqldialect import SQLITE, Dialect
from .store import atomically

T = TypeVar("T")

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_INT = 2**53 - 1


def standard_methods(dt: DataType) -> list[Method]:
    """The Method objects for the standard methods ``dt`` declares."""
    handlers: dict[str, tuple[Callable[..., Any], bool]] = {
        "get": (type_get, False),
        "changes": (type_changes, False),
        "set": (type_set, True),
        "copy": (type_copy, True),
        "query": (type_query, False),
        "queryChanges": (type_query_changes, False),
    }
    return [
        Method(f"{dt.name}/{name}", partial(handlers[name][0], dt), writes=handlers[name][1])
        for name in dt.methods
    ]


# -- JMAP values ---------------------------------------------------------------------------


def is_id(value: Any) -> bool:
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def value_ok(jmap_type: str, value: Any) -> bool:
    """Does ``value`` have the JMAP type ``jmap_type`` (RFC 8620 §1.1-§1.4)?"""
    return type_check(jmap_type)(value)


@functools.lru_cache(maxsize=512)
def type_check(jmap_type: str) -> Callable[[Any], bool]:
    """The test of ``value_ok`` for one JMAP type, built once per type string: a /set of
    50 records checks the same few types 50 times, and reading the type string again
    each time cost more than the test itself."""
    if jmap_type.endswith("|null"):
        inner_check = type_check(jmap_type.removesuffix("|null"))
        return lambda v: v is None or inner_check(v)
    if jmap_type in ("Any", "*"):
        return lambda v: True
    if jmap_type == "String":
        return lambda v: isinstance(v, str)
    if jmap_type in ("Id", "BlobId"):
        return is_id
    if jmap_type == "Boolean":
        return lambda v: isinstance(v, bool)
    if jmap_type == "Int":
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and abs(v) <= MAX_INT
    if jmap_type == "UnsignedInt":
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT
    if jmap_type == "Number":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    if jmap_type == "UTCDate":  # every RFC 3339 form (jmap_host.dates), Z only
        return dates.is_utcdate
    if jmap_type == "Date":
        return dates.is_date
    if jmap_type == "Object":
        return lambda v: isinstance(v, dict)
    m = COMPOUND.fullmatch(jmap_type)
    if m is None:
        return lambda v: False
    outer_check = type_check(m.group("outer"))
    if not m.group("inner"):
        return lambda v: isinstance(v, list) and all(outer_check(x) for x in v)
    inner_check = type_check(m.group("inner"))
    return lambda v: (
        isinstance(v, dict) and all(outer_check(k) and inner_check(x) for k, x in v.items())
    )


def resolve_creation_ids(prop: Property, value: Any, created: dict[str, str]) -> Any:
    """Replace ``#creationId`` references in an Id-typed value (§5.3); raise SetError for
    one that names no record created so far in this request."""

    def one(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("#"):
            if v[1:] not in created:
                raise SetError(
                    "invalidProperties",
                    f"{prop.name}: unknown creation id {v}",
                    properties=[prop.name],
                )
            return created[v[1:]]
        return v

    if value is None:
        return value
    shape = _id_shape(prop.base_type)
    if shape == "Id":
        return one(value)
    if shape == "Id[]" and isinstance(value, list):
        return [one(v) for v in value]
    if shape == "Id[*]" and isinstance(value, dict):
        return {one(k): v for k, v in value.items()}
    return value


@functools.lru_cache(maxsize=512)
def _id_shape(base: str) -> str | None:
    """Where a type holds Ids that may be creation references: the value itself ("Id"),
    a list's items ("Id[]") or a map's keys ("Id[*]"); None: nowhere."""
    if base == "Id":
        return "Id"
    m = COMPOUND.fullmatch(base)
    if m and m.group("outer") == "Id":
        return "Id[*]" if m.group("inner") else "Id[]"
    return None


# -- argument checks -----------------------------------------------------------------------


def arg(call: Call, name: str, jmap_type: str, default: Any = None) -> Any:
    value = call.args.get(name, default)
    if value is None and default is None:
        if not jmap_type.endswith("|null"):
            raise MethodError("invalidArguments", f"{name} is required")
        return None
    if not value_ok(jmap_type, value):
        raise MethodError("invalidArguments", f"{name} must be {jmap_type}")
    return value


def parse_state(state: Any) -> int | None:
    return parse_digits(state) if isinstance(state, str) else None


def _resolve_id(value: str, created: dict[str, str]) -> str:
    if value.startswith("#"):
        return created.get(value[1:], value)
    return value


def check_read(dt: DataType, call: Call) -> None:
    """The type's access rule for reading (the method error "forbidden", §3.6.2)."""
    assert call.account is not None
    if dt.access is not None and not dt.access(call.account, call.request.principal, "read"):
        raise MethodError("forbidden", f"you may not read {dt.name} in this account")
    sharing.check_shareable(dt, call)


# -- /get ----------------------------------------------------------------------------------


async def type_get(dt: DataType, call: Call) -> dict[str, Any]:
    """RFC 8620 §5.1 /get."""
    check_read(dt, call)
    assert call.account is not None
    account = call.account.id
    ids = call.args.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise MethodError("invalidArguments", "ids must be an array of ids or null")
        check_get_size(call, ids)
        ids = list(dict.fromkeys(_resolve_id(i, call.request.created_ids) for i in ids))
    properties = call.args.get("properties")
    if properties is not None:
        if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise MethodError("invalidArguments", "properties must be an array of strings or null")
        unknown = [p for p in properties if p != "id" and p not in dt.by_name and not dt.is_open(p)]
        if unknown:
            raise MethodError("invalidArguments", f"unknown properties: {', '.join(unknown)}")
        properties = list(dict.fromkeys(["id", *properties]))
    limit = call.host.limits.max_objects_in_get

    def read(db: sqlite_utils.Database) -> tuple[int, list[dict[str, Any]]]:
        modseq, _ = os_.current_modseq(db, account, dt.name)
        access = sharing.access_for(db, call, dt)
        if ids is None:
            if not dt.get_all:
                raise MethodError("invalidArguments", f"{dt.name}/get needs ids")
            if access is None and os_.count_records(db, dt, account) > limit:
                raise MethodError("requestTooLarge", f"more than {limit} records; ask by ids")
            wanted = None
            if access is not None:
                wanted = os_.query_ids(db, dt, account, sharing.visible_where(dt, access), "rowid")
                if len(wanted) > limit:
                    raise MethodError("requestTooLarge", f"more than {limit} records; ask by ids")
        else:
            wanted = [i for i in ids if is_id(i)]
            if access is not None:
                seen = sharing.visible_ids(db, dt, access, account, wanted)
                wanted = [i for i in wanted if i in seen]
        records = os_.read_records(db, dt, account, wanted, properties)
        sharing.present(db, dt, access, records, account)
        return modseq, records

    modseq, records = await call.host.store.read(read)
    found = {r["id"] for r in records}
    return {
        "accountId": account,
        "state": str(modseq),
        "list": records,
        "notFound": [] if ids is None else [i for i in ids if i not in found],
    }


# -- /changes ------------------------------------------------------------------------------


def _log_rows(
    db: sqlite_utils.Database, account: str, dt: DataType, since: int
) -> Iterable[tuple[int, str, str]]:
    position = since
    while True:
        rows = os_.changes_since(db, account, dt.name, position, 1000)
        if not rows:
            return
        yield from rows
        position = rows[-1][0]


def collect_changes(
    db: sqlite_utils.Database, account: str, dt: DataType, since: int, max_ids: int,
    own: Iterable[tuple[int, str, str]] = (),
) -> tuple[dict[str, str], int, bool]:
    """Walk the log after ``since``, coalescing per id (§5.2), taking at most ``max_ids``
    distinct ids.  Returns ({id: created|updated|destroyed|gone}, new modseq, more).
    ``own``: the caller's own change rows (their per-user writes, oldest first), merged in."""
    modseq, _ = os_.current_modseq(db, account, dt.name)
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    position = since
    for row_modseq, record_id, kind in heapq.merge(_log_rows(db, account, dt, since), own):
        if record_id not in first:
            if len(first) >= max_ids:
                return _coalesce(first, last), position, True
            first[record_id] = kind
        last[record_id] = kind
        position = row_modseq
    return _coalesce(first, last), modseq, False


def _coalesce(first: dict[str, str], last: dict[str, str]) -> dict[str, str]:
    out = {}
    for record_id, kind in first.items():
        if kind == "created":
            out[record_id] = "gone" if last[record_id] == "destroyed" else "created"
        else:
            out[record_id] = "destroyed" if last[record_id] == "destroyed" else "updated"
    return out


def shared_changes(
    db: sqlite_utils.Database, dt: DataType, access: Any, account: str, changes: dict[str, str]
) -> dict[str, str]:
    """A sharee's view of /changes: a record they cannot see now was destroyed for them
    (it may have left the containers shared with them), or, if it was created since,
    never happened.  Of a DataType.per_principal type a user's view names their own
    records alone: another user's, even destroyed, never was theirs to see."""
    seen = sharing.visible_ids(db, dt, access, account, list(changes))
    out = {}
    if dt.per_principal is not None:  # (whose a record is never changes)
        theirs = os_.destroyed_for(db, dt, account, access.grantee, list(changes))
        return {i: k for i, k in changes.items() if i in seen or i in theirs}
    for record_id, kind in changes.items():
        if record_id in seen or kind in ("destroyed", "gone"):
            out[record_id] = kind
        elif kind == "updated":
            out[record_id] = "destroyed"
    return out


def check_since(db: sqlite_utils.Database, account: str, dt: DataType, since: int | None) -> int:
    modseq, low = os_.current_modseq(db, account, dt.name)
    if since is None or since > modseq or since < low:
        raise MethodError("cannotCalculateChanges", "state unknown or too old; refetch")
    return modseq


async def type_changes(dt: DataType, call: Call) -> dict[str, Any]:
    """RFC 8620 §5.2 /changes."""
    check_read(dt, call)
    assert call.account is not None
    account = call.account.id
    since_text = arg(call, "sinceState", "String")
    max_changes = arg(call, "maxChanges", "UnsignedInt|null")
    if max_changes is not None and max_changes < 1:
        raise MethodError("invalidArguments", "maxChanges must be a positive integer")
    limit = min(max_changes or dt.max_changes, dt.max_changes)
    since = parse_state(since_text)

    def read(db: sqlite_utils.Database) -> tuple[dict[str, str], int, bool]:
        check_since(db, account, dt, since)
        assert since is not None
        access = sharing.access_for(db, call, dt)
        if access is not None and since < sharing.epoch(db, access, dt.name):
            raise MethodError(
                "cannotCalculateChanges", "what is shared with you changed since; refetch"
            )
        viewer = access.grantee if access is not None else account
        own = sharing.per_user_changes(db, dt, account, viewer, since)
        changes, new_modseq, more = collect_changes(db, account, dt, since, limit, own)
        if access is not None:
            changes = shared_changes(db, dt, access, account, changes)
        return changes, new_modseq, more

    changes, new_modseq, more = await call.host.store.read(read)
    return {
        "accountId": account,
        "oldState": since_text,
        "newState": str(new_modseq),
        "hasMoreChanges": more,
        "created": [i for i, k in changes.items() if k == "created"],
        "updated": [i for i, k in changes.items() if k == "updated"],
        "destroyed": [i for i, k in changes.items() if k == "destroyed"],
    }


# -- /set ----------------------------------------------------------------------------------


class SetRun:
    """One /set (or the create half of a /copy) inside its write transaction."""

    def __init__(self, dt: DataType, call: Call, account: Account, db: sqlite_utils.Database):
        self.dt = dt
        self.call = call
        self.account = account
        self.db = db
        self.ctx = SetContext(db, account, call.request.principal, dt, call.host, call.args)
        # A working copy: the request's map learns the new ids only once the transaction
        # has committed, so a rolled-back /set leaves no creation id pointing nowhere.
        self.created_ids = dict(call.request.created_ids)
        # Records read ahead by preload(), valid while this connection's write generation
        # for the type is ``_generation`` (only this run's own writes have happened).
        self._preloaded: dict[str, dict[str, Any]] = {}
        self._preloaded_whole = True  # False: only what the updates read (update_reads)
        self._generation = -1
        # (record id, kind) of this run's changes, written to the change log by finish()
        # in one statement; an operation that fails takes its own entries back.
        self._changes: list[tuple[str, str]] = []
        # Sharing (jmap_host.sharing): what the caller may do in a shared account (None:
        # everything), the Principals shareWith may name (resolved before the
        # transaction), and whom the shares this run writes concern.
        self.access = (
            sharing.load_access(db, call.host, account, call.request.principal)
            if account.shared
            else sharing.own_access(call.host, account, call.request.principal, dt)
        )
        self.principals: dict[str, Any] = {}
        self.share_writes = sharing.ShareWrites()
        self.share_writes.changed_types = self.ctx.changed_types  # (the hooks' other types)

    def finish(self) -> None:
        """Record this run's changes (the type's new state); call once, at the end."""
        os_.record_changes(self.db, self.account.id, self.dt.name, self._changes)
        self._changes = []

    def update_properties(self, patches: Iterable[Any]) -> list[str] | None:
        """What updates with these patches read of their records: the type's
        ``update_reads``, the properties the patches touch and the BlobId properties
        (None: the whole record)."""
        through = self.dt.shared_through
        if self.dt.update_reads is None or self.access is not None or (
            through is not None and through.per_user  # (split into shared and per-user)
        ):
            return None
        wanted = dict.fromkeys(self.dt.update_reads)
        wanted.update((p.name, None) for p in self.dt.properties if p.base_type == "BlobId")
        for patch in patches:
            if isinstance(patch, dict):
                wanted.update((top, None) for top in _patch_tops(tuple(patch)))
        return [n for n in wanted if n in self.dt.by_name]

    def preload(self, record_ids: list[str], patches: list[Any]) -> None:
        """Read the records about to be updated (with these patches) in one query instead
        of one each: an update of 50 Emails is then one SELECT.  load() hands them out
        while no write but this run's own has touched the type's rows since; otherwise it
        reads again."""
        ids = [i for i in dict.fromkeys(record_ids) if is_id(i)]
        if len(ids) < 2:
            return
        properties = self.update_properties(patches)
        found = os_.read_records(self.db, self.dt, self.account.id, ids, properties)
        self._preloaded_whole = properties is None
        self._preloaded = {r["id"]: r for r in found}
        self._generation = os_.write_generation(self.db, self.dt)

    def _own_write(self, write: Callable[[], Any]) -> None:
        """Perform this run's own write of the type's rows, keeping the preloaded records
        valid if they were before it."""
        valid = os_.write_generation(self.db, self.dt) == self._generation
        write()
        if valid:
            self._generation = os_.write_generation(self.db, self.dt)

    # Each operation runs in a savepoint so that a SetError undoes all of it.
    def atomically(self, fn: Callable[[], Any]) -> Any:
        changes = len(self._changes)
        try:
            return atomically(self.db, fn)
        except BaseException:
            del self._changes[changes:]
            raise

    def check_values(self, record: dict[str, Any], names: list[str]) -> list[str]:
        """Check (and resolve the creation ids of) these properties of ``record``; raise
        SetError invalidProperties naming the bad ones.  Dates are made canonical (RFC
        8620 §1.4: upper case, no trailing zeros in the fraction): returns the names whose
        value that changed, for the created/updated answer."""
        bad: list[str] = []
        problems: list[str] = []
        normalized: list[str] = []
        for name in names:
            prop = self.dt.by_name[name]
            value = record.get(name)
            try:
                value = resolve_creation_ids(prop, value, self.created_ids)
            except SetError:
                bad.append(name)
                problems.append(f"{name}: unknown creation id")
                continue
            record[name] = value
            if not value_ok(prop.type, value):
                bad.append(name)
                problems.append(f"{name} must be {prop.type}")
                continue
            if value is not None and prop.base_type in os_.DATE_TYPES:
                canonical = dates.canonical(value)
                if canonical != value:
                    record[name] = value = canonical
                    normalized.append(name)
            if prop.validate is not None and value is not None:
                try:
                    prop.validate(value)
                except ValueError as exc:
                    bad.append(name)
                    problems.append(f"{name}: {exc}")
                    continue
            if prop.base_type == "BlobId" and value is not None and not self.blob_ok(value):
                bad.append(name)
                problems.append(f"{name}: no such blob")
        if bad:
            raise SetError("invalidProperties", "; ".join(problems), properties=bad)
        return normalized

    def blob_ok(self, blob_id: str) -> bool:
        from . import blobs

        visible = getattr(blobs, "blob_visible", None)
        if visible is None:
            return True
        return bool(visible(self.db, self.account.id, blob_id, self.call.request.principal.name))

    def sync_blob_refs(self, record: dict[str, Any]) -> None:
        from . import blobs

        add = getattr(blobs, "add_blob_reference", None)
        remove = getattr(blobs, "remove_blob_references", None)
        if add is None or remove is None:
            return
        if not self.dt.has_blobs:
            return  # (a type keeping its own references: its hooks do, as Email's)
        ref = f"{self.dt.name}:{record['id']}"
        remove(self.db, self.account.id, ref)
        for blob_id in dict.fromkeys(b for _, b in self.dt.blobs(record)):
            add(self.db, self.account.id, blob_id, ref)

    def check_embedded_blobs(self, record: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The blob ids the client put inside the record's JSON values (those ``old`` did
        not name already) must be blobs the user may use here (DataType.embedded_blobs)."""
        if self.dt.embedded_blobs is None:
            return
        had = {b for _, b in self.dt.blobs(old)} if old is not None else set()
        for path, blob_id in self.dt.embedded_blobs(record):
            if isinstance(blob_id, str) and blob_id not in had and not self.blob_ok(blob_id):
                raise SetError("invalidProperties", f"{path}: no such blob",
                               properties=[path.split("/", 1)[0]])  # fmt: skip

    def allowed(self, operation: str) -> None:
        if self.dt.access is not None and not self.dt.access(
            self.account, self.call.request.principal, operation
        ):
            raise SetError("forbidden", f"you may not {operation} this {self.dt.name}")

    def create(self, given: dict[str, Any], copied_from: dict[str, Any] | None = None) -> dict:
        """Create one record from the client's object; returns the ``created`` entry."""
        dt = self.dt
        if dt.singleton:
            raise SetError("singleton", f"{dt.name} is a singleton: update it instead")
        self.allowed("create")
        if not isinstance(given, dict):
            raise SetError("invalidProperties", "the object must be a JSON object")
        unknown = [k for k in given if k not in dt.by_name and not dt.is_open(k)]
        server_set = [k for k in given if k in dt.by_name and dt.by_name[k].server_set]
        if unknown or server_set:
            names = unknown + server_set
            why = ("unknown" if unknown else "server-set") + " properties: " + ", ".join(names)
            raise SetError("invalidProperties", why, properties=names)
        base = dict(copied_from or {})
        base.update(given)
        missing = [p.name for p in dt.properties if p.required and base.get(p.name) is None]
        if missing:
            raise SetError(
                "invalidProperties", f"required: {', '.join(missing)}", properties=missing
            )
        record: dict[str, Any] = {"id": os_.new_id()}
        for prop in dt.properties:
            if prop.name in base:
                record[prop.name] = base[prop.name]
            else:
                record[prop.name] = copy.deepcopy(prop.default)
        record.update((k, v) for k, v in base.items() if dt.is_open(k))
        normalized = self.check_values(record, [p.name for p in dt.properties if p.name in base])
        if dt.sharing is not None:
            sharing.check_container_write(dt, self.access, "create", None, record)
            self._share_with(record, normalized)
            if self.access is not None:
                sharing.inherit_share(self.db, dt, self.access, record)
        if dt.shared_through is not None:
            if dt.shared_through.property is not None:
                self._check_containers(record)
            sharing.check_member_write(dt, self.access, "create", None, record, self.db)
        self.check_embedded_blobs(record, None)
        through = dt.shared_through
        own: dict[str, Any] | None = None
        if through is not None and through.per_user and self.access is not None:
            # A sharee's per-user values are theirs: the record starts with the defaults.
            shared, own = sharing.split_per_user(through, record)
            record.clear()
            record.update(sharing.view_per_user(dt, shared | dict.fromkeys(through.per_user), None,
                                                True))  # fmt: skip
        if dt.on_create is not None:
            dt.on_create(self.ctx, record)
        self._check_unique(record)
        self._own_write(lambda: os_.insert_record(self.db, dt, self.account.id, record))
        self._changes.append((record["id"], "created"))
        if own is not None and self.access is not None:
            assert through is not None
            view = sharing.join_per_user(through, sharing.split_per_user(through, record)[0],
                                         own, None)  # fmt: skip
            if through.validate_per_user is not None:
                through.validate_per_user(view)
            sharing.set_member_prefs(self.db, dt, self.account.id, self.access.grantee,
                                     record["id"], sharing.split_per_user(through, view)[1],
                                     None)  # fmt: skip
        self.sync_blob_refs(record)
        if dt.sharing is not None:
            sharing.record_share(self.db, self.ctx, dt, None, record, self.share_writes)
        computed = [p.name for p in dt.properties if p.computed]
        if computed and dt.compute is not None:
            dt.compute(self.db, self.account.id, [record], computed)
        if dt.shareable:
            sharing.present(self.db, dt, self.access, [record], self.account.id)
        return {k: v for k, v in record.items() if k not in given or k in normalized}

    def _share_with(
        self, record: dict[str, Any], normalized: list[str], before: Any = None
    ) -> None:
        """shareWith checked and stored in its normal form (every right listed)."""
        value = sharing.normalise_share_with(
            self.dt, record.get("shareWith"), self.account.owner.account_id, self.principals,
            before,
        )
        if value != record.get("shareWith"):
            normalized.append("shareWith")
        record["shareWith"] = value

    def _check_unique(self, record: dict[str, Any], changed: list[str] | None = None) -> None:
        """DataType.unique: alreadyExists when another record holds the same values (on
        create, and on an update that changes one of them)."""
        for names in self.dt.unique:
            if changed is not None and not set(names) & set(changed):
                continue
            terms = " AND ".join(
                f"[{os_.column(self.dt.by_name[n])}] IS NOT DISTINCT FROM ?" for n in names
            )
            other = os_.query_ids(
                self.db, self.dt, self.account.id,
                (f"{terms} AND id != ?", [*(record.get(n) for n in names), record["id"]]),
                "id", 1,
            )  # fmt: skip
            if other:
                raise SetError("alreadyExists",
                               f"another {self.dt.name} has this {' and '.join(names)}",
                               existingId=other[0])  # fmt: skip

    def _check_containers(self, record: dict[str, Any]) -> None:
        """A member names at least one container, each an existing one of the account
        (SharedThrough.property: addressBookIds, calendarIds)."""
        through = self.dt.shared_through
        assert through is not None and through.property is not None
        prop = through.property
        value = record.get(prop)
        if not value or any(v is not True for v in value.values()):
            raise SetError("invalidProperties",
                           f"{prop}: at least one {through.container}, each with true",
                           properties=[prop])  # fmt: skip
        container = self.call.host.datatypes[through.container][0]
        wanted = [i for i in value if is_id(i)]
        found = os_.read_records(self.db, container, self.account.id, wanted, [])
        if len(found) != len(value):
            raise SetError("invalidProperties", f"{prop}: no such {through.container}",
                           properties=[prop])  # fmt: skip

    def _visible(self, record_id: str) -> None:
        """In a shared account, what the caller cannot see does not exist (notFound)."""
        if self.access is not None and not sharing.visible_ids(
            self.db, self.dt, self.access, self.account.id, [record_id]
        ):
            raise SetError("notFound")

    def update(self, record_id: str, patch: Any) -> dict[str, Any] | None:
        dt = self.dt
        if not isinstance(patch, dict):
            raise SetError("invalidPatch", "a PatchObject must be a JSON object")
        self._visible(record_id)
        current = self.load(record_id, patch)
        self.allowed("update")
        if dt.sharing is not None and self.access is not None:
            # A sharee's per-user values (isSubscribed...) are theirs, not the record's.
            mine = {k: v for k, v in patch.items() if k in dt.sharing.per_user}
            own_values = bool(mine)
            if mine:
                checked = {**current, **{k: v for k, v in mine.items() if v is not None}}
                self.check_values(checked, [k for k, v in mine.items() if v is not None])
                sharing.set_per_user(self.db, dt, self.access, record_id, mine)
                self.share_writes.subscriptions = True
                patch = {k: v for k, v in patch.items() if k not in mine}
            # Without the right to change shareWith a sharee does not see it either: a patch
            # into it is refused before it is applied to the owner's value.
            touches_share = any(k == "shareWith" or k.startswith("shareWith/") for k in patch)
            if touches_share and not self.access.right(dt.name, record_id, dt.sharing.share_right):
                raise SetError("forbidden", f"you may not change who shares this {dt.name}")
        else:
            own_values = False
        through = dt.shared_through
        view: dict[str, Any] | None = None  # (a per-user type: the writer's view after it)
        store_mine: Callable[[], dict[str, Any] | None] | None = None
        if through is not None and through.per_user and self.access is not None:
            # The patch is of the sharee's view (their per-user values); what of it is not
            # per-user goes onto the record, which keeps the account's own values.
            grantee = self.access.grantee
            mine = sharing.member_prefs(self.db, dt, self.account.id, grantee, [record_id])
            before = sharing.view_per_user(dt, current, mine.get(record_id, (None, None))[0], True)
            view, touched = apply_patch(dt, before, patch)
            seen, _ = sharing.split_per_user(through, before)
            shared, _ = sharing.split_per_user(through, view)
            _, owners = sharing.split_per_user(through, current)
            record = sharing.join_per_user(through, shared, owners, seen)
            if sharing.split_per_user(through, before)[1] == sharing.split_per_user(
                through, view
            )[1]:
                view = None  # (their own values did not change)
        else:
            record, touched = apply_patch(dt, current, patch)
            if through is not None and through.per_user:
                old_shared, old_mine = sharing.split_per_user(through, current)
                new_shared, new_mine = sharing.split_per_user(through, record)
                if old_mine != new_mine and old_shared == new_shared:
                    view = record
        if dt.shared_through is not None:
            sharing.merge_hidden(dt, self.access, current, record)
        errors = [
            name
            for name in touched
            if (name == "id" and record["id"] != current["id"])
            or (
                name in dt.by_name
                and (dt.by_name[name].server_set or dt.by_name[name].immutable)
                and record.get(name) != current.get(name)
            )
        ]
        if errors:
            raise SetError(
                "invalidProperties",
                "server-set or immutable: " + ", ".join(errors),
                properties=errors,
            )
        normalized = self.check_values(record, [n for n in touched if n in dt.by_name])
        if dt.sharing is not None:
            if "shareWith" in touched:
                self._share_with(record, normalized, current.get("shareWith"))
            sharing.check_container_write(dt, self.access, "update", current, record)
        if dt.shared_through is not None:
            prop = dt.shared_through.property
            if prop is not None and record.get(prop) != current.get(prop):
                self._check_containers(record)
            sharing.check_member_write(dt, self.access, "update", current, record, self.db)
        if self.access is not None and view is None and not own_values and record == current:
            # A sharee's update that changes nothing, of the record or of their own values,
            # writes nothing and runs no hook (no new times, change, notification or
            # state); RFC 8620 §5.3 lets "updated" be null.  The rights were checked above.
            return {n: record[n] for n in normalized} or None
        if view is not None:
            assert through is not None
            if self.access is not None:
                self.check_values(view, [n for n in touched if n in through.per_user
                                         and n in dt.by_name])  # fmt: skip
            store_mine = self._per_user(record_id, current, view, record)
            if self.access is None or record == current:
                return store_mine()  # (their per-user values alone: the whole update)
        # What the hook itself changes is reported back; without a hook nothing is.  Hooks
        # assign the properties they change (plugin guide), so a shallow copy tells.
        self.check_embedded_blobs(record, current)
        before_hook = dict(record) if dt.on_update is not None else record
        if dt.on_update is not None:
            dt.on_update(self.ctx, current, record)
        # Only the columns whose values changed are written, and the blob references
        # (which follow the BlobId properties alone) only when one of those changed.
        # (An unchanged property still holds the very object ``current`` does: a cheap
        # identity test first, equality only for what was replaced.)
        names = [k for k, v in record.items() if v is not (c := current.get(k)) and v != c]
        names += [k for k, c in current.items() if k not in record and c is not None]
        differ = [dt.by_name[n] for n in names if n in dt.by_name]
        opened = [n for n in names if n not in dt.by_name and n != "id"]  # (open types)
        names = [p.name for p in differ] + opened
        self._check_unique(record, names)
        self._own_write(lambda: os_.update_record(self.db, dt, self.account.id, record, names))
        self._changes.append((record_id, "updated"))
        if any(p.base_type == "BlobId" for p in differ) or (
            dt.embedded_blobs is not None and dt.blobs(record) != dt.blobs(current)
        ):
            self.sync_blob_refs(record)
        if dt.sharing is not None:
            sharing.record_share(self.db, self.ctx, dt, current, record, self.share_writes)
        changed = {k: v for k, v in record.items() if v is not (b := before_hook.get(k)) and b != v}
        changed.update((n, record[n]) for n in normalized if n not in changed)
        if store_mine is not None:
            # A sharee's patch of shared and per-user properties at once: the record is
            # written above, their own values here (their per-user time, if later, is the
            # "updated" their /get answers).
            for name, stamp in (store_mine() or {}).items():
                if stamp and (record.get(name) or "") < stamp:
                    changed[name] = stamp
        return changed or None

    def _per_user(
        self, record_id: str, current: dict[str, Any], view: dict[str, Any], record: dict
    ) -> Callable[[], dict[str, Any] | None]:
        """A write that changed the writer's per-user values (SharedThrough.per_user),
        ``view`` being what they see after it: checked here; the function returned stores
        them as theirs, with their own ``updated`` time, in their /changes only, and
        returns the answer of a write of those values alone.  A sharee's write that also
        changes the record's shared values calls it after writing the record, so that a
        refused record write stores nothing."""
        dt = self.dt
        through = dt.shared_through
        assert through is not None
        if through.validate_per_user is not None:
            through.validate_per_user(view)
        sharing.check_member_write(dt, self.access, "per-user", current, view, self.db)
        stamp = dates.utcdate() if through.per_user_updated else None
        if self.access is not None:
            _, values = sharing.split_per_user(through, view)
            viewer = self.access.grantee
        else:  # the account's own user: their values are the record's
            values, viewer = None, self.account.id

        def store() -> dict[str, Any] | None:
            if self.access is None:
                names = [k for k in record if record.get(k) != current.get(k)]
                self._own_write(
                    lambda: os_.update_record(self.db, dt, self.account.id, record, names)
                )
            sharing.set_member_prefs(
                self.db, dt, self.account.id, viewer, record_id, values, stamp
            )
            if stamp and through.per_user_updated:
                return {through.per_user_updated: stamp}
            return None

        return store

    def destroy(self, record_id: str) -> None:
        self._visible(record_id)
        current = self.load(record_id)
        if self.dt.singleton:
            raise SetError("singleton", f"{self.dt.name} is a singleton: it cannot be destroyed")
        self.allowed("destroy")
        if self.dt.sharing is not None:
            sharing.check_container_write(self.dt, self.access, "destroy", current, None)
        if self.dt.shared_through is not None:
            sharing.check_member_write(self.dt, self.access, "destroy", current, None, self.db)
            if self.dt.shared_through.per_user:
                sharing.drop_member_prefs(self.db, self.dt, self.account.id, record_id)
        if self.dt.on_destroy is not None:
            self.dt.on_destroy(self.ctx, current)
        self._own_write(lambda: os_.delete_record(self.db, self.dt, self.account.id, record_id))
        self._changes.append((record_id, "destroyed"))
        from . import blobs

        remove = getattr(blobs, "remove_blob_references", None)
        if remove is not None:
            remove(self.db, self.account.id, f"{self.dt.name}:{record_id}")
        if self.dt.sharing is not None:
            sharing.record_share(self.db, self.ctx, self.dt, current, None, self.share_writes)

    def load(self, record_id: str, patch: Any = None) -> dict[str, Any]:
        """The stored record; for an update (with its ``patch``) only what the update
        reads (update_properties).  Preloaded records cover every update of the run."""
        if not is_id(record_id):
            raise SetError("notFound")
        if self._preloaded:
            if os_.write_generation(self.db, self.dt) == self._generation:
                if record_id in self._preloaded and (patch is not None or self._preloaded_whole):
                    return self._preloaded.pop(record_id)
            else:  # a hook wrote the type's rows: what was read ahead may be stale
                self._preloaded = {}
        properties = None if patch is None else self.update_properties([patch])
        found = os_.read_records(self.db, self.dt, self.account.id, [record_id], properties)
        if not found:
            raise SetError("notFound")
        return found[0]


def copy_json(value: Any) -> Any:
    """A deep copy of a record or value: dicts and lists are copied, immutable scalars
    shared.  Records hold JSON values, for which this is several times faster than
    ``copy.deepcopy`` (no memo); anything else still goes through ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    return copy.deepcopy(value)


def apply_patch(
    dt: DataType, current: dict[str, Any], patch: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Apply a PatchObject (§5.3); return the new record and the top-level properties
    the patch touched."""
    paths, tops = _patch_paths(tuple(patch))
    # Copy on write: the properties the patch touches are copied (it changes them in
    # place), the others shared with ``current`` (hooks assign, never mutate; see the
    # plugin guide), so a 50-record keyword update does not copy 50 whole Emails twice.
    record = dict(current)
    for top in tops:
        if top in record:
            record[top] = copy_json(record[top])
    touched: list[str] = []
    invalid: list[str] = []
    for path, tokens in paths:
        top = tokens[0]
        if top != "id" and top not in dt.by_name and not dt.is_open(top):
            invalid.append(top)
            continue
        touched.append(top)
        value = patch[path]
        if len(tokens) == 1:
            if top in dt.by_name or top == "id":
                record[top] = (
                    copy.deepcopy(dt.by_name[top].default)
                    if value is None and top != "id"
                    else value
                )
            elif value is None:
                record.pop(top, None)  # an open property set to null is gone
            else:
                record[top] = value
            continue
        target = record.get(top)
        for token in tokens[1:-1]:
            if not isinstance(target, dict) or token not in target:
                raise SetError("invalidPatch", f"{path!r}: no such object to patch into")
            target = target[token]
        if not isinstance(target, dict):
            # Pointers may not reach into arrays, nor past a scalar (§5.3).
            raise SetError("invalidPatch", f"{path!r} does not point into an object")
        if value is None:
            target.pop(tokens[-1], None)
        else:
            target[tokens[-1]] = value
    if invalid:
        raise SetError(
            "invalidProperties", "unknown properties: " + ", ".join(invalid), properties=invalid
        )
    return record, list(dict.fromkeys(touched))


def _patch_tops(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The top-level properties a patch's paths touch ((): a malformed patch, whose
    error the update itself reports)."""
    try:
        return _patch_paths(paths)[1]
    except SetError:
        return ()


@functools.lru_cache(maxsize=256)
def _patch_paths(
    paths: tuple[str, ...],
) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """A PatchObject's paths, each with its JSON Pointer tokens unescaped, and the
    top-level properties they touch; invalidPatch if one path is a prefix of another.
    Read once per set of paths: a /set sends the same patch shape for many records."""
    for a, b in itertools.pairwise(sorted(paths)):
        if b.startswith(a + "/"):
            raise SetError("invalidPatch", f"{a!r} is a prefix of {b!r}")
    parsed = tuple(
        (p, tuple(t.replace("~1", "/").replace("~0", "~") for t in p.split("/"))) for p in paths
    )
    return parsed, tuple(dict.fromkeys(tokens[0] for _, tokens in parsed))


class RetryCarefully(Exception):
    """A /set's update raised SetError after it had written (see write_set)."""


async def write_set(store: Any, fn: Callable[[sqlite_utils.Database, bool], T]) -> T:
    """Run a /set's write transaction ``fn(db, careful)``, which passes ``careful`` to
    run_set.  Every create, update and destroy must be all or nothing, and a savepoint
    per update did that at a tenth of the cost of a 50-record keyword update (SQLite
    journals every page a statement changes inside a savepoint, for rolling back to it).
    Yet an update that fails almost always fails before writing anything: notFound,
    invalidPatch, invalidProperties and a hook's refusals are found first, and the row is
    written last.  So the first attempt runs the updates without savepoints; if one did
    write and then fail (a hook that wrote, then refused), its transaction is rolled
    back and the whole /set runs again with a savepoint per update."""
    try:
        return await store.write(lambda db: fn(db, False))
    except RetryCarefully:
        return await store.write(lambda db: fn(db, True))


@dataclass
class SetRequest:
    """A /set's arguments, checked on the event loop (RFC 8620 §5.3), for its write
    transaction: :meth:`run` is the standard /set in it.  A type whose /set does more
    (``onSuccessSetIsDefault``, an occurrence's update) wraps ``run`` in a transaction of
    its own and passes that to :meth:`commit`."""

    dt: DataType
    call: Call
    account: Account
    if_in_state: str | None
    create: dict[str, Any] | None
    update: dict[str, Any] | None
    destroy: list[str] | None
    principals: dict[str, Any]  # the directory's, for the shareWith keys (it is async)

    def run(self, db: sqlite_utils.Database, careful: bool) -> dict[str, Any]:
        return run_set(
            self.dt, self.call, self.account, db, self.if_in_state, self.create, self.update,
            self.destroy, careful, self.principals,
        )  # fmt: skip

    async def commit(
        self, write: Callable[[sqlite_utils.Database, bool], dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Run ``write`` (by default :meth:`run`) in the /set's transaction (write_set);
        after the commit, record its creation ids for the rest of the request, push what
        changed (:func:`publish_set`) and answer."""
        result = await write_set(self.call.host.store, write or self.run)
        self.call.request.created_ids.update(result.pop("_created_ids"))
        writes = result.pop("_share_writes")
        await publish_set(self.call, self.dt, self.account.id, result, writes,
                          writes.changed_types)  # fmt: skip
        return result


async def set_request(dt: DataType, call: Call) -> SetRequest:
    """The arguments of a /set of ``dt``, checked; a method error if they are wrong."""
    assert call.account is not None
    if_in_state = arg(call, "ifInState", "String|null")
    create, update, destroy = set_arguments(call)
    sharing.check_shareable(dt, call)
    principals = {}
    if dt.sharing is not None:
        ids = sharing.share_with_ids(create, update)
        principals = await sharing.resolve_principals(call.host, ids)
    return SetRequest(dt, call, call.account, if_in_state, create, update, destroy, principals)


async def type_set(dt: DataType, call: Call) -> dict[str, Any]:
    """RFC 8620 §5.3 /set."""
    return await (await set_request(dt, call)).commit()


async def publish_set(
    call: Call, dt: DataType, account: str, result: dict[str, Any], writes: Any,
    others: Iterable[str] = (),
) -> None:
    """Push the new state of a /set.  The states of the member types too when it changed
    shares (what the sharees see of them changed) or destroyed containers (their members
    left them, or went with them), and of the ``others`` its hooks wrote
    (SetContext.changed_types); and the grantees' notifications."""
    if writes.subscriptions:
        call.host.shares.changed()  # the Session lists accounts by subscription
    members = call.host.shared_members.get(dt.name, ())
    others = [t for t in others if t != dt.name]
    if writes.grantees or (members and result["destroyed"]) or others:
        await publish_states(call.host, account, [dt.name, *members, *others])
        await sharing.tell_grantees(call.host, writes)
    elif result["newState"] != result["oldState"]:
        call.host.push.publish(account, {dt.name: result["newState"]})


def run_set(
    dt: DataType,
    call: Call,
    account: Account,
    db: sqlite_utils.Database,
    if_in_state: str | None,
    create: dict[str, Any] | None,
    update: dict[str, Any] | None,
    destroy: list[str] | None,
    careful: bool = True,
    principals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The /set in ``db``'s write transaction.  ``careful``: each update in a savepoint
    of its own; otherwise none, and RetryCarefully when one wrote and then failed
    (run it through write_set, which takes care of that)."""
    old, _ = os_.current_modseq(db, account.id, dt.name)
    if if_in_state is not None and if_in_state != str(old):
        raise MethodError("stateMismatch")
    run = SetRun(dt, call, account, db)
    run.principals = principals or {}
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    for creation_id, obj in (create or {}).items():
        try:
            created[creation_id] = run.atomically(partial(run.create, obj))
            # §5.3: creation ids map to the most recent record created with them.
            run.created_ids[creation_id] = created[creation_id]["id"]
        except SetError as exc:
            not_created[creation_id] = exc.to_json()
    destroy_ids = [_resolve_id(i, run.created_ids) for i in destroy or []]
    updated: dict[str, Any] = {}
    not_updated: dict[str, Any] = {}
    updates = [(_resolve_id(k, run.created_ids), p) for k, p in (update or {}).items()]
    run.preload([i for i, _ in updates if i not in destroy_ids], [p for _, p in updates])
    conn = db.conn
    for key, patch in (update or {}).items():
        record_id = _resolve_id(key, run.created_ids)
        if record_id in destroy_ids:
            not_updated[key] = {"type": "willDestroy"}
            continue
        if careful:
            try:
                updated[record_id] = run.atomically(partial(run.update, record_id, patch))
            except SetError as exc:
                not_updated[key] = exc.to_json()
            continue
        # Without a savepoint (see write_set): a SetError is taken as it is when the
        # connection's change count shows the update wrote nothing before it.
        written, changes = conn.total_changes, len(run._changes)
        try:
            updated[record_id] = run.update(record_id, patch)
        except SetError as exc:
            if conn.total_changes != written:
                raise RetryCarefully from exc
            del run._changes[changes:]
            not_updated[key] = exc.to_json()
    destroyed: list[str] = []
    not_destroyed: dict[str, Any] = {}
    for key, record_id in zip(destroy or [], destroy_ids, strict=True):
        try:
            run.atomically(partial(run.destroy, record_id))
            destroyed.append(record_id)
        except SetError as exc:
            not_destroyed[key] = exc.to_json()
    run.finish()
    new, _ = os_.current_modseq(db, account.id, dt.name)
    new_ids = {k: v for k, v in run.created_ids.items() if k in created}
    return {
        "_created_ids": new_ids,
        "_share_writes": run.share_writes,
        "accountId": account.id,
        "oldState": str(old),
        "newState": str(new),
        "created": created or None,
        "updated": updated or None,
        "destroyed": destroyed or None,
        "notCreated": not_created or None,
        "notUpdated": not_updated or None,
        "notDestroyed": not_destroyed or None,
    }


# -- /copy ---------------------------------------------------------------------------------


async def type_copy(dt: DataType, call: Call) -> list[tuple[str, dict[str, Any]]]:
    """RFC 8620 §5.4 /copy, with the implicit /set destroy of onSuccessDestroyOriginal."""
    assert call.account is not None
    target = call.account
    from_id = arg(call, "fromAccountId", "Id")
    if_from = arg(call, "ifFromInState", "String|null")
    if_in = arg(call, "ifInState", "String|null")
    create = arg(call, "create", "Object")
    destroy_original = arg(call, "onSuccessDestroyOriginal", "Boolean", False)
    destroy_if = arg(call, "destroyFromIfInState", "String|null")
    if from_id == target.id:
        raise MethodError("invalidArguments", "fromAccountId must differ from accountId")
    source = call.request.accounts.get(from_id)
    if source is None:
        raise MethodError("fromAccountNotFound")
    urn = call.host.methods[call.name][1]
    if urn not in call.request.account_capabilities[from_id]:
        raise MethodError("fromAccountNotSupportedByMethod")
    if dt.access is not None and not dt.access(source, call.request.principal, "read"):
        raise MethodError("forbidden", f"you may not read {dt.name} in the from account")
    for creation_id, obj in create.items():
        if not isinstance(obj, dict) or not is_id(obj.get("id")):
            raise MethodError("invalidArguments", f"create/{creation_id} needs the id to copy")
    if len(create) > call.host.limits.max_objects_in_set:
        raise MethodError("requestTooLarge")

    originals: list[str] = []
    new_ids: dict[str, str] = {}
    # From a shared account the copy is of what the caller sees: the type's own /get
    # (per-user values, restrict, a plugin's /get rules) reads it, so /copy never shows
    # more than /get does.  (The write still checks each is there and visible.)
    shown = await shown_records(dt, call, source, [o["id"] for o in create.values()])

    def write(db: sqlite_utils.Database) -> dict[str, Any]:
        from_modseq, _ = os_.current_modseq(db, source.id, dt.name)
        if if_from is not None and if_from != str(from_modseq):
            raise MethodError("stateMismatch", "ifFromInState does not match")
        old, _ = os_.current_modseq(db, target.id, dt.name)
        if if_in is not None and if_in != str(old):
            raise MethodError("stateMismatch")
        run = SetRun(dt, call, target, db)
        created: dict[str, Any] = {}
        not_created: dict[str, Any] = {}
        originals.clear()  # a retried transaction starts again
        new_ids.clear()
        for creation_id, obj in create.items():
            found = os_.read_records(db, dt, source.id, [obj["id"]])
            if found and source.shared:
                seen = sharing.load_access(db, call.host, source, call.request.principal)
                if not sharing.visible_ids(db, dt, seen, source.id, [obj["id"]]):
                    found = []  # what the sharee cannot see does not exist
                if shown is not None:
                    found = [shown[obj["id"]]] if found and obj["id"] in shown else []
            if not found:
                not_created[creation_id] = {"type": "notFound"}
                continue
            original = {
                k: v
                for k, v in found[0].items()
                if dt.is_open(k) or (k in dt.by_name and not dt.by_name[k].server_set)
            }
            overrides = {k: v for k, v in obj.items() if k != "id"}
            grant_blobs(db, dt, found[0], target.id, source.id)
            try:
                result = run.atomically(partial(run.create, overrides, original))
            except SetError as exc:
                not_created[creation_id] = exc.to_json()
                continue
            created[creation_id] = {
                k: v
                for k, v in result.items()
                if k == "id" or (k in dt.by_name and dt.by_name[k].server_set)
            }
            new_ids[creation_id] = result["id"]
            originals.append(obj["id"])
        run.finish()
        new, _ = os_.current_modseq(db, target.id, dt.name)
        return {"old": old, "new": new, "created": created, "not_created": not_created}

    result = await call.host.store.write(write)
    call.request.created_ids.update(new_ids)
    if result["new"] != result["old"]:
        call.host.push.publish(target.id, {dt.name: str(result["new"])})
    responses: list[tuple[str, dict[str, Any]]] = [
        (
            call.name,
            {
                "fromAccountId": source.id,
                "accountId": target.id,
                "oldState": str(result["old"]),
                "newState": str(result["new"]),
                "created": result["created"] or None,
                "notCreated": result["not_created"] or None,
            },
        )
    ]
    if destroy_original and originals:
        # §5.4: "a single call to Foo/set to destroy the original of each copied record".
        set_call = Call(
            name=f"{dt.name}/set",
            args={"accountId": source.id, "destroy": originals, "ifInState": destroy_if},
            call_id=call.call_id,
            request=call.request,
            account=source,
        )
        try:
            responses.append((f"{dt.name}/set", await type_set(dt, set_call)))
        except MethodError as exc:
            responses.append(("error", exc.to_json()))
    return responses


async def shown_records(
    dt: DataType, call: Call, source: Account, ids: list[str]
) -> dict[str, dict[str, Any]] | None:
    """{id: record} of ``ids`` as the caller's ``Foo/get`` in ``source`` answers them (the
    type's registered /get, else the standard one), when ``source`` is shared with them;
    None in their own account, whose stored records are theirs to copy whole."""
    if not source.shared:
        return None
    name = f"{dt.name}/get"
    registered = call.host.methods.get(name)
    found: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(ids))
    step = max(1, call.host.limits.max_objects_in_get)
    for start in range(0, len(wanted), step):
        sub = Call(name, {"accountId": source.id, "ids": wanted[start : start + step]},
                   call.call_id, call.request, source)  # fmt: skip
        answer = await (registered[0].handler(sub) if registered else type_get(dt, sub))
        found.update((r["id"], r) for r in answer["list"] if r.get("id") in wanted)
    return found


def grant_blobs(
    db: sqlite_utils.Database, dt: DataType, record: dict[str, Any], target: str, source: str
) -> None:
    """A copy's blobs become visible in the target account: the caller can read both."""
    from . import blobs

    add = getattr(blobs, "add_blob_reference", None)
    if add is None:
        return
    for _, blob_id in dt.blobs(record):
        add(db, target, blob_id, f"copy:{source}")


# -- /query and /queryChanges --------------------------------------------------------------


# Limits of /query that keep a filter or sort inside what the store can run (SQLite stops
# at an expression tree 1000 deep, which an OR of ~1000 conditions is, and at 32766 bound
# parameters), answered with the errors RFC 8620 §5.5 names, never a 500.  Documented in
# the operator guide ("Limits of /query").
MAX_FILTER_DEPTH = 32  # FilterOperators inside one another
MAX_FILTER_CONDITIONS = 256  # FilterOperators and FilterConditions in one filter, in all
MAX_SORT_COMPARATORS = 16  # Comparators in one sort


def check_filter(dt: DataType, node: Any, depth: int = 0, seen: list[int] | None = None) -> None:
    """The shape of a filter (§5.5): FilterOperators and FilterCondition objects, within
    MAX_FILTER_DEPTH and MAX_FILTER_CONDITIONS (unsupportedFilter past either)."""
    if seen is None:
        seen = [0]
    if depth > MAX_FILTER_DEPTH:
        raise MethodError(
            "unsupportedFilter", f"filter nested more than {MAX_FILTER_DEPTH} operators deep"
        )
    if node is None:
        return
    if not isinstance(node, dict):
        raise MethodError("invalidArguments", "a filter must be an object")
    seen[0] += 1
    if seen[0] > MAX_FILTER_CONDITIONS:
        raise MethodError(
            "unsupportedFilter",
            f"a filter may hold at most {MAX_FILTER_CONDITIONS} operators and conditions",
        )
    if "operator" in node:
        if node["operator"] not in ("AND", "OR", "NOT") or not isinstance(
            node.get("conditions"), list
        ):
            raise MethodError("invalidArguments", "FilterOperator needs operator and conditions")
        if set(node) - {"operator", "conditions"}:
            raise MethodError("invalidArguments", "FilterOperator has only operator and conditions")
        for child in node["conditions"]:
            check_filter(dt, child, depth + 1, seen)


def filter_value(dt: DataType, cond: FilterCondition, value: Any) -> Any:
    prop = dt.by_name[cond.property]
    expected = cond.value_type
    if expected is None:
        if cond.operator == "custom":
            expected = "Any"
        elif cond.operator == "isNull":
            expected = "Boolean"
        elif cond.operator in ("hasItem", "hasKey"):
            m = COMPOUND.fullmatch(prop.base_type)
            expected = m.group("outer") if m else "String"
        elif cond.operator == "in":
            expected = f"{prop.base_type}[]|null"
        else:
            expected = prop.base_type
    if not value_ok(expected, value):
        raise MethodError("invalidArguments", f"filter {cond.name} must be {expected}")
    if expected in os_.DATE_TYPES:
        return dates.canonical(value)
    return value


def check_sort(sort: Any) -> list[dict[str, Any]]:
    if sort is None:
        return []
    if not isinstance(sort, list):
        raise MethodError("invalidArguments", "sort must be an array of Comparators")
    if len(sort) > MAX_SORT_COMPARATORS:
        raise MethodError(
            "unsupportedSort", f"a sort may have at most {MAX_SORT_COMPARATORS} Comparators"
        )
    for comparator in sort:
        if (
            not isinstance(comparator, dict)
            or not isinstance(comparator.get("property"), str)
            or not isinstance(comparator.get("isAscending", True), bool)
            or not isinstance(comparator.get("collation", ""), str)
        ):
            raise MethodError("invalidArguments", "a Comparator needs a property name")
    return sort


def compile_query(
    dt: DataType, filter_: Any, sort: Any, dialect: Dialect = SQLITE
) -> tuple[tuple[str, list], str, bool]:
    """(where, order by, mutable): mutable when a filter or sort property can change.
    ``dialect``: the store's (``host.store.dialect``), whose collations the sort uses."""
    check_filter(dt, filter_)
    comparators = check_sort(sort) or [{"property": p} for p in dt.default_sort]
    try:
        where = os_.compile_filter(dt, filter_, partial(filter_value, dt))
    except os_.UnsupportedFilter as exc:
        raise MethodError("unsupportedFilter", str(exc)) from None
    try:
        order = os_.compile_sort(dt, comparators, dialect)
    except os_.UnsupportedSort as exc:
        raise MethodError("unsupportedSort", str(exc)) from None
    used = {c["property"] for c in comparators} | _filter_properties(dt, filter_)
    mutable = any(not dt.by_name[p].immutable for p in used if p in dt.by_name) or any(
        p in dt.sort_sql for p in used  # (derived from properties that may change)
    )
    return where, order, mutable


def _filter_properties(dt: DataType, node: Any) -> set[str]:
    if not node:
        return set()
    if "operator" in node:
        return set().union(*(_filter_properties(dt, c) for c in node["conditions"]))
    return {dt.filters_by_name[n].property for n in node if n in dt.filters_by_name}


async def type_query(dt: DataType, call: Call) -> dict[str, Any]:
    """RFC 8620 §5.5 /query."""
    check_read(dt, call)
    assert call.account is not None
    account = call.account.id
    position = arg(call, "position", "Int", 0)
    anchor = arg(call, "anchor", "Id|null")
    anchor_offset = arg(call, "anchorOffset", "Int", 0)
    limit = arg(call, "limit", "UnsignedInt|null")
    calculate_total = arg(call, "calculateTotal", "Boolean", False)
    where, order, _ = compile_query(
        dt, call.args.get("filter"), call.args.get("sort"), call.host.store.dialect
    )
    clamped = limit is None or limit > dt.query_limit
    page_size = dt.query_limit if clamped else limit

    def read(db: sqlite_utils.Database) -> dict[str, Any]:
        nonlocal where
        modseq, _ = os_.current_modseq(db, account, dt.name)
        access = sharing.access_for(db, call, dt)
        if access is not None:
            where = and_where(where, sharing.visible_where(dt, access))
        total = None
        if anchor is not None:
            ids = os_.query_ids(db, dt, account, where, order)
            if anchor not in ids:
                raise MethodError("anchorNotFound")
            start = max(0, ids.index(anchor) + anchor_offset)
            page, total = ids[start : start + page_size], len(ids)
        else:
            if position < 0 or calculate_total:
                total = os_.query_count(db, dt, account, where)
            start = max(0, total + position) if position < 0 and total is not None else position
            page = os_.query_ids(db, dt, account, where, order, page_size, start)
        out: dict[str, Any] = {
            "accountId": account,
            "queryState": str(modseq),
            # (a user's own records of a per_principal type: their own results)
            "canCalculateChanges": access is None
            or (dt.per_principal is not None and not call.account.shared),
            "position": start,
            "ids": page,
        }
        if calculate_total:
            out["total"] = total
        if clamped and limit is not None:
            out["limit"] = page_size
        return out

    return await call.host.store.read(read)


def and_where(a: tuple[str, list], b: tuple[str, list]) -> tuple[str, list]:
    """Two SQL conditions with their parameters, both to hold."""
    return f"({a[0]}) AND ({b[0]})", [*a[1], *b[1]]


def query_changes_result(
    db: sqlite_utils.Database,
    dt: DataType,
    call: Call,
    since: int | None,
    mutable: bool,
    current_ids: Callable[[], list[str]],
) -> dict[str, Any]:
    """The /queryChanges answer (§5.6) from the change log and the query's current ordered
    ids; shared by the standard method and plugins with their own query (mail's Email).
    Every record changed since ``since`` that may have left the results is "removed", and
    those now in the results are "added" at their index; with filter and sort on
    immutable properties only (``mutable`` false), updates cannot move a record."""
    assert call.account is not None
    account = call.account.id
    if call.account.shared:
        # (Its /query said canCalculateChanges false: what is visible moves with shares.)
        raise MethodError("cannotCalculateChanges", "run the query again in a shared account")
    since_text = call.args.get("sinceQueryState")
    max_changes = arg(call, "maxChanges", "UnsignedInt|null")
    up_to_id = arg(call, "upToId", "Id|null")
    calculate_total = arg(call, "calculateTotal", "Boolean", False)
    modseq = check_since(db, account, dt, since)
    assert since is not None
    changes, _, _ = collect_changes(db, account, dt, since, 10**9)
    if dt.per_principal is not None:  # (only the user's own records, as in /changes)
        changes = shared_changes(db, dt, sharing.access_for(db, call, dt), account, changes)
    ids = current_ids()
    index = {record_id: i for i, record_id in enumerate(ids)}
    relevant = {i: k for i, k in changes.items() if k != "gone" and (mutable or k != "updated")}
    removed = [i for i, k in relevant.items() if k != "created"]
    added = sorted(
        ({"id": i, "index": index[i]} for i in relevant if i in index),
        key=lambda a: a["index"],
    )
    if up_to_id is not None and not mutable and up_to_id in index:
        # §5.6: with immutable filter and sort, nothing past upToId concerns the client.
        added = [a for a in added if a["index"] <= index[up_to_id]]
    if max_changes is not None and len(removed) + len(added) > max_changes:
        raise MethodError("tooManyChanges")
    out: dict[str, Any] = {
        "accountId": account,
        "oldQueryState": since_text,
        "newQueryState": str(modseq),
        "removed": removed,
        "added": added,
    }
    if calculate_total:
        out["total"] = len(ids)
    return out


async def type_query_changes(dt: DataType, call: Call) -> dict[str, Any]:
    """RFC 8620 §5.6 /queryChanges (see query_changes_result)."""
    check_read(dt, call)
    assert call.account is not None
    account = call.account.id
    since = parse_state(arg(call, "sinceQueryState", "String"))
    where, order, mutable = compile_query(
        dt, call.args.get("filter"), call.args.get("sort"), call.host.store.dialect
    )

    def read(db: sqlite_utils.Database) -> dict[str, Any]:
        access = sharing.access_for(db, call, dt)
        seen = where if access is None else and_where(where, sharing.visible_where(dt, access))
        return query_changes_result(
            db, dt, call, since, mutable, lambda: os_.query_ids(db, dt, account, seen, order)
        )

    return await call.host.store.read(read)
