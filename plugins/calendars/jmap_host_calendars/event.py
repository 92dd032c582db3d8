"""CalendarEvents (draft-ietf-jmap-calendars §5), declared once as a data type: the host
provides CalendarEvent/get, /changes, /set, /copy, /query and /queryChanges, shared
through their Calendars; this module adds JSCalendar 2.0 validation (jscalendar.py), the
server-set properties (uid when missing, created, updated, isOrigin and
organizerCalendarAddress with scheduling.py), utcStart/utcEnd, and
the §5.11.1 filters that do not need the recurrence expanded.

CalendarEvent/get, /query and /set are query.py's (occurrences, time ranges, updating an
occurrence by its id).  Attachments by blobId (§5.3) are the host's embedded_blobs.  Not
yet (issue 15): alerts.  Per-user properties, rights and privacy: peruser.py;
notifications: notification.py; scheduling (isOrigin, organizerCalendarAddress, iTIP):
scheduling.py.
"""

from __future__ import annotations

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
    textsearch,
)

from . import identity, jscalendar, notification, peruser, scheduling

# The JSCalendar Event properties stored as their own columns; anything else keepable is an
# open property.
JSON_PROPERTIES = (
    "relatedTo", "locations", "virtualLocations", "links", "keywords", "categories",
    "recurrenceRule", "recurrenceOverrides", "participants", "alerts", "localizations",
)  # fmt: skip
STRING_PROPERTIES = (
    "version", "prodId", "descriptionContentType", "mainLocationId", "locale", "color",
    "recurrenceId", "recurrenceIdTimeZone", "freeBusyStatus", "privacy",
    "organizerCalendarAddress", "duration", "endTimeZone", "status",
)  # fmt: skip


def _participants(record: dict[str, Any], role: str) -> list[str]:
    found = []
    for participant in (record.get("participants") or {}).values():
        if isinstance(participant, dict) and (participant.get("roles") or {}).get(role):
            found += [participant[k] for k in ("name", "email", "calendarAddress")
                      if isinstance(participant.get(k), str)]  # fmt: skip
    return found


def _locations(record: dict[str, Any]) -> list[str]:
    return [loc[k] for loc in (record.get("locations") or {}).values() if isinstance(loc, dict)
            for k in ("name", "description") if isinstance(loc.get(k), str)]  # fmt: skip


# §5.11.1's text conditions: what of the event each reads (a derived column, folded).
TEXT_FILTERS = {
    "title": lambda r: [r.get("title") or ""],
    "description": lambda r: [r.get("description") or ""],
    "location": _locations,
    "owner": lambda r: _participants(r, "owner"),
    "attendee": lambda r: _participants(r, "attendee"),
    "text": lambda r: [r.get("title") or "", r.get("description") or "", *_locations(r),
                       *textsearch.strings(r.get("participants")),
                       *textsearch.strings(r.get("virtualLocations")),
                       *(r.get("categories") or {})],  # (a set)
}  # fmt: skip
# (keywords are per-user, §5.4: the one text column of an event cannot hold each user's,
# so no user's keywords are searched; see the operator guide.)

# What of an override's patch each condition also reads (§5.11.1: "or the overridden ...
# property of a recurrence"); None: everything.
OVERRIDDEN = {"title": ("title",), "description": ("description",),
              "location": ("locations",), "owner": ("participants",),
              "attendee": ("participants",), "text": None}  # fmt: skip


def _derived_name(name: str) -> str:
    """A text condition's derived column; "text" renamed when keywords left it (§5.4), so
    that the rows stored before are filled in again (plugin guide: derived columns)."""
    return "f:text-shared" if name == "text" else f"f:{name}"


def _derived_text(name: str) -> Any:
    read = TEXT_FILTERS[name]
    tops = OVERRIDDEN[name]

    def text(record: dict[str, Any]) -> str:
        found = [s for s in read(record) if s]
        for patch in (record.get("recurrenceOverrides") or {}).values():
            for pointer, value in (patch or {}).items() if isinstance(patch, dict) else ():
                top = pointer.split("/")[0]
                if (tops is None and top not in peruser.PER_USER) or (tops and top in tops):
                    found += textsearch.strings(value)
        return textsearch.folded(found)

    return text


def _utc_start(record: dict[str, Any]) -> str | None:
    span = jscalendar.utc_span(record)
    return span[0] if span else None


def _utc_end(record: dict[str, Any]) -> str | None:
    span = jscalendar.utc_span(record)
    return span[1] if span else None


def _expand(record: dict[str, Any]) -> int:
    """1 when a time range must expand the event in Python (it recurs, or floats: its UTC
    time depends on the query's time zone); 0 when its stored UTC span answers."""
    recurring = record.get("recurrenceRule") or record.get("recurrenceOverrides")
    return 1 if recurring or not record.get("timeZone") else 0


def _validate(record: dict[str, Any]) -> None:
    try:
        jscalendar.validate_event(record)
    except jscalendar.Invalid as exc:
        raise jsobject.set_error(exc) from None


# §5.9: what a change of which does not move "sequence" (nor per-user properties).
NOT_SEQUENCED = {"calendarIds", "isDraft", "updated", "sequence", "keywords", "color",
                 "freeBusyStatus", "useDefaultAlerts", "alerts"}  # fmt: skip


def _privacy(ctx: SetContext, record: dict[str, Any]) -> None:
    """§5.9: in a calendar that is not the user's, privacy stays public."""
    if ctx.account.shared and record.get("privacy") not in (None, "public"):
        raise SetError("invalidProperties", "privacy must be public in a calendar shared "
                       "with you (JMAP Calendars §5.9)", properties=["privacy"])  # fmt: skip


def _origin(ctx: SetContext, record: dict[str, Any]) -> bool:
    if not record.get("organizerCalendarAddress"):
        return True  # (without reading the identities: most events have no organizer)
    return scheduling.is_origin(record, identity.identities(ctx.db, ctx.account.id))


def _own_organizer(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    """§5.9, §9: the origin's event keeps an organizer that is one of the account's
    ParticipantIdentities.  Otherwise the owner could make the server send invitations
    as anybody (the scheduler sends as organizerCalendarAddress) that local invitees
    would take for the real organizer's."""
    address = new.get("organizerCalendarAddress")
    if not address or address == old.get("organizerCalendarAddress"):
        return
    if not scheduling.is_origin(new, identity.identities(ctx.db, ctx.account.id)):
        raise SetError("invalidProperties", "organizerCalendarAddress must be one of your "
                       "ParticipantIdentity addresses (JMAP Calendars §5.9)",
                       properties=["organizerCalendarAddress"])  # fmt: skip


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    if not record.get("uid"):
        record["uid"] = str(uuid.uuid4())
    scheduling.choose_organizer(ctx.db, ctx.account.id, None, record)  # §5.9
    # §5.9: where this server is the origin, updated is its own time; a created later
    # than that is too.  An invitee's copy keeps the organizer's (scheduling needs it).
    now = dates.utcdate()
    if _origin(ctx, record) or not record.get("updated"):
        record["updated"] = now
    if not record.get("created") or record["created"] > now:
        record["created"] = now
    _privacy(ctx, record)
    _validate(record)
    notification.event_changed(ctx, "created", None, record)


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if new.get("uid") != old.get("uid"):
        raise SetError("invalidProperties", "uid cannot change", properties=["uid"])
    if old.get("isDraft") is False and new.get("isDraft"):
        raise SetError("invalidProperties", "isDraft cannot become true again (§5)",
                       properties=["isDraft"])  # fmt: skip
    scheduling.choose_organizer(ctx.db, ctx.account.id, old, new)  # §5.9
    if _origin(ctx, old):  # §5.9: only the origin sets updated and moves sequence
        _own_organizer(ctx, old, new)
        new["updated"] = dates.utcdate()  # (the origin's time, whatever the client sent)
        changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
        if changed - NOT_SEQUENCED and (new.get("sequence") or 0) <= (old.get("sequence") or 0):
            new["sequence"] = (old.get("sequence") or 0) + 1
    _privacy(ctx, new)
    _validate(new)
    notification.event_changed(ctx, "updated", old, new)


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    notification.event_changed(ctx, "destroyed", record, None)


def compute(db: Any, account: str, records: list[dict[str, Any]], names: list[str]) -> None:
    """utcStart and utcEnd (§5: computed when fetched, from the time zone data now); isOrigin
    (no organizer, or one of the account's ParticipantIdentities, scheduling.py)."""
    times: dict[str, dict[str, Any]] = {}
    if "utcStart" in names or "utcEnd" in names or "isOrigin" in names:  # (one read)
        found = objectstore.read_records(db, EVENT, account, [r["id"] for r in records],
                                         ["start", "timeZone", "duration",
                                          "organizerCalendarAddress"])  # fmt: skip
        times = {r["id"]: r for r in found}
    # (the account's addresses only for events with an organizer: most have none)
    mine = identity.identities(db, account) if "isOrigin" in names and any(
        t.get("organizerCalendarAddress") for t in times.values()) else set()  # fmt: skip
    for record in records:
        span = jscalendar.utc_span(times[record["id"]]) if record["id"] in times else None
        if "utcStart" in names:
            record["utcStart"] = span[0] if span else None
        if "utcEnd" in names:
            record["utcEnd"] = span[1] if span else None
        if "isOrigin" in names:
            record["isOrigin"] = scheduling.is_origin(times.get(record["id"]) or {}, mine)
        if "baseEventId" in names:
            record["baseEventId"] = None


EVENT = DataType(
    name="CalendarEvent",
    table="calendars_event",
    properties=[
        # (at least one existing Calendar: the host checks a member's containers)
        Property("calendarIds", "Id[Boolean]", required=True),
        Property("isDraft", "Boolean", default=False),
        Property("isOrigin", "Boolean", computed=True),
        Property("baseEventId", "Id|null", computed=True),  # (set on occurrences: query.py)
        Property("utcStart", "UTCDate|null", computed=True),
        Property("utcEnd", "UTCDate|null", computed=True),
        Property("@type", "String", default="Event"),
        Property("uid", "String", indexed=True),
        Property("title", "String", default=""),
        Property("description", "String", default=""),
        Property("start", "String", required=True),
        Property("timeZone", "String|null"),
        Property("showWithoutTime", "Boolean", default=False),
        Property("created", "UTCDate|null", sortable=True),
        Property("updated", "UTCDate|null", sortable=True),
        Property("sequence", "UnsignedInt", default=0),
        Property("priority", "Int", default=0),
        Property("useDefaultAlerts", "Boolean", default=False),
        *(Property(name, "String|null") for name in STRING_PROPERTIES),
        *(Property(name, "Any") for name in JSON_PROPERTIES),
    ],
    filters=[
        FilterCondition("inCalendar", "calendarIds", "hasKey", value_type="Id"),
        FilterCondition("uid", "uid"),
        *(
            FilterCondition(name, "title", "custom", value_type="String",
                            sql=textsearch.condition("calendars_event", _derived_name(name)))
            for name in TEXT_FILTERS
        ),
    ],
    on_create=on_create,
    on_update=on_update,
    on_destroy=on_destroy,
    compute=compute,
    default_sort=("start",),
    methods=("changes", "copy", "queryChanges"),  # get, query, set: query.py
    derived={
        "utc-start": _utc_start,
        "utc-end": _utc_end,
        "expand": _expand,
        **{_derived_name(name): _derived_text(name) for name in TEXT_FILTERS},
    },
    # §5.11.2: start (in time: the UTC start), uid, recurrenceId, created, updated.
    sort_sql={
        "start": f"[{objectstore.derived_column('utc-start')}]",
        "uid": "[p_uid]",
        "recurrenceId": "[p_recurrenceId]",
    },
    folded_sort_sql={"start": f"[{objectstore.derived_column('utc-start')}]"},
    open_properties=jscalendar.keepable,
    # §5: an id is one uid and recurrenceId in the account.
    unique=(("uid", "recurrenceId"),),
    # §5.3 attachments by blobId: the host checks, references and copies them.
    embedded_blobs=jscalendar.link_blobs,
    shared_through=SharedThrough(
        container="Calendar", property="calendarIds",
        add="mayWriteAll", remove="mayWriteAll", update="mayWriteAll",
        # §5.4 per-user properties, also inside overrides; §4 rights and §5.7/§5.9 privacy
        # (peruser.py): "secret" events do not exist for sharees.
        per_user=peruser.PER_USER, per_user_patches=("recurrenceOverrides",),
        per_user_updated="updated", validate_per_user=_validate,
        check_sharee=peruser.check_sharee, restrict=peruser.restrict,
        owner_only_sql="[p_privacy] IS NOT DISTINCT FROM 'secret'",
    ),
)  # fmt: skip
