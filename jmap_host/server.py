"""Serving every configured listener on trio until SIGINT or SIGTERM.

Each HTTP listener is one ``hypercorn.trio.serve`` with its own binds and TLS; all share the
host.  On a signal the shutdown event fires, hypercorn stops accepting and lets requests in
flight finish (up to ``graceful-timeout``), then the plugins' shutdown hooks run.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .app import build_app
from .blobs import run_sweeper
from .cluster import bus_for
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
            # Several nodes on one PostgreSQL database, or several workers on one machine:
            # other processes' changes and cache invalidations (jmap_host.cluster), listening
            # before any listener serves.
            bus = bus_for(host)
            if bus is not None:
                await background.start(host.events.run, bus)
            # Expired unreferenced uploads (RFC 8620 §6); cancelled with the nursery.  Jobs
            # under a lease run in one of the processes sharing the store (leases.py).
            background.start_soon(host.store.run_leased, "host.blob-sweeper", run_sweeper, host)
            # PushSubscription deliveries (RFC 8620 §7.2); running before any listener is.
            await background.start(run_push_service, host)
            background.start_soon(
                host.store.run_leased, "host.change-compaction", compact_change_log, host
            )
            background.start_soon(collect_after_disconnects, host)
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


# Each open connection (an EventSource stream above all) holds a socket: 10,000 streams
# need 10,000 descriptors beside the database, blob files and listeners.
WANTED_NOFILE = 10_000 + 1_024
LOW_NOFILE = 4_096


def raise_nofile_limit(wanted: int = WANTED_NOFILE) -> tuple[int, int | None]:
    """Raise RLIMIT_NOFILE's soft limit towards the hard one (up to ``wanted``); log what
    is in force, with a warning when it is too low to hold many connections.  Returns
    (soft limit now, hard limit); the soft limit is ``wanted`` where there is no such limit."""
    try:
        import resource
    except ImportError:  # not a Unix
        return wanted, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < wanted:
        new = wanted if hard == infinite else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, new, exc)
    effective = wanted if soft == infinite else soft
    hard_text = "unlimited" if hard == infinite else str(hard)
    if effective < LOW_NOFILE:
        log.warning(
            "open-file limit (RLIMIT_NOFILE) is %d, hard limit %s: at most about %d clients "
            "(EventSource streams, WebSockets, HTTP connections) can be connected at once; "
            "further connections wait in the listen queue.  For %d streams raise the hard "
            "limit to %d or more (ulimit -Hn, systemd LimitNOFILE=)",
            effective,
            hard_text,
            max(0, effective - 256),
            wanted - 1_024,
            wanted,
        )
    else:
        log.info(
            "open-file limit %d (hard %s): up to about %d connections at once",
            effective,
            hard_text,
            max(0, effective - 256),
        )
    return effective, (None if hard == infinite else hard)


# Garbage collector thresholds.  With the default (700, 10, 10) every burst of work on
# thousands of open streams (a change fanned out to all of them, clients reconnecting
# together) promotes its short-lived objects to the oldest generation, and each full
# collection then walks every object of every open connection: about 170 objects a
# stream, 1.7 million at 10,000 streams, a second or more of CPU with the event loop
# stopped.  A larger young threshold lets those objects die young; the larger last one
# spaces full collections out (they still need a quarter of the old objects to be new,
# as CPython requires), and collect_after_disconnects runs one when many streams have
# closed, which is when the connections' reference cycles become garbage.
GC_THRESHOLDS = (20_000, 10, 100)


def tune_gc() -> None:
    """Process-wide collector settings for a long-running server: the larger young
    threshold above, and the objects of start-up (modules, configuration, plugins) moved
    out of the collector's reach (``gc.freeze``), so full collections skip them."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()


# A stream's objects (hypercorn's connection, our tasks) are held in reference cycles, so
# when thousands of clients go away together their memory waits for a full collection,
# which a quiet server may not run for hours: 10,000 closed streams left ~125 MiB.
COLLECT_CHECK_INTERVAL = 30.0
COLLECT_MIN_CLOSED = 500


def should_collect(closed: int, still_open: int) -> bool:
    """A full collection is worth its pause once ``closed`` streams have gone since the
    last one: at least COLLECT_MIN_CLOSED, and a quarter of those still open (a full
    collection walks every object of the open ones)."""
    return closed >= max(COLLECT_MIN_CLOSED, still_open // 4)


async def collect_after_disconnects(host: Host, interval: float = COLLECT_CHECK_INTERVAL) -> None:
    """Every ``interval`` seconds: a full garbage collection when many push subscribers
    (EventSource streams, WebSockets with push) have gone since the last one."""
    collected_at = host.push.closed
    while True:
        await trio.sleep(interval)
        closed = host.push.closed - collected_at
        if should_collect(closed, host.push.open):
            started = time.perf_counter()
            found = gc.collect()
            collected_at = host.push.closed
            log.info(
                "%d streams closed: collected %d objects in %.0f ms",
                closed,
                found,
                (time.perf_counter() - started) * 1000,
            )


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
            if bind.startswith("fd://"):  # inherited from a supervisor (workers.py)
                inherited = socket.socket(fileno=int(bind[5:]))  # (family and type found)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(inherited)))
                continue
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


async def run_until_signal(
    host: Host,
    on_ready: Callable[[dict[str, list[str]]], None],
    stop_when: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (or until ``stop_when()`` returns: a worker's
    supervisor gone)."""
    raise_nofile_limit()
    shutdown = trio.Event()

    def ready(bound: dict[str, list[str]]) -> None:
        tune_gc()  # after start-up: what it built is there for the process's life
        on_ready(bound)

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
        if stop_when is not None:

            async def watch_stop() -> None:
                await stop_when()
                shutdown.set()

            nursery.start_soon(watch_stop)
        await serve(host, shutdown=shutdown, on_ready=ready)
        nursery.cancel_scope.cancel()
