"""Local delivery (RFC 8621 §1.5 "EmailDelivery"): a message from an MTA into a user's Inbox.

Shared by the LMTP listener (lmtp.py) and ``jmap-host deliver`` (the pipe alternative), and
usable by anything else that delivers locally (EmailSubmission to a local recipient):

- :func:`lookup` resolves an envelope address through the configured directory (a
  principal's addresses and aliases; ``user+detail@domain`` falls back to ``user@domain``);
- :func:`deliver` provisions the account if its owner never logged in, checks the quota
  (``Principal.quota``, octets, against the sizes of the Emails stored in the account),
  prepends ``Return-Path`` and ``Received``, stores the message in the Inbox with
  ``email.ingest`` in one durable write transaction, with the host's mail receivers
  (``jmap_host.messaging``: a calendar reading iMIP) in the same transaction, publishes the
  new states for push and hands the message to the VacationResponse auto-reply hook when
  that module exists.
"""

from __future__ import annotations

import inspect
import logging
import socket
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from jmap_host import Account, Host, Principal, limits_for, objectstore, quota_usage
from jmap_host import OverQuota as QuotaExceeded

from . import email
from .mailbox import MAILBOX

log = logging.getLogger("jmap_host_mail.delivery")


class OverQuota(Exception):
    """The message does not fit in the recipient's quota (RFC 3463 X.2.2)."""


@dataclass(frozen=True)
class Recipient:
    """An envelope recipient resolved through the directory."""

    address: str
    principal: Principal

    @property
    def account_id(self) -> str:
        return self.principal.account_id


def account_for(principal: Principal) -> Account:
    """The account mail for ``principal`` is delivered into (a group's shared account for
    a group address)."""
    return Account(
        id=principal.account_id,
        name=principal.emails[0] if principal.emails else principal.name,
        owner=principal,
        is_personal=principal.kind == "individual",
    )


async def lookup(host: Host, address: str) -> Principal | None:
    """The principal receiving mail for ``address``, or None.  Raises
    ``DirectoryUnavailable`` when the directory cannot answer now."""
    address = address.strip()
    if not address or "@" not in address:
        return None
    principal = await host.directory.lookup_email(address)
    if principal is None:
        local, _, domain = address.rpartition("@")
        if "+" in local:  # sub-addressing (RFC 5233): user+detail@domain
            principal = await host.directory.lookup_email(f"{local.split('+', 1)[0]}@{domain}")
    return principal


def local_hostname() -> str:
    return socket.getfqdn() or "localhost"


def trace_headers(
    envelope_from: str | None,
    recipient: str,
    *,
    protocol: str,
    helo: str | None = None,
    peer: str | None = None,
    queue_id: str | None = None,
) -> bytes:
    """``Return-Path`` (RFC 5321 §4.4: added at final delivery) and ``Received``."""
    lines = []
    if envelope_from is not None:
        lines.append(f"Return-Path: <{envelope_from}>")
    source = ""
    if helo or peer:
        source = f"from {helo or 'unknown'}" + (f" ({peer})" if peer else "") + "\r\n\t"
    stamp = format_datetime(datetime.now().astimezone())
    ident = f" id {queue_id}" if queue_id else ""
    lines.append(
        f"Received: {source}by {local_hostname()} (jmap-host) with {protocol}{ident}\r\n"
        f"\tfor <{recipient}>; {stamp}"
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def normalise_line_endings(raw: bytes) -> bytes:
    """CRLF everywhere (RFC 5322), whatever the MTA or mbox used."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


async def quota_left(host: Host, principal: Principal) -> int | None:
    """Octets a delivery may still add to the principal's account (None: no octet quota):
    its hard limit (deliveries pass the soft one) less what the account uses, as the host
    keeps it (jmap_host.quota)."""
    hard = limits_for(host, principal).hard.get("octets")
    if hard is None:
        return None
    used = await host.store.read(lambda db: quota_usage(db, principal.account_id)["octets"])
    return max(0, hard - used)


def inbox_id(db: Any, account: str) -> str:
    """The account's Inbox (role ``inbox``); recreated if the user destroyed it, since
    mail must land somewhere a client shows."""
    boxes = objectstore.read_records(db, MAILBOX, account, None, ["name", "parentId", "role"])
    for box in boxes:
        if box.get("role") == "inbox":
            return str(box["id"])
    names = {b["name"] for b in boxes if b.get("parentId") is None}
    name = "Inbox"
    while name in names:
        name += "_"
    record = {
        "id": objectstore.new_id(),
        "name": name,
        "parentId": None,
        "role": "inbox",
        "sortOrder": 1,
        "isSubscribed": True,
    }
    objectstore.insert_record(db, MAILBOX, account, record)
    objectstore.record_change(db, account, MAILBOX.name, record["id"], "created")
    return str(record["id"])


async def deliver(
    host: Host,
    recipient: Recipient,
    raw: bytes,
    *,
    envelope_from: str | None,
    trace: bytes = b"",
    run_vacation: bool = True,
) -> dict[str, Any]:
    """Store ``raw`` (CRLF line endings) in the recipient's Inbox, ``trace`` headers
    first; returns the Email record.  Raises :class:`OverQuota`, ``StoreUnavailable``."""
    principal = recipient.principal
    account = recipient.account_id
    await host.provision([account_for(principal)])
    message = trace + raw

    limits = limits_for(host, principal)

    def write(db: Any) -> tuple[dict[str, Any], set[str]]:
        try:
            return email.ingest_delivered(db, host, principal, message, inbox_id(db, account),
                                          envelope_from, limits)  # fmt: skip
        except QuotaExceeded:
            raise OverQuota(f"{recipient.address}: mailbox full") from None

    record, changed = await host.store.write(write)
    await email.publish(host, account, changed)
    log.info(
        "delivered %s to %s (account %s, %d octets, from <%s>)",
        record["id"],
        recipient.address,
        account,
        len(message),
        envelope_from or "",
    )
    if run_vacation:
        await vacation_hook(host, recipient, message, envelope_from, record)
    return record


async def vacation_hook(
    host: Host,
    recipient: Recipient,
    raw: bytes,
    envelope_from: str | None,
    record: dict[str, Any],
) -> None:
    """Call ``jmap_host_mail.vacation.auto_reply`` if that module exists.

    Passed by name, only the arguments the function accepts: ``host``, ``account``
    (the Account), ``account_id``, ``principal``, ``raw``, ``envelope_from`` (also as
    ``sender``), ``recipient`` (the envelope address) and ``email`` (the stored record).
    It may be async.  Failures are logged: the message is already delivered.  In the
    server it runs in the background, so the MTA's reply never waits for an outbound reply.
    """
    try:
        from . import vacation  # type: ignore[attr-defined]
    except ImportError:
        return
    auto_reply = getattr(vacation, "auto_reply", None)
    if auto_reply is None:
        return
    offered = {
        "host": host,
        "account": account_for(recipient.principal),
        "account_id": recipient.account_id,
        "principal": recipient.principal,
        "raw": raw,
        "envelope_from": envelope_from,
        "sender": envelope_from,
        "recipient": recipient.address,
        "email": record,
    }
    try:
        parameters = inspect.signature(auto_reply).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        kwargs = offered
    else:
        kwargs = {name: offered[name] for name in parameters if name in offered}
        missing = [
            n
            for n, p in parameters.items()
            if n not in offered
            and p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if missing:
            log.warning("vacation.auto_reply wants %s; not called", ", ".join(missing))
            return

    async def run() -> None:
        try:
            result = auto_reply(**kwargs)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("vacation auto-reply for %s failed", recipient.address)

    if host.nursery is not None:
        host.nursery.start_soon(run)
    else:
        await run()


# -- jmap-host deliver: the pipe alternative to LMTP ----------------------------------------

# sysexits.h, as Postfix's pipe(8) and other MTAs read them.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78


async def deliver_command(
    host: Host, recipients: list[str], raw: bytes, envelope_from: str | None
) -> tuple[int, list[str]]:
    """Deliver ``raw`` to every recipient; returns (exit status, messages for stderr).

    Every recipient is resolved, and its quota checked, before anything is stored: an
    unknown address or a full mailbox fails the whole message rather than leave the MTA
    unable to tell which copies were delivered (use one recipient per invocation to get
    per-recipient results, see the operator guide)."""
    from jmap_host import DirectoryUnavailable, StoreUnavailable

    messages: list[str] = []
    resolved: list[Recipient] = []
    try:
        for address in recipients:
            principal = await lookup(host, address)
            if principal is None:
                return EX_NOUSER, [f"5.1.1 <{address}>: no such user here"]
            resolved.append(Recipient(address, principal))
        for recipient in resolved:
            left = await quota_left(host, recipient.principal)
            if left is not None and left < len(raw):
                return EX_CANTCREAT, [f"5.2.2 <{recipient.address}>: mailbox full"]
    except DirectoryUnavailable:
        return EX_TEMPFAIL, ["4.4.3 directory unavailable, try again later"]
    except StoreUnavailable:
        return EX_TEMPFAIL, ["4.3.0 storage busy, try again later"]
    done: set[str] = set()
    for recipient in resolved:
        if recipient.account_id in done:
            continue
        trace = trace_headers(envelope_from, recipient.address, protocol="local")
        try:
            await deliver(host, recipient, raw, envelope_from=envelope_from, trace=trace)
        except OverQuota:
            return EX_CANTCREAT, [*messages, f"5.2.2 <{recipient.address}>: mailbox full"]
        except StoreUnavailable:
            return EX_TEMPFAIL, [*messages, "4.3.0 storage busy, try again later"]
        done.add(recipient.account_id)
        messages.append(f"2.0.0 <{recipient.address}> delivered")
    return EX_OK, messages


def read_message(stream: Any, limit: int) -> bytes | None:
    """One message from ``stream`` with CRLF line endings and without an mbox ``From ``
    line (pipe(8) flag F); None when it is larger than ``limit``."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        return None
    if data.startswith(b"From "):
        data = data.partition(b"\n")[2]
    return normalise_line_endings(data)


def register_commands(cli: Any) -> None:
    import sys

    import click
    import trio

    @cli.command("deliver")
    @click.option("-c", "--config", type=click.Path(dir_okay=False), help="configuration file")
    @click.option(
        "-f",
        "--from",
        "envelope_from",
        default=None,
        help="envelope sender (becomes Return-Path), e.g. Postfix's ${sender}",
    )
    @click.argument("recipients", nargs=-1, required=True)
    def deliver_cli(config: str | None, envelope_from: str | None, recipients: list[str]) -> None:
        """Deliver one message read on stdin to each RECIPIENT's Inbox.

        Exit status follows sysexits.h, as MTAs expect: 0 delivered, 67 (EX_NOUSER) unknown
        recipient, 73 (EX_CANTCREAT) mailbox full, 75 (EX_TEMPFAIL) try again later."""
        from jmap_host import ConfigError, StartupError, load_host

        try:
            host = load_host(config)
        except (ConfigError, StartupError) as exc:
            click.echo(f"4.3.5 configuration unusable: {exc}", err=True)
            sys.exit(EX_TEMPFAIL)
        package = sys.modules[__name__.rpartition(".")[0]]
        if not any(p.obj is package for p in host.active_plugins):
            click.echo("4.3.5 the mail plugin is not active in this configuration", err=True)
            sys.exit(EX_TEMPFAIL)
        raw = read_message(sys.stdin.buffer, host.limits.max_size_upload)
        if raw is None:
            click.echo(f"5.3.4 message too big (at most {host.limits.max_size_upload})", err=True)
            sys.exit(EX_DATAERR)

        try:
            host.store.migrate()
            status, messages = trio.run(deliver_command, host, list(recipients), raw, envelope_from)
        except Exception as exc:  # a temporary failure for the MTA, never a traceback
            log.exception("deliver failed")
            click.echo(f"4.3.0 local error: {exc}", err=True)
            sys.exit(EX_TEMPFAIL)
        for message in messages:
            click.echo(message, err=status != EX_OK)
        sys.exit(status)
