"""Parse RFC 5322 / MIME messages into the JMAP Email representation (RFC 8621 §4.1, §4.2, §4.9).

``parse_message(raw)`` never raises (for ``bytes`` input): broken MIME, unknown charsets, 8-bit
headers, bare LF or CR-only line endings, NUL bytes, huge headers and absurd nesting all give a
best-effort :class:`ParsedMessage`.  Everything it returns is JSON-serialisable.

Contract with the caller (storage / Email methods):

* Part ids are IMAP-style section numbers: a non-multipart message has one part ``"1"``; the
  children of a top-level multipart are ``"1"``, ``"2"``...; children of a nested multipart at
  position 2 are ``"2.1"``, ``"2.2"``...  Multipart nodes have ``partId`` null (§4.1.4).  Ids are
  stable: the same bytes always give the same ids.  ``ParsedMessage.part_ids`` lists the leaf
  ids in depth-first order.
* Blob ids are the caller's: every method returning EmailBodyPart objects takes
  ``blob_id_for: Callable[[str], str | None]`` mapping a partId to its blobId (e.g. a hash of
  ``part_bytes(part_id)``, or ``f"{email_blob}.{part_id}"``); without it ``blobId`` is null.
* ``part_bytes(part_id)`` is the part content after Content-Transfer-Encoding decoding (the blob
  the user downloads; its length is the part ``size``); unknown ids raise ``KeyError``.
* ``message/rfc822`` parts are leaves (bodyStructure does not recurse, §4.1.4); parse their
  ``part_bytes`` again with ``parse_message`` for Email/parse.
* Nesting deeper than ``MAX_DEPTH`` or more than ``MAX_PARTS`` parts: the remainder becomes one
  opaque ``application/octet-stream`` leaf holding the raw bytes of that region.
* A multipart without a usable boundary is presented as a ``text/plain`` leaf of its body.
* ``bodyStructure`` always carries ``subParts`` on multipart nodes, whatever bodyProperties say.
* Text values (bodyValues, Text form) drop NUL characters.

Parsing goes through the standard library's ``email`` package (``email.feedparser`` with a
compat32-based policy for the structure, ``email.message.Message`` for Content-Type and its
parameters incl. RFC 2231 and for transfer decoding, ``email.header.decode_header`` for RFC 2047
words, ``email.utils.parsedate_to_datetime`` for dates); the comments at "MIME structure",
"RFC 2047" and the address parser say what stays hand-written and why.  Consequences of
following the email package: a lone CR is a line break like CRLF and LF; when a part has several
Content-Type, Content-Disposition or Content-Transfer-Encoding fields, the first one counts
(it is the one the structure was split and decoded by); the last part of a multipart without
its close delimiter loses its final line break, like every other part.

Main entry points: ``parse_message``, ``ParsedMessage`` (``get`` computes any set of
message-derived Email properties for Email/get and Email/parse), ``parse_header_property``,
``header_property_ok``, ``header_form`` (parse one raw value in a form), ``html_to_text``,
``base_subject``.
"""

from __future__ import annotations

import codecs
import functools
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from email.feedparser import BufferedSubFile, FeedParser
from email.header import decode_header
from email.message import Message
from email.policy import Compat32
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_BODY_PROPERTIES",
    "FORMS",
    "MAX_DEPTH",
    "MAX_PARTS",
    "ParsedMessage",
    "ThreadKeys",
    "base_subject",
    "decode_text",
    "header_form",
    "header_property_ok",
    "html_to_text",
    "invalid_properties",
    "parse_header_property",
    "parse_message",
]

MAX_DEPTH = 64  # multipart nesting levels before the rest becomes opaque
MAX_PARTS = 2000  # body parts (leaves and multiparts) per message
PREVIEW_CHARS = 256

FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")

DEFAULT_BODY_PROPERTIES = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
]

# --- §4.1.2: which parsed forms are allowed on which header fields ---------------------------

_ADDRESS_HEADERS = frozenset(
    [
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "resent-from",
        "resent-sender",
        "resent-reply-to",
        "resent-to",
        "resent-cc",
        "resent-bcc",
    ]
)
_MSGID_HEADERS = frozenset(["message-id", "in-reply-to", "references", "resent-message-id"])
_DATE_HEADERS = frozenset(("date", "resent-date"))
_TEXT_HEADERS = frozenset(("subject", "comments", "keywords", "list-id"))
_URL_HEADERS = frozenset(
    ["list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive"]
)
# Fields defined by RFC 5322 (plus the obsolete Resent-Reply-To) and RFC 2369.
_DEFINED_HEADERS = (
    _ADDRESS_HEADERS
    | _MSGID_HEADERS
    | _DATE_HEADERS
    | _URL_HEADERS
    | frozenset(("subject", "comments", "keywords", "return-path", "received"))
)
_ALLOWED = {
    "Text": _TEXT_HEADERS,
    "Addresses": _ADDRESS_HEADERS,
    "GroupedAddresses": _ADDRESS_HEADERS,
    "MessageIds": _MSGID_HEADERS,
    "Date": _DATE_HEADERS,
    "URLs": _URL_HEADERS,
}


def _norm_form(form: str) -> str | None:
    if form.startswith("as") and form[2:] in FORMS:
        form = form[2:]
    return form if form in FORMS else None


def header_property_ok(name: str, form: str) -> bool:
    """May header field ``name`` be fetched/set in parsed form ``form`` (§4.1.2)?

    ``form`` is ``"Raw"``, ``"Text"``... (the ``as`` prefix is accepted too)."""
    f = _norm_form(form)
    if f is None or not _valid_header_name(name):
        return False
    if f == "Raw":
        return True
    lname = name.lower()
    return lname in _ALLOWED[f] or lname not in _DEFINED_HEADERS


def _valid_header_name(name: str) -> bool:
    return bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


def parse_header_property(prop: str) -> tuple[str, str, bool] | None:
    """Split ``header:{name}[:as{Form}][:all]`` into ``(name, form, all)``.

    Returns None when ``prop`` is not a well-formed header property (§4.1.3); it does not
    check whether the form is allowed on the field (see :func:`header_property_ok`)."""
    if not isinstance(prop, str) or not prop.startswith("header:"):
        return None
    parts = prop[7:].split(":")
    name, tail = parts[0], parts[1:]
    if not _valid_header_name(name):
        return None
    all_ = False
    if tail and tail[-1] == "all":
        all_, tail = True, tail[:-1]
    if len(tail) > 1:
        return None
    form = "Raw"
    if tail:
        if not tail[0].startswith("as") or tail[0][2:] not in FORMS:
            return None
        form = tail[0][2:]
    return name, form, all_


# --- charsets -----------------------------------------------------------------------------------

_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
    "undefined": "",
}


@functools.lru_cache(maxsize=512)
def _codec(charset: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None if unknown / not a text codec."""
    if not charset:
        return None
    cs = charset.strip().strip("\"'").lower()
    cs = _CHARSET_ALIASES.get(cs, cs)
    if not cs or len(cs) > 64:
        return None
    try:
        info = codecs.lookup(cs)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


_ASCII_LIKE = frozenset(("ascii", "latin-1", "iso8859-1", "cp1252"))


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode the offending bytes as windows-1252 (a far better guess
    than U+FFFD for mislabelled Western text); undefined cp1252 bytes become U+FFFD."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bad.decode("cp1252", "replace"), exc.end


codecs.register_error("jmap-cp1252", _cp1252_fallback)


def _dec(data: bytes, codec: str, errors: str, final: bool) -> str:
    if final:
        return data.decode(codec, errors)
    return codecs.getincrementaldecoder(codec)(errors).decode(data, final=False)


def decode_text(data: bytes, charset: str | None, final: bool = True) -> tuple[str, bool]:
    """Decode ``data`` labelled with ``charset``; returns ``(text, is_encoding_problem)``.

    Never raises.  Unknown charsets are guessed (UTF-8, then windows-1252) and reported as a
    problem; US-ASCII/Latin-1 labelled text that is valid UTF-8 is decoded as UTF-8 (a common
    mislabelling, §4.1.4 allows heuristics)."""
    codec = _codec(charset) if charset else "ascii"
    try:
        if codec is None:
            return _dec(data, "utf-8", "jmap-cp1252", final), True
        if codec in _ASCII_LIKE:
            if data.isascii():
                return data.decode("ascii"), False
            try:
                return _dec(data, "utf-8", "strict", final), False
            except UnicodeDecodeError:
                pass
            if codec == "ascii":
                return _dec(data, "utf-8", "jmap-cp1252", final), True
            try:
                return data.decode("cp1252"), False
            except UnicodeDecodeError:
                return data.decode("latin-1"), False
        try:
            return _dec(data, codec, "strict", final), False
        except UnicodeDecodeError:
            if codec == "utf-8":
                return _dec(data, codec, "jmap-cp1252", final), True
            return _dec(data, codec, "replace", final), True
    except Exception:  # broken codecs (e.g. exotic stateful ones): never crash
        return data.decode("utf-8", "replace"), True


def _clean_str(s: str) -> str:
    """Drop NULs and replace lone surrogates so the string is valid UTF-8 / JSON."""
    if "\0" in s:
        s = s.replace("\0", "")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s


def _raw_str(b: bytes) -> str:
    """Raw form (§4.1.2.1): invalid UTF-8 replaced by U+FFFD, NUL dropped."""
    if b"\0" in b:
        b = b.replace(b"\0", b"")
    return b.decode("utf-8", "replace")


# --- RFC 2047 -------------------------------------------------------------------------------
#
# Hand-written on purpose: the *placement* of encoded-words.  email.header.decode_header finds
# encoded-words anywhere (``x=?utf-8?q?a?=`` and ``=?a?q?b?==?a?q?c?=`` get decoded), while
# RFC 2047 §5 / RFC 8621 §4.1.2.2 only allow them as whole whitespace-separated words, and it
# raises on bad base64.  So this code splits the value into words and finds the runs of
# adjacent encoded-words (the whitespace between them is dropped); each word is decoded by
# ``email.header.decode_header`` (Q/B decoding) and same-charset neighbours are joined as
# bytes, so a multi-byte character split across words survives.  The bytes are turned into
# text with our charset table (``_codec``: aliases such as ks_c_5601-1987; unknown charsets
# stay encoded).

_EW_RE = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_WS_SPLIT = re.compile(r"([ \t\r\n]+)")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")


def _decode_run(words: list[str]) -> str:
    """Decode adjacent encoded-words (all with a known charset).  Each word goes through
    ``email.header.decode_header`` on its own (on a whole run it is quadratic in the number of
    words); same-charset neighbours are joined as bytes before decoding, so a multi-byte
    character split across words survives."""
    chunks: list[tuple[bytes | None, str, str]] = []  # (data or None if undecodable, cs, word)
    for word in words:
        try:
            ((data, charset),) = decode_header(word)
        except Exception:  # HeaderParseError (bad base64): the word stays as it is
            chunks.append((None, "", word))
            continue
        if not isinstance(data, bytes):  # pragma: no cover - not an encoded-word after all
            chunks.append((None, "", word))
            continue
        charset = (charset or "").split("*", 1)[0]
        if chunks and chunks[-1][0] is not None and chunks[-1][1] == charset:
            prev = chunks.pop()
            data = (prev[0] or b"") + data
        chunks.append((data, charset, word))
    out: list[str] = []
    for data, charset, word in chunks:
        if data is None:
            out.append(word)
            continue
        codec = _codec(charset) or "utf-8"
        try:
            out.append(data.decode(codec, "replace"))
        except Exception:
            out.append(data.decode("utf-8", "replace"))
    return _CTRL.sub("", "".join(out))


def _encoded_word(piece: str) -> bool:
    if not piece.startswith("=?"):
        return False
    m = _EW_RE.fullmatch(piece)
    return m is not None and _codec(m.group(1)) is not None


def decode_2047(text: str) -> str:
    """Decode RFC 2047 encoded-words that stand as whole whitespace-separated words (§4.1.2.2);
    whitespace between adjacent encoded-words is dropped; unknown charsets stay encoded."""
    if "=?" not in text:
        return text
    pieces = _WS_SPLIT.split(text)
    out: list[str] = []
    run: list[str] = []
    run_ws = ""  # whitespace after the last encoded-word of the run
    for idx, piece in enumerate(pieces):
        if idx % 2:
            if run:
                run_ws = piece
            else:
                out.append(piece)
            continue
        if _encoded_word(piece):
            run.append(piece)
            run_ws = ""
            continue
        if run:
            out.append(_decode_run(run))
            out.append(run_ws)
            run, run_ws = [], ""
        out.append(piece)
    if run:
        out.append(_decode_run(run))
        out.append(run_ws)
    return "".join(out)


def _decode_2047_loose(text: str) -> str:
    """For parameter values (file names): also decode encoded-words embedded in text."""
    if "=?" not in text:
        return text
    text = decode_2047(text)
    if "=?" not in text:
        return text
    return _EW_RE.sub(lambda m: decode_2047(m.group(0)), text)


_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


def _unfold(s: str) -> str:
    s = _UNFOLD.sub("", s)
    if "\r" in s or "\n" in s:
        s = s.replace("\r", "").replace("\n", "")
    return s


def _nfc(s: str) -> str:
    return s if s.isascii() else unicodedata.normalize("NFC", s)


def _as_text(raw: str) -> str:
    return _clean_str(_nfc(decode_2047(_unfold(raw).lstrip(" \t"))))


# --- comments / quoted strings helpers ---------------------------------------------------------


def _strip_comments(s: str) -> str:
    """Remove RFC 5322 comments outside quoted strings (keeps quoted strings as they are)."""
    if "(" not in s:
        return s
    out: list[str] = []
    depth = 0
    in_q = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and (in_q or depth) and i + 1 < n:
            if not depth:
                out.append(s[i : i + 2])
            i += 2
            continue
        if in_q:
            if c == '"':
                in_q = False
            out.append(c)
        elif depth:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if not depth:
                    out.append(" ")
        elif c == "(":
            depth = 1
        else:
            if c == '"':
                in_q = True
            out.append(c)
        i += 1
    return "".join(out)


# --- §4.1.2.3 / §4.1.2.4 addresses ----------------------------------------------------------
#
# Hand-written on purpose; neither email package parser gives RFC 8621's answers on real mail:
# * email.utils.getaddresses flattens groups (GroupedAddresses needs them), gives
#   ("", "John Smith john@x") for an unquoted name without angle brackets, keeps encoded-words
#   in names, and its results depend on the Python patch release (the CVE-2023-27043 "strict"
#   mode returns ("", "") for whole fields it finds suspicious).
# * email.headerregistry.AddressHeader keeps groups but drops the comment used as the name
#   ("bob@example.org (Bob Smith)"), turns "John Smith john@x" into '"John Smith john"@x',
#   raises on folded input, and its _header_value_parser has a history of pathological cases.
# The display names do go through decode_2047 (email.header.decode_header per word).


def _tokenize_addresses(s: str) -> list[tuple[str, str]]:
    toks: list[tuple[str, str]] = []
    i, n = 0, len(s)
    stops = ' \t\r\n"(<,;:'
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            if not toks or toks[-1][0] != "ws":
                toks.append(("ws", " "))
            i += 1
        elif c == '"':
            j = i + 1
            buf: list[str] = []
            while j < n and s[j] != '"':
                if s[j] == "\\" and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                else:
                    buf.append(s[j])
                    j += 1
            toks.append(("qs", "".join(buf)))
            i = j + 1
        elif c == "(":
            depth = 1
            j = i + 1
            buf = []
            while j < n and depth:
                cj = s[j]
                if cj == "\\" and j + 1 < n:
                    buf.append(s[j + 1])
                    j += 2
                    continue
                if cj == "(":
                    depth += 1
                elif cj == ")":
                    depth -= 1
                    if not depth:
                        break
                buf.append(cj)
                j += 1
            toks.append(("comment", "".join(buf)))
            i = j + 1
        elif c == "<":
            j = s.find(">", i + 1)
            if j < 0:
                j = n
            toks.append(("angle", s[i + 1 : j]))
            i = j + 1
        elif c in ",;:":
            toks.append((c, c))
            i += 1
        else:
            j = i + 1
            while j < n and s[j] not in stops:
                j += 1
            toks.append(("word", s[i:j]))
            i = j
    return toks


def _phrase(toks: list[tuple[str, str]]) -> str | None:
    words: list[str] = []
    for kind, text in toks:
        if kind in ("word", "qs"):
            words.append(text)
    if not words:
        return None
    name = _nfc(_clean_str(_CTRL.sub(" ", decode_2047(" ".join(words))))).strip()
    return name or None


def _mailbox(toks: list[tuple[str, str]]) -> dict[str, Any] | None:
    angle = next((i for i, t in enumerate(toks) if t[0] == "angle"), None)
    if angle is not None:
        email = _strip_comments(toks[angle][1]).strip()
        if email.startswith("@") and ":" in email:  # obsolete route
            email = email.rsplit(":", 1)[1].strip()
        email = re.sub(r"\s+", "", email)
        name = _phrase(toks[:angle])
        if name is None:
            after = [t for t in toks[angle + 1 :] if t[0] == "comment"]
            if after:
                name = _phrase([("word", after[0][1])])
        return {"name": name, "email": _nfc(_clean_str(email))}
    groups: list[str] = []
    comment: str | None = None
    joined = True
    for kind, text in toks:
        if kind == "ws":
            joined = False
        elif kind in ("word", "qs"):
            piece = text if kind == "word" else '"' + text + '"'
            if joined and groups:
                groups[-1] += piece
            else:
                groups.append(piece)
            joined = True
        elif kind == "comment":
            if comment is None and groups:
                comment = text
            joined = False
    if not groups:
        return None
    if all(kind in ("qs", "ws", "comment") for kind, _t in toks):  # only a quoted name
        return {"name": _phrase(toks), "email": ""}
    name = None
    if len(groups) > 1 and "@" in groups[-1] and not any("@" in g for g in groups[:-1]):
        name = _phrase([("word", g) for g in groups[:-1]])
        email = groups[-1]
    else:
        email = "".join(groups)
    if name is None and comment is not None:
        name = _phrase([("word", comment)])
    return {"name": name, "email": _nfc(_clean_str(email))}


def _grouped_addresses(raw: str) -> list[dict[str, Any]]:
    toks = _tokenize_addresses(_unfold(raw))
    result: list[dict[str, Any]] = []
    cur: list[tuple[str, str]] = []
    group: dict[str, Any] | None = None  # open named group

    def target() -> list[dict[str, Any]]:
        if group is not None:
            return group["addresses"]
        if not result or result[-1]["name"] is not None:
            result.append({"name": None, "addresses": []})
        return result[-1]["addresses"]

    def flush() -> None:
        nonlocal cur
        mb = _mailbox(cur)
        if mb is not None:
            target().append(mb)
        cur = []

    for tok in toks:
        kind = tok[0]
        if kind == ",":
            flush()
        elif kind == ":" and group is None and not any(t[0] == "angle" for t in cur):
            group = {"name": _phrase(cur) or "", "addresses": []}
            result.append(group)
            cur = []
        elif kind == ";":
            flush()
            group = None
        elif kind == ":":
            cur.append(("word", ":"))
        else:
            cur.append(tok)
    flush()
    return [g for g in result if g["name"] is not None or g["addresses"]]


def _addresses(raw: str) -> list[dict[str, Any]]:
    return [a for g in _grouped_addresses(raw) for a in g["addresses"]]


# --- §4.1.2.5 - §4.1.2.7 --------------------------------------------------------------------
# Message-IDs and URLs are hand-written: the email package has no public parser for a list of
# msg-ids or for RFC 2369 <url> lists.  Dates use email.utils.parsedate_to_datetime.

_ANGLE_RE = re.compile(r"<([^<>]*)>")


def _message_ids(raw: str) -> list[str] | None:
    s = _strip_comments(_unfold(raw))
    found = _ANGLE_RE.findall(s)
    ids = [re.sub(r"\s+", "", x) for x in found]
    ids = [_clean_str(x) for x in ids if x]
    if not found:
        words = s.split()
        if words and all("@" in w and "<" not in w and ">" not in w for w in words):
            ids = [_clean_str(w) for w in words]
    return ids or None


def _date(raw: str) -> str | None:
    """§4.1.2.6 via email.utils.parsedate_to_datetime (RFC 5322 and obsolete syntax, 2-digit
    years, zone names; -0000 gives a naive datetime, shown as UTC).  Comments are stripped first
    and absurd lengths skipped; impossible dates and offsets of 24h or more make it raise."""
    s = _strip_comments(_unfold(raw)).strip()
    if not s or len(s) > 200:
        return None
    try:
        dt = parsedate_to_datetime(s)
        off = dt.utcoffset()
        secs = int(off.total_seconds()) if off is not None else 0
    except Exception:
        return None
    stamp = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if secs == 0:
        return stamp + "Z"
    sign = "+" if secs > 0 else "-"
    mins = abs(secs) // 60
    return f"{stamp}{sign}{mins // 60:02d}:{mins % 60:02d}"


def _urls(raw: str) -> list[str] | None:
    s = _strip_comments(_unfold(raw))
    urls = [_clean_str(re.sub(r"\s+", "", u)) for u in _ANGLE_RE.findall(s)]
    urls = [u for u in urls if u]
    return urls or None


def header_form(raw: str, form: str) -> Any:
    """Parse one Raw header value (as in ``headers``) into ``form`` (§4.1.2.1-§4.1.2.7)."""
    f = _norm_form(form) or "Raw"
    try:
        if f == "Raw":
            return raw
        if f == "Text":
            return _as_text(raw)
        if f == "Addresses":
            return _addresses(raw)
        if f == "GroupedAddresses":
            return _grouped_addresses(raw)
        if f == "MessageIds":
            return _message_ids(raw)
        if f == "Date":
            return _date(raw)
        return _urls(raw)
    except Exception:  # pragma: no cover - defensive: parsed forms are best effort
        return None if f in ("MessageIds", "Date", "URLs") else ([] if "Addr" in f else "")


def _header_lookup(headers: list[tuple[str, str]], name: str, form: str, all_: bool) -> Any:
    lname = name.lower()
    values = [v for n, v in headers if n.lower() == lname]
    if all_:
        return [header_form(v, form) for v in values]
    return header_form(values[-1], form) if values else None


# --- MIME structure: the standard library's email package ------------------------------------
#
# ``email.feedparser.FeedParser`` (policy ``_POLICY``, a compat32 variant) splits the message:
# header blocks, multipart boundaries (preamble/epilogue, missing close delimiter, boundary
# that matches nothing, boundaries that are prefixes of outer ones), digest default types.
# ``email.message.Message`` gives the Content-Type, the parameters (quoting, RFC 2231
# continuations and charsets) and the Content-Transfer-Encoding decoding (``get_payload(
# decode=True)``: lenient base64 with defects, quoted-printable, uuencode).
#
# What is adapted, and why (the email package is right for a mail client, not for JMAP):
#
# * ``message/*`` parts stay leaves: the feedparser would parse them into sub-messages and
#   their exact octets (the blob, §4.1.4: bodyStructure does not recurse into them) would be
#   lost.  ``_Entity.get_content_type`` hides them (and capped parts) from the feedparser.
# * MAX_DEPTH / MAX_PARTS are enforced while the feedparser runs (``_Parser._new_message``), so
#   it never recurses deeper than MAX_DEPTH (no RecursionError, no per-line cost growing with
#   absurd nesting) and the rest of a multipart past MAX_PARTS becomes one opaque part with
#   its exact octets.  This touches FeedParser internals (``_msgstack``, ``_input``) and is
#   guarded: if they change, the caps degrade, parsing does not fail.
# * Raw header values (§4.1.2.1) must be the exact octets after the colon, leading space and
#   folding included; compat32 strips the leading space.  ``_Policy.header_source_parse``
#   keeps the exact value (``_HeaderValue.raw``) and hands the email package a value decoded
#   as UTF-8 (RFC 6532) rather than surrogate-escaped bytes, which compat32 would turn into
#   U+FFFD in parameters such as 8-bit file names.
# * RFC 2045 allows comments in Content-Type, Content-Disposition and
#   Content-Transfer-Encoding (``boundary="b" (comment)``, ``base64 (x)``); the email package
#   keeps them in values.  They are stripped from the value the email package sees.  Those
#   values are also capped (``_PARAM_CAP``): compat32's parameter splitter is quadratic.
# * Obsolete whitespace before the colon (``From : x``, RFC 5322 §4.5.3) ends the header block
#   in the feedparser (and ``From :`` first is taken for an mbox From_ line): the top-level
#   header block's field names are normalised before parsing (``_fix_header_names``); the
#   octets after the colon and every body are untouched.
# * CR-only messages are converted to LF first, so text values get line feeds.

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")
_MIME_STRUCTURED = frozenset(("content-type", "content-disposition", "content-transfer-encoding"))
_PARAM_CAP = 16384  # characters of a structured MIME field given to the email package
_PARAM_MAX = 64  # parameters of a structured MIME field given to the email package
_MAX_BOUNDARY = 200  # RFC 2046 says 70; longer "boundaries" are treated as absent


class _HeaderValue(str):
    """A header value as the email package sees it, with the exact Raw form in ``raw``."""

    raw: str


class _Policy(Compat32):
    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = sourcelines[0].split(":", 1)
        raw = (value + "".join(sourcelines[1:])).rstrip("\r\n")
        raw = _raw_str(raw.encode("ascii", "surrogateescape"))
        name = name.rstrip(" \t")
        if name.lower() in _MIME_STRUCTURED:
            v = _unfold(raw[:_PARAM_CAP])
            if v.count(";") > _PARAM_MAX:
                v = ";".join(v.split(";", _PARAM_MAX + 1)[: _PARAM_MAX + 1])
            v = _strip_comments(v).strip()
        else:
            v = raw.lstrip(" \t")
        hv = _HeaderValue(v)
        hv.raw = raw
        return name, hv


_POLICY = _Policy()


class _Entity(Message):
    """A parsed entity; ``jmap_*`` attributes are set by ``_Parser._new_message``."""

    jmap_depth = 0
    jmap_leaf = False  # parse the body as opaque octets (depth cap, MAX_PARTS remainder)
    jmap_rest = False  # the MAX_PARTS remainder of the parent multipart, without headers

    def get_content_type(self) -> str:
        # What the feedparser sees: message/* and capped entities are not parsed into.
        ctype = super().get_content_type()
        if self.jmap_leaf or ctype.startswith("message/"):
            return "application/octet-stream"
        return ctype

    def real_content_type(self) -> str:
        return super().get_content_type()

    def get_boundary(self, failobj: Any = None) -> Any:
        try:
            boundary = super().get_boundary(failobj)
        except Exception:  # e.g. TypeError sorting mixed RFC 2231 continuations
            return failobj
        if not boundary or not isinstance(boundary, str) or len(boundary) > _MAX_BOUNDARY:
            return failobj
        return boundary


def _is_boundary_matcher(pred: Any) -> bool:
    if getattr(pred, "jmap_boundary", False):
        return True
    pattern = getattr(getattr(pred, "__self__", None), "pattern", None)
    # feedparser: re.compile('(?P<sep>' + re.escape('--' + boundary) + ...)
    return isinstance(pattern, str) and pattern[:14].replace("\\", "").startswith("(?P<sep>--")


class _Input(BufferedSubFile):
    """The feedparser's line buffer, with a shortcut: it tests every line against every
    enclosing multipart's boundary (a Python loop per line and nesting level: 10 s for 5 MB of
    short lines 64 levels deep).  A delimiter line starts with "--", so other lines skip the
    test, as long as only boundary matchers were pushed (the feedparser also pushes a blank
    line matcher for message/delivery-status, which ``_Entity`` keeps from being parsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.jmap_fast = True

    def push_eof_matcher(self, pred: Any) -> None:
        if not _is_boundary_matcher(pred):
            self.jmap_fast = False
        super().push_eof_matcher(pred)

    def readline(self) -> Any:
        lines = getattr(self, "_lines", None)
        if self.jmap_fast and lines and not lines[0].startswith("--"):
            return lines.popleft()
        return super().readline()


class _Parser(FeedParser):
    def __init__(self) -> None:
        super().__init__(_factory=_Entity, policy=_POLICY)
        self.jmap_count = 0
        self._input = _Input()

    def _new_message(self) -> None:
        depth = len(self._msgstack)
        rest = depth > 0 and self.jmap_count >= MAX_PARTS
        eofstack = getattr(self._input, "_eofstack", None) if rest else None
        super()._new_message()
        cur = self._cur
        self.jmap_count += 1
        if not isinstance(cur, _Entity):  # pragma: no cover - defensive
            return
        cur.jmap_depth = depth
        if depth >= MAX_DEPTH:
            cur.jmap_leaf = True
        if eofstack:
            # The parent's boundary matcher is on top: let only its close delimiter end this
            # part, and feed an empty line so no header is parsed: the entity holds the rest
            # of the parent's body, as it is.
            outer = eofstack[-1]

            def close_only(line: str, outer: Callable[[str], Any] = outer) -> Any:
                mo = outer(line)
                return mo if mo is not None and mo.group("end") else None

            close_only.jmap_boundary = True  # type: ignore[attr-defined]
            eofstack[-1] = close_only
            self._input.unreadline("\n")
            cur.jmap_leaf = cur.jmap_rest = True


_OBS_NAME = re.compile(rb"(?m)^[!-9;-~]+[ \t]+:")
_HDR_LINE = re.compile(rb"([!-9;-~]+)([ \t]*):")


def _fix_header_names(buf: bytes) -> bytes:
    """Drop whitespace between field name and colon in the top-level header block."""
    end = len(buf)
    for sep in (b"\n\n", b"\n\r\n"):
        i = buf.find(sep)
        if 0 <= i < end:
            end = i
    if not _OBS_NAME.search(buf, 0, end + 1):
        return buf
    out: list[bytes] = []
    pos = last = 0
    while pos < len(buf):
        nl = buf.find(b"\n", pos)
        nxt = len(buf) if nl < 0 else nl + 1
        first = buf[pos : pos + 1]
        if first in (b"\r", b"\n", b""):
            break
        if first not in (b" ", b"\t"):
            m = _HDR_LINE.match(buf, pos, nxt)
            if m is None:
                if pos == 0 and buf.startswith(b"From "):  # mbox From_ line
                    pos = nxt
                    continue
                break
            if m.group(2):
                out.append(buf[last : m.end(1)])
                last = m.end(2)
        pos = nxt
    out.append(buf[last:])
    return b"".join(out)


def _params(e: Message, header: str) -> dict[str, str]:
    """Parameters of a structured field by the email package (quoting, RFC 2231).  An RFC 2231
    value wins over a plain one of the same name; its charset is decoded with ``decode_text``
    (unknown or wrong charsets guessed, where the email package would keep Latin-1 mojibake)."""
    try:
        items = e.get_params(None, header)
    except Exception:
        return {}
    out: dict[str, str] = {}
    for k, v in (items or [])[1:]:
        k = k.strip().lower()
        if isinstance(v, tuple):
            charset, _lang, text = v
            try:
                data = text.encode("latin-1")
            except UnicodeEncodeError:
                data = text.encode("utf-8", "replace")
            out[k] = decode_text(data, charset or "utf-8")[0]
        elif k:
            out.setdefault(k, v)
    return out


_IDENTITY_CTE = frozenset(("", "7bit", "8bit", "binary"))
_DECODED_CTE = frozenset(("base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue", "uue"))


def _body(e: Message, opaque: bool = False) -> tuple[bytes, bool]:
    """(content after transfer decoding, is_problem) by ``Message.get_payload(decode=True)``;
    ``opaque``: the exact octets, whatever the Content-Transfer-Encoding says."""
    cte = str(e.get("content-transfer-encoding", "")).lower()
    if opaque and cte:
        del e["content-transfer-encoding"]
        cte = ""
    ndefects = len(e.defects)
    data = e.get_payload(decode=True)
    if not isinstance(data, bytes):
        data = b""
    if cte in _IDENTITY_CTE:
        return data, False
    if cte not in _DECODED_CTE:  # unknown encoding: content as is (§4.1.4), flagged
        return data, True
    problem = len(e.defects) > ndefects  # base64: invalid characters, padding, length
    if cte not in ("base64", "quoted-printable"):  # uuencode gives the input back on failure
        del e["content-transfer-encoding"]
        problem = problem or data == e.get_payload(decode=True) != b""
    return data, problem


class _Part:
    __slots__ = (
        "charset",
        "cid",
        "data",
        "disposition",
        "headers",
        "language",
        "location",
        "name",
        "part_id",
        "problem",
        "size",
        "sub_parts",
        "type",
    )

    def __init__(self) -> None:
        self.part_id: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.type = "text/plain"
        self.charset: str | None = "us-ascii"
        self.disposition: str | None = None
        self.name: str | None = None
        self.cid: str | None = None
        self.language: list[str] | None = None
        self.location: str | None = None
        self.data = b""  # content after transfer decoding (the blob)
        self.problem = False  # transfer decoding problem
        self.size = 0
        self.sub_parts: list[_Part] | None = None


def _last(headers: list[tuple[str, str]], lname: str) -> str | None:
    for n, v in reversed(headers):
        if n.lower() == lname:
            return v
    return None


def _content_type(e: _Entity) -> str:
    """The email package's type, comments and whitespace removed (``text / html``), and the
    default (text/plain, message/rfc822 in a digest) unless it is a valid type/subtype."""
    ctype = re.sub(r"\s+", "", e.real_content_type())
    return ctype if _TOKEN_RE.fullmatch(ctype) else e.get_default_type()


# --- html to text -------------------------------------------------------------------------

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|div|tr|li|h[1-6]|blockquote|pre|table|ul|ol|hr|dd|dt|section|article|"
    r"header|footer|title)\b[^<>]*>",
    re.IGNORECASE,
)
_ANY_TAG = re.compile(r"<[^<>]*>")
_WS_RUN = re.compile(r"\s+")


def _collapse_ws(t: str) -> str:
    """``t`` with control characters as spaces, whitespace runs collapsed, stripped; when
    ``t`` is long, only as much of that as the preview can use.  The collapsed form of a
    prefix of ``t`` is a prefix of the collapsed form of ``t``; once it holds more than
    PREVIEW_CHARS characters up to a non-space one, it agrees with the whole text's on
    everything the preview takes (its first PREVIEW_CHARS characters, and whether the
    preview is full), without collapsing kilobytes of body the preview never shows."""
    head = PREVIEW_CHARS * 8
    if len(t) > head:
        part = _WS_RUN.sub(" ", _CTRL.sub(" ", t[:head])).strip()
        if len(part) > PREVIEW_CHARS:
            return part
    return _WS_RUN.sub(" ", _CTRL.sub(" ", t)).strip()


def html_to_text(src: str) -> str:
    """Plain text of an HTML fragment: drops scripts, styles, comments and head; block tags
    become line breaks; entities decoded.  Linear time on any input."""
    low = src.lower()
    out: list[str] = []
    pos = 0
    n = len(src)
    unclosed: set[str] = set()
    while pos < n:
        lt = src.find("<", pos)
        if lt < 0:
            out.append(src[pos:])
            break
        out.append(src[pos:lt])
        if low.startswith("<!--", lt):
            end = low.find("-->", lt + 4)
            pos = n if end < 0 else end + 3
            continue
        skipped = False
        for tag in ("script", "style", "head", "title"):
            if low.startswith("<" + tag, lt) and (
                lt + len(tag) + 1 >= n or not low[lt + len(tag) + 1].isalnum()
            ):
                end = -1 if tag in unclosed else low.find("</" + tag, lt)
                if end < 0:
                    unclosed.add(tag)
                    gt = low.find(">", lt)
                    pos = n if gt < 0 else gt + 1
                else:
                    gt = low.find(">", end)
                    pos = n if gt < 0 else gt + 1
                skipped = True
                break
        if skipped:
            out.append(" ")
            continue
        nxt_lt = src.find("<", lt + 1)
        gt = src.find(">", lt, n if nxt_lt < 0 else nxt_lt)
        if gt < 0:  # stray "<": keep it as text
            out.append("<")
            pos = lt + 1
            continue
        tag = src[lt : gt + 1]
        out.append("\n" if _BLOCK_TAG.fullmatch(tag) else " " if tag[1:2] != "/" else "")
        pos = gt + 1
    text = html.unescape("".join(out))
    return _clean_str(text.replace("\xa0", " "))


# --- RFC 5256 base subject --------------------------------------------------------------------

_FWD_TRAILER = re.compile(r"(?:\s*\(fwd\))+\s*$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\]\s*"
_LEADER = re.compile(
    r"^(?:"
    + _BLOB
    + r")*(?:re|fwd?|aw|sv|vs|antw|wg|tr|rif|r|res|odp|ynt|enc)\s*(?:"
    + _BLOB
    + r")?[:\uff1a]\s*",
    re.IGNORECASE,
)
_BLOB_PREFIX = re.compile(r"^" + _BLOB)
_FWD_WRAP = re.compile(r"^\[fwd:(.*)\]$", re.IGNORECASE | re.DOTALL)


def base_subject(subject: str | None) -> str:
    """RFC 5256 §2.1 base subject (with a few common localised reply prefixes), case-folded."""
    s = _WS_RUN.sub(" ", subject or "").strip()
    while True:
        s = _FWD_TRAILER.sub("", s).strip()
        while True:
            t = _LEADER.sub("", s, count=1)
            if t == s:
                b = _BLOB_PREFIX.sub("", s, count=1)
                if b != s and b.strip():
                    t = b
            if t == s:
                break
            s = t.strip()
        m = _FWD_WRAP.match(s)
        if not m:
            break
        s = m.group(1).strip()
    return s.casefold()


class ThreadKeys(NamedTuple):
    message_ids: list[str]  # own Message-ID first, then References, then In-Reply-To; deduped
    base_subject: str  # RFC 5256 base subject, case-folded


# --- the parser ---------------------------------------------------------------------------


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse a message; never raises for bytes input (bytearray/memoryview accepted too)."""
    return ParsedMessage(raw)


# RFC 8621 §4.1.3: each convenience property is a header field in a parsed form.
CONVENIENCE = {
    "messageId": ("Message-ID", "MessageIds"),
    "inReplyTo": ("In-Reply-To", "MessageIds"),
    "references": ("References", "MessageIds"),
    "sender": ("Sender", "Addresses"),
    "from": ("From", "Addresses"),
    "to": ("To", "Addresses"),
    "cc": ("Cc", "Addresses"),
    "bcc": ("Bcc", "Addresses"),
    "replyTo": ("Reply-To", "Addresses"),
    "subject": ("Subject", "Text"),
    "sentAt": ("Date", "Date"),
}


class ParsedMessage:
    """A parsed message.  See the module docstring for the partId / blobId contract."""

    def __init__(self, raw: bytes) -> None:
        raw = bytes(raw)
        self.size = len(raw)
        self._leaves: dict[str, _Part] = {}
        try:
            buf = raw
            if b"\n" not in buf and b"\r" in buf:  # CR-only line endings
                buf = buf.replace(b"\r", b"\n")
            parser = _Parser()
            parser.feed(_fix_header_names(buf).decode("ascii", "surrogateescape"))
            tree = parser.close()
            self._root = self._build(tree, "")
        except Exception:  # last resort (RecursionError, MemoryError...): one opaque part
            self._leaves.clear()
            root = _Part()
            root.part_id = "1"
            root.type = "application/octet-stream"
            root.charset = None
            root.data, root.size = raw, len(raw)
            self._leaves["1"] = root
            self._root = root
        self._headers = self._root.headers
        self._lists: tuple[list[_Part], list[_Part], list[_Part]] | None = None
        self._preview: str | None = None

    # -- building (from the email package's tree) --

    def _build(self, e: Message, prefix: str) -> _Part:
        p = _Part()
        part_id = prefix or "1"
        if getattr(e, "jmap_rest", False):  # the rest of a multipart past MAX_PARTS
            p.type, p.charset = "application/octet-stream", None
            return self._leaf(p, e, part_id, opaque=True)
        p.headers = [(n, getattr(v, "raw", str(v))) for n, v in e.raw_items()]
        has_ct = "content-type" in e
        ctype = _content_type(e) if isinstance(e, _Entity) else e.get_content_type()
        params = _params(e, "content-type")
        p.type = ctype
        if not has_ct or ctype.startswith("text/"):
            p.charset = params.get("charset") or "us-ascii"
        else:
            p.charset = params.get("charset")
        if "content-disposition" in e:
            disp = e.get_content_disposition()
            p.disposition = re.sub(r"\s+", "", disp or "") or None
        dparams = _params(e, "content-disposition")
        name = dparams.get("filename") or params.get("name")
        if name:
            p.name = _clean_str(_nfc(_decode_2047_loose(name))) or None
        # Content-ID, -Language and -Location: the email package has no parser for them.
        cid = _last(p.headers, "content-id")
        if cid is not None:
            c = _strip_comments(_unfold(cid)).strip()
            if c.startswith("<") and c.endswith(">"):
                c = c[1:-1]
            p.cid = c.strip() or None
        lang = _last(p.headers, "content-language")
        if lang is not None:
            tags = [t for t in re.split(r"[\s,]+", _strip_comments(_unfold(lang))) if t]
            p.language = tags or None
        loc = _last(p.headers, "content-location")
        if loc is not None:
            p.location = re.sub(r"\s+", "", _unfold(loc)) or None
        if e.is_multipart():
            if not ctype.startswith("multipart/"):  # pragma: no cover - defensive
                p.type = "multipart/mixed"
            p.charset = None if has_ct else p.charset
            p.sub_parts = [
                self._build(child, f"{prefix}.{k}" if prefix else str(k))
                for k, child in enumerate(e.get_payload(), 1)
            ]
            return p
        if ctype.startswith("multipart/"):
            if getattr(e, "jmap_depth", 0) >= MAX_DEPTH:  # nesting cap: the body as one blob
                p.type, p.charset = "application/octet-stream", None
                return self._leaf(p, e, part_id, opaque=True)
            # No usable boundary: present the body as text (like most MUAs do).
            p.type = "text/plain"
            p.charset = params.get("charset") or "us-ascii"
        return self._leaf(p, e, part_id)

    def _leaf(self, p: _Part, e: Message, part_id: str, opaque: bool = False) -> _Part:
        p.part_id = part_id
        try:
            p.data, p.problem = _body(e, opaque)
        except Exception:  # pragma: no cover - defensive: get_payload on odd input
            p.data, p.problem = b"", True
        p.size = len(p.data)
        self._leaves[part_id] = p
        return p

    # -- headers (§4.1.2, §4.1.3) --

    @property
    def headers(self) -> list[dict[str, str]]:
        """The ``headers`` property: every header field, in order, Raw form."""
        return [{"name": n, "value": v} for n, v in self._headers]

    def header(self, name: str, form: str = "Raw", all: bool = False) -> Any:
        """``header:{name}:as{form}[:all]``: last instance (or null), or all instances."""
        return _header_lookup(self._headers, name, form, all)

    @property
    def message_id(self) -> list[str] | None:
        return self.header("Message-ID", "MessageIds")

    @property
    def in_reply_to(self) -> list[str] | None:
        return self.header("In-Reply-To", "MessageIds")

    @property
    def references(self) -> list[str] | None:
        return self.header("References", "MessageIds")

    @property
    def sender(self) -> list[dict[str, Any]] | None:
        return self.header("Sender", "Addresses")

    @property
    def from_(self) -> list[dict[str, Any]] | None:
        return self.header("From", "Addresses")

    @property
    def to(self) -> list[dict[str, Any]] | None:
        return self.header("To", "Addresses")

    @property
    def cc(self) -> list[dict[str, Any]] | None:
        return self.header("Cc", "Addresses")

    @property
    def bcc(self) -> list[dict[str, Any]] | None:
        return self.header("Bcc", "Addresses")

    @property
    def reply_to(self) -> list[dict[str, Any]] | None:
        return self.header("Reply-To", "Addresses")

    @property
    def subject(self) -> str | None:
        return self.header("Subject", "Text")

    @property
    def sent_at(self) -> str | None:
        return self.header("Date", "Date")

    def thread_keys(self) -> ThreadKeys:
        ids: list[str] = []
        for v in (self.message_id, self.references, self.in_reply_to):
            for i in v or ():
                if i not in ids:
                    ids.append(i)
        return ThreadKeys(ids, base_subject(self.subject))

    # -- body structure (§4.1.4) --

    @property
    def part_ids(self) -> list[str]:
        """Leaf part ids, depth-first (every part that has a blob)."""
        return list(self._leaves)

    def _part_dict(
        self,
        p: _Part,
        blob_id_for: Callable[[str], str | None] | None,
        props: Iterable[str] | None,
        tree: bool,
    ) -> dict[str, Any]:
        full = props is None
        want = set(DEFAULT_BODY_PROPERTIES if props is None else props)
        d: dict[str, Any] = {}
        for prop in [*DEFAULT_BODY_PROPERTIES[:2], "headers", *DEFAULT_BODY_PROPERTIES[2:]]:
            if not full and prop not in want:
                continue
            if prop == "partId":
                d["partId"] = p.part_id
            elif prop == "blobId":
                d["blobId"] = (
                    blob_id_for(p.part_id) if blob_id_for is not None and p.part_id else None
                )
            elif prop == "headers":
                d["headers"] = [{"name": n, "value": v} for n, v in p.headers]
            else:
                d[prop] = getattr(p, prop)
        if props is not None:
            for prop in props:
                hp = parse_header_property(prop)
                if hp is not None:
                    d[prop] = _header_lookup(p.headers, *hp)
        if p.sub_parts is not None and (tree or full or "subParts" in want):
            d["subParts"] = [self._part_dict(c, blob_id_for, props, True) for c in p.sub_parts]
        elif full or "subParts" in want:
            d["subParts"] = None
        return d

    def body_structure(
        self,
        blob_id_for: Callable[[str], str | None] | None = None,
        properties: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """The ``bodyStructure`` EmailBodyPart tree.  ``properties`` (bodyProperties) limits
        the keys of each part (default: all, incl. headers); multipart nodes always get
        ``subParts``."""
        props = list(properties) if properties is not None else None
        return self._part_dict(self._root, blob_id_for, props, True)

    def _compute_lists(self) -> tuple[list[_Part], list[_Part], list[_Part]]:
        if self._lists is None:
            text: list[_Part] = []
            htm: list[_Part] = []
            att: list[_Part] = []
            _parse_structure([self._root], "mixed", False, htm, text, att)
            self._lists = (text, htm, att)
        return self._lists

    def text_body(self, blob_id_for=None, properties=None) -> list[dict[str, Any]]:
        props = list(properties) if properties is not None else None
        return [self._part_dict(p, blob_id_for, props, False) for p in self._compute_lists()[0]]

    def html_body(self, blob_id_for=None, properties=None) -> list[dict[str, Any]]:
        props = list(properties) if properties is not None else None
        return [self._part_dict(p, blob_id_for, props, False) for p in self._compute_lists()[1]]

    def attachments(self, blob_id_for=None, properties=None) -> list[dict[str, Any]]:
        props = list(properties) if properties is not None else None
        return [self._part_dict(p, blob_id_for, props, False) for p in self._compute_lists()[2]]

    @property
    def has_attachment(self) -> bool:
        return any(p.disposition != "inline" for p in self._compute_lists()[2])

    # -- content --

    def part_type(self, part_id: str) -> str:
        return self._leaves[part_id].type

    def part_bytes(self, part_id: str) -> bytes:
        """Decoded (transfer-encoding) content of a leaf part; KeyError if unknown."""
        return self._leaves[part_id].data

    def _text(self, part_id: str, limit: int = 0) -> tuple[str, bool, bool]:
        """(text, is_encoding_problem, source_was_cut)"""
        p = self._leaves[part_id]
        data = self.part_bytes(part_id)
        cte_problem = p.problem
        cut = bool(limit) and len(data) > limit
        if cut:
            data = data[:limit]
        text, problem = decode_text(data, p.charset or "us-ascii", final=not cut)
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        return _clean_str(text), problem or cte_problem, cut

    def body_value(self, part_id: str, max_bytes: int = 0) -> dict[str, Any]:
        """EmailBodyValue (§4.1.4) of a part; truncated to ``max_bytes`` UTF-8 octets when > 0
        (never mid-codepoint, and for text/html never inside a tag)."""
        p = self._leaves[part_id]
        # Decoding more than 4x the limit cannot be needed (worst case UTF-8 expansion is 3x).
        text, problem, cut = self._text(part_id, max_bytes * 8 + 64 if max_bytes > 0 else 0)
        truncated = cut
        if max_bytes > 0:
            enc = text.encode("utf-8")
            if len(enc) > max_bytes:
                text = enc[:max_bytes].decode("utf-8", "ignore")
                if p.type == "text/html":
                    lt = text.rfind("<")
                    if lt > text.rfind(">"):
                        text = text[:lt]
                truncated = True
        return {"value": text, "isEncodingProblem": problem, "isTruncated": truncated}

    def searchable_text(self, max_bytes: int = 0) -> str:
        """The body as the user reads it, as plain text: the textBody parts (§4.1.4:
        text/plain preferred, HTML where there is no plain alternative) with HTML converted
        to text; whitespace not collapsed.  What the full-text index holds for the body
        (so a search for "div" does not find every HTML message, and a multipart/alternative
        body is indexed once, not twice) and what a SearchSnippet preview shows.
        ``max_bytes`` > 0 caps each part as body_value does."""
        chunks = []
        for part in self.text_body(properties=["partId", "type"]):
            part_id, kind = part.get("partId"), str(part.get("type", ""))
            if not part_id or not kind.startswith("text/"):
                continue
            value = self.body_value(part_id, max_bytes)["value"]
            chunks.append(html_to_text(value) if kind == "text/html" else value)
        return " ".join(chunks)

    def body_value_part_ids(
        self, fetch_text: bool = False, fetch_html: bool = False, fetch_all: bool = False
    ) -> list[str]:
        """Which text/* parts go in bodyValues for the fetch*BodyValues arguments (§4.2)."""
        text, htm, _att = self._compute_lists()
        chosen: list[str] = []
        pools: list[Iterable[_Part]] = []
        if fetch_all:
            pools.append(self._leaves.values())
        if fetch_text:
            pools.append(text)
        if fetch_html:
            pools.append(htm)
        for pool in pools:
            for p in pool:
                if p.part_id and p.type.startswith("text/") and p.part_id not in chosen:
                    chosen.append(p.part_id)
        return chosen

    def body_values(
        self,
        fetch_text: bool = False,
        fetch_html: bool = False,
        fetch_all: bool = False,
        max_bytes: int = 0,
    ) -> dict[str, dict[str, Any]]:
        ids = self.body_value_part_ids(fetch_text, fetch_html, fetch_all)
        return {i: self.body_value(i, max_bytes) for i in ids}

    @property
    def preview(self) -> str:
        """Up to 256 characters of plain text, whitespace collapsed (§4.1.4)."""
        if self._preview is None:
            chunks: list[str] = []
            total = 0
            text, htm, _att = self._compute_lists()
            for p in text or htm:
                if p.type not in ("text/plain", "text/html"):
                    continue
                try:
                    if p.type == "text/html":
                        t = html_to_text(self._text(p.part_id, 256 * 1024)[0])
                    else:
                        t = self._text(p.part_id, 8 * 1024)[0]
                except Exception:  # pragma: no cover - defensive
                    continue
                t = _collapse_ws(t)
                if t:
                    chunks.append(t)
                    total += len(t) + 1
                if total >= PREVIEW_CHARS:
                    break
            prev = " ".join(chunks)[:PREVIEW_CHARS]
            self._preview = prev.rstrip("\ufffd").strip() if len(prev) == PREVIEW_CHARS else prev
        return self._preview

    # -- all at once for Email/get and Email/parse --

    _CONVENIENCE = CONVENIENCE
    MESSAGE_PROPERTIES = frozenset(
        [
            *_CONVENIENCE,
            "headers",
            "size",
            "bodyStructure",
            "bodyValues",
            "textBody",
            "htmlBody",
            "attachments",
            "hasAttachment",
            "preview",
        ]
    )

    def get(
        self,
        properties: Iterable[str],
        *,
        blob_id_for: Callable[[str], str | None] | None = None,
        body_properties: Iterable[str] | None = None,
        fetch_text_body_values: bool = False,
        fetch_html_body_values: bool = False,
        fetch_all_body_values: bool = False,
        max_body_value_bytes: int = 0,
    ) -> dict[str, Any]:
        """Every message-derived property among ``properties``: the convenience properties,
        ``header:*``, headers, size, bodyStructure, bodyValues, textBody, htmlBody,
        attachments, hasAttachment, preview.  Metadata (id, blobId, threadId, mailboxIds,
        keywords, receivedAt) and unknown names are left out for the caller.  Validate header
        properties first (:func:`invalid_properties`): forbidden forms are answered here
        anyway, as best effort."""
        bprops = list(DEFAULT_BODY_PROPERTIES if body_properties is None else body_properties)
        out: dict[str, Any] = {}
        for prop in properties:
            if prop in self._CONVENIENCE:
                out[prop] = self.header(*self._CONVENIENCE[prop])
            elif prop.startswith("header:"):
                hp = parse_header_property(prop)
                if hp is not None:
                    out[prop] = self.header(*hp)
            elif prop == "headers":
                out[prop] = self.headers
            elif prop == "size":
                out[prop] = self.size
            elif prop == "bodyStructure":
                out[prop] = self.body_structure(blob_id_for, bprops)
            elif prop == "textBody":
                out[prop] = self.text_body(blob_id_for, bprops)
            elif prop == "htmlBody":
                out[prop] = self.html_body(blob_id_for, bprops)
            elif prop == "attachments":
                out[prop] = self.attachments(blob_id_for, bprops)
            elif prop == "hasAttachment":
                out[prop] = self.has_attachment
            elif prop == "preview":
                out[prop] = self.preview
            elif prop == "bodyValues":
                out[prop] = self.body_values(
                    fetch_text_body_values,
                    fetch_html_body_values,
                    fetch_all_body_values,
                    max_body_value_bytes,
                )
        return out


def invalid_properties(properties: Iterable[str], body: bool = False) -> list[str]:
    """Header properties among ``properties`` that are malformed or use a form forbidden on
    that field (§4.1.2: Email/get and Email/parse answer invalidArguments).  Non-header
    property names are not checked.  ``body=True`` for bodyProperties."""
    bad = []
    for prop in properties:
        if isinstance(prop, str) and prop.startswith("header:"):
            hp = parse_header_property(prop)
            if hp is None or not header_property_ok(hp[0], hp[1]):
                bad.append(prop)
    return bad


def _inline_media(t: str) -> bool:
    return t.startswith(("image/", "audio/", "video/"))


def _parse_structure(
    parts: list[_Part],
    multipart_type: str,
    in_alternative: bool,
    html_body: list[_Part] | None,
    text_body: list[_Part] | None,
    attachments: list[_Part],
) -> None:
    """RFC 8621 §4.1.4's parseStructure, transcribed literally."""
    text_length = len(text_body) if text_body is not None else -1
    html_length = len(html_body) if html_body is not None else -1
    for i, part in enumerate(parts):
        is_multipart = part.type.startswith("multipart/")
        is_inline = (
            part.disposition != "attachment"
            and (part.type in ("text/plain", "text/html") or _inline_media(part.type))
            and (
                i == 0
                or (multipart_type != "related" and (_inline_media(part.type) or not part.name))
            )
        )
        if is_multipart:
            sub = part.type.split("/", 1)[1]
            _parse_structure(
                part.sub_parts or [],
                sub,
                in_alternative or sub == "alternative",
                html_body,
                text_body,
                attachments,
            )
        elif is_inline:
            if multipart_type == "alternative":
                if part.type == "text/plain":
                    if text_body is not None:
                        text_body.append(part)
                elif part.type == "text/html":
                    if html_body is not None:
                        html_body.append(part)
                else:
                    attachments.append(part)
                continue
            elif in_alternative:
                if part.type == "text/plain":
                    html_body = None
                if part.type == "text/html":
                    text_body = None
            if text_body is not None:
                text_body.append(part)
            if html_body is not None:
                html_body.append(part)
            if (text_body is None or html_body is None) and _inline_media(part.type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text_body is not None and html_body is not None:
        if text_length == len(text_body) and html_length != len(html_body):
            text_body.extend(html_body[html_length:])
        if html_length == len(html_body) and text_length != len(text_body):
            html_body.extend(text_body[text_length:])
