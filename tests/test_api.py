"""The API endpoint over real HTTP: RFC 8620 §3 (structured data exchange) and §4 (Core/echo)."""

from __future__ import annotations

import json
from typing import Any

import trio

import jmap_host
from jmap_host.testing import api, running_server, write_config

# The example plugin (the sample Note type) is opt-in.
EXAMPLE_ON = '[plugins]\nopt-in = ["example"]\n'

CORE = "urn:ietf:params:jmap:core"
EXAMPLE = "https://jmap-host.org/ext/example"
LIMIT = "urn:ietf:params:jmap:error:limit"


async def post_raw(client: Any, body: bytes | str, content_type: str = "application/json") -> Any:
    if isinstance(body, str):
        body = body.encode()
    return await client.post("/jmap/api", content=body, headers={"Content-Type": content_type})


async def account_of(client: Any) -> str:
    session = (await client.get("/jmap/session")).json()
    return str(session["primaryAccounts"][CORE])


async def test_core_echo_returns_arguments_unchanged(jmap_config):
    """RFC 8620 §4.1: Core/echo returns exactly the arguments given."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        result = await api(client, [["Core/echo", {"hello": True, "high": 5}, "b3ff"]])
        assert result["methodResponses"] == [["Core/echo", {"hello": True, "high": 5}, "b3ff"]]
        session = (await client.get("/jmap/session")).json()
        assert result["sessionState"] == session["state"]  # §3.4
        assert "createdIds" not in result  # §3.4: only returned if given


async def test_created_ids_are_echoed_when_given(jmap_config):
    """RFC 8620 §3.4: createdIds is returned, with every id passed in, when given."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        result = await api(client, [["Core/echo", {}, "c"]], createdIds={"k1": "id1"})
        assert result["createdIds"] == {"k1": "id1"}


async def test_calls_run_in_order_and_errors_do_not_stop_later_calls(jmap_config):
    """RFC 8620 §3.6.2: an error response is inserted at its point; later calls still run."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        result = await api(
            client,
            [["Core/echo", {"n": 1}, "a"], ["Nope/nothing", {}, "b"], ["Core/echo", {"n": 3}, "c"]],
        )
        assert result["methodResponses"] == [
            ["Core/echo", {"n": 1}, "a"],
            [
                "error",
                {"type": "unknownMethod", "description": "unknown method 'Nope/nothing'"},
                "b",
            ],
            ["Core/echo", {"n": 3}, "c"],
        ]


async def test_method_whose_capability_is_not_in_using_is_unknown(jmap_config):
    """RFC 8620 §3.3: the client must opt in to a capability in "using" to call its methods."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        account = await account_of(client)
        call = ["Example/greet", {"accountId": account, "names": ["x"]}, "g"]
        result = await api(client, [call])
        assert result["methodResponses"][0][0] == "error"
        assert result["methodResponses"][0][1]["type"] == "unknownMethod"
        result = await api(client, [call], using=[CORE, EXAMPLE])
        assert result["methodResponses"][0] == [
            "Example/greet",
            {"accountId": account, "greetings": ["Hello, x!"]},
            "g",
        ]


async def test_account_errors(jmap_config):
    """RFC 8620 §3.6.2: accountNotFound for ids the user cannot use, invalidArguments for a
    missing accountId."""
    async with running_server(jmap_config) as server:
        async with server.client("bob") as bob:
            bob_account = await account_of(bob)
        async with server.client("alice") as client:
            using = [CORE, EXAMPLE]
            result = await api(
                client,
                [
                    ["Example/greet", {"accountId": bob_account, "names": []}, "other"],
                    ["Example/greet", {"accountId": "nosuch", "names": []}, "none"],
                    ["Example/greet", {"names": []}, "missing"],
                ],
                using=using,
            )
            types = [r[1]["type"] for r in result["methodResponses"]]
            assert types == ["accountNotFound", "accountNotFound", "invalidArguments"]


async def test_account_not_supported_by_method(tmp_path):
    """RFC 8620 §3.6.2: accountNotSupportedByMethod when the account lacks the capability."""

    class PersonalOnly:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def handler(call):
                return {"accountId": call.account.id}

            return [
                jmap_host.Capability(
                    urn="https://test.example/personal",
                    account=lambda host, account: {} if account.is_personal else None,
                    methods=[jmap_host.Method("Personal/get", handler)],
                )
            ]

    config = write_config(tmp_path, EXAMPLE_ON)
    async with running_server(config, extra_plugins=[("personal", PersonalOnly())]) as server:
        async with server.client("alice") as client:
            session = (await client.get("/jmap/session")).json()
            group = next(a for a, v in session["accounts"].items() if not v["isPersonal"])
            own = session["primaryAccounts"][CORE]
            result = await api(
                client,
                [
                    ["Personal/get", {"accountId": own}, "a"],
                    ["Personal/get", {"accountId": group}, "b"],
                ],
                using=[CORE, "https://test.example/personal"],
            )
            assert result["methodResponses"][0] == ["Personal/get", {"accountId": own}, "a"]
            assert result["methodResponses"][1][1] == {"type": "accountNotSupportedByMethod"}


async def test_result_references_with_star_flatten(tmp_path):
    """RFC 8620 §3.7: "#arg" ResultReference, JSON Pointer with "*" mapping through arrays
    and flattening arrays of arrays."""
    config = write_config(tmp_path, EXAMPLE_ON)
    async with running_server(config) as server, server.client("alice") as client:
        result = await api(
            client,
            [
                ["Core/echo", {"list": [{"ids": ["a", "b"]}, {"ids": ["c"]}], "x~/y": 7}, "t0"],
                [
                    "Core/echo",
                    {"#ids": {"resultOf": "t0", "name": "Core/echo", "path": "/list/*/ids"}},
                    "t1",
                ],
                [
                    "Core/echo",
                    {"#v": {"resultOf": "t0", "name": "Core/echo", "path": "/x~0~1y"}},
                    "t2",
                ],
                [
                    "Core/echo",
                    {"#first": {"resultOf": "t0", "name": "Core/echo", "path": "/list/0"}},
                    "t3",
                ],
            ],
        )
        responses = result["methodResponses"]
        assert responses[1] == ["Core/echo", {"ids": ["a", "b", "c"]}, "t1"]
        assert responses[2] == ["Core/echo", {"v": 7}, "t2"]
        assert responses[3] == ["Core/echo", {"first": {"ids": ["a", "b"]}}, "t3"]


async def test_result_reference_failures(jmap_config):
    """RFC 8620 §3.7: invalidResultReference when resolution fails; invalidArguments when the
    same argument is given in plain and referenced form."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        ref = {"resultOf": "t0", "name": "Core/echo", "path": "/a"}
        result = await api(
            client,
            [
                ["Core/echo", {"a": 1}, "t0"],
                ["Core/echo", {"#x": {**ref, "resultOf": "zz"}}, "no-such-call"],
                ["Core/echo", {"#x": {**ref, "name": "Other/get"}}, "wrong-name"],
                ["Core/echo", {"#x": {**ref, "path": "/missing"}}, "bad-path"],
                ["Core/echo", {"#x": {**ref, "path": "a"}}, "not-a-pointer"],
                ["Core/echo", {"#x": "not an object"}, "not-a-reference"],
                ["Core/echo", {"x": 1, "#x": ref}, "both"],
                ["Nope/x", {"#x": ref}, "unknown-first"],
            ],
        )
        types = {r[2]: r[1].get("type") for r in result["methodResponses"]}
        assert types == {
            "t0": None,
            "no-such-call": "invalidResultReference",
            "wrong-name": "invalidResultReference",
            "bad-path": "invalidResultReference",
            "not-a-pointer": "invalidResultReference",
            "not-a-reference": "invalidResultReference",
            "both": "invalidArguments",
            "unknown-first": "unknownMethod",
        }


async def test_request_level_errors_are_problem_documents(jmap_config):
    """RFC 8620 §3.6.1: notJSON, notRequest and unknownCapability as RFC 7807 problems."""
    cases = [
        (b"{not json", "application/json", "notJSON"),
        (b'{"using":[],"methodCalls":[]}', "text/plain", "notJSON"),
        (b'{"using":[],"methodCalls":[]}', "application/x-www-form-urlencoded", "notJSON"),
        (b"\xff\xfe{}", "application/json", "notJSON"),
        (b"[]", "application/json", "notRequest"),
        (b'{"using":"core","methodCalls":[]}', "application/json", "notRequest"),
        (b'{"using":[],"methodCalls":[["Core/echo",{},1]]}', "application/json", "notRequest"),
        (b'{"using":[],"methodCalls":[["Core/echo",[],"c"]]}', "application/json", "notRequest"),
        (b'{"using":[],"methodCalls":[["Core/echo",{}]]}', "application/json", "notRequest"),
        (b'{"using":[],"methodCalls":{}}', "application/json", "notRequest"),
        (b'{"using":[],"methodCalls":[],"createdIds":[]}', "application/json", "notRequest"),
        (
            b'{"using":["urn:ietf:params:jmap:core","https://x.example/nope"],"methodCalls":[]}',
            "application/json",
            "unknownCapability",
        ),
    ]
    async with running_server(jmap_config) as server, server.client("alice") as client:
        for body, content_type, kind in cases:
            response = await post_raw(client, body, content_type)
            assert response.status_code == 400, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["type"] == f"urn:ietf:params:jmap:error:{kind}", body
            assert problem["status"] == 400
            assert problem["detail"]


async def test_content_type_with_charset_is_accepted(jmap_config):
    """RFC 8620 §3.1: application/json, parameters such as charset allowed."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {}, "c"]]})
        response = await post_raw(client, body, "application/json; charset=utf-8")
        assert response.status_code == 200


async def test_json_edge_cases_are_not_json_never_500(tmp_path):
    """RFC 8620 §1.5 and §8.4: requests must be I-JSON (RFC 7493): no duplicate names, no
    NaN/Infinity, no lone surrogates, bounded nesting."""
    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.request]\nmax-json-depth = 32\n")

    def request(args: str) -> str:
        calls = f'[["Core/echo",{args},"c"]]'
        return f'{{"using":["urn:ietf:params:jmap:core"],"methodCalls":{calls}}}'

    bad = [
        request('{"a":1,"a":2}'),
        '{"using":[],"using":[],"methodCalls":[]}',
        request('{"a":NaN}'),
        request('{"a":Infinity}'),
        request('{"a":-Infinity}'),
        request('{"a":"\\ud800"}'),
        request('{"\\udfff":1}'),
        request('{"a":' + "[" * 40 + "]" * 40 + "}"),
        request('{"a":' + "[" * 100000 + "]" * 100000 + "}"),
        request('{"a":' + '{"b":' * 5000 + "1" + "}" * 5000 + "}"),
        "",
        "\ufeff{}",
    ]
    async with running_server(config) as server, server.client("alice") as client:
        for body in bad:
            response = await post_raw(client, body)
            assert response.status_code == 400, body[:80]
            assert response.json()["type"] == "urn:ietf:params:jmap:error:notJSON", body[:80]
        ok = await post_raw(
            client, request('{"a":' + "[" * 20 + "]" * 20 + ',"e":"\\ud83d\\ude00"}')
        )
        assert ok.status_code == 200
        assert ok.json()["methodResponses"][0][1]["e"] == "\U0001f600"


async def test_max_size_request_is_enforced(tmp_path):
    """RFC 8620 §2 maxSizeRequest, §3.6.1: a larger request is a "limit" problem naming it."""
    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.request]\nmax-size = 2000\n")
    async with running_server(config) as server, server.client("alice") as client:
        session = (await client.get("/jmap/session")).json()
        assert session["capabilities"][CORE]["maxSizeRequest"] == 2000
        body = json.dumps({"using": [CORE], "methodCalls": [["Core/echo", {"p": "x" * 3000}, "c"]]})
        response = await post_raw(client, body)
        assert response.status_code == 400
        assert response.json()["type"] == LIMIT
        assert response.json()["limit"] == "maxSizeRequest"

        # Without a Content-Length (chunked), the limit still holds while reading.
        async def chunks():
            for _ in range(10):
                yield b" " * 500

        response = await client.post(
            "/jmap/api", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["limit"] == "maxSizeRequest"


async def test_max_calls_in_request_is_enforced(tmp_path):
    """RFC 8620 §2 maxCallsInRequest."""
    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.request]\nmax-calls = 3\n")
    async with running_server(config) as server, server.client("alice") as client:
        assert (await client.get("/jmap/session")).json()["capabilities"][CORE][
            "maxCallsInRequest"
        ] == 3
        calls = [["Core/echo", {}, str(i)] for i in range(4)]
        response = await client.post("/jmap/api", json={"using": [CORE], "methodCalls": calls})
        assert response.status_code == 400
        assert response.json()["type"] == LIMIT
        assert response.json()["limit"] == "maxCallsInRequest"
        result = await api(client, calls[:3])
        assert len(result["methodResponses"]) == 3


async def test_max_concurrent_requests_is_enforced(tmp_path):
    """RFC 8620 §2 maxConcurrentRequests: one more request than the limit, at once, is a
    "limit" problem; other users are not affected; the slot frees when a request ends."""
    gate = trio.Event()
    started = trio.Semaphore(0)

    class Slow:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def wait(call):
                started.release()
                await gate.wait()
                return {}

            return [
                jmap_host.Capability(
                    urn="https://test.example/slow",
                    methods=[jmap_host.Method("Slow/wait", wait, takes_account=False)],
                )
            ]

    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.request]\nmax-concurrent = 2\n")
    using = [CORE, "https://test.example/slow"]
    async with running_server(config, extra_plugins=[("slow", Slow())]) as server:
        async with server.client("alice") as client, server.client("bob") as bob:
            results = []

            async def slow_call():
                results.append(await api(client, [["Slow/wait", {}, "s"]], using=using))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_call)
                nursery.start_soon(slow_call)
                await started.acquire()
                await started.acquire()
                response = await client.post(
                    "/jmap/api", json={"using": using, "methodCalls": [["Core/echo", {}, "c"]]}
                )
                assert response.status_code == 429
                assert response.json()["type"] == LIMIT
                assert response.json()["limit"] == "maxConcurrentRequests"
                # The limit is per user: bob is not held back by alice's requests.
                assert (await api(bob, [["Core/echo", {}, "c"]]))["methodResponses"]
                gate.set()
            assert len(results) == 2
            assert (await api(client, [["Core/echo", {}, "c"]]))["methodResponses"]


async def test_max_objects_in_get_is_enforced(tmp_path):
    """RFC 8620 §5.1: requestTooLarge past maxObjectsInGet (the example plugin's method
    uses the host's check, as every /get does)."""
    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.get]\nmax-objects = 3\n")
    async with running_server(config) as server, server.client("alice") as client:
        account = await account_of(client)
        result = await api(
            client,
            [
                ["Example/greet", {"accountId": account, "names": ["a", "b", "c", "d"]}, "big"],
                ["Example/greet", {"accountId": account, "names": ["a", "b", "c"]}, "ok"],
            ],
            using=[CORE, EXAMPLE],
        )
        assert result["methodResponses"][0][1]["type"] == "requestTooLarge"
        assert len(result["methodResponses"][1][1]["greetings"]) == 3


async def test_max_objects_in_set_check(tmp_path):
    """RFC 8620 §5.3: requestTooLarge when create + update + destroy exceed maxObjectsInSet."""

    class Setter:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def set_(call):
                jmap_host.check_set_size(call)
                return {"accountId": call.account.id}

            return [
                jmap_host.Capability(
                    urn="https://test.example/set",
                    methods=[jmap_host.Method("Thing/set", set_, writes=True)],
                )
            ]

    config = write_config(tmp_path, EXAMPLE_ON + "[jmap.protocol.set]\nmax-objects = 10\n")
    async with running_server(config, extra_plugins=[("setter", Setter())]) as server:
        async with server.client("alice") as client:
            account = await account_of(client)
            args = {
                "accountId": account,
                "create": {f"k{i}": {} for i in range(7)},
                "destroy": [f"d{i}" for i in range(4)],
            }
            result = await api(
                client, [["Thing/set", args, "s"]], using=[CORE, "https://test.example/set"]
            )
            assert result["methodResponses"][0][1]["type"] == "requestTooLarge"
            args["destroy"] = args["destroy"][:3]
            result = await api(
                client, [["Thing/set", args, "s"]], using=[CORE, "https://test.example/set"]
            )
            assert result["methodResponses"][0][0] == "Thing/set"


async def test_unexpected_handler_exception_is_server_fail(tmp_path):
    """RFC 8620 §3.6.2 serverFail: an unexpected error becomes a method error, never a 500,
    and no traceback reaches the client."""

    class Broken:
        @jmap_host.hookimpl
        def register_capabilities(self, host):
            async def boom(call):
                raise RuntimeError("secret internals")

            return [
                jmap_host.Capability(
                    urn="https://test.example/broken",
                    methods=[jmap_host.Method("Broken/boom", boom, takes_account=False)],
                )
            ]

    config = write_config(tmp_path, EXAMPLE_ON)
    async with running_server(config, extra_plugins=[("broken", Broken())]) as server:
        async with server.client("alice") as client:
            response = await client.post(
                "/jmap/api",
                json={
                    "using": [CORE, "https://test.example/broken"],
                    "methodCalls": [["Broken/boom", {}, "b"], ["Core/echo", {}, "e"]],
                },
            )
            assert response.status_code == 200
            responses = response.json()["methodResponses"]
            assert responses[0][1]["type"] == "serverFail"
            assert "secret internals" not in response.text
            assert "Traceback" not in response.text
            assert responses[1] == ["Core/echo", {}, "e"]


async def test_http_methods_and_paths(jmap_config):
    """Unsupported HTTP methods get 405 with Allow; unknown paths 404; no 500 anywhere."""
    async with running_server(jmap_config) as server, server.client("alice") as client:
        response = await client.get("/jmap/api")
        assert response.status_code == 405
        assert "POST" in response.headers["allow"]
        for method in ("PUT", "DELETE", "PATCH"):
            response = await client.request(method, "/jmap/session")
            assert response.status_code == 405
            assert "GET" in response.headers["allow"]
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        head = await client.head("/jmap/session")
        assert head.status_code == 200
        assert head.content == b""
        # OPTIONS is answered before authentication (CORS preflight).
        async with server.client() as anonymous:
            response = await anonymous.options("/jmap/api")
            assert response.status_code == 204
            assert "POST" in response.headers["allow"]
