"""Turn raw inbound bytes into a ParsedMessage, refusing hostile mail before parsing it.

Headers are decoded with the standard library from the raw header block; bodies come from
mail-parser; attachments are read from the MIME tree mail-parser built. Nothing here touches
the file system or the network.
"""

from __future__ import annotations

import codecs
import email
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

import mailparser
from mailparser.exceptions import MailParserRecursionError

from mailgate.domain.message import Attachment, ParsedMessage, Sender
from mailgate.errors import MessageRejected, PermanentFailure
from mailgate.mail.attachments import guess_extension, safe_filename, sha256_hex, unpack_tnef
from mailgate.mail.body import html_is_tractable, html_to_text, sanitize_html
from mailgate.mail.headers import (
    decode_header_value,
    parse_address_list,
    parse_message_ids,
    parse_sender,
    sanitize_header_value,
    unfold,
)
from mailgate.mail.limits import ParseLimits, header_block_end, prescan

SYNTHETIC_ID_DOMAIN = "mailgate.invalid"
INTERNAL_HEADER_PREFIX = "x-mailgate-"
MAX_DEFECTS = 50
DEFAULT_LIMITS = ParseLimits()

_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_CAMEL_WORD = re.compile(r"[A-Z][a-z]+|[A-Z]+(?![a-z])|[a-z]+")
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_MIME_METADATA = ("content-type", "content-disposition", "content-id")
# One header field with its continuation lines; group 1 is the name.
_HEADER_FIELD = re.compile(rb"([^ \t\r\n:][^\r\n:]*+):[^\r\n]*+(?:(?:\r\n|\r|\n)[ \t][^\r\n]*+)*+(?:\r\n|\r|\n)?")


@dataclass
class _Defects:
    """Short, deduplicated, capped notes on what was wrong with a message."""

    items: list[str] = field(default_factory=list)

    def add(self, note: str) -> None:
        if note not in self.items and len(self.items) < MAX_DEFECTS:
            self.items.append(note)


@dataclass
class _MimeResult:
    tree: Message
    plain: list[str]
    html: list[str]


def parse_message(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse one message; MessageRejected over a limit, PermanentFailure if unparseable."""
    prescan(raw, limits)
    defects = _Defects()
    fields = _header_fields(raw, defects)
    headers = _visible_headers(fields)
    mime = _parse_mime(raw, defects)
    _note_mime_defects(mime.tree, defects)
    sender = parse_sender(_values(fields, "from"))
    _note_sender(sender, defects)
    message_id, synthetic = _message_id(raw, _values(fields, "message-id"), defects)
    text_body, html_body = _bodies(mime, defects)
    return ParsedMessage(
        message_id=message_id,
        message_id_synthetic=synthetic,
        subject=_first(headers, "subject", defects),
        sender=sender,
        to=parse_address_list(_values(fields, "to"), limits.max_addresses),
        cc=parse_address_list(_values(fields, "cc"), limits.max_addresses),
        reply_to=parse_address_list(_values(fields, "reply-to"), limits.max_addresses),
        in_reply_to=parse_message_ids(" ".join(_values(fields, "in-reply-to"))),
        references=parse_message_ids(" ".join(_values(fields, "references"))),
        date=_date(_values(fields, "date"), defects),
        text_body=text_body,
        html_body=html_body,
        attachments=_attachments(mime.tree, limits, defects),
        language=_language(_values(fields, "content-language")),
        headers=headers,
        defects=tuple(defects.items),
    )


@dataclass(frozen=True)
class ThreadHeaders:
    """The headers that place a message in a thread, read as parse_message reads them."""

    message_id: str | None  # None when it has none usable (parse_message makes one up)
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str


def thread_headers(head: bytes, *, whole: bool) -> ThreadHeaders | None:
    """The thread headers from the start of a message's raw bytes (`whole`: all of them);
    None when its header block may go on past `head` (a cut head must show the blank line)."""
    end = header_block_end(head)
    if not whole and head[end : end + 1] not in (b"\r", b"\n"):
        return None
    fields = _header_fields(head, _Defects())
    ids = parse_message_ids(" ".join(_values(fields, "message-id")[:1]))
    subjects = _values(fields, "subject")
    return ThreadHeaders(
        message_id=ids[0] if ids else None,
        in_reply_to=parse_message_ids(" ".join(_values(fields, "in-reply-to"))),
        references=parse_message_ids(" ".join(_values(fields, "references"))),
        subject=sanitize_header_value(decode_header_value(subjects[0])) if subjects else "",
    )


# --- headers ----------------------------------------------------------------------------------


def _header_fields(raw: bytes, defects: _Defects) -> list[tuple[str, str]]:
    """(lower-case name, unfolded raw value) of every top-level header, in order.

    Header bytes outside ASCII are read as UTF-8 (RFC 6532); encoded words stay encoded here,
    so address parsing sees the structure before any decoding.
    """
    block = raw[: header_block_end(raw)]
    message = BytesHeaderParser(policy=compat32).parsebytes(block)
    for defect in message.defects:
        defects.add(_defect_name(defect))
    fields = []
    for name, value in message.raw_items():
        text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        fields.append((name.strip().lower(), unfold(text).rstrip("\r\n")))
    return fields


def _visible_headers(fields: list[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    collected: dict[str, list[str]] = {}
    for name, value in fields:
        # X-Mailgate-* carry internal state (loop tokens and the like); a sender must never
        # be able to set them, so inbound copies are dropped.
        if not name or name.startswith(INTERNAL_HEADER_PREFIX):
            continue
        collected.setdefault(name, []).append(sanitize_header_value(decode_header_value(value)))
    return {name: tuple(values) for name, values in collected.items()}


def _values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for field_name, value in fields if field_name == name]


def _first(headers: dict[str, tuple[str, ...]], name: str, defects: _Defects) -> str:
    values = headers.get(name, ())
    if len(values) > 1:
        defects.add(f"multiple {name.title()} headers")
    return values[0] if values else ""


def _note_sender(sender: Sender, defects: _Defects) -> None:
    if sender.problem == "no From header":
        defects.add("missing From")
    elif sender.problem is not None and sender.problem.endswith("From headers"):
        defects.add("multiple From headers")
    elif sender.problem is not None:
        defects.add(sender.problem)


def _message_id(raw: bytes, values: list[str], defects: _Defects) -> tuple[str, bool]:
    """The first Message-ID, or sha256(raw)@mailgate.invalid so redelivered bytes dedupe."""
    if len(values) > 1:
        defects.add("multiple Message-ID headers")
    ids = parse_message_ids(values[0]) if values else ()
    if ids:
        return ids[0], False
    defects.add("unusable Message-ID" if values else "missing Message-ID")
    return f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}", True


def _date(values: list[str], defects: _Defects) -> datetime | None:
    if not values:
        return None
    try:
        date = parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("unparseable Date")
        return None
    # RFC 5322 "-0000" means UTC with the local zone unknown; the stdlib returns it naive.
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)


def _language(values: list[str]) -> str | None:
    if not values:
        return None
    tag = values[0].split(",", 1)[0].strip()
    return tag.lower() if _LANGUAGE_TAG.fullmatch(tag) else None


# --- MIME -------------------------------------------------------------------------------------


def _mime_only(raw: bytes) -> bytes:
    """The message with only its MIME header fields at the top, the body untouched.

    mail-parser is here for bodies and attachments; the other top-level headers are read
    above. Sparing it those avoids its costly corners (it decodes each header twice, and
    decode_header is quadratic in encoded words) and keeps its quirks out of identity.
    """
    end = header_block_end(raw)
    kept = [field.group() for field in _HEADER_FIELD.finditer(raw, 0, end) if _is_mime_field(field.group(1))]
    return b"".join(kept) + raw[end:]


def _is_mime_field(name: bytes) -> bool:
    name = name.strip().lower()
    return name.startswith(b"content-") or name == b"mime-version"


def _parse_mime(raw: bytes, defects: _Defects) -> _MimeResult:
    raw = _mime_only(raw)
    try:
        parsed = mailparser.parse_from_bytes(raw)
        return _MimeResult(parsed.message, list(parsed.text_plain), list(parsed.text_html))
    except (RecursionError, MemoryError, MailParserRecursionError) as exc:
        raise PermanentFailure(f"cannot parse MIME structure: {_short_reason(exc)}") from exc
    except Exception as exc:
        # mail-parser has crashed on mail the email package reads fine (an epilogue after a
        # message/* top level, for one); the stdlib gets a second chance.
        defects.add(f"mail-parser failed ({type(exc).__name__}); read with the email package")
        return _parse_mime_stdlib(raw)


def _parse_mime_stdlib(raw: bytes) -> _MimeResult:
    try:
        tree = email.message_from_bytes(raw, policy=compat32)
        plain: list[str] = []
        html: list[str] = []
        for part in _walk(tree):
            if not part.is_multipart() and _is_body_text(part):
                (html if part.get_content_subtype() == "html" else plain).append(_part_text(part))
    except Exception as exc:  # RecursionError and MemoryError included: the mail is unreadable
        raise PermanentFailure(f"cannot parse MIME structure: {_short_reason(exc)}") from exc
    return _MimeResult(tree, [text for text in plain if text], [text for text in html if text])


def _short_reason(exc: BaseException) -> str:
    detail = sanitize_header_value(str(exc), 120)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _walk(tree: Message) -> list[Message]:
    """Every part, depth first, without recursion (prescan bounds the count)."""
    found: list[Message] = []
    stack = [tree]
    while stack:
        part = stack.pop()
        found.append(part)
        stack.extend(reversed(_children(part)))
    return found


def _children(part: Message) -> list[Message]:
    payload = part.get_payload() if part.is_multipart() else None
    return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []


def _note_mime_defects(tree: Message, defects: _Defects) -> None:
    for part in _walk(tree):
        for defect in part.defects:
            defects.add(_defect_name(defect))
        if part.get_content_maintype() == "text" and not part.is_multipart():
            charset = _charset(part)
            if charset and not _known_charset(charset):
                defects.add(f"unknown charset {sanitize_header_value(charset, 40)}")


def _defect_name(defect: object) -> str:
    """A stdlib defect as words: CloseBoundaryNotFoundDefect -> "MIME: close boundary not found"."""
    name = type(defect).__name__.removesuffix("Defect")
    return "MIME: " + " ".join(word.lower() for word in _CAMEL_WORD.findall(name))


def _charset(part: Message) -> str | None:
    try:
        charset = _metadata(part).get_content_charset()
    except Exception:  # a malformed RFC 2231 charset parameter
        return None
    return charset if isinstance(charset, str) else None


def _known_charset(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return False
    return True


# --- bodies -----------------------------------------------------------------------------------


def _bodies(mime: _MimeResult, defects: _Defects) -> tuple[str, str | None]:
    html = "\n".join(mime.html)
    if html and not html_is_tractable(html):
        defects.add("HTML body too large or too deeply nested to render")
    plain = "\n\n".join(_clean_body(text) for text in mime.plain if text.strip())
    text = plain if plain else _clean_body(html_to_text(html)) if html else ""
    sanitized = sanitize_html(html).strip() if html else ""
    return text, sanitized or None


def _clean_body(text: str) -> str:
    """Normalise line ends and drop NUL and lone surrogates, which storage cannot hold."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8").strip("\n")


def _part_text(part: Message) -> str:
    """A text part's payload in its charset; unknown charsets decode as UTF-8 with U+FFFD."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = _charset(part) or "utf-8"
    try:
        return data.decode(charset if _known_charset(charset) else "utf-8", "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


# --- attachments ------------------------------------------------------------------------------


def _metadata(part: Message) -> Message:
    """The part's MIME headers with raw 8-bit bytes read as UTF-8 (RFC 6532).

    compat32 turns such bytes into U+FFFD one byte at a time, which garbles UTF-8 file names.
    """
    view = Message()
    view.set_default_type(part.get_default_type())
    for name, value in part.raw_items():
        if name.strip().lower() in _MIME_METADATA:
            view[name] = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return view


def _declared_filename(meta: Message) -> str | None:
    try:
        name = meta.get_filename()
    except Exception:  # malformed RFC 2231 continuations raise inside the stdlib
        return None
    # Outlook and others put RFC 2047 encoded words in the parameter, against RFC 2047 5.
    return decode_header_value(name) if isinstance(name, str) and name.strip() else None


def _is_body_text(part: Message) -> bool:
    meta = _metadata(part)
    return (
        meta.get_content_type() in ("text/plain", "text/html")
        and _declared_filename(meta) is None
        and meta.get_content_disposition() != "attachment"
    )


def _attachment_parts(tree: Message) -> list[Message]:
    """Leaf parts that are not body text, and attached messages as one opaque part each."""
    found: list[Message] = []
    stack = [tree]
    while stack:
        part = stack.pop()
        if part.is_multipart():
            meta = _metadata(part)
            attached = meta.get_content_disposition() == "attachment" or _declared_filename(meta)
            if part.get_content_maintype() == "message" and attached:
                found.append(part)
            else:
                stack.extend(reversed(_children(part)))
        elif not _is_body_text(part):
            found.append(part)
    return found


def _attachments(tree: Message, limits: ParseLimits, defects: _Defects) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for part in _attachment_parts(tree):
        for attachment in _expand_part(part, len(found) + 1, limits, defects):
            found.append(attachment)
            if len(found) > limits.max_attachments:
                raise MessageRejected(f"more than {limits.max_attachments} attachments")
    return tuple(found)


def _expand_part(part: Message, number: int, limits: ParseLimits, defects: _Defects) -> list[Attachment]:
    """One attachment for the part, or the files inside it when it is Outlook TNEF."""
    meta = _metadata(part)
    content_type = _clean_media_type(meta.get_content_type())
    name = _declared_filename(meta)
    data = _part_bytes(part, defects)
    if content_type in _TNEF_TYPES or (name or "").strip().lower() == "winmail.dat":
        unpacked = unpack_tnef(data, limits)
        if unpacked:
            return [
                _attachment(inner_name, _clean_media_type(inner_type), inner_data, number + index)
                for index, (inner_name, inner_type, inner_data) in enumerate(unpacked)
            ]
        defects.add("winmail.dat kept as it is (not unpackable)")
    disposition = meta.get_content_disposition()
    content_id = _content_id(meta)
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return [_attachment(name, content_type, data, number, content_id, inline)]


def _attachment(
    name: str | None,
    content_type: str,
    data: bytes,
    number: int,
    content_id: str | None = None,
    inline: bool = False,
) -> Attachment:
    filename = safe_filename(name, f"attachment-{number}{guess_extension(content_type)}")
    return Attachment(filename, content_type, data, sha256_hex(data), content_id, inline)


def _part_bytes(part: Message, defects: _Defects) -> bytes:
    """The part's content with its transfer encoding undone; an attached message as bytes."""
    try:
        if part.is_multipart():
            return b"".join(message.as_bytes() for message in _children(part))
        data = part.get_payload(decode=True)
    except Exception as exc:  # re-serialising a defective embedded message can fail
        defects.add(f"attachment content unreadable ({type(exc).__name__})")
        return b""
    return data if isinstance(data, bytes) else b""


def _clean_media_type(content_type: str) -> str:
    media_type = sanitize_header_value(content_type, 255).lower()
    return media_type if _MEDIA_TYPE.fullmatch(media_type) else "application/octet-stream"


def _content_id(meta: Message) -> str | None:
    value = meta.get("content-id")
    if value is None:
        return None
    content_id = "".join(sanitize_header_value(str(value), 998).split()).strip("<>")
    return content_id or None
