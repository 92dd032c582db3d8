"""Text conditions over folded text kept with each record (``DataType.derived``), as the
groupware specifications define them (RFC 9610 §3.3.1, JMAP Calendars §5.11.1): matched
case-insensitively, quoted phrases as one token (``\\"``, ``\\'`` and ``\\\\`` escapes), the
other tokens separated by white space, every token present.

A type keeps, say, ``derived={"f:email": lambda r: folded(strings(r.get("emails")))}`` and
declares ``FilterCondition("email", "emails", "custom", value_type="String",
sql=condition("contacts_card", "f:email"))``: the query is an ``instr`` over one column, no
JSON is read per record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .objectstore import derived_column, unicode_casemap_key

fold = unicode_casemap_key  # the default collation's folding (i;unicode-casemap)
PHRASE = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|(\S+)')


def tokens(text: str) -> list[str]:
    """Quoted phrases (their escapes undone) and white-space separated words."""
    out = []
    for m in PHRASE.finditer(text):
        quoted = m.group(1) if m.group(1) is not None else m.group(2)
        out.append(re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else m.group(3))
    return [t for t in out if t]


def strings(value: Any, keys: Iterable[str] | None = None) -> list[str]:
    """The strings in a JSON value (not ``@type``'s); with ``keys``, only those properties of
    each object of a map (``strings(emails, ("address", "label"))``)."""
    if keys is not None:
        wanted = tuple(keys)
        if not isinstance(value, dict):
            return []
        return [o[k] for o in value.values() if isinstance(o, dict) for k in wanted
                if isinstance(o.get(k), str)]  # fmt: skip
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k != "@type")
        elif isinstance(item, list):
            stack.extend(item)
    return out


def folded(found: Iterable[str]) -> str:
    """The derived column's text: the strings folded, one per line."""
    return "\n".join(fold(s) for s in found if s)


def condition(
    table: str, derived: str, *, tokenized: bool = True
) -> Callable[[str], tuple[str, list[Any]]]:
    """A FilterCondition's SQL over the derived column ``derived`` of ``table``: every token
    of the value in it (``tokenized``), or the whole value as one substring."""
    column = f"[{table}].[{derived_column(derived)}]"

    def sql(value: str) -> tuple[str, list[Any]]:
        words = tokens(value) if tokenized else [value]
        if not words:
            return "true", []
        return "(" + " AND ".join(f"instr({column}, ?) > 0" for _ in words) + ")", [
            fold(w) for w in words
        ]

    return sql


__all__ = ["condition", "fold", "folded", "strings", "tokens"]
