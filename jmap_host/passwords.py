"""Checking a password against what a directory stores.

Operators bring hashes from the servers they migrate from, so every common scheme is
accepted: argon2 (``$argon2id$``...), bcrypt (``$2b$``...), SHA-512-crypt (``$6$``...),
SSHA (``{SSHA}``...), and plain text for testing.  libpass identifies and verifies them in
constant time; we only add the ``{PLAIN}``/``{CRYPT}`` prefixes LDAP-style stores use.
A value shaped like a hash of a scheme we do not know (MD5-crypt ``$1$``, ``{SHA}``) never
matches anything: taking it for plain text would let the hash itself log in.
"""

from __future__ import annotations

import hmac
import re

from passlib.context import CryptContext

_context = CryptContext(
    schemes=[
        "argon2",
        "bcrypt",
        "sha512_crypt",
        "sha256_crypt",
        "ldap_salted_sha1",
        "ldap_salted_sha256",
        "ldap_salted_sha512",
    ],
)

_HASH_SHAPE = re.compile(r"\$[0-9a-z]+\$|\{[A-Za-z0-9.-]+\}")
_PLAIN = "{PLAIN}"
_CRYPT = "{CRYPT}"


def is_hash(stored: str) -> bool:
    """True when ``stored`` looks like a hash a scheme we know produced."""
    return _context.identify(_strip(stored)) is not None


def looks_like_unknown_hash(stored: str) -> bool:
    """True for a ``$id$...`` or ``{SCHEME}...`` value that no scheme here verifies."""
    if stored.startswith(_PLAIN):
        return False
    return _HASH_SHAPE.match(stored) is not None and not is_hash(stored)


def verify(password: str, stored: str) -> bool:
    """Check ``password`` against ``stored`` (a hash, or plain text when it is not one)."""
    if stored.startswith(_PLAIN):
        return hmac.compare_digest(password.encode(), stored.removeprefix(_PLAIN).encode())
    candidate = _strip(stored)
    if _context.identify(candidate) is None:
        if looks_like_unknown_hash(stored):
            return False
        return hmac.compare_digest(password.encode(), stored.encode())
    try:
        return bool(_context.verify(password, candidate))
    except (ValueError, TypeError):
        return False


def hash_password(password: str) -> str:
    """An argon2id hash, for ``jmap-host hash-password``."""
    return str(_context.handler("argon2").hash(password))


def _strip(stored: str) -> str:
    return stored.removeprefix(_CRYPT)
