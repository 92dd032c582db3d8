"""The essential plugin: RFC 8620's ``urn:ietf:params:jmap:core`` capability, ``Core/echo``,
RFC 8887's ``urn:ietf:params:jmap:websocket`` capability and the ``jmap`` listener protocol
(the host's HTTP app)."""

from __future__ import annotations

from typing import Any

from jmap_host import (
    CORE,
    WEBSOCKET,
    Call,
    Capability,
    Host,
    Method,
    Protocol,
    blob_capability,
    blob_copy,
    hookimpl,
    principals_capability,
    push_capabilities,
    push_config_keys,
    push_subscription_methods,
    quota_capability,
    websocket_capability,
)

# RFC 4790 collations the host's standard /query sorts and filters with.
COLLATIONS = ["i;ascii-casemap", "i;octet", "i;unicode-casemap"]


async def core_echo(call: Call) -> dict[str, Any]:
    """RFC 8620 §4: return exactly the arguments given."""
    return call.args


@hookimpl
def register_capabilities(host: Host) -> list[Capability]:
    core = {**host.limits.session_object(), "collationAlgorithms": COLLATIONS}
    return [
        Capability(
            urn=CORE,
            session=core,
            # Blob/copy (RFC 8620 §6.3) takes an accountId, so the core URN appears in every
            # account's accountCapabilities.  That is deliberate: §2 defines
            # accountCapabilities as the capabilities whose methods the account supports, and
            # Blob/copy works with every account; the engine checks accountId against it.
            # The entry repeats the session's core object, limits and all: §2 leaves it
            # open, and a client library reads the account's entry first and falls back to
            # minimum limits when it is {}.
            account=lambda host, account: core,
            methods=[
                Method("Core/echo", core_echo, takes_account=False),
                Method("Blob/copy", blob_copy, takes_account=True, writes=True),
                # RFC 8620 §7.2: per user, no accountId.
                *push_subscription_methods(),
            ],
            primary=False,
        ),
        # RFC 8887 §3: JMAP over WebSocket (the host serves it at /jmap/ws); the URL follows
        # the listener's base URL (http→ws, https→wss).  No methods, so no account lists it.
        Capability(urn=WEBSOCKET, session=websocket_capability, primary=False),
        # RFC 9749: urn:ietf:params:jmap:webpush-vapid, when jmap.push.vapid is set.
        *push_capabilities(host),
        # RFC 9404 blob management and RFC 9425 quotas: host services over every
        # capability's data types (their blob references, their quota declarations).
        blob_capability(host),
        quota_capability(host),
        # RFC 9670: Principals from the directory, ShareNotifications of the host's
        # sharing service (jmap_host.sharing), which every capability's types use.
        principals_capability(host),
    ]


@hookimpl
def config_keys() -> list[tuple[str, Any]]:
    # [jmap.push]: PushSubscription limits, delivery and VAPID (docs/operator-guide.md).
    return push_config_keys()


@hookimpl
def register_protocols() -> list[Protocol]:
    return [Protocol("jmap", transport="http", doc="JMAP over HTTP: session, API, blobs, push")]
