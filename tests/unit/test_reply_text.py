"""Reply extraction: only the newly written text of replies quoted the way real mail clients quote."""

from __future__ import annotations

import time

import pytest

from mailgate.mail.body import html_to_text
from mailgate.mail.reply_text import extract_reply, find_quote_start, header_block_end
from mailgate.notify.context import REPLY_ABOVE

NEW = "Hello Alice,\n\nplease restart the printer and tell us if it helps.\n\nAgnes"

GMAIL_PLAIN = f"""{NEW}

On Mon, Nov 2, 2026 at 9:30 AM Alice Customer <alice@customer.example> wrote:

> Hello,
> the printer is on fire.
>
"""

GMAIL_HTML = """<div dir="ltr"><div>Hello Alice,</div><div><br></div><div>please restart the printer and tell us \
if it helps.</div><div><br></div><div>Agnes</div></div><br><div class="gmail_quote gmail_quote_container">\
<div dir="ltr" class="gmail_attr">On Mon, Nov 2, 2026 at 9:30 AM Alice Customer &lt;<a \
href="mailto:alice@customer.example">alice@customer.example</a>&gt; wrote:<br></div><blockquote class="gmail_quote" \
style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">Hello,<br>the printer is \
on fire.</blockquote></div>"""

OUTLOOK_PLAIN_ORIGINAL = f"""{NEW}

-----Original Message-----
From: Alice Customer <alice@customer.example>
Sent: Monday, November 2, 2026 9:30 AM
To: Acme Support <support@example.com>
Subject: [Acme #1000] Printer is on fire

Hello,
the printer is on fire.
"""


def outlook_plain(labels: tuple[str, str, str, str]) -> str:
    """Outlook's plain alternative: an underscore line and a header block in the client's language."""
    sender, sent, to, subject = labels
    return (
        f"{NEW}\n\n________________________________\n"
        f"{sender}: Alice Customer <alice@customer.example>\n{sent}: 2. marraskuuta 2026 9.30\n"
        f"{to}: Acme Support <support@example.com>\n{subject}: [Acme #1000] Printer is on fire\n\n"
        "Hello,\nthe printer is on fire.\n"
    )


def outlook_html(labels: tuple[str, str, str, str]) -> str:
    """Outlook on the web / new Outlook HTML: appendonsend, a rule, and divRplyFwdMsg with the header block."""
    sender, sent, to, subject = labels
    return (
        '<html><head><style>p{margin:0}</style></head><body><div style="font-family:Aptos">'
        "Hello Alice,<br><br>please restart the printer and tell us if it helps.<br><br>Agnes</div>"
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" tabindex="-1">'
        '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt">'
        f"<b>{sender}:</b> Alice Customer &lt;alice@customer.example&gt;<br><b>{sent}:</b> 2.11.2026 9.30<br>"
        f"<b>{to}:</b> Acme Support &lt;support@example.com&gt;<br><b>{subject}:</b> Printer is on fire</font>"
        "<div>&nbsp;</div></div><div>Hello,<br>the printer is on fire.</div></body></html>"
    )


OUTLOOK_LABELS = {
    "en": ("From", "Sent", "To", "Subject"),
    "fi": ("Lähettäjä", "Lähetetty", "Vastaanottaja", "Aihe"),
    "lt": ("Siuntėjas", "Išsiųsta", "Kam", "Tema"),
    "de": ("Von", "Gesendet", "An", "Betreff"),
}

THUNDERBIRD_PLAIN = f"""{NEW}

On 02/11/2026 09.30, Alice Customer wrote:
> Hello,
> the printer is on fire.
"""

THUNDERBIRD_HTML = f"""<html><body><p>{NEW.replace(chr(10), "<br>")}</p>
<div class="moz-cite-prefix">On 02/11/2026 09.30, Alice Customer wrote:<br></div>
<blockquote type="cite" cite="mid:abc@customer.example">Hello,<br>the printer is on fire.</blockquote></body></html>"""

APPLE_PLAIN = f"""{NEW}

> On 2 Nov 2026, at 9.30, Alice Customer <alice@customer.example> wrote:
>
> Hello,
> the printer is on fire.
"""

APPLE_HTML = f"""<html><body dir="auto"><div>{NEW.replace(chr(10), "<br>")}</div><div><br>\
<blockquote type="cite"><div>On 2 Nov 2026, at 9.30, Alice Customer &lt;alice@customer.example&gt; wrote:</div>\
<br class="Apple-interchange-newline"><div>Hello,<br>the printer is on fire.</div></blockquote></div></body></html>"""


def test_gmail_plain_reply() -> None:
    """Gmail's plain text: everything from "On ... wrote:" down is cut."""
    assert extract_reply(GMAIL_PLAIN) == NEW


def test_gmail_attribution_wrapped_over_two_lines() -> None:
    """Gmail wraps a long attribution inside the address; both lines go."""
    attribution = "On Mon, Nov 2, 2026 at 9:30 AM Alice Customer With A Long Name <\nalice@customer.example> wrote:"
    text = f"{NEW}\n\n{attribution}\n\n> Hi\n"
    assert extract_reply(text) == NEW


def test_gmail_html_only_reply() -> None:
    """An HTML-only Gmail reply is cut at div.gmail_quote and rendered as text."""
    assert extract_reply("", GMAIL_HTML) == NEW


def test_gmail_html_is_used_when_the_plain_text_has_no_recognisable_quote() -> None:
    """Plain text without a quote marker falls back to the HTML's quote container."""
    plain = html_to_text(GMAIL_HTML.replace("On Mon, Nov 2, 2026 at 9:30 AM", "Somebody"))
    html = GMAIL_HTML.replace("On Mon, Nov 2, 2026 at 9:30 AM", "Somebody")
    assert extract_reply(plain, html) == NEW


def test_outlook_original_message_separator() -> None:
    """Outlook's "-----Original Message-----" and the header block below it are cut."""
    assert extract_reply(OUTLOOK_PLAIN_ORIGINAL) == NEW


@pytest.mark.parametrize("separator", ["-----Alkuperäinen viesti-----", "-----Originali žinutė-----",
                                       "-----Ursprüngliche Nachricht-----"])  # fmt: skip
def test_localised_outlook_separators(separator: str) -> None:
    """Finnish, Lithuanian and German Outlook separators cut like the English one."""
    assert extract_reply(OUTLOOK_PLAIN_ORIGINAL.replace("-----Original Message-----", separator)) == NEW


@pytest.mark.parametrize("language", sorted(OUTLOOK_LABELS))
def test_outlook_plain_header_block_with_underscores(language: str) -> None:
    """Outlook's underscore line and From/Sent/To/Subject block (localised) start the history."""
    assert extract_reply(outlook_plain(OUTLOOK_LABELS[language])) == NEW


@pytest.mark.parametrize("language", sorted(OUTLOOK_LABELS))
def test_outlook_html_only_reply(language: str) -> None:
    """An HTML-only Outlook reply is cut at appendonsend / divRplyFwdMsg."""
    assert extract_reply("", outlook_html(OUTLOOK_LABELS[language])) == NEW


@pytest.mark.parametrize("language", sorted(OUTLOOK_LABELS))
def test_outlook_html_rendered_without_its_markers(language: str) -> None:
    """HTML whose ids were sanitised away still cuts at the rendered From:/Sent: block."""
    rendered = html_to_text(outlook_html(OUTLOOK_LABELS[language]))
    assert extract_reply(rendered) == NEW


def test_outlook_desktop_word_html() -> None:
    """Outlook desktop's Word HTML (a bordered div, MsoNormal paragraphs) cuts at the header block."""
    html = (
        '<div class="WordSection1"><p class="MsoNormal">Fixed on our side.<o:p></o:p></p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
        '<p class="MsoNormal"><b>From:</b> Alice Customer &lt;alice@customer.example&gt;<br>'
        "<b>Sent:</b> Monday, November 2, 2026 9:30 AM<br><b>To:</b> Support &lt;support@example.com&gt;<br>"
        "<b>Subject:</b> Printer</p></div><p class=MsoNormal>Hello</p></div>"
    )
    assert extract_reply("", html) == "Fixed on our side."


def test_thunderbird_plain_and_html() -> None:
    """Thunderbird's attribution line (plain) and moz-cite-prefix/blockquote (HTML) start the history."""
    assert extract_reply(THUNDERBIRD_PLAIN) == NEW
    assert extract_reply("", THUNDERBIRD_HTML) == NEW


def test_apple_mail_plain_and_html() -> None:
    """Apple Mail quotes its attribution too: the trailing "> " run and blockquote type=cite go."""
    assert extract_reply(APPLE_PLAIN) == NEW
    assert extract_reply("", APPLE_HTML) == NEW


@pytest.mark.parametrize(
    ("signature", "attribution"),
    [
        ("Sent from my iPhone", "On 2 Nov 2026, at 9.30, Acme Support <support@example.com> wrote:"),
        ("Lähetetty iPhonesta", "Acme Support <support@example.com> kirjoitti 2.11.2026 kello 9.30:"),
        ("Išsiųsta iš mano iPhone", "2026-11-02, 09:30, Acme Support <support@example.com> rašė:"),
    ],
)
def test_iphone_reply(signature: str, attribution: str) -> None:
    """iPhone mail: the sign-off and the quoted attribution below it are both cut."""
    text = f"Yes, it works now.\n\n{signature}\n\n> {attribution}\n>\n> Please try again.\n"
    assert extract_reply(text) == "Yes, it works now."


@pytest.mark.parametrize(
    "attribution",
    [
        "Am Mo., 2. Nov. 2026 um 09:30 Uhr schrieb Alice Customer <alice@customer.example>:",
        "Le lun. 2 nov. 2026 à 09:30, Alice Customer <alice@customer.example> a écrit :",
        "El lun, 2 nov 2026 a las 9:30, Alice Customer (<alice@customer.example>) escribió:",
        "ma 2.11.2026 klo 9.30 Alice Customer <alice@customer.example> kirjoitti:",
        "2026-11-02, pr, 09:30 Alice Customer <alice@customer.example> rašė:",
    ],
)
def test_localised_attributions(attribution: str) -> None:
    """German, French, Spanish, Finnish and Lithuanian Gmail attributions cut like the English one."""
    assert extract_reply(f"{NEW}\n\n{attribution}\n\n> Hello\n") == NEW


@pytest.mark.parametrize("language", sorted(REPLY_ABOVE))
def test_own_reply_above_marker(language: str) -> None:
    """Our own "reply above this line" marker, in every language, cuts even when unquoted."""
    text = f"{NEW}\n\n{REPLY_ABOVE[language]}\nTicket 1000 is now answered.\n"
    assert extract_reply(text) == NEW


def test_signature_delimiter_is_cut() -> None:
    """The RFC 3676 "-- " line and what follows it are a signature."""
    assert extract_reply("Restart it, please.\n\n-- \nAgnes Agent\nAcme Support\n+358 40 123") == "Restart it, please."


def test_signature_alone_is_kept_rather_than_nothing() -> None:
    """A message that is only a signature-looking line is still returned, not emptied."""
    assert extract_reply("Sent from my iPhone") == "Sent from my iPhone"
    assert extract_reply("-- \nAgnes") == "--\nAgnes"


def test_only_quoted_history_gives_empty_text() -> None:
    """A reply with no new text at all extracts to ""."""
    assert extract_reply("> Hello,\n> the printer is on fire.\n") == ""


def test_bottom_posted_reply_is_found_below_the_quote() -> None:
    """A reply written under the quote (bottom-posting) keeps the unquoted lines."""
    text = "On Mon, Nov 2, 2026 at 9:30 AM Alice <alice@customer.example> wrote:\n> Is it fixed?\n\nYes, since 10:00.\n"
    assert extract_reply(text) == "Yes, since 10:00."


def test_prose_that_resembles_markers_is_kept() -> None:
    """'wrote:' in prose without a date, address or quote, and a lone 'From:' line, are text."""
    text = "My colleague wrote:\nplease check the logs.\nFrom: the manual, page 3.\nTo: be done."
    assert extract_reply(text) == text


def test_inline_quotes_in_the_middle_are_kept() -> None:
    """Interleaved answers are not cut; only a trailing run of quoted lines goes."""
    text = "> Is it on?\nYes.\n> Since when?\nSince Monday.\n\n> thanks\n> Alice"
    assert extract_reply(text) == "> Is it on?\nYes.\n> Since when?\nSince Monday."


def test_crlf_line_endings() -> None:
    """Text with CRLF line endings is handled like LF text."""
    assert extract_reply(GMAIL_PLAIN.replace("\n", "\r\n")) == NEW


def test_header_block_needs_sender_date_and_recipient_or_subject() -> None:
    """A From line alone is no header block; From, Sent and Subject together are."""
    assert header_block_end(["From: Alice", "Thanks"], 0) is None
    assert header_block_end(["From: Alice", "Sent: today", "Subject: x", "", "body"], 0) == 3
    assert find_quote_start(["hi", "", "Subject: x", "Date: y", "From: z", "To: w"]) == 2


def test_hostile_input_stays_fast() -> None:
    """Huge lines, many header-like lines and many HTML tags are processed in linear time."""
    started = time.perf_counter()
    extract_reply("On " + "a " * 500_000 + "wrote:\n" + "From: x\n" * 100_000)
    extract_reply("", '<div class="' + "x" * 500_000 + '">' + "<div class=a>" * 100_000)
    extract_reply("", "<div " + "class=" * 200_000 + ">")
    assert time.perf_counter() - started < 5


def test_forward_keeps_only_the_agents_comment() -> None:
    """For a forwarded mail the text above the forward separator (where #ack goes) is the reply."""
    text = (
        "#ack\nCustomer called too.\n\n---------- Forwarded message ---------\nFrom: Alice <alice@customer.example>\n"
    )
    assert extract_reply(text) == "#ack\nCustomer called too."


def test_attribution_scan_is_linear_on_hostile_lines() -> None:
    """Thousands of long lines that look almost like attributions are scanned quickly."""
    started = time.perf_counter()
    for line in ("kirjoitti " * 49 + ":", "on" + " x" * 240 + ":", "x " * 240 + "wrote:", "am" + " schrieb" * 60 + ":"):
        extract_reply("\n".join([line] * 5_000))
    assert time.perf_counter() - started < 3
