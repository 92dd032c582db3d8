"""Capabilities and methods: what a capability plugin registers.

A :class:`Capability` names its URN, the object it puts in the session's ``capabilities``,
the per-account object it puts in ``accountCapabilities`` (or None for accounts it does not
serve) and the methods it defines.  The engine dispatches a method only when its
capability is in the request's ``using`` (RFC 8620 §3.3), and checks ``accountId`` for
methods that take one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .datatype import DataType
    from .directory import Principal
    from .host import Host

CORE = "urn:ietf:params:jmap:core"


@dataclass(frozen=True)
class Account:
    """An account the authenticated user can use (RFC 8620 §1.6.2)."""

    id: str
    name: str
    owner: Principal
    is_personal: bool
    is_read_only: bool = False
    # Another principal's account that they share parts of with the user (RFC 9670):
    # every method shows only what the shares allow (jmap_host.sharing).  ``listed``:
    # whether the Session lists it (the user subscribes to something in it, §1.4).
    shared: bool = False
    listed: bool = True


@dataclass
class RequestContext:
    """What one API request shares between its method calls."""

    host: Host
    principal: Principal
    accounts: dict[str, Account]
    account_capabilities: dict[str, dict[str, Any]]
    using: frozenset[str]
    created_ids: dict[str, str]
    base_url: str
    session_state: str


@dataclass
class Call:
    """One method call as its handler sees it: arguments already have result references
    resolved (RFC 8620 §3.7); ``account`` is set for methods that take ``accountId``."""

    name: str
    args: dict[str, Any]
    call_id: str
    request: RequestContext
    account: Account | None = None

    @property
    def host(self) -> Host:
        return self.request.host


Handler = Callable[[Call], Awaitable["dict[str, Any] | list[tuple[str, dict[str, Any]]]"]]


@dataclass
class Method:
    """A JMAP method: the literal wire name (``"Foo/get"``), its handler, and whether it
    takes an ``accountId`` (most do; ``Core/echo`` does not).

    The handler returns the response arguments (the response gets the method's name), or a
    list of ``(response name, arguments)`` pairs for methods that answer more than once.
    It raises :class:`jmap_host.MethodError` for method-level errors.
    """

    name: str
    handler: Handler
    takes_account: bool = True
    writes: bool = False


@dataclass
class Capability:
    """A capability URN with its session data and methods.

    ``session`` is the value under ``capabilities`` in the session (RFC 8620 §2), or a
    function ``session(host, base_url)`` returning it, for values that hold URLs.
    ``account(host, account)`` returns the value under ``accountCapabilities`` for that
    account, or None when the account does not support this capability.  ``primary``
    says whether the user's own account is listed in ``primaryAccounts`` for it.
    """

    urn: str
    session: dict[str, Any] | Callable[[Host, str], dict[str, Any]] = field(default_factory=dict)
    methods: list[Method] = field(default_factory=list)
    account: Callable[[Host, Account], dict[str, Any] | None] | None = None
    primary: bool = True
    # Data types whose standard methods (RFC 8620 §5) the host provides; see DataType.
    datatypes: list[DataType] = field(default_factory=list)
    # principal(host, principal) -> this capability's entry in the Principal's
    # ``capabilities`` (RFC 9670 §2; the calendars capability puts its accountId there), or
    # None.  A function with a third parameter gets the viewer's RequestContext too (what
    # the entry says may depend on who asks: JMAP Calendars §2.1 mayGetAvailability).
    principal: Callable[..., dict[str, Any] | None] | None = None
    # Extra Principal/query FilterCondition properties (RFC 9670 §2.4) served when this
    # capability is in the request's ``using``: {name: test(principal object, value) ->
    # bool}; a test raises MethodError("invalidArguments") for a bad value.
    principal_filters: dict[str, Callable[[dict[str, Any], Any], bool]] = field(
        default_factory=dict
    )
    # Whether the capability is offered in accounts shared with the user (RFC 9670):
    # None decides by its data types (listed when one is shareable, DataType.sharing or
    # shared_through); the host's blob management says True (its methods follow the
    # sharee's access to blobs).
    in_shared_accounts: bool | None = None
    # Push pseudo-types (RFC 8620 §7 types that name no data type): pseudo-type name → the
    # EventSource event name its objects are sent as, e.g. {"CalendarAlert":
    # "calendarAlert"} (draft-ietf-jmap-calendars §6.4).  Clients ask for them in an event
    # source's ``types``, a WebSocketPushEnable's ``dataTypes`` and a PushSubscription's
    # ``types``; the plugin publishes them with ``host.push.publish_object``.
    push_types: dict[str, str] = field(default_factory=dict)
    plugin: str = field(default="", compare=False)
