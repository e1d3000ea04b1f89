"""Whether a customer's reply to a resolved ticket only confirms or thanks, in English, Finnish and Lithuanian (tier 1).

Conservative by design: a short reply made only of confirmation phrases and harmless filler
words confirms; a question, a negation or any other word means the customer has more to say.
"""

from __future__ import annotations

import re

from mailgate.rules.text import normalize

MAX_CHARS = 200
MAX_LINES = 3

CONFIRMATION_PHRASES: tuple[str, ...] = (
    # English
    "close", "close it", "close this", "please close", "you can close this", "you can close it",
    "solved", "resolved", "fixed", "sorted", "works", "works now", "it works", "it's working",
    "working now", "all working", "all good", "all sorted", "thanks", "thank you", "thx",
    "thanks, that fixed it", "that fixed it", "that did it", "that helped", "problem solved",
    "great", "perfect", "ok", "okay", "got it",
    # Finnish
    "kiitos", "kiitti", "ratkaistu", "ratkesi", "korjattu", "korjaantui", "toimii", "toimii nyt",
    "nyt toimii", "voi sulkea", "voitte sulkea", "saa sulkea", "asia selvä", "asia on selvä",
    "selvä", "kiitos, se auttoi", "se auttoi", "auttoi", "hyvä", "loistavaa", "mahtavaa",
    # Lithuanian
    "ačiū", "dėkui", "dėkoju", "išspręsta", "sutvarkyta", "veikia", "dabar veikia",
    "viskas veikia", "viskas gerai", "galite uždaryti", "galima uždaryti", "uždarykite",
    "ačiū, padėjo", "padėjo", "puiku", "gerai",
)  # fmt: skip


def _word_set(text: str) -> frozenset[str]:
    """Whitespace-separated words, normalised as reply text is."""
    return frozenset(normalize(word) for word in text.split())


# Words that may stand around a confirmation without changing what it says.
_FILLER_WORDS = _word_set(
    """
    hi hello hey dear yes yeah yep so very much many a lot the this that it its is was now
    again all everything ticket case issue problem request can you please feel free to for
    your my help quick answer reply response support team and just really indeed
    br regards kind best cheers t
    moi hei hyvää päivää kyllä joo niin nyt taas kaikki paljon suuret tosi todella asia homma
    tiketin tiketti pyyntö ongelma se sen tämän tämä voitte apu avusta avustanne vastauksesta
    nopeasta ja terveisin ystävällisin terv
    laba diena sveiki taip jau dabar vėl viskas labai didelis už pagalbą atsakymą problema
    užklausą užklausa bilietą jį ją tai ir su pagarba linkėjimai
    """
)

# Stated for clarity and for configured phrases: any of these outside a phrase means "no".
_NEGATIONS = _word_set(
    """
    not no never nothing none nor cannot still but however though although unfortunately
    except yet broken crash crashes crashed error errors fail fails failed failing wrong
    ei en et emme ette eivät eikä eikö vielä vieläkään edelleen mutta valitettavasti kuitenkaan
    ne nė nėra nebe nieko dar vis bet tačiau deja
    """
)
_QUESTION_WORDS = _word_set(
    """
    why how when what where which who whom whose
    miksi miten miksei milloin mitä missä mikä kuka kenen onko voiko toimiiko
    kodėl kaip kada kas kur ar kokia koks
    """
)
_WORD = re.compile(r"\w+")
_CLAUSE_GAP = re.compile(r"[ \t]*,?[ \t]*")
# "don't" must read as a negation, not as the words "don" and "t".
_CONTRACTED_NOT = re.compile(r"n['’]t\b", re.IGNORECASE)
# A sign-off name: one to three capitalised words, as in "Matti" or "Anna Smith".
_NAME_LINE = re.compile(r"(?:[^\W\d_][\w.,'’-]*\s*){1,3}")
_THANKS_WORDS = _word_set("thanks thank you thx kiitos kiitti ačiū dėkui dėkoju")


def is_confirmation(reply_text: str, extra_phrases: tuple[str, ...] = ()) -> bool:
    """True when a short reply, after quote stripping, only confirms a fix or thanks.

    `extra_phrases` adds configured confirmation phrases to the built-in ones.
    """
    text = reply_text.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not text or len(text) > MAX_CHARS or len(lines) > MAX_LINES or any(mark in text for mark in "?¿？"):
        return False
    if len(lines) > 1 and _is_name_line(lines[-1]):
        lines = lines[:-1]
    words, name_like = _tokens(" \n ".join(lines))
    if any(word in _QUESTION_WORDS for word in words):
        return False
    outside, matched = _outside_phrases(words, _phrase_table(extra_phrases))
    if not matched:
        return False
    return all(_harmless(index, words, name_like, outside) for index in outside)


def _tokens(text: str) -> tuple[list[str], list[bool]]:
    """Normalised words, and whether each may be part of a name addressed in the same clause.

    A word counts as a possible name when it is capitalised and only spaces or a comma separate
    it from the word before: "Thanks Anna" and "Kiitos, Matti", but not "Thanks. Refund".
    """
    text = _CONTRACTED_NOT.sub(" not", text)
    words: list[str] = []
    name_like: list[bool] = []
    end = 0
    for match in _WORD.finditer(text):
        gap = text[end : match.start()]
        words.append(normalize(match.group()))
        name_like.append(match.group()[0].isupper() and _CLAUSE_GAP.fullmatch(gap) is not None)
        end = match.end()
    return words, name_like


def _harmless(index: int, words: list[str], name_like: list[bool], outside: set[int]) -> bool:
    """A word outside the phrases is filler, or a name right after a thank-you ("Thanks Anna")."""
    word = words[index]
    if word in _NEGATIONS:
        return False
    if word in _FILLER_WORDS:
        return True
    previous = index - 1
    while previous in outside and name_like[previous] and words[previous] not in _FILLER_WORDS:
        previous -= 1  # "Thanks Anna Smith": walk back over the earlier part of the name
    return name_like[index] and previous >= 0 and words[previous] in _THANKS_WORDS


def _is_name_line(line: str) -> bool:
    """A closing line that is only a name: every word capitalised, none a negation or question."""
    if len(line) > 40 or _NAME_LINE.fullmatch(line) is None:
        return False
    if not all(word[0].isupper() for word in line.split()):
        return False
    words = _tokens(line)[0]
    return not any(word in _NEGATIONS or word in _QUESTION_WORDS for word in words)


def _phrase_table(extra_phrases: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Phrases as normalised word tuples, longest first so "toimii nyt" wins over "toimii"."""
    table = {tuple(_tokens(phrase)[0]) for phrase in CONFIRMATION_PHRASES + extra_phrases}
    table.discard(())
    return sorted(table, key=len, reverse=True)


def _outside_phrases(words: list[str], phrases: list[tuple[str, ...]]) -> tuple[set[int], bool]:
    """Indexes of the words outside confirmation phrases (greedy, longest first), and whether any matched."""
    outside: set[int] = set()
    matched = False
    position = 0
    while position < len(words):
        phrase = next((p for p in phrases if tuple(words[position : position + len(p)]) == p), None)
        if phrase is None:
            outside.add(position)
            position += 1
        else:
            matched = True
            position += len(phrase)
    return outside, matched
