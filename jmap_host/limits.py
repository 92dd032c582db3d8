"""Per-user concurrency limits (RFC 8620 §2 maxConcurrentRequests, maxConcurrentUpload)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class LimitExceeded(Exception):
    """One more concurrent request than the limit allows."""


class ConcurrencyLimit:
    """At most ``limit`` requests in flight per user; one more is refused at once, not
    queued, because RFC 8620 §3.6.1 makes it a request-level ``limit`` error."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight: dict[str, int] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        if self.in_flight.get(key, 0) >= self.limit:
            raise LimitExceeded
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            self.in_flight[key] -= 1
            if not self.in_flight[key]:
                del self.in_flight[key]
