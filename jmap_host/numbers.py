"""Numbers in protocol text: ASCII digits only.

``str.isdigit`` is true for ``"²"`` and ``"٣"`` too, and ``int()`` then either refuses the
text (``ValueError``: a 500 from a header such as ``Content-Length: ²``) or reads another
script's digits as a number no protocol meant; and ``int()`` of a few thousand digits
refuses as well.  Headers, query parameters, SMTP/LMTP parameters and state strings are
ASCII: read their numbers with :func:`parse_digits`.
"""

from __future__ import annotations


def parse_digits(text: str | None, max_digits: int = 18) -> int | None:
    """The non-negative integer ``text`` spells in ASCII digits (at most ``max_digits`` of
    them: 18 fit in 64 bits), or None."""
    if text is None or not 0 < len(text) <= max_digits:
        return None
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text)
