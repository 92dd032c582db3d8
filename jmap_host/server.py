"""Serving every configured listener on trio until SIGINT or SIGTERM.

Each HTTP listener is one ``hypercorn.trio.serve`` with its own binds and TLS; all share the
host.  On a signal the shutdown event fires, hypercorn stops accepting and lets requests in
flight finish (up to ``graceful-timeout``), then the plugins' shutdown hooks run.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .app import build_app
from .blobs import run_sweeper
from .host import Host
from .objectstore import compact_changes
from .pushsubscription import run_push_service

log = logging.getLogger("jmap_host.server")


def hypercorn_config(listener: dict[str, Any]) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = list(listener["bind"])
    config.graceful_timeout = listener["graceful-timeout"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    # Clients reconnect together after a restart (every push stream at once): a deeper
    # listen queue than hypercorn's 100 keeps them from being refused.
    config.backlog = 1024
    tls = listener.get("tls")
    if tls:
        config.certfile = tls["certificate"]
        config.keyfile = tls["private-key"]
    return config


async def serve(
    host: Host,
    *,
    shutdown: trio.Event | None = None,
    on_ready: Callable[[dict[str, list[str]]], None] | None = None,
    task_status: trio.TaskStatus[dict[str, list[str]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set.  Reports {listener name: [bound URLs]} through
    ``task_status`` (and ``on_ready``) once every listener accepts connections."""
    shutdown = trio.Event() if shutdown is None else shutdown
    bound: dict[str, list[str]] = {}
    try:
        async with trio.open_nursery() as background:
            # Plugins' background work lives here; it is cancelled once the servers stop.
            host.nursery = background

            async def announce_closing() -> None:
                await shutdown.wait()
                host.closing.set()

            background.start_soon(announce_closing)
            await host.startup()
            # Expired unreferenced uploads (RFC 8620 §6); cancelled with the nursery.
            background.start_soon(run_sweeper, host)
            # PushSubscription deliveries (RFC 8620 §7.2); running before any listener is.
            await background.start(run_push_service, host)
            background.start_soon(compact_change_log, host)
            background.start_soon(host.store.checkpointer)
            async with trio.open_nursery() as servers:
                for name, listener in host.config.data["server"]["listener"].items():
                    protocol = host.protocols[listener["protocol"]]
                    if protocol.transport == "http":
                        app = build_app(host, listener)
                        urls = await servers.start(
                            _serve_http, app, hypercorn_config(listener), shutdown
                        )
                    else:
                        urls = await servers.start(
                            _serve_stream, host, protocol, listener, shutdown
                        )
                    bound[name] = urls
                if on_ready:
                    on_ready(bound)
                task_status.started(bound)
            # Every hypercorn serve returns once the shutdown event has fired and requests
            # in flight have finished (or graceful-timeout has passed).
            background.cancel_scope.cancel()
    finally:
        host.nursery = None
        with trio.CancelScope(shield=True):
            await host.shutdown()


COMPACTION_INTERVAL = 3600.0


async def compact_change_log(host: Host) -> None:
    """Drop change-log rows older than ``storage.change-retention``, hourly (§5.2)."""
    retention = host.config.data["storage"]["change-retention"]
    while True:
        cutoff = int(time.time() - retention)
        try:
            await host.store.write(lambda db, cutoff=cutoff: compact_changes(db, cutoff))
        except Exception:  # a busy database now is no reason to stop compacting later
            log.exception("change log compaction failed; will retry")
        await trio.sleep(COMPACTION_INTERVAL)


async def _serve_http(
    app: Any,
    config: HypercornConfig,
    shutdown: trio.Event,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    await hypercorn_serve(app, config, shutdown_trigger=shutdown.wait, task_status=task_status)


async def _serve_stream(
    host: Host,
    protocol: Any,
    listener: dict[str, Any],
    shutdown: trio.Event,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    urls = []
    async with trio.open_nursery() as nursery:
        listeners = []
        for bind in listener["bind"]:
            if bind.startswith("unix:"):
                listeners.append(await _unix_listener(bind[5:]))
                continue
            address, _, port = bind.rpartition(":")
            address = address.strip("[]")
            listeners += await trio.open_tcp_listeners(int(port), host=address)
        for lst in listeners:
            sockname = lst.socket.getsockname()
            if isinstance(sockname, str):
                urls.append(f"{listener['protocol']}:unix:{sockname}")
            else:
                urls.append(f"{listener['protocol']}://{sockname[0]}:{sockname[1]}")

        async def handle(stream: trio.SocketStream) -> None:
            await protocol.handler(stream, host, listener)

        for lst in listeners:
            nursery.start_soon(trio.serve_listeners, handle, [lst])
        task_status.started(urls)
        await shutdown.wait()
        nursery.cancel_scope.cancel()


async def _unix_listener(path: str) -> trio.SocketListener:
    """A listening Unix domain socket at ``path``; a stale socket file left by an earlier
    run is replaced, any other file is not."""
    import os
    import stat

    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def run_until_signal(host: Host, on_ready: Callable[[dict[str, list[str]]], None]) -> None:
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.warning(
                        "received %s: finishing requests in flight, then stopping",
                        signal.Signals(signum).name,
                    )
                    shutdown.set()
                    return

        nursery.start_soon(watch_signals)
        await serve(host, shutdown=shutdown, on_ready=on_ready)
        nursery.cancel_scope.cancel()
