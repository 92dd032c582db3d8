"""``jmap-host import --account NAME PATH...``: mbox files and Maildir folders into an account.

What a PATH may be:

- an **mbox** file: its messages go into the Inbox (or ``--mailbox``);
- a **Maildir** (a directory with ``cur/`` and ``new/``): its messages go into the Inbox (or
  ``--mailbox``), and its Maildir++ subfolders (``.Sent``, ``.Lists.python``) become
  Mailboxes, nested at the dots, names decoded from IMAP's modified UTF-7;
- any other **directory** (``~/Mail``, a Thunderbird profile folder): each mbox file and
  Maildir in it becomes a Mailbox named after it; subdirectories (and Thunderbird's
  ``Name.sbd``) become child Mailboxes.

Top-level folders named like a default Mailbox (``Sent``, ``Sent Items``, ``Trash``,
``Deleted Messages``, ``Spam``...) are merged into the Mailbox with that role.

Flags become keywords: Maildir ``S`` ``$seen``, ``R`` ``$answered``, ``F`` ``$flagged``,
``D`` ``$draft``, ``P`` ``$forwarded``, Dovecot's ``a``-``z`` the keywords in
``dovecot-keywords``; mbox ``Status: R`` ``$seen``, ``X-Status: A/F/T`` ``$answered``,
``$flagged``, ``$draft``, ``X-Keywords``.  JMAP has no "deleted" flag: a message marked
trashed (Maildir ``T``, mbox ``X-Status: D``) goes to the Trash Mailbox, where the user can
still find it, rather than being dropped.

Resumable: the SHA-256 of every imported message is recorded per account and target
Mailbox (table ``mail_import_seen``), so running the same import again skips what is
already there.  Messages are written in batches, each one durable transaction, so an
interrupted import loses at most the batch in flight and a re-run picks up after the last.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlite_utils

from jmap_host import Host, atomically, objectstore, parse_digits, validators

from . import email
from .delivery import normalise_line_endings
from .mailbox import MAILBOX, MAX_DEPTH

SEEN = "mail_import_seen"

migrations = sqlite_utils.Migrations("jmap-host-mail-import")


@migrations()
def create_import_seen(db: sqlite_utils.Database) -> None:
    db[SEEN].create(
        {"account": str, "mailbox_id": str, "hash": str, "email_id": str, "imported": int},
        pk=("account", "mailbox_id", "hash"),
    )


MAILDIR_FLAGS = {"S": "$seen", "R": "$answered", "F": "$flagged", "D": "$draft", "P": "$forwarded"}
MBOX_XSTATUS = {"A": "$answered", "F": "$flagged", "T": "$draft"}
# Top-level folder names that mean a default Mailbox's role (lowercased).
ROLE_NAMES = {
    "inbox": "inbox", "sent": "sent", "sent items": "sent", "sent messages": "sent",
    "sent mail": "sent", "drafts": "drafts", "draft": "drafts", "trash": "trash",
    "deleted items": "trash", "deleted messages": "trash", "junk": "junk", "spam": "junk",
    "junk e-mail": "junk", "archive": "archive", "archives": "archive",
}  # fmt: skip
MBOX_SUFFIXES = (".mbox", ".mbx")
IGNORED_FILES = {".msf", ".dat", ".json", ".sqlite", ".db", ".lock", ".idx", ".toc"}
_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")


@dataclass
class Message:
    raw: bytes
    origin: str
    keywords: dict[str, bool] = field(default_factory=dict)
    trashed: bool = False
    received_at: str | None = None
    source_size: int = 0


@dataclass
class Folder:
    """Messages from one mbox file or Maildir folder, for one Mailbox (``parts`` is its
    path below the import's base; () is the base itself)."""

    parts: tuple[str, ...]
    kind: str  # "mbox" or "maildir"
    path: Path
    size: int


@dataclass
class Report:
    imported: int = 0
    mailboxes_created: list[str] = field(default_factory=list)
    to_trash: int = 0
    not_rfc5322: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, origin: str) -> None:
        self.skipped.setdefault(reason, []).append(origin)

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())


# -- finding folders -------------------------------------------------------------------------


def decode_mutf7(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 §5.1.3), as Dovecot and Courier name Maildir folders."""
    out: list[str] = []
    i = 0
    while i < len(name):
        if name[i] != "&":
            out.append(name[i])
            i += 1
            continue
        end = name.find("-", i)
        if end < 0:
            out.append(name[i:])
            break
        if end == i + 1:
            out.append("&")
        else:
            chunk = name[i + 1 : end].replace(",", "/")
            try:
                out.append(base64.b64decode(chunk + "=" * (-len(chunk) % 4)).decode("utf-16-be"))
            except ValueError:
                out.append(name[i : end + 1])
        i = end + 1
    return "".join(out)


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _maildir_size(path: Path) -> int:
    total = 0
    for sub in ("cur", "new"):
        try:
            with os.scandir(path / sub) as entries:
                for entry in entries:
                    if entry.is_file() and not entry.name.startswith("."):
                        total += entry.stat().st_size
        except FileNotFoundError:
            pass
    return total


def find_folders(path: Path, report: Report) -> list[Folder]:
    """The folders under ``path`` (see the module docstring for the layouts)."""
    if path.is_file():
        return [Folder((), "mbox", path, path.stat().st_size)]
    if not path.is_dir():
        report.skip("no such file or directory", str(path))
        return []
    if is_maildir(path):
        folders = [Folder((), "maildir", path, _maildir_size(path))]
        for sub in sorted(path.iterdir()):
            if sub.name.startswith(".") and sub.is_dir() and is_maildir(sub):
                parts = tuple(decode_mutf7(p) for p in sub.name[1:].split(".") if p)
                if parts:
                    folders.append(Folder(parts, "maildir", sub, _maildir_size(sub)))
        return folders
    return _plain_directory(path, (), report)


def _plain_directory(path: Path, parts: tuple[str, ...], report: Report) -> list[Folder]:
    folders: list[Folder] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name.endswith(".sbd"):  # Thunderbird: the children of "Name"
                folders += _plain_directory(entry, (*parts, entry.name[:-4]), report)
            elif is_maildir(entry):
                folders += [
                    Folder((*parts, entry.name, *f.parts), f.kind, f.path, f.size)
                    for f in find_folders(entry, report)
                ]
            else:
                folders += _plain_directory(entry, (*parts, entry.name), report)
        elif entry.is_file():
            if entry.suffix.lower() in IGNORED_FILES:
                continue
            if not _looks_like_mbox(entry):
                report.skip("not an mbox file (does not start with 'From ')", str(entry))
                continue
            name = entry.name
            if name.lower().endswith(MBOX_SUFFIXES):
                name = name.rsplit(".", 1)[0]
            folders.append(Folder((*parts, name), "mbox", entry, entry.stat().st_size))
    return folders


def _looks_like_mbox(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError:
        return False
    return head == b"From " or head == b""


# -- reading messages ------------------------------------------------------------------------


def _utc(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header_block(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    end2 = raw.find(b"\r\n\r\n")
    ends = [e for e in (end, end2) if e >= 0]
    return raw[: min(ends)] if ends else raw


def _header(block: bytes, name: bytes) -> str | None:
    m = re.search(rb"(?im)^" + re.escape(name) + rb"[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", block)
    return m.group(1).decode("latin-1").strip() if m else None


def _date_header(raw: bytes) -> str | None:
    value = _header(_header_block(raw), b"Date")
    if not value:
        return None
    try:
        return _utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _from_line_date(line: bytes) -> str | None:
    """The date of an mbox ``From sender Tue Nov 24 10:00:00 2026`` line (asctime)."""
    fields = line.decode("latin-1").split()
    for start in range(2, max(2, len(fields) - 4)):
        try:
            parsed = time.strptime(" ".join(fields[start : start + 5]), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            continue
        return _utc(datetime(*parsed[:6], tzinfo=UTC))
    return None


def mbox_messages(path: Path) -> Iterator[Message]:
    """Stream an mbox file: a message starts at a ``From `` line at the start of the file
    or after an empty line (mboxo/mboxrd as written by mutt, Thunderbird, Dovecot)."""
    with open(path, "rb") as f:
        current: list[bytes] | None = None
        from_line = b""
        size = 0
        previous_blank = True
        number = 0
        for line in f:
            if line.startswith(b"From ") and previous_blank:
                if current is not None:
                    number += 1
                    yield _mbox_message(current, from_line, f"{path}#{number}", size)
                current, from_line, size = [], line, len(line)
                previous_blank = False
                continue
            if current is None:
                current, from_line, size = [], b"", 0
            current.append(line)
            size += len(line)
            previous_blank = line in (b"\n", b"\r\n")
        if current is not None:
            number += 1
            yield _mbox_message(current, from_line, f"{path}#{number}", size)


def _mbox_message(lines: list[bytes], from_line: bytes, origin: str, size: int) -> Message:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]  # the empty line before the next From line is the separator's
    raw = b"".join(lines)
    block = _header_block(raw)
    keywords: dict[str, bool] = {}
    trashed = False
    status = _header(block, b"Status") or ""
    if "R" in status:
        keywords["$seen"] = True
    xstatus = _header(block, b"X-Status") or ""
    for flag in xstatus:
        if flag in MBOX_XSTATUS:
            keywords[MBOX_XSTATUS[flag]] = True
        elif flag == "D":
            trashed = True
    for word in re.split(r"[\s,]+", _header(block, b"X-Keywords") or ""):
        if word:
            keywords[word.lower()] = True
    received = _from_line_date(from_line) if from_line else None
    return Message(
        raw,
        origin,
        _valid_keywords(keywords),
        trashed,
        received or _date_header(raw),
        size,
    )


def _dovecot_keywords(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = (folder / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return out
    for line in text.splitlines():
        number, _, name = line.strip().partition(" ")
        index = parse_digits(number, max_digits=2)
        if index is not None and index < 26 and name:
            out[chr(ord("a") + index)] = name.lower()
    return out


def maildir_messages(folder: Path, report: Report) -> Iterator[Message]:
    """The messages in ``cur/`` and ``new/`` (``tmp/`` holds deliveries in progress)."""
    letters = _dovecot_keywords(folder)
    for sub in ("new", "cur"):
        directory = folder / sub
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            try:
                raw = entry.read_bytes()
                mtime = entry.stat().st_mtime
            except OSError as exc:
                report.skip(f"unreadable file ({exc.strerror})", str(entry))
                continue
            keywords: dict[str, bool] = {}
            trashed = False
            info = re.search(r"[:!;]2,([A-Za-z]*)$", entry.name)
            for flag in info.group(1) if info else "":
                if flag in MAILDIR_FLAGS:
                    keywords[MAILDIR_FLAGS[flag]] = True
                elif flag == "T":
                    trashed = True
                elif flag in letters:
                    keywords[letters[flag]] = True
            received = _utc(datetime.fromtimestamp(mtime, UTC))
            yield Message(raw, str(entry), _valid_keywords(keywords), trashed, received, len(raw))


def _valid_keywords(keywords: dict[str, bool]) -> dict[str, bool]:
    out = {}
    for keyword in keywords:
        try:
            email.check_keywords({keyword: True})
        except ValueError:
            continue
        out[keyword] = True
    return out


# -- mailboxes -------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = "".join(c if ord(c) >= 0x20 and ord(c) != 0x7F else " " for c in name).strip()
    name = name or "(unnamed)"
    while len(name.encode("utf-8")) > validators.MAX_NAME_OCTETS:
        name = name[:-1]
    return name


def resolve_mailboxes(
    db: Any, account: str, folders: list[Folder], base: tuple[str, ...], created: list[str]
) -> tuple[dict[tuple[str, ...], str], str]:
    """Mailbox ids for each folder (created where missing) and the Trash's id.  ``base``
    is the ``--mailbox`` path the folders go under (() for the account's top level,
    where the Inbox takes the base folder and role names merge)."""
    boxes = objectstore.read_records(db, MAILBOX, account, None, ["name", "parentId", "role"])
    by_role = {b["role"]: b["id"] for b in boxes if b.get("role")}
    children: dict[tuple[str | None, str], str] = {
        (b["parentId"], b["name"]): b["id"] for b in boxes
    }

    def child(parent: str | None, name: str) -> str:
        name = _clean_name(name)
        key = (parent, name)
        if key not in children:
            record = {
                "id": objectstore.new_id(), "name": name, "parentId": parent, "role": None,
                "sortOrder": 10, "isSubscribed": True,
            }  # fmt: skip
            objectstore.insert_record(db, MAILBOX, account, record)
            objectstore.record_change(db, account, MAILBOX.name, record["id"], "created")
            children[key] = record["id"]
            created.append(name)
        return children[key]

    def path_id(parts: tuple[str, ...]) -> str:
        if len(parts) > MAX_DEPTH:
            parts = (*parts[: MAX_DEPTH - 1], ".".join(parts[MAX_DEPTH - 1 :]))
        node: str | None = None
        for depth, name in enumerate(parts):
            role = ROLE_NAMES.get(name.lower()) if depth == 0 and not base else None
            if role and role in by_role:
                node = by_role[role]
            else:
                node = child(node, name)
        assert node is not None
        return node

    out: dict[tuple[str, ...], str] = {}
    for folder in folders:
        full = (*base, *folder.parts)
        out[folder.parts] = path_id(full) if full else by_role.get("inbox") or child(None, "Inbox")
    trash = by_role.get("trash") or path_id(("Trash",))
    return out, trash


# -- the import ------------------------------------------------------------------------------


def _looks_like_rfc5322(raw: bytes) -> bool:
    return bool(_HEADER_LINE.match(raw[:1000]))


def import_folders(
    host: Host,
    account: str,
    folders: list[Folder],
    report: Report,
    *,
    base: tuple[str, ...] = (),
    batch_size: int = 200,
    batch_octets: int = 50_000_000,
    progress: Callable[[int, str], None] = lambda n, label: None,
) -> Report:
    """Import every message of ``folders`` into ``account`` (synchronous: the CLI's)."""
    ids, trash = host.store.write_sync(
        lambda db: resolve_mailboxes(db, account, folders, base, report.mailboxes_created)
    )
    for folder in folders:
        label = "/".join((*base, *folder.parts)) or "Inbox"
        messages = (
            mbox_messages(folder.path)
            if folder.kind == "mbox"
            else maildir_messages(folder.path, report)
        )
        batch: list[Message] = []
        octets = 0
        try:
            for message in messages:
                batch.append(message)
                octets += len(message.raw)
                if len(batch) >= batch_size or octets >= batch_octets:
                    _write_batch(host, account, batch, ids[folder.parts], trash, report)
                    progress(sum(m.source_size for m in batch), label)
                    batch, octets = [], 0
        except OSError as exc:
            report.skip(f"unreadable ({exc.strerror or exc})", str(folder.path))
        if batch:
            _write_batch(host, account, batch, ids[folder.parts], trash, report)
            progress(sum(m.source_size for m in batch), label)
    return report


def _write_batch(
    host: Host, account: str, batch: list[Message], mailbox_id: str, trash: str, report: Report
) -> None:
    def write(db: Any) -> list[tuple[str, Message, str]]:
        results = []
        now = int(time.time())

        def store_one(raw: bytes, target: str, digest: str, message: Message) -> None:
            record = email.ingest(
                db, host, account, raw, {target: True}, message.keywords, message.received_at
            )
            db.execute(
                f"INSERT INTO {SEEN} (account, mailbox_id, hash, email_id, imported) "
                "VALUES (?, ?, ?, ?, ?)",
                [account, target, digest, record["id"], now],
            )

        for message in batch:
            if not message.raw.strip():
                results.append(("skipped", message, "empty message"))
                continue
            raw = normalise_line_endings(message.raw)
            digest = hashlib.sha256(raw).hexdigest()
            target = trash if message.trashed else mailbox_id
            seen = db.execute(
                f"SELECT 1 FROM {SEEN} WHERE account = ? AND mailbox_id = ? AND hash = ?",
                [account, target, digest],
            ).fetchone()
            if seen:
                results.append(("skipped", message, "already imported"))
                continue

            try:
                atomically(db, partial(store_one, raw, target, digest, message))
            except Exception as exc:  # one bad message never stops the import
                results.append(("skipped", message, f"failed: {type(exc).__name__}: {exc}"))
                continue
            results.append(("imported", message, ""))
        return results

    for outcome, message, reason in host.store.write_sync(write):
        if outcome == "skipped":
            report.skip(reason, message.origin)
            continue
        report.imported += 1
        report.to_trash += message.trashed
        if not _looks_like_rfc5322(message.raw):
            report.not_rfc5322 += 1


def format_report(report: Report, examples: int = 5) -> list[str]:
    lines = [f"imported {report.imported} message(s)"]
    if report.mailboxes_created:
        lines.append(
            f"created {len(report.mailboxes_created)} mailbox(es): "
            + ", ".join(report.mailboxes_created)
        )
    if report.to_trash:
        lines.append(f"{report.to_trash} message(s) marked deleted/trashed went to Trash")
    if report.not_rfc5322:
        lines.append(f"{report.not_rfc5322} message(s) have no RFC 5322 header; stored as they are")
    if report.skipped:
        lines.append(f"skipped {report.skipped_count}:")
        for reason, origins in sorted(report.skipped.items()):
            lines.append(f"  {len(origins)} {reason}")
            lines += [f"    {o}" for o in origins[:examples]]
            if len(origins) > examples:
                lines.append(f"    ... and {len(origins) - examples} more")
    return lines


def register_commands(cli: Any) -> None:
    import sys

    import click

    @cli.command("import")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option("--account", "name", required=True, help="user (or address) to import for")
    @click.option(
        "--mailbox",
        default=None,
        help='import under this Mailbox ("Old/2019", created if missing) instead of the Inbox',
    )
    @click.option("--batch-size", default=200, show_default=True, help="messages per transaction")
    @click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
    def import_cli(
        config: str | None, name: str, mailbox: str | None, batch_size: int, paths: list[str]
    ) -> None:
        """Import mbox files and Maildir folders (PATHS) into an account.

        Folders become Mailboxes and flags become keywords; running it again skips what
        was already imported."""
        from jmap_host import host_for_command, principal_for_command

        host = host_for_command(config, __name__.rpartition(".")[0], "mail")
        principal = principal_for_command(host, name)
        if principal is None:
            click.echo(f"no user or group {name!r} in the directory", err=True)
            sys.exit(1)
        report = Report()
        folders = [f for p in paths for f in find_folders(Path(p), report)]
        base = tuple(p for p in (mailbox or "").split("/") if p)
        total = sum(f.size for f in folders)
        with click.progressbar(
            length=max(total, 1), label="importing", file=sys.stderr, show_pos=False
        ) as bar:

            def progress(octets: int, label: str) -> None:
                bar.label = label
                bar.update(octets)

            import_folders(
                host,
                principal.account_id,
                folders,
                report,
                base=base,
                batch_size=max(1, batch_size),
                progress=progress,
            )
        for line in format_report(report):
            click.echo(line)
