"""Mailboxes (RFC 8621 §2), declared once as a data type: the host provides Mailbox/get,
/changes, /set, /query and /queryChanges; this module adds the Mailbox rules (unique
roles, sibling names, no loops), the counts, ``myRights``, ``onDestroyRemoveEmails`` and
the tree arguments of Mailbox/query (``sortAsTree``, ``filterAsTree``)."""

from __future__ import annotations

from typing import Any

from jmap_host import (
    Call,
    DataType,
    FilterCondition,
    MethodError,
    Property,
    SetContext,
    SetError,
    Sharing,
    objectstore,
    standard,
    validators,
)

from . import store

# RFC 8457's IMAP Mailbox Name Attributes that are roles, lowercase (RFC 8621 §2).
ROLES = {
    "all", "archive", "drafts", "flagged", "important", "inbox", "junk", "sent",
    "subscribed", "trash", "snoozed",
}  # fmt: skip
MAX_DEPTH = 10
COUNTS = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"]
ALL_RIGHTS = {
    "mayReadItems": True, "mayAddItems": True, "mayRemoveItems": True, "maySetSeen": True,
    "maySetKeywords": True, "mayCreateChild": True, "mayRename": True, "mayDelete": True,
    "maySubmit": True,
}  # fmt: skip

# The mailboxes a new account gets (issue: "Inbox, Drafts, Sent, Trash, Junk and Archive").
DEFAULT_MAILBOXES = [
    ("Inbox", "inbox", 1),
    ("Drafts", "drafts", 2),
    ("Sent", "sent", 3),
    ("Archive", "archive", 4),
    ("Junk", "junk", 5),
    ("Trash", "trash", 6),
]


def check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"{role!r} is not a registered role (RFC 8457)")


def _has_any_role(value: bool) -> tuple[str, list[Any]]:
    col = f"[{objectstore.column(MAILBOX.by_name['role'])}]"
    return (f"{col} IS NOT NULL" if value else f"{col} IS NULL"), []


def _check_tree(ctx: SetContext, record: dict[str, Any]) -> None:
    """Parent exists, no loop, depth limit, unique sibling name, unique role."""
    db, account = ctx.db, ctx.account.id
    everything = {
        m["id"]: m
        for m in objectstore.read_records(db, MAILBOX, account, None, ["name", "parentId", "role"])
    }
    everything[record["id"]] = record
    parent = record.get("parentId")
    if parent is not None and parent not in everything:
        raise SetError("invalidProperties", "parentId names no Mailbox", properties=["parentId"])
    depth, seen, node = 1, {record["id"]}, parent
    while node is not None:
        if node in seen:
            raise SetError(
                "invalidProperties", "a Mailbox cannot be its own ancestor", properties=["parentId"]
            )
        seen.add(node)
        depth += 1
        node = everything[node].get("parentId")
    if depth > MAX_DEPTH:
        raise SetError("invalidProperties", f"at most {MAX_DEPTH} levels", properties=["parentId"])
    for other in everything.values():
        if other["id"] == record["id"]:
            continue
        if other.get("parentId") == parent and other["name"] == record["name"]:
            raise SetError(
                "invalidProperties", "a sibling Mailbox has this name", properties=["name"]
            )
        if record.get("role") is not None and other.get("role") == record["role"]:
            raise SetError(
                "invalidProperties",
                f"another Mailbox has role {record['role']}",
                properties=["role"],
            )


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    _check_tree(ctx, record)


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if (old["name"], old.get("parentId"), old.get("role")) != (
        new["name"],
        new.get("parentId"),
        new.get("role"),
    ):
        _check_tree(ctx, new)


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    """§2.5: mailboxHasChild; mailboxHasEmail unless onDestroyRemoveEmails, in which case
    Emails leave the Mailbox and those in no other Mailbox are destroyed."""
    db, account = ctx.db, ctx.account.id
    children = objectstore.query_ids(
        db, MAILBOX, account,
        (f"[{objectstore.column(MAILBOX.by_name['parentId'])}] = ?", [record["id"]]), "id",
    )  # fmt: skip
    if children:
        raise SetError("mailboxHasChild", f"{len(children)} child Mailbox(es)")
    emails = store.emails_in_mailbox(db, account, record["id"])
    if emails and not ctx.args.get("onDestroyRemoveEmails"):
        raise SetError("mailboxHasEmail", f"{len(emails)} Email(s) in this Mailbox")
    for email_id in emails:
        store.remove_from_mailbox(ctx, email_id, record["id"])


def compute(db: Any, account: str, records: list[dict[str, Any]], names: list[str]) -> None:
    counts = store.mailbox_counts(db, account, [r["id"] for r in records])
    for record in records:
        for name in names:
            if name == "myRights":
                # Every right for the owner and a group's members; the host's sharing
                # service puts a sharee's own rights in place of these (jmap_host.sharing).
                record[name] = dict(ALL_RIGHTS)
            else:
                record[name] = counts.get(record["id"], {}).get(name, 0)


MAILBOX = DataType(
    name="Mailbox",
    table="mail_mailbox",
    properties=[
        Property("name", "String", required=True, sortable=True, validate=validators.check_name),
        Property("parentId", "Id|null", indexed=True),
        Property("role", "String|null", validate=check_role, indexed=True),
        Property("sortOrder", "UnsignedInt", default=0, sortable=True,
                 validate=validators.check_sort_order),
        Property("isSubscribed", "Boolean", default=True),
        *(Property(name, "UnsignedInt", computed=True) for name in COUNTS),
        Property("myRights", "Object", computed=True),
    ],
    filters=[
        FilterCondition("parentId", "parentId", value_type="Id|null"),
        FilterCondition("name", "name", "contains"),
        FilterCondition("role", "role", value_type="String|null"),
        FilterCondition("hasAnyRole", "role", "custom", value_type="Boolean", sql=_has_any_role),
        FilterCondition("isSubscribed", "isSubscribed"),
    ],
    methods=("get", "set", "queryChanges"),
    on_create=on_create,
    on_update=on_update,
    on_destroy=on_destroy,
    compute=compute,
    default_sort=("sortOrder", "name"),
    # RFC 8621 §2 myRights, shared through the host (RFC 9670 §4): a sharee sees the
    # Mailboxes shared with them, reads the Emails of those with mayReadItems, renames and
    # moves with mayRename, creates children with mayCreateChild, destroys with mayDelete.
    # Mail defines no right to share further: only the owner changes shareWith.
    sharing=Sharing(
        rights=tuple(ALL_RIGHTS),
        read="mayReadItems",
        update_right="mayRename",
        delete_right="mayDelete",
        parent_property="parentId",
        create_child_right="mayCreateChild",
    ),
)


async def mailbox_changes(call: Call) -> dict[str, Any]:
    """RFC 8621 §2.2: a standard /changes plus ``updatedProperties`` (null: the server does
    not yet tell count-only changes apart, which the RFC allows)."""
    result = await standard.type_changes(MAILBOX, call)
    result["updatedProperties"] = None
    return result


async def mailbox_query(call: Call) -> dict[str, Any]:
    """RFC 8621 §2.3: a standard /query, plus sortAsTree and filterAsTree."""
    sort_as_tree = call.args.get("sortAsTree", False)
    filter_as_tree = call.args.get("filterAsTree", False)
    if not isinstance(sort_as_tree, bool) or not isinstance(filter_as_tree, bool):
        raise MethodError("invalidArguments", "sortAsTree and filterAsTree are Booleans")
    if not sort_as_tree and not filter_as_tree:
        return await standard.type_query(MAILBOX, call)
    # Mailboxes are few per account: order the tree in Python from the SQL results.
    full = dict(call.args, position=0, anchor=None, limit=None, calculateTotal=False)
    sub = standard.Call(call.name, full, call.call_id, call.request, call.account)
    matching = (await standard.type_query(MAILBOX, sub))["ids"]
    everything = await standard.type_query(
        MAILBOX,
        standard.Call(
            call.name, {**full, "filter": None}, call.call_id, call.request, call.account
        ),
    )
    order = {i: n for n, i in enumerate(everything["ids"] if not sort_as_tree else matching)}
    assert call.account is not None
    account = call.account.id
    parents = await call.host.store.read(
        lambda db: {
            m["id"]: m["parentId"]
            for m in objectstore.read_records(db, MAILBOX, account, None, ["parentId"])
        }
    )
    keep = set(matching)
    if filter_as_tree:

        def ancestors_match(mailbox_id: str) -> bool:
            node = parents.get(mailbox_id)
            while node is not None:
                if node not in keep:
                    return False
                node = parents.get(node)
            return True

        keep = {m for m in keep if ancestors_match(m)}
    ids = [m for m in matching if m in keep]
    if sort_as_tree:
        ids = _tree_order(ids, parents, order)
    return _window(call, account, ids, (await standard.type_query(MAILBOX, sub))["queryState"])


def _tree_order(ids: list[str], parents: dict[str, str | None], order: dict[str, int]) -> list:
    included = set(ids)
    children: dict[str | None, list[str]] = {}
    for mailbox_id in ids:
        parent = parents.get(mailbox_id)
        while parent is not None and parent not in included:
            parent = parents.get(parent)  # attach under the nearest included ancestor
        children.setdefault(parent, []).append(mailbox_id)
    out: list[str] = []

    def walk(parent: str | None) -> None:
        for child in sorted(children.get(parent, []), key=lambda m: order.get(m, 0)):
            out.append(child)
            walk(child)

    walk(None)
    return out


def _window(call: Call, account: str, ids: list[str], query_state: str) -> dict[str, Any]:
    position = call.args.get("position", 0)
    anchor = call.args.get("anchor")
    limit = call.args.get("limit")
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        start = max(0, ids.index(anchor) + call.args.get("anchorOffset", 0))
    else:
        start = max(0, len(ids) + position) if position < 0 else position
    page = ids[start:] if limit is None else ids[start : start + limit]
    out: dict[str, Any] = {
        "accountId": account,
        "queryState": query_state,
        # Tree order depends on other records' properties: no queryChanges for it.
        "canCalculateChanges": False,
        "position": start,
        "ids": page,
    }
    if call.args.get("calculateTotal"):
        out["total"] = len(ids)
    return out


def default_mailboxes(db: Any, account: str) -> None:
    """Give a new account its standard Mailboxes, once (the hook may run again)."""
    existing = {
        m.get("role") for m in objectstore.read_records(db, MAILBOX, account, None, ["role"])
    }
    for name, role, order in DEFAULT_MAILBOXES:
        if role in existing:
            continue
        record = {
            "id": objectstore.new_id(),
            "name": name,
            "parentId": None,
            "role": role,
            "sortOrder": order,
            "isSubscribed": True,
        }
        objectstore.insert_record(db, MAILBOX, account, record)
        objectstore.record_change(db, account, MAILBOX.name, record["id"], "created")


def mailbox_methods() -> list[Any]:
    """The Mailbox methods the host's standard ones do not cover (get, set and
    queryChanges come from MAILBOX itself)."""
    from jmap_host import Method

    return [Method("Mailbox/changes", mailbox_changes), Method("Mailbox/query", mailbox_query)]
