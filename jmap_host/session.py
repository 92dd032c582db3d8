"""The JMAP Session resource (RFC 8620 §2)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import orjson

from .capabilities import CORE, Account
from .directory import Principal
from .principals import PRINCIPALS, PRINCIPALS_OWNER, owner_entry
from .sharing import shared_accounts

if TYPE_CHECKING:
    from .host import Host

API_PATH = "/jmap/api"
SESSION_PATH = "/jmap/session"
UPLOAD_PATH = "/jmap/upload/{accountId}/"
DOWNLOAD_PATH = "/jmap/download/{accountId}/{blobId}/{name}"
EVENTSOURCE_PATH = "/jmap/eventsource/"
EVENTSOURCE_TOKEN_PATH = "/jmap/eventsource/token"


async def accounts_for(host: Host, principal: Principal) -> dict[str, Account]:
    """The user's own account, then the group accounts it is a member of (§1.6.2), then
    the accounts others share parts of with the user (RFC 9670, jmap_host.sharing)."""
    accounts = {
        principal.account_id: Account(
            id=principal.account_id,
            name=principal.emails[0] if principal.emails else principal.name,
            owner=principal,
            is_personal=True,
        )
    }
    for group_name in principal.member_of:
        group = await host.directory.principal(group_name)
        if group is None or group.kind != "group":
            continue
        accounts[group.account_id] = Account(
            id=group.account_id,
            name=group.emails[0] if group.emails else group.name,
            owner=group,
            is_personal=False,
        )
    for account in await shared_accounts(host, principal):
        accounts.setdefault(account.id, account)
    return accounts


async def push_scope(host: Host, principal: Principal) -> tuple[list[str], dict[str, set[str]]]:
    """What a push channel of the user follows (EventSource, WebSocket, a
    PushSubscription): the ids of their accounts, and for each shared one the only types
    it may tell of (sharing.push_types), for ``host.push.subscribe``."""
    from .sharing import push_types

    accounts = await accounts_for(host, principal)
    return list(accounts), push_types(host, accounts)


def account_capabilities(
    host: Host, account: Account, viewer_account: str | None = None
) -> dict[str, Any]:
    """``accountCapabilities`` for one account: a capability appears only where its
    methods can be used with the account (§2); in a shared account, only core and the
    capabilities with shareable types.  With ``viewer_account`` (the personal account of
    the user asking, which holds their Principal objects) and the principals capability,
    ``principals:owner`` names the account's owner (RFC 9670 §1.5.2)."""
    out: dict[str, Any] = {}
    for urn, cap in host.capabilities.items():
        if account.shared and urn not in host.shared_capabilities:
            continue
        if cap.account is not None:
            value = cap.account(host, account)
            if value is not None:
                out[urn] = value
        elif any(m.takes_account for m in cap.methods):
            out[urn] = {}
    if viewer_account is not None and PRINCIPALS in host.capabilities:
        out[PRINCIPALS_OWNER] = owner_entry(account, viewer_account)
    return out


async def build_session(
    host: Host,
    principal: Principal,
    base_url: str,
    accounts: dict[str, Account] | None = None,
    per_account: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The Session object; ``accounts`` and ``per_account`` (their accountCapabilities)
    may be passed in by a caller that already has them."""
    if accounts is None:
        accounts = await accounts_for(host, principal)
    if per_account is None:
        per_account = {
            a: account_capabilities(host, acc, principal.account_id) for a, acc in accounts.items()
        }
    own = principal.account_id
    primary: dict[str, str] = {}
    for urn, cap in host.capabilities.items():
        if cap.primary and urn in per_account[own]:
            primary[urn] = own
    if host.config.data["jmap"]["session"]["core-primary-account"]:
        # RFC 8620 §2 says core SHOULD NOT be here; Fastmail lists it and clients such as
        # jmapc pick their account from it when no mail capability is present.
        primary[CORE] = own
    session: dict[str, Any] = {
        "capabilities": {
            urn: cap.session(host, base_url) if callable(cap.session) else cap.session
            for urn, cap in host.capabilities.items()
        },
        "accounts": {
            acc_id: {
                "name": acc.name,
                "isPersonal": acc.is_personal,
                "isReadOnly": acc.is_read_only,
                "accountCapabilities": per_account[acc_id],
            }
            for acc_id, acc in accounts.items()
            if acc.listed
        },
        "primaryAccounts": primary,
        "username": principal.name,
        "apiUrl": base_url + API_PATH,
        "downloadUrl": base_url + DOWNLOAD_PATH + "?type={type}",
        "uploadUrl": base_url + UPLOAD_PATH,
        "eventSourceUrl": base_url
        + EVENTSOURCE_PATH
        + "?types={types}&closeafter={closeafter}&ping={ping}",
    }
    session["state"] = session_state(session)
    return session


def session_state(session: dict[str, Any]) -> str:
    """Changes whenever any other property of the session does (§2)."""
    body = {k: v for k, v in session.items() if k != "state"}
    # Computed for every API request (its sessionState): orjson, about 6x faster than the
    # stdlib; the stdlib for anything orjson refuses.
    try:
        text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        text = json.dumps(body, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]
