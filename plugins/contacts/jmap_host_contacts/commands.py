"""``jmap-host contacts import|export --account NAME FILE.vcf``: vCard files in and out of
an account.

Both go through the server's own JMAP methods, run in-process (ContactCard/set in batches
to import, ContactCard/query and /get to export), so a card imported here is validated,
shared, counted and pushed exactly like one a client creates.  Importing a card whose uid
the account already has skips it (run it again and nothing doubles); photos inline in the
vCard become blobs, and are written back inline on export.
"""

from __future__ import annotations

import base64
import sys
import uuid
from pathlib import Path
from typing import Any

from jmap_host import LocalClient

from . import vcard

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:contacts"]
BATCH = 100  # cards per ContactCard/set


class Session(LocalClient):
    """The JMAP API of one account, called in-process as its owner."""

    def __init__(self, host: Any, principal: Any):
        super().__init__(host, principal, USING)

    async def book(self, name: str | None) -> str:
        """The id of the address book called ``name`` (created if missing), or the default."""
        books = (await self.call("AddressBook/get", ids=None))["list"]
        if name is None:
            return next(b["id"] for b in books if b["isDefault"])
        for book in books:
            if book["name"] == name:
                return str(book["id"])
        made = await self.call("AddressBook/set", create={"b": {"name": name}})
        if not made.get("created"):
            raise RuntimeError(f"cannot create the address book {name!r}: {made['notCreated']}")
        return str(made["created"]["b"]["id"])


def _load(config: str | None, name: str) -> tuple[Any, Any]:
    from jmap_host import host_for_command, principal_for_command

    host = host_for_command(config, __name__.rpartition(".")[0], "contacts")
    return host, principal_for_command(host, name, required=True)


def import_cards(
    host: Any, principal: Any, texts: list[str], book: str | None, progress: Any
) -> dict[str, int]:
    """Import the vCards ``texts``; counts of created, skipped (uid already there) and
    refused cards (with their reasons printed by the caller)."""
    import trio

    counts = {"created": 0, "skipped": 0, "refused": 0}
    problems: list[str] = []

    async def run() -> None:
        session = Session(host, principal)
        book_id = await session.book(book)
        for start in range(0, len(texts), BATCH):
            create: dict[str, Any] = {}
            for i, text in enumerate(texts[start : start + BATCH], start):
                try:
                    card = vcard.parse(text)[0]
                except vcard.VCardError as exc:
                    counts["refused"] += 1
                    problems.append(f"vCard {i + 1}: {exc}")
                    continue
                if not card.get("uid"):
                    # The same vCard always gets the same uid: importing it again skips it.
                    card["uid"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, text)}"
                create[f"c{i}"] = {**card, "addressBookIds": {book_id: True}}
            if create:
                result = await session.call("ContactCard/set", create=create)
                counts["created"] += len(result.get("created") or {})
                for key, error in (result.get("notCreated") or {}).items():
                    if error["type"] == "alreadyExists":
                        counts["skipped"] += 1
                    else:
                        counts["refused"] += 1
                        problems.append(f"vCard {int(key[1:]) + 1}: {error.get('description')}")
            progress(min(BATCH, len(texts) - start))

    trio.run(run)
    counts["problems"] = problems  # type: ignore[assignment]
    return counts


def export_cards(host: Any, principal: Any, book: str | None) -> list[str]:
    """The account's cards (of one address book, by name) as vCard 4.0 texts."""
    import trio

    from jmap_host import read_blob

    out: list[str] = []

    async def run() -> None:
        session = Session(host, principal)
        filter_ = {"inAddressBook": await session.book(book)} if book is not None else None
        ids = (await session.call("ContactCard/query", filter=filter_, sort=[
            {"property": "created"}]))["ids"]  # fmt: skip
        for start in range(0, len(ids), 500):
            cards = (await session.call("ContactCard/get", ids=ids[start : start + 500]))["list"]
            for card in cards:
                for media in (card.get("media") or {}).values():
                    blob_id = media.get("blobId")
                    data = read_blob(host, blob_id) if isinstance(blob_id, str) else None
                    if data is not None and not media.get("uri"):
                        kind = media.get("mediaType") or "application/octet-stream"
                        encoded = base64.b64encode(data).decode("ascii")
                        media["uri"] = f"data:{kind};base64,{encoded}"
                out.append(vcard.from_card(card))

    trio.run(run)
    return out


def register_commands(cli: Any) -> None:
    import click

    @cli.group("contacts")
    def contacts() -> None:
        """Contacts: vCard files in and out of an account."""

    @contacts.command("import")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option("--account", "name", required=True, help="user (or address) to import for")
    @click.option("--address-book", "book", default=None,
                  help="into this address book (created if missing) instead of the default")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    def import_cli(config: str | None, name: str, book: str | None, path: str) -> None:
        """Import the vCards (3.0 or 4.0) of PATH; cards whose uid is there are skipped."""
        host, principal = _load(config, name)
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        texts = list(vcard.split(text))
        with click.progressbar(length=max(len(texts), 1), label="importing",
                               file=sys.stderr) as bar:  # fmt: skip
            counts = import_cards(host, principal, texts, book, bar.update)
        for problem in counts.pop("problems"):  # type: ignore[attr-defined]
            click.echo(f"  {problem}", err=True)
        click.echo(
            f"{counts['created']} cards imported, {counts['skipped']} already there, "
            f"{counts['refused']} refused"
        )
        if counts["refused"]:
            sys.exit(1)

    @contacts.command("export")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option("--account", "name", required=True, help="user (or address) to export")
    @click.option("--address-book", "book", default=None, help="only this address book")
    @click.argument("path", type=click.Path(dir_okay=False, writable=True))
    def export_cli(config: str | None, name: str, book: str | None, path: str) -> None:
        """Write the account's cards to PATH as vCard 4.0."""
        host, principal = _load(config, name)
        with click.progressbar(length=1, label="exporting", file=sys.stderr) as bar:
            texts = export_cards(host, principal, book)
            bar.update(1)
        Path(path).write_text("".join(texts), encoding="utf-8", newline="")
        click.echo(f"{len(texts)} cards exported to {path}")
