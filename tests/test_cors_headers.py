"""Wire-level tests of ``[jmap.http] headers`` (plugin jmap-host-headers) and
``[jmap.http.cors]`` (plugin jmap-host-cors) against a real server.

Specifications:

- RFC 8620 §2 (the Session resource), §2.2 (``/.well-known/jmap``), §3.1 (API requests),
  §3.6.1 (request-level errors as problem documents), §6.1 / §6.2 (upload / download),
  §7.3 (EventSource) and §8.2 (every request is authenticated): together they are the URLs
  a browser client on another origin must reach.
- The Fetch standard, "CORS protocol": a CORS-preflight request (OPTIONS with ``Origin`` and
  ``Access-Control-Request-Method``) is sent WITHOUT credentials, so it must be answered
  2xx before authentication ("CORS-preflight fetch": a response that is not an ok status
  fails the fetch); "HTTP responses" lists the ``Access-Control-*`` headers, says that
  ``*`` in ``Access-Control-Allow-Headers`` does not cover ``Authorization``, and that
  ``Access-Control-Allow-Credentials: true`` cannot be combined with a ``*`` origin;
  "CORS protocol and HTTP caches" asks for ``Vary: Origin`` when the allowed origin
  depends on the request's ``Origin``.
- RFC 9110 §5.1 / §5.5: a field name is a token; a field value never contains CR or LF.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import jmap_host
from jmap_host.testing import api, running_server, write_config

JMAP_HOST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "jmap-host"

PERMISSIVE = """
[jmap.http]
headers = ["Access-Control-Allow-Origin: *",
           "Access-Control-Allow-Methods: POST, GET, HEAD, OPTIONS",
           "Access-Control-Allow-Headers: *"]
"""

CORS = """
[jmap.http.cors]
allowed-origins = ["https://webmail.example.com", "https://*.example.org"]
allowed-methods = ["GET", "POST", "OPTIONS"]
allowed-headers = ["Authorization", "Content-Type", "Accept"]
exposed-headers = ["X-Request-Id", "Retry-After"]
max-age = "10m"
allow-credentials = true
"""

ECHO = [["Core/echo", {"hello": True}, "c1"]]


def cors_headers(response) -> dict[str, str]:
    """Every ``Access-Control-*`` header of a response (lower-case names)."""
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def vary_tokens(response) -> set[str]:
    return {t.strip().lower() for v in response.headers.get_list("vary") for t in v.split(",")}


async def jmap_urls(server) -> dict[str, tuple[str, str]]:
    """{name: (path, method)} for every JMAP URL, the templated ones expanded from alice's
    Session object (RFC 8620 §2: uploadUrl, downloadUrl, eventSourceUrl)."""
    async with server.client("alice") as client:
        response = await client.get("/jmap/session")
        assert response.status_code == 200, response.text
        session = response.json()
    account = session["primaryAccounts"].get("urn:ietf:params:jmap:core") or next(
        iter(session["accounts"])
    )
    base = server.url
    upload = session["uploadUrl"].replace("{accountId}", account)
    download = (
        session["downloadUrl"]
        .replace("{accountId}", account)
        .replace("{blobId}", "Gdeadbeef")
        .replace("{name}", "file.txt")
        .replace("{type}", "text/plain")
    )
    eventsource = (
        session["eventSourceUrl"]
        .replace("{types}", "*")
        .replace("{closeafter}", "no")
        .replace("{ping}", "0")
    )

    def path(url: str) -> str:
        assert url.startswith(base) or url.startswith("/"), url
        return url[len(base):] if url.startswith(base) else url

    return {
        "well-known": ("/.well-known/jmap", "GET"),
        "session": ("/jmap/session", "GET"),
        "api": (path(session["apiUrl"]), "POST"),
        "upload": (path(upload), "POST"),
        "download": (path(download), "GET"),
        "eventsource": (path(eventsource), "GET"),
    }


def preflight_headers(origin: str, method: str, request_headers: str | None) -> dict[str, str]:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    return headers


# --------------------------------------------------------------------------------------------
# [jmap.http] headers
# --------------------------------------------------------------------------------------------

HEADERS = """
[jmap.http]
headers = ["X-Jmap-Test: present", "CACHE-CONTROL: max-age=3600",
           "X-Frame-Options: DENY"]
"""


async def test_configured_headers_on_every_response(tmp_path):
    """Configured headers appear once on every response: the Session (RFC 8620 §2, also at
    §2.2's well-known URL), the API (§3.1), a 401 (§8.2), a 404 and 405 problem (§3.6.1),
    and a bare OPTIONS preflight (Fetch standard, "CORS protocol")."""
    config = write_config(tmp_path, HEADERS)
    async with running_server(config) as server:
        async with server.client() as anon, server.client("alice") as alice:
            responses = {
                "well-known": await alice.get("/.well-known/jmap"),
                "session": await alice.get("/jmap/session"),
                "api": await alice.post(
                    "/jmap/api",
                    json={"using": ["urn:ietf:params:jmap:core"], "methodCalls": ECHO},
                ),
                "401": await anon.get("/jmap/session"),
                "404": await alice.get("/no/such/resource"),
                "405": await alice.get("/jmap/api"),
                "options": await anon.options("/jmap/api"),
                "head": await alice.head("/jmap/session"),
            }
    expected_status = {"well-known": 200, "session": 200, "api": 200, "401": 401, "404": 404,
                       "405": 405, "options": 204, "head": 200}
    for name, response in responses.items():
        assert response.status_code == expected_status[name], (name, response.text)
        assert response.headers.get_list("x-jmap-test") == ["present"], name
        assert response.headers.get_list("x-frame-options") == ["DENY"], name
        assert response.headers.get_list("cache-control") == ["max-age=3600"], name
    # The headers the host itself sends that were not configured are untouched.
    assert responses["401"].headers.get_list("www-authenticate")
    assert responses["session"].headers["content-type"].startswith("application/json")
    assert responses["api"].json()["methodResponses"] == [["Core/echo", {"hello": True}, "c1"]]
    assert "POST" in responses["options"].headers["allow"]


async def test_configured_header_replaces_host_header(tmp_path):
    """A configured header replaces the header of the same name (compared case-insensitively,
    RFC 9110 §5.1) that the host would send: the Session (RFC 8620 §2) and API (§3.1)
    responses normally carry ``Cache-Control: no-cache, no-store, must-revalidate``."""
    async with running_server(write_config(tmp_path)) as server:
        async with server.client("alice") as client:
            default = (await client.get("/jmap/session")).headers.get_list("cache-control")
    assert default == ["no-cache, no-store, must-revalidate"]

    config = write_config(tmp_path, HEADERS)
    async with running_server(config) as server:
        async with server.client("alice") as client:
            session = await client.get("/jmap/session")
            result = await api(client, ECHO)
            api_response = await client.post(
                "/jmap/api", json={"using": ["urn:ietf:params:jmap:core"], "methodCalls": ECHO}
            )
    assert session.headers.get_list("cache-control") == ["max-age=3600"]
    assert api_response.headers.get_list("cache-control") == ["max-age=3600"]
    assert result["methodResponses"][0][0] == "Core/echo"


async def test_no_headers_configured_adds_nothing(tmp_path):
    """Without ``[jmap.http] headers`` (and without ``[jmap.http.cors]``) a response carries
    no ``Access-Control-*`` header, even to a preflight (Fetch standard, "CORS protocol":
    the browser then blocks the cross-origin request)."""
    async with running_server(write_config(tmp_path)) as server:
        async with server.client() as client:
            preflight = await client.options(
                "/jmap/api",
                headers=preflight_headers("https://app.example", "POST", "authorization"),
            )
    assert preflight.status_code == 204
    assert cors_headers(preflight) == {}


# --------------------------------------------------------------------------------------------
# The header-only permissive CORS recipe
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["well-known", "session", "api", "upload", "download", "eventsource"]
)
async def test_permissive_recipe_preflight_before_auth(tmp_path, name):
    """The permissive recipe answers the CORS preflight (Fetch standard, "CORS protocol":
    sent without credentials, must get an ok status) on every JMAP URL (RFC 8620 §2, §2.2,
    §3.1, §6.1, §6.2, §7.3) before authentication (§8.2), and because ``*`` never covers
    ``Authorization`` (Fetch, "HTTP responses"), the headers the browser asked for are
    echoed after the ``*``."""
    async with running_server(write_config(tmp_path, PERMISSIVE)) as server:
        path, method = (await jmap_urls(server))[name]
        async with server.client() as anon:  # no Authorization header
            response = await anon.options(
                path,
                headers=preflight_headers(
                    "https://webmail.example.com", method, "authorization,content-type"
                ),
            )
    assert 200 <= response.status_code < 300, (path, response.status_code, response.text)
    assert "www-authenticate" not in response.headers
    assert response.headers.get_list("access-control-allow-origin") == ["*"]
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {method, "OPTIONS"} <= methods
    assert response.headers.get_list("access-control-allow-headers") == [
        "*, authorization,content-type"
    ]


async def test_permissive_recipe_preflight_without_requested_headers(tmp_path):
    """A preflight that asks for no headers (Fetch standard, "CORS protocol": no
    ``Access-Control-Request-Headers``) gets the configured ``*`` unchanged, and an actual
    (non-OPTIONS) request never gets the echo either."""
    async with running_server(write_config(tmp_path, PERMISSIVE)) as server:
        async with server.client() as anon, server.client("alice") as alice:
            bare = await anon.options(
                "/jmap/session", headers=preflight_headers("https://a.example", "GET", None)
            )
            actual = await alice.get(
                "/jmap/session",
                headers={"Origin": "https://a.example",
                         "Access-Control-Request-Headers": "authorization"},
            )
    assert bare.status_code == 204
    assert bare.headers.get_list("access-control-allow-headers") == ["*"]
    assert actual.status_code == 200
    assert actual.headers.get_list("access-control-allow-headers") == ["*"]


async def test_permissive_recipe_actual_responses(tmp_path):
    """With the permissive recipe the actual Session (RFC 8620 §2) and API (§3.1) responses,
    and the 401 problem (§3.6.1, §8.2), carry ``Access-Control-Allow-Origin: *`` so that a
    page on any origin can read them (Fetch standard, "CORS check")."""
    async with running_server(write_config(tmp_path, PERMISSIVE)) as server:
        origin = {"Origin": "https://webmail.example.com"}
        async with server.client("alice", headers=origin) as alice, \
                server.client(headers=origin) as anon:
            session = await alice.get("/jmap/session")
            result = await alice.post(
                "/jmap/api", json={"using": ["urn:ietf:params:jmap:core"], "methodCalls": ECHO}
            )
            unauthorized = await anon.get("/jmap/session")
    assert session.status_code == 200
    assert session.json()["username"] == "alice"
    assert result.status_code == 200
    assert result.json()["methodResponses"] == [["Core/echo", {"hello": True}, "c1"]]
    assert unauthorized.status_code == 401
    for response in (session, result, unauthorized):
        assert response.headers.get_list("access-control-allow-origin") == ["*"]
        assert response.headers["access-control-allow-methods"] == "POST, GET, HEAD, OPTIONS"


# --------------------------------------------------------------------------------------------
# Bad [jmap.http] headers configuration
# --------------------------------------------------------------------------------------------

BAD_HEADERS = [
    pytest.param("X-A: b\r\nX-Injected: 1", "contains CR, LF or NUL", id="crlf"),
    pytest.param("X-A: b\rc", "contains CR, LF or NUL", id="cr"),
    pytest.param("X-A: b\nc", "contains CR, LF or NUL", id="lf"),
    pytest.param("Bad Name: x", "is not a valid header name", id="space-in-name"),
    pytest.param("X-Ümlaut: x", "is not a valid header name", id="non-token-name"),
    pytest.param("(X): x", "is not a valid header name", id="separator-in-name"),
    pytest.param(": x", "is not a valid header name", id="empty-name"),
    pytest.param("NoColonHere", "has no colon", id="no-colon"),
]


def bad_headers_config(tmp_path: Path, item: str) -> Path:
    # json.dumps writes \r, \n and \uXXXX escapes, which TOML basic strings share.
    return write_config(
        tmp_path, f'[jmap.http]\nheaders = ["X-Good: 1", {json.dumps(item)}]\n'
    )


@pytest.mark.parametrize(("item", "problem"), BAD_HEADERS)
async def test_bad_header_is_config_error(tmp_path, item, problem):
    """A header with CR/LF (RFC 9110 §5.5: never in a field value; header injection), an
    invalid name (§5.1: a token) or no colon is refused when the configuration loads, with
    an error naming the file, the key and the item."""
    path = bad_headers_config(tmp_path, item)
    with pytest.raises(jmap_host.ConfigError) as info:
        jmap_host.load_host(path)
    message = str(info.value)
    assert str(path) in message
    assert "jmap.http.headers" in message
    assert problem in message
    assert "item 1" in message  # the bad one, not the good one before it


@pytest.mark.parametrize(("item", "problem"), BAD_HEADERS)
async def test_bad_header_check_config_cli(tmp_path, item, problem):
    """``jmap-host check-config`` reports the same problem on stderr and exits non-zero, so
    an operator (or CI) catches it before the server runs."""
    path = bad_headers_config(tmp_path, item)
    result = await trio.run_process(
        [str(JMAP_HOST), "check-config", "-c", str(path)],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode != 0, stderr
    assert str(path) in stderr
    assert "jmap.http.headers" in stderr
    assert problem in stderr
    assert "OK" not in result.stdout.decode()


async def test_good_header_check_config_cli(tmp_path):
    """The control case: the permissive recipe checks clean (exit status 0)."""
    path = write_config(tmp_path, PERMISSIVE)
    result = await trio.run_process(
        [str(JMAP_HOST), "check-config", "-c", str(path)],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "OK" in result.stdout.decode()


# --------------------------------------------------------------------------------------------
# First-class CORS: [jmap.http.cors]
# --------------------------------------------------------------------------------------------

ALLOWED = ["https://webmail.example.com", "https://sub.example.org", "https://a.b.example.org"]
NOT_ALLOWED = [
    "https://example.org",              # the wildcard is for subdomains only
    "https://evil-example.org",         # not a subdomain, only a suffix
    "https://sub.example.org.evil.net",  # the allowed name as a prefix
    "http://sub.example.org",           # another scheme is another origin
    "https://sub.example.org:8443",     # another port is another origin
    "https://webmail.example.com.evil.net",
    "http://webmail.example.com",
    "null",                             # opaque origins (sandboxed frames, file:)
]


def assert_allowed_common(response, origin: str) -> None:
    assert response.headers.get_list("access-control-allow-origin") == [origin]
    assert "origin" in vary_tokens(response)
    assert response.headers.get_list("access-control-allow-credentials") == ["true"]


@pytest.mark.parametrize("origin", ALLOWED)
async def test_cors_preflight_allowed_origin(tmp_path, origin):
    """A preflight (Fetch standard, "CORS protocol", sent without credentials) from an
    allowed origin, exact or matched by ``https://*.example.org``, gets its own origin
    echoed, ``Vary: Origin`` ("CORS protocol and HTTP caches"), the configured methods,
    headers, max-age and credentials, with a 2xx status and no authentication, on every
    JMAP URL (RFC 8620 §2, §2.2, §3.1, §6.1, §6.2, §7.3)."""
    async with running_server(write_config(tmp_path, CORS)) as server:
        urls = await jmap_urls(server)
        async with server.client() as anon:
            for name, (path, method) in urls.items():
                response = await anon.options(
                    path, headers=preflight_headers(origin, method, "authorization,content-type")
                )
                assert 200 <= response.status_code < 300, (name, response.status_code)
                assert "www-authenticate" not in response.headers, name
                assert_allowed_common(response, origin)
                assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
                allowed_headers = {
                    h.strip().lower()
                    for h in response.headers["access-control-allow-headers"].split(",")
                }
                assert {"authorization", "content-type", "accept"} <= allowed_headers, name
                assert response.headers["access-control-max-age"] == "600", name


@pytest.mark.parametrize("origin", ALLOWED)
async def test_cors_actual_response_allowed_origin(tmp_path, origin):
    """Actual responses to an allowed origin (the Session, RFC 8620 §2; the API, §3.1; a 401
    problem, §3.6.1) echo the origin with ``Vary: Origin``, credentials and the exposed
    headers (Fetch standard, "HTTP responses")."""
    async with running_server(write_config(tmp_path, CORS)) as server:
        async with server.client("alice", headers={"Origin": origin}) as alice, \
                server.client(headers={"Origin": origin}) as anon:
            session = await alice.get("/jmap/session")
            result = await alice.post(
                "/jmap/api", json={"using": ["urn:ietf:params:jmap:core"], "methodCalls": ECHO}
            )
            unauthorized = await anon.get("/jmap/session")
    assert session.status_code == 200
    assert result.status_code == 200
    assert result.json()["methodResponses"] == [["Core/echo", {"hello": True}, "c1"]]
    assert unauthorized.status_code == 401
    for response in (session, result, unauthorized):
        assert_allowed_common(response, origin)
        assert response.headers["access-control-expose-headers"] == "X-Request-Id, Retry-After"
        # Preflight-only headers do not belong on actual responses.
        assert "access-control-allow-methods" not in response.headers
        assert "access-control-max-age" not in response.headers


@pytest.mark.parametrize("origin", NOT_ALLOWED)
async def test_cors_not_allowed_origin_gets_no_cors_headers(tmp_path, origin):
    """An origin not on the list gets no ``Access-Control-*`` header at all, on the preflight
    or the actual response, so the browser blocks it (Fetch standard, "CORS check").  The
    wildcard ``https://*.example.org`` matches subdomains only, with the same scheme and
    port (an origin is scheme, host and port)."""
    async with running_server(write_config(tmp_path, CORS)) as server:
        async with server.client() as anon, \
                server.client("alice", headers={"Origin": origin}) as alice:
            preflight = await anon.options(
                "/jmap/api", headers=preflight_headers(origin, "POST", "authorization")
            )
            session = await alice.get("/jmap/session")
    assert cors_headers(preflight) == {}
    assert cors_headers(session) == {}
    # CORS is enforced by browsers; the server itself still serves the request.
    assert session.status_code == 200


async def test_cors_no_origin_gets_no_cors_headers(tmp_path):
    """A same-origin or non-browser request (no ``Origin``, Fetch standard, "CORS protocol")
    gets no ``Access-Control-*`` header; OPTIONS without ``Origin`` is not a preflight."""
    async with running_server(write_config(tmp_path, CORS)) as server:
        async with server.client("alice") as alice, server.client() as anon:
            session = await alice.get("/jmap/session")
            options = await anon.options("/jmap/api")
    assert session.status_code == 200
    assert options.status_code == 204
    assert cors_headers(session) == {}
    assert cors_headers(options) == {}


async def test_cors_any_origin_and_star_headers(tmp_path):
    """``allowed-origins = ["*"]`` without credentials answers ``*`` (Fetch standard, "HTTP
    responses"); ``allowed-headers = ["*"]`` echoes the requested headers, because ``*``
    would not cover ``Authorization`` (RFC 8620 §8.2 makes every request carry it)."""
    config = write_config(tmp_path, """
        [jmap.http.cors]
        allowed-origins = ["*"]
        allowed-headers = ["*"]
        """)
    async with running_server(config) as server:
        async with server.client() as anon, \
                server.client("alice", headers={"Origin": "https://any.example"}) as alice:
            preflight = await anon.options(
                "/jmap/api",
                headers=preflight_headers("https://any.example", "POST",
                                          "authorization,content-type"),
            )
            session = await alice.get("/jmap/session")
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-headers"] == "authorization,content-type"
    assert "access-control-allow-credentials" not in preflight.headers
    assert preflight.headers["access-control-max-age"] == "3600"  # the documented default
    assert session.headers["access-control-allow-origin"] == "*"


async def test_cors_credentials_with_star_origin_is_config_error(tmp_path):
    """``Access-Control-Allow-Credentials: true`` with a ``*`` origin is refused by browsers
    (Fetch standard, "CORS protocol and credentials"), so it is a config error naming the
    file, the table and the problem, and ``check-config`` fails."""
    path = write_config(tmp_path, """
        [jmap.http.cors]
        allowed-origins = ["*"]
        allow-credentials = true
        """)
    with pytest.raises(jmap_host.ConfigError) as info:
        jmap_host.load_host(path)
    message = str(info.value)
    assert str(path) in message
    assert "jmap.http.cors" in message
    assert "allow-credentials" in message
    assert '"*"' in message

    result = await trio.run_process(
        [str(JMAP_HOST), "check-config", "-c", str(path)],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    assert result.returncode != 0
    assert "allow-credentials" in result.stderr.decode()


@pytest.mark.parametrize(
    "origin", ["https://webmail.example.com/", "https://webmail.example.com/app", "webmail.com"]
)
async def test_cors_bad_origin_is_config_error(tmp_path, origin):
    """An allowed origin must be an origin (scheme, host, optional port: RFC 6454 §6.1, as
    the ``Origin`` header serializes it); a path or missing scheme would never match."""
    path = write_config(tmp_path, f"""
        [jmap.http.cors]
        allowed-origins = [{json.dumps(origin)}]
        """)
    with pytest.raises(jmap_host.ConfigError) as info:
        jmap_host.load_host(path)
    message = str(info.value)
    assert str(path) in message
    assert "jmap.http.cors.allowed-origins" in message
    assert origin in message


async def test_vary_origin_on_every_response_when_the_answer_depends_on_origin(tmp_path):
    """Fetch standard, "CORS protocol and HTTP caches": when the CORS answer depends on
    Origin, every response says Vary: Origin, also to origins that get no CORS headers, so
    a shared cache cannot hand one origin's response to another."""
    config = write_config(
        tmp_path, '[jmap.http.cors]\nallowed-origins = ["https://webmail.example.org"]\n'
    )
    async with running_server(config) as server, server.client() as client:
        for origin in (None, "https://evil.example.net", "https://webmail.example.org"):
            headers = {"Origin": origin} if origin else {}
            response = await client.get("/jmap/session", headers=headers)
            assert response.status_code == 401
            vary = [t.strip().lower() for t in response.headers.get("vary", "").split(",")]
            assert vary.count("origin") == 1, (origin, response.headers.get("vary"))
