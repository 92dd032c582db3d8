"""Strict JSON for requests: I-JSON (RFC 7493), as RFC 8620 §1.5 and §8.4 require.

Rejected: invalid UTF-8, duplicate member names, NaN and Infinity, lone surrogates
(``"\\ud800"``), and nesting deeper than the configured limit.  Every rejection is a
:class:`NotIJSON` with a reason the client can act on.
"""

from __future__ import annotations

import json
from typing import Any


class NotIJSON(ValueError):
    """The body is not I-JSON; the message says why."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotIJSON(f"duplicate member name {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise NotIJSON(f"{name} is not allowed in I-JSON")


def loads(body: bytes, max_depth: int) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotIJSON(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except NotIJSON:
        raise
    except json.JSONDecodeError as exc:
        raise NotIJSON(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise NotIJSON(str(exc)) from None
    _check_strings(value, max_depth)
    return value


def _check_strings(value: Any, max_depth: int) -> None:
    # Iterative, so a deep document cannot exhaust the stack here; the parser itself
    # raises RecursionError (caught above) long before Python's limit is a danger.
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item)
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                raise NotIJSON(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for k, v in item.items():
                    _check_string(k)
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item)


def _check_string(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise NotIJSON("string contains a lone surrogate (not I-JSON)") from None
