"""Subject tags and reply prefixes."""

from __future__ import annotations

import pytest

from mailgate.threading import clean_subject, find_subject_tag, format_subject_tag, strip_reply_prefixes


def test_tag_renders_with_name_and_number() -> None:
    """The default tag reads like `[Acme Support #1042]`."""
    assert format_subject_tag("Acme Support", 1042) == "[Acme Support #1042]"


@pytest.mark.parametrize(
    "subject",
    [
        "[Acme Support #1042] printer",
        "Re: [Acme Support #1042] printer",
        "AW: WG: [acme support #1042]",
        "VS: Re[2]: printer [Acme  Support # 1042 ]",
        "Ats: Odp: SV: [Acme Support #1042]",
        "回复: [Acme Support #1042] 打印机",
    ],
)
def test_our_tag_is_found_behind_any_prefixes(subject: str) -> None:
    """The tag is found wherever it stands, case- and spacing-tolerant."""
    assert find_subject_tag(subject, "Acme Support") == 1042


@pytest.mark.parametrize("subject", ["[Other Desk #1042] printer", "[Ticket#1042]", "Acme Support 1042", "#1042"])
def test_other_systems_tags_are_ignored(subject: str) -> None:
    """Only this desk's tag threads; another system's tag or a bare number does not."""
    assert find_subject_tag(subject, "Acme Support") is None


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: RE: Fwd: hello", "hello"),
        ("AW: WG: Rechnung", "Rechnung"),
        ("VS: VL: Tulostin", "Tulostin"),
        ("Ats: Pers: užsakymas", "užsakymas"),
        ("Odp: PD: faktura", "faktura"),
        ("Re[3]: Re(2): x", "x"),
        ("Réf : TR: facture", "facture"),
        ("Report: quarterly", "Report: quarterly"),
    ],
)
def test_reply_prefixes_are_stripped_in_many_languages(subject: str, expected: str) -> None:
    """Client prefixes in English, German, Nordic, Lithuanian, Polish and French are removed; words are not."""
    assert strip_reply_prefixes(subject) == expected


def test_clean_subject_drops_tag_and_prefixes() -> None:
    """A ticket title has neither our tag nor prefixes, even when a prefix follows the tag."""
    assert clean_subject("Re: [Acme Support #7] Re: Printer  broken", "Acme Support") == "Printer broken"
