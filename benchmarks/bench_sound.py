"""The wav2clip sound tower and end-to-end audio ingest (also printed by bench_audio.py).

    .venv/bin/python benchmarks/bench_sound.py [--threads 2] [--repeat 5]

Native tower vs the wav2clip package's own modules with the same random weights (saved in its
checkpoint format). The package needs torchaudio only for ``Spectrogram``, which has no build for this
torch; it is stood in by the ``torch.stft`` call torchaudio itself makes, so the ratio compares the
networks. The reference is timed as its README uses it (one clip per call) and batched. Ingest rows
store 5 s clips through ``MemoryStore.remember_many``: sound views only, then with real Whisper
transcripts when a local model is installed (the test extra installs whisper-base).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]
from bench_audio import _time  # noqa: E402  (warm-up, then the median of `repeat` runs, in ms)

SR = 16_000
WINDOW_S = 5
BATCH = 16
INGEST_CLIPS = 16


def _stand_in_torchaudio() -> None:
    import torch

    class Spectrogram(torch.nn.Module):  # torchaudio's defaults: Hann, centred, reflect, power 2
        def __init__(self, n_fft: int = 400, hop_length: int | None = None, **_):
            super().__init__()
            self.n_fft, self.hop = n_fft, hop_length or n_fft // 2
            self.register_buffer("window", torch.hann_window(n_fft))

        def forward(self, x):
            shape = x.shape
            spec = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop, window=self.window,
                              center=True, pad_mode="reflect", return_complex=True).abs().pow(2)
            return spec.reshape(*shape[:-1], *spec.shape[-2:])

    if "torchaudio" not in sys.modules:
        sys.modules["torchaudio"] = types.SimpleNamespace(transforms=types.SimpleNamespace(Spectrogram=Spectrogram))


def tower_rows(folder: Path, repeat: int) -> list[tuple[str, float, float, str]]:
    import torch
    from _wav2clip import load_reference, make_checkpoint

    from aimemory.encoders.sound import SoundTower

    ckpt = make_checkpoint(folder / "Wav2CLIP.pt")
    t = time.perf_counter()
    ours = SoundTower.from_pretrained(ckpt)
    load_ours = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    ref = load_reference(ckpt)
    load_ref = (time.perf_counter() - t) * 1000
    waves = torch.from_numpy(np.random.default_rng(0).standard_normal((BATCH, WINDOW_S * SR)).astype(np.float32) * 0.1)
    one = waves[:1]
    with torch.inference_mode():
        cos = torch.nn.functional.cosine_similarity(torch.from_numpy(ours.embed_waves(one)), ref(one)).item()
        rows = [("load Wav2CLIP.pt", load_ours, load_ref, "ms"),
                (f"one {WINDOW_S} s window", _time(lambda: ours.embed_waves(one), repeat),
                 _time(lambda: ref(one), repeat), "ms"),
                (f"{BATCH} windows, one call each (reference usage)",
                 _time(lambda: [ours.embed_waves(w[None]) for w in waves], max(1, repeat // 2)),
                 _time(lambda: [ref(w[None]) for w in waves], max(1, repeat // 2)), "ms"),
                (f"{BATCH} windows batched", _time(lambda: ours.embed_waves(waves), repeat),
                 _time(lambda: ref(waves), repeat), "ms")]
    rows.append(("cosine vs reference (1 window)", cos, float("nan"), ""))
    return rows


SENTENCES = ["remember to water the plants on friday", "the meeting moved to three o'clock",
             "call the dentist about the appointment", "buy milk eggs and bread on the way home",
             "the dog barked at the postman again", "park the car on the second level",
             "send the invoice before the end of the month", "the train leaves at half past seven"]


def _speech_clips(folder: Path) -> list:
    """Spoken notes made with espeak-ng (several voices), or [] when it is not installed."""
    import shutil
    import subprocess

    from aimemory.inputs import path_item

    exe = shutil.which("espeak-ng")
    if exe is None:
        return []
    clips = []
    for i in range(INGEST_CLIPS):
        wav = folder / f"note{i}.wav"
        voice = ("en-us", "en", "en+f3", "en+m3")[i % 4]
        subprocess.run([exe, "-v", voice, "-w", str(wav), SENTENCES[i % len(SENTENCES)]], check=True,
                       capture_output=True)
        clips.append(path_item(wav).payload)
    return clips


def _tone_clips() -> list:
    from aimemory import Audio

    rng = np.random.default_rng(1)
    t = np.arange(WINDOW_S * SR) / SR
    return [Audio((0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32), SR)
            for _ in range(INGEST_CLIPS)]


def ingest_rows(folder: Path) -> list[tuple[str, float, float]]:
    import logging

    from aimemory import MemoryStore
    from aimemory.encoders.base import Encoder, l2_normalize
    from aimemory.speech import find_local_speech_model

    class HashedText(Encoder):  # a 512-d text side for the store; the audio path is what is timed
        model_id, dim, modalities = "bench-text-512", 512, frozenset({"text"})

        def embed_texts(self, texts):
            return l2_normalize(np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(512)
                                          for t in texts]))

    clips = _speech_clips(folder) or _tone_clips()
    logging.getLogger("aimemory.encoders").setLevel(logging.ERROR)  # the 512-d text side is no CLIP
    out = []
    variants = [("sound views only", None)]
    speech = find_local_speech_model()
    if speech is not None:
        variants.append(("sound + real whisper-base transcripts", speech))
    for name, speech_model in variants:
        with MemoryStore(folder / f"store-{len(out)}", model=HashedText(), speech_model=speech_model,
                         sound_model=folder / "Wav2CLIP.pt") as store:
            store.remember(clips[0])  # warm: model loads are not ingest
            start = time.perf_counter()
            store.remember_many(clips[1:])
            seconds = time.perf_counter() - start
            audio_s = sum(c.duration for c in clips[1:])
            out.append((f"ingest {len(clips) - 1} clips of {audio_s / (len(clips) - 1):.1f} s, {name}",
                        (len(clips) - 1) / seconds, audio_s / seconds))
    return out


def print_sound_tables(threads: int, repeat: int) -> None:
    import torch

    _stand_in_torchaudio()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = tower_rows(Path(tmp), repeat)
        ingest = ingest_rows(Path(tmp))
    print(f"\nwav2clip sound tower (ResNet-18 + MLP, random weights), {threads} threads, median of {repeat}\n")
    print(f"| {'measure':42} | {'aimemory':>10} | {'wav2clip pkg':>12} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 14}|{'-' * 8}|")
    for label, a, b, unit in rows:
        if unit:
            print(f"| {label:42} | {a:>7,.0f} {unit} | {b:>9,.0f} {unit} | {b / a:>5.2f}x |")
        else:
            print(f"| {label:42} | {a:>10.6f} | {'':>12} | {'':>6} |")
    print("(ratio = reference time / ours: above 1 is faster)\n")
    for label, rate, audio_rate in ingest:
        print(f"{label}: {rate:.2f} clips/s ({audio_rate:.1f} s of audio per s)")


def main() -> None:
    import os

    from _machine import machine_lines

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("\n".join(machine_lines()))
    print_sound_tables(args.threads, args.repeat)


if __name__ == "__main__":
    main()
