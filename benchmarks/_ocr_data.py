"""Images with known text for the OCR evaluation: Pillow-rendered screenshots, receipts and slides in
the fonts installed on the machine (``fc-list``), their rotated and low-contrast variants, the real
photographs of text that scikit-image ships, and photographs without text (the real corpus of
benchmarks/real_corpus.py, else scikit-image's photos).

Licenses: DejaVu fonts (Bitstream Vera license, public-domain changes), Liberation fonts (SIL OFL
1.1); scikit-image's ``page.png`` (a scanned book page, BSD-3-Clause with the library) and
``text.png`` (a photo of handwritten maths, public domain per its docstring: Wikipedia
File:Corner.png); real-corpus photos: see benchmarks/REAL_DATA.md.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "aimemory" / "models" / "aimemory-base" / "labels.json"
BACKGROUNDS = [(255, 255, 255), (245, 245, 240), (30, 30, 36), (250, 248, 225), (232, 240, 252)]
LOW_CONTRAST = 40  # grey levels between text and background in the low-contrast variant
ROTATIONS = (-30, -12, 8, 20, 90)  # degrees, the rotated variant cycles through them


@dataclass
class Sample:
    image: Image.Image
    text: str  # the lines drawn, in reading order, one per line
    variant: str  # clean | rotated | low-contrast | real
    font: str = ""


def fonts() -> list[str]:
    """TrueType fonts fc-list knows (DejaVu, Liberation on Debian), math/symbol fonts excluded."""
    try:
        out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    files = sorted({line.split(":")[0].strip() for line in out.splitlines()})
    return [f for f in files if f.endswith(".ttf") and "Math" not in f and "Symbol" not in f]


def vocabulary() -> list[str]:
    """Everyday English words (ImageNet class names and their categories), 4-12 letters."""
    words: set[str] = set()
    for entry in json.loads(LABELS.read_text())["classes"]:
        for value in [entry["name"], entry.get("category") or "", *entry.get("synonyms", [])]:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]{4,12}", value))
    return sorted(words)


def _code(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return f"{rng.choice(letters)}{rng.choice(letters)}-{rng.randint(1000, 9999)}"


def _lines(rng: random.Random, words: list[str], style: str) -> list[str]:
    if style == "receipt":
        lines = [f"{_code(rng)} order receipt"]
        for _ in range(rng.randint(2, 4)):
            lines.append(f"{rng.choice(words)} {rng.choice(words)} {rng.randint(1, 99)}.{rng.randint(10, 99)}")
        lines.append(f"total {rng.randint(10, 400)}.{rng.randint(10, 99)} EUR")
        return lines
    if style == "slide":
        return [" ".join(rng.sample(words, 3)).title()] + [
            "- " + " ".join(rng.sample(words, rng.randint(3, 5))) for _ in range(rng.randint(2, 3))]
    # screenshot: a window of prose-like word runs
    return [" ".join(rng.sample(words, rng.randint(4, 7))) for _ in range(rng.randint(2, 5))]


def render(rng: random.Random, words: list[str], font_files: list[str]) -> Sample:
    """One clean image: 2-6 lines in one font, 18-40 px, on a plain background."""
    style = rng.choice(["receipt", "slide", "screenshot"])
    font_file = rng.choice(font_files)
    size = rng.randint(18, 40)
    font = ImageFont.truetype(font_file, size)
    lines = _lines(rng, words, style)
    bg = rng.choice(BACKGROUNDS)
    fg = (20, 20, 20) if sum(bg) > 300 else (235, 235, 235)
    width = max(int(font.getlength(ln)) for ln in lines) + 2 * rng.randint(20, 80)
    height = int(len(lines) * size * 1.6) + 2 * rng.randint(20, 60)
    im = Image.new("RGB", (max(width, 320), max(height, 160)), bg)
    draw = ImageDraw.Draw(im)
    y = rng.randint(20, 50)
    for ln in lines:
        draw.text((rng.randint(20, 50), y), ln, fill=fg, font=font)
        y += int(size * 1.6)
    return Sample(im, "\n".join(lines), "clean", Path(font_file).stem)


def rotated(sample: Sample, degrees: float) -> Sample:
    bg = sample.image.getpixel((0, 0))
    im = sample.image.rotate(degrees, expand=True, fillcolor=bg, resample=Image.Resampling.BICUBIC)
    return Sample(im, sample.text, f"rotated {degrees:+.0f}°", sample.font)


def low_contrast(sample: Sample) -> Sample:
    """Text LOW_CONTRAST grey levels from a mid-grey background."""
    gray = sample.image.convert("L")
    dark_text = gray.getpixel((0, 0)) > 128
    lo, hi = 150 - LOW_CONTRAST, 150
    lut = [round(lo + (hi - lo) * v / 255) for v in range(256)] if dark_text else \
        [round(hi - (hi - lo) * v / 255) for v in range(256)]
    im = gray.point(lut).convert("RGB")
    return Sample(im, sample.text, "low-contrast", sample.font)


def text_images(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    words, font_files = vocabulary(), fonts()
    if not font_files:
        raise SystemExit("no TrueType fonts found by fc-list; apt-get install fonts-dejavu-core")
    return [render(rng, words, font_files) for _ in range(n)]


def real_text_images() -> list[Sample]:
    """scikit-image's real photographs of text, with their text as a person reads it."""
    try:
        import skimage.data as sk
    except ImportError:
        return []
    folder = Path(sk.__file__).parent
    page = ("Region-based segmentation Let us first determine markers of the coins and the background. "
            "These markers are pixels that we can label unambiguously as either object or background. "
            "Here, the markers are found at the two extreme parts of the histogram of grey values: "
            ">>> markers = np.zeros_like(coins)")
    out = []
    if (folder / "page.png").is_file():
        out.append(Sample(Image.open(folder / "page.png").convert("RGB"), page, "real scan (page.png)"))
    return out


def photos(limit: int) -> list[tuple[str, Image.Image]]:
    """Photographs without (much) text: the real corpus when built, else scikit-image's photos."""
    from os import environ

    cache = Path(environ.get("AIMEMORY_REAL_CACHE", "~/.cache/aimemory-eval/real")).expanduser()
    files = sorted((cache / "media" / "image").glob("*"))
    out = []
    for f in files[:limit]:
        try:
            out.append((f.name, Image.open(f).convert("RGB")))
        except OSError:
            continue
    if not out:
        try:
            import skimage.data as sk
        except ImportError:
            return []
        for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "horse", "hubble_deep_field"):
            try:
                out.append((name, Image.fromarray(getattr(sk, name)()).convert("RGB")))
            except Exception:  # noqa: BLE001 - a missing sample is skipped
                continue
    return out
