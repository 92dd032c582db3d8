"""``jmap-host calendars import|export --account NAME FILE.ics [--calendar ID]``:
iCalendar files in and out of an account (ical.py's conversion).

Both go through the server's own JMAP methods, run in-process (CalendarEvent/set in
batches, each batch one transaction, to import; CalendarEvent/query and /get to export),
so an event imported here is validated, logged for /changes and pushed exactly like one a
client creates.  Importing is idempotent by uid: an event whose uid (and recurrenceId)
the account already has is updated in place, or skipped when what is stored is the same;
events the server refuses are skipped with its reason.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from jmap_host import LocalClient, MethodFailed, read_blob

from . import ical, jscalendar

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:calendars"]
BATCH = 100  # events per CalendarEvent/set (and uids per query: under 256 conditions)
PAGE = 500  # events per CalendarEvent/get on export
# What an update leaves as it is: the JMAP properties and what the server sets (§5.9).
KEPT_ON_UPDATE = {*jscalendar.JMAP_PROPERTIES, "uid", "created", "updated", "useDefaultAlerts"}


class Session(LocalClient):
    """The JMAP API of one account, called in-process as its owner."""

    def __init__(self, host: Any, principal: Any):
        super().__init__(host, principal, USING)

    async def calendar(self, wanted: str | None) -> str:
        """The id of the calendar ``wanted`` (it must exist), or of the default one."""
        calendars = (await self.call("Calendar/get", ids=None))["list"]
        for calendar in calendars:
            if calendar["id"] == wanted or (wanted is None and calendar.get("isDefault")):
                return str(calendar["id"])
        raise CommandFailed(f"no calendar {wanted!r} in this account (Calendar ids: "
                            f"{', '.join(c['id'] for c in calendars)})")  # fmt: skip

    async def events(self, ids: list[str]) -> list[dict[str, Any]]:
        """Whole events, iCalComponent included (§5.7: only returned when asked for)."""
        if not ids:
            return []
        found = (await self.call("CalendarEvent/get", ids=ids))["list"]
        kept = await self.call("CalendarEvent/get", ids=ids, properties=["iCalComponent"])
        extra = {r["id"]: r.get("iCalComponent") for r in kept["list"]}
        for record in found:
            if extra.get(record["id"]) is not None:
                record["iCalComponent"] = extra[record["id"]]
        return found


class CommandFailed(Exception):
    """What stops a command, said to the operator."""


def _load(config: str | None, name: str) -> tuple[Any, Any]:
    from jmap_host import host_for_command, principal_for_command

    host = host_for_command(config, __name__.rpartition(".")[0], "calendars")
    return host, principal_for_command(host, name, required=True)


def _key(event: dict[str, Any]) -> tuple[str, str | None]:
    return event.get("uid") or "", event.get("recurrenceId")


# What the server answers for a property the event does not have (§5.7).
DEFAULTS = {"@type": "Event", "title": "", "description": "", "showWithoutTime": False,
            "sequence": 0, "priority": 0}  # fmt: skip


def _update_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The update that makes the stored ``old`` the imported ``new``: every property of
    ``new`` that differs, and the default (or null) for what ``new`` no longer has.  The
    sequence only grows: the server moves it on for each change (§5.9)."""
    patch = {k: v for k, v in new.items() if k not in KEPT_ON_UPDATE and old.get(k) != v}
    for name in old:
        if name not in new and name not in KEPT_ON_UPDATE and old[name] != DEFAULTS.get(name):
            patch[name] = DEFAULTS.get(name)
    if (patch.get("sequence") or 0) <= (old.get("sequence") or 0):
        patch.pop("sequence", None)
    return patch


async def _import_batch(
    session: Session, events: list[dict[str, Any]], calendar_id: str, counts: dict[str, Any]
) -> None:
    uids = list(dict.fromkeys(e.get("uid") for e in events if e.get("uid")))
    existing: dict[tuple[str, str | None], dict[str, Any]] = {}
    if uids:
        filter_ = {"operator": "OR", "conditions": [{"uid": u} for u in uids]}
        ids = (await session.call("CalendarEvent/query", filter=filter_))["ids"]
        existing = {_key(e): e for e in await session.events(ids)}
    create: dict[str, Any] = {}
    update: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for n, event in enumerate(events):
        label = f"{event.get('uid') or '(no UID)'}"
        old = existing.get(_key(event))
        if old is None:
            create[f"e{n}"] = {**event, "calendarIds": {calendar_id: True}}
            labels[f"e{n}"] = label
        elif not (patch := _update_patch(old, event)):
            counts["skipped"].append(f"{label}: already there, unchanged")
        else:
            update[old["id"]] = patch
            labels[old["id"]] = label
    if not create and not update:
        return
    result = await session.call("CalendarEvent/set", create=create, update=update)
    counts["created"] += len(result.get("created") or {})
    counts["updated"] += len(result.get("updated") or {})
    for key, error in {**(result.get("notCreated") or {}),
                       **(result.get("notUpdated") or {})}.items():  # fmt: skip
        counts["skipped"].append(f"{labels[key]}: {error.get('type')}: "
                                 f"{error.get('description', '')}")  # fmt: skip


def import_events(
    host: Any, principal: Any, data: bytes, calendar: str | None, bar: Any = None
) -> dict[str, Any]:
    """Import the events of the iCalendar ``data``: counts of created and updated events
    and the list of skipped ones with why.  ``bar(length=n)`` is told the number of
    events once read and returns a progress bar (click's) that is updated per batch."""
    import contextlib

    import trio

    parsed = ical.read_calendar(data)  # (NotICalendar for the caller)
    counts: dict[str, Any] = {"created": 0, "updated": 0, "skipped": list(parsed.skipped)}

    for event in parsed.events:
        if not event.get("uid"):
            # The same VEVENT always gets the same uid: importing it again finds it.
            text = json.dumps(event, sort_keys=True)
            event["uid"] = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, text)}"

    async def run() -> None:
        session = Session(host, principal)
        calendar_id = await session.calendar(calendar)
        events = parsed.events
        with bar(len(events)) if bar else contextlib.nullcontext() as progress:
            for start in range(0, len(events), BATCH):
                chunk = events[start : start + BATCH]
                await _import_batch(session, chunk, calendar_id, counts)
                if progress is not None:
                    progress.update(len(chunk))

    trio.run(run)
    return counts


def export_events(host: Any, principal: Any, calendar: str | None, bar: Any = None) -> bytes:
    """Every event of the account (or of one calendar) as one VCALENDAR."""
    import contextlib

    import trio

    out: list[dict[str, Any]] = []

    async def run() -> None:
        session = Session(host, principal)
        filter_ = None
        if calendar is not None:
            filter_ = {"inCalendar": await session.calendar(calendar)}
        ids = (await session.call("CalendarEvent/query", filter=filter_,
                                  sort=[{"property": "start"}]))["ids"]  # fmt: skip
        with bar(len(ids)) if bar else contextlib.nullcontext() as progress:
            for start in range(0, len(ids), PAGE):
                page = await session.events(ids[start : start + PAGE])
                out.extend(page)
                if progress is not None:
                    progress.update(len(page))

    trio.run(run)
    # (§5.3: whoever reads the file cannot fetch the account's blobs: they go inline)
    return ical.to_ical(out, blob=lambda blob_id: read_blob(host, blob_id))


def register_commands(cli: Any) -> None:
    import click

    def bar(label: str) -> Any:
        return lambda length: click.progressbar(length=max(length, 1), label=label,
                                                file=sys.stderr)  # fmt: skip

    @cli.group("calendars")
    def calendars() -> None:
        """Calendars: iCalendar files in and out of an account."""

    @calendars.command("import")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option("--account", "name", required=True, help="user (or address) to import for")
    @click.option("--calendar", default=None,
                  help="into this calendar (its id) instead of the default one")  # fmt: skip
    @click.argument("path", type=click.Path(exists=True, dir_okay=False))
    def import_cli(config: str | None, name: str, calendar: str | None, path: str) -> None:
        """Import the events of the iCalendar file PATH; an event whose uid is there is
        updated, not duplicated."""
        host, principal = _load(config, name)
        try:
            counts = import_events(host, principal, Path(path).read_bytes(), calendar,
                                   bar("importing"))  # fmt: skip
        except (ical.NotICalendar, CommandFailed, MethodFailed) as exc:
            click.echo(f"{path}: {exc}", err=True)
            sys.exit(1)
        for reason in counts["skipped"]:
            click.echo(f"  skipped {reason}", err=True)
        click.echo(f"{counts['created']} events created, {counts['updated']} updated, "
                   f"{len(counts['skipped'])} skipped")  # fmt: skip

    @calendars.command("export")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option("--account", "name", required=True, help="user (or address) to export")
    @click.option("--calendar", default=None, help="only this calendar (its id)")
    @click.argument("path", type=click.Path(dir_okay=False, writable=True))
    def export_cli(config: str | None, name: str, calendar: str | None, path: str) -> None:
        """Write the account's events (or one calendar's) to PATH as one iCalendar object."""
        host, principal = _load(config, name)
        try:
            data = export_events(host, principal, calendar, bar("exporting"))
        except (CommandFailed, MethodFailed) as exc:
            click.echo(str(exc), err=True)
            sys.exit(1)
        Path(path).write_bytes(data)
        count = data.count(b"\r\nBEGIN:VEVENT\r\n")
        click.echo(f"{count} VEVENTs exported to {path}")
