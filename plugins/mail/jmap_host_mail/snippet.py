"""SearchSnippet/get (RFC 8621 §5): the subject and a piece of the body with the filter's
search terms marked.

The terms are those of the filter's ``text``, ``subject`` (for the subject) and ``text``,
``body`` (for the preview) conditions, read as Email/query reads them (quoted phrases,
whitespace-separated tokens; store.search_terms), outside any NOT.  Matching for the marks
is case-insensitive substring matching, which finds at least what the full-text index
matched.  Everything else is HTML-escaped (& < > and quotes), and the preview, marks
included, is at most 255 octets of UTF-8.
"""

from __future__ import annotations

import html
import re
from typing import Any

import trio

from jmap_host import Call, MethodError, objectstore, read_blob, standard

from . import store
from .email import EMAIL
from .message import html_to_text, parse_message

PREVIEW_OCTETS = 255
CONTEXT_CHARS = 40  # text shown before the first match
SUBJECT_FILTERS = ("text", "subject")
BODY_FILTERS = ("text", "body")


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


def _pattern(terms: list[str]) -> re.Pattern[str] | None:
    words = sorted({t for t in terms if t}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern[str], limit: int | None = None) -> str:
    """``text`` HTML-escaped with every match wrapped in <mark></mark>; with ``limit``, cut
    to at most that many octets of UTF-8 without cutting an entity or a mark."""
    out: list[str] = []
    size = 0
    pos = 0

    def add(piece: str) -> bool:
        nonlocal size
        octets = len(piece.encode("utf-8"))
        if limit is not None and size + octets > limit:
            return False
        out.append(piece)
        size += octets
        return True

    for m in pattern.finditer(text):
        for ch in text[pos : m.start()]:
            if not add(html.escape(ch)):
                return "".join(out)
        if not add(f"<mark>{html.escape(m.group())}</mark>"):
            return "".join(out)
        pos = m.end()
    for ch in text[pos:]:
        if not add(html.escape(ch)):
            break
    return "".join(out)


def body_text(parsed: Any) -> str:
    """The plain text of the body the user sees: text/plain parts, or HTML as text."""
    chunks = []
    for part in parsed.text_body(properties=["partId", "type"]):
        if not part.get("partId") or not str(part.get("type", "")).startswith("text/"):
            continue
        value = parsed.body_value(part["partId"])["value"]
        chunks.append(html_to_text(value) if part["type"] == "text/html" else value)
    return re.sub(r"\s+", " ", " ".join(chunks)).strip()


def snippet(parsed: Any, subject: str | None, subj: Any, body: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": None, "preview": None}
    if subj is not None and subject and subj.search(subject):
        out["subject"] = highlight(subject, subj)
    if body is not None:
        text = body_text(parsed)
        m = body.search(text)
        if m:
            start = max(0, m.start() - CONTEXT_CHARS)
            if start:
                space = text.find(" ", start, m.start())
                start = space + 1 if space >= 0 else start
            out["preview"] = highlight(text[start:], body, PREVIEW_OCTETS)
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

    def read(db: Any) -> list[dict[str, Any]]:
        valid = [i for i in email_ids if standard.is_id(i)]
        return objectstore.read_records(db, EMAIL, account, valid, ["blobId", "subject"])

    records = {r["id"]: r for r in await host.store.read(read)}

    def build() -> list[dict[str, Any]]:
        out = []
        for email_id in email_ids:
            record = records.get(email_id)
            if record is None:
                continue
            entry: dict[str, Any] = {"emailId": email_id, "subject": None, "preview": None}
            if subj is not None or body is not None:
                parsed = parse_message(read_blob(host, record["blobId"]) or b"")
                entry.update(snippet(parsed, record.get("subject"), subj, body))
            out.append(entry)
        return out

    found = await trio.to_thread.run_sync(build)
    return {
        "accountId": account,
        "list": found,
        "notFound": [i for i in email_ids if i not in records] or None,
    }
