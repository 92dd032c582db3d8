"""Blob management (RFC 9404, ``urn:ietf:params:jmap:blob``): Blob/upload, Blob/get and
Blob/lookup, on the same store and access rules as the upload and download endpoints
(RFC 8620 §6; jmap_host.blobs).

- Blob/upload (§4.1) makes blobs from inline text, base64 and ranges of blobs the user can
  see, concatenated; each new blob is an unreferenced upload of the caller's, like one of
  the upload endpoint, and its creation id joins the request's ``createdIds``.
- Blob/get (§4.2) reads a range of blobs as text or base64, with digests.
- Blob/lookup (§4.3) finds the records of the given types that reference a blob, through
  each type's lookup (``DataType.blob_lookup``: by default its BlobId properties, as the
  host records them in ``host_blob_ref``; mail declares Email, Thread and Mailbox).

Limits, in the account's capability object: ``maxSizeBlobSet`` is ``maxSizeUpload``;
``maxDataSources`` is MAX_DATA_SOURCES.  A blob the caller cannot see answers exactly as
one that does not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import time
from typing import TYPE_CHECKING, Any

import sqlite_utils
import trio

from . import blobs, sharing
from .capabilities import Account, Call, Capability, Method
from .datatype import DataType, SetError
from .engine import check_get_size
from .errors import MethodError
from .quota import QuotaLimits, check_quota, limits_for

if TYPE_CHECKING:
    from .host import Host

BLOB = "urn:ietf:params:jmap:blob"
MAX_DATA_SOURCES = 256  # §4.1: at least 64
# digest:<algorithm> names (RFC 3230 registry, lower case, §4.2) and their hashlib names,
# in the order clients should prefer them.
DIGESTS = {"sha-256": "sha256", "sha-512": "sha512", "sha": "sha1"}
DEFAULT_GET = ("data", "size")


def blob_capability(host: Host) -> Capability:
    """The capability, its account object and its three methods (registered by core)."""

    def account(host: Host, acc: Account) -> dict[str, Any]:
        return {
            "maxSizeBlobSet": host.limits.max_size_upload,
            "maxDataSources": MAX_DATA_SOURCES,
            "supportedTypeNames": sorted(host.blob_lookups),
            "supportedDigestAlgorithms": list(DIGESTS),
        }

    return Capability(
        urn=BLOB,
        session={},  # §3.1: an empty object in the session
        account=account,
        primary=False,
        # In an account shared with the user, blobs follow what the shares let them see.
        in_shared_accounts=True,
        methods=[
            Method("Blob/upload", blob_upload, writes=True),
            Method("Blob/get", blob_get),
            Method("Blob/lookup", blob_lookup),
        ],
    )


# -- Blob/upload (§4.1) ------------------------------------------------------------------------


async def blob_upload(call: Call) -> dict[str, Any]:
    host = call.host
    assert call.account is not None
    account = call.account.id
    principal = call.request.principal.name
    create = call.args.get("create")
    if not isinstance(create, dict):
        raise MethodError("invalidArguments", "create must be a map of creation id to UploadObject")
    if len(create) > host.limits.max_objects_in_set:
        raise MethodError(
            "requestTooLarge", f"at most {host.limits.max_objects_in_set} blobs at once"
        )
    created: dict[str, Any] = {}
    not_created: dict[str, Any] = {}
    known = call.request.created_ids
    limits = limits_for(host, call.account.owner)
    for creation_id, obj in create.items():
        try:
            sources, media = _check_upload(obj)
            data = await _assemble(host, account, principal, sources, known)
            if len(data) > host.limits.max_size_upload:
                raise SetError(
                    "tooLarge",
                    f"the blob would be {len(data)} octets; at most "
                    f"{host.limits.max_size_upload} (maxSizeBlobSet)",
                )
            blob_id = await host.store.write(
                lambda db, d=data, m=media: _store(host, db, account, principal, d, m, limits)
            )
        except SetError as exc:
            not_created[creation_id] = exc.to_json()
            continue
        # §4.1: the id joins createdIds, so later calls (and data sources) can use "#id".
        known[creation_id] = blob_id
        created[creation_id] = {"id": blob_id, "type": media, "size": len(data)}
    return {"accountId": account, "created": created or None, "notCreated": not_created or None}


def _check_upload(obj: Any) -> tuple[list[dict[str, Any]], str]:
    """An UploadObject's data sources and media type, or SetError invalidProperties."""
    if not isinstance(obj, dict):
        raise SetError("invalidProperties", "an UploadObject must be an object")
    unknown = sorted(set(obj) - {"data", "type"})
    if unknown:
        raise SetError("invalidProperties", f"unknown: {', '.join(unknown)}", properties=unknown)
    media = obj.get("type")
    if media is not None and (not isinstance(media, str) or not blobs.MEDIA_TYPE.fullmatch(media)):
        raise SetError("invalidProperties", "type must be a media type", properties=["type"])
    sources = obj.get("data")
    if not isinstance(sources, list):
        raise SetError("invalidProperties", "data must be an array", properties=["data"])
    if len(sources) > MAX_DATA_SOURCES:
        raise SetError("tooLarge", f"at most {MAX_DATA_SOURCES} data sources (maxDataSources)")
    for i, source in enumerate(sources):
        where = f"data/{i}"
        if not isinstance(source, dict):
            raise SetError("invalidProperties", f"{where} must be an object", properties=["data"])
        kinds = [k for k in ("data:asText", "data:asBase64", "blobId") if k in source]
        allowed = {"blobId", "offset", "length"} if kinds == ["blobId"] else set(kinds)
        if len(kinds) != 1 or set(source) - allowed:
            raise SetError(
                "invalidProperties",
                f"{where}: exactly one of data:asText, data:asBase64 or blobId (with offset "
                "and length)",
                properties=["data"],
            )
        for name in ("offset", "length"):
            value = source.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise SetError(
                    "invalidProperties", f"{where}/{name} must be an UnsignedInt",
                    properties=["data"],
                )  # fmt: skip
        if not isinstance(source[kinds[0]], str):
            raise SetError(
                "invalidProperties", f"{where}/{kinds[0]} must be a string", properties=["data"]
            )
    return sources, media or "application/octet-stream"


async def _assemble(
    host: Host, account: str, principal: str, sources: list[dict[str, Any]], known: dict
) -> bytes:
    """The octets of the data sources, concatenated (§4.1); invalid data, an invisible or
    missing blob, or a range past a blob's end is invalidProperties: never a guess."""
    parts: list[bytes] = []
    total = 0
    for i, source in enumerate(sources):
        if "data:asText" in source:
            part = source["data:asText"].encode("utf-8", "surrogatepass")
            try:
                part.decode("utf-8")
            except UnicodeDecodeError:
                raise SetError(
                    "invalidProperties", f"data/{i}: not UTF-8", properties=["data"]
                ) from None
        elif "data:asBase64" in source:
            try:
                part = base64.b64decode(source["data:asBase64"], validate=True)
            except (binascii.Error, ValueError):
                raise SetError(
                    "invalidProperties", f"data/{i}: invalid base64", properties=["data"]
                ) from None
        else:
            blob_id = source["blobId"]
            if blob_id.startswith("#"):
                blob_id = known.get(blob_id[1:], blob_id)
            part = await _read_visible(host, account, principal, blob_id)
            if part is None:
                raise SetError("invalidProperties", f"data/{i}: no such blob", properties=["data"])
            offset = source.get("offset") or 0
            length = source.get("length")
            end = len(part) if length is None else offset + length
            if offset > len(part) or end > len(part):
                raise SetError(
                    "invalidProperties",
                    f"data/{i}: the range {offset}-{end} is outside the blob's {len(part)} octets",
                    properties=["data"],
                )
            part = part[offset:end]
        total += len(part)
        if total > host.limits.max_size_upload:
            raise SetError(
                "tooLarge", f"the blob would be over {host.limits.max_size_upload} octets"
            )
        parts.append(part)
    return b"".join(parts)


async def _read_visible(host: Host, account: str, principal: str, blob_id: str) -> bytes | None:
    if not blobs.BLOB_ID.fullmatch(blob_id):
        return None
    visible = await host.store.read(lambda db: blobs.blob_visible(db, account, blob_id, principal))
    if not visible:
        return None
    return await trio.to_thread.run_sync(blobs.read_blob, host, blob_id)


def _store(
    host: Host,
    db: sqlite_utils.Database,
    account: str,
    principal: str,
    data: bytes,
    media: str,
    limits: QuotaLimits,
) -> str:
    """Inside the write transaction: the quota, the file (durable first), the upload row."""
    check_quota(db, limits, account, octets=len(data))
    blob_id = blobs.write_blob(host, data)
    now = int(time.time())
    expires = now + math.ceil(blobs.upload_expiry(host))
    db.execute(blobs.UPSERT_UPLOAD, [account, blob_id, principal, media, len(data), now, expires])
    return blob_id


# -- Blob/get (§4.2) ---------------------------------------------------------------------------


def _properties(call: Call) -> list[str]:
    properties = call.args.get("properties")
    if properties is None:
        return list(DEFAULT_GET)
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise MethodError("invalidArguments", "properties must be an array of strings")
    known = {"data", "data:asText", "data:asBase64", "size"} | {f"digest:{d}" for d in DIGESTS}
    unknown = [p for p in properties if p not in known and p != "id"]
    if unknown:
        raise MethodError("invalidArguments", f"unknown properties: {', '.join(unknown)}")
    return [p for p in dict.fromkeys(properties) if p != "id"]


def _unsigned(call: Call, name: str) -> int | None:
    value = call.args.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise MethodError("invalidArguments", f"{name} must be an UnsignedInt or null")
    return value


async def blob_get(call: Call) -> dict[str, Any]:
    host = call.host
    assert call.account is not None
    account = call.account.id
    principal = call.request.principal.name
    ids = call.args.get("ids")
    if ids is None:
        raise MethodError("invalidArguments", "Blob/get needs ids (blobs cannot be listed)")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "ids must be an array of ids")
    check_get_size(call, ids)
    known = call.request.created_ids
    ids = list(dict.fromkeys(known.get(i[1:], i) if i.startswith("#") else i for i in ids))
    properties = _properties(call)
    offset = _unsigned(call, "offset") or 0
    length = _unsigned(call, "length")
    valid = [i for i in ids if blobs.BLOB_ID.fullmatch(i)]
    visible = await host.store.read(lambda db: blobs.blobs_visible(db, account, valid, principal))
    found: list[dict[str, Any]] = []
    not_found: list[str] = []
    for blob_id in ids:
        data = None
        if blob_id in visible:
            data = await trio.to_thread.run_sync(blobs.read_blob, host, blob_id)
        if data is None:
            not_found.append(blob_id)
            continue
        found.append(_blob_object(blob_id, data, properties, offset, length))
    return {"accountId": account, "list": found, "notFound": not_found}


def _blob_object(
    blob_id: str, data: bytes, properties: list[str], offset: int, length: int | None
) -> dict[str, Any]:
    """One Blob object (§4.2): the selected range as asked, size always of the whole."""
    end = len(data) if length is None else offset + length
    chosen = data[offset:end]
    out: dict[str, Any] = {"id": blob_id}
    truncated = offset > len(data) or (length is not None and end > len(data))
    text: str | None = None
    wants_text = "data" in properties or "data:asText" in properties
    if wants_text:
        try:
            text = chosen.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    for prop in properties:
        if prop == "size":
            out["size"] = len(data)
        elif prop == "data:asText":
            out["data:asText"] = text
        elif prop == "data:asBase64":
            out["data:asBase64"] = base64.b64encode(chosen).decode("ascii")
        elif prop == "data":
            if text is not None:
                out["data:asText"] = text
            else:
                out["data:asBase64"] = base64.b64encode(chosen).decode("ascii")
        elif prop.startswith("digest:"):
            digest = hashlib.new(DIGESTS[prop.removeprefix("digest:")], chosen).digest()
            out[prop] = base64.b64encode(digest).decode("ascii")
    if wants_text and text is None:
        out["isEncodingProblem"] = True
    if truncated:
        out["isTruncated"] = True
    return out


# -- Blob/lookup (§4.3) ------------------------------------------------------------------------


def default_blob_lookup(dt: DataType) -> Any:
    """The lookup of a type with BlobId properties: the records whose blob references
    (``host_blob_ref`` rows ``"<Type>:<id>"``, which the standard /set keeps) name the blob."""
    prefix = f"{dt.name}:"

    def lookup(db: sqlite_utils.Database, account: str, blob_ids: list[str]) -> dict:
        return blob_refs(db, account, blob_ids, (prefix,))

    return lookup


def blob_refs(
    db: sqlite_utils.Database, account: str, blob_ids: list[str], prefixes: tuple[str, ...]
) -> dict[str, list[str]]:
    """{blob id: [ids]} of the references ``"<prefix><id>"`` in ``account`` naming the
    blobs: for a plugin's own lookups (mail's Email looks at "Email:" and "EmailPart:")."""
    out: dict[str, list[str]] = {}
    for start in range(0, len(blob_ids), 400):
        chunk = blob_ids[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        likes = " OR ".join("ref LIKE ? ESCAPE '\\'" for _ in prefixes)
        rows = db.execute(
            f"SELECT blob_id, ref FROM [{blobs.REF_TABLE}] WHERE account = ? AND "
            f"blob_id IN ({marks}) AND ({likes}) ORDER BY ref",
            [account, *chunk, *(p.replace("_", "\\_").replace("%", "\\%") + "%" for p in prefixes)],
        ).fetchall()
        for blob_id, ref in rows:
            record_id = ref.split(":", 1)[1]
            ids = out.setdefault(blob_id, [])
            if record_id not in ids:
                ids.append(record_id)
    return out


async def blob_lookup(call: Call) -> dict[str, Any]:
    host = call.host
    assert call.account is not None
    account = call.account.id
    type_names = call.args.get("typeNames")
    ids = call.args.get("ids")
    if not isinstance(type_names, list) or not all(isinstance(t, str) for t in type_names):
        raise MethodError("invalidArguments", "typeNames must be an array of type names")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise MethodError("invalidArguments", "ids must be an array of blob ids")
    check_get_size(call, ids)
    for name in type_names:
        entry = host.blob_lookups.get(name)
        # §4.3: unknown, or its capability not in the request's "using".
        if entry is None or entry[0] not in call.request.using:
            raise MethodError("unknownDataType", f"no blob lookup for {name!r} in this request")
    known = call.request.created_ids
    ids = list(dict.fromkeys(known.get(i[1:], i) if i.startswith("#") else i for i in ids))
    valid = [i for i in ids if blobs.BLOB_ID.fullmatch(i)]
    types = list(dict.fromkeys(type_names))

    def read(db: sqlite_utils.Database) -> dict[str, dict[str, list[str]]]:
        found: dict[str, dict[str, list[str]]] = {}
        access = sharing.access_for(db, call)
        for name in types:
            lookup = host.blob_lookups[name][1]
            found[name] = lookup(db, account, valid) if valid else {}
            if access is not None:  # a sharee learns only of the records they see
                dt = host.datatypes[name][0]
                seen = sharing.visible_ids(
                    db, dt, access, account, [i for ids in found[name].values() for i in ids]
                )
                found[name] = {b: [i for i in ids if i in seen] for b, ids in found[name].items()}
        return found

    found = await host.store.read(read, inline=False)
    # §4.3: a blob nobody here references, or that does not exist, still gets an empty
    # list per type (that tells nothing); only what is no blob id at all is notFound.
    return {
        "accountId": account,
        "list": [{"id": i, "matchedIds": {t: found[t].get(i, []) for t in types}} for i in valid],
        "notFound": [i for i in ids if i not in valid],
    }


__all__ = ["BLOB", "blob_capability", "blob_refs", "default_blob_lookup"]
