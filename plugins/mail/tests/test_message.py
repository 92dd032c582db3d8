"""jmap_host_mail.message, organised by RFC 8621 section."""

from __future__ import annotations

import base64
import json
import random
import time
from pathlib import Path

import pytest
from jmap_host_mail.message import (
    MAX_DEPTH,
    base_subject,
    decode_text,
    header_form,
    header_property_ok,
    html_to_text,
    invalid_properties,
    parse_header_property,
    parse_message,
)

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.eml"))
ALL_PROPS = [
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "headers",
    "size",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "hasAttachment",
    "preview",
    "header:Subject:asText:all",
    "header:From:asGroupedAddresses",
    "header:Date:asDate:all",
    "header:List-Unsubscribe:asURLs",
    "header:X-Unknown:asMessageIds",
]
ALL_BODY_PROPS = [
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
    "header:Content-Type:asText",
]


def msg(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def corpus(name: str):
    return parse_message((Path(__file__).parent / "corpus" / name).read_bytes())


def hdr(value: str, form: str):
    return header_form(value, form)


# --- the awkward corpus: never raise, always JSON -------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_parses_to_json(path: Path) -> None:
    raw = path.read_bytes()
    m = parse_message(raw)
    props = m.get(
        ALL_PROPS,
        blob_id_for=lambda pid: "B-" + pid,
        body_properties=ALL_BODY_PROPS,
        fetch_all_body_values=True,
        max_body_value_bytes=100,
    )
    # strict UTF-8 JSON: no lone surrogates, nothing exotic
    json.dumps(props, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert props["size"] == len(raw)
    assert len(props["preview"]) <= 256
    for pid in m.part_ids:
        assert isinstance(m.part_bytes(pid), bytes)
        bv = m.body_value(pid, 50)
        assert len(bv["value"].encode("utf-8")) <= 50
        json.dumps(m.body_value(pid)).encode("utf-8")

    def walk(part):
        assert (part["partId"] is None) == part["type"].startswith("multipart/")
        assert (part["blobId"] is None) == (part["partId"] is None)
        if part["partId"] is not None:
            assert part["size"] == len(m.part_bytes(part["partId"]))
            assert part["subParts"] is None
        for sub in part.get("subParts") or []:
            walk(sub)

    walk(props["bodyStructure"])
    assert m.thread_keys() is not None


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 25


@pytest.mark.parametrize("seed", range(4))
def test_mutated_corpus_never_raises(seed: int) -> None:
    rnd = random.Random(seed)
    small = [p.read_bytes() for p in CORPUS if p.stat().st_size < 20000]
    for _ in range(150):
        data = bytearray(rnd.choice(small))
        for _ in range(rnd.randrange(1, 12)):
            if not data:
                break
            op = rnd.randrange(4)
            i = rnd.randrange(len(data))
            if op == 0:
                data[i] = rnd.randrange(256)
            elif op == 1:
                del data[i : i + rnd.randrange(1, 40)]
            elif op == 2:
                data[i:i] = rnd.choice([b"\r\n", b"\n--", b"=?utf-8?b?", b"\x00", b";", b'"', b"<"])
            else:
                j = rnd.randrange(len(data))
                data[i:i] = data[j : j + 60]
        m = parse_message(bytes(data))
        json.dumps(
            m.get(ALL_PROPS, body_properties=ALL_BODY_PROPS, fetch_all_body_values=True)
        ).encode("utf-8")


def test_non_bytes_like_inputs() -> None:
    assert parse_message(bytearray(b"Subject: x\r\n\r\nhi")).subject == "x"
    assert parse_message(memoryview(b"Subject: y\r\n\r\nhi")).subject == "y"


def test_five_megabyte_message_is_fast() -> None:
    blob = random.Random(5).randbytes(3_500_000)
    b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    text = "Lorem ipsum dolor sit amet. " * 20000
    raw = (
        msg(
            "From: a@example.com\nSubject: big\nContent-Type: multipart/mixed; boundary=BIG\n\n"
            "--BIG\nContent-Type: text/plain\n\n" + text + "\n--BIG\n"
            "Content-Type: application/octet-stream; name=big.bin\n"
            "Content-Transfer-Encoding: base64\n\n"
        )
        + b64.encode()
        + b"\r\n--BIG--\r\n"
    )
    assert len(raw) > 5_000_000
    start = time.perf_counter()
    m = parse_message(raw)
    m.get(ALL_PROPS, fetch_text_body_values=True, max_body_value_bytes=1000)
    elapsed = time.perf_counter() - start
    assert m.part_bytes("2") == blob
    assert elapsed < 0.5, elapsed


# --- §4.1.2.1 Raw ---------------------------------------------------------------------------


class TestRaw:
    def test_leading_space_and_folding_kept(self) -> None:
        m = parse_message(b"Subject: hello\r\n  world\r\nX-A:tight\r\n\r\n")
        assert m.header("Subject") == " hello\r\n  world"
        assert m.header("x-a") == "tight"
        assert m.headers == [
            {"name": "Subject", "value": " hello\r\n  world"},
            {"name": "X-A", "value": "tight"},
        ]

    def test_invalid_utf8_replaced_and_nul_dropped(self) -> None:
        m = parse_message(b"Subject: caf\xe9 \xc3\xa9\x00!\r\n\r\n")
        assert m.header("Subject") == " caf\ufffd \u00e9!"

    def test_absent_is_null_and_all_is_empty(self) -> None:
        m = parse_message(b"Subject: a\r\n\r\n")
        assert m.header("X-Nope") is None
        assert m.header("X-Nope", all=True) == []

    def test_last_instance_and_all(self) -> None:
        m = parse_message(b"X-T: 1\r\nx-t: 2\r\nX-T: 3\r\n\r\n")
        assert m.header("X-T") == " 3"
        assert m.header("x-T", "Raw", all=True) == [" 1", " 2", " 3"]


# --- §4.1.2.2 Text --------------------------------------------------------------------------


class TestText:
    def test_unfold_and_strip_leading_space(self) -> None:
        assert hdr("  Hello\r\n world", "Text") == "Hello world"

    def test_rfc2047_decoding(self) -> None:
        assert hdr(" =?ISO-8859-1?Q?Andr=E9?= Pirard", "Text") == "Andr\u00e9 Pirard"
        assert hdr(" =?UTF-8?B?8J+Ygg==?=", "Text") == "\U0001f602"

    def test_whitespace_between_encoded_words_dropped(self) -> None:
        assert hdr(" =?utf-8?q?a?= =?utf-8?q?b?=\r\n =?utf-8?q?c?= d", "Text") == "abc d"

    def test_multibyte_char_split_across_words(self) -> None:
        assert hdr(" =?utf-8?q?caf=C3?= =?utf-8?q?=A9?=", "Text") == "caf\u00e9"

    def test_placement_rules(self) -> None:
        assert hdr(" x=?utf-8?q?a?=", "Text") == "x=?utf-8?q?a?="
        assert hdr(" =?utf-8?q?a?==?utf-8?q?b?=", "Text") == "=?utf-8?q?a?==?utf-8?q?b?="

    def test_unknown_charset_left_alone(self) -> None:
        assert hdr(" =?x-klingon?q?a?=", "Text") == "=?x-klingon?q?a?="

    def test_control_characters_dropped(self) -> None:
        assert hdr(" =?utf-8?q?a=00b=07c?=", "Text") == "abc"

    def test_nfc(self) -> None:
        assert hdr(" =?utf-8?q?e=CC=81?=", "Text") == "\u00e9"

    def test_subject_convenience(self) -> None:
        assert corpus("07-rfc2047-odd-places.eml").subject == (
            "split \u00e9 char and=?utf-8?q?notdecoded?= \U0001f602"
        )


# --- §4.1.2.3 Addresses, §4.1.2.4 GroupedAddresses -----------------------------------------

RFC_ADDRESSES = (
    '"  James Smythe" <james@example.com>, Friends:\r\n'
    "  jane@example.com, =?UTF-8?Q?John_Sm=C3=AEth?=\r\n  <john@example.com>;"
)


class TestAddresses:
    def test_rfc_example(self) -> None:
        assert hdr(RFC_ADDRESSES, "Addresses") == [
            {"name": "James Smythe", "email": "james@example.com"},
            {"name": None, "email": "jane@example.com"},
            {"name": "John Sm\u00eeth", "email": "john@example.com"},
        ]

    def test_grouped_rfc_example(self) -> None:
        assert hdr(RFC_ADDRESSES, "GroupedAddresses") == [
            {"name": None, "addresses": [{"name": "James Smythe", "email": "james@example.com"}]},
            {
                "name": "Friends",
                "addresses": [
                    {"name": None, "email": "jane@example.com"},
                    {"name": "John Sm\u00eeth", "email": "john@example.com"},
                ],
            },
        ]

    def test_comment_after_addr_spec_is_the_name(self) -> None:
        assert hdr(" bob@example.org (Bob Smith)", "Addresses") == [
            {"name": "Bob Smith", "email": "bob@example.org"}
        ]

    def test_quoted_pairs_and_quoted_encoded_words(self) -> None:
        assert hdr(' "A \\"B\\" C" <a@b>, "=?utf-8?b?SsO8cmdlbg==?=" <j@x>', "Addresses") == [
            {"name": 'A "B" C', "email": "a@b"},
            {"name": "J\u00fcrgen", "email": "j@x"},
        ]

    def test_empty_group_and_consecutive_ungrouped(self) -> None:
        v = " a@x, undisclosed-recipients:;, b@x, c@x"
        assert hdr(v, "GroupedAddresses") == [
            {"name": None, "addresses": [{"name": None, "email": "a@x"}]},
            {"name": "undisclosed-recipients", "addresses": []},
            {
                "name": None,
                "addresses": [{"name": None, "email": "b@x"}, {"name": None, "email": "c@x"}],
            },
        ]
        assert hdr(v, "Addresses") == [
            {"name": None, "email": "a@x"},
            {"name": None, "email": "b@x"},
            {"name": None, "email": "c@x"},
        ]

    def test_best_effort_on_broken_input(self) -> None:
        m = corpus("28-groups-and-comments.eml")
        assert m.cc == [
            {"name": "Bob Comment", "email": "bob@example.org"},
            {"name": 'Quoted "Name"', "email": "q@example.org"},
            {"name": "broken", "email": "unclosed@example.org"},
        ]
        assert m.reply_to == [{"name": None, "email": "routed@example.com"}]
        assert {"name": None, "email": "no-at-sign"} in m.bcc
        assert hdr(" ", "Addresses") == []
        assert hdr(" John Smith john@x", "Addresses") == [{"name": "John Smith", "email": "john@x"}]

    def test_8bit_utf8_addresses(self) -> None:
        m = corpus("06-8bit-headers.eml")
        assert m.from_ == [{"name": "J\u00fcrgen M\u00fcller", "email": "juergen@example.de"}]

    def test_convenience_properties(self) -> None:
        m = corpus("01-simple-plain.eml")
        assert m.get(["from", "to", "cc", "bcc", "sender", "replyTo"]) == {
            "from": [{"name": "Alice Example", "email": "alice@example.com"}],
            "to": [{"name": "Bob", "email": "bob@example.org"}],
            "cc": None,
            "bcc": None,
            "sender": None,
            "replyTo": None,
        }


# --- §4.1.2.5 MessageIds ----------------------------------------------------------------------


class TestMessageIds:
    def test_list_with_cfws(self) -> None:
        assert hdr(" <a@b> (c)\r\n <c@d>\t<e\r\n @f>", "MessageIds") == ["a@b", "c@d", "e@f"]

    def test_unparseable_is_null(self) -> None:
        assert hdr(" garbage", "MessageIds") is None
        assert hdr(" ", "MessageIds") is None

    def test_bare_id_accepted(self) -> None:
        assert hdr(" abc@example.com", "MessageIds") == ["abc@example.com"]

    def test_convenience(self) -> None:
        m = corpus("36-mbox-from-line.eml")
        assert m.message_id == ["m3@example.com"]
        assert m.in_reply_to == ["r2@example.com"]
        assert m.references == ["r1@example.com", "r2@example.com"]


# --- §4.1.2.6 Date --------------------------------------------------------------------------


class TestDate:
    def test_offset_preserved(self) -> None:
        assert hdr(" Tue, 10 Jul 2018 11:03:11 +1000", "Date") == "2018-07-10T11:03:11+10:00"
        assert hdr(" Thu, 13 Feb 69 23:32 -0330 (NT)", "Date") == "1969-02-13T23:32:00-03:30"

    def test_utc(self) -> None:
        assert hdr(" Mon, 2 Oct 2023 09:15:00 +0000", "Date") == "2023-10-02T09:15:00Z"
        assert hdr(" Mon, 2 Oct 2023 09:15:00 -0000", "Date") == "2023-10-02T09:15:00Z"
        assert hdr(" Mon, 2 Oct 2023 09:15:00 GMT", "Date") == "2023-10-02T09:15:00Z"

    def test_invalid_is_null(self) -> None:
        assert hdr(" not a date", "Date") is None
        assert hdr(" 31 Feb 2023 10:00:00 +0000", "Date") is None
        assert hdr(" 1 Jan 2023 10:00:00 +9999", "Date") is None

    def test_sent_at(self) -> None:
        assert corpus("01-simple-plain.eml").sent_at == "2023-10-02T09:15:00+02:00"
        m = corpus("29-bad-dates.eml")
        assert m.sent_at is None  # the last Date field is invalid
        assert m.header("Date", "Date", all=True) == [None, None]
        assert m.header("Resent-Date", "Date") == "1969-02-13T23:32:00-03:30"


# --- §4.1.2.7 URLs --------------------------------------------------------------------------


class TestURLs:
    def test_list_headers(self) -> None:
        m = corpus("37-html-only.eml")
        assert m.header("List-Post", "URLs") == ["mailto:list@example.com"]
        assert m.header("List-Unsubscribe", "URLs") == [
            "https://example.com/unsub?id=1",
            "mailto:unsub@example.com?subject=unsub",
        ]
        assert m.header("List-Help", "URLs") is None


# --- §4.1.2 which forms on which fields; §4.1.3 property syntax --------------------------------


class TestFormsAllowed:
    @pytest.mark.parametrize(
        ("name", "form", "ok"),
        [
            ("From", "Addresses", True),
            ("from", "GroupedAddresses", True),
            ("Resent-Reply-To", "Addresses", True),
            ("From", "Date", False),
            ("From", "Text", False),
            ("Subject", "Text", True),
            ("Subject", "Addresses", False),
            ("List-Id", "Text", True),
            ("Keywords", "Text", True),
            ("Message-ID", "MessageIds", True),
            ("Message-ID", "Text", False),
            ("Date", "Date", True),
            ("Resent-Date", "Date", True),
            ("Date", "Text", False),
            ("List-Post", "URLs", True),
            ("List-Post", "Text", False),
            ("Received", "Text", False),
            ("Received", "Raw", True),
            ("X-Custom", "Addresses", True),
            ("X-Custom", "URLs", True),
            ("X-Custom", "asDate", True),
            ("X-Custom", "Bogus", False),
        ],
    )
    def test_matrix(self, name: str, form: str, ok: bool) -> None:
        assert header_property_ok(name, form) is ok

    def test_parse_header_property(self) -> None:
        assert parse_header_property("header:Subject") == ("Subject", "Raw", False)
        assert parse_header_property("header:X:asText:all") == ("X", "Text", True)
        assert parse_header_property("header:X:all") == ("X", "Raw", True)
        assert parse_header_property("header:X:all:asText") is None
        assert parse_header_property("header:X:asNope") is None
        assert parse_header_property("header::asText") is None
        assert parse_header_property("header:A B") is None
        assert parse_header_property("subject") is None

    def test_invalid_properties(self) -> None:
        props = ["subject", "header:From:asDate", "header:x:asText", "header:Bad:asWhat"]
        assert invalid_properties(props) == ["header:From:asDate", "header:Bad:asWhat"]

    def test_get_keeps_request_capitalisation(self) -> None:
        m = corpus("37-html-only.eml")
        assert m.get(["header:LIST-post:asURLs"]) == {
            "header:LIST-post:asURLs": ["mailto:list@example.com"]
        }


# --- §4.1.4 body parts ----------------------------------------------------------------------


class TestBodyParts:
    def test_rfc_decomposition_example(self) -> None:
        m = corpus("26-rfc8621-structure.eml")

        def letters(parts):
            return [m.part_bytes(p["partId"]).decode().strip()[-1] for p in parts]

        assert letters(m.text_body()) == list("ABCDK")
        assert letters(m.html_body()) == list("AEK")
        assert letters(m.attachments()) == list("CFGHJ")
        assert m.has_attachment is True

    def test_part_ids_and_blob_callback(self) -> None:
        m = corpus("21-inline-images-cid.eml")
        bs = m.body_structure(lambda pid: f"G1-{pid}")
        assert bs["partId"] is None and bs["blobId"] is None
        assert bs["type"] == "multipart/alternative"
        rel = bs["subParts"][1]
        assert rel["type"] == "multipart/related"
        assert [p["partId"] for p in rel["subParts"]] == ["2.1", "2.2"]
        img = rel["subParts"][1]
        assert img["blobId"] == "G1-2.2"
        assert img["cid"] == "logo@x"
        assert img["name"] == "logo.png"
        assert img["disposition"] == "inline"
        assert img["size"] == len(m.part_bytes("2.2")) == 48
        assert m.part_bytes("2.2").startswith(b"\x89PNG")
        assert m.part_ids == ["1", "2.1", "2.2"]
        assert [p["partId"] for p in m.text_body()] == ["1"]
        assert [p["partId"] for p in m.html_body()] == ["2.1"]
        assert [p["partId"] for p in m.attachments()] == ["2.2"]
        assert m.has_attachment is False  # only an inline image

    def test_type_and_charset_rules(self) -> None:
        m = corpus("39-weird-content-types.eml")
        parts = m.body_structure()["subParts"]
        assert [p["type"] for p in parts] == ["text/plain", "text/html", "text/plain", "image/gif"]
        assert [p["charset"] for p in parts] == ["us-ascii", "UTF-8", "us-ascii", None]
        assert parts[1]["disposition"] == "inline"
        assert parts[3]["language"] == ["en", "fr"]
        assert parts[3]["location"] == "http://example.com/a.gif"
        nohdr = parse_message(b"\r\nbody").body_structure()
        assert (nohdr["type"], nohdr["charset"]) == ("text/plain", "us-ascii")

    def test_digest_default_type(self) -> None:
        parts = corpus("27-digest.eml").body_structure()["subParts"]
        assert [p["type"] for p in parts] == ["message/rfc822", "message/rfc822"]

    def test_names_rfc2231_and_rfc2047(self) -> None:
        atts = corpus("30-rfc2231-filenames.eml").attachments()
        assert [a["name"] for a in atts] == ["R\u00e9sum\u00e9 tr\u00e8s long.pdf", "caf\u00e9.txt"]
        assert corpus("07-rfc2047-odd-places.eml").text_body()[0]["name"] == "rapport.txt"

    def test_headers_of_parts(self) -> None:
        bs = corpus("21-inline-images-cid.eml").body_structure()
        assert bs["headers"][0] == {"name": "From", "value": " a@example.com"}
        assert bs["subParts"][0]["headers"] == [{"name": "Content-Type", "value": " text/plain"}]

    def test_body_properties_filter_and_part_header_properties(self) -> None:
        m = corpus("21-inline-images-cid.eml")
        got = m.get(
            ["attachments", "bodyStructure"],
            body_properties=["partId", "header:Content-ID:asMessageIds", "type"],
        )
        assert got["attachments"] == [
            {"partId": "2.2", "type": "image/png", "header:Content-ID:asMessageIds": ["logo@x"]}
        ]
        assert got["bodyStructure"]["subParts"][0] == {
            "partId": "1",
            "type": "text/plain",
            "header:Content-ID:asMessageIds": None,
        }

    def test_default_body_properties(self) -> None:
        part = corpus("01-simple-plain.eml").get(["textBody"])["textBody"][0]
        assert list(part) == [
            "partId",
            "blobId",
            "size",
            "name",
            "type",
            "charset",
            "disposition",
            "cid",
            "language",
            "location",
        ]

    def test_transfer_encodings(self) -> None:
        assert corpus("17-base64-garbage.eml").body_value("1") == {
            "value": "Hello world",
            "isEncodingProblem": True,
            "isTruncated": False,
        }
        qp = corpus("18-qp-soft-breaks.eml").body_value("1")["value"]
        assert "this line is softly broken" in qp and "Caf\u00e9" in qp
        assert corpus("40-encoded-cte-uuencode.eml").part_bytes("2") == b"hello world\n"
        assert corpus("32-unknown-cte.eml").body_value("1")["isEncodingProblem"] is True

    def test_missing_boundaries(self) -> None:
        m = corpus("03-missing-close-boundary.eml")
        assert m.part_bytes("2") == bytes(range(10))
        for name in ("02-broken-boundary.eml", "31-no-boundary-param.eml"):
            bs = corpus(name).body_structure()
            assert bs["type"] == "text/plain" and bs["partId"] == "1"

    def test_boundary_prefix_of_outer(self) -> None:
        m = corpus("35-boundary-prefix.eml")
        assert [p["partId"] for p in m.text_body()] == ["1.1"]
        assert m.body_value("1.2")["value"] == "<b>html</b>"

    def test_nesting_cap(self) -> None:
        m = corpus("09-deep-nesting.eml")
        (opaque,) = m.attachments()
        assert opaque["type"] == "application/octet-stream"
        assert opaque["partId"].count(".") == MAX_DEPTH - 1
        assert b"innermost" in m.part_bytes(opaque["partId"])

    def test_parts_cap(self) -> None:
        m = corpus("34-many-parts.eml")
        ids = m.part_ids
        assert len(ids) < 2100
        assert m.part_type(ids[-1]) == "application/octet-stream"
        assert m.part_bytes(ids[-1]).rstrip().endswith(b"part 2999")

    def test_nested_rfc822_is_a_leaf_and_reparses(self) -> None:
        m = corpus("10-nested-rfc822.eml")
        (att,) = m.attachments()
        assert att["type"] == "message/rfc822" and att["name"] == "middle.eml"
        middle = parse_message(m.part_bytes(att["partId"]))
        assert middle.subject == "middle"
        inner = parse_message(middle.part_bytes("1"))
        assert inner.subject == "innermost"
        assert inner.body_value("1")["value"] == "innermost text\n"

    def test_line_endings(self) -> None:
        assert corpus("15-bare-lf.eml").body_value("1")["value"] == "line one\nline two"
        assert corpus("16-cr-only.eml").body_value("1")["value"] == "old mac\nstyle\n"

    def test_empty_and_headerless(self) -> None:
        e = corpus("11-empty.eml")
        assert e.headers == [] and e.size == 0 and e.preview == ""
        n = corpus("12-no-headers.eml")
        assert n.headers == [] and n.preview.startswith("This message has no header")
        o = corpus("13-only-headers.eml")
        assert o.subject == "only headers, no blank line, no body"
        assert o.body_value("1")["value"] == ""

    def test_mbox_line_skipped_but_spaced_from_header_kept(self) -> None:
        assert corpus("36-mbox-from-line.eml").headers[0]["name"] == "From"
        assert parse_message(b"From : a@b\r\n\r\n").from_ == [{"name": None, "email": "a@b"}]

    def test_garbage_header_line_starts_body(self) -> None:
        m = corpus("38-header-garbage-line.eml")
        assert [h["name"] for h in m.headers] == ["From", "Subject"]
        assert m.body_value("1")["value"].startswith("this line has no colon")


class TestPreview:
    def test_collapsed_and_capped(self) -> None:
        m = parse_message(msg("Subject: x\n\n  a\n\n\tb   " + "word " * 200))
        assert m.preview.startswith("a b word word")
        assert len(m.preview) == 256

    def test_html_preview(self) -> None:
        assert corpus("37-html-only.eml").preview == (
            "Caf\u00e9 & cr\u00e8me \u20ac5 link second para 3 < 4 stray bracket"
        )

    def test_html_to_text(self) -> None:
        assert html_to_text("<p>a<br>b</p><script>x</script>&lt;c&gt;") == "\na\nb\n <c>"
        assert html_to_text("<style>unterminated") == " unterminated"
        assert html_to_text("a < b > c") == "a   c"
        html_to_text("<" * 100000 + "<script" * 1000)  # linear, no blow-up


# --- §4.2 bodyValues ----------------------------------------------------------------------


class TestBodyValues:
    def test_fetch_flags(self) -> None:
        m = corpus("20-calendar.eml")
        assert list(m.body_values(fetch_text=True)) == ["1"]
        assert list(m.body_values(fetch_html=True)) == ["1"]
        assert list(m.body_values(fetch_all=True)) == ["1", "2"]  # text/calendar, not the ics
        h = corpus("21-inline-images-cid.eml")
        assert list(h.body_values(fetch_html=True)) == ["2.1"]
        assert list(h.body_values(fetch_text=True, fetch_html=True)) == ["1", "2.1"]
        assert h.get(["bodyValues"]) == {"bodyValues": {}}

    def test_truncation_on_codepoint_boundary(self) -> None:
        m = parse_message(
            msg("Content-Type: text/plain; charset=utf-8\n\n\u00e9\u00e9\u00e9\U0001f602")
        )
        assert m.body_value("1", 5) == {
            "value": "\u00e9\u00e9",
            "isEncodingProblem": False,
            "isTruncated": True,
        }
        assert m.body_value("1", 9)["value"] == "\u00e9\u00e9\u00e9"
        assert m.body_value("1", 10) == {
            "value": "\u00e9\u00e9\u00e9\U0001f602",
            "isEncodingProblem": False,
            "isTruncated": False,
        }

    def test_truncation_not_inside_html_tag(self) -> None:
        m = parse_message(msg('Content-Type: text/html\n\n<p>Hello <a href="https://x">y</a>'))
        assert m.body_value("1", 14)["value"] == "<p>Hello "

    def test_truncation_with_wide_source_charset(self) -> None:
        body = "abc" * 50
        raw = b"Content-Type: text/plain; charset=utf-32\r\n\r\n" + body.encode("utf-32")
        v = parse_message(raw).body_value("1", 100)
        assert v["value"] == body[:100] and v["isTruncated"] is True

    def test_encoding_problems(self) -> None:
        m = corpus("05-mislabeled-charset.eml")
        assert m.body_value("1") == {
            "value": "Caf\u00e9 labelled ascii but really UTF-8",
            "isEncodingProblem": False,
            "isTruncated": False,
        }
        v = m.body_value("2")
        assert v["isEncodingProblem"] is True and v["value"].startswith("Caf\u00e9")
        u = corpus("04-unknown-charset.eml").body_value("1")
        assert u["isEncodingProblem"] is True and "Qapla'" in u["value"]

    def test_crlf_to_lf_and_charsets(self) -> None:
        assert corpus("01-simple-plain.eml").body_value("1")["value"] == (
            "Hello Bob,\n\nthis is a simple message.\n"
        )
        assert corpus("33-utf16-text.eml").body_value("1")["value"] == "Hello UTF-16 \u00e9\u4e2d"
        assert corpus("37-html-only.eml").body_value("1")["value"].count("Caf\u00e9") == 1

    def test_decode_text(self) -> None:
        assert decode_text(b"caf\xe9", "iso-8859-1") == ("caf\u00e9", False)
        assert decode_text(b"\x93q\x94", "windows-1252") == ("\u201cq\u201d", False)
        assert decode_text(b"x", "base64") == ("x", True)  # not a text codec
        assert decode_text(b"\xa4\xa4", "big5")[1] is False
        assert decode_text(b"\xff\xfe", "ks_c_5601-1987")[1] is True


# --- threading inputs (RFC 5256 base subject) ----------------------------------------------


class TestThreading:
    @pytest.mark.parametrize(
        ("subject", "base"),
        [
            ("Re: Hello", "hello"),
            ("RE: re: Fwd:  Hello  World (fwd)", "hello world"),
            ("[list] Re: [other] Hello", "hello"),
            ("[Fwd: Re: Hello]", "hello"),
            ("AW: WG: Hallo", "hallo"),
            ("Re[2]: x", "x"),
            ("[only a tag]", "[only a tag]"),
            ("", ""),
            (None, ""),
        ],
    )
    def test_base_subject(self, subject, base) -> None:
        assert base_subject(subject) == base

    def test_thread_keys(self) -> None:
        ids, subject = corpus("36-mbox-from-line.eml").thread_keys()
        assert ids == ["m3@example.com", "r1@example.com", "r2@example.com"]
        assert subject == "starts with an mbox from_ line"
        assert corpus("37-html-only.eml").thread_keys().base_subject == "html only"


# --- robustness of the email-package based parser -------------------------------------------


class TestEmailPackageEdges:
    def test_obsolete_space_before_colon_in_top_header_block(self) -> None:
        m = parse_message(b"Subject : spaced\r\nFrom:\ta@b\r\n\r\nbody")
        assert m.headers == [
            {"name": "Subject", "value": " spaced"},
            {"name": "From", "value": "\ta@b"},
        ]
        assert m.body_value("1")["value"] == "body"

    def test_rfc2231_value_wins_and_8bit_utf8_filename(self) -> None:
        raw = msg(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
            "Content-Type: application/pdf\n"
            'Content-Disposition: attachment; filename="fallback.pdf";'
            " filename*=utf-8''r%C3%A9el.pdf\n\nx\n--b\n"
            'Content-Type: application/pdf; name="R\u00e9sum\u00e9.pdf"\n\ny\n--b--\n'
        )
        atts = parse_message(raw).attachments()
        assert [a["name"] for a in atts] == ["r\u00e9el.pdf", "R\u00e9sum\u00e9.pdf"]

    def test_comments_in_mime_fields(self) -> None:
        raw = msg(
            "Content-Type: text/plain (plain text); charset=utf-8 (really)\n"
            "Content-Transfer-Encoding: base64 (encoded)\n\naMOp\n"
        )
        m = parse_message(raw)
        assert m.body_structure()["charset"] == "utf-8"
        assert m.body_value("1") == {
            "value": "h\u00e9",
            "isEncodingProblem": False,
            "isTruncated": False,
        }

    def test_message_parts_are_exact_leaves(self) -> None:
        inner = b"X-A:tight\r\nSubject:  two  spaces\r\n\r\nbody\r\n"
        for ctype in ("message/rfc822", "message/delivery-status", "message/global"):
            raw = (
                b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: "
                + ctype.encode()
                + b"\r\n\r\n"
                + inner
                + b"\r\n--b--\r\n"
            )
            m = parse_message(raw)
            assert m.part_ids == ["1"] and m.part_type("1") == ctype
            assert m.part_bytes("1") == inner

    def test_absurd_nesting_never_raises(self) -> None:
        deep = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(3000)
        )
        m = parse_message(b"Subject: deep\r\n" + deep + b"\r\ninner\r\n")
        assert m.subject == "deep" and len(m.part_ids) == 1
        assert b"inner" in m.part_bytes(m.part_ids[0])
        nested = b"Content-Type: message/rfc822\r\n\r\n" * 20000 + b"Subject: x\r\n\r\nhi"
        assert parse_message(nested).part_ids == ["1"]

    def test_deep_nesting_with_many_lines_is_not_quadratic(self) -> None:
        head = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
            for i in range(MAX_DEPTH + 5)
        )
        raw = head + b"Content-Type: text/plain\r\n\r\n" + b"x\r\n" * 300_000
        start = time.perf_counter()
        m = parse_message(raw)
        assert time.perf_counter() - start < 1.0
        assert m.part_ids[0].count(".") == MAX_DEPTH - 1

    def test_many_encoded_words_are_linear(self) -> None:
        raw = b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 50_000) + b"\r\n\r\nx"
        start = time.perf_counter()
        assert parse_message(raw).subject == "a" * 50_000
        assert time.perf_counter() - start < 1.0

    def test_bad_base64_encoded_word_stays(self) -> None:
        assert hdr(" =?utf-8?b?abcde?= =?utf-8?q?ok?=", "Text") == "=?utf-8?b?abcde?=ok"
