"""A small declarative schema for the operator's TOML file.

The host and every plugin describe their keys with the same few types, so that every error
names the file, the dotted key and what is wrong, and so that an unknown key gets a "did you
mean" hint whoever owns the table.  Validation collects every problem in one pass; the
operator fixes the file once, not once per error.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REQUIRED",
    "Bool",
    "Choice",
    "ConfigError",
    "ConfigProblem",
    "Duration",
    "Int",
    "Key",
    "Kind",
    "List",
    "Map",
    "Secret",
    "Str",
    "Table",
    "TableList",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass
class ConfigProblem:
    """One thing wrong with the configuration, at one key."""

    key: str
    message: str

    def render(self, file: str) -> str:
        return f"{file}: {self.key}: {self.message}" if self.key else f"{file}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used.  ``str()`` lists every problem, one per line."""

    def __init__(self, file: str, problems: list[ConfigProblem]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.render(file) for p in problems))


class Invalid(ValueError):
    """Raised by a kind or a check: the value at this key is wrong, for this reason."""


@dataclass
class Context:
    """Where validation is: the file (for relative paths) and the problems found so far."""

    file: str
    base_dir: Path
    problems: list[ConfigProblem] = field(default_factory=list)

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(key, message))


def join(path: str, name: str) -> str:
    # TOML quotes names that are not bare keys; do the same so the key can be pasted back.
    part = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


class Kind:
    """A type of value.  ``check`` returns the converted value or raises :class:`Invalid`;
    compound kinds report nested problems to ``ctx`` themselves."""

    description = "a value"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        raise NotImplementedError


class Str(Kind):
    description = "a string"

    def __init__(self, pattern: str | None = None, hint: str = "", non_empty: bool = False):
        self.pattern = re.compile(pattern) if pattern else None
        self.hint = hint
        self.non_empty = non_empty

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {_type_name(value)}")
        if self.non_empty and not value:
            raise Invalid("must not be empty")
        if self.pattern and not self.pattern.fullmatch(value):
            raise Invalid(f"{value!r} is not valid{': ' + self.hint if self.hint else ''}")
        return value


class Secret(Str):
    """A string that may come from the environment or a file, Stalwart style:
    ``"%{env:JMAP_SECRET}%"`` or ``"%{file:/run/secrets/jmap}%"`` (trailing newline dropped)."""

    description = "a secret string (or %{env:NAME}% / %{file:PATH}%)"
    _macro = re.compile(r"%\{(env|file):([^}]*)\}%")

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        value = super().check(value, key, ctx)
        match = self._macro.fullmatch(value.strip())
        if not match:
            return value
        source, name = match.groups()
        if source == "env":
            if name not in os.environ:
                raise Invalid(f"environment variable {name!r} is not set")
            return os.environ[name]
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = ctx.base_dir / path
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise Invalid(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None


class Int(Kind):
    def __init__(self, min: int | None = None, max: int | None = None):
        self.min, self.max = min, max
        bounds = []
        if min is not None:
            bounds.append(f">= {min}")
        if max is not None:
            bounds.append(f"<= {max}")
        self.description = "an integer" + (f" ({', '.join(bounds)})" if bounds else "")

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {_type_name(value)}")
        if self.min is not None and value < self.min:
            raise Invalid(f"must be at least {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise Invalid(f"must be at most {self.max}, got {value}")
        return int(value)


class Bool(Kind):
    description = "true or false"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {_type_name(value)}")
        return bool(value)


class Choice(Kind):
    def __init__(self, *choices: str):
        self.choices = choices
        self.description = "one of " + ", ".join(repr(c) for c in choices)

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if value not in self.choices:
            hint = _did_you_mean(str(value), self.choices)
            raise Invalid(f"{value!r} is not {self.description}{hint}")
        return str(value)


class Duration(Kind):
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds; returns seconds."""

    description = 'a duration ("30s", "5m", "2h", "1d" or seconds)'
    _units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)\s*", value)
            if match:
                return float(match.group(1)) * self._units[match.group(2)]
        raise Invalid(f"{value!r} is not {self.description}")


class Size(Kind):
    """A number of octets: an integer, or ``"500MB"``, ``"10GB"`` (powers of 1000) or
    ``"512MiB"``, ``"10GiB"`` (powers of 1024); returns octets."""

    description = 'a size (octets, or "500MB", "10GiB"...)'
    _units = {
        "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
        "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    }  # fmt: skip

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
            if match and match.group(2).lower() in self._units:
                return int(float(match.group(1)) * self._units[match.group(2).lower()])
        raise Invalid(f"{value!r} is not {self.description}")


class Fraction(Kind):
    """A number from 0 (exclusive) to 1 (inclusive): ``0.8`` is 80 %."""

    description = "a fraction (0 < x <= 1, e.g. 0.8)"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
            return float(value)
        raise Invalid(f"{value!r} is not {self.description}")


class List(Kind):
    def __init__(self, of: Kind, min_items: int = 0):
        self.of = of
        self.min_items = min_items
        self.description = f"a list of {of.description}"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if isinstance(value, str) and isinstance(self.of, Str):
            value = [value]  # a single string where a list is expected is unambiguous
        if not isinstance(value, list):
            raise Invalid(f"expected a list, got {_type_name(value)}")
        if len(value) < self.min_items:
            raise Invalid(f"needs at least {self.min_items} item(s)")
        out = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            try:
                out.append(self.of.check(item, item_key, ctx))
            except Invalid as exc:
                ctx.problem(item_key, str(exc))
        return out


@dataclass
class Key:
    """One key in a table: its name, kind, default (``REQUIRED`` if it has none), a
    one-line description for the reference docs, and an optional extra check that may
    raise :class:`Invalid`."""

    name: str
    kind: Kind
    default: Any = REQUIRED
    doc: str = ""
    check: Callable[[Any], Any] | None = None
    owner: str = "host"


class Table(Kind):
    """A TOML table with known keys.  Unknown keys are errors with a hint."""

    description = "a table"

    def __init__(
        self,
        keys: Iterable[Key] = (),
        validate: Callable[[dict[str, Any], str, Context], None] | None = None,
    ):
        self.keys: dict[str, Key] = {}
        for k in keys:
            self.add(k)
        self.validate = validate
        # Keys that exist only when a plugin that is not active is: named in the error.
        self.inactive: dict[str, str] = {}

    def add(self, key: Key) -> None:
        if key.name in self.keys:
            other = self.keys[key.name].owner
            raise ValueError(f"config key {key.name!r} declared by both {other} and {key.owner}")
        self.keys[key.name] = key

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            raise Invalid(f"expected a table, got {_type_name(value)}")
        out: dict[str, Any] = {}
        for name, _item in value.items():
            if name in self.keys:
                continue
            where = join(key, name)
            if name in self.inactive:
                ctx.problem(
                    where, f"belongs to plugin {self.inactive[name]!r}, which is not active"
                )
            else:
                ctx.problem(where, "unknown key" + _did_you_mean(name, self.keys))
        for name, spec in self.keys.items():
            where = join(key, name)
            if name not in value:
                if spec.default is REQUIRED:
                    ctx.problem(where, f"is required ({spec.kind.description})")
                    continue
                if isinstance(spec.kind, Table) and spec.default == {}:
                    # An absent table: its own defaults, checks and validation apply.
                    out[name] = spec.kind.check({}, where, ctx)
                    continue
                default = _fill_default(spec)
                if spec.check is not None and default is not None:
                    # Defaults go through the same conversion as configured values.
                    replaced = spec.check(default)
                    default = default if replaced is None else replaced
                out[name] = default
                continue
            try:
                checked = spec.kind.check(_plain(value[name]), where, ctx)
                if spec.check is not None:
                    replaced = spec.check(checked)
                    if replaced is not None:
                        checked = replaced
                out[name] = checked
            except Invalid as exc:
                ctx.problem(where, str(exc))
        if self.validate is not None:
            try:
                self.validate(out, key, ctx)
            except Invalid as exc:
                ctx.problem(key, str(exc))
        return out


class Map(Kind):
    """A table of operator-named entries (``[server.listener."jmap"]``), each of one kind."""

    def __init__(self, of: Kind, name_pattern: str = r"[A-Za-z0-9_.-]+", min_items: int = 0):
        self.of = of
        self.min_items = min_items
        self.name_pattern = re.compile(name_pattern)
        self.description = "a table of named tables"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, dict):
            raise Invalid(f"expected a table, got {_type_name(value)}")
        if len(value) < self.min_items:
            raise Invalid(f'needs at least {self.min_items} [{key}."name"] table(s)')
        out = {}
        for name, item in value.items():
            where = join(key, name)
            if not self.name_pattern.fullmatch(name):
                ctx.problem(where, "names may use letters, digits, '_', '-' and '.'")
                continue
            try:
                out[name] = self.of.check(_plain(item), where, ctx)
            except Invalid as exc:
                ctx.problem(where, str(exc))
        return out


class TableList(Kind):
    """An array of tables (``[[directory."memory".principals]]``)."""

    def __init__(self, of: Table):
        self.of = of
        self.description = "an array of tables"

    def check(self, value: Any, key: str, ctx: Context) -> Any:
        if not isinstance(value, list):
            raise Invalid(f"expected an array of tables ([[{key}]]), got {_type_name(value)}")
        out = []
        for i, item in enumerate(value):
            where = f"{key}[{i}]"
            try:
                out.append(self.of.check(_plain(item), where, ctx))
            except Invalid as exc:
                ctx.problem(where, str(exc))
        return out


def _fill_default(spec: Key) -> Any:
    default = spec.default
    if isinstance(spec.kind, Table) and default == {}:
        # Nested tables with all-default keys: fill them, so code can index without .get().
        return {
            k.name: _fill_default(k) for k in spec.kind.keys.values() if k.default is not REQUIRED
        }
    if isinstance(default, list | dict):
        return type(default)(default)
    return default


def _plain(value: Any) -> Any:
    """tomlkit items behave like builtins but are not exactly them; unwrap once."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if unwrap is not None else value


def _type_name(value: Any) -> str:
    value = _plain(value)
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
