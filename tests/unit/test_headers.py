"""Header helpers: sanitising, RFC 2047 decoding, Message-IDs and the strict sender parser."""

from __future__ import annotations

import random

import pytest

from mailgate.domain.message import Address, Sender
from mailgate.mail.headers import (
    MAX_HEADER_VALUE_CHARS,
    decode_header_value,
    parse_address_list,
    parse_message_ids,
    parse_sender,
    sanitize_header_value,
)


def test_sanitize_removes_line_breaks_and_controls() -> None:
    """CR, LF and tabs become spaces, NUL and other controls vanish, spaces collapse."""
    assert sanitize_header_value("a\r\nBcc: x@y\tz\x00\x07  end ") == "a Bcc: x@y z end"


def test_sanitize_removes_bidi_controls() -> None:
    """Bidi embeddings, overrides, isolates and marks are dropped (Trojan Source)."""
    text = "in\u202evoice\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f.pdf"
    assert sanitize_header_value(text) == "invoice.pdf"


def test_sanitize_caps_the_length() -> None:
    """Values are cut at max_len characters, by default eight RFC 5322 lines."""
    assert sanitize_header_value("x" * 10, 4) == "xxxx"
    assert len(sanitize_header_value("y" * 100_000)) == MAX_HEADER_VALUE_CHARS


def test_sanitize_replaces_lone_surrogates() -> None:
    """Lone surrogates from undecodable bytes become U+FFFD so the value stays valid UTF-8."""
    assert sanitize_header_value("a\udcff") == "a\ufffd"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("=?utf-8?q?u=C5=BEsakym=C4=85?= 68613", "užsakymą 68613"),
        ("Re: =?UTF-8?B?VcW+c2FreW1hcyBuci4=?= 68613 gautas", "Re: Užsakymas nr. 68613 gautas"),
        ("=?iso-8859-1?q?Hyv=E4=E4_p=E4iv=E4=E4?=", "Hyvää päivää"),
        ("=?utf-8?b?S2lpdG9zIHRpbGF1a3Nlc3Rh?= (tilaus 42)", "Kiitos tilauksesta (tilaus 42)"),
        ("=?utf-8?q?Ac=CC=8Ci=C5=AB?= =?utf-8?q?_labai?=", "Ac\u030ciū labai"),
        ("=?UTF-8*fi?Q?t=C3=A4m=C3=A4?= on", "tämä on"),
        ("plain ascii words", "plain ascii words"),
        ("Sääntö ilman koodausta", "Sääntö ilman koodausta"),
    ],
)
def test_rfc2047_words_decode_with_their_spaces(raw: str, decoded: str) -> None:
    """Finnish and Lithuanian B and Q words decode, and text after a word keeps its space."""
    assert decode_header_value(raw) == decoded


def test_folded_encoded_words_join_without_the_fold() -> None:
    """Folding whitespace between two encoded words is not part of the text (RFC 2047 6.2)."""
    assert decode_header_value("=?utf-8?q?Hyv=C3=A4?=\r\n =?utf-8?q?=C3=A4?=") == "Hyvää"


def test_unknown_charset_keeps_the_raw_text() -> None:
    """An encoded word in a charset nobody knows leaves the header as it was."""
    assert decode_header_value("=?x-unknown?q?abc?= tail") == "=?x-unknown?q?abc?= tail"


def test_broken_encoded_word_keeps_the_raw_text() -> None:
    """An encoded word whose base64 does not decode leaves the header as it was."""
    assert decode_header_value("=?utf-8?b?@@@?= x") == "=?utf-8?b?@@@?= x"


def test_message_ids_are_stripped_deduplicated_and_ordered() -> None:
    """Brackets and folding whitespace go, duplicates go, order stays."""
    value = "<a@x>\r\n <b@\r\n x> junk <a@x> (comment) <>"
    assert parse_message_ids(value) == ("a@x", "b@x")


def test_message_ids_without_brackets_are_tolerated() -> None:
    """A bare id-left@id-right without brackets is still read."""
    assert parse_message_ids("abc@host.example") == ("abc@host.example",)


def test_message_ids_are_capped_at_100() -> None:
    """At most 100 ids are kept from a long References header."""
    value = " ".join(f"<{i}@x>" for i in range(500))
    ids = parse_message_ids(value)
    assert len(ids) == 100 and ids[0] == "0@x" and ids[-1] == "99@x"


@pytest.mark.parametrize("value", [None, "", "junk without ids", "<<<>>>", "<\x00>"])
def test_message_id_junk_gives_nothing(value: str | None) -> None:
    """Headers without any usable id give an empty tuple."""
    assert parse_message_ids(value) == ()


def test_sender_without_from_header() -> None:
    """No From header gives no address and says so."""
    assert parse_sender([]) == Sender(None, "no From header")


def test_sender_with_two_from_headers() -> None:
    """Two From headers make the author ambiguous."""
    assert parse_sender(["a@x.example", "b@y.example"]) == Sender(None, "2 From headers")


@pytest.mark.parametrize(
    "value", ["a@x.example, b@y.example", '"A" <a@x.example>, "B" <b@y.example>', "a@x.example,b@y.example,c@z.example"]
)
def test_sender_with_several_mailboxes(value: str) -> None:
    """Several mailboxes in one From header make the author ambiguous."""
    assert parse_sender([value]) == Sender(None, "several mailboxes in From")


def test_cve_2023_27043_form_is_refused() -> None:
    """The form on which parseaddr returns alice is refused, not read as anyone."""
    assert parse_sender(["alice@example.org)<bob@evil.example>"]) == Sender(None, "malformed From address")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "alice",
        "alice@",
        "@example.org",
        "alice@@example.org",
        "alice@example..org",
        "alice@-example.org",
        "alice@[192.0.2.1]",
        "alice @example.org",
        "alice(x)@example.org",
        "alice@example.org <bob@evil.example>",
        "<alice@example.org",
        "Alice <alice@example.org> extra",
        "Alice <alice@example.org> <bob@evil.example>",
        '"unterminated <alice@example.org>',
        "(unterminated comment alice@example.org",
        "group: alice@example.org;",
        "<@route.example:alice@example.org>",
        '"alice@example.org"@evil.example',
        "al\x00ice@example.org",
        "al\u202eice@example.org",
        "a" * 65 + "@example.org",
        "alice@" + "d" * 250 + ".org",
    ],
)
def test_malformed_from_addresses_are_refused(value: str) -> None:
    """Anything but exactly one well-formed mailbox gives no address."""
    assert parse_sender([value]) == Sender(None, "malformed From address")


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("Alice@Example.ORG", Address("alice@example.org")),
        ("alice@example.org (Alice Liddell)", Address("alice@example.org")),
        ("Alice Liddell <alice@example.org>", Address("alice@example.org", "Alice Liddell")),
        ('"Liddell, Alice" <alice@example.org>', Address("alice@example.org", "Liddell, Alice")),
        ("John Q. Public <jqp@example.org>", Address("jqp@example.org", "John Q. Public")),
        (
            "=?utf-8?q?Jyrki_M=C3=A4kel=C3=A4?= <jyrki@asiakas.example>",
            Address("jyrki@asiakas.example", "Jyrki Mäkelä"),
        ),
        ("<first.last+tag@sub.example.org>", Address("first.last+tag@sub.example.org")),
        ('"first.last"@example.org', Address("first.last@example.org")),
        ('"john doe"@example.org', Address('"john doe"@example.org')),
        ("Müller <müller@bücher.example>", Address("müller@bücher.example", "Müller")),
        ("Rasa <rasa@xn--bcher-kva.example>", Address("rasa@xn--bcher-kva.example", "Rasa")),
    ],
)
def test_well_formed_senders_are_trusted(value: str, address: Address) -> None:
    """One well-formed mailbox is read, lower-cased, with its decoded display name."""
    sender = parse_sender([value])
    assert sender == Sender(address) and sender.trusted


@pytest.mark.parametrize(
    "value",
    [
        '"agent@corp.example" <mallory@evil.example>',
        '"agent@corp.example via Support" <mallory@evil.example>',
        '"agent\uff20corp.example" <mallory@evil.example>',
        "=?utf-8?q?agent=40corp=2Eexample?= <mallory@evil.example>",
    ],
)
def test_address_hidden_in_display_name_is_flagged(value: str) -> None:
    """A display name showing another address keeps the real address but is not trusted."""
    sender = parse_sender([value])
    assert sender.address is not None and sender.address.email == "mallory@evil.example"
    assert sender.problem == "address hidden in display name" and not sender.trusted


def test_display_name_repeating_the_real_address_is_fine() -> None:
    """A display name equal to the real address is not a disguise."""
    assert parse_sender(['"alice@example.org" <Alice@example.org>']).trusted


def test_address_list_is_lenient_and_skips_invalid_entries() -> None:
    """Invalid entries are skipped, groups are opened, duplicates dropped, names decoded."""
    values = [
        'Team: "Doe, Jane" <jane@x.example>, bob@y.example;, not an address, bob@Y.example',
        "undisclosed-recipients:;",
        "=?utf-8?b?UmFzYSDFvWVtYWl0xJc=?= <rasa@klientas.example>",
        "broken <<junk>> <carol@z.example>",
    ]
    assert parse_address_list(values, 10) == (
        Address("jane@x.example", "Doe, Jane"),
        Address("bob@y.example"),
        Address("rasa@klientas.example", "Rasa Žemaitė"),
        Address("carol@z.example"),
    )


def test_address_list_respects_the_limit() -> None:
    """No more than `limit` addresses are returned."""
    value = ", ".join(f"u{i}@x.example" for i in range(50))
    assert len(parse_address_list([value], 7)) == 7
    assert parse_address_list([value], 0) == ()


def test_address_list_never_raises_on_junk() -> None:
    """Random junk gives some (possibly empty) list and never an exception."""
    rng = random.Random(7)
    alphabet = '<>@,;:"()\\. \t\r\nab\x00\u202e=?'
    for _ in range(2000):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert isinstance(parse_address_list([junk], 100), tuple)
        assert isinstance(parse_sender([junk]), Sender)
