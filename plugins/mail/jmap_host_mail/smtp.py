"""Talking SMTP to the configured relay (smarthost), and the message surgery sending needs.

``relay_send`` is a plain blocking function (smtplib): the outbound queue runs it in a
worker thread (``trio.to_thread.run_sync``), never on the event loop.  It returns one
:class:`Reply` per recipient, already in the RFC 8621 §7 ``smtpReply`` form (multi-line
replies joined), and never raises: a connection problem is a temporary failure of every
recipient that has no answer yet.

Configuration, under ``[plugins.mail.smtp]``::

    host = "smtp.example.org"   # empty: no relay, only local recipients can be sent to
    port = 587
    security = "starttls"       # "starttls" | "tls" (implicit TLS, port 465) | "none"
    username = "jmap"           # empty: no AUTH
    secret = "%{env:SMTP_SECRET}%"
    timeout = "30s"
    helo-name = ""              # EHLO name; empty: this machine's name
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from dataclasses import dataclass
from typing import Any

from jmap_host import Bool, Choice, Duration, Int, Key, Secret, Str

SMTP_TABLE = "plugins.mail.smtp"
SUBMISSION_TABLE = "plugins.mail.submission"


def config_keys() -> list[tuple[str, Key]]:
    """The ``[plugins.mail.smtp]`` (relay) and ``[plugins.mail.submission]`` keys."""
    return [
        (SMTP_TABLE, Key("host", Str(), default="",
                         doc="SMTP relay for remote recipients; empty: local recipients only")),
        (SMTP_TABLE, Key("port", Int(min=1, max=65535), default=587, doc="relay port")),
        (SMTP_TABLE, Key("security", Choice("starttls", "tls", "none"), default="starttls",
                         doc="starttls (required, verified), tls (implicit, port 465) or none")),
        (SMTP_TABLE, Key("username", Str(), default="", doc="AUTH user; empty: no AUTH")),
        (SMTP_TABLE, Key("secret", Secret(), default="", doc="AUTH password")),
        (SMTP_TABLE, Key("timeout", Duration(), default=30.0, doc="per SMTP command")),
        (SMTP_TABLE, Key("helo-name", Str(), default="", doc="EHLO name; empty: host name")),
        (SMTP_TABLE, Key("verify-certificate", Bool(), default=True,
                         doc="verify the relay's TLS certificate and name")),
        (SUBMISSION_TABLE, Key("max-recipients", Int(min=1), default=100,
                               doc="rcptTo addresses per EmailSubmission (tooManyRecipients)")),
        (SUBMISSION_TABLE, Key("max-size", Int(min=1), default=50 * 1024 * 1024,
                               doc="largest message sent, in octets (tooLarge)")),
        (SUBMISSION_TABLE, Key("retry-interval", Duration(), default=300.0,
                               doc="first retry after a temporary failure; doubles each time")),
        (SUBMISSION_TABLE, Key("max-attempts", Int(min=1), default=8,
                               doc="relay attempts before giving a recipient up (delivered: no)")),
    ]  # fmt: skip


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int
    security: str
    username: str
    secret: str
    timeout: float
    helo_name: str
    verify: bool

    @classmethod
    def from_host(cls, host: Any) -> RelayConfig | None:
        """The configured relay, or None when ``host`` is empty."""
        c = host.plugin_config(SMTP_TABLE, {}) or {}
        if not c.get("host"):
            return None
        return cls(
            host=c["host"], port=c["port"], security=c["security"], username=c["username"],
            secret=c["secret"], timeout=c["timeout"], helo_name=c["helo-name"],
            verify=c["verify-certificate"],
        )  # fmt: skip


def submission_config(host: Any) -> dict[str, Any]:
    defaults = {k.name: k.default for t, k in config_keys() if t == SUBMISSION_TABLE}
    return {**defaults, **(host.plugin_config(SUBMISSION_TABLE, {}) or {})}


@dataclass(frozen=True)
class Reply:
    """One recipient's outcome: the SMTP code and the §7 smtpReply string."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


# -- addresses and messages ------------------------------------------------------------------

# An RFC 5321 Mailbox, loosely: local@domain without whitespace, angle brackets, quotes
# that could confuse the SMTP command line, or control characters.
ADDRESS_RE = re.compile(r"[^\s<>()\[\],;:\"\\@\x00-\x1f\x7f]+@[^\s<>()\[\],;:\"\\@\x00-\x1f\x7f]+")


def valid_address(address: Any) -> bool:
    return (
        isinstance(address, str)
        and len(address.encode("utf-8")) <= 254
        and ADDRESS_RE.fullmatch(address) is not None
        and "." not in (address[0], address[-1])
        and ".." not in address.rsplit("@", 1)[1]
    )


def to_crlf(raw: bytes) -> bytes:
    """Every line ending as CRLF (SMTP DATA needs it; stored messages may have bare LF)."""
    return re.sub(rb"\r?\n|\r", b"\r\n", raw)


def split_header(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its final line break, the rest); CRLF input."""
    if raw.startswith(b"\r\n"):
        return b"", raw
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 2 :]


def header_fields(header: bytes) -> list[bytes]:
    """The header block as whole fields (a field with its continuation lines)."""
    fields: list[bytes] = []
    for line in header.split(b"\r\n")[:-1] if header.endswith(b"\r\n") else header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields


def remove_fields(raw: bytes, names: set[str]) -> bytes:
    """``raw`` (CRLF) without the header fields called ``names`` (lowercase); everything
    else is kept byte for byte."""
    header, rest = split_header(raw)
    kept = [
        f for f in header_fields(header) if f.split(b":", 1)[0].strip().lower().decode(
            "latin-1") not in names
    ]  # fmt: skip
    return b"".join(f + b"\r\n" for f in kept) + rest


def prepare_for_sending(raw: bytes) -> bytes:
    """RFC 8621 §7.5: the server MUST remove any Bcc header field during delivery."""
    return remove_fields(to_crlf(raw), {"bcc"})


def reply_text(code: int, message: bytes | str) -> str:
    """§7 smtpReply: a multi-line reply as one line ("550 5.7.1 a b"), the enhanced
    status code repeated on later lines dropped."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    first = lines[0]
    m = re.match(r"[245]\.\d{1,3}\.\d{1,3} ", first)
    rest = [line.removeprefix(m.group(0)) if m else line for line in lines[1:]]
    return " ".join([f"{code} {first}".rstrip(), *rest])


# -- sending ---------------------------------------------------------------------------------


def _tls_context(config: RelayConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def relay_send(
    config: RelayConfig, mail_from: str, rcpt_to: list[str], data: bytes
) -> dict[str, Reply]:
    """Send ``data`` through the relay; one Reply per recipient.  Blocking; never raises."""
    results: dict[str, Reply] = {}
    helo = config.helo_name or None

    def fail_rest(code: int, text: str) -> None:
        for rcpt in rcpt_to:
            results.setdefault(rcpt, Reply(code, text))

    try:
        smtp: smtplib.SMTP
        if config.security == "tls":
            smtp = smtplib.SMTP_SSL(
                config.host, config.port, local_hostname=helo, timeout=config.timeout,
                context=_tls_context(config),
            )  # fmt: skip
        else:
            smtp = smtplib.SMTP(
                config.host, config.port, local_hostname=helo, timeout=config.timeout
            )
    except (OSError, smtplib.SMTPException) as exc:
        fail_rest(451, f"451 4.4.1 cannot connect to the relay {config.host}: {exc}")
        return results
    try:
        code, message = smtp.ehlo()
        if code != 250:
            code, message = smtp.helo()
        if config.security == "starttls":
            if not smtp.has_extn("starttls"):
                fail_rest(454, "454 4.7.0 the relay does not offer STARTTLS")
                return results
            smtp.starttls(context=_tls_context(config))
            smtp.ehlo()
        if config.username:
            smtp.login(config.username, config.secret)
        options: list[str] = []
        if any(b > 0x7F for b in data) and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(a.isascii() for a in [mail_from, *rcpt_to]):
            if not smtp.has_extn("smtputf8"):
                fail_rest(553, "553 5.6.7 the relay does not support SMTPUTF8 addresses")
                return results
            options.append("SMTPUTF8")
        code, message = smtp.mail(mail_from, options)
        if code != 250:
            fail_rest(code, reply_text(code, message))
            smtp.rset()
            return results
        accepted = []
        for rcpt in rcpt_to:
            code, message = smtp.rcpt(rcpt)
            if code in (250, 251):
                accepted.append(rcpt)
            else:
                results[rcpt] = Reply(code, reply_text(code, message))
        if not accepted:
            smtp.rset()
            return results
        try:
            code, message = smtp.data(data)
        except smtplib.SMTPDataError as exc:
            code, message = exc.smtp_code, exc.smtp_error
        for rcpt in accepted:
            results[rcpt] = Reply(code, reply_text(code, message))
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()
    except smtplib.SMTPAuthenticationError as exc:
        fail_rest(
            454,
            f"454 4.7.0 relay authentication failed: {reply_text(exc.smtp_code, exc.smtp_error)}",
        )
    except (TimeoutError, OSError, smtplib.SMTPException) as exc:
        fail_rest(451, f"451 4.4.2 relay connection failed: {exc or type(exc).__name__}")
    finally:
        with contextlib.suppress(OSError):
            smtp.close()
    return results


__all__ = [
    "RelayConfig",
    "Reply",
    "config_keys",
    "prepare_for_sending",
    "relay_send",
    "remove_fields",
    "reply_text",
    "submission_config",
    "to_crlf",
    "valid_address",
]
