"""Validating the JSON object formats of the JMAP groupware specifications (JSContact,
RFC 9553; JSCalendar, draft-ietf-calext-jscalendarbis), whose rules are the same: typed
properties by object type, mandatory ones, ``@type``, sets (``String[Boolean]`` of trues),
maps, enumerations that also take vendor-specific values, unknown properties of the
registered name syntax and vendor-specific ones kept, a name that differs from a known one
only in case refused (RFC 9553 §1.7, §1.8; jscalendarbis §1.7, §1.8).

A plugin describes its format as a :class:`Schema` — its object types, their mandatory
properties, a checker for its own scalar types (``"LocalDateTime"``, ``"Pref"``...) and
rules across properties — and calls ``schema.check_top(record, TOP, "Card")``; a wrong value
raises :class:`Invalid` with the JSON Pointer of the first one, which :func:`set_error`
turns into the ``invalidProperties`` SetError naming the top-level property.

Type signatures: a type name (a scalar the plugin's ``scalar`` checks, or an object type of
``types``); ``("map", key type, value type)``; ``("list", item type)``; ``("set", allowed or
None)``; ``("enum", allowed)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .datatype import SetError

ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # RFC 9553 §1.4.1, jscalendarbis §1.5.1
REGISTERED_NAME = re.compile(r"@?[a-z][A-Za-z0-9]*")  # §1.7.2 of both
# The v-extension of §1.8.1: a domain-like prefix, a colon, a name without CTLs, '"', '/'
# or '~'.
_ALNUM = r"A-Za-z0-9\u0080-\U0010ffff"  # (alnum-int: ALPHA, DIGIT, NON-ASCII)
_LABEL = rf"[{_ALNUM}](?:[{_ALNUM}-]*[{_ALNUM}])?"
VENDOR_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}:[^\x00-\x1f\x7f\"/~]+")


class Invalid(ValueError):
    """A value that breaks its format, at ``path`` (a JSON Pointer)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def escape(token: str) -> str:
    """A JSON Pointer reference token (RFC 6901): ``~`` as ``~0``, ``/`` as ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def is_vendor(name: str) -> bool:
    return VENDOR_NAME.fullmatch(name) is not None


def set_error(exc: Invalid) -> SetError:
    """``invalidProperties`` naming the top-level property of the wrong value, the pointer
    and the reason in the description."""
    top = exc.path.split("/")[1].replace("~1", "/").replace("~0", "~")
    return SetError("invalidProperties", str(exc), properties=[top])


@dataclass
class Schema:
    """A JS* format: see the module docstring.

    ``scalar(schema, value, signature, path)`` checks the format's scalar types (raise
    Invalid; an unknown signature is a schema mistake).  ``rules(schema, type_name, value,
    path)`` checks what involves several properties of an object once its properties are
    checked.  ``reserved`` names are never kept; ``known`` adds names outside the types
    (top-level ones) to the case rule.
    """

    name: str  # "JSContact", "JSCalendar": in messages
    types: dict[str, dict[str, Any]]
    scalar: Callable[[Schema, Any, str, str], None]
    mandatory: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: Callable[[Schema, str, dict[str, Any], str], None] | None = None
    reserved: frozenset[str] = frozenset({"extra"})  # (§1.7.3.1 of both)
    known: Iterable[str] = ()

    def __post_init__(self) -> None:
        names = set(self.known) | {n for props in self.types.values() for n in props}
        self._lower = {n.lower(): n for n in names}

    def keepable(self, name: str) -> bool:
        """May ``name`` stand in an object without the schema knowing it?  Vendor-specific
        names, and unknown names of the registered syntax that are no known name in another
        case."""
        if is_vendor(name):
            return True
        if name in self.reserved or REGISTERED_NAME.fullmatch(name) is None:
            return False
        known = self._lower.get(name.lower())
        return known is None or known == name

    def enum(self, value: Any, allowed: set[str], path: str) -> None:
        if not isinstance(value, str):
            raise Invalid(path, "must be a String")
        if value not in allowed and not is_vendor(value):
            raise Invalid(path, f"{value!r} is not one of {', '.join(sorted(allowed))}")

    def check(self, value: Any, signature: Any, path: str) -> None:
        """Check ``value`` against a type signature."""
        if not isinstance(signature, tuple):
            if signature in self.types:
                self.check_object(value, signature, path)
            else:
                self.scalar(self, value, signature, path)
            return
        kind = signature[0]
        if kind == "enum":
            self.enum(value, signature[1], path)
        elif kind == "set":
            if not isinstance(value, dict):
                raise Invalid(path, "must be a set: an object of keys to true")
            for key, flag in value.items():
                if flag is not True:
                    raise Invalid(f"{path}/{escape(key)}", "must be true")
                if signature[1] is not None:
                    self.enum(key, signature[1], f"{path}/{escape(key)}")
        elif kind == "map":
            if not isinstance(value, dict):
                raise Invalid(path, "must be an object")
            for key, item in value.items():
                where = f"{path}/{escape(key)}"
                if signature[1] == "Id" and not ID.fullmatch(key):
                    raise Invalid(where, "a key must be an Id (1-255 of A-Z a-z 0-9 _ -)")
                if signature[1] not in ("Id", "String"):
                    self.scalar(self, key, signature[1], where)  # (the key's own type)
                self.check(item, signature[2], where)
        elif kind == "list":
            if not isinstance(value, list):
                raise Invalid(path, "must be an array")
            for i, item in enumerate(value):
                self.check(item, signature[1], f"{path}/{i}")

    def check_object(self, value: Any, type_name: str, path: str) -> None:
        """An object of one of the types: @type (if given) names it, mandatory properties
        are there, each known property is valid, unknown ones keepable, the rules hold."""
        if not isinstance(value, dict):
            raise Invalid(path, f"must be a {type_name} object")
        if "@type" in value and value["@type"] != type_name:
            raise Invalid(f"{path}/@type", f"must be {type_name!r}")
        for name in self.mandatory.get(type_name, ()):
            if name not in value:
                raise Invalid(f"{path}/{name}", f"is mandatory in a {type_name}")
        self._properties(value, self.types[type_name], path)
        if self.rules is not None:
            self.rules(self, type_name, value, path)

    def check_top(self, record: dict[str, Any], top: dict[str, Any], skip: Iterable[str]) -> None:
        """The top-level object (a Card, an Event): its known properties (null ones are
        unset), unknown ones keepable; ``skip`` the JMAP properties around it."""
        self._properties({k: v for k, v in record.items() if k not in set(skip)}, top, "",
                         allow_null=True)  # fmt: skip

    def _properties(
        self, value: dict[str, Any], schema: dict[str, Any], path: str, allow_null: bool = False
    ) -> None:
        for name, item in value.items():
            where = f"{path}/{escape(name)}"
            if name in schema:
                if item is None and allow_null:
                    continue
                self.check(item, schema[name], where)
            elif not self.keepable(name):
                raise Invalid(where, f"is not a {self.name} property (check its case)")


__all__ = ["ID", "Invalid", "Schema", "escape", "is_vendor", "set_error"]
