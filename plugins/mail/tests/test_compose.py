"""jmap_host_mail.compose: Email/set create (RFC 8621 §4.6), checked by parsing the result."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jmap_host_mail.compose import ComposeError, compose_message, validate_create
from jmap_host_mail.message import parse_message

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.eml"))
BLOBS = {
    "Bpng": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
    "Bpdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "Bmsg": b"From: x@y\nSubject: attached\n\nhello\n",
}


def compose(email: dict, **kw) -> bytes:
    return compose_message(email, BLOBS.get, **kw)


def roundtrip(email: dict):
    return parse_message(compose(email))


def well_formed(raw: bytes) -> None:
    """CRLF only, no line over 998 octets, header block ASCII-or-UTF-8."""
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    head.decode("utf-8")


# --- §4.6 validation ------------------------------------------------------------------------


class TestValidate:
    def test_valid_minimal(self) -> None:
        assert validate_create({"mailboxIds": {"m": True}}) == []

    def test_headers_property_forbidden(self) -> None:
        assert validate_create({"headers": []}) == ["headers"]
        body = {"bodyStructure": {"partId": "1", "headers": []}, "bodyValues": {"1": {"value": ""}}}
        assert validate_create(body) == ["bodyStructure/headers"]

    def test_same_header_twice(self) -> None:
        bad = validate_create({"from": [], "header:From:asAddresses": []})
        assert sorted(bad) == ["from", "header:From:asAddresses"]
        bad = validate_create({"header:subject": " a", "header:Subject:asText": "b"})
        assert len(bad) == 2
        assert validate_create({"header:X-A:all": [" 1", " 2"]}) == []

    def test_forbidden_forms(self) -> None:
        assert validate_create({"header:From:asDate": "2020-01-01T00:00:00Z"}) == [
            "header:From:asDate"
        ]
        assert validate_create({"header:Subject:asAddresses": []}) == ["header:Subject:asAddresses"]

    def test_content_headers_not_on_email(self) -> None:
        assert validate_create({"header:Content-Type": " text/plain"}) == ["header:Content-Type"]

    def test_body_structure_excludes_lists(self) -> None:
        e = {
            "bodyStructure": {"partId": "1"},
            "textBody": [{"partId": "1"}],
            "bodyValues": {"1": {"value": "x"}},
        }
        assert validate_create(e) == ["textBody"]

    def test_body_structure_repeating_top_level_header(self) -> None:
        e = {
            "subject": "s",
            "bodyStructure": {"partId": "1", "header:Subject": " t"},
            "bodyValues": {"1": {"value": "x"}},
        }
        assert validate_create(e) == ["bodyStructure/header:Subject"]

    def test_text_and_html_body_shape(self) -> None:
        bv = {"1": {"value": "x"}, "2": {"value": "y"}}
        assert validate_create({"textBody": [{"partId": "1"}, {"partId": "2"}], "bodyValues": bv})
        assert validate_create(
            {"textBody": [{"partId": "1", "type": "text/html"}], "bodyValues": bv}
        ) == ["textBody/0/type"]
        assert validate_create(
            {"htmlBody": [{"partId": "1", "type": "text/plain"}], "bodyValues": bv}
        ) == ["htmlBody/0/type"]
        assert (
            validate_create({"htmlBody": [{"partId": "1", "type": "text/html"}], "bodyValues": bv})
            == []
        )

    def test_part_rules(self) -> None:
        bv = {"1": {"value": "x"}}
        cases = {
            "attachments/0/partId": {"partId": "1", "blobId": "Bpng"},
            "attachments/0/blobId": {"type": "image/png"},
            "attachments/0/charset": {"partId": "1", "charset": "utf-8"},
            "attachments/0/size": {"partId": "1", "size": 3},
            "attachments/0/header:Content-Transfer-Encoding": {
                "blobId": "Bpng",
                "header:Content-Transfer-Encoding": " base64",
            },
        }
        for path, part in cases.items():
            assert path in validate_create({"attachments": [part], "bodyValues": bv}), path
        missing = validate_create({"attachments": [{"partId": "nope"}], "bodyValues": bv})
        assert missing == ["attachments/0/partId"]
        ok = {"blobId": "Bpng", "size": 12, "type": "image/png", "charset": None}
        assert validate_create({"attachments": [ok]}) == []

    def test_part_duplicate_headers(self) -> None:
        bad = validate_create(
            {"attachments": [{"blobId": "B", "type": "a/b", "header:Content-Type": " a/b"}]}
        )
        assert sorted(bad) == ["attachments/0/header:Content-Type", "attachments/0/type"]

    def test_body_values_flags(self) -> None:
        e = {
            "textBody": [{"partId": "1"}],
            "bodyValues": {"1": {"value": "x", "isTruncated": True, "isEncodingProblem": False}},
        }
        assert validate_create(e) == ["bodyValues/1/isTruncated"]

    def test_server_set_and_unknown(self) -> None:
        assert sorted(validate_create({"id": "x", "size": 3, "bogus": 1})) == [
            "bogus",
            "id",
            "size",
        ]

    def test_value_types(self) -> None:
        assert validate_create({"from": [{"email": 3}]}) == ["from"]
        assert validate_create({"sentAt": "yesterday"}) == ["sentAt"]
        assert validate_create({"subject": ["x"]}) == ["subject"]
        assert validate_create({"messageId": "a@b"}) == ["messageId"]
        assert validate_create({"header:X-A": " ok\r\nInjected: yes"}) == ["header:X-A"]
        assert validate_create({"header:X-A": " ok\r\n folded"}) == []

    def test_no_header_injection_through_part_properties(self) -> None:
        bad = validate_create({"attachments": [{"blobId": "B", "language": ["en\r\nX: y"]}]})
        assert bad == ["attachments/0/language"]
        raw = compose(
            {
                "subject": "a\r\nBcc: evil@x",
                "to": [{"name": "n\r\nX: y", "email": "a@b\r\nX: z"}],
                "attachments": [{"blobId": "Bpng", "name": "f\r\nX: y.png", "cid": "c\r\nX: y"}],
            }
        )
        well_formed(raw)
        assert b"\r\nX:" not in raw and b"\r\nBcc:" not in raw

    def test_compose_raises_with_properties(self) -> None:
        with pytest.raises(ComposeError) as ei:
            compose({"headers": [], "subject": 3})
        assert ei.value.type == "invalidProperties"
        assert sorted(ei.value.properties) == ["headers", "subject"]

    def test_blob_not_found(self) -> None:
        with pytest.raises(ComposeError) as ei:
            compose({"attachments": [{"blobId": "nope1"}, {"blobId": "nope2"}, {"blobId": "Bpng"}]})
        assert ei.value.type == "blobNotFound"
        assert ei.value.not_found == ["nope1", "nope2"]


# --- building the message -----------------------------------------------------------------


class TestHeaders:
    def test_convenience_properties_roundtrip(self) -> None:
        e = {
            "from": [{"name": 'Jo\u00e9 "The" Bloggs', "email": "joe@example.com"}],
            "sender": [{"name": None, "email": "s@example.com"}],
            "to": [{"name": "A, B", "email": "a@b.c"}]
            + [{"name": f"Person {i}", "email": f"p{i}@example.com"} for i in range(20)],
            "cc": [{"name": "\u4e2d\u6587", "email": "zh@example.cn"}],
            "bcc": [{"email": "hidden@example.com"}],
            "replyTo": [{"name": "=?utf-8?q?not-encoded?=", "email": "r@example.com"}],
            "subject": "W\u00f6rld domination \u2014 " + "long " * 30,
            "sentAt": "2018-07-10T11:03:11+10:00",
            "messageId": ["abc@example.com"],
            "inReplyTo": ["p1@x", "p2@x"],
            "references": [f"r{i}@example.com" for i in range(30)],
        }
        raw = compose(e)
        well_formed(raw)
        m = parse_message(raw)
        for prop in ("subject", "sentAt", "messageId", "inReplyTo", "references"):
            assert m.get([prop])[prop] == e[prop], prop
        for prop in ("from", "sender", "to", "cc", "replyTo"):
            assert m.get([prop])[prop] == e[prop], prop
        assert m.bcc == [{"name": None, "email": "hidden@example.com"}]
        # ASCII header lines are folded to 78 columns
        assert all(len(line) <= 78 for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"))

    def test_header_forms(self) -> None:
        e = {
            "header:X-Raw": " raw value\r\n folded",
            "header:X-Text:asText": "caf\u00e9 =?not?q?decoded?=",
            "header:X-Addr:asGroupedAddresses": [
                {"name": "Team", "addresses": [{"name": "A", "email": "a@x"}, {"email": "b@x"}]},
                {"name": None, "addresses": [{"email": "c@x"}]},
                {"name": "Empty", "addresses": []},
            ],
            "header:X-Ids:asMessageIds": ["1@x"],
            "header:X-When:asDate": "2020-02-29T23:59:59-08:00",
            "header:List-Post:asURLs": ["mailto:l@x", "https://x/y"],
            "header:X-Multi:all": [" one", " two"],
            "header:X-Multi-Text:asText:all": ["\u00e9", "plain"],
        }
        m = roundtrip(e)
        assert m.header("X-Raw") == " raw value\r\n folded"
        assert m.header("X-Text", "Text") == "caf\u00e9 =?not?q?decoded?="
        assert m.header("X-Addr", "GroupedAddresses") == [
            {
                "name": "Team",
                "addresses": [{"name": "A", "email": "a@x"}, {"name": None, "email": "b@x"}],
            },
            {"name": None, "addresses": [{"name": None, "email": "c@x"}]},
            {"name": "Empty", "addresses": []},
        ]
        assert m.header("X-Ids", "MessageIds") == ["1@x"]
        assert m.header("X-When", "Date") == "2020-02-29T23:59:59-08:00"
        assert m.header("List-Post", "URLs") == ["mailto:l@x", "https://x/y"]
        assert m.header("X-Multi", all=True) == [" one", " two"]
        assert m.header("X-Multi-Text", "Text", all=True) == ["\u00e9", "plain"]

    def test_date_and_message_id_generated(self) -> None:
        now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        raw = compose({"from": [{"email": "me@example.org"}]}, now=now)
        m = parse_message(raw)
        assert m.sent_at == "2024-03-01T12:00:00Z"
        (mid,) = m.message_id
        assert mid.endswith("@example.org")
        assert m.header("MIME-Version") == " 1.0"
        other = parse_message(compose({}, message_id_domain="host.test"))
        assert other.message_id[0].endswith("@host.test")
        assert other.sent_at is not None

    def test_null_values_skip_the_header(self) -> None:
        m = roundtrip({"subject": None, "header:X-A": None, "from": None})
        assert m.subject is None and m.header("X-A") is None and m.from_ is None


class TestBody:
    def test_rfc_example_body_structure(self) -> None:
        e = {
            "from": [{"name": "Joe Bloggs", "email": "joe@example.com"}],
            "subject": "World domination",
            "sentAt": "2018-07-10T11:03:11+10:00",
            "bodyStructure": {
                "type": "text/plain",
                "partId": "bd48",
                "header:Content-Language": "en",
            },
            "bodyValues": {
                "bd48": {
                    "value": "I have the most brilliant plan. Let me tell you all about it.",
                    "isTruncated": False,
                }
            },
        }
        raw = compose(e)
        well_formed(raw)
        m = parse_message(raw)
        assert m.subject == "World domination"
        assert m.header("Content-Language") == "en"  # raw value, as given
        (tb,) = m.text_body()
        assert tb["language"] == ["en"]
        assert m.body_value(tb["partId"])["value"] == e["bodyValues"]["bd48"]["value"]

    def test_text_only(self) -> None:
        m = roundtrip({"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "hi\nthere"}}})
        assert m.body_structure()["type"] == "text/plain"
        assert m.body_value("1")["value"] == "hi\nthere"

    def test_alternative_related_mixed(self) -> None:
        e = {
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "htmlBody": [{"partId": "h", "type": "text/html"}],
            "attachments": [
                {"blobId": "Bpng", "type": "image/png", "cid": "img1@x", "name": "p.png"},
                {"blobId": "Bpdf", "type": "application/pdf", "name": "R\u00e9sum\u00e9 " * 12},
                {"blobId": "Bmsg", "type": "message/rfc822"},
            ],
            "bodyValues": {
                "t": {"value": "plain \u00e9"},
                "h": {"value": '<p>html <img src="cid:img1@x"></p>'},
            },
        }
        raw = compose(e)
        well_formed(raw)
        m = parse_message(raw)
        bs = m.body_structure()
        assert bs["type"] == "multipart/mixed"
        alt = bs["subParts"][0]
        assert alt["type"] == "multipart/alternative"
        assert [p["type"] for p in alt["subParts"]] == ["text/plain", "multipart/related"]
        assert [p["type"] for p in alt["subParts"][1]["subParts"]] == ["text/html", "image/png"]
        assert [p["type"] for p in m.text_body()] == ["text/plain"]
        assert [p["type"] for p in m.html_body()] == ["text/html"]
        atts = m.attachments()
        assert [a["type"] for a in atts] == ["image/png", "application/pdf", "message/rfc822"]
        assert atts[0]["cid"] == "img1@x" and atts[0]["disposition"] == "inline"
        assert atts[1]["name"] == "R\u00e9sum\u00e9 " * 12
        assert m.part_bytes(atts[0]["partId"]) == BLOBS["Bpng"]
        assert m.part_bytes(atts[1]["partId"]) == BLOBS["Bpdf"]
        assert parse_message(m.part_bytes(atts[2]["partId"])).subject == "attached"
        assert m.body_value(m.text_body()[0]["partId"])["value"] == "plain \u00e9"
        assert m.has_attachment is True

    def test_html_only_and_attachments_only(self) -> None:
        m = roundtrip({"htmlBody": [{"partId": "h"}], "bodyValues": {"h": {"value": "<b>x</b>"}}})
        assert m.body_structure()["type"] == "text/html"
        m = roundtrip({"attachments": [{"blobId": "Bpdf", "type": "application/pdf"}]})
        assert m.body_structure()["type"] == "multipart/mixed"
        assert [a["disposition"] for a in m.attachments()] == [None]
        empty = roundtrip({})
        assert empty.body_structure()["type"] == "text/plain"

    def test_body_structure_tree(self) -> None:
        e = {
            "bodyStructure": {
                "type": "multipart/mixed",
                "subParts": [
                    {"partId": "a", "type": "text/plain"},
                    {
                        "blobId": "Bpng",
                        "type": "image/png",
                        "disposition": "attachment",
                        "name": "x.png",
                        "language": ["en", "fr"],
                        "location": "https://example.com/x.png",
                        "header:X-Part": " custom",
                    },
                    {"blobId": "Bpdf", "type": "text/plain", "charset": "iso-8859-1"},
                ],
            },
            "bodyValues": {"a": {"value": "one"}},
        }
        m = roundtrip(e)
        subs = m.body_structure()["subParts"]
        assert subs[1]["language"] == ["en", "fr"]
        assert subs[1]["location"] == "https://example.com/x.png"
        assert subs[2]["charset"] == "iso-8859-1"
        assert m.get(["bodyStructure"], body_properties=["header:X-Part"])["bodyStructure"][
            "subParts"
        ][1] == {"header:X-Part": " custom"}

    def test_transfer_encodings_keep_text_intact(self) -> None:
        text = "long " * 400 + "\n\u00e9t\u00e9 \n. \nend with spaces   \n" + "\u4e2d" * 500
        raw = compose({"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": text}}})
        well_formed(raw)
        assert b"quoted-printable" in raw or b"base64" in raw
        assert (
            roundtrip(
                {"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": text}}}
            ).body_value("1")["value"]
            == text
        )
        ascii_raw = compose({"textBody": [{"partId": "t"}], "bodyValues": {"t": {"value": "a\nb"}}})
        assert b"Content-Transfer-Encoding: 7bit" in ascii_raw and b"a\r\nb" in ascii_raw


# --- compose -> parse round trip over the corpus ----------------------------------------------


def _norm(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_roundtrip(path: Path) -> None:
    """Rebuild each corpus message from its parsed Email (as a client would when editing a
    draft) and check subject, addresses, body text and attachments survive."""
    src = parse_message(path.read_bytes())
    blobs: dict[str, bytes] = {}
    email: dict = {"bodyValues": {}}
    for prop in ("from", "to", "cc", "bcc", "replyTo", "sender"):
        v = src.get([prop])[prop]
        if v is not None:
            email[prop] = v
    if src.subject is not None:
        email["subject"] = src.subject
    text = "".join(
        src.body_value(p["partId"])["value"] for p in src.text_body() if p["type"] == "text/plain"
    )
    html_parts = [p for p in src.html_body() if p["type"] == "text/html"]
    html = "".join(src.body_value(p["partId"])["value"] for p in html_parts)
    email["bodyValues"]["t"] = {"value": text}
    email["textBody"] = [{"partId": "t", "type": "text/plain"}]
    if html_parts:
        email["bodyValues"]["h"] = {"value": html}
        email["htmlBody"] = [{"partId": "h", "type": "text/html"}]
    atts = []
    for i, a in enumerate(src.attachments()):
        blob_id = f"B{i}"
        blobs[blob_id] = src.part_bytes(a["partId"])
        part = {"blobId": blob_id, "type": a["type"], "name": a["name"], "cid": a["cid"]}
        part["disposition"] = "inline" if a["cid"] and html_parts else "attachment"
        atts.append(part)
    email["attachments"] = atts
    raw = compose_message(email, blobs.get)
    well_formed(raw)
    back = parse_message(raw)
    assert back.subject == email.get("subject")
    for prop in ("from", "to", "cc", "bcc", "replyTo", "sender"):
        assert back.get([prop])[prop] == email.get(prop), prop
    got_text = "".join(
        back.body_value(p["partId"])["value"] for p in back.text_body() if p["type"] == "text/plain"
    )
    assert _norm(got_text) == _norm(text)
    if html_parts:
        got_html = "".join(
            back.body_value(p["partId"])["value"]
            for p in back.html_body()
            if p["type"] == "text/html"
        )
        assert _norm(got_html) == _norm(html)
    got = back.attachments()
    assert len(got) == len(atts)
    for orig, new in zip(atts, got, strict=True):
        assert new["type"] == orig["type"]
        assert new["name"] == orig["name"]
        data = back.part_bytes(new["partId"])
        if orig["type"].startswith("message/"):
            assert re.sub(rb"\r?\n", b"\n", data) == re.sub(rb"\r?\n", b"\n", blobs[orig["blobId"]])
        else:
            assert data == blobs[orig["blobId"]]
