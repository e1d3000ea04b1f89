"""This help desk's subject tag, and the reply/forward prefixes mail clients add (tier 1).

Only our own tag threads (as in Request Tracker, whose ParseTicketId matches only its own
name); other systems' tags stay part of the subject. The text is decoded from RFC 2047 before it
reaches these functions.
"""

from __future__ import annotations

import re

# Reply and forward prefixes as written by mail clients in many languages: English Re/Fw/Fwd,
# German AW/WG, Nordic SV/VS/VL/VB, Lithuanian Ats/Pers/Persiųsta, Polish Odp/PD, Dutch Antw/Doorst,
# French RE/TR/Réf, Spanish/Portuguese RV/Enc, Italian R/I, Turkish YNT/İLT, Greek ΑΠ/ΣΧΕΤ/ΠΡΘ,
# Russian Отв/Пересл, Chinese 回复/转发/答复, Hebrew השב/הועבר. Counters such as "Re[2]:" or
# "Re(3):" are accepted, as are full-width colons.
_PREFIXES = (
    "re",
    "fw",
    "fwd",
    "aw",
    "wg",
    "sv",
    "vs",
    "vl",
    "vb",
    "ats",
    "pers",
    "persiųsta",
    "odp",
    "pd",
    "antw",
    "doorst",
    "tr",
    "réf",
    "ref",
    "rv",
    "enc",
    "r",
    "i",
    "ynt",
    "i̇lt",
    "ilt",
    "απ",
    "σχετ",
    "πρθ",
    "отв",
    "пересл",
    "回复",
    "转发",
    "答复",
    "השב",
    "הועבר",
)
_PREFIX_RE = re.compile(
    r"^(?:\s*(?:"
    + "|".join(sorted((re.escape(p) for p in _PREFIXES), key=len, reverse=True))
    + r")\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_SPACES_RE = re.compile(r"\s+")


def format_subject_tag(tag: str, number: int) -> str:
    """The tag as it appears in subjects: `[Acme Support #1042]`."""
    return f"[{tag} #{number}]"


def _tag_pattern(tag: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in tag.split()]
    return re.compile(r"\[\s*" + r"\s+".join(words) + r"\s*#\s*(\d{1,12})\s*\]", re.IGNORECASE)


def find_subject_tag(subject: str, tag: str) -> int | None:
    """The ticket number in this desk's tag, wherever it stands in the subject, or None."""
    match = _tag_pattern(tag).search(subject)
    return int(match.group(1)) if match else None


def strip_reply_prefixes(subject: str) -> str:
    """The subject without leading reply/forward prefixes such as `Re: AW: Fwd:`."""
    return _PREFIX_RE.sub("", subject).strip()


def clean_subject(subject: str, tag: str) -> str:
    """The subject a ticket is titled with: no prefixes, no tag of ours, single spaces."""
    without_tag = _tag_pattern(tag).sub(" ", subject)
    stripped = strip_reply_prefixes(_SPACES_RE.sub(" ", without_tag).strip())
    # A prefix may stand after our tag ("[Acme #5] Re: Re: help"), so strip once more.
    return _SPACES_RE.sub(" ", strip_reply_prefixes(stripped)).strip()
