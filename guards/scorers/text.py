"""Text normalisation and tokenisation shared by the lexical scorers (stdlib only)."""

from __future__ import annotations

import itertools
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

# Numbers stay whole ("6.213", "11,000"); words keep inner apostrophes ("o'quin").
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:'[^\W\d_]+)*")
_COMBINING = re.compile(r"[\u0300-\u036f]")  # combining diacritical marks
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})

# Function words carry no checkable claim, so they are neither support nor evidence against it.
_STOPWORD_TEXT = """
    a about above after again against all also although am among an and any are as at be
    because been before being below between both but by can could did do does doing done down
    during each either else ever every few for from further had has have having he her here
    hers herself him himself his how however i if in into is it its itself just least less
    many may me might more most much must my myself neither no nor not now of off often on
    once only or other our ours ourselves out over own per rather same shall she should since
    so some such than that the their theirs them themselves then there these they this those
    though through thus to too under until up upon us very was we were what whatever when
    where whether which while who whom whose why will with within without would yes yet you
    your yours yourself yourselves actually indeed instead
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


class Token(NamedTuple):
    """One normalised token: `key` is what is compared, the flags drive its weight."""

    key: str
    is_number: bool
    is_capitalised: bool
    is_stopword: bool


def normalise(text: str) -> str:
    """Unify apostrophes and strip accents, so "Rhöner" matches "Rhoner"."""
    text = text.translate(_APOSTROPHES)
    if text.isascii():
        return text
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def stem(word: str) -> str:
    """A deliberately small suffix stripper: plurals, possessives, -ed, -ing."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    # A final "e" goes too, so "base", "based" and "bases" share one key.
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


@lru_cache(maxsize=65536)  # words repeat across requests; the cache is bounded and thread-safe
def _token(raw: str) -> Token:
    if raw[0].isdigit():
        return Token(raw.replace(",", ""), True, False, False)
    lower = raw.lower()
    key = stem(lower)
    return Token(key, False, raw[0].isupper(), lower in STOPWORDS or key in STOPWORDS)


def tokenise(text: str) -> list[Token]:
    """Tokens of `text` in order, with case, punctuation and simple inflection removed."""
    return [_token(raw) for raw in _TOKEN.findall(normalise(text))]


def content_keys(tokens: list[Token]) -> list[str]:
    """Keys of the non-stopword tokens, in order."""
    return [t.key for t in tokens if not t.is_stopword]


def bigrams(keys: list[str]) -> set[tuple[str, str]]:
    """Adjacent pairs of `keys`."""
    return set(itertools.pairwise(keys))
