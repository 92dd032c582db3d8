"""``ContactCard/parse`` (``urn:ietf:params:jmap:contacts:parse``): vCard blobs read as
JSContact Cards without storing them.  RFC 9610 defines no parse method; this is the one
Stalwart serves and clients (jmaplib) call: ``blobIds`` in, ``parsed`` (blob id → one
Card: the blob's first vCard), ``notParsable`` and ``notFound`` out, like Email/parse
(RFC 8621 §4.9)."""

from __future__ import annotations

from typing import Any

from jmap_host import Call, MethodError, parse_blobs

from . import vcard

CONTACTS_PARSE = "urn:ietf:params:jmap:contacts:parse"


async def contact_card_parse(call: Call) -> dict[str, Any]:
    properties = call.args.get("properties")
    if properties is not None and (
        not isinstance(properties, list) or not all(isinstance(p, str) for p in properties)
    ):
        raise MethodError("invalidArguments", "properties must be an array of strings or null")

    def parse(data: bytes) -> dict[str, Any] | None:
        try:
            card = vcard.parse(data.decode("utf-8", "replace"))[0]
        except vcard.VCardError:
            return None
        if properties is not None:
            card = {k: v for k, v in card.items() if k in properties}
        return card

    return await parse_blobs(call, parse)
