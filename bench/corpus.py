"""A deterministic, realistic support-mail corpus: the same bytes for the same seed, every run.

Shape (seeded `random.Random`, nothing else random — even MIME boundaries are fixed):
- About two thirds new requests, one third customer follow-ups. A follow-up carries
  In-Reply-To/References naming the customer's earlier mail of that conversation (which threads
  it whatever the arrival order) and the subject tag `[Bench Support #N]` with a localised reply
  prefix (Re:/VS:/Ats:/AW:). N is predicted as 1000 + the request's ordinal, which is the
  daemon's number when requests arrive in order (one connection); with several connections
  the numbers may differ, and the references still thread the reply.
- English, Finnish, Lithuanian and German; subjects and display names RFC 2047 encoded in the
  charsets real clients use (UTF-8 B/Q, ISO-8859-1/-15, ISO-8859-13, windows-1257).
- Plain text, or multipart/alternative with HTML; quoted-printable, base64 or 8-bit bodies;
  Received, DKIM-Signature and User-Agent headers as a receiving MX would see them.
- Sizes like real support mail: most 2-15 KB, a quarter 15-60 KB, 3 % 100-300 KB; attachments
  (PDF, PNG: random bytes behind a real file signature) on a fifth of the mails.
- Every request has its own customer, except that some customers open a second ticket, so
  no acknowledgement is suppressed by the 3-per-sender-per-hour limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import multiprocessing
import os
import random
import re
import struct
import unicodedata
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from bench.text import LANGUAGES, QUOTE_INTRO, SIGNATURE_LINES, Language

SUPPORT_ADDRESS = "support@example.com"
SUBJECT_TAG = "Bench Support"
FIRST_TICKET_NUMBER = 1000
REPLY_SHARE = 0.33
MAX_REPLIES_PER_CONVERSATION = 4
BASE_DATE = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
USER_AGENTS = (
    "Microsoft Outlook 16.0",
    "Mozilla Thunderbird 128.3.1",
    "Apple Mail (2.3774.600.62)",
    "Roundcube Webmail/1.6.9",
    "K-9 Mail for Android",
)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MailSpec:
    """What one mail is; `render` turns it into bytes."""

    index: int
    conversation: int
    is_reply: bool
    language: str
    sender_name: str
    sender: str
    subject: str
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    html: bool
    attachments: tuple[Attachment, ...]
    text_bytes: int
    charset: str


@dataclass(frozen=True)
class Mail:
    spec: MailSpec
    raw: bytes  # CRLF line endings, as an SMTP client sends it

    @property
    def sender(self) -> str:
        return self.spec.sender

    @property
    def message_id(self) -> str:
        return self.spec.message_id


@dataclass
class _Conversation:
    ordinal: int
    language: Language
    name: str
    address: str
    subject: str
    message_ids: list[str] = field(default_factory=list)


def _ascii_fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum() or ch in ".-") or "x"


class Planner:
    """Decides mail after mail (request or reply, language, size, parts) from one seeded RNG."""

    def __init__(self, seed: int, stream: str = "c") -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.stream = stream
        self.requests = 0
        self.open: deque[_Conversation] = deque(maxlen=300)
        self.replies: dict[int, int] = {}
        self.one_ticket_customers: deque[tuple[str, str]] = deque(maxlen=200)

    def specs(self, count: int | None) -> Iterator[MailSpec]:
        index = 0
        while count is None or index < count:
            yield self._next(index)
            index += 1

    def _next(self, index: int) -> MailSpec:
        rng = self.rng
        if self.open and rng.random() < REPLY_SHARE:
            conversation = rng.choice(list(self.open)[-60:])
            return self._reply(index, conversation)
        return self._request(index)

    def _customer(self, language: Language) -> tuple[str, str]:
        rng = self.rng
        if self.one_ticket_customers and rng.random() < 0.08:
            return self.one_ticket_customers.popleft()
        first, last = rng.choice(language.first_names), rng.choice(language.last_names)
        local = f"{_ascii_fold(first)}.{_ascii_fold(last)}.{self.stream}{self.requests}"
        customer = (f"{first} {last}", f"{local}@{rng.choice(language.domains)}")
        self.one_ticket_customers.append(customer)
        return customer

    def _request(self, index: int) -> MailSpec:
        rng = self.rng
        language = rng.choices([lang for lang, _ in LANGUAGES], [w for _, w in LANGUAGES])[0]
        name, address = self._customer(language)
        conversation = _Conversation(self.requests, language, name, address, rng.choice(language.subjects))
        self.requests += 1
        self.open.append(conversation)
        return self._spec(index, conversation, conversation.subject, reply=False)

    def _reply(self, index: int, conversation: _Conversation) -> MailSpec:
        count = self.replies.get(conversation.ordinal, 0) + 1
        self.replies[conversation.ordinal] = count
        if count >= MAX_REPLIES_PER_CONVERSATION:
            self.open.remove(conversation)
        number = FIRST_TICKET_NUMBER + conversation.ordinal
        subject = f"{conversation.language.reply_prefix}[{SUBJECT_TAG} #{number}] {conversation.subject}"
        return self._spec(index, conversation, subject, reply=True)

    def _spec(self, index: int, conversation: _Conversation, subject: str, *, reply: bool) -> MailSpec:
        rng = self.rng
        attachments, text_bytes = self._sizes(index)
        domain = conversation.address.split("@")[1]
        message_id = f"<bench.{self.seed}.{self.stream}{index}.{rng.getrandbits(32):08x}@{domain}>"
        previous = tuple(conversation.message_ids)
        conversation.message_ids.append(message_id)
        html = rng.random() < 0.45
        return MailSpec(
            index=index,
            conversation=conversation.ordinal,
            is_reply=reply,
            language=conversation.language.code,
            sender_name=conversation.name,
            sender=conversation.address,
            subject=subject,
            message_id=message_id,
            in_reply_to=previous[-1] if reply and previous else None,
            references=previous[-8:] if reply else (),
            html=html,
            attachments=attachments,
            text_bytes=int(text_bytes / 2.2) if html else text_bytes,
            charset=rng.choice(conversation.language.charsets),
        )

    def _sizes(self, index: int) -> tuple[tuple[Attachment, ...], int]:
        """Attachments and the body text size that together give a realistic total size."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.03:
            total, share = rng.randint(100_000, 300_000), 1.0
        elif roll < 0.28:
            total, share = rng.randint(15_000, 60_000), 0.6
        else:
            total, share = rng.randint(2_000, 15_000), 0.1
        attachments: list[Attachment] = []
        if rng.random() < share:
            budget = int(total * 0.7 / 1.37)  # base64 grows the bytes by a third, plus line ends
            for part in range(1 if total < 100_000 else 2):
                kind = rng.choice(("pdf", "png"))
                name = rng.choice(("screenshot", "invoice", "lasku_märts", "sąskaita", "Fehlerbericht", "log"))
                content_type = "application/pdf" if kind == "pdf" else "image/png"
                attachments.append(Attachment(f"{name}-{index}-{part}.{kind}", content_type, max(512, budget // 2)))
            total -= int(sum(a.size for a in attachments) * 1.37)
        return tuple(attachments), max(400, total - 1_500)


def render(spec: MailSpec) -> bytes:
    """The mail as CRLF bytes; deterministic for a given spec."""
    rng = random.Random(f"{spec.message_id}")
    message = EmailMessage(policy=SMTP)
    _envelope_headers(message, spec, rng)
    text = _body_text(spec, rng)
    cte = rng.choice(("quoted-printable", "quoted-printable", "base64", "8bit"))
    charset = spec.charset if _encodable(text, spec.charset) else "utf-8"
    message.set_content(text, charset=charset, cte=_usable_cte(cte, charset))
    if spec.html:
        message.add_alternative(_html(text), subtype="html", charset="utf-8", cte="quoted-printable")
    for attachment in spec.attachments:
        maintype, subtype = attachment.content_type.split("/")
        message.add_attachment(
            _file_bytes(attachment, rng), maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    language = _language(spec.language)
    if language.content_language:
        message["Content-Language"] = language.content_language
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"----=_Part_{spec.index}_{number}_{zlib.crc32(spec.message_id.encode()):08x}")
    # Set on the bytes: the email package would re-encode both in UTF-8 otherwise.
    raw = _set_header(message.as_bytes(), b"From", _from_header(spec).encode("ascii"))
    raw = _set_header(raw, b"Subject", _encode_words(spec.subject, spec.charset))
    return _dkim_signature(spec) + raw if rng.random() < 0.6 else raw


def _dkim_signature(spec: MailSpec) -> bytes:
    """A DKIM-Signature header folded as signers fold it (not verifiable; nothing verifies it)."""
    digest = hashlib.sha512(spec.message_id.encode()).hexdigest() * 3
    signature = "\r\n\t".join(digest[i : i + 72] for i in range(0, 344, 72))
    return (
        f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={spec.sender.split('@')[1]}; s=sel1;\r\n"
        f"\th=from:to:subject:date:message-id:in-reply-to:references;\r\n"
        f"\tbh={digest[:43]}=;\r\n\tb={signature}\r\n"
    ).encode("ascii")


def _envelope_headers(message: EmailMessage, spec: MailSpec, rng: random.Random) -> None:
    date = BASE_DATE + timedelta(seconds=spec.index * 53)
    domain = spec.sender.split("@")[1]
    for hop in range(2):
        stamp = format_datetime(date + timedelta(seconds=2 - hop))
        message["Received"] = (
            f"from mail{hop}.{domain} (mail{hop}.{domain} [192.0.2.{rng.randint(1, 254)}]) by mx{hop}.example.com "
            f"with ESMTPS id {rng.getrandbits(48):012X} for <{SUPPORT_ADDRESS}>; {stamp}"
        )
    message["From"] = "placeholder@example.invalid"
    message["To"] = f"Bench Support <{SUPPORT_ADDRESS}>"
    message["Subject"] = "placeholder"
    message["Date"] = format_datetime(date)
    message["Message-ID"] = spec.message_id
    if spec.in_reply_to:
        message["In-Reply-To"] = spec.in_reply_to
    if spec.references:
        message["References"] = " ".join(spec.references)
    message["User-Agent"] = rng.choice(USER_AGENTS)


def _from_header(spec: MailSpec) -> str:
    """The display name RFC 2047 encoded in the mail's charset, as the client would write it."""
    name = spec.sender_name
    if name.isascii():
        quoted = f'"{name}"' if "'" in name else name
        return f"{quoted} <{spec.sender}>"
    charset = spec.charset if _encodable(name, spec.charset) else "utf-8"
    return f"{Header(name, charset).encode(linesep=chr(13) + chr(10))} <{spec.sender}>"


def _encode_words(value: str, charset: str) -> bytes:
    if value.isascii():
        return value.encode()
    charset = charset if _encodable(value, charset) else "utf-8"
    return Header(value, charset, header_name="Subject").encode(linesep="\r\n").encode("ascii")


def _set_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    prefix = name.lower() + b":"
    out = []
    skipping = False
    for line in lines:
        if line.lower().startswith(prefix):
            out.append(name + b": " + value)
            skipping = True
        elif skipping and line[:1] in (b" ", b"\t"):
            continue
        else:
            skipping = False
            out.append(line)
    return b"\r\n".join(out) + sep + body


def _encodable(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _usable_cte(cte: str, charset: str) -> str:
    return "quoted-printable" if cte == "8bit" and charset == "us-ascii" else cte


def _language(code: str) -> Language:
    return next(lang for lang, _ in LANGUAGES if lang.code == code)


def _body_text(spec: MailSpec, rng: random.Random) -> str:
    language = _language(spec.language)
    lines = [language.greeting, ""]
    size = 0
    target = spec.text_bytes * (0.5 if spec.is_reply else 0.85)
    while size < target:
        paragraph = " ".join(rng.choice(language.sentences) for _ in range(rng.randint(2, 5)))
        lines += [paragraph, ""]
        size += len(paragraph.encode()) + 2
    lines += [language.closing, spec.sender_name, "-- ", *SIGNATURE_LINES]
    if spec.is_reply:
        lines += ["", QUOTE_INTRO[language.code].format(date="2.11.2026", name=spec.sender_name)]
        while size < spec.text_bytes:
            quoted = "> " + rng.choice(language.sentences)
            lines.append(quoted)
            size += len(quoted.encode()) + 2
    return "\n".join(lines) + "\n"


def _html(text: str) -> str:
    import html

    paragraphs = "".join(
        f'<p style="margin:0 0 12px 0;font-family:Calibri,Arial,sans-serif;font-size:11pt">{html.escape(block)}</p>\n'
        for block in text.split("\n\n")
    )
    return f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>\n{paragraphs}</body></html>\n"


def _file_bytes(attachment: Attachment, rng: random.Random) -> bytes:
    payload = rng.randbytes(attachment.size)
    if attachment.content_type == "image/png":
        header = struct.pack(">IIBBBBB", 640, 480, 8, 2, 0, 0, 0)
        ihdr = struct.pack(">I", len(header)) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
        idat = struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
        return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + payload + b"\n%%EOF\n"


PARALLEL_FROM = 1000


def build_corpus(seed: int, count: int, stream: str = "c") -> list[Mail]:
    """`count` mails, in sending order.

    The plan is one seeded sequence; rendering a spec depends on nothing but the spec, so a large
    corpus is rendered in worker processes (spawned, so no thread of the caller is copied) and
    is byte for byte the one a single process renders.
    """
    specs = list(Planner(seed, stream).specs(count))
    workers = min(os.cpu_count() or 1, 8)
    if count < PARALLEL_FROM or workers < 2:
        return [Mail(spec, render(spec)) for spec in specs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        raws = pool.map(render, specs, chunksize=max(1, count // (workers * 8)))
        return [Mail(spec, raw) for spec, raw in zip(specs, raws, strict=True)]


def soak_stream(corpus: Sequence[Mail], seed: int, first_round: int = 1) -> Iterator[tuple[int, Mail]]:
    """The corpus again and again, each round with new Message-IDs and new customers' addresses.

    Yields (round, mail). Only header bytes change (`.c<n>@` -> `.s<round>c<n>@`), so a long
    soak costs the sender no rendering; replies still name their request of the same round.
    """
    marker = f"bench.{seed}.c"
    if not corpus:
        return
    for round_number in itertools.count(first_round):
        renamed = f"bench.{seed}.s{round_number}c"
        for mail in corpus:
            spec = dataclasses.replace(
                mail.spec,
                sender=_rename_address(mail.spec.sender, round_number),
                message_id=mail.spec.message_id.replace(marker, renamed),
            )
            yield round_number, Mail(spec, _rename(mail.raw, marker.encode(), renamed.encode(), round_number))


def _rename_address(address: str, round_number: int) -> str:
    return re.sub(r"\.c(\d+)@", rf".s{round_number}c\1@", address)


def _rename(raw: bytes, marker: bytes, renamed: bytes, round_number: int) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    head = head.replace(marker, renamed)
    head = re.sub(rb"\.c(\d+)@", b".s" + str(round_number).encode() + rb"c\1@", head)
    return head + sep + body


def describe(corpus: list[Mail]) -> dict[str, object]:
    """Counts, sizes and a digest that proves two runs used the same bytes."""
    sizes = sorted(len(mail.raw) for mail in corpus)
    digest = hashlib.sha256()
    for mail in corpus:
        digest.update(mail.raw)
    languages: dict[str, int] = {}
    for mail in corpus:
        languages[mail.spec.language] = languages.get(mail.spec.language, 0) + 1
    return {
        "mails": len(corpus),
        "requests": sum(not mail.spec.is_reply for mail in corpus),
        "replies": sum(mail.spec.is_reply for mail in corpus),
        "html": sum(mail.spec.html for mail in corpus),
        "with_attachments": sum(bool(mail.spec.attachments) for mail in corpus),
        "languages": languages,
        "bytes_total": sum(sizes),
        "size_min": sizes[0] if sizes else 0,
        "size_median": sizes[len(sizes) // 2] if sizes else 0,
        "size_max": sizes[-1] if sizes else 0,
        "over_100kb": sum(size > 100_000 for size in sizes),
        "sha256": digest.hexdigest(),
    }
