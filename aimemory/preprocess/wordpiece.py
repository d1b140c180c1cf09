"""BERT's uncased WordPiece tokenizer, read from a checkpoint's ``vocab.txt``.

Two stages, as in the original BERT release:

1. Basic tokenization of each text: characters U+0000, U+FFFD and other control / format characters
   (Unicode category C*, except tab, newline and carriage return) are dropped; whitespace becomes a
   space; every CJK ideograph becomes its own word; words are lower-cased (Python ``str.lower``) and
   accents stripped (NFD, combining marks of category Mn dropped); then each word is split into runs
   of non-punctuation and single punctuation characters (ASCII symbols count as punctuation, as do
   Unicode P* categories).
2. WordPiece: each word is split greedily, longest vocabulary match first, continuation pieces
   prefixed ``##``. A word with an unmatched remainder, or longer than 100 characters, becomes a
   single ``[UNK]``.

The special tokens themselves (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``), written
exactly so in the text, stay single tokens, as in the reference tokenizers.

This follows BERT's Python code (``transformers``' ``BertTokenizerLegacy``) id for id. The Rust
``BertTokenizer`` differs in two known ways, where we side with the Python code: it lower-cases
character by character, so a word-final capital sigma becomes ``σ`` there and ``ς`` here; and its
CJK table starts extension E at U+2B920, so U+2B820-U+2B91F are not split off there. Unicode tables
of different versions may also classify newly assigned characters differently.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch  # only encode() builds tensors: tokenizing a query needs no torch

VOCAB_FILE = "vocab.txt"
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
MAX_CHARS_PER_WORD = 100
CONTINUATION = "##"
PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
WORD_CACHE_SIZE = 1 << 16
# CJK Unified Ideographs and their extensions / compatibility blocks (BERT's definition: Hangul,
# kana and other CJK scripts are written with spaces or are not ideographs, so they are not split)
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
ASCII_PUNCT = frozenset(chr(c) for r in ((33, 48), (58, 65), (91, 97), (123, 127)) for c in range(*r))
# ASCII fast path: after control removal and lower-casing, words are runs of letters / digits and
# every other visible character is its own punctuation token
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~]")


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False  # technically control characters, but BERT treats them as whitespace
    return unicodedata.category(ch).startswith("C")


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_punctuation(ch: str) -> bool:
    return ch in ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def _clean(text: str) -> str:
    """Drop NUL, U+FFFD and control characters; whitespace -> space; isolate CJK ideographs."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif cp >= 0x3400 and _is_cjk(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    return "".join(out)


def _strip_accents(word: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", word) if unicodedata.category(ch) != "Mn")


def _split_punctuation(word: str) -> list[str]:
    """``"it's!"`` -> ``["it", "'", "s", "!"]``."""
    pieces: list[str] = []
    start_new = True
    for ch in word:
        if _is_punctuation(ch):
            pieces.append(ch)
            start_new = True
        else:
            if start_new:
                pieces.append("")
                start_new = False
            pieces[-1] += ch
    return pieces


def basic_tokenize(text: str) -> list[str]:
    """One text (no special tokens) -> lower-cased, accent-stripped words and punctuation marks."""
    if text.isascii():
        text = _ASCII_CONTROL.sub("", text).lower()
        return _ASCII_TOKEN.findall(text)
    # NFC first so that precomposed and decomposed spellings of a character split the same way
    words = unicodedata.normalize("NFC", _clean(text)).split()
    out: list[str] = []
    for word in words:
        word = _strip_accents(word.lower())
        out.extend(p for p in _split_punctuation(word) if p)
    return out


class WordPieceTokenizer:
    """Texts -> ``[CLS] pieces [SEP]`` id rows, right-padded with ``[PAD]``."""

    def __init__(self, vocab: dict[str, int]):
        missing = [t for t in (PAD, UNK, CLS, SEP) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}: not a BERT vocab.txt")
        self.vocab = vocab
        self.pad_id, self.unk_id = vocab[PAD], vocab[UNK]
        self.cls_id, self.sep_id = vocab[CLS], vocab[SEP]
        self.max_piece = max(len(t) for t in vocab)
        specials = sorted((t for t in SPECIAL_TOKENS if t in vocab), key=len, reverse=True)
        self._specials = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")")
        self._cache: dict[str, list[int]] = {}
        self._inverse: dict[int, str] | None = None

    @classmethod
    def from_vocab(cls, path: str | Path) -> "WordPieceTokenizer":
        """``vocab.txt`` (one token a line; the line number is the id), or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / VOCAB_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no WordPiece vocabulary at {path}")
        vocab: dict[str, int] = {}
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                # strip the line end only: a token may itself be whitespace-like in odd vocabularies
                vocab.setdefault(line.rstrip("\n").rstrip("\r"), i)
        return cls(vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def _word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece of one word (cached)."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        ids = self._wordpiece(word)
        if len(self._cache) >= WORD_CACHE_SIZE:
            self._cache.clear()  # bounded; a fresh cache refills with the common words quickly
        self._cache[word] = ids
        return ids

    def _wordpiece(self, word: str) -> list[int]:
        n = len(word)
        if n > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids, start, vocab = [], 0, self.vocab
        while start < n:
            prefix = CONTINUATION if start else ""
            for end in range(min(n, start + self.max_piece), start, -1):
                piece = vocab.get(prefix + word[start:end])
                if piece is not None:
                    ids.append(piece)
                    start = end
                    break
            else:
                return [self.unk_id]  # an unmatched remainder makes the whole word unknown
        return ids

    def tokenize_ids(self, text: str) -> list[int]:
        """One text -> its piece ids, without ``[CLS]`` / ``[SEP]`` and untruncated."""
        ids: list[int] = []
        for i, part in enumerate(self._specials.split(text)):
            if i % 2:  # a special token written literally
                ids.append(self.vocab[part])
            elif part:
                for word in basic_tokenize(part):
                    ids.extend(self._word_ids(word))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """One text -> its WordPiece strings (for inspection)."""
        if self._inverse is None:
            self._inverse = {i: t for t, i in self.vocab.items()}
        return [self._inverse[i] for i in self.tokenize_ids(text)]

    def encode(self, texts: Sequence[str], max_length: int = MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids (n, L) int64, mask (n, L) int64 with 1 on real tokens): each row is
        ``[CLS] pieces [SEP]`` truncated to ``max_length`` tokens, right-padded with ``[PAD]`` to the
        longest row of this batch."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
        if max_length < 2:
            raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
        import torch

        rows = [[self.cls_id, *self.tokenize_ids(t)[: max_length - 2], self.sep_id] for t in texts]
        width = max((len(r) for r in rows), default=0)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (n, L)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (n, L)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return ids, mask
