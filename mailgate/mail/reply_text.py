"""The new text of a reply: quoted history, reply headers and clear signatures cut away (tier 1).

Mail clients quote in a few recognisable ways (attribution lines, separators, Outlook header
blocks, "> " runs, HTML quote containers); this module cuts at the first of them. The caller
keeps the full original.
"""

from __future__ import annotations

import re

from mailgate.mail.body import html_to_text
from mailgate.notify.context import REPLY_ABOVE

# Lines longer than this are prose, never an attribution, separator or header label; skipping
# them keeps every per-line regular expression cheap on hostile input.
_MAX_MARKER_LINE = 500
# An Outlook header block is at most this many lines after its first (From, Sent, To, Cc,
# Subject and a couple of wrapped address lines).
_BLOCK_LOOKAHEAD = 7
_MAX_HTML_ATTRIBUTES = 2000
# New text comes first; a quote that starts deeper than this in a huge body is not looked for,
# so a hostile body of header-like lines costs a bounded amount of work.
_MAX_SCANNED_LINES = 20_000

# Our own marker, in every language, without its dashes so that a client re-wrapping or
# rendering it from HTML still matches.
_OWN_MARKERS = tuple(marker.strip("- ").casefold() for marker in REPLY_ABOVE.values())

# "On <date>, <name> wrote:" and its translations, as Gmail, Apple Mail and Thunderbird write
# them, end in one of these verbs; German puts the name after "schrieb", Finnish Thunderbird
# the date after "kirjoitti". Plain string tests keep the check linear in the line's length.
_ATTRIBUTION_VERBS = (" wrote", " a écrit", " a ecrit", " escribió", " escribio", " kirjoitti", " rašė", " rase")
_KIRJOITTI = re.compile(r"\bkirjoitti\b")
_DATE_OR_ADDRESS = re.compile(r"[\d@]")
# How far below a bare "<name> wrote:" the quote it introduces must start.
_ATTRIBUTION_LOOKAHEAD = 3
_BARE_ATTRIBUTION_START = re.compile(r"(?:on|am|le|el)\s", re.IGNORECASE)
# Where an attribution wrapped over two lines may begin: "On ...", or a date as Gmail puts it
# first in Finnish and Lithuanian ("ma 2.11.2026 klo 9.30 ...", "2026-11-02, pr, 09:30 ...").
_WRAPPED_ATTRIBUTION_START = re.compile(r"(?:on|am|le|el)\s|(?:\w{1,3}\.?,?\s+)?\d{1,4}[-./]\d", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"""-{2,}\s*(?:original\s+message|alkuper[äa]inen\s+viesti|originali\s+[žz]inut[ėe]
       | urspr[üu]ngliche\s+nachricht|message\s+d'origine|mensaje\s+original
       | forwarded\s+message|v[äa]litetty\s+viesti|persi[ųu]stas\s+lai[šs]kas
       | weitergeleitete\s+nachricht|message\s+transf[ée]r[ée]|mensaje\s+reenviado)\s*-{2,}
     | (?:begin\s+forwarded\s+message|alkuper[äa]inen\s+viesti\s+alkaa
       | anfang\s+der\s+weitergeleiteten\s+nachricht|pradžia\s+persiųsto\s+laiško)\s*:""",
    re.IGNORECASE | re.VERBOSE,
)
_UNDERSCORES = re.compile(r"_{10,}")
_HEADER_LABEL = re.compile(r"[*>\s]*([^\W\d_]+)\*?\s*:\*?(?:\s|$)")
HEADER_LABELS: dict[str, str] = {
    **dict.fromkeys(("from", "lähettäjä", "siuntėjas", "nuo", "von", "de", "van", "från", "fra"), "from"),
    **dict.fromkeys(
        (
            "sent", "date", "lähetetty", "päivämäärä", "päiväys", "išsiųsta", "data", "gesendet",
            "datum", "envoyé", "enviado", "fecha", "skickat", "sendt",
        ),
        "sent",
    ),
    **dict.fromkeys(("to", "vastaanottaja", "kam", "gavėjas", "an", "à", "para", "till", "til"), "to"),
    **dict.fromkeys(("cc", "kopio", "kopija", "copie"), "cc"),
    **dict.fromkeys(("subject", "aihe", "tema", "betreff", "objet", "asunto", "ämne", "emne"), "subject"),
}  # fmt: skip
_MOBILE_SIGNATURE = re.compile(
    r"""(?:sent\s+from\s+my\s+\w+|sent\s+from\s+(?:outlook|mail)\s+for\s+\w+|get\s+outlook\s+for\s+\w+
       | lähetetty\s+(?:iphonesta|ipadista|android-laitteesta|outlook\s+for\s+\w+)
       | (?:išsiųsta|siųsta)\s+iš\s+(?:mano\s+)?\w+|von\s+meinem\s+\w+\s+gesendet
       | envoyé\s+de\s+mon\s+\w+|enviado\s+desde\s+mi\s+\w+)\b""",
    re.IGNORECASE | re.VERBOSE,
)
# HTML containers of quoted history: Gmail, Outlook (web and new desktop), Thunderbird's
# attribution, Apple/Thunderbird citations, Yahoo.
_HTML_TAG = re.compile(r"<(div|blockquote|hr)\b([^<>]*)>", re.IGNORECASE)
_HTML_QUOTE_ATTRIBUTE = re.compile(
    r"""class\s*=\s*["']?[^"'>]*\b(?:gmail_quote|moz-cite-prefix|yahoo_quoted)\b
      | id\s*=\s*["']?(?:divRplyFwdMsg|appendonsend|mail-editor-reference-message-container|stopSpelling)\b
      | type\s*=\s*["']?cite\b""",
    re.IGNORECASE | re.VERBOSE,
)


def extract_reply(text: str, html: str | None = None) -> str:
    """The newly written part of a reply, without quoted history, reply headers or clear signatures.

    The plain text is used when it has a quote to cut; otherwise the HTML is cut at its quote
    container and rendered as text. Returns "" only when the mail holds nothing but quotes.
    """
    lines = _lines_text(text).split("\n")
    cut = find_quote_start(lines)
    if html and cut is None:
        position = html_quote_start(html)
        if position is not None or not text.strip():
            rendered = _lines_text(html_to_text(html if position is None else html[:position])).split("\n")
            return _finish(rendered, find_quote_start(rendered))
    return _finish(lines, cut)


def _lines_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _finish(lines: list[str], cut: int | None) -> str:
    """Apply the cut, drop a trailing "> " run and signatures; recover a bottom-posted reply."""
    head = _drop_trailing_quotes(lines if cut is None else lines[:cut])
    if not _join(head) and cut is not None:
        head = _bottom_posted(lines, cut)
    reply = _join(head)
    signed_off = _join(_strip_signature(head))
    # Rather a signature than nothing: "Sent from my iPhone" alone is still what was written.
    return signed_off or reply


def _join(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def find_quote_start(lines: list[str]) -> int | None:
    """Index of the first line where quoted history begins, or None."""
    lines = lines[:_MAX_SCANNED_LINES]
    labels = [header_label(line) for line in lines]  # once per line, not once per look-ahead
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or len(stripped) > _MAX_MARKER_LINE:
            continue
        if _is_own_marker(stripped) or _SEPARATOR.fullmatch(stripped):
            return index
        if not stripped.startswith(">") and _is_attribution(lines, index):
            return index
        window = slice(index, index + _BLOCK_LOOKAHEAD)
        if labels[index] is not None and _block_length(lines[window], labels[window]) is not None:
            return _before_underscores(lines, index)
    return None


def _is_own_marker(line: str) -> bool:
    folded = line.casefold()
    return any(marker in folded for marker in _OWN_MARKERS)


def _is_attribution(lines: list[str], index: int) -> bool:
    """An attribution line, possibly wrapped over two lines as Gmail does for long names."""
    line = lines[index].strip()
    if _attribution_line(line, lines, index + 1):
        return True
    if index + 1 < len(lines) and _WRAPPED_ATTRIBUTION_START.match(line):
        joined = f"{line} {lines[index + 1].strip()}"
        return len(joined) <= _MAX_MARKER_LINE and _attribution_line(joined, lines, index + 2)
    return False


def _attribution_line(line: str, lines: list[str], following: int) -> bool:
    if not _attribution_text(line):
        return False
    # "On ... wrote:" is unmistakable; a bare "<name> wrote:" or "kirjoitti:" needs a date, an
    # address or quoted lines right after it to be told apart from prose.
    if _BARE_ATTRIBUTION_START.match(line) or _DATE_OR_ADDRESS.search(line):
        return True
    below = (lines[index].strip() for index in range(following, min(len(lines), following + _ATTRIBUTION_LOOKAHEAD)))
    return next((candidate for candidate in below if candidate), "").startswith(">")


def _attribution_text(line: str) -> bool:
    if not line.endswith(":"):
        return False
    folded = line[:-1].rstrip().casefold()
    if folded.startswith("am ") and " schrieb " in f"{folded} ":
        return True
    return folded.endswith(_ATTRIBUTION_VERBS) or _KIRJOITTI.search(folded) is not None


def header_label(line: str) -> str | None:
    """The canonical field ("from", "sent", "to", "cc", "subject") a quoted-header line starts with."""
    if len(line) > _MAX_MARKER_LINE:
        return None
    match = _HEADER_LABEL.match(line)
    return HEADER_LABELS.get(match.group(1).lower()) if match else None


def header_block_end(lines: list[str], start: int) -> int | None:
    """End (exclusive) of a quoted mail-header block starting at `start`, or None if there is none.

    A block is consecutive "Label: value" lines naming at least the sender, the date and the
    recipient or subject, in any order and language; a wrapped address line may sit between.
    """
    window = lines[start : start + _BLOCK_LOOKAHEAD]
    length = _block_length(window, [header_label(line) for line in window])
    return None if length is None else start + length


def _block_length(lines: list[str], labels: list[str | None]) -> int | None:
    """Length of the header block at the start of `lines` (with their labels), or None."""
    if not labels or labels[0] is None:
        return None
    found: set[str] = set()
    end, unlabeled = 0, 0
    for index, label in enumerate(labels):
        if label is None:
            unlabeled += 1
            if not lines[index].strip() or unlabeled > 2:
                break
            continue
        found.add(label)
        end = index + 1
    if {"from", "sent"} <= found and found & {"to", "subject"}:
        return end
    return None


def _before_underscores(lines: list[str], index: int) -> int:
    """Outlook draws a line of underscores above its header block; cut there instead."""
    previous = index - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    if previous >= 0 and _UNDERSCORES.fullmatch(lines[previous].strip()):
        return previous
    return index


def _drop_trailing_quotes(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end]


def _bottom_posted(lines: list[str], cut: int) -> list[str]:
    """The unquoted lines after an attribution whose quote comes first (bottom-posting)."""
    for attribution_lines in (1, 2):  # an attribution may be wrapped over two lines
        rest = lines[cut + attribution_lines :]
        first = next((line.strip() for line in rest if line.strip()), "")
        if first.startswith(">"):
            return [line for line in rest if not line.lstrip().startswith(">")]
    return []


def _strip_signature(lines: list[str]) -> list[str]:
    """Cut at the RFC 3676 "-- " delimiter, or at a phone's sign-off among the last lines."""
    for index, line in enumerate(lines):
        if line.rstrip(" ") == "--":
            return lines[:index]
    filled = [index for index, line in enumerate(lines) if line.strip()]
    for index in filled[-2:]:
        if _MOBILE_SIGNATURE.match(lines[index].strip()):
            return lines[:index]
    return lines


def html_quote_start(html: str) -> int | None:
    """Offset of the first HTML element that holds quoted history, or None."""
    for match in _HTML_TAG.finditer(html):
        # Quote containers carry short attributes; a longer one is not worth a regex search.
        attributes = match.group(2)
        if len(attributes) <= _MAX_HTML_ATTRIBUTES and _HTML_QUOTE_ATTRIBUTE.search(attributes):
            return match.start()
    return None
