"""vCard in and out (RFC 6350, RFC 2426, vCard 2.1 quoted-printable; the RFC 9555 mapping
to JSContact): real-world exports (Google, Apple, Thunderbird, Android 2.1) keep every
field through an import and an export, by the CLI (``jmap-host contacts import|export``)
against a server's store, and ``ContactCard/parse`` reads vCard blobs (the
``urn:ietf:params:jmap:contacts:parse`` method Stalwart defines and jmaplib calls)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from jmap_host_contacts import jscontact, vcard

from jmap_host import account_id_for
from jmap_host.testing import running_server, write_config

SAMPLES = Path(__file__).parent / "vcards"
EXPORTERS = ["google", "apple", "thunderbird", "android21"]
ALICE = account_id_for("alice")
USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:contacts",
         "urn:ietf:params:jmap:contacts:parse"]  # fmt: skip


def sample(name: str) -> str:
    return (SAMPLES / f"{name}.vcf").read_text(encoding="utf-8")


def property_names(text: str) -> set[str]:
    """The (group.)NAME of every content line, upper case, unfolded."""
    names = set()
    for line in vcard.read_components(text):
        for name, lines in line.contents.items():
            for item in lines:
                names.add(((item.group + ".") if item.group else "") + name.upper())
    return names


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_every_field_survives_a_round_trip(exporter):
    """Each card becomes valid JSContact; written back as vCard 4.0 and read again it is
    the same card; and every property of the original is in the export (mapped ones
    under their 4.0 names: Apple's X-ADDRESSBOOKSERVER-* are KIND and MEMBER)."""
    text = sample(exporter)
    for card in vcard.parse(text):
        jscontact.validate_card(card)
        exported = vcard.from_card(card)
        assert vcard.parse(exported) == [card]
    renamed = {"X-ADDRESSBOOKSERVER-KIND": "KIND", "X-ADDRESSBOOKSERVER-MEMBER": "MEMBER"}
    original = {renamed.get(n, n) for n in property_names(text)} - {"VERSION"}
    exported_names = set()
    for card in vcard.parse(text):
        exported_names |= property_names(vcard.from_card(card))
    assert original <= exported_names | {"N"}, original - exported_names  # (Apple's empty N)


def test_the_mapping_of_rfc_9555():
    """The main properties land where RFC 9555 puts them, with the exporters' quirks
    handled: Google's escaped URL colons, Apple's item labels and TYPE=pref, 3.0's
    base64 photos, 2.1's quoted-printable and bare TYPE parameters."""
    google = vcard.parse(sample("google"))[0]
    assert google["name"]["components"] == [
        {"kind": "surname", "value": "Doe"}, {"kind": "given", "value": "Jane"},
    ]  # fmt: skip
    assert google["links"]["l1"]["uri"] == "https://example.com/jane"  # was https\:
    assert google["anniversaries"]["d1"]["date"] == {
        "@type": "PartialDate", "year": 1953, "month": 4, "day": 15,
    }  # fmt: skip
    assert google["emails"]["e1"]["contexts"] == {"private": True}
    assert google["organizations"]["o1"] == {"name": "ABC, Inc.", "units": [{"name": "Research"}]}
    assert google["notes"]["n1"]["note"] == "Met at the conference in Prague\nLikes chess."
    apple, group = vcard.parse(sample("apple"))
    assert apple["emails"]["e1"]["label"] == "Other" and apple["emails"]["e1"]["pref"] == 1
    assert apple["phones"]["p1"]["features"] == {"mobile": True, "voice": True}
    photo = apple["media"]["m1"]["uri"]
    assert photo.startswith("data:image/jpeg;base64,/9j/")
    assert base64.b64decode(photo.split(",", 1)[1])[:3] == b"\xff\xd8\xff"
    assert group["kind"] == "group"
    assert group["members"] == {"urn:uuid:0B2E2A3C-5D4F-4E5A-9B8C-7D6E5F4A3B2C": True}
    thunderbird = vcard.parse(sample("thunderbird"))[0]
    assert thunderbird["anniversaries"]["d1"]["date"] == {"@type": "PartialDate", "month": 6,
                                                          "day": 14}  # fmt: skip
    assert thunderbird["updated"] == "2024-01-02T03:04:05Z"
    assert thunderbird["preferredLanguages"]["l2"] == {"language": "en", "pref": 2}
    assert ["x-custom1", {}, "unknown", "abonnée"] in thunderbird["vCardProps"]
    android = vcard.parse(sample("android21"))[0]
    assert android["name"]["full"] == "Jörg Müller"
    assert android["phones"]["p1"] == {"number": "+49 170 1234567", "features": {"mobile": True},
                                       "pref": 1}  # fmt: skip
    assert android["notes"]["n1"]["note"] == (
        "Erste Zeile\nZweite Zeile, mit Komma und Fortsetzung"
    )
    with pytest.raises(vcard.VCardError):
        vcard.parse("not a vcard at all")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jmap_host", *args], capture_output=True, text=True, timeout=120
    )


def comparable(card: dict[str, Any]) -> dict[str, Any]:
    """A card without what the server sets (its ids, created, updated, a uid it made)."""
    out = {k: v for k, v in card.items() if k not in ("id", "addressBookIds", "created",
                                                       "updated")}  # fmt: skip
    out.pop("uid", None)
    for media in (out.get("media") or {}).values():
        media.pop("blobId", None)
        media.pop("mediaType", None)
    return {k: v for k, v in out.items() if v is not None}


def test_cli_import_export_keeps_every_field(tmp_path):
    """``jmap-host contacts import`` (with a progress bar, skipping what is there on a
    second run) and ``export`` through the server's store: the exported cards are the
    imported ones, photos inline again."""
    config = write_config(tmp_path)
    source = tmp_path / "all.vcf"
    source.write_text("".join(sample(e) for e in EXPORTERS), encoding="utf-8")
    first = cli("contacts", "import", "-c", str(config), "--account", "alice", str(source))
    assert first.returncode == 0, first.stderr
    assert "6 cards imported, 0 already there, 0 refused" in first.stdout
    assert "importing" in first.stderr  # the progress bar
    again = cli("contacts", "import", "-c", str(config), "--account", "alice", str(source))
    assert "0 cards imported, 6 already there" in again.stdout
    target = tmp_path / "out.vcf"
    out = cli("contacts", "export", "-c", str(config), "--account", "alice", str(target))
    assert out.returncode == 0, out.stderr
    exported = vcard.parse(target.read_text(encoding="utf-8"))
    originals = [c for e in EXPORTERS for c in vcard.parse(sample(e))]
    by_name = {c["name"]["full"]: comparable(c) for c in exported}
    for card in originals:
        assert by_name[card["name"]["full"]] == comparable(card), card["name"]["full"]
    missing = cli("contacts", "import", "-c", str(config), "--account", "nobody", str(source))
    assert missing.returncode == 1 and "no user or group" in missing.stderr


async def test_contact_card_parse(tmp_path):
    """``ContactCard/parse``: a vCard blob read as one Card, without storing it; a blob
    that is no vCard is notParsable, an unknown one notFound; jmaplib reads it."""
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient

    async with running_server(write_config(tmp_path)) as server:
        async with server.client("alice") as http:

            async def upload(data: bytes) -> str:
                reply = await http.post(f"/jmap/upload/{ALICE}/", content=data,
                                        headers={"Content-Type": "text/vcard"})  # fmt: skip
                return str(reply.json()["blobId"])

            card_blob = await upload(sample("thunderbird").encode())
            junk = await upload(b"hello")
            body = {"using": USING, "methodCalls": [["ContactCard/parse", {
                "accountId": ALICE, "blobIds": [card_blob, junk, "Gnope"]}, "p"]]}  # fmt: skip
            result = (await http.post("/jmap/api", json=body)).json()["methodResponses"][0][1]
            assert result["parsed"][card_blob]["name"]["full"] == "Émilie Durand"
            assert result["notParsable"] == [junk] and result["notFound"] == ["Gnope"]
            listed = await http.post("/jmap/api", json={"using": USING, "methodCalls": [[
                "ContactCard/query", {"accountId": ALICE}, "q"]]})  # fmt: skip
            assert listed.json()["methodResponses"][0][1]["ids"] == []  # nothing stored

        def parse() -> Any:
            with JMAPClient.connect(
                server.url + "/.well-known/jmap", auth=BasicAuth("alice", "alice-password")
            ) as client:
                with client.batch() as batch:
                    parsed = batch.contacts.contact_card.parse(blob_ids=[card_blob])
                return parsed.result.card_of(card_blob)

        card = await trio.to_thread.run_sync(parse)
        assert card.uid == "3c5b2f7a-1d2e-4f3a-9b8c-0123456789ab"
