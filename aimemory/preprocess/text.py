r"""CLIP's byte-level BPE tokenizer, read from the vocabulary that ships with a checkpoint.

Text clean-up (in this order): Unicode NFC, ``html.unescape`` twice, whitespace runs collapsed to one
space and stripped, lower-casing. Then the CLIP pre-token pattern splits the text into words, every
word is mapped byte-by-byte to printable characters and merged with the BPE ranks, and the sequence is
framed as ``<|startoftext|> ... <|endoftext|>``.

Differences with the references, on purpose:

* OpenAI's tokenizer runs ``ftfy.fix_text`` first. ftfy is not a dependency; we do the part of it
  that the HF tokenizer also does (NFC). Not done: mojibake repair, curly-quote straightening,
  ligature / full-width folding, control-character removal. Text that needs those tokenizes as it
  does in ``transformers.CLIPTokenizer``.
* ``transformers.CLIPTokenizer`` (5.x, Rust) differs from OpenAI's -- and from us, who follow OpenAI
  here -- in three ways: it does not unescape HTML (``"&amp;amp;"`` stays four words there, ``"&"``
  here); it lower-cases letter by letter, so a word-final capital sigma becomes ``σ`` there and ``ς``
  here (Python's ``str.lower``); its ``\s`` excludes the ASCII separators ``\x1c``-``\x1f``, which
  Python treats as whitespace. Everything else matches it id for id (see the tests).
* OpenAI's word pattern is compiled with IGNORECASE, which makes U+0345 (combining ypogegrammeni,
  case-folds to iota) a letter; we follow HF and treat it as a mark. ``\p{L}``/``\p{N}`` come from
  this Python's ``unicodedata``, so characters newer than its Unicode version may split differently.
* The slow HF tokenizer of transformers 4.x, without ftfy, fell back to BERT's ``BasicTokenizer``
  (control characters dropped, accents kept, every CJK ideograph made its own word). That changes the
  ids of CJK text relative to OpenAI's, so we do not imitate it; transformers 5 removed it.

Padding: OpenAI pads with id 0 (``"!"``); the CLIP text tower is causal and pools at the first EOT, so
the pad id never changes an embedding. ``from_folder`` uses the checkpoint's ``pad_token`` from
``tokenizer_config.json`` when present, else 0.
"""

from __future__ import annotations

import gzip
import html
import json
import re
import unicodedata
from functools import cache, lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import torch

CONTEXT_LENGTH = 77
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
DEFAULT_PAD_ID = 0
# OpenAI's bpe_simple_vocab_16e6.txt.gz: line 0 is a header, then merges; CLIP uses the first
# 49152 - 256 - 2 of them so that bytes (256 + 256 end-of-word) + merges + 2 specials = 49408.
OPENAI_VOCAB_SIZE = 49408
OPENAI_BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
HF_VOCAB_NAME = "vocab.json"
HF_MERGES_NAME = "merges.txt"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
BPE_CACHE_SIZE = 1 << 16
# letters and numbers all lie below plane 4 (planes 4-13 are unassigned, 14-16 hold tags and private
# use); scanning only these keeps building the pattern ~4x cheaper
UNICODE_SCAN_END = 0x40000

_WHITESPACE = re.compile(r"\s+")


@cache
def bytes_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable character map of GPT-2/CLIP: printable Latin-1 bytes map to
    themselves, the other 68 bytes to code points 256+ (so BPE never sees whitespace/control)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # insertion order (printable first) is the vocabulary's id order: keep it


def codepoint_ranges(pred) -> str:
    """A regex character-class body covering every code point where ``pred(char)`` holds."""
    parts, start, prev = [], None, None
    for cp in range(UNICODE_SCAN_END):
        if pred(chr(cp)):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            parts.append(re.escape(chr(start)) if start == prev
                         else f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
            start = None
    if start is not None:
        parts.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}")
    return "".join(parts)


@cache
def _pretokenize_pattern() -> re.Pattern:
    """CLIP's word pattern with \\p{L}/\\p{N} spelled out, since stdlib ``re`` lacks them (``\\w``
    would mix in ``_`` and treat Nl/No numbers like letters)."""
    letters = codepoint_ranges(str.isalpha)  # isalpha is exactly the L* categories
    numbers = codepoint_ranges(lambda c: unicodedata.category(c)[0] == "N")
    return re.compile(
        rf"{re.escape(SOT_TOKEN)}|{re.escape(EOT_TOKEN)}|'s|'t|'re|'ve|'m|'ll|'d"
        rf"|[{letters}]+|[{numbers}]|[^\s{letters}{numbers}]+"
    )


def clean_text(text: str) -> str:
    """The normalisation applied before splitting into words (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text).strip().lower()


def _read_openai_merges(path: Path) -> list[tuple[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    n_merges = OPENAI_VOCAB_SIZE - 256 - 256 - 2
    return [tuple(line.split()) for line in lines[1 : 1 + n_merges]]  # type: ignore[misc]


def _openai_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """The id table OpenAI builds (and HF's vocab.json stores): bytes, bytes+</w>, merges, specials."""
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + END_OF_WORD for c in chars] + ["".join(m) for m in merges] + [SOT_TOKEN, EOT_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}


class ClipTokenizer:
    """CLIP BPE tokenizer. Build it with :meth:`from_folder` or :meth:`from_files`."""

    def __init__(self, vocab: dict[str, int], merges: Iterable[tuple[str, str]], *,
                 pad_id: int = DEFAULT_PAD_ID, context_length: int = CONTEXT_LENGTH):
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        missing = [t for t in (SOT_TOKEN, EOT_TOKEN) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self.sot_id = vocab[SOT_TOKEN]
        self.eot_id = vocab[EOT_TOKEN]
        self.pad_id = pad_id
        self.context_length = context_length
        self._byte_map = bytes_to_unicode()
        self._pattern = _pretokenize_pattern()
        # the cache is per instance: two vocabularies must never share merged words
        self._word_ids = lru_cache(maxsize=BPE_CACHE_SIZE)(self._bpe_ids)

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_json: str | Path | None = None, merges_txt: str | Path | None = None, *,
                   openai_bpe: str | Path | None = None, pad_id: int = DEFAULT_PAD_ID) -> "ClipTokenizer":
        """HF ``vocab.json`` + ``merges.txt``, or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``."""
        if openai_bpe is not None:
            merges = _read_openai_merges(Path(openai_bpe))
            return cls(_openai_vocab(merges), merges, pad_id=pad_id)
        if vocab_json is None or merges_txt is None:
            raise ValueError("give vocab_json and merges_txt, or openai_bpe")
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        merges = []
        for line in Path(merges_txt).read_text(encoding="utf-8").split("\n"):
            if line.startswith("#version") or not line.strip():
                continue  # header line and trailing blank
            merges.append(tuple(line.split()))
        return cls(vocab, merges, pad_id=pad_id)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ClipTokenizer":
        """The vocabulary shipped in a checkpoint folder (HF layout first, then OpenAI's gz)."""
        folder = Path(folder)
        vocab, merges = folder / HF_VOCAB_NAME, folder / HF_MERGES_NAME
        if vocab.is_file() and merges.is_file():
            tok = cls.from_files(vocab, merges)
            tok.pad_id = _config_pad_id(folder / HF_TOKENIZER_CONFIG, tok.vocab, tok.pad_id)
            return tok
        gz = folder / OPENAI_BPE_NAME
        if gz.is_file():
            return cls.from_files(openai_bpe=gz)
        raise FileNotFoundError(
            f"no CLIP vocabulary in {folder}: expected {HF_VOCAB_NAME} + {HF_MERGES_NAME} "
            f"or {OPENAI_BPE_NAME}"
        )

    # -- encoding ----------------------------------------------------------------------------------
    def _bpe_ids(self, word: str) -> tuple[int, ...]:
        """One pre-token (already byte-mapped) -> its ids, merging the lowest-ranked pair first."""
        if word in (SOT_TOKEN, EOT_TOKEN):
            return (self.vocab[word],)
        parts = list(word[:-1]) + [word[-1] + END_OF_WORD]
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            first, second = best
            merged, i, n = [], 0, len(parts)
            while i < n:  # merge every occurrence, left to right
                if i < n - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        unk = self.eot_id  # HF's unk token; unreachable with a full byte-level vocabulary
        return tuple(self.vocab.get(p, unk) for p in parts)

    def tokens(self, text: str) -> list[int]:
        """Ids of ``text`` without SOT/EOT and without truncation."""
        out: list[int] = []
        bmap = self._byte_map
        for piece in self._pattern.findall(clean_text(text)):
            if piece not in (SOT_TOKEN, EOT_TOKEN):
                piece = "".join(bmap[b] for b in piece.encode("utf-8"))
            out.extend(self._word_ids(piece))
        return out

    def encode(self, text: str, context_length: int | None = CONTEXT_LENGTH) -> list[int]:
        """``[SOT, ..., EOT]``; longer than ``context_length`` is cut and the last id set to EOT."""
        ids = [self.sot_id, *self.tokens(text), self.eot_id]
        if context_length is not None and len(ids) > context_length:
            if context_length < 2:
                raise ValueError("context_length must be at least 2 (SOT and EOT)")
            ids = ids[: context_length - 1] + [self.eot_id]
        return ids

    def encode_batch(self, texts: Sequence[str], context_length: int = CONTEXT_LENGTH,
                     pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids (n, L) int64, lengths (n,) int64). L is the longest sequence in the batch
        (dynamic padding) or exactly ``pad_to`` (which then also caps the length)."""
        if isinstance(texts, str):
            texts = [texts]
        limit = min(context_length, pad_to) if pad_to else context_length
        seqs = [self.encode(t, limit) for t in texts]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        width = pad_to if pad_to else (int(lengths.max()) if seqs else 0)
        # pad in Python and convert once: one tensor per row costs more than the BPE itself
        rows = [s + [self.pad_id] * (width - len(s)) for s in seqs]
        ids = torch.tensor(rows, dtype=torch.long) if rows else torch.zeros((0, width), dtype=torch.long)
        return ids, lengths

    __call__ = encode_batch

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text with SOT/EOT dropped (cut padding off first: pad id 0 is "!"). For debugging."""
        inverse = getattr(self, "_inverse", None)
        if inverse is None:
            inverse = self._inverse = {i: t for t, i in self.vocab.items()}
            self._byte_unmap = {c: b for b, c in self._byte_map.items()}
        skip = {self.sot_id, self.eot_id}
        chars = "".join(inverse.get(int(i), "") for i in ids if int(i) not in skip)
        words = [bytes(self._byte_unmap[c] for c in w if c in self._byte_unmap).decode("utf-8", "replace")
                 for w in chars.split(END_OF_WORD)]
        return " ".join(w for w in words if w)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def _config_pad_id(config: Path, vocab: dict[str, int], default: int) -> int:
    """The pad id named by ``tokenizer_config.json`` (``pad_token`` as text or an AddedToken dict)."""
    if not config.is_file():
        return default
    try:
        pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
    except (OSError, ValueError):
        return default
    if isinstance(pad, dict):
        pad = pad.get("content")
    return vocab.get(pad, default) if isinstance(pad, str) else default
