"""Whisper's tokenizer: GPT-2 byte-level BPE plus Whisper's special tokens.

Reads ``tokenizer.json`` (HF / CTranslate2 folders) or ``vocab.json`` + ``merges.txt`` (+ the special
tokens of ``added_tokens.json`` / ``tokenizer_config.json`` when present). Special-token ids follow
Whisper's fixed order after ``<|endoftext|>``: sot, the languages, translate, transcribe, startoflm,
startofprev, nospeech, notimestamps, then 1501 timestamps <|0.00|> .. <|30.00|> (0.02 s apart).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

from .text import bytes_to_unicode, codepoint_ranges

EOT = "<|endoftext|>"
SOT = "<|startoftranscript|>"
TRANSLATE, TRANSCRIBE = "<|translate|>", "<|transcribe|>"
STARTOFLM, STARTOFPREV = "<|startoflm|>", "<|startofprev|>"
NO_SPEECH = ("<|nospeech|>", "<|nocaptions|>")  # the name changed between releases; same id
NO_TIMESTAMPS = "<|notimestamps|>"
TIMESTAMP_STEP = 0.02  # seconds per timestamp token
N_TIMESTAMPS = 1501
#: Whisper's language codes in id order (v3 adds "yue" at the end)
LANGUAGES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg "
    "lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so "
    "af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue"
).split()


@cache
def _gpt2_pattern() -> re.Pattern:
    """GPT-2's pre-tokenizer (contractions, letter runs, digit runs, other runs, whitespace) with
    \\p{L} / \\p{N} spelled out for stdlib ``re``."""
    letters = codepoint_ranges(str.isalpha)
    numbers = codepoint_ranges(lambda c: unicodedata.category(c)[0] == "N")
    return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^\s{letters}{numbers}]+"
                      rf"|\s+(?!\S)|\s+")


class WhisperTokenizer:
    """ids <-> text; special-token ids as attributes (``sot``, ``eot``, ``transcribe``, ...)."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], specials: dict[str, int]):
        self.vocab = vocab
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.specials = dict(specials)
        self.id_to_token = {i: t for t, i in vocab.items()}
        self.id_to_token.update({i: t for t, i in specials.items()})
        self._byte_enc = bytes_to_unicode()
        self._byte_dec = {c: b for b, c in self._byte_enc.items()}
        self._cache: dict[str, list[int]] = {}
        self.eot = self._special(EOT, default=50256)
        # the rest are laid out in a fixed order after eot when a file does not list them
        base = self.eot
        n_lang = len(LANGUAGES) - (0 if self._has("<|yue|>") else 1)
        self.sot = self._special(SOT, base + 1)
        self.languages = {code: self._special(f"<|{code}|>", base + 2 + i) for i, code in enumerate(LANGUAGES[:n_lang])}
        after = base + 2 + n_lang
        self.translate = self._special(TRANSLATE, after)
        self.transcribe = self._special(TRANSCRIBE, after + 1)
        self.startofprev = self._special(STARTOFPREV, after + 3)
        self.no_speech = next((specials[n] for n in NO_SPEECH if n in specials), after + 4)
        self.no_timestamps = self._special(NO_TIMESTAMPS, after + 5)
        self.timestamp_begin = self.no_timestamps + 1
        self.multilingual = "<|en|>" in specials or len(vocab) > 50257

    def _has(self, name: str) -> bool:
        return name in self.specials

    def _special(self, name: str, default: int) -> int:
        return self.specials.get(name, default)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path) -> "WhisperTokenizer":
        """``tokenizer.json`` if present, else ``vocab.json`` + ``merges.txt``."""
        folder = Path(folder)
        tj = folder / "tokenizer.json"
        if tj.is_file():
            data = json.loads(tj.read_text(encoding="utf-8"))
            model = data["model"]
            merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
            specials = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
            return cls(model["vocab"], merges, specials)
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split(" ", 1)) for line in lines if line and not line.startswith("#version")]
        specials: dict[str, int] = {}
        added = folder / "added_tokens.json"
        if added.is_file():
            specials.update(json.loads(added.read_text(encoding="utf-8")))
        config = folder / "tokenizer_config.json"
        if config.is_file():
            decl = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
            specials.update({v["content"]: int(k) for k, v in decl.items()})
        for name in [n for n in specials if n in vocab]:  # <|endoftext|> lives in vocab.json too
            specials[name] = vocab[name]
        if EOT in vocab:
            specials.setdefault(EOT, vocab[EOT])
        return cls(vocab, merges, specials)

    # -- encoding ------------------------------------------------------------------------------
    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = [self.vocab[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Plain text (no special tokens) -> ids."""
        ids: list[int] = []
        for word in _gpt2_pattern().findall(text):
            ids.extend(self._bpe("".join(self._byte_enc[b] for b in word.encode("utf-8"))))
        return ids

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, ids, *, timestamps: bool = False) -> str:
        """ids -> text; special tokens are dropped, timestamps kept as ``<|1.24|>`` when asked."""
        out, buf = [], bytearray()
        for i in ids:
            i = int(i)
            if i >= self.timestamp_begin:
                if timestamps:
                    out.append(buf.decode("utf-8", errors="replace"))
                    buf = bytearray()
                    out.append(f"<|{(i - self.timestamp_begin) * TIMESTAMP_STEP:.2f}|>")
                continue
            if i >= self.eot:
                continue
            token = self.id_to_token.get(i)
            if token is not None:
                buf.extend(self._byte_dec.get(c, 0) for c in token)
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def time_of(self, i: int) -> float:
        """A timestamp token -> seconds from the window start."""
        return (i - self.timestamp_begin) * TIMESTAMP_STEP

    def prompt(self, language: str | None, *, timestamps: bool = True, task: str = "transcribe") -> list[int]:
        """The decoder's start sequence: sot [lang] [task] [notimestamps]."""
        ids = [self.sot]
        if self.multilingual:
            ids.append(self.languages[language or "en"])
            ids.append(self.translate if task == "translate" else self.transcribe)
        if not timestamps:
            ids.append(self.no_timestamps)
        return ids
