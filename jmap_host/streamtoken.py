"""Short-lived, stream-only tokens for browsers' EventSource (RFC 8620 §7.3).

A browser's ``EventSource`` cannot send an ``Authorization`` header.  An authenticated
client POSTs to ``/jmap/eventsource/token`` and gets a token to put in the event-source URL
as ``accessToken=...``.  Its security properties:

- **stream-only**: accepted on the event-source endpoint and nowhere else, so a leaked
  token reads no data and changes nothing; at worst it shows when a user's data changes;
- **short-lived**: it must be used to connect within ``STREAM_TOKEN_SECONDS`` (60 s); an
  open stream stays open, a reconnect needs a new token;
- **bound to the user** and re-checked against the directory at connect time, so a disabled
  user's token stops working at once;
- **not stored**: an HMAC-SHA256 over (user, expiry) with a 256-bit key kept in the data
  directory (mode 0600); deleting the key file revokes every token.

URLs can end up in proxy logs, which is why the token is only good for a minute and only
for pushes; clients that can send headers should keep using them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

STREAM_TOKEN_SECONDS = 60
KEY_FILE = "stream-token.key"
SCOPE = "eventsource"
# A WebSocket token opens a full JMAP connection, so it is good for one handshake only
# (the Authenticator remembers used ones until they expire).
WEBSOCKET_SCOPE = "websocket"


def _key(data_dir: str | Path) -> bytes:
    path = Path(data_dir) / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return key
    except FileExistsError:  # pragma: no cover - another process won the race
        return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    data_dir: str | Path, principal: str, now: float | None = None, scope: str = SCOPE
) -> tuple[str, int]:
    """A token for ``principal``; returns (token, expiry as a Unix time)."""
    expires = int((now or time.time()) + STREAM_TOKEN_SECONDS)
    payload = json.dumps(
        {"p": principal, "e": expires, "s": scope, "n": secrets.token_hex(8)},
        separators=(",", ":"),
    )
    body = payload.encode()
    mac = hmac.new(_key(data_dir), body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}", expires


def verify(
    data_dir: str | Path, token: str, now: float | None = None, scope: str = SCOPE
) -> str | None:
    """The principal name a valid, unexpired token of ``scope`` was issued to, or None."""
    try:
        body_text, mac_text = token.split(".", 1)
        body, mac = _unb64(body_text), _unb64(mac_text)
        expected = hmac.new(_key(data_dir), body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if payload.get("s") != scope or not isinstance(payload.get("p"), str):
        return None
    if not isinstance(payload.get("e"), int) or payload["e"] < (now or time.time()):
        return None
    return str(payload["p"])
