"""PushSubscription (RFC 8620 §7.2), encrypted pushes (RFC 8291) and VAPID (RFC 8292,
RFC 9749), against a real receiver on 127.0.0.1 (private targets allowed by the test
switch ``jmap.push.allow-private-targets``)."""

from __future__ import annotations

import base64
import json
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

import http_ece
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from jmap_host.pushsubscription import TABLE, push_service
from jmap_host.testing import api, running_server, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
VAPID = "urn:ietf:params:jmap:webpush-vapid"

ALLOW = """
[jmap.push]
allow-private-targets = true
retry-delay = "0.05s"
"""


class Receiver:
    """A push endpoint: records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._send, self._receive = trio.open_memory_channel(100)
        self.status = 201
        self.url = ""

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            "body": body,
        }
        self.requests.append(request)
        self._send.send_nowait(request)
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def next(self, timeout: float = 3) -> dict:
        with trio.fail_after(timeout):
            return await self._receive.receive()

    async def nothing(self, wait: float = 0.5) -> None:
        with trio.move_on_after(wait):
            request = await self._receive.receive()
            raise AssertionError(f"unexpected push: {request}")


@asynccontextmanager
async def receiver():
    r = Receiver()
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn_serve, r.app, config, shutdown_trigger=shutdown.wait)
        )
        r.url = binds[0] + "/push/device?client=12c6"
        try:
            yield r
        finally:
            shutdown.set()


async def call(client, name: str, args: dict, using=(CORE,)) -> dict:
    result = await api(client, [[name, args, "c"]], using=list(using))
    response = result["methodResponses"][0]
    assert response[0] == name, response
    return response[1]


async def create(client, url: str, **props) -> dict:
    obj = {"deviceClientId": "a889-ffea-910", "url": url, **props}
    return await call(client, "PushSubscription/set", {"create": {"k": obj}})


async def create_note(client, account: str, title: str) -> str:
    args = {"accountId": account, "create": {"n": {"title": title}}}
    result = await call(client, "Note/set", args, using=(CORE, EXAMPLE))
    return result["newState"]


def decrypt(body: bytes, private_key, auth: bytes) -> dict:
    return json.loads(
        http_ece.decrypt(body, private_key=private_key, auth_secret=auth, version="aes128gcm")
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def epoch(utcdate: str) -> float:
    return datetime.strptime(utcdate, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


async def test_verification_first_then_state_changes(tmp_path):
    """§7.2: creation pushes a PushVerification and nothing else until the client sets the
    code; then a Note/set elsewhere arrives as a StateChange with a TTL header."""
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        account = (await c.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        result = await create(c, rx.url)
        created = result["created"]["k"]
        sub_id = created["id"]
        assert created["keys"] is None and created["verificationCode"] is None
        assert "accountId" not in result and "newState" not in result

        push = await rx.next()
        assert push["method"] == "POST" and push["path"] == "/push/device"
        assert push["query"] == "client=12c6"
        assert push["headers"]["content-type"] == "application/json"
        assert int(push["headers"]["ttl"]) > 0
        assert "content-encoding" not in push["headers"]
        verification = json.loads(push["body"])
        assert verification["@type"] == "PushVerification"
        assert verification["pushSubscriptionId"] == sub_id
        code = verification["verificationCode"]
        assert len(code) >= 32  # 128 bits, hex

        # Not verified: a change is not pushed.
        await create_note(c, account, "unverified")
        await rx.nothing()

        got = await call(c, "PushSubscription/get", {"ids": None})
        assert got["list"] == [
            {
                "id": sub_id,
                "deviceClientId": "a889-ffea-910",
                "verificationCode": None,
                "expires": created["expires"],
                "types": None,
            }
        ]
        assert "state" not in got and "accountId" not in got

        wrong = await call(
            c, "PushSubscription/set", {"update": {sub_id: {"verificationCode": "0" * 32}}}
        )
        assert wrong["notUpdated"][sub_id]["type"] == "invalidProperties"
        assert wrong["notUpdated"][sub_id]["properties"] == ["verificationCode"]
        ok = await call(c, "PushSubscription/set", {"update": {sub_id: {"verificationCode": code}}})
        assert sub_id in ok["updated"]
        got = await call(c, "PushSubscription/get", {"ids": [sub_id]})
        assert got["list"][0]["verificationCode"] == code

        state = await create_note(c, account, "verified")
        push = await rx.next()
        assert json.loads(push["body"]) == {
            "@type": "StateChange",
            "changed": {account: {"Note": state}},
        }
        assert push["headers"]["ttl"] == "86400"
        await rx.nothing(0.2)

        # Immutable properties stay; destroy stops deliveries.
        bad = await call(c, "PushSubscription/set", {"update": {sub_id: {"url": rx.url + "x"}}})
        assert bad["notUpdated"][sub_id]["type"] == "invalidProperties"
        gone = await call(c, "PushSubscription/set", {"destroy": [sub_id]})
        assert gone["destroyed"] == [sub_id]
        await create_note(c, account, "destroyed")
        await rx.nothing(0.3)
        rows = await server.host.store.read(lambda db: list(db[TABLE].rows))
        assert rows == []


async def test_types_filter_and_coalescing(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        account = (await c.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        mailbox_only = (await create(c, rx.url, types=["Mailbox"]))["created"]["k"]["id"]
        code = json.loads((await rx.next())["body"])["verificationCode"]
        await call(
            c, "PushSubscription/set", {"update": {mailbox_only: {"verificationCode": code}}}
        )
        await create_note(c, account, "not a Mailbox")
        await rx.nothing(0.3)
        # Widening types takes effect at once.
        await call(c, "PushSubscription/set", {"update": {mailbox_only: {"types": None}}})
        state = await create_note(c, account, "now")
        assert json.loads((await rx.next())["body"])["changed"] == {account: {"Note": state}}


async def test_encrypted_pushes_decrypt_to_the_objects(tmp_path):
    """§7.2/§8.7, RFC 8291: with keys, every push is aes128gcm; the client decrypts it."""
    client_key = ec.generate_private_key(ec.SECP256R1())
    public = client_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = bytes(range(16))
    keys = {"p256dh": b64url(public), "auth": b64url(auth)}
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        account = (await c.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
        result = await create(c, rx.url, keys=keys)
        sub_id = result["created"]["k"]["id"]
        assert "keys" not in result["created"]["k"]
        push = await rx.next()
        assert push["headers"]["content-encoding"] == "aes128gcm"
        assert b"PushVerification" not in push["body"]
        verification = decrypt(push["body"], client_key, auth)
        assert verification["@type"] == "PushVerification"
        await call(
            c,
            "PushSubscription/set",
            {"update": {sub_id: {"verificationCode": verification["verificationCode"]}}},
        )
        state = await create_note(c, account, "secret")
        push = await rx.next()
        assert push["headers"]["content-encoding"] == "aes128gcm"
        assert decrypt(push["body"], client_key, auth) == {
            "@type": "StateChange",
            "changed": {account: {"Note": state}},
        }
        # keys are write-only (§7.2.1).
        forbidden = await api(c, [["PushSubscription/get", {"properties": ["keys"]}, "g"]])
        assert forbidden["methodResponses"][0] == ["error", {"type": "forbidden",
            "description": "url and keys are write-only (RFC 8620 §7.2.1)"}, "g"]  # fmt: skip


async def test_bad_keys_are_invalid_properties(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with running_server(config) as server, server.client("alice") as c:
        for keys in (
            {"p256dh": "AAAA", "auth": b64url(bytes(16))},
            {"p256dh": b64url(b"\x04" + bytes(64)), "auth": b64url(bytes(16))},
            {"auth": b64url(bytes(16))},
        ):
            result = await create(c, "http://127.0.0.1:9/", keys=keys)
            assert result["notCreated"]["k"]["properties"] == ["keys"], keys


async def test_vapid_authorization_verifies_against_the_advertised_key(tmp_path):
    """RFC 9749 §3-4, RFC 8292: the session advertises applicationServerKey and every push,
    PushVerification included, carries a vapid token signed with that key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "vapid.pem").write_bytes(pem)
    config = write_config(
        tmp_path,
        EXAMPLE_ON
        + ALLOW
        + """
[jmap.push.vapid]
private-key = "vapid.pem"
subject = "mailto:ops@example.org"
""",
    )
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        session = (await c.get("/jmap/session")).json()
        advertised = session["capabilities"][VAPID]["applicationServerKey"]
        assert unb64url(advertised) == key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        await create(c, rx.url)
        push = await rx.next()
        scheme, _, params = push["headers"]["authorization"].partition(" ")
        assert scheme == "vapid"
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        assert fields["k"] == advertised
        header, claims, signature = fields["t"].split(".")
        assert json.loads(unb64url(header)) == {"typ": "JWT", "alg": "ES256"}
        raw = unb64url(signature)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(advertised))
        public.verify(  # raises InvalidSignature on a bad token
            utils.encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            ),
            f"{header}.{claims}".encode(),
            ec.ECDSA(hashes.SHA256()),
        )
        body = json.loads(unb64url(claims))
        assert body["aud"] == rx.url.split("/push")[0]
        assert body["sub"] == "mailto:ops@example.org"
        assert time.time() < body["exp"] <= time.time() + 24 * 3600


async def test_no_vapid_capability_without_a_key(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as c:
        assert VAPID not in (await c.get("/jmap/session")).json()["capabilities"]


async def test_expires_is_capped_and_expired_ones_are_removed(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW + 'max-expiry = "2d"\n')
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        now = time.time()
        far = (await create(c, rx.url, expires="2100-01-01T00:00:00Z"))["created"]["k"]
        assert now + 2 * 86400 - 5 <= epoch(far["expires"]) <= now + 2 * 86400 + 1
        none = (await create(c, rx.url))["created"]["k"]
        assert epoch(none["expires"]) <= now + 2 * 86400 + 1
        soon = datetime.fromtimestamp(int(now) + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        exact = await create(c, rx.url, expires=soon)
        assert exact["created"]["k"]["expires"] == soon
        # RFC 8620 §1.4: a fraction of a second ending in 0 is a UTCDate too (expires is
        # kept to the second, and the server says what it set).
        halves = await create(c, rx.url, expires=soon.replace("Z", ".500Z"))
        assert halves["created"]["k"]["expires"] == soon
        past = await create(c, rx.url, expires="2001-01-01T00:00:00Z")
        assert past["notCreated"]["k"]["properties"] == ["expires"]
        # Extending is capped too, and the server says what it set.
        extended = await call(
            c,
            "PushSubscription/set",
            {"update": {far["id"]: {"expires": "2200-01-01T00:00:00Z"}}},
        )
        assert epoch(extended["updated"][far["id"]]["expires"]) <= time.time() + 2 * 86400 + 1

        # Expiry: the subscription disappears at once and is removed from storage.
        await server.host.store.write(
            lambda db: db[TABLE].update(far["id"], {"expires": time.time() - 1})
        )
        got = await call(c, "PushSubscription/get", {"ids": [far["id"]]})
        assert got["notFound"] == [far["id"]]
        push_service(server.host).wake()
        with trio.fail_after(3):
            while await server.host.store.read(
                lambda db: db[TABLE].count_where("id = ?", [far["id"]])
            ):
                await trio.sleep(0.05)  # fmt: skip


async def test_max_subscriptions_and_creation_rate(tmp_path):
    """§8.6: per-user limit (forbidden) and creation rate limit (rateLimit)."""
    config = write_config(
        tmp_path, EXAMPLE_ON + ALLOW + "max-subscriptions = 2\ncreation-limit = 3\n"
    )
    async with running_server(config) as server, server.client("alice") as c:
        url = "http://127.0.0.1:9/push"
        first = (await create(c, url))["created"]["k"]["id"]
        await create(c, url)
        third = await create(c, url)
        assert third["notCreated"]["k"]["type"] == "forbidden"
        await call(c, "PushSubscription/set", {"destroy": [first]})
        assert "k" in (await create(c, url))["created"]  # third creation in the window
        await call(c, "PushSubscription/set", {"destroy": [first]})
        gets = await call(c, "PushSubscription/get", {})
        await call(c, "PushSubscription/set", {"destroy": [gets["list"][0]["id"]]})
        fourth = await create(c, url)
        assert fourth["notCreated"]["k"]["type"] == "rateLimit"
        # Another user has their own allowance.
        async with server.client("bob") as bob:
            assert "k" in (await create(bob, url))["created"]


async def test_other_users_cannot_see_change_or_destroy(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with running_server(config) as server, server.client("alice") as alice:
        sub_id = (await create(alice, "http://127.0.0.1:9/push"))["created"]["k"]["id"]
        async with server.client("bob") as bob:
            got = await call(bob, "PushSubscription/get", {"ids": [sub_id]})
            assert got == {"list": [], "notFound": [sub_id]}
            assert (await call(bob, "PushSubscription/get", {"ids": None}))["list"] == []
            res = await call(
                bob,
                "PushSubscription/set",
                {"destroy": [sub_id], "update": {sub_id: {"verificationCode": "x"}}},
            )
            assert res["notDestroyed"][sub_id]["type"] == "notFound"
            assert res["notUpdated"][sub_id]["type"] == "willDestroy"
            res = await call(bob, "PushSubscription/set", {"update": {sub_id: {"expires": None}}})
            assert res["notUpdated"][sub_id]["type"] == "notFound"
        got = await call(alice, "PushSubscription/get", {"ids": [sub_id]})
        assert [s["id"] for s in got["list"]] == [sub_id]


async def test_get_properties_and_create_validation(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with running_server(config) as server, server.client("alice") as c:
        sub_id = (await create(c, "http://127.0.0.1:9/"))["created"]["k"]["id"]
        got = await call(c, "PushSubscription/get", {"properties": ["expires"]})
        assert set(got["list"][0]) == {"id", "expires"}
        result = await api(c, [["PushSubscription/get", {"properties": ["url"]}, "g"]])
        assert result["methodResponses"][0][1]["type"] == "forbidden"
        result = await api(c, [["PushSubscription/get", {"properties": ["nope"]}, "g"]])
        assert result["methodResponses"][0][1]["type"] == "invalidArguments"
        checks = {
            "a": {"url": "http://127.0.0.1:9/"},  # no deviceClientId
            "b": {"deviceClientId": "d"},  # no url
            "c": {"deviceClientId": "d", "url": "http://127.0.0.1:9/", "verificationCode": "x"},
            "d": {"deviceClientId": "d", "url": "http://127.0.0.1:9/", "id": "x"},
            "e": {"deviceClientId": "d", "url": "http://127.0.0.1:9/", "types": "Note"},
            "f": {"deviceClientId": "d", "url": "ftp://127.0.0.1/"},
        }
        result = await call(c, "PushSubscription/set", {"create": checks})
        assert set(result["notCreated"]) == set(checks)
        assert all(e["type"] == "invalidProperties" for e in result["notCreated"].values())
        assert result["notCreated"]["f"]["properties"] == ["url"]
        # A creation id can be destroyed in the same call.
        both = await call(
            c,
            "PushSubscription/set",
            {"create": {"n": {"deviceClientId": "d", "url": "http://127.0.0.1:9/"}},
             "destroy": ["#n", sub_id]},
        )  # fmt: skip
        assert both["destroyed"] == [both["created"]["n"]["id"], sub_id]


async def test_push_to_a_gone_endpoint_destroys_the_subscription(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        rx.status = 410
        sub_id = (await create(c, rx.url))["created"]["k"]["id"]
        await rx.next()
        with trio.fail_after(3):
            while (await call(c, "PushSubscription/get", {}))["list"]:
                await trio.sleep(0.05)
        assert len(rx.requests) == 1, "a 410 is not retried"
        assert (await call(c, "PushSubscription/get", {"ids": [sub_id]}))["notFound"] == [sub_id]


async def test_server_errors_are_retried_with_backoff_and_redirects_not_followed(tmp_path):
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, running_server(config) as server, server.client("alice") as c:
        rx.status = 503
        await create(c, rx.url)
        for _ in range(4):  # the first try and three retries
            await rx.next()
        await rx.nothing(0.6)
        assert push_service(server.host).stats["failed"] == 1
        rx.status = 307
        await create(c, rx.url)
        await rx.next()
        await rx.nothing(0.3)
        assert push_service(server.host).stats["failed"] == 2


async def test_one_of_two_servers_on_a_store_delivers_and_the_other_takes_over(tmp_path):
    """Two servers on one store (as worker processes or nodes are): the subscription is
    created and verified through the one that does not hold the delivery lease; the holder
    picks it up from the table and pushes a change once.  When the holder stops, the other
    takes the lease over and pushes."""
    config = write_config(tmp_path, EXAMPLE_ON + ALLOW)
    async with receiver() as rx, trio.open_nursery() as nursery:
        stop_a = trio.Event()
        a_stopped = trio.Event()
        started: list = []

        async def run_a(task_status=trio.TASK_STATUS_IGNORED) -> None:
            async with running_server(config) as a:
                started.append(a)
                task_status.started()
                await stop_a.wait()
            a_stopped.set()

        await nursery.start(run_a)
        a = started[0]
        service_a = push_service(a.host)
        with trio.fail_after(5):
            while service_a._leading is None:
                await trio.sleep(0.02)
        # (Two servers of one process on one store: as if workers; the resync made quick.)
        service_a.resync_interval = 0.05
        service_a.wake()
        async with running_server(config) as b, b.client("alice") as cb, a.client("alice") as ca:
            b.host.store.leases.poll = 0.05
            service_b = push_service(b.host)
            service_b.resync_interval = 0.05
            account = (await cb.get("/jmap/session")).json()["primaryAccounts"][EXAMPLE]
            sub_id = (await create(cb, rx.url))["created"]["k"]["id"]
            code = json.loads((await rx.next())["body"])["verificationCode"]
            await call(cb, "PushSubscription/set", {"update": {sub_id: {"verificationCode": code}}})
            with trio.fail_after(5):
                while sub_id not in service_a.workers:
                    await trio.sleep(0.02)
            assert service_b.workers == {}
            state = await create_note(ca, account, "through a")
            push = await rx.next()
            assert json.loads(push["body"])["changed"] == {account: {"Note": state}}
            await rx.nothing(0.3)

            stop_a.set()
            await a_stopped.wait()
            with trio.fail_after(5):
                while sub_id not in service_b.workers:
                    await trio.sleep(0.02)
            state = await create_note(cb, account, "through b")
            push = await rx.next()
            assert json.loads(push["body"])["changed"] == {account: {"Note": state}}
            await rx.nothing(0.3)
