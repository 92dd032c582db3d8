"""Bad input at the HTTP surface gets an answer, never a 500 or a dropped connection: the
defects an outside fuzzing and security battery found, each at the wire (RFC 8620 §6.1
upload and its limits, §6.2 download, RFC 8621 §9.2 blobs served from the API's origin,
RFC 9110 header syntax), written with a raw socket where httpx would tidy the input up."""

from __future__ import annotations

import base64
import json
from typing import Any

import trio

from jmap_host.testing import running_server, write_config

CORE = "urn:ietf:params:jmap:core"
LIMIT = "urn:ietf:params:jmap:error:limit"
ALICE = "Basic " + base64.b64encode(b"alice:alice-password").decode()


class RawHTTP:
    """One HTTP/1.1 connection on which requests are written byte for byte."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def connect(cls, url: str) -> RawHTTP:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def send(
        self, head: bytes, body: bytes = b"", chunk: int = 65536, pause: float = 0.0
    ) -> None:
        """Write the request head, then the body, all of it, before reading anything (as
        most clients do), in chunks with a pause between them (a slow link)."""
        await self.stream.send_all(head)
        for start in range(0, len(body), chunk):
            await self.stream.send_all(body[start : start + chunk])
            if pause:
                await trio.sleep(pause)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body (Content-Length)."""
        while b"\r\n\r\n" not in self.buffer:
            data = await self.stream.receive_some(65536)
            assert data, f"connection closed after {self.buffer!r}"
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            data = await self.stream.receive_some(65536)
            assert data, "connection closed inside a body"
            self.buffer += data
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    async def aclose(self) -> None:
        await self.stream.aclose()


def upload_head(account: str, length: int, extra: bytes = b"", auth: str = ALICE) -> bytes:
    return (
        (
            f"POST /jmap/upload/{account}/ HTTP/1.1\r\nHost: test\r\nAuthorization: {auth}\r\n"
            f"Content-Length: {length}\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )


async def account_of(server: Any) -> str:
    async with server.client("alice") as client:
        return (await client.get("/jmap/session")).json()["primaryAccounts"][CORE]


async def test_uploads_past_max_concurrent_upload_get_429_not_a_reset(tmp_path):
    """RFC 8620 §6.1/§2 maxConcurrentUpload: eight concurrent 20 MB uploads with a limit of
    4 are each answered, 201 or a 429 `limit` problem, however the client sends: the
    refusal comes before the body is read, and the rest of the body is read and dropped
    so the client sees the answer and the connection stays usable."""
    config = write_config(
        tmp_path, "[jmap.protocol.upload]\nmax-concurrent = 4\nmax-size = 30000000\n"
    )
    async with running_server(config) as server:
        account = await account_of(server)
        body = b"x" * 20_000_000
        answers: list[int] = []

        async def one(i: int) -> None:
            http = await RawHTTP.connect(server.url)
            data = bytes([i]) * len(body)
            await http.send(upload_head(account, len(data)), data, chunk=1 << 20, pause=0.005)
            status, _, reply = await http.response()
            answers.append(status)
            if status == 429:
                assert json.loads(reply)["limit"] == "maxConcurrentUpload"
            await http.aclose()

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
        assert sorted(set(answers)) <= [201, 429] and len(answers) == 8, answers
        assert answers.count(201) >= 4

        # Deterministic: four uploads held open, a fifth written whole is refused with
        # 429, and the same connection then serves a request.
        release = trio.Event()
        held = trio.Semaphore(0)

        async def hold() -> None:
            http = await RawHTTP.connect(server.url)
            await http.send(upload_head(account, 10), b"12345")
            held.release()
            await release.wait()
            await http.send(b"", b"67890")
            assert (await http.response())[0] == 201
            await http.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(hold)
            for _ in range(4):
                await held.acquire()
            await trio.sleep(0.2)
            http = await RawHTTP.connect(server.url)
            await http.send(upload_head(account, 5_000_000), b"y" * 5_000_000, pause=0.001)
            status, _, reply = await http.response()
            assert status == 429 and json.loads(reply)["type"] == LIMIT
            await http.send(b"GET /.well-known/jmap HTTP/1.1\r\nHost: test\r\n"
                            + f"Authorization: {ALICE}\r\n\r\n".encode())  # fmt: skip
            assert (await http.response())[0] == 200
            await http.aclose()
            release.set()


async def test_an_unauthenticated_upload_gets_its_401(jmap_config):
    """RFC 8620 §1.5 / RFC 9110: a 401 answered before the body is read reaches a client
    still sending it."""
    async with running_server(jmap_config) as server:
        account = await account_of(server)
        http = await RawHTTP.connect(server.url)
        wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
        await http.send(upload_head(account, 3_000_000, auth=wrong), b"z" * 3_000_000)
        assert (await http.response())[0] == 401
        await http.aclose()


async def test_header_numbers_in_other_scripts_are_not_numbers(jmap_config):
    """RFC 9110 §8.6 Content-Length is 1*DIGIT, ASCII: `²` or `٣` is a bad request (h11
    answers 400) or, in a header the host reads itself (Range, §14.2), ignored; never a
    500 from int('²')."""
    async with running_server(jmap_config) as server:
        account = await account_of(server)
        for length in ("²".encode(), "٣".encode(), b"1" * 5000):
            http = await RawHTTP.connect(server.url)
            await http.send(
                upload_head(account, 0).replace(b"Content-Length: 0", b"Content-Length: " + length)
            )
            status, _, _ = await http.response()
            assert status in (400, 413), (length, status)
            await http.aclose()
        async with server.client("alice") as client:
            blob = (await client.post(f"/jmap/upload/{account}/", content=b"0123456789")).json()
            url = f"/jmap/download/{account}/{blob['blobId']}/f.bin"
            for bad in ("bytes=²-5", "bytes=٣-5", "bytes=-²", "bytes=0-" + "9" * 5000):
                response = await client.get(url, headers={"Range": bad.encode()})
                assert response.status_code in (200, 206, 416), (bad, response.status_code)
            ranged = await client.get(url, headers={"Range": "bytes=2-4"})
            assert ranged.status_code == 206 and ranged.content == b"234"
            events = await client.get("/jmap/eventsource/?types=*&closeafter=no&ping=²")
            assert events.status_code == 400


async def test_upload_media_types_that_are_no_header_value(jmap_config):
    """RFC 8620 §6.1: the upload's type is the Content-Type given; one with non-ASCII
    bytes or control characters cannot go back out in a header, so the blob is typed
    application/octet-stream (and a download asking for such a type gets that too)."""
    async with running_server(jmap_config) as server:
        account = await account_of(server)
        for media in ("text/plain; name=\xe9t\xe9".encode("latin-1"), "text/plain; x=€".encode(),
                      b"text/plain; a=\x01"):  # fmt: skip
            http = await RawHTTP.connect(server.url)
            await http.send(upload_head(account, 2, b"Content-Type: " + media + b"\r\n"), b"hi")
            status, _, reply = await http.response()
            assert status == 201, (media, status, reply)
            assert json.loads(reply)["type"] == "application/octet-stream"
            await http.aclose()
        async with server.client("alice") as client:
            blob = (await client.post(f"/jmap/upload/{account}/", content=b"hi")).json()["blobId"]
            got = await client.get(
                f"/jmap/download/{account}/{blob}/x?type=text/plain;%20x=%E2%82%AC"
            )
            assert got.status_code == 200
            assert got.headers["content-type"] == "application/octet-stream"


async def test_download_names_with_control_characters(jmap_config):
    """RFC 8620 §6.2: the name is the client's; CR, LF, NUL and other control characters
    cannot go into a header (h11 refused them: a 500), so they become "_" in filename=
    and stay, percent-encoded, in filename* (RFC 6266 §4.3).  Every download is sent with
    nosniff and a sandbox CSP (RFC 8621 §9.2: a blob from the API's origin must not run
    as a page of it)."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = await account_of(server)
        blob = (
            await client.post(
                f"/jmap/upload/{account}/",
                content=b"<script>alert(1)</script>",
                headers={"Content-Type": "text/html"},
            )
        ).json()["blobId"]
        for name, plain in (
            ("a%0D%0ASet-Cookie:%20x=1.txt", "a__Set-Cookie: x=1.txt"),
            ("nul%00.txt", "nul_.txt"),
            ("bell%07tab%09del%7F.txt", "bell_tab_del_.txt"),
            ("quote%22back%5Cslash.txt", "quote_back_slash.txt"),
            ("%E2%80%AEevil.txt", "_evil.txt"),
            ("%FF%FE.txt", "__.txt"),
        ):
            got = await client.get(f"/jmap/download/{account}/{blob}/{name}?type=text/html")
            assert got.status_code == 200, (name, got.status_code)
            assert got.content == b"<script>alert(1)</script>"
            disposition = got.headers["content-disposition"]
            assert disposition.startswith(f"attachment; filename=\"{plain}\"; filename*=UTF-8''"), (
                name,
                disposition,
            )
            assert "set-cookie" not in got.headers
            assert got.headers["x-content-type-options"] == "nosniff"
            assert got.headers["content-security-policy"] == "sandbox"


async def test_a_broken_body_after_an_early_answer_is_no_server_error(tmp_path, caplog):
    """A client answered before its body was read (404, 401, 429) that then sends a body
    h11 refuses (bad chunked framing) or leaves: the server drops the connection quietly,
    with no "Error in ASGI Framework" (the fuzz test found hypercorn's close racing our
    last send), and keeps serving."""
    import logging

    caplog.set_level(logging.ERROR)
    config = write_config(tmp_path, "[authentication]\nmax-failures = 1000\n")  # (401s)
    async with running_server(config) as server:
        account = await account_of(server)
        heads = [
            b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /jmap/api HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eDp5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            upload_head("nobody", 1000).replace(
                b"Content-Length: 1000", b"Transfer-Encoding: chunked"
            ),
        ]
        for round_ in range(30):
            for head in heads:
                http = await RawHTTP.connect(server.url)
                await http.send(head, b"5\r\nhello\r\n")
                await trio.sleep(0.001 * (round_ % 3))
                await http.send(b"", b"zz-not-a-chunk-size\r\n" if round_ % 2 else b"")
                if round_ % 2 == 0:
                    await http.aclose()  # leaves mid-body
                    continue
                with trio.move_on_after(2):
                    try:
                        while await http.stream.receive_some(65536):
                            pass
                    except trio.BrokenResourceError:
                        pass
                await http.aclose()
        await trio.sleep(0.2)
        async with server.client("alice") as client:
            assert (await client.get("/jmap/session")).status_code == 200
        assert account
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
