"""jmap_host.dates (RFC 8620 §1.4 Date and UTCDate over RFC 3339 §5.6) and the instant
keys the store sorts and compares dates by, including a table stored before keys existed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from jmap_host import dates, objectstore
from jmap_host.datatype import DataType, Property

moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59)
fractions = st.text(alphabet="0123456789", max_size=12)


def written(moment: datetime, offset: int, fraction: str) -> str:
    """``moment`` (whole seconds) written in RFC 3339 with ``offset`` minutes and the
    fraction digits given (trailing zeros and all)."""
    local = moment.replace(microsecond=0).astimezone(timezone(timedelta(minutes=offset)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    sign, minutes = ("+" if offset >= 0 else "-"), abs(offset)
    zone = "Z" if offset == 0 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text + ("." + fraction if fraction else "") + zone


def instant(moment: datetime, fraction: str) -> Decimal:
    whole = int(moment.replace(microsecond=0).timestamp())
    return Decimal(whole) + Decimal("0." + (fraction or "0"))


@settings(max_examples=300, deadline=None)
@given(moments, offsets, fractions, moments, offsets, fractions)
def test_instant_keys_sort_as_the_instants_do(m1, o1, f1, m2, o2, f2):
    """Whatever the offsets and fraction digits, text order of keys is time order, and
    equal instants have equal keys (RFC 8621 §4.4.2 sorts receivedAt/sentAt by time)."""
    a, b = dates.parse(written(m1, o1, f1)), dates.parse(written(m2, o2, f2))
    assert a is not None and b is not None
    ia, ib = instant(m1, f1), instant(m2, f2)
    assert (a.key < b.key) == (ia < ib)
    assert (a.key == b.key) == (ia == ib)


@settings(max_examples=300, deadline=None)
@given(moments, offsets, fractions)
def test_canonical_text_and_epoch(moment, offset, fraction):
    """§1.4: canonical text has upper-case letters and no trailing zeros in the fraction,
    keeps the offset; epoch() is the instant."""
    text = written(moment, offset, fraction)
    parsed = dates.parse(text.lower())
    assert parsed is not None
    digits = fraction.rstrip("0")
    assert parsed.text == text.split(".")[0].removesuffix("Z")[:19] + (
        "." + digits if digits else ""
    ) + text[-6:] * (offset != 0) + "Z" * (offset == 0)
    assert parsed.utc == (offset == 0)
    assert abs(Decimal(dates.epoch(text)) - instant(moment, fraction)) < Decimal("0.001")
    assert dates.parse(parsed.text) == parsed  # canonical text is a fixed point


def test_what_is_not_a_date():
    for bad in (
        "2026-02-29T00:00:00Z",  # no leap year
        "2026-04-31T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z",
        "2026-01-01T23:58:60Z",  # a leap second only ends a minute
        "2026-01-01T00:00:00+24:00",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00",
        "2026-01-01 00:00:00Z",
        "0000-01-01T00:00:00+00:01",  # before year 0 in UTC
        "9999-12-31T23:59:59-00:01",  # after 9999 in UTC
        "٢٠٢٦-01-01T00:00:00Z",  # other scripts' digits
        "",
        None,
        20260101,
    ):
        assert dates.parse(bad) is None, bad
    assert dates.is_date("2026-01-01T00:00:00+01:00")
    assert not dates.is_utcdate("2026-01-01T00:00:00+01:00")
    assert dates.parse("2016-12-31T23:59:60Z").key == "2017-01-01T00:00:00"
    assert dates.utcdate(1.5, fraction=True) == "1970-01-01T00:00:01.5Z"
    assert dates.utcdate(0) == "1970-01-01T00:00:00Z"


def test_a_table_stored_before_keys_gets_them(tmp_path):
    """Rows written when dates sorted as text get their instant keys, and the index on
    the text is replaced by one on the keys (ensure_columns, run by the migration)."""
    dt = DataType(
        name="Thing",
        table="test_thing",
        properties=[Property("at", "UTCDate|null", sortable=True), Property("n", "Int")],
    )
    db = sqlite_utils.Database(tmp_path / "old.db")
    objectstore.register_functions(db.conn)
    db["test_thing"].create(
        {"account": str, "id": str, "modseq": int, "p_at": str, "p_n": int}, pk=("account", "id")
    )
    db["test_thing"].create_index(["account", "p_at"])
    db["test_thing"].insert_all(
        [
            {"account": "a", "id": "x1", "modseq": 1, "p_at": "2026-01-01T00:00:00.5Z", "p_n": 1},
            {"account": "a", "id": "x2", "modseq": 2, "p_at": "2026-01-01T00:00:00Z", "p_n": 2},
            {"account": "a", "id": "x3", "modseq": 3, "p_at": None, "p_n": 3},
        ]
    )
    objectstore.ensure_columns(db, dt)
    keys = {r["id"]: r["k_at"] for r in db["test_thing"].rows}
    assert keys == {"x1": "2026-01-01T00:00:00.5", "x2": "2026-01-01T00:00:00", "x3": None}
    made = [tuple(i.columns) for i in db["test_thing"].indexes if i.name.startswith("idx_")]
    assert made == [("account", "k_at")]
    order = objectstore.compile_sort(dt, [{"property": "at"}])
    assert objectstore.query_ids(db, dt, "a", ("1", []), order) == ["x3", "x2", "x1"]
