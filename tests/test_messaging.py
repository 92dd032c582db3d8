"""jmap_host.messaging, the host's mail service for plugins: a plugin sends through the one
MailTransport (the mail plugin's outbound queue: a local recipient gets the message in
their Inbox), MailReceivers see every local delivery inside its transaction (a failing
one does not stop the delivery), and without a transport sending says so."""

from __future__ import annotations

from typing import Any

import pytest

import jmap_host
from jmap_host import MailReceiver, MailTransport, StartupError, hookimpl, messaging
from jmap_host.testing import AccountClient, eventually, running_server, write_config

BOB = jmap_host.account_id_for("bob")
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: From a plugin\r\n"
           b"Message-ID: <plugin-1@example.org>\r\n\r\nHello\r\n")  # fmt: skip


class Receivers:
    """A throw-away plugin: one receiver that records, one that always fails."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes, str | None]] = []

    @hookimpl
    def register_mail_receivers(self, host: Any) -> list[MailReceiver]:
        def record(db: Any, host: Any, principal: Any, message: bytes, sender: Any) -> None:
            assert db.conn.in_transaction  # (inside the delivery's write transaction)
            self.seen.append((principal.name, message, sender))

        def broken(db: Any, host: Any, principal: Any, message: bytes, sender: Any) -> None:
            db.execute("CREATE TABLE never_kept (x)")  # (rolled back with its savepoint)
            raise RuntimeError("this receiver always fails")

        return [MailReceiver("broken", broken), MailReceiver("recorder", record)]


class SecondTransport:
    @hookimpl
    def register_mail_transport(self, host: Any) -> MailTransport:
        return MailTransport(enqueue=lambda *args: None)


async def test_a_plugin_sends_to_a_local_user_and_receivers_see_it(tmp_path):
    """send() is durable when it returns; the queue delivers the local recipient's copy
    through the mail plugin (their Inbox); every receiver runs for it, a failing one
    rolled back and logged, the message delivered all the same."""
    plugin = Receivers()
    config = write_config(tmp_path)
    async with running_server(config, extra_plugins=[("recv", plugin)]) as server:
        host = server.host
        assert messaging.can_send(host)
        alice = await host.directory.lookup_email("alice@example.org")
        await messaging.send(host, alice, "alice@example.org", ["bob@example.org"], MESSAGE)
        async with server.client("bob") as http:
            bob = AccountClient(http, BOB, USING)

            async def delivered() -> list[str]:
                ids = (await bob.ok("Email/query"))["ids"]
                found = (await bob.ok("Email/get", ids=ids, properties=["subject"]))["list"]
                return [e["subject"] for e in found]

            assert await eventually(delivered) == ["From a plugin"]
        [(name, message, sender)] = plugin.seen
        assert name == "bob" and sender == "alice@example.org"
        assert message.endswith(MESSAGE)  # (after the Return-Path the delivery adds)
        tables = await host.store.read(lambda db: db.table_names())
        assert "never_kept" not in tables
        with pytest.raises(ValueError):  # (the transport checks the envelope)
            await messaging.send(host, alice, "not an address", ["bob@example.org"], MESSAGE)


async def test_without_the_mail_plugin_sending_says_so(tmp_path):
    """No transport: can_send is false and send raises NoMailTransport."""
    config = write_config(tmp_path, '[plugins]\ndisabled = ["mail"]\n')
    host = jmap_host.load_host(config)
    assert not messaging.can_send(host)
    alice = await host.directory.lookup_email("alice@example.org")
    with pytest.raises(jmap_host.NoMailTransport):
        await messaging.send(host, alice, "alice@example.org", ["bob@example.org"], MESSAGE)


def test_two_transports_are_a_startup_error(tmp_path):
    """One plugin moves mail: a second transport is refused at start-up, naming both."""
    with pytest.raises(StartupError, match="two plugins send mail"):
        jmap_host.load_host(write_config(tmp_path), extra_plugins=[("other", SecondTransport())])
