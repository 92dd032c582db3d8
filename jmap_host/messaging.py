"""Mail for plugins that are not the mail plugin: sending a message as a principal, and
hearing of every message delivered to a local account.

A calendar sends its iTIP messages as iMIP mail (RFC 6047) and reads the replies that
arrive; an alert with action "email" mails its user.  Neither should know how mail
leaves the server or reaches an Inbox: that is the mail plugin's (its outbound queue,
its relay, local delivery with vacation replies, quota and push).  So:

- a plugin that moves mail registers one :class:`MailTransport`
  (``register_mail_transport``); :func:`send` and :func:`enqueue` hand it a message;
- a plugin that wants to see delivered mail registers :class:`MailReceiver` objects
  (``register_mail_receivers``); the transport calls :func:`received` for every message it
  delivers to a local account, inside the write transaction that stores it.

Durability: :func:`enqueue` puts the message on the transport's durable queue inside the
caller's write transaction, so a message leaves the server if and only if the write that
caused it (an event saved) committed; nothing is sent for a write that rolled back, and a
crash after the commit loses nothing (the queue is at-least-once).  :func:`send` is the
same in a transaction of its own.  Both registries are built once, when the host starts.

Who a message is from: :func:`enqueue` and :func:`send` refuse (:class:`ForbiddenFrom`)
an envelope ``mail_from`` that is not one of the sending principal's addresses
(``Principal.emails``, case-insensitively), as EmailSubmission's forbiddenFrom does for a
client (RFC 8621 §7.5): a plugin cannot be made to send mail as somebody else, whatever
its callers put in a calendar event.  A transport raises :class:`InvalidAddress` for an
envelope address it cannot take (syntax); both are ValueErrors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .store import atomically

if TYPE_CHECKING:
    import pluggy

    from .directory import Principal
    from .host import Host

log = logging.getLogger("jmap_host.messaging")


class NoMailTransport(Exception):
    """No active plugin sends mail (is the mail plugin enabled?)."""


class InvalidAddress(ValueError):
    """An envelope address the transport cannot take (not a mail address)."""


class ForbiddenFrom(InvalidAddress):
    """The envelope sender is not one of the sending principal's addresses."""


@dataclass
class MailTransport:
    """How mail leaves the server, provided by one plugin (the mail plugin's).

    ``enqueue(db, host, sender, mail_from, recipients, message)`` queues ``message`` (an
    RFC 5322 message, CRLF line endings) for the envelope ``mail_from`` / ``recipients``
    inside the caller's write transaction ``db``, as ``sender`` (the Principal whose
    account sends it); once that commits, local recipients get it in their Inbox and the
    others through the relay.  It raises :class:`InvalidAddress` for an envelope it cannot
take.  (The host has checked that ``mail_from`` is one of ``sender``'s addresses.)
    """

    enqueue: Callable[[Any, Host, Principal, str, list[str], bytes], None]
    plugin: str = ""


@dataclass
class MailReceiver:
    """A plugin's interest in delivered mail.

    ``receive(db, host, principal, message, envelope_from)`` is called for every message
    delivered to the account of ``principal``, in the delivery's write transaction (so
    what it writes commits with the message), after the message is stored.  It returns
    the names of the data types it changed in that account (for push), or None.  It runs
    in a savepoint: an exception rolls back what it wrote and is logged; the message is
    delivered all the same.
    """

    name: str
    receive: Callable[[Any, Host, Principal, bytes, str | None], Iterable[str] | None]
    plugin: str = ""


@dataclass
class Messaging:
    """What the host knows of mail, built once (:func:`build`): ``host.messaging``."""

    transport: MailTransport | None
    receivers: list[MailReceiver]


def build(pm: pluggy.PluginManager, host: Host) -> Messaging:
    """The registries from the ``register_mail_transport`` and ``register_mail_receivers``
    hooks; two transports are a start-up error."""
    from .plugins import StartupError, call_for_each, collect

    transports = call_for_each(pm, "register_mail_transport", host=host)
    if len(transports) > 1:
        names = " and ".join(repr(p) for p, _ in transports)
        raise StartupError(f"two plugins send mail ({names}): enable only one")
    transport = None
    if transports:
        plugin, transport = transports[0]
        transport.plugin = plugin
    receivers = collect(pm, "register_mail_receivers", lambda r: r.name, "mail receiver",
                        host=host)  # fmt: skip
    return Messaging(transport, list(receivers.values()))


def can_send(host: Host) -> bool:
    """Whether an active plugin sends mail."""
    return host.messaging.transport is not None


def enqueue(
    db: Any, host: Host, sender: Principal, mail_from: str, recipients: list[str],
    message: bytes,
) -> None:
    """Queue ``message`` for ``recipients`` inside the caller's write transaction ``db``;
    it is sent once that transaction commits (and never if it rolls back).  Raises
    :class:`NoMailTransport` when no active plugin sends mail, :class:`ForbiddenFrom` when
    ``mail_from`` is not one of ``sender``'s addresses, :class:`InvalidAddress` for an
    address the transport cannot take."""
    transport = host.messaging.transport
    if transport is None:
        raise NoMailTransport("no active plugin sends mail (enable the mail plugin)")
    check_from(sender, mail_from)
    if not recipients:
        return
    transport.enqueue(db, host, sender, mail_from, list(recipients), message)


def check_from(sender: Principal, mail_from: str) -> None:
    """Raise :class:`ForbiddenFrom` unless ``mail_from`` is one of ``sender``'s addresses."""
    if mail_from.lower() not in {e.lower() for e in sender.emails}:
        raise ForbiddenFrom(f"{sender.name} may not send as {mail_from!r}")


async def send(
    host: Host, sender: Principal, mail_from: str, recipients: list[str], message: bytes
) -> None:
    """Queue ``message`` in a write transaction of its own: durable when this returns.
    Raises :class:`NoMailTransport` when no active plugin sends mail."""
    # (said before a write transaction opens; enqueue checks the sender again inside it)
    if host.messaging.transport is None:
        raise NoMailTransport("no active plugin sends mail (enable the mail plugin)")
    await host.store.write(
        lambda db: enqueue(db, host, sender, mail_from, recipients, message)
    )


def received(
    db: Any, host: Host, principal: Principal, message: bytes, envelope_from: str | None
) -> set[str]:
    """For the transport: tell every receiver of ``message``, just delivered to
    ``principal``'s account inside ``db``'s write transaction.  Returns the data types the
    receivers changed; push them after the commit (jmap_host.publish_states)."""
    changed: set[str] = set()
    for receiver in host.messaging.receivers:
        try:
            types = atomically(db, lambda r=receiver: r.receive(
                db, host, principal, message, envelope_from))  # fmt: skip
        except Exception:
            log.exception("mail receiver %s failed on a message for %s", receiver.name,
                          principal.name)  # fmt: skip
            continue
        changed.update(types or ())
    return changed
