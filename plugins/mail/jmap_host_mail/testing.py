"""Test helpers for the mail plugin (and for plugins that build on it)."""

from __future__ import annotations

from typing import Any

import trio


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
