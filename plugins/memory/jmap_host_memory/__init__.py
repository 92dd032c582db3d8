"""The ``memory`` directory: principals listed in the configuration file.

```toml
[directory."memory"]
type = "memory"

[[directory."memory".principals]]
name = "alice"
class = "individual"          # or "group", "resource", "location"
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
    Context,
    DirectoryType,
    Host,
    Key,
    Principal,
    Table,
    TableList,
    check_principal_list,
    hash_password,
    hookimpl,
    principal_table,
    verify_password,
)

PRINCIPAL = principal_table(
    "password hash (argon2, bcrypt, SHA-512-crypt, SSHA) or plain text for testing"
)


def _check_principals(table: dict[str, Any], key: str, ctx: Context) -> None:
    check_principal_list(table.get("principals") or [], f"{key}.principals", ctx)


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
                time_zone=p["time-zone"],
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

    async def list_principals(self) -> list[Principal]:
        return list(self._by_name.values())


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
