"""The customer's original inside a mail an agent forwarded, attached (message/rfc822) or inline (tier 1).

The original sender is read with the same strict mailbox parser as any From header; when it is
not a single trustworthy mailbox there is no original to open a ticket for.
"""

from __future__ import annotations

import base64
import email
import re
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32

from mailgate.domain.message import Address, ParsedMessage
from mailgate.mail.body import html_to_text
from mailgate.mail.headers import decode_header_value, parse_message_ids, parse_sender, sanitize_header_value, unfold
from mailgate.mail.limits import ParseLimits, prescan
from mailgate.mail.reply_text import header_block_end, header_label

# prescan bounds the part count already; this bounds the walk to the first attached message.
MAX_PARTS_WALKED = 1000
MAX_TEXT_CHARS = 1024 * 1024
# How far below a forward separator the header block may start (blank lines, a "From" label
# on its own line in some clients' HTML rendering).
_SEPARATOR_GAP = 3
# The forward's header block sits near the top of the agent's text; deeper is not searched, so a
# hostile body costs bounded work. A From value longer than a header line is no mailbox.
_MAX_SCANNED_LINES = 20_000
_MAX_LINE_CHARS = 998

_FORWARD_SEPARATOR = re.compile(
    r"""-{2,}\s*(?:forwarded\s+message|original\s+message|v[äa]litetty\s+viesti|alkuper[äa]inen\s+viesti
       | persi[ųu]stas\s+lai[šs]kas|originali\s+[žz]inut[ėe]|weitergeleitete\s+nachricht
       | urspr[üu]ngliche\s+nachricht|message\s+transf[ée]r[ée]|mensaje\s+reenviado)\s*-{2,}
     | (?:begin\s+forwarded\s+message|alkuper[äa]inen\s+viesti\s+alkaa
       | anfang\s+der\s+weitergeleiteten\s+nachricht)\s*:
     | _{10,}""",
    re.IGNORECASE | re.VERBOSE,
)
# Outlook's plain text writes links as "text<mailto:addr>" and older versions "Name [mailto:addr]".
_MAILTO_SUFFIX = re.compile(r"<mailto:[^<>\s]*>", re.IGNORECASE)
_MAILTO_BRACKETS = re.compile(r"\[mailto:([^\[\]\s]+)\]", re.IGNORECASE)
_NAME_AND_ADDRESS = re.compile(r"(.*?)\s*<([^<>\s]+)>")
_LABEL_VALUE = re.compile(r"[*>\s]*[^\W\d_]+\*?\s*:\*?\s*(.*)")


@dataclass(frozen=True, slots=True)
class ForwardedOriginal:
    """Who wrote the forwarded mail, its subject and text, and its Message-ID when known."""

    sender: Address
    subject: str
    text: str
    message_id: str | None = None


def find_forwarded_original(parsed: ParsedMessage, raw: bytes) -> ForwardedOriginal | None:
    """The forwarded original: the first attached message, else an inline forward in the body.

    None when there is neither, or when its sender is not one well-formed mailbox.
    """
    attached = _first_attached_message(raw)
    if attached is not None:
        return _from_attached(attached)
    text = parsed.text_body or (html_to_text(parsed.html_body) if parsed.html_body else "")
    return _from_inline(text)


# --- attached message/rfc822 ------------------------------------------------------------------


def _first_attached_message(raw: bytes) -> Message | None:
    """The message inside the first message/rfc822 part below the top level, walked without recursion."""
    try:
        tree = email.message_from_bytes(raw, policy=compat32)
    except Exception:  # mail the parser chokes on has already been kept by the caller
        return None
    stack = list(reversed(_children(tree)))
    walked = 0
    while stack and walked < MAX_PARTS_WALKED:
        part = stack.pop()
        walked += 1
        if part.get_content_type() == "message/rfc822":
            return _attached_message(part)
        stack.extend(reversed(_children(part)))
    return None


def _attached_message(part: Message) -> Message | None:
    inner = _children(part)
    if str(part.get("content-transfer-encoding", "")).strip().lower() != "base64":
        return inner[0] if inner else None
    # Some clients base64-encode the attached message (RFC 2046 forbids it); the parser then
    # reads the base64 text itself as a message without headers, so it is decoded here.
    encoded = inner[0].get_payload() if inner and not inner[0].is_multipart() else part.get_payload()
    if not isinstance(encoded, str):
        return None
    try:
        data = base64.b64decode(encoded.encode("ascii", "ignore"))
        # prescan never saw inside the base64, so the decoded message gets its own check.
        prescan(data, ParseLimits())
        return email.message_from_bytes(data, policy=compat32) if data.strip() else None
    except Exception:  # bad padding, over a limit, or unreadable: no original
        return None


def _children(part: Message) -> list[Message]:
    payload = part.get_payload() if part.is_multipart() else None
    return [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []


def _from_attached(message: Message) -> ForwardedOriginal | None:
    sender = parse_sender(_raw_values(message, "from"))
    if not sender.trusted or sender.address is None:
        return None
    subjects = _raw_values(message, "subject")
    subject = sanitize_header_value(decode_header_value(subjects[0])) if subjects else ""
    ids = parse_message_ids(" ".join(_raw_values(message, "message-id")[:1]))
    return ForwardedOriginal(sender.address, subject, _body_text(message), ids[0] if ids else None)


def _raw_values(message: Message, name: str) -> list[str]:
    """Unfolded raw values of a header; 8-bit bytes read as UTF-8 (RFC 6532), as parse.py does."""
    return [
        unfold(str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
        for key, value in message.raw_items()
        if key.strip().lower() == name
    ]


def _body_text(message: Message) -> str:
    """The first text/plain body part of the message, else its first HTML part as text."""
    plain: str | None = None
    html: str | None = None
    stack = [message]
    walked = 0
    while stack and walked < MAX_PARTS_WALKED and plain is None:
        part = stack.pop()
        walked += 1
        if part.is_multipart():
            # A message attached inside the original is its attachment, not its text.
            if part.get_content_type() != "message/rfc822":
                stack.extend(reversed(_children(part)))
        elif part.get_content_disposition() != "attachment":
            if part.get_content_type() == "text/plain":
                plain = _decoded(part)
            elif part.get_content_type() == "text/html" and html is None:
                html = _decoded(part)
    text = plain if plain is not None else html_to_text(html) if html is not None else ""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").strip()[:MAX_TEXT_CHARS]


def _decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):  # an unknown or malformed charset name
        return data.decode("utf-8", "replace")


# --- inline forward ---------------------------------------------------------------------------


def _from_inline(text: str) -> ForwardedOriginal | None:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _inline_header_start(lines)
    if start is None:
        return None
    end = header_block_end(lines, start)
    if end is None:
        return None
    fields = _inline_fields(lines[start:end])
    from_value = fields.get("from", "")
    sender = parse_sender([_mailbox_text(from_value)]) if len(from_value) <= _MAX_LINE_CHARS else None
    if sender is None or not sender.trusted or sender.address is None:
        return None
    body = "\n".join(_unquoted(lines[end:])).strip()[:MAX_TEXT_CHARS]
    return ForwardedOriginal(sender.address, sanitize_header_value(fields.get("subject", "")), body)


def _inline_header_start(lines: list[str]) -> int | None:
    """The first line of the forwarded header block: below a separator, or a bare Outlook block."""
    for index, line in enumerate(lines[:_MAX_SCANNED_LINES]):
        stripped = line.strip()
        if not stripped or len(stripped) > _MAX_LINE_CHARS:
            continue
        if _FORWARD_SEPARATOR.fullmatch(stripped):
            for below in range(index + 1, min(len(lines), index + 1 + _SEPARATOR_GAP)):
                if header_block_end(lines, below) is not None:
                    return below
        elif header_label(stripped) is not None and header_block_end(lines, index) is not None:
            return index
    return None


def _inline_fields(block: list[str]) -> dict[str, str]:
    """Canonical field name -> value; a line without a label continues the field above it."""
    fields: dict[str, str] = {}
    current: str | None = None
    for line in block:
        label = header_label(line)
        match = _LABEL_VALUE.match(line)
        if label is not None and match is not None:
            current = label
            fields.setdefault(label, match.group(1).strip())
        elif current is not None and current in fields:
            fields[current] = f"{fields[current]} {line.strip()}"
    return fields


def _mailbox_text(value: str) -> str:
    """A From value from a body as a header value: mailto decorations gone, the name quoted.

    Quoting the display name lets "Customer, Alice <alice@example.com>" (as Outlook writes it)
    parse as one mailbox; the strict parser still checks the address and a name hiding one.
    """
    value = _MAILTO_BRACKETS.sub(r"<\1>", _MAILTO_SUFFIX.sub("", value)).strip()
    match = _NAME_AND_ADDRESS.fullmatch(value)
    if match is None:
        return value
    name = match.group(1).strip().strip('"').replace("\\", "").replace('"', "")
    return f'"{name}" <{match.group(2)}>' if name else f"<{match.group(2)}>"


def _unquoted(lines: list[str]) -> list[str]:
    """The forwarded text; when every line of it is "> "-quoted, the quoting is taken off."""
    filled = [line for line in lines if line.strip()]
    if filled and all(line.lstrip().startswith(">") for line in filled):
        return [line.lstrip()[1:].removeprefix(" ") if line.strip() else "" for line in lines]
    return lines
