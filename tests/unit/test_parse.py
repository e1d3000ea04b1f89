"""parse_message: raw bytes to ParsedMessage, with hostile and broken mail handled safely."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import struct
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailgate.domain.message import Address, ParsedMessage, Sender
from mailgate.errors import MessageRejected, PermanentFailure
from mailgate.mail.limits import ParseLimits
from mailgate.mail.parse import parse_message
from tests.unit.test_attachments import tnef_blob
from tests.unit.test_limits import HOSTILE

DATA = Path(__file__).parents[1] / "data" / "mail"
HEAD = (
    "From: Alice <alice@customer.example>\nTo: support@example.com\nSubject: test\nMessage-ID: <t1@customer.example>\n"
)


def crlf(text: str) -> bytes:
    """A message written with LF in the test, sent with CRLF as on the wire."""
    return text.replace("\n", "\r\n").encode("utf-8")


def multipart(*parts: str, head: str = HEAD, boundary: str = "b") -> bytes:
    body = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return crlf(
        f'{head}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{boundary}"\n\n{body}--{boundary}--\n'
    )


def attachment(name_params: str, content_type: str, data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return (
        f"Content-Type: {content_type}\nContent-Disposition: attachment; {name_params}\n"
        f"Content-Transfer-Encoding: base64\n\n{encoded}"
    )


def parse(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    return parse_message(raw, limits or ParseLimits())


def test_finnish_and_lithuanian_subjects_decode() -> None:
    """B and Q encoded words in Finnish and Lithuanian, mixed with plain words, keep their spaces."""
    message = parse((DATA / "finnish_lithuanian.eml").read_bytes())
    assert message.subject == "Re: užsakymą 68613 ja päiväys – käyttäjän tilaus"
    assert message.sender == Sender(Address("jyrki.makela@asiakas.example", "Jyrki Mäkelä"))
    assert message.cc == (Address("rasa@klientas.example", "Rasa Žemaitė"),)
    assert message.text_body == "Hei, tilaukseni numero 68613 on vielä kesken. Ačiū."
    assert message.language == "fi"


def test_the_space_after_an_encoded_word_survives() -> None:
    """The subject =?utf-8?q?u=C5=BEsakym=C4=85?= 68613 decodes to "užsakymą 68613", space included."""
    raw = crlf("From: a@b.example\nSubject: =?utf-8?q?u=C5=BEsakym=C4=85?= 68613\n\nx\n")
    assert parse(raw).subject == "užsakymą 68613"


def test_references_and_in_reply_to_are_parsed() -> None:
    """References keep order without duplicates; In-Reply-To is read the same way."""
    message = parse((DATA / "finnish_lithuanian.eml").read_bytes())
    assert message.references == ("ticket-1042@example.com", "20250301.7@asiakas.example")
    assert message.in_reply_to == ("ticket-1042@example.com",)


def test_date_is_timezone_aware() -> None:
    """The Date header becomes an aware datetime; "-0000" is read as UTC; junk as None."""
    message = parse((DATA / "finnish_lithuanian.eml").read_bytes())
    assert message.date == datetime(2025, 3, 3, 10, 15, tzinfo=timezone(timedelta(hours=2)))
    utc = parse(crlf("From: a@b.example\nDate: Mon, 3 Mar 2025 08:00:00 -0000\n\nx"))
    assert utc.date == datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
    broken = parse(crlf("From: a@b.example\nDate: next tuesday-ish\n\nx"))
    assert broken.date is None and "unparseable Date" in broken.defects


def test_unknown_body_charset_is_kept_as_text() -> None:
    """A body in an unknown charset decodes as UTF-8 with replacement characters, with a defect."""
    raw = crlf("From: a@b.example\nContent-Type: text/plain; charset=x-foo\n\nHello ") + b"\xc3\xa4 \xff world"
    message = parse(raw)
    assert message.text_body == "Hello ä \ufffd world"
    assert "unknown charset x-foo" in message.defects


def test_legacy_charset_body_decodes() -> None:
    """A body in a known legacy charset decodes in that charset."""
    raw = crlf("From: a@b.example\nContent-Type: text/plain; charset=iso-8859-1\n\n") + b"p\xe4iv\xe4"
    assert parse(raw).text_body == "päivä"


def test_html_only_mail_gets_a_text_body_and_safe_html() -> None:
    """An HTML-only mail gets a text rendering; its HTML is sanitised for display."""
    message = parse((DATA / "html_only.eml").read_bytes())
    assert message.text_body == "Tarjous & alennus\n\nKatso kampanja (https://shop.example/sale).\n\n- yksi\n- kaksi"
    assert message.html_body is not None
    assert "script" not in message.html_body and "track.shop.example" not in message.html_body
    assert "onload" not in message.html_body


def test_text_and_html_alternatives_prefer_the_text() -> None:
    """With both alternatives the text part is the text body and the HTML is kept sanitised."""
    raw = crlf(
        HEAD + 'Content-Type: multipart/alternative; boundary="a"\n\n--a\nContent-Type: text/plain\n\nplain words\n'
        "--a\nContent-Type: text/html\n\n<p>html <b>words</b></p>\n--a--\n"
    )
    message = parse(raw)
    assert message.text_body == "plain words"
    assert message.html_body == "<p>html <b>words</b></p>"


def test_missing_closing_boundary_parses_best_effort() -> None:
    """Broken nesting and a missing close delimiter still give the text and the attachment."""
    message = parse((DATA / "broken_mime.eml").read_bytes())
    assert message.text_body == "the text survives"
    assert [(a.filename, a.data) for a in message.attachments] == [("report.pdf", b"%PDF-1.4\n")]
    assert "MIME: close boundary not found" in message.defects


@pytest.mark.parametrize("seed", range(30))
def test_garbage_never_raises_anything_but_permanent_failure(seed: int) -> None:
    """Random bytes either parse best-effort or fail with PermanentFailure, never another error."""
    rng = random.Random(seed)
    pieces = [b"--b\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n", b"\r\n", b"=?utf-8?b?", b"\x00\xff"]
    raw = b"".join(rng.choice(pieces) if rng.random() < 0.3 else rng.randbytes(rng.randint(1, 40)) for _ in range(60))
    with contextlib.suppress(PermanentFailure):
        parse(raw)


def test_parser_crash_becomes_permanent_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A RecursionError inside the MIME parser is reported as PermanentFailure with a reason."""

    def explode(raw: bytes) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("mailgate.mail.parse.mailparser.parse_from_bytes", explode)
    with pytest.raises(PermanentFailure, match="cannot parse MIME structure: RecursionError"):
        parse(crlf("From: a@b.example\n\nx"))


def test_mail_parser_failure_falls_back_to_the_stdlib() -> None:
    """Where mail-parser crashes (a message/rfc822 top level with a broken multipart), the stdlib reads it."""
    raw = crlf(
        "From: a@b.example\nContent-Type: message/rfc822\n\nFrom: x@y.example\n"
        "Content-Type: multipart/mixed; boundary=q\n\nno start boundary\n"
    )
    message = parse(raw)
    assert message.sender.trusted
    assert any(defect.startswith("mail-parser failed") for defect in message.defects)


def test_no_from_header() -> None:
    """Mail without From has no sender address and records the defect."""
    message = parse(crlf("To: support@example.com\nSubject: x\n\nbody"))
    assert message.sender == Sender(None, "no From header")
    assert "missing From" in message.defects


def test_two_from_headers() -> None:
    """Two From headers leave the sender unknown."""
    message = parse(crlf("From: a@x.example\nFrom: b@y.example\n\nbody"))
    assert message.sender == Sender(None, "2 From headers")
    assert "multiple From headers" in message.defects


def test_several_mailboxes_in_from() -> None:
    """Several mailboxes in From leave the sender unknown."""
    assert parse(crlf("From: a@x.example, b@y.example\n\nbody")).sender == Sender(None, "several mailboxes in From")


def test_cve_2023_27043_from_is_not_alice() -> None:
    """The parseaddr confusion form yields no sender rather than alice."""
    message = parse(crlf("From: alice@example.org)<bob@evil.example>\n\nbody"))
    assert message.sender == Sender(None, "malformed From address")


def test_address_in_display_name_is_not_trusted() -> None:
    """A display name showing another address keeps the real one, untrusted."""
    message = parse(crlf('From: "agent@corp.example" <mallory@evil.example>\n\nbody'))
    assert message.sender.address == Address("mallory@evil.example", "agent@corp.example")
    assert message.sender.problem == "address hidden in display name"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_mail_is_rejected_within_a_second(name: str) -> None:
    """10,000-deep nesting, 100,000 parts, 50,000 addresses and a 1 MB header are refused fast."""
    build, _ = HOSTILE[name]
    raw = build()
    started = time.perf_counter()
    with pytest.raises(MessageRejected):
        parse(raw)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ('filename="../../etc/x"', "x"),
        ('filename="evil\u202efdp.exe"', "evilfdp.exe"),
        ("filename*=UTF-8''..%2F..%2Fevil%00.txt", "evil.txt"),
        ('filename="=?utf-8?b?UMOkaXbDpC5wZGY=?="', "Päivä.pdf"),
        ("filename*=utf-8''%C5%BDemait%C4%97.txt", "Žemaitė.txt"),
    ],
)
def test_attachment_names_are_sanitised(params: str, expected: str) -> None:
    """Traversal, bidi overrides, NUL and encoded names come out as safe plain names."""
    raw = multipart("Content-Type: text/plain\n\nhi", attachment(params, "application/octet-stream", b"data"))
    (found,) = parse(raw).attachments
    assert found.filename == expected and found.data == b"data"


def test_raw_utf8_attachment_name_is_read_as_utf8() -> None:
    """An unencoded UTF-8 file name (RFC 6532) is not garbled into replacement characters."""
    raw = multipart(attachment('filename="päivä.txt"', "text/plain", b"x"))
    assert parse(raw).attachments[0].filename == "päivä.txt"


def test_unnamed_attachment_gets_a_fallback_name() -> None:
    """Without a name, the attachment is called attachment-N plus an extension for its type."""
    raw = multipart("Content-Type: text/plain\n\nhi", "Content-Type: image/png\nContent-ID: <logo@x>\n\nPNG")
    (found,) = parse(raw).attachments
    assert (found.filename, found.content_type, found.content_id, found.inline) == (
        "attachment-1.png",
        "image/png",
        "logo@x",
        True,
    )


def test_attachment_metadata_and_hash() -> None:
    """Bytes are decoded from base64, the type lower-cased and the SHA-256 computed."""
    raw = multipart(attachment('filename="Report.PDF"', "Application/PDF", b"%PDF-1.4"))
    (found,) = parse(raw).attachments
    assert found.content_type == "application/pdf" and found.sha256 == hashlib.sha256(b"%PDF-1.4").hexdigest()


def test_zip_attachment_is_kept_opaque() -> None:
    """A zip archive is one attachment with its exact bytes; it is never opened."""
    archive = b"PK\x03\x04" + bytes(range(40)) + b"PK\x05\x06" + b"\x00" * 18
    raw = multipart(
        "Content-Type: text/plain\n\nsee zip", attachment('filename="logs.zip"', "application/zip", archive)
    )
    (found,) = parse(raw).attachments
    assert (found.filename, found.content_type, found.data) == ("logs.zip", "application/zip", archive)


def test_winmail_dat_is_replaced_by_its_files() -> None:
    """An Outlook winmail.dat is unpacked into the attachments it carries."""
    blob = tnef_blob([("Quarterly report.pdf", b"%PDF-1.4 q"), ("notes.txt", b"notes")])
    raw = multipart("Content-Type: text/plain\n\nhi", attachment('filename="winmail.dat"', "application/ms-tnef", blob))
    found = parse(raw).attachments
    assert [(a.filename, a.content_type, a.data) for a in found] == [
        ("Quarterly report.pdf", "application/pdf", b"%PDF-1.4 q"),
        ("notes.txt", "text/plain", b"notes"),
    ]


def test_unparseable_winmail_dat_is_kept_as_it_is() -> None:
    """A winmail.dat that does not unpack stays a regular attachment, with a defect."""
    raw = multipart(attachment('filename="winmail.dat"', "application/ms-tnef", b"not tnef at all"))
    message = parse(raw)
    assert [(a.filename, a.data) for a in message.attachments] == [("winmail.dat", b"not tnef at all")]
    assert "winmail.dat kept as it is (not unpackable)" in message.defects


def test_attached_message_is_one_eml_attachment() -> None:
    """A forwarded message/rfc822 attachment is kept whole as one .eml file."""
    inner = "Content-Type: message/rfc822\nContent-Disposition: attachment\n\nFrom: x@y.example\nSubject: fw\n\ninner"
    raw = multipart("Content-Type: text/plain\n\nsee attached", inner)
    (found,) = parse(raw).attachments
    assert found.filename == "attachment-1.eml" and b"Subject: fw" in found.data


def test_too_many_attachments_are_rejected() -> None:
    """More attachments than max_attachments refuse the message."""
    raw = multipart(*[attachment(f'filename="f{i}.txt"', "text/plain", b"x") for i in range(6)])
    with pytest.raises(MessageRejected, match="more than 5 attachments"):
        parse(raw, ParseLimits(max_attachments=5))


def test_internal_headers_are_stripped() -> None:
    """X-Mailgate-* headers from outside never appear in the parsed headers."""
    raw = crlf("From: a@b.example\nX-Mailgate-Ticket: 1042\nx-mailgate-loop: abc\nX-Other: kept\n\nbody")
    headers = parse(raw).headers
    assert "x-other" in headers
    assert not [name for name in headers if name.startswith("x-mailgate")]


def test_headers_are_decoded_and_cannot_inject_lines() -> None:
    """Header values are decoded, and an encoded CR LF turns into a space."""
    raw = crlf("From: a@b.example\nX-Note: =?utf-8?q?one=0D=0ABcc:_evil@x.example?=\n\nbody")
    message = parse(raw)
    assert message.header("X-Note") == ("one Bcc: evil@x.example",)


def test_missing_message_id_is_synthesised_from_the_bytes() -> None:
    """Without a Message-ID, the sha256 of the raw bytes @mailgate.invalid stands in, stable."""
    raw = crlf("From: a@b.example\nSubject: no id\n\nbody")
    first, second = parse(raw), parse(raw)
    assert first.message_id == f"{hashlib.sha256(raw).hexdigest()}@mailgate.invalid"
    assert first.message_id_synthetic and first.message_id == second.message_id
    assert "missing Message-ID" in first.defects


def test_empty_message_id_is_synthesised() -> None:
    """An empty or junk Message-ID header is treated as missing."""
    message = parse(crlf("From: a@b.example\nMessage-ID:   \n\nbody"))
    assert message.message_id_synthetic and "unusable Message-ID" in message.defects


def test_duplicate_message_id_uses_the_first() -> None:
    """With two Message-ID headers the first is used and the duplicate is recorded."""
    message = parse(crlf("From: a@b.example\nMessage-ID: <one@x>\nMessage-ID: <two@x>\n\nbody"))
    assert (message.message_id, message.message_id_synthetic) == ("one@x", False)
    assert "multiple Message-ID headers" in message.defects


def test_content_language_first_tag() -> None:
    """The language is the first tag of Content-Language, lower-cased; junk gives None."""
    assert parse(crlf("From: a@b.example\nContent-Language: LT, en\n\nx")).language == "lt"
    assert parse(crlf("From: a@b.example\nContent-Language: <script>\n\nx")).language is None


def test_body_loses_nul_and_keeps_line_structure() -> None:
    """NUL bytes are dropped and line ends normalised to LF."""
    raw = crlf("From: a@b.example\n\nline one\nline\x00 two\n")
    assert parse(raw).text_body == "line one\nline two"


def test_tnef_blob_builder_matches_tnefparse() -> None:
    """The test TNEF builder produces what tnefparse itself reads, so the TNEF tests are real."""
    from tnefparse import TNEF

    tnef = TNEF(tnef_blob([("a.txt", b"x")]))
    assert [(a.long_filename(), a.data) for a in tnef.attachments] == [("a.txt", b"x")]
    assert struct.unpack_from("<I", tnef_blob([]))[0] == 0x223E9F78
