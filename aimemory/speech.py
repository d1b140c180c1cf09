"""Speech recognition with native Whisper: ``SpeechRecognizer.transcribe(Audio) -> Transcript``.

Audio is resampled to 16 kHz mono and cut into 30 s windows (3000 mel frames). Each window is
decoded greedily with timestamp tokens, which give segment times and tell where the next window
starts (a sentence cut by the window edge is re-decoded in the next one). Like the reference
decoder: language detection on the first window, suppression and timestamp rules, temperature
fallback when the output is repetitive (gzip compression ratio > 2.4) or unlikely (mean token
log-prob < -1), and a no-speech gate (P(<|nospeech|>) > 0.6 and mean log-prob < -1 -> skip the
window), so music and noise do not get hallucinated transcripts. In addition, a window whose text
is still repetitive after every temperature is dropped, and a window quieter than -60 dBFS RMS is
skipped without decoding. A window whose words stay unlikely at every temperature (noise, an animal
or an instrument Whisper put words on) is dropped too (:func:`unlikely_at_every_temperature`).

All times are seconds from the start of the clip.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .device import CPU, Placement
from .errors import CheckpointError, ModelNotAvailableError, speech_install_hint
from .inputs import Audio
from .nn.whisper import WhisperDims, WhisperModel
from .preprocess.audio import HOP_LENGTH, SAMPLE_RATE, log_mel_spectrogram
from .preprocess.whisper_tokens import WhisperTokenizer
from .weights.loader import assign_weights
from .weights.whisper_formats import read_config, read_whisper

WINDOW_SECONDS = 30
N_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480_000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 100
FRAMES_PER_TOKEN = 2  # a timestamp step (0.02 s) is 2 mel frames
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
#: above this P(<|nospeech|>) a window is skipped unless its words are confidently decoded: noise and
#: music reach 0.84-0.85 with fluent hallucinations ("I love it! I love it!") at mean log-prob -0.66
#: to -0.97, which the reference gate (-1.0) lets through; clear speech sits below 0.1
STRICT_NO_SPEECH_THRESHOLD = 0.75
CONFIDENT_LOGPROB = -0.4
#: below this detection probability the first window does not choose the language: the recognizer's
#: ``default_language`` does (pink noise was "detected" as Nynorsk at 0.44, a one-word clip as Korean)
LANGUAGE_CONFIDENCE = 0.5
DEFAULT_LANGUAGE = "en"
COMPRESSION_RATIO_THRESHOLD = 2.4
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SILENCE_RMS = 1e-3  # -60 dBFS: a window this quiet is skipped undecoded (Whisper says "you" to silence)
MAX_INITIAL_TIMESTAMP = 1.0  # seconds: the first segment must start within 1 s of the window
#: token-by-token decoding runs tiny ops where OpenMP wake-ups cost more than they save (measured
#: here: 0.45 s/token with 2 threads on a busy 2-core box, 0.07 s with 1); the encoder keeps all threads
DECODE_THREADS = 1
SAMPLING_SEED = 0  # temperature fallback samples; a fixed seed keeps transcripts reproducible
#: model-data packages / hub repos tried by find_local_speech_model, best first
HUB_PREFERENCE = ("openai/whisper-base", "openai/whisper-small", "openai/whisper-tiny",
                  "Systran/faster-whisper-base", "Systran/faster-whisper-small", "Systran/faster-whisper-tiny")
#: punctuation / symbols Whisper's reference suppresses when a checkpoint does not list its own
SUPPRESS_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + [
    "<<", ">>", "<<<", ">>>", "--", "---", "-(", "-[", "('", '("', "((", "))", "(((", ")))", "[[", "]]",
    "{{", "}}", "♪♪", "♪♪♪", "♩", "♪", "♫", "♬", "♭", "♮", "♯"]


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: ``start`` / ``end`` in seconds from the clip start, and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What :meth:`SpeechRecognizer.transcribe` returns.

    ``text``: all segments joined (``""`` when nothing was said); ``language``: ISO code (e.g. "en"),
    ``""`` when every window was silent;
    ``segments``: time-coded pieces in order; ``no_speech``: True when no window held speech."""

    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)
    no_speech: bool = False
    language_prob: float = 1.0
    duration: float = 0.0  # seconds of audio transcribed


@dataclass
class _Decoded:
    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float


def is_no_speech(no_speech_prob: float, avg_logprob: float) -> bool:
    """The window gate: the reference rule (likely silence and unlikely words), plus a stricter one
    for very likely silence unless the words were decoded with confidence."""
    if no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD:
        return True
    return no_speech_prob > STRICT_NO_SPEECH_THRESHOLD and avg_logprob < CONFIDENT_LOGPROB


def unlikely_at_every_temperature(dec: _Decoded, temperatures: tuple[float, ...]) -> bool:
    """Whether a window's words stayed unlikely (mean log-prob < -1) at every fallback temperature.
    The reference decoder keeps them; on the real corpus's recorded sounds (tune split) they were
    what Whisper put on a dog, a piano or an engine ("Bye Bye.", "HOOH! HOOH!"): dropping them
    removed 9 of 14 such transcripts there and 26 of 43 on test ("Thanks for watching and see you
    next time." on a violin), and 4 of 189 speech transcripts on tune, 5 of 149 on test, all but
    one of them wrong ("Pick!" for "tick")."""
    return len(temperatures) > 1 and dec.temperature == temperatures[-1] and dec.avg_logprob < LOGPROB_THRESHOLD


def compression_ratio(text: str) -> float:
    """Bytes / gzip bytes: > 2.4 means the text repeats itself (a decoding loop)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class SpeechRecognizer:
    """Whisper speech-to-text. Build with :meth:`from_pretrained`; call :meth:`transcribe`.

    ``temperatures``: the fallback schedule (``(0.0,)`` = greedy only); ``max_new_tokens``: per 30 s
    window (default: half the decoder context, 224, as the reference)."""

    temperatures: tuple[float, ...] = TEMPERATURES
    max_new_tokens: int | None = None
    decode_threads: int | None = DECODE_THREADS  # None: leave torch's thread count alone
    #: used when detection is unsure (see LANGUAGE_CONFIDENCE); None always trusts detection
    default_language: str | None = DEFAULT_LANGUAGE

    def __init__(self, model: WhisperModel, tokenizer: WhisperTokenizer, *, suppress: list[int] | None = None,
                 suppress_begin: list[int] | None = None, name: str = "whisper", bf16: bool = False):
        self.model = model.eval()
        self.tok = tokenizer
        # .en checkpoints list language tokens too; only the vocabulary size tells them apart
        tokenizer.multilingual = model.dims.multilingual
        self.name = name
        self.bf16 = bf16
        self.placement = CPU
        t = tokenizer
        base = suppress if suppress is not None else self._default_suppress()
        # task / control tokens must never be sampled inside a transcript
        control = [t.transcribe, t.translate, t.sot, t.startofprev, t.no_speech, t.no_timestamps]
        self._suppress = torch.tensor(sorted({i for i in base + control if i < model.dims.vocab_size}))
        begin = suppress_begin if suppress_begin is not None else [t.encode(" ")[0], t.eot]
        self._suppress_begin = torch.tensor(begin)

    def _default_suppress(self) -> list[int]:
        ids = set()
        for sym in SUPPRESS_SYMBOLS:
            for variant in (sym, " " + sym):
                enc = self.tok.encode(variant)
                if len(enc) == 1 or sym in "♩♪♫♬♭♮♯":
                    ids.add(enc[0])
        ids.add(self.tok.encode(" -")[0])
        ids.add(self.tok.encode(" '")[0])
        return sorted(ids)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str | os.PathLike = "auto", *, bf16: bool = False,
                        allow_download: bool = True) -> "SpeechRecognizer":
        """A folder (HF ``openai/whisper-*``, CTranslate2 ``model.bin`` / model-data package), an OpenAI
        ``.pt`` file, a hub id (cache first) or ``"auto"`` (:func:`find_local_speech_model`).
        ``bf16=True`` runs matmuls under CPU bf16 autocast (faster on CPUs with AVX512-BF16/AMX)."""
        if str(path_or_id) == "auto":
            found = find_local_speech_model()
            if found is None:
                raise ModelNotAvailableError(
                    f"no local Whisper model: {speech_install_hint()} (whisper-base, MIT), or pass a "
                    "folder / hub id")
            path_or_id = found
        path = Path(path_or_id)
        if not path.exists():
            from .weights.hub import resolve_checkpoint

            path = resolve_checkpoint(str(path_or_id), allow_download=allow_download)
        folder = path if path.is_dir() else path.parent
        state, fmt, heads = read_whisper(path)
        dims = WhisperDims.from_state_dict(state, **heads)
        with torch.device("meta"):
            model = WhisperModel(dims)
        assign_weights(model, state, source=str(path), assign=True)
        tok = _tokenizer_for(folder, path)
        # CTranslate2 config.json: suppress_ids(_begin); HF: generation_config.json or old config.json
        cfg = {**read_config(folder), **_read_json(folder / "generation_config.json")}
        suppress = cfg.get("suppress_ids", cfg.get("suppress_tokens"))
        begin = cfg.get("suppress_ids_begin", cfg.get("begin_suppress_tokens"))
        return cls(model, tok, suppress=suppress, suppress_begin=begin, name=str(path_or_id), bf16=bf16)

    # -- public API ----------------------------------------------------------------------------
    @torch.inference_mode()
    def transcribe(self, audio: Audio, *, language: str | None = None, short_clip: bool = False,
                   max_seconds: float | None = None,
                   progress: Callable[[float, float], None] | None = None) -> Transcript:
        """Speech in ``audio`` (any rate / channels) -> :class:`Transcript` with segment times in seconds.

        ``language``: ISO code to skip detection. ``short_clip=True``: a clip under 30 s is encoded at
        its own length instead of padded to 30 s: 2-6x faster, but the model was trained on padded
        windows and the words can differ (espeak "two loaves" -> "do loafs"), so it is opt-in.
        ``progress(seconds_done, seconds_total)`` is called after each window (a long recording takes
        seconds per window on a CPU)."""
        samples = audio.resampled(SAMPLE_RATE).samples
        if max_seconds is not None:
            samples = samples[: int(max_seconds * SAMPLE_RATE)]
        duration = len(samples) / SAMPLE_RATE
        n_frames = len(samples) // HOP_LENGTH
        short = short_clip and len(samples) < N_SAMPLES
        n_mels = self.model.dims.n_mels
        mel = log_mel_spectrogram(samples, n_mels) if short else log_mel_windows(samples, n_mels)
        segments: list[Segment] = []
        lang, lang_prob = language, 1.0
        seek = 0
        reported = 0

        def report() -> None:
            nonlocal reported
            if progress is not None and seek > reported:
                reported = seek
                progress(round(min(seek / FRAMES_PER_SECOND, duration), 2), round(duration, 2))

        while seek < n_frames:
            report()
            size = min(N_FRAMES, n_frames - seek)
            chunk = samples[seek * HOP_LENGTH: (seek + size) * HOP_LENGTH]
            if float(np.sqrt(np.mean(np.square(chunk, dtype=np.float64)))) < SILENCE_RMS:
                seek += size
                continue
            window = mel[:, seek: seek + (size if short else N_FRAMES)]
            if not short and window.shape[1] < N_FRAMES:
                window = torch.nn.functional.pad(window, (0, N_FRAMES - window.shape[1]))
            with self._autocast():
                audio_states = self.model.encoder(self.placement.put(window[None]))  # (1, frames/2, width)
            state_kv = self.model.decoder.start(audio_states)
            with _threads(self.decode_threads):
                if lang is None:
                    lang, lang_prob = self._detect_language(state_kv)
                    if lang_prob < LANGUAGE_CONFIDENCE and self.default_language:
                        lang = self.default_language
                dec = self._decode_with_fallback(state_kv, lang)
            offset = seek / 100.0
            if is_no_speech(dec.no_speech_prob, dec.avg_logprob):
                seek += size  # silence / music / noise: nothing to say here
                continue
            if dec.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
                seek += size  # still looping after every temperature: a hallucination, drop it
                continue
            if unlikely_at_every_temperature(dec, self.temperatures):
                seek += size  # words put on an animal, an instrument or noise: drop them
                continue
            new, advance = self._segments(dec.tokens, offset, size)
            segments.extend(s for s in new if s.text)
            seek += advance
        seek = max(seek, n_frames)
        report()
        segments = [Segment(round(min(s.start, duration), 2), round(min(max(s.end, s.start), duration), 2), s.text)
                    for s in segments]
        text = " ".join(s.text for s in segments).strip()
        return Transcript(text=text, language=lang or "", segments=segments, no_speech=not text,
                          language_prob=float(lang_prob) if lang else 0.0, duration=duration)

    # -- internals -----------------------------------------------------------------------------
    def to(self, placement: Placement) -> "SpeechRecognizer":
        """The network on ``placement``'s device; token search stays on the CPU (logits come back
        once per step, as small as one row of the vocabulary)."""
        new = placement.adopt(self)
        new.model, new.placement = placement.move(self.model), placement
        return new

    def _autocast(self):
        if not self.placement.is_cpu or self.placement.compute != "fp32":
            return self.placement.autocast()
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def _logits(self, tokens: list[int], state) -> torch.Tensor:
        with self._autocast():
            out = self.model.decoder(self.placement.put(torch.tensor([tokens])), state)  # (1, n, vocab)
        return self.placement.back(out[0])

    def _detect_language(self, state_kv) -> tuple[str, float]:
        """P(language | first window) from the logits after <|startoftranscript|>."""
        if not self.tok.multilingual:
            return "en", 1.0
        from .nn.whisper import DecoderState

        logits = self._logits([self.tok.sot], DecoderState(state_kv.cross_kv))[-1]  # (vocab,)
        codes = list(self.tok.languages)
        ids = torch.tensor([self.tok.languages[c] for c in codes])
        probs = logits[ids].softmax(-1)
        best = int(probs.argmax())
        return codes[best], float(probs[best])

    def _decode_with_fallback(self, state_kv, language: str) -> _Decoded:
        from .nn.whisper import DecoderState

        gen = torch.Generator().manual_seed(SAMPLING_SEED)
        dec = None
        for temperature in self.temperatures:
            dec = self._decode(DecoderState(state_kv.cross_kv), language, temperature, gen)
            if is_no_speech(dec.no_speech_prob, dec.avg_logprob):
                return dec  # silence: the gate will skip it, sampling would only invent words
            if dec.compression_ratio <= COMPRESSION_RATIO_THRESHOLD and dec.avg_logprob >= LOGPROB_THRESHOLD:
                return dec
        return dec

    def _decode(self, state, language: str, temperature: float, gen: torch.Generator) -> _Decoded:
        """One greedy (t=0) or sampled pass over a window, with the timestamp rules."""
        t = self.tok
        prompt = t.prompt(language, timestamps=True)
        logits = self._logits(prompt, state)  # (n_prompt, vocab)
        no_speech_prob = float(logits[0].softmax(-1)[t.no_speech])  # read at the <|sot|> position
        cur = logits[-1]
        tokens: list[int] = []
        sum_logprob = 0.0
        max_new = self.max_new_tokens or self.model.dims.n_text_ctx // 2 - len(prompt)
        for _ in range(max_new):
            scores = self._apply_rules(cur.clone(), tokens)
            logprobs = scores.log_softmax(-1)
            if temperature == 0:
                nxt = int(scores.argmax())
            else:
                nxt = int(torch.multinomial((scores / temperature).softmax(-1), 1, generator=gen))
            sum_logprob += float(logprobs[nxt])
            if nxt == t.eot:
                break
            tokens.append(nxt)
            cur = self._logits([nxt], state)[-1]
        text = t.decode(tokens)
        return _Decoded(tokens, sum_logprob / (len(tokens) + 1), no_speech_prob, compression_ratio(text), temperature)

    def _apply_rules(self, scores: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        """(vocab,) logits -> logits with suppressed tokens at -inf (Whisper's sampling rules)."""
        t, tb, neg = self.tok, self.tok.timestamp_begin, -float("inf")
        scores[self._suppress] = neg
        scores[self.model.dims.vocab_size:] = neg
        if not tokens:  # blank / EOT cannot open a transcript; it must open with a timestamp <= 1 s
            scores[self._suppress_begin] = neg
            scores[:tb] = neg
            scores[tb + int(round(MAX_INITIAL_TIMESTAMP / 0.02)) + 1:] = neg
            return scores
        last_ts = tokens[-1] >= tb
        prev_ts = len(tokens) < 2 or tokens[-2] >= tb
        if last_ts:
            if prev_ts:
                scores[tb:] = neg  # a pair was just closed/opened: text must follow
            else:
                scores[: t.eot] = neg  # text then a timestamp: next is a timestamp or the end
        stamps = [x for x in tokens if x >= tb]
        if stamps:  # times never go back; a segment has nonzero length
            floor = stamps[-1] if (last_ts and not prev_ts) else stamps[-1] + 1
            scores[tb:floor] = neg
        logprobs = scores.log_softmax(-1)
        if torch.logsumexp(logprobs[tb:], -1) > logprobs[:tb].max():
            scores[:tb] = neg  # timestamps together are likelier than any word: emit a timestamp
        return scores

    def _segments(self, tokens: list[int], offset: float, size: int) -> tuple[list[Segment], int]:
        """Window tokens -> (complete segments, mel frames consumed).

        ``<|t0|> text <|t1|>`` groups are segments. If the output ends inside a segment (the window
        edge cut a sentence), that tail is dropped and decoding resumes at its opening timestamp."""
        t, tb = self.tok, self.tok.timestamp_begin
        segs: list[Segment] = []
        start, text = None, []
        for x in tokens:
            if x >= tb:
                if text and start is not None:
                    segs.append(Segment(offset + t.time_of(start), offset + t.time_of(x), t.decode(text).strip()))
                    text, start = [], None
                else:
                    start = x
            else:
                text.append(x)
        if not any(x >= tb for x in tokens[1:]):  # no closing timestamp at all: one whole-window segment
            body = t.decode([x for x in tokens if x < tb]).strip()
            return ([Segment(offset, offset + size / 100.0, body)] if body else []), size
        ended_cleanly = tokens[-1] >= tb and (len(tokens) < 2 or tokens[-2] < tb)
        if ended_cleanly or start is None or size < N_FRAMES:
            if text and start is not None:  # a short clip's last words need no second pass
                segs.append(Segment(offset + t.time_of(start), offset + size / 100.0, t.decode(text).strip()))
            return segs, size
        advance = int(round(t.time_of(start) * 100))
        return segs, advance if advance > 0 else size


@contextmanager
def _threads(n: int | None):
    """Temporarily run torch ops on ``n`` intra-op threads (process-wide, restored on exit)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pad_or_trim(samples: np.ndarray, length: int = N_SAMPLES) -> np.ndarray:
    """(n,) -> (length,): zero-padded or cut, as Whisper's feature extractor does for one window."""
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), np.float32)])


def log_mel_windows(samples: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """(n,) 16 kHz -> (n_mels, n // 160 + 3000) log-mel of the clip followed by 30 s of silence, the
    reference's layout: slice ``[:, seek:seek + 3000]`` for each window. For a clip <= 30 s the first
    window equals ``log_mel_spectrogram(pad_or_trim(samples))`` (what WhisperFeatureExtractor gives)."""
    padded = np.concatenate([np.asarray(samples, np.float32), np.zeros(N_SAMPLES, np.float32)])
    return log_mel_spectrogram(padded, n_mels=n_mels)


def _read_json(path: Path) -> dict:
    """A JSON object file as a dict; {} if absent or not an object."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _tokenizer_for(folder: Path, path: Path) -> WhisperTokenizer:
    for cand in (folder, path.parent):
        if (cand / "tokenizer.json").is_file() or (cand / "vocab.json").is_file():
            return WhisperTokenizer.from_folder(cand)
    raise CheckpointError(f"no Whisper tokenizer (tokenizer.json or vocab.json + merges.txt) next to {path}")


def find_local_speech_model() -> str | None:
    """A Whisper checkpoint available without network, or None: an installed model-data package
    (a ``<pkg>/data`` folder with ``config.json`` + ``tokenizer.json`` + ``model.bin[.part1]``), else an
    HF-cache ``openai/whisper-*`` / ``Systran/faster-whisper-*`` snapshot."""
    from importlib import metadata

    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if "whisper" not in name or not dist.files:
            continue
        for f in dist.files:
            if re.search(r"/data/model\.bin(\.part1)?$", str(f)):
                folder = Path(dist.locate_file(f)).parent
                if (folder / "tokenizer.json").is_file():
                    return str(folder)
    try:
        from .weights.hub import list_cached

        cached = {mid: snap for mid, snap, _ in list_cached()}
    except Exception:  # an unreadable cache is the same as an empty one here
        return None
    for mid in HUB_PREFERENCE + tuple(sorted(m for m in cached if "whisper" in m.lower())):
        snap = cached.get(mid)
        if snap is not None and any((snap / f).is_file()
                                    for f in ("model.safetensors", "pytorch_model.bin", "model.bin")):
            return str(snap)
    return None
