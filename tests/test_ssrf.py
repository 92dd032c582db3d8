"""The push SSRF guard (RFC 8620 §8.6): push URLs must resolve only to public addresses,
checked when the subscription is created AND again when a push connects, which then goes
to the vetted address itself.  Every test here runs with a stub resolver (no real DNS) and
an instrumented socket layer that counts every connect attempt and lets none leave the
machine: apart from the test client's own connections to the JMAP server, the count must
stay ZERO."""

from __future__ import annotations

import ipaddress
import socket

import pytest
import trio

from jmap_host import webpush
from jmap_host.pushsubscription import push_service
from jmap_host.testing import api, running_server

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

# Names the stub resolver knows; anything else does not resolve.
DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "internal.example": ["10.1.2.3"],
    "metadata.example": ["169.254.169.254"],
    "cgnat.example": ["100.64.7.7"],
    "ula.example": ["fd12:3456:789a::1"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "mixed.example": [PUBLIC_V4, "192.168.0.10"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],
    "127.0.0.1.nip.example": ["127.0.0.1"],
    "public.example": [PUBLIC_V4, PUBLIC_V6],
}

REFUSED = [
    # loopback, every spelling
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/push",
    "https://127.1/",
    "https://2130706433/",
    "https://0177.0.0.1/",
    "https://0x7f.1/",
    "https://0x7f000001/",
    "https://017700000001/",
    "https://127.000.000.001/",
    "https://[::1]/",
    "https://localhost/",
    "https://LOCALHOST./",
    "https://127.0.0.1.nip.example/",
    # private, link-local, CGNAT, special
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.1.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/",
    "https://0.0.0.0/",
    "https://0/",
    "https://198.18.0.1/",
    "https://192.0.2.1/",
    "https://224.0.0.1/",
    "https://240.0.0.1/",
    "https://255.255.255.255/",
    # IPv6 forms
    "https://[::]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::127.0.0.1]/",
    "https://[2002:7f00:1::1]/",
    "https://[2002:a00:1::1]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://[fc00::1]/",
    "https://[fd12:3456::1]/",
    "https://[ff02::1]/",
    "https://[2001:db8::1]/",
    # names resolving to non-public addresses
    "https://internal.example/",
    "https://metadata.example/",
    "https://cgnat.example/",
    "https://ula.example/",
    "https://mapped.example/",
    "https://nat64.example/",
    "https://mixed.example/",
    "https://nxdomain.example/",
    # URL tricks
    "https://good.example@127.0.0.1/",
    "https://public.example@127.0.0.1/",
    "https://127.0.0.1#@public.example/",
    "https://127.0.0.1\\@public.example/",
    "https://%31%32%37.0.0.1/",
    "https://public.example /",
    "http://public.example/",
    "ftp://public.example/",
    "//public.example/",
    "https:///path",
    "https://public.example:0/",
]


class Outbound:
    """Counts connect() attempts at the stdlib socket layer and refuses every one except
    to the addresses a test allows (its own JMAP server); nothing leaves the machine."""

    def __init__(self) -> None:
        self.allowed: set[tuple[str, int]] = set()
        self.attempts: list[tuple] = []
        self.lookups: list[str] = []

    def check(self, address) -> None:
        if isinstance(address, tuple) and (address[0], address[1]) in self.allowed:
            return
        self.attempts.append(address)
        raise ConnectionRefusedError(f"test: outbound connect to {address!r} blocked")


@pytest.fixture
def outbound(monkeypatch):
    guard = Outbound()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self, address):
        guard.check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        guard.check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)

    real_getaddrinfo = socket.getaddrinfo

    def no_real_dns(host, *args, **kwargs):
        try:
            ipaddress.ip_address(host if isinstance(host, str) else host.decode())
        except ValueError:
            guard.lookups.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "test: real DNS is off") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_real_dns)
    set_dns(monkeypatch, lambda name, calls: DNS.get(name))
    return guard


def set_dns(monkeypatch, answer) -> list[str]:
    """Install a stub resolver: ``answer(name, calls so far)`` gives addresses or None."""
    calls: list[str] = []

    async def stub(host, port, family=0, type=0, proto=0, flags=0):
        calls.append(host)
        addresses = answer(host, len([c for c in calls if c == host]))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"stub: {host} does not resolve")
        out = []
        for a in addresses:
            if ":" in a:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)))
        return out

    monkeypatch.setattr(webpush, "getaddrinfo", stub)
    return calls


def server_address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return (host, int(port))


@pytest.mark.parametrize("url", REFUSED)
async def test_vet_refuses(url, outbound):
    with pytest.raises(webpush.TargetRefused):
        await webpush.vet(url)
    with pytest.raises(webpush.TargetRefused):
        await webpush.post(url, b"{}", [], timeout=2)
    assert outbound.attempts == []
    assert outbound.lookups == []


async def test_public_targets_pass_the_check(outbound):
    for url in (
        "https://public.example/push?x=1",
        f"https://{PUBLIC_V4}/",
        f"https://[{PUBLIC_V6}]/",
    ):
        target, addresses = await webpush.vet(url)
        assert addresses and all(webpush.is_public_address(a) for a in addresses)
    assert target.host_header == f"[{PUBLIC_V6}]"
    assert outbound.attempts == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.255.255.255", False),
        ("100.127.255.254", False),
        ("169.254.0.1", False),
        ("172.31.0.1", False),
        ("192.88.99.1", False),
        ("::ffff:8.8.8.8", True),
        ("::ffff:192.168.0.1", False),
        ("::8.8.8.8", False),
        ("2002:808:808::1", False),
        ("64:ff9b::808:808", False),
        ("fec0::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("ff0e::1", False),
        ("::1", False),
        ("::", False),
        ("100::1", False),
    ],
)
def test_is_public_address(address, public):
    assert webpush.is_public_address(ipaddress.ip_address(address)) is public


async def test_creation_refused_for_every_url_with_zero_connections(jmap_config, outbound):
    """The whole table through PushSubscription/set with the default configuration."""
    async with running_server(jmap_config) as server:
        outbound.allowed.add(server_address(server))
        async with server.client("alice") as client:
            create = {
                f"c{i}": {"deviceClientId": "dev", "url": url} for i, url in enumerate(REFUSED)
            }
            result = await api(client, [["PushSubscription/set", {"create": create}, "s"]])
            args = result["methodResponses"][0][1]
            assert args["created"] is None
            for i, url in enumerate(REFUSED):
                error = args["notCreated"][f"c{i}"]
                assert error["type"] == "invalidProperties", url
                assert error["properties"] == ["url"], url
            await trio.sleep(0.2)
    assert outbound.attempts == []
    assert outbound.lookups == []


async def test_dns_rebinding_between_check_and_connect_is_refused(
    jmap_config, outbound, monkeypatch
):
    """The name is public when the subscription is created and private when the
    PushVerification is sent: the push is refused, nothing connects."""
    set_dns(
        monkeypatch,
        lambda name, n: (
            ([PUBLIC_V4] if n == 1 else ["127.0.0.1"])
            if name == "rebind.example"
            else ([PUBLIC_V4] if n == 1 else [PUBLIC_V4, "10.0.0.7"])
            if name == "halfway.example"
            else None
        ),
    )
    async with running_server(jmap_config) as server:
        outbound.allowed.add(server_address(server))
        async with server.client("alice") as client:
            for name in ("rebind.example", "halfway.example"):
                create = {"k": {"deviceClientId": "dev", "url": f"https://{name}/push"}}
                result = await api(client, [["PushSubscription/set", {"create": create}, "s"]])
                assert "k" in result["methodResponses"][0][1]["created"]
            service = push_service(server.host)
            with trio.fail_after(3):
                while service.stats["refused"] < 2:
                    await trio.sleep(0.02)
    assert outbound.attempts == []
    assert outbound.lookups == []


async def test_post_connects_to_the_vetted_address_only(outbound, monkeypatch):
    """A name that turns private on the next lookup is refused by post() before any
    connect; one that stays public is connected to by its vetted IP (and the test socket
    layer blocks it), never by name."""
    set_dns(monkeypatch, lambda name, n: [PUBLIC_V4] if n == 1 else ["127.0.0.1"])
    await webpush.vet("https://flip.example/")
    with pytest.raises(webpush.TargetRefused):
        await webpush.post("https://flip.example/", b"{}", [], timeout=2)
    assert outbound.attempts == []

    set_dns(monkeypatch, lambda name, n: [PUBLIC_V4])
    with pytest.raises(OSError):
        await webpush.post("https://stays.example/", b"{}", [], timeout=2)
    assert outbound.attempts == [(PUBLIC_V4, 443)]  # blocked by the test, by IP


async def test_private_targets_switch_defaults_off_and_allows_http_only_when_on(
    jmap_config, tmp_path, outbound
):
    async with running_server(jmap_config) as server:
        assert server.host.config.data["jmap"]["push"]["allow-private-targets"] is False
    with pytest.raises(webpush.TargetRefused):
        webpush.parse_target("http://public.example/")
    assert webpush.parse_target("http://public.example/", allow_http=True).port == 80
    _, addresses = await webpush.vet("http://127.0.0.1:8/", allow_private=True)
    assert addresses == [ipaddress.ip_address("127.0.0.1")]
    assert outbound.attempts == []
