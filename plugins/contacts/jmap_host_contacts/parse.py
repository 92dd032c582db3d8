"""``ContactCard/parse`` (``urn:ietf:params:jmap:contacts:parse``): vCard blobs read as
JSContact Cards without storing them.  RFC 9610 defines no parse method; this is the one
Stalwart serves and clients (jmaplib) call: ``blobIds`` in, ``parsed`` (blob id → one
Card: the blob's first vCard), ``notParsable`` and ``notFound`` out, like Email/parse
(RFC 8621 §4.9)."""

from __future__ import annotations

from typing import Any

import trio

from jmap_host import Call, MethodError, blobs_visible, check_get_size, read_blob, standard

from . import vcard

CONTACTS_PARSE = "urn:ietf:params:jmap:contacts:parse"


async def contact_card_parse(call: Call) -> dict[str, Any]:
    assert call.account is not None
    account = call.account.id
    blob_ids = standard.arg(call, "blobIds", "Id[]")
    check_get_size(call, blob_ids)
    properties = call.args.get("properties")
    if properties is not None and (
        not isinstance(properties, list) or not all(isinstance(p, str) for p in properties)
    ):
        raise MethodError("invalidArguments", "properties must be an array of strings or null")
    blob_ids = list(dict.fromkeys(blob_ids))
    principal = call.request.principal.name
    host = call.host
    visible = await host.store.read(lambda db: blobs_visible(db, account, blob_ids, principal))
    parsed: dict[str, Any] = {}
    not_parsable: list[str] = []
    not_found = [b for b in blob_ids if b not in visible]
    for blob_id in (b for b in blob_ids if b in visible):
        data = await trio.to_thread.run_sync(read_blob, host, blob_id)
        if data is None:
            not_found.append(blob_id)
            continue
        try:
            card = vcard.parse(data.decode("utf-8", "replace"))[0]
        except vcard.VCardError:
            not_parsable.append(blob_id)
            continue
        if properties is not None:
            card = {k: v for k, v in card.items() if k in properties}
        parsed[blob_id] = card
    return {
        "accountId": account,
        "parsed": parsed or None,
        "notParsable": not_parsable or None,
        "notFound": not_found or None,
    }
