"""JMAP calls made inside the server, as one of its users: a plugin's command-line tools
(``jmap-host contacts import``, ``jmap-host calendars import|export``) and background work
acting for a user (an alert acknowledged once its mail is sent) go through the same
engine as a client's request, so every rule, right, change-log entry and push is the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import execute

if TYPE_CHECKING:
    from .directory import Principal
    from .host import Host

LOCAL_URL = "http://localhost"  # (the base URL of what the engine builds: nothing is sent)


class MethodFailed(Exception):
    """A method answered with an error: ``type`` and ``description`` are the RFC 8620
    §3.6.2 error's."""

    def __init__(self, name: str, error: dict[str, Any]):
        self.type = str(error.get("type"))
        self.description = str(error.get("description", ""))
        super().__init__(f"{name}: {self.type}: {self.description}")


class LocalClient:
    """The JMAP API of one ``account`` (default: the principal's own), called in-process
    as ``principal``, with the capabilities ``using``."""

    def __init__(
        self, host: Host, principal: Principal, using: list[str], account: str | None = None
    ):
        self.host, self.principal, self.using = host, principal, using
        self.account = account if account is not None else principal.account_id

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        """One method call's response arguments (MethodFailed for an error response)."""
        call = [name, {"accountId": self.account, **args}, "c"]
        request = {"using": self.using, "methodCalls": [call]}
        response = await execute(self.host, self.principal, request, LOCAL_URL)
        answered, result, _ = response["methodResponses"][0]
        if answered != name:
            raise MethodFailed(name, result)
        return result
