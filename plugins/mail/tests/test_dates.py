"""Dates at the wire, by RFC section: every RFC 3339 form RFC 8620 §1.4 allows is accepted
(a fraction of a second ending in 0 among them) and sent back canonical; dates are compared
and sorted as instants (RFC 8621 §4.4.1 before/after, §4.4.2 receivedAt and sentAt), never
as text; and every date argument takes them: Email/import and Email/set receivedAt (§4.8,
§4.6), Email/query, VacationResponse (§8), EmailSubmission/query (§7.3)."""

from __future__ import annotations

from typing import Any

import pytest
from jmap_host_mail.testing import MailClient

from jmap_host.testing import running_server

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"


def message(subject: str, date: str = "Tue, 24 Nov 2026 10:00:00 +0000") -> bytes:
    return (
        f"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Date: {date}\r\nMessage-ID: <{subject.replace(' ', '.')}@x>\r\n\r\nHi\r\n"
    ).encode()


class Mail(MailClient):
    errors_as_results = True

    async def setup(self) -> None:
        boxes = (await self.call("Mailbox/get", ids=None))["list"]
        self.inbox = next(m["id"] for m in boxes if m["role"] == "inbox")

    async def import_(self, raw: bytes, **extra: Any) -> dict[str, Any]:
        blob = await self.upload(raw)
        spec = {"blobId": blob, "mailboxIds": {self.inbox: True}, **extra}
        return await self.call("Email/import", emails={"e": spec})

    async def query(self, **args: Any) -> list[str]:
        result = await self.call("Email/query", **args)
        assert "error" not in result, result
        return result["ids"]


@pytest.fixture
async def mail(jmap_config):
    async with running_server(jmap_config) as server, server.client("alice") as http:
        session = (await http.get("/jmap/session")).json()
        client = Mail(http, session["primaryAccounts"][MAIL])
        await client.setup()
        yield client


@pytest.mark.parametrize(
    "given, canonical",
    [
        ("2026-01-02T03:04:05.130Z", "2026-01-02T03:04:05.13Z"),
        ("2026-01-02T03:04:05.50Z", "2026-01-02T03:04:05.5Z"),
        ("2026-01-02T03:04:05.010Z", "2026-01-02T03:04:05.01Z"),
        ("2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02t03:04:05z", "2026-01-02T03:04:05Z"),  # RFC 3339 §5.6's note
        ("2026-01-02T03:04:05.123456789Z", "2026-01-02T03:04:05.123456789Z"),
    ],
)
async def test_import_accepts_every_rfc3339_form_and_answers_canonical(mail, given, canonical):
    """RFC 8620 §1.4: UTCDate is an RFC 3339 date-time with offset Z; the server sends the
    fraction without trailing zeros (none when zero) and upper-case letters."""
    result = await mail.import_(message("dated"), receivedAt=given)
    assert result["created"], result
    email_id = result["created"]["e"]["id"]
    got = await mail.call("Email/get", ids=[email_id], properties=["receivedAt"])
    assert got["list"][0]["receivedAt"] == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "2026-01-02T03:04:05+01:00",  # a UTCDate's offset is Z (§1.4)
        "2026-13-02T03:04:05Z",  # no month 13
        "2026-02-29T03:04:05Z",  # 2026 is no leap year
        "2026-01-02T03:04:05.Z",  # a fraction needs a digit
        "2026-01-02 03:04:05Z",
        "2026-01-02T03:04:05",  # no offset
        "\u0662026-01-02T03:04:05Z",  # an Arabic-Indic digit is no RFC 3339 DIGIT
    ],
)
async def test_import_refuses_what_is_not_a_utcdate(mail, bad):
    """RFC 8620 §1.4 / RFC 3339 §5.6: invalidProperties naming receivedAt (RFC 8621 §4.8)."""
    result = await mail.import_(message("bad date"), receivedAt=bad)
    assert result["notCreated"]["e"]["type"] == "invalidProperties", result
    assert result["notCreated"]["e"]["properties"] == ["receivedAt"]


async def test_receivedat_inside_one_second_sorts_and_filters_as_instants(mail):
    """RFC 8621 §4.4.1 before/after and §4.4.2 receivedAt compare instants: `:00.5Z` is
    after `:00Z`, though as text "." sorts before "Z"."""
    ids = {}
    received = {
        "half": "2026-03-01T10:00:00.5Z",
        "whole": "2026-03-01T10:00:00Z",
        "tenth": "2026-03-01T10:00:00.10Z",
        "next": "2026-03-01T10:00:01Z",
    }
    for label, when in received.items():
        result = await mail.import_(message(label), receivedAt=when)
        ids[label] = result["created"]["e"]["id"]
    in_time_order = [ids["whole"], ids["tenth"], ids["half"], ids["next"]]
    assert await mail.query(sort=[{"property": "receivedAt"}]) == in_time_order
    newest_first = await mail.query(sort=[{"property": "receivedAt", "isAscending": False}])
    assert newest_first == in_time_order[::-1]
    assert await mail.query(
        filter={"after": "2026-03-01T10:00:00.250Z"}, sort=[{"property": "receivedAt"}]
    ) == [ids["half"], ids["next"]]
    assert await mail.query(
        filter={"before": "2026-03-01T10:00:00.50Z"}, sort=[{"property": "receivedAt"}]
    ) == [ids["whole"], ids["tenth"]]
    # after is inclusive (>=), before exclusive (<), §4.4.1; equal instants, other text.
    assert await mail.query(filter={"after": "2026-03-01T10:00:01.000Z"}) == [ids["next"]]
    assert await mail.query(
        filter={"before": "2026-03-01T10:00:00.1000Z"}, sort=[{"property": "receivedAt"}]
    ) == [ids["whole"]]


async def test_sentat_with_different_offsets_sorts_in_time_order(mail):
    """RFC 8621 §4.4.2 sentAt: 08:00Z written as 13:00 +0500, 09:00Z, and 10:00Z written as
    02:00 -0800 sort in time order (as text they would sort 02, 09, 13); sentAt keeps the
    offset the message gave (§4.1.2.6, a Date)."""
    dates = {
        "eight": "Tue, 24 Nov 2026 13:00:00 +0500",
        "nine": "Tue, 24 Nov 2026 09:00:00 +0000",
        "ten": "Tue, 24 Nov 2026 02:00:00 -0800",
    }
    ids = {}
    for label in ("ten", "eight", "nine"):
        result = await mail.import_(message(label, dates[label]))
        ids[label] = result["created"]["e"]["id"]
    ascending = await mail.query(sort=[{"property": "sentAt"}])
    assert ascending == [ids["eight"], ids["nine"], ids["ten"]]
    descending = await mail.query(sort=[{"property": "sentAt", "isAscending": False}])
    assert descending == [ids["ten"], ids["nine"], ids["eight"]]
    got = await mail.call("Email/get", ids=[ids["eight"]], properties=["sentAt"])
    assert got["list"][0]["sentAt"] == "2026-11-24T13:00:00+05:00"


async def test_email_set_create_takes_a_fraction_ending_in_zero(mail):
    """RFC 8621 §4.6: receivedAt of an Email/set create is a UTCDate like any other; the
    created record reads back canonical."""
    draft = {
        "mailboxIds": {mail.inbox: True},
        "receivedAt": "2026-05-05T05:05:05.500Z",
        "from": [{"email": "alice@example.org"}],
        "subject": "draft",
        "bodyStructure": {"type": "text/plain", "partId": "1"},
        "bodyValues": {"1": {"value": "Hi"}},
    }
    result = await mail.call("Email/set", create={"d": draft})
    assert result["created"], result
    email_id = result["created"]["d"]["id"]
    got = await mail.call("Email/get", ids=[email_id], properties=["receivedAt"])
    assert got["list"][0]["receivedAt"] == "2026-05-05T05:05:05.5Z"


async def test_vacation_dates_take_every_form_and_read_back_canonical(mail):
    """RFC 8621 §8: fromDate and toDate are UTCDates; `.50Z` is accepted, stored canonical
    and reported as the server changed it (RFC 8620 §5.3 updated)."""
    mail.http.headers["Accept"] = "application/json"
    body = {
        "using": [CORE, MAIL, "urn:ietf:params:jmap:vacationresponse"],
        "methodCalls": [
            ["VacationResponse/set", {"accountId": mail.account, "update": {"singleton": {
                "isEnabled": True, "fromDate": "2026-07-01T00:00:00.50Z",
                "toDate": "2026-07-31t00:00:00.000z"}}}, "s"],
            ["VacationResponse/get", {"accountId": mail.account}, "g"],
        ],
    }  # fmt: skip
    reply = (await mail.http.post("/jmap/api", json=body)).json()["methodResponses"]
    assert reply[0][0] == "VacationResponse/set", reply
    assert reply[0][1]["updated"]["singleton"] == {
        "fromDate": "2026-07-01T00:00:00.5Z",
        "toDate": "2026-07-31T00:00:00Z",
    }
    got = reply[1][1]["list"][0]
    assert (got["fromDate"], got["toDate"]) == ("2026-07-01T00:00:00.5Z", "2026-07-31T00:00:00Z")
