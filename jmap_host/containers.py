"""Containers with a default and members: what AddressBook (RFC 9610 §2) and Calendar
(JMAP Calendars §4) have in common, once, for every plugin.

- one container per account is the default (a server-set Boolean, ``isDefault``): every
  account gets one when provisioned (:func:`ensure_default`), and a /set moves it with
  ``onSuccessSetIsDefault`` once everything in it succeeded (:func:`container_set`);
- destroying a container that still has members is refused with the type's SetError
  (``addressBookHasContents``, ``calendarHasEvent``) unless the client asks to remove them
  (``onDestroyRemoveContents``, ``onDestroyRemoveEvents``): each member leaves it and one in
  no other container is destroyed (:func:`destroy_contents`, from the type's on_destroy).

Members name their containers in an ``Id[Boolean]`` property, the one their
``DataType.shared_through`` declares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import objectstore, sharing
from .datatype import DataType, SetContext, SetError
from .errors import MethodError

if TYPE_CHECKING:
    from .capabilities import Call

DEFAULT_PROPERTY = "isDefault"


def members_of(db: Any, member: DataType, account: str, container_id: str) -> list[str]:
    """The ids of the ``member`` records in the container."""
    assert member.shared_through is not None and member.shared_through.property is not None
    column = objectstore.column(member.by_name[member.shared_through.property])
    return objectstore.query_ids(
        db, member, account,
        (f"EXISTS (SELECT 1 FROM json_each([{column}]) WHERE key = ?)", [container_id]), "id",
    )  # fmt: skip


def destroy_contents(
    ctx: SetContext, member: DataType, container_id: str, argument: str, error: str
) -> None:
    """From a container's on_destroy: ``error`` when it has members and the /set's
    ``argument`` is not true; else each member leaves it, and is destroyed when it was in
    no other container."""
    ids = members_of(ctx.db, member, ctx.account.id, container_id)
    if ids and not ctx.args.get(argument):
        raise SetError(error, f"{len(ids)} {member.name}(s) in it; see {argument}")
    prop = member.shared_through.property  # type: ignore[union-attr]
    changes = []
    for record in objectstore.read_records(ctx.db, member, ctx.account.id, ids):
        left = {k: v for k, v in (record.get(prop) or {}).items() if k != container_id}
        if left:
            # (the whole record: a type's derived columns are rewritten from it)
            objectstore.update_record(ctx.db, member, ctx.account.id, {**record, prop: left},
                                      [prop])  # fmt: skip
            changes.append((record["id"], "updated"))
        else:
            objectstore.delete_record(ctx.db, member, ctx.account.id, record["id"])
            from .blobs import remove_blob_references

            remove_blob_references(ctx.db, ctx.account.id, f"{member.name}:{record['id']}")
            if member.shared_through is not None and member.shared_through.per_user:
                from .sharing import drop_member_prefs  # (its users' own values go too)

                drop_member_prefs(ctx.db, member, ctx.account.id, record["id"])
            changes.append((record["id"], "destroyed"))
    objectstore.record_changes(ctx.db, ctx.account.id, member.name, changes)


async def container_set(
    call: Call, dt: DataType, remove_argument: str | None = None
) -> dict[str, Any]:
    """The standard /set of a container type plus ``onSuccessSetIsDefault``, in the same
    transaction; ``remove_argument`` names its Boolean argument that lets a destroy take
    the members with it (``onDestroyRemoveContents``: the type's on_destroy reads it and
    calls :func:`destroy_contents`)."""
    from . import standard

    if remove_argument is not None:
        standard.arg(call, remove_argument, "Boolean", False)
    on_success = call.args.get("onSuccessSetIsDefault")
    if on_success is not None and not isinstance(on_success, str):
        raise MethodError("invalidArguments", "onSuccessSetIsDefault must be an Id or null")
    request = await standard.set_request(dt, call)

    def write(db: Any, careful: bool) -> dict[str, Any]:
        result = request.run(db, careful)
        failed = result["notCreated"] or result["notUpdated"] or result["notDestroyed"]
        if on_success is not None and not failed:
            target = on_success
            if target.startswith("#"):
                target = result["_created_ids"].get(target[1:], "")
            _set_default(db, call, dt, request.account.id, target, result)
            result["newState"] = str(objectstore.current_modseq(db, request.account.id,
                                                                 dt.name)[0])  # fmt: skip
        return result

    return await request.commit(write)


def _set_default(
    db: Any, call: Call, dt: DataType, account: str, target: str, result: dict[str, Any]
) -> None:
    """Make ``target`` the default, if it is a container the caller may change; otherwise
    nothing (no error, as both specs say)."""
    from . import standard

    if not standard.is_id(target):
        return
    found = objectstore.read_records(db, dt, account, [target], [DEFAULT_PROPERTY])
    if not found or found[0][DEFAULT_PROPERTY]:
        return
    access = sharing.access_for(db, call)
    right = dt.sharing.update_right if dt.sharing is not None else None
    if access is not None and not access.right(dt.name, target, right):
        return  # a policy refusal is silent
    created = {v["id"]: k for k, v in (result["created"] or {}).items()}
    changes = []
    for record in objectstore.read_records(db, dt, account, None):
        is_default = record["id"] == target
        if record[DEFAULT_PROPERTY] == is_default:
            continue
        objectstore.update_record(db, dt, account, {**record, DEFAULT_PROPERTY: is_default},
                                  [DEFAULT_PROPERTY])  # fmt: skip
        changes.append((record["id"], "updated"))
        # RFC 8620 §5.3: what the server changed is reported in created or updated.
        if record["id"] in created:
            result["created"][created[record["id"]]][DEFAULT_PROPERTY] = is_default
        else:
            result["updated"] = result["updated"] or {}
            entry = result["updated"].get(record["id"]) or {}
            result["updated"][record["id"]] = {**entry, DEFAULT_PROPERTY: is_default}
    objectstore.record_changes(db, account, dt.name, changes)


def ensure_default(db: Any, dt: DataType, account: str, record: dict[str, Any]) -> None:
    """Give a new account its default container (``record``, without id), once: nothing
    when the account has any container of the type already (the hook may run again)."""
    if objectstore.read_records(db, dt, account, None, [DEFAULT_PROPERTY]):
        return
    full = {"id": objectstore.new_id(), **record, DEFAULT_PROPERTY: True}
    for prop in dt.properties:
        if not prop.computed:
            full.setdefault(prop.name, prop.default)
    objectstore.insert_record(db, dt, account, full)
    objectstore.record_change(db, account, dt.name, full["id"], "created")


__all__ = ["container_set", "destroy_contents", "ensure_default", "members_of"]
