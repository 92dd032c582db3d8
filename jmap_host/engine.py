"""The API engine: RFC 8620 §3 from request body to response object.

Order of checks for a request (each a request-level error, §3.6.1): content type, size
(``maxSizeRequest``), I-JSON (``notJSON``), Request shape (``notRequest``), capabilities in
``using`` (``unknownCapability``), call count (``maxCallsInRequest``).  Then the calls run
in order (§3.10); each gets its result references resolved (§3.7), is looked up in the
method registry (a dict built at start-up), checked against ``using`` and its
``accountId``, and run.  A method-level error (§3.6.2) never stops the calls after it.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import trio

from .capabilities import Call, RequestContext
from .errors import MethodError, RequestError
from .jsonparse import NotIJSON, loads
from .sharing import CURRENT_SHARE
from .store import StoreUnavailable

if TYPE_CHECKING:
    from .directory import Principal
    from .host import Host

log = logging.getLogger("jmap_host.engine")

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")


def parse_request(body: bytes, content_type: str | None, host: Host) -> dict[str, Any]:
    """Parse and type-check a Request object (§3.3); raise :class:`RequestError`."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise RequestError(
            "notJSON", f"the request must be of type application/json, not {media or 'untyped'}"
        )
    try:
        request = loads(body, host.limits.max_json_depth)
    except NotIJSON as exc:
        raise RequestError("notJSON", f"the request is not I-JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("notRequest", "the request must be a JSON object")
    using = request.get("using")
    calls = request.get("methodCalls")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError("notRequest", "'using' must be an array of capability strings")
    if not isinstance(calls, list):
        raise RequestError("notRequest", "'methodCalls' must be an array of invocations")
    for i, call in enumerate(calls):
        if (
            not isinstance(call, list)
            or len(call) != 3
            or not isinstance(call[0], str)
            or not isinstance(call[1], dict)
            or not isinstance(call[2], str)
        ):
            raise RequestError(
                "notRequest",
                f"methodCalls[{i}] must be [name (string), arguments (object), call id (string)]",
            )
    created = request.get("createdIds")
    if created is not None and (
        not isinstance(created, dict) or not all(isinstance(v, str) for v in created.values())
    ):
        raise RequestError("notRequest", "'createdIds' must be an object of creation id to id")
    unknown = [u for u in using if u not in host.capabilities]
    if unknown:
        raise RequestError(
            "unknownCapability",
            f"the request used capability {unknown[0]!r}, which is not supported by this server",
        )
    if len(calls) > host.limits.max_calls_in_request:
        raise RequestError(
            "limit",
            f"the request has {len(calls)} method calls; at most "
            f"{host.limits.max_calls_in_request} are allowed",
            limit="maxCallsInRequest",
        )
    return request


async def execute(
    host: Host, principal: Principal, parsed: dict[str, Any], base_url: str
) -> dict[str, Any]:
    """Run a parsed Request for ``principal``, whatever transport brought it (HTTP API
    endpoint or WebSocket): the accounts, their capabilities and the session state are
    taken now, once per request."""
    from .session import account_capabilities, accounts_for, build_session

    accounts = await accounts_for(host, principal)
    per_account = {
        a: account_capabilities(host, acc, principal.account_id) for a, acc in accounts.items()
    }
    session = await build_session(host, principal, base_url, accounts, per_account)
    ctx = RequestContext(
        host=host,
        principal=principal,
        accounts=accounts,
        account_capabilities=per_account,
        using=frozenset(parsed["using"]),
        created_ids=dict(parsed.get("createdIds") or {}),
        base_url=base_url,
        session_state=session["state"],
    )
    return await run_request(parsed, ctx)


async def run_request(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """Run the method calls of a parsed request; return the Response object (§3.4)."""
    responses: list[list[Any]] = []
    for name, args, call_id in request["methodCalls"]:
        for response in await _run_call(name, args, call_id, responses, ctx):
            responses.append(response)
    out: dict[str, Any] = {"methodResponses": responses, "sessionState": ctx.session_state}
    if request.get("createdIds") is not None:
        out["createdIds"] = ctx.created_ids
    return out


async def _run_call(
    name: str, args: dict[str, Any], call_id: str, responses: list[list[Any]], ctx: RequestContext
) -> list[list[Any]]:
    host = ctx.host
    try:
        entry = host.methods.get(name)
        if entry is None or entry[1] not in ctx.using:
            # §3.3: a method is only available when its capability is in "using".
            raise MethodError(
                "unknownMethod",
                f"unknown method {name!r}"
                if entry is None
                else f"{name} needs {entry[1]!r} in 'using'",
            )
        method, urn = entry
        args = resolve_references(args, responses)
        call = Call(name=name, args=args, call_id=call_id, request=ctx)
        if method.takes_account:
            account_id = args.get("accountId")
            if not isinstance(account_id, str):
                raise MethodError("invalidArguments", "accountId must be a string")
            account = ctx.accounts.get(account_id)
            if account is None:
                raise MethodError("accountNotFound")
            if urn not in ctx.account_capabilities[account_id]:
                raise MethodError("accountNotSupportedByMethod")
            if method.writes and account.is_read_only:
                raise MethodError("accountReadOnly")
            call.account = account
        # For what runs far from the call (blob visibility): see jmap_host.sharing.
        token = CURRENT_SHARE.set((host, ctx.accounts, ctx.principal))
        try:
            result = await method.handler(call)
        finally:
            CURRENT_SHARE.reset(token)
    except MethodError as exc:
        return [["error", exc.to_json(), call_id]]
    except StoreUnavailable:
        return [["error", {"type": "serverUnavailable"}, call_id]]
    except trio.Cancelled:
        raise
    except Exception as exc:
        log.exception("method %s failed", name)
        return [["error", {"type": "serverFail", "description": type(exc).__name__}, call_id]]
    if isinstance(result, dict):
        return [[name, result, call_id]]
    return [[rname, rargs, call_id] for rname, rargs in result]


def resolve_references(args: dict[str, Any], responses: list[list[Any]]) -> dict[str, Any]:
    """Replace ``#name`` arguments with the values they reference (§3.7)."""
    if not any(k.startswith("#") for k in args):
        return args
    out: dict[str, Any] = {}
    for key, value in args.items():
        if not key.startswith("#"):
            out[key] = value
            continue
        plain = key[1:]
        if plain in args:
            raise MethodError("invalidArguments", f"both {plain!r} and {key!r} given")
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("resultOf"), str)
            or not isinstance(value.get("name"), str)
            or not isinstance(value.get("path"), str)
        ):
            raise MethodError(
                "invalidResultReference", f"{key} must be a ResultReference (resultOf, name, path)"
            )
        response = next((r for r in responses if r[2] == value["resultOf"]), None)
        if response is None:
            raise MethodError(
                "invalidResultReference", f"no response with call id {value['resultOf']!r}"
            )
        if response[0] != value["name"]:
            raise MethodError(
                "invalidResultReference",
                f"response {value['resultOf']!r} is {response[0]!r}, not {value['name']!r}",
            )
        try:
            out[plain] = evaluate_pointer(response[1], value["path"])
        except LookupError as exc:
            raise MethodError("invalidResultReference", f"path {value['path']!r}: {exc}") from None
    return out


def evaluate_pointer(document: Any, path: str) -> Any:
    """JSON Pointer (RFC 6901) with the ``*`` array mapping of RFC 8620 §3.7."""
    if path == "":
        return document
    if not path.startswith("/"):
        raise LookupError("a JSON Pointer must start with '/'")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]
    return _walk(document, tokens)


def _walk(value: Any, tokens: list[str]) -> Any:
    for i, token in enumerate(tokens):
        if isinstance(value, list):
            if token == "*":
                out: list[Any] = []
                for item in value:
                    result = _walk(item, tokens[i + 1 :])
                    if isinstance(result, list):
                        out.extend(result)
                    else:
                        out.append(result)
                return out
            if not re.fullmatch(r"0|[1-9][0-9]*", token) or int(token) >= len(value):
                raise LookupError(f"no item {token!r} in an array of {len(value)}")
            value = value[int(token)]
        elif isinstance(value, dict):
            if token not in value:
                raise LookupError(f"no member {token!r}")
            value = value[token]
        else:
            raise LookupError(f"cannot take {token!r} of a {type(value).__name__}")
    return value


def check_get_size(call: Call, ids: Any) -> None:
    """``requestTooLarge`` when a /get asks for more than ``maxObjectsInGet`` (§5.1)."""
    if isinstance(ids, list) and len(ids) > call.host.limits.max_objects_in_get:
        raise MethodError(
            "requestTooLarge",
            f"at most {call.host.limits.max_objects_in_get} ids may be fetched at once",
        )


def set_arguments(call: Call) -> tuple[Any, Any, Any]:
    """(create, update, destroy) of a /set, each checked for its shape (§5.3: a map of
    creation id to object, a map of id to PatchObject, an array of ids, or null), and
    their number against ``maxObjectsInSet`` (:func:`check_set_size`)."""
    args = call.args
    create, update, destroy = args.get("create"), args.get("update"), args.get("destroy")
    if create is not None and not isinstance(create, dict):
        raise MethodError("invalidArguments", "create must be a map of creation id to object")
    if update is not None and not isinstance(update, dict):
        raise MethodError("invalidArguments", "update must be a map of id to PatchObject")
    if destroy is not None and (
        not isinstance(destroy, list) or not all(isinstance(i, str) for i in destroy)
    ):
        raise MethodError("invalidArguments", "destroy must be an array of ids")
    check_set_size(call)
    return create, update, destroy


def check_set_size(call: Call) -> None:
    """``requestTooLarge`` when a /set has more than ``maxObjectsInSet`` operations (§5.3)."""
    args = call.args
    count = 0
    for key in ("create", "update"):
        if isinstance(args.get(key), dict):
            count += len(args[key])
    if isinstance(args.get("destroy"), list):
        count += len(args["destroy"])
    if count > call.host.limits.max_objects_in_set:
        raise MethodError(
            "requestTooLarge",
            f"at most {call.host.limits.max_objects_in_set} objects may be changed at once",
        )
