"""Directories: where principals (users and groups) and their credentials live.

A directory plugin registers a :class:`DirectoryType` (``type = "memory"``, ``"sql"``,
``"ldap"``); the operator configures one or more ``[directory."name"]`` tables and names
the one that authenticates in ``storage.directory``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .config_schema import Table

if TYPE_CHECKING:
    from .host import Host


@dataclass(frozen=True)
class Principal:
    """A user or a group, as a directory describes it.

    ``name`` is the login name and is unique within a directory; ``member_of`` names the
    groups the principal belongs to.
    """

    name: str
    kind: Literal["individual", "group"] = "individual"
    emails: tuple[str, ...] = ()
    description: str = ""
    member_of: tuple[str, ...] = ()
    quota: int | None = None

    @property
    def account_id(self) -> str:
        return account_id_for(self.name)


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
