"""Binary data (RFC 8620 §6): upload (§6.1), download (§6.2), Blob/copy (§6.3), expiry.

Storage.  Blobs are content-addressed (the blob id is ``"G" + sha256``) and live in the
blob store ``[storage.blob] store`` chooses (``host.blobstore``; nothing outside this module
asks which): :class:`DirectoryBlobStore`, files under ``storage.blob.directory`` (default
``<storage.path>/blobs``), which several nodes may share; or :class:`DatabaseBlobStore`,
rows of ``host_blob_data`` in PostgreSQL.  Either way a blob is durable before the row
naming it commits (a file is fsynced and renamed into place inside the write transaction
that inserts the row; a database row is written in that transaction or before it), so an
acknowledged upload survives a crash, and the sweeper (which deletes blobs inside its own
write transaction) can never delete one a new row is about to name.

Access is per account and, for unreferenced blobs, per user (§6, §6.1: "unreferenced blobs
MUST only be accessible to the uploader, even in shared accounts"):

- ``host_blob_upload(account, blob_id, principal, type, size, created, expires)`` records
  that ``principal`` uploaded (or Blob/copied) the blob into ``account``; it lets that user,
  and only that user, use the blob until ``expires``.  Re-uploading resets the expiry (§6).
- ``host_blob_ref(account, blob_id, ref)`` records that an object in ``account`` references
  the blob (``ref`` is opaque, e.g. ``"Email:M123"``); a referenced blob is visible to every
  user of the account.  The standard-method engine maintains it with
  :func:`add_blob_reference` / :func:`remove_blob_references` inside its write transaction.

A blob id that an account cannot see gets exactly the answer a nonexistent id gets, so
nobody learns that someone else's blob exists.

Expiry.  :func:`sweep_blobs` (run every few minutes by :func:`run_sweeper`, which the server
starts in its background nursery) deletes upload rows that have expired and are not
referenced in their account, then deletes each such blob that no row in any account names
any more.  ``storage.blob.upload-expiry`` (default 24h, at least 1h as §6
requires) sets the lifetime of new uploads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote

import sqlite_utils
import trio

from . import sharing
from .capabilities import Call
from .errors import ERROR_PREFIX, MethodError
from .http import Request, Response, json_response, problem_response
from .limits import LimitExceeded
from .numbers import parse_digits
from .quota import OverQuota, check_quota, limits_for
from .session import accounts_for
from .sqldialect import dialect

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jmap_host.blobs")
T = TypeVar("T")

# The first migration's table (account, blob_id, type, size, created); the "blob_access"
# migration moves its rows into UPLOAD_TABLE and drops it.
TABLE = "host_blob"
UPLOAD_TABLE = "host_blob_upload"
REF_TABLE = "host_blob_ref"

# A media type with its parameters, in printable ASCII only: it goes back out in a
# Content-Type header (h11 refuses control characters; non-ASCII is no header value).
MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+([ \t]*;[\x20-\x7e]*)?")
# What a download's file name may hold in the plain filename="..." parameter: printable
# ASCII but the quote and backslash; filename* carries the whole name, percent-encoded.
_UNSAFE_NAME = re.compile(r'[^\x20-\x7e]|["\\]')
BLOB_ID = re.compile(r"G[0-9a-f]{64}")
DEFAULT_UPLOAD_EXPIRY = 24 * 3600.0
MIN_UPLOAD_EXPIRY = 3600.0  # RFC 8620 §6: not deleted for at least 1 hour from upload
SWEEP_INTERVAL = 600.0
# Downloads up to this size are read in one go; larger ones are streamed in CHUNK pieces.
CHUNK = 256 * 1024


# -- schema ----------------------------------------------------------------------------------


def create_blob_table(db: sqlite_utils.Database) -> None:
    """Migration "blobs" (kept as it was applied; superseded by :func:`create_blob_access`)."""
    db[TABLE].create(
        {"account": str, "blob_id": str, "type": str, "size": int, "created": int},
        pk=("account", "blob_id"),
    )


def create_blob_access(db: sqlite_utils.Database) -> None:
    """Migration "blob_access": per-uploader upload rows with an expiry, and references.

    Rows of the old ``host_blob`` table are kept, attributed to the account's owner (the
    principal recorded in ``host_account``), expiring 24 hours after their upload."""
    db[UPLOAD_TABLE].create(
        {
            "account": str,
            "blob_id": str,
            "principal": str,
            "type": str,
            "size": int,
            "created": int,
            "expires": int,
        },
        pk=("account", "blob_id", "principal"),
        not_null={"account", "blob_id", "principal", "created", "expires"},
    )
    db[UPLOAD_TABLE].create_index(["blob_id"])
    db[UPLOAD_TABLE].create_index(["expires"])
    db[REF_TABLE].create(
        {"account": str, "blob_id": str, "ref": str},
        pk=("account", "blob_id", "ref"),
        not_null={"account", "blob_id", "ref"},
    )
    db[REF_TABLE].create_index(["account", "ref"])
    db[REF_TABLE].create_index(["blob_id"])
    if db[TABLE].exists():
        owners = {}
        if db["host_account"].exists():
            owners = {r["id"]: r["principal"] for r in db["host_account"].rows}
        db[UPLOAD_TABLE].insert_all(
            (
                {
                    "account": r["account"],
                    "blob_id": r["blob_id"],
                    "principal": owners.get(r["account"], ""),
                    "type": r["type"],
                    "size": r["size"],
                    "created": r["created"],
                    "expires": int(r["created"] + DEFAULT_UPLOAD_EXPIRY),
                }
                for r in db[TABLE].rows
            ),
            ignore=True,
        )
        db[TABLE].drop()


# -- the engine's interface (sync, inside the caller's write transaction) --------------------


def add_blob_reference(db: sqlite_utils.Database, account_id: str, blob_id: str, ref: str) -> None:
    """Record that the object ``ref`` (an opaque string, e.g. ``"Email:M1"``) in
    ``account_id`` references ``blob_id``; the blob becomes visible to every user of the
    account and is no longer subject to upload expiry there (RFC 8620 §6).

    Call it inside the write transaction that creates or updates the object, after checking
    :func:`blob_visible` for the user making the change in that same transaction.
    Idempotent."""
    db.execute(
        f"INSERT INTO [{REF_TABLE}] (account, blob_id, ref) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [account_id, blob_id, ref],
    )


def add_blob_references(
    db: sqlite_utils.Database, account_id: str, refs: list[tuple[str, str]]
) -> None:
    """:func:`add_blob_reference` for many (blob id, ref) pairs: one executemany."""
    db.conn.executemany(
        f"INSERT INTO [{REF_TABLE}] (account, blob_id, ref) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [(account_id, blob_id, ref) for blob_id, ref in refs],
    )


def remove_blob_references(db: sqlite_utils.Database, account_id: str, ref: str) -> None:
    """Drop every blob reference held by the object ``ref`` in ``account_id`` (when the
    object is destroyed, or before re-adding the references of an updated object).

    Nothing is deleted here: a blob is only removed later by the sweeper, so it survives the
    method call that removed its last reference (RFC 8620 §6)."""
    db.execute(f"DELETE FROM [{REF_TABLE}] WHERE account = ? AND ref = ?", [account_id, ref])


def blob_visible(
    db: sqlite_utils.Database, account_id: str, blob_id: str, principal_name: str
) -> bool:
    """True when ``principal_name`` may use ``blob_id`` in ``account_id``: an object in the
    account references it, or that principal uploaded (or Blob/copied) it into the account
    and the upload has not expired (RFC 8620 §6, §6.1).

    Does not check that the principal may use the account at all; callers do that first."""
    return blob_id in blobs_visible(db, account_id, [blob_id], principal_name)


def blobs_visible(
    db: sqlite_utils.Database, account_id: str, blob_ids: Iterable[str], principal_name: str
) -> set[str]:
    """Those of ``blob_ids`` that :func:`blob_visible` allows, two queries for up to 400
    (an Email/import of 50 messages asked 100 single-row queries twice)."""
    ids = list(dict.fromkeys(blob_ids))
    found: set[str] = set()
    now = int(time.time())
    for start in range(0, len(ids), 400):
        chunk = ids[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        referenced = _column(
            db,
            f"SELECT blob_id FROM [{REF_TABLE}] WHERE account = ? AND blob_id IN ({marks})",
            [account_id, *chunk],
        )
        # In an account shared with the caller, only what they may see references count.
        found.update(sharing.blob_refs_visible(db, account_id, referenced) if referenced else ())
        rest = [b for b in chunk if b not in found]
        if rest:
            marks = ", ".join("?" * len(rest))
            found.update(
                _column(
                    db,
                    f"SELECT blob_id FROM [{UPLOAD_TABLE}] WHERE account = ? AND principal = ? "
                    f"AND expires > ? AND blob_id IN ({marks})",
                    [account_id, principal_name, now, *rest],
                )
            )
    return found


def _column(db: sqlite_utils.Database, sql: str, args: list[Any]) -> list[Any]:
    try:
        return [row[0] for row in db.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # (as _first: before the blob tables exist)
            return []
        raise


def _first(db: sqlite_utils.Database, table: str, where: str, args: list[Any]) -> dict | None:
    # A plain SELECT: sqlite-utils' exists() + rows_where() cost two catalogue queries per
    # call, and blob_visible runs once per imported message.
    try:
        cursor = db.execute(f"SELECT * FROM [{table}] WHERE {where} LIMIT 1", args)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


def _upload_type(db: sqlite_utils.Database, account_id: str, blob_id: str, principal: str) -> str:
    """The media type given at upload (the uploader's own first), for a default."""
    for where, args in (
        ("account = ? AND blob_id = ? AND principal = ?", [account_id, blob_id, principal]),
        ("account = ? AND blob_id = ?", [account_id, blob_id]),
    ):
        row = _first(db, UPLOAD_TABLE, where, args)
        if row and row["type"]:
            return str(row["type"])
    return "application/octet-stream"


# -- the blob stores ---------------------------------------------------------------------------

# The bytes of the blobs of the database store (migration "blob_data").
DATA_TABLE = "host_blob_data"


def create_blob_data(db: sqlite_utils.Database) -> None:
    """Migration "blob_data": the table of ``storage.blob.store = "database"``.  Made on
    both back ends (the host has one migration set); only that store, on PostgreSQL, fills
    it.  The values are kept uncompressed, so that a range reads only its slice."""
    db[DATA_TABLE].create({"id": str, "data": bytes}, pk="id", not_null={"id", "data"})
    dialect(db).store_uncompressed(db, DATA_TABLE, "data")


def upload_expiry(host: Host) -> float:
    """``storage.blob.upload-expiry`` in seconds."""
    return float(host.config.get("storage.blob.upload-expiry", DEFAULT_UPLOAD_EXPIRY))


def open_blobstore(storage: dict[str, Any], store: Any) -> BlobStore:
    """The blob store ``[storage.blob]`` configures (``store``: the host's database)."""
    blob = storage["blob"]
    directory = Path(blob["directory"])
    if blob["store"] == "database":
        # (The directory holds only the temporary files of uploads being received.)
        return DatabaseBlobStore(store, directory / "tmp")
    return DirectoryBlobStore(directory)


def blobstore(host: Host) -> BlobStore:
    """The blob store of ``host``; nothing outside this module asks which one it is."""
    return host.blobstore


def _blob_id(data: bytes) -> str:
    return "G" + hashlib.sha256(data).hexdigest()


class DirectoryBlobStore:
    """``store = "directory"``: each blob a file, ``<directory>/aa/bb/<sha256>``, written
    first to ``<directory>/tmp`` and fsynced.  Every file a row names is durable (content
    fsynced, then the rename fsynced through its directory) before that row commits.

    Several nodes (or worker processes) may share the directory, e.g. over NFS:

    - a file is only ever written under a temporary name of its own (128 random bits) and
      gets its final name by a rename or a hard link, both atomic, of a fully written and
      fsynced file: two writers of the same content each put the same complete file there;
    - whether a file is there is asked by opening it (:func:`_file_size`): NFS revalidates
      a name with the server on open (close-to-open consistency), where a stat may answer
      from the client's cache after another node removed the file;
    - files are removed only inside a write transaction (the sweeper's), and put in place
      inside the write transaction that names them, and the store's write lock covers
      every node (SQLite's file lock, PostgreSQL's advisory lock);
    - the sweeper removes temporary files not modified for the upload expiry (at least an
      hour, far above any clock difference between nodes), so never one still being
      written."""

    # A received upload is fsynced: its temporary file becomes the blob's file.
    sync_uploads = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tmp_dir = directory / "tmp"

    def path(self, blob_id: str) -> Path:
        digest = blob_id[1:]
        return self.directory / digest[:2] / digest[2:4] / digest

    def read(self, blob_id: str) -> bytes | None:
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, blob_id: str, data: bytes) -> None:
        """Inside the write transaction naming the blob: its file, durably."""
        final = self.path(blob_id)
        tmp = _stage_file(self.tmp_dir, final, data)
        if tmp is not None:
            _commit_file(tmp, final)

    def size_in(self, db: Any, blob_id: str) -> int | None:
        """Inside a transaction: the blob's size, None if it is not stored."""
        return _file_size(self.path(blob_id))

    async def size(self, blob_id: str) -> int | None:
        return await trio.to_thread.run_sync(_file_size, self.path(blob_id))

    async def read_range(self, blob_id: str, first: int, length: int) -> bytes:
        return await trio.to_thread.run_sync(_read_range, self.path(blob_id), first, length)

    def stream_range(self, blob_id: str, first: int, length: int) -> AsyncIterator[bytes]:
        return _stream_range(self.path(blob_id), first, length)

    def staging(self) -> _StagedFiles:
        return _StagedFiles(self)

    async def prepare_upload(self, tmp: Path, blob_id: str) -> bool:
        """Before the upload's write transaction: the file's durable name is made now (the
        write lock is then held for the row only), a hard link to the fsynced temporary
        file, its directory fsynced.  False if the filesystem has no hard links."""
        return await trio.to_thread.run_sync(_link_durably, tmp, self.path(blob_id))

    def commit_upload(self, db: Any, tmp: Path, blob_id: str, linked: bool) -> None:
        """Inside the upload's write transaction, before its row: under the write lock the
        sweeper cannot run, and a file it removed since the link is put back here."""
        _commit_file(tmp, self.path(blob_id), linked)

    def delete(self, db: Any, blob_id: str) -> bool:
        """Inside the sweeper's write transaction: remove the blob; False if it was not
        stored."""
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            return False
        return True


def _file_size(path: Path) -> int | None:
    """The size of the file ``path``, None if there is none.  Asked by opening it (see
    :class:`DirectoryBlobStore`: on NFS a file another node removed must not count)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _commit_file(tmp: Path, final: Path, linked: bool = False) -> None:
    """Inside the write transaction that adds the row naming ``final``: rename ``tmp`` to
    ``final`` and fsync the directory, unless ``linked`` (:func:`_link_durably` gave the
    file that name durably already) and the file is still there."""
    if linked and _file_size(final) is not None:
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must be durable before the row naming it commits
    finally:
        os.close(fd)


def _link_durably(tmp: Path, final: Path) -> bool:
    """Give the (fsynced) file ``tmp`` the name ``final`` too and fsync the directory;
    False if the filesystem has no hard links.  An existing ``final`` has the same content
    (content addressing) and is made durable by the same directory fsync."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(tmp, final)
    except FileExistsError:
        pass
    except OSError:
        return False
    _fsync_path(final.parent)
    return True


class DatabaseBlobStore:
    """``store = "database"``: each blob a row of ``host_blob_data`` in PostgreSQL, so
    that every node has every blob, and a backup of the database has them too.

    The bytes are written in the transaction of the function running in this thread when
    there is one (``PgStore.current()``: write_blob and StagedBlobs.place inside the write
    function that names the blob), so they are durable exactly when the rows naming them
    commit and gone if it rolls back; outside one, in a small transaction of their own,
    committed before write_blob returns.  An upload's bytes are inserted (from its
    temporary file) before the transaction of its row, as a file is linked, and that
    transaction checks again that they are there.  The transactions of such inserts do
    not take the write lock: inserting content-addressed bytes, doing nothing when the row
    exists, commutes with every other write.  The one write it races with, the sweeper
    deleting the row of that content, holds the write lock, and so does the transaction
    naming the blob, which checks again (as for a file).

    Ranges are read with ``substring`` of the (uncompressed) value: a download streams
    its slices, a chunk per query, never the whole blob at once."""

    # The received temporary file is only read back into the insert: no fsync.
    sync_uploads = False

    def __init__(self, store: Any, tmp_dir: Path) -> None:
        self.store = store
        self.tmp_dir = tmp_dir

    def _in_transaction(self, fn: Callable[[Any], T], write: bool) -> T:
        db = self.store.current()
        if db is not None and not (write and db.read_only):
            return fn(db)  # type: ignore[no-any-return]
        if write:
            return self.store.write_sync(fn, lock=False)  # type: ignore[no-any-return]
        return self.store.read_sync(fn)  # type: ignore[no-any-return]

    def read(self, blob_id: str) -> bytes | None:
        return self._in_transaction(lambda db: _stored_data(db, blob_id), write=False)

    def write(self, blob_id: str, data: bytes) -> None:
        self._in_transaction(lambda db: _insert_data(db, [(blob_id, data)]), write=True)

    def size_in(self, db: Any, blob_id: str) -> int | None:
        row = db.execute(
            f"SELECT octet_length(data) FROM [{DATA_TABLE}] WHERE id = ?", [blob_id]
        ).fetchone()
        return None if row is None else int(row[0])

    async def size(self, blob_id: str) -> int | None:
        size: int | None = await self.store.read(lambda db: self.size_in(db, blob_id))
        return size

    async def read_range(self, blob_id: str, first: int, length: int) -> bytes:
        if length <= 0:
            return b""
        data: bytes = await self.store.read(lambda db: _data_slice(db, blob_id, first, length))
        return data

    async def stream_range(self, blob_id: str, first: int, length: int) -> AsyncIterator[bytes]:
        while length > 0:
            chunk = await self.read_range(blob_id, first, min(CHUNK, length))
            if not chunk:
                return  # swept since the download began: the body ends short
            first += len(chunk)
            length -= len(chunk)
            yield chunk

    def staging(self) -> _StagedRows:
        return _StagedRows(self)

    async def prepare_upload(self, tmp: Path, blob_id: str) -> None:
        def insert(db: Any) -> None:
            if not _stored_ids(db, [blob_id]):  # (same content stored: no bytes to send)
                _insert_data(db, [(blob_id, tmp.read_bytes())])

        await trio.to_thread.run_sync(lambda: self.store.write_sync(insert, lock=False))

    def commit_upload(self, db: Any, tmp: Path, blob_id: str, prepared: None) -> None:
        # Under the write lock: the sweeper may have deleted the row of this content since
        # it was inserted (an older upload of it expired): put it back.
        if not _stored_ids(db, [blob_id]):
            _insert_data(db, [(blob_id, tmp.read_bytes())])

    def delete(self, db: Any, blob_id: str) -> bool:
        return db.execute(f"DELETE FROM [{DATA_TABLE}] WHERE id = ?", [blob_id]).rowcount > 0


def _stored_data(db: Any, blob_id: str) -> bytes | None:
    row = db.execute(f"SELECT data FROM [{DATA_TABLE}] WHERE id = ?", [blob_id]).fetchone()
    return None if row is None else bytes(row[0])


def _data_slice(db: Any, blob_id: str, first: int, length: int) -> bytes:
    row = db.execute(
        f"SELECT substring(data FROM CAST(? AS INTEGER) FOR CAST(? AS INTEGER)) "
        f"FROM [{DATA_TABLE}] WHERE id = ?",
        [first + 1, length, blob_id],
    ).fetchone()
    return b"" if row is None else bytes(row[0])


def _stored_ids(db: Any, blob_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(blob_ids), 400):
        chunk = blob_ids[start : start + 400]
        marks = ", ".join("?" * len(chunk))
        found.update(_column(db, f"SELECT id FROM [{DATA_TABLE}] WHERE id IN ({marks})", chunk))
    return found


def _insert_data(db: Any, rows: list[tuple[str, bytes]]) -> None:
    if rows:
        db.conn.executemany(
            f"INSERT INTO [{DATA_TABLE}] (id, data) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
            rows,
        )


BlobStore = DirectoryBlobStore | DatabaseBlobStore


UPSERT_UPLOAD = (
    f"INSERT INTO [{UPLOAD_TABLE}] (account, blob_id, principal, type, size, created, expires) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, blob_id, principal) DO UPDATE SET "
    "type = excluded.type, size = excluded.size, created = excluded.created, "
    "expires = excluded.expires"
)


def write_blob(host: Host, data: bytes) -> str:
    """Store ``data`` as a blob and return its id (content-addressed).  Call it inside the
    write transaction that then records the blob's reference (:func:`add_blob_reference`):
    the blob is durable before that transaction commits (a file: fsynced and renamed into
    place now; in the database: written in that transaction), and the sweeper, which
    deletes blobs in its own write transaction, cannot interleave.  For plugins that make
    blobs themselves (mail parts)."""
    blob_id = _blob_id(data)
    blobstore(host).write(blob_id, data)
    return blob_id


# Threads that issue a batch's fsyncs together, so the filesystem can commit them in one
# journal transaction instead of one after another (ext4 groups concurrent fsyncs).
_SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_executor() -> ThreadPoolExecutor:
    global _sync_pool
    if _sync_pool is None:
        _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="jmap-blob-fsync")
    return _sync_pool


def _stage_file(tmp_dir: Path, final: Path, data: bytes) -> Path | None:
    """A pool thread's part of :meth:`StagedBlobs.stage`: None if ``final`` exists, else
    ``data`` written to a new file in ``tmp_dir`` and fsynced; returns that file."""
    if _file_size(final) is not None:
        return None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / secrets.token_hex(16)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


class StagedBlobs:
    """Blobs prepared *before* the write transaction that names them, so that writing
    them overlaps other work (parsing the next message) instead of holding the write lock:
    :meth:`stage` (any thread, no transaction) hashes the bytes and prepares the blob;
    :meth:`place` (inside the write transaction) stores the staged blobs the transaction
    will name; :meth:`wait` (inside the transaction, after the last row and before the
    COMMIT) waits until they are durable.  :meth:`close` (always, after the transaction)
    waits for anything still running and drops the staged blobs never placed (records
    that failed).

    Durability invariant (as for :func:`write_blob`): every blob a row names is durable
    before that row commits.  With the directory store, stage() writes and fsyncs a
    temporary file in a pool thread, place() renames it into place and starts the fsyncs
    of the directories, which wait() waits for; with the database store, place() inserts
    the bytes in the transaction itself."""

    def __init__(self, host: Host) -> None:
        self._staged = blobstore(host).staging()

    def stage(self, data: bytes, blob_id: str | None = None, present: bool = False) -> str:
        """The blob id of ``data`` (``blob_id`` when the caller knows it already);
        ``present``: the caller has just read the blob, so it need not be written."""
        return self._staged.stage(data, blob_id, present)

    def place(self, blob_ids: Any) -> None:
        """Inside the write transaction: store the (staged) blobs of ``blob_ids``."""
        self._staged.place(blob_ids)

    def wait(self) -> None:
        """Inside the write transaction, before COMMIT: every placed blob is durable."""
        self._staged.wait()

    def close(self) -> None:
        """After the transaction (committed or not): drop the blobs never placed."""
        self._staged.close()


class _StagedFiles:
    """:class:`StagedBlobs` of the directory store.  A file that already existed at
    :meth:`stage` is checked again in :meth:`place`, under the write lock (the sweeper
    deletes files only in its own write transaction), and written there if it has gone."""

    def __init__(self, store: DirectoryBlobStore) -> None:
        self.store = store
        # blob id -> (future of the staged file, None: it existed; the bytes)
        self._staged: dict[str, tuple[Any, bytes]] = {}
        self._dir_syncs: list[Any] = []

    def stage(self, data: bytes, blob_id: str | None, present: bool) -> str:
        if blob_id is None:
            blob_id = _blob_id(data)
        if blob_id not in self._staged:
            future = None
            if not present:
                final = self.store.path(blob_id)
                future = _sync_executor().submit(_stage_file, self.store.tmp_dir, final, data)
            self._staged[blob_id] = (future, data)
        return blob_id

    def place(self, blob_ids: Any) -> None:
        parents: dict[Path, None] = {}
        try:
            for blob_id in dict.fromkeys(blob_ids):
                entry = self._staged.pop(blob_id, None)
                if entry is None:
                    raise KeyError(f"blob {blob_id} was not staged")
                future, data = entry
                tmp = future.result() if future is not None else None  # bytes durable
                final = self.store.path(blob_id)
                if tmp is None:
                    if _file_size(final) is None:  # removed since stage(): write it, durably
                        self.store.write(blob_id, data)
                    continue
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                parents[final.parent] = None
        finally:
            # Even when this fails half-way: another import may find a file renamed here
            # and rely on it, so every rename is made durable (close() waits for these).
            pool = _sync_executor()
            self._dir_syncs += [pool.submit(_fsync_path, parent) for parent in parents]

    def wait(self) -> None:
        syncs, self._dir_syncs = self._dir_syncs, []
        for future in syncs:
            future.result()  # re-raises an OSError: the transaction rolls back

    def close(self) -> None:
        for future in self._dir_syncs:
            with contextlib.suppress(OSError):
                future.result()
        self._dir_syncs = []
        for future, _ in self._staged.values():
            if future is None:
                continue
            try:
                tmp = future.result()
            except OSError:
                continue
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        self._staged.clear()


class _StagedRows:
    """:class:`StagedBlobs` of the database store: stage() only keeps the bytes; place()
    inserts those not stored yet, in the transaction that names them (durable with it)."""

    def __init__(self, store: DatabaseBlobStore) -> None:
        self.store = store
        self._staged: dict[str, bytes] = {}

    def stage(self, data: bytes, blob_id: str | None, present: bool) -> str:
        if blob_id is None:
            blob_id = _blob_id(data)
        self._staged.setdefault(blob_id, data)
        return blob_id

    def place(self, blob_ids: Any) -> None:
        wanted: dict[str, bytes] = {}
        for blob_id in dict.fromkeys(blob_ids):
            data = self._staged.pop(blob_id, None)
            if data is None:
                raise KeyError(f"blob {blob_id} was not staged")
            wanted[blob_id] = data

        def insert(db: Any) -> None:
            stored = _stored_ids(db, list(wanted))
            _insert_data(db, [(b, data) for b, data in wanted.items() if b not in stored])

        self.store._in_transaction(insert, write=True)

    def wait(self) -> None:
        pass  # the rows are durable when the transaction commits

    def close(self) -> None:
        self._staged.clear()


def read_blob(host: Host, blob_id: str) -> bytes | None:
    """The bytes of a blob, or None.  No access check: callers check :func:`blob_visible`
    or hold a reference of their own."""
    if not BLOB_ID.fullmatch(blob_id):
        return None
    return blobstore(host).read(blob_id)


# -- upload (§6.1) -----------------------------------------------------------------------------


def _over_quota(exc: Exception) -> Response:
    """An upload past the account's quota (RFC 9425; RFC 8620 §5.3 names the error)."""
    return problem_response(413, str(exc), ERROR_PREFIX + "overQuota")


def _limit_problem(status: int, detail: str, limit: str) -> Response:
    return problem_response(status, detail, ERROR_PREFIX + "limit", limit=limit)


async def upload(request: Request) -> Response:
    """RFC 8620 §6.1: POST the bytes, get back accountId, blobId, type and size.  The new
    blob is unreferenced: only the uploader can use it until an object references it."""
    host = request.host
    principal = request.principal
    assert principal is not None
    account_id = request.path_params["accountId"]
    account = (await accounts_for(host, principal)).get(account_id)
    if account is None:
        return problem_response(404, "no such account")
    limits = limits_for(host, account.owner)
    media_type = (request.header("content-type") or "application/octet-stream").strip()
    if not MEDIA_TYPE.fullmatch(media_type):
        media_type = "application/octet-stream"
    limit = host.limits.max_size_upload
    length = parse_digits(request.header("content-length"))
    if length is not None and length > limit:
        return _limit_problem(413, f"uploads are limited to {limit} octets", "maxSizeUpload")
    if length is not None:
        try:  # (from the declared length, before reading the body; again once read)
            await host.store.read(lambda db: check_quota(db, limits, account_id, octets=length))
        except OverQuota as exc:
            return _over_quota(exc)
    limiter = host.upload_concurrency
    store = blobstore(host)
    try:
        with limiter.hold(principal.name):
            stored = await _receive_blob(request, store, limit)
            if isinstance(stored, Response):
                return stored
            tmp, blob_id, size = stored
            try:
                now = int(time.time())
                record = {
                    "account": account_id,
                    "blob_id": blob_id,
                    "principal": principal.name,
                    "type": media_type,
                    "size": size,
                    "created": now,
                    "expires": now + math.ceil(upload_expiry(host)),
                }
                # The bytes are made durable before the write lock is taken (the lock is
                # then held for the row only), and checked again under it.
                prepared = await store.prepare_upload(tmp, blob_id)

                def commit(db: sqlite_utils.Database) -> None:
                    check_quota(db, limits, account_id, octets=size)
                    store.commit_upload(db, tmp, blob_id, prepared)
                    db.execute(UPSERT_UPLOAD, list(record.values()))

                try:
                    await host.store.write(commit)
                except OverQuota as exc:
                    return _over_quota(exc)
            finally:
                if tmp.exists():
                    tmp.unlink()
    except LimitExceeded:
        return _limit_problem(
            429, f"at most {limiter.limit} uploads may run at once", "maxConcurrentUpload"
        )
    return json_response(
        {"accountId": account_id, "blobId": blob_id, "type": media_type, "size": size}, status=201
    )


async def _receive_blob(
    request: Request, store: BlobStore, limit: int
) -> tuple[Path, str, int] | Response:
    """Stream the body to a temporary file of ``store``, hashing it (and fsync it, if the
    store keeps the file).  Returns the file, the blob id and the size; the caller stores
    the blob from it."""
    tmp_dir = store.tmp_dir
    await trio.Path(tmp_dir).mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / secrets.token_hex(16)
    digest = hashlib.sha256()
    size = 0
    done = False
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
            if store.sync_uploads:
                await trio.to_thread.run_sync(os.fsync, f.fileno())
        done = True
    finally:
        if not done and tmp.exists():
            tmp.unlink()
    return tmp, "G" + digest.hexdigest(), size


# -- download (§6.2) ---------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes`` range of RFC 9110 §14.1.2 against a representation of ``size`` octets.

    Returns ``(first, last)`` (inclusive) for a satisfiable single range, ``"unsatisfiable"``
    (answer 416), or None to ignore the header and send the whole body (no header, another
    unit, a syntax error, or several ranges, which §14.2 lets a server answer with 200)."""
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = re.fullmatch(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*", spec)  # ASCII digits (\d is not)
    if not match or not (match.group(1) or match.group(2)):
        return None
    # Positions past 18 digits are past any blob (and past what int() reads quickly).
    first_s, last_s = (g.lstrip("0") or ("0" if g else "") for g in match.groups())
    first_s, last_s = (g if len(g) <= 18 else "9" * 18 for g in (first_s, last_s))
    if first_s:
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
        if last_s and last < first:
            return None  # invalid range-spec: ignore (§14.1.1)
        if first >= size:
            return "unsatisfiable"
        return first, min(last, size - 1)
    suffix = int(last_s)
    if suffix == 0 or size == 0:
        return "unsatisfiable"
    return max(0, size - suffix), size - 1


async def download(request: Request) -> Response:
    """RFC 8620 §6.2: the blob's bytes, with the name and type the client asked for.

    Supports a single byte range (RFC 9110 §14): 206 with Content-Range, 416 with
    ``Content-Range: bytes */size`` when unsatisfiable; several ranges get the whole body.
    Large blobs are streamed in chunks."""
    host = request.host
    principal = request.principal
    assert principal is not None
    account_id = request.path_params["accountId"]
    blob_id = request.path_params["blobId"]
    name = request.path_params["name"]
    accounts = await accounts_for(host, principal)
    if not BLOB_ID.fullmatch(blob_id) or account_id not in accounts:
        return problem_response(404, "no such blob")

    def find(db: sqlite_utils.Database) -> str | None:
        if not blob_visible(db, account_id, blob_id, principal.name):
            return None
        return _upload_type(db, account_id, blob_id, principal.name)

    # A sharee downloads only what the records shared with them reference (sharing.py).
    token = sharing.CURRENT_SHARE.set((host, accounts, principal))
    try:
        stored_type = await host.store.read(find)
    finally:
        sharing.CURRENT_SHARE.reset(token)
    store = blobstore(host)
    size = await store.size(blob_id) if stored_type is not None else None
    if size is None:
        return problem_response(404, "no such blob")
    wanted = (request.query.get("type") or [stored_type])[0]
    if not MEDIA_TYPE.fullmatch(wanted):
        wanted = "application/octet-stream"
    filename = unquote(name, errors="replace")
    # Control characters (CR, LF, NUL...) and non-ASCII become "_" in filename=, and are
    # percent-encoded in filename* (RFC 6266 §4.3; lone surrogates cannot be, so they go).
    ascii_name = _UNSAFE_NAME.sub("_", filename)
    utf8_name = quote(filename.encode("utf-8", "replace"), safe="")
    etag = f'"{blob_id}"'  # the content never changes, so the id is a strong validator
    headers = [
        (
            "Content-Disposition",
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8_name}",
        ),
        ("Cache-Control", "private, immutable, max-age=31536000"),
        ("Accept-Ranges", "bytes"),
        ("ETag", etag),
        # RFC 8621 §9.2: a blob served from the API's origin must never run as a page of
        # it, whatever type the client asked for: no sniffing, and a sandbox (no scripts,
        # no same-origin access) should a browser render it anyway.
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "sandbox"),
    ]
    wanted_range = parse_range(request.header("range"), size)
    if_range = request.header("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted_range = None  # RFC 9110 §13.1.5: the validator does not match; send it all
    if wanted_range == "unsatisfiable":
        return problem_response(
            416,
            f"the range is outside the blob's {size} octets",
            headers=[("Content-Range", f"bytes */{size}"), ("Accept-Ranges", "bytes")],
        )
    status, first, last = 200, 0, size - 1
    if isinstance(wanted_range, tuple):
        status, (first, last) = 206, wanted_range
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    length = last - first + 1
    headers = [("Content-Type", wanted), *headers]
    if length <= CHUNK:
        data = await store.read_range(blob_id, first, length)
        return Response(status, data, headers=headers)
    headers.append(("Content-Length", str(length)))
    return Response(status, headers=headers, stream=store.stream_range(blob_id, first, length))


def _read_range(path: Path, first: int, length: int) -> bytes:
    if length <= 0:
        return b""
    with open(path, "rb") as f:
        f.seek(first)
        return f.read(length)


async def _stream_range(path: Path, first: int, length: int) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        await f.seek(first)
        while length > 0:
            chunk = await f.read(min(CHUNK, length))
            if not chunk:
                return  # cannot happen for an immutable file; never loop forever
            length -= len(chunk)
            yield chunk


# -- Blob/copy (§6.3) --------------------------------------------------------------------------


async def blob_copy(call: Call) -> dict[str, Any]:
    """RFC 8620 §6.3 Blob/copy: copy blobs from ``fromAccountId`` into ``accountId``.

    The engine has already checked ``accountId`` (``accountNotFound``,
    ``accountReadOnly``).  ``fromAccountId`` must be another account of the caller's
    (``fromAccountNotFound``).  A blob the caller cannot see in the source account
    (unreferenced and uploaded by someone else, expired, in no account of theirs, or
    nonexistent) is ``notFound``, one answer for all.  A copied blob keeps its id (blobs are
    content-addressed) and is, in the target account, an unreferenced upload of the caller's
    (§6.1), with a fresh expiry."""
    host = call.host
    assert call.account is not None
    args = call.args
    from_id = args.get("fromAccountId")
    if not isinstance(from_id, str):
        raise MethodError("invalidArguments", "fromAccountId must be a string")
    if from_id not in call.request.accounts:
        raise MethodError("fromAccountNotFound")
    blob_ids = args.get("blobIds")
    if not isinstance(blob_ids, list) or not all(isinstance(b, str) for b in blob_ids):
        raise MethodError("invalidArguments", "blobIds must be an array of ids")
    if len(blob_ids) > host.limits.max_objects_in_set:
        raise MethodError(
            "requestTooLarge",
            f"at most {host.limits.max_objects_in_set} blobs may be copied at once",
        )
    to_id = call.account.id
    principal = call.request.principal.name
    expiry = math.ceil(upload_expiry(host))
    store = blobstore(host)

    def copy(db: sqlite_utils.Database) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        copied: dict[str, str] = {}
        not_copied: dict[str, dict[str, str]] = {}
        now = int(time.time())
        for blob_id in dict.fromkeys(blob_ids):
            size = None
            if BLOB_ID.fullmatch(blob_id) and blob_visible(db, from_id, blob_id, principal):
                size = store.size_in(db, blob_id)
            if size is None:
                not_copied[blob_id] = {"type": "notFound"}
                continue
            db[UPLOAD_TABLE].upsert(
                {
                    "account": to_id,
                    "blob_id": blob_id,
                    "principal": principal,
                    "type": _upload_type(db, from_id, blob_id, principal),
                    "size": size,
                    "created": now,
                    "expires": now + expiry,
                },
                pk=("account", "blob_id", "principal"),
            )
            copied[blob_id] = blob_id
        return copied, not_copied

    copied, not_copied = await host.store.write(copy)
    return {
        "fromAccountId": from_id,
        "accountId": to_id,
        "copied": copied or None,
        "notCopied": not_copied or None,
    }


# -- expiry ------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one :func:`sweep_blobs` removed."""

    rows: int = 0
    files: list[str] = field(default_factory=list)


async def sweep_blobs(host: Host, now: float | None = None) -> SweepResult:
    """Delete expired, unreferenced upload rows, then the file of each blob no row in any
    account names any more; and temporary files of uploads abandoned long ago.

    ``now`` (seconds since the epoch) defaults to the current time; tests pass a later one.
    Blobs are deleted inside the write transaction, so an upload or Blob/copy of the same
    content (which commits its row under the same write lock) cannot lose its bytes."""
    moment = time.time() if now is None else now
    store = blobstore(host)

    def sweep(db: sqlite_utils.Database) -> SweepResult:
        result = SweepResult()
        if not db[UPLOAD_TABLE].exists():
            return result
        expired = [
            (r["account"], r["blob_id"], r["principal"])
            for r in db.query(
                f"SELECT u.account, u.blob_id, u.principal FROM [{UPLOAD_TABLE}] u "
                f"WHERE u.expires <= ? AND NOT EXISTS (SELECT 1 FROM [{REF_TABLE}] r "
                "WHERE r.account = u.account AND r.blob_id = u.blob_id)",
                [int(moment)],
            )
        ]
        for key in expired:
            db[UPLOAD_TABLE].delete(key)
        result.rows = len(expired)
        for blob_id in sorted({blob_id for _, blob_id, _ in expired}):
            if _first(db, UPLOAD_TABLE, "blob_id = ?", [blob_id]) or _first(
                db, REF_TABLE, "blob_id = ?", [blob_id]
            ):
                continue
            if store.delete(db, blob_id):
                result.files.append(blob_id)
        return result

    result = await host.store.write(sweep)
    await trio.to_thread.run_sync(_sweep_tmp, store.tmp_dir, moment - upload_expiry(host))
    if result.rows or result.files:
        log.info("blob sweep: %d expired uploads, %d files removed", result.rows, len(result.files))
    return result


def _sweep_tmp(tmp_dir: Path, before: float) -> None:
    """Remove temporary files last modified before ``before`` (left by a crash mid-upload;
    the upload expiry ago: one being written, on any node sharing the directory, is newer)."""
    if not tmp_dir.is_dir():
        return
    for entry in tmp_dir.iterdir():
        try:
            if entry.stat().st_mtime < before:
                entry.unlink()
        except FileNotFoundError:
            pass


async def run_sweeper(host: Host, interval: float = SWEEP_INTERVAL) -> None:
    """Sweep now and every ``interval`` seconds until cancelled (the server runs this in its
    background nursery, which is cancelled on shutdown).  A failed sweep is logged and
    retried at the next interval; it never stops the server."""
    while True:
        try:
            await sweep_blobs(host)
        except Exception:
            log.exception("blob sweep failed; retrying in %s seconds", interval)
        await trio.sleep(interval)
