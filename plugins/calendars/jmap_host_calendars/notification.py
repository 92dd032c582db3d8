"""CalendarEventNotifications (draft-ietf-jmap-calendars §7): a standard data type (/get,
/changes, /set that only destroys, /query by after, before, type and calendarEventIds
sorted by created, /queryChanges).

A notification is written in the transaction of the event's change, in the event's
account, for each user of its calendars who did not make the change: the account's owner
and every sharee who may read the calendar and is subscribed to it (§7: "calendars that
the user is subscribed to"; a sharee starts unsubscribed, §4).  The host keeps one record
per user it is for (DataType.per_principal): each user, the owner and the sharees of the
account alike, sees and dismisses only their own.  Each is told of the change as they see the event
(§5.7): moved out of every calendar a sharee may read, or made "secret", it is destroyed
for them; moved in, created; its calendarIds are those they may read; of a "private" one
they see only its time and metadata, of a hideAttendees one only owners and themselves.
Per-user properties are no part of a notification (§7: it "does not have any per-user
data"), nor are per-user changes (they change nothing of the event for anybody else).
At most MAX_NOTIFICATIONS are kept per user in an account: the oldest go first (§7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmap_host import (
    DataType,
    FilterCondition,
    Property,
    SetContext,
    dates,
    dialect,
    objectstore,
    read_and_destroy,
    sharing,
)

from . import identity, jscalendar, peruser

NOTIFICATION_TYPE = "CalendarEventNotification"
MAX_NOTIFICATIONS = 500  # per user and account (§7: the server MAY limit them)
FOR = "for"  # the derived column naming the Principal a notification is for
# Not part of a notification's event: computed at fetch time (per-user values, §5.4, are
# split off by the event type's SharedThrough, in overrides too).
LEFT_OUT = jscalendar.JMAP_PROPERTIES - {"calendarIds", "isDraft"}


CALENDAR_EVENT_NOTIFICATION = DataType(
    name=NOTIFICATION_TYPE,
    table="calendars_event_notification",
    properties=[
        Property("created", "UTCDate", server_set=True, immutable=True, sortable=True),
        Property("changedBy", "Object", server_set=True, immutable=True),
        Property("type", "String", server_set=True, immutable=True, indexed=True),
        Property("calendarEventId", "Id", server_set=True, immutable=True, indexed=True),
        Property("isDraft", "Boolean|null", server_set=True, immutable=True),
        Property("event", "Object", server_set=True, immutable=True),
        Property("eventPatch", "Object|null", server_set=True, immutable=True),
    ],
    filters=[
        FilterCondition("after", "created", "ge", value_type="UTCDate"),
        FilterCondition("before", "created", "lt", value_type="UTCDate"),
        FilterCondition("type", "type"),
        FilterCondition("calendarEventIds", "calendarEventId", "in"),
    ],
    access=read_and_destroy,  # §7.3: created by the server only
    default_sort=("created",),
    methods=("get", "changes", "set", "query", "queryChanges"),  # §7.1-§7.5
    derived={FOR: lambda record: record.get(f"_{FOR}")},
    per_principal=FOR,
)


def _event_of(record: dict[str, Any]) -> dict[str, Any]:
    """The event as a notification holds it: no per-user values, at the top level or in
    its overrides (§7: a notification "does not have any per-user data"), nothing
    computed."""
    from .event import EVENT

    assert EVENT.shared_through is not None
    shared, _ = sharing.split_per_user(EVENT.shared_through, record)
    return {k: v for k, v in shared.items() if k not in LEFT_OUT}




def _recipients(db: Any, account: str, owner: str, author: str | None,
                calendar_ids: set[str]) -> dict[str, set[str] | None]:  # fmt: skip
    """{principal id: the calendars of ``calendar_ids`` they may read (None: all of them,
    the account's owner)} of the users to tell: the ``owner`` if one of the calendars is
    subscribed, and each sharee who may read one and is subscribed to it; never the
    ``author`` of the change."""
    from .calendar import CALENDAR, subscribed

    found: dict[str, set[str] | None] = {}
    calendars = objectstore.read_records(db, CALENDAR, account, sorted(calendar_ids),
                                         ["isSubscribed"])  # fmt: skip
    if any(subscribed(c) for c in calendars):
        found[owner] = None
    readable: dict[str, set[str]] = {}
    told: set[str] = set()
    for calendar, grantee, rights, values in sharing.sharees(db, CALENDAR, account,
                                                             sorted(calendar_ids)):  # fmt: skip
        if rights.get("mayReadItems"):
            readable.setdefault(grantee, set()).add(calendar)
            if subscribed(values):
                told.add(grantee)
    for grantee in told:
        found.setdefault(grantee, readable[grantee])
    if author is not None:
        found.pop(author, None)  # (not for their own change)
    return found


def _seen(db: Any, principal_id: str, readable: set[str] | None,
          record: dict[str, Any] | None) -> dict[str, Any] | None:  # fmt: skip
    """The event as the notification shows it to a user who may read ``readable`` of its
    calendars (None: all, the owner); None when it does not exist for them: in none of
    those, or "secret" (§5.7).  A sharee sees what their CalendarEvent/get would: only
    those calendarIds, a private event's time and metadata, hideAttendees."""
    if record is None:
        return None
    event = _event_of(record)
    if readable is None:
        return event
    calendar_ids = {k: v for k, v in (event.get("calendarIds") or {}).items() if k in readable}
    if not calendar_ids or event.get("privacy") == "secret":
        return None
    event["calendarIds"] = calendar_ids
    if event.get("privacy") == "private":
        peruser.private_view(event)
    if event.get("hideAttendees"):  # (the user's addresses read only then)
        mine = identity.identities(db, principal_id)
        if peruser.hides_attendees(event, mine):
            peruser.reduce_participants(event, mine)
    return event


def _changed_by(ctx: SetContext) -> dict[str, Any]:
    by = ctx.principal
    address = identity.default_address(ctx.db, by.account_id) or (
        f"mailto:{by.emails[0]}" if by.emails else None)  # fmt: skip
    return {"name": by.description or by.name, "email": by.emails[0] if by.emails else None,
            "principalId": by.account_id, "calendarAddress": address,
            "comment": None}  # fmt: skip


def event_changed(
    ctx: SetContext, kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    """Write the notifications of one created, updated or destroyed event (the event's
    hooks call this, in the /set's transaction)."""
    notify(ctx.db, ctx.account.id, ctx.account.owner.account_id, kind, before, after,
           lambda: _changed_by(ctx), ctx.principal.account_id, ctx.changed_types)  # fmt: skip


def by_mail(name: str | None, address: str) -> dict[str, Any]:
    """changedBy (§7) for a change that came as a scheduling message from ``address`` (a
    calendar address): by mail, the sender is not known as a principal here."""
    email = address[len("mailto:"):] if address.lower().startswith("mailto:") else None
    return {"name": name or email or address, "email": email, "principalId": None,
            "calendarAddress": address, "comment": None}  # fmt: skip


def notify(
    db: Any, account: str, owner: str, kind: str, before: dict[str, Any] | None,
    after: dict[str, Any] | None, changed_by: Callable[[], dict[str, Any]],
    author: str | None, changed_types: set[str],
) -> None:
    """Write the notifications of one change (``kind``) of an event in ``account`` (whose
    owner is ``owner``) made by ``author`` (a principal id; None: nobody here, e.g. an iTIP
    message; ``changed_by()`` gives the notification's changedBy, read only when someone
    is to be told), in the caller's transaction; ``changed_types`` gets the notification type
    when one is written (its state is pushed).  Each user is told of the change as they see
    it: an update that takes the event out of all the calendars a sharee may read is
    "destroyed" for them (with the event as they knew it), one that brings it in "created"."""
    record = after if after is not None else before
    assert record is not None
    calendar_ids = set((before or {}).get("calendarIds") or {}) | set(
        (after or {}).get("calendarIds") or {})  # fmt: skip
    recipients = _recipients(db, account, owner, author, calendar_ids)
    if not recipients:
        return
    now = dates.utcdate()
    by = changed_by()
    for principal_id, readable in recipients.items():
        old = _seen(db, principal_id, readable, before)
        new = _seen(db, principal_id, readable, after)
        # (§5.7: for each user, the event is created, changed or destroyed as they see it)
        if old is None and new is None:
            continue
        seen_kind = kind if (old is None) == (before is None) and (new is None) == (
            after is None) else ("created" if new is not None else "destroyed")  # fmt: skip
        source = after if new is not None else before
        assert source is not None
        notification = {
            "id": objectstore.new_id(),
            "created": now,
            "changedBy": by,
            "type": seen_kind,
            "calendarEventId": record["id"],
            "isDraft": bool(source.get("isDraft")) if seen_kind != "destroyed" else None,
            "event": new if seen_kind == "created" else old,
            # (one level into objects: an event's participants, locations...)
            "eventPatch": jscalendar.diff(old or {}, new or {}, depth=2)
            if seen_kind == "updated" else None,
            f"_{FOR}": principal_id,
        }
        if seen_kind == "updated" and not notification["eventPatch"]:
            continue  # (nothing they may see changed)
        _write(db, account, changed_types, principal_id, notification)


def _write(db: Any, account: str, changed_types: set[str], principal_id: str,
           notification: dict[str, Any]) -> None:  # fmt: skip
    """Store one notification, dropping that user's oldest past MAX_NOTIFICATIONS."""
    dt = CALENDAR_EVENT_NOTIFICATION
    objectstore.insert_record(db, dt, account, notification)
    objectstore.record_change(db, account, dt.name, notification["id"], "created")
    changed_types.add(dt.name)
    column = objectstore.derived_column(FOR)
    over = db.execute(
        f"SELECT id FROM [{dt.table}] WHERE account = ? AND [{column}] = ? "
        f"ORDER BY rowid DESC {dialect(db).offset()}",
        [account, principal_id, MAX_NOTIFICATIONS],
    ).fetchall()
    for (old_id,) in over:
        objectstore.delete_record(db, dt, account, old_id)
    objectstore.record_changes(db, account, dt.name, [(i, "destroyed") for (i,) in over])
