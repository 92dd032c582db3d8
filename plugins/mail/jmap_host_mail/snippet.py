"""SearchSnippet/get (RFC 8621 §5): the subject and a piece of the body with the filter's
search terms marked.

The terms are those of the filter's ``text``, ``subject`` (for the subject) and ``text``,
``body`` (for the preview) conditions, read as Email/query reads them (quoted phrases,
whitespace-separated tokens; store.search_terms), outside any NOT.  Matching for the marks
is case-insensitive substring matching, which finds at least what the full-text index
matched; a phrase's words match across any run of whitespace.  Everything else is
HTML-escaped (& < > and quotes), and the preview, marks included, is at most 255 octets of
UTF-8.

The preview comes from the body text the full-text index holds (store.indexed_bodies:
``ParsedMessage.searchable_text``, the textBody parts with HTML converted to text, which is
what the ``body`` filter searched), so building 50 snippets reads 50 index rows, not 50
messages: no match there, no preview.  The preview is shown as the user sees the body (§5
"converted to plaintext if originally HTML").  Index rows written before the index held
converted text (2026-11-26) have the raw HTML parts too: where markup comes before the end
of the shown section, the message is parsed and the preview taken from its searchable text
instead.  Only the section shown is whitespace-collapsed, with the same result as
collapsing the whole text.
"""

from __future__ import annotations

import html
import re
from typing import Any

from jmap_host import Call, MethodError, objectstore, read_blob, sharing, standard

from . import store
from .email import EMAIL
from .message import parse_message

PREVIEW_OCTETS = 255
CONTEXT_CHARS = 40  # text shown before the first match
SUBJECT_FILTERS = ("text", "subject")
BODY_FILTERS = ("text", "body")
_WS = re.compile(r"\s+")


def filter_terms(node: Any, names: tuple[str, ...]) -> list[str]:
    """The search terms of ``names`` conditions in a filter, skipping negated branches."""
    if not isinstance(node, dict):
        return []
    if "operator" in node:
        if node.get("operator") == "NOT":
            return []
        return [t for c in node.get("conditions") or [] for t in filter_terms(c, names)]
    terms: list[str] = []
    for name in names:
        if isinstance(node.get(name), str):
            terms += store.search_terms(node[name])
    return terms


class Terms:
    """The compiled terms of a filter: ``pattern`` matches any of them, case-insensitively,
    the longest first, a phrase's words across any run of whitespace; ``longest`` is the
    most characters a match can span in whitespace-collapsed text."""

    def __init__(self, words: list[str]):
        self.longest = max(len(" ".join(w.split())) for w in words)
        self.pattern = re.compile(
            "|".join(r"\s+".join(map(re.escape, w.split())) for w in words), re.IGNORECASE
        )

    def search(self, text: str) -> re.Match[str] | None:
        return self.pattern.search(text)

    def finditer(self, text: str) -> Any:
        return self.pattern.finditer(text)


def _pattern(terms: list[str]) -> Terms | None:
    words = sorted({" ".join(t.split()) for t in terms if t.strip()}, key=len, reverse=True)
    return Terms(words) if words else None


def _escape_within(text: str, room: int) -> str:
    """The longest prefix of ``text`` HTML-escaped (as html.escape) that is at most
    ``room`` octets of UTF-8, without cutting a character or an entity."""
    escaped = html.escape(text[: max(room, 0)])  # every character is at least one octet
    data = escaped.encode("utf-8")
    if len(data) <= room:
        return escaped
    cut = data[:room].decode("utf-8", "ignore")
    amp = cut.rfind("&")
    return cut[:amp] if amp >= 0 and cut.find(";", amp) < 0 else cut


def highlight(text: str, pattern: Any, limit: int | None = None) -> str:
    """``text`` HTML-escaped with every match wrapped in <mark></mark>; with ``limit``, cut
    to at most that many octets of UTF-8 without cutting an entity or a mark."""
    out: list[str] = []
    size = 0
    pos = 0

    def add(piece: str, mark: bool = False) -> bool:
        nonlocal size
        if mark:
            escaped = f"<mark>{html.escape(piece)}</mark>"
        elif limit is not None and len(piece) > limit - size:  # cannot fit whole
            out.append(_escape_within(piece, limit - size))
            return False
        else:
            escaped = html.escape(piece)
        octets = len(escaped.encode("utf-8"))
        if limit is not None and size + octets > limit:
            if not mark:
                out.append(_escape_within(piece, limit - size))
            return False
        out.append(escaped)
        size += octets
        return True

    for m in pattern.finditer(text):
        if not add(text[pos : m.start()]) or not add(m.group(), mark=True):
            return "".join(out)
        pos = m.end()
    add(text[pos:])
    return "".join(out)


def preview(text: str, terms: Terms, markup_free: bool = False) -> tuple[bool, str | None]:
    """The §5 preview of ``text``: whitespace collapsed (runs to one space, none at the
    ends), from a word boundary up to CONTEXT_CHARS before the first match, marked, at most
    PREVIEW_OCTETS.  Only the section shown is collapsed, with exactly the result of
    collapsing the whole text first.  With ``markup_free``, returns (False, None) when a
    "<" comes before the end of that section (it may be HTML: the caller converts it).
    Otherwise (True, preview or None when nothing matches)."""
    m = terms.search(text)
    if m is None:
        return True, None
    at, end = m.start(), len(text)
    reach = 2 * CONTEXT_CHARS
    while True:  # the collapsed text before the match: more than CONTEXT_CHARS, or all
        lo = max(0, at - reach)
        before = _WS.sub(" ", text[lo:at])
        if lo == 0:
            before = before.lstrip()
        if lo == 0 or len(before) > CONTEXT_CHARS:
            break
        reach *= 4
    # Highlighting stops at PREVIEW_OCTETS octets (at least one a character), so nothing
    # past this many characters from the match can change the result.
    wanted = PREVIEW_OCTETS + terms.longest + 1
    reach = wanted + 2 * CONTEXT_CHARS
    while True:
        hi = min(end, at + reach)
        after = _WS.sub(" ", text[at:hi])
        if hi == end:
            after = after.rstrip()
        if hi == end or len(after) > wanted:
            break
        reach *= 4
    if markup_free and text.find("<", 0, hi) >= 0:
        return False, None
    start = max(0, len(before) - CONTEXT_CHARS)
    if start:
        space = before.find(" ", start)
        start = space + 1 if space >= 0 else start
    return True, highlight(before[start:] + after, terms, PREVIEW_OCTETS)


def snippet(
    subject: str | None, body: str | None, subj: Terms | None, terms: Terms | None, parse: Any
) -> dict[str, Any]:
    """One SearchSnippet's subject and preview.  ``body``: the indexed body text (None if
    the Email has no index row); ``parse``: a callable giving the parsed message."""
    out: dict[str, Any] = {"subject": None, "preview": None}
    if subj is not None and subject and subj.search(subject):
        out["subject"] = highlight(subject, subj)
    if terms is not None:
        done = False
        if body is not None:
            done, out["preview"] = preview(body, terms, markup_free=True)
        if not done:
            out["preview"] = preview(parse().searchable_text(), terms)[1]
    return out


async def search_snippet_get(call: Call) -> dict[str, Any]:
    """RFC 8621 §5.1 SearchSnippet/get."""
    assert call.account is not None
    account = call.account.id
    standard.check_read(EMAIL, call)
    if "filter" not in call.args:
        raise MethodError("invalidArguments", "filter is required (it may be null)")
    filter_ = call.args["filter"]
    standard.compile_query(EMAIL, filter_, None)  # the same checks as Email/query
    email_ids = standard.arg(call, "emailIds", "String[]")
    if len(email_ids) > call.host.limits.max_objects_in_get:
        raise MethodError("requestTooLarge", "too many emailIds")
    email_ids = list(dict.fromkeys(email_ids))
    subj = _pattern(filter_terms(filter_, SUBJECT_FILTERS))
    body = _pattern(filter_terms(filter_, BODY_FILTERS))
    host = call.host

    def read(db: Any) -> tuple[list[dict[str, Any]], set[str]]:
        # Built here, in the read's worker thread: no second thread hop for a few ms of work.
        valid = [i for i in email_ids if standard.is_id(i)]
        access = sharing.access_for(db, call)
        if access is not None:
            seen = sharing.visible_ids(db, EMAIL, access, account, valid)
            valid = [i for i in valid if i in seen]
        found = objectstore.read_records(db, EMAIL, account, valid, ["blobId", "subject"])
        records = {r["id"]: r for r in found}
        bodies = store.indexed_bodies(db, account, valid) if body is not None else {}
        out = []
        for email_id in email_ids:
            record = records.get(email_id)
            if record is None:
                continue
            entry: dict[str, Any] = {"emailId": email_id, "subject": None, "preview": None}
            if subj is not None or body is not None:
                blob_id = record["blobId"]
                entry.update(
                    snippet(
                        record.get("subject"),
                        bodies.get(email_id),
                        subj,
                        body,
                        lambda b=blob_id: parse_message(read_blob(host, b) or b""),
                    )
                )
            out.append(entry)
        return out, set(records)

    # A worker thread: the odd preview parses its message from the blob file.
    found, known = await host.store.read(read, inline=False)
    return {
        "accountId": account,
        "list": found,
        "notFound": [i for i in email_ids if i not in known] or None,
    }
