"""Leases (jmap_host.leases): a background job runs in one of the processes sharing a store,
and another takes over when its holder stops or dies.  On both back ends: file locks under
storage.path on SQLite, session advisory locks on PostgreSQL."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import trio

from jmap_host import load_host
from jmap_host.leases import LEASE_SPACE
from jmap_host.testing import ServerProcess, eventually, write_config


def two_hosts(tmp_path: Path) -> tuple:
    config = write_config(tmp_path)
    a, b = load_host(config), load_host(config)
    for host in (a, b):
        host.store.leases.poll = 0.05
    return a, b


async def test_a_lease_is_held_by_one_store_at_a_time(tmp_path: Path) -> None:
    a, b = two_hosts(tmp_path)
    try:
        handle = await trio.to_thread.run_sync(a.store.leases.try_take, "test.job")
        assert handle is not None
        assert await trio.to_thread.run_sync(b.store.leases.try_take, "test.job") is None
        # Not twice in one process either (PostgreSQL's locks are re-entrant in a session).
        assert await trio.to_thread.run_sync(a.store.leases.try_take, "test.job") is None
        other = await trio.to_thread.run_sync(b.store.leases.try_take, "test.other")
        assert other is not None
        a.store.leases.release("test.job", handle)
        taken = await trio.to_thread.run_sync(b.store.leases.try_take, "test.job")
        assert taken is not None
        b.store.leases.release("test.job", taken)
        b.store.leases.release("test.other", other)
    finally:
        a.store.close()
        b.store.close()


async def test_the_job_runs_once_and_moves_when_its_holder_stops(tmp_path: Path) -> None:
    a, b = two_hosts(tmp_path)
    running: list[str] = []

    async def job(who: str) -> None:
        running.append(who)
        await trio.sleep_forever()

    async def only(*expected: str) -> bool:
        return running == list(expected)

    try:
        async with trio.open_nursery() as nursery:
            stop_a = trio.CancelScope()

            async def run_a() -> None:
                with stop_a:
                    await a.store.run_leased("test.job", job, "a")

            nursery.start_soon(run_a)
            await eventually(lambda: only("a"))
            nursery.start_soon(b.store.run_leased, "test.job", job, "b")
            await trio.sleep(0.5)  # ten of b's attempts
            assert running == ["a"]
            stop_a.cancel()
            await eventually(lambda: only("a", "b"))
            nursery.cancel_scope.cancel()
    finally:
        a.store.close()
        b.store.close()


async def test_a_job_that_ends_gives_its_lease_up(tmp_path: Path) -> None:
    a, b = two_hosts(tmp_path)
    done: list[str] = []

    async def job(who: str) -> None:
        done.append(who)

    try:
        await a.store.run_leased("test.once", job, "a")
        with trio.fail_after(5):
            await b.store.run_leased("test.once", job, "b")
        assert done == ["a", "b"]
    finally:
        a.store.close()
        b.store.close()


@pytest.mark.backend("postgresql")
async def test_a_holder_that_loses_its_connection_stops_its_job(tmp_path: Path) -> None:
    """The server ends the holder's session (as when its node dies or is cut off): its
    job is cancelled and runs again in one place, the other host's or its own again.
    (The server frees the lock at once, so the other may start before the holder has
    seen its loss: they overlap by at most a poll interval.)"""
    a, b = two_hosts(tmp_path)
    events: list[str] = []

    async def job(who: str) -> None:
        events.append(f"{who} started")
        try:
            await trio.sleep_forever()
        finally:
            events.append(f"{who} stopped")

    async def started(count: int) -> bool:
        return sum(e.endswith("started") for e in events) == count

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(a.store.run_leased, "test.job", job, "a")
            await eventually(lambda: started(1))
            nursery.start_soon(b.store.run_leased, "test.job", job, "b")
            await trio.sleep(0.3)
            admin = a.store.connect()
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = "
                    "'advisory' AND classid = ? AND granted",
                    [LEASE_SPACE],
                )
            finally:
                admin.conn.raw.close()
            await eventually(lambda: started(2))

            async def a_stopped() -> bool:
                return "a stopped" in events

            await eventually(a_stopped)
            await trio.sleep(0.3)
            assert len(events) == 3, events  # one runs it again, the other waits
            nursery.cancel_scope.cancel()
    finally:
        a.store.close()
        b.store.close()


# -- two server processes on one store ------------------------------------------------------

TAKEN = re.compile(r"lease (\S+) taken \(pid (\d+)\)")


def holders(logs: list[Path]) -> dict[str, list[int]]:
    """{lease: [pids that logged taking it, in the order of the logs]}."""
    found: dict[str, list[int]] = {}
    for log in logs:
        for name, pid in TAKEN.findall(log.read_text(errors="replace")):
            found.setdefault(name, []).append(int(pid))
    return found


def wait_for(check, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_two_server_processes_run_each_job_once(tmp_path: Path, storage_backend: str) -> None:
    # With every default plugin, whose jobs (outbound mail, alerts) are leased too.
    config = write_config(tmp_path)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    servers = [ServerProcess(config, "") for _ in logs]
    try:
        for server, log in zip(servers, logs, strict=True):
            server.spawn(log)
            # (One after the other: the second finds the first's leases taken.)
            server.wait_ready()
        procs = [s.proc for s in servers]
        pids = [p.pid for p in procs]
        leases = ["host.push-delivery", "host.blob-sweeper", "host.change-compaction",
                  "mail.outbound", "calendars.alerts"]  # fmt: skip
        if storage_backend == "sqlite":  # (FTS5's segments: PostgreSQL has no such job)
            leases.append("mail.index-merge")
        wait_for(lambda: all(name in holders(logs) for name in leases))
        time.sleep(1.0)  # longer than a poll of the waiting process would need
        found = holders(logs)
        for name in leases:
            assert found[name] == [pids[0]], (name, found)
        servers[0].kill()
        wait_for(lambda: all(len(holders(logs).get(n, [])) == 2 for n in leases))
        for name in leases:
            assert holders(logs)[name] == pids, name
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=20) == 0
    finally:
        for server in servers:
            server.stop()
