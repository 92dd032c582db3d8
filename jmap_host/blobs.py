"""Upload and download of binary data (RFC 8620 §6.1, §6.2).

Blobs are content-addressed files under ``<storage.path>/blobs``, written to a temporary
file, fsynced and renamed before the row that grants an account access commits, so an
acknowledged upload survives a crash.  Access is per account: a blob id is only usable by
an account that has a row for it, so one account cannot read another's data or learn that
it exists.  (Expiry of unreferenced uploads, Range requests and Blob/copy arrive with the
data layer.)
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import sqlite_utils
import trio

from .errors import ERROR_PREFIX
from .http import Request, Response, json_response, problem_response
from .limits import LimitExceeded
from .session import accounts_for

if TYPE_CHECKING:
    from .host import Host

TABLE = "host_blob"
MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;.*)?")


def create_blob_table(db: sqlite_utils.Database) -> None:
    db[TABLE].create(
        {"account": str, "blob_id": str, "type": str, "size": int, "created": int},
        pk=("account", "blob_id"),
    )


def blob_dir(host: Host) -> Path:
    return Path(host.config.data["storage"]["path"]) / "blobs"


def blob_path(host: Host, blob_id: str) -> Path:
    digest = blob_id[1:]
    return blob_dir(host) / digest[:2] / digest[2:4] / digest


async def _account_allowed(request: Request, account_id: str) -> bool:
    assert request.principal is not None
    return account_id in await accounts_for(request.host, request.principal)


def _limit_problem(status: int, detail: str, limit: str) -> Response:
    return problem_response(status, detail, ERROR_PREFIX + "limit", limit=limit)


async def upload(request: Request) -> Response:
    """RFC 8620 §6.1: POST the bytes, get back accountId, blobId, type and size."""
    host = request.host
    account_id = request.path_params["accountId"]
    if not await _account_allowed(request, account_id):
        return problem_response(404, "no such account")
    media_type = (request.header("content-type") or "application/octet-stream").strip()
    if not MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    limit = host.limits.max_size_upload
    length = request.header("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _limit_problem(413, f"uploads are limited to {limit} octets", "maxSizeUpload")
    limiter = host.upload_concurrency
    try:
        assert request.principal is not None
        with limiter.hold(request.principal.name):
            stored = await _receive_blob(request, limit)
    except LimitExceeded:
        return _limit_problem(
            429, f"at most {limiter.limit} uploads may run at once", "maxConcurrentUpload"
        )
    if isinstance(stored, Response):
        return stored
    blob_id, size = stored
    record = {
        "account": account_id,
        "blob_id": blob_id,
        "type": media_type,
        "size": size,
        "created": int(time.time()),
    }
    await host.store.write(lambda db: db[TABLE].upsert(record, pk=("account", "blob_id")))
    return json_response(
        {"accountId": account_id, "blobId": blob_id, "type": media_type, "size": size}, status=201
    )


async def _receive_blob(request: Request, limit: int) -> tuple[str, int] | Response:
    """Stream the body to a temporary file, hashing it; move it into place once durable."""
    host = request.host
    tmp_dir = blob_dir(host) / "tmp"
    await trio.Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / secrets.token_hex(16)
    digest = hashlib.sha256()
    size = 0
    try:
        async with await trio.open_file(tmp, "wb") as f:
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    return Response(400)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return _limit_problem(
                        413, f"uploads are limited to {limit} octets", "maxSizeUpload"
                    )
                digest.update(chunk)
                await f.write(chunk)
                if not message.get("more_body", False):
                    break
            await f.flush()
            await trio.to_thread.run_sync(os.fsync, f.fileno())
        blob_id = "G" + digest.hexdigest()
        await trio.to_thread.run_sync(_commit_file, tmp, blob_path(host, blob_id))
    finally:
        if tmp.exists():
            tmp.unlink()
    return blob_id, size


def _commit_file(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must be durable before the row naming it commits
    finally:
        os.close(fd)


async def download(request: Request) -> Response:
    """RFC 8620 §6.2: the blob's bytes, with the name and type the client asked for."""
    host = request.host
    account_id = request.path_params["accountId"]
    blob_id = request.path_params["blobId"]
    name = request.path_params["name"]
    if not await _account_allowed(request, account_id):
        return problem_response(404, "no such blob")

    def find(db: sqlite_utils.Database) -> list[dict]:
        if not db[TABLE].exists():
            return []
        return list(db[TABLE].rows_where("account = ? AND blob_id = ?", [account_id, blob_id]))

    rows = await host.store.read(find)
    path = blob_path(host, blob_id)
    if not rows or not path.is_file():
        return problem_response(404, "no such blob")
    wanted = (request.query.get("type") or [rows[0]["type"]])[0]
    if not MEDIA_TYPE.fullmatch(wanted):
        wanted = "application/octet-stream"
    data = await trio.Path(path).read_bytes()
    from urllib.parse import unquote

    filename = unquote(name)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "").replace("?", "_")
    return Response(
        200,
        data,
        headers=[
            ("Content-Type", wanted),
            (
                "Content-Disposition",
                f'attachment; filename="{ascii_name}"; '
                f"filename*=UTF-8''{quote(filename, safe='')}",
            ),
            ("Cache-Control", "private, immutable, max-age=31536000"),
        ],
    )
