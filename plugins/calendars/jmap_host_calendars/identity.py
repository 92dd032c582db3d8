"""Participant identities (draft-ietf-jmap-calendars §3): the calendar addresses that are
the user in events' participants.  A standard data type with one default (jmap_host.
containers: onSuccessSetIsDefault); every account starts with one per address of its owner.

The server may restrict what a user claims (§3.3): a ``mailto:`` address must be one of the
account owner's (their directory addresses); other URIs (a ``tel:``, an ``https:`` iTIP
endpoint) are theirs to name, as there is nothing to check them against.
"""

from __future__ import annotations

import re
from typing import Any

from jmap_host import Call, DataType, Property, SetContext, SetError, containers, objectstore

URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")  # RFC 3986 §3.1 scheme, then something


def check_address(value: str) -> None:
    if not URI.fullmatch(value):
        raise ValueError("must be a URI (e.g. mailto:jane@example.com)")


def normalise(address: str) -> str:
    """RFC 3986 §6.2.2 syntax-based normalisation of a calendar address, as far as
    comparing mailto: addresses needs: the scheme and a mailto: address case-folded."""
    scheme, _, rest = address.partition(":")
    scheme = scheme.lower()
    return f"{scheme}:{rest.lower() if scheme == 'mailto' else rest}"


def _claim(ctx: SetContext, record: dict[str, Any]) -> None:
    address = normalise(record["calendarAddress"])
    if address.startswith("mailto:"):
        mine = {f"mailto:{e.lower()}" for e in ctx.account.owner.emails}
        if address not in mine:
            raise SetError("forbidden", "a mailto: address must be one of the account's own")


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    _claim(ctx, record)


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new["calendarAddress"] != old["calendarAddress"]:
        _claim(ctx, new)


PARTICIPANT_IDENTITY = DataType(
    name="ParticipantIdentity",
    table="calendars_identity",
    properties=[
        Property("name", "String", default=""),
        Property("calendarAddress", "String", required=True, validate=check_address),
        Property("isDefault", "Boolean", default=False, server_set=True),
    ],
    methods=("get", "changes"),  # /set: identity_set below
    on_create=on_create,
    on_update=on_update,
)


async def identity_set(call: Call) -> dict[str, Any]:
    """§3.3: the standard /set with onSuccessSetIsDefault."""
    return await containers.container_set(call, PARTICIPANT_IDENTITY)


def default_identities(db: Any, account: str, owner: Any) -> None:
    """One identity per address of the account's owner, the first the default; once."""
    if objectstore.read_records(db, PARTICIPANT_IDENTITY, account, None, []):
        return
    name = owner.description or owner.name
    changes = []
    for n, email in enumerate(owner.emails):
        record = {"id": objectstore.new_id(), "name": name,
                  "calendarAddress": f"mailto:{email}", "isDefault": n == 0}  # fmt: skip
        objectstore.insert_record(db, PARTICIPANT_IDENTITY, account, record)
        changes.append((record["id"], "created"))
    objectstore.record_changes(db, account, PARTICIPANT_IDENTITY.name, changes)


def identities(db: Any, principal_account: str) -> set[str]:
    """The calendar addresses of a user's ParticipantIdentities (§3), normalised: those in
    their own account (in a shared account, they are still the user's)."""
    found = objectstore.read_records(db, PARTICIPANT_IDENTITY, principal_account, None,
                                     ["calendarAddress"])  # fmt: skip
    return {normalise(r["calendarAddress"]) for r in found if r.get("calendarAddress")}


def default_address(db: Any, account: str) -> str | None:
    """The calendar address of the account's default ParticipantIdentity (§3)."""
    found = objectstore.read_records(db, PARTICIPANT_IDENTITY, account, None,
                                     ["calendarAddress", "isDefault"])  # fmt: skip
    found.sort(key=lambda r: not r.get("isDefault"))
    return str(found[0]["calendarAddress"]) if found else None
