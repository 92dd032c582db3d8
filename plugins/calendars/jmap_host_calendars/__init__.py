"""The calendars plugin: draft-ietf-jmap-calendars' ``urn:ietf:params:jmap:calendars``
capability on the host's standard methods and sharing service.

Served: Calendar (§4), ParticipantIdentity (§3), CalendarEvent
(§5: JSCalendar 2.0 validation, time ranges over expanded recurrences, expandRecurrences
and its instance ids in /get and /set; per-user properties, every CalendarRight, privacy,
the /get arguments and utcStart/utcEnd on /set: peruser.py, settimes.py),
CalendarEventNotification (§7, notification.py), alerts (§6: CalendarAlert pushes and
reminder mail, each user's own, alerts.py), scheduling (§5.9.2: iTIP as iMIP through
jmap_host.messaging, scheduling.py, imip.py), Principal/getAvailability (§2,
availability.py), CalendarEvent/parse (§5.13) and ``jmap-host calendars import|export``
(iCalendar: ical.py).  Active in every deployment that installs it, like mail and
contacts (``[plugins] disabled = ["calendars"]`` leaves it out).
"""

from __future__ import annotations

from typing import Any

from jmap_host import Account, Capability, Host, MailReceiver, Method, hookimpl

from . import alerts
from .availability import availability_capability, principal_entry
from .calendar import CALENDAR, calendar_set, default_calendar
from .event import EVENT
from .identity import PARTICIPANT_IDENTITY, default_identities, identity_set
from .notification import CALENDAR_EVENT_NOTIFICATION
from .parse import CALENDARS_PARSE, calendar_event_parse
from .query import event_get, event_query, event_set

CALENDARS = "urn:ietf:params:jmap:calendars"
# The account capability's limits (§1.5.1).
MIN_DATE_TIME = "1900-01-01T00:00:00Z"
MAX_DATE_TIME = "2999-12-31T23:59:59Z"
MAX_EXPANDED_QUERY_DURATION = "P400D"


def calendars_account_capability(host: Host, account: Account) -> dict[str, Any]:
    """§1.5.1."""
    return {
        "maxCalendarsPerEvent": None,
        "minDateTime": MIN_DATE_TIME,
        "maxDateTime": MAX_DATE_TIME,
        "maxExpandedQueryDuration": MAX_EXPANDED_QUERY_DURATION,
        "maxParticipantsPerEvent": None,
        "mayCreateCalendar": not account.shared,
    }


@hookimpl
def register_capabilities(host: Host) -> list[Capability]:
    return [
        Capability(
            urn=CALENDARS,
            session={},
            account=calendars_account_capability,
            methods=[
                Method("Calendar/set", calendar_set, writes=True),
                Method("ParticipantIdentity/set", identity_set, writes=True),
                Method("CalendarEvent/get", event_get),
                Method("CalendarEvent/query", event_query),
                Method("CalendarEvent/set", event_set, writes=True),
            ],
            datatypes=[CALENDAR, EVENT, PARTICIPANT_IDENTITY, CALENDAR_EVENT_NOTIFICATION],
            principal=principal_entry,  # §2.1
            # §6.4: clients register for CalendarAlert pushes (alerts.py fires them).
            push_types={alerts.PUSH_TYPE: alerts.EVENT_NAME},
        ),
        availability_capability(),  # §1.5.2, §2.2, §2.3
        # §1.5.3: an empty object in the session and in each account.
        Capability(
            urn=CALENDARS_PARSE,
            session={},
            account=lambda host, account: {},
            primary=False,
            methods=[Method("CalendarEvent/parse", calendar_event_parse)],
            in_shared_accounts=True,
        ),
    ]


@hookimpl
def register_mail_receivers(host: Host) -> list[MailReceiver]:
    """iMIP in (§5.9.2): invitations, replies and cancellations delivered by mail."""
    from .imip import receive

    return [MailReceiver("calendars-imip", receive)]


@hookimpl
def register_commands(cli: Any) -> None:
    """``jmap-host calendars import|export`` (commands.py)."""
    from . import commands

    commands.register_commands(cli)


@hookimpl
def account_provisioned(host: Host, account: Account) -> Any:
    """A new account gets its default calendar and a participant identity per address."""

    def write(db: Any) -> None:
        default_calendar(db, account.id, account.owner.time_zone)
        default_identities(db, account.id, account.owner)

    return host.store.write(write)


@hookimpl
def migrations(host: Host) -> list[Any]:
    return [alerts.migrations]  # (the data types' tables are the host's to create)


@hookimpl
def config_keys() -> list[tuple[str, Any]]:
    return [*alerts.config_keys()]


@hookimpl
def startup(host: Host) -> None:
    """The alert scheduler (§6, alerts.py) runs in the server's background nursery."""
    if host.nursery is not None:
        # Once among the processes sharing the store (a lease), so an alert fires once.
        host.nursery.start_soon(
            host.store.run_leased, "calendars.alerts", alerts.run_scheduler, host
        )


__all__ = ["CALENDARS"]
