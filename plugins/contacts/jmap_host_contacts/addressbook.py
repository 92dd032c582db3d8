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
    Property,
    SetContext,
    Sharing,
    containers,
    validators,
)

RIGHTS = ("mayRead", "mayWrite", "mayShare", "mayDelete")  # §2 AddressBookRights
DEFAULT_NAME = "Personal"


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    """§2.3: addressBookHasContents, unless onDestroyRemoveContents: then its cards leave
    it, and those in no other address book are destroyed."""
    from .card import CARD

    containers.destroy_contents(
        ctx, CARD, record["id"], "onDestroyRemoveContents", "addressBookHasContents"
    )


ADDRESS_BOOK = DataType(
    name="AddressBook",
    table="contacts_addressbook",
    properties=[
        Property("name", "String", required=True, sortable=True, validate=validators.check_name),
        Property("description", "String|null"),
        Property("sortOrder", "UnsignedInt", default=0, sortable=True,
                 validate=validators.check_sort_order),
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
    """§2.3: the standard /set with onDestroyRemoveContents (read by on_destroy) and
    onSuccessSetIsDefault (jmap_host.containers)."""
    return await containers.container_set(call, ADDRESS_BOOK, "onDestroyRemoveContents")


def default_address_book(db: Any, account: str) -> None:
    """Give a new account its default address book, once."""
    containers.ensure_default(db, ADDRESS_BOOK, account, {"name": DEFAULT_NAME})
