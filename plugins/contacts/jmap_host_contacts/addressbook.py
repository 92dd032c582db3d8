"""AddressBooks (RFC 9610 §2), declared once as a data type: the host provides
AddressBook/get, /changes, /set (and /query, /queryChanges), sharing (``shareWith``,
``myRights``, a sharee's own ``isSubscribed``); this module adds the AddressBook rules:
``isDefault`` (one per account, moved by ``onSuccessSetIsDefault``), destroying with
``onDestroyRemoveContents`` (``addressBookHasContents`` without it), and the default
address book every account gets."""

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
    set_arguments,
    standard,
)

MAX_NAME_OCTETS = 255
RIGHTS = ("mayRead", "mayWrite", "mayShare", "mayDelete")  # §2 AddressBookRights
DEFAULT_NAME = "Personal"


def check_name(name: str) -> None:
    """§2: not empty, at most 255 octets of UTF-8."""
    if not name or len(name.encode("utf-8")) > MAX_NAME_OCTETS:
        raise ValueError(f"must be 1 to {MAX_NAME_OCTETS} octets of UTF-8")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("must not contain control characters")


def check_sort_order(value: int) -> None:
    if value >= 2**31:
        raise ValueError("must be below 2^31")


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    """§2.3: addressBookHasContents, unless onDestroyRemoveContents: then its cards leave
    it, and those in no other address book are destroyed."""
    from .card import CARD, remove_from_book

    column = objectstore.column(CARD.by_name["addressBookIds"])
    ids = objectstore.query_ids(
        ctx.db, CARD, ctx.account.id,
        (f"EXISTS (SELECT 1 FROM json_each([{column}]) WHERE key = ?)", [record["id"]]), "id",
    )  # fmt: skip
    if ids and not ctx.args.get("onDestroyRemoveContents"):
        raise SetError("addressBookHasContents", f"{len(ids)} ContactCard(s) in it")
    for card_id in ids:
        remove_from_book(ctx, card_id, record["id"])


ADDRESS_BOOK = DataType(
    name="AddressBook",
    table="contacts_addressbook",
    properties=[
        Property("name", "String", required=True, sortable=True, validate=check_name),
        Property("description", "String|null"),
        Property("sortOrder", "UnsignedInt", default=0, sortable=True, validate=check_sort_order),
        Property("isDefault", "Boolean", default=False, server_set=True),
        Property("isSubscribed", "Boolean", default=True),
    ],
    filters=[
        FilterCondition("name", "name", "contains"),
        FilterCondition("isSubscribed", "isSubscribed"),
    ],
    on_destroy=on_destroy,
    default_sort=("sortOrder", "name"),
    methods=("get", "changes", "query", "queryChanges"),  # /set: address_book_set below
    # §2 AddressBookRights through the host (RFC 9670 §4): mayRead reads the cards,
    # mayWrite writes them (and, this server's choice, renames the book: the RFC names no
    # right for it), mayShare changes shareWith, mayDelete destroys the book.
    sharing=Sharing(
        rights=RIGHTS,
        read="mayRead",
        share_right="mayShare",
        update_right="mayWrite",
        delete_right="mayDelete",
    ),
)


async def address_book_set(call: Call) -> dict[str, Any]:
    """§2.3: the standard /set with onDestroyRemoveContents (read by on_destroy from the
    arguments) and onSuccessSetIsDefault, applied in the same transaction once every
    create, update and destroy succeeded."""
    from .card import CARD

    assert call.account is not None
    account = call.account
    on_success = call.args.get("onSuccessSetIsDefault")
    if on_success is not None and not isinstance(on_success, str):
        raise MethodError("invalidArguments", "onSuccessSetIsDefault must be an Id or null")
    remove = call.args.get("onDestroyRemoveContents", False)
    if not isinstance(remove, bool):
        raise MethodError("invalidArguments", "onDestroyRemoveContents must be a Boolean")
    if_in_state = standard.arg(call, "ifInState", "String|null")
    create, update, destroy = set_arguments(call)
    standard.check_read(ADDRESS_BOOK, call)
    principals = {}
    if create or update:
        from jmap_host import sharing

        principals = await sharing.resolve_principals(
            call.host, sharing.share_with_ids(create, update)
        )

    def write(db: Any, careful: bool) -> dict[str, Any]:
        result = standard.run_set(
            ADDRESS_BOOK, call, account, db, if_in_state, create, update, destroy, careful,
            principals,
        )  # fmt: skip
        failed = result["notCreated"] or result["notUpdated"] or result["notDestroyed"]
        if on_success is not None and not failed:
            target = on_success
            if target.startswith("#"):
                target = result["_created_ids"].get(target[1:], "")
            _set_default(db, call, account, target, result)
        result["newState"] = str(objectstore.current_modseq(db, account.id, "AddressBook")[0])
        cards = objectstore.current_modseq(db, account.id, CARD.name)[0]
        return {**result, "_cards": cards}

    result = await standard.write_set(call.host.store, write)
    call.request.created_ids.update(result.pop("_created_ids"))
    cards = result.pop("_cards")
    writes = result.pop("_share_writes")
    await standard.publish_set(call, ADDRESS_BOOK, account.id, result, writes)
    call.host.push.publish(account.id, {CARD.name: str(cards)})  # (removed contents)
    return result


def _set_default(
    db: Any, call: Call, account: Any, target: str, result: dict[str, Any]
) -> None:
    """Make ``target`` the default address book, if it is one the caller may change;
    otherwise nothing (§2.3: no error)."""
    from jmap_host import sharing

    if not standard.is_id(target):
        return
    found = objectstore.read_records(db, ADDRESS_BOOK, account.id, [target], ["isDefault"])
    if not found or found[0]["isDefault"]:
        return
    access = sharing.access_for(db, call)
    if access is not None and not access.right(ADDRESS_BOOK.name, target, "mayWrite"):
        return  # a policy refusal is silent (§2.3)
    books = objectstore.read_records(db, ADDRESS_BOOK, account.id, None, ["isDefault"])
    changes = []
    for book in books:
        is_default = book["id"] == target
        if book["isDefault"] != is_default:
            book["isDefault"] = is_default
            objectstore.update_record(db, ADDRESS_BOOK, account.id, book, ["isDefault"])
            changes.append((book["id"], "updated"))
            # §5.3: what the server changed is reported in created or updated.
            created = {v["id"]: k for k, v in (result["created"] or {}).items()}
            if book["id"] in created:
                result["created"][created[book["id"]]]["isDefault"] = is_default
            else:
                result["updated"] = result["updated"] or {}
                entry = result["updated"].get(book["id"]) or {}
                result["updated"][book["id"]] = {**entry, "isDefault": is_default}
    objectstore.record_changes(db, account.id, ADDRESS_BOOK.name, changes)


def default_address_book(db: Any, account: str) -> None:
    """Give a new account its default address book, once (the hook may run again)."""
    if objectstore.read_records(db, ADDRESS_BOOK, account, None, ["isDefault"]):
        return
    record = {
        "id": objectstore.new_id(),
        "name": DEFAULT_NAME,
        "description": None,
        "sortOrder": 0,
        "isDefault": True,
        "isSubscribed": True,
        "shareWith": None,
    }
    objectstore.insert_record(db, ADDRESS_BOOK, account, record)
    objectstore.record_change(db, account, ADDRESS_BOOK.name, record["id"], "created")
