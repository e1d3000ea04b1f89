"""Composing outgoing mail: headers, threading, no injection."""

from __future__ import annotations

import base64
import quopri
import re
import secrets
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from mailgate.domain.message import Address
from mailgate.mail.compose import MAX_REFERENCES, OutgoingAttachment, OutgoingMail, compose, trim_references
from mailgate.mail.headers import decode_header_value, sanitize_header_value, unfold


def build(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "sender": Address("support@example.com", "Acme Support"),
        "to": Address("alice@customer.example", "Alice"),
        "subject": "[Acme Support #1] Hello",
        "text": "Body\n",
        "message_id": "mg.1.aa.bbbbbbbbbbbbbbbb@example.com",
        "loop_token": "example.com",
        "automatic": "auto-replied",
    }
    values.update(overrides)
    return compose(OutgoingMail(**values), datetime(2026, 11, 26, tzinfo=UTC))  # type: ignore[arg-type]


def test_headers_carry_threading_and_loop_markers() -> None:
    """Message-ID, In-Reply-To, References, Auto-Submitted and the loop header are all set."""
    message = message_from_bytes(
        build(in_reply_to="c1@x", references=("c1@x", "ticket-1@example.com")), policy=policy.default
    )
    assert message["Message-ID"] == "<mg.1.aa.bbbbbbbbbbbbbbbb@example.com>"
    assert message["In-Reply-To"] == "<c1@x>"
    assert message["References"] == "<c1@x> <ticket-1@example.com>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["X-Mailgate-Loop"] == "example.com"


def test_crlf_in_subject_and_names_cannot_inject_headers() -> None:
    """CR/LF from a customer's subject or display name are flattened, never a new header."""
    raw = build(subject="hi\r\nBcc: victim@evil.example", to=Address("a@b.example", "Eve\r\nBcc: x@y.example"))
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in raw


def test_references_keep_the_root_and_the_newest() -> None:
    """Long chains are trimmed to the first and the most recent ids."""
    ids = tuple(f"m{i}@x" for i in range(30))
    trimmed = trim_references(ids)
    assert len(trimmed) == MAX_REFERENCES and trimmed[0] == "m0@x" and trimmed[-1] == "m29@x"


# --- the byte-building composer ------------------------------------------------------------------

CONTROLS = ["\r\n", "\r", "\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1b"]
EXPECTED_FIELDS = [
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Mailgate-Loop",
    "Content-Language",
    "MIME-Version",
    "Content-Type",
]


def read(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def field_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in (" ", "\t")]


def test_fields_come_in_the_documented_order() -> None:
    """From ... X-Mailgate-Loop, Content-Language, then MIME-Version and Content-Type."""
    raw = build(
        cc=(Address("c@x.example", "C"),),
        reply_to=Address("support@example.com", "Acme"),
        in_reply_to="c1@x",
        references=("c1@x",),
        language="fi",
        html="<p>x</p>",
    )
    assert field_names(raw) == EXPECTED_FIELDS
    assert str(read(raw)["Content-Language"]) == "fi"


@pytest.mark.parametrize("control", CONTROLS)
def test_no_customer_value_can_start_a_header_line_or_a_part(control: str) -> None:
    """Controls and line separators in every customer value leave one field per value and no extra part."""
    evil = f"x{control}Bcc: victim@evil.example{control}{control}--=_x{control}Content-Type: text/html"
    raw = build(
        subject=evil,
        to=Address(f"a{control}Bcc: v@customer.example", evil),
        cc=(Address("c@x.example", evil),),
        reply_to=Address("support@example.com", evil),
        message_id=f"id{control}X-Evil: 1@example.com",
        in_reply_to=evil,
        references=(evil, "ok@x"),
        loop_token=evil,
        language=f"fi{control}X-Evil: 1",
        attachments=(OutgoingAttachment(evil, "text/plain", b"data"),),
    )
    assert field_names(raw) == EXPECTED_FIELDS
    message = read(raw)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert [p.get_content_type() for p in message.walk()] == ["multipart/mixed", "text/plain", "text/plain"]
    assert b"\r\nBcc" not in raw and b"\r\nX-Evil" not in raw
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == evil  # RFC 2231 carries the name exactly, controls and all
    for line in raw.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line and b"\x00" not in line


@pytest.mark.parametrize(
    "literal", ["=?utf-8?q?x?=", "=?utf-8?b?eA==?= and more", "a=?utf-8?q?x?=b", "=?iso-8859-1?q?=E4?="]
)
def test_text_that_looks_like_an_encoded_word_reads_back_literally(literal: str) -> None:
    """ASCII "=?...?=" in a subject or a display name is encoded, so readers do not decode it."""
    raw = build(subject=literal, to=Address("a@b.example", literal))
    message = read(raw)
    assert str(message["Subject"]) == literal
    assert message["To"].addresses[0].display_name == literal
    assert decode_header_value(unfold(raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\nDate:")[0].decode())) == literal


@pytest.mark.parametrize(
    ("subject", "longest_word"),
    [
        ("[Acme Support #1042] Tulostin ei toimi – paperi jumissa käytävän päässä, kiitos", 75),
        ("Užsakymas Nr. 68613 – prašau grąžinti pinigus už nepristatytą prekę " * 4, 75),
        ("打印机着火了" * 40, 75),
        ("😀" * 100, 75),
    ],
    ids=["finnish", "lithuanian", "cjk", "emoji"],
)
def test_encoded_words_hold_whole_characters_and_fit_the_limits(subject: str, longest_word: int) -> None:
    """Each encoded word decodes to valid UTF-8 on its own, is at most 75 long; lines stay <= 78."""
    raw = build(subject=subject)
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    subject_lines = head.split("\r\nSubject:", 1)[1].split("\r\nDate:", 1)[0].split("\r\n")
    assert all(len(line) <= 78 - len("Subject:") for line in subject_lines[:1])
    assert all(len(line) <= 78 for line in subject_lines)
    words = re.findall(r"=\?utf-8\?([qb])\?([^?]*)\?=", head)
    assert words
    for kind, text in words:
        assert len(text) + len("=?utf-8?q??=") <= longest_word
        data = base64.b64decode(text) if kind == "b" else quopri.decodestring(text.replace("_", " "), header=True)
        data.decode("utf-8")  # raises on a character split between two words
    assert str(read(raw)["Subject"]) == sanitize_header_value(subject, 500)


def test_addr_spec_is_never_encoded() -> None:
    """A non-ASCII mailbox is written as raw UTF-8 (RFC 6532), the display name as encoded words."""
    raw = build(to=Address("jöhn@bücher.example", "Jöhn"))
    to_line = raw.split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
    assert re.fullmatch(rb"=\?utf-8\?[qb]\?[^?]+\?= <j\xc3\xb6hn@b\xc3\xbccher\.example>", to_line)
    assert read(raw)["To"].addresses[0].display_name == "Jöhn"


def test_a_quoted_local_part_is_written_once() -> None:
    """ "john doe"@example.com stays that mailbox (the stdlib quoted it a second time)."""
    raw = build(to=Address('"john doe"@example.com', "J"))
    assert b'To: J <"john doe"@example.com>\r\n' in raw
    assert read(raw)["To"].addresses[0].username == "john doe"


def test_a_long_display_name_with_commas_stays_one_mailbox() -> None:
    """The quoted string is folded at its spaces and keeps its quotes (the stdlib lost them)."""
    name = "Smith, John " * 20
    raw = build(to=Address("a@b.example", name))
    addresses = read(raw)["To"].addresses
    assert len(addresses) == 1 and addresses[0].display_name == sanitize_header_value(name, 200)
    assert max(len(line) for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")) <= 78


def test_a_domain_that_is_not_a_domain_is_refused() -> None:
    """Specials in the domain part would make a header name other mailboxes: composing raises."""
    with pytest.raises(ValueError, match="not a mail domain"):
        build(to=Address("a@b.example>, Bcc <evil@x.example", "A"))


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Hello\nworld\n", "7bit"),
        ("", "7bit"),
        ("x" * 998, "7bit"),
        ("x" * 999, "quoted-printable"),
        ("Kiitos viestistä\n", "quoted-printable"),
        ("tab\tand form feed\x0c\n", "quoted-printable"),
        ("NUL\x00\n", "quoted-printable"),
    ],
)
def test_body_is_7bit_only_when_it_can_be(text: str, encoding: str) -> None:
    """7bit for printable ASCII in lines <= 998 octets, otherwise quoted-printable; same text read back."""
    raw = build(text=text)
    message = read(raw)
    assert message["Content-Transfer-Encoding"] == encoding
    assert message.get_content_charset() == "utf-8"
    # As set_content() did: bytes.splitlines() (CR, LF, CRLF only), CRLF after each line, at least one.
    expected = b"".join(line + b"\r\n" for line in text.encode().splitlines()) or b"\r\n"
    assert message.get_content() == expected.decode()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_boundary_found_in_a_part_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A boundary that occurs in the content is drawn again."""
    tokens = iter(["0" * 32, "1" * 32, "2" * 32])
    monkeypatch.setattr(secrets, "token_hex", lambda _: next(tokens))
    raw = build(text="a line with =_" + "0" * 32 + " in it\n", html="<p>x</p>")
    message = read(raw)
    assert message.get_boundary() == "=_" + "1" * 32
    assert message.get_body(("plain",)).get_content() == "a line with =_" + "0" * 32 + " in it\r\n"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("filename", "raw_parameter"),
    [
        ("report.pdf", b'filename="report.pdf"'),
        ('q"u\\o.txt', b'filename="q\\"u\\\\o.txt"'),
        ("lasku-ÄÖ.pdf", b"filename*=utf-8''lasku-%C3%84%C3%96.pdf"),
        ("a\r\nb.txt", b"filename*=utf-8''a%0D%0Ab.txt"),
        ("", b'filename=""'),
    ],
)
def test_attachment_filenames(filename: str, raw_parameter: bytes) -> None:
    """Quoted for printable ASCII, RFC 2231 otherwise; get_filename() reads back the name exactly."""
    raw = build(attachments=(OutgoingAttachment(filename, "application/pdf", b"%PDF"),))
    assert raw_parameter in raw
    assert next(read(raw).iter_attachments()).get_filename() == filename


def test_a_filename_longer_than_a_line_is_cut_into_rfc2231_sections() -> None:
    """No line passes 998 octets; the sections read back as the name."""
    filename = "ä" * 400 + ".bin"
    raw = build(attachments=(OutgoingAttachment(filename, "application/octet-stream", b"x"),))
    assert b"filename*0*=utf-8''" in raw and b"filename*1*=" in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert next(read(raw).iter_attachments()).get_filename() == filename


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/pdf", "application/pdf"),
        ("", "application/octet-stream"),
        ("image", "image/octet-stream"),
        ("/png", "application/png"),
        ("image/", "image/octet-stream"),
        ("text/plain\r\nBcc: x@y", "application/octet-stream"),
        ("a b/c", "application/octet-stream"),
    ],
)
def test_attachment_content_types(content_type: str, expected: str) -> None:
    """As given; a missing half filled in; anything but two MIME tokens becomes octet-stream."""
    raw = build(attachments=(OutgoingAttachment("f", content_type, b"x"),))
    assert next(read(raw).iter_attachments()).get_content_type() == expected


def test_attachment_is_base64_in_76_character_lines_after_the_body() -> None:
    """multipart/mixed holds the alternative first, then the attachment, whose bytes read back."""
    data = bytes(range(256)) * 400
    raw = build(html="<p>x</p>", attachments=(OutgoingAttachment("a.bin", "application/octet-stream", data),))
    message = read(raw)
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "application/octet-stream",
    ]
    attachment = next(message.iter_attachments())
    assert attachment.get_content() == data
    lines = raw.split(b"Content-Disposition: attachment", 1)[1].split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    body_lines = lines[: lines.index(b"")]
    assert {len(line) for line in body_lines[:-1]} == {76} and len(body_lines[-1]) <= 76
