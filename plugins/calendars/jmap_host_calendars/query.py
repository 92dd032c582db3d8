"""CalendarEvent/query with time ranges and expandRecurrences (draft-ietf-jmap-calendars
§5.11), and CalendarEvent/get of the instance ids it returns (§5.5, §5.7).

The host's standard /query runs every condition but ``after`` and ``before`` in SQL (over
what the caller may see); the time range is then exact: a one-off event in a time zone
by its stored UTC span, a recurring or floating one by expanding it (recur.py).  With
``expandRecurrences`` each matching occurrence of a recurring event is its own id,
``<event id>.<recurrence id as digits>``, which CalendarEvent/get answers with the
occurrence: the event with the override's patch applied, its recurrenceId and start, and
``baseEventId`` (§5).

``after`` and ``before`` may stand in the top-level FilterCondition (an operator cannot
hold them: unsupportedFilter); with expandRecurrences the filter must be that condition
and hold both (§5.11).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from jmap_host import Call, MethodError, SetError, objectstore, sharing, standard

from . import identity, jscalendar, peruser, recur, scheduling, settimes, timeline
from .event import EVENT

MAX_EXPANDED_DAYS = 400  # the account capability's maxExpandedQueryDuration, P400D
# The bounds of a time range without after or before (any time the datetime type holds).
UNBOUNDED_LOW = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
UNBOUNDED_HIGH = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
INSTANCE = re.compile(r"(?P<base>[A-Za-z0-9_-]+)\.(?P<rid>\d{8}T\d{6})")


def instance_id(base: str, recurrence_id: str) -> str:
    return f"{base}.{recurrence_id.replace('-', '').replace(':', '')}"


def _recurrence_id(digits: str) -> str:
    d = digits
    return f"{d[0:4]}-{d[4:6]}-{d[6:8]}T{d[9:11]}:{d[11:13]}:{d[13:15]}"


def _zone(call: Call) -> str:
    """The timeZone argument of /query and /get (§5.7, §5.11): an IANA time zone."""
    zone = standard.arg(call, "timeZone", "String", "Etc/UTC")
    try:
        jscalendar.check(zone, "TimeZoneId", "/timeZone")
    except jscalendar.Invalid:
        raise MethodError("invalidArguments", "timeZone must be an IANA time zone") from None
    return zone


def _range(call: Call) -> tuple[Any, dt.datetime | None, dt.datetime | None, str, bool]:
    """(the filter without after/before, after and before in UTC, the time zone, expand)."""
    filter_ = call.args.get("filter")
    expand = call.args.get("expandRecurrences", False)
    if not isinstance(expand, bool):
        raise MethodError("invalidArguments", "expandRecurrences must be a Boolean")
    zone = _zone(call)

    def nested(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if "operator" in node:
            return any(nested(c) for c in node.get("conditions") or [])
        return "after" in node or "before" in node

    top = isinstance(filter_, dict) and "operator" not in filter_
    if not top and nested(filter_):
        raise MethodError("unsupportedFilter",
                          "after and before only in the top-level FilterCondition")  # fmt: skip
    bounds: dict[str, dt.datetime | None] = {"after": None, "before": None}
    rest = filter_
    if top:
        rest = {k: v for k, v in filter_.items() if k not in bounds}
        for name in bounds:
            if name in filter_:
                try:
                    local = jscalendar.local_datetime(filter_[name])
                except (TypeError, ValueError):
                    why = f"filter {name} must be a LocalDateTime"
                    raise MethodError("invalidArguments", why) from None
                bounds[name] = jscalendar.to_utc(local, zone)
    if expand:
        if not top or bounds["after"] is None or bounds["before"] is None:
            raise MethodError("invalidArguments",
                              "expandRecurrences needs a FilterCondition with after and before")
        if bounds["before"] - bounds["after"] > dt.timedelta(days=MAX_EXPANDED_DAYS):
            raise MethodError("expandDurationTooLarge",
                              f"at most P{MAX_EXPANDED_DAYS}D between after and before")
    return rest or None, bounds["after"], bounds["before"], zone, expand


async def event_query(call: Call) -> dict[str, Any]:
    assert call.account is not None
    account = call.account.id
    standard.check_read(EVENT, call)
    rest, after, before, zone, expand = _range(call)
    sort = call.args.get("sort")
    shared = call.account.shared
    where, order, _ = standard.compile_query(
        peruser.sharee_filters(EVENT) if shared else EVENT, rest, sort, call.host.store.dialect
    )
    if expand and any(c["property"] != "start" for c in standard.check_sort(sort)):
        raise MethodError("unsupportedSort", "expanded occurrences sort by start only")
    position = standard.arg(call, "position", "Int", 0)
    anchor = standard.arg(call, "anchor", "Id|null")
    anchor_offset = standard.arg(call, "anchorOffset", "Int", 0)
    limit = standard.arg(call, "limit", "UnsignedInt|null")
    total_wanted = standard.arg(call, "calculateTotal", "Boolean", False)
    timed = after is not None or before is not None
    low = after or UNBOUNDED_LOW
    high = before or UNBOUNDED_HIGH

    def read(db: Any) -> dict[str, Any]:
        nonlocal where
        modseq, low_modseq = objectstore.current_modseq(db, account, EVENT.name)
        access = sharing.access_for(db, call)
        if access is not None:
            where = standard.and_where(where, sharing.visible_where(EVENT, access))
        if timed:  # one-off events out of the range are left in SQL, by their index
            where = standard.and_where(where, _span_condition(low, high))
        ids = objectstore.query_ids(db, EVENT, account, where, order)
        if timed or expand:
            series = timeline.timeline(db, EVENT, account, modseq, low_modseq).events
            ids = _in_range(db, account, ids, low, high, zone, expand, series)
        out = _window(ids, position, anchor, anchor_offset, limit)
        result: dict[str, Any] = {
            "accountId": account, "queryState": str(modseq),
            "canCalculateChanges": access is None and not timed and not expand,
            **out,
        }  # fmt: skip
        if total_wanted:
            result["total"] = len(ids)
        return result

    return await call.host.store.read(read)


def _span_condition(low: dt.datetime, high: dt.datetime) -> tuple[str, list[Any]]:
    flag = objectstore.derived_column("expand")
    start = objectstore.derived_column("utc-start")
    end = objectstore.derived_column("utc-end")
    lo, hi = jscalendar.utc_text(low), jscalendar.utc_text(high)
    return (
        f"([{flag}] = '1' OR ([{start}] < ? AND ([{end}] > ? OR ([{end}] = [{start}] "
        f"AND [{start}] >= ?))))",
        [hi, lo, lo],
    )


def _in_range(
    db: Any, account: str, ids: list[str], low: dt.datetime, high: dt.datetime, zone: str,
    expand: bool, series: dict[str, timeline.Series],
) -> list[str]:
    """The ids (in their order; with ``expand``, the occurrences' in time order) of the
    events with an occurrence in [low, high).  A one-off event in a time zone is judged by
    its stored UTC span; a recurring one by its kept occurrences (``series``, the account's
    timeline) when they reach ``high``; only the others (floating, or past the horizon) are
    expanded here."""
    start_col = objectstore.derived_column("utc-start")
    end_col = objectstore.derived_column("utc-end")
    flag_col = objectstore.derived_column("expand")
    lo, hi = jscalendar.utc_text(low), jscalendar.utc_text(high)
    fixed: dict[str, str] = {}
    kept_series: dict[str, timeline.Series] = {}
    to_expand: list[str] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = db.execute(
            f"SELECT id, [{flag_col}], [{start_col}], [{end_col}] FROM [{EVENT.table}] "
            f"WHERE account = ? AND id IN ({', '.join('?' * len(chunk))})",
            [account, *chunk],
        ).fetchall()
        for event_id, flag, begin, end in rows:
            if int(flag):  # (a derived column is TEXT: "0" or "1")
                held = series.get(event_id)
                if held is not None and held.covers(high):
                    kept_series[event_id] = held
                else:
                    to_expand.append(event_id)
            elif begin is not None and begin < hi and (end > lo or (end == begin and begin >= lo)):
                fixed[event_id] = begin
    records = {r["id"]: r for r in objectstore.read_records(
        db, EVENT, account, to_expand, list(timeline.TIMING))}  # fmt: skip
    kept: list[str] = []
    instances: list[tuple[dt.datetime, str]] = []
    for event_id in ids:
        if event_id in fixed:
            kept.append(event_id)
            if expand:
                # (the stored UTCDate, "...Z": fromisoformat reads it, aware, since 3.11)
                instances.append((dt.datetime.fromisoformat(fixed[event_id]), event_id))
            continue
        held = kept_series.get(event_id)
        if held is not None:
            found = held.between(low, high)
            recurring = True  # (a Series is kept only for a recurring event)
        else:
            event = records.get(event_id)
            if event is None:
                continue
            try:
                found = recur.occurrences(event, low, _existence_bound(event, low, high), zone)
            except recur.CannotExpand as exc:
                raise MethodError("cannotCalculateOccurrences", str(exc)) from None
            recurring = recur.is_recurring(event)
        if not found:
            continue
        kept.append(event_id)
        if expand:
            if recurring:
                instances += [(o.start, instance_id(event_id, o.recurrence_id)) for o in found]
            else:
                instances.append((found[0].start, event_id))
    if not expand:
        return kept
    instances.sort()
    return [i for _, i in instances]


def _existence_bound(event: dict[str, Any], low: dt.datetime, high: dt.datetime) -> dt.datetime:
    """Where to stop looking for an occurrence of ``event`` after ``low``: ``high``, but for a
    rule without an end and a range without ``before`` (only whether it has one matters:
    expandRecurrences needs both bounds) 400 days past the later of ``low`` and its start,
    or as many periods as it has overrides and two more, whichever is longer: every rule
    whose occurrences are never further apart than that has one there."""
    rule = event.get("recurrenceRule") or {}
    if high != UNBOUNDED_HIGH or not rule or rule.get("count") is not None or rule.get("until"):
        return high
    try:
        start = jscalendar.to_utc(jscalendar.local_datetime(event["start"]),
                                  event.get("timeZone"))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return high
    periods = len(event.get("recurrenceOverrides") or {}) + 2
    span = max(dt.timedelta(days=MAX_EXPANDED_DAYS),
               dt.timedelta(seconds=recur.step(event)) * periods)  # fmt: skip
    return min(high, recur.shift(max(low, start), span))


def _window(
    ids: list[str], position: int, anchor: str | None, offset: int, limit: int | None
) -> dict[str, Any]:
    if anchor is not None:
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        start = max(0, ids.index(anchor) + offset)
    else:
        start = max(0, len(ids) + position) if position < 0 else position
    page = ids[start:] if limit is None else ids[start : start + limit]
    return {"position": start, "ids": page}


# -- CalendarEvent/get of occurrences ---------------------------------------------------------


def _get_arguments(call: Call) -> tuple[dt.datetime | None, dt.datetime | None, bool, str]:
    """§5.7's extra arguments: recurrenceOverridesAfter/Before, reduceParticipants,
    timeZone; and utcStart/utcEnd never with recurrenceOverrides."""
    bounds = []
    for name in ("recurrenceOverridesAfter", "recurrenceOverridesBefore"):
        value = standard.arg(call, name, "UTCDate|null")
        bounds.append(None if value is None else
                      dt.datetime.fromisoformat(value.replace("Z", "+00:00")))  # fmt: skip
    reduce = standard.arg(call, "reduceParticipants", "Boolean", False)
    zone = _zone(call)
    properties = call.args.get("properties")
    if isinstance(properties, list) and "recurrenceOverrides" in properties and (
        "utcStart" in properties or "utcEnd" in properties
    ):
        raise MethodError("invalidArguments", "utcStart/utcEnd cannot be fetched with "
                          "recurrenceOverrides (JMAP Calendars §5.7)")  # fmt: skip
    return bounds[0], bounds[1], reduce, zone


async def event_get(call: Call) -> dict[str, Any]:
    """The standard /get, and for instance ids the occurrence they name (§5.5); then what
    §5.7 asks of each: hideAttendees, reduceParticipants, the overrides in a range, floating
    events' UTC times in the timeZone argument, iCalComponent only when asked for by name."""
    after, before, reduce, zone = _get_arguments(call)
    ids = call.args.get("ids")
    instances = {}
    if isinstance(ids, list):
        instances = {i: m for i in ids if isinstance(i, str) and (m := INSTANCE.fullmatch(i))}
    bases = list(dict.fromkeys(m["base"] for m in instances.values()))
    plain = [i for i in ids if i not in instances] if isinstance(ids, list) else ids
    properties = call.args.get("properties")
    wanted = None
    if isinstance(properties, list):
        wanted = list(dict.fromkeys([*properties, "start", "timeZone", "duration",
                                     "recurrenceOverrides", "recurrenceRule", "participants",
                                     "hideAttendees"]))  # fmt: skip
    args = {k: v for k, v in call.args.items() if k not in (
        "recurrenceOverridesAfter", "recurrenceOverridesBefore", "reduceParticipants",
        "timeZone")}  # fmt: skip
    sub = standard.Call(call.name, {**args, "ids": plain + bases if isinstance(plain, list)
                                    else plain,
                                    "properties": wanted},
                        call.call_id, call.request, call.account)  # fmt: skip
    result = await standard.type_get(EVENT, sub)
    mine: set[str] | None = None  # (the user's addresses: read only if participants are cut)
    if reduce or any(r.get("hideAttendees") or any(
        isinstance(p, dict) and "hideAttendees" in p
        for p in (r.get("recurrenceOverrides") or {}).values()
    ) for r in result["list"]):
        mine = await call.host.store.read(
            lambda db: identity.identities(db, call.request.principal.account_id)
        )
    by_id = {r["id"]: r for r in result["list"]}
    # Each base expanded once, over the span of its requested occurrences.
    spans: dict[str, list[str]] = {}
    for match in instances.values():
        spans.setdefault(match["base"], []).append(_recurrence_id(match["rid"]))
    expanded = {base: _expand_once(by_id.get(base), rids) for base, rids in spans.items()}
    out, not_found = [], []
    for requested in ids if isinstance(ids, list) else list(by_id):
        match = instances.get(requested)
        if match is None:
            record = by_id.get(requested)
        else:
            record = _occurrence(by_id.get(match["base"]), requested, match["rid"],
                                 expanded.get(match["base"]))  # fmt: skip
        if record is None:
            not_found.append(requested)
            continue
        # (an occurrence is its own top-level dict, but may share the base's values: what
        # follows replaces values, never changes them in place)
        if mine is not None and (reduce or peruser.hides_attendees(record, mine)):
            peruser.reduce_participants(record, mine)
        if after is not None or before is not None:
            peruser.overrides_between(record, after, before, zone)
        if "utcStart" in record or "utcEnd" in record:
            peruser.floating_span(record, zone)
        if isinstance(properties, list):
            record = {k: v for k, v in record.items() if k == "id" or k in properties
                      or (k == "baseEventId" and match is not None)}  # fmt: skip
        else:
            record.pop("iCalComponent", None)  # §5.7: only when asked for by name
        out.append(record)
    return {**result, "list": out, "notFound": not_found}


def _expand_once(base: dict[str, Any] | None, rids: list[str]) -> dict[str, Any] | None:
    """{recurrence id: Occurrence} of ``base`` around the recurrence ids asked for (a day
    either side of them), or None when it cannot be expanded."""
    if base is None or not recur.is_recurring(base):
        return None
    # (the kept occurrences if a query kept them; never built here, on the event loop)
    held = timeline.kept(base) or timeline.Series(live=True)
    if not held.live and held.until is None:  # (all its occurrences are kept)
        return held.by_rid
    zone = base.get("timeZone")
    overrides = base.get("recurrenceOverrides") or {}
    locals_ = [jscalendar.local_datetime(r) for r in rids]
    for rid in rids:  # (an override may have moved an occurrence far from its id)
        moved = (overrides.get(rid) or {}).get("start")
        if isinstance(moved, str):
            locals_.append(jscalendar.local_datetime(moved))
    moments = [jscalendar.to_utc(local, zone) for local in locals_]
    if held.covers(max(moments) + dt.timedelta(days=1)):
        return held.by_rid
    try:
        found = recur.occurrences(base, min(moments) - dt.timedelta(days=1),
                                  max(moments) + dt.timedelta(days=1), zone or "Etc/UTC")
    except recur.CannotExpand:
        return None
    return {o.recurrence_id: o for o in found}


def _occurrence(
    base: dict[str, Any] | None, requested: str, digits: str,
    expanded: dict[str, Any] | None = None,
) -> dict | None:
    """The occurrence ``digits`` of ``base``, if its recurrence produces it."""
    if base is None or not recur.is_recurring(base):
        return None
    rid = _recurrence_id(digits)
    if expanded is None:
        expanded = _expand_once(base, [rid])
        if expanded is None:
            return None
    match = expanded.get(rid)
    if match is None:  # (a patched start moves it: look at the override's key itself)
        patch = (base.get("recurrenceOverrides") or {}).get(rid)
        if patch is None or patch == {"excluded": True}:
            return None
    else:
        patch = match.patch
    # (without a patch the base's values are shared: nothing changes them before they are
    # sent)
    record = jscalendar.occurrence(base, rid, patch, share=True)
    record.update(id=requested, baseEventId=base["id"], recurrenceId=rid)
    # §5.7: an instance's recurrenceRule and recurrenceOverrides are null.
    record.update(recurrenceRule=None, recurrenceOverrides=None)
    if "utcStart" in record or "utcEnd" in record:  # (the occurrence's own, not the base's)
        if match is not None and "timeZone" not in (patch or {}):  # (expanded: known)
            span = (jscalendar.utc_text(match.start), jscalendar.utc_text(match.end))
        else:
            span = jscalendar.utc_span(record)
        for name, value in zip(("utcStart", "utcEnd"), span or (None, None), strict=True):
            if name in record:
                record[name] = value
    return record


# -- CalendarEvent/set of occurrences (§5.9) --------------------------------------------------


async def event_set(call: Call) -> dict[str, Any]:
    """The standard /set; an instance id's update is an update of that occurrence's override
    on the base event, its destroy the occurrence excluded (§5.9), in the same transaction
    as the rest; utcStart/utcEnd given become start/duration (settimes.py)."""
    request = await standard.set_request(EVENT, call)
    if scheduling.send_argument(call):  # §5.9.2: with the iTIP messages, in the same write
        return await scheduling.commit_with_messages(request, _writer, _base_of, EVENT)
    return await request.commit(_writer(request))


def _base_of(key: str) -> str:
    match = INSTANCE.fullmatch(key)
    return match["base"] if match else key


def _writer(request: standard.SetRequest) -> Any:
    """The /set's write transaction: the standard one, or event_set's own (instance ids,
    utcStart/utcEnd given)."""
    if not _needs_own_write(request):
        return request.run

    def write(db: Any, careful: bool) -> dict[str, Any]:
        account = request.account.id
        refused: dict[str, tuple[str, dict[str, Any]]] = {}
        extra: dict[str, dict[str, Any]] = {}
        creates: dict[str, Any] = {}
        for creation_id, obj in (request.create or {}).items():
            try:
                creates[creation_id] = translated = (
                    settimes.translate(db, account, obj, None) if isinstance(obj, dict) else obj
                )
            except SetError as exc:
                refused[creation_id] = ("notCreated", exc.to_json())
                continue
            if isinstance(obj, dict):
                extra[creation_id] = settimes.server_set(obj, translated)
        updates: dict[str, Any] = {}
        # (§5.7: an event the caller may not see is notFound before its times, or the
        # occurrences it names, are read)
        seen, access = _visible(request, db, [_base_of(k) for k in
                                              [*(request.update or {}), *(request.destroy or [])]])
        for key, patch in (request.update or {}).items():
            if not _touches_times(patch):
                updates[key] = patch
                continue
            if _base_of(key) not in seen:
                refused[key] = ("notUpdated", {"type": "notFound"})
                continue
            try:
                if INSTANCE.fullmatch(key):  # (an occurrence's update is its override's:
                    # translated as one only to refuse utcStart/utcEnd in it, §5.9)
                    settimes.translate(db, account, {"recurrenceOverrides": {"": patch}}, {})
                    updates[key] = patch
                    continue
                found = objectstore.read_records(db, EVENT, account, [key],
                                                 ["start", "timeZone", "calendarIds"])
                updates[key] = translated = settimes.translate(
                    db, account, patch, found[0] if found else {})  # fmt: skip
                extra[key] = settimes.server_set(patch, translated)
            except SetError as exc:
                refused[key] = ("notUpdated", exc.to_json())
        plain = dataclasses.replace(request, create=creates or None, update=updates or None)
        result = _with_instances(plain, db, careful, seen, access)
        for key, (side, error) in refused.items():
            result[side] = {**(result.get(side) or {}), key: error}
        for side in ("created", "updated"):
            for key, entry in (result.get(side) or {}).items():
                wanted = extra.get(key)
                if wanted:
                    result[side][key] = {**wanted, **(entry or {})}
        return result

    return write


def _visible(
    request: standard.SetRequest, db: Any, ids: list[str]
) -> tuple[set[str], sharing.Access | None]:
    """Those of the stored events ``ids`` the caller may see (sharing's rule, with the
    event type's owner-only one: §5.7 "secret"), and the caller's access (None: all)."""
    access = sharing.access_for(db, request.call)
    return sharing.visible_ids(db, EVENT, access, request.account.id, ids), access


def _touches_times(obj: Any) -> bool:
    """Whether a create or patch gives utcStart/utcEnd (or may, inside an override)."""
    return isinstance(obj, dict) and any(
        k.split("/")[0] in settimes.NAMES or k.startswith("recurrenceOverrides") for k in obj
    )


def _needs_own_write(request: standard.SetRequest) -> bool:
    """Instance ids, or utcStart/utcEnd given: the /set runs event_set's own write."""
    if any(INSTANCE.fullmatch(i) for i in [*(request.update or {}), *(request.destroy or [])]):
        return True
    given = [*(request.create or {}).values(), *(request.update or {}).values()]
    return any(_touches_times(obj) for obj in given)


def _alert_on_base(pointer: str, value: Any, override: dict[str, Any], base: dict) -> bool:
    """§6.2, §6.3: acknowledging an occurrence's alert, adding a snooze alert and removing
    one MUST NOT create a recurrence override: they go to the base event's alerts, unless
    the occurrence already overrides that alert."""
    tokens = pointer.split("/")
    if tokens[0] != "alerts" or len(tokens) not in (2, 3):
        return False
    alert_id = tokens[1]
    if any(k == "alerts" or k == f"alerts/{alert_id}" or k.startswith(f"alerts/{alert_id}/")
           for k in override):  # fmt: skip
        return False
    if len(tokens) == 3:
        return tokens[2] == "acknowledged"

    def snooze(alert: Any) -> bool:
        relations = (alert or {}).get("relatedTo") if isinstance(alert, dict) else None
        return isinstance(relations, dict) and any(
            isinstance(r, dict) and (r.get("relation") or {}).get("snooze")
            for r in relations.values()
        )

    return snooze(value) or (value is None and snooze((base.get("alerts") or {}).get(alert_id)))


def _with_instances(
    request: standard.SetRequest, db: Any, careful: bool, seen: set[str],
    access: sharing.Access | None,
) -> dict[str, Any]:
    """The /set in its transaction, with instance ids' updates and destroys made those of
    their base events' overrides (``seen``: the base events the caller may see; ``access``
    theirs, whose view of the overrides holds their per-user values)."""
    account, update, destroy = request.account, request.update, request.destroy
    instance_updates = {k: v for k, v in (update or {}).items() if INSTANCE.fullmatch(k)}
    instance_destroys = [i for i in destroy or [] if INSTANCE.fullmatch(i)]
    if not instance_updates and not instance_destroys:
        return request.run(db, careful)
    plain_update = {k: v for k, v in (update or {}).items() if k not in instance_updates}
    plain_destroy = [i for i in destroy or [] if i not in instance_destroys]
    overrides: dict[str, dict[str, Any]] = {}  # base id -> its new recurrenceOverrides
    bases: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}  # instance id -> base id
    failed: dict[str, dict[str, Any]] = {}
    for key in [*instance_updates, *instance_destroys]:
        m = INSTANCE.fullmatch(key)
        assert m is not None
        base_id, rid = m["base"], _recurrence_id(m["rid"])
        if base_id not in seen:
            failed[key] = {"type": "notFound"}
            continue
        if base_id not in overrides:
            found = objectstore.read_records(db, EVENT, account.id, [base_id])
            if found and account.shared:
                sharing.present(db, EVENT, access, found, account.id)
            if not found or not recur.is_recurring(found[0]):
                failed[key] = {"type": "notFound"}
                continue
            overrides[base_id] = dict(found[0].get("recurrenceOverrides") or {})
            bases[base_id] = found[0]
        if _occurrence(bases[base_id], key, m["rid"]) is None:
            failed[key] = {"type": "notFound"}  # not an occurrence of the series
            continue
        if key in instance_updates:
            patch = instance_updates[key]
            if not isinstance(patch, dict):
                failed[key] = {"type": "invalidPatch"}
                continue
            current = dict(overrides[base_id].get(rid) or {})
            if current == {"excluded": True}:
                failed[key] = {"type": "notFound"}
                continue
            for pointer, value in patch.items():
                if _alert_on_base(pointer, value, current, bases[base_id]):
                    plain_update.setdefault(base_id, {})[pointer] = value
                    continue
                current[pointer] = value  # (a JSCalendar PatchObject pointer, §1.5.9)
            if current or rid in overrides[base_id]:
                overrides[base_id][rid] = current
        else:
            overrides[base_id][rid] = {"excluded": True}
        owner[key] = base_id
    for base_id, value in overrides.items():
        plain_update.setdefault(base_id, {})["recurrenceOverrides"] = value or None
    plain = dataclasses.replace(request, update=plain_update or None,
                                destroy=plain_destroy or None)  # fmt: skip
    result = plain.run(db, careful)
    updated = dict(result["updated"] or {})
    not_updated = dict(result["notUpdated"] or {})
    destroyed = list(result["destroyed"] or [])
    not_destroyed = dict(result["notDestroyed"] or {})
    for key, base_id in owner.items():
        ok = base_id in updated
        if key in instance_updates:
            if ok:
                updated[key] = None
            else:
                not_updated[key] = not_updated.get(base_id, {"type": "notFound"})
        elif ok:
            destroyed.append(key)
        else:
            not_destroyed[key] = not_updated.get(base_id, {"type": "notFound"})
    for key, error in failed.items():
        (not_updated if key in instance_updates else not_destroyed)[key] = error
    for base_id in overrides:  # (the base events changed only for their instances)
        if base_id not in (update or {}) and base_id in updated:
            del updated[base_id]
        if base_id not in (update or {}):
            not_updated.pop(base_id, None)
    result.update(updated=updated or None, notUpdated=not_updated or None,
                  destroyed=destroyed or None, notDestroyed=not_destroyed or None)
    return result
