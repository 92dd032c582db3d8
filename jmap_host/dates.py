"""JMAP dates (RFC 8620 §1.4): parsing every RFC 3339 form, the canonical text, instants.

``Date`` is an RFC 3339 ``date-time``; ``UTCDate`` one whose offset is ``Z``.  What is
accepted is what RFC 3339 §5.6 allows, liberally: a fraction of a second of any length,
trailing zeros included (``.130Z``, ``.50Z``, ``.000Z``), and lower-case ``t`` and ``z``
(RFC 3339 §5.6's note).  What is sent back is canonical, as §1.4 asks of a server: upper
case, and the fraction without its trailing zeros, left out when zero.

Dates are compared and sorted as instants, never as text.  ``instant_key`` is the text
the store sorts and compares by: the instant in UTC, ``YYYY-MM-DDTHH:MM:SS`` and then the
canonical fraction, if any, without the ``Z``.  Text order of keys is time order: the
fixed-width part sorts first, an absent fraction (the whole second) before any fraction
(a prefix sorts first), and fractions without trailing zeros compare digit by digit as
decimals do.  The fraction keeps every digit given: no precision is lost to a float.

Written by hand, not with ``datetime.fromisoformat``: that takes years 1-9999 only, at
most six fraction digits, and (since 3.11) forms RFC 3339 does not allow.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import NamedTuple

# RFC 3339 §5.6 date-time; ASCII digits only ([0-9], not \d, which matches other scripts').
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class ParsedDate(NamedTuple):
    """A valid date-time: its canonical text and its instant key (see the module)."""

    text: str
    key: str
    utc: bool  # the offset is Z (a UTCDate)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def parse(value: object) -> ParsedDate | None:
    """The date-time ``value`` as canonical text and instant key, or None when it is not
    an RFC 3339 date-time (a string, every field in range, the instant in years 0-9999)."""
    if not isinstance(value, str):
        return None
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = (m.group(7) or "").rstrip("0")
    offset = m.group(8).upper()
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 60:
        return None
    if not 1 <= day <= (29 if month == 2 and _leap(year) else _DAYS[month - 1]):
        return None
    if second == 60 and minute != 59:
        return None  # a leap second ends a minute (RFC 3339 §5.7)
    shift = 0
    if offset != "Z":
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            return None
        shift = (off_h * 60 + off_m) * (1 if offset[0] == "+" else -1)
    frac = "." + fraction if fraction else ""
    text = f"{value[:10]}T{value[11:19]}{frac}{offset}"
    # The instant in UTC; a leap second counts as the first second of the next minute.
    seconds = (
        _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - shift * 60
    )
    days, rest = divmod(seconds, 86400)
    y, mo, d = _civil_from_days(days)
    if not 0 <= y <= 9999:
        return None
    h, rest = divmod(rest, 3600)
    mi, s = divmod(rest, 60)
    key = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}"
    return ParsedDate(text, key, offset == "Z")


def is_utcdate(value: object) -> bool:
    """Is ``value`` a UTCDate (an RFC 3339 date-time with the offset Z)?"""
    parsed = parse(value)
    return parsed is not None and parsed.utc


def is_date(value: object) -> bool:
    """Is ``value`` a Date (an RFC 3339 date-time with any offset)?"""
    return parse(value) is not None


def canonical(value: str) -> str:
    """The canonical text of a valid Date or UTCDate (the value itself when invalid)."""
    parsed = parse(value)
    return value if parsed is None else parsed.text


def instant_key(value: str | None) -> str | None:
    """The instant key of a Date or UTCDate (see the module); None for None.  A value
    that is not a date-time (none is stored, but a row may predate a check) keys as its
    own text, so it still sorts somewhere, stably."""
    if value is None:
        return None
    parsed = parse(value)
    return value if parsed is None else parsed.key


def epoch(value: str) -> float:
    """Seconds since 1970 of a valid Date or UTCDate (a float: for schedules and expiry
    times, not for ordering, which instant_key does exactly)."""
    parsed = parse(value)
    if parsed is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    date, _, clock = parsed.key.partition("T")
    y, mo, d = (int(p) for p in date.split("-"))
    h, mi, s = clock[:2], clock[3:5], clock[6:]
    return _days_from_civil(y, mo, d) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)


def utcdate(seconds: float | None = None, *, fraction: bool = False) -> str:
    """The UTCDate of ``seconds`` since 1970 (default: now), to the second, or to the
    millisecond with ``fraction`` (trailing zeros dropped, as §1.4 asks)."""
    if seconds is None:
        seconds = time.time()
    whole = int(seconds // 1)
    days, rest = divmod(whole, 86400)
    y, mo, d = _civil_from_days(days)
    h, rest = divmod(rest, 3600)
    mi, s = divmod(rest, 60)
    frac = ""
    if fraction:
        millis = round((seconds - whole) * 1000)
        if millis >= 1000:
            return utcdate(whole + 1, fraction=fraction)
        frac = f".{millis:03d}".rstrip("0").rstrip(".")
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}Z"


def to_datetime(value: str) -> datetime:
    """A valid Date or UTCDate as an aware ``datetime`` in its own offset (the fraction
    cut to microseconds, a leap second to :59.999999; years 1-9999, as datetime can)."""
    parsed = parse(value)
    if parsed is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    text = parsed.text
    offset = text[-1:] if text.endswith("Z") else text[-6:]
    clock, _, fraction = text[: len(text) - len(offset)].partition(".")
    micros = int((fraction + "000000")[:6])
    if clock.endswith(":60"):
        clock, micros = clock[:-2] + "59", 999_999
    zone = UTC
    if offset != "Z":
        minutes = int(offset[1:3]) * 60 + int(offset[4:6])
        zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    naive = datetime.strptime(clock, "%Y-%m-%dT%H:%M:%S")
    return naive.replace(microsecond=micros, tzinfo=zone)
