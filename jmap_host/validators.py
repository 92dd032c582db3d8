"""Property validators that several data types share (``Property(validate=...)``): they
raise ValueError with the reason, which the standard /set reports as invalidProperties."""

from __future__ import annotations

from .directory import time_zone_known

MAX_NAME_OCTETS = 255  # Mailbox, AddressBook, Calendar names (RFC 8621 §2, RFC 9610 §2...)


def check_name(name: str) -> None:
    """A container's name: 1 to MAX_NAME_OCTETS octets of UTF-8, no control characters."""
    if not name or len(name.encode("utf-8")) > MAX_NAME_OCTETS:
        raise ValueError(f"must be 1 to {MAX_NAME_OCTETS} octets of UTF-8")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError("must not contain control characters")


def check_sort_order(value: int) -> None:
    """A ``sortOrder``: 0 <= value < 2^31."""
    if value >= 2**31:
        raise ValueError("must be below 2^31")


def check_time_zone(value: str) -> None:
    """An IANA time zone name (the standard library's zoneinfo)."""
    if not time_zone_known(value):
        raise ValueError("must be an IANA time zone name (e.g. Europe/Paris)")


__all__ = ["MAX_NAME_OCTETS", "check_name", "check_sort_order", "check_time_zone"]
