"""Several processes on one machine (``[server] workers``, jmap_host.workers): a supervisor
binds the listeners, starts the workers, restarts one that dies, stops them all on SIGTERM,
and gives up when they keep failing at start-up."""

from __future__ import annotations

import http.client
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import trio

from jmap_host import ConfigError, load_host
from jmap_host.testing import ServerProcess, basic, write_config
from jmap_host.workers import Supervisor

READY = re.compile(r"worker (\d+) \(pid (\d+)\) ready")
LISTENING = re.compile(r"listener 'jmap' \(jmap\): http://127\.0\.0\.1:(\d+)")


def wait_for(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


class Supervised:
    """``jmap-host run`` on a configuration with ``workers = 2``."""

    def __init__(self, tmp_path: Path, extra: str):
        self.config = write_config(tmp_path, extra + "\n[server]\nworkers = 2\n")
        self.log = tmp_path / "run.log"
        self.server = ServerProcess(self.config, "")
        self.server.spawn(self.log)
        self.proc = self.server.proc
        found = wait_for(lambda: LISTENING.search(self.text()))
        self.port = int(found.group(1))

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> dict[int, int]:
        """{worker index: pid} of the latest start of each."""
        return {int(i): int(pid) for i, pid in READY.findall(self.text())}

    def get(self) -> tuple[int, int]:
        """GET the session over a connection of its own: (status, pid of the worker that
        holds the server's end of the connection)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/.well-known/jmap", headers=basic("alice"))
            response = conn.getresponse()
            response.read()
            client_port = conn.sock.getsockname()[1]
            return response.status, server_pid(client_port, list(self.workers().values()))
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.workers().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def server_pid(client_port: int, pids: list[int]) -> int:
    """The process among ``pids`` with the accepted socket whose peer is ``client_port``
    (from /proc: the kernel's socket table, then each process's descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == client_port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_workers_serve_are_restarted_and_stop_together(tmp_path: Path) -> None:
    server = Supervised(tmp_path, "")
    try:
        first = server.workers()
        assert sorted(first) == [0, 1] and len(set(first.values())) == 2
        # Both workers accept: connections land on each (the kernel picks a waiting one).
        answered = set()
        for _ in range(200):
            status, pid = server.get()
            assert status == 200
            answered.add(pid)
            if len(answered) == 2:
                break
        assert answered == set(first.values())

        os.kill(first[0], signal.SIGKILL)
        restarted = wait_for(lambda: server.workers()[0] != first[0] and server.workers())
        assert restarted[1] == first[1] and alive(restarted[0])
        assert "worker 0 exited (killed by SIGKILL); starting another" in server.text()
        assert {server.get()[0] for _ in range(5)} == {200}

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        assert not any(alive(pid) for pid in restarted.values())
        text = server.text()
        assert "received SIGTERM: stopping 2 worker(s)" in text
        assert text.count("finishing requests in flight, then stopping") == 2
    finally:
        server.stop()


@pytest.mark.backend("sqlite")
def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    server = Supervised(tmp_path, "")
    try:
        pids = list(server.workers().values())
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30)
        assert "the supervisor has gone: stopping" in server.text()
    finally:
        server.stop()


async def test_the_supervisor_gives_up_on_workers_that_keep_failing() -> None:
    command = [sys.executable, "-c", "import sys; sys.exit(3)"]
    supervisor = Supervisor(command, {}, workers=2, backoff_first=0.01)
    with trio.fail_after(30):
        assert await supervisor.run() == 1
    assert supervisor.processes == {}


async def test_workers_that_start_and_are_told_to_stop_exit_cleanly() -> None:
    """A worker that reports ready and waits: stopped with SIGTERM, status 0."""
    script = (
        "import json, os, signal, sys, time\n"
        "spec = json.loads(os.environ['JMAP_HOST_WORKER'])\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "os.write(spec['ready'], b'ready')\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor([sys.executable, "-c", script], {}, workers=2)
    ready = trio.Event()
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            assert await supervisor.run(ready.set) == 0

        nursery.start_soon(run)
        with trio.fail_after(30):
            await ready.wait()
        assert len(supervisor.processes) == 2
        supervisor.stop("test")
    assert supervisor.processes == {}


@pytest.mark.parametrize("workers", [0, 65, "2", True])
def test_workers_must_be_a_sensible_integer(tmp_path: Path, workers: object) -> None:
    value = f'"{workers}"' if isinstance(workers, str) else str(workers).lower()
    config = write_config(tmp_path, f"[server]\nworkers = {value}\n")
    with pytest.raises(ConfigError) as raised:
        load_host(config)
    assert "server.workers" in str(raised.value)


async def test_a_stop_does_not_wait_for_a_restart_delay() -> None:
    supervisor = Supervisor(
        [sys.executable, "-c", "import sys; sys.exit(3)"], {}, workers=1, backoff_first=60
    )
    async with trio.open_nursery() as nursery:
        finished = trio.Event()

        async def run() -> None:
            assert await supervisor.run() == 0
            finished.set()

        nursery.start_soon(run)
        with trio.fail_after(30):
            while supervisor._nursery is None or supervisor.processes:
                await trio.sleep(0.02)  # started, then the worker failed: in the delay
            await trio.sleep(0.2)
            supervisor.stop("test")
        with trio.fail_after(5):
            await finished.wait()
