"""``jmap-host storage copy``: an installation's SQLite store copied into PostgreSQL.

For an operator moving to ``[storage] type = "postgresql"``: the old configuration names
the SQLite store, the new one the PostgreSQL database (and the same plugins).  With both
servers stopped, :func:`copy_store`

1. applies the source's pending migrations, so that both stores have the same schema;
2. refuses a target whose tables hold rows (unless ``force``: they are emptied);
3. applies every migration of the host and its plugins to the target (the tables, indexes,
   triggers and functions as PostgreSQL has them);
4. copies the blob files when the target's ``storage.path`` is another directory
   (content-addressed: a file already there is the same file; each copied one is checked
   against its name, fsynced, renamed into place and its directory fsynced);
5. in one transaction holding the store's write lock: empties the tables it copies into,
   turns their triggers off (the quota counters, change-log stamps and counts they keep
   are copied as they are), copies every table both stores have with the columns both
   have, rows in rowid order and rowids kept (``COPY``), sets each identity sequence past
   the largest value, and turns the triggers on again;
6. counts the rows of each table in both stores: a difference is an error.

Tables the target does not have are SQLite's own (``sqlite_*``), its migration records,
and full-text indexes (FTS5 virtual tables and their shadow tables), which PostgreSQL
keeps in its own way: those are skipped.  Any other table or column only the source has
would lose data, so the copy refuses it unless ``force``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BATCH = 1000
SQLITE_MIGRATIONS = "_sqlite_migrations"


class CopyRefused(Exception):
    """The copy cannot (or, without ``force``, will not) be made; nothing was copied."""


@dataclass
class TablePlan:
    name: str
    columns: list[str]  # copied, in the source's order
    rowid: bool  # the source has rowids (the target's identity column gets them)
    rows: int  # in the source


@dataclass
class CopyReport:
    tables: list[TablePlan] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # SQLite's own, full-text indexes
    left_out: list[str] = field(default_factory=list)  # what --force copied without
    migrated_source: list[str] = field(default_factory=list)
    blobs_copied: int = 0
    blobs_present: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # (source, target)


class StoreCopy:
    """One copy, in steps a command can show the progress of::

    copy = StoreCopy.prepare(source, target, force=force)  # checks, migrations, plan
    for name in copy.blobs(): ...                         # each blob file
    for table, rows in copy.rows(): ...                   # each batch of rows
    report = copy.verify()                                # the counts compared
    """

    def __init__(
        self, report: CopyReport, src: Any, dst: Any, blob_files: list[Any], target: Any
    ):
        self.report = report
        self.src, self.dst = src, dst
        self.target = target  # (the target host: its blob store)
        self.blob_files = blob_files
        self.total_rows = sum(t.rows for t in report.tables)

    @classmethod
    def prepare(cls, source: Any, target: Any, *, force: bool = False) -> StoreCopy:
        """Check the stores, migrate both, plan the copy (see the module)."""
        from .pgstore import PgStore
        from .store import Store

        if not isinstance(source.store, Store):
            raise CopyRefused("the source configuration's storage must be SQLite")
        if not isinstance(target.store, PgStore):
            raise CopyRefused(
                "the target configuration's storage must be PostgreSQL (type = "
                '"postgresql"); to copy a SQLite store, copy its data directory with the '
                "server stopped"
            )
        report = CopyReport()
        report.migrated_source = source.store.migrate()
        occupied = _occupied_tables(target.store)
        if occupied and not force:
            raise CopyRefused(
                "the target database is not empty (rows in " + ", ".join(occupied) + "); "
                "use --force to replace its contents"
            )
        target.store.migrate()
        src, dst = source.store.connect(), target.store.connect()
        try:
            report.tables, report.skipped, lost = _plan(src, dst)
            report.left_out = lost
            if lost and not force:
                raise CopyRefused(
                    "the target has no place for " + "; ".join(lost) + " (are the same "
                    "plugins active in both configurations?); use --force to copy without them"
                )
            return cls(report, src, dst, _blob_files(source, target), target)
        except BaseException:
            src.conn.close()
            dst.conn.raw.close()
            raise

    def blobs(self) -> Iterator[str]:
        """Copy the blob files (before the rows that name them); yields each one's name."""
        for source_file, target_file in self.blob_files:
            if target_file is None:
                if _copy_blob_to_database(self.target, source_file):
                    self.report.blobs_copied += 1
                else:
                    self.report.blobs_present += 1
            elif target_file.is_file():
                self.report.blobs_present += 1
            else:
                _copy_blob(source_file, target_file)
                self.report.blobs_copied += 1
            yield source_file.name

    def rows(self) -> Iterator[tuple[str, int]]:
        """Copy the rows in one transaction; yields (table, rows) per batch copied."""
        yield from _copy_rows(self.src, self.dst, self.report.tables)

    def verify(self) -> CopyReport:
        """Count each table's rows in the target; CopyRefused when a count differs."""
        try:
            for table in self.report.tables:
                copied = self.dst.execute(f"SELECT count(*) FROM [{table.name}]").fetchone()[0]
                self.report.counts[table.name] = (table.rows, int(copied))
        finally:
            self.close()
        wrong = [
            f"{name}: {source} rows, copied {copied}"
            for name, (source, copied) in self.report.counts.items()
            if source != copied
        ]
        if wrong:
            raise CopyRefused("row counts differ after the copy: " + "; ".join(wrong))
        return self.report

    def close(self) -> None:
        self.src.conn.close()
        if not self.dst.conn.raw.closed:
            self.dst.conn.raw.close()


def copy_store(source: Any, target: Any, *, force: bool = False) -> CopyReport:
    """The whole copy at once (see the module and :class:`StoreCopy`)."""
    copy = StoreCopy.prepare(source, target, force=force)
    try:
        for _ in copy.blobs():
            pass
        for _ in copy.rows():
            pass
    except BaseException:
        copy.close()
        raise
    return copy.verify()


# -- what to copy ----------------------------------------------------------------------------


def _occupied_tables(store: Any) -> list[str]:
    from .pgstore import MIGRATIONS_TABLE

    db = store.connect()
    try:
        return [
            name
            for name in db.table_names()
            if name != MIGRATIONS_TABLE
            and db.execute(f"SELECT EXISTS (SELECT 1 FROM [{name}])").fetchone()[0]
        ]
    finally:
        db.conn.raw.close()


def _source_tables(src: Any) -> tuple[list[str], set[str]]:
    """The source's own tables, and the full-text ones (virtual tables, their shadows)."""
    rows = src.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    virtual = [name for name, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
    derived = {
        name
        for name, _ in rows
        if name in virtual or any(name.startswith(v + "_") for v in virtual)
    }
    # (The blob store's table is the blob copy's: a SQLite store keeps its blobs in files,
    # and a row copy would empty the target's table the blob copy filled.)
    from .blobs import DATA_TABLE

    own = [
        name
        for name, _ in rows
        if not name.startswith("sqlite_")
        and name not in (SQLITE_MIGRATIONS, DATA_TABLE)
        and name not in derived
    ]
    return own, derived


def _has_rowid(src: Any, table: str) -> bool:
    import sqlite3

    try:
        src.execute(f"SELECT rowid FROM [{table}] LIMIT 1")
    except sqlite3.OperationalError:  # WITHOUT ROWID
        return False
    return True


def _plan(src: Any, dst: Any) -> tuple[list[TablePlan], list[str], list[str]]:
    """(tables to copy, source tables skipped, what the target has no place for)."""
    own, derived = _source_tables(src)
    target_tables = set(dst.table_names())
    plans, lost = [], []
    skipped = sorted(derived)
    for name in own:
        rows = int(src.execute(f"SELECT count(*) FROM [{name}]").fetchone()[0])
        if name not in target_tables:
            if rows:
                lost.append(f"table {name} ({rows} rows)")
            continue
        columns = [r[1] for r in src.execute(f"PRAGMA table_info([{name}])").fetchall()]
        present = set(dst[name].columns_dict)
        for column in columns:
            if (
                column not in present
                and src.execute(
                    f"SELECT EXISTS (SELECT 1 FROM [{name}] WHERE [{column}] IS NOT NULL)"
                ).fetchone()[0]
            ):
                lost.append(f"column {name}.{column}")
        kept = [c for c in columns if c in present]
        plans.append(TablePlan(name, kept, _has_rowid(src, name), rows))
    return plans, skipped, lost


# -- blobs -----------------------------------------------------------------------------------


def _blob_files(source: Any, target: Any) -> list[tuple[Path, Path | None]]:
    """(source file, target file) of every blob: the target file None when the target
    keeps blobs in its database (``[storage.blob] store = "database"``); none at all when
    both stores use the same directory."""
    from .blobs import DirectoryBlobStore

    if not isinstance(source.blobstore, DirectoryBlobStore):
        raise CopyRefused("the source must keep its blobs in a directory (SQLite's store)")
    here = source.blobstore.directory
    there = getattr(target.blobstore, "directory", None)
    if not here.is_dir() or (there is not None and there.exists()
                             and here.resolve() == there.resolve()):  # fmt: skip
        return []
    files: list[tuple[Path, Path | None]] = []
    for path in sorted(here.rglob("*")):
        relative = path.relative_to(here)
        if relative.parts[0] == "tmp" or not path.is_file():
            continue  # (uploads in progress of a server that was stopped)
        files.append((path, None if there is None else there / relative))
    return files


def _copy_blob_to_database(target: Any, source_file: Path) -> bool:
    """Put the file's bytes in the target's blob table; False if they were there."""
    blob_id = "G" + source_file.name
    if target.blobstore.read(blob_id) is not None:
        return False
    data = source_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != source_file.name:
        raise CopyRefused(f"blob file {source_file} does not hold what its name says")
    target.blobstore.write(blob_id, data)  # (committed, durable, idempotent)
    return True


def _copy_blob(source_file: Path, target_file: Path) -> None:
    target_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_file.with_name(target_file.name + ".copying")
    digest = hashlib.sha256()
    with open(source_file, "rb") as read, open(tmp, "wb") as write:
        while chunk := read.read(1 << 20):
            digest.update(chunk)
            write.write(chunk)
        write.flush()
        os.fsync(write.fileno())
    if digest.hexdigest() != source_file.name:
        tmp.unlink()
        raise CopyRefused(f"blob file {source_file} does not hold what its name says")
    shutil.copystat(source_file, tmp)
    os.replace(tmp, target_file)
    fd = os.open(target_file.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- rows ------------------------------------------------------------------------------------


def _source_rows(src: Any, table: TablePlan) -> Iterator[list[tuple[Any, ...]]]:
    columns = ", ".join(f"[{c}]" for c in table.columns)
    if table.rowid:
        sql = f"SELECT rowid, {columns} FROM [{table.name}] ORDER BY rowid"
    else:
        sql = f"SELECT {columns} FROM [{table.name}]"
    cursor = src.conn.execute(sql)
    while batch := cursor.fetchmany(BATCH):
        yield batch


def _copy_rows(src: Any, dst: Any, tables: list[TablePlan]) -> Iterator[tuple[str, int]]:
    from .pgstore import WRITE_LOCK

    raw = dst.conn.raw
    # A large table takes longer than any request may: no statement timeout here.
    raw.execute("SET statement_timeout = 0")
    raw.execute("SET idle_in_transaction_session_timeout = 0")
    src.execute("BEGIN")  # one snapshot of the source
    try:
        with raw.transaction():
            raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            names = ", ".join(f'"{t.name}"' for t in tables)
            if names:
                raw.execute(f"TRUNCATE {names}")
            for table in tables:
                raw.execute(f'ALTER TABLE "{table.name}" DISABLE TRIGGER USER')
                columns = (["rowid"] if table.rowid else []) + table.columns
                quoted = ", ".join(f'"{c}"' for c in columns)
                with raw.cursor().copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                    for batch in _source_rows(src, table):
                        for row in batch:
                            copy.write_row(row)
                        yield table.name, len(batch)
                _advance_sequences(dst, table.name)
                raw.execute(f'ALTER TABLE "{table.name}" ENABLE TRIGGER USER')
    finally:
        src.execute("ROLLBACK")


def _advance_sequences(dst: Any, table: str) -> None:
    """Every identity (or serial) column's sequence past the largest value copied."""
    columns = dst.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = "
        "current_schema() AND table_name = ? AND (is_identity = 'YES' OR column_default "
        "LIKE 'nextval(%')",
        [table],
    ).fetchall()
    for (column,) in columns:
        dst.execute(
            f"SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max([{column}]), 0) + 1, "
            f"false) FROM [{table}]",
            [f'"{table}"', column],
        )


__all__ = ["CopyRefused", "CopyReport", "StoreCopy", "copy_store"]
