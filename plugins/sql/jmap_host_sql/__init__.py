"""The ``sql`` directory: users and groups in SQLite, managed with ``jmap-host principal``.

```toml
[storage]
directory = "sql"

[directory."sql"]
type = "sql"
# path = "users.db"          # a separate SQLite file; default: the host database

[[directory."sql".seed]]      # created on the first start, if the directory is empty
name = "demo"
secret = "demo"
email = ["demo@example.org"]
```

By default the principals live in the host's database, in tables prefixed ``sql_``
(created by this plugin's migration set).  The queries the directory runs can be replaced,
Stalwart style (``[directory."sql".query] name/members/recipients/emails`` and
``[directory."sql".columns]``), to read an existing user table.  See the "SQL directory"
section of docs/operator-guide.md.
"""

from __future__ import annotations

from typing import Any

import click
import trio
from sqlite_utils import Migrations

from jmap_host import DirectoryType, DirectoryUnavailable, Host, hookimpl

from .config import keys
from .directory import SqlDirectory, log
from .schema import sql_migrations


def _create(name: str, config: dict[str, Any], host: Host) -> SqlDirectory:
    return SqlDirectory(name, config, host)


@hookimpl
def register_directories() -> list[DirectoryType]:
    return [
        DirectoryType(
            "sql",
            keys(),
            _create,
            doc="principals in SQLite (the host database or a separate file), "
            "managed with `jmap-host principal`",
        )
    ]


@hookimpl
def migrations(host: Host) -> list[Migrations]:
    # Only a directory in the host database needs our tables there.
    in_store = any(
        t["type"] == "sql" and t.get("path") is None for t in host.config.data["directory"].values()
    )
    return [sql_migrations] if in_store else []


def _start(directory: SqlDirectory) -> None:
    try:
        if directory.path is not None:
            directory.backend.prepare_sync()
        directory.probe_sync()
        if directory.seed_sync():
            log.info(
                'directory "%s": created %d principal(s) from its seed list',
                directory.name,
                len(directory.seed),
            )
    except DirectoryUnavailable as exc:
        # Not fatal: the file may come back; until then logins answer 503.
        log.warning("sql directory not available at start-up: %s", exc)


@hookimpl
def startup(host: Host) -> Any:
    async def start() -> None:
        for directory in host.directories.values():
            if isinstance(directory, SqlDirectory):
                await trio.to_thread.run_sync(_start, directory)

    return start()


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import principal

    cli.add_command(principal)


__all__ = ["SqlDirectory"]
