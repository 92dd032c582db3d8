"""Directories: where principals (users and groups) and their credentials live.

A directory plugin registers a :class:`DirectoryType` (``type = "memory"``, ``"sql"``,
``"ldap"``); the operator configures one or more ``[directory."name"]`` tables and names
the one that authenticates in ``storage.directory``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .config_schema import Table

if TYPE_CHECKING:
    from .host import Host


PRINCIPAL_KINDS = ("individual", "group", "resource", "location", "other")


@dataclass(frozen=True)
class Principal:
    """A user, a group, a resource (a projector) or a location (a room), as a directory
    describes it (RFC 9670 §2's types).

    ``name`` is the login name and is unique within a directory; ``member_of`` names the
    groups the principal belongs to; ``description`` is the display name ("Jane Doe",
    "Room 4B"); ``time_zone`` an IANA time zone name.  Only individuals log in.
    """

    name: str
    kind: Literal["individual", "group", "resource", "location", "other"] = "individual"
    emails: tuple[str, ...] = ()
    description: str = ""
    member_of: tuple[str, ...] = ()
    quota: int | None = None
    time_zone: str | None = None

    @property
    def account_id(self) -> str:
        return account_id_for(self.name)


@functools.lru_cache(maxsize=4096)  # a pure function of the name, asked on every request
def account_id_for(name: str) -> str:
    """The JMAP account id of the principal called ``name``.

    Derived, not stored, so that every node and every restart agrees; 16 base32 characters
    from a hash keep it inside the RFC 8620 §1.2 Id syntax whatever characters the login
    name has, and do not reveal the login name to other users of a shared account.
    """
    digest = hashlib.blake2b(
        name.encode("utf-8"), digest_size=10, person=b"jmap-host-acct"
    ).digest()
    return "a" + base64.b32encode(digest).decode("ascii").lower().rstrip("=")


class Directory(Protocol):
    """What the host needs from a directory.  Methods are async; a directory that does
    blocking I/O runs it in a thread (``trio.to_thread.run_sync``)."""

    async def authenticate(self, username: str, password: str) -> Principal | None:
        """Return the principal when ``password`` is right for ``username``, else None.

        Raise :class:`DirectoryUnavailable` when the back end cannot be reached, so the
        client gets a temporary failure rather than "wrong password".
        """
        ...

    async def principal(self, name: str) -> Principal | None:
        """Look a principal (user or group) up by name."""
        ...

    async def members(self, group: str) -> list[Principal]:
        """The principals that are members of ``group``."""
        ...

    async def lookup_email(self, address: str) -> Principal | None:
        """The principal that receives mail for ``address`` (its emails and aliases)."""
        ...

    # Optional (the host checks with getattr):
    #
    # async def list_principals(self) -> list[Principal]:
    #     """Every principal a user may see and share with (RFC 9670 Principal/query), at
    #     most a few thousand; a directory that cannot list (an LDAP server that refuses
    #     wide searches) leaves it out or raises DirectoryUnavailable, and Principal/query
    #     then shows the user, their groups and the principals already sharing with them."""


class DirectoryUnavailable(Exception):
    """The directory's back end cannot answer now; the client should try again later."""


@dataclass
class DirectoryType:
    """A kind of directory a plugin provides.

    ``keys`` is the schema of ``[directory."name"]`` besides ``type``; ``create(name,
    config, host)`` builds the directory from its validated table.
    """

    type: str
    keys: Table
    create: Callable[[str, dict[str, Any], Host], Directory]
    doc: str = ""
    plugin: str = field(default="", compare=False)


# -- principals written in a configuration file (memory directory, sql seed) -------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a login name, or None.  RFC 7617 §2: a user-id in Basic
    credentials cannot contain a colon."""
    if not name or name != name.strip():
        return "must not be empty or start or end with spaces"
    if ":" in name:
        return "must not contain ':' (Basic authentication splits at the first colon)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must not contain control characters"
    return None


def email_problem(address: str) -> str | None:
    """Why ``address`` cannot be a principal's email address, or None."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return f"{address!r} is not an email address"
    return None


def principal_table(secret_doc: str) -> Table:
    """The keys of a principal written in the configuration (``[[directory."memory".
    principals]]``, ``[[directory."sql".seed]]``): one schema for every directory."""
    from .config_schema import Choice, Int, Invalid, Key, List, Secret, Str
    from .passwords import looks_like_unknown_hash

    def check_secret(secret: str | None) -> None:
        if secret and looks_like_unknown_hash(secret):
            raise Invalid(
                "looks like a password hash of a scheme jmap-host cannot verify; use argon2, "
                "bcrypt, SHA-512-crypt or SSHA (jmap-host hash-password), or {PLAIN} for plain "
                "text"
            )

    return Table(
        [
            Key("name", Str(non_empty=True), doc="login name, unique in the directory"),
            Key(
                "class",
                Choice("individual", "group", "resource", "location"),
                default="individual",
                doc="a user, a group, a resource (a projector) or a location (a room)",
            ),
            Key("secret", Secret(non_empty=True), default=None, check=check_secret, doc=secret_doc),
            Key(
                "email",
                List(Str(non_empty=True)),
                default=[],
                doc="addresses; the first is the primary",
            ),
            Key("description", Str(), default="", doc="display name"),
            Key(
                "member-of",
                List(Str(non_empty=True)),
                default=[],
                doc="groups this principal belongs to",
            ),
            Key("quota", Int(min=0), default=None, doc="storage quota in octets"),
            Key("time-zone", Str(), default=None, check=_check_time_zone,
                doc="IANA time zone, e.g. Europe/Paris (RFC 9670 Principal timeZone)"),
        ]
    )  # fmt: skip


def _check_time_zone(value: str | None) -> None:
    from .config_schema import Invalid

    if value is not None and not time_zone_known(value):
        raise Invalid(f"{value!r} is not an IANA time zone name (e.g. Europe/Paris)")


def time_zone_known(name: str) -> bool:
    """Is ``name`` a time zone of the IANA database (the standard library's zoneinfo)?"""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def check_principal_list(principals: list[dict[str, Any]], key: str, ctx: Any) -> None:
    """Names unique and valid, addresses valid and owned once, individuals with a secret,
    groups without one, memberships naming groups of the list; every problem to ``ctx``
    at its key (``key`` is the list's, e.g. ``directory.memory.principals``)."""
    names: dict[str, int] = {}
    emails: dict[str, str] = {}
    for i, p in enumerate(principals):
        name = p.get("name")
        if name is None:
            continue
        where = f"{key}[{i}]"
        problem = name_problem(name)
        if problem:
            ctx.problem(f"{where}.name", problem)
        if name in names:
            ctx.problem(
                f"{where}.name", f"{name!r} is already {key.rsplit('.', 1)[-1]}[{names[name]}]"
            )
        names[name] = i
        # A secret that failed its own check is absent here (already reported); an omitted
        # one is None.
        if p.get("class") == "individual" and "secret" in p and not p["secret"]:
            ctx.problem(f"{where}.secret", "an individual needs a secret to log in")
        if p.get("class") in ("group", "resource", "location") and p.get("secret"):
            ctx.problem(
                f"{where}.secret", f"a {p['class']} does not log in; remove its secret"
            )
        for j, address in enumerate(p.get("email", [])):
            problem = email_problem(address)
            if problem:
                ctx.problem(f"{where}.email[{j}]", problem)
            lowered = address.lower()
            if lowered in emails and emails[lowered] != name:
                ctx.problem(
                    f"{where}.email[{j}]", f"{address!r} also belongs to {emails[lowered]!r}"
                )
            emails[lowered] = name
    groups = {p["name"] for p in principals if p.get("class") == "group" and "name" in p}
    for i, p in enumerate(principals):
        for j, group in enumerate(p.get("member-of", [])):
            if group not in groups:
                ctx.problem(
                    f"{key}[{i}].member-of[{j}]",
                    f"no group principal called {group!r} in this directory",
                )
