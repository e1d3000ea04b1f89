"""Decode, sanitise and strictly parse header values (stdlib only).

Who sent a mail is decided by the strict mailbox parser here, never by email.utils.parseaddr,
whose leniency lets one From header name two people (CVE-2023-27043).
"""

from __future__ import annotations

import re
import unicodedata
from email.header import decode_header

from mailgate.domain.message import Address, Sender

# Eight physical lines of RFC 5322's 998; longer values are junk or an attack.
MAX_HEADER_VALUE_CHARS = 998 * 8
MAX_DECODED_INPUT_CHARS = 4 * MAX_HEADER_VALUE_CHARS
MAX_MESSAGE_IDS = 100
MAX_MESSAGE_ID_CHARS = 998
MAX_ADDRESS_BYTES = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL_PART_BYTES = 64  # RFC 5321 section 4.5.3.1.1

# Bidi controls reorder what a reader sees (Trojan Source, CVE-2021-42574); line and
# paragraph separators and NEL act as line breaks in some renderers (header injection).
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_LINE_LIKE = "\t\r\n\x85\u2028\u2029"
_SANITIZE_TABLE: dict[int, str | None] = {
    **{code: None for code in range(0x20)},
    0x7F: None,
    **{code: None for code in range(0x80, 0xA0)},
    **{ord(char): None for char in _BIDI_CONTROLS},
    **{ord(char): " " for char in _LINE_LIKE},
}
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_WHITESPACE_RUN = re.compile(r"\s+")
_FOLD = re.compile(r"\r\n(?=[ \t])|\r(?=[ \t])|\n(?=[ \t])")
_BRACKETED_ID = re.compile(r"<([^<>]*)>")
_ATOM = re.compile(r'[^\s"(),.:;<>@\[\]\\\x00-\x1f\x7f]+')
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*+)"', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_COMMENT_CHAR = re.compile(r"[()\\]")
_LIST_SPECIAL = re.compile(r'[",()<>\\]')
_DOT_ATOM_TEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_ASCII_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ADDRESS_LIKE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*")

Token = tuple[str, str]


def sanitize_header_value(value: str, max_len: int = MAX_HEADER_VALUE_CHARS) -> str:
    """Drop controls and bidi marks, turn line breaks and tabs into spaces, collapse spaces."""
    text = _SURROGATES.sub("\ufffd", value[: max_len * 4]).translate(_SANITIZE_TABLE)
    return _WHITESPACE_RUN.sub(" ", text).strip()[:max_len].rstrip()


def unfold(value: str) -> str:
    """RFC 5322 unfolding: drop the line break before folding whitespace, keep the space."""
    return _FOLD.sub("", value)


def decode_header_value(raw: str) -> str:
    """Decode RFC 2047 encoded words; on an unknown charset or broken word return `raw`."""
    # decode_header is quadratic in the number of encoded words (250 KB of them take over a
    # second) and callers keep at most MAX_HEADER_VALUE_CHARS, so longer input is cut first.
    text = unfold(raw[:MAX_DECODED_INPUT_CHARS])
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except Exception:  # decode_header raises several undocumented types on junk
        return text
    pieces: list[str] = []
    for data, charset in chunks:
        if isinstance(data, str):
            pieces.append(data)
        elif charset is None:
            pieces.append(_plain_chunk(data))
        else:
            decoded = _encoded_chunk(data, charset)
            if decoded is None:
                return text
            pieces.append(decoded)
    # The chunks keep their own surrounding spaces, so joining them as they are keeps
    # "=?utf-8?q?u=C5=BEsakym=C4=85?= 68613" as "užsakymą 68613" (make_header can lose it).
    return "".join(pieces)


def _plain_chunk(data: bytes) -> str:
    # decode_header hands text outside encoded words back as raw-unicode-escape bytes.
    try:
        return data.decode("raw-unicode-escape")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _encoded_chunk(data: bytes, charset: str) -> str | None:
    if not data:
        return None  # a word whose payload did not decode (broken base64)
    codec = charset.split("*", 1)[0]  # RFC 2231 section 5 language suffix: utf-8*fi
    try:
        return data.decode(codec, "replace")
    except (LookupError, ValueError):
        return None


def parse_message_ids(value: str | None) -> tuple[str, ...]:
    """Message-IDs from <...> (brackets and whitespace removed, deduplicated, at most 100)."""
    if not value:
        return ()
    text = sanitize_header_value(value, max_len=len(value))
    candidates = _BRACKETED_ID.findall(text)
    if not candidates and "<" not in text:
        # Some mailers omit the brackets: take bare tokens that look like id-left@id-right.
        candidates = [token for token in text.split() if "@" in token]
    ids: list[str] = []
    for candidate in candidates:
        message_id = "".join(candidate.split())
        if message_id and len(message_id) <= MAX_MESSAGE_ID_CHARS and message_id not in ids:
            ids.append(message_id)
            if len(ids) == MAX_MESSAGE_IDS:
                break
    return tuple(ids)


def parse_sender(from_values: list[str]) -> Sender:
    """The author per the strict rules: exactly one From header holding exactly one mailbox."""
    if not from_values:
        return Sender(None, "no From header")
    if len(from_values) > 1:
        return Sender(None, f"{len(from_values)} From headers")
    segments = [s for s in split_address_list(unfold(from_values[0])) if s.strip()]
    if len(segments) > 1:
        return Sender(None, "several mailboxes in From")
    tokens = tokenize_address(segments[0]) if segments else None
    mailbox = parse_mailbox(tokens) if tokens else None
    if mailbox is None:
        return Sender(None, "malformed From address")
    if hides_other_address(mailbox.name, mailbox.email):
        return Sender(mailbox, "address hidden in display name")
    return Sender(mailbox)


def hides_other_address(display_name: str, address: str) -> bool:
    """True when the display name shows an addr-spec other than the real one.

    NFKC first, so that a fullwidth or small commercial at (U+FF20, U+FE6B) counts as "@".
    """
    shown = unicodedata.normalize("NFKC", display_name).lower()
    return any(found != address for found in _ADDRESS_LIKE.findall(shown))


def parse_address_list(values: list[str], limit: int) -> tuple[Address, ...]:
    """Mailboxes of To/Cc/Reply-To style headers; lenient, deduplicated, never raises."""
    found: list[Address] = []
    seen: set[str] = set()
    for value in values:
        for segment in split_address_list(unfold(value)):
            if len(found) >= limit:
                return tuple(found)
            try:
                address = _lenient_mailbox(segment)
            except Exception:  # one hostile entry must not cost the rest of the list
                address = None
            if address is not None and address.email not in seen:
                seen.add(address.email)
                found.append(address)
    return tuple(found)


def split_address_list(value: str) -> list[str]:
    """Split at commas outside quoted strings, comments and angle brackets."""
    segments: list[str] = []
    start = pos = 0
    quoted, comment_depth, angle_depth = False, 0, 0
    while (match := _LIST_SPECIAL.search(value, pos)) is not None:
        char, pos = match.group(), match.end()
        if char == "\\":
            pos += 1
        elif quoted:
            quoted = char != '"'
        elif comment_depth:
            comment_depth += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            comment_depth = 1
        elif char in "<>":
            angle_depth = max(0, angle_depth + (1 if char == "<" else -1))
        elif char == "," and angle_depth == 0:
            segments.append(value[start : pos - 1])
            start = pos
    segments.append(value[start:])
    return segments


def tokenize_address(text: str) -> list[Token] | None:
    """RFC 5322 lexical tokens: atoms, quoted strings, specials and whitespace.

    Comments become whitespace. Returns None on an unterminated quote or comment, a stray
    ")" or a control character; CVE-2023-27043 hides a second address behind exactly those.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char.isspace() or char == "(":
            end = _skip_comment(text, pos) if char == "(" else pos + 1
            if end is None:
                return None
            if not tokens or tokens[-1][0] != "ws":
                tokens.append(("ws", " "))
            pos = end
        elif char == '"':
            quoted = _QUOTED_STRING.match(text, pos)
            if quoted is None:
                return None
            tokens.append(("qstr", _QUOTED_PAIR.sub(r"\1", quoted.group(1))))
            pos = quoted.end()
        elif char in "<>@,.:;[]\\":
            tokens.append((char, char))
            pos += 1
        elif (atom := _ATOM.match(text, pos)) is not None:
            tokens.append(("atom", atom.group()))
            pos = atom.end()
        else:
            return None  # ")" outside a comment, or a control character
    return tokens


def _skip_comment(text: str, pos: int) -> int | None:
    """End of the (possibly nested) comment opening at `pos`, or None if it never closes."""
    depth = 0
    while (match := _COMMENT_CHAR.search(text, pos)) is not None:
        char, pos = match.group(), match.end()
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos
    return None


def parse_mailbox(tokens: list[Token]) -> Address | None:
    """One mailbox, `phrase <addr-spec>` or a bare addr-spec, strictly; None if not exactly that."""
    tokens = _trim(tokens)
    kinds = [kind for kind, _ in tokens]
    if "<" not in kinds and ">" not in kinds:
        email = parse_addr_spec(tokens)
        return None if email is None else Address(email)
    if kinds.count("<") != 1 or kinds.count(">") != 1:
        return None
    opening, closing = kinds.index("<"), kinds.index(">")
    if closing < opening or any(kind != "ws" for kind in kinds[closing + 1 :]):
        return None
    phrase = tokens[:opening]
    if any(kind not in ("atom", "qstr", "ws", ".") for kind, _ in phrase):
        return None
    email = parse_addr_spec(_trim(tokens[opening + 1 : closing]))
    if email is None:
        return None
    return Address(email, sanitize_header_value(decode_header_value(_phrase_text(phrase))))


def _phrase_text(phrase: list[Token]) -> str:
    return "".join(text for _, text in _trim(phrase))


def _trim(tokens: list[Token]) -> list[Token]:
    start, end = 0, len(tokens)
    while start < end and tokens[start][0] == "ws":
        start += 1
    while end > start and tokens[end - 1][0] == "ws":
        end -= 1
    return tokens[start:end]


def parse_addr_spec(tokens: list[Token]) -> str | None:
    """local-part "@" domain without inner whitespace, lower-cased; None if invalid."""
    kinds = [kind for kind, _ in tokens]
    if kinds.count("@") != 1 or "ws" in kinds:
        return None
    at = kinds.index("@")
    local, domain = _local_part(tokens[:at]), _domain(tokens[at + 1 :])
    if local is None or domain is None:
        return None
    address = f"{local}@{domain}".lower()
    if len(local.encode()) > MAX_LOCAL_PART_BYTES or len(address.encode()) > MAX_ADDRESS_BYTES:
        return None
    return address if address.isprintable() else None


def _dot_atom(tokens: list[Token]) -> str | None:
    kinds = [kind for kind, _ in tokens]
    expected = ["atom", "."] * (len(kinds) // 2) + ["atom"]
    if not kinds or kinds != expected:
        return None
    return "".join(text for _, text in tokens)


def _local_part(tokens: list[Token]) -> str | None:
    if len(tokens) == 1 and tokens[0][0] == "qstr":
        content = tokens[0][1]
        # A quoted "@" makes "alice@corp.example"@evil.example read as alice's address.
        if not content or "@" in content or not content.isprintable():
            return None
        if _DOT_ATOM_TEXT.fullmatch(content):
            return content  # RFC 5321 4.1.2: "a.b"@x and a.b@x are the same mailbox
        return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _dot_atom(tokens)


def _domain(tokens: list[Token]) -> str | None:
    text = _dot_atom(tokens)
    if text is None:
        return None
    labels = text.lower().split(".")
    if not all(_valid_label(label) for label in labels):
        return None
    return ".".join(labels)


def _valid_label(label: str) -> bool:
    if label.isascii():
        return _ASCII_LABEL.fullmatch(label) is not None
    # An IDNA U-label: letters, digits and hyphens that the idna codec accepts (RFC 6532).
    if label.startswith("-") or label.endswith("-"):
        return False
    if not all(char.isalnum() or char == "-" for char in label):
        return False
    try:
        return 0 < len(label.encode("idna")) <= 63
    except UnicodeError:
        return False


def _lenient_mailbox(segment: str) -> Address | None:
    tokens = tokenize_address(segment)
    if tokens is not None:
        mailbox = parse_mailbox(_strip_group_syntax(tokens))
        if mailbox is not None:
            return mailbox
    # Fall back to the last <addr-spec> in the entry, still validated strictly.
    for inner in reversed(_BRACKETED_ID.findall(segment)):
        inner_tokens = tokenize_address(inner)
        email = parse_addr_spec(_trim(inner_tokens)) if inner_tokens else None
        if email is not None:
            return Address(email)
    return None


def _strip_group_syntax(tokens: list[Token]) -> list[Token]:
    """Drop an RFC 5322 group's "name:" prefix and ";" suffix around a mailbox."""
    kinds = [kind for kind, _ in tokens]
    if ":" in kinds and ("<" not in kinds or kinds.index(":") < kinds.index("<")):
        tokens = tokens[kinds.index(":") + 1 :]
    tokens = _trim(tokens)
    while tokens and tokens[-1][0] == ";":
        tokens = _trim(tokens[:-1])
    return tokens
