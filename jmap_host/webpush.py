"""Outbound Web Push: the SSRF guard, a pinned HTTP/1.1 client, RFC 8291 encryption and
RFC 8292 VAPID.

The guard (RFC 8620 §8.6: the URL must be externally resolvable):

* :func:`parse_target` accepts only ``https://host[:port]/path?query`` (``http`` only when
  private targets are allowed, for tests): no userinfo, no fragment, no backslashes,
  whitespace or control characters, no percent-encoding in the host, no IPv6 zone ids.  A
  host that looks numeric must be a canonical dotted quad: the inet_aton spellings
  ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1`` are refused outright, whatever
  they would resolve to.
* :func:`vet` resolves the host (through the module-level :data:`getaddrinfo`, which tests
  replace) and requires EVERY address to be public (:func:`is_public_address`): not
  loopback, private, link-local, CGNAT, multicast, unspecified, reserved, documentation or
  benchmarking space, nor an IPv4-mapped/-compatible, 6to4, Teredo or NAT64 form of one, nor
  IPv6 ULA or site-local.  IPv6 must also lie in global unicast 2000::/3.
* :func:`post` vets again at delivery time and then connects to the vetted IP itself (no
  second lookup), keeping the name for ``Host`` and TLS SNI/certificate checks, so a DNS
  answer that changes between check and connect (rebinding) cannot redirect the request.
  Redirects are never followed; the whole exchange has a deadline.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import http_ece
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from .numbers import parse_digits

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Replaced by tests (a stub resolver: tests never query real DNS).
getaddrinfo: Callable[..., Awaitable[list[Any]]] = trio.socket.getaddrinfo

MAX_RESPONSE_BODY = 64 * 1024


class TargetRefused(Exception):
    """The URL is not acceptable as a push target (syntax, scheme or a non-public address)."""


# -- addresses -----------------------------------------------------------------------------

_V4_BLOCKED = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT (RFC 6598)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
]
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_BLOCKED = [
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) included
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: checked through the embedded IPv4 address below
        "3fff::/20",  # documentation (RFC 9637)
    )
]
_NAT64 = [ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48")]


def is_public_address(ip: IPAddress) -> bool:
    """Is ``ip`` a public unicast address, directly and in every embedded form?"""
    if isinstance(ip, ipaddress.IPv4Address):
        return (
            ip.is_global
            and not ip.is_multicast
            and not ip.is_reserved
            and not any(ip in net for net in _V4_BLOCKED)
        )
    if ip.scope_id:
        return False
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return is_public_address(mapped)
    if ip.sixtofour is not None or ip.teredo is not None or any(ip in n for n in _NAT64):
        # 6to4, Teredo and NAT64 reach an embedded IPv4 address through a relay or a
        # translator; whatever that address is, refuse them.
        return False
    if int(ip) >> 32 == 0:
        return False  # ::/96: unspecified, loopback, deprecated IPv4-compatible forms
    return (
        ip in _V6_GLOBAL_UNICAST
        and ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_link_local
        and not ip.is_site_local
        and not ip.is_private
        and not any(ip in net for net in _V6_BLOCKED)
    )


# -- URLs ----------------------------------------------------------------------------------

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_DOTTED_QUAD = re.compile(
    r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
)
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Target:
    """A parsed push URL: where to connect and what to say."""

    url: str
    scheme: str
    host: str  # a DNS name (lower case, IDNA) or an IP literal without brackets
    port: int
    target: str  # path and query for the request line
    literal: IPAddress | None  # the host, when it is an IP address

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if isinstance(self.literal, ipaddress.IPv6Address) else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def parse_target(url: str, *, allow_http: bool = False) -> Target:
    """Check a push URL's syntax (see the module docstring); raise :class:`TargetRefused`."""
    if not isinstance(url, str) or len(url) > 2048:
        raise TargetRefused("the url must be a string of at most 2048 characters")
    if _BAD_CHARS.search(url):
        raise TargetRefused("the url must not contain spaces, control characters or '\\'")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the url is malformed: {exc}") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise TargetRefused("the url must begin with https://")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise TargetRefused("the url must not contain userinfo")
    if parts.fragment or "#" in url:
        raise TargetRefused("the url must not have a fragment")
    host = parts.hostname or ""
    if not host:
        raise TargetRefused("the url has no host")
    literal: IPAddress | None = None
    if parts.netloc.split(":")[0].startswith("[") or ":" in host:
        if "%" in host:
            raise TargetRefused("IPv6 zone identifiers are not allowed")
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused(f"{host!r} is not an IPv6 address") from None
        host = str(literal)
    elif all(_NUMERIC_LABEL.fullmatch(label) for label in host.removesuffix(".").split(".")):
        # What inet_aton would take as an address: only a canonical dotted quad passes
        # (no octal, hex, dword or short forms).
        if not _DOTTED_QUAD.fullmatch(host):
            raise TargetRefused(f"{host!r} is not a canonical IPv4 address")
        literal = ipaddress.IPv4Address(host)
    else:
        try:
            ascii_host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise TargetRefused(f"{host!r} is not a valid host name") from None
        ascii_host = ascii_host.removesuffix(".")
        labels = ascii_host.split(".")
        if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise TargetRefused(f"{host!r} is not a valid host name")
        if labels[-1].isdigit():
            raise TargetRefused(f"{host!r} is not a valid host name")
        host = ascii_host
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if port == 0:
        raise TargetRefused("port 0 is not allowed")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, host, port, target, literal)


async def resolve(target: Target) -> list[IPAddress]:
    """The addresses of the target's host (the literal itself for an IP)."""
    if target.literal is not None:
        return [target.literal]
    try:
        infos = await getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {target.host!r}: {exc}") from None
    out: list[IPAddress] = []
    for info in infos:
        address = info[4][0]
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            raise TargetRefused(f"{target.host!r} resolved to {address!r}") from None
        if "%" in address:
            raise TargetRefused(f"{target.host!r} resolved to a scoped address")
        if ip not in out:
            out.append(ip)
    if not out:
        raise TargetRefused(f"{target.host!r} has no addresses")
    return out


async def vet(url: str | Target, *, allow_private: bool = False) -> tuple[Target, list[IPAddress]]:
    """Parse and resolve; every address must be public unless ``allow_private``."""
    target = url if isinstance(url, Target) else parse_target(url, allow_http=allow_private)
    addresses = await resolve(target)
    if not allow_private:
        bad = [str(ip) for ip in addresses if not is_public_address(ip)]
        if bad:
            raise TargetRefused(
                f"{target.host!r} is not a public address ({', '.join(bad)}); "
                "push targets must be reachable from the internet"
            )
    return target, addresses


# -- the pinned client -------------------------------------------------------------------


@dataclass
class PushResponse:
    status: int
    headers: dict[str, str]

    def retry_after(self) -> float | None:
        seconds = parse_digits(self.headers.get("retry-after"), max_digits=9)
        return None if seconds is None else float(seconds)


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


# Tests that serve HTTPS locally may replace this (e.g. with a trustme CA).
ssl_context_factory: Callable[[], ssl.SSLContext] = _ssl_context


async def _connect(ip: IPAddress, port: int, allow_private: bool) -> trio.SocketStream:
    # The last line of defence: whatever happened before, never connect to a non-public
    # address unless the operator allowed it.
    if not allow_private and not is_public_address(ip):
        raise TargetRefused(f"refusing to connect to {ip}")
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        await sock.connect((str(ip), port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def post(
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    allow_private: bool = False,
    timeout: float = 10.0,
) -> PushResponse:
    """POST ``body`` to ``url``: vet it now, connect to a vetted address, never follow a
    redirect.  Raises :class:`TargetRefused`, ``OSError``, ``trio.TooSlowError`` or
    ``h11.ProtocolError``."""
    with trio.fail_after(timeout):
        target, addresses = await vet(url, allow_private=allow_private)
        stream: trio.abc.Stream | None = None
        error: Exception | None = None
        for ip in addresses:
            try:
                stream = await _connect(ip, target.port, allow_private)
                break
            except OSError as exc:
                error = exc
        if stream is None:
            raise error or OSError(f"cannot connect to {target.host}")
        try:
            if target.scheme == "https":
                tls = trio.SSLStream(
                    stream,
                    ssl_context_factory(),
                    server_hostname=target.host,
                    https_compatible=True,
                )
                await tls.do_handshake()
                stream = tls
            return await _exchange(stream, target, body, headers)
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream, target: Target, body: bytes, headers: list[tuple[str, str]]
) -> PushResponse:
    conn = h11.Connection(h11.CLIENT)
    request_headers = [
        ("Host", target.host_header),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("User-Agent", "jmap-host"),
        *headers,
    ]
    data = conn.send(h11.Request(method="POST", target=target.target, headers=request_headers))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    response: h11.Response | None = None
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.receive_some(16384)
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            response = event
            continue
        if isinstance(event, h11.Data):
            received += len(event.data)
            if received > MAX_RESPONSE_BODY:
                break
            continue
        if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if response is None:
        raise h11.RemoteProtocolError("no response")
    return PushResponse(
        response.status_code,
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers},
    )


# -- RFC 8291 message encryption --------------------------------------------------------


def b64url_decode(value: str) -> bytes:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
        raise ValueError("not URL-safe base64")
    value = value.rstrip("=")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def check_keys(keys: Any) -> None:
    """Validate a PushSubscription ``keys`` object; raise ValueError."""
    if not isinstance(keys, dict) or set(keys) != {"p256dh", "auth"}:
        raise ValueError("keys must be an object with exactly p256dh and auth")
    try:
        point = b64url_decode(keys["p256dh"])
        auth = b64url_decode(keys["auth"])
    except (ValueError, TypeError):
        raise ValueError("p256dh and auth must be URL-safe base64") from None
    if len(auth) != 16:
        raise ValueError("auth must be 16 octets")
    if len(point) != 65 or point[0] != 4:
        raise ValueError("p256dh must be an uncompressed P-256 point (65 octets)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ValueError("p256dh is not a point on P-256") from None


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291 (Web Push message encryption, aes128gcm of RFC 8188) with a fresh
    ephemeral key; the key id in the header is its public key."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    return http_ece.encrypt(
        payload,
        private_key=ephemeral,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )


# -- RFC 8292 VAPID --------------------------------------------------------------------


def load_vapid_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from PEM (PKCS#8 or SEC1); raise ValueError."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the VAPID key must be an EC P-256 (prime256v1) private key")
    return key


class VapidSigner:
    """Signs the ``Authorization: vapid t=<JWT>, k=<key>`` header (RFC 8292 §3)."""

    TOKEN_LIFETIME = 12 * 3600  # RFC 8292 §2: no more than 24 hours

    def __init__(self, pem: str, subject: str):
        self.key = load_vapid_key(pem)
        self.subject = subject
        self.application_server_key = b64url_encode(
            self.key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def authorization(self, origin: str, now: float | None = None) -> str:
        claims = {
            "aud": origin,
            "exp": int((now or time.time()) + self.TOKEN_LIFETIME),
            "sub": self.subject,
        }
        token = vapid_jwt.sign(claims, self.key)
        return f"vapid t={token}, k={self.application_server_key}"


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
