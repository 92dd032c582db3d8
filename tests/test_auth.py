"""Authentication (RFC 8620 §8.2, RFC 7617 Basic, RFC 6750 Bearer), login throttling and
the JMAP Session resource (RFC 8620 §2), all exercised over real HTTP."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from passlib.hash import bcrypt, ldap_salted_sha1, sha512_crypt

import jmap_host
from jmap_host import tokens as jmap_host_tokens
from jmap_host.directory import Principal
from jmap_host.testing import BASE_CONFIG, PASSWORDS, basic, running_server, write_config

CLI = str(Path(sys.executable).with_name("jmap-host"))
CORE = "urn:ietf:params:jmap:core"
CORE_LIMITS = (
    "maxSizeUpload",
    "maxConcurrentUpload",
    "maxSizeRequest",
    "maxConcurrentRequests",
    "maxCallsInRequest",
    "maxObjectsInGet",
    "maxObjectsInSet",
)


def raw_basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def assert_problem(response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body.get("status", status) == status


def assert_challenge(response: Any) -> None:
    """RFC 7235 §4.1: a 401 carries one challenge per scheme; RFC 7617 §2.1 charset."""
    assert_problem(response, 401)
    challenges = response.headers.get_list("www-authenticate")
    assert len(challenges) == 2, challenges
    basic_ch = [c for c in challenges if c.lower().startswith("basic ")]
    bearer_ch = [c for c in challenges if c.lower().startswith("bearer")]
    assert len(basic_ch) == 1 and len(bearer_ch) == 1, challenges
    assert re.search(r'realm="[^"]*"', basic_ch[0])
    assert 'charset="UTF-8"' in basic_ch[0]


# --- Basic and challenges --------------------------------------------------------------


async def test_missing_and_bad_credentials_get_401_with_challenges(tmp_path: Path) -> None:
    """RFC 7617 §2 / RFC 6750 §3: without (valid) credentials the server answers 401 with a
    Basic challenge (charset="UTF-8", RFC 7617 §2.1) and a Bearer challenge."""
    async with running_server(write_config(tmp_path)) as server, server.client() as client:
        assert_challenge(await client.get("/jmap/session"))
        assert_challenge(await client.get("/.well-known/jmap", headers=basic("alice", "wrong")))
        assert_challenge(await client.get("/jmap/session", headers=basic("nobody", "x")))
        # RFC 7617 §2: the credentials are base64 of user-id ":" password.
        assert_challenge(
            await client.get("/jmap/session", headers={"Authorization": "Basic !!notbase64!!"})
        )
        assert_challenge(await client.get("/jmap/session", headers=raw_basic("alice")))
        assert_challenge(await client.get("/jmap/session", headers={"Authorization": "Basic"}))
        assert_challenge(
            await client.get("/jmap/session", headers={"Authorization": "Digest username=alice"})
        )
        assert_challenge(
            await client.get("/jmap/session", headers={"Authorization": "Bearer not-a-token"})
        )


async def test_basic_login_by_name_and_email(tmp_path: Path) -> None:
    """RFC 7617: Basic credentials log in, with the login name or any address of the user."""
    async with running_server(write_config(tmp_path)) as server:
        async with server.client("alice") as client:
            response = await client.get("/jmap/session")
            assert response.status_code == 200, response.text
            assert response.json()["username"] == "alice"
        for login in ("alice@example.org", "ALICE@example.org", "sales@example.org"):
            async with server.client(headers=raw_basic(f"{login}:alice-password")) as client:
                response = await client.get("/jmap/session")
                assert response.status_code == 200, (login, response.text)
                assert response.json()["username"] == "alice"
        async with server.client(headers=raw_basic("bob@example.org:alice-password")) as client:
            assert_challenge(await client.get("/jmap/session"))


async def test_group_principal_cannot_log_in(tmp_path: Path) -> None:
    """A group (RFC 8620 §1.6.2 shared account) has no credentials of its own: a secret
    on it is a configuration error, and no password opens a session as it, by name or by
    address."""
    extra_group = BASE_CONFIG.replace(
        'class = "group"\n', 'class = "group"\nsecret = "sales-password"\n'
    )
    with pytest.raises(jmap_host.ConfigError, match="a group does not log in"):
        jmap_host.load_host(write_config(tmp_path, base=extra_group))
    config = write_config(tmp_path)
    async with running_server(config) as server, server.client() as client:
        for login in ("sales", "sales-team@example.org"):
            for password in ("sales-password", "", "alice-password"):
                response = await client.get(
                    "/jmap/session", headers=raw_basic(f"{login}:{password}")
                )
                assert_challenge(response)


# --- Password hash schemes -------------------------------------------------------------

SCHEMES = {
    "argon2": lambda pw: jmap_host.hash_password(pw),
    "bcrypt": lambda pw: bcrypt.hash(pw),
    "sha512crypt": lambda pw: sha512_crypt.hash(pw),
    "ssha": lambda pw: ldap_salted_sha1.hash(pw),
    "plain": lambda pw: pw,
    "plainprefix": lambda pw: "{PLAIN}" + pw,
    "cryptprefix": lambda pw: "{CRYPT}" + sha512_crypt.hash(pw),
}


async def test_password_hash_schemes(tmp_path: Path) -> None:
    """Secrets stored as argon2, bcrypt, SHA-512-crypt, SSHA or plain text all verify the
    right password and refuse a wrong one (RFC 7617 Basic; the non-ASCII passwords are sent
    as UTF-8, the charset the challenge announces, RFC 7617 §2.1)."""
    password = "{}-pw-\u00e9\u00df"  # non-ASCII on purpose
    secrets = {scheme: make(password.format(scheme)) for scheme, make in SCHEMES.items()}
    for scheme, prefix in {
        "argon2": "$argon2id$",
        "bcrypt": "$2",
        "sha512crypt": "$6$",
        "ssha": "{SSHA}",
        "plainprefix": "{PLAIN}",
    }.items():
        assert secrets[scheme].startswith(prefix), secrets[scheme]
    extra = "".join(
        f'\n[[directory."memory".principals]]\nname = "u-{scheme}"\nsecret = \'{secret}\'\n'
        for scheme, secret in secrets.items()
    )
    config = write_config(tmp_path, extra)
    async with running_server(config) as server, server.client() as client:
        for scheme in SCHEMES:
            login = raw_basic(f"u-{scheme}:" + password.format(scheme))
            ok = await client.get("/jmap/session", headers=login)
            assert ok.status_code == 200, (scheme, ok.text)
            assert ok.json()["username"] == f"u-{scheme}"
        for scheme in SCHEMES:
            wrong = raw_basic(f"u-{scheme}:" + password.format(scheme).replace("\u00e9", "e"))
            assert_challenge(await client.get("/jmap/session", headers=wrong))


# --- Bearer app passwords through the CLI ----------------------------------------------


async def run_cli(*args: str) -> trio.CompletedProcess:
    return await trio.run_process(
        [CLI, *args], capture_stdout=True, capture_stderr=True, check=False
    )


async def test_bearer_app_password_lifecycle(tmp_path: Path, storage_backend: str) -> None:
    """RFC 6750 §2.1: an app password created with ``jmap-host token create`` works as a
    Bearer token against the running server; tampered or revoked tokens are refused."""
    config = write_config(tmp_path)
    async with running_server(config) as server:
        created = await run_cli(
            "token", "create", "-c", str(config), "--user", "alice", "--label", "phone"
        )
        assert created.returncode == 0, created.stderr.decode()
        token = created.stdout.decode().strip().splitlines()[-1].strip()
        assert token.startswith("jmh_")
        token_id = token.split("_")[1]

        listed = await run_cli("token", "list", "-c", str(config))
        assert listed.returncode == 0, listed.stderr.decode()
        out = listed.stdout.decode()
        assert token_id in out and "phone" in out and "alice" in out
        secret = token.split("_", 2)[2]
        assert secret not in out

        # Stored hashed: neither the token nor its secret is in the database (file).
        rows = server.host.store.read_sync(
            lambda db: db.execute("SELECT * FROM host_app_password").fetchall()
        )
        assert len(rows) == 1
        assert not any(secret in str(value) for value in rows[0])
        if storage_backend == "sqlite":
            raw = (tmp_path / "data" / "jmap-host.db").read_bytes()
            assert secret.encode() not in raw

        async with server.client(headers={"Authorization": f"Bearer {token}"}) as client:
            response = await client.get("/jmap/session")
            assert response.status_code == 200, response.text
            assert response.json()["username"] == "alice"

        flipped = "A" if token[-1] != "A" else "B"
        tampered = (token[:-1] + flipped, token + "x", f"jmh_{token_id}_", token[4:])
        for bad in tampered:
            async with server.client(headers={"Authorization": f"Bearer {bad}"}) as client:
                assert_challenge(await client.get("/jmap/session"))

        revoked = await run_cli("token", "revoke", "-c", str(config), token_id)
        assert revoked.returncode == 0, revoked.stderr.decode()
        async with server.client(headers={"Authorization": f"Bearer {token}"}) as client:
            assert_challenge(await client.get("/jmap/session"))

        listed = await run_cli("token", "list", "-c", str(config))
        assert token_id not in listed.stdout.decode()
        again = await run_cli("token", "revoke", "-c", str(config), token_id)
        assert again.returncode != 0


async def test_token_create_for_unknown_user_or_group_fails(tmp_path: Path) -> None:
    """Only individuals in the directory can get an app password."""
    config = write_config(tmp_path)
    for user in ("nobody", "sales"):
        result = await run_cli("token", "create", "-c", str(config), "--user", user)
        assert result.returncode != 0, result.stdout.decode()
        assert "jmh_" not in result.stdout.decode()


# --- Throttling ------------------------------------------------------------------------


async def test_failed_logins_are_throttled(tmp_path: Path) -> None:
    """After ``max-failures`` failures within ``failure-window`` the client address gets
    429 with Retry-After (RFC 6585 §4), even with correct credentials, until the window
    has passed."""
    config = write_config(tmp_path, '[authentication]\nmax-failures = 3\nfailure-window = "2s"\n')
    async with running_server(config) as server, server.client() as client:
        for _ in range(3):
            assert_challenge(await client.get("/jmap/session", headers=basic("alice", "nope")))
        blocked = await client.get("/jmap/session", headers=basic("alice"))
        assert_problem(blocked, 429)
        retry_after = int(blocked.headers["retry-after"])
        assert 1 <= retry_after <= 3
        assert_problem(await client.get("/jmap/session", headers=basic("bob")), 429)
        await trio.sleep(2.2)
        ok = await client.get("/jmap/session", headers=basic("alice"))
        assert ok.status_code == 200, ok.text


# --- Session resource (RFC 8620 §2) ----------------------------------------------------


async def fetch_session(server: Any, user: str, path: str = "/jmap/session") -> Any:
    async with server.client(user) as client:
        response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response


def assert_session_shape(session: dict[str, Any], base: str) -> None:
    """Every property RFC 8620 §2 lists, with the URL templates' variables."""
    for key in (
        "capabilities",
        "accounts",
        "primaryAccounts",
        "username",
        "apiUrl",
        "downloadUrl",
        "uploadUrl",
        "eventSourceUrl",
        "state",
    ):
        assert key in session, key
    core = session["capabilities"][CORE]
    for limit in CORE_LIMITS:
        assert isinstance(core[limit], int) and core[limit] > 0, limit
    assert isinstance(core["collationAlgorithms"], list)
    for account in session["accounts"].values():
        assert {"name", "isPersonal", "isReadOnly", "accountCapabilities"} <= set(account)
    for key in ("apiUrl", "downloadUrl", "uploadUrl", "eventSourceUrl"):
        assert session[key].startswith(base + "/"), (key, session[key])
    for var in ("{accountId}", "{blobId}", "{type}", "{name}"):
        assert var in session["downloadUrl"], var
    assert "{accountId}" in session["uploadUrl"]
    for var in ("{types}", "{closeafter}", "{ping}"):
        assert var in session["eventSourceUrl"], var
    assert isinstance(session["state"], str) and session["state"]


async def test_session_accounts_and_fields(tmp_path: Path) -> None:
    """RFC 8620 §2: alice sees her personal account and the shared sales account, bob only
    his own; all properties are present, URLs absolute, and the resource is not cached."""
    async with running_server(write_config(tmp_path)) as server:
        response = await fetch_session(server, "alice")
        cache = {v.strip() for v in response.headers["cache-control"].split(",")}
        assert {"no-cache", "no-store", "must-revalidate"} <= cache
        alice = response.json()
        bob = (await fetch_session(server, "bob")).json()

        assert_session_shape(alice, server.url)
        assert_session_shape(bob, server.url)
        assert alice["username"] == "alice" and bob["username"] == "bob"

        personal = [a for a, acc in alice["accounts"].items() if acc["isPersonal"]]
        shared = {a: acc for a, acc in alice["accounts"].items() if not acc["isPersonal"]}
        assert len(alice["accounts"]) == 2 and len(personal) == 1 and len(shared) == 1
        shared_acc = next(iter(shared.values()))
        assert "sales" in shared_acc["name"]
        assert len(bob["accounts"]) == 1
        (bob_id,) = bob["accounts"]
        assert bob["accounts"][bob_id]["isPersonal"] is True
        assert bob_id not in alice["accounts"]
        assert personal[0] not in bob["accounts"]
        assert not set(alice["accounts"]) & set(bob["accounts"])
        assert personal[0] not in (await fetch_session(server, "bob")).text
        for urn, acc_id in alice["primaryAccounts"].items():
            assert acc_id == personal[0], urn
        for acc_id in bob["primaryAccounts"].values():
            assert acc_id == bob_id

        # §2: the state changes only when the session does.
        again = (await fetch_session(server, "alice")).json()
        assert again["state"] == alice["state"]
        assert alice["state"] != bob["state"]

        # §2.2: the well-known URL serves the same resource.
        well_known = (await fetch_session(server, "alice", "/.well-known/jmap")).json()
        assert well_known == alice


async def test_session_urls_use_public_url(tmp_path: Path) -> None:
    """RFC 8620 §2: behind a reverse proxy, every URL in the session is built from the
    configured public base URL, not from the request."""
    base = BASE_CONFIG.replace(
        'protocol = "jmap"\n', 'protocol = "jmap"\nurl = "https://mail.example.org/base"\n', 1
    )
    async with running_server(write_config(tmp_path, base=base)) as server:
        session = (await fetch_session(server, "alice")).json()
        assert_session_shape(session, "https://mail.example.org/base")
        for key in ("apiUrl", "downloadUrl", "uploadUrl", "eventSourceUrl"):
            assert session[key].startswith("https://mail.example.org/base/jmap/"), session[key]


async def test_session_requires_authentication(tmp_path: Path) -> None:
    """RFC 8620 §2: the session resource is only served to an authenticated user."""
    async with running_server(write_config(tmp_path)) as server, server.client() as client:
        for path in ("/jmap/session", "/.well-known/jmap"):
            assert_challenge(await client.get(path))


# --- Directory failure -----------------------------------------------------------------


class FlakyDirectory:
    async def authenticate(self, username: str, password: str) -> Principal | None:
        raise jmap_host.DirectoryUnavailable("back end down")

    async def principal(self, name: str) -> Principal | None:
        raise jmap_host.DirectoryUnavailable("back end down")

    async def members(self, group: str) -> list[Principal]:
        raise jmap_host.DirectoryUnavailable("back end down")

    async def lookup_email(self, address: str) -> Principal | None:
        raise jmap_host.DirectoryUnavailable("back end down")


class FlakyPlugin:
    @jmap_host.hookimpl
    def register_directories(self) -> list[jmap_host.DirectoryType]:
        return [
            jmap_host.DirectoryType(
                "flaky", jmap_host.Table(), lambda name, cfg, host: FlakyDirectory()
            )
        ]


FLAKY_CONFIG = """\
[server.listener."jmap"]
bind = ["127.0.0.1:0"]
protocol = "jmap"

[storage]
directory = "f"
path = "{data}"

[directory."f"]
type = "flaky"
"""


async def test_unavailable_directory_gives_503(tmp_path: Path) -> None:
    """A directory that cannot answer is a temporary failure (503), not a wrong password
    (401) and never a 500; failures of this kind are not counted toward throttling."""
    config = write_config(tmp_path, "[authentication]\nmax-failures = 2\n", base=FLAKY_CONFIG)
    async with running_server(config, extra_plugins=[("flaky", FlakyPlugin())]) as server:
        async with server.client("alice") as client:
            for _ in range(4):
                response = await client.get("/jmap/session")
                assert_problem(response, 503)
        async with server.client() as client:
            # Bearer looks the token up, then the user in the directory.
            response = await client.get(
                "/jmap/session", headers={"Authorization": "Bearer jmh_abc_def"}
            )
            assert response.status_code in (401, 503), response.text


class HalfFlakyDirectory(FlakyDirectory):
    """Authenticates, but cannot look principals up (e.g. LDAP dropped mid-request)."""

    async def authenticate(self, username: str, password: str) -> Principal | None:
        return Principal(name=username, member_of=("team",))


class HalfFlakyPlugin:
    @jmap_host.hookimpl
    def register_directories(self) -> list[jmap_host.DirectoryType]:
        return [
            jmap_host.DirectoryType(
                "flaky", jmap_host.Table(), lambda name, cfg, host: HalfFlakyDirectory()
            )
        ]


async def test_directory_unavailable_while_building_session_gives_503(tmp_path: Path) -> None:
    """RFC 8620 §2 session building looks group accounts up in the directory; when the
    directory is down by then, that is still a temporary failure (503), not a 500."""
    config = write_config(tmp_path, base=FLAKY_CONFIG)
    plugins = [("flaky", HalfFlakyPlugin())]
    async with (
        running_server(config, extra_plugins=plugins) as server,
        server.client("alice") as client,
    ):
        assert_problem(await client.get("/jmap/session"), 503)


async def test_non_ascii_basic_credentials_are_401_not_500(tmp_path: Path) -> None:
    """Header bytes outside ASCII are not base64 (RFC 7617 §2, token68): such Basic
    credentials are refused with 401 and the challenges, not a 500."""
    async with running_server(write_config(tmp_path)) as server, server.client() as client:
        response = await client.get("/jmap/session", headers={"Authorization": b"Basic \xe9\xe9"})
        assert_challenge(response)


async def test_non_ascii_bearer_token_is_401_not_500(tmp_path: Path) -> None:
    """A Bearer token is a b64token (RFC 6750 §2.1): one with bytes outside ASCII, even
    after the id of a real app password, is refused with 401 (RFC 6750 §3.1), not a 500."""
    async with running_server(write_config(tmp_path)) as server:
        _, token = await trio.to_thread.run_sync(
            jmap_host_tokens.create, server.host.store, "alice", "test"
        )
        token_id = token.split("_")[1]
        async with server.client() as client:
            for value in (b"Bearer jmh_\xe9_abc", f"Bearer jmh_{token_id}_\xe9".encode("latin-1")):
                response = await client.get("/jmap/session", headers={"Authorization": value})
                assert_challenge(response)


@pytest.mark.parametrize("user", sorted(PASSWORDS))
async def test_api_accepts_basic(tmp_path: Path, user: str) -> None:
    """RFC 8620 §3.1 with RFC 7617 Basic: the API endpoint accepts the same credentials."""
    async with running_server(write_config(tmp_path)) as server, server.client(user) as client:
        response = await client.post(
            "/jmap/api",
            json={"using": [CORE], "methodCalls": [["Core/echo", {"hi": 1}, "c0"]]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["methodResponses"][0][0] == "Core/echo"


@pytest.mark.parametrize(
    "stored", ["$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="]
)
def test_hash_of_an_unsupported_scheme_is_a_config_error(tmp_path, stored):
    """A hash jmap-host cannot verify must not silently become a plain-text password."""
    escaped = stored.replace("{", "{{").replace("}", "}}")  # write_config formats the base
    base = BASE_CONFIG.replace('secret = "bob-password"', f'secret = "{escaped}"')
    with pytest.raises(
        jmap_host.ConfigError, match=r"principals\[1\]\.secret: looks like a password hash"
    ):
        jmap_host.load_host(write_config(tmp_path, base=base))
    assert not jmap_host.verify_password(stored, stored)


async def test_malformed_credentials_count_towards_throttling(tmp_path):
    """Malformed Basic credentials and unknown schemes are failed logins too."""
    config = write_config(tmp_path, '[authentication]\nmax-failures = 2\nfailure-window = "1m"\n')
    async with running_server(config) as server, server.client() as client:
        for header in ("Basic !!!", "Digest username=alice"):
            assert (
                await client.get("/jmap/session", headers={"Authorization": header})
            ).status_code == 401
        assert (await client.get("/jmap/session", headers=basic("alice"))).status_code == 429


class GatedDirectory:
    """Counts password verifications and holds each until ``gate`` is set: the password
    "right" is right, any other wrong; with ``down`` the verification fails as unavailable."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = trio.Event()
        self.down = False

    async def authenticate(self, username: str, password: str) -> Principal | None:
        self.calls += 1
        await self.gate.wait()
        if self.down:
            raise jmap_host.DirectoryUnavailable("back end down")
        return Principal(name=username) if password == "right" else None

    async def principal(self, name: str) -> Principal | None:
        return Principal(name=name)

    async def members(self, group: str) -> list[Principal]:
        return []

    async def lookup_email(self, address: str) -> Principal | None:
        return None


class GatedPlugin:
    def __init__(self, directory: GatedDirectory) -> None:
        self.directory = directory

    @jmap_host.hookimpl
    def register_directories(self) -> list[jmap_host.DirectoryType]:
        return [jmap_host.DirectoryType("flaky", jmap_host.Table(), lambda *_: self.directory)]


@pytest.mark.parametrize("down", [False, True])
async def test_requests_with_the_same_credentials_share_one_verification(
    tmp_path: Path, down: bool
) -> None:
    """Requests that arrive with the same Basic credentials while they are being verified
    (streams reconnecting together) wait for that verification and take its verdict: one
    directory call per distinct credentials, each request still answered on its own (200,
    401 for the wrong password, 503 while the directory is down)."""
    directory = GatedDirectory()
    directory.down = down
    config = write_config(tmp_path, "[authentication]\nmax-failures = 100\n", base=FLAKY_CONFIG)
    plugins = [("gated", GatedPlugin(directory))]
    async with running_server(config, extra_plugins=plugins) as server, server.client() as client:
        statuses: dict[str, list[int]] = {"alice:right": [], "alice:wrong": []}

        async def get(credentials: str) -> None:
            response = await client.get("/jmap/session", headers=raw_basic(credentials))
            statuses[credentials].append(response.status_code)

        verifying = server.host.authenticator._verifying
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(get, "alice:right")
            for _ in range(5):
                nursery.start_soon(get, "alice:wrong")
            with trio.fail_after(10):
                # Every request has arrived: two verifications, the others wait on them.
                while sorted(v.done.statistics().tasks_waiting for v in verifying.values()) != [
                    4,
                    9,
                ]:
                    await trio.sleep(0.01)
            assert directory.calls == 2
            directory.gate.set()
        assert directory.calls == 2
        if down:
            assert statuses == {"alice:right": [503] * 10, "alice:wrong": [503] * 5}
        else:
            assert statuses == {"alice:right": [200] * 10, "alice:wrong": [401] * 5}
            # The verdict is cached: the next request is not verified again.
            assert (await client.get("/jmap/session", headers=raw_basic("alice:right"))).is_success
            assert directory.calls == 2
