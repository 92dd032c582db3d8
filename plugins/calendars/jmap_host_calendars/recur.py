"""The occurrences of an event (JSCalendar 2.0 §3.3): its recurrenceRule expanded with
python-dateutil's rrule (RFC 5545 RECUR semantics, which §3.3.3 maps), in the event's
local time, then its recurrenceOverrides (added dates, exclusions, patched starts); each
occurrence converted to UTC in the event's time zone with the §1.5.5 rule, so a weekly
09:00 in Berlin is 08:00Z in winter and 07:00Z in summer.

Bounded: at most MAX_STEPS candidate occurrences are looked at per event and query
(``cannotCalculateOccurrences`` past it, draft-ietf-jmap-calendars §5.11), and only
the gregorian rscale with skip "omit" (dateutil's) is expanded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dateutil import rrule

from . import jscalendar

MAX_STEPS = 100_000  # candidate occurrences per event per query
FREQUENCY = {"yearly": rrule.YEARLY, "monthly": rrule.MONTHLY, "weekly": rrule.WEEKLY,
             "daily": rrule.DAILY, "hourly": rrule.HOURLY, "minutely": rrule.MINUTELY,
             "secondly": rrule.SECONDLY}  # fmt: skip
WEEKDAY = {"mo": rrule.MO, "tu": rrule.TU, "we": rrule.WE, "th": rrule.TH, "fr": rrule.FR,
           "sa": rrule.SA, "su": rrule.SU}  # fmt: skip


class CannotExpand(Exception):
    """This event's recurrence cannot be expanded here (cannotCalculateOccurrences)."""


@dataclass(frozen=True)
class Occurrence:
    recurrence_id: str  # the LocalDateTime the rule (or an override key) produced
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC
    patch: dict[str, Any] | None  # the override's patch, if any


def _rule(event: dict[str, Any], start: dt.datetime) -> rrule.rrule | None:
    rule = event.get("recurrenceRule")
    if not rule:
        return None
    if rule.get("rscale", "gregorian") != "gregorian" or rule.get("skip", "omit") != "omit":
        raise CannotExpand("only the gregorian calendar with skip omit is expanded")
    kwargs: dict[str, Any] = {"dtstart": start, "interval": rule.get("interval", 1),
                              "wkst": WEEKDAY[rule.get("firstDayOfWeek", "mo")]}  # fmt: skip
    if rule.get("byDay"):
        kwargs["byweekday"] = [
            WEEKDAY[d["day"]](d["nthOfPeriod"]) if d.get("nthOfPeriod") else WEEKDAY[d["day"]]
            for d in rule["byDay"]
        ]
    for name, key in (("byMonthDay", "bymonthday"), ("byYearDay", "byyearday"),
                      ("byWeekNo", "byweekno"), ("byHour", "byhour"), ("byMinute", "byminute"),
                      ("bySecond", "bysecond"), ("bySetPosition", "bysetpos")):  # fmt: skip
        if rule.get(name):
            kwargs[key] = list(rule[name])
    if rule.get("byMonth"):
        if any(not str(m).isdigit() for m in rule["byMonth"]):
            raise CannotExpand("leap months (byMonth '3L') are not expanded")
        kwargs["bymonth"] = [int(m) for m in rule["byMonth"]]
    if rule.get("until"):
        kwargs["until"] = jscalendar.local_datetime(rule["until"])
    if not _can_produce(kwargs):
        return None  # (it produces nothing: the start is the only occurrence)
    try:
        plain = rrule.rrule(FREQUENCY[rule["frequency"]], **kwargs)
    except (ValueError, KeyError) as exc:
        raise CannotExpand(str(exc)) from None
    count = rule.get("count")
    if count is None:
        return plain
    # §3.3.3.1: the start is always the first occurrence, and counted, even when it does
    # not match the rule (dateutil counts only what matches).
    first = next(iter(plain), None)
    matches = first == start
    return rrule.rrule(FREQUENCY[rule["frequency"]], count=count if matches else count - 1,
                       **kwargs) if count > (0 if matches else 1) else None  # fmt: skip


# The most days each month can have (February: 29, in leap years).
MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30,
              12: 31}  # fmt: skip
MONTH_STARTS = {m: sum(MONTH_DAYS[k] for k in range(1, m)) for m in MONTH_DAYS}  # leap year


def _can_produce(kwargs: dict[str, Any]) -> bool:
    """Whether a rule can produce any date at all.  dateutil looks for the next match
    period after period up to the year 9999, whatever ``until`` says, so a rule that can
    never match (the 30th of February; the 1st day of the year in June) takes seconds of
    CPU per expansion: such a rule is known here, by its month and day parts, instead."""
    months = kwargs.get("bymonth") or list(MONTH_DAYS)
    month_days = kwargs.get("bymonthday")
    if month_days and not any(abs(d) <= MONTH_DAYS.get(m, 0) for m in months
                              for d in month_days):  # fmt: skip
        return False
    year_days = kwargs.get("byyearday")
    if year_days and kwargs.get("bymonth"):
        # (a year day falls in one month, in a common year or a leap one: forwards within
        # a day of MONTH_STARTS, backwards within a day of 366 minus them)
        def month_of(day: int) -> set[int]:
            forward = [day] if day > 0 else [367 + day, 366 + day]
            return {m for n in forward for m in MONTH_DAYS
                    if MONTH_STARTS[m] < n <= MONTH_STARTS[m] + MONTH_DAYS[m] + 1}  # fmt: skip

        if not any(month_of(d) & set(months) for d in year_days):
            return False
    return True


def shift(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``moment + delta``, held at datetime's limits (a query without after or before
    has the limits of time as its bounds)."""
    try:
        return moment + delta
    except OverflowError:
        limit = dt.datetime.max if delta > dt.timedelta(0) else dt.datetime.min
        return limit.replace(tzinfo=moment.tzinfo)


def margin(length: str) -> dt.timedelta:
    """How far beyond a window an occurrence of duration ``length`` may start and still
    overlap it: three days (any UTC offset) and the whole duration, its time part too."""
    days, seconds = jscalendar.duration(length)
    return dt.timedelta(days=3 + days + -(-seconds // 86400))


def occurrences(
    event: dict[str, Any], after: dt.datetime, before: dt.datetime, floating_zone: str
) -> list[Occurrence]:
    """The occurrences overlapping [after, before) (UTC): whose end is after ``after`` and
    start before ``before`` (draft §5.11.1); a floating event is read in ``floating_zone``."""
    start = jscalendar.local_datetime(event["start"])
    zone = event.get("timeZone") or floating_zone
    length = event.get("duration") or "PT0S"
    overrides = event.get("recurrenceOverrides") or {}
    found: list[Occurrence] = []

    def consider(recurrence_id: dt.datetime, patch: dict[str, Any] | None) -> None:
        local = recurrence_id
        this_length = length
        if patch:
            if isinstance(patch.get("start"), str):
                local = jscalendar.local_datetime(patch["start"])
            if isinstance(patch.get("duration"), str):
                this_length = patch["duration"]
        begin = jscalendar.to_utc(local, zone)
        end = jscalendar.add_duration(local, zone, this_length)
        if (end > after and begin < before) or (begin == end and after <= begin < before):
            rid = recurrence_id.strftime("%Y-%m-%dT%H:%M:%S")
            found.append(Occurrence(rid, begin, end, patch))

    rule = _rule(event, start)
    # Local times that surely lie outside the window (three days cover any UTC offset, the
    # duration's days any length; overridden occurrences are looked at wherever they are).
    wider = max([margin(length), *(margin(p["duration"]) for p in overrides.values()
                                   if isinstance(p, dict) and isinstance(p.get("duration"), str))])
    window_end_local = shift(before.replace(tzinfo=None), wider)
    window_start_local = shift(after.replace(tzinfo=None), -wider)
    if rule is None:
        candidates = [start]  # the start alone (then any override dates)
    else:
        _check_steps(event, start, window_end_local)
        # dateutil walks the rule in C-speed steps up to the window; the start is the first
        # occurrence whether or not the rule produces it (§3.3.3.1).
        candidates = rule.between(window_start_local, window_end_local, inc=True)
        if window_start_local <= start <= window_end_local and start not in candidates:
            candidates.insert(0, start)
        moved = [jscalendar.local_datetime(k) for k in overrides]
        candidates += [m for m in moved if (m < window_start_local or m > window_end_local)
                       and _produces(event, rule, start, m)]  # fmt: skip
    seen: set[dt.datetime] = set()
    for local in candidates:
        seen.add(local)
        patch = overrides.get(local.strftime("%Y-%m-%dT%H:%M:%S")) if overrides else None
        if patch == {"excluded": True}:
            continue
        consider(local, patch)
    for key, patch in overrides.items():  # dates the rule does not produce: added (RDATE)
        local = jscalendar.local_datetime(key)
        if local in seen or patch == {"excluded": True}:
            continue
        consider(local, patch)
    found.sort(key=lambda o: (o.start, o.recurrence_id))
    return found


def makes(event: dict[str, Any], key: str, otherwise: bool = False) -> bool:
    """Does the event's recurrence rule make the occurrence ``key`` (a recurrence id), its
    overrides aside?  The start always is one (§3.3.3.1).  ``otherwise``: the answer when
    the rule cannot be expanded here (or ``key`` is no LocalDateTime)."""
    if not event.get("recurrenceRule"):
        return False
    try:
        start = jscalendar.local_datetime(event["start"])
        local = jscalendar.local_datetime(key)
        rule = _rule(event, start)
        return local == start or (rule is not None and _produces(event, rule, start, local))
    except (CannotExpand, KeyError, TypeError, ValueError):
        return otherwise


def _produces(
    event: dict[str, Any], rule: rrule.rrule, start: dt.datetime, local: dt.datetime
) -> bool:
    """Is ``local`` an occurrence of the rule (an override's key far from the window)?
    dateutil walks there from the start: past MAX_STEPS periods it is refused."""
    if local == start:
        return True
    if (local - start).total_seconds() / step(event) > MAX_STEPS:
        raise CannotExpand(f"more than {MAX_STEPS} occurrences to look at")
    return local in rule.between(local, local, inc=True)


SECONDS = {"yearly": 365 * 86400, "monthly": 28 * 86400, "weekly": 7 * 86400,
           "daily": 86400, "hourly": 3600, "minutely": 60, "secondly": 1}  # fmt: skip


def step(event: dict[str, Any]) -> int:
    """The seconds one period of the event's rule spans, at least."""
    rule = event.get("recurrenceRule") or {}
    return SECONDS.get(rule.get("frequency", ""), 86400) * max(1, rule.get("interval", 1))


def _check_steps(event: dict[str, Any], start: dt.datetime, until: dt.datetime) -> None:
    """Refuse what would take dateutil more than MAX_STEPS periods to reach the window."""
    rule = event.get("recurrenceRule") or {}
    periods = (until - start).total_seconds() / step(event)
    if rule.get("count") is not None:
        periods = min(periods, rule["count"])
    if periods > MAX_STEPS:
        raise CannotExpand(f"more than {MAX_STEPS} occurrences to look at")


def is_recurring(event: dict[str, Any]) -> bool:
    return bool(event.get("recurrenceRule") or event.get("recurrenceOverrides"))


def last_start(event: dict[str, Any], most: int) -> dt.datetime | None:
    """The local start of the rule's last occurrence (overrides aside), or None when the
    rule has no end or more than ``most`` occurrences (or cannot be expanded)."""
    rule_json = event.get("recurrenceRule") or {}
    if rule_json.get("until") is not None:
        return jscalendar.local_datetime(rule_json["until"])
    if rule_json.get("count") is None or rule_json["count"] > most:
        return None
    start = jscalendar.local_datetime(event["start"])
    try:
        rule = _rule(event, start)
    except CannotExpand:
        return None
    produced = list(rule) if rule is not None else []
    return max([start, *produced])
