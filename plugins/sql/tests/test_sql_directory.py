"""The ``sql`` directory over real HTTP and the real ``jmap-host principal`` command line.

Authentication is HTTP Basic (RFC 7617) or Bearer; the Session resource (RFC 8620 §2) lists
the user's own account and the group accounts it is a member of.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import pytest
import trio

from jmap_host import ConfigError, StartupError, account_id_for, hash_password, load_host
from jmap_host.testing import basic, running_server, write_config

JMAP_HOST = [sys.executable, "-m", "jmap_host"]
SESSION = "/.well-known/jmap"

SQL_BASE = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "sql"
path = "{data}"

[directory."sql"]
type = "sql"
"""


async def cli(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """Run ``jmap-host ARGS`` in a subprocess without blocking the server under test."""
    result = await trio.run_process(
        [*JMAP_HOST, *args],
        stdin=stdin.encode() if stdin is not None else b"",
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def ok(*args: str, stdin: str | None = None) -> str:
    code, out, err = await cli(*args, stdin=stdin)
    assert code == 0, (args, out, err)
    return out


async def add_user(config: Path, name: str, password: str, *extra: str) -> None:
    await ok(
        "principal",
        "add",
        name,
        "-c",
        str(config),
        "--password-stdin",
        *extra,
        stdin=password + "\n",
    )


async def create_token(config: Path, user: str) -> tuple[str, str]:
    out = await ok("token", "create", "--user", user, "--label", "phone", "-c", str(config))
    token_id = re.search(r"created token (\w+)", out).group(1)
    return token_id, out.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status(server, headers: dict[str, str]) -> int:
    async with server.client() as client:
        return (await client.get(SESSION, headers=headers)).status_code


@pytest.fixture
def sql_config(tmp_path: Path) -> Path:
    return write_config(tmp_path, base=SQL_BASE)


async def test_log_in_by_name_and_by_alias_and_see_the_group_account(sql_config):
    await ok(
        "principal",
        "add",
        "sales",
        "--class",
        "group",
        "--email",
        "sales@example.org",
        "--description",
        "Sales",
        "-c",
        str(sql_config),
    )
    await add_user(
        sql_config,
        "alice",
        "correct horse",
        "--email",
        "alice@example.org",
        "--email",
        "al@example.org",
        "--member-of",
        "sales",
        "--quota",
        "1000",
    )
    async with running_server(sql_config) as server, server.client() as client:
        by_name = await client.get(SESSION, headers=basic("alice", "correct horse"))
        assert by_name.status_code == 200
        session = by_name.json()
        assert session["username"] == "alice"
        own, group = account_id_for("alice"), account_id_for("sales")
        assert session["accounts"][own]["isPersonal"] is True
        assert session["accounts"][own]["name"] == "alice@example.org"  # the primary address
        assert session["accounts"][group]["isPersonal"] is False
        assert session["accounts"][group]["name"] == "sales@example.org"

        # Any address logs in, case-insensitively; the session is the same user's.
        by_alias = await client.get(SESSION, headers=basic("AL@Example.org", "correct horse"))
        assert by_alias.status_code == 200
        assert by_alias.json()["username"] == "alice"

        wrong = await client.get(SESSION, headers=basic("alice", "wrong"))
        assert wrong.status_code == 401
        assert any(v.startswith("Basic") for v in wrong.headers.get_list("www-authenticate"))
        assert (await client.get(SESSION, headers=basic("nobody", "x"))).status_code == 401
        # A group is an account, not a login.
        assert (await client.get(SESSION, headers=basic("sales", ""))).status_code == 401

        directory = server.host.directory
        assert (await directory.lookup_email("Alice@Example.org")).name == "alice"
        assert (await directory.lookup_email("sales@example.org")).name == "sales"
        assert await directory.lookup_email("nobody@example.org") is None
        assert [p.name for p in await directory.members("sales")] == ["alice"]
        alice = await directory.principal("alice")
        assert alice.emails == ("alice@example.org", "al@example.org")
        assert alice.member_of == ("sales",)
        assert alice.quota == 1000


async def test_disabled_user_and_its_bearer_tokens_get_401(sql_config):
    await add_user(sql_config, "carol", "carol-pw")
    _, token = await create_token(sql_config, "carol")
    async with running_server(sql_config) as server:
        assert await status(server, bearer(token)) == 200
        await ok("principal", "disable", "carol", "-c", str(sql_config))
        assert await status(server, bearer(token)) == 401
        assert await status(server, basic("carol", "carol-pw")) == 401
        assert await server.host.directory.principal("carol") is None
        out = await ok("principal", "list", "-c", str(sql_config))
        assert re.search(r"carol\s+individual\s+disabled", out)

        await ok("principal", "enable", "carol", "-c", str(sql_config))
        assert await status(server, bearer(token)) == 200
        assert await status(server, basic("carol", "carol-pw")) == 200


async def test_set_password_show_and_delete_revokes_tokens(sql_config):
    await add_user(sql_config, "dave", "old-pw", "--email", "dave@example.org")
    await ok(
        "principal",
        "set-password",
        "dave",
        "-c",
        str(sql_config),
        "--password-stdin",
        stdin="new-pw\n",
    )
    await create_token(sql_config, "dave")
    await create_token(sql_config, "dave")
    shown = await ok("principal", "show", "dave", "-c", str(sql_config))
    assert "dave@example.org" in shown and "tokens:      2" in shown
    assert "argon2" not in shown and "new-pw" not in shown  # never the hash
    async with running_server(sql_config) as server:
        assert await status(server, basic("dave", "old-pw")) == 401
        assert await status(server, basic("dave", "new-pw")) == 200

    out = await ok("principal", "delete", "dave", "-c", str(sql_config))
    assert "revoked 2 token(s)" in out
    assert "dave" not in await ok("token", "list", "-c", str(sql_config))
    code, _, err = await cli("token", "create", "--user", "dave", "-c", str(sql_config))
    assert code == 1 and "no user 'dave'" in err
    code, _, err = await cli("principal", "show", "dave", "-c", str(sql_config))
    assert code == 1 and "no principal called 'dave'" in err
    async with running_server(sql_config) as server:
        assert await status(server, basic("dave", "new-pw")) == 401


async def test_token_create_list_revoke_for_an_sql_user(sql_config):
    await add_user(sql_config, "erin", "erin-pw")
    await ok("principal", "add", "team", "--class", "group", "-c", str(sql_config))
    token_id, token = await create_token(sql_config, "erin")
    listed = await ok("token", "list", "--user", "erin", "-c", str(sql_config))
    assert token_id in listed and "phone" in listed
    code, _, err = await cli("token", "create", "--user", "team", "-c", str(sql_config))
    assert code == 1 and "no user 'team' in directory 'sql'" in err
    async with running_server(sql_config) as server:
        async with server.client(headers=bearer(token)) as client:
            assert (await client.get(SESSION)).json()["username"] == "erin"
        await ok("token", "revoke", token_id, "-c", str(sql_config))
        assert await status(server, bearer(token)) == 401


async def test_passwords_are_not_taken_from_the_command_line(sql_config):
    code, _, err = await cli("principal", "add", "x", "--password", "s3cret", "-c", str(sql_config))
    assert code == 2 and "No such option" in err
    code, _, err = await cli(
        "principal", "add", "x", "-c", str(sql_config), "--password-stdin", stdin="\n"
    )
    assert code == 1 and "must not be empty" in err
    code, _, err = await cli(
        "principal", "add", "a:b", "-c", str(sql_config), "--password-stdin", stdin="pw\n"
    )
    assert code == 2 and "must not contain ':'" in err  # RFC 7617 §2: no colon in a user-id
    await add_user(sql_config, "gina", "pw", "--email", "gina@example.org")
    code, _, err = await cli(
        "principal",
        "add",
        "hal",
        "--email",
        "GINA@example.org",
        "-c",
        str(sql_config),
        "--password-stdin",
        stdin="pw\n",
    )
    assert code == 1 and "already belongs to 'gina'" in err
    code, _, err = await cli(
        "principal",
        "add",
        "hal",
        "--member-of",
        "gina",
        "-c",
        str(sql_config),
        "--password-stdin",
        stdin="pw\n",
    )
    assert code == 1 and "no group called 'gina' (it is a user)" in err


async def test_commands_refuse_a_directory_of_another_type(tmp_path):
    config = write_config(tmp_path)  # the memory directory
    code, _, err = await cli("principal", "list", "-c", str(config))
    assert code == 2 and 'has type "memory"' in err
    code, _, err = await cli("principal", "list", "--directory", "nope", "-c", str(config))
    assert code == 2 and "no [directory.'nope']" in err


SEED = """\
[[directory."sql".seed]]
name = "demo"
secret = "demo"
email = ["demo@example.org"]
member-of = ["team"]

[[directory."sql".seed]]
name = "team"
class = "group"
email = ["team@example.org"]
"""


async def test_seed_is_created_on_the_first_start_only(tmp_path):
    config = write_config(tmp_path, SEED, base=SQL_BASE)
    async with running_server(config) as server, server.client("demo", "demo") as client:
        session = (await client.get(SESSION)).json()
        assert account_id_for("team") in session["accounts"]
    shown = await ok("principal", "show", "demo", "-c", str(config))
    assert "$argon2" not in shown and "password:    set" in shown
    store = load_host(config).store  # (the host database, on either back end)
    secret = store.read_sync(
        lambda db: db.execute("SELECT secret FROM sql_principal WHERE name = 'demo'").fetchone()[0]
    )
    store.close()
    assert secret.startswith("$argon2id$")  # the plain-text seed password was hashed

    await ok("principal", "delete", "demo", "-c", str(config))
    async with running_server(config) as server:
        assert await status(server, basic("demo", "demo")) == 401  # not seeded again


async def test_seed_is_skipped_when_the_directory_already_has_principals(tmp_path):
    config = write_config(tmp_path, SEED, base=SQL_BASE)
    await add_user(config, "owner", "owner-pw")
    async with running_server(config) as server:
        assert await status(server, basic("demo", "demo")) == 401
        assert await status(server, basic("owner", "owner-pw")) == 200


OPERATOR_BASE = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "corp"
path = "{data}"

[directory."corp"]
type = "sql"
path = "users.db"

[directory."corp".query]
name = "SELECT login AS name, kind, pw, full_name, active, mbox_quota FROM people WHERE login = ?"
members = "SELECT grp FROM memberships WHERE login = ?"
recipients = "SELECT login FROM addresses WHERE lower(addr) = ?"
emails = "SELECT addr FROM addresses WHERE login = ? ORDER BY prio"
group-members = "SELECT login FROM memberships WHERE grp = ?"

[directory."corp".columns]
class = "kind"
secret = "pw"
description = "full_name"
enabled = "active"
quota = "mbox_quota"
"""


def operator_database(path: Path) -> None:
    """An existing user database with the operator's own schema."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE people (login TEXT PRIMARY KEY, kind TEXT, pw TEXT, full_name TEXT,
                             active BOOLEAN, mbox_quota INTEGER);
        CREATE TABLE addresses (login TEXT, addr TEXT, prio INTEGER);
        CREATE TABLE memberships (login TEXT, grp TEXT);
        """
    )
    db.executemany(
        "INSERT INTO people VALUES (?, ?, ?, ?, ?, ?)",
        [
            ("ann", "user", hash_password("ann-pw"), "Ann Corp", True, 5000),
            ("zed", "user", hash_password("zed-pw"), "Zed Gone", False, None),
            ("eng", "Group", None, "Engineering", True, None),
        ],
    )
    db.executemany(
        "INSERT INTO addresses VALUES (?, ?, ?)",
        [
            ("ann", "ann@corp.example", 0),
            ("ann", "Ann.Alias@corp.example", 1),
            ("eng", "eng@corp.example", 0),
        ],
    )
    db.executemany("INSERT INTO memberships VALUES (?, ?)", [("ann", "eng"), ("zed", "eng")])
    db.commit()
    db.close()


async def test_separate_file_with_the_operators_own_schema(tmp_path):
    operator_database(tmp_path / "users.db")
    config = write_config(tmp_path, base=OPERATOR_BASE)
    async with running_server(config) as server, server.client() as client:
        session = await client.get(SESSION, headers=basic("ann", "ann-pw"))
        assert session.status_code == 200
        accounts = session.json()["accounts"]
        assert accounts[account_id_for("ann")]["name"] == "ann@corp.example"
        assert accounts[account_id_for("eng")]["isPersonal"] is False
        alias = await client.get(SESSION, headers=basic("ann.alias@corp.example", "ann-pw"))
        assert alias.json()["username"] == "ann"
        assert (await client.get(SESSION, headers=basic("zed", "zed-pw"))).status_code == 401

        directory = server.host.directory
        ann = await directory.principal("ann")
        assert (ann.description, ann.quota) == ("Ann Corp", 5000)
        assert ann.emails == ("ann@corp.example", "Ann.Alias@corp.example")
        assert (await directory.principal("eng")).kind == "group"
        assert [p.name for p in await directory.members("eng")] == ["ann"]  # zed is disabled

    # Tokens work for the operator's users; management commands leave their tables alone.
    _, token = await create_token(config, "ann")
    shown = await ok("principal", "show", "ann", "-c", str(config))
    assert "Ann Corp" in shown and "enabled:     yes" in shown
    code, _, err = await cli(
        "principal", "add", "bob", "-c", str(config), "--password-stdin", stdin="pw\n"
    )
    assert code == 1 and "reads your own tables" in err
    tables = {
        row[0]
        for row in sqlite3.connect(tmp_path / "users.db").execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    assert tables == {"people", "addresses", "memberships"}
    async with running_server(config) as server:
        assert await status(server, bearer(token)) == 200


async def test_a_query_naming_a_missing_table_stops_the_start_up(tmp_path):
    operator_database(tmp_path / "users.db")
    config = write_config(
        tmp_path, base=OPERATOR_BASE.replace("FROM memberships WHERE grp", "FROM groups WHERE grp")
    )
    host = load_host(config)
    try:
        with pytest.raises(StartupError, match=r'directory\."corp"\.query\.group-members: no such'):
            await host.startup()
    finally:
        host.store.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('name = "SELECT * FROM people"', "needs exactly one '?' placeholder (for the login name)"),
        ('members = "SELECT grp FROM m WHERE a = ? OR b = ?"', "found 2"),
        ('recipients = "SELECT login FROM a WHERE addr = :addr"', "'?' as the only placeholder"),
        ('emails = "DELETE FROM addresses WHERE login = ?"', "must be a SELECT statement"),
        ('emails = "SELECT 1 WHERE 1 = ?; DROP TABLE people"', "single statement"),
        ('members = "SELEC grp FROM m WHERE a = ?"', "must be a SELECT statement"),
        ('members = "SELECT grp FROM m WHERE a = ? AND"', "not valid SQLite"),
        ("name = 42", "expected a string"),
        ('name = ""', "must not be empty"),
        ('nmae = "SELECT 1 WHERE 1 = ?"', "unknown key (did you mean 'name'?)"),
    ],
)
def test_bad_query_overrides_are_config_errors(tmp_path, line, message):
    config = write_config(tmp_path, f'[directory."sql".query]\n{line}\n', base=SQL_BASE)
    with pytest.raises(ConfigError) as info:
        load_host(config)
    assert message in str(info.value)
    assert "directory.sql.query." in str(info.value)


def test_query_checks_ignore_question_marks_in_literals_and_other_mistakes(tmp_path):
    config = write_config(
        tmp_path,
        """
        [directory."sql".query]
        name = "SELECT name, 'why?' AS note FROM sql_principal WHERE name = ? -- really?"
        emails = ""
        """,
        base=SQL_BASE,
    )
    host = load_host(config)
    assert host.directory.queries["emails"] == ""
    config = write_config(
        tmp_path,
        """
        timeout = "soon"

        [directory."sql".columns]
        clas = "kind"
        secret = ""

        [[directory."sql".seed]]
        name = "x"
        member-of = ["nope"]
        """,
        base=SQL_BASE,
    )
    with pytest.raises(ConfigError) as info:
        load_host(config)
    text = str(info.value)
    assert "directory.sql.timeout: 'soon' is not a duration" in text
    assert "directory.sql.columns.clas: unknown key (did you mean 'class'?)" in text
    assert "directory.sql.columns.secret: must name a column" in text
    assert "directory.sql.seed[0].member-of[0]: no group principal called 'nope'" in text
    assert "directory.sql.seed: seeding needs the built-in schema" in text


async def test_check_config_names_the_bad_key(tmp_path):
    config = write_config(tmp_path, '[directory."sql".query]\nname = "SELECT 1"\n', base=SQL_BASE)
    code, _, err = await cli("check-config", "-c", str(config))
    assert code == 2 and "directory.sql.query.name: needs exactly one '?'" in err


async def test_locked_or_unreadable_file_answers_503(tmp_path):
    config = write_config(tmp_path, 'path = "users.db"\ntimeout = "100ms"\n', base=SQL_BASE)
    await add_user(config, "ivy", "ivy-pw")
    assert (tmp_path / "users.db").exists()
    async with running_server(config) as server:
        assert await status(server, basic("ivy", "ivy-pw")) == 200

        holder = sqlite3.connect(tmp_path / "users.db", isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE sql_principal SET description = 'locked'")
        try:
            async with server.client() as client:
                # Credentials not seen before, so the directory must answer (RFC 8620 §2: the
                # client retries later rather than asking the user for a new password).
                response = await client.get(SESSION, headers=basic("ivy", "other"))
                assert response.status_code == 503
                assert "Retry-After" in response.headers
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await status(server, basic("ivy", "wrong")) == 401

        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp_path / 'users.db'}{suffix}").unlink(missing_ok=True)
        (tmp_path / "users.db").write_bytes(b"this is not a database" * 100)
        assert await status(server, basic("ivy", "still-wrong")) == 503
        (tmp_path / "users.db").unlink()
        assert await status(server, basic("ivy", "again-wrong")) == 503
        assert not (tmp_path / "users.db").exists()  # reading never creates an empty file


PRINCIPAL_SEED = SEED + """
[[directory."sql".seed]]
name = "projector"
class = "resource"
description = "Projector 2"

[[directory."sql".seed]]
name = "room-4b"
class = "location"
description = "Room 4B"
time-zone = "Europe/Paris"
"""


async def test_principals_come_from_the_sql_directory(tmp_path):
    """RFC 9670 §2: Principal/get and /query list the SQL directory's users, groups,
    resources and locations (its ``list`` query), with their time zones."""
    config = write_config(tmp_path, PRINCIPAL_SEED, base=SQL_BASE)
    using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:principals"]
    me = account_id_for("demo")
    async with running_server(config) as server, server.client() as client:
        body = {
            "using": using,
            "methodCalls": [
                ["Principal/query", {"accountId": me, "filter": {"type": "location"}}, "q"],
                ["Principal/get", {"accountId": me, "ids": None}, "g"],
            ],
        }
        reply = await client.post("/jmap/api", json=body, headers=basic("demo", "demo"))
        assert reply.status_code == 200, reply.text
        query, got = (r[1] for r in reply.json()["methodResponses"])
    assert query["ids"] == [account_id_for("room-4b")]
    by_name = {p["name"]: p for p in got["list"]}
    assert {n: p["type"] for n, p in by_name.items()} == {
        "demo": "individual", "team": "group", "Projector 2": "resource", "Room 4B": "location",
    }  # fmt: skip
    assert by_name["Room 4B"]["timeZone"] == "Europe/Paris"
    assert list(by_name["team"]["accounts"]) == [account_id_for("team")]
