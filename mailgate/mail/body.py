"""HTML bodies: a plain-text rendering for HTML-only mail, and a sanitised copy for display.

`sanitize_html` uses nh3 (ammonia) with an allow-list, so nothing that runs script or fetches
remote content survives; `html_to_text` renders nh3's well-formed output with html.parser.
"""

from __future__ import annotations

import html as html_entities
import re
from html.parser import HTMLParser

import nh3

# Both parsers go quadratic on hostile HTML: html.parser on unclosed constructs ("<a" x 20,000
# takes 2 s on CPython 3.11), nh3 0.3 on deeply nested blocks ("<div>" x 20,000 takes 1.4 s)
# and on "&" or U+00A0 in one text node (200,000 take 1.2 s). Beyond these bounds the text is
# extracted with linear regular expressions instead.
MAX_HTML_CHARS = 1024 * 1024
MAX_HTML_TAGS = 50_000
MAX_HTML_DEPTH = 500
MAX_HTML_ESCAPES = 50_000

_SKIPPED = frozenset({"script", "style", "head", "title", "noscript", "template"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot",
        "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
# Elements that never nest (void) or that the HTML parser closes by itself when repeated.
_NOT_NESTING = frozenset(
    {
        "area", "base", "br", "col", "colgroup", "dd", "dt", "embed", "hr", "img", "input", "li",
        "link", "meta", "option", "optgroup", "p", "param", "rp", "rt", "source", "tbody", "td",
        "tfoot", "th", "thead", "tr", "track", "wbr",
    }
)  # fmt: skip
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)")
_ANY_TAG = re.compile(r"<[^<>]*>")
_HIDDEN_NAMES = ("script", "style", "head", "title", "template", "noscript")
_HIDDEN_ELEMENT = re.compile(rf"<({'|'.join(_HIDDEN_NAMES)})\b", re.I)
_HIDDEN_END = {name: re.compile(rf"</{name}\b", re.I) for name in _HIDDEN_NAMES}
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
    # Kept so that quoted history can be found later: Gmail's class="gmail_quote", Outlook's
    # id="divRplyFwdMsg"/"appendonsend", Apple Mail's and Thunderbird's <blockquote type="cite">.
    "div": {"id", "class"},
    "blockquote": {"type"},
}
# Whole elements, content included: script and style text is not prose.
_DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "template", "noscript"}
# cid: lets inline images point at their own attachment; anything else that can execute or
# smuggle content (javascript:, data:, vbscript:) is not on the list.
_URL_SCHEMES = {"http", "https", "mailto", "cid"}


def html_is_tractable(html: str) -> bool:
    """True when the HTML is small and shallow enough for the full HTML parsers.

    One pass over the tags tracks an upper bound of the nesting depth.
    """
    if len(html) > MAX_HTML_CHARS or html.count("<") > MAX_HTML_TAGS:
        return False
    if html.count("&") + html.count("\xa0") > MAX_HTML_ESCAPES:
        return False
    depth = 0
    for match in _TAG.finditer(html):
        if match.group(2).lower() in _NOT_NESTING:
            continue
        depth = max(0, depth - 1) if match.group(1) else depth + 1
        if depth > MAX_HTML_DEPTH:
            return False
    return True


def html_to_text(html: str) -> str:
    """A readable plain-text rendering: blocks become lines, links keep their target."""
    if not html_is_tractable(html):
        return _tidy(_strip_tags(html))
    well_formed = nh3.clean(
        html,
        tags=_BLOCKS | _CELLS | {"a", "br", "li", "tr"},
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes={"a": {"href"}},
        url_schemes=_URL_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )
    extractor = _TextExtractor()
    extractor.feed(well_formed)
    extractor.close()
    return _tidy("".join(extractor.pieces))


def sanitize_html(html: str) -> str:
    """HTML safe to show: allow-listed tags and attributes, no script, no remote images.

    Returns "" for HTML beyond the tractable bounds; the text rendering still works for it.
    """
    if not html_is_tractable(html):
        return ""
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


def _strip_tags(html: str) -> str:
    """Text of HTML in linear time: hidden elements dropped, tags removed, entities decoded."""
    kept: list[str] = []
    pos = 0
    while (hidden := _HIDDEN_ELEMENT.search(html, pos)) is not None:
        kept.append(html[pos : hidden.start()])
        close = _HIDDEN_END[hidden.group(1).lower()].search(html, hidden.end())
        if close is None:
            pos = len(html)
            break
        pos = close.start()
    kept.append(html[pos:])
    return html_entities.unescape(_ANY_TAG.sub(" ", "".join(kept)))


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
        elif tag == "tr":
            self.pieces.append("\n")
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
