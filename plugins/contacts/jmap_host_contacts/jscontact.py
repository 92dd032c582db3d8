"""JSContact (RFC 9553) validation: every registered property of a Card and of the objects
in it, checked against its type, with the path of the first wrong value.

The schema below is RFC 9553's registry of properties (§3.5.2) by object type, with each
type's mandatory properties and enumerated values (§3.7).  What it does not know is kept:
an unknown property with a registered-looking name (§1.7.4) and a vendor-specific one
(§1.8.1, ``example.com:foo``) are valid wherever they appear; a name that differs from a
known one only in case is not (§1.7.1).  Enumerated values may be vendor-specific too
(§1.8.2).

``validate_card(card)`` raises :class:`Invalid` with ``path`` (a JSON Pointer, e.g.
``/emails/e1/address``) and a reason; the JMAP layer answers ``invalidProperties`` naming
the top-level property and the pointer.
"""

from __future__ import annotations

import re
from typing import Any

from jmap_host import jsobject

# The host's (jmap_host.jsobject), by their short names.
ID, Invalid, Schema, escape = jsobject.ID, jsobject.Invalid, jsobject.Schema, jsobject.escape

UTC_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d*[1-9])?Z")  # §1.4.5
VERSION = re.compile(r"\d+\.\d+")  # §1.9.1
LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")  # RFC 5646, loosely
KNOWN_VERSIONS = {"1.0"}


# Enumerated values (§3.7); vendor-specific values are allowed besides (§1.8.2).
CARD_KINDS = {"individual", "group", "org", "location", "device", "application"}
NAME_KINDS = {"title", "given", "given2", "surname", "surname2", "credential", "generation",
              "separator"}  # fmt: skip
ADDRESS_KINDS = {
    "room", "apartment", "floor", "building", "number", "name", "block", "subdistrict",
    "district", "locality", "region", "postcode", "country", "direction", "landmark",
    "postOfficeBox", "separator",
}  # fmt: skip
CONTEXTS = {"private", "work"}
ADDRESS_CONTEXTS = CONTEXTS | {"billing", "delivery"}
PHONE_FEATURES = {"mobile", "voice", "text", "video", "main-number", "textphone", "fax", "pager"}
GENDERS = {"animate", "common", "feminine", "inanimate", "masculine", "neuter"}
RELATIONS = {
    "acquaintance", "agent", "child", "co-resident", "co-worker", "colleague", "contact",
    "crush", "date", "emergency", "friend", "kin", "me", "met", "muse", "neighbor", "parent",
    "sibling", "spouse", "sweetheart",
}  # fmt: skip

# Type signatures: a string names a type ("String", "UnsignedInt", "Boolean",
# "UTCDateTime", "Id" or an object type below); ("map", key, value) an Id[...]/String[...]
# map; ("list", item); ("set", enum) a String[Boolean] whose keys may be limited to an
# enumeration (None: any) and whose values must be true; ("enum", values); ("any",).
RESOURCE = {
    "@type": "String", "kind": "String", "uri": "String", "mediaType": "String",
    "contexts": ("set", CONTEXTS), "pref": "Pref", "label": "String",
}  # fmt: skip

TYPES: dict[str, dict[str, Any]] = {
    "Name": {
        "@type": "String", "components": ("list", "NameComponent"), "isOrdered": "Boolean",
        "defaultSeparator": "String", "full": "String", "sortAs": ("map", "String", "String"),
        "phoneticScript": "String", "phoneticSystem": "String",
    },
    "NameComponent": {
        "@type": "String", "value": "String", "kind": ("enum", NAME_KINDS), "phonetic": "String",
    },
    "Nickname": {"@type": "String", "name": "String", "contexts": ("set", CONTEXTS),
                 "pref": "Pref"},
    "Organization": {
        "@type": "String", "name": "String", "units": ("list", "OrgUnit"), "sortAs": "String",
        "contexts": ("set", CONTEXTS),
    },
    "OrgUnit": {"@type": "String", "name": "String", "sortAs": "String"},
    "SpeakToAs": {
        "@type": "String", "grammaticalGender": ("enum", GENDERS),
        "pronouns": ("map", "Id", "Pronouns"),
    },
    "Pronouns": {"@type": "String", "pronouns": "String", "contexts": ("set", CONTEXTS),
                 "pref": "Pref"},
    "Title": {"@type": "String", "name": "String", "kind": ("enum", {"title", "role"}),
              "organizationId": "Id"},
    "EmailAddress": {"@type": "String", "address": "String", "contexts": ("set", CONTEXTS),
                     "pref": "Pref", "label": "String"},
    "OnlineService": {"@type": "String", "service": "String", "uri": "String", "user": "String",
                      "contexts": ("set", CONTEXTS), "pref": "Pref", "label": "String"},
    "Phone": {"@type": "String", "number": "String", "features": ("set", PHONE_FEATURES),
              "contexts": ("set", CONTEXTS), "pref": "Pref", "label": "String"},
    "LanguagePref": {"@type": "String", "language": "String", "contexts": ("set", CONTEXTS),
                     "pref": "Pref"},
    "Calendar": {**RESOURCE, "kind": ("enum", {"calendar", "freeBusy"})},
    "SchedulingAddress": {"@type": "String", "uri": "String", "contexts": ("set", CONTEXTS),
                          "pref": "Pref", "label": "String"},
    "Address": {
        "@type": "String", "components": ("list", "AddressComponent"), "isOrdered": "Boolean",
        "countryCode": "String", "coordinates": "String", "timeZone": "String",
        "contexts": ("set", ADDRESS_CONTEXTS), "full": "String", "defaultSeparator": "String",
        "pref": "Pref", "phoneticScript": "String", "phoneticSystem": "String",
    },
    "AddressComponent": {"@type": "String", "value": "String", "kind": ("enum", ADDRESS_KINDS),
                         "phonetic": "String"},
    "CryptoKey": dict(RESOURCE),
    "Directory": {**RESOURCE, "kind": ("enum", {"directory", "entry"}), "listAs": "Positive"},
    "Link": {**RESOURCE, "kind": ("enum", {"contact"})},
    # RFC 9610 §3: a Media may name a blob instead of a URI.
    "Media": {**RESOURCE, "kind": ("enum", {"photo", "sound", "logo"}), "blobId": "Id"},
    "Anniversary": {"@type": "String", "kind": ("enum", {"birth", "death", "wedding"}),
                    "date": "AnniversaryDate", "place": "Address"},
    "PartialDate": {"@type": "String", "year": "UnsignedInt", "month": "Month", "day": "Day",
                    "calendarScale": "String"},
    "Timestamp": {"@type": "String", "utc": "UTCDateTime"},
    "Note": {"@type": "String", "note": "String", "created": "UTCDateTime", "author": "Author"},
    "Author": {"@type": "String", "name": "String", "uri": "String"},
    "PersonalInfo": {
        "@type": "String", "kind": ("enum", {"expertise", "hobby", "interest"}), "value": "String",
        "level": ("enum", {"high", "medium", "low"}), "listAs": "Positive", "label": "String",
    },
    "Relation": {"@type": "String", "relation": ("set", RELATIONS)},
}  # fmt: skip

MANDATORY: dict[str, tuple[str, ...]] = {
    "NameComponent": ("value", "kind"), "Nickname": ("name",), "OrgUnit": ("name",),
    "Pronouns": ("pronouns",), "Title": ("name",), "EmailAddress": ("address",),
    "Phone": ("number",), "LanguagePref": ("language",), "Calendar": ("kind", "uri"),
    "SchedulingAddress": ("uri",), "AddressComponent": ("value", "kind"),
    "CryptoKey": ("uri",), "Directory": ("kind", "uri"), "Link": ("uri",),
    "Media": ("kind",), "Anniversary": ("kind", "date"), "Timestamp": ("utc",),
    "Note": ("note",), "PersonalInfo": ("kind", "value"),
}  # fmt: skip
# "At least one of these" (§2.2.1.1, §2.2.3, §2.2.4, §2.3.2, §2.5.1.1, §2.8.3).
ONE_OF: dict[str, tuple[str, ...]] = {
    "Name": ("components", "full"), "Organization": ("name", "units"),
    "SpeakToAs": ("grammaticalGender", "pronouns"), "OnlineService": ("uri", "user"),
    "Address": ("components", "coordinates", "countryCode", "full", "timeZone"),
    "Author": ("name", "uri"), "Media": ("uri", "blobId"),
}  # fmt: skip

# The Card's own properties (§2), besides those the JMAP layer adds (id, addressBookIds).
CARD: dict[str, Any] = {
    "@type": "String", "version": "Version", "created": "UTCDateTime",
    "kind": ("enum", CARD_KINDS), "language": "LanguageTag", "members": ("set", None),
    "prodId": "NonEmpty", "relatedTo": ("map", "String", "Relation"), "uid": "NonEmpty",
    "updated": "UTCDateTime", "name": "Name", "nicknames": ("map", "Id", "Nickname"),
    "organizations": ("map", "Id", "Organization"), "speakToAs": "SpeakToAs",
    "titles": ("map", "Id", "Title"), "emails": ("map", "Id", "EmailAddress"),
    "onlineServices": ("map", "Id", "OnlineService"), "phones": ("map", "Id", "Phone"),
    "preferredLanguages": ("map", "Id", "LanguagePref"),
    "calendars": ("map", "Id", "Calendar"),
    "schedulingAddresses": ("map", "Id", "SchedulingAddress"),
    "addresses": ("map", "Id", "Address"), "cryptoKeys": ("map", "Id", "CryptoKey"),
    "directories": ("map", "Id", "Directory"), "links": ("map", "Id", "Link"),
    "media": ("map", "Id", "Media"), "localizations": ("map", "LanguageTag", "Patch"),
    "anniversaries": ("map", "Id", "Anniversary"), "keywords": ("set", None),
    "notes": ("map", "Id", "Note"), "personalInfo": ("map", "Id", "PersonalInfo"),
}  # fmt: skip

def _scalar(schema: Schema, value: Any, signature: str, path: str) -> None:
    """JSContact's scalar types (and the anniversary date, which is one of two objects)."""
    def int_in(low: int, high: int | None) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high
        ):
            limit = f"{low} to {high}" if high is not None else f"at least {low}"
            raise Invalid(path, f"must be an integer, {limit}")

    if signature in ("String", "NonEmpty", "Version", "LanguageTag", "UTCDateTime", "Id"):
        if not isinstance(value, str):
            raise Invalid(path, "must be a String")
        if signature == "NonEmpty" and not value:
            raise Invalid(path, "must not be empty")
        if signature == "Version" and value not in KNOWN_VERSIONS:
            raise Invalid(path, f"must be a JSContact version ({', '.join(KNOWN_VERSIONS)})")
        if signature == "LanguageTag" and not LANGUAGE_TAG.fullmatch(value):
            raise Invalid(path, "must be a language tag (RFC 5646)")
        if signature == "UTCDateTime" and not UTC_DATETIME.fullmatch(value):
            raise Invalid(path, "must be a UTCDateTime (e.g. 2024-01-02T03:04:05Z, §1.4.5)")
        if signature == "Id" and not ID.fullmatch(value):
            raise Invalid(path, "must be an Id")
    elif signature == "Boolean":
        if not isinstance(value, bool):
            raise Invalid(path, "must be a Boolean")
    elif signature == "UnsignedInt":
        int_in(0, 2**53 - 1)
    elif signature == "Pref":
        int_in(1, 100)
    elif signature == "Positive":
        int_in(1, None)
    elif signature == "Month":
        int_in(1, 12)
    elif signature == "Day":
        int_in(1, 31)
    elif signature == "AnniversaryDate":
        if not isinstance(value, dict):
            raise Invalid(path, "must be a PartialDate or a Timestamp")
        kind = value.get("@type", "Timestamp" if "utc" in value else "PartialDate")
        if kind not in ("PartialDate", "Timestamp"):
            raise Invalid(f"{path}/@type", "must be PartialDate or Timestamp")
        schema.check_object(value, kind, path)
    elif signature == "Patch":
        if not isinstance(value, dict):
            raise Invalid(path, "must be a PatchObject")
        for pointer in value:
            if not pointer or pointer.startswith("/"):
                raise Invalid(f"{path}/{escape(pointer)}", "a patch path has no leading /")
    else:  # pragma: no cover - a schema mistake
        raise AssertionError(signature)


def _partial_date(value: dict[str, Any], path: str) -> None:
    """§2.8.1: a month needs a year or a day; a day needs a month."""
    if "month" in value and "year" not in value and "day" not in value:
        raise Invalid(f"{path}/month", "a month needs a year or a day")
    if "day" in value and "month" not in value:
        raise Invalid(f"{path}/day", "a day needs a month")
    if not any(k in value for k in ("year", "month", "day")):
        raise Invalid(path, "needs a year, a month or a day")


def _rules(schema: Schema, type_name: str, value: dict[str, Any], path: str) -> None:
    """What involves several properties: §2.2.1.1, §2.2.3, §2.2.4, §2.3.2, §2.5.1.1, §2.8.1,
    §2.8.3 (at least one of), a Name's and an Address's components (§2.2.1.2, §2.5.1.2)."""
    one_of = ONE_OF.get(type_name)
    if one_of and not any(k in value for k in one_of):
        raise Invalid(path, f"a {type_name} needs one of {', '.join(one_of)}")
    if type_name == "PartialDate":
        _partial_date(value, path)
    if type_name in ("Name", "Address") and isinstance(value.get("components"), list):
        kinds = [c.get("kind") for c in value["components"] if isinstance(c, dict)]
        if kinds and all(k == "separator" for k in kinds):
            raise Invalid(f"{path}/components", "needs a component other than a separator")
        if value.get("isOrdered") is not True and "separator" in kinds:
            raise Invalid(f"{path}/components", "a separator needs isOrdered true")


SCHEMA = Schema("JSContact", TYPES, _scalar, MANDATORY, _rules, known=CARD)
keepable = SCHEMA.keepable


def validate_card(card: dict[str, Any]) -> None:
    """Check a whole Card (its JSContact properties; the JMAP ones are not looked at)."""
    if card.get("@type", "Card") != "Card":
        raise Invalid("/@type", "must be 'Card'")
    SCHEMA.check_top(card, CARD, skip=("id", "addressBookIds"))
    if card.get("members") and card.get("kind") != "group":
        raise Invalid("/members", "only a Card of kind 'group' has members (§2.1.6)")


__all__ = ["SCHEMA", "Invalid", "keepable", "validate_card"]
