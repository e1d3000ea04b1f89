"""Confirm-to-close: short thanks and confirmations in English, Finnish and Lithuanian, and what is not one."""

from __future__ import annotations

import pytest

from mailgate.rules.confirmation import is_confirmation


@pytest.mark.parametrize(
    "text",
    [
        "close", "Close it.", "Solved!", "resolved", "Fixed", "Works now :)", "Thanks, that fixed it.",
        "Thank you!", "All good.", "You can close this.", "Thanks a lot, works now!",
        "Thanks!\n\nAlice", "Thank you Anna!", "Thanks,\nBR, Alice Customer",
    ],
)  # fmt: skip
def test_english_confirmations(text: str) -> None:
    """English thanks and confirmations, with a greeting name or sign-off, confirm."""
    assert is_confirmation(text)


@pytest.mark.parametrize(
    "text",
    ["Kiitos!", "Ratkaistu.", "Toimii", "Toimii nyt, kiitos paljon!", "Tiketin voi sulkea.", "Asia selvä.",
     "Kiitos, se auttoi!", "KIITOS", "kiitos\nT. Matti", "Nyt toimii, kiitos Anna"],
)  # fmt: skip
def test_finnish_confirmations(text: str) -> None:
    """Finnish thanks and confirmations confirm."""
    assert is_confirmation(text)


@pytest.mark.parametrize(
    "text",
    ["Ačiū!", "Išspręsta", "Veikia", "Dabar veikia, ačiū.", "Galite uždaryti.", "Ačiū, padėjo!", "aciu, isspresta",
     "Labai ačiū!\nJonas"],
)  # fmt: skip
def test_lithuanian_confirmations(text: str) -> None:
    """Lithuanian thanks and confirmations confirm, with or without accents."""
    assert is_confirmation(text)


@pytest.mark.parametrize(
    "text",
    [
        "not fixed", "Still not working", "It doesn't work.", "Thanks, but it still crashes", "Don't close it",
        "ei toimi", "Ei vieläkään toimi.", "Kiitos, mutta ongelma jatkuu", "vis dar neveikia", "Neveikia",
        "Ačiū, bet dar neveikia", "Thanks\nCrashes Again",
    ],
)  # fmt: skip
def test_negations_do_not_confirm(text: str) -> None:
    """A negation or a 'but' in any of the three languages means the problem is not solved."""
    assert not is_confirmation(text)


@pytest.mark.parametrize(
    "text",
    ["Fixed?", "Why was it closed", "How do I close it, thanks", "Miksi tiketti suljettiin", "Miten tämä toimii",
     "Kodėl uždaryta", "Kaip uždaryti, ačiū", "Kiitos! Toimiiko tämä myös Macilla"],
)  # fmt: skip
def test_questions_do_not_confirm(text: str) -> None:
    """A question mark or a question word makes the reply a question, not a confirmation."""
    assert not is_confirmation(text)


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "Hello", "Thanks. I need another copy of the invoice.", "Thanks. Refund",
        "Thanks!\nline two\nline three\nline four", "thanks " * 40,
    ],
)  # fmt: skip
def test_other_replies_do_not_confirm(text: str) -> None:
    """Empty, unrelated, new-request, too long or too many lines: not a confirmation."""
    assert not is_confirmation(text)


def test_extra_phrases_are_configurable() -> None:
    """Configured phrases confirm as the built-in ones do, accent- and case-insensitively."""
    assert not is_confirmation("no longer needed")
    assert is_confirmation("No longer needed!", extra_phrases=("no longer needed",))
    assert is_confirmation("Selvä pyy", extra_phrases=("selvä pyy",))
