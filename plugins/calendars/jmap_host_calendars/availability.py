"""Free/busy (draft-ietf-jmap-calendars §1.5.2, §2): the
``urn:ietf:params:jmap:principals:availability`` capability with Principal/getAvailability
(§2.2), the calendars entry of a Principal's ``capabilities`` (§2.1), and the Principal/query
``calendarAddress`` condition (§2.3).

Principal/getAvailability reads the Principal's own account: the calendars the Principal
subscribes to with includeInAvailability "all" or "attending" on which the user holds
mayReadFreeBusy (all of them in the user's own account), their events overlapping the
window (recurrences expanded with recur.py) that are not secret, not free, not
cancelled, and (for "attending") that the Principal accepted or tentatively accepted.
Each becomes a BusyPeriod; with showDetails, an event not private in a calendar the user
may read items of carries the event (as the user's CalendarEvent/get shows it: their
per-user values, hideAttendees) and its accountId.  The periods without an event are
merged and split so that none overlap nor touch with the same busyStatus, the stronger
status winning where they overlap (confirmed > unavailable > tentative).  An answer of
more than MAX_BUSY_PERIODS (10,000) periods is refused with tooLarge (§2.2 allows the
server a limit): ask for a shorter window.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import itertools
import json
from typing import Any

from jmap_host import (
    Account,
    Call,
    Capability,
    Host,
    Method,
    MethodError,
    Principal,
    dates,
    objectstore,
    sharing,
    visible_principals,
)

from . import identity, jscalendar, peruser, recur
from .calendar import CALENDAR, subscribed
from .event import EVENT
from .identity import normalise

AVAILABILITY = "urn:ietf:params:jmap:principals:availability"
CALENDARS = "urn:ietf:params:jmap:calendars"
MAX_DAYS = 400
MAX_AVAILABILITY_DURATION = f"P{MAX_DAYS}D"
# The most BusyPeriods one Principal/getAvailability answers (tooLarge past it): what
# the window and the expansion caps allow is far more than a client can use.
MAX_BUSY_PERIODS = 10_000
RANK = {"confirmed": 3, "unavailable": 2, "tentative": 1}  # §2.2's order


def _utc(call: Call, name: str) -> dt.datetime:
    value = call.args.get(name)
    if not isinstance(value, str) or not dates.is_utcdate(value):
        raise MethodError("invalidArguments", f"{name} must be a UTCDateTime")
    return dt.datetime.fromtimestamp(dates.epoch(value), dt.UTC)


def free_busy_rights(db: Any, host: Host, account: str, user: Principal) -> dict[str, dict]:
    """{calendar id: rights} the user holds in ``account`` (every right in their own and
    their groups'), free/busy-only shares included (sharing hides those from
    Calendar/get, §4.1)."""
    if account in sharing.grantee_ids(user):
        ids = [c["id"] for c in objectstore.read_records(db, CALENDAR, account, None, [])]
        return {i: {"mayReadFreeBusy": True, "mayReadItems": True} for i in ids}
    return sharing.shared_rights(db, account, user, CALENDAR.name).get(CALENDAR.name, {})


def principal_entry(host: Host, principal: Principal, request: Any = None) -> dict[str, Any]:
    """§2.1: the Principal's ``urn:ietf:params:jmap:calendars`` capability, as the user of
    ``request`` sees it: accountId when they may read some of its calendar data (not only
    free/busy), mayGetAvailability when they may read free/busy of one of its calendars."""
    entry: dict[str, Any] = {"accountId": None, "mayGetAvailability": False,
                             "mayShareWith": False}  # fmt: skip
    if principal.emails:
        entry["calendarAddress"] = f"mailto:{principal.emails[0]}"
    if request is None:
        return entry
    user = request.principal
    entry["mayShareWith"] = principal.account_id != user.account_id
    account = request.accounts.get(principal.account_id)
    if account is None or CALENDARS not in request.account_capabilities.get(account.id, {}):
        return entry  # (nothing of theirs is shared with the user: no read needed)
    if account.id in sharing.grantee_ids(user):
        entry.update(accountId=account.id, mayGetAvailability=True)
        return entry
    rights = host.store.read_sync(lambda db: free_busy_rights(db, host, account.id, user))
    entry["mayGetAvailability"] = any(r.get("mayReadFreeBusy") for r in rights.values())
    if any(v for r in rights.values() for name, v in r.items() if name != "mayReadFreeBusy"):
        entry["accountId"] = account.id
    return entry


def _attendance(event: dict[str, Any], addresses: set[str]) -> str | None:
    """The Principal's participationStatus in ``event`` (None: not a participant)."""
    for participant in (event.get("participants") or {}).values():
        address = participant.get("calendarAddress") if isinstance(participant, dict) else None
        if isinstance(address, str) and normalise(address) in addresses:
            return str(participant.get("participationStatus") or "needs-action")
    return None


def _busy_status(event: dict[str, Any], attendance: str | None) -> str:
    status = event.get("status") or "confirmed"
    # (an event without participants is the Principal's own: they attend it)
    attending = attendance == "accepted" or (attendance is None and not event.get("participants"))
    if status == "confirmed" and attending:
        return "confirmed"
    if status == "tentative" or attendance == "tentative":
        return "tentative"
    return "unavailable"




def _text(moment: dt.datetime) -> str:
    return jscalendar.utc_text(moment)


def _as_seen(db: Any, host: Host, account: Account, user: Principal,
             event: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The stored ``event`` as the user's CalendarEvent/get shows it (§2.2: "the
    CalendarEvent representation of the event"): their own per-user values (§5.4), only
    the calendars they see, a private event's time and metadata (§5.7; sharing.present,
    as /get)."""
    view = copy.deepcopy(event)
    access = None
    if account.id not in sharing.grantee_ids(user):  # (their own account, their group's)
        access = sharing.load_access(db, host, account, user)
    sharing.present(db, EVENT, access, [view], account.id)
    return view


def busy_periods(
    db: Any, host: Host, principal: Principal, user: Principal, low: dt.datetime,
    high: dt.datetime, details: bool, properties: list[str] | None,
    shared: Account | None = None,
) -> list[dict[str, Any]]:
    """§2.2's BusyPeriods of ``principal`` in [low, high) as ``user`` may see them;
    ``shared``: the Principal's account as the user's session has it (without it, no
    event is shown)."""
    account = principal.account_id
    rights = free_busy_rights(db, host, account, user)
    # (the Principal as a participant: their ParticipantIdentities, and their addresses)
    addresses = identity.identities(db, account) | {f"mailto:{e.lower()}" for e in principal.emails}
    calendars = {}
    for calendar in objectstore.read_records(db, CALENDAR, account, None,
                                             ["isSubscribed", "includeInAvailability"]):
        mode = calendar.get("includeInAvailability") or "all"
        got = rights.get(calendar["id"], {})
        if subscribed(calendar) and mode in ("all", "attending") and \
                got.get("mayReadFreeBusy"):  # fmt: skip
            calendars[calendar["id"]] = (mode, got)
    if not calendars:
        return []
    from .query import _span_condition  # (one-off events out of the window stay in SQL)

    column = objectstore.column(EVENT.by_name["calendarIds"])
    span, span_params = _span_condition(low, high)
    rows = db.execute(
        f"SELECT id FROM [{EVENT.table}] WHERE account = ? AND EXISTS (SELECT 1 FROM "
        f"json_each([{column}]) WHERE key IN (SELECT value FROM json_each(?))) AND {span}",
        [account, json.dumps(list(calendars)), *span_params],
    ).fetchall()
    events = objectstore.read_records(db, EVENT, account, [r[0] for r in rows])
    periods: list[dict[str, Any]] = []
    mine_ids = identity.identities(db, user.account_id) if details else set()
    for event in events:
        if event.get("privacy") == "secret":
            continue
        view: dict[str, Any] | None = None  # (the user's view of it, read when shown)
        mine = [calendars[c] for c in event.get("calendarIds") or {} if c in calendars]
        try:
            found = recur.occurrences(event, low, high, principal.time_zone or "Etc/UTC")
        except recur.CannotExpand:
            continue  # (what cannot be expanded cannot be shown busy either)
        for occurrence in found:
            one = jscalendar.patched(event, occurrence.patch)
            # (stored null is the default: busy, confirmed)
            if (one.get("freeBusyStatus") or "busy") != "busy" or one.get("status") == "cancelled":
                continue
            attendance = _attendance(one, addresses)
            if not any(mode == "all" or attendance in ("accepted", "tentative")
                       for mode, _ in mine):  # fmt: skip
                continue
            period: dict[str, Any] = {
                "utcStart": _text(max(occurrence.start, low)),
                "utcEnd": _text(min(occurrence.end, high)),
                "busyStatus": _busy_status(one, attendance),
                "event": None, "accountId": None,
            }  # fmt: skip
            # (§2.2: mayReadItems on any calendar the event is in, relevant or not)
            readable = any(rights.get(c, {}).get("mayReadItems")
                           for c in event.get("calendarIds") or {})  # fmt: skip
            if details and readable and shared is not None and one.get("privacy") != "private":
                if view is None:
                    view = _as_seen(db, host, shared, user, event)
                # (the occurrence of the user's view: their per-occurrence values)
                patch = (view.get("recurrenceOverrides") or {}).get(occurrence.recurrence_id)
                if recur.is_recurring(event):  # (its start: the override's, if it moved)
                    shown = {**jscalendar.occurrence(view, occurrence.recurrence_id, patch),
                             "id": event["id"], "recurrenceId": occurrence.recurrence_id,
                             "recurrenceRule": None, "recurrenceOverrides": None}  # fmt: skip
                else:
                    shown = {**jscalendar.patched(view, patch), "id": event["id"]}
                if peruser.hides_attendees(shown, mine_ids):  # §5.7, as /get
                    peruser.reduce_participants(shown, mine_ids)
                if properties is None:
                    shown.pop("iCalComponent", None)  # (§5.7: only when asked for)
                else:
                    shown = {k: v for k, v in shown.items() if k in properties}
                period.update(event=shown, accountId=account)
            periods.append(period)
    return _merged(periods)


def _merged(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """§2.2: the periods without an event merged and split: no overlaps, no touching
    neighbours of one status, the strongest status where they overlap.  A sweep over
    the sorted boundaries with a count of open periods per busyStatus: O(n log n).
    More than MAX_BUSY_PERIODS periods in one answer is tooLarge."""
    if len(periods) > MAX_BUSY_PERIODS:
        raise MethodError("tooLarge", f"more than {MAX_BUSY_PERIODS} busy periods: ask for "
                          "a shorter time range")  # fmt: skip
    plain = [p for p in periods if p["event"] is None]
    kept = [p for p in periods if p["event"] is not None]
    # {boundary: [(status, +1 opens / -1 closes)]} (instantaneous periods cut nothing)
    changes: dict[str, list[tuple[str, int]]] = {}
    for p in plain:
        if p["utcStart"] < p["utcEnd"]:
            changes.setdefault(p["utcStart"], []).append((p["busyStatus"], 1))
            changes.setdefault(p["utcEnd"], []).append((p["busyStatus"], -1))
    open_count = dict.fromkeys(RANK, 0)
    merged: list[dict[str, Any]] = []
    cuts = sorted(changes)
    for start, end in itertools.pairwise(cuts):
        for status, step in changes[start]:
            open_count[status] += step
        over = [status for status, n in open_count.items() if n > 0]
        if not over:
            continue
        status = max(over, key=RANK.__getitem__)
        last = merged[-1] if merged else None
        if last is not None and last["utcEnd"] == start and last["busyStatus"] == status:
            last["utcEnd"] = end
        else:
            merged.append({"utcStart": start, "utcEnd": end, "busyStatus": status,
                           "event": None, "accountId": None})  # fmt: skip
    # (instantaneous periods: kept as they are, once, unless a merged one covers them)
    starts = [m["utcStart"] for m in merged]
    for p in plain:
        if p["utcStart"] == p["utcEnd"]:
            n = bisect.bisect_right(starts, p["utcStart"]) - 1
            if n < 0 or not p["utcStart"] < merged[n]["utcEnd"]:
                merged.append(p)
    return sorted(kept + merged, key=lambda p: (p["utcStart"], p["utcEnd"]))


async def principal_get_availability(call: Call) -> dict[str, Any]:
    """§2.2 Principal/getAvailability."""
    host, user = call.host, call.request.principal
    principal_id = call.args.get("id")
    if not isinstance(principal_id, str):
        raise MethodError("invalidArguments", "id must be a Principal id")
    low, high = _utc(call, "utcStart"), _utc(call, "utcEnd")
    if high <= low:
        raise MethodError("invalidArguments", "utcEnd must be after utcStart")
    details = call.args.get("showDetails", False)
    if not isinstance(details, bool):
        raise MethodError("invalidArguments", "showDetails must be a Boolean")
    properties = call.args.get("eventProperties")
    if properties is not None and (not isinstance(properties, list)
                                   or not all(isinstance(p, str) for p in properties)):
        raise MethodError("invalidArguments", "eventProperties must be a String[] or null")
    visible = await visible_principals(host, user, call.request.accounts)
    principal = next((p for p in visible if p.account_id == principal_id), None)
    if principal is None:
        raise MethodError("notFound", "no Principal with this id that you may see")
    if high - low > dt.timedelta(days=MAX_DAYS):
        raise MethodError("tooLarge", f"at most {MAX_AVAILABILITY_DURATION} at once")
    if not await host.store.read(
        lambda db: principal.account_id in sharing.grantee_ids(user)
        or any(r.get("mayReadFreeBusy") for r in
               free_busy_rights(db, host, principal.account_id, user).values())
    ):  # fmt: skip
        raise MethodError("forbidden", "you may not see this Principal's availability")
    found = await host.store.read(
        lambda db: busy_periods(db, host, principal, user, low, high, details, properties,
                                call.request.accounts.get(principal.account_id)),
        inline=False,
    )
    return {"list": found}


def availability_capability() -> Capability:
    """§1.5.2: in the accounts that hold the Principals (the user's personal one)."""

    def account(host: Host, account: Any) -> dict[str, Any] | None:
        if not account.is_personal:
            return None
        return {"maxAvailabilityDuration": MAX_AVAILABILITY_DURATION}

    return Capability(
        urn=AVAILABILITY,
        session={},
        account=account,
        methods=[Method("Principal/getAvailability", principal_get_availability)],
        in_shared_accounts=False,
        principal_filters={"calendarAddress": calendar_address_filter},
    )


def calendar_address_filter(principal: dict[str, Any], value: Any) -> bool:
    """§2.3: ``value`` is a calendarAddress of the Principal (one of its addresses)."""
    if not isinstance(value, str):
        raise MethodError("invalidArguments", "filter calendarAddress must be a String")
    entry = (principal.get("capabilities") or {}).get(CALENDARS) or {}
    mine = {normalise(a) for a in [entry.get("calendarAddress")] if isinstance(a, str)}
    if isinstance(principal.get("email"), str):
        mine.add(normalise(f"mailto:{principal['email']}"))
    return normalise(value) in mine
