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

Main entry points: ``parse_message``, ``ParsedMessage`` (``get`` computes any set of
message-derived Email properties for Email/get and Email/parse), ``parse_header_property``,
``header_property_ok``, ``header_form`` (parse one raw value in a form), ``html_to_text``,
``base_subject``.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import html
import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime
from email.utils import parsedate_tz
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

_EW_RE = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_WS_SPLIT = re.compile(r"([ \t\r\n]+)")
_QHEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_B64_CLEAN = re.compile(rb"[^A-Za-z0-9+/]")


_B64_OK = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n"


def _b64_lenient(data: bytes) -> tuple[bytes, bool]:
    try:
        return binascii.a2b_base64(data), bool(data.translate(None, _B64_OK))
    except (binascii.Error, ValueError):
        clean = _B64_CLEAN.sub(b"", data)
        if len(clean) % 4 == 1:
            clean = clean[:-1]
        clean += b"=" * (-len(clean) % 4)
        try:
            return binascii.a2b_base64(clean), True
        except (binascii.Error, ValueError):
            return b"", True


def _decode_encoded_word(m: re.Match[str]) -> tuple[str, bytes] | None:
    codec = _codec(m.group(1))
    if codec is None:
        return None
    text = m.group(3)
    if m.group(2) in "Bb":
        data, _problem = _b64_lenient(text.encode("ascii", "ignore"))
    else:
        raw = text.replace("_", " ").encode("utf-8", "replace")
        data = _QHEX.sub(lambda mm: bytes((int(mm.group(1), 16),)), raw)
    return codec, data


def _flush_words(pending: list[tuple[str, bytes]]) -> str:
    out: list[str] = []
    i = 0
    while i < len(pending):
        codec, data = pending[i]
        i += 1
        while i < len(pending) and pending[i][0] == codec:  # rejoin split multibyte chars
            data += pending[i][1]
            i += 1
        try:
            out.append(data.decode(codec, "replace"))
        except Exception:
            out.append(data.decode("utf-8", "replace"))
    return _CTRL.sub("", "".join(out))


def decode_2047(text: str) -> str:
    """Decode RFC 2047 encoded-words that stand as whole whitespace-separated words (§4.1.2.2);
    whitespace between adjacent encoded-words is dropped; unknown charsets stay encoded."""
    if "=?" not in text:
        return text
    pieces = _WS_SPLIT.split(text)
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []
    pending_ws = ""
    for idx, piece in enumerate(pieces):
        if idx % 2:
            if pending:
                pending_ws = piece
            else:
                out.append(piece)
            continue
        decoded = None
        if piece.startswith("=?"):
            m = _EW_RE.fullmatch(piece)
            if m:
                decoded = _decode_encoded_word(m)
        if decoded is not None:
            pending.append(decoded)
            pending_ws = ""
            continue
        if pending:
            out.append(_flush_words(pending))
            pending = []
            out.append(pending_ws)
            pending_ws = ""
        out.append(piece)
    if pending:
        out.append(_flush_words(pending))
        out.append(pending_ws)
    return "".join(out)


def _decode_2047_loose(text: str) -> str:
    """For parameter values (file names): also decode encoded-words embedded in text."""
    if "=?" not in text:
        return text
    text = decode_2047(text)
    if "=?" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        d = _decode_encoded_word(m)
        return m.group(0) if d is None else _flush_words([d])

    return _EW_RE.sub(sub, text)


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
    s = _strip_comments(_unfold(raw)).strip()
    if not s or len(s) > 200:
        return None
    try:
        t = parsedate_tz(s)
        if t is None:
            return None
        y, mo, d, h, mi, sec = t[:6]
        off = t[9] or 0
        if abs(off) >= 24 * 3600 or not 0 <= y <= 9999:
            return None
        datetime(y, mo, d, h, mi, min(sec, 59))  # validates the fields
    except Exception:
        return None
    stamp = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{min(sec, 59):02d}"
    if off == 0:
        return stamp + "Z"
    sign = "+" if off > 0 else "-"
    off = abs(off) // 60
    return f"{stamp}{sign}{off // 60:02d}:{off % 60:02d}"


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


# --- MIME helpers ---------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+")
_RFC2231_RE = re.compile(r"^(.*?)\*(\d+)(\*?)$")


def _split_params(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Split ``main; a=b; c="d"`` into main value and raw (name, value) pairs."""
    segs: list[str] = []
    buf: list[str] = []
    in_q = False
    depth = 0
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if in_q:
            if c == "\\" and i + 1 < n:
                buf.append(value[i + 1])
                i += 2
                continue
            if c == '"':
                in_q = False
                buf.append("\x00")  # marks quoted end, removed below
            else:
                buf.append(c)
        elif depth:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == '"':
            in_q = True
            buf.append("\x01")
        elif c == "(":
            depth = 1
        elif c == ";":
            segs.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    segs.append("".join(buf))
    main = segs[0].replace("\x00", "").replace("\x01", "").strip()
    params: list[tuple[str, str]] = []
    for seg in segs[1:]:
        if "=" not in seg:
            continue
        k, v = seg.split("=", 1)
        k = k.replace("\x00", "").replace("\x01", "").strip().lower()
        v = v.strip()
        if v.startswith("\x01"):
            end = v.find("\x00")
            v = v[1:end] if end >= 0 else v[1:]
        else:
            v = v.replace("\x00", "").replace("\x01", "").strip()
        if k:
            params.append((k, v))
    return main, params


def _parse_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Combine RFC 2231 continuations / charsets; first occurrence of a plain name wins."""
    plain: dict[str, str] = {}
    ext: dict[str, list[tuple[int, bool, str]]] = {}
    for k, v in pairs:
        m = _RFC2231_RE.match(k)
        if m:
            ext.setdefault(m.group(1), []).append((int(m.group(2)[:6]), bool(m.group(3)), v))
        elif k.endswith("*"):
            ext.setdefault(k[:-1], []).append((0, True, v))
        else:
            plain.setdefault(k, v)
    for base, segs in ext.items():
        segs.sort(key=lambda s: s[0])
        charset = None
        data = b""
        for idx, (_num, encoded, v) in enumerate(segs):
            if encoded:
                if idx == 0 and v.count("'") >= 2:
                    charset, _lang, v = v.split("'", 2)
                data += re.sub(
                    rb"%([0-9A-Fa-f]{2})",
                    lambda mm: bytes((int(mm.group(1), 16),)),
                    v.encode("utf-8", "replace"),
                )
            else:
                data += v.encode("utf-8", "replace")
        text, _problem = decode_text(data, charset or "utf-8")
        plain[base] = text
    return plain


class _Part:
    __slots__ = (
        "body_end",
        "body_start",
        "charset",
        "cid",
        "cte",
        "disposition",
        "headers",
        "language",
        "location",
        "name",
        "part_id",
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
        self.cte = ""
        self.body_start = 0
        self.body_end = 0
        self.size = 0
        self.sub_parts: list[_Part] | None = None


def _last(headers: list[tuple[str, str]], lname: str) -> str | None:
    for n, v in reversed(headers):
        if n.lower() == lname:
            return v
    return None


_HDR_NAME = re.compile(rb"[!-9;-~]+")


def _parse_headers(
    buf: bytes, start: int, end: int, top: bool
) -> tuple[list[tuple[str, str]], int]:
    """Header fields of the entity in buf[start:end] and the offset where its body starts."""
    spans: list[list[Any]] = []  # [name, value_start, value_end]
    pos = start
    if (
        top
        and buf.startswith(b"From ", pos)
        and not buf[pos + 5 : pos + 64].lstrip().startswith(b":")
    ):  # mbox separator line (not "From : x", obsolete spacing)
        nl = buf.find(b"\n", pos, end)
        pos = end if nl < 0 else nl + 1
    body = end
    while pos < end:
        nl = buf.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl
        content_end = line_end - 1 if line_end > pos and buf[line_end - 1] == 0x0D else line_end
        nxt = end if nl < 0 else nl + 1
        if content_end == pos:  # empty line: end of the header block
            body = nxt
            break
        first = buf[pos]
        if first in (0x20, 0x09):
            if spans:
                spans[-1][2] = content_end
                pos = nxt
                continue
            body = pos
            break
        colon = buf.find(b":", pos, content_end)
        if colon < 0:
            body = pos
            break
        name = buf[pos:colon].rstrip(b" \t")
        if not _HDR_NAME.fullmatch(name):
            body = pos
            break
        spans.append([name.decode("ascii"), colon + 1, content_end])
        pos = nxt
    else:
        body = end
    return [(n, _raw_str(buf[s:e])) for n, s, e in spans], min(body, end)


def _find_delimiters(
    buf: bytes, start: int, end: int, boundary: bytes
) -> list[tuple[int, int, bool]]:
    """(line_start, next_line_start, is_close) for each boundary delimiter line in range."""
    delim = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = start
    while True:
        i = buf.find(delim, pos, end)
        if i < 0:
            break
        j = i + len(delim)
        if i != start and buf[i - 1] != 0x0A:
            pos = j
            continue
        nl = buf.find(b"\n", j, end)
        line_end = end if nl < 0 else nl
        nxt = end if nl < 0 else nl + 1
        rest = buf[j : min(line_end, j + 512)]
        if rest.startswith(b"--"):
            found.append((i, nxt, True))
            break
        if rest.strip() or line_end - j > 512:
            pos = j
            continue
        found.append((i, nxt, False))
        pos = nxt
    return found


def _content_end(buf: bytes, seg_start: int, delim_start: int) -> int:
    """Content ends before the line break that precedes the delimiter (RFC 2046 §5.1.1)."""
    e = delim_start
    if e > seg_start and buf[e - 1] == 0x0A:
        e -= 1
        if e > seg_start and buf[e - 1] == 0x0D:
            e -= 1
    return e


_IDENTITY_CTE = frozenset(("", "7bit", "8bit", "binary"))
_UU_CTE = frozenset(("x-uuencode", "uuencode", "x-uue", "uue"))


def _uudecode(data: bytes) -> tuple[bytes, bool]:
    out: list[bytes] = []
    problem = False
    lines = data.splitlines()
    started = not any(line.startswith(b"begin ") for line in lines[:50])
    for line in lines:
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() == b"end":
            break
        if not line.strip():
            continue
        try:
            out.append(binascii.a2b_uu(line))
        except (binascii.Error, ValueError):
            nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                out.append(binascii.a2b_uu(line[:nbytes]))
            except (binascii.Error, ValueError):
                problem = True
    return b"".join(out), problem


def _decode_cte(data: bytes, cte: str) -> tuple[bytes, bool]:
    try:
        if cte in _IDENTITY_CTE:
            return data, False
        if cte == "base64":
            return _b64_lenient(data)
        if cte == "quoted-printable":
            return binascii.a2b_qp(data), False
        if cte in _UU_CTE:
            return _uudecode(data)
    except Exception:
        return data, True
    return data, True  # unknown transfer encoding: treated as identity (§4.1.4 blobId)


# --- html to text -------------------------------------------------------------------------

_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|div|tr|li|h[1-6]|blockquote|pre|table|ul|ol|hr|dd|dt|section|article|"
    r"header|footer|title)\b[^<>]*>",
    re.IGNORECASE,
)
_ANY_TAG = re.compile(r"<[^<>]*>")
_WS_RUN = re.compile(r"\s+")


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


class ParsedMessage:
    """A parsed message.  See the module docstring for the partId / blobId contract."""

    def __init__(self, raw: bytes) -> None:
        raw = bytes(raw)
        self.size = len(raw)
        buf = raw
        if b"\n" not in buf and b"\r" in buf:  # CR-only line endings
            buf = buf.replace(b"\r", b"\n")
        self._buf = buf
        self._leaves: dict[str, _Part] = {}
        self._decoded: dict[str, tuple[bytes, bool]] = {}
        self._count = 0
        try:
            self._root = self._build(0, len(buf), 0, "", None, True)
        except Exception:  # pragma: no cover - last resort, keeps the promise of never raising
            self._leaves.clear()
            self._decoded.clear()
            root = _Part()
            root.part_id = "1"
            root.type = "application/octet-stream"
            root.charset = None
            root.body_start, root.body_end, root.size = 0, len(buf), len(buf)
            self._leaves["1"] = root
            self._root = root
        self._headers = self._root.headers
        self._lists: tuple[list[_Part], list[_Part], list[_Part]] | None = None
        self._preview: str | None = None

    # -- building --

    def _opaque(self, start: int, end: int, part_id: str, headers: list[tuple[str, str]]) -> _Part:
        p = _Part()
        p.part_id = part_id
        p.headers = headers
        p.type = "application/octet-stream"
        p.charset = None
        p.body_start, p.body_end, p.size = start, end, max(0, end - start)
        self._leaves[part_id] = p
        return p

    def _build(
        self, start: int, end: int, depth: int, prefix: str, parent: str | None, top: bool
    ) -> _Part:
        self._count += 1
        buf = self._buf
        headers, body_start = _parse_headers(buf, start, end, top)
        p = _Part()
        p.headers = headers
        ct = _last(headers, "content-type")
        params: dict[str, str] = {}
        ctype = None
        if ct is not None:
            main, pairs = _split_params(_unfold(ct))
            main = re.sub(r"\s+", "", main).lower()
            if _TOKEN_RE.fullmatch(main):
                ctype = main
            params = _parse_params(pairs)
        if ctype is None:
            ctype = "message/rfc822" if parent == "multipart/digest" else "text/plain"
        p.type = ctype
        if ct is None or ctype.startswith("text/"):
            p.charset = params.get("charset") or "us-ascii"
        else:
            p.charset = params.get("charset")
        cd = _last(headers, "content-disposition")
        dparams: dict[str, str] = {}
        if cd is not None:
            dmain, dpairs = _split_params(_unfold(cd))
            p.disposition = re.sub(r"\s+", "", dmain).lower() or None
            dparams = _parse_params(dpairs)
        name = dparams.get("filename") or params.get("name")
        if name:
            p.name = _clean_str(_nfc(_decode_2047_loose(name))) or None
        cid = _last(headers, "content-id")
        if cid is not None:
            c = _strip_comments(_unfold(cid)).strip()
            if c.startswith("<") and c.endswith(">"):
                c = c[1:-1]
            p.cid = c.strip() or None
        lang = _last(headers, "content-language")
        if lang is not None:
            tags = [t for t in re.split(r"[\s,]+", _strip_comments(_unfold(lang))) if t]
            p.language = tags or None
        loc = _last(headers, "content-location")
        if loc is not None:
            p.location = re.sub(r"\s+", "", _unfold(loc)) or None
        cte = _last(headers, "content-transfer-encoding")
        p.cte = _strip_comments(_unfold(cte)).strip().lower() if cte is not None else ""
        part_id = prefix or "1"
        if ctype.startswith("multipart/"):
            if depth >= MAX_DEPTH:
                return self._opaque_from(p, body_start, end, part_id)
            boundary = params.get("boundary", "")
            delims = (
                _find_delimiters(buf, body_start, end, boundary.encode("utf-8", "replace"))
                if boundary and len(boundary) <= 200
                else []
            )
            if not delims:
                # No usable boundary: present the body as text (like most MUAs do).
                p.type = "text/plain"
                p.charset = params.get("charset") or "us-ascii"
                return self._leaf(p, body_start, end, part_id)
            p.sub_parts = []
            for k, (_dstart, dnext, is_close) in enumerate(delims):
                if is_close:
                    break
                seg_end = _content_end(buf, dnext, delims[k + 1][0]) if k + 1 < len(delims) else end
                child_id = f"{prefix}.{k + 1}" if prefix else str(k + 1)
                if self._count >= MAX_PARTS:  # the rest of this multipart becomes one blob
                    last = delims[-1]
                    region_end = _content_end(buf, dnext, last[0]) if last[2] else end
                    p.sub_parts.append(self._opaque(dnext, max(dnext, region_end), child_id, []))
                    break
                child = self._build(dnext, max(dnext, seg_end), depth + 1, child_id, ctype, False)
                p.sub_parts.append(child)
            p.charset = None if ct is not None else p.charset
            return p
        return self._leaf(p, body_start, end, part_id)

    def _opaque_from(self, p: _Part, start: int, end: int, part_id: str) -> _Part:
        q = self._opaque(start, end, part_id, p.headers)
        q.disposition, q.name, q.cid, q.language, q.location = (
            p.disposition,
            p.name,
            p.cid,
            p.language,
            p.location,
        )
        return q

    def _leaf(self, p: _Part, start: int, end: int, part_id: str) -> _Part:
        p.part_id = part_id
        p.body_start, p.body_end = start, max(start, end)
        if p.cte in _IDENTITY_CTE:
            p.size = p.body_end - p.body_start
        else:
            data, problem = _decode_cte(self._buf[p.body_start : p.body_end], p.cte)
            self._decoded[part_id] = (data, problem)
            p.size = len(data)
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
        p = self._leaves[part_id]
        if part_id in self._decoded:
            return self._decoded[part_id][0]
        return self._buf[p.body_start : p.body_end]

    def _text(self, part_id: str, limit: int = 0) -> tuple[str, bool, bool]:
        """(text, is_encoding_problem, source_was_cut)"""
        p = self._leaves[part_id]
        data = self.part_bytes(part_id)
        cte_problem = self._decoded.get(part_id, (b"", False))[1]
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
                t = _WS_RUN.sub(" ", _CTRL.sub(" ", t)).strip()
                if t:
                    chunks.append(t)
                    total += len(t) + 1
                if total >= PREVIEW_CHARS:
                    break
            prev = " ".join(chunks)[:PREVIEW_CHARS]
            self._preview = prev.rstrip("\ufffd").strip() if len(prev) == PREVIEW_CHARS else prev
        return self._preview

    # -- all at once for Email/get and Email/parse --

    _CONVENIENCE = {
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
