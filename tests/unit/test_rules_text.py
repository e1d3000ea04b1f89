"""Keyword matching: whole words and phrases, case- and accent-insensitive, in linear time."""

from __future__ import annotations

import time

import pytest

from mailgate.rules import text as text_module
from mailgate.rules.text import KeywordMatcher, contains_word, normalize, split_ahead, words


def test_normalize_drops_accents_and_case() -> None:
    """Accented and upper-case forms normalise to the same plain lower-case text."""
    assert normalize("Ūžsakymas") == normalize("uzsakymas") == "uzsakymas"
    assert normalize("SKUBU") == "skubu"
    assert normalize("Kiireellinen") == "kiireellinen"
    assert normalize("DRINGEND") == "dringend"
    assert normalize("Straße Mokėjimas") == "strasse mokejimas"


def test_whole_words_only() -> None:
    """'down' is found in 'site is down!' but not inside 'download' or 'downtown'."""
    assert contains_word("Our site is DOWN!", "down")
    assert not contains_word("Where is the download link?", "down")
    assert not contains_word("downtown office", "down")


def test_phrases_match_runs_of_words_whatever_the_punctuation() -> None:
    """A phrase matches the same words in a row, across spaces and punctuation, not scattered ones."""
    assert contains_word("Your payment   failed.", "payment failed")
    assert contains_word("I can't log in", "can't log in")
    assert not contains_word("payment was not failed", "payment failed")


def test_accented_keywords_match_unaccented_text_and_back() -> None:
    """A keyword written with accents matches text without them, and the reverse."""
    assert contains_word("mokejimas nepavyko vakar", "Mokėjimas nepavyko")
    assert contains_word("MAKSU EPÄONNISTUI", "maksu epaonnistui")
    assert contains_word("Įsilaužimas į sistemą", "isilauzimas")


def test_matcher_returns_the_configured_phrase() -> None:
    """find() gives the phrase as configured, for the event that says which keyword matched."""
    matcher = KeywordMatcher(["Security breach", "outage"])
    assert matcher.find("We had a SECURITY BREACH today") == "Security breach"
    assert matcher.find("all fine") is None


def test_matcher_follows_failure_links() -> None:
    """A partial match of one phrase does not hide another phrase that starts inside it."""
    matcher = KeywordMatcher(["not working at all", "working hours"])
    assert matcher.find("it is not working hours yet") == "working hours"
    assert KeywordMatcher(["security breach", "breach"]).find("a breach") == "breach"


def test_keyword_without_letters_is_refused() -> None:
    """A keyword of punctuation only could never match, so it is an error."""
    with pytest.raises(ValueError):
        KeywordMatcher(["!!!"])


def test_matching_is_linear() -> None:
    """Thousands of keywords over a 200,000-word text, and a repetitive worst case, take well under a second."""
    matcher = KeywordMatcher([f"word{i} other{i}" for i in range(2000)] + ["a a a a a a a a b"])
    text = " ".join(f"word{i % 3000}" for i in range(200_000)) + " a" * 100_000
    started = time.perf_counter()
    assert matcher.find(text) is None
    assert time.perf_counter() - started < 1.0
    assert words("a-b c_d") == ("a", "b", "c_d")


def test_a_text_without_any_first_word_is_answered_without_walking_it() -> None:
    matcher = KeywordMatcher(["server down", "urgent"])
    assert matcher.find("the download of the server is slow") is None  # "server" there, "down" not
    assert matcher.find("nothing here at all") is None
    assert matcher.find("Server DOWN since noon") == "server down"


def test_texts_split_ahead_are_found_remembered() -> None:
    text = "A body split before the filing transaction, then read by every keyword rule."
    split_ahead(text)
    before = text_module._remembered_words.cache_info()
    assert KeywordMatcher(["keyword rule"]).find(text) == "keyword rule"
    after = text_module._remembered_words.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
