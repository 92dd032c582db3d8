"""The skeleton of a ``/parse`` method (RFC 8621 §4.9 Email/parse is the model; plugins
serve ContactCard/parse and CalendarEvent/parse): ``blobIds`` in, each blob the caller
may use in the account read and handed to the plugin's parser, and ``parsed``,
``notParsable`` and ``notFound`` out.  One implementation of the argument checks, the blob
visibility (the same as every blob method's) and the response's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from .blobs import blobs_visible, read_blob
from .engine import check_get_size

if TYPE_CHECKING:
    from .capabilities import Call


async def parse_blobs(call: Call, parse: Callable[[bytes], Any | None]) -> dict[str, Any]:
    """The /parse response for ``call``: ``parse(data)`` (run in a worker thread) gives a
    blob's parsed value, or None when it cannot be parsed (``notParsable``); a blob the
    caller may not use in the account, or that is gone, is ``notFound``.  Each blob id is
    answered once; at most maxObjectsInGet of them (``requestTooLarge`` past it)."""
    from . import standard

    assert call.account is not None
    account = call.account.id
    blob_ids = standard.arg(call, "blobIds", "Id[]")
    check_get_size(call, blob_ids)
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
        value = await trio.to_thread.run_sync(parse, data)
        if value is None:
            not_parsable.append(blob_id)
            continue
        parsed[blob_id] = value
    return {
        "accountId": account,
        "parsed": parsed or None,
        "notParsable": not_parsable or None,
        "notFound": not_found or None,
    }
