"""Firing alerts (draft-ietf-jmap-calendars §6, §9.3.2): a background scheduler that pushes a
CalendarAlert (§6.4) to the user's push channels when an alert of one of their events comes
due.

Whose (§5.4: alerts are per-user): the account owner's, and each sharee's own (the
calendars shared with them that they subscribed to, their per-user ``alerts`` and
``useDefaultAlerts`` and default alerts, as jmap_host.sharing presents the account to
them; a share with a group alerts no one yet).

Which alerts (§6, §6.1): the events in at least one Calendar the user is subscribed to
(``isSubscribed``), drafts left out; an event's ``alerts``, or with ``useDefaultAlerts``
the ``defaultAlertsWithTime`` (``defaultAlertsWithoutTime`` when ``showWithoutTime``) of
all its Calendars, with the event's own ``acknowledged`` times for those ids and its
snooze alerts (``relatedTo`` ``snooze`` pointing at a default alert, §6.3).  An
OffsetTrigger (JSCalendar §3.5.1) counts from each occurrence's start or end (the
recurrence expanded by recur.py in the event's time zone, or for a floating event the
calendar's, so DST is exact; an offset's days are nominal days in that zone), with each
occurrence's overridden alerts; an AbsoluteTrigger fires once at its time (in a recurring
event: a snooze for the occurrence whose alert it snoozes, §6.3; one in an override for
that occurrence; another for the first occurrence not yet over then, or the first).  An
alert whose ``acknowledged`` is at or after its trigger time does not fire (§6.2);
unknown trigger types never fire.

When: the scheduler indexes the trigger times in ``[now - catch-up, now + horizon]`` over
every account, sleeps until the next one, and is woken early by any Calendar or
CalendarEvent change (the push hub's ``watch``: only the changed accounts are indexed
again); the whole index is rebuilt every half horizon.  Each alert fires once: the firing
(account, user, event, recurrenceId, alert id, trigger time) is recorded in
``calendars_alert_fired`` in the same transaction that decides it, before it is pushed,
so a restart never fires it again (at most once: a crash between the commit and the push
loses that one push).  At most max-per-minute times the indexed window's minutes firings
are indexed per event and per user, the earliest (§9.3.2: a minutely event with many
alerts must not fill memory); an account changed many times in a row is read once.  An
alert that came due while the server was down fires late, once, when it is at most
``catch-up`` late; later than that it is dropped (logged).  At most
``max-per-minute`` alerts fire per user (§9.3.2); past that they are recorded as dropped.

Push: ``host.push.publish_object(user, "CalendarAlert", ...)`` to the alerted user only;
a "display" alert (or a vendor action) is pushed.  An "email" alert is not pushed
(§6: clients MUST NOT act on it): a plain-text reminder is queued through the host's
messaging service (jmap_host.messaging, the mail plugin's queue) from and to the user's
first address, the directory's and so verified (§9.3.2), in the same transaction that
records the firing; then its ``acknowledged`` is set on the event (JSCalendar §3.5.1: at
once for an action that gives no feedback), by a CalendarEvent/set as the user.  Without
a mail transport or an address it is recorded as ``email-unsent`` and logged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.policy
import email.utils
import logging
import re
import time
import zoneinfo
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import sqlite_utils
import trio

from jmap_host import (
    Account,
    Duration,
    Host,
    Int,
    Key,
    LocalClient,
    MethodFailed,
    NoMailTransport,
    Principal,
    account_owners,
    dates,
    messaging,
    objectstore,
    sharing,
)

from . import jscalendar, recur
from .calendar import CALENDAR
from .calendar import subscribed as calendar_subscribed
from .event import EVENT

log = logging.getLogger("jmap_host_calendars.alerts")

CONFIG = "plugins.calendars.alerts"
FIRED = "calendars_alert_fired"
PUSH_TYPE = "CalendarAlert"
EVENT_NAME = "calendarAlert"  # §6.4: the EventSource event's name
UTC = dt.UTC
SIGNED = re.compile(r"([+-]?)(P.*)")
READ_PROPERTIES = ["calendarIds", "uid", "isDraft", "start", "timeZone", "duration",
                   "showWithoutTime", "recurrenceRule", "recurrenceOverrides",
                   "useDefaultAlerts", "alerts"]  # fmt: skip
RETRY = 30.0  # seconds before trying again after a failed pass
DEBOUNCE = 0.25  # seconds of further changes gathered before an account is read again

migrations = sqlite_utils.Migrations("jmap-host-calendars:alerts")


@migrations(name="fired")
def create_fired(db: sqlite_utils.Database) -> None:
    """What fired: one row per alert firing, so none fires twice."""
    db[FIRED].create(
        {
            "account": str,
            "user": str,  # the alerted sharee's account id; "" for the account's owner
            "event": str,
            "recurrence_id": str,  # "" for an event that does not recur
            "alert": str,
            "trigger_at": str,  # UTCDateTime
            "principal": str,
            "fired_at": str,
            "outcome": str,  # pushed, emailed, email-unsent, rate-limited, no-user
        },
        pk=("account", "user", "event", "recurrence_id", "alert", "trigger_at"),
    )
    db[FIRED].create_index(["trigger_at"])


def config_keys() -> list[tuple[str, Key]]:
    return [
        (CONFIG, Key("catch-up", Duration(), default=3600.0,
                     doc="an alert that came due while the server was down fires late if at "
                         "most this late; later ones are dropped")),
        (CONFIG, Key("horizon", Duration(), default=2 * 86400.0,
                     doc="how far ahead trigger times are indexed (rebuilt every half)")),
        (CONFIG, Key("max-per-minute", Int(min=1), default=30,
                     doc="alerts fired per user per minute (§9.3.2); more are dropped")),
    ]  # fmt: skip


@dataclass(frozen=True, order=True)
class Due:
    """One alert of one occurrence, due at ``at``."""

    at: dt.datetime
    account: str
    event_id: str
    recurrence_id: str  # "" when the event does not recur
    alert_id: str
    uid: str
    action: str
    user: str = ""  # the alerted sharee's account id; "" for the account's owner

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        return (self.account, self.user, self.event_id, self.recurrence_id, self.alert_id,
                jscalendar.utc_text(self.at))  # fmt: skip

    def push_object(self) -> dict[str, Any]:
        """The CalendarAlert object (§6.4)."""
        return {"@type": PUSH_TYPE, "accountId": self.account, "calendarEventId": self.event_id,
                "uid": self.uid, "recurrenceId": self.recurrence_id or None,
                "alertId": self.alert_id}  # fmt: skip


# -- which alerts, when ----------------------------------------------------------------------


def signed_offset(text: str) -> tuple[int, int, int]:
    """A SignedDuration (JSCalendar §1.5.7) as (sign, nominal days, seconds)."""
    m = SIGNED.fullmatch(text)
    if not m:
        raise ValueError(text)
    days, seconds = jscalendar.duration(m[2])
    return (-1 if m[1] == "-" else 1), days, seconds


def shift(moment: dt.datetime, zone: str, offset: str) -> dt.datetime:
    """``moment`` (UTC) moved by the offset: its days as nominal days in ``zone`` (so a
    "-P1D" alert is at the same wall-clock time the day before, across DST), then its
    time as exact time."""
    sign, days, seconds = signed_offset(offset)
    try:
        if days:
            local = moment.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None)
            moment = jscalendar.to_utc(local + dt.timedelta(days=sign * days), zone)
        return moment + dt.timedelta(seconds=sign * seconds)
    except OverflowError as exc:  # (outside datetime's years 1 to 9999: it never fires)
        raise ValueError(f"{offset}: out of range") from exc


EARLIEST = dt.datetime.min.replace(tzinfo=UTC) + dt.timedelta(days=3)
LATEST = dt.datetime.max.replace(tzinfo=UTC) - dt.timedelta(days=3)


def _plus(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """``moment + delta`` held within datetime's range (less the days a time zone or a
    nominal day may add), for the bounds of an expansion window."""
    try:
        return min(max(moment + delta, EARLIEST), LATEST)
    except OverflowError:
        return EARLIEST if delta < dt.timedelta(0) else LATEST


def effective_alerts(
    view: dict[str, Any], calendars: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The alerts that apply (§6.1): the event's own, or its calendars' defaults with the
    event's acknowledged times for them and the event's snoozes of them."""
    own = view.get("alerts") or {}
    if not view.get("useDefaultAlerts"):
        return {k: a for k, a in own.items() if isinstance(a, dict)}
    which = "defaultAlertsWithoutTime" if view.get("showWithoutTime") else "defaultAlertsWithTime"
    found: dict[str, dict[str, Any]] = {}
    for calendar in calendars:
        for alert_id, alert in (calendar.get(which) or {}).items():
            if isinstance(alert, dict):
                found[alert_id] = dict(alert)
    for alert_id, alert in own.items():
        if not isinstance(alert, dict):
            continue
        if alert_id in found and alert.get("acknowledged"):
            found[alert_id]["acknowledged"] = alert["acknowledged"]
        elif set(alert.get("relatedTo") or {}) & set(found):
            found[alert_id] = alert  # a snooze of a default alert (§6.1, §6.3)
    return found


def _occurrence_view(event: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    """The alert-related properties of one occurrence: the event's with the override's
    patch of them applied."""
    names = {"alerts", "useDefaultAlerts", "showWithoutTime"}
    return jscalendar.patched({k: event.get(k) for k in names}, patch, only=names)


def event_triggers(
    account: str,
    event: dict[str, Any],
    calendars: list[dict[str, Any]],
    zone: str,
    low: dt.datetime,
    high: dt.datetime,
    limit: int | None = None,
) -> list[Due]:
    """The alert firings of ``event`` due in [low, high), acknowledged ones left out; with
    ``limit``, only the earliest ``limit`` (§9.3.2: a frequent recurrence with many alerts
    is not indexed in full; the occurrences past the last kept are not looked at)."""
    base = effective_alerts(event, calendars)
    overrides = event.get("recurrenceOverrides") or {}
    if not base and not any(
        isinstance(p, dict) and any(k.split("/")[0] in ("alerts", "useDefaultAlerts") for k in p)
        for p in overrides.values()
    ):
        return []
    recurring = recur.is_recurring(event)
    event_zone = event.get("timeZone") or zone
    # (an alert whose occurrences would lie past the years a datetime holds never fires,
    # and must not widen the expansion to those years)
    spans = [s for s in map(_reach, base.values()) if _reachable(s, low, high)]
    spans = spans or [(dt.timedelta(0), dt.timedelta(0))]
    earliest = min(s[0] for s in spans)
    latest = max(s[1] for s in spans)
    slack = dt.timedelta(days=1)  # (nominal days across a DST change, overridden alerts)
    try:
        found = recur.occurrences(event, _plus(low, -latest - slack),
                                  _plus(high, -earliest + slack), zone)  # fmt: skip
    except (recur.CannotExpand, ValueError, KeyError, OverflowError,
            zoneinfo.ZoneInfoNotFoundError) as exc:  # fmt: skip
        log.info("alerts of event %s in %s not expanded: %s", event["id"], account, exc)
        return []
    out: list[Due] = []
    uid = event.get("uid") or ""
    cutoff: dt.datetime | None = None  # (with a limit: the latest firing kept so far)
    nominal = slack if any(_days(a) for a in base.values()) else dt.timedelta(0)
    for occ in found:
        if limit is not None and len(out) >= (limit if cutoff is None else 2 * limit):
            out = sorted(out)[:limit]
            cutoff = out[-1].at
        if cutoff is not None and _plus(occ.start, earliest - nominal) > cutoff:
            break  # (occurrences come in order of start: none of the rest is earlier)
        alerts = base if not occ.patch else effective_alerts(
            _occurrence_view(event, occ.patch), calendars)  # fmt: skip
        rid = occ.recurrence_id if recurring else ""
        for alert_id, alert in alerts.items():
            trigger = alert.get("trigger")
            if not isinstance(trigger, dict):
                continue
            kind = trigger.get("@type", "OffsetTrigger")
            if kind != "OffsetTrigger" or not isinstance(trigger.get("offset"), str):
                continue  # AbsoluteTrigger: below; UnknownTrigger: never (§3.5.1)
            relative = occ.end if trigger.get("relativeTo") == "end" else occ.start
            try:
                at = shift(relative, event_zone, trigger["offset"])
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                continue
            if low <= at < high and not _acknowledged(alert, at):
                out.append(Due(at, account, event["id"], rid, alert_id, uid, _action(alert)))
    # AbsoluteTriggers: once each, wherever the alerts property holding them is (§6.3: a
    # snooze goes beside the alert it snoozes): the event's own ...
    for alert_id, alert in base.items():
        at = _absolute(alert, low, high)
        if at is not None:
            rid = _snoozed_occurrence(event, base, alert, zone) if recurring else ""
            out.append(Due(at, account, event["id"], rid, alert_id, uid, _action(alert)))
    # ... and every override's, for its occurrence, wherever that occurrence lies.
    for rid, patch in overrides.items():
        if (
            not recurring
            or not isinstance(patch, dict)
            or patch.get("excluded")
            or not any(k.split("/")[0] in ("alerts", "useDefaultAlerts") for k in patch)
        ):
            continue
        view = effective_alerts(_occurrence_view(event, patch), calendars)
        for alert_id, alert in view.items():
            if base.get(alert_id) == alert:
                continue  # (the event's own, not overridden: fired above)
            at = _absolute(alert, low, high)
            if at is not None:
                out.append(Due(at, account, event["id"], rid, alert_id, uid, _action(alert)))
    return out if limit is None else sorted(out)[:limit]


def cap_per_user(index: dict[str, list[Due]], limit: int) -> dict[str, list[Due]]:
    """The index with at most ``limit`` firings per alerted user (§9.3.2), the earliest,
    across the accounts they are alerted in."""
    by_user: dict[str, list[Due]] = {}
    for dues in index.values():
        for d in dues:
            by_user.setdefault(d.user or d.account, []).append(d)
    kept = {d.key for dues in by_user.values() for d in sorted(dues)[:limit]}
    return {a: [d for d in dues if d.key in kept] for a, dues in index.items()}


def _absolute(alert: dict[str, Any], low: dt.datetime, high: dt.datetime) -> dt.datetime | None:
    """The time of an AbsoluteTrigger alert if it is due in [low, high) and not
    acknowledged (§6.2), else None."""
    trigger = alert.get("trigger")
    if not isinstance(trigger, dict) or trigger.get("@type") != "AbsoluteTrigger":
        return None
    at = _moment(trigger.get("when"))
    if at is None or not (low <= at < high) or _acknowledged(alert, at):
        return None
    return at


def _reach(alert: dict[str, Any]) -> tuple[dt.timedelta, dt.timedelta]:
    """How far before and after an occurrence's start its trigger may lie (an end-relative
    one: up to the event's length later, allowed for by recur's overlap rule)."""
    trigger = alert.get("trigger")
    if not isinstance(trigger, dict) or not isinstance(trigger.get("offset"), str):
        return dt.timedelta(0), dt.timedelta(0)
    try:
        sign, days, seconds = signed_offset(trigger["offset"])
        offset = sign * dt.timedelta(days=days, seconds=seconds)
    except (ValueError, OverflowError):  # (an offset past timedelta's range never fires)
        return dt.timedelta(0), dt.timedelta(0)
    return min(offset, dt.timedelta(0)), max(offset, dt.timedelta(0))


def _days(alert: dict[str, Any]) -> int:
    """The nominal days of an OffsetTrigger's offset (0 for any other trigger)."""
    trigger = alert.get("trigger")
    if not isinstance(trigger, dict) or not isinstance(trigger.get("offset"), str):
        return 0
    try:
        return signed_offset(trigger["offset"])[1]
    except ValueError:
        return 0


def _reachable(span: tuple[dt.timedelta, dt.timedelta], low: dt.datetime,
               high: dt.datetime) -> bool:  # fmt: skip
    """Whether an occurrence whose trigger is ``span`` from it can be due in [low, high)."""
    try:
        return low - span[0] <= LATEST and high - span[1] >= EARLIEST
    except OverflowError:
        return False


def _snoozed_occurrence(
    event: dict[str, Any], alerts: dict[str, dict[str, Any]], alert: dict[str, Any],
    zone: str, depth: int = 0,
) -> str:  # fmt: skip
    """The recurrence id an AbsoluteTrigger alert of a recurring event is about (§6.4:
    never null for a recurring event): for a snooze (§6.3, ``relatedTo`` ``snooze``), the
    occurrence whose firing of the parent alert it snoozes, the last one due at or before
    the parent was acknowledged (or the snooze's time); else the first occurrence not
    over at its time; else the event's first."""
    at = _moment(alert["trigger"].get("when")) or dt.datetime.now(UTC)
    parents = [k for k, r in (alert.get("relatedTo") or {}).items() if isinstance(r, dict)
               and isinstance(r.get("relation"), dict) and r["relation"].get("snooze")]  # fmt: skip
    parent = next((alerts[k] for k in parents if k in alerts), None)
    trigger = parent.get("trigger") if parent else None
    if parent is not None and isinstance(trigger, dict):
        if trigger.get("@type") == "AbsoluteTrigger" and depth < 8:  # (a snooze's snooze)
            return _snoozed_occurrence(event, alerts, parent, zone, depth + 1)
        acked = _moment(parent.get("acknowledged"))
        found = _last_firing(event, parent, min(at, acked) if acked else at, zone)
        if found:
            return found
    try:
        later = recur.occurrences(event, at, _plus(at, dt.timedelta(days=366)), zone)
    except (recur.CannotExpand, ValueError, KeyError, OverflowError,
            zoneinfo.ZoneInfoNotFoundError):  # fmt: skip
        later = []
    if later:
        return later[0].recurrence_id
    return jscalendar.local_datetime(event["start"]).strftime("%Y-%m-%dT%H:%M:%S")


def _last_firing(event: dict[str, Any], parent: dict[str, Any], before: dt.datetime,
                 zone: str) -> str:  # fmt: skip
    """The recurrence id of the last occurrence whose (not overridden) ``parent`` alert
    came due at or before ``before``, looked for a day back, then a month, then a year;
    "" if none."""
    trigger = parent["trigger"]
    if not isinstance(trigger.get("offset"), str):
        return ""
    earliest, latest = _reach(parent)
    event_zone = event.get("timeZone") or zone
    for back in (1, 32, 367):
        try:
            found = recur.occurrences(
                event,
                _plus(before, -latest - dt.timedelta(days=back)),
                _plus(before, -earliest + dt.timedelta(days=1)),
                zone,
            )
        except (recur.CannotExpand, ValueError, KeyError, OverflowError,
                zoneinfo.ZoneInfoNotFoundError):  # fmt: skip
            return ""
        best: tuple[dt.datetime, str] | None = None
        for occ in found:
            if occ.patch and any(k.split("/")[0] in ("alerts", "useDefaultAlerts")
                                 for k in occ.patch):  # fmt: skip
                continue  # (its alerts are the override's: a snooze of them is there)
            relative = occ.end if trigger.get("relativeTo") == "end" else occ.start
            try:
                due = shift(relative, event_zone, trigger["offset"])
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                continue
            if due <= before and (best is None or due > best[0]):
                best = (due, occ.recurrence_id)
        if best:
            return best[1]
    return ""


def _moment(value: Any) -> dt.datetime | None:
    """A UTCDateTime (fractional seconds allowed) as an aware datetime, or None."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        return dates.to_datetime(value).astimezone(UTC)
    except ValueError:
        return None


def _acknowledged(alert: dict[str, Any], at: dt.datetime) -> bool:
    """§6.2: acknowledged at or after the trigger time."""
    when = _moment(alert.get("acknowledged"))
    return when is not None and when >= at


def _action(alert: dict[str, Any]) -> str:
    action = alert.get("action", "display")
    return action if isinstance(action, str) else "display"


CALENDAR_PROPERTIES = ["isSubscribed", "timeZone", "defaultAlertsWithTime",
                       "defaultAlertsWithoutTime"]  # fmt: skip


def account_due(
    db: sqlite_utils.Database, account: str, low: dt.datetime, high: dt.datetime,
    limit: int | None = None,
) -> list[Due]:  # fmt: skip
    """Every alert firing of ``account`` due in [low, high), for its owner (§6: events in
    calendars the owner is subscribed to)."""
    calendars = objectstore.read_records(db, CALENDAR, account, None, CALENDAR_PROPERTIES)
    events = objectstore.read_records(db, EVENT, account, None, READ_PROPERTIES)
    return _dues(account, "", calendars, events, low, high, limit)


def sharee_due(
    db: sqlite_utils.Database, access: Any, low: dt.datetime, high: dt.datetime,
    limit: int | None = None,
) -> list[Due]:  # fmt: skip
    """The alert firings due in [low, high) of a sharee (``access``, sharing.load_access)
    in the shared account: their own alerts (§5.4, per-user) of the events they see, in
    the calendars they subscribed to, with their own default alerts (§4.3)."""
    account = access.account
    calendars = objectstore.read_records(db, CALENDAR, account, access.readable(CALENDAR),
                                         CALENDAR_PROPERTIES)  # fmt: skip
    sharing.present(db, CALENDAR, access, calendars)  # (their isSubscribed, default alerts)
    ids = objectstore.query_ids(db, EVENT, account, sharing.visible_where(EVENT, access),
                                "rowid")  # fmt: skip
    events = objectstore.read_records(db, EVENT, account, ids, READ_PROPERTIES)
    sharing.present(db, EVENT, access, events)  # (their alerts; private events reduced)
    return _dues(account, access.grantee, calendars, events, low, high, limit)


def _dues(
    account: str,
    user: str,
    calendars: list[dict[str, Any]],
    events: list[dict[str, Any]],
    low: dt.datetime,
    high: dt.datetime,
    limit: int | None = None,
) -> list[Due]:
    by_id = {c["id"]: c for c in calendars}
    subscribed = {i for i, c in by_id.items() if calendar_subscribed(c)}
    if not subscribed:
        return []
    out: list[Due] = []
    for event in events:
        ids = [i for i in (event.get("calendarIds") or {}) if i in by_id]
        if event.get("isDraft") or not subscribed.intersection(ids):
            continue
        mine = [by_id[i] for i in ids]
        zone = next((c["timeZone"] for c in mine if c.get("timeZone")), None) or "Etc/UTC"
        try:
            found = event_triggers(account, event, mine, zone, low, high, limit)
        except Exception:  # (one event's bad data must not stop every other alert)
            log.exception("alerts of event %s in %s skipped", event.get("id"), account)
            continue
        out += [dataclasses.replace(d, user=user) for d in found] if user else found
    return out


def event_accounts(db: sqlite_utils.Database) -> list[str]:
    """The accounts that have events."""
    rows = db.execute(f"SELECT DISTINCT account FROM [{EVENT.table}]").fetchall()
    return [str(r[0]) for r in rows]


# -- the scheduler ---------------------------------------------------------------------------


class Scheduler:
    """One per serving host (started by the plugin's ``startup``)."""

    def __init__(self, host: Host):
        self.host = host
        settings = host.plugin_config(CONFIG, {}) or {}
        self.catch_up = dt.timedelta(seconds=settings.get("catch-up", 3600.0))
        self.horizon = dt.timedelta(seconds=settings.get("horizon", 2 * 86400.0))
        self.max_per_minute = int(settings.get("max-per-minute", 30))
        self.index: dict[str, list[Due]] = {}
        self.window_end = dt.datetime.now(UTC)
        self.refresh_at = self.window_end
        self._recent: dict[str, deque[float]] = {}  # user -> fire times (rate limit)
        self.fired = 0

    async def run(self) -> None:
        """Fire alerts until cancelled; a failed pass is logged and tried again."""
        with self.host.push.watch({CALENDAR.name, EVENT.name}) as watcher:
            changed: set[str] | None = None  # None: index every account
            while True:
                try:
                    await self._pass(changed)
                except Exception:
                    log.exception("firing calendar alerts failed; will try again")
                    self.refresh_at = dt.datetime.now(UTC)  # (everything, next time)
                    await trio.sleep(RETRY)
                    changed = None
                    continue
                delay = (self._next_wake() - dt.datetime.now(UTC)).total_seconds()
                changed = set()
                with trio.move_on_after(max(0.0, delay)):
                    changed = await watcher.wait()
                if changed:  # (an account changed many times in a row is read once)
                    with trio.move_on_after(DEBOUNCE):
                        while True:
                            changed |= await watcher.wait()

    def limit(self) -> int:
        """The most firings indexed per event and per user (§9.3.2): as many as the rate
        limit lets fire over the indexed window (catch-up and horizon)."""
        minutes = (self.catch_up + self.horizon).total_seconds() / 60
        return max(1, int(self.max_per_minute * max(1.0, minutes)))

    def _next_wake(self) -> dt.datetime:
        upcoming = [d.at for dues in self.index.values() for d in dues]
        return min([self.refresh_at, *upcoming])

    async def _pass(self, changed: set[str] | None) -> None:
        now = dt.datetime.now(UTC)
        low = now - self.catch_up
        which: set[str] | None = set(changed or ())  # the accounts to read again; None: all
        if changed is None or now >= self.refresh_at:
            which = None
            self.window_end = now + self.horizon
            self.refresh_at = now + self.horizon / 2
        if which is None or which:
            end = self.window_end
            limit = self.limit()
            sharees = await self._sharees(which)

            def read(db: sqlite_utils.Database) -> dict[str, list[Due]]:
                accounts = event_accounts(db) if which is None else sorted(which)
                out = {a: account_due(db, a, low, end, limit) for a in accounts}
                for account, entries in sharees.items():
                    for shared, principal in entries:
                        access = sharing.load_access(db, self.host, shared, principal)
                        out.setdefault(account, []).extend(
                            sharee_due(db, access, low, end, limit))  # fmt: skip
                return out

            found = await self.host.store.read(read, inline=False)
            merged = found if which is None else {**self.index, **found}
            self.index = cap_per_user(merged, limit)
        due = [d for dues in self.index.values() for d in dues if d.at <= now]
        if due:
            await self.fire(due, now)
            gone = {d.key for d in due}
            self.index = {a: [d for d in dues if d.key not in gone]
                          for a, dues in self.index.items()}  # fmt: skip

    async def _sharees(
        self, accounts: set[str] | None
    ) -> dict[str, list[tuple[Account, Principal]]]:
        """The sharees to alert in ``accounts`` (None: every account): the individual
        users a Calendar of it is shared with, each with the account as they see it."""

        def read(db: sqlite_utils.Database) -> tuple[dict[str, set[str]], dict[str, str]]:
            grants = sharing.grantees(db, CALENDAR.name, accounts)
            return grants, account_owners(db, {g for gs in grants.values() for g in gs})

        grants, names = await self.host.store.read(read)
        seen: dict[str, dict[str, tuple[Account, Principal]]] = {}
        out: dict[str, list[tuple[Account, Principal]]] = {}
        for account, grantees in grants.items():
            for grantee in sorted(grantees):
                name = names.get(grantee)
                if name is None:
                    continue  # (a group's grant: its members are not alerted yet)
                if name not in seen:
                    principal = await self.host.directory.principal(name)
                    seen[name] = {}
                    if principal is not None and principal.kind == "individual":
                        shared = await sharing.shared_accounts(self.host, principal)
                        seen[name] = {a.id: (a, principal) for a in shared}
                entry = seen[name].get(account)
                if entry is not None:
                    out.setdefault(account, []).append(entry)
        return out

    async def fire(self, due: list[Due], now: dt.datetime) -> None:
        """Record, then push, the firings not recorded yet (§6.4)."""
        late = [d for d in due if now - d.at > self.catch_up]
        for d in late:
            log.info("alert %s of event %s in %s dropped: %s late", d.alert_id, d.event_id,
                     d.account, now - d.at)  # fmt: skip
        candidates = sorted(d for d in due if now - d.at <= self.catch_up)
        stamp = jscalendar.utc_text(now)

        def fresh(db: sqlite_utils.Database) -> tuple[list[Due], dict[str, str]]:
            """The candidates not fired yet (the usual case after a re-read: none, and no
            write), and the accounts' owners."""
            return ([d for d in candidates if not _fired(db, d)],
                    account_owners(db, {d.user or d.account for d in candidates}))  # fmt: skip

        if not candidates:
            return
        candidates, owners = await self.host.store.read(fresh)
        if not candidates:
            return
        # Alerts are the user's (§5.4): an account whose owner is no individual user (a
        # group's) has no one to alert, and mail goes only to a user's own address.
        users: dict[str, Principal] = {}
        for name in set(owners.values()):
            principal = await self.host.directory.principal(name)
            if principal is not None and principal.kind == "individual":
                users[name] = principal

        def write(db: sqlite_utils.Database) -> list[tuple[Due, str, str]]:
            done: list[tuple[Due, str, str]] = []
            for d in candidates:
                owner = owners.get(d.user or d.account)  # (whom it alerts)
                if owner is None or _fired(db, d):
                    continue
                outcome = self._outcome(d, owner) if owner in users else "no-user"
                if outcome == "email":
                    outcome = self._mail(db, d, users[owner], now)
                db[FIRED].insert({
                    "account": d.account, "user": d.user, "event": d.event_id,
                    "recurrence_id": d.recurrence_id, "alert": d.alert_id,
                    "trigger_at": d.key[5], "principal": owner,
                    "fired_at": stamp, "outcome": outcome,
                })  # fmt: skip
                done.append((d, owner, outcome))
            # Rows no index can hold again (older than the catch-up window) are let go.
            oldest = jscalendar.utc_text(now - self.catch_up - dt.timedelta(days=1))
            db.execute(f"DELETE FROM [{FIRED}] WHERE trigger_at < ?", [oldest])
            return done

        for d, owner, outcome in await self.host.store.write(write):
            if outcome == "pushed":
                self.host.push.publish_object(owner, PUSH_TYPE, d.push_object())
                self.fired += 1
            elif outcome == "emailed":
                self.fired += 1
                try:
                    await self._acknowledge(users[owner], d, stamp)
                except Exception:  # (the mail is queued all the same; it fired once)
                    log.exception("email alert %s of event %s not acknowledged", d.alert_id,
                                  d.event_id)  # fmt: skip
            elif outcome == "email-unsent":
                log.warning("email alert %s of event %s in %s not sent: no mail transport "
                            "or no address for %s", d.alert_id, d.event_id, d.account,
                            owner)  # fmt: skip
            elif outcome == "rate-limited":
                log.warning("alert %s of event %s in %s dropped: more than %d alerts a "
                            "minute for %s", d.alert_id, d.event_id, d.account,
                            self.max_per_minute, owner)  # fmt: skip

    def _outcome(self, d: Due, owner: str) -> str:
        """What firing ``d`` does: the per-user rate limit first (§9.3.2)."""
        recent = self._recent.setdefault(owner, deque())
        clock = time.monotonic()
        while recent and clock - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.max_per_minute:
            return "rate-limited"
        recent.append(clock)
        return "email" if d.action == "email" else "pushed"

    def _mail(self, db: sqlite_utils.Database, d: Due, sender: Principal, now: dt.datetime) -> str:
        """Queue the reminder of an email alert in this transaction (§6); the outcome."""
        if not sender.emails or not messaging.can_send(self.host):
            return "email-unsent"
        found = objectstore.read_records(db, EVENT, d.account, [d.event_id],
                                         ["title", "start", "timeZone"])  # fmt: skip
        if not found:
            return "email-unsent"
        address = sender.emails[0]
        try:
            messaging.enqueue(db, self.host, sender, address, [address],
                              reminder(found[0], d, address, now))  # fmt: skip
        except (NoMailTransport, ValueError) as exc:
            log.warning("email alert %s of event %s not queued: %s", d.alert_id, d.event_id,
                        exc)  # fmt: skip
            return "email-unsent"
        return "emailed"

    async def _acknowledge(self, owner: Principal, d: Due, stamp: str) -> None:
        """JSCalendar §3.5.1: an email alert is acknowledged once sent, by a patch of its
        ``acknowledged`` alone (RFC 8620 §5.3 PatchObject: a client's concurrent change to
        the other alerts is kept): on the base event (§6.2: no new recurrence override),
        in the occurrence's override when the alert is overridden there, and a default
        alert copied onto the event to hold it (§6.1)."""
        using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:calendars"]
        client = LocalClient(self.host, owner, using, d.account)
        try:
            listed = (await client.call("CalendarEvent/get", ids=[d.event_id], properties=[
                "alerts", "calendarIds", "recurrenceOverrides"]))["list"]  # fmt: skip
            if not listed:
                return
            patch = await self._acknowledgement(client, listed[0], d, stamp)
            if patch is None:
                return
            answer = await client.call("CalendarEvent/set", update={d.event_id: patch})
        except MethodFailed as exc:
            answer = {"error": str(exc)}
        if d.event_id not in (answer.get("updated") or {}):
            log.warning("email alert %s of event %s not acknowledged: %s", d.alert_id,
                        d.event_id, answer)  # fmt: skip

    async def _acknowledgement(
        self, client: LocalClient, event: dict[str, Any], d: Due, stamp: str
    ) -> dict[str, Any] | None:
        """The PatchObject that sets ``acknowledged`` of alert ``d`` and nothing else."""
        token = d.alert_id.replace("~", "~0").replace("/", "~1")  # (RFC 6901)
        override = (event.get("recurrenceOverrides") or {}).get(d.recurrence_id)
        if d.recurrence_id and isinstance(override, dict):
            # (pointers into the override's own PatchObject, whose keys are pointers too)
            at = f"recurrenceOverrides/{d.recurrence_id.replace('~', '~0')}"
            alert_key = f"alerts/{d.alert_id}"
            if isinstance(override.get("alerts"), dict) and d.alert_id in override["alerts"]:
                return {f"{at}/alerts/{token}/acknowledged": stamp}
            if isinstance(override.get(alert_key), dict):
                return {f"{at}/alerts~1{token}/acknowledged": stamp}
            if any(k.startswith(alert_key + "/") for k in override):
                return {f"{at}/alerts~1{token}~1acknowledged": stamp}
        alerts = event.get("alerts")
        if isinstance(alerts, dict) and isinstance(alerts.get(d.alert_id), dict):
            return {f"alerts/{token}/acknowledged": stamp}
        # A default alert (§6.1): copied, to hold its acknowledged.
        ids = list(event.get("calendarIds") or {})
        got = await client.call("Calendar/get", ids=ids, properties=[
            "defaultAlertsWithTime", "defaultAlertsWithoutTime"])  # fmt: skip
        defaults = {k: v for c in got["list"]
                    for p in ("defaultAlertsWithTime", "defaultAlertsWithoutTime")
                    for k, v in (c.get(p) or {}).items()}  # fmt: skip
        current = defaults.get(d.alert_id)
        if current is None:
            return None
        copied = {**current, "acknowledged": stamp}
        if isinstance(alerts, dict):
            return {f"alerts/{token}": copied}
        return {"alerts": {d.alert_id: copied}}  # (no alerts at all: nothing else to keep)


def reminder(event: dict[str, Any], d: Due, address: str, now: dt.datetime) -> bytes:
    """The plain-text reminder mail of an email alert (its content is ours to choose, §6),
    from and to the user, marked auto-generated (RFC 3834) so no vacation reply answers."""
    title = event.get("title") or "(untitled event)"
    start = d.recurrence_id or event.get("start") or ""
    zone = event.get("timeZone")
    when = start.replace("T", " ") + (f" ({zone})" if zone else "")
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = address
    message["To"] = address
    message["Subject"] = f"Reminder: {title}"
    message["Date"] = email.utils.format_datetime(now)
    message["Message-ID"] = email.utils.make_msgid(domain=address.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"Reminder: {title}\nWhen: {when}\n")
    return message.as_bytes()


def _fired(db: sqlite_utils.Database, d: Due) -> bool:
    found = db.execute(
        f"SELECT 1 FROM [{FIRED}] WHERE account = ? AND [user] = ? AND event = ? AND "
        "recurrence_id = ? AND alert = ? AND trigger_at = ?", list(d.key),
    ).fetchone()  # fmt: skip
    return found is not None


async def run_scheduler(host: Host) -> None:
    await Scheduler(host).run()
