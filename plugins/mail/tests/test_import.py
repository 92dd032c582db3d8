"""``jmap-host import`` (issue 4 §2): an mbox file and a Maildir++ tree made here, folders as
Mailboxes, flags as keywords, unparsable messages kept, and a second run importing nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from jmap_host.testing import api, running_server, write_config

USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]
JMAP_HOST = [sys.executable, "-m", "jmap_host"]


def msg(subject: str, extra: str = "") -> str:
    return (
        f"From: Dave <dave@example.net>\nTo: alice@example.org\nSubject: {subject}\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.net>\n{extra}\nBody of {subject}\n"
    )


def make_mbox(path: Path) -> None:
    path.write_text(
        "From dave@example.net Mon Jan  4 09:30:00 2021\n"
        + msg("mbox one", "Status: RO\nX-Status: AF\n")
        + "\nFrom dave@example.net Tue Jan  5 09:30:00 2021\n"
        + msg("mbox two", "X-Keywords: $label1 work\n")
        + "\n>From the archives: an escaped line\n"
        + "\nFrom dave@example.net Wed Jan  6 09:30:00 2021\n"
        + msg("mbox deleted", "X-Status: D\n")
        + "\nFrom MAILER-DAEMON Thu Jan  7 09:30:00 2021\n"
        + "this is not a message at all, just some bytes \xff\n"
    )


def make_maildir(root: Path) -> None:
    def folder(path: Path, files: dict[str, str]) -> None:
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (path / name).write_text(text)

    folder(
        root,
        {
            "cur/1600000000.1.host:2,S": msg("inbox seen"),
            "cur/1600000001.1.host:2,FRa": msg("inbox flagged answered"),
            "cur/1600000002.1.host:2,ST": msg("inbox trashed"),
            "new/1600000003.1.host": msg("inbox new"),
            "cur/1600000004.1.host:2,S": "",
            "tmp/1600000005.1.host": msg("half delivered"),
        },
    )
    (root / "dovecot-keywords").write_text("0 $Important\n")
    folder(root / ".Sent", {"cur/1600000010.1.host:2,S": msg("sent one")})
    folder(root / ".Lists", {})
    folder(root / ".Lists.python", {"cur/1600000020.1.host:2,S": msg("python list")})
    folder(root / ".Entw&APw-rfe", {"cur/1600000030.1.host:2,D": msg("german draft")})


def run_import(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*JMAP_HOST, "import", "-c", str(config), "--account", "alice", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def mail_state(server: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async with server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        result = await api(
            http,
            [
                ["Mailbox/get", {"accountId": account, "ids": None}, "m"],
                ["Email/query", {"accountId": account}, "q"],
                [
                    "Email/get",
                    {
                        "accountId": account,
                        "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                        "properties": ["subject", "mailboxIds", "keywords", "receivedAt", "size"],
                    },
                    "g",
                ],
            ],
            using=USING,
        )
    boxes = {m["id"]: m for m in result["methodResponses"][0][1]["list"]}
    return boxes, result["methodResponses"][2][1]["list"]


def path_of(boxes: dict[str, Any], mailbox_id: str) -> str:
    names = []
    node = mailbox_id
    while node is not None:
        names.append(boxes[node]["name"])
        node = boxes[node]["parentId"]
    return "/".join(reversed(names))


async def test_import_mbox_and_maildir_then_resume(tmp_path):
    config = write_config(tmp_path)
    mbox = tmp_path / "old.mbox"
    make_mbox(mbox)
    maildir = tmp_path / "Maildir"
    make_maildir(maildir)

    first = run_import(config, str(maildir), "--batch-size", "2")
    assert first.returncode == 0, first.stderr
    assert "imported 7 message(s)" in first.stdout
    assert "1 empty message" in first.stdout
    assert "1 message(s) marked deleted/trashed went to Trash" in first.stdout
    second = run_import(config, str(mbox), "--mailbox", "Archive/2021")
    assert second.returncode == 0, second.stderr
    assert "imported 4 message(s)" in second.stdout
    assert "1 message(s) have no RFC 5322 header" in second.stdout

    again = run_import(config, str(maildir), "--batch-size", "2")
    assert again.returncode == 0, again.stderr
    assert "imported 0 message(s)" in again.stdout
    assert "7 already imported" in again.stdout
    again = run_import(config, str(mbox), "--mailbox", "Archive/2021")
    assert "imported 0 message(s)" in again.stdout and "4 already imported" in again.stdout

    async with running_server(config) as server:
        boxes, emails = await mail_state(server)
    where = {
        e["subject"]: ([path_of(boxes, m) for m in e["mailboxIds"]], e["keywords"]) for e in emails
    }
    assert where["inbox seen"] == (["Inbox"], {"$seen": True})
    assert where["inbox flagged answered"] == (
        ["Inbox"],
        {"$flagged": True, "$answered": True, "$important": True},
    )
    assert where["inbox new"] == (["Inbox"], {})
    assert where["inbox trashed"] == (["Trash"], {"$seen": True})
    assert "half delivered" not in where  # tmp/ is deliveries in progress
    # .Sent merges into the Mailbox with role sent; nested and mUTF-7 names.
    sent = next(m for m in boxes.values() if m["role"] == "sent")
    assert where["sent one"] == ([sent["name"]], {"$seen": True})
    assert where["python list"] == (["Lists/python"], {"$seen": True})
    assert where["german draft"] == (["Entwürfe"], {"$draft": True})
    # The mbox under --mailbox, with its flags and From-line dates.
    assert where["mbox one"] == (
        ["Archive/2021"],
        {"$seen": True, "$answered": True, "$flagged": True},
    )
    assert where["mbox two"] == (["Archive/2021"], {"$label1": True, "work": True})
    assert where["mbox deleted"] == (["Trash"], {})
    received = {e["subject"]: e["receivedAt"] for e in emails}
    assert received["mbox one"] == "2021-01-04T09:30:00Z"
    # The message that is not RFC 5322 is still listed (stored as bytes).
    assert len(emails) == 11
    assert sum(1 for e in emails if e["subject"] is None) == 1
    # "Archive" is the default Mailbox with that name: 2021 became its child.
    archive = next(m for m in boxes.values() if m["role"] == "archive")
    assert any(m["parentId"] == archive["id"] and m["name"] == "2021" for m in boxes.values())
    # The mbox escaping stays as it was written.
    two = next(e for e in emails if e["subject"] == "mbox two")
    assert two["size"] > 0


async def test_import_directory_of_mbox_files(tmp_path):
    """A mail directory (mutt, Thunderbird): each mbox file a Mailbox, .sbd children."""
    config = write_config(tmp_path)
    mail = tmp_path / "Mail"
    (mail / "Projects.sbd").mkdir(parents=True)
    (mail / "Projects").write_text("From x Mon Jan  4 09:30:00 2021\n" + msg("project root"))
    (mail / "Projects.sbd" / "Apollo").write_text(
        "From x Mon Jan  4 09:30:00 2021\n" + msg("apollo")
    )
    (mail / "Projects.msf").write_text("index, ignored")
    (mail / "notes.txt").write_text("not mail")
    (mail / "Sent Messages.mbox").write_text("From x Mon Jan  4 09:30:00 2021\n" + msg("sent"))
    done = run_import(config, str(mail))
    assert done.returncode == 0, done.stderr
    assert "imported 3 message(s)" in done.stdout
    assert "not an mbox file" in done.stdout and "notes.txt" in done.stdout
    async with running_server(config) as server:
        boxes, emails = await mail_state(server)
    where = {e["subject"]: [path_of(boxes, m) for m in e["mailboxIds"]] for e in emails}
    sent = next(m for m in boxes.values() if m["role"] == "sent")
    assert where == {
        "project root": ["Projects"],
        "apollo": ["Projects/Apollo"],
        "sent": [sent["name"]],
    }


def test_import_unknown_account(tmp_path):
    config = write_config(tmp_path)
    mbox = tmp_path / "x.mbox"
    mbox.write_text("")
    done = subprocess.run(
        [*JMAP_HOST, "import", "-c", str(config), "--account", "nobody", str(mbox)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no user or group 'nobody'" in done.stderr
