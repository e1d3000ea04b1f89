"""HTML bodies: a plain-text rendering for HTML-only mail, and a sanitised copy for display.

`html_to_text` uses the stdlib html.parser; `sanitize_html` uses nh3 (ammonia) with an
allow-list, so nothing that runs script or fetches remote content survives.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nh3

_SKIPPED = frozenset({"script", "style", "head", "title", "noscript", "template"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot",
        "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_LINKED_SCHEMES = ("http://", "https://", "mailto:")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
    "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign"},
    "col": {"span"},
    "ol": {"start"},
    "font": {"color"},
}
# Whole elements, content included: script and style text is not prose.
_DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "template", "noscript"}
# cid: lets inline images point at their own attachment; anything else that can execute or
# smuggle content (javascript:, data:, vbscript:) is not on the list.
_URL_SCHEMES = {"http", "https", "mailto", "cid"}


def html_to_text(html: str) -> str:
    """A readable plain-text rendering: blocks become lines, links keep their target."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except Exception:  # html.parser is tolerant, but old versions assert on odd declarations
        pass
    return _tidy("".join(extractor.pieces))


def sanitize_html(html: str) -> str:
    """HTML safe to show: allow-listed tags and attributes, no script, no remote images."""
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes=_ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    # A remote image is a tracking pixel that reports when and where the ticket was read.
    if tag == "img" and attribute == "src" and not value.strip().lower().startswith("cid:"):
        return None
    return value


def _tidy(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


class _TextExtractor(HTMLParser):
    """Collects text, turning the structure that matters for reading into line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skipping: list[str] = []
        self._links: list[tuple[str, int]] = []
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping.clear()  # whatever <head> left unclosed ends here
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag == "br":
            self.pieces.append("\n")
        elif tag == "li":
            self.pieces.append("\n- ")
        elif tag in _BLOCKS:
            self.pieces.append("\n")
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.pieces)))
        self._pre_depth += tag == "pre"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a" and tag not in _SKIPPED:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skipping:
            del self._skipping[self._skipping.index(tag) :]
        elif tag in _BLOCKS:
            self.pieces.append("\n")
        elif tag in _CELLS:
            self.pieces.append(" ")
        elif tag == "a" and self._links:
            self._close_link(*self._links.pop())
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        # Outside <pre>, source line breaks are just spaces, as a browser shows them.
        self.pieces.append(data if self._pre_depth else data.replace("\n", " ").replace("\r", " "))

    def _close_link(self, href: str, start: int) -> None:
        target = href.strip()
        if not target.lower().startswith(_LINKED_SCHEMES):
            return
        label = "".join(self.pieces[start:]).strip()
        shown = target[len("mailto:") :] if target.lower().startswith("mailto:") else target
        if label not in (target, shown):
            self.pieces.append(f" ({target})")
