"""Record ids (objectstore.new_id): RFC 8620 §1.2 syntax, unguessable, in creation order."""

import re
import time

from jmap_host import objectstore


def test_ids_have_the_rfc_syntax_and_start_with_a_letter() -> None:
    ids = [objectstore.new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for record_id in ids:
        assert re.fullmatch(r"y[A-Za-z0-9_-]{18}", record_id)


def test_later_ids_sort_after_earlier_ones_and_after_the_old_form() -> None:
    assert list(objectstore.ID_ALPHABET) == sorted(objectstore.ID_ALPHABET)
    first = [objectstore.new_id() for _ in range(50)]
    time.sleep(0.002)
    later = objectstore.new_id()
    assert all(record_id < later for record_id in first)
    assert min(first) > "x" + "f" * 16  # ids made before (random "x" + 16 hex digits)


def test_ids_made_in_the_same_millisecond_differ_in_66_random_bits() -> None:
    # The first 8 characters are "y" and the time; the other 11 hold the random bits.
    ids = [objectstore.new_id() for _ in range(1000)]
    tails = {record_id[8:] for record_id in ids}
    assert len(tails) == len(ids)
    assert len({record_id[-1] for record_id in ids}) > 32  # the last bits are random too
