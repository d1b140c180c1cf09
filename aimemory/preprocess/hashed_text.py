"""aimemory-mini's text featurisation: a caption -> hashed ids of its words, word bigrams and
boundary-marked character trigrams, so unseen phrasings, plurals and typos still share features.
Plain Python (no torch): the torch text tower (:mod:`aimemory.nn.mini`) and its numpy query forward
(:mod:`aimemory.nn.mini_numpy`) both read these ids."""

from __future__ import annotations

import re
import zlib

NUMBER_WORDS = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five"}
_WORD_RE = re.compile(r"[a-z0-9]+")


def normalize_word(word: str) -> str:
    """Lower-case word -> crude singular ("dogs" -> "dog", "cherries" -> "cherry", "2" -> "two")."""
    word = NUMBER_WORDS.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz" or word.endswith(("ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def text_features(text: str, buckets: int) -> list[int]:
    """A caption -> hashed feature ids: words, word bigrams and boundary-marked char trigrams."""
    words = [normalize_word(w) for w in _WORD_RE.findall(text.lower())]
    feats = [f"w:{w}" for w in words]
    feats += [f"b:{a}_{b}" for a, b in zip(words, words[1:])]
    for w in words:
        padded = f"<{w}>"
        feats += [f"c:{padded[i:i + 3]}" for i in range(len(padded) - 2)]
    if not feats:
        feats = ["w:<empty>"]
    return [zlib.crc32(f.encode()) % buckets for f in feats]
