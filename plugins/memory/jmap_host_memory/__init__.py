"""The ``memory`` directory: principals listed in the configuration file.

```toml
[directory."memory"]
type = "memory"

[[directory."memory".principals]]
name = "alice"
class = "individual"          # or "group"
secret = "$argon2id$..."      # a hash, or plain text for testing
email = ["alice@example.org", "sales@example.org"]
description = "Alice Example"
member-of = ["sales"]
```
"""

from __future__ import annotations

import functools
from typing import Any

import trio

from jmap_host import (
    Choice,
    Context,
    DirectoryType,
    Host,
    Int,
    Invalid,
    Key,
    List,
    Principal,
    Secret,
    Str,
    Table,
    TableList,
    hash_password,
    hookimpl,
    looks_like_unknown_hash,
    verify_password,
)


def _check_secret(secret: str) -> None:
    if looks_like_unknown_hash(secret):
        raise Invalid(
            "looks like a password hash of a scheme jmap-host cannot verify; use argon2, bcrypt, "
            "SHA-512-crypt or SSHA (jmap-host hash-password), or {PLAIN} for plain text"
        )


PRINCIPAL = Table(
    [
        Key("name", Str(non_empty=True), doc="login name, unique in the directory"),
        Key("class", Choice("individual", "group"), default="individual", doc="a user or a group"),
        Key(
            "secret",
            Secret(non_empty=True),
            default=None,
            check=_check_secret,
            doc="password hash (argon2, bcrypt, SHA-512-crypt, SSHA) or plain text for testing",
        ),
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
    ]
)


def _check_principals(table: dict[str, Any], key: str, ctx: Context) -> None:
    principals = table.get("principals") or []
    seen: dict[str, int] = {}
    emails: dict[str, str] = {}
    for i, p in enumerate(principals):
        name = p.get("name")
        if name is None:
            continue
        where = f"{key}.principals[{i}]"
        if name in seen:
            ctx.problem(f"{where}.name", f"{name!r} is already principals[{seen[name]}]")
        seen[name] = i
        # A secret that failed its own check is absent here (already reported); an omitted
        # one is None.
        if p.get("class") == "individual" and "secret" in p and not p["secret"]:
            ctx.problem(f"{where}.secret", "an individual needs a secret to log in")
        for j, address in enumerate(p.get("email", [])):
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
                raise_at = f"{key}.principals[{i}].member-of[{j}]"
                ctx.problem(raise_at, f"no group principal called {group!r} in this directory")


KEYS = Table(
    [Key("principals", TableList(PRINCIPAL), default=[], doc="the users and groups")],
    validate=_check_principals,
)


class MemoryDirectory:
    def __init__(self, name: str, config: dict[str, Any], host: Host):
        self.name = name
        self._secrets: dict[str, str | None] = {}
        self._by_name: dict[str, Principal] = {}
        self._by_email: dict[str, Principal] = {}
        for p in config["principals"]:
            principal = Principal(
                name=p["name"],
                kind=p["class"],
                emails=tuple(p["email"]),
                description=p["description"],
                member_of=tuple(p["member-of"]),
                quota=p["quota"],
            )
            self._by_name[principal.name] = principal
            self._secrets[principal.name] = p["secret"]
            for address in principal.emails:
                self._by_email[address.lower()] = principal

    async def authenticate(self, username: str, password: str) -> Principal | None:
        # Users may log in with their name or any of their addresses.
        principal = self._by_name.get(username) or self._by_email.get(username.lower())
        if principal is None or principal.kind != "individual":
            # Verify against a dummy so an unknown user costs as much as a wrong password.
            await trio.to_thread.run_sync(verify_password, password, _dummy_hash())
            return None
        secret = self._secrets.get(principal.name)
        if not secret:
            return None
        ok = await trio.to_thread.run_sync(verify_password, password, secret)
        return principal if ok else None

    async def principal(self, name: str) -> Principal | None:
        return self._by_name.get(name)

    async def members(self, group: str) -> list[Principal]:
        return [p for p in self._by_name.values() if group in p.member_of]

    async def lookup_email(self, address: str) -> Principal | None:
        return self._by_email.get(address.lower())


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password anyone has")


def _create(name: str, config: dict[str, Any], host: Host) -> MemoryDirectory:
    return MemoryDirectory(name, config, host)


@hookimpl
def register_directories() -> list[DirectoryType]:
    return [
        DirectoryType("memory", KEYS, _create, doc="principals listed in the configuration file")
    ]


__all__ = ["MemoryDirectory"]
