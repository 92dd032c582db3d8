"""Several processes serving the same listeners on one machine (``[server] workers``).

With ``workers = N`` above 1, ``jmap-host run`` is a *supervisor*: it validates the
configuration, applies the migrations (once, before any worker starts), binds every
listener's sockets, and starts N worker processes (``jmap-host run --worker``, a fresh
interpreter each: no state forked from the supervisor).  Each worker inherits the listening
sockets and accepts connections on them (the kernel gives each connection to one of the
processes waiting), so one machine uses all its cores; the store is shared as it is
between nodes, background jobs run once through leases (jmap_host.leases).

The supervisor

- prints the listeners once every worker is ready (each writes ``ready`` to a pipe);
- forwards SIGINT and SIGTERM to the workers as SIGTERM (each finishes its requests in
  flight as a single server does), kills those still running after the largest
  ``graceful-timeout`` plus :data:`STOP_GRACE`, and exits 0;
- starts another worker when one dies, after a delay doubling from :data:`BACKOFF_FIRST`
  to :data:`BACKOFF_MAX` (reset once a worker has served :data:`HEALTHY_AFTER` seconds),
  and exits 1 when a worker has failed to start :data:`MAX_START_FAILURES` times in a row.

A worker finds what it inherited in the environment variable :data:`WORKER_ENV` (JSON:
the sockets' descriptors per listener, the ready pipe, the lifeline).  Workers run in a
session of their own (a Ctrl+C in the terminal reaches the supervisor only, which then
stops them once) and end gracefully when their lifeline, a pipe whose other end only the
supervisor holds, reaches end of file: a supervisor killed with SIGKILL leaves no workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

log = logging.getLogger("jmap_host.workers")

WORKER_ENV = "JMAP_HOST_WORKER"
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0
MAX_START_FAILURES = 5
STOP_GRACE = 5.0
LISTEN_BACKLOG = 1024  # as server.hypercorn_config's


# -- in the supervisor -----------------------------------------------------------------------


def bind_listeners(host: Any) -> dict[str, list[socket.socket]]:
    """A listening socket per bind of every listener, as the server would bind them
    (addresses are IP literals or ``unix:/path``: the configuration refuses names)."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for name, listener in host.config.data["server"]["listener"].items():
            http = host.protocols[listener["protocol"]].transport == "http"
            bound[name] = [_bind(bind, http) for bind in listener["bind"]]
    except BaseException:
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
        raise
    return bound


def _bind(bind: str, http: bool) -> socket.socket:
    if bind.startswith("unix:"):
        import stat

        path = bind[5:]
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # a stale socket of an earlier run, as the server does
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = path
    else:
        ip, _, port = bind.rpartition(":")
        ip = ip.strip("[]")
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not http:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # (as trio binds)
        if http:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # (as hypercorn)
        address = (ip, int(port))
    try:
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def listener_urls(host: Any, bound: dict[str, list[socket.socket]]) -> dict[str, list[str]]:
    """What the server reports as bound ({listener: [URLs]}), for the supervisor's sockets."""
    from hypercorn.utils import repr_socket_addr

    urls: dict[str, list[str]] = {}
    for name, sockets in bound.items():
        listener = host.config.data["server"]["listener"][name]
        http = host.protocols[listener["protocol"]].transport == "http"
        scheme = ("https" if listener.get("tls") else "http") if http else listener["protocol"]
        found = []
        for sock in sockets:
            address = sock.getsockname()
            if http:
                found.append(f"{scheme}://{repr_socket_addr(sock.family, address)}")
            elif isinstance(address, str):
                found.append(f"{scheme}:unix:{address}")
            else:
                found.append(f"{scheme}://{address[0]}:{address[1]}")
        urls[name] = found
    return urls


def stop_timeout(host: Any) -> float:
    """How long workers may take to stop: the largest graceful-timeout, and some more."""
    listeners = host.config.data["server"]["listener"].values()
    return max(float(listener["graceful-timeout"]) for listener in listeners) + STOP_GRACE


@dataclass
class Supervisor:
    """Runs ``command`` (a worker) ``workers`` times over, with the ``sockets`` inherited."""

    command: list[str]
    sockets: dict[str, list[socket.socket]]
    workers: int
    stop_timeout: float = 10.0 + STOP_GRACE
    backoff_first: float = BACKOFF_FIRST
    exit_code: int = 0
    processes: dict[int, trio.Process] = field(default_factory=dict)
    stopping: bool = False
    _ready: set[int] = field(default_factory=set)
    _stopped: trio.Event = field(default_factory=trio.Event)
    _on_ready: Callable[[], None] | None = None
    _nursery: trio.Nursery | None = None
    _lifeline: int = -1

    async def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Serve until a signal (or until workers keep failing); the exit status."""
        self._on_ready = on_ready
        lifeline, keep = os.pipe()  # (the write end is not inherited: only we hold it)
        self._lifeline = lifeline
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_signals)
                async with trio.open_nursery() as slots:
                    for index in range(self.workers):
                        slots.start_soon(self._slot, index)
                nursery.cancel_scope.cancel()
        finally:
            os.close(lifeline)
            os.close(keep)
        return self.exit_code

    def stop(self, why: str) -> None:
        """SIGTERM to every worker (once); SIGKILL to those left after stop_timeout."""
        if self.stopping:
            return
        self.stopping = True
        self._stopped.set()
        log.warning("%s: stopping %d worker(s)", why, len(self.processes))
        for process in self.processes.values():
            _signal(process, signal.SIGTERM)
        assert self._nursery is not None
        self._nursery.start_soon(self._kill_after, self.stop_timeout)

    async def _kill_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        for process in self.processes.values():
            log.warning("worker pid %d still running after %.0f s: killed", process.pid, seconds)
            _signal(process, signal.SIGKILL)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                self.stop(f"received {signal.Signals(signum).name}")

    async def _slot(self, index: int) -> None:
        """Worker ``index``, started again whenever it dies (until stopping)."""
        failures = 0
        delay = self.backoff_first
        while not self.stopping:
            began = trio.current_time()
            ready, status = await self._run_worker(index)
            if self.stopping:
                return
            if not ready:
                failures += 1
                if failures >= MAX_START_FAILURES:
                    log.error("worker %d failed to start %d times in a row", index, failures)
                    self.exit_code = 1
                    self.stop("workers keep failing at start-up")
                    return
            elif trio.current_time() - began >= HEALTHY_AFTER:
                failures, delay = 0, self.backoff_first
            log.warning(
                "worker %d exited (%s%s); starting another in %.1f s",
                index,
                _describe(status),
                "" if ready else ", before it was ready",
                delay,
            )
            with trio.move_on_after(delay):
                await self._stopped.wait()  # (a stop does not wait for the delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _run_worker(self, index: int) -> tuple[bool, int]:
        """Start worker ``index`` and wait for it to end: (whether it was ready, status)."""
        ready_read, ready_write = os.pipe()
        fds = {name: [s.fileno() for s in sockets] for name, sockets in self.sockets.items()}
        spec = {"listeners": fds, "ready": ready_write, "lifeline": self._lifeline, "index": index}
        inherited = [fd for group in fds.values() for fd in group]
        try:
            process = await trio.lowlevel.open_process(
                self.command,
                pass_fds=(*inherited, ready_write, self._lifeline),
                env={**os.environ, WORKER_ENV: json.dumps(spec)},
                start_new_session=True,
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        self.processes[index] = process
        try:
            async with trio.lowlevel.FdStream(ready_read) as pipe:
                # "ready", or end of file when the worker died first.
                ready = (await pipe.receive_some()).startswith(b"ready")
            if ready:
                log.info("worker %d (pid %d) ready", index, process.pid)
                self._ready.add(index)
                if len(self._ready) == self.workers and self._on_ready is not None:
                    on_ready, self._on_ready = self._on_ready, None
                    on_ready()  # the first time all are
            status = await process.wait()
        finally:
            if process.returncode is None:  # (cancelled: no worker is left behind)
                _signal(process, signal.SIGKILL)
                with trio.CancelScope(shield=True):
                    await process.wait()
            del self.processes[index]
        return ready, status


def _signal(process: trio.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # (just exited)
        process.send_signal(signum)


def _describe(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"status {status}"


def worker_command(config: str | None, log_level: str) -> list[str]:
    """The command line of a worker: this interpreter, ``jmap-host run --worker``."""
    command = [sys.executable, "-m", "jmap_host", "run", "--worker", "--log-level", log_level]
    return command + (["-c", os.path.abspath(config)] if config else [])


def supervise(host: Any, config: str | None, log_level: str, on_ready: Callable[..., None]) -> int:
    """``jmap-host run`` with ``workers`` above 1: migrate, bind, run the workers."""
    host.store.migrate()
    host.store.close()
    sockets = bind_listeners(host)
    try:
        supervisor = Supervisor(
            worker_command(config, log_level),
            sockets,
            host.config.data["server"]["workers"],
            stop_timeout=stop_timeout(host),
        )
        urls = listener_urls(host, sockets)
        return trio.run(supervisor.run, lambda: on_ready(urls))
    finally:
        for group in sockets.values():
            for sock in group:
                sock.close()


# -- in a worker -----------------------------------------------------------------------------


@dataclass
class WorkerSpec:
    """What a worker inherited from its supervisor (see :data:`WORKER_ENV`)."""

    listeners: dict[str, list[int]]
    ready: int
    lifeline: int
    index: int

    @classmethod
    def from_environment(cls) -> WorkerSpec | None:
        text = os.environ.get(WORKER_ENV)
        if not text:
            return None
        data = json.loads(text)
        return cls(data["listeners"], data["ready"], data["lifeline"], data["index"])

    def prepare(self, host: Any) -> None:
        """Serve the inherited sockets (``fd://N`` binds), without migrating again."""
        host.migrate_at_startup = False
        for name, listener in host.config.data["server"]["listener"].items():
            listener["bind"] = [f"fd://{fd}" for fd in self.listeners[name]]

    def report_ready(self) -> None:
        try:
            os.write(self.ready, b"ready\n")
        finally:
            os.close(self.ready)

    async def lifeline_ends(self) -> None:
        """Return when the supervisor has gone (its end of the lifeline closed)."""
        async with trio.lowlevel.FdStream(self.lifeline) as lifeline:
            while await lifeline.receive_some():
                pass
        log.warning("the supervisor has gone: stopping")


__all__ = [
    "MAX_START_FAILURES",
    "WORKER_ENV",
    "Supervisor",
    "WorkerSpec",
    "bind_listeners",
    "listener_urls",
    "supervise",
    "worker_command",
]
