"""The ``ldap`` directory: users and groups from an LDAP server (OpenLDAP, 389-DS, AD).

```toml
[storage]
directory = "ldap"

[directory."ldap"]
type = "ldap"
url = ["ldap://ldap1.example.org", "ldap://ldap2.example.org"]   # failover, in order
base-dn = "dc=example,dc=org"

[directory."ldap".bind]
dn = "cn=jmap,ou=system,dc=example,dc=org"
secret = "%{file:/run/secrets/ldap-bind}%"
```

Keys follow Stalwart's LDAP directory (``bind.auth.method``, ``filter.name``,
``filter.email``, ``attributes.*``...).  Passwords are checked by binding as the user
(``bind.auth.method = "lookup"``, the default) or by verifying the hash attribute locally
(``"default"``).  Nothing connects while the configuration is loaded; an unreachable server
makes logins answer 503.  See the "LDAP directory" section of docs/operator-guide.md.
"""

from __future__ import annotations

from typing import Any

from jmap_host import DirectoryType, Host, hookimpl

from .config import keys
from .directory import LdapDirectory


def _create(name: str, config: dict[str, Any], host: Host) -> LdapDirectory:
    return LdapDirectory(name, config, host)


@hookimpl
def register_directories() -> list[DirectoryType]:
    return [
        DirectoryType(
            "ldap",
            keys(),
            _create,
            doc="users and groups from an LDAP server (bind as the user or verify its hash)",
        )
    ]


@hookimpl
def startup(host: Host) -> Any:
    async def start() -> None:
        # In the background: an unreachable server must not delay or stop the start-up.
        for directory in host.directories.values():
            if isinstance(directory, LdapDirectory) and host.nursery is not None:
                host.nursery.start_soon(directory.probe)

    return start()


@hookimpl
def shutdown(host: Host) -> None:
    for directory in host.directories.values():
        if isinstance(directory, LdapDirectory):
            directory.close()


__all__ = ["LdapDirectory"]
