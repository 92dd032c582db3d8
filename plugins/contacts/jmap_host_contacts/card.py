"""ContactCards (RFC 9610 §3): JSContact Cards (RFC 9553) in address books, declared once as
a data type, so ContactCard/get, /changes, /set, /copy, /query and /queryChanges are the
host's standard methods, shared through their AddressBooks.  This module adds what the
RFCs say of a card: full JSContact validation (jscontact.py; unknown and vendor-specific
properties kept verbatim, as an open type), a ``uid`` unique in the account (generated when
the client gives none), ``created``/``updated``, Media as blobs (a ``data:`` URI becomes a
blob; a photo must be an image), the §3.3.1 filters and §3.3.2 sorts.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
import uuid
from typing import Any

from jmap_host import (
    DataType,
    FilterCondition,
    Property,
    SetContext,
    SetError,
    SharedThrough,
    dates,
    jsobject,
    objectstore,
    read_blob,
    textsearch,
    write_blob,
)

from . import jscontact

# The JSContact Card properties (RFC 9553 §2) this server stores as its own columns; any
# other keepable name is an open property (DataType.open_properties).
JSON_PROPERTIES = (
    "relatedTo", "name", "nicknames", "organizations", "speakToAs", "titles", "emails",
    "onlineServices", "phones", "preferredLanguages", "calendars", "schedulingAddresses",
    "addresses", "cryptoKeys", "directories", "links", "media", "localizations",
    "anniversaries", "keywords", "notes", "personalInfo",
)  # fmt: skip
IMAGE_KINDS = ("photo", "logo")
MAX_MEDIA_OCTETS = 10 * 1024 * 1024  # a data: URI decoded to at most this (then a blob)


# -- what the filters and sorts read (derived columns: jmap_host.textsearch) ---------------


def _name_parts(name: Any, kind: str | None) -> list[str]:
    """A Name's (or an Address's) component values, of one kind or all, with its full."""
    if not isinstance(name, dict):
        return []
    parts = [
        c["value"]
        for c in name.get("components") or []
        if isinstance(c, dict) and isinstance(c.get("value"), str)
        and (kind is None or c.get("kind") == kind)
    ]  # fmt: skip
    if kind is None and isinstance(name.get("full"), str):
        parts.append(name["full"])
    return parts


def _keys(prop: str, *keys: str) -> Any:
    return lambda r: textsearch.strings(r.get(prop), keys)


# §3.3.1's string conditions: the strings of a card each one reads, kept folded in a
# derived column that the condition searches with instr (no JSON read per card).
STRING_FILTERS: dict[str, Any] = {
    "name": lambda r: _name_parts(r.get("name"), None),
    **{f"name/{k}": (lambda r, k=k: _name_parts(r.get("name"), k))
       for k in ("given", "surname", "surname2")},
    "nickname": _keys("nicknames", "name"),
    "organization": _keys("organizations", "name"),
    "email": _keys("emails", "address", "label"),
    "phone": _keys("phones", "number", "label"),
    "onlineService": _keys("onlineServices", "service", "uri", "user", "label"),
    "address": lambda r: [s for a in (r.get("addresses") or {}).values()
                          for s in _name_parts(a, None)],
    "note": _keys("notes", "note"),
}  # fmt: skip
TEXT_COLUMNS = ("name", "nicknames", "organizations", "titles", "emails", "phones",
                "onlineServices", "addresses", "notes", "personalInfo")  # fmt: skip


def search_text(record: dict[str, Any]) -> str:
    """The card's text, folded, for §3.3.1 text: every string of its text properties and
    its uid."""
    found = [s for name in TEXT_COLUMNS for s in textsearch.strings(record.get(name))]
    if isinstance(record.get("uid"), str):
        found.append(record["uid"])
    return textsearch.folded(found)


def _sort_key(kind: str, folded: bool) -> Any:
    def key(record: dict[str, Any]) -> str | None:
        parts = _name_parts(record.get("name"), kind)
        if not parts:
            return None
        return textsearch.fold(parts[0]) if folded else parts[0]

    return key


NAME_SORTS = ("given", "surname", "surname2")


# -- hooks -------------------------------------------------------------------------------------


def _validate(record: dict[str, Any]) -> None:
    try:
        jscontact.validate_card(record)
    except jscontact.Invalid as exc:
        raise jsobject.set_error(exc) from None


IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
)  # fmt: skip


def image_type(data: bytes) -> str | None:
    """The image media type of ``data`` by its first bytes, or None (RFC 9610 §3.5: a
    photo must be a recognised image type)."""
    for magic, media in IMAGE_MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif"):
        return "image/avif" if data[8:12] == b"avif" else "image/heic"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "image/svg+xml"
    return None


def _media(ctx: SetContext, record: dict[str, Any]) -> None:
    """Media blobs (RFC 9610 §3): a ``data:`` URI is stored as a blob and named by blobId;
    a photo or logo must be an image.  (That a blobId the client names is one the user
    may use, and the references, are the host's: ``embedded_blobs``.)"""
    media = record.get("media")
    if not isinstance(media, dict):
        return
    changed = {}
    for key, item in media.items():
        if not isinstance(item, dict):
            continue
        where = f"media/{key}"
        item = dict(item)
        uri = item.get("uri")
        if isinstance(uri, str) and uri[:5].lower() == "data:":
            data, media_type = _data_uri(uri, where)
            item.pop("uri")
            item["blobId"] = write_blob(ctx.host, data)
            item.setdefault("mediaType", media_type)
            changed[key] = item
        blob_id = item.get("blobId")
        if not isinstance(blob_id, str):
            continue
        if item.get("kind") in IMAGE_KINDS:
            kind = image_type(read_blob(ctx.host, blob_id) or b"")
            if kind is None:
                raise SetError("invalidProperties",
                               f"{where}: a {item['kind']} must be an image (RFC 9610 §3.5)",
                               properties=["media"])  # fmt: skip
            if "mediaType" not in item:
                item["mediaType"] = kind
                changed[key] = item
    if changed:
        record["media"] = {**media, **changed}


def media_blobs(record: dict[str, Any]) -> list[tuple[str, Any]]:
    """The blobs a card's Media name (DataType.embedded_blobs)."""
    media = record.get("media")
    if not isinstance(media, dict):
        return []
    return [(f"media/{key}/blobId", item.get("blobId"))
            for key, item in media.items() if isinstance(item, dict)]  # fmt: skip


def _data_uri(uri: str, where: str) -> tuple[bytes, str]:
    head, comma, body = uri[5:].partition(",")
    if not comma:
        raise SetError("invalidProperties", f"{where}/uri: not a data: URI", properties=["media"])
    params = head.split(";")
    media_type = params[0] or "text/plain"
    try:
        if "base64" in params[1:]:
            data = base64.b64decode(body, validate=False)
        else:
            data = urllib.parse.unquote_to_bytes(body)
    except (binascii.Error, ValueError):
        raise SetError("invalidProperties", f"{where}/uri: bad base64",
                       properties=["media"]) from None  # fmt: skip
    if len(data) > MAX_MEDIA_OCTETS:
        raise SetError("tooLarge", f"{where}: at most {MAX_MEDIA_OCTETS} octets")
    return data, media_type


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    if not record.get("uid"):
        record["uid"] = f"urn:uuid:{uuid.uuid4()}"
    now = dates.utcdate()
    if not record.get("created"):
        record["created"] = now
    if not record.get("updated"):
        record["updated"] = now
    _validate(record)
    _media(ctx, record)


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new.get("uid") != old.get("uid"):
        raise SetError("invalidProperties", "uid cannot change", properties=["uid"])
    if new.get("updated") == old.get("updated"):
        new["updated"] = dates.utcdate()  # RFC 9553 §2.1.10: when the card was last modified
    _validate(new)
    if new.get("media") != old.get("media"):
        _media(ctx, new)


CARD = DataType(
    name="ContactCard",
    table="contacts_card",
    properties=[
        # (at least one existing AddressBook: the host checks a member's containers)
        Property("addressBookIds", "Id[Boolean]", required=True),
        Property("@type", "String", default="Card"),
        Property("version", "String", default="1.0"),
        Property("uid", "String", indexed=True),
        Property("kind", "String", default="individual", indexed=True),
        Property("created", "UTCDate|null", sortable=True),
        Property("updated", "UTCDate|null", sortable=True),
        Property("language", "String|null"),
        Property("prodId", "String|null"),
        Property("members", "String[Boolean]|null"),
        *(Property(name, "Any") for name in JSON_PROPERTIES),
    ],
    filters=[
        FilterCondition("inAddressBook", "addressBookIds", "hasKey", value_type="Id"),
        FilterCondition("uid", "uid"),
        FilterCondition("hasMember", "members", "hasKey", value_type="String"),
        FilterCondition("kind", "kind"),
        FilterCondition("createdBefore", "created", "lt", value_type="UTCDate"),
        FilterCondition("createdAfter", "created", "ge", value_type="UTCDate"),
        FilterCondition("updatedBefore", "updated", "lt", value_type="UTCDate"),
        FilterCondition("updatedAfter", "updated", "ge", value_type="UTCDate"),
        FilterCondition("text", "name", "custom", value_type="String",
                        sql=textsearch.condition("contacts_card", "text")),
        *(
            FilterCondition(name, "name", "custom", value_type="String",
                            sql=textsearch.condition("contacts_card", f"f:{name}",
                                                     tokenized=False))
            for name in STRING_FILTERS
        ),
    ],
    on_create=on_create,
    on_update=on_update,
    default_sort=("created",),
    # §3.3.2's name sorts and the text search read columns kept with each card.
    # (Each sort twice: as written, for the collation a client names, and folded, for the
    # default collation from its index.)
    derived={
        "text": search_text,
        **{f"f:{name}": (lambda r, read=read: textsearch.folded(read(r)))
           for name, read in STRING_FILTERS.items()},
        **{f"name/{kind}": _sort_key(kind, False) for kind in NAME_SORTS},
        **{f"name/{kind}/folded": _sort_key(kind, True) for kind in NAME_SORTS},
    },
    sort_sql={
        f"name/{kind}": f"[{objectstore.derived_column(f'name/{kind}')}]" for kind in NAME_SORTS
    },
    folded_sort_sql={
        f"name/{kind}": f"[{objectstore.derived_column(f'name/{kind}/folded')}]"
        for kind in NAME_SORTS
    },
    open_properties=jscontact.keepable,
    unique=(("uid",),),  # RFC 9610 §3: one card per uid in an account
    embedded_blobs=media_blobs,  # the host checks, references and copies them
    shared_through=SharedThrough(
        container="AddressBook", property="addressBookIds",
        add="mayWrite", remove="mayWrite", update="mayWrite",
    ),
)  # fmt: skip

__all__ = ["CARD", "image_type", "search_text"]
