"""Serving: `jmap-host run`, several listeners and binds, graceful shutdown on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

import jmap_host
from jmap_host.server import serve
from jmap_host.testing import BASE_CONFIG, basic, write_config

JMAP_HOST = [sys.executable, "-m", "jmap_host"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*JMAP_HOST, "run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 20
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl+C" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_and_stops_cleanly_on_signal(tmp_path, signum):
    """`jmap-host run -c FILE` serves; SIGTERM/SIGINT stop it with exit status 0."""
    port = free_port()
    config = write_config(tmp_path, base=BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc, lines = start(["-c", str(config)], tmp_path)
    try:
        assert any(f"127.0.0.1:{port}" in line for line in lines)
        response = httpx.get(f"http://127.0.0.1:{port}/.well-known/jmap", headers=basic("alice"))
        assert response.status_code == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_run_without_config_uses_the_embedded_demo(tmp_path):
    """With no -c: the embedded default, and it says where it listens and how to log in."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            pytest.skip("port 8080 is taken on this machine")
    proc, lines = start([], tmp_path)
    try:
        text = "".join(lines)
        assert "http://127.0.0.1:8080" in text
        assert "user 'demo', password 'demo'" in text
        session = httpx.get("http://127.0.0.1:8080/.well-known/jmap", auth=("demo", "demo")).json()
        assert session["username"] == "demo"
        assert (tmp_path / "jmap-data" / "jmap-host.db").exists()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_several_listeners_each_with_several_binds(tmp_path):
    """Several listeners, each with several addresses (IPv4 and, where the machine has it,
    IPv6); every URL in the session is built from the listener's public `url`."""
    binds = '["127.0.0.1:0", "127.0.0.2:0"' + (', "[::1]:0"' if ipv6_loopback() else "") + "]"
    extra = f"""
[server.listener."public"]
bind = {binds}
url = "https://mail.example.org/jmap-proxy"
protocol = "jmap"
"""
    host = jmap_host.load_host(write_config(tmp_path, extra))
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: serve(host, shutdown=shutdown, task_status=task_status)
        )
        assert set(urls) == {"jmap", "public"}
        assert len(urls["public"]) == (3 if ipv6_loopback() else 2)
        async with httpx.AsyncClient(headers=basic("alice")) as client:
            for url in urls["public"]:
                session = (await client.get(f"{url}/.well-known/jmap")).json()
                assert session["apiUrl"] == "https://mail.example.org/jmap-proxy/jmap/api"
                assert session["uploadUrl"].startswith("https://mail.example.org/jmap-proxy/")
            local = (await client.get(f"{urls['jmap'][0]}/jmap/session")).json()
            assert local["apiUrl"] == f"{urls['jmap'][0]}/jmap/api"
        shutdown.set()


async def test_requests_in_flight_finish_on_shutdown(tmp_path):
    """A shutdown lets requests in flight finish before the server stops."""
    entered = trio.Event()

    class Slow:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def wait(call):
                entered.set()
                await trio.sleep(0.5)
                return {"done": True}

            return [
                jmap_host.Capability(
                    urn="https://test.example/slow",
                    methods=[jmap_host.Method("Slow/wait", wait, takes_account=False)],
                )
            ]

    host = jmap_host.load_host(write_config(tmp_path), extra_plugins=[("slow", Slow())])
    shutdown = trio.Event()
    results = []
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(
            lambda task_status: serve(host, shutdown=shutdown, task_status=task_status)
        )

        async def call():
            async with httpx.AsyncClient(headers=basic("alice")) as client:
                r = await client.post(
                    f"{urls['jmap'][0]}/jmap/api",
                    json={
                        "using": ["urn:ietf:params:jmap:core", "https://test.example/slow"],
                        "methodCalls": [["Slow/wait", {}, "w"]],
                    },
                )
                results.append(r)

        nursery.start_soon(call)
        await entered.wait()
        shutdown.set()
    assert results[0].status_code == 200
    assert results[0].json()["methodResponses"][0][1] == {"done": True}


def test_address_in_use_is_a_clear_error(tmp_path):
    """A listener that cannot bind stops start-up with one line, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path, base=BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}")
        )
        result = subprocess.run(
            [*JMAP_HOST, "run", "-c", str(config)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 1
    assert "cannot start:" in result.stderr
    assert "Traceback" not in result.stderr


async def test_failing_startup_hook_is_reported_with_the_plugin_name(tmp_path):
    class Failing:
        @jmap_host.hookimpl
        def startup(self, host):
            raise RuntimeError("database unreachable")

    host = jmap_host.load_host(write_config(tmp_path), extra_plugins=[("failing", Failing())])
    expected = pytest.RaisesExc(jmap_host.StartupError, match="'failing' failed in startup")
    with pytest.RaisesGroup(expected, flatten_subgroups=True):  # trio nurseries group errors
        await serve(host)


class FakeLimits:
    """RLIMIT_NOFILE as the kernel would keep it, for raise_nofile_limit."""

    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        import resource

        assert which == resource.RLIMIT_NOFILE
        soft, hard = limits
        if hard != self.limits[1] or (hard != resource.RLIM_INFINITY and soft > hard):
            raise ValueError("not allowed")
        self.limits = limits


@pytest.mark.parametrize(
    ("soft", "hard", "raised", "warned"),
    [
        (1024, 2048, 2048, True),  # raised to the hard limit, still too low: a warning
        (1024, 65536, 11_024, False),  # raised to what 10,000 streams need
        (1024, -1, 11_024, False),  # no hard limit (RLIM_INFINITY)
        (50_000, 65536, 50_000, False),  # already enough: left alone
    ],
)
def test_open_file_limit_is_raised_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    soft: int,
    hard: int,
    raised: int,
    warned: bool,
) -> None:
    """The server raises its soft RLIMIT_NOFILE towards the hard limit (10,000 EventSource
    streams need 10,000 sockets) and says clearly when the limit stays too low."""
    resource = pytest.importorskip("resource")
    from jmap_host import server as server_module

    hard = resource.RLIM_INFINITY if hard == -1 else hard
    fake = FakeLimits(soft, hard)
    monkeypatch.setattr(resource, "getrlimit", fake.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", fake.setrlimit)
    with caplog.at_level("INFO", logger="jmap_host.server"):
        effective, _ = server_module.raise_nofile_limit()
    assert effective == raised
    assert fake.limits == (raised, hard)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert bool(warnings) == warned, caplog.text
    if warned:
        assert "RLIMIT_NOFILE" in warnings[0].getMessage()
        assert "ulimit -Hn" in warnings[0].getMessage()


def test_collector_tuned_for_many_connections() -> None:
    """Start-up objects are frozen out of full collections and the young threshold is
    raised, so bursts over thousands of streams do not trigger collections of everything."""
    import gc

    from jmap_host import server as server_module

    before = gc.get_threshold()
    try:
        server_module.tune_gc()
        assert gc.get_threshold() == server_module.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("closed", "still_open", "collect"),
    [
        (0, 0, False),
        (499, 0, False),  # a few disconnects: not worth a pause
        (500, 0, True),
        (500, 10_000, False),  # 500 gone of 10,000: the pause would walk all the others
        (2_500, 10_000, True),
        (10_000, 0, True),  # everyone left: collect what their connections held
    ],
)
def test_full_collection_after_mass_disconnects(closed, still_open, collect) -> None:
    """The server runs a full garbage collection once many streams have closed, so the
    memory their connections held (reference cycles) comes back without waiting for load."""
    from jmap_host.server import should_collect

    assert should_collect(closed, still_open) is collect


def test_start_up_prints_every_listener_and_its_session_urls(tmp_path):
    """`jmap-host run` names every listener with every address it is bound to, and the
    session URL of each JMAP one: of each address, or its public `url` when it has one."""
    ports = [free_port() for _ in range(3)]
    extra = f"""
[server.listener."second"]
bind = ["127.0.0.1:{ports[1]}", "127.0.0.2:{ports[2]}"]
protocol = "jmap"

[server.listener."public"]
bind = ["127.0.0.1:0"]
protocol = "jmap"
url = "https://mail.example.org"
"""
    base = BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{ports[0]}")
    proc, lines = start(["-c", str(write_config(tmp_path, extra, base=base))], tmp_path)
    try:
        text = "".join(lines)
        for port in ports[:2]:
            assert f"  JMAP session: http://127.0.0.1:{port}/.well-known/jmap\n" in text, text
        assert f"  JMAP session: http://127.0.0.2:{ports[2]}/.well-known/jmap\n" in text, text
        assert "  JMAP session: https://mail.example.org/.well-known/jmap\n" in text, text
        assert text.count("listener '") == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_the_servers_address_in_a_browser_is_a_page_not_a_404(jmap_config):
    """GET / (no login): a small HTML page naming the server and its version, the session
    URL (RFC 8620 §2.2's well-known URL) and how to connect a client; HEAD too."""
    from jmap_host.testing import running_server

    async with running_server(jmap_config) as server, server.client() as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        text = page.text
        assert f"jmap-host {jmap_host.__version__}" in text
        assert f"{server.url}/.well-known/jmap" in text
        assert "mail" in text or "core" in text
        assert "Connect a client" in text
        assert "alice" not in text  # nothing about the users
        assert (await client.head("/")).status_code == 200
        hostile = await client.get("/", headers={"Host": "<script>x</script>"})
        assert "<script>x" not in hostile.text


def test_readme_says_what_is_served_today():
    """The README's opening says what the server serves today, and nothing more: each
    JMAP specification it names in its "What it serves today" paragraph has its
    capability installed, and none of the capabilities still missing is claimed."""
    from importlib.metadata import entry_points

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    opening = readme.split("## ", 1)[0]
    assert opening.index("What it serves today:") < 200  # the first lines
    served = opening.split("What it serves today:", 1)[1]
    installed = {ep.name for ep in entry_points(group="jmap_host")}
    for word, plugin in (("contact", "contacts"), ("calendar", "calendars")):
        if plugin not in installed:
            assert word not in opening.lower(), f"the README's opening claims {word}s"
    for rfc, plugin in (
        ("RFC 8620", "core"), ("RFC 8621", "mail"), ("RFC 8887", "core"),
        ("RFC 9425", "core"), ("RFC 9404", "core"), ("RFC 9670", "core"),
        ("RFC 9610", "contacts"),
    ):  # fmt: skip
        assert rfc in served and plugin in installed
