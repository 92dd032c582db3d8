"""The push hub: state changes fan out to every open stream of every affected account.

A change to a data type in an account is published once (``publish(account, {type:
state})``, by the standard methods after their transaction commits, or by a plugin that
writes on its own).  Each subscriber (an EventSource stream, a WebSocket with push on)
keeps a pending StateChange that new changes merge into, and an event that wakes it: a
slow reader never makes publishing wait or lose a change, it gets the newest states
coalesced (RFC 8620 §7.1 lets the server amalgamate changes).

This hub is in-process.  It is the seam for several nodes (ARCHITECTURE.md): a shared
implementation would carry ``publish`` over PostgreSQL LISTEN/NOTIFY or similar; nothing
outside this module assumes one process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import trio

from . import objectstore

StateMap = dict[str, dict[str, str]]  # account id → {type name → state}


class Subscriber:
    """One listener's view: the accounts it follows and the changes not yet taken."""

    def __init__(
        self,
        accounts: Iterable[str],
        types: set[str] | None,
        only: dict[str, set[str]] | None = None,
    ):
        self.accounts = set(accounts)
        self.types = types  # None: every type
        # Per account, the only types it may hear of (an account shared with the user:
        # its shared types, sharing.push_types); an account not in it: every type.
        self.only = only or {}
        self.pending: StateMap = {}
        self._wake = trio.Event()

    def current(self, db: Any) -> StateMap:
        """The states this subscriber may hear of now (read after subscribing, so that
        no change falls between the two)."""
        return current_states(db, self.accounts, self.types, self.only)

    def offer(self, account: str, changed: dict[str, str]) -> None:
        allowed = self.only.get(account)
        wanted = {
            t: s
            for t, s in changed.items()
            if (self.types is None or t in self.types) and (allowed is None or t in allowed)
        }
        if wanted:
            self.pending.setdefault(account, {}).update(wanted)
            self._wake.set()

    async def wait(self) -> StateMap:
        """Wait for changes; return them all, coalesced, and start collecting anew."""
        await self._wake.wait()
        return self.take()

    def take(self) -> StateMap:
        taken, self.pending = self.pending, {}
        self._wake = trio.Event()
        return taken


class PushHub:
    def __init__(self) -> None:
        self._by_account: dict[str, set[Subscriber]] = {}
        # The states last published per account that has subscribers: a type whose state
        # did not change is not offered again (publishers send every type's state on each
        # change; waking 9,000 streams that follow only EmailDelivery for an Email change
        # would cost more than the 1,000 deliveries that matter).
        self._last: dict[str, dict[str, str]] = {}
        self.open = 0  # subscribers now
        self.closed = 0  # subscribers gone, ever (the server collects garbage after many)

    @contextmanager
    def subscribe(
        self,
        accounts: Iterable[str],
        types: set[str] | None = None,
        only: dict[str, set[str]] | None = None,
    ) -> Iterator[Subscriber]:
        subscriber = Subscriber(accounts, types, only)
        for account in subscriber.accounts:
            self._by_account.setdefault(account, set()).add(subscriber)
        self.open += 1
        try:
            yield subscriber
        finally:
            self.open -= 1
            self.closed += 1
            for account in subscriber.accounts:
                subscribers = self._by_account.get(account)
                if subscribers is not None:
                    subscribers.discard(subscriber)
                    if not subscribers:
                        del self._by_account[account]
                        self._last.pop(account, None)

    def publish(self, account: str, changed: dict[str, str]) -> None:
        """Tell every subscriber of ``account`` that these types now have these states;
        types whose state is the one published last time are left out (nothing changed)."""
        subscribers = self._by_account.get(account)
        if not subscribers:
            return
        last = self._last.setdefault(account, {})
        fresh = {t: s for t, s in changed.items() if last.get(t) != s}
        if not fresh:
            return
        last.update(fresh)
        for subscriber in list(subscribers):
            subscriber.offer(account, fresh)

    def subscriber_count(self) -> int:
        return len({s for subs in self._by_account.values() for s in subs})


def state_change(changed: StateMap) -> dict[str, Any]:
    """The StateChange object of RFC 8620 §7.1."""
    return {"@type": "StateChange", "changed": changed}


def current_states(
    db: Any,
    accounts: Iterable[str],
    types: set[str] | None,
    only: dict[str, set[str]] | None = None,
) -> StateMap:
    """Every known type state of these accounts (types never written have state "0");
    ``only`` as for :class:`Subscriber`."""
    out: StateMap = {}
    only = only or {}
    for account in accounts:
        allowed = only.get(account)
        for type_name, modseq in objectstore.type_states(db, account):
            if (types is None or type_name in types) and (allowed is None or type_name in allowed):
                out.setdefault(account, {})[type_name] = str(modseq)
    return out


def encode_event_id(states: StateMap) -> str:
    """An EventSource event id that encodes the whole state the stream has seen, so a
    reconnecting client's Last-Event-ID tells exactly what it missed (§7.3)."""
    raw = orjson.dumps(states, option=orjson.OPT_SORT_KEYS)  # compact, like json.dumps
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_event_id(event_id: str) -> StateMap | None:
    try:
        raw = base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # (a header of "[[[[..."
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str)
        and isinstance(v, dict)
        and all(isinstance(t, str) and isinstance(s, str) for t, s in v.items())
        for k, v in value.items()
    ):
        return None
    return value


def diff(old: StateMap, new: StateMap) -> StateMap:
    """The entries of ``new`` that differ from ``old``."""
    out: StateMap = {}
    for account, types in new.items():
        for type_name, state in types.items():
            if old.get(account, {}).get(type_name, "0") != state:
                out.setdefault(account, {})[type_name] = state
    return out
