"""Test helpers for the mail plugin (and for plugins that build on it)."""

from __future__ import annotations

from typing import Any

import trio

MAIL_USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]


class MailClient:
    """One account's JMAP client for tests: ``call`` makes one method call in the account
    and returns its arguments.  A method error fails the test, unless the subclass sets
    ``errors_as_results``: then it comes back as ``{"error": {...}}``."""

    errors_as_results = False

    def __init__(self, http: Any, account: str):
        self.http, self.account = http, account

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        # (jmap_host.testing.api's POST, written out: plugin code imports only jmap_host)
        body = {
            "using": MAIL_USING,
            "methodCalls": [[name, {"accountId": self.account, **args}, "c"]],
        }
        reply = await self.http.post("/jmap/api", json=body)
        assert reply.status_code == 200, reply.text
        response = reply.json()["methodResponses"][0]
        if response[0] != name and self.errors_as_results:
            return {"error": response[1]}
        assert response[0] == name, response
        return response[1]

    async def upload(
        self, data: bytes, media: str = "message/rfc822", account: str | None = None
    ) -> str:
        """Upload ``data`` to this account (or ``account``); its blobId."""
        return await upload(self.http, account or self.account, data, media)


async def upload(http: Any, account: str, data: bytes, media: str = "message/rfc822") -> str:
    """POST ``data`` to the upload endpoint of ``account`` (RFC 8620 §6.1); its blobId."""
    reply = await http.post(
        f"/jmap/upload/{account}/", content=data, headers={"Content-Type": media}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["blobId"])


async def lmtp_deliver(
    server: Any, rcpt: str, raw: bytes, mail_from: str = "dana@example.net"
) -> str:
    """Deliver ``raw`` to ``rcpt`` over the server's LMTP listener (named "lmtp"),
    pipelined, dot-stuffed; asserts every reply and returns the final one."""
    address, port = server.urls["lmtp"][0].removeprefix("lmtp://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(address, int(port))
    async with stream:
        buffer = b""

        async def reply() -> str:
            nonlocal buffer
            while True:
                while b"\r\n" not in buffer:
                    with trio.fail_after(10):
                        data = await stream.receive_some(65536)
                    assert data, buffer
                    buffer += data
                line, _, buffer = buffer.partition(b"\r\n")
                if line[3:4] != b"-":
                    return line.decode()

        assert (await reply()).startswith("220")
        await stream.send_all(
            f"LHLO mta\r\nMAIL FROM:<{mail_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
        )
        for code in ("250", "250", "250", "354"):
            line = await reply()
            assert line.startswith(code), line
        stuffed = b"".join(
            b"." + line if line.startswith(b".") else line for line in raw.splitlines(True)
        )
        await stream.send_all(stuffed + b".\r\nQUIT\r\n")
        final = await reply()
        assert final.startswith("250"), final
        return final
