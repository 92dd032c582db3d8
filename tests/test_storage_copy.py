"""``jmap-host storage copy`` (jmap_host.storagecopy): a SQLite store filled through the API,
copied into PostgreSQL with its blob files, then served from there; and ``jmap-host
migrate`` on both back ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from jmap_host.cli import cli
from jmap_host.testing import AccountClient, config_text, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
# The example plugin's Notes alone, so that what is copied and skipped is the tests' own.
PLUGINS = '[plugins]\nopt-in = ["example"]\ndisabled = ["mail", "calendars", "contacts"]\n'


def command(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


async def run(*args: str) -> tuple[int, str]:
    return await trio.to_thread.run_sync(lambda: command(*args))


async def client_of(server) -> AccountClient:  # type: ignore[no-untyped-def]
    http = server.client("alice")
    session = (await http.get("/jmap/session")).json()
    return AccountClient(http, session["primaryAccounts"][EXAMPLE], [CORE, EXAMPLE])


@pytest.mark.backend("postgresql")
@pytest.mark.empty_database
async def test_a_sqlite_store_copied_to_postgresql_serves_the_same_data(tmp_path: Path) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old = old_dir / "jmap.toml"
    old.write_text(config_text(old_dir, PLUGINS))  # SQLite (no PostgreSQL URL)
    new = write_config(new_dir, PLUGINS)  # this test's PostgreSQL database

    async with running_server(old) as server:
        alice = await client_of(server)
        blob = await alice.upload(b"the attachment", "text/plain")
        created = await alice.ok(
            "Note/set",
            create={
                "a": {"title": "first", "tags": ["x"], "attachment": blob},
                "b": {"title": "second", "done": True},
                "c": {"title": "third"},
            },
        )
        ids = {k: v["id"] for k, v in created["created"].items()}
        await alice.ok("Note/set", destroy=[ids["c"]])
        before = await alice.ok("Note/get", ids=None)
        await alice.http.aclose()

    # The target made ready by `migrate` first (an operator's first step) is still empty.
    code, output = await run("migrate", "-c", str(new))
    assert code == 0 and "host:" in output, output
    code, output = await run("migrate", "-c", str(new))
    assert (code, output.strip()) == (0, "nothing to apply")

    code, output = await run("storage", "copy", "--from-config", str(old), "--to-config", str(new))
    assert code == 0, output
    assert "(counts verified), 1 blob files (0 already there)" in output, output
    assert (new_dir / "data" / "blobs").is_dir() or "database" in new.read_text()

    async with running_server(new) as server:
        assert server.host.store.dialect.name == "postgresql"
        alice = await client_of(server)
        after = await alice.ok("Note/get", ids=None)
        assert sorted(after["list"], key=lambda n: n["id"]) == sorted(
            before["list"], key=lambda n: n["id"]
        )
        assert after["state"] == before["state"]
        download = await alice.http.get(
            f"/jmap/download/{alice.account}/{blob}/a.txt?type=text/plain"
        )
        assert download.status_code == 200 and download.content == b"the attachment"
        # Rowids, identities and the change log continue from the copied ones.
        more = await alice.ok("Note/set", create={"d": {"title": "fourth"}})
        changes = await alice.ok("Note/changes", sinceState=before["state"])
        assert changes["created"] == [more["created"]["d"]["id"]]
        await alice.http.aclose()

    # A second copy into the now non-empty target is refused, unless forced.
    code, output = await run("storage", "copy", "--from-config", str(old), "--to-config", str(new))
    assert code == 1 and "not empty" in output, output
    code, output = await run(
        "storage", "copy", "--from-config", str(old), "--to-config", str(new), "--force"
    )
    assert code == 0 and "0 blob files (1 already there)" in output, output


async def test_copy_wants_sqlite_into_postgresql(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "jmap.toml").write_text(config_text(one, PLUGINS))
    (two / "jmap.toml").write_text(config_text(two, PLUGINS))
    code, output = await run(
        "storage", "copy", "--from-config", str(one / "jmap.toml"),
        "--to-config", str(two / "jmap.toml"),
    )  # fmt: skip
    assert code == 1 and "must be PostgreSQL" in output, output


@pytest.mark.empty_database
async def test_migrate_applies_what_is_pending_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, PLUGINS)
    code, output = await run("migrate", "-c", str(config))
    assert code == 0 and "host:blobs" in output, output
    code, output = await run("migrate", "-c", str(config))
    assert (code, output.strip()) == (0, "nothing to apply")


@pytest.mark.backend("postgresql")
async def test_a_table_the_target_lacks_is_not_lost_silently(tmp_path: Path) -> None:
    import sqlite3

    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old = old_dir / "jmap.toml"
    old.write_text(config_text(old_dir, PLUGINS))
    new = write_config(new_dir, PLUGINS)
    code, output = await run("migrate", "-c", str(old))
    assert code == 0, output
    with sqlite3.connect(old_dir / "data" / "jmap-host.db") as db:
        db.execute("CREATE TABLE stray (x TEXT)")  # (a plugin's, not active in new.toml)
        db.execute("INSERT INTO stray VALUES ('kept?')")
        db.execute("CREATE VIRTUAL TABLE words USING fts5(text)")  # an index: skipped
        db.execute("INSERT INTO words VALUES ('hello')")
    code, output = await run("storage", "copy", "--from-config", str(old), "--to-config", str(new))
    assert code == 1 and "no place for table stray (1 rows)" in output, output
    assert "words" not in output.split("no place for")[1]
    code, output = await run(
        "storage", "copy", "--from-config", str(old), "--to-config", str(new), "--force"
    )
    assert code == 0 and "left out (--force): table stray (1 rows)" in output, output
    assert "full-text indexes): words, words_config, words_content" in output
