"""Declaring a JMAP data type, once, to get the standard methods of RFC 8620 §5 for free.

A plugin describes its type (properties with JMAP types, defaults, which are server-set,
immutable or required, per-property validation, filter conditions, sortable properties)
as a :class:`DataType` and lists it in its :class:`jmap_host.Capability`'s ``datatypes``.
The host then creates its table, keeps its modification sequence and change log, and
registers ``Foo/get``, ``Foo/changes``, ``Foo/set``, ``Foo/copy``, ``Foo/query`` and
``Foo/queryChanges`` (those listed in ``methods``).

```python
NOTE = DataType(
    name="Note",
    table="example_note",
    properties=[
        Property("title", "String", required=True, sortable=True),
        Property("done", "Boolean", default=False),
        Property("created", "UTCDate", server_set=True, sortable=True),
    ],
    filters=[FilterCondition("text", "title", "contains"),
             FilterCondition("done", "done", "equals")],
)
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite_utils

    from .capabilities import Account
    from .directory import Principal
    from .sharing import SharedThrough, Sharing

STANDARD_METHODS = ("get", "changes", "set", "copy", "query", "queryChanges")

# The JMAP types a property may have ("|null" may follow any of them).
SCALARS = {"String", "Int", "UnsignedInt", "Number", "Boolean", "Id", "UTCDate", "Date", "BlobId"}
# RFC 8620 §1.1 notation: "A[]" is an array of A; "A[B]" a map with A keys and B values
# ("Id[Boolean]", "String[*]").
COMPOUND = re.compile(r"(?P<outer>\w+)\[(?P<inner>\w*|\*)\]")

OPERATORS = (
    "equals",
    "notEquals",
    "lt",
    "le",
    "gt",
    "ge",
    "contains",
    "hasItem",
    "hasKey",
    "isNull",
    "in",
    "custom",
)


class SetError(Exception):
    """Reject one create, update or destroy in a /set (RFC 8620 §5.3) with a SetError.

    ``SetError("invalidProperties", "title is too long", properties=["title"])``;
    ``SetError("alreadyExists", existingId="...")``.  Raised from a type's hooks.
    """

    def __init__(self, type: str, description: str | None = None, **extra: Any):
        super().__init__(description or type)
        self.type = type
        self.extra = extra
        if description is not None:
            self.extra["description"] = description

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.extra}


@dataclass
class Property:
    """One property of a data type.

    ``type`` is a JMAP type: ``String``, ``Int``, ``UnsignedInt``, ``Number``, ``Boolean``,
    ``Id``, ``UTCDate``, ``Date``, ``BlobId``, ``Object`` (any JSON object), ``Any``, an
    array ``X[]`` or a map ``X[Y]`` (``Id[Boolean]``, ``String[String]``), optionally
    followed by ``|null``.  ``default`` is used when a create omits the property (and when
    an update sets it to null, §5.3).  ``server_set`` properties may not be given by the
    client (except with their current value in an update); ``immutable`` ones cannot change
    after creation; ``required`` ones must be given on create.  ``validate(value)`` may
    raise ``ValueError`` with a message for ``invalidProperties``.  ``sortable`` allows
    it in /query ``sort``; ``indexed`` asks for an index (sortable implies it).
    """

    name: str
    type: str
    default: Any = None
    server_set: bool = False
    immutable: bool = False
    required: bool = False
    validate: Callable[[Any], None] | None = None
    sortable: bool = False
    indexed: bool = False
    # Computed on /get by the type's ``compute`` hook, never stored (e.g. a Mailbox's
    # unreadEmails); implies server_set.
    computed: bool = False

    def __post_init__(self) -> None:
        if self.computed:
            self.server_set = True

    @property
    def base_type(self) -> str:
        return self.type.removesuffix("|null")


def read_and_destroy(account: Any, principal: Any, operation: str) -> bool:
    """A ``DataType.access`` for records only the server creates, which users read and
    dismiss by destroying (RFC 9670 ShareNotification, JMAP Calendars'
    CalendarEventNotification): create and update are ``forbidden``."""
    return operation in ("read", "destroy")


@dataclass
class FilterCondition:
    """A FilterCondition property (RFC 8620 §5.5) and how it tests a record.

    ``name`` is the key in the client's filter object; ``property`` the record property it
    tests; ``operator`` one of ``equals``, ``notEquals``, ``lt``, ``le``, ``gt``, ``ge``,
    ``contains`` (case-insensitive substring of a String), ``hasItem`` (an array property
    holds the value), ``hasKey`` (a map property has the value as a key, e.g.
    ``inMailbox``), ``isNull`` (the value, true or false, says whether the property must
    be null) and ``in`` (the property is one of the values, a list; null: any value, e.g.
    ``calendarEventIds``).  ``value_type`` is the JMAP type the filter value must have
    (default: the property's type, or its item type for ``hasItem``/``hasKey``, a list of
    it or null for ``in``).
    """

    name: str
    property: str
    operator: str = "equals"
    value_type: str | None = None
    # operator "custom": sql(value) returns (SQL condition, parameters) for the store layer
    # of a plugin that needs more than the operators above (e.g. a thread-wide keyword
    # test); columns are named by jmap_host.objectstore.column(property).
    sql: Callable[[Any], tuple[str, list[Any]]] | None = None

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"filter {self.name}: unknown operator {self.operator!r}")
        if (self.operator == "custom") != (self.sql is not None):
            raise ValueError(f"filter {self.name}: operator 'custom' goes with sql=")


@dataclass
class SetContext:
    """What a type's hooks get while a /set (or /copy) runs inside its write transaction.

    ``db`` is the open transaction: a hook may read and write the plugin's own tables and
    everything it writes commits or rolls back with the record.  Hooks run in a worker
    thread, so they are plain functions, never async.
    """

    db: sqlite_utils.Database
    account: Account
    principal: Principal
    datatype: DataType
    host: Any
    args: dict[str, Any] = field(default_factory=dict)  # the method call's arguments
    # Other types a hook wrote records of (their change log too): their new states are
    # pushed after the commit, with this type's.
    changed_types: set[str] = field(default_factory=set)


@dataclass
class DataType:
    """A JMAP data type backed by the host store.  See the module docstring."""

    name: str
    table: str
    properties: list[Property]
    filters: list[FilterCondition] = field(default_factory=list)
    methods: tuple[str, ...] = STANDARD_METHODS
    # Hooks, all optional, all synchronous and run inside the write transaction:
    # on_create(ctx, record) may fill server-set properties (mutate record) or raise SetError;
    # on_update(ctx, old, new) likewise for updates, by assigning to new (values untouched by
    # the patch are shared with old, not copied: never mutate them in place);
    # on_destroy(ctx, record) may raise SetError.
    on_create: Callable[[SetContext, dict[str, Any]], None] | None = None
    on_update: Callable[[SetContext, dict[str, Any], dict[str, Any]], None] | None = None
    on_destroy: Callable[[SetContext, dict[str, Any]], None] | None = None
    # compute(db, account_id, records, names) fills the computed properties ``names`` of
    # ``records`` (dicts with at least "id"), in the read or write transaction it is given.
    compute: Callable[[Any, str, list[dict[str, Any]], list[str]], None] | None = None
    # /get of ids=null is refused (requestTooLarge) past maxObjectsInGet; set False for types
    # whose ids=null is not supported at all (§5.1).
    get_all: bool = True
    # A singleton type (one record per account, e.g. VacationResponse): /set create and
    # destroy answer the "singleton" SetError (§5.3).
    singleton: bool = False
    # access(account, principal, operation) -> bool, operation being "read", "create",
    # "update" or "destroy": False refuses reads with the method error "forbidden" and
    # writes with the SetError "forbidden".  None: whoever can use the account may.
    access: Callable[[Account, Principal, str], bool] | None = None
    max_changes: int = 5000
    query_limit: int = 5000
    default_sort: tuple[str, ...] = ()
    # Extra indexes on the type's table, each a tuple of property names ("id" allowed),
    # "-name" for descending; the host puts "account" first.  For a query the plain
    # per-property index serves badly: e.g. ("-receivedAt", "id", "threadId") lets a
    # newest-first page be read from the index alone, in order, however big the table.
    indexes: list[tuple[str, ...]] = field(default_factory=list)
    # The properties an update reads besides those its patch touches: what on_update uses.
    # An update then reads only these, the patched properties and the BlobId properties
    # (for the blob references) of its record (for all the updates of a /set at once: the
    # properties any of them needs), so a hook must read nothing else of old and new.
    # Destroys still read whole records.  None (the default): the whole record.  Email
    # declares its three: reading and decoding all 21 properties of 50 Emails was a fifth
    # of a 50-message flag update.
    update_reads: tuple[str, ...] | None = None
    # Quotas (jmap_host.quota): the property holding what a record weighs in octets (Email:
    # "size"), and whether each record counts one against the account's count quota.
    quota_octets: str | None = None
    quota_count: bool = False
    # Blob/lookup (RFC 9404 §4.3): blob_lookup(db, account_id, blob_ids) -> {blob id: [ids
    # of this type's records referencing it]}.  None: the host's own when the type has
    # BlobId properties (their references, as the standard /set records them), else the
    # type is not looked up.
    blob_lookup: Callable[[Any, str, list[str]], dict[str, list[str]]] | None = None
    # Sharing (RFC 9670 §4, jmap_host.sharing): a container type's rights (the host adds
    # its shareWith and myRights properties), or how a member type is shared through its
    # containers.  Neither: the type is not served in shared accounts.
    sharing: Sharing | None = None
    shared_through: SharedThrough | None = None
    # Open types: open_properties(name) -> whether an undeclared property name is accepted
    # and kept verbatim (JSContact's unknown and vendor-specific properties, RFC 9553
    # §1.7.4, §1.8.1).  They are stored together in one JSON column, returned by /get,
    # set and patched like declared ones; the type's hooks validate their values.
    open_properties: Callable[[str], bool] | None = None
    # Sorts on what is no property of its own: {comparator name: SQL expression over the
    # type's columns (objectstore.column)} giving a String to sort by (ContactCard's
    # "name/given": the first given-name component).  The comparator's collation applies.
    sort_sql: dict[str, str] = field(default_factory=dict)
    # The same sorts in the default collation (i;unicode-casemap) from an expression whose
    # values are already folded (objectstore.unicode_casemap_key, e.g. a derived column):
    # compared as bytes, so an index on it serves the sort (a Python collation cannot).
    folded_sort_sql: dict[str, str] = field(default_factory=dict)
    # Derived columns: {name: fn(record) -> str|int|None}, stored beside the record in an
    # indexed column (objectstore.derived_column) and rewritten with every write of it, for
    # sorts and filters that would otherwise compute per row in a query (ContactCard's
    # sort keys and folded search text).  Needs whole records on update (update_reads None).
    derived: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    # Uniqueness in the account: each tuple of property names may be held by one record
    # only (ContactCard ("uid",), CalendarEvent ("uid", "recurrenceId"); nulls compare
    # equal); a second is the SetError alreadyExists with the other's existingId.
    unique: tuple[tuple[str, ...], ...] = ()
    # Blob ids inside the type's JSON values, beside its BlobId properties (RFC 8620 §6):
    # embedded_blobs(record) -> [(path, blob id)], the path from the record's top
    # ("media/m1/blobId": JSContact Media, JSCalendar attachment Links).  The host treats
    # them as it does BlobId values: one the client puts in a record must be a blob the
    # user may use in the account (else invalidProperties naming the path's property; a
    # blob a hook writes is its own), the record keeps a reference to each (the upload
    # sweeper keeps them, Blob/lookup finds the record), a /copy makes the original's the
    # target account's.  It gets records as the client sent them: skip what is not well
    # formed (the type's hooks report that).  Needs whole records on update.
    embedded_blobs: Callable[[dict[str, Any]], Iterable[tuple[str, str]]] | None = None
    # Records each for one user (CalendarEventNotification, kept in the account of the
    # event for each user it concerns): the name of a ``derived`` column holding the
    # Principal id a record is for.  Every standard method shows a user only their own,
    # in the account's owner's view and in a shared account alike (where the type is then
    # served); the plugin writes the records, with the id under that key.
    per_principal: str | None = None

    def __post_init__(self) -> None:
        if self.sharing is not None:
            have = {p.name for p in self.properties}
            if "shareWith" not in have:
                self.properties = [
                    *self.properties, Property("shareWith", "Object|null", default=None)
                ]
            if "myRights" not in have:
                self.properties = [*self.properties, Property("myRights", "Object", computed=True)]
        names = [p.name for p in self.properties]
        if "id" in names:
            raise ValueError(f"{self.name}: 'id' is declared by the host, not the type")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a property is declared twice")
        if not re.fullmatch(r"[a-z][a-z0-9]*_[a-z0-9_]+", self.table):
            raise ValueError(
                f"{self.name}: table {self.table!r} needs a plugin prefix: 'plugin_name'"
            )
        self.by_name = {p.name: p for p in self.properties}
        for prop in self.properties:
            check_type(prop.type)
        for index in self.indexes:
            for name in index:
                if name.lstrip("-") != "id" and name.lstrip("-") not in self.by_name:
                    raise ValueError(f"{self.name}: index on unknown property {name}")
        if self.derived and self.update_reads is not None:
            raise ValueError(f"{self.name}: derived columns need whole records (update_reads)")
        if self.embedded_blobs is not None and self.update_reads is not None:
            raise ValueError(f"{self.name}: embedded_blobs needs whole records (update_reads)")
        if self.quota_octets is not None and self.quota_octets not in self.by_name:
            raise ValueError(f"{self.name}: quota_octets names unknown property")
        for names in self.unique:
            for name in names:
                if name not in self.by_name:
                    raise ValueError(f"{self.name}: unique names unknown property {name}")
        for name in self.update_reads or ():
            if name not in self.by_name:
                raise ValueError(f"{self.name}: update_reads names unknown property {name}")
        for f in self.filters:
            if f.property not in self.by_name:
                raise ValueError(f"{self.name}: filter {f.name} on unknown property {f.property}")
        unknown = [m for m in self.methods if m not in STANDARD_METHODS]
        if unknown:
            raise ValueError(f"{self.name}: unknown standard methods {unknown}")
        self.filters_by_name = {f.name: f for f in self.filters}

    @property
    def has_blobs(self) -> bool:
        """Do the type's records name blobs (BlobId properties or embedded_blobs)?"""
        return self.embedded_blobs is not None or any(
            p.base_type == "BlobId" for p in self.properties
        )

    def blobs(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """(path, blob id) of every blob the record names: BlobId properties, embedded."""
        found = [
            (p.name, record[p.name])
            for p in self.properties
            if p.base_type == "BlobId" and isinstance(record.get(p.name), str)
        ]
        if self.embedded_blobs is not None:
            found += [(path, b) for path, b in self.embedded_blobs(record) if isinstance(b, str)]
        return found

    @property
    def shareable(self) -> bool:
        """Is the type served in accounts shared with the user (a container or a member)?"""
        return (
            self.sharing is not None
            or self.shared_through is not None
            or self.per_principal is not None
        )

    def is_open(self, name: str) -> bool:
        """Is ``name`` an undeclared property this open type keeps?"""
        return (
            self.open_properties is not None
            and name not in self.by_name
            and name != "id"
            and self.open_properties(name)
        )

    @property
    def sortable(self) -> set[str]:
        return {p.name for p in self.properties if p.sortable}


def check_type(jmap_type: str) -> None:
    base = jmap_type.removesuffix("|null")
    if base in SCALARS or base in ("Object", "Any"):
        return
    m = COMPOUND.fullmatch(base)
    known = SCALARS | {"Object", "Any", "*"}
    if m and m.group("outer") in known and (not m.group("inner") or m.group("inner") in known):
        return
    raise ValueError(f"unknown JMAP type {jmap_type!r}")
