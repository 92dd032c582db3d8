"""The occurrences of recurring events, expanded once and kept: a month view asks for the
same series again and again, and expanding 500 of them per query (recur.py, in Python)
cost ~0.2 ms each, most of a month view's time.

Two caches, both exact, neither a second source of truth:

- a :class:`Series` per event *content* (its id and the JSON of the properties that decide
  its occurrences): every occurrence from the start to a horizon, in UTC, sorted.  A change
  to any of those properties is a new key, so a Series is never stale; an old one is
  dropped by the LRU.
- a :class:`Timeline` per account: {event id: Series} of the account's recurring events
  at a CalendarEvent modseq.  A query reads the modseq in its own read transaction; a
  Timeline behind it is brought up to date from the change log (the events changed since:
  re-read, re-keyed; and those whose owner changed only their per-user values, which
  write no change row), or rebuilt when the log no longer reaches back (compaction).  Several
  processes each keep their own; the modseq makes each one exact.

A Series stops at a horizon (now + HORIZON_YEARS when built) and holds at most
MAX_OCCURRENCES; an event whose rule goes on past it is expanded live (recur.py) for a query
that reaches beyond its last kept occurrence.  A floating event (no timeZone) depends on the
query's time zone and is always expanded live, as is one whose recurrence recur.py refuses
to expand in full (it may still be expandable over a narrow window).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from jmap_host import dialect, expect_long_read, objectstore, sharing

from . import jscalendar, recur

HORIZON_YEARS = 5
MAX_OCCURRENCES = 5000  # per Series; more and the event is expanded live
MAX_KEPT = 300_000  # occurrences kept in all (about 300 bytes each), least recently used out
MAX_TIMELINES = 64  # accounts
# What decides an event's occurrences (and is read to build its Series).
TIMING = ("start", "timeZone", "duration", "recurrenceRule", "recurrenceOverrides")
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)  # the capability's minDateTime


@dataclass
class Series:
    """Every occurrence of one event up to ``until`` (UTC), in start order; ``live``: not
    kept, expand per query."""

    occurrences: list[recur.Occurrence] = field(default_factory=list)
    starts: list[dt.datetime] = field(default_factory=list)
    by_rid: dict[str, recur.Occurrence] = field(default_factory=dict)
    until: dt.datetime | None = None  # None: all of them are here
    longest: dt.timedelta = dt.timedelta(0)  # the longest occurrence (for overlap bounds)
    live: bool = False  # (also once dropped from the cache: a Timeline may still name it)

    def covers(self, high: dt.datetime) -> bool:
        return not self.live and (self.until is None or high <= self.until)

    def drop(self) -> None:
        """Free its occurrences: whoever still holds it expands the event live."""
        self.live = True
        self.occurrences, self.starts, self.by_rid = [], [], {}

    def between(self, low: dt.datetime, high: dt.datetime) -> list[recur.Occurrence]:
        """recur.occurrences' answer for [low, high): those overlapping it (a zero-length
        one when it starts inside it)."""
        first = bisect.bisect_left(self.starts, recur.shift(low, -self.longest))
        last = bisect.bisect_left(self.starts, high)
        return [o for o in self.occurrences[first:last]
                if o.end > low or (o.start == o.end and o.start >= low)]  # fmt: skip


def _key(event: dict[str, Any]) -> str:
    return json.dumps([event["id"], *(event.get(p) for p in TIMING)], sort_keys=True)


def _build(event: dict[str, Any]) -> Series:
    if not event.get("timeZone") or not recur.is_recurring(event):
        return Series(live=True)
    try:
        start = jscalendar.local_datetime(event["start"])
    except (KeyError, TypeError, ValueError):
        return Series(live=True)
    horizon = dt.datetime.now(dt.UTC).replace(microsecond=0)
    horizon = horizon.replace(year=horizon.year + HORIZON_YEARS, month=1, day=1, hour=0,
                              minute=0, second=0)  # fmt: skip
    rule = event.get("recurrenceRule") or {}
    periods = (horizon.replace(tzinfo=None) - start).total_seconds() / recur.step(event)
    if rule and min(periods, rule.get("count") or periods) > MAX_OCCURRENCES:
        return Series(live=True)  # (too many to keep: not even expanded to find out)
    try:
        # (from minDateTime: an override may move an occurrence before the start)
        found = recur.occurrences(event, EARLIEST, horizon, "Etc/UTC")
    except recur.CannotExpand:
        return Series(live=True)
    if len(found) > MAX_OCCURRENCES:
        return Series(live=True)
    complete = _ends_before(event, horizon)
    return Series(
        occurrences=found, starts=[o.start for o in found],
        by_rid={o.recurrence_id: o for o in found}, until=None if complete else horizon,
        longest=max((o.end - o.start for o in found), default=dt.timedelta(0)),
    )  # fmt: skip


def _ends_before(event: dict[str, Any], horizon: dt.datetime) -> bool:
    """Does every occurrence start well before ``horizon`` (three days: any UTC offset)?"""
    margin = horizon.replace(tzinfo=None) - dt.timedelta(days=3)
    for key, patch in (event.get("recurrenceOverrides") or {}).items():
        moved = patch.get("start") if isinstance(patch, dict) else None
        if jscalendar.local_datetime(key) >= margin or (
            isinstance(moved, str) and jscalendar.local_datetime(moved) >= margin
        ):
            return False
    if not event.get("recurrenceRule"):
        return True
    last = recur.last_start(event, MAX_OCCURRENCES)
    return last is not None and last < margin


_lock = threading.Lock()
_series: OrderedDict[str, Series] = OrderedDict()
_kept = 0  # occurrences in _series
_timelines: OrderedDict[tuple[str, str], Timeline] = OrderedDict()


def kept(event: dict[str, Any]) -> Series | None:
    """The Series of ``event`` if it is kept already (nothing is built)."""
    key = _key(event)
    with _lock:
        found = _series.get(key)
        if found is not None:
            _series.move_to_end(key)
        return found


def series_for(event: dict[str, Any]) -> Series:
    """The Series of ``event`` (a record with its id and the TIMING properties), built if
    it is not kept."""
    global _kept
    found = kept(event)
    if found is not None:
        return found
    built = _build(event)  # (outside the lock: readers run in several threads)
    key = _key(event)
    with _lock:
        if key not in _series:
            _series[key] = built
            _kept += len(built.occurrences)
        while _kept > MAX_KEPT and len(_series) > 1:
            _, old = _series.popitem(last=False)
            _kept -= len(old.occurrences)
            old.drop()
    return built


@dataclass
class Timeline:
    modseq: int
    events: dict[str, Series]  # the account's recurring events (flag "expand") by id


def timeline(db: Any, event_type: Any, account: str, modseq: int, low: int) -> Timeline:
    """The account's Timeline at ``modseq`` (the CalendarEvent state this read transaction
    sees; ``low``: the oldest one its change log reaches back to)."""
    # (per database as well: a process may run several hosts, e.g. tests, and account ids
    # are the same in each)
    place = (dialect(db).database_key(db), account)
    with _lock:
        current = _timelines.get(place)
        if current is not None:
            _timelines.move_to_end(place)
    if current is not None and current.modseq == modseq:
        return current
    if current is not None and low <= current.modseq < modseq:
        changed = {i for _, i, _ in objectstore.changes_since(
            db, account, event_type.name, current.modseq, modseq - current.modseq)}  # fmt: skip
        # The owner's per-user writes change the record with no change row of the account's
        # (per-occurrence ones are in recurrenceOverrides): their own rows say which.
        changed |= {i for _, i, _ in sharing.per_user_changes(
            db, event_type, account, account, current.modseq)}  # fmt: skip
        events = {k: v for k, v in current.events.items() if k not in changed}
        events.update(_read(db, event_type, account, sorted(changed)))
    else:
        events = _read(db, event_type, account, None)
    fresh = Timeline(modseq, events)
    with _lock:
        held = _timelines.get(place)
        if held is None or held.modseq <= modseq:
            _timelines[place] = fresh
            _timelines.move_to_end(place)
        while len(_timelines) > MAX_TIMELINES:
            _timelines.popitem(last=False)
    return fresh


def _read(db: Any, event_type: Any, account: str, ids: list[str] | None) -> dict[str, Series]:
    """{id: Series} of the recurring or floating events among ``ids`` (None: all)."""
    flag = objectstore.derived_column("expand")
    sql = f"SELECT id FROM [{event_type.table}] WHERE account = ? AND [{flag}] = '1'"
    params: list[Any] = [account]
    wanted: list[str] = []
    if ids is None:
        wanted = [r[0] for r in db.execute(sql, params).fetchall()]
    else:
        for n in range(0, len(ids), 500):
            chunk = ids[n : n + 500]
            wanted += [r[0] for r in db.execute(
                f"{sql} AND id IN ({', '.join('?' * len(chunk))})", [*params, *chunk])]  # fmt: skip
    records = objectstore.read_records(db, event_type, account, wanted, list(TIMING))
    # Building is Python work the read's SQL budget does not see: more than a few series
    # to build moves the read off the event loop (about 3 ms each, at most).
    to_build = sum(1 for r in records if kept(r) is None)
    expect_long_read(db, 0.003 * to_build)
    return {r["id"]: series_for(r) for r in records}
