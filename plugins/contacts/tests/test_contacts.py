"""JMAP for Contacts (RFC 9610) at the wire: the capability (§1.4.1), AddressBooks (§2:
the default one, onSuccessSetIsDefault, onDestroyRemoveContents, addressBookHasContents),
ContactCards (§3) as full JSContact (RFC 9553: validation with the path of the wrong value,
unknown and vendor-specific properties kept), uid unique per account, every filter of
§3.3.1 and sort of §3.3.2, Media as blobs (§3: data: URIs, image types, Blob/lookup),
groups, sharing through AddressBook rights, /copy, and an unmodified client (jmaplib)."""

from __future__ import annotations

import base64
from typing import Any

import trio

from jmap_host import account_id_for
from jmap_host.testing import AccountClient, running_server, write_config

CORE = "urn:ietf:params:jmap:core"
CONTACTS = "urn:ietf:params:jmap:contacts"
USING = [CORE, CONTACTS, "urn:ietf:params:jmap:blob", "urn:ietf:params:jmap:principals"]
ALICE, BOB, SALES = (account_id_for(n) for n in ("alice", "bob", "sales"))
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

# RFC 9553's examples, put together: a person with most property types.
JANE = {
    "@type": "Card",
    "version": "1.0",
    "uid": "urn:uuid:jane",
    "kind": "individual",
    "name": {
        "components": [
            {"kind": "title", "value": "Dr."},
            {"kind": "given", "value": "Jane"},
            {"kind": "surname", "value": "Doe"},
            {"kind": "surname2", "value": "Roe"},
        ],
        "isOrdered": True,
    },
    "nicknames": {"n1": {"name": "JD"}},
    "organizations": {"o1": {"name": "ABC, Inc.", "units": [{"name": "Research"}]}},
    "titles": {"t1": {"kind": "title", "name": "Research Scientist", "organizationId": "o1"}},
    "speakToAs": {"grammaticalGender": "feminine", "pronouns": {"p1": {"pronouns": "she/her"}}},
    "emails": {
        "e1": {"address": "jane@example.com", "contexts": {"work": True}, "pref": 1},
        "e2": {"address": "jane.home@example.org", "label": "home"},
    },
    "phones": {"p1": {"number": "+1-555-555-5555", "features": {"mobile": True, "voice": True}}},
    "onlineServices": {"s1": {"service": "Mastodon", "user": "@jane@example.social"}},
    "preferredLanguages": {"l1": {"language": "en", "pref": 1}},
    "addresses": {
        "a1": {
            "components": [
                {"kind": "number", "value": "54321"},
                {"kind": "separator", "value": " "},
                {"kind": "name", "value": "Oak St"},
                {"kind": "locality", "value": "Reston"},
                {"kind": "postcode", "value": "20190"},
            ],
            "countryCode": "US",
            "isOrdered": True,
            "timeZone": "America/New_York",
        }
    },
    "anniversaries": {
        "k1": {"kind": "birth", "date": {"year": 1953, "month": 4, "day": 15}},
        "k2": {"kind": "wedding", "date": {"@type": "Timestamp", "utc": "1990-06-01T12:00:00Z"}},
        "k3": {"kind": "death", "date": {"month": 1, "day": 2}},
    },
    "notes": {"n1": {"note": "Met at the conference in Prague", "author": {"name": "Bob"}}},
    "personalInfo": {"pi1": {"kind": "hobby", "value": "chess", "level": "high"}},
    "keywords": {"research": True},
    "links": {"l1": {"kind": "contact", "uri": "https://example.com/jane"}},
    "localizations": {"de": {"titles/t1/name": "Forscherin"}},
    "relatedTo": {"urn:uuid:john": {"relation": {"spouse": True}}},
    # Kept verbatim (RFC 9553 §1.7.4, §1.8.1): an unknown property with a registered-style
    # name, and a vendor-specific one, at the top and inside an object.
    "futureProperty": {"anything": [1, 2]},
    "example.com:crm-id": {"id": 42},
}


class Client(AccountClient):
    def __init__(self, http: Any, account: str):
        super().__init__(http, account, USING)

    async def default_book(self) -> str:
        books = (await self.ok("AddressBook/get", ids=None))["list"]
        return next(b["id"] for b in books if b["isDefault"])

    async def create(self, card: dict[str, Any]) -> dict[str, Any]:
        result = await self.ok("ContactCard/set", create={"c": card})
        assert result.get("created"), result
        return result["created"]["c"]

    async def not_created(self, card: dict[str, Any]) -> dict[str, Any]:
        result = await self.ok("ContactCard/set", create={"c": card})
        assert result.get("notCreated"), result
        return result["notCreated"]["c"]


async def connect(server: Any, user: str = "alice", account: str = ALICE) -> Client:
    http = server.client(user)
    await http.__aenter__()
    return Client(http, account)


async def test_capability_and_the_default_address_book(tmp_path):
    """§1.4.1: {} in the Session; maxAddressBooksPerCard and mayCreateAddressBook per
    account; §2: every account has one default AddressBook, with every right for its
    owner."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        session = (await alice.http.get("/jmap/session")).json()
        assert session["capabilities"][CONTACTS] == {}
        caps = session["accounts"][ALICE]["accountCapabilities"][CONTACTS]
        assert caps == {"maxAddressBooksPerCard": None, "mayCreateAddressBook": True}
        assert session["primaryAccounts"][CONTACTS] == ALICE
        [book] = (await alice.ok("AddressBook/get", ids=None))["list"]
        assert book["isDefault"] is True and book["name"] == "Personal"
        assert book["myRights"] == dict.fromkeys(
            ("mayRead", "mayWrite", "mayShare", "mayDelete"), True
        )
        assert book["shareWith"] is None and book["isSubscribed"] is True


async def test_address_book_set_default_and_destroy(tmp_path):
    """§2.3: onSuccessSetIsDefault moves isDefault (reported in created/updated), is
    ignored when anything failed; name rules; addressBookHasContents, and
    onDestroyRemoveContents destroying the cards in no other address book."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        personal = await alice.default_book()
        made = await alice.ok(
            "AddressBook/set",
            create={"w": {"name": "Work", "sortOrder": 2}, "bad": {"name": ""}},
            onSuccessSetIsDefault="#w",
        )
        work = made["created"]["w"]["id"]
        assert made["notCreated"]["bad"]["type"] == "invalidProperties"
        assert (await alice.default_book()) == personal  # something failed: ignored
        moved = await alice.ok(
            "AddressBook/set", update={work: {"description": "colleagues"}},
            onSuccessSetIsDefault=work,
        )  # fmt: skip
        assert moved["updated"][work] == {"isDefault": True}
        assert moved["updated"][personal] == {"isDefault": False}
        assert (await alice.default_book()) == work
        forced = await alice.ok("AddressBook/set", update={work: {"isDefault": False}})
        assert forced["notUpdated"][work]["type"] == "invalidProperties"  # server-set

        only_work = (await alice.create({"addressBookIds": {work: True}, "kind": "org"}))["id"]
        both = await alice.create({"addressBookIds": {work: True, personal: True}})
        refused = await alice.ok("AddressBook/set", destroy=[work])
        assert refused["notDestroyed"][work]["type"] == "addressBookHasContents"
        gone = await alice.ok("AddressBook/set", destroy=[work], onDestroyRemoveContents=True)
        assert gone["destroyed"] == [work]
        left = await alice.ok("ContactCard/get", ids=[only_work, both["id"]],
                              properties=["addressBookIds"])  # fmt: skip
        assert left["notFound"] == [only_work]
        assert left["list"][0]["addressBookIds"] == {personal: True}


async def test_a_full_jscontact_card_round_trips(tmp_path):
    """RFC 9553: a Card with every kind of property is stored and returned as given
    (unknown and vendor-specific properties included, §1.7.4, §1.8.1); created and
    updated are set by the server when not given; a uid is generated when missing and
    unique per account (RFC 9610 §3)."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        created = await alice.create({**JANE, "addressBookIds": {book: True}})
        assert set(created) >= {"id", "created", "updated"}
        got = (await alice.ok("ContactCard/get", ids=[created["id"]]))["list"][0]
        for key, value in JANE.items():
            assert got[key] == value, key
        assert got["addressBookIds"] == {book: True}
        assert got["created"] == created["created"]
        only = await alice.ok("ContactCard/get", ids=[created["id"]],
                              properties=["example.com:crm-id", "uid"])  # fmt: skip
        assert only["list"][0] == {"id": created["id"], "uid": "urn:uuid:jane",
                                   "example.com:crm-id": {"id": 42}}  # fmt: skip
        nameless = await alice.create({"addressBookIds": {book: True}})
        assert nameless["uid"].startswith("urn:uuid:")
        again = await alice.not_created({"addressBookIds": {book: True}, "uid": "urn:uuid:jane"})
        assert again["type"] == "alreadyExists" and again["existingId"] == created["id"]


async def test_invalid_cards_name_the_wrong_value(tmp_path):
    """RFC 9553 §1.7: an invalid property makes the card invalid; invalidProperties names
    the property, the description the JSON pointer."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        cases = {
            "emails": {"emails": {"e1": {"address": 42}}},
            "phones": {"phones": {"p1": {"label": "no number"}}},
            "nicknames": {"nicknames": {"bad id!": {"name": "x"}}},
            "name": {"name": {"components": [{"value": "Jane"}]}},  # kind is mandatory
            "kind": {"kind": "Individual"},  # enumerations are case-sensitive
            "Emails": {"Emails": {}},  # a known name in another case (§1.7.1)
            "members": {"members": {"urn:uuid:x": True}},  # only a group has members
            "anniversaries": {"anniversaries": {"a": {"kind": "birth", "date": {"month": 4}}}},
            "version": {"version": "2.0"},
            "@type": {"@type": "Person"},
            "preferredLanguages": {"preferredLanguages": {"l": {"language": "en", "pref": 0}}},
            "addresses": {"addresses": {"a": {"components": [{"kind": "separator", "value": ","}],
                                              "isOrdered": True}}},
            "extra": {"extra": 1},  # reserved (§1.7.3.1)
            "updated": {"updated": "2024-01-01T00:00:00+01:00"},
            "media": {"media": {"m": {"kind": "photo"}}},  # neither uri nor blobId
        }  # fmt: skip
        for name, card in cases.items():
            error = await alice.not_created({"addressBookIds": {book: True}, **card})
            assert error["type"] == "invalidProperties", (name, error)
            assert error["properties"] == [name], (name, error)
        error = await alice.not_created({"addressBookIds": {book: True},
                                         "emails": {"e1": {"address": 42}}})  # fmt: skip
        assert "/emails/e1/address" in error["description"]
        for books in ({}, {"nope": True}):
            error = await alice.not_created({"addressBookIds": books})
            assert error["properties"] == ["addressBookIds"], books
        vendor_kind = await alice.create(
            {"addressBookIds": {book: True}, "kind": "example.com:bot"}
        )
        assert vendor_kind["id"]  # vendor-specific values are allowed (§1.8.2)


async def test_updates_patch_the_card(tmp_path):
    """RFC 8620 §5.3 PatchObjects inside a card; updated moves; uid stays; open
    properties patch and go away with null."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        card = await alice.create({**JANE, "addressBookIds": {book: True}})
        await trio.sleep(1.1)  # (updated has a resolution of a second)
        changed = await alice.ok(
            "ContactCard/set",
            update={card["id"]: {
                "emails/e3": {"address": "jd@example.net"},
                "emails/e2": None,
                "name/full": "Dr. Janet Doe",
                "example.com:crm-id": None,
                "example.com:tier": "gold",
            }},
        )  # fmt: skip
        assert card["id"] in (changed["updated"] or {}), changed["notUpdated"]
        got = (await alice.ok("ContactCard/get", ids=[card["id"]]))["list"][0]
        assert set(got["emails"]) == {"e1", "e3"}
        assert got["name"]["full"] == "Dr. Janet Doe"
        assert "example.com:crm-id" not in got and got["example.com:tier"] == "gold"
        assert got["updated"] > card["updated"]
        bad = await alice.ok("ContactCard/set", update={card["id"]: {"uid": "urn:uuid:other"}})
        assert bad["notUpdated"][card["id"]]["type"] == "invalidProperties"
        wrong = await alice.ok("ContactCard/set",
                               update={card["id"]: {"phones/p1/number": 5}})  # fmt: skip
        assert wrong["notUpdated"][card["id"]]["properties"] == ["phones"]
        into_list = await alice.ok("ContactCard/set",
                                   update={card["id"]: {"name/components/1": {}}})  # fmt: skip
        assert into_list["notUpdated"][card["id"]]["type"] == "invalidPatch"  # RFC 8620 §5.3


async def test_every_filter_and_sort(tmp_path):
    """§3.3.1: every FilterCondition property; §3.3.2: created, updated, name/given,
    name/surname, name/surname2."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        other = (await alice.ok("AddressBook/set", create={"o": {"name": "Other"}}))["created"]
        other_book = other["o"]["id"]
        jane = (await alice.create({**JANE, "addressBookIds": {book: True}}))["id"]
        zoe = (await alice.create({
            "addressBookIds": {other_book: True}, "uid": "urn:uuid:zoe",
            "name": {"components": [{"kind": "given", "value": "Zoë"},
                                    {"kind": "surname", "value": "Adams"}]},
            "emails": {"e": {"address": "zoe@example.net"}},
            "notes": {"n": {"note": "plays the cello"}},
        }))["id"]  # fmt: skip
        team = (await alice.create({
            "addressBookIds": {book: True}, "kind": "group", "uid": "urn:uuid:team",
            "name": {"full": "The Team"}, "members": {"urn:uuid:jane": True},
        }))["id"]  # fmt: skip

        async def ids(filter_: Any = None, sort: Any = None) -> list[str]:
            args: dict[str, Any] = {"filter": filter_}
            if sort is not None:
                args["sort"] = sort
            return (await alice.ok("ContactCard/query", **args))["ids"]

        assert await ids({"inAddressBook": other_book}) == [zoe]
        assert await ids({"uid": "urn:uuid:zoe"}) == [zoe]
        assert await ids({"hasMember": "urn:uuid:jane"}) == [team]
        assert await ids({"kind": "group"}) == [team]
        assert set(await ids({"createdAfter": "2000-01-01T00:00:00Z"})) == {jane, zoe, team}
        assert await ids({"createdBefore": "2000-01-01T00:00:00Z"}) == []
        assert set(await ids({"updatedAfter": "2000-01-01T00:00:00Z"})) == {jane, zoe, team}
        assert await ids({"updatedBefore": "2000-01-01T00:00:00Z"}) == []
        assert await ids({"name": "doe"}) == [jane]
        assert await ids({"name": "the team"}) == [team]  # the full name
        assert await ids({"name/given": "ZOË"}) == [zoe]  # case-insensitive, Unicode
        assert await ids({"name/given": "doe"}) == []
        assert await ids({"name/surname": "adams"}) == [zoe]
        assert await ids({"name/surname2": "roe"}) == [jane]
        assert await ids({"nickname": "jd"}) == [jane]
        assert await ids({"organization": "abc"}) == [jane]
        assert await ids({"email": "example.net"}) == [zoe]
        assert await ids({"email": "home"}) == [jane]  # the label
        assert await ids({"phone": "555-5555"}) == [jane]
        assert await ids({"onlineService": "mastodon"}) == [jane]
        assert await ids({"address": "reston"}) == [jane]
        assert await ids({"note": "cello"}) == [zoe]
        assert await ids({"text": "jane prague"}) == [jane]  # every token, anywhere
        assert await ids({"text": '"in Prague"'}) == [jane]  # a phrase
        assert await ids({"text": '"Prague in"'}) == []
        assert await ids({"text": "cello zoë"}) == [zoe]
        assert await ids({"operator": "OR", "conditions": [{"kind": "group"},
                                                            {"note": "cello"}]}) == [zoe, team]
        assert await ids(sort=[{"property": "name/given"}]) == [team, jane, zoe]  # no given: first
        assert await ids(sort=[{"property": "name/surname", "isAscending": False}]) == [
            jane, zoe, team]  # fmt: skip
        assert await ids(sort=[{"property": "name/surname2"}]) in ([team, zoe, jane],
                                                                   [zoe, team, jane])
        assert await ids(sort=[{"property": "created"}]) == [jane, zoe, team]
        assert await ids(sort=[{"property": "updated", "isAscending": False}])
        bad = await alice.call("ContactCard/query", sort=[{"property": "name/full"}])
        assert bad["error"]["type"] == "unsupportedSort"
        bad = await alice.call("ContactCard/query", filter={"colour": "red"})
        assert bad["error"]["type"] == "unsupportedFilter"
        query = await alice.ok("ContactCard/query", filter={"inAddressBook": book})
        await alice.ok("ContactCard/set", destroy=[team])
        changes = await alice.ok("ContactCard/queryChanges", sinceQueryState=query["queryState"],
                                 filter={"inAddressBook": book})  # fmt: skip
        assert changes["removed"] == [team]


async def test_media_are_blobs(tmp_path):
    """RFC 9610 §3: a Media may name a blob; a data: URI comes back as a blobId with its
    mediaType; a photo must be an image (§3.5); Blob/lookup finds the card (RFC 9404)."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        png = await alice.upload(PNG, "image/png")
        text = await alice.upload(b"not an image", "text/plain")
        card = await alice.create({
            "addressBookIds": {book: True},
            "media": {
                "m1": {"kind": "photo", "blobId": png},
                "m2": {"kind": "logo",
                       "uri": "data:image/png;base64," + base64.b64encode(PNG).decode()},
                "m3": {"kind": "sound", "uri": "https://example.com/name.mp3"},
            },
        })  # fmt: skip
        got = (await alice.ok("ContactCard/get", ids=[card["id"]], properties=["media"]))
        media = got["list"][0]["media"]
        assert media["m1"] == {"kind": "photo", "blobId": png, "mediaType": "image/png"}
        assert "uri" not in media["m2"] and media["m2"]["blobId"] == png  # the same bytes
        assert media["m2"]["mediaType"] == "image/png"
        assert media["m3"]["uri"] == "https://example.com/name.mp3"
        download = await alice.http.get(f"/jmap/download/{ALICE}/{png}/photo.png")
        assert download.status_code == 200 and download.content == PNG
        error = await alice.not_created(
            {"addressBookIds": {book: True}, "media": {"m": {"kind": "photo", "blobId": text}}}
        )
        assert error["type"] == "invalidProperties" and error["properties"] == ["media"]
        error = await alice.not_created(
            {"addressBookIds": {book: True}, "media": {"m": {"kind": "photo", "blobId": "Gnope"}}}
        )
        assert error["type"] == "invalidProperties"
        found = await alice.ok("Blob/lookup", typeNames=["ContactCard"], ids=[png])
        assert found["list"][0]["matchedIds"]["ContactCard"] == [card["id"]]


async def test_sharing_an_address_book(tmp_path):
    """RFC 9610 §2 AddressBookRights through the host's sharing (RFC 9670): mayRead lets
    bob read the cards of the shared book and nothing else; mayWrite lets him write
    them; mayShare lets him share on only the rights he holds."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        bob_own = await connect(server, "bob", BOB)
        await bob_own.ok("AddressBook/get", ids=None)
        bob = Client(bob_own.http, ALICE)
        personal = await alice.default_book()
        shared = (await alice.ok("AddressBook/set", create={"s": {"name": "Team"}}))["created"]
        team = shared["s"]["id"]
        visible = (await alice.create({"addressBookIds": {team: True}, "uid": "u:v"}))["id"]
        hidden = (await alice.create({"addressBookIds": {personal: True}, "uid": "u:h"}))["id"]
        await alice.ok("AddressBook/set", update={team: {"shareWith": {BOB: {"mayRead": True}}}})
        session = (await bob_own.http.get("/jmap/session")).json()
        caps = session["accounts"][ALICE]["accountCapabilities"][CONTACTS]
        assert caps["mayCreateAddressBook"] is False
        assert session["accounts"][ALICE]["isReadOnly"] is True
        assert [b["id"] for b in (await bob.ok("AddressBook/get", ids=None))["list"]] == [team]
        assert (await bob.ok("ContactCard/query"))["ids"] == [visible]
        got = await bob.ok("ContactCard/get", ids=[visible, hidden], properties=["uid"])
        assert got["notFound"] == [hidden]
        assert (await bob.call("ContactCard/set", destroy=[visible]))["error"]["type"] == (
            "accountReadOnly"
        )
        rights = {"mayRead": True, "mayWrite": True, "mayShare": True}
        await alice.ok("AddressBook/set", update={team: {"shareWith": {BOB: rights}}})
        made = await bob.ok(
            "ContactCard/set",
            create={"n": {"addressBookIds": {team: True}, "uid": "u:bob"},
                    "x": {"addressBookIds": {personal: True}}},
            update={visible: {"kind": "org"}},
        )  # fmt: skip
        assert "n" in made["created"] and visible in made["updated"]
        assert made["notCreated"]["x"]["type"] == "invalidProperties"  # no such book to bob
        reshare = await bob.ok("AddressBook/set", update={team: {
            f"shareWith/{SALES}": {"mayRead": True, "mayDelete": True}}})  # fmt: skip
        assert reshare["notUpdated"][team]["type"] == "forbidden"  # he has no mayDelete
        passed_on = await bob.ok("AddressBook/set", update={team: {
            f"shareWith/{SALES}": {"mayRead": True}}})  # fmt: skip
        assert team in passed_on["updated"]


async def test_copy_between_accounts(tmp_path):
    """RFC 9610 §3.6 (RFC 8620 §5.4): a card copied into the group account, with its
    address book there."""
    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        group = Client(alice.http, SALES)
        target = await group.default_book()
        png = await alice.upload(PNG, "image/png")
        card = await alice.create({**JANE, "addressBookIds": {await alice.default_book(): True},
                                   "media": {"m": {"kind": "photo", "blobId": png}}})  # fmt: skip
        smuggled = await group.ok(
            "ContactCard/set", fromAccountId=ALICE,
            create={"x": {"addressBookIds": {target: True},
                          "media": {"m": {"kind": "photo", "blobId": png}}}},
        )  # fmt: skip
        assert smuggled["notCreated"]["x"]["type"] == "invalidProperties"  # only /copy may
        copied = await group.ok(
            "ContactCard/copy",
            fromAccountId=ALICE,
            create={"k": {"id": card["id"], "addressBookIds": {target: True}}},
            onSuccessDestroyOriginal=True,
        )
        new = copied["created"]["k"]["id"]
        got = (await group.ok("ContactCard/get", ids=[new]))["list"][0]
        assert got["uid"] == JANE["uid"] and got["example.com:crm-id"] == {"id": 42}
        assert got["media"]["m"]["blobId"] == png  # the photo came along
        photo = await alice.http.get(f"/jmap/download/{SALES}/{png}/p.png")
        assert photo.status_code == 200
        assert (await alice.ok("ContactCard/get", ids=[card["id"]]))["notFound"] == [card["id"]]


async def test_changes_are_pushed(tmp_path):
    """RFC 8620 §7: a ContactCard/set reaches an EventSource stream as a StateChange of
    ContactCard; an AddressBook/set as one of AddressBook."""
    import json

    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        url = "/jmap/eventsource/?types=ContactCard,AddressBook&closeafter=no&ping=0"
        async with server.client("alice") as listener, listener.stream("GET", url) as stream:
            await trio.sleep(0.1)
            card = await alice.create({"addressBookIds": {book: True}})
            await alice.ok("AddressBook/set", update={book: {"name": "Mine"}})
            seen: set[str] = set()
            with trio.fail_after(5):
                async for chunk in stream.aiter_text():
                    for line in chunk.splitlines():
                        if line.startswith("data: "):
                            seen |= set(json.loads(line[6:])["changed"].get(ALICE, {}))
                    if seen >= {"ContactCard", "AddressBook"}:
                        break
        changes = await alice.ok("ContactCard/changes", sinceState="0")
        assert changes["created"] == [card["id"]]


async def test_destroying_a_book_with_its_cards_pushes_the_card_state(tmp_path):
    """RFC 9610 §2.3 onDestroyRemoveContents destroys the cards too, so RFC 8620 §7: the
    stream hears the new ContactCard state as well as AddressBook's."""
    import json

    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        made = await alice.ok("AddressBook/set", create={"w": {"name": "Work"}})
        work = made["created"]["w"]["id"]
        await alice.create({"addressBookIds": {work: True}})
        before = (await alice.ok("ContactCard/get", ids=[]))["state"]
        url = "/jmap/eventsource/?types=ContactCard,AddressBook&closeafter=no&ping=0"
        async with server.client("alice") as listener, listener.stream("GET", url) as stream:
            await trio.sleep(0.1)
            gone = await alice.ok("AddressBook/set", destroy=[work], onDestroyRemoveContents=True)
            assert gone["destroyed"] == [work]
            after = (await alice.ok("ContactCard/get", ids=[]))["state"]
            assert after != before
            heard: dict[str, str] = {}
            with trio.fail_after(5):
                async for chunk in stream.aiter_text():
                    for line in chunk.splitlines():
                        if line.startswith("data: "):
                            heard.update(json.loads(line[6:])["changed"].get(ALICE, {}))
                    if heard.get("ContactCard") == after:
                        break
        assert heard["AddressBook"] == gone["newState"]


async def test_jmaplib_creates_finds_updates_and_deletes_cards(tmp_path):
    """An unmodified client from the registries (jmaplib, RFC 9610 support)."""
    from jmap.auth import BasicAuth
    from jmap.client import JMAPClient

    async with running_server(write_config(tmp_path)) as server:
        alice = await connect(server)
        book = await alice.default_book()
        await alice.http.aclose()

        def run() -> tuple[Any, ...]:
            with JMAPClient.connect(
                server.url + "/.well-known/jmap", auth=BasicAuth("alice", "alice-password")
            ) as client:
                with client.batch() as batch:
                    made = batch.contacts.contact_card.set(create={"c": {
                        "addressBookIds": {book: True}, "uid": "urn:uuid:lib",
                        "name": {"components": [{"kind": "given", "value": "Libby"}]},
                        "emails": {"e": {"address": "libby@example.com"}},
                    }})  # fmt: skip
                card_id = made.result.created["c"].id
                with client.batch() as batch:
                    found = batch.contacts.contact_card.query(filter={"email": "libby"})
                with client.batch() as batch:
                    batch.contacts.contact_card.set(update={card_id: {"kind": "org"}})
                with client.batch() as batch:
                    got = batch.contacts.contact_card.get(ids=[card_id])
                with client.batch() as batch:
                    batch.contacts.contact_card.set(destroy=[card_id])
                with client.batch() as batch:
                    after = batch.contacts.contact_card.get(ids=[card_id])
                return card_id, list(found.result.ids), got.result.items, after.result.not_found

        card_id, found, items, not_found = await trio.to_thread.run_sync(run)
        assert found == [card_id]
        assert items[0].kind == "org" and items[0].uid == "urn:uuid:lib"
        assert list(not_found) == [card_id]
