"""Quotas (RFC 9425) for mail, at the wire: Quota/get, /changes, /query, /queryChanges
(§4.2-§4.5), the types a client may see (§4.1), enforcement at the exact hard limit for
Email/import, Email/set create, Email/copy, the upload endpoint and Blob/upload (RFC 8620
§5.3 overQuota), the soft limit letting only deliveries through (LMTP 552 5.2.2 at the
hard one), exact usage under concurrent imports and after kill -9, and jmaplib reading it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import trio
from jmap_host_mail.testing import MailClient, lmtp_deliver

from jmap_host.testing import BASE_CONFIG, basic, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
QUOTA = "urn:ietf:params:jmap:quota"
BLOB = "urn:ietf:params:jmap:blob"


def message(n: int, pad: int = 0) -> bytes:
    """A message of exactly 100 + pad octets (n < 1000)."""
    head = f"From: a@example.org\r\nSubject: m{n:03d}\r\nMessage-ID: <m{n:03d}@x>\r\n\r\n"
    body = "x" * (100 - len(head) - 2 + pad) + "\r\n"
    raw = (head + body).encode()
    assert len(raw) == 100 + pad
    return raw


class Mail(MailClient):
    errors_as_results = True

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        body = {
            "using": [CORE, MAIL, QUOTA, BLOB],
            "methodCalls": [[name, {"accountId": self.account, **args}, "c"]],
        }
        reply = await self.http.post("/jmap/api", json=body)
        assert reply.status_code == 200, reply.text
        answered, result, _ = reply.json()["methodResponses"][0]
        return result if answered == name else {"error": result}

    async def setup(self) -> None:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        self.inbox = next(m["id"] for m in boxes if m["role"] == "inbox")

    async def import_(self, raw: bytes | str) -> dict[str, Any]:
        """Import a message (or an uploaded blob id): its created or notCreated entry."""
        blob = raw if isinstance(raw, str) else await self.upload(raw)
        spec = {"blobId": blob, "mailboxIds": {self.inbox: True}}
        result = await self.call("Email/import", emails={"e": spec})
        return result["created"]["e"] if result.get("created") else result["notCreated"]["e"]

    async def quotas(self) -> dict[str, dict[str, Any]]:
        return {q["id"]: q for q in (await self.call("Quota/get", ids=None))["list"]}


async def connect(server: Any, user: str = "alice") -> Mail:
    http = server.client(user)
    await http.__aenter__()
    session = (await http.get("/jmap/session")).json()
    client = Mail(http, session["primaryAccounts"][MAIL])
    await client.setup()
    return client


def quota_config(tmp_path: Any, quota: str, base: str = BASE_CONFIG, extra: str = "") -> Any:
    return write_config(tmp_path, f"[jmap.quota]\n{quota}\n{extra}", base=base)


async def test_get_changes_query_and_the_types_a_client_knows(tmp_path):
    """§4.2 Quota/get lists one Quota per limit with exact usage; §4.1 types only of the
    capabilities in `using`, and no Quota whose types the client cannot know; §4.3
    /changes says only `used` changed; §4.4 /query filters and sorts; §4.5."""
    config = quota_config(tmp_path, "octets = 1000\ncount = 5\nwarn-at = 0.5\nsoft-at = 0.9")
    async with running_server(config) as server:
        alice = await connect(server)
        session = (await alice.http.get("/jmap/session")).json()
        assert session["capabilities"][QUOTA] == {}
        assert session["accounts"][alice.account]["accountCapabilities"][QUOTA] == {}
        got = await alice.call("Quota/get", ids=None)
        octets = {q["id"]: q for q in got["list"]}["octets"]
        assert octets == {
            "id": "octets",
            "resourceType": "octets",
            "used": 0,
            "hardLimit": 1000,
            "warnLimit": 500,
            "softLimit": 900,
            "scope": "account",
            "name": "alice@example.org (octets)",
            "description": octets["description"],
            "types": ["Email"],
        }
        state = got["state"]
        await alice.import_(message(1))
        await alice.import_(message(2, pad=50))
        quotas = await alice.quotas()
        assert quotas["octets"]["used"] == 250 and quotas["count"]["used"] == 2
        changes = await alice.call("Quota/changes", sinceState=state)
        assert sorted(changes["updated"]) == ["count", "octets"]
        assert changes["updatedProperties"] == ["used"]
        assert changes["created"] == changes["destroyed"] == []
        same = await alice.call("Quota/changes", sinceState=changes["newState"])
        assert same["updated"] == [] and same["updatedProperties"] is None
        bad = await alice.call("Quota/changes", sinceState="nonsense")
        assert bad["error"]["type"] == "cannotCalculateChanges"
        query = await alice.call(
            "Quota/query", filter={"resourceType": "count"}, sort=[{"property": "used"}]
        )
        assert query["ids"] == ["count"]
        named = await alice.call("Quota/query", filter={"name": "ALICE", "type": "Email"},
                                 sort=[{"property": "name", "isAscending": False}])  # fmt: skip
        assert named["ids"] == ["count", "octets"]  # "(records)" after "(octets)"
        assert (await alice.call("Quota/query", filter={"scope": "domain"}))["ids"] == []
        nope = await alice.call("Quota/query", sort=[{"property": "hardLimit"}])
        assert nope["error"]["type"] == "unsupportedSort"
        again = await alice.call("Quota/queryChanges", sinceQueryState=query["queryState"])
        assert again["error"]["type"] == "cannotCalculateChanges"
        # Without the mail capability in `using` the client knows none of the types.
        body = {
            "using": [CORE, QUOTA],
            "methodCalls": [["Quota/get", {"accountId": alice.account}, "q"]],
        }
        plain = (await alice.http.post("/jmap/api", json=body)).json()["methodResponses"][0][1]
        assert plain["list"] == []
        await alice.http.aclose()


async def test_the_hard_limit_is_exact_for_every_way_in(tmp_path):
    """Exactly at the limit is allowed, one octet past it is overQuota (RFC 8620 §5.3),
    for Email/import, Email/set create, Email/copy, uploads (413 with the overQuota
    problem type, checked from Content-Length before the body is read) and Blob/upload."""
    config = quota_config(tmp_path, "octets = 300")
    async with running_server(config) as server:
        alice = await connect(server)
        # (Uploaded first: once the account is full, so is the upload endpoint.)
        sizes = [message(1), message(2, pad=38), message(3, pad=-38), message(4, pad=-38)]
        blobs = [await alice.upload(m) for m in sizes]
        assert "id" in await alice.import_(blobs[0])
        assert "id" in await alice.import_(blobs[1])  # 238
        assert "id" in await alice.import_(blobs[2])  # 300: exactly the limit
        refused = await alice.import_(blobs[3])
        assert refused["type"] == "overQuota", refused
        assert (await alice.quotas())["octets"]["used"] == 300
        # Uploads: one octet more would pass the limit.
        big = await alice.http.post(
            f"/jmap/upload/{alice.account}/", content=b"y", headers={"Content-Type": "text/plain"}
        )
        assert big.status_code == 413
        assert big.json()["type"] == "urn:ietf:params:jmap:error:overQuota"
        upload = await alice.call("Blob/upload", create={"b": {"data": [{"data:asText": "z"}]}})
        assert upload["notCreated"]["b"]["type"] == "overQuota"
        draft = {
            "mailboxIds": {alice.inbox: True},
            "subject": "draft",
            "bodyStructure": {"type": "text/plain", "partId": "1"},
            "bodyValues": {"1": {"value": "Hi"}},
        }
        created = await alice.call("Email/set", create={"d": draft})
        assert created["notCreated"]["d"]["type"] == "overQuota"
        await alice.http.aclose()
        # Email/copy into a full account: bob (no quota) copies... alice's group "sales"
        # has the same configured limit; fill it, then copy into it.
        alice = await connect(server)
        session = (await alice.http.get("/jmap/session")).json()
        sales = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
        mine = (await alice.call("Email/query"))["ids"][0]
        copy = {"accountId": sales, "fromAccountId": alice.account, "create": {
            "c1": {"id": mine, "mailboxIds": {}}}}  # fmt: skip
        body = {"using": [CORE, MAIL], "methodCalls": [
            ["Mailbox/get", {"accountId": sales}, "m"]]}  # fmt: skip
        boxes = (await alice.http.post("/jmap/api", json=body)).json()["methodResponses"][0][1]
        copy["create"]["c1"]["mailboxIds"] = {boxes["list"][0]["id"]: True}
        for i in range(4):  # 3 x 100 fit in the group's 300, the 4th does not
            copy["create"] = {f"c{i}": {**copy["create"][next(iter(copy["create"]))]}}
            body = {"using": [CORE, MAIL], "methodCalls": [["Email/copy", copy, "c"]]}
            result = (await alice.http.post("/jmap/api", json=body)).json()["methodResponses"][0][1]
            if i < 3:
                assert result["created"], result
            else:
                assert result["notCreated"][f"c{i}"]["type"] == "overQuota", result
        await alice.http.aclose()


async def test_soft_limit_lets_only_deliveries_through(tmp_path):
    """§4.1 softLimit: past it the user's own creates are refused while mail arriving
    from outside (LMTP) is still taken, until the hard limit: then 552 5.2.2."""
    base = BASE_CONFIG + '\n[server.listener."lmtp"]\nbind = ["127.0.0.1:0"]\nprotocol = "lmtp"\n'
    config = quota_config(tmp_path, "octets = 100000\nsoft-at = 0.5", base=base)
    async with running_server(config) as server:
        alice = await connect(server)
        later = await alice.upload(message(2, pad=100))
        assert "id" in await alice.import_(message(1, pad=49_800))  # 49,900: under half
        assert (await alice.import_(later))["type"] == "overQuota"  # past the soft limit
        blocked = await alice.http.post(f"/jmap/upload/{alice.account}/", content=b"z" * 200)
        assert blocked.status_code == 413  # uploads are the user's too
        arriving = (b"From: carol@example.net\r\nTo: alice@example.org\r\nSubject: in\r\n\r\n"
                    + b"y" * 40_000 + b"\r\n")  # fmt: skip
        await lmtp_deliver(server, "alice@example.org", arriving)  # past soft: still taken
        used = (await alice.quotas())["octets"]["used"]
        assert 89_000 < used < 100_000
        with pytest.raises(AssertionError, match=r"552 5\.2\.2"):
            await lmtp_deliver(server, "alice@example.org", arriving)  # past hard
        assert (await alice.quotas())["octets"]["used"] == used
        await alice.http.aclose()


async def test_usage_is_exact_under_concurrent_imports(tmp_path):
    """Two users of one account importing at once, 100 octets at a time, into a limit of
    1,000: exactly ten land, the usage is exactly their sizes, and never more."""
    config = quota_config(tmp_path, "octets = 1000")
    async with running_server(config) as server:
        sessions = []
        for user in ("alice", "alice"):
            sessions.append(await connect(server, user))
        outcomes: list[str] = []
        blobs = {n: await sessions[0].upload(message(n)) for n in [*range(8), *range(100, 108)]}

        async def importer(client: Mail, offset: int) -> None:
            for n in range(offset, offset + 8):
                result = await client.import_(blobs[n])
                outcomes.append("ok" if "id" in result else result["type"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(importer, sessions[0], 0)
            nursery.start_soon(importer, sessions[1], 100)
        assert outcomes.count("ok") == 10 and outcomes.count("overQuota") == 6, outcomes
        emails = await sessions[0].call("Email/query")
        sizes = await sessions[0].call("Email/get", ids=emails["ids"], properties=["size"])
        assert sum(e["size"] for e in sizes["list"]) == 1000
        assert (await sessions[0].quotas())["octets"]["used"] == 1000
        for client in sessions:
            await client.http.aclose()


def test_usage_is_exact_after_kill_9(tmp_path):
    """A server killed with SIGKILL in the middle of imports: after the restart the
    reported usage is exactly the sizes of the Emails that are there (the usage commits
    with the rows it counts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = quota_config(
        tmp_path, "octets = 100000000", base=BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}")
    )
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jmap_host", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/", timeout=1).status_code == 200:
                    return proc
            except httpx.HTTPError:
                time.sleep(0.05)
        proc.kill()
        raise AssertionError("server did not start")

    def api(client: httpx.Client, account: str, name: str, **args: Any) -> dict[str, Any]:
        body = {
            "using": [CORE, MAIL, QUOTA],
            "methodCalls": [[name, {"accountId": account, **args}, "c"]],
        }
        return client.post(url + "/jmap/api", json=body, timeout=10).json()["methodResponses"][0][1]

    proc = start()
    try:
        with httpx.Client(headers=basic("alice")) as client:
            account = client.get(url + "/jmap/session").json()["primaryAccounts"][MAIL]
            inbox = next(
                m["id"] for m in api(client, account, "Mailbox/get")["list"] if m["role"] == "inbox"
            )
            blobs = [
                client.post(f"{url}/jmap/upload/{account}/", content=message(n, pad=n * 7)).json()[
                    "blobId"
                ]
                for n in range(300)
            ]
            import threading

            def keep_importing() -> None:
                for n, blob in enumerate(blobs):
                    try:
                        api(client, account, "Email/import", emails={f"e{n}": {
                            "blobId": blob, "mailboxIds": {inbox: True}}})  # fmt: skip
                    except (httpx.HTTPError, KeyError, ValueError):
                        return

            thread = threading.Thread(target=keep_importing)
            thread.start()
            time.sleep(0.3)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            thread.join()
        proc = start()
        with httpx.Client(headers=basic("alice")) as client:
            ids = api(client, account, "Email/query")["ids"]
            sizes = api(client, account, "Email/get", ids=ids, properties=["size"])["list"]
            quotas = {q["id"]: q for q in api(client, account, "Quota/get")["list"]}
            assert 0 < len(sizes) < len(blobs), "the kill came before or after every import"
            assert quotas["octets"]["used"] == sum(e["size"] for e in sizes)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


async def test_jmaplib_reads_the_quotas(tmp_path):
    """An unmodified client from the registries (jmaplib, with RFC 9425 support) reads the
    account's quotas and what is left of them."""
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient

    config = quota_config(tmp_path, "octets = 1000\ncount = 50")
    async with running_server(config) as server:
        alice = await connect(server)
        await alice.import_(message(1, pad=23))
        await alice.http.aclose()

        def read() -> dict[str, Any]:
            with JMAPClient.connect(
                server.url + "/.well-known/jmap", auth=BasicAuth("alice", "alice-password")
            ) as client:
                # RFC 9425 §4.1: a Quota shows only types whose capability the request
                # uses; jmaplib derives `using` from the batch's calls, so a batch that
                # asks about mail too sees the mail quota (and one that does not, none).
                with client.batch() as batch:
                    batch.mail.mailbox.get(ids=None)
                    quotas = batch.quota.quota.get(ids=None)
                with client.batch() as batch:
                    alone = batch.quota.quota.get(ids=None)
                assert alone.result.items == []
                return {q.id: q for q in quotas.result.items}

        quotas = await trio.to_thread.run_sync(read)
        octets = quotas["octets"]
        assert (octets.used, octets.hard_limit, octets.resource_type) == (123, 1000, "octets")
        assert octets.remaining == 877
        assert quotas["count"].used == 1
