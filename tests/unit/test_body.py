"""HTML bodies: plain-text rendering and sanitising for display."""

from __future__ import annotations

import time

import pytest

from mailgate.mail.body import html_is_tractable, html_to_text, sanitize_html


def test_text_drops_script_style_and_head() -> None:
    """Script, style and head contents never reach the text."""
    html = "<html><head><title>T</title><style>p{}</style></head><body><script>x()</script>Hi</body></html>"
    assert html_to_text(html) == "Hi"


def test_text_turns_blocks_and_breaks_into_lines() -> None:
    """Paragraphs and headings become lines, <br> a line break, blank lines at most one."""
    html = "<h1>Title</h1><p>First<br>second</p><div></div><div></div><p>Third</p>"
    assert html_to_text(html) == "Title\n\nFirst\nsecond\n\nThird"


def test_text_marks_list_items() -> None:
    """List items start with "- " on their own lines."""
    assert html_to_text("<ul><li>one</li><li>two</li></ul>") == "- one\n- two"


def test_text_keeps_link_targets() -> None:
    """Link text keeps its URL after it, unless the text already is the URL."""
    html = '<a href="https://x.example/a">docs</a>, <a href="https://y.example">https://y.example</a>'
    assert html_to_text(html) == "docs (https://x.example/a), https://y.example"


def test_text_does_not_repeat_mailto_addresses_or_show_script_links() -> None:
    """A mailto link showing its address and a javascript: link add nothing."""
    html = '<a href="mailto:a@b.example">a@b.example</a> <a href="javascript:evil()">click</a>'
    assert html_to_text(html) == "a@b.example click"


def test_text_decodes_entities_and_collapses_spaces() -> None:
    """Entities are decoded and runs of whitespace, no-break spaces included, become one space."""
    assert html_to_text("<p>Tom &amp;   Jerry&nbsp;&lt;3\n  &#228;</p>") == "Tom & Jerry <3 ä"


def test_text_of_table_cells_is_spaced() -> None:
    """Table cells are separated and rows are lines."""
    assert html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") == "a b\nc"


@pytest.mark.parametrize(
    ("html", "forbidden"),
    [
        ("<script>alert(1)</script>ok", "alert"),
        ("<style>body{}</style>ok", "body{}"),
        ('<iframe src="https://x.example"></iframe>ok', "iframe"),
        ('<object data="x.swf"></object>ok', "object"),
        ('<form action="https://x.example"><input name="pw"></form>ok', "form"),
        ('<p onclick="steal()">ok</p>', "onclick"),
        ('<a href="javascript:alert(1)">ok</a>', "javascript"),
        ('<a href="vbscript:msgbox">ok</a>', "vbscript"),
        ('<a href="data:text/html;base64,PHNjcmlwdD4=">ok</a>', "data:"),
        ('<img src="data:image/png;base64,AAAA">ok', "data:"),
        ('<img src="https://track.example/p.gif">ok', "track.example"),
        ('<img src="http://track.example/p.gif">ok', "track.example"),
        ('<p style="background:url(https://track.example/x)">ok</p>', "track.example"),
        ('<meta http-equiv="refresh" content="0;url=https://x.example">ok', "refresh"),
        ("<!-- secret -->ok", "secret"),
    ],
)
def test_sanitize_removes_active_and_remote_content(html: str, forbidden: str) -> None:
    """Script, frames, forms, handlers, dangerous URLs, remote images and comments are gone."""
    cleaned = sanitize_html(html)
    assert forbidden not in cleaned and "ok" in cleaned


def test_sanitize_keeps_formatting_links_and_inline_images() -> None:
    """Ordinary formatting, https links and cid: images survive."""
    cleaned = sanitize_html('<p><b>bold</b> <a href="https://x.example">x</a><img src="cid:logo@x" alt="logo"></p>')
    assert "<b>bold</b>" in cleaned and 'href="https://x.example"' in cleaned
    assert 'src="cid:logo@x"' in cleaned and "noopener" in cleaned


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 200_000,
        "<![CDATA[" * 100_000,
        "<?" * 200_000,
        "</" * 200_000,
        "<div>" * 200_000,
        "& " * 400_000,
        "&nbsp;" * 200_000,
        "<!--" + "a" * 2_000_000,
        "<p>x</p>" * 200_000,
    ],
    ids=["unclosed tags", "cdata", "pi", "end tags", "deep divs", "ampersands", "nbsp", "comment", "huge"],
)
def test_pathological_html_is_handled_within_a_second(html: str) -> None:
    """Inputs on which html.parser or nh3 go quadratic are rendered in linear time instead."""
    started = time.perf_counter()
    html_to_text(html)
    sanitize_html(html)
    assert time.perf_counter() - started < 1.0


def test_intractable_html_still_gives_text() -> None:
    """Beyond the bounds, text is still extracted and hidden elements still dropped."""
    html = "<div>" * 1000 + "<script>bad()</script>Hello &amp; bye"
    assert not html_is_tractable(html)
    assert html_to_text(html) == "Hello & bye"
    assert sanitize_html(html) == ""
