"""``jmap-host deliver RECIPIENT...`` (issue 4 §2): one message on stdin, sysexits.h exit
codes for an MTA's pipe transport, the result seen over HTTP by a running server."""

from __future__ import annotations

import subprocess
import sys

from jmap_host.testing import BASE_CONFIG, api, running_server, write_config

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
JMAP_HOST = [sys.executable, "-m", "jmap_host"]
QUOTA_BASE = BASE_CONFIG.replace('name = "bob"\n', 'name = "bob"\nquota = 100\n')

# As Postfix's pipe(8) with flag F hands it over: an mbox From line, LF line endings.
PIPED = (
    b"From carol@example.net  Tue Nov 24 10:00:00 2026\n"
    b"From: Carol <carol@example.net>\nTo: alice@example.org\nSubject: Piped\n\nHello there\n"
)


def deliver(config, *args: str, stdin: bytes = PIPED) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*JMAP_HOST, "deliver", "-c", str(config), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


async def test_deliver_exit_codes_and_result(tmp_path):
    config = write_config(tmp_path, base=QUOTA_BASE)
    done = deliver(config, "-f", "carol@example.net", "alice@example.org")
    assert done.returncode == 0, done.stderr.decode()

    unknown = deliver(config, "alice@example.org", "nobody@example.org")
    assert unknown.returncode == 67  # EX_NOUSER; nothing delivered to alice either
    assert b"5.1.1" in unknown.stderr

    full = deliver(config, "bob@example.org")
    assert full.returncode == 73  # EX_CANTCREAT: mailbox full, permanent
    assert b"5.2.2" in full.stderr

    assert deliver(config, "alice").returncode == 67  # not an address

    async with running_server(config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        result = await api(
            http,
            [
                ["Email/query", {"accountId": account}, "q"],
                [
                    "Email/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                        "properties": ["subject", "mailboxIds", "header:Return-Path", "size"],
                    },
                    "g",
                ],
                ["Mailbox/get", {"accountId": account, "ids": None}, "m"],
            ],
            using=USING,
        )
        emails = result["methodResponses"][1][1]["list"]
        inbox = next(m for m in result["methodResponses"][2][1]["list"] if m["role"] == "inbox")
        assert [e["subject"] for e in emails] == ["Piped"]
        assert emails[0]["mailboxIds"] == {inbox["id"]: True}
        assert emails[0]["header:Return-Path"].strip() == "<carol@example.net>"


def test_deliver_temporary_failure_for_a_bad_configuration(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nno-such-key = 1\n")
    done = deliver(bad, "alice@example.org")
    assert done.returncode == 75  # EX_TEMPFAIL: the MTA keeps the message and retries


def test_deliver_too_big(tmp_path):
    config = write_config(tmp_path, "[jmap.protocol.upload]\nmax-size = 1024\n")
    done = deliver(config, "alice@example.org", stdin=PIPED + b"x" * 2000)
    assert done.returncode == 65  # EX_DATAERR
    assert b"5.3.4" in done.stderr
