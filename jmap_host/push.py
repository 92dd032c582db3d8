"""The push hub: state changes fan out to every open stream of every affected account.

A change to a data type in an account is published once (``publish(account, {type:
state})``, by the standard methods after their transaction commits, or by a plugin that
writes on its own).  Each subscriber (an EventSource stream, a WebSocket with push on)
keeps a pending StateChange that new changes merge into, and an event that wakes it: a
slow reader never makes publishing wait or lose a change, it gets the newest states
coalesced (RFC 8620 §7.1 lets the server amalgamate changes).

Plugins may also declare *push pseudo-types* (``Capability.push_types``, e.g. the
calendars plugin's ``CalendarAlert``, draft-ietf-jmap-calendars §6.4): objects that are not
state changes but are pushed, as they are, to one user (``publish_object(principal, type,
obj)``).  A subscriber takes them with :meth:`Subscriber.take_objects` after each wake;
a subscriber whose types are None (``*``, null) hears of every pseudo-type too.  At most
``MAX_PENDING_OBJECTS`` wait per subscriber: past that the oldest are dropped (a reader
that far behind is not reading).

The hub's subscribers are in this process; several nodes on one database (PostgreSQL)
hear of each other's changes through the host events (jmap_host.cluster): every
``publish`` and ``publish_object`` is delivered here at once and relayed to the other
nodes (events ``push.state`` and ``push.object``), whose hubs deliver it to their own
subscribers.  When the bus may have lost events (it reconnected), :meth:`PushHub.resync`
re-reads the states of every followed account and publishes them: streams compare them
with what they sent, so the worst is a StateChange too many, never one missed.  (So is
a relayed state that arrives after a newer one published here, from two writes to one
account through two nodes within a millisecond: states are opaque, some are digests,
so the hub cannot tell which is newer; the client's /changes finds nothing new.)  Nothing
outside this module and jmap_host.cluster knows how many processes there are.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import trio

from . import objectstore

if TYPE_CHECKING:
    from .cluster import HostEvents

StateMap = dict[str, dict[str, str]]  # account id → {type name → state}
PushObject = tuple[str, dict[str, Any]]  # (pseudo-type name, the object pushed)
MAX_PENDING_OBJECTS = 1000


class Subscriber:
    """One listener's view: the accounts it follows and the changes not yet taken."""

    def __init__(
        self,
        accounts: Iterable[str],
        types: set[str] | None,
        only: dict[str, set[str]] | None = None,
        principal: str | None = None,
    ):
        self.accounts = set(accounts)
        # The user listening (Principal.name): pseudo-type objects published to them reach
        # this subscriber; None hears none.
        self.principal = principal
        self.types = types  # None: every type
        # Per account, the only types it may hear of (an account shared with the user:
        # its shared types, sharing.push_types); an account not in it: every type.
        self.only = only or {}
        self.pending: StateMap = {}
        self.objects: list[PushObject] = []
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

    def offer_object(self, type_name: str, obj: dict[str, Any]) -> bool:
        """Queue ``obj`` if this subscriber asked for its pseudo-type; whether it did."""
        if self.types is not None and type_name not in self.types:
            return False
        if len(self.objects) >= MAX_PENDING_OBJECTS:
            del self.objects[0]  # (a reader that long behind wants the newest)
        self.objects.append((type_name, obj))
        self._wake.set()
        return True

    def take_objects(self) -> list[PushObject]:
        """The pseudo-type objects published since the last call, oldest first.  Call it
        right after :meth:`wait` (no checkpoint between): wait wakes for them too."""
        taken, self.objects = self.objects, []
        return taken

    async def wait(self) -> StateMap:
        """Wait for changes or objects; return the changes, coalesced (possibly none, when
        only objects came: take those with :meth:`take_objects`), and start anew."""
        await self._wake.wait()
        return self.take()

    def take(self) -> StateMap:
        taken, self.pending = self.pending, {}
        self._wake = trio.Event()
        return taken


class Watcher:
    """A listener to changes of some types in every account (see :meth:`PushHub.watch`)."""

    def __init__(self, types: set[str]):
        self.types = types
        self.changed: set[str] = set()
        self._wake = trio.Event()

    def offer(self, account: str, changed: dict[str, str]) -> None:
        if not self.types.isdisjoint(changed):
            self.changed.add(account)
            self._wake.set()

    async def wait(self) -> set[str]:
        await self._wake.wait()
        taken, self.changed = self.changed, set()
        self._wake = trio.Event()
        return taken


class PushHub:
    """The subscribers of this process; with ``events``, also those of the other nodes
    (see the module's docstring)."""

    def __init__(self, events: HostEvents | None = None) -> None:
        self._events = events
        if events is not None:
            events.on("push.state", self._remote_state)
            events.on("push.object", self._remote_object)
        self._by_account: dict[str, set[Subscriber]] = {}
        # The pseudo-types capabilities declare (Capability.push_types; set by the host)
        self.push_types: frozenset[str] = frozenset()
        self._by_principal: dict[str, set[Subscriber]] = {}
        # Watchers see every publish of their types in any account (a plugin's background
        # work that must know when its data changed: the calendars alert scheduler).
        self._watchers: set[Watcher] = set()
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
        principal: str | None = None,
    ) -> Iterator[Subscriber]:
        """Follow ``accounts`` (``types`` None: every type; ``only`` per account, as for
        :class:`Subscriber`) and, with ``principal``, the pseudo-type objects published to
        that user."""
        subscriber = Subscriber(accounts, types, only, principal)
        for account in subscriber.accounts:
            self._by_account.setdefault(account, set()).add(subscriber)
        if principal is not None:
            self._by_principal.setdefault(principal, set()).add(subscriber)
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
            if principal is not None:
                mine = self._by_principal.get(principal)
                if mine is not None:
                    mine.discard(subscriber)
                    if not mine:
                        del self._by_principal[principal]

    def publish(self, account: str, changed: dict[str, str]) -> None:
        """Tell every subscriber of ``account``, on every node, that these types now have
        these states; types whose state is the one published last time are left out
        (nothing changed)."""
        self._publish_here(account, changed)
        if self._events is not None:
            self._events.relay("push.state", {"account": account, "changed": changed})

    def _remote_state(self, data: dict[str, Any]) -> None:
        account, changed = data.get("account"), data.get("changed")
        if isinstance(account, str) and isinstance(changed, dict):
            self._publish_here(account, {str(t): str(s) for t, s in changed.items()})

    def _publish_here(self, account: str, changed: dict[str, str]) -> None:
        for watcher in list(self._watchers):
            watcher.offer(account, changed)
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

    def publish_object(self, principal: str, type_name: str, obj: dict[str, Any]) -> int:
        """Push ``obj``, an object of the pseudo-type ``type_name`` (one a capability
        declares in ``push_types``), to every push channel of the user ``principal``
        (Principal.name) that asked for that type or for every type; returns how many
        channels took it.  Nothing is stored: a user with no channel open misses it.  A
        type no capability declares is a ValueError (it would go out under no event name)."""
        if type_name not in self.push_types:
            raise ValueError(f"{type_name!r} is not a push type any capability declares")
        if self._events is not None:
            self._events.relay(
                "push.object", {"principal": principal, "type": type_name, "object": obj}
            )
        return self._publish_object_here(principal, type_name, obj)

    def _remote_object(self, data: dict[str, Any]) -> None:
        principal, type_name, obj = data.get("principal"), data.get("type"), data.get("object")
        if isinstance(principal, str) and type_name in self.push_types and isinstance(obj, dict):
            self._publish_object_here(principal, str(type_name), obj)

    def _publish_object_here(self, principal: str, type_name: str, obj: dict[str, Any]) -> int:
        subscribers = self._by_principal.get(principal) or set()
        return sum(subscriber.offer_object(type_name, obj) for subscriber in list(subscribers))

    async def resync(self, store: Any) -> None:
        """Publish here the current states of every account a subscriber follows (and
        of every account, when something watches): after events may have been lost."""
        accounts: list[str] | None = list(self._by_account)
        if self._watchers:
            accounts = None  # (a watcher hears of every account)
        elif not accounts:
            return
        states = await store.read(lambda db: _all_states(db, accounts))
        for account, changed in states.items():
            self._publish_here(account, changed)

    @contextmanager
    def watch(self, types: set[str]) -> Iterator[Watcher]:
        """Hear of every change to these types in any account: ``await watcher.wait()``
        returns the accounts whose types changed since the last wait."""
        watcher = Watcher(types)
        self._watchers.add(watcher)
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)

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


def _all_states(db: Any, accounts: list[str] | None) -> StateMap:
    """The states of every type of ``accounts`` (None: of every provisioned account)."""
    if accounts is None:
        accounts = list(account_owners(db))
    return current_states(db, accounts, None)


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


def account_owners(db: Any, accounts: Iterable[str] | None = None) -> dict[str, str]:
    """The principal (Principal.name) owning each provisioned account (of ``accounts``, or
    all): whom ``PushHub.publish_object`` is to address for an account's owner."""
    from .migrations import ACCOUNT_TABLE

    if accounts is None:
        rows = db.execute(f"SELECT id, principal FROM [{ACCOUNT_TABLE}]").fetchall()
    else:
        rows = db.execute(
            f"SELECT id, principal FROM [{ACCOUNT_TABLE}] WHERE id IN "
            "(SELECT value FROM json_each(?))",
            [json.dumps(list(accounts))],
        ).fetchall()
    return {str(a): str(p) for a, p in rows}


async def publish_states(host: Any, account: str, types: Iterable[str]) -> None:
    """Push the current states of ``types`` in ``account`` (one read): after a write that
    changed them outside the standard /set (a delivery, what a hook wrote)."""
    wanted = set(types)
    if not wanted:
        return
    states = await host.store.read(lambda db: dict(objectstore.type_states(db, account)))
    host.push.publish(account, {t: str(states[t]) for t in wanted if t in states})
