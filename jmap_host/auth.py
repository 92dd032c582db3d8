"""Authentication of HTTP requests: Basic (directory password) and Bearer (app password).

Failed attempts are counted per client address; past ``authentication.max-failures`` within
``authentication.failure-window`` that address gets 429 until the window has passed, so a
password cannot be guessed at network speed.  Verified Basic credentials are remembered for
a minute under a keyed hash, so a client sending them with every request does not pay for
an argon2 verification each time.  Requests that bring the same credentials while they are
being verified (thousands of EventSource streams reconnecting at once) wait for that one
verification instead of starting their own, and at most ``VERIFY_CONCURRENCY``
verifications run at a time (an argon2id verification takes 64 MiB and most of a CPU for
half a second).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from . import streamtoken, tokens
from .directory import DirectoryUnavailable, Principal
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .host import Host
    from .http import Request

CREDENTIAL_CACHE_SECONDS = 60.0
WEBSOCKET_TOKEN_USED = "auth.websocket-token-used"  # the host event of a token's one use
VERIFY_CONCURRENCY = max(4, os.cpu_count() or 1)


class _Verification:
    """A password verification in progress; requests with the same credentials wait on
    ``done`` and take its result."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.finished = False  # False once done: the verifying request was cancelled
        self.principal: Principal | None = None
        self.unavailable: str | None = None  # the directory could not answer


@dataclass
class AuthFailure(Exception):
    """Why a request is not authenticated: 401 (no or bad credentials), 429 (too many
    failures from this address) or 503 (the directory cannot answer now)."""

    status: int
    detail: str
    retry_after: int | None = None
    bearer_rejected: bool = False


class Authenticator:
    def __init__(self, host: Host):
        self.host = host
        cfg = host.config.data["authentication"]
        self.max_failures: int = cfg["max-failures"]
        self.window: float = cfg["failure-window"]
        self.realm: str = cfg["realm"]
        self._failures: dict[str, deque[float]] = {}
        self._cache_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        # WebSocket stream tokens already used (by their SHA-256), until they expire; a
        # use on another node is heard of through the host events (jmap_host.cluster).
        self._used_tokens: dict[str, float] = {}
        host.events.on(WEBSOCKET_TOKEN_USED, self._token_used_elsewhere)
        self._verifying: dict[bytes, _Verification] = {}
        self._verify_slots = trio.CapacityLimiter(VERIFY_CONCURRENCY)

    def _token_used_elsewhere(self, data: dict[str, Any]) -> None:
        digest = data.get("digest")
        if isinstance(digest, str):
            self._used_tokens[digest] = time.time() + streamtoken.STREAM_TOKEN_SECONDS + 1

    def challenge(self, failure: AuthFailure | None = None) -> list[tuple[str, str]]:
        realm = self.realm.replace('"', "")
        bearer = f'Bearer realm="{realm}"'
        if failure is not None and failure.bearer_rejected:
            bearer += ', error="invalid_token"'  # RFC 6750 §3.1
        return [
            ("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),
            ("WWW-Authenticate", bearer),
        ]

    def _blocked_for(self, address: str) -> int | None:
        now = time.monotonic()
        failures = self._failures.get(address)
        if not failures:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) >= self.max_failures:
            return max(1, int(failures[0] + self.window - now) + 1)
        return None

    def _record_failure(self, address: str) -> None:
        self._failures.setdefault(address, deque()).append(time.monotonic())
        if len(self._failures) > 100_000:  # bound memory under a spray from many addresses
            oldest = next(iter(self._failures))
            del self._failures[oldest]

    async def authenticate(self, request: Request) -> Principal:
        address = request.client_address
        blocked = self._blocked_for(address)
        if blocked is not None:
            raise AuthFailure(
                429, "too many failed logins from this address; try again later", blocked
            )
        header = request.header("authorization")
        if not header:
            raise AuthFailure(401, "authentication required")
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        try:
            if scheme.lower() == "basic":
                principal = await self._basic(value)
            elif scheme.lower() == "bearer":
                principal = await self._bearer(value)
            else:
                raise AuthFailure(
                    401, f"unsupported authentication scheme {scheme!r}; use Basic or Bearer"
                )
        except AuthFailure:
            self._record_failure(address)  # malformed credentials count as a failed login
            raise
        except (DirectoryUnavailable, StoreUnavailable):
            raise AuthFailure(
                503, "the user directory is unavailable; try again later", 5
            ) from None
        if principal is None:
            self._record_failure(address)
            # A constant-ish pause makes a failure no quicker than a success to observe.
            await trio.sleep(0.05 + secrets.randbelow(50) / 1000)
            raise AuthFailure(
                401, "invalid credentials", bearer_rejected=scheme.lower() == "bearer"
            )
        return principal

    async def authenticate_stream_token(
        self, request: Request, token: str, scope: str = streamtoken.SCOPE
    ) -> Principal:
        """A browser's EventSource or WebSocket: a short-lived token instead of credentials
        (see streamtoken.py); a WebSocket token is good for one handshake."""
        address = request.client_address
        blocked = self._blocked_for(address)
        if blocked is not None:
            raise AuthFailure(429, "too many failed logins from this address", blocked)
        data_dir = self.host.config.data["storage"]["path"]
        name = await trio.to_thread.run_sync(
            lambda: streamtoken.verify(data_dir, token, scope=scope)
        )
        if name is not None and scope == streamtoken.WEBSOCKET_SCOPE:
            now = time.time()
            self._used_tokens = {t: e for t, e in self._used_tokens.items() if e > now}
            digest = hashlib.sha256(token.encode()).hexdigest()
            if digest in self._used_tokens:
                name = None
            else:
                # Here and on every other node: one handshake on any of them.  (The
                # others hear of it within a millisecond or so: the same token presented
                # to two nodes within that time could pass on both.)
                self.host.events.emit(WEBSOCKET_TOKEN_USED, {"digest": digest})
        try:
            principal = await self.host.directory.principal(name) if name else None
        except DirectoryUnavailable:
            raise AuthFailure(
                503, "the user directory is unavailable; try again later", 5
            ) from None
        if principal is None or principal.kind != "individual":
            self._record_failure(address)
            raise AuthFailure(401, "invalid or expired stream token")
        return principal

    async def _basic(self, value: str) -> Principal | None:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            raise AuthFailure(401, "malformed Basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthFailure(401, "malformed Basic credentials")
        key = hmac.new(self._cache_key, decoded.encode("utf-8"), hashlib.sha256).digest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached and cached[0] > now:
            # The password was verified recently; the principal must still exist and be
            # enabled (a cheap lookup), so disabling a user takes effect at once.
            current = await self.host.directory.principal(cached[1].name)
            if current is not None and current.kind == "individual":
                return current
            self._cache.pop(key, None)
            return None
        principal = await self._verify(key, username, password)
        if principal is not None and principal.kind == "individual":
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + CREDENTIAL_CACHE_SECONDS, principal)
            return principal
        return None

    async def _verify(self, key: bytes, username: str, password: str) -> Principal | None:
        """The directory's verdict on these credentials (``key`` is their keyed hash): one
        verification at a time per distinct credentials, shared by every request that
        brings them meanwhile (a wrong password is wrong for each of them, and each counts
        its failure); at most VERIFY_CONCURRENCY verifications at once overall."""
        while (running := self._verifying.get(key)) is not None:
            await running.done.wait()
            if running.unavailable is not None:
                raise DirectoryUnavailable(running.unavailable)
            if running.finished:
                return running.principal
            # The verifying request was cancelled before an answer: verify here instead.
        verification = _Verification()
        self._verifying[key] = verification
        try:
            async with self._verify_slots:
                principal = await self.host.directory.authenticate(username, password)
            verification.principal = principal
            verification.finished = True
            return principal
        except DirectoryUnavailable as exc:
            verification.unavailable = str(exc) or "the directory is unavailable"
            raise
        finally:
            del self._verifying[key]
            verification.done.set()

    async def _bearer(self, value: str) -> Principal | None:
        name = await trio.to_thread.run_sync(tokens.verify, self.host.store, value)
        if name is None:
            return None
        principal = await self.host.directory.principal(name)
        if principal is None or principal.kind != "individual":
            return None  # the user was removed from the directory: the token dies with it
        return principal
