"""jmap_host.textsearch: the text matching RFC 9610 §3.3.1 and JMAP Calendars §5.11.1
describe (case-insensitive, quoted phrases with escapes, every token present)."""

from __future__ import annotations

from jmap_host import textsearch


def test_tokens_phrases_and_escapes():
    assert textsearch.tokens('jane "in Prague" \'a \\\' b\' x\\y') == [
        "jane", "in Prague", "a ' b", "x\\y",
    ]  # fmt: skip
    assert textsearch.tokens("   ") == []


def test_strings_and_folding():
    value = {"e1": {"@type": "EmailAddress", "address": "A@x", "label": "Work"}, "e2": {}}
    assert sorted(textsearch.strings(value)) == ["A@x", "Work"]  # not @type's
    assert textsearch.strings(value, ("label",)) == ["Work"]
    assert textsearch.folded(["Zoë", "", "STRASSE"]) == "zoe\u0308\nstrasse"


def test_condition_sql():
    sql, params = textsearch.condition("t", "f:x")('Zoë "new york"')
    assert sql.count("instr([t].[d_f_x], ?) > 0") == 2 and params == ["zoe\u0308", "new york"]
    assert textsearch.condition("t", "f:x", tokenized=False)("a b")[1] == ["a b"]
    assert textsearch.condition("t", "f:x")("  ") == ("true", [])
