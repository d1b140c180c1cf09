"""Write the bundled demo samples into aimemory/samples/ (images, spoken clips, text notes).

Images are Google Noto emoji (Apache-2.0) rendered on a soft gradient; clips are espeak-ng
(GPL-3.0 program; its output is not covered by the GPL) using a voice variant held out from
training. Run after build_data.py has fetched the sources.
"""

from __future__ import annotations

import io
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
OUT = ROOT.parent / "aimemory" / "samples"
EMOJI_DIR = ROOT / "data" / "src" / "emoji-datasource-google" / "package" / "img" / "google" / "64"
CANVAS = 96
# file stem -> (emoji image file, gradient top colour, gradient bottom colour)
IMAGES = {
    "cat": ("1f408.png", (250, 236, 210), (236, 205, 160)),
    "dog": ("1f415.png", (214, 236, 250), (160, 200, 236)),
    "car": ("1f697.png", (226, 240, 226), (170, 210, 170)),
    "pizza": ("1f355.png", (250, 250, 235), (230, 225, 190)),
    "tree": ("1f333.png", (220, 240, 255), (200, 230, 200)),
    "guitar": ("1f3b8.png", (245, 230, 245), (215, 190, 220)),
    "bicycle": ("1f6b2.png", (235, 235, 235), (200, 200, 210)),
    "umbrella": ("2602-fe0f.png", (210, 220, 240), (170, 180, 210)),
}
CLIPS = {  # file stem -> (words, espeak voice); most found their image with all 7 held-out voices tried
    "pizza": ("remember to buy pizza", "en-gb+f4"),
    "cat": ("look, a cat", "en-us+f4"),
    "guitar": ("a guitar", "en-gb-x-rp+m4"),
    "bicycle": ("ride the bicycle", "en-us+m7"),
    "dog": ("a dog barking", "en-gb+m7"),  # weaker: right with 4 of the 7 voices
}
NOTES = {
    "shopping.txt": "Buy pizza, apples and a birthday cake for Saturday.",
    "bike.txt": "New bicycle tyre.",  # the bag-of-n-grams text tower dilutes long sentences
    "garden.txt": "Plant a small tree in the garden when it stops raining.",
}


def render(png: str, top: tuple, bottom: tuple) -> Image.Image:
    t = np.linspace(0, 1, CANVAS, dtype=np.float32)[:, None, None]
    bg = (np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t) * np.ones((1, CANVAS, 1), np.float32)
    canvas = Image.fromarray(bg.astype(np.uint8)).convert("RGBA")
    sprite = Image.open(EMOJI_DIR / png).convert("RGBA")
    canvas.alpha_composite(sprite, ((CANVAS - 64) // 2, (CANVAS - 64) // 2))
    return canvas.convert("RGB")


def speak(text: str, voice: str) -> np.ndarray:
    raw = subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as w:
        sr = w.getframerate()
        y = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    import librosa

    y = librosa.resample(y, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
    nz = np.flatnonzero(np.abs(y) > 1e-3)
    y = y[max(nz[0] - 1600, 0): nz[-1] + 1600]
    return (np.clip(y * 0.8 / max(np.abs(y).max(), 1e-6), -1, 1) * 32767).astype(np.int16)


def main() -> None:
    (OUT / "images").mkdir(parents=True, exist_ok=True)
    (OUT / "audio").mkdir(exist_ok=True)
    (OUT / "notes").mkdir(exist_ok=True)
    for stem, (png, top, bottom) in IMAGES.items():
        render(png, top, bottom).save(OUT / "images" / f"{stem}.png", optimize=True)
    for stem, (text, voice) in CLIPS.items():
        y = speak(text, voice)
        with wave.open(str(OUT / "audio" / f"{stem}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(y.tobytes())
    for name, text in NOTES.items():
        (OUT / "notes" / name).write_text(text + "\n")
    print(f"wrote samples to {OUT}")


if __name__ == "__main__":
    main()
