"""Calendars (draft-ietf-jmap-calendars §4), declared once as a data type: the host
provides Calendar/get, /changes, /query, /queryChanges, sharing with CalendarRights and a
sharee's own copy of the per-user properties; this module adds the Calendar rules (CSS
colours, includeInAvailability, default alerts without absolute triggers and with ids
unique in the account), the default calendar, and Calendar/set (onSuccessSetIsDefault,
onDestroyRemoveEvents) on jmap_host.containers."""

from __future__ import annotations

import re
from typing import Any

from jmap_host import (
    Call,
    DataType,
    FilterCondition,
    Property,
    SetContext,
    SetError,
    Sharing,
    containers,
    objectstore,
    validators,
)

DEFAULT_NAME = "Calendar"
# §4 CalendarRights.
RIGHTS = ("mayReadFreeBusy", "mayReadItems", "mayWriteAll", "mayWriteOwn", "mayUpdatePrivate",
          "mayRSVP", "mayShare", "mayDelete")  # fmt: skip
AVAILABILITY = ("all", "attending", "none")
# §4.3: stored per user; name, color and timeZone start as the owner's, the others at
# their defaults.
PER_USER = ("name", "color", "sortOrder", "isVisible", "timeZone", "includeInAvailability",
            "defaultAlertsWithoutTime", "defaultAlertsWithTime", "isSubscribed")  # fmt: skip
PER_USER_DEFAULTS = {
    # §4: isSubscribed SHOULD default to false for calendars shared with the user;
    # includeInAvailability to "none" for them.
    "isSubscribed": False, "sortOrder": 0, "isVisible": True, "includeInAvailability": "none",
    "defaultAlertsWithTime": None, "defaultAlertsWithoutTime": None,
}  # fmt: skip

# CSS Color Module Level 3 §4.3 extended colour keywords (and 'transparent' is not one).
CSS_COLORS = frozenset((
    "aliceblue", "antiquewhite", "aqua", "aquamarine", "azure", "beige", "bisque", "black",
    "blanchedalmond", "blue", "blueviolet", "brown", "burlywood", "cadetblue", "chartreuse",
    "chocolate", "coral", "cornflowerblue", "cornsilk", "crimson", "cyan", "darkblue",
    "darkcyan", "darkgoldenrod", "darkgray", "darkgreen", "darkgrey", "darkkhaki",
    "darkmagenta", "darkolivegreen", "darkorange", "darkorchid", "darkred", "darksalmon",
    "darkseagreen", "darkslateblue", "darkslategray", "darkslategrey", "darkturquoise",
    "darkviolet", "deeppink", "deepskyblue", "dimgray", "dimgrey", "dodgerblue",
    "firebrick", "floralwhite", "forestgreen", "fuchsia", "gainsboro", "ghostwhite", "gold",
    "goldenrod", "gray", "green", "greenyellow", "grey", "honeydew", "hotpink", "indianred",
    "indigo", "ivory", "khaki", "lavender", "lavenderblush", "lawngreen", "lemonchiffon",
    "lightblue", "lightcoral", "lightcyan", "lightgoldenrodyellow", "lightgray",
    "lightgreen", "lightgrey", "lightpink", "lightsalmon", "lightseagreen", "lightskyblue",
    "lightslategray", "lightslategrey", "lightsteelblue", "lightyellow", "lime",
    "limegreen", "linen", "magenta", "maroon", "mediumaquamarine", "mediumblue",
    "mediumorchid", "mediumpurple", "mediumseagreen", "mediumslateblue",
    "mediumspringgreen", "mediumturquoise", "mediumvioletred", "midnightblue", "mintcream",
    "mistyrose", "moccasin", "navajowhite", "navy", "oldlace", "olive", "olivedrab",
    "orange", "orangered", "orchid", "palegoldenrod", "palegreen", "paleturquoise",
    "palevioletred", "papayawhip", "peachpuff", "peru", "pink", "plum", "powderblue",
    "purple", "red", "rosybrown", "royalblue", "saddlebrown", "salmon", "sandybrown",
    "seagreen", "seashell", "sienna", "silver", "skyblue", "slateblue", "slategray",
    "slategrey", "snow", "springgreen", "steelblue", "tan", "teal", "thistle", "tomato",
    "turquoise", "violet", "wheat", "white", "whitesmoke", "yellow", "yellowgreen",
))  # fmt: skip
HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
# JSCalendar SignedDuration (draft-ietf-calext-jscalendarbis §1.5.7), e.g. -PT15M, P1DT12H.
SIGNED_DURATION = re.compile(
    r"[+-]?P(?:\d+W(?:\d+D)?|\d+D(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?"
    r"|T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)"
)
UTC_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d*[1-9])?Z")
ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


def check_color(color: str) -> None:
    """§4: a CSS Color Level 3 name (any case) or an RGB value in hexadecimal notation."""
    if color.lower() not in CSS_COLORS and not HEX_COLOR.fullmatch(color):
        raise ValueError("must be a CSS colour name or #rgb / #rrggbb")


def check_availability(value: str) -> None:
    if value not in AVAILABILITY:
        raise ValueError(f"must be one of {', '.join(AVAILABILITY)}")


def check_default_alerts(alerts: dict[str, Any]) -> None:
    """§4: a map of ids to JSCalendar Alerts (jscalendarbis §3.5.1) whose trigger is an
    OffsetTrigger: an AbsoluteTrigger would fire for every event at once."""
    for alert_id, alert in alerts.items():
        where = f"{alert_id}"
        if not ID.fullmatch(alert_id):
            raise ValueError(f"{where}: an alert id must be an Id")
        if not isinstance(alert, dict) or alert.get("@type", "Alert") != "Alert":
            raise ValueError(f"{where}: must be an Alert object")
        trigger = alert.get("trigger")
        if not isinstance(trigger, dict):
            raise ValueError(f"{where}/trigger: is mandatory")
        kind = trigger.get("@type", "OffsetTrigger")
        if kind == "AbsoluteTrigger":
            raise ValueError(f"{where}/trigger: a default alert cannot be an AbsoluteTrigger")
        if kind != "OffsetTrigger":
            raise ValueError(f"{where}/trigger: must be an OffsetTrigger")
        offset = trigger.get("offset")
        if not isinstance(offset, str) or not SIGNED_DURATION.fullmatch(offset):
            raise ValueError(f"{where}/trigger/offset: must be a SignedDuration (e.g. -PT15M)")
        if trigger.get("relativeTo", "start") not in ("start", "end"):
            raise ValueError(f"{where}/trigger/relativeTo: must be start or end")
        if alert.get("action", "display") not in ("display", "email"):
            raise ValueError(f"{where}/action: must be display or email")
        acknowledged = alert.get("acknowledged")
        if acknowledged is not None and (
            not isinstance(acknowledged, str) or not UTC_DATETIME.fullmatch(acknowledged)
        ):
            raise ValueError(f"{where}/acknowledged: must be a UTCDateTime")


ALERT_PROPERTIES = ("defaultAlertsWithTime", "defaultAlertsWithoutTime")


def _unique_alert_ids(ctx: SetContext, record: dict[str, Any]) -> None:
    """§4: default alert ids are unique across all default alerts of the account."""
    mine = [a for p in ALERT_PROPERTIES for a in (record.get(p) or {})]
    if len(mine) != len(set(mine)):
        raise SetError("invalidProperties", "a default alert id is used twice",
                       properties=list(ALERT_PROPERTIES))  # fmt: skip
    others = objectstore.read_records(ctx.db, CALENDAR, ctx.account.id, None,
                                      list(ALERT_PROPERTIES))  # fmt: skip
    taken = {a for c in others if c["id"] != record["id"] for p in ALERT_PROPERTIES
             for a in (c.get(p) or {})}  # fmt: skip
    clash = sorted(taken & set(mine))
    if clash:
        raise SetError("invalidProperties",
                       f"default alert ids {', '.join(clash)} are another calendar's",
                       properties=list(ALERT_PROPERTIES))  # fmt: skip


def on_create(ctx: SetContext, record: dict[str, Any]) -> None:
    _unique_alert_ids(ctx, record)


def on_update(ctx: SetContext, old: dict[str, Any], new: dict[str, Any]) -> None:
    if any(old.get(p) != new.get(p) for p in ALERT_PROPERTIES):
        _unique_alert_ids(ctx, new)


def on_destroy(ctx: SetContext, record: dict[str, Any]) -> None:
    """§4.3: calendarHasEvent, unless onDestroyRemoveEvents: then its events leave it, and
    those in no other calendar are destroyed (no scheduling messages)."""
    from .event import EVENT

    containers.destroy_contents(
        ctx, EVENT, record["id"], "onDestroyRemoveEvents", "calendarHasEvent"
    )


CALENDAR = DataType(
    name="Calendar",
    table="calendars_calendar",
    properties=[
        Property("name", "String", required=True, sortable=True, validate=validators.check_name),
        Property("description", "String|null"),
        Property("color", "String|null", validate=check_color),
        Property("sortOrder", "UnsignedInt", default=0, sortable=True,
                 validate=validators.check_sort_order),
        Property("isSubscribed", "Boolean", default=True),
        Property("isVisible", "Boolean", default=True),
        Property("isDefault", "Boolean", default=False, server_set=True),
        Property("includeInAvailability", "String", default="all", validate=check_availability),
        Property("defaultAlertsWithTime", "Object|null", validate=check_default_alerts),
        Property("defaultAlertsWithoutTime", "Object|null", validate=check_default_alerts),
        Property("timeZone", "String|null", validate=validators.check_time_zone),
    ],
    filters=[
        FilterCondition("name", "name", "contains"),
        FilterCondition("isSubscribed", "isSubscribed"),
    ],
    on_create=on_create,
    on_update=on_update,
    on_destroy=on_destroy,
    default_sort=("sortOrder", "name"),
    methods=("get", "changes", "query", "queryChanges"),  # /set: calendar_set below
    sharing=Sharing(
        rights=RIGHTS,
        read="mayReadItems",
        share_right="mayShare",
        delete_right="mayDelete",
        # (no update_right: what a sharee may change of a calendar is per-user, §4.3;
        # its description is the owner's)
        per_user=PER_USER,
        per_user_defaults=PER_USER_DEFAULTS,
        # §4: mayWriteAll means mayWriteOwn, mayUpdatePrivate and mayRSVP too.
        implied={"mayWriteAll": ("mayWriteOwn", "mayUpdatePrivate", "mayRSVP")},
        # §4.1: a calendar shared for free/busy alone is not seen in Calendar/get or /query.
        visible_with=tuple(r for r in RIGHTS if r != "mayReadFreeBusy"),
    ),
)


def subscribed(calendar: dict[str, Any]) -> bool:
    """Whether the user (whose view of the calendar this is) is subscribed to it (§4:
    isSubscribed; absent, its default, true: a sharee's view already holds false)."""
    return calendar.get("isSubscribed") is not False


async def calendar_set(call: Call) -> dict[str, Any]:
    """§4.3: the standard /set with onDestroyRemoveEvents (read by on_destroy) and
    onSuccessSetIsDefault (jmap_host.containers)."""
    return await containers.container_set(call, CALENDAR, "onDestroyRemoveEvents")


def default_calendar(db: Any, account: str, time_zone: str | None) -> None:
    """Give a new account its default calendar, once, in its owner's time zone."""
    containers.ensure_default(db, CALENDAR, account, {"name": DEFAULT_NAME,
                                                      "timeZone": time_zone})  # fmt: skip
