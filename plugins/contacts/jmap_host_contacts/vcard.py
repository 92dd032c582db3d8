"""vCard (RFC 6350 4.0, RFC 2426 3.0, and 2.1's quoted-printable) to JSContact Cards and
back, after RFC 9555's mapping.

The vCard syntax is read and written here (content lines, folding, parameters, escapes,
base64 and quoted-printable), not by vobject: vobject reads every property it does not
know, and PHOTO, with vCard 3.0's text rules and keeps only what comes before the first
comma ("a,b" is "a"; a 4.0 ``data:image/png;base64,...`` URI loses its data), which would
lose fields on import.

What has a JSContact property becomes it: FN and N the name, NICKNAME, ORG, TITLE, ROLE,
EMAIL, TEL, ADR, URL, IMPP and X-SOCIALPROFILE, PHOTO/LOGO/SOUND (inline data as data:
URIs, which the server stores as blobs), BDAY/ANNIVERSARY/DEATHDATE, NOTE, CATEGORIES,
UID, REV, PRODID, KIND (and Apple's X-ADDRESSBOOKSERVER-KIND), MEMBER (and
X-ADDRESSBOOKSERVER-MEMBER), LANG, RELATED; TYPE parameters become contexts and phone
features, PREF (and TYPE=pref) pref, an Apple item group's X-ABLabel the label.  Anything
else, every X- property and every parameter that has no place, is kept as RFC 9555
``vCardProps`` (jCard-style ``[name, parameters, type, value]``) and written back
unchanged, so an import and an export keep every field.
"""

from __future__ import annotations

import base64
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# TYPE values that are JSContact contexts, and phone features (RFC 9555 §2).
CONTEXT_OF = {"work": "work", "home": "private"}
CONTEXT_TYPES = {v: k for k, v in CONTEXT_OF.items()}
PHONE_FEATURES = {"cell": "mobile", "voice": "voice", "text": "text", "video": "video",
                  "fax": "fax", "pager": "pager", "textphone": "textphone",
                  "main-number": "main-number"}  # fmt: skip
FEATURE_TYPES = {v: k for k, v in PHONE_FEATURES.items()}
CARD_KINDS = {"individual", "group", "org", "location", "device", "application"}
ANNIVERSARIES = {"bday": "birth", "anniversary": "wedding", "deathdate": "death",
                 "x-anniversary": "wedding"}  # fmt: skip
MEDIA = {"photo": "photo", "logo": "logo", "sound": "sound"}
APPLE_LABEL = re.compile(r"_\$!<(.*)>!\$_")


class VCardError(ValueError):
    """A vCard that cannot be read."""


# -- reading the syntax (RFC 6350 §3) ----------------------------------------------------------

STRUCTURED = {"n": ("family", "given", "additional", "prefix", "suffix"),
              "adr": ("box", "extended", "street", "city", "region", "code", "country")}
LISTS = {"nickname", "categories", "org"}  # org: by ";" (units), the others by ","
TEXT = {"fn", "nickname", "note", "title", "role", "categories", "org", "email", "tel",
        "prodid", "lang", "kind", "x-addressbookserver-kind", "x-ablabel", "uid",
        "bday", "anniversary", "deathdate", "rev", "version"}  # fmt: skip


@dataclass
class Parts:
    """A structured value (N, ADR): each field a list of its comma-separated values."""

    fields: dict[str, list[str]]

    def __getattr__(self, name: str) -> list[str]:
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Line:
    """One content line: ``group.NAME;PARAM=...:value``, value decoded for its property,
    ``raw`` as written (unfolded)."""

    name: str
    raw: str
    group: str | None = None
    params: dict[str, list[str]] = field(default_factory=dict)
    value: Any = None


@dataclass
class Component:
    name: str
    contents: dict[str, list[Line]] = field(default_factory=dict)


def _split(text: str, sep: str) -> list[str]:
    """Split at ``sep`` not escaped by a backslash (the escapes stay)."""
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == sep:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    """RFC 6350 §3.4: \\n (or \\N), \\, \\; and \\\\; Google's \\: too."""
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def _param_values(text: str) -> list[str]:
    values, current, quoted = [], "", False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            values.append(current)
            current = ""
        else:
            current += char
    values.append(current)
    return values


def _content_line(text: str) -> Line | None:
    """Parse one unfolded content line; None when it is none."""
    head, quoted, cut = "", False, -1
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            cut = i
            break
    if cut < 0:
        return None
    head, raw = text[:cut], text[cut + 1 :]
    pieces, current, quoted = [], "", False
    for char in head:
        if char == '"':
            quoted = not quoted
            current += char
        elif char == ";" and not quoted:
            pieces.append(current)
            current = ""
        else:
            current += char
    pieces.append(current)
    group, _, name = pieces[0].rpartition(".")
    params: dict[str, list[str]] = {}
    for piece in pieces[1:]:
        key, eq, value = piece.partition("=")
        if not eq:  # vCard 2.1: a bare TYPE value ("TEL;HOME;VOICE")
            key, value = "TYPE", piece
        params.setdefault(key.strip().upper(), []).extend(_param_values(value))
    if not name.strip():
        return None
    return Line(name.strip().lower(), raw, group or None, params)


def _decode(line: Line) -> None:
    """The value of ``line`` as its property has it."""
    encoding = [e.lower() for e in line.params.get("ENCODING", [])]
    raw = line.raw
    if "quoted-printable" in encoding:  # vCard 2.1; the value is then plain text
        charset = (line.params.get("CHARSET") or ["utf-8"])[0]
        data = quopri.decodestring(raw.encode("utf-8", "replace"))
        try:
            raw = data.decode(charset, "replace")
        except LookupError:
            raw = data.decode("utf-8", "replace")
        raw = raw.replace("\r\n", "\n").replace("\\", "\\\\")
        if line.name not in STRUCTURED and line.name != "org":
            raw = raw.replace(",", "\\,").replace(";", "\\;") if line.name in TEXT else raw
        line.params.pop("ENCODING", None)
        line.params.pop("CHARSET", None)
        line.raw = raw
    if "b" in encoding or "base64" in encoding:
        try:
            line.value = base64.b64decode("".join(raw.split()), validate=False)
            return
        except ValueError:
            pass
    if line.name in STRUCTURED:
        fields = _split(raw, ";")
        names = STRUCTURED[line.name]
        fields += [""] * (len(names) - len(fields))
        line.value = Parts({
            n: [_unescape(v) for v in _split(f, ",") if v]
            for n, f in zip(names, fields, strict=False)
        })  # fmt: skip
    elif line.name == "org":
        line.value = [_unescape(v) for v in _split(raw, ";")]
    elif line.name in ("nickname", "categories"):
        line.value = [_unescape(v) for v in _split(raw, ",")]
    elif line.name in TEXT:
        line.value = _unescape(raw)
    else:
        line.value = raw  # URIs and what this module does not know: as written


def _quoted_printable(line: str) -> bool:
    return "QUOTED-PRINTABLE" in line.split(":", 1)[0].upper()


def read_components(text: str) -> list[Component]:
    """The vCards of ``text``: unfolded (RFC 6350 §3.2; 2.1's quoted-printable soft line
    breaks joined), parsed into content lines."""
    lines: list[str] = []
    for item in text.splitlines():
        if lines and lines[-1].endswith("=") and _quoted_printable(lines[-1]):
            lines[-1] = lines[-1][:-1] + item  # a quoted-printable soft line break (2.1)
        elif item[:1] in (" ", "\t") and lines:
            lines[-1] += item[1:]  # folding (RFC 6350 §3.2)
        else:
            lines.append(item)
    out: list[Component] = []
    current: Component | None = None
    depth = 0
    for text_line in lines:
        if not text_line.strip():
            continue
        line = _content_line(text_line)
        if line is None:
            continue
        if line.name == "begin" and line.raw.strip().upper() == "VCARD":
            depth += 1
            if depth == 1:
                current = Component("VCARD")
            continue
        if line.name == "end" and line.raw.strip().upper() == "VCARD":
            depth -= 1
            if depth == 0 and current is not None:
                out.append(current)
                current = None
            continue
        if current is not None and depth == 1:
            _decode(line)
            current.contents.setdefault(line.name, []).append(line)
    return out


def parse(text: str) -> list[dict[str, Any]]:
    """Every vCard in ``text`` as a JSContact Card (without addressBookIds)."""
    cards = [to_card(c) for c in read_components(text)]
    if not cards:
        raise VCardError("no BEGIN:VCARD ... END:VCARD in it")
    return cards


def split(text: str) -> Iterator[str]:
    """The vCards of a file, one text each (for progress while importing)."""
    block: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.strip().upper() == "BEGIN:VCARD":
            block = []
        block.append(line)
        if line.strip().upper() == "END:VCARD":
            yield "".join(block)
            block = []


def _params(line: Any) -> dict[str, list[str]]:
    return line.params


def _types(line: Any) -> list[str]:
    out: list[str] = []
    for value in _params(line).get("TYPE", []):
        out += [t.strip().lower() for t in value.split(",") if t.strip()]
    return out


def _pref(line: Any) -> int | None:
    pref = _params(line).get("PREF")
    if pref and pref[0].isdigit() and 1 <= int(pref[0]) <= 100:
        return int(pref[0])
    return 1 if "pref" in _types(line) else None


def _contexts(types: Iterable[str]) -> dict[str, bool] | None:
    found = {CONTEXT_OF[t]: True for t in types if t in CONTEXT_OF}
    return found or None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _uri(value: Any) -> str:
    """A URI value; Google's exports escape its colons (``https\\://``) as if it were text."""
    return _text(value).replace("\\:", ":").replace("\\,", ",").replace("\\;", ";")


def _leftover_params(line: Any, used: set[str]) -> dict[str, Any]:
    """The parameters the mapping did not use, for vCardParams (RFC 9555 §2.15.1)."""
    out: dict[str, Any] = {}
    for name, values in _params(line).items():
        if name in used:
            continue
        if name == "TYPE":
            rest = [t for t in _types(line) if t not in used]
            if rest:
                out["type"] = rest if len(rest) > 1 else rest[0]
            continue
        out[name.lower()] = values if len(values) > 1 else values[0]
    return out


def _labels(component: Any) -> dict[str, tuple[str, str]]:
    """Apple's item groups: the X-ABLabel of each group, as (label, as written):
    ``_$!<Other>!$_`` is the label Other."""
    out = {}
    for line in component.contents.get("x-ablabel", []):
        if line.group:
            m = APPLE_LABEL.fullmatch(str(line.value))
            out[line.group.lower()] = (m.group(1) if m else str(line.value), str(line.value))
    return out


def _date(value: str) -> dict[str, Any] | None:
    """A vCard date (19530415, 1953-04-15, --0415, --04-15, 1953, 1953-04) or date-time as
    a PartialDate or a Timestamp."""
    text = value.strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})Z", text)
    if m:
        y, mo, d, h, mi, s = m.groups()
        return {"@type": "Timestamp", "utc": f"{y}-{mo}-{d}T{h}:{mi}:{s}Z"}
    text = text.split("T", 1)[0]
    for pattern, keys in (
        (r"(\d{4})-?(\d{2})-?(\d{2})", ("year", "month", "day")),
        (r"--(\d{2})-?(\d{2})", ("month", "day")),
        (r"(\d{4})-(\d{2})", ("year", "month")),
        (r"(\d{4})", ("year",)),
        (r"---(\d{2})", ("day",)),
    ):
        m = re.fullmatch(pattern, text)
        if m:
            date = {k: int(v) for k, v in zip(keys, m.groups(), strict=True)}
            if date.get("month", 1) < 1 or date.get("month", 1) > 12 or date.get("day", 1) < 1:
                return None
            if keys == ("day",):
                return None  # a day without a month is no JSContact date
            return {"@type": "PartialDate", **date}
    return None


def _utc(value: str) -> str | None:
    m = re.fullmatch(
        r"(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(?:\.\d+)?Z", value.strip()
    )
    if not m:
        return None
    y, mo, d, h, mi, s = m.groups()
    return f"{y}-{mo}-{d}T{h}:{mi}:{s}Z"


def _media_uri(line: Any, kind: str) -> str:
    value = line.value
    if isinstance(value, bytes):  # 3.0 ENCODING=b (decoded by _decode)
        subtype = (_types(line) or ["octet-stream"])[0].lower()
        major = {"photo": "image", "logo": "image", "sound": "audio"}[kind]
        media = subtype if "/" in subtype else f"{major}/{subtype}"
        return f"data:{media};base64,{base64.b64encode(value).decode('ascii')}"
    return _uri(value)


def _id(prefix: str, n: int) -> str:
    return f"{prefix}{n}"


def to_card(component: Any) -> dict[str, Any]:
    """One vCard component as a JSContact Card."""
    card: dict[str, Any] = {"@type": "Card", "version": "1.0"}
    labels = _labels(component)
    labelled: set[str] = set()  # the groups whose X-ABLabel went to a mapped property
    kept: list[list[Any]] = []
    counters: dict[str, int] = {}

    def add(prop: str, prefix: str, obj: dict[str, Any]) -> None:
        counters[prop] = counters.get(prop, 0) + 1
        card.setdefault(prop, {})[_id(prefix, counters[prop])] = obj

    def common(line: Any, obj: dict[str, Any], *, contexts: bool = True) -> dict[str, Any]:
        types = _types(line)
        if contexts and _contexts(types):
            obj["contexts"] = _contexts(types)
        pref = _pref(line)
        if pref is not None:
            obj["pref"] = pref
        label = labels.get((line.group or "").lower())
        if label:
            labelled.add((line.group or "").lower())
            obj["label"] = label[0]
            if label[1] != label[0]:  # Apple's own spelling, to write back as it was
                obj.setdefault("vCardParams", {})["x-ablabel"] = label[1]
        extra = _leftover_params(line, {"PREF", "pref", "home", "work", *PHONE_FEATURES,
                                        "internet", "VALUE", "ENCODING"})  # fmt: skip
        if line.group:
            extra["group"] = line.group
        if extra:
            obj["vCardParams"] = {**obj.get("vCardParams", {}), **extra}
        return obj

    for name, lines in component.contents.items():
        for line in lines:
            value = line.value
            if name == "fn":
                card.setdefault("name", {})["full"] = _text(value)
            elif name == "n":
                parts = [
                    ("surname", value.family), ("given", value.given),
                    ("given2", value.additional), ("title", value.prefix),
                    ("credential", value.suffix),
                ]  # fmt: skip
                components = []
                for kind, part in parts:
                    for item in (part if isinstance(part, list) else [part]):
                        if item:
                            components.append({"kind": kind, "value": str(item)})
                if components:
                    card.setdefault("name", {})["components"] = components
            elif name == "nickname":
                for nick in (value if isinstance(value, list) else str(value).split(",")):
                    if str(nick).strip():
                        add("nicknames", "k", common(line, {"name": str(nick).strip()}))
            elif name == "org":
                parts = value if isinstance(value, list) else [value]
                org: dict[str, Any] = {}
                if parts and parts[0]:
                    org["name"] = str(parts[0])
                units = [{"name": str(u)} for u in parts[1:] if u]
                if units:
                    org["units"] = units
                if org:
                    add("organizations", "o", common(line, org))
            elif name in ("title", "role"):
                add("titles", "t", {"kind": name, "name": _text(value)})
            elif name == "email":
                add("emails", "e", common(line, {"address": _text(value)}))
            elif name == "tel":
                number = _text(value)
                phone: dict[str, Any] = {"number": number}
                features = {PHONE_FEATURES[t]: True for t in _types(line) if t in PHONE_FEATURES}
                if features:
                    phone["features"] = features
                add("phones", "p", common(line, phone))
            elif name == "adr":
                address: dict[str, Any] = {}
                components = []
                for kind, part in (
                    ("postOfficeBox", value.box), ("apartment", value.extended),
                    ("name", value.street), ("locality", value.city),
                    ("region", value.region), ("postcode", value.code),
                    ("country", value.country),
                ):  # fmt: skip
                    for item in (part if isinstance(part, list) else [part]):
                        if item:
                            components.append({"kind": kind, "value": str(item)})
                if components:
                    address["components"] = components
                label = _params(line).get("LABEL")
                if label:
                    address["full"] = label[0]
                if not address:
                    address["full"] = ""
                obj = common(line, address)
                obj.get("vCardParams", {}).pop("label", None)
                if obj.get("vCardParams") == {}:
                    obj.pop("vCardParams")
                add("addresses", "a", obj)
            elif name == "url":
                add("links", "l", common(line, {"uri": _uri(value)}))
            elif name in ("impp", "x-socialprofile"):
                uri = _uri(value)
                service = uri.split(":", 1)[0] if ":" in uri and name == "impp" else None
                types = [t for t in _types(line) if t not in CONTEXT_OF and t != "pref"]
                if name == "x-socialprofile" and types:
                    service = types[0]
                obj = {"uri": uri}
                if service:
                    obj["service"] = service
                obj = common(line, obj)
                if name == "x-socialprofile":
                    obj.setdefault("vCardParams", {})["vcard-name"] = "X-SOCIALPROFILE"
                    obj["vCardParams"].pop("type", None)
                add("onlineServices", "s", obj)
            elif name in MEDIA:
                obj = common(line, {"kind": MEDIA[name], "uri": _media_uri(line, name)})
                if obj["uri"].startswith("data:"):  # (its TYPE and ENCODING are in the URI)
                    obj.get("vCardParams", {}).pop("type", None)
                    obj.get("vCardParams", {}).pop("encoding", None)
                if obj.get("vCardParams") == {}:
                    obj.pop("vCardParams")
                add("media", "m", obj)
            elif name in ANNIVERSARIES:
                date = _date(_text(value))
                if date is None:
                    kept.append(_jcard(line, name))
                else:
                    add("anniversaries", "d", {"kind": ANNIVERSARIES[name], "date": date})
            elif name == "note":
                add("notes", "n", {"note": _text(value)})
            elif name == "categories":
                for word in (value if isinstance(value, list) else str(value).split(",")):
                    if str(word).strip():
                        card.setdefault("keywords", {})[str(word).strip()] = True
            elif name == "uid":
                card["uid"] = _text(value)
            elif name == "rev":
                utc = _utc(_text(value))
                if utc:
                    card["updated"] = utc
                else:
                    kept.append(_jcard(line, name))
            elif name == "prodid":
                if _text(value):
                    card["prodId"] = _text(value)
            elif name in ("kind", "x-addressbookserver-kind"):
                kind = _text(value).lower()
                if kind in CARD_KINDS:
                    card["kind"] = kind
                else:
                    kept.append(_jcard(line, name))
            elif name in ("member", "x-addressbookserver-member"):
                card.setdefault("members", {})[_text(value)] = True
            elif name == "lang":
                add("preferredLanguages", "l", common(line, {"language": _text(value)}))
            elif name == "related":
                relation = {t: True for t in _types(line)} or {"contact": True}
                card.setdefault("relatedTo", {})[_text(value)] = {"relation": relation}
            elif name in ("version", "x-ablabel"):
                continue
            else:
                kept.append(_jcard(line, name))
    for line in component.contents.get("x-ablabel", []):
        if not line.group or line.group.lower() not in labelled:
            kept.append(_jcard(line, "x-ablabel"))  # the label of a property kept as is
    if card.get("members"):
        card["kind"] = "group"
    if kept:
        card["vCardProps"] = kept
    return card


def _jcard(line: Any, name: str) -> list[Any]:
    """A vCard property kept as jCard (RFC 7095): [name, parameters, type, value]."""
    params: dict[str, Any] = {
        k.lower(): (v if len(v) > 1 else v[0]) for k, v in _params(line).items()
    }
    if line.group:
        params["group"] = line.group
    return [name, params, "unknown", line.raw]


# -- JSContact to vCard 4.0 -------------------------------------------------------------------


def _escape(text: str) -> str:
    """RFC 6350 §3.4 text escaping."""
    return (
        text.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;").replace("\n", "\\n")
    )


def _structured(parts: list[list[str]]) -> str:
    """A structured value (N, ADR, ORG): components by ";", each a list joined by ","."""
    return ";".join(",".join(_escape(p) for p in part) for part in parts)


def _sorted(items: dict[str, Any] | None) -> list[Any]:
    return list((items or {}).values())


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = ["BEGIN:VCARD\r\n", "VERSION:4.0\r\n"]

    def add(
        self,
        name: str,
        value: str,
        obj: dict[str, Any] | None = None,
        types: Iterable[str] = (),
        params: dict[str, Any] | None = None,
    ) -> None:
        obj = obj or {}
        kept = dict(obj.get("vCardParams") or {})
        group = kept.pop("group", None)
        kept.pop("vcard-name", None)
        raw_label = kept.pop("x-ablabel", None)
        all_types = [*types, *(CONTEXT_TYPES[c] for c in obj.get("contexts") or {}
                               if c in CONTEXT_TYPES)]  # fmt: skip
        extra_type = kept.pop("type", None)
        if extra_type:
            all_types += extra_type if isinstance(extra_type, list) else [extra_type]
        out: dict[str, Any] = dict(params or {})
        if obj.get("pref") is not None:
            out["PREF"] = str(obj["pref"])
        if all_types:
            out["TYPE"] = list(dict.fromkeys(all_types))
        for key, val in kept.items():
            out[key.upper()] = val
        head = (f"{group}." if group else "") + name.upper()
        for key, val in out.items():
            vals = val if isinstance(val, list) else [val]
            head += f";{key}=" + ",".join(_param(str(x)) for x in vals)
        self.lines.append(_fold(f"{head}:{value}"))
        if obj.get("label"):
            label = raw_label or obj["label"]
            if group:
                self.lines.append(_fold(f"{group}.X-ABLABEL:{_escape(label)}"))

    def text(self) -> str:
        return "".join(self.lines) + "END:VCARD\r\n"


def from_card(card: dict[str, Any]) -> str:
    """A JSContact Card as vCard 4.0 text."""
    w = _Writer()
    name = card.get("name") or {}
    components = name.get("components") or []

    def parts(kind: str) -> list[str]:
        return [c["value"] for c in components if c.get("kind") == kind]

    full = name.get("full") or " ".join(
        c["value"] for c in components if c.get("kind") != "separator"
    )
    w.add("fn", _escape(full or ""))
    if components:
        w.add("n", _structured([parts(k) for k in
                                ("surname", "given", "given2", "title", "credential")]))
    if card.get("kind") and card["kind"] != "individual":
        w.add("kind", card["kind"])
    for uid in card.get("members") or {}:
        w.add("member", uid)
    for nick in _sorted(card.get("nicknames")):
        w.add("nickname", _escape(nick["name"]), nick)
    for org in _sorted(card.get("organizations")):
        units = [[u["name"]] for u in org.get("units") or []]
        w.add("org", _structured([[org.get("name", "")], *units]), org)
    for title in _sorted(card.get("titles")):
        w.add("role" if title.get("kind") == "role" else "title", _escape(title["name"]))
    for email in _sorted(card.get("emails")):
        w.add("email", _escape(email["address"]), email)
    for phone in _sorted(card.get("phones")):
        features = [FEATURE_TYPES[f] for f in (phone.get("features") or {}) if f in FEATURE_TYPES]
        w.add("tel", _escape(phone["number"]), phone, features)
    for address in _sorted(card.get("addresses")):
        comps = address.get("components") or []

        def part(kinds: tuple[str, ...], comps: list[dict[str, Any]] = comps) -> list[str]:
            found = [c["value"] for c in comps if c.get("kind") in kinds]
            return [" ".join(found)] if found else []

        value = _structured([
            part(("postOfficeBox",)), part(("apartment",)), part(("number", "name")),
            part(("locality",)), part(("region",)), part(("postcode",)), part(("country",)),
        ])  # fmt: skip
        params = {"LABEL": address["full"]} if address.get("full") else None
        w.add("adr", value, address, params=params)
    for link in _sorted(card.get("links")):
        w.add("url", link["uri"], link)
    for service in _sorted(card.get("onlineServices")):
        social = (service.get("vCardParams") or {}).get("vcard-name") == "X-SOCIALPROFILE"
        uri = service.get("uri") or service.get("user") or ""
        types = [service["service"]] if social and service.get("service") else []
        w.add("x-socialprofile" if social else "impp", uri, service, types)
    for media in _sorted(card.get("media")):
        if media.get("uri"):
            w.add(MEDIA.get(media.get("kind"), "photo"), media["uri"], media)
    for anniversary in _sorted(card.get("anniversaries")):
        date = anniversary.get("date") or {}
        if "utc" in date:
            text = date["utc"].replace("-", "").replace(":", "")
        else:
            y, m, d = date.get("year"), date.get("month"), date.get("day")
            text = (f"{y:04d}" if y else "--") + (f"{m:02d}" if m else "") + (
                f"{d:02d}" if d else ""
            )
        kind = {"birth": "bday", "death": "deathdate"}.get(anniversary.get("kind"), "anniversary")
        w.add(kind, text)
    for note in _sorted(card.get("notes")):
        w.add("note", _escape(note["note"]))
    if card.get("keywords"):
        w.add("categories", ",".join(_escape(k) for k in card["keywords"]))
    for lang in _sorted(card.get("preferredLanguages")):
        w.add("lang", lang["language"], lang)
    for uri, related in (card.get("relatedTo") or {}).items():
        types = [t for t in (related.get("relation") or {}) if t != "contact"]
        w.add("related", uri, {}, types)
    if card.get("uid"):
        w.add("uid", card["uid"])
    if card.get("prodId"):
        w.add("prodid", _escape(card["prodId"]))
    if card.get("updated"):
        w.add("rev", card["updated"].replace("-", "").replace(":", ""))
    for prop in card.get("vCardProps") or []:
        if isinstance(prop, list) and len(prop) == 4:
            w.lines.append(_jcard_line(prop))
    return w.text()


def _jcard_line(prop: list[Any]) -> str:
    """A kept vCardProps entry as a content line (folded at 75 octets)."""
    name, params, _type, value = prop
    params = dict(params or {})
    group = params.pop("group", None)
    head = (f"{group}." if group else "") + str(name).upper()
    for key, val in params.items():
        vals = val if isinstance(val, list) else [val]
        head += f";{key.upper()}=" + ",".join(_param(str(x)) for x in vals)
    return _fold(f"{head}:{value}")


def _param(value: str) -> str:
    return f'"{value}"' if any(c in value for c in ":;,") else value


def _fold(line: str) -> str:
    """RFC 6350 §3.2: lines of at most 75 octets, continued with a space."""
    out, current = [], ""
    for char in line:
        if len((current + char).encode("utf-8")) > 75:
            out.append(current)
            current = " " + char
        else:
            current += char
    out.append(current)
    return "\r\n".join(out) + "\r\n"
