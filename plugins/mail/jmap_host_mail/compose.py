"""Build an RFC 5322 message from an Email/set create object (RFC 8621 §4.6).

``validate_create(email)`` returns the invalid property paths (for an ``invalidProperties``
SetError); ``compose_message(email, blob_bytes)`` returns the message octets (CRLF line
endings) or raises :class:`ComposeError` (``type`` ``"invalidProperties"`` with
``properties``, or ``"blobNotFound"`` with ``not_found``).

Property paths of nested problems use ``/``: ``bodyStructure/subParts/1/charset``,
``bodyValues/b1/isTruncated``, ``attachments/0/blobId``.

Metadata properties (``mailboxIds``, ``keywords``, ``receivedAt``) are accepted and ignored
here; server-set ones (``id``, ``blobId``, ``threadId``, ``size``, ``hasAttachment``,
``preview``) and ``headers`` are reported invalid.

Structure built from textBody/htmlBody/attachments (what mail clients send)::

    multipart/mixed                      (only if there are non-inline attachments)
      multipart/alternative              (only if both text and html)
        text/plain
        multipart/related                (only if html and inline attachments with a cid)
          text/html
          image/png; Content-ID
      application/pdf; attachment

Text from bodyValues is UTF-8, 7bit when it can be, else quoted-printable; blobs are base64
(message/* parts are sent 7bit/8bit as RFC 2046 requires).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from jmap_host import dates

from .message import CONVENIENCE, header_property_ok, parse_header_property

__all__ = ["ComposeError", "compose_message", "encode_header_value", "validate_create"]

CRLF = "\r\n"

_METADATA = frozenset(("mailboxIds", "keywords", "receivedAt"))
_BODY_PROPS = frozenset(("bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments"))
_SERVER_SET = frozenset(("id", "blobId", "threadId", "size", "hasAttachment", "preview"))
# EmailBodyPart properties and the header field each represents.
_PART_PROPS = {
    "partId": None,
    "blobId": None,
    "size": None,
    "subParts": None,
    "type": "content-type",
    "charset": "content-type",
    "name": "content-disposition",
    "disposition": "content-disposition",
    "cid": "content-id",
    "language": "content-language",
    "location": "content-location",
}
_TYPE_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class ComposeError(ValueError):
    """Invalid Email create object.  ``type`` is the SetError type to answer with."""

    def __init__(
        self,
        properties: list[str] | None = None,
        description: str = "",
        *,
        type: str = "invalidProperties",
        not_found: list[str] | None = None,
    ) -> None:
        super().__init__(description or type)
        self.type = type
        self.properties = list(properties or [])
        self.description = description
        self.not_found = list(not_found or [])


# --- validation -------------------------------------------------------------------------------


def _parse_date(value: Any) -> datetime | None:
    """A Date header value given as an RFC 8620 §1.4 Date (every RFC 3339 form)."""
    if not dates.is_date(value):
        return None
    try:
        return dates.to_datetime(value)
    except ValueError:  # year 0, which a Date header cannot carry
        return None


def _is_address(a: Any) -> bool:
    return (
        isinstance(a, dict)
        and isinstance(a.get("email"), str)
        and isinstance(a.get("name"), (str, type(None)))
        and set(a) <= {"name", "email"}
    )


def _value_ok(form: str, v: Any) -> bool:
    """Is ``v`` a valid value (not null) of header form ``form`` for setting?"""
    if form in ("Raw", "Text"):
        return isinstance(v, str)
    if form == "Addresses":
        return isinstance(v, list) and all(_is_address(a) for a in v)
    if form == "GroupedAddresses":
        return isinstance(v, list) and all(
            isinstance(g, dict)
            and isinstance(g.get("name"), (str, type(None)))
            and isinstance(g.get("addresses"), list)
            and all(_is_address(a) for a in g["addresses"])
            for g in v
        )
    if form in ("MessageIds", "URLs"):
        return isinstance(v, list) and all(isinstance(x, str) and x for x in v)
    if form == "Date":
        return _parse_date(v) is not None
    return False


def _header_props(
    obj: dict[str, Any], path: str, bad: list[str], top: bool
) -> dict[str, list[str]]:
    """Check the header properties of an Email / EmailBodyPart; returns field -> props."""
    fields: dict[str, list[str]] = {}
    for prop, value in obj.items():
        if top and prop in CONVENIENCE:
            name, form = CONVENIENCE[prop]
            if value is not None and not _value_ok(form, value):
                bad.append(path + prop)
            fields.setdefault(name.lower(), []).append(prop)
            continue
        if not isinstance(prop, str) or not prop.startswith("header:"):
            continue
        hp = parse_header_property(prop)
        if hp is None or not header_property_ok(hp[0], hp[1]):
            bad.append(path + prop)
            continue
        name, form, all_ = hp
        lname = name.lower()
        if top and lname.startswith("content-"):
            bad.append(path + prop)
            continue
        if lname == "content-transfer-encoding" or (not top and lname == "mime-version"):
            bad.append(path + prop)
            continue
        if value is not None:
            values = value if all_ else [value]
            if (
                (all_ and not isinstance(value, list))
                or not all(_value_ok(form, v) for v in values)
                or (form == "Raw" and any(_raw_injection(v) for v in values))
            ):
                bad.append(path + prop)
        fields.setdefault(lname, []).append(prop)
    return fields


def _raw_injection(v: str) -> bool:
    """A Raw value may fold (line break followed by WSP) but not start a new field."""
    return bool(re.search(r"\r(?!\n)|\n(?![ \t])", v.replace("\r\n", "\n")))


def _dupes(fields: dict[str, list[str]], path: str, bad: list[str]) -> None:
    for props in fields.values():
        if len(props) > 1:
            bad.extend(path + p for p in props if path + p not in bad)


def _check_part(
    part: Any,
    path: str,
    body_values: dict[str, Any],
    bad: list[str],
    top_fields: set[str],
    depth: int = 0,
) -> None:
    if not isinstance(part, dict):
        bad.append(path.rstrip("/"))
        return
    if depth > 40:
        bad.append(path + "subParts")
        return
    if "headers" in part:
        bad.append(path + "headers")
    for prop in part:
        if prop not in _PART_PROPS and not str(prop).startswith("header:"):
            bad.append(path + prop)
    fields = _header_props(part, path, bad, top=False)
    for prop, field in _PART_PROPS.items():
        if field and prop in part:
            fields.setdefault(field, [])
            if prop not in fields[field]:
                fields[field].append(prop)
    # type/charset both map to Content-Type, name/disposition to Content-Disposition: those
    # pairs are one field, only a header:Content-Type next to them is a duplicate.
    for field, props in fields.items():
        real = [p for p in props if p.startswith("header:")]
        if len(real) > 1 or (real and len(props) > len(real)):
            bad.extend(path + p for p in props if path + p not in bad)
        if field in top_fields:
            bad.extend(path + p for p in props if path + p not in bad)
    ptype = part.get("type")
    if ptype is not None and (not isinstance(ptype, str) or not _TYPE_RE.fullmatch(ptype)):
        bad.append(path + "type")
    for key in ("name", "disposition", "cid", "location", "charset"):
        if part.get(key) is not None and not isinstance(part[key], str):
            bad.append(path + key)
    if part.get("disposition") is not None and not re.fullmatch(
        r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", str(part["disposition"])
    ):
        bad.append(path + "disposition")
    lang = part.get("language")
    if lang is not None and (
        not isinstance(lang, list)
        or not all(isinstance(x, str) and re.fullmatch(r"[A-Za-z0-9*-]+", x) for x in lang)
    ):
        bad.append(path + "language")
    is_multi = isinstance(ptype, str) and ptype.lower().startswith("multipart/")
    if is_multi or "subParts" in part:
        subs = part.get("subParts")
        if not is_multi or not isinstance(subs, list):
            bad.append(path + "subParts")
            return
        for k in ("partId", "blobId", "charset"):
            if part.get(k) is not None:
                bad.append(path + k)
        for i, sub in enumerate(subs):
            _check_part(sub, f"{path}subParts/{i}/", body_values, bad, set(), depth + 1)
        return
    pid, bid = part.get("partId"), part.get("blobId")
    if (pid is None) == (bid is None):
        bad.append(path + ("partId" if pid is not None else "blobId"))
    elif pid is not None:
        if not isinstance(pid, str) or pid not in body_values:
            bad.append(path + "partId")
        if "charset" in part:
            bad.append(path + "charset")
        if "size" in part:
            bad.append(path + "size")
    elif not isinstance(bid, str):
        bad.append(path + "blobId")


def validate_create(email: Any) -> list[str]:
    """Invalid properties of an Email/set create object per §4.6 (empty list: valid)."""
    if not isinstance(email, dict):
        return ["(object)"]
    bad: list[str] = []
    for prop in email:
        if (
            prop in _SERVER_SET
            or prop == "headers"
            or not (
                prop in CONVENIENCE
                or prop in _METADATA
                or prop in _BODY_PROPS
                or str(prop).startswith("header:")
            )
        ):
            bad.append(prop)
    fields = _header_props(email, "", bad, top=True)
    _dupes(fields, "", bad)
    body_values = email.get("bodyValues") or {}
    if not isinstance(body_values, dict):
        bad.append("bodyValues")
        body_values = {}
    for key, bv in body_values.items():
        if not isinstance(bv, dict) or not isinstance(bv.get("value"), str):
            bad.append(f"bodyValues/{key}")
            continue
        for flag in ("isEncodingProblem", "isTruncated"):
            if bv.get(flag, False) is not False:
                bad.append(f"bodyValues/{key}/{flag}")
        for k in bv:
            if k not in ("value", "isEncodingProblem", "isTruncated"):
                bad.append(f"bodyValues/{key}/{k}")
    if "bodyStructure" in email:
        for k in ("textBody", "htmlBody", "attachments"):
            if k in email:
                bad.append(k)
        _check_part(email["bodyStructure"], "bodyStructure/", body_values, bad, set(fields))
    for key, want in (("textBody", "text/plain"), ("htmlBody", "text/html")):
        if key not in email or email[key] is None:
            continue
        lst = email[key]
        if not isinstance(lst, list) or len(lst) != 1 or not isinstance(lst[0], dict):
            bad.append(key)
            continue
        if str(lst[0].get("type") or want).lower() != want:
            bad.append(f"{key}/0/type")
        _check_part(lst[0], f"{key}/0/", body_values, bad, set())
    att = email.get("attachments")
    if att is not None:
        if not isinstance(att, list):
            bad.append("attachments")
        else:
            for i, a in enumerate(att):
                _check_part(a, f"attachments/{i}/", body_values, bad, set())
    seen: set[str] = set()
    return [b for b in bad if not (b in seen or seen.add(b))]


# --- header encoding ------------------------------------------------------------------------

_EW_LIKE = re.compile(r"=\?[^?\s]+\?[QqBb]\?")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:[ \t]+[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _encoded_words(text: str, first_room: int = 75) -> list[str]:
    """Split ``text`` into UTF-8 "B" encoded-words of at most 75 characters each (the first
    at most ``first_room``), never splitting a character."""
    words: list[str] = []
    chunk = ""
    size = 0

    def payload(room: int) -> int:
        return max(3, (min(room, 75) - len("=?UTF-8?B??=")) // 4 * 3)

    limit = payload(first_room)
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > limit and chunk:
            words.append(chunk)
            chunk, size, limit = "", 0, payload(75)
        chunk += ch
        size += n
    if chunk or not words:
        words.append(chunk)
    return [
        "=?UTF-8?B?" + base64.b64encode(w.encode("utf-8")).decode("ascii") + "?=" for w in words
    ]


def _needs_encoding(text: str) -> bool:
    return (
        not text.isascii()
        or bool(_EW_LIKE.search(text))
        or any(ord(c) < 32 and c != "\t" for c in text)
    )


def _fold(items: list[str], first: int, sep: str = " ") -> str:
    """Join ``items`` with ``sep`` folding (CRLF SP) before an item that would pass 78 cols."""
    out = ""
    col = first
    for i, it in enumerate(items):
        piece = (sep if i else "") + it
        if i and col + len(piece) > 78:
            out += sep.rstrip() + CRLF + " " + it
            col = 1 + len(it)
        else:
            out += piece
            col += len(piece)
    return out


def _text_value(text: str, first: int) -> str:
    text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    if _needs_encoding(text) or any(len(w) > 900 for w in text.split(" ")):
        return _fold(_encoded_words(text, 78 - first), first)
    return _fold(text.split(" "), first)


def _phrase(name: str) -> str:
    name = " ".join(name.replace("\r", " ").replace("\n", " ").split())
    if not name:
        return ""
    if _needs_encoding(name):
        return " ".join(_encoded_words(name))
    if _ATOM.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr(a: dict[str, Any]) -> str:
    email = re.sub(r"[\r\n]", "", a.get("email") or "")
    name = _phrase(a.get("name") or "")
    return f"{name} <{email}>" if name else email


def _addresses(v: list[dict[str, Any]]) -> list[str]:
    items = [_addr(a) for a in v]
    return [it + ("," if i < len(items) - 1 else "") for i, it in enumerate(items)]


def encode_header_value(name: str, form: str, value: Any) -> str:
    """The field body (after ``Name:``, leading space included) for a value in ``form``."""
    first = len(name) + 2
    if form == "Raw":
        v = value.replace("\r\n", "\n").replace("\n", CRLF)
        return v
    if form == "Text":
        return " " + _text_value(value, first)
    if form == "Addresses":
        return " " + _fold(_addresses(value), first)
    if form == "GroupedAddresses":
        items: list[str] = []
        for gi, g in enumerate(value):
            last = gi == len(value) - 1
            addrs = _addresses(g["addresses"])
            if g.get("name") is None:
                if addrs and not last:
                    addrs[-1] += ","
                items.extend(addrs)
            else:
                head = _phrase(g["name"]) or '""'
                if addrs:
                    addrs[0] = head + ": " + addrs[0]
                    addrs[-1] += ";" + ("" if last else ",")
                    items.extend(addrs)
                else:
                    items.append(head + ":;" + ("" if last else ","))
        return " " + _fold(items, first)
    if form == "MessageIds":
        ids = ["<" + re.sub(r"[\s<>]", "", x) + ">" for x in value]
        return " " + _fold(ids, first)
    if form == "URLs":
        urls = ["<" + re.sub(r"[\s<>]", "", x) + ">" for x in value]
        urls = [u + ("," if i < len(urls) - 1 else "") for i, u in enumerate(urls)]
        return " " + _fold(urls, first)
    if form == "Date":
        dt = _parse_date(value)
        assert dt is not None
        return " " + format_datetime(dt)
    raise ValueError(form)


# --- body encoding ------------------------------------------------------------------------


def _param(name: str, value: str) -> str:
    """``; name=value`` with quoting, or RFC 2231 encoding for non-ASCII / very long values."""
    value = value.replace("\r", "").replace("\n", "")
    if value.isascii() and len(value) < 60 and all(32 <= ord(c) < 127 for c in value):
        if re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", value):
            return f"; {name}={value}"
        return '; {}="{}"'.format(name, value.replace("\\", "\\\\").replace('"', '\\"'))
    enc = "".join(
        chr(b) if b < 128 and (chr(b).isalnum() or chr(b) in "!#$&+-.^_`|~") else f"%{b:02X}"
        for b in value.encode("utf-8")
    )
    chunks = [enc[i : i + 60] for i in range(0, len(enc), 60)] or [""]
    # never split a %XX escape between two continuations
    fixed: list[str] = []
    carry = ""
    for c in chunks:
        c = carry + c
        cut = c.rfind("%", max(0, len(c) - 2))
        if cut >= 0 and len(c) - cut < 3:
            carry, c = c[cut:], c[:cut]
        else:
            carry = ""
        fixed.append(c)
    if carry:
        fixed.append(carry)
    if len(fixed) == 1:
        return f"; {name}*=utf-8''{fixed[0]}"
    return "".join(
        f";{CRLF} {name}*{i}*=" + ("utf-8''" if i == 0 else "") + c for i, c in enumerate(fixed)
    )


def _qp(data: bytes) -> bytes:
    lines = data.split(b"\n")
    out = []
    for line in lines:
        enc = binascii.b2a_qp(line, quotetabs=False, istext=False, header=False)
        if enc.startswith(b"."):  # avoid a lone "." line in SMTP
            enc = b"=2E" + enc[1:]
        out.append(enc.replace(b"=\n", b"=\r\n"))
    return b"\r\n".join(out)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).rstrip(b"\n").replace(b"\n", b"\r\n")


def _crlf_bytes(data: bytes) -> bytes:
    return re.sub(rb"\r?\n|\r", b"\r\n", data)


def _text_content(value: str) -> tuple[bytes, str]:
    """UTF-8 text with CRLF line endings and a transfer encoding that keeps it intact."""
    data = re.sub(r"\r\n|\r|\n", "\r\n", value).encode("utf-8")
    if (
        data.isascii()
        and b"\0" not in data
        and all(len(line) <= 900 for line in data.split(b"\r\n"))
    ):
        return data, "7bit"
    if sum(b > 127 for b in data[:4096]) > len(data[:4096]) // 3:
        return _b64(data), "base64"
    return _qp(data.replace(b"\r\n", b"\n")), "quoted-printable"


class _Builder:
    def __init__(
        self,
        email: dict[str, Any],
        blob_bytes: Callable[[str], bytes | None],
    ) -> None:
        self.email = email
        self.blob_bytes = blob_bytes
        self.body_values = email.get("bodyValues") or {}
        self.missing: list[str] = []

    def boundary(self) -> str:
        return "=_" + uuid.uuid4().hex

    def blob(self, blob_id: str) -> bytes:
        data = self.blob_bytes(blob_id)
        if data is None:
            if blob_id not in self.missing:
                self.missing.append(blob_id)
            return b""
        return bytes(data)

    def part(self, p: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
        """(header fields, body) of an EmailBodyPart."""
        headers: list[tuple[str, str]] = []
        raw_ct = None
        for prop, value in p.items():
            hp = parse_header_property(prop) if isinstance(prop, str) else None
            if hp is None or value is None:
                continue
            name, form, all_ = hp
            for v in value if all_ else [value]:
                headers.append((name, encode_header_value(name, form, v)))
                if name.lower() == "content-type":
                    raw_ct = v if form == "Raw" else raw_ct
        ptype = (p.get("type") or "").lower()
        if not ptype and raw_ct is not None:
            ptype = raw_ct.split(";", 1)[0].strip().lower()
        if not ptype:
            ptype = "text/plain" if p.get("partId") is not None else "application/octet-stream"
        subs = p.get("subParts")
        name = p.get("name")
        if ptype.startswith("multipart/"):
            bnd = None
            if raw_ct is not None:
                m = re.search(r'boundary="?([^";\r\n]+)"?', raw_ct, re.IGNORECASE)
                bnd = m.group(1) if m else None
            if bnd is None:
                bnd = self.boundary()
                if raw_ct is not None:
                    for i, (n, v) in enumerate(headers):
                        if n.lower() == "content-type":
                            headers[i] = (n, v + "; boundary=" + '"' + bnd + '"')
            body = self.multipart(subs or [], bnd)
            if raw_ct is None:
                headers.insert(0, ("Content-Type", f" {ptype}" + _param("boundary", bnd)))
            return headers, body
        if p.get("partId") is not None:
            value = self.body_values.get(p["partId"], {}).get("value", "")
            body, cte = _text_content(value)
            charset = "utf-8"
        else:
            data = self.blob(p.get("blobId") or "")
            charset = p.get("charset")
            body = _crlf_bytes(data)
            if (ptype.startswith("message/") or ptype == "text/rfc822-headers") and (
                b"\0" not in body and all(len(line) <= 998 for line in body.split(b"\r\n"))
            ):  # RFC 2046 §5.2.1: no base64 for message/rfc822 when it can be avoided
                cte = "7bit" if body.isascii() else "8bit"
            else:
                body, cte = _b64(data), "base64"
        ct_headers: list[tuple[str, str]] = []
        if raw_ct is None:
            ct = " " + ptype
            if charset and (ptype.startswith("text/") or p.get("charset")):
                ct += _param("charset", charset)
            if name:
                ct += _param("name", name)
            ct_headers.append(("Content-Type", ct))
        disp = p.get("disposition")
        if disp is None and name:
            disp = "inline" if p.get("cid") else "attachment"
        if disp is not None and not any(n.lower() == "content-disposition" for n, _ in headers):
            ct_headers.append(
                ("Content-Disposition", " " + disp + (_param("filename", name) if name else ""))
            )
        if p.get("cid"):
            cid = re.sub(r"[\s<>]", "", p["cid"])
            ct_headers.append(("Content-ID", f" <{cid}>"))
        if p.get("language"):
            ct_headers.append(("Content-Language", " " + ", ".join(p["language"])))
        if p.get("location"):
            ct_headers.append(("Content-Location", " " + re.sub(r"\s", "", p["location"])))
        ct_headers.append(("Content-Transfer-Encoding", " " + cte))
        return ct_headers + headers, body

    def multipart(self, subs: list[dict[str, Any]], bnd: str) -> bytes:
        out: list[bytes] = []
        for sub in subs:
            hdrs, body = self.part(sub)
            out.append(f"--{bnd}\r\n".encode())
            out.append(_serialise_headers(hdrs))
            out.append(b"\r\n")
            out.append(body)
            out.append(b"\r\n")
        out.append(f"--{bnd}--\r\n".encode())
        return b"".join(out)

    def structure_from_lists(self) -> dict[str, Any]:
        e = self.email
        text = (e.get("textBody") or [None])[0]
        htm = (e.get("htmlBody") or [None])[0]
        atts = list(e.get("attachments") or [])
        text = dict(text, type="text/plain") if text else None
        htm = dict(htm, type="text/html") if htm else None
        inline = []
        if htm is not None:
            inline = [a for a in atts if a.get("cid") and a.get("disposition") != "attachment"]
            atts = [a for a in atts if a not in inline]
        if htm is not None and inline:
            htm = {"type": "multipart/related", "subParts": [htm, *inline]}
        if text is not None and htm is not None:
            core: dict[str, Any] | None = {"type": "multipart/alternative", "subParts": [text, htm]}
        else:
            core = text or htm
        if atts:
            return {"type": "multipart/mixed", "subParts": ([core] if core else []) + atts}
        if core is None:
            return {"type": "text/plain", "partId": None, "_empty": True}
        return core


def _serialise_headers(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{n}:{v}\r\n" for n, v in headers).encode("utf-8")


def compose_message(
    email: dict[str, Any],
    blob_bytes: Callable[[str], bytes | None],
    *,
    now: datetime | None = None,
    message_id_domain: str | None = None,
) -> bytes:
    """The RFC 5322 octets for an Email/set create object (§4.6).

    ``blob_bytes(blob_id)`` returns a blob's content or None when it does not exist (all
    missing ids are collected into one ``ComposeError(type="blobNotFound", not_found=...)``).
    A Date (``now``, default current time) and a Message-ID (``<uuid@domain>``, the domain
    from ``message_id_domain`` or the first From address) are added when not given."""
    bad = validate_create(email)
    if bad:
        raise ComposeError(bad, "Invalid properties: " + ", ".join(bad))
    b = _Builder(email, blob_bytes)
    headers: list[tuple[str, str]] = []
    present: set[str] = set()
    for prop, value in email.items():
        if prop in CONVENIENCE:
            name, form = CONVENIENCE[prop]
            values = [value]
        else:
            hp = parse_header_property(prop)
            if hp is None:
                continue
            name, form, all_ = hp
            values = value if all_ else [value]
        if value is None:
            continue
        present.add(name.lower())
        for v in values:
            headers.append((name, encode_header_value(name, form, v)))
    if "date" not in present:
        when = now or datetime.now(UTC)
        headers.insert(0, ("Date", " " + format_datetime(when)))
    if "message-id" not in present:
        domain = message_id_domain
        if not domain:
            for a in email.get("from") or []:
                if isinstance(a, dict) and "@" in (a.get("email") or ""):
                    domain = a["email"].rsplit("@", 1)[1]
                    break
        domain = re.sub(r"[^A-Za-z0-9.-]", "", domain or "") or "jmap-host.invalid"
        headers.append(("Message-ID", f" <{uuid.uuid4().hex}@{domain}>"))
    if "mime-version" not in present:
        headers.append(("MIME-Version", " 1.0"))
    if "bodyStructure" in email:
        root = email["bodyStructure"]
    else:
        root = b.structure_from_lists()
    if root.get("_empty"):
        part_headers = [
            ("Content-Type", " text/plain; charset=utf-8"),
            ("Content-Transfer-Encoding", " 7bit"),
        ]
        body = b""
    else:
        part_headers, body = b.part(root)
    if b.missing:
        raise ComposeError(
            [], "Blob not found: " + ", ".join(b.missing), type="blobNotFound", not_found=b.missing
        )
    return _serialise_headers(headers + part_headers) + b"\r\n" + body
