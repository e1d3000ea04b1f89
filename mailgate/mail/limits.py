"""Size and structure limits for inbound mail, checked before any MIME parser runs.

`prescan` walks the raw bytes forward once, without the email package, and refuses mail whose
header block, address count, line length or MIME structure would make that package recurse,
loop or go quadratic.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from mailgate.errors import MessageRejected

# RFC 2046 caps boundaries at 70 characters; the stdlib accepts any length, and every open
# boundary becomes one alternative of the delimiter search, so absurd ones are refused.
MAX_BOUNDARY_BYTES = 1000


@dataclass(frozen=True)
class ParseLimits:
    """Upper bounds an inbound message must respect to be parsed at all.

    Two bounds go beyond the classic ones. `max_mime_param_work` bounds the email package's
    parameter parser, which costs about (semicolons x length) per Content-Type or
    Content-Disposition value and runs several times per part; normal mail spends well under
    1% of it. `max_lines` bounds the feedparser's per-line Python work: 30 MB of one-byte
    lines take it over 8 s, while a 30 MB base64 attachment has about 400,000 lines.
    """

    max_header_bytes: int = 256 * 1024
    max_header_fields: int = 1000
    max_addresses: int = 1000
    max_mime_depth: int = 50
    max_mime_parts: int = 1000
    max_line_bytes: int = 1024 * 1024
    max_attachments: int = 250
    max_mime_param_work: int = 8_000_000
    max_lines: int = 1_000_000


# One header line as the stdlib feedparser recognises it (its headerRE), lines ending in CRLF,
# CR or LF. Possessive quantifiers keep the match linear on hostile input.
_HEADER_LINES = re.compile(rb"(?:(?:From |[\x21-\x39\x3b-\x7e]*+:|[ \t])[^\r\n]*+(?:\r\n|\r|\n|\Z))*+")
# The patterns below run on header blocks normalised by _lines_block: LF line ends and a
# leading LF, so each starts with a literal the regex engine can skip to quickly.
_FIELD_START = re.compile(rb"\n[^ \t\n]")
_FOLDED_VALUE = rb":([^\n]*+(?:\n[ \t][^\n]*+)*+)"
_CONTENT_TYPE = re.compile(rb"\ncontent-type" + _FOLDED_VALUE, re.I)
_PARAM_HEADER = re.compile(rb"\ncontent-(?:type|disposition)" + _FOLDED_VALUE, re.I)
_ADDRESS_HEADER = re.compile(
    rb"\n(?:resent-)?(?:from|to|cc|bcc|reply-to|sender|delivered-to)[ \t]*+" + _FOLDED_VALUE, re.I
)
# A quoted string, or an unterminated one running to the end: consuming it whole keeps the
# scan linear where restarting at every later quote would be quadratic.
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\Z)', re.S)
# A line break followed by an empty line; searched from a line start, the atomic group takes a
# whole CRLF so that its CR is never mistaken for a line of its own.
_BLANK_LINE_AFTER = re.compile(rb"(?>\r\n|\r|\n)(?=[\r\n])")
_RFC2231_NAME = re.compile(r"^(?P<name>\w+)\*((?P<num>[0-9]+)\*?)?$", re.ASCII)
# str.strip() whitespace among the characters a surrogate-escaped ASCII text can hold.
_STR_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"


def prescan(raw: bytes, limits: ParseLimits) -> None:
    """Raise MessageRejected when `raw` exceeds a limit; cost is linear in len(raw)."""
    header_end = header_block_end(raw)
    block = _lines_block(raw, 0, header_end)
    # Addresses first: when a huge address list is what makes the header block too big, the
    # reason should say so.
    addresses = count_addresses(block)
    if addresses > limits.max_addresses:
        raise MessageRejected(f"{addresses} addresses exceed the limit of {limits.max_addresses}")
    if header_end > limits.max_header_bytes:
        raise MessageRejected(f"header block of {header_end} bytes exceeds the limit of {limits.max_header_bytes}")
    fields = len(_FIELD_START.findall(block))
    if fields > limits.max_header_fields:
        raise MessageRejected(f"{fields} header fields exceed the limit of {limits.max_header_fields}")
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    if lines > limits.max_lines:
        raise MessageRejected(f"{lines} lines exceed the limit of {limits.max_lines}")
    overlong = overlong_line(raw, limits.max_line_bytes)
    if overlong is not None:
        raise MessageRejected(f"line of {overlong} bytes exceeds the limit of {limits.max_line_bytes}")
    _MimeScan(raw, limits).scan_message(0, len(raw), reparse_epilogue=True)


def header_block_end(raw: bytes) -> int:
    """Offset where the top-level header lines end, exactly where the stdlib stops reading."""
    match = _HEADER_LINES.match(raw)
    return match.end() if match else 0


def count_addresses(header_block: bytes) -> int:
    """Upper bound of the mailboxes in the address headers: commas or @ outside quotes.

    `header_block` is normalised by _lines_block.
    """
    total = 0
    for match in _ADDRESS_HEADER.finditer(header_block):
        value = _QUOTED.sub(b"", match.group(1))
        total += max(value.count(b",") + 1, value.count(b"@"))
    return total


def _lines_block(raw: bytes, start: int, end: int) -> bytes:
    """A copy of raw[start:end] with LF line ends and a leading LF (see the patterns above)."""
    return b"\n" + raw[start:end].replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def overlong_line(raw: bytes, limit: int) -> int | None:
    """Length of a line longer than `limit` bytes (CR, LF and CRLF all end lines), or None.

    Such a line covers a whole aligned block of limit // 2 + 1 bytes, so only blocks without
    a line break get a closer look, within limit + 1 bytes either side; every search runs in
    C, with no per-line Python work.
    """
    block = limit // 2 + 1
    for block_start in range(0, len(raw) - block + 1, block):
        block_end = block_start + block
        if _first_break(raw, block_start, block_end) < block_end:
            continue
        start = _after_last_break(raw, max(0, block_start - limit - 1), block_start)
        if _first_break(raw, block_end, block_end + limit + 1) - start > limit:
            return _first_break(raw, block_end, len(raw)) - _after_last_break(raw, 0, block_start)
    return None


def _first_break(raw: bytes, start: int, end: int) -> int:
    """Offset of the first CR or LF in raw[start:end], else min(end, len(raw))."""
    found = [at for at in (raw.find(b"\n", start, end), raw.find(b"\r", start, end)) if at >= 0]
    return min(found, default=min(end, len(raw)))


def _after_last_break(raw: bytes, start: int, end: int) -> int:
    """Offset just after the last CR or LF in raw[start:end], else `start`."""
    last = max(raw.rfind(b"\n", start, end), raw.rfind(b"\r", start, end))
    return last + 1 if last >= 0 else start


# A line that starts with "--" (after CR or LF, as the feedparser reads lines): a delimiter
# candidate. The literal comes first so that the engine skips to candidates quickly.
_DASH_LINE = re.compile(rb"--(?<=[\r\n]--)([^\r\n]*+)")


@dataclass(frozen=True)
class _Delimiter:
    start: int
    end: int
    boundary: bytes
    closing: bool


class _Delimiters:
    """Finds delimiter lines of the open boundaries: "--", a boundary, "--" when it closes,
    spaces or tabs, then the line's end (the feedparser's boundaryre).

    Real mail has few lines starting with "--" besides its delimiters, so those lines are found
    with one fixed pattern and compared with the boundaries: no pattern is built per message
    (the regular-expression compiler costs about a millisecond per boundary). Past a few
    lines that are no delimiter, over all searches (hostile mail has millions), one pattern of the open
    boundaries searches the rest in C.
    """

    COMPARED_LINES = 32

    def __init__(self, boundaries: frozenset[bytes]) -> None:
        self.boundaries = boundaries
        self._pattern: re.Pattern[bytes] | None = None
        self._compared = 0  # lines compared so far, over all searches

    def search(self, raw: bytes, pos: int, end: int) -> _Delimiter | None:
        if self._pattern is None:
            for line in _DASH_LINE.finditer(raw, pos, end):
                text = line.group(1).rstrip(b" \t")
                if text in self.boundaries:
                    return _Delimiter(line.start(), line.end(), text, closing=False)
                if text.endswith(b"--") and text[:-2] in self.boundaries:
                    return _Delimiter(line.start(), line.end(), text[:-2], closing=True)
                self._compared += 1
                if self._compared >= self.COMPARED_LINES:
                    pos = line.end()
                    break
            else:
                return None
        match = self._compiled().search(raw, pos, end)
        if match is None:
            return None
        return _Delimiter(match.start(), match.end(), match.group(1), closing=match.group(2) is not None)

    def _compiled(self) -> re.Pattern[bytes]:
        if self._pattern is None:
            alternatives = b"|".join(re.escape(b) for b in sorted(self.boundaries, key=len, reverse=True))
            # Literal "--" first and the line-start check as a lookbehind: the engine skips to
            # candidates quickly, and a delimiter may follow CR, LF or CRLF as in the feedparser.
            self._pattern = re.compile(rb"--(?<=[\r\n]--)(" + alternatives + rb")(--)?[ \t]*+(?=[\r\n]|\Z)")
        return self._pattern


@dataclass
class _OpenMultipart:
    boundary: bytes
    level: int
    digest: bool


class _MimeScan:
    """The MIME structure as the stdlib feedparser will see it: depth and part count.

    Mirrors the feedparser: header blocks end at a blank line, a non-header line or a
    delimiter of any open boundary; a delimiter of an outer boundary closes the inner ones
    (RFC 2046 section 5.1.2); message/* bodies hold one more header block.
    """

    def __init__(self, raw: bytes, limits: ParseLimits) -> None:
        self.raw = raw
        self.limits = limits
        self.parts = 0
        self.deepest = 0
        self.param_work = 0
        self._delimiters: dict[frozenset[bytes], _Delimiters] = {}

    def scan_message(self, start: int, end: int, *, level: int = 0, reparse_epilogue: bool) -> None:
        """Scan the message in raw[start:end], whose top entity sits at `level`."""
        stack: list[_OpenMultipart] = []
        pos = self._enter_entity(start, end, level, stack, b"text/plain")
        root = stack[0].boundary if stack else None
        while stack:
            match = self._next_delimiter(stack, pos, end)
            if match is None:
                return
            owner = self._owner(stack, match.boundary)
            del stack[owner + 1 :]
            pos = _skip_line_break(self.raw, match.end, end)
            if match.closing:
                closed = stack.pop()
                if not stack and reparse_epilogue and closed.boundary == root:
                    self._scan_epilogue(closed.boundary, pos, end)
                continue
            pos = self._skip_repeated_delimiters(stack, pos, end)
            self._count_parts(1)
            parent = stack[-1]
            default = b"message/rfc822" if parent.digest else b"text/plain"
            pos = self._enter_entity(pos, end, parent.level, stack, default)

    def _skip_repeated_delimiters(self, stack: list[_OpenMultipart], pos: int, end: int) -> int:
        """The feedparser swallows delimiter lines (even a close one) right after a delimiter.

        One regular-expression match consumes the whole run, so a flood of such lines costs
        no Python-level loop; it is built only when such a line is there (rare in real mail).
        """
        boundary = stack[-1].boundary
        if any(entry.boundary == boundary for entry in stack[:-1]):
            return pos  # an outer boundary's line ends the multipart instead
        if not self.raw.startswith(b"--" + boundary, pos, end):
            return pos
        run = re.compile(rb"(?:--" + re.escape(boundary) + rb"(?:--)?[ \t]*+(?:\r\n|\r|\n|\Z))*+")
        match = run.match(self.raw, pos, end)
        return match.end() if match else pos

    def _scan_epilogue(self, boundary: bytes, start: int, end: int) -> None:
        # mail-parser re-parses the text between "--b" and "--b--" in the epilogue as a whole
        # new message when it sees a start-boundary defect; that message must fit too.
        opening = self.raw.find(b"--" + boundary, start, end)
        if opening < 0:
            return
        inner_start = opening + len(boundary) + 2
        closing = self.raw.find(b"--" + boundary + b"--", inner_start, end)
        if closing < 0:
            return
        while inner_start < closing and self.raw[inner_start] in _STR_WHITESPACE:
            inner_start += 1
        self.scan_message(inner_start, closing, reparse_epilogue=False)

    def _enter_entity(self, pos: int, end: int, level: int, stack: list[_OpenMultipart], default: bytes) -> int:
        """Read one entity's header block (and any message/* chain); return its body start."""
        pattern = self._delimiter_pattern(stack)
        while True:
            header_end, body = self._header_block(pos, end, pattern)
            ctype, boundary = self._content_type(_lines_block(self.raw, pos, header_end), default)
            if ctype == b"message/delivery-status":
                self._scan_status_blocks(body, end, level + 1, pattern)
                return body
            if ctype.startswith(b"message/"):
                level += 1
                self._check_depth(level)
                self._count_parts(1)
                pos, default = body, b"text/plain"
                continue
            if ctype.startswith(b"multipart/") and boundary is not None:
                level += 1
                self._check_depth(level)
                stack.append(_OpenMultipart(boundary, level, ctype == b"multipart/digest"))
            return body

    def _header_block(self, pos: int, end: int, pattern: _Delimiters | None) -> tuple[int, int]:
        match = _HEADER_LINES.match(self.raw, pos, end)
        header_end = match.end() if match else pos
        body = _skip_line_break(self.raw, header_end, end)
        if pattern is not None:
            delimiter = pattern.search(self.raw, pos, header_end)
            if delimiter is not None:
                header_end = body = delimiter.start
        size = header_end - pos
        if size > self.limits.max_header_bytes:
            raise MessageRejected(
                f"MIME part header block of {size} bytes exceeds the limit of {self.limits.max_header_bytes}"
            )
        return header_end, body

    def _content_type(self, block: bytes, default: bytes) -> tuple[bytes, bytes | None]:
        """The stdlib's get_content_type() and get_boundary() for one header block."""
        for param_header in _PARAM_HEADER.finditer(block):
            value = param_header.group(1)
            self._charge_param_work((value.count(b";") + 1) * len(value))
        match = _CONTENT_TYPE.search(block)
        if match is None:
            return default, None
        value = match.group(1).lstrip(b" \t").rstrip(b"\n")
        ctype = value.partition(b";")[0].strip(_STR_WHITESPACE).lower()
        if ctype.count(b"/") != 1:
            return b"text/plain", None
        if not ctype.startswith(b"multipart/"):
            return ctype, None
        return ctype, _boundary(value.decode("ascii", "surrogateescape"))

    def _scan_status_blocks(self, body: int, end: int, level: int, pattern: _Delimiters | None) -> None:
        """message/delivery-status: every blank line starts a new part, parsed as a message
        that ends at the next blank line (which may still hold a whole MIME tree)."""
        match = pattern.search(self.raw, body, end) if pattern else None
        stop = match.start if match else end
        pos = body
        while True:
            blank = self._next_blank_line(pos, stop)
            self._count_parts(1)
            self._check_depth(level)
            self.scan_message(pos, stop if blank is None else blank, level=level, reparse_epilogue=False)
            if blank is None:
                return
            pos = _skip_line_break(self.raw, blank, stop)

    def _next_blank_line(self, pos: int, stop: int) -> int | None:
        """Start of the first empty line at or after the line starting at `pos`."""
        if self.raw.startswith((b"\r", b"\n"), pos, stop):
            return pos
        match = _BLANK_LINE_AFTER.search(self.raw, pos, stop)
        return match.end() if match else None

    def _next_delimiter(self, stack: list[_OpenMultipart], pos: int, end: int) -> _Delimiter | None:
        delimiters = self._delimiter_pattern(stack)
        return delimiters.search(self.raw, pos, end) if delimiters else None

    def _delimiter_pattern(self, stack: list[_OpenMultipart]) -> _Delimiters | None:
        """The delimiter search for the open boundaries, one per set of them."""
        if not stack:
            return None
        key = frozenset(entry.boundary for entry in stack)
        delimiters = self._delimiters.get(key)
        if delimiters is None:
            delimiters = self._delimiters[key] = _Delimiters(key)
        return delimiters

    @staticmethod
    def _owner(stack: list[_OpenMultipart], boundary: bytes) -> int:
        """The outermost open multipart with this boundary: the feedparser lets each outer
        boundary end the inner parts first, so a shared boundary belongs to the outer one."""
        for index, entry in enumerate(stack):
            if entry.boundary == boundary:
                return index
        raise AssertionError("delimiter matched no open boundary")

    def _count_parts(self, count: int) -> None:
        self.parts += count
        if self.parts > self.limits.max_mime_parts:
            raise MessageRejected(f"more than {self.limits.max_mime_parts} MIME parts")

    def _check_depth(self, level: int) -> None:
        self.deepest = max(self.deepest, level)
        if level > self.limits.max_mime_depth:
            raise MessageRejected(f"MIME nesting deeper than {self.limits.max_mime_depth} levels")

    def _charge_param_work(self, work: int) -> None:
        self.param_work += work
        if self.param_work > self.limits.max_mime_param_work:
            raise MessageRejected(f"MIME parameters too costly to parse (over {self.limits.max_mime_param_work} units)")


def _skip_line_break(raw: bytes, pos: int, end: int) -> int:
    if raw.startswith(b"\r\n", pos, end):
        return pos + 2
    if raw.startswith((b"\r", b"\n"), pos, end):
        return pos + 1
    return pos


def _boundary(value: str) -> bytes | None:
    """Message.get_boundary() of the stdlib (compat32) for a Content-Type value, as bytes."""
    try:
        text = _boundary_param(_split_params(value))
    except (TypeError, ValueError, LookupError, UnicodeError):
        # The stdlib raises on these too, so the message never gets past the parser.
        return None
    if text is None:
        return None
    text = text.rstrip()
    try:
        boundary = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None  # no line of surrogate-escaped input can ever equal it
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise MessageRejected(f"MIME boundary of {len(boundary)} bytes exceeds the limit of {MAX_BOUNDARY_BYTES}")
    return boundary


def _split_params(value: str) -> list[str]:
    """email.message._parseparam, step for step; its cost is bounded by the param budget."""
    rest = ";" + value
    params: list[str] = []
    while rest[:1] == ";":
        rest = rest[1:]
        end = rest.find(";")
        while end > 0 and (rest.count('"', 0, end) - rest.count('\\"', 0, end)) % 2:
            end = rest.find(";", end + 1)
        if end < 0:
            end = len(rest)
        field = rest[:end]
        if "=" in field:
            eq = field.index("=")
            field = field[:eq].strip().lower() + "=" + field[eq + 1 :].strip()
        params.append(field.strip())
        rest = rest[end:]
    return params


def _boundary_param(params: list[str]) -> str | None:
    """decode_params + get_param('boundary') + collapse_rfc2231_value of the stdlib."""
    continuations: list[tuple[int | None, str, bool]] = []
    for param in params[1:]:
        name, _, raw_value = param.partition("=")
        name, raw_value = name.strip(), raw_value.strip()
        value = _unquote(raw_value)
        mo = _RFC2231_NAME.match(name)
        if mo is None:
            if name.lower() == "boundary":
                return _unquote(_unquote(f'"{_quote(value)}"'))
        elif mo.group("name").lower() == "boundary":
            num = mo.group("num")
            continuations.append((None if num is None else int(num), value, name.endswith("*")))
    if not continuations:
        return None
    return _join_rfc2231(continuations)


def _join_rfc2231(continuations: list[tuple[int | None, str, bool]]) -> str:
    continuations.sort()  # mixing None and int raises TypeError, as in the stdlib
    pieces, extended = [], False
    for _, piece, encoded in continuations:
        if encoded:
            piece = urllib.parse.unquote(piece, encoding="latin-1")
            extended = True
        pieces.append(piece)
    joined = _quote("".join(pieces))
    if not extended:
        return _unquote(_unquote(f'"{joined}"'))
    fields = joined.split("'", 2)
    charset, text = (None, joined) if len(fields) <= 2 else (fields[0], fields[2])
    text = _unquote(f'"{text}"')
    try:
        return str(bytes(text, "raw-unicode-escape"), charset or "us-ascii", "replace")
    except LookupError:
        return _unquote(text)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _unquote(text: str) -> str:
    if len(text) > 1:
        if text.startswith('"') and text.endswith('"'):
            return text[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        if text.startswith("<") and text.endswith(">"):
            return text[1:-1]
    return text
