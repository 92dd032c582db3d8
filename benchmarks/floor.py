"""The floor: the smallest ASGI app on the stack jmap-host uses (hypercorn on trio).

Every request, whatever its method and path, is read to the end and answered with one
static JSON document.  run.py starts this as a subprocess, measures it with the same client
and the same request shapes as the JMAP scenarios, and reports those as ratios to it, so the
figures say how much jmap-host adds on top of the HTTP stack on whatever machine runs them.

    python benchmarks/floor.py [--port 0]

It binds 127.0.0.1 (port 0 = a free port), prints ``LISTENING http://127.0.0.1:PORT`` on
stdout once it accepts connections, and serves until SIGTERM/SIGINT.  The hypercorn
settings are those of jmap_host/server.py (no access log, no Server header, backlog 1024).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = b'{"methodResponses":[],"sessionState":"0"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the request body, as a real endpoint must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("floor")
    config.include_server_header = False
    config.backlog = 1024
    shutdown = trio.Event()

    async def on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                shutdown.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signal)
        binds = await nursery.start(
            lambda task_status: serve(
                app, config, shutdown_trigger=shutdown.wait, task_status=task_status
            )
        )
        print("LISTENING", binds[0], flush=True)
        await shutdown.wait()
        nursery.cancel_scope.deadline = trio.current_time() + 5


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    trio.run(main, parser.parse_args().port)
    sys.exit(0)
