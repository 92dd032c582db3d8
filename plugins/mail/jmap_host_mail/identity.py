"""Identities (RFC 8621 §6): the addresses a user may send from, as a declared data type.

Identity/get, /changes and /set are the host's standard methods.  Which addresses an
account may send as is the directory's answer: the emails (and aliases) of the account's
owner, so in a group account the group's addresses (§9.6).  A create for any other address
is the ``forbiddenFrom`` SetError; wildcard identities (``*@example.org``) are refused the
same way, since the directory grants addresses, not domains.

A new account gets one Identity per address of its owner (``mayDelete: false``), from the
``account_provisioned`` hook (:func:`provision_identities`).
"""

from __future__ import annotations

from typing import Any

from jmap_host import Account, DataType, Property, SetContext, SetError, objectstore

from .smtp import valid_address


def check_addresses(value: list[Any]) -> None:
    """EmailAddress[] (§4.1.2.3): objects with a String|null name and a String email."""
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "email"}:
            raise ValueError("each EmailAddress is an object with name and email")
        if not isinstance(item.get("email"), str) or not valid_address(item["email"]):
            raise ValueError("each EmailAddress needs a valid email")
        if item.get("name") is not None and not isinstance(item["name"], str):
            raise ValueError("name must be a String or null")


def check_email(value: str) -> None:
    if not valid_address(value) and not value.startswith("*@"):
        raise ValueError("must be an email address")


def may_send_as(account: Account) -> set[str]:
    """The addresses, lowercase, that the users of ``account`` may send as."""
    return {e.lower() for e in account.owner.emails}


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    if record["email"].lower() not in may_send_as(ctx.account):
        raise SetError(
            "forbiddenFrom",
            f"you may not send from {record['email']}",
            properties=["email"],
        )
    record["mayDelete"] = True


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    if record.get("mayDelete") is False:
        raise SetError("forbidden", "this Identity cannot be deleted")


IDENTITY = DataType(
    name="Identity",
    table="mail_identity",
    properties=[
        Property("name", "String", default=""),
        Property("email", "String", required=True, immutable=True, validate=check_email),
        Property("replyTo", "Object[]|null", validate=check_addresses),
        Property("bcc", "Object[]|null", validate=check_addresses),
        Property("textSignature", "String", default=""),
        Property("htmlSignature", "String", default=""),
        Property("mayDelete", "Boolean", server_set=True, default=True),
    ],
    methods=("get", "changes", "set"),
    on_create=on_create,
    on_destroy=on_destroy,
)


def identities(db: Any, account: str) -> list[dict[str, Any]]:
    return objectstore.read_records(db, IDENTITY, account, None)


def get_identity(db: Any, account: str, identity_id: str) -> dict[str, Any] | None:
    found = objectstore.read_records(db, IDENTITY, account, [identity_id])
    return found[0] if found else None


def provision_identities(db: Any, account_id: str, name: str, emails: tuple[str, ...]) -> None:
    """One undeletable Identity per address, once (the hook may run again)."""
    existing = {i["email"].lower() for i in identities(db, account_id)}
    for address in emails:
        if address.lower() in existing:
            continue
        existing.add(address.lower())
        record = {
            "id": objectstore.new_id(),
            "name": name,
            "email": address,
            "replyTo": None,
            "bcc": None,
            "textSignature": "",
            "htmlSignature": "",
            "mayDelete": False,
        }
        objectstore.insert_record(db, IDENTITY, account_id, record)
        objectstore.record_change(db, account_id, IDENTITY.name, record["id"], "created")


__all__ = ["IDENTITY", "get_identity", "identities", "may_send_as", "provision_identities"]
