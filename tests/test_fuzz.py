"""Fuzzing the HTTP surface: structured JMAP requests, raw bodies, raw headers, upload and
download parameters, all against one real `jmap-host run` on 127.0.0.1.  Whatever comes in,
the answer is an HTTP response below 500 (RFC 8620 §3.6: request-level errors are 4xx
problem documents, method-level ones are in a 200), the connection is never dropped
without one, the server log holds no traceback, and the server still serves afterwards.

Bounded for CI: ``JMAP_HOST_FUZZ_EXAMPLES`` examples per test (default 120), with a fixed
seed, so a run takes seconds and finds the same things every time.  The long mode, for a
benchmarks-like run, draws fresh examples each time:

    JMAP_HOST_FUZZ_EXAMPLES=5000 JMAP_HOST_FUZZ_RANDOM=1 \
        .venv/bin/python -m pytest tests/test_fuzz.py

``JMAP_HOST_FUZZ_DEBUG=1`` checks the server log after every example, to find which input
logged a traceback (slower).

PushSubscription/set is left out: a fuzzed push URL on a public host would make the server
connect to it, and no test may reach an address but 127.0.0.1 (its SSRF guard has its own
tests in test_ssrf.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jmap_host
from jmap_host.testing import BASE_CONFIG, write_config

EXAMPLES = int(os.environ.get("JMAP_HOST_FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # (nothing written into the checkout)
    derandomize=not os.environ.get("JMAP_HOST_FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
)
CORE = "urn:ietf:params:jmap:core"
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'  # (the opt-in one fuzzed too)
AUTH = "Basic " + base64.b64encode(b"alice:alice-password").decode()
LEFT_OUT = {"PushSubscription/set"}  # see the module docstring


class Server:
    """`jmap-host run` in a subprocess, its log in a file."""

    def __init__(self, tmp: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        base = BASE_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{self.port}")
        # (The fuzzer's bad credentials would otherwise have 127.0.0.1 throttled: 429.)
        extra = EXAMPLE_ON + "[authentication]\nmax-failures = 1000000\n"
        self.config = write_config(tmp, extra, base=base)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jmap_host", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while "Ctrl+C" not in self.log.read_text(errors="replace"):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text()
            time.sleep(0.02)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("fuzz"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def world(server) -> dict[str, Any]:
    """What real ids the fuzzer may use: the accounts, a Mailbox, an Email, its blob."""
    host = jmap_host.load_host(server.config)
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}) as client:
        session = client.get("/.well-known/jmap").json()
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        raw = b"From: a@example.org\r\nSubject: fuzz\r\n\r\nbody\r\n"
        blob = client.post(f"/jmap/upload/{account}/", content=raw).json()["blobId"]
        using = [CORE, "urn:ietf:params:jmap:mail"]
        boxes = client.post(
            "/jmap/api",
            json={"using": using, "methodCalls": [["Mailbox/get", {"accountId": account}, "0"]]},
        ).json()["methodResponses"][0][1]["list"]
        imported = client.post(
            "/jmap/api",
            json={
                "using": using,
                "methodCalls": [
                    [
                        "Email/import",
                        {
                            "accountId": account,
                            "emails": {"e": {"blobId": blob, "mailboxIds": {boxes[0]["id"]: True}}},
                        },
                        "0",
                    ]
                ],
            },
        ).json()["methodResponses"][0][1]["created"]["e"]
    return {
        "capabilities": list(session["capabilities"]),
        "methods": sorted(set(host.methods) - LEFT_OUT),
        "accounts": list(session["accounts"]),
        "ids": [boxes[0]["id"], imported["id"], imported["threadId"]],
        "blobs": [blob, imported["blobId"]],
    }


# -- strategies ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "2026-01-02T03:04:05.130Z",
            "2026-01-02T03:04:05+05:00",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "²",
            "#c1",
            "$seen",
            "",
            "x" * 300,
            "*",
            "i;unicode-casemap",
        ]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
ARGUMENTS = [
    "accountId", "ids", "properties", "sinceState", "maxChanges", "create", "update",
    "destroy", "ifInState", "filter", "sort", "position", "anchor", "anchorOffset", "limit",
    "calculateTotal", "collapseThreads", "sinceQueryState", "upToId", "fromAccountId",
    "emails", "blobIds", "emailIds", "bodyProperties", "fetchTextBodyValues",
    "fetchAllBodyValues", "maxBodyValueBytes", "onSuccessDestroyOriginal", "names",
    "onDestroyRemoveEmails", "onSuccessUpdateEmail", "onSuccessDestroyEmail",
]  # fmt: skip
FILTER_NAMES = [
    "inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize", "text",
    "from", "to", "subject", "body", "header", "hasKeyword", "notKeyword", "hasAttachment",
    "allInThreadHaveKeyword", "someInThreadHaveKeyword", "role", "parentId", "name", "done",
    "tag", "undoStatus", "emailIds", "threadIds",
]  # fmt: skip
filters = st.recursive(
    st.dictionaries(st.sampled_from(FILTER_NAMES), json_values, max_size=3),
    lambda inner: st.fixed_dictionaries(
        {
            "operator": st.sampled_from(["AND", "OR", "NOT", "XOR"]),
            "conditions": st.lists(inner, max_size=4),
        }
    ),
    max_leaves=12,
)
comparators = st.fixed_dictionaries(
    {
        "property": st.sampled_from(
            ["receivedAt", "sentAt", "size", "subject", "from", "title", "name", "x"]
        )
    },
    optional={
        "isAscending": st.booleans() | st.integers(),
        "collation": st.sampled_from(["i;octet", "i;ascii-casemap", "nope"]),
        "keyword": st.text(max_size=5),
    },
)


@st.composite
def method_calls(draw: Any, world: dict[str, Any]) -> list[Any]:
    ids = st.sampled_from(world["ids"] + world["blobs"]) | st.text(max_size=8)
    objects = st.dictionaries(st.text(max_size=12), json_values, max_size=4)
    special = {
        "accountId": st.sampled_from(world["accounts"]) | json_values,
        "fromAccountId": st.sampled_from(world["accounts"]) | json_values,
        "ids": st.none() | st.lists(ids, max_size=4) | json_values,
        "filter": filters | json_values,
        "sort": st.lists(comparators, max_size=4) | json_values,
        "create": st.dictionaries(st.text(max_size=4), objects, max_size=3),
        "update": st.dictionaries(ids, objects, max_size=3),
        "destroy": st.lists(ids, max_size=3),
    }  # fmt: skip
    calls = []
    for i in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(st.sampled_from(world["methods"]) | st.text(max_size=12))
        args: dict[str, Any] = {"accountId": world["accounts"][0]}
        for key in draw(st.lists(st.sampled_from(ARGUMENTS), max_size=5, unique=True)):
            args[key] = draw(special.get(key, json_values))
        if draw(st.booleans()):  # a result reference (RFC 8620 §3.7), good or bad
            args["#ids"] = {
                "resultOf": draw(st.sampled_from(["c0", "c1", "nope"])),
                "name": draw(st.sampled_from([*world["methods"], "x"])),
                "path": draw(st.sampled_from(["/ids", "/list/*/id", "/*", "", "/ids/-1", "~"])),
            }
        calls.append([name, args, f"c{i}"])
    return calls


def request_line_safe(text: str) -> str:
    return quote(text, safe="/")


# -- the checks ------------------------------------------------------------------------------


def raw_exchange(server: Server, request: bytes) -> int:
    """Send ``request`` as it is on a new connection; the status of the answer, which
    must come (a dropped connection fails)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, f"connection closed without an answer to {request[:300]!r}"
            data += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1))


def check(status: int, what: Any, server: Server) -> None:
    assert status < 500, (status, what, server.text()[-3000:])
    if os.environ.get("JMAP_HOST_FUZZ_DEBUG"):  # (to find which input logged a traceback)
        time.sleep(0.05)
        assert "Traceback" not in server.text(), what


@FUZZ
@given(data=st.data())
def test_structured_jmap_requests(server, world, data):
    using = data.draw(
        st.lists(st.sampled_from(world["capabilities"]) | st.text(max_size=10), max_size=4)
        | st.just(world["capabilities"])
    )
    body: Any = {"using": using, "methodCalls": data.draw(method_calls(world))}
    if data.draw(st.booleans()):
        body["createdIds"] = data.draw(json_values)
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}) as client:
        response = client.post("/jmap/api", json=body)
    check(response.status_code, body, server)
    if response.status_code == 200:
        responses = response.json()["methodResponses"]
        assert all(r[0] != "error" or r[1]["type"] != "serverFail" for r in responses), (
            body,
            responses,
        )


@FUZZ
@given(
    body=st.binary(max_size=3000)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.text(max_size=200).map(str.encode),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=latin-1"]
    ),
)  # fmt: skip
def test_raw_api_bodies(server, body, content_type):
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}) as client:
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post("/jmap/api", content=body, headers=headers)
    check(response.status_code, body, server)


header_names = st.sampled_from(
    [b"Content-Type", b"Content-Length", b"Range", b"If-Range", b"Authorization", b"Host",
     b"Last-Event-ID", b"X-Forwarded-For", b"Origin", b"Accept", b"Transfer-Encoding",
     b"Expect", b"Connection", b"X-Weird"]
)  # fmt: skip
header_values = st.binary(max_size=60) | st.sampled_from(
    [b"\xb2", "²".encode(), "٣".encode(), b"bytes=0-" + b"9" * 30, b"[" * 200, b"-1",
     b"Basic " + base64.b64encode("älice:pässword".encode()), b"Bearer \x00", b"chunked",
     b"100-continue", "text/plain; x=€".encode()]
)  # fmt: skip


@FUZZ
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"G\x00T"]),
    path=st.sampled_from([b"/", b"/.well-known/jmap", b"/jmap/session", b"/jmap/api",
                          b"/jmap/eventsource/?types=*&closeafter=state&ping=0", b"/jmap/ws",
                          b"/jmap/upload/x/", b"/nope", b"/%ff%fe", b"/jmap/download/a/b/c"]),
    headers=st.lists(st.tuples(header_names, header_values), max_size=5),
    body=st.binary(max_size=200),
)  # fmt: skip
def test_raw_headers(server, method, path, headers, body):
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
    names = {n.lower() for n, _ in headers}
    if b"authorization" not in names:
        lines.append(b"Authorization: " + AUTH.encode())
    lines += [n + b": " + v for n, v in headers]
    if b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    status = raw_exchange(server, request)
    if status == 501 and b"transfer-encoding" in names:
        return  # RFC 9112 §6.1: a transfer coding the server does not know (h11 says so)
    check(status, request, server)


@FUZZ
@given(data=st.data())
def test_upload_and_download_parameters(server, world, data):
    account = data.draw(st.sampled_from(world["accounts"]) | st.text(min_size=1, max_size=10))
    blob = data.draw(st.sampled_from(world["blobs"]) | st.text(min_size=1, max_size=70))
    name = data.draw(
        st.text(min_size=1, max_size=40) | st.sampled_from(["a\r\nb", "\x00", "%0A", "..", "é.txt"])
    )
    media = data.draw(
        st.text(max_size=40) | st.sampled_from(["text/html", "a/b;c=\u20ac", "image/png"])
    )
    query = data.draw(st.sampled_from(["", "?type=" + quote(media), "?type=", "?type=%ff"]))
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}) as client:
        parts = "/".join(quote(p, safe="") for p in (account, blob, name))
        url = f"/jmap/download/{parts}{query}"
        response = client.get(
            url,
            headers={
                "Range": data.draw(st.sampled_from(["", "bytes=0-3", "bytes=-2", "bytes=5-1"]))
            },
        )
        check(response.status_code, url, server)
        if response.status_code in (200, 206):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["content-security-policy"] == "sandbox"
        content = data.draw(st.binary(max_size=500))
        upload = f"/jmap/upload/{quote(account, safe='')}/"
        raw_type = data.draw(st.binary(max_size=40)).replace(b"\r", b"").replace(b"\n", b"")
        head = [
            b"POST " + upload.encode() + b" HTTP/1.1",
            b"Host: x",
            b"Authorization: " + AUTH.encode(),
            b"Content-Type: " + raw_type,
            b"Content-Length: " + str(len(content)).encode(),
            b"Connection: close",
        ]
        status = raw_exchange(server, b"\r\n".join(head) + b"\r\n\r\n" + content)
        check(status, (upload, raw_type), server)


def test_the_server_is_healthy_after_the_fuzzing(server):
    """Runs last in this module: the server answers as before and logged no traceback."""
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}) as client:
        assert client.get("/.well-known/jmap").status_code == 200
        echo = client.post(
            "/jmap/api", json={"using": [CORE], "methodCalls": [["Core/echo", {"x": 1}, "e"]]}
        )
        assert echo.json()["methodResponses"] == [["Core/echo", {"x": 1}, "e"]]
    assert server.proc.poll() is None
    log = server.text()
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]
