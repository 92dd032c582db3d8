"""A deterministic generator of realistic mail for the benchmarks (benchmarks/README.md).

The same ``--count`` and ``--seed`` always give the same messages, byte for byte, so a figure
taken on one machine can be reproduced on another.  What it makes:

- threads of varying depth: about 40 % of messages start a thread; the rest reply to a
  recent thread (In-Reply-To and References to the message they answer, "Re: " subject), so
  most threads are short and a few run to dozens of messages;
- a realistic size distribution: most messages 2-20 KB, a few short ones, some long
  newsletters, and about 2 % with attachments from 10 KB up to 3 MB;
- several charsets: UTF-8, ISO-8859-1, windows-1252, ISO-2022-JP and Shift_JIS, in bodies
  (quoted-printable, base64, 7bit, 8bit) and in RFC 2047 encoded-word subjects and names;
- plain-only messages and multipart/alternative (text/plain + text/html);
- mailing lists (List-Id, List-Post, List-Unsubscribe, Precedence: list) in their own
  mailboxes, and the user's own sent mail in Sent;
- keywords: most older mail $seen, some $flagged and $answered.

Usage::

    python benchmarks/generate.py --count 10000 --out benchmarks/.data/corpus-10000
    python benchmarks/generate.py --count 1000 --out -        # an mbox on stdout
    python benchmarks/generate.py --count 10000 --stats       # only the size/charset summary

The directory form is what ``load.py --corpus`` reads: ``manifest.jsonl`` (one line per
message: file, mailbox, keywords, receivedAt) and the messages as ``NNNN/NNNNNNN.eml``.
``load.py --generate N`` streams the same messages without writing them anywhere.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import quopri
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

DEFAULT_COUNT = 10_000
DEFAULT_SEED = 8621
USER = ("Bench User", "bench@example.org")

# Mailboxes the corpus uses: key -> (name, role).  A loader finds each by role, else by name,
# else creates it.  The share of received messages each one gets is in _pick_mailbox.
MAILBOXES: dict[str, tuple[str, str | None]] = {
    "inbox": ("Inbox", "inbox"),
    "archive": ("Archive", "archive"),
    "sent": ("Sent", "sent"),
    "python-dev": ("python-dev", None),
    "debian-devel": ("debian-devel", None),
    "newsletters": ("Newsletters", None),
    "work": ("Work", None),
}

LISTS = {
    "python-dev": ("python-dev.python.org", "Python core development"),
    "debian-devel": ("debian-devel.lists.debian.org", "Debian developers"),
}


def _split(text: str) -> list[str]:
    return text.split()


# Words are drawn with Zipf-like weights, so a few are everywhere and most are rare: a text
# search for a common word finds thousands of messages, for a rare one a handful.
WORDS = _split("""
the of and to in is that for it as with was on be by this are from or at have an not but
which all were can we there their been has more one will when would if so what about up
out them into some could time only new these two may then do first any like now such our
over also after use used many its most other well where make between before just much
through work should each those people because very see year know how back good way down
right still own find here thing give however project release build server client message
mail thread inbox search index database query patch review merge branch commit version
update report issue bug fix test deploy cluster network storage backup restore schedule
meeting agenda minutes budget invoice payment contract proposal deadline quarter launch
customer support ticket question answer feedback draft document attachment presentation
kernel package upstream maintainer debian python module compiler runtime memory thread
performance benchmark latency throughput cache protocol session token calendar contact
address phone office travel hotel flight conference workshop speaker coffee lunch dinner
weekend holiday vacation family weather garden bicycle library museum concert ticket
""")
RARE_WORDS = _split("""
quasar zeppelin marmalade pangolin obsidian tamarind kumquat albatross vermilion sextant
labyrinth gargoyle harpsichord nebula octopus platypus quinoa rhubarb saxophone tundra
""")
LATIN1_WORDS = _split("café naïve Zürich Größe Ångström façade crème brûlée señor año déjà über")
CP1252_WORDS = ["“quoted”", "€100", "–", "‘single’", "…", "™", "œuvre", "Œdipus"]  # noqa: RUF001
JAPANESE_WORDS = _split(
    "会議 資料 確認 予定 来週 東京 大阪 お願いします ありがとうございます 報告 "
    "検討 連絡 担当 返信 添付 日程 変更 了解 よろしく 打ち合わせ 見積もり 請求書"
)

# Search terms for scenario 4: a common word, a middling one, a rare one, an accented one.
SEARCH_TERMS = ["release", "invoice", "zeppelin", "Zürich"]

FIRST = _split("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy")
LAST = _split("Smith Jones Müller García Rossi Dubois Tanaka Suzuki Nowak Silva Kim Novak")
JP_NAMES = ["山田 太郎", "鈴木 花子", "佐藤 一郎", "田中 美咲"]
DOMAINS = ["example.com", "example.net", "mail.example.org", "corp.example", "lists.example"]

# charset -> (share, body transfer encoding)
CHARSETS = {
    "utf-8": (0.70, "quoted-printable"),
    "iso-8859-1": (0.10, "quoted-printable"),
    "windows-1252": (0.08, "8bit"),
    "iso-2022-jp": (0.06, "7bit"),
    "shift_jis": (0.06, "base64"),
}

ATTACHMENT_TYPES = [
    ("application/pdf", "report.pdf"),
    ("image/jpeg", "photo.jpg"),
    ("application/zip", "logs.zip"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "budget.xlsx"),
]


@dataclass
class Message:
    """One generated message: the raw RFC 5322 bytes and how to file it."""

    index: int
    mailbox: str  # a key of MAILBOXES
    keywords: dict[str, bool]
    received_at: str  # RFC 3339 UTC, as Email/import's receivedAt
    raw: bytes


@dataclass
class _Thread:
    subject: str
    charset: str
    refs: list[str]  # Message-IDs in the thread, oldest first
    mailbox: str
    list_id: str | None
    participants: list[tuple[str, str]]


def _zipf_cumulative(n: int) -> list[float]:
    return list(itertools.accumulate(1.0 / (rank + 1) for rank in range(n)))


_WORD_WEIGHTS = _zipf_cumulative(len(WORDS))


class Generator:
    """Yields messages in receivedAt order; everything comes from one seeded RNG."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self.rng = random.Random(seed)
        self.clock = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
        self.threads: list[_Thread] = []
        self.seq = 0

    # -- vocabulary ----------------------------------------------------------------------

    def words(self, n: int, charset: str) -> list[str]:
        rng = self.rng
        out = rng.choices(WORDS, cum_weights=_WORD_WEIGHTS, k=n)
        # Rare words are rare (about one in 3,000 words: each is in a few per cent of the
        # messages, a selective search term); charset-specific words are frequent enough
        # that every message of a charset has real non-ASCII text.
        for _ in range(int(n / 3000 + rng.random())):
            out[rng.randrange(n)] = rng.choice(RARE_WORDS)
        extra = {
            "iso-8859-1": LATIN1_WORDS,
            "windows-1252": LATIN1_WORDS + CP1252_WORDS,
            "utf-8": LATIN1_WORDS + CP1252_WORDS + JAPANESE_WORDS,
            "iso-2022-jp": JAPANESE_WORDS,
            "shift_jis": JAPANESE_WORDS,
        }[charset]
        share = {"iso-2022-jp": 6, "shift_jis": 6, "utf-8": 150}.get(charset, 40)
        for _ in range(int(n / share + rng.random())):
            out[rng.randrange(n)] = rng.choice(extra)
        return out

    def sentence(self, charset: str) -> str:
        words = self.words(self.rng.randint(6, 18), charset)
        text = " ".join(words)
        return text[0].upper() + text[1:] + self.rng.choice(".....?!")

    def paragraphs(self, target: int, charset: str) -> list[str]:
        """Paragraphs of about ``target`` characters in total."""
        paras: list[str] = []
        size = 0
        while size < target:
            para = " ".join(self.sentence(charset) for _ in range(self.rng.randint(2, 7)))
            paras.append(para)
            size += len(para) + 2
        return paras

    def person(self, charset: str) -> tuple[str, str]:
        rng = self.rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        address = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
        address = address.encode("ascii", "ignore").decode()
        if charset in ("iso-2022-jp", "shift_jis") and rng.random() < 0.6:
            return rng.choice(JP_NAMES), address
        return f"{first} {last}", address

    # -- one message ---------------------------------------------------------------------

    def _pick_mailbox(self) -> str:
        r = self.rng.random()
        for key, upto in (
            ("inbox", 0.45),
            ("archive", 0.62),
            ("python-dev", 0.74),
            ("debian-devel", 0.84),
            ("newsletters", 0.90),
            ("work", 1.0),
        ):
            if r < upto:
                return key
        return "inbox"

    def _new_thread(self) -> _Thread:
        rng = self.rng
        charset = rng.choices(list(CHARSETS), [share for share, _ in CHARSETS.values()])[0]
        mailbox = self._pick_mailbox()
        subject = " ".join(self.words(rng.randint(3, 8), charset)).capitalize()
        if rng.random() < 0.1:
            subject = f"[{rng.choice(['ANN', 'RFC', 'PATCH', 'URGENT'])}] {subject}"
        people = [self.person(charset) for _ in range(rng.randint(1, 4))]
        list_id = LISTS[mailbox][0] if mailbox in LISTS else None
        return _Thread(subject, charset, [], mailbox, list_id, people)

    def message(self) -> Message:
        rng = self.rng
        index = self.seq
        self.seq += 1
        # Mail arrives in bursts: mostly minutes apart, sometimes hours.
        self.clock += timedelta(seconds=int(rng.expovariate(1 / 600)) + 1)
        recent = self.threads[-200:]
        if recent and rng.random() < 0.6:
            # Replies favour recent threads, so threads grow deep while they are "hot".
            back = min(int(rng.expovariate(1 / 15)), len(recent) - 1)
            thread = recent[-1 - back]
        else:
            thread = self._new_thread()
            self.threads.append(thread)
            if len(self.threads) > 400:
                del self.threads[:200]
        charset = thread.charset
        from_me = thread.list_id is None and bool(thread.refs) and rng.random() < 0.12
        sender = USER if from_me else rng.choice(thread.participants)
        mailbox = "sent" if from_me else thread.mailbox
        domain = sender[1].split("@")[1]
        msgid = f"{index:08d}.{rng.getrandbits(40):010x}@{domain}"
        headers: list[tuple[str, str]] = [
            ("Return-Path", f"<{sender[1]}>"),
            ("Received", f"from mx.{domain} by mx.example.org; {format_datetime(self.clock)}"),
            ("From", _address(sender, charset)),
            ("To", _address(USER, charset) if not thread.list_id else f"<{thread.list_id}>"),
        ]
        if rng.random() < 0.3:
            cc = [self.person(charset) for _ in range(rng.randint(1, 3))]
            headers.append(("Cc", ", ".join(_address(p, charset) for p in cc)))
        subject = thread.subject if not thread.refs else "Re: " + thread.subject
        headers += [
            ("Subject", _encode_word(subject, charset)),
            ("Date", format_datetime(self.clock)),
            ("Message-ID", f"<{msgid}>"),
        ]
        if thread.refs:
            headers.append(("In-Reply-To", f"<{thread.refs[-1]}>"))
            # Long threads keep the first and the last references, as mail clients do.
            refs = thread.refs if len(thread.refs) <= 12 else thread.refs[:1] + thread.refs[-11:]
            headers.append(("References", " ".join(f"<{r}>" for r in refs)))
        thread.refs.append(msgid)
        if thread.list_id:
            name = thread.list_id.split(".")[0]
            headers += [
                ("List-Id", f"{LISTS[mailbox][1]} <{thread.list_id}>"),
                ("List-Post", f"<mailto:{name}@{thread.list_id.split('.', 1)[1]}>"),
                ("List-Unsubscribe", f"<mailto:{name}-request@lists.example?subject=unsubscribe>"),
                ("Precedence", "list"),
            ]
        elif mailbox == "newsletters":
            headers += [
                ("List-Unsubscribe", "<https://news.example.com/unsubscribe>"),
                ("Precedence", "bulk"),
            ]
        headers.append(("MIME-Version", "1.0"))
        headers.append(("X-Mailer", rng.choice(["Thunderbird 115.6", "Mutt 2.2", "Outlook 16.0"])))
        mime_headers, payload = self._body(charset, mailbox)
        raw = _header_block(headers + mime_headers) + payload
        keywords: dict[str, bool] = {}
        if from_me or rng.random() < 0.8:
            keywords["$seen"] = True
        if rng.random() < 0.03:
            keywords["$flagged"] = True
        if not from_me and rng.random() < 0.08:
            keywords["$answered"] = True
        received = self.clock.strftime("%Y-%m-%dT%H:%M:%SZ")
        return Message(index, mailbox, keywords, received, raw)

    def _body(self, charset: str, mailbox: str) -> tuple[list[tuple[str, str]], bytes]:
        """MIME headers and body: text/plain, multipart/alternative, maybe attachments."""
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            target = rng.randint(300, 1800)  # a quick one-liner reply
        elif r < 0.93 or mailbox != "newsletters":
            target = int(min(max(rng.lognormvariate(8.4, 0.55), 1800), 19000))  # 2-20 KB
        else:
            target = rng.randint(20_000, 90_000)  # a long newsletter
        paras = self.paragraphs(target, charset)
        plain = _text_part("plain", "\n\n".join(_wrap(p) for p in paras), charset)
        with_html = mailbox == "newsletters" or rng.random() < 0.4
        body: tuple[list[tuple[str, str]], bytes] = plain
        if with_html:
            html_paras = "".join(f"<p>{_wrap(p)}</p>\n" for p in paras)
            html_text = f"<html><body>{html_paras}</body></html>"
            body = _multipart("alternative", [plain, _text_part("html", html_text, charset)])
        if rng.random() < 0.02:
            attachments = [self._attachment() for _ in range(rng.choice([1, 1, 1, 2, 3]))]
            body = _multipart("mixed", [body, *attachments])
        return body

    def _attachment(self) -> tuple[list[tuple[str, str]], bytes]:
        rng = self.rng
        r = rng.random()
        if r < 0.70:
            size = rng.randint(10_000, 100_000)
        elif r < 0.95:
            size = rng.randint(100_000, 700_000)
        else:
            size = rng.randint(700_000, 3_000_000)
        media, name = rng.choice(ATTACHMENT_TYPES)
        data = base64.encodebytes(rng.randbytes(size)).replace(b"\n", b"\r\n")
        return (
            [
                ("Content-Type", f'{media}; name="{name}"'),
                ("Content-Disposition", f'attachment; filename="{name}"'),
                ("Content-Transfer-Encoding", "base64"),
            ],
            data,
        )

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield self.message()


# -- MIME helpers -----------------------------------------------------------------------


def _python_codec(charset: str) -> str:
    return {"windows-1252": "cp1252"}.get(charset, charset)


def _encode_word(text: str, charset: str) -> str:
    """RFC 2047: ``text`` as is when ASCII, else B-encoded words in ``charset``."""
    if text.isascii():
        return text
    encoded = text.encode(_python_codec(charset), "replace")
    # Keep each encoded-word under 75 characters: 45 octets of base64 input per word.
    words = []
    for start in range(0, len(encoded), 45):
        chunk = encoded[start : start + 45]
        words.append(f"=?{charset}?B?{base64.b64encode(chunk).decode()}?=")
    return "\r\n ".join(words)


def _address(person: tuple[str, str], charset: str) -> str:
    name, address = person
    if name.isascii():
        return f'"{name}" <{address}>'
    return f"{_encode_word(name, charset)} <{address}>"


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii") + b"\r\n"


def _wrap(paragraph: str, width: int = 76) -> str:
    lines, line = [], ""
    for word in paragraph.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


def _text_part(subtype: str, text: str, charset: str) -> tuple[list[tuple[str, str]], bytes]:
    encoding = CHARSETS[charset][1]
    if subtype == "html" and encoding in ("7bit", "8bit") and charset != "iso-2022-jp":
        encoding = "quoted-printable"  # HTML lines are long: keep them under 998 octets
    data = text.replace("\n", "\r\n").encode(_python_codec(charset), "replace")
    if encoding == "quoted-printable":
        payload = quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    elif encoding == "base64":
        payload = base64.encodebytes(data).replace(b"\n", b"\r\n")
    else:
        payload = data if data.endswith(b"\r\n") else data + b"\r\n"
    return (
        [
            ("Content-Type", f"text/{subtype}; charset={charset}"),
            ("Content-Transfer-Encoding", encoding),
        ],
        payload,
    )


_boundary_counter = itertools.count()


def _multipart(
    subtype: str, parts: list[tuple[list[tuple[str, str]], bytes]]
) -> tuple[list[tuple[str, str]], bytes]:
    boundary = f"=_bench_{subtype}_{next(_boundary_counter):08d}"
    chunks = []
    for headers, payload in parts:
        chunks.append(f"--{boundary}\r\n".encode() + _header_block(headers) + payload)
        if not payload.endswith(b"\r\n"):
            chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')], b"".join(chunks)


# -- output -----------------------------------------------------------------------------


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> Iterator[Message]:
    """``count`` messages, the same for the same seed."""
    global _boundary_counter
    _boundary_counter = itertools.count()  # boundaries too must not depend on earlier calls
    return itertools.islice(iter(Generator(seed)), count)


def relative_path(index: int) -> str:
    return f"{index // 1000:04d}/{index:07d}.eml"


def write_directory(messages: Iterator[Message], out: Path) -> int:
    """Write ``manifest.jsonl`` and the .eml files; returns the number of messages."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for message in messages:
            path = out / relative_path(message.index)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(message.raw)
            line = {
                "file": relative_path(message.index),
                "mailbox": message.mailbox,
                "keywords": message.keywords,
                "receivedAt": message.received_at,
            }
            manifest.write(json.dumps(line) + "\n")
            count += 1
    return count


def read_directory(directory: Path) -> Iterator[Message]:
    """The messages of a directory written by :func:`write_directory`."""
    with (directory / "manifest.jsonl").open(encoding="utf-8") as manifest:
        for index, line in enumerate(manifest):
            entry = json.loads(line)
            raw = (directory / entry["file"]).read_bytes()
            yield Message(index, entry["mailbox"], entry["keywords"], entry["receivedAt"], raw)


def write_mbox(messages: Iterator[Message], stream) -> int:  # type: ignore[no-untyped-def]
    """An mboxrd stream (">From " quoting) with LF line ends, as mbox tools expect."""
    count = 0
    for message in messages:
        stream.write(b"From bench@example.org " + message.received_at.encode() + b"\n")
        for line in message.raw.split(b"\r\n"):
            if line.lstrip(b">").startswith(b"From "):
                line = b">" + line
            stream.write(line + b"\n")
        count += 1
    return count


def stats(messages: Iterator[Message]) -> dict[str, object]:
    sizes: list[int] = []
    charsets: dict[str, int] = {}
    mailboxes: dict[str, int] = {}
    replies = attachments = html = 0
    for m in messages:
        sizes.append(len(m.raw))
        mailboxes[m.mailbox] = mailboxes.get(m.mailbox, 0) + 1
        head = m.raw[: m.raw.find(b"\r\n\r\n") + 4]
        replies += b"\r\nIn-Reply-To:" in head
        attachments += b"Content-Disposition: attachment" in m.raw
        html += b"text/html" in m.raw
        start = m.raw.find(b"charset=")
        charset = m.raw[start + 8 : m.raw.find(b"\r\n", start)].decode() if start >= 0 else "?"
        charsets[charset] = charsets.get(charset, 0) + 1
    sizes.sort()

    def pct(p: float) -> int:
        return sizes[min(len(sizes) - 1, int(p * len(sizes)))]

    return {
        "messages": len(sizes),
        "bytes": sum(sizes),
        "size_p10": pct(0.10),
        "size_p50": pct(0.50),
        "size_p90": pct(0.90),
        "size_max": sizes[-1] if sizes else 0,
        "share_2_20kb": round(sum(2048 <= s <= 20480 for s in sizes) / max(1, len(sizes)), 3),
        "replies": replies,
        "with_attachments": attachments,
        "with_html": html,
        "charsets": charsets,
        "mailboxes": mailboxes,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="messages (10000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="RNG seed (8621)")
    parser.add_argument("--out", help="directory to write, or - for an mbox on stdout")
    parser.add_argument("--stats", action="store_true", help="print a summary of the corpus")
    args = parser.parse_args(argv)
    if not args.out and not args.stats:
        parser.error("give --out DIR, --out - or --stats")
    if args.out == "-":
        write_mbox(generate(args.count, args.seed), sys.stdout.buffer)
    elif args.out:
        n = write_directory(generate(args.count, args.seed), Path(args.out))
        print(f"wrote {n} messages to {args.out}", file=sys.stderr)
    if args.stats:
        print(json.dumps(stats(generate(args.count, args.seed)), indent=2))


if __name__ == "__main__":
    main()
