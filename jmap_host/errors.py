"""JMAP errors at the three levels of RFC 8620 §3.6.

Handlers raise :class:`MethodError`; the engine turns it into an ``error`` response at the
current point in ``methodResponses`` (§3.6.2).  :class:`RequestError` rejects the whole
request with an RFC 7807 problem document (§3.6.1).
"""

from __future__ import annotations

from typing import Any

ERROR_PREFIX = "urn:ietf:params:jmap:error:"


class MethodError(Exception):
    """A method-level error (RFC 8620 §3.6.2), e.g. ``MethodError("invalidArguments",
    description="ids must be a list")``.  Extra keyword arguments become properties of the
    error object (``MethodError("requestTooLarge")``, ``MethodError("stateMismatch")``)."""

    def __init__(self, type: str, description: str | None = None, **properties: Any):
        super().__init__(description or type)
        self.type = type
        self.properties = dict(properties)
        if description is not None:
            self.properties["description"] = description

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.properties}


class RequestError(Exception):
    """A request-level error (RFC 8620 §3.6.1): an HTTP status and a problem document.

    ``type`` is the short name (``"notJSON"``, ``"limit"``); known JMAP problem types get
    the ``urn:ietf:params:jmap:error:`` prefix.
    """

    JMAP_TYPES = ("unknownCapability", "notJSON", "notRequest", "limit")

    def __init__(self, type: str, detail: str, status: int = 400, **extra: Any):
        super().__init__(detail)
        self.type = ERROR_PREFIX + type if type in self.JMAP_TYPES else type
        self.detail = detail
        self.status = status
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        return {"type": self.type, "status": self.status, "detail": self.detail, **self.extra}
