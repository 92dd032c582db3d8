"""jmap_host.jsobject, the validation JSContact (RFC 9553 §1.7, §1.8) and JSCalendar
(jscalendarbis §1.7, §1.8) share: signatures, @type, mandatory properties, sets, enums
with vendor values, kept unknown names and the case rule, pointers of wrong values."""

from __future__ import annotations

import pytest

from jmap_host.jsobject import Invalid, Schema, escape, set_error


def scalar(schema, value, signature, path):
    if signature == "String" and not isinstance(value, str):
        raise Invalid(path, "must be a String")
    if signature == "Small" and (not isinstance(value, int) or not 0 < value < 10):
        raise Invalid(path, "must be 1 to 9")


SCHEMA = Schema(
    "Test",
    {"Thing": {"@type": "String", "name": "String", "size": "Small",
               "tags": ("set", None), "colour": ("enum", {"red", "blue"})}},
    scalar,
    mandatory={"Thing": ("name",)},
    known=("things",),
)  # fmt: skip
TOP = {"things": ("map", "Id", "Thing"), "title": "String"}


def check(record):
    SCHEMA.check_top(record, TOP, skip=("id",))


def test_valid_values_and_what_is_kept():
    check({"id": "x", "title": "t", "things": {"a": {"name": "n", "size": 3, "tags": {"k": True},
                                                     "colour": "example.com:teal"}},
           "futureThing": 1, "example.com:x": {"any": "thing"}, "title2": None})  # fmt: skip
    assert SCHEMA.keepable("example.com:foo") and SCHEMA.keepable("newName")
    assert not SCHEMA.keepable("Title") and not SCHEMA.keepable("THINGS")  # case (§1.7.1)
    assert not SCHEMA.keepable("extra")  # reserved (§1.7.3.1)


@pytest.mark.parametrize(
    ("record", "path"),
    [
        ({"title": 3}, "/title"),
        ({"things": {"bad id!": {"name": "n"}}}, "/things/bad id!"),
        ({"things": {"a": {}}}, "/things/a/name"),
        ({"things": {"a": {"name": "n", "@type": "Other"}}}, "/things/a/@type"),
        ({"things": {"a": {"name": "n", "size": 10}}}, "/things/a/size"),
        ({"things": {"a": {"name": "n", "tags": {"k": False}}}}, "/things/a/tags/k"),
        ({"things": {"a": {"name": "n", "colour": "green"}}}, "/things/a/colour"),
        ({"things": {"a": {"name": "n", "Name": "N"}}}, "/things/a/Name"),
        ({"Title": "t"}, "/Title"),
    ],
)
def test_the_first_wrong_value_is_named(record, path):
    with pytest.raises(Invalid) as info:
        check(record)
    assert info.value.path == path
    error = set_error(info.value).to_json()
    assert error["type"] == "invalidProperties" and error["properties"] == [path.split("/")[1]]


def test_pointer_escapes():
    assert escape("a/b~c") == "a~1b~0c"
