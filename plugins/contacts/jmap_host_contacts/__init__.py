"""The contacts plugin: RFC 9610's ``urn:ietf:params:jmap:contacts`` capability, with
AddressBook and ContactCard (JSContact, RFC 9553) on the host's standard methods and its
sharing service."""

from __future__ import annotations

from typing import Any

from jmap_host import Account, Capability, Host, Method, hookimpl

from .addressbook import ADDRESS_BOOK, address_book_set, default_address_book
from .card import CARD
from .parse import CONTACTS_PARSE, contact_card_parse

CONTACTS = "urn:ietf:params:jmap:contacts"


def contacts_account_capability(host: Host, account: Account) -> dict[str, Any]:
    """RFC 9610 §1.4.1."""
    return {
        "maxAddressBooksPerCard": None,
        # In an account shared with the user, address books are the owner's to make.
        "mayCreateAddressBook": not account.shared,
    }


@hookimpl
def register_capabilities(host: Host) -> list[Capability]:
    return [
        Capability(
            urn=CONTACTS,
            session={},
            account=contacts_account_capability,
            # AddressBook/set is address_book_set: the standard /set plus
            # onSuccessSetIsDefault (RFC 9610 §2.3).
            methods=[Method("AddressBook/set", address_book_set, writes=True)],
            datatypes=[ADDRESS_BOOK, CARD],
        ),
        # vCard blobs as Cards, unstored (Stalwart's extension; jmaplib calls it).
        Capability(
            urn=CONTACTS_PARSE,
            session={},
            account=lambda host, account: {},
            primary=False,
            methods=[Method("ContactCard/parse", contact_card_parse)],
            in_shared_accounts=True,
        ),
    ]


@hookimpl
def register_commands(cli: Any) -> None:
    """``jmap-host contacts import|export`` (commands.py)."""
    from . import commands

    commands.register_commands(cli)


@hookimpl
def account_provisioned(host: Host, account: Account) -> Any:
    """A new account gets its default address book."""
    return host.store.write(lambda db: default_address_book(db, account.id))


__all__ = ["CONTACTS"]
