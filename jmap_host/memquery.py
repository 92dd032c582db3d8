"""The standard /get and /query (RFC 8620 §5.1, §5.5) over objects the host computes in
memory rather than reads from a type's table: Quota (from the usage and the limits),
Principal (from the directory).  One implementation of their arguments, errors, filter
operators, sorting and paging, so each such type only says how to test one condition.

Such types are few per account (a handful of quotas, a directory's principals), so the
whole list is built, filtered and sorted on every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .capabilities import Call
from .engine import check_get_size
from .errors import MethodError
from .standard import check_filter, check_sort

# test(object, condition name, value) -> does the object match that condition?
ConditionTest = Callable[[dict[str, Any], str, Any], bool]


def get_answer(
    call: Call, state: str, objects: Iterable[dict[str, Any]], known: Iterable[str]
) -> dict[str, Any]:
    """A /get of ``objects`` (each with an ``id``): ``ids`` (null: all), ``properties``
    (each among ``known``), maxObjectsInGet, ``notFound``, in the order of ``ids``."""
    ids = call.args.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise MethodError("invalidArguments", "ids must be an array of ids or null")
    check_get_size(call, ids)
    properties = call.args.get("properties")
    known = set(known) | {"id"}
    if properties is not None:
        if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise MethodError("invalidArguments", "properties must be an array of strings")
        unknown = [p for p in properties if p not in known]
        if unknown:
            raise MethodError("invalidArguments", f"unknown properties: {', '.join(unknown)}")
    by_id = {o["id"]: o for o in objects}
    wanted = list(by_id) if ids is None else list(dict.fromkeys(ids))
    found = [by_id[i] for i in wanted if i in by_id]
    if properties is not None:
        keep = {"id", *properties}
        found = [{k: v for k, v in o.items() if k in keep} for o in found]
    assert call.account is not None
    return {
        "accountId": call.account.id,
        "state": state,
        "list": found,
        "notFound": [i for i in wanted if i not in by_id],
    }


def matches(obj: dict[str, Any], node: Any, test: ConditionTest, names: set[str]) -> bool:
    """Does ``obj`` match the filter ``node`` (its shape already checked)?  Every condition
    of a FilterCondition must match (§5.5); an unknown one is ``unsupportedFilter``."""
    if node is None:
        return True
    if "operator" in node:
        results = (matches(obj, c, test, names) for c in node["conditions"])
        if node["operator"] == "AND":
            return all(results)
        if node["operator"] == "OR":
            return any(results)
        return not any(results)
    for name, value in node.items():
        if name not in names:
            raise MethodError("unsupportedFilter", f"unknown filter condition {name!r}")
        if not test(obj, name, value):
            return False
    return True


def _check_conditions(node: Any, names: set[str], test: ConditionTest) -> None:
    """Unknown conditions and wrongly typed values fail even when no object is tested."""
    if node is None:
        return
    if "operator" in node:
        for child in node["conditions"]:
            _check_conditions(child, names, test)
        return
    for name, value in node.items():
        if name not in names:
            raise MethodError("unsupportedFilter", f"unknown filter condition {name!r}")
        test({}, name, value)  # raises invalidArguments for a value of the wrong type


def query_answer(
    call: Call,
    state: str,
    objects: list[dict[str, Any]],
    test: ConditionTest,
    names: Iterable[str],
    sort_keys: dict[str, Callable[[dict[str, Any]], Any]],
    default_sort: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A /query over ``objects``: ``filter`` (conditions ``names``, each tested by
    ``test``), ``sort`` (properties of ``sort_keys``, each a key function), ``position``,
    ``anchor``/``anchorOffset``, ``limit``, ``calculateTotal``.  canCalculateChanges is
    false: a /queryChanges of such a type answers cannotCalculateChanges, or nothing
    changed (:func:`query_changes_answer`)."""
    names = set(names)
    filter_ = call.args.get("filter")
    check_filter(None, filter_)  # type: ignore[arg-type]  # (the shape needs no type)
    _check_conditions(filter_, names, test)
    comparators = check_sort(call.args.get("sort")) or [{"property": p} for p in default_sort]
    for comparator in comparators:
        if comparator["property"] not in sort_keys:
            raise MethodError("unsupportedSort", f"cannot sort on {comparator['property']!r}")
    found = [o for o in objects if matches(o, filter_, test, names)]
    found.sort(key=lambda o: o["id"])  # a stable order between calls (§5.5)
    for comparator in reversed(comparators):
        key = sort_keys[comparator["property"]]
        found.sort(key=key, reverse=not comparator.get("isAscending", True))
    ids = [o["id"] for o in found]
    position = _int(call, "position", 0)
    anchor = call.args.get("anchor")
    limit = call.args.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise MethodError("invalidArguments", "limit must be an UnsignedInt")
    if anchor is not None:
        if not isinstance(anchor, str):
            raise MethodError("invalidArguments", "anchor must be an Id")
        if anchor not in ids:
            raise MethodError("anchorNotFound")
        start = max(0, ids.index(anchor) + _int(call, "anchorOffset", 0))
    else:
        start = max(0, len(ids) + position) if position < 0 else position
    page = ids[start:] if limit is None else ids[start : start + limit]
    calculate_total = call.args.get("calculateTotal", False)
    if not isinstance(calculate_total, bool):
        raise MethodError("invalidArguments", "calculateTotal must be a Boolean")
    assert call.account is not None
    out: dict[str, Any] = {
        "accountId": call.account.id,
        "queryState": state,
        "canCalculateChanges": False,
        "position": min(start, len(ids)),
        "ids": page,
    }
    if calculate_total:
        out["total"] = len(ids)
    return out


def _int(call: Call, name: str, default: int) -> int:
    value = call.args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise MethodError("invalidArguments", f"{name} must be an Int")
    return value


def changes_arguments(call: Call) -> tuple[str, int | None]:
    """``sinceState`` and ``maxChanges`` of a /changes (§5.2), checked."""
    since = call.args.get("sinceState")
    if not isinstance(since, str):
        raise MethodError("invalidArguments", "sinceState must be a string")
    max_changes = call.args.get("maxChanges")
    if max_changes is not None and (
        isinstance(max_changes, bool) or not isinstance(max_changes, int) or max_changes < 1
    ):
        raise MethodError("invalidArguments", "maxChanges must be a positive integer")
    return since, max_changes


def changes_answer(call: Call, state: str, why: str) -> dict[str, Any]:
    """A /changes of a type whose state is a digest of what it shows: nothing changed when
    the client has that state, otherwise the server cannot tell what did (§5.2)."""
    since, _ = changes_arguments(call)
    if since != state:
        raise MethodError("cannotCalculateChanges", why)
    assert call.account is not None
    return {
        "accountId": call.account.id,
        "oldState": since,
        "newState": state,
        "hasMoreChanges": False,
        "created": [],
        "updated": [],
        "destroyed": [],
    }


def query_changes_answer(call: Call, state: str, why: str) -> dict[str, Any]:
    """A /queryChanges for :func:`query_answer`'s queries: nothing to add or remove when
    the query state is the client's, otherwise cannotCalculateChanges (§5.6)."""
    since = call.args.get("sinceQueryState")
    if not isinstance(since, str):
        raise MethodError("invalidArguments", "sinceQueryState must be a string")
    if since != state:
        raise MethodError("cannotCalculateChanges", why)
    assert call.account is not None
    out: dict[str, Any] = {
        "accountId": call.account.id,
        "oldQueryState": since,
        "newQueryState": state,
        "removed": [],
        "added": [],
    }
    return out
