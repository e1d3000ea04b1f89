"""Accent- and case-insensitive whole-word matching of rule keywords (tier 1, stdlib only).

Text is normalised (NFKD, combining marks dropped, casefolded) and split into words; a keyword
phrase matches a run of whole words, so "down" finds "site is down!" but never "download".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# A word is a run of letters, digits or underscores after normalisation; everything else
# (spaces, punctuation, apostrophes) separates words, so "can't log in" is four words.
_WORD = re.compile(r"\w+")


class _MarkStripper(dict[int, str | None]):
    """A str.translate table that drops combining marks, filled in as characters are met.

    Building the table for all of Unicode up front costs a noticeable fraction of a second at
    import; mail uses a few hundred distinct characters, each looked up once.
    """

    def __missing__(self, codepoint: int) -> str | None:
        char = chr(codepoint)
        value = None if unicodedata.combining(char) else char
        self[codepoint] = value
        return value


_STRIP_MARKS = _MarkStripper()


def normalize(text: str) -> str:
    """Casefolded text without accents: "Ūžsakymas" -> "uzsakymas", "Straße" -> "strasse"."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    return unicodedata.normalize("NFKD", folded).translate(_STRIP_MARKS)


def words(text: str) -> tuple[str, ...]:
    """The normalised words of a text, in order."""
    return tuple(_WORD.findall(normalize(text)))


@dataclass(frozen=True)
class TextWords:
    """A text's normalised words in order, and the same words as a set (for a quick "none of
    these words occurs" answer)."""

    ordered: tuple[str, ...]
    present: frozenset[str]


# Texts up to this size are remembered (a few of them, so a large mail cannot pin much memory).
_REMEMBERED_TEXT_CHARS = 256 * 1024


def message_words(text: str) -> TextWords:
    """The words of `text`, remembered for the last few texts: every keyword rule reads the same
    subject and body of the message being filed, which are split once instead of once per rule
    (and the worker splits them before its write transaction, see `split_ahead`)."""
    return _remembered_words(text) if len(text) <= _REMEMBERED_TEXT_CHARS else _text_words(text)


def split_ahead(*texts: str) -> None:
    """Split texts into words now, so that the keyword rules evaluated later (inside the filing
    transaction, which holds the database's one writer on SQLite) find them remembered."""
    for text in texts:
        message_words(text)


def _text_words(text: str) -> TextWords:
    ordered = words(text)
    return TextWords(ordered, frozenset(ordered))


@functools.lru_cache(maxsize=8)
def _remembered_words(text: str) -> TextWords:
    return _text_words(text)


class KeywordMatcher:
    """Finds the first of many keyword phrases in a text, by whole words, in linear time.

    An Aho-Corasick automaton over words (not characters): each word of the text is looked at
    once, however many phrases there are and however long they are.
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases: tuple[str, ...] = tuple(phrases)
        self._goto: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        self._found: list[int | None] = [None]
        for index, phrase in enumerate(self.phrases):
            tokens = words(phrase)
            if not tokens:
                raise ValueError(f"keyword {phrase!r} has no letters or digits")
            self._insert(tokens, index)
        self._link()
        # Every phrase starts with one of these: a text containing none of them holds no phrase.
        self._first_words = frozenset(self._goto[0])

    def _insert(self, tokens: tuple[str, ...], index: int) -> None:
        state = 0
        for token in tokens:
            following = self._goto[state].get(token)
            if following is None:
                following = len(self._goto)
                self._goto[state][token] = following
                self._goto.append({})
                self._fail.append(0)
                self._found.append(None)
            state = following
        if self._found[state] is None:  # the same phrase listed twice: the first one names it
            self._found[state] = index

    def _link(self) -> None:
        """Failure links breadth-first; a state also reports a phrase that ends as its suffix."""
        queue = deque(self._goto[0].values())
        while queue:
            state = queue.popleft()
            for token, child in self._goto[state].items():
                queue.append(child)
                fallback = self._fail[state]
                while fallback and token not in self._goto[fallback]:
                    fallback = self._fail[fallback]
                link = self._goto[fallback].get(token, 0)
                self._fail[child] = link if link != child else 0
                if self._found[child] is None:
                    self._found[child] = self._found[self._fail[child]]

    def find(self, text: str) -> str | None:
        """The phrase (as configured) that ends first in the text, or None."""
        text_words = message_words(text)
        if self._first_words.isdisjoint(text_words.present):
            return None
        goto, fail, found = self._goto, self._fail, self._found
        state = 0
        for token in text_words.ordered:
            while state and token not in goto[state]:
                state = fail[state]
            state = goto[state].get(token, 0)
            index = found[state]
            if index is not None:
                return self.phrases[index]
        return None


def contains_word(haystack: str, phrase: str) -> bool:
    """True when the phrase occurs in the haystack as whole words, ignoring case and accents."""
    return KeywordMatcher((phrase,)).find(haystack) is not None
