"""The LMTP listener (RFC 2033): how an MTA such as Postfix delivers into jmap-host.

A ``[server.listener."lmtp"]`` with ``protocol = "lmtp"`` (TCP, or ``bind =
["unix:/path"]``) gets one :func:`handle` task per connection.  The dialogue is SMTP's
(RFC 5321) with LHLO for EHLO and, after DATA, one reply per accepted recipient (§4.2), so
the MTA learns which deliveries succeeded.  Commands may be pipelined (RFC 2920): replies
are buffered while further commands are already waiting and flushed before the server
waits for input.  Enhanced status codes follow RFC 3463.

Recipients are looked up through the directory when RCPT arrives (550 5.1.1 for unknown
addresses, 451 4.4.3 while the directory is unreachable); the quota is checked at RCPT
(an account already full) and again at delivery (552 5.2.2).  The message size limit is
``jmap.protocol.upload.max-size``, the largest message a client could upload either.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from jmap_host import DirectoryUnavailable, Host, Protocol, StoreUnavailable, parse_digits

from . import delivery

log = logging.getLogger("jmap_host_mail.lmtp")

# RFC 5321 §4.5.3.2 suggests 5 minutes for commands and 10 for the end of DATA.
COMMAND_TIMEOUT = 300.0
DATA_TIMEOUT = 600.0
MAX_LINE = 4096  # command lines; RFC 5321 §4.5.3.1.4 says 512 but extensions add more
MAX_RECIPIENTS = 1000
MAX_ERRORS = 20

_PATH = re.compile(r"^\s*<([^<>]*)>\s*(.*)$")
_SOURCE_ROUTE = re.compile(r"^@[^:]*:")


class Closed(Exception):
    """The client went away or timed out."""


class LineReader:
    """Lines from a trio stream, keeping what was read past a line for the next one."""

    def __init__(self, stream: Any):
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False

    def has_line(self) -> bool:
        return b"\n" in self.buffer

    async def readline(self, limit: int) -> bytes:
        """One line with its ending; longer than ``limit``: the first ``limit`` bytes with
        the rest of the line discarded and ``b"\\0"`` appended as a marker."""
        too_long = False
        while True:
            end = self.buffer.find(b"\n")
            if end < 0 and self.eof and self.buffer:
                end = len(self.buffer) - 1  # a last line without an ending is still a line
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line[:limit] + b"\0" if too_long or len(line) > limit else line
            if self.eof:
                raise Closed("connection closed")
            if len(self.buffer) > limit:
                too_long = True
                del self.buffer[limit:]
            data = await self.stream.receive_some(65536)
            if data:
                self.buffer += data
            else:
                self.eof = True


@dataclass
class Transaction:
    sender: str | None = None
    size_declared: int | None = None
    recipients: list[delivery.Recipient] = field(default_factory=list)


class Session:
    """One LMTP connection."""

    def __init__(self, stream: Any, host: Host, listener: dict[str, Any]):
        self.stream = stream
        self.host = host
        self.listener = listener
        self.reader = LineReader(stream)
        self.out: list[bytes] = []
        self.helo: str | None = None
        self.tx: Transaction | None = None
        self.errors = 0
        self.max_size = host.limits.max_size_upload
        self.peer = _peer(stream)

    # -- output --

    def reply(self, code: int, *lines: str) -> None:
        lines = lines or ("",)
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.out.append(f"{code}{sep}{text}\r\n".encode("utf-8", "replace"))

    async def flush(self) -> None:
        if self.out:
            data, self.out = b"".join(self.out), []
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise Closed(str(exc)) from None

    async def read_line(self, limit: int, timeout: float) -> bytes:
        if not self.reader.has_line():
            await self.flush()  # pipelining: reply only when the client waits for us
        try:
            with trio.fail_after(timeout):
                return await self.reader.readline(limit)
        except trio.TooSlowError:
            self.reply(421, "4.4.2 timeout, closing connection")
            await self.flush()
            raise Closed("timeout") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise Closed(str(exc)) from None

    # -- the dialogue --

    async def run(self) -> None:
        self.reply(220, f"{delivery.local_hostname()} LMTP jmap-host ready")
        try:
            while True:
                line = await self.read_line(MAX_LINE, COMMAND_TIMEOUT)
                if self.host.closing.is_set():
                    self.reply(421, "4.3.2 server shutting down")
                    break
                if line.endswith(b"\0"):
                    self.reply(500, "5.5.2 line too long")
                    if not await self.count_error():
                        break
                    continue
                text = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb, _, arg = text.partition(" ")
                handler = self.commands.get(verb.upper())
                if handler is None:
                    self.reply(500, "5.5.2 command not recognized")
                    if not await self.count_error():
                        break
                    continue
                if await handler(self, arg.strip()) is False:
                    break
            await self.flush()
        except Closed:
            pass

    async def count_error(self) -> bool:
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.reply(421, "4.7.0 too many errors, closing connection")
            return False
        return True

    async def cmd_lhlo(self, arg: str) -> None:
        if not arg:
            self.reply(501, "5.5.4 LHLO needs a domain or address literal")
            return
        self.helo = arg.split()[0]
        self.tx = None
        self.reply(
            250,
            delivery.local_hostname(),
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "SMTPUTF8",
            f"SIZE {self.max_size}",
        )

    async def cmd_helo(self, arg: str) -> None:
        self.reply(500, "5.5.1 this is LMTP: use LHLO (RFC 2033)")

    async def cmd_mail(self, arg: str) -> None:
        if self.helo is None:
            self.reply(503, "5.5.1 LHLO first")
            return
        if self.tx is not None:
            self.reply(503, "5.5.1 nested MAIL command")
            return
        if not arg.upper().startswith("FROM:"):
            self.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
            return
        parsed = _path(arg[5:])
        if parsed is None:
            self.reply(501, "5.1.7 bad sender address syntax")
            return
        sender, params = parsed
        size = None
        for param in params:
            name, _, value = param.partition("=")
            name = name.upper()
            if name == "SIZE":
                parsed = parse_digits(value)
                if parsed is None:
                    self.reply(501, "5.5.4 bad SIZE value")
                    return
                size = parsed
            elif name not in ("BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"):
                self.reply(555, f"5.5.4 {name} parameter not supported")
                return
        if size is not None and size > self.max_size:
            self.reply(552, f"5.3.4 message too big (at most {self.max_size} octets)")
            return
        self.tx = Transaction(sender=sender, size_declared=size)
        self.reply(250, "2.1.0 sender OK")

    async def cmd_rcpt(self, arg: str) -> None:
        if self.tx is None:
            self.reply(503, "5.5.1 MAIL first")
            return
        if not arg.upper().startswith("TO:"):
            self.reply(501, "5.5.4 syntax: RCPT TO:<address>")
            return
        parsed = _path(arg[3:])
        if parsed is None or not parsed[0]:
            self.reply(501, "5.1.3 bad recipient address syntax")
            return
        address = parsed[0]
        if len(self.tx.recipients) >= MAX_RECIPIENTS:
            self.reply(452, "4.5.3 too many recipients")
            return
        try:
            principal = await delivery.lookup(self.host, address)
        except DirectoryUnavailable:
            self.reply(451, "4.4.3 directory unavailable, try again later")
            return
        if principal is None:
            self.reply(550, f"5.1.1 <{address}>: no such user here")
            return
        try:
            left = await delivery.quota_left(self.host, principal)
        except StoreUnavailable:
            self.reply(451, "4.3.0 storage busy, try again later")
            return
        if left is not None and left < max(1, self.tx.size_declared or 0):
            self.reply(552, f"5.2.2 <{address}>: mailbox full")
            return
        self.tx.recipients.append(delivery.Recipient(address, principal))
        self.reply(250, "2.1.5 recipient OK")

    async def cmd_data(self, arg: str) -> None:
        if self.tx is None:
            self.reply(503, "5.5.1 MAIL first")
            return
        if not self.tx.recipients:
            self.reply(503, "5.5.1 no valid recipients")  # RFC 2033 §4.2
            return
        self.reply(354, "start mail input; end with <CRLF>.<CRLF>")
        await self.flush()  # RFC 2920: the client waits for 354 before sending the message
        raw, too_big = await self.read_data()
        tx, self.tx = self.tx, None
        if too_big:
            for _ in tx.recipients:
                self.reply(552, f"5.3.4 message too big (at most {self.max_size} octets)")
            return
        for status in await self.deliver_all(tx, raw):
            self.reply(*status)

    async def read_data(self) -> tuple[bytes, bool]:
        """The message up to the lone dot, dot-unstuffed (RFC 5321 §4.5.2), with CRLF line
        endings; past the size limit the rest is read and dropped."""
        chunks: list[bytes] = []
        size = 0
        too_big = False
        with trio.move_on_after(DATA_TIMEOUT) as scope:
            while True:
                line = await self.reader_line()
                if line in (b".\r\n", b".\n", b"."):
                    break
                if line.startswith(b"."):
                    line = line[1:]
                if line.endswith(b"\r\n"):
                    pass
                elif line.endswith(b"\n"):
                    line = line[:-1] + b"\r\n"
                size += len(line)
                if size > self.max_size:
                    too_big = True
                    chunks.clear()
                if not too_big:
                    chunks.append(line)
        if scope.cancelled_caught:
            self.reply(421, "4.4.2 timeout in DATA, closing connection")
            await self.flush()
            raise Closed("timeout")
        return b"".join(chunks), too_big

    async def reader_line(self) -> bytes:
        try:
            return await self.reader.readline(1 << 30)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise Closed(str(exc)) from None

    async def deliver_all(self, tx: Transaction, raw: bytes) -> list[tuple[int, str]]:
        """One reply per accepted recipient, in RCPT order (RFC 2033 §4.2); two addresses
        of one account get one copy and the same reply."""
        by_account: dict[str, tuple[int, str]] = {}
        out = []
        queue_id = secrets.token_hex(6)
        for recipient in tx.recipients:
            if recipient.account_id not in by_account:
                by_account[recipient.account_id] = await self.deliver_one(
                    recipient, tx.sender, raw, queue_id
                )
            out.append(by_account[recipient.account_id])
        return out

    async def deliver_one(
        self, recipient: delivery.Recipient, sender: str | None, raw: bytes, queue_id: str
    ) -> tuple[int, str]:
        trace = delivery.trace_headers(
            sender,
            recipient.address,
            protocol="LMTP",
            helo=self.helo,
            peer=self.peer,
            queue_id=queue_id,
        )
        try:
            record = await delivery.deliver(
                self.host, recipient, raw, envelope_from=sender, trace=trace
            )
        except delivery.OverQuota:
            return 552, f"5.2.2 <{recipient.address}>: mailbox full"
        except StoreUnavailable:
            return 451, f"4.3.0 <{recipient.address}>: storage busy, try again later"
        except Exception:
            log.exception("delivery to %s failed", recipient.address)
            return 451, f"4.3.0 <{recipient.address}>: local error, try again later"
        return 250, f"2.0.0 <{recipient.address}> delivered as {record['id']}"

    async def cmd_rset(self, arg: str) -> None:
        self.tx = None
        self.reply(250, "2.0.0 OK")

    async def cmd_noop(self, arg: str) -> None:
        self.reply(250, "2.0.0 OK")

    async def cmd_vrfy(self, arg: str) -> None:
        self.reply(252, "2.5.0 cannot VRFY; send the message and see")

    async def cmd_quit(self, arg: str) -> bool:
        self.reply(221, "2.0.0 bye")
        await self.flush()
        return False

    commands: dict[str, Callable[[Session, str], Awaitable[Any]]] = {
        "LHLO": cmd_lhlo,
        "HELO": cmd_helo,
        "EHLO": cmd_helo,
        "MAIL": cmd_mail,
        "RCPT": cmd_rcpt,
        "DATA": cmd_data,
        "RSET": cmd_rset,
        "NOOP": cmd_noop,
        "VRFY": cmd_vrfy,
        "QUIT": cmd_quit,
    }


def _path(text: str) -> tuple[str, list[str]] | None:
    """``<address> PARAM=value ...`` (RFC 5321 §4.1.2); a source route is dropped."""
    m = _PATH.match(text)
    if m is None:
        return None
    address = _SOURCE_ROUTE.sub("", m.group(1).strip())
    bad = any(c.isspace() for c in address) or (address and "@" not in address)
    if bad and address.lower() != "postmaster":
        return None
    return address, m.group(2).split()


def _peer(stream: Any) -> str | None:
    try:
        name = stream.socket.getpeername()
    except (AttributeError, OSError):
        return None
    if isinstance(name, tuple):
        return f"[{name[0]}]:{name[1]}"
    return "unix socket"


async def handle(stream: Any, host: Host, listener: dict[str, Any]) -> None:
    """One LMTP connection (the ``lmtp`` protocol's stream handler)."""
    try:
        await Session(stream, host, listener).run()
    finally:
        with trio.move_on_after(1):
            await stream.aclose()


def lmtp_protocol() -> Protocol:
    return Protocol(
        "lmtp",
        transport="stream",
        handler=handle,
        doc="LMTP (RFC 2033) delivery into the recipients' Inboxes, for an MTA such as Postfix",
    )
