"""Account provisioning: each plugin's `account_provisioned` hook runs once per account,
at the first login that can use it; `migrations` sets are applied before start-up."""

from __future__ import annotations

import sqlite_utils

import jmap_host
from jmap_host.testing import running_server, write_config

notes = sqlite_utils.Migrations("test-notes")


@notes()
def create_notes(db):
    db["notes_note"].create({"account": str, "text": str}, pk="account")


class Notes:
    def __init__(self):
        self.calls: list[str] = []

    @jmap_host.hookimpl
    def migrations(self, host):
        return [notes]

    @jmap_host.hookimpl
    def account_provisioned(self, host, account):
        self.calls.append(account.id)

        async def defaults():
            await host.store.write(
                lambda db: db["notes_note"].insert({"account": account.id, "text": "welcome"})
            )

        return defaults()


async def test_each_account_is_provisioned_once(tmp_path):
    plugin = Notes()
    config = write_config(tmp_path)
    async with running_server(config, extra_plugins=[("notes", plugin)]) as server:
        async with server.client("alice") as alice:
            session = (await alice.get("/jmap/session")).json()
            await alice.get("/jmap/session")
        assert sorted(plugin.calls) == sorted(session["accounts"])  # own + group "sales"
        async with server.client("bob") as bob:
            await bob.get("/jmap/session")
        assert len(plugin.calls) == 3
        async with server.client() as anonymous:
            await anonymous.get("/jmap/session")  # no login, no provisioning
        assert len(plugin.calls) == 3
        rows = await server.host.store.read(lambda db: list(db["notes_note"].rows))
        assert {r["account"] for r in rows} == set(plugin.calls)
    # A restart remembers which accounts were provisioned.
    again = Notes()
    async with running_server(config, extra_plugins=[("notes", again)]) as server:
        async with server.client("alice") as alice:
            assert (await alice.get("/jmap/session")).status_code == 200
    assert again.calls == []
