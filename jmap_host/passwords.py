"""Checking a password against what a directory stores.

Operators bring hashes from the servers they migrate from, so every common scheme is
accepted: argon2 (``$argon2id$``...), bcrypt (``$2b$``...), SHA-512-crypt (``$6$``...),
SSHA (``{SSHA}``...), and plain text for testing.  libpass identifies and verifies them in
constant time; we only add the ``{PLAIN}``/``{CRYPT}`` prefixes LDAP-style stores use.
"""

from __future__ import annotations

import hmac

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


def is_hash(stored: str) -> bool:
    """True when ``stored`` looks like a hash a scheme we know produced."""
    return _context.identify(_strip(stored)) is not None


def verify(password: str, stored: str) -> bool:
    """Check ``password`` against ``stored`` (a hash, or plain text when it is not one)."""
    if stored.startswith("{PLAIN}"):
        return hmac.compare_digest(password.encode(), stored[len("{PLAIN}") :].encode())
    candidate = _strip(stored)
    if _context.identify(candidate) is None:
        return hmac.compare_digest(password.encode(), stored.encode())
    try:
        return bool(_context.verify(password, candidate))
    except (ValueError, TypeError):
        return False


def hash_password(password: str) -> str:
    """An argon2id hash, for ``jmap-host hash-password``."""
    return str(_context.handler("argon2").hash(password))


def _strip(stored: str) -> str:
    return stored[len("{CRYPT}") :] if stored.startswith("{CRYPT}") else stored
