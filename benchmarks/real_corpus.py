"""Build the real-world evaluation corpus (photographs, recorded sounds, human speech) from pinned
Debian packages, into a cache folder with a ``manifest.jsonl``. Media are never committed: this
script recreates them. Sources, licenses and caption rules: benchmarks/REAL_DATA.md.

    python benchmarks/real_corpus.py                    # full corpus -> ~/.cache/aimemory-eval/real
    python benchmarks/real_corpus.py --small            # CI subset  -> ~/.cache/aimemory-eval/real-small
    python benchmarks/real_corpus.py --cache DIR        # elsewhere (or AIMEMORY_REAL_CACHE=DIR)

Packages (Debian 12 "bookworm"), fetched with ``apt-get download PKG=VERSION`` + ``dpkg-deb -x``
unless that exact version is installed: tuxpaint-stamps-default=2022.06.04-1,
gcompris-qt-data=3.1-2, asterisk-core-sounds-en-wav=1.6.1-1, asterisk-core-sounds-en=1.6.1-1,
tuxpaint-data=1:0.9.28-sdl2-1, mate-backgrounds=1.26.0-1, lomiri-wallpapers-16.04=20.04.0-2,
lomiri-wallpapers-20.04=20.04.0-2, plasma-workspace-wallpapers=4:5.27.5-2 (--small: the first two).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from math import gcd
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _real_debian import SourceUnavailable, package_root  # noqa: E402
from _real_scenes import PACKAGES as SCENE_PACKAGES  # noqa: E402
from _real_scenes import scenes  # noqa: E402
from _real_sources import (  # noqa: E402
    ASTERISK,
    ASTERISK_TEXT,
    GCOMPRIS,
    TUXPAINT,
    Item,
    asterisk,
    gcompris,
    head_noun,
    tuxpaint,
)

CACHE_ENV = "AIMEMORY_REAL_CACHE"
DEFAULT_CACHE = Path("~/.cache/aimemory-eval/real")
MANIFEST = "manifest.jsonl"
CORPUS_VERSION = "1"  # bump when selection, captions or splits change: cached corpora are rebuilt
STAMP = "corpus-version"
TUNE_FRACTION = 0.3  # share of groups kept for model design; the rest is the reported test split
MAX_SIDE = 512  # photos are stored as RGB JPEG, longest side at most this
JPEG_QUALITY = 92
BACKGROUND = (255, 255, 255)  # cut-out stamps are composited on white
SAMPLE_RATE = 16000  # audio stored as 16 kHz mono 16-bit WAV
MAX_SECONDS = {"sound": 10.0, "speech": 15.0}
SILENCE_PEAK = 1e-3  # a clip whose peak is below this is an empty placeholder
SMALL = {"image": 48, "sound": 24, "speech": 24}  # per modality in --small mode
SMALL_SOURCES = (TUXPAINT, GCOMPRIS)  # 2 packages suffice for every modality in --small mode
FULL_SOURCES = (TUXPAINT, GCOMPRIS, ASTERISK, ASTERISK_TEXT) + SCENE_PACKAGES


def default_cache(small: bool = False) -> Path:
    base = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)).expanduser()
    return base.with_name(base.name + "-small") if small else base


def unit_hash(key: str) -> float:
    """A stable number in [0, 1) from a string (sha256, so the same on every machine)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0 ** 64


def group_of(item: Item) -> str:
    """Items of one concept (all apples, a stamp's photo, sound and spoken name) share a split;
    telephone prompts are independent clips."""
    if item.source.startswith(ASTERISK[0]):
        return item.id
    return item.group or head_noun(item.concept)


def split_of(item: Item) -> str:
    return "tune" if unit_hash("split:" + group_of(item)) < TUNE_FRACTION else "test"


def collect(cache: Path, small: bool = False) -> list[Item]:
    """Every candidate item from the pinned packages, sorted by id."""
    roots = {}
    for pkg, ver in (SMALL_SOURCES if small else FULL_SOURCES):
        roots[pkg] = package_root(pkg, ver, cache)
    items = tuxpaint(roots[TUXPAINT[0]]) + gcompris(roots[GCOMPRIS[0]]) + scenes(roots)
    if not small:
        items += asterisk(roots[ASTERISK[0]], roots[ASTERISK_TEXT[0]])
    seen: set[str] = set()
    unique = []
    for it in sorted(items, key=lambda i: i.id):
        if it.id not in seen:  # a bundle may hold one file twice
            seen.add(it.id)
            unique.append(it)
    return unique


def pick_small(items: list[Item]) -> list[Item]:
    """A deterministic subset: per modality the items whose hashed id is smallest; speech keeps the
    spoken names that have a photo, so spoken-query -> photo can be scored."""
    concepts_with_photo = {i.concept for i in items if i.modality == "image"}
    out = []
    for modality, n in SMALL.items():
        pool = [i for i in items if i.modality == modality]
        if modality == "speech":
            pool = [i for i in pool if i.concept in concepts_with_photo]
        out += sorted(pool, key=lambda i: unit_hash("small:" + i.id))[:n]
    photo_for_speech = {i.concept for i in out if i.modality == "speech"}
    chosen = {i.id for i in out}
    out += [i for i in items if i.modality == "image" and i.concept in photo_for_speech
            and i.id not in chosen]
    return sorted(out, key=lambda i: i.id)


def write_image(data: bytes, dest: Path) -> bytes:
    """Store a photo as RGB JPEG on white; returns its 16x16 average hash (for de-duplication)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgba = im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    rgb.thumbnail((MAX_SIDE, MAX_SIDE))
    rgb.save(dest, "JPEG", quality=JPEG_QUALITY)
    grey = np.asarray(rgb.convert("L").resize((16, 16)), dtype=np.float32)  # (16, 16)
    return np.packbits(grey > grey.mean()).tobytes()


def write_audio(data: bytes, dest: Path, max_seconds: float) -> bytes | None:
    """Store a clip as 16 kHz mono WAV; returns a digest of its samples, or None (not written)
    when it is silent."""
    import soundfile as sf
    from scipy.signal import resample_poly

    y, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (n, channels)
    y = y.mean(axis=1)[: int(max_seconds * sr)]
    if sr != SAMPLE_RATE:
        g = gcd(sr, SAMPLE_RATE)
        y = resample_poly(y, SAMPLE_RATE // g, sr // g).astype(np.float32)
    peak = float(np.abs(y).max()) if len(y) else 0.0
    if peak < SILENCE_PEAK:
        return None
    if peak > 1.0:  # resampling can overshoot
        y = y / peak
    sf.write(dest, y, SAMPLE_RATE, subtype="PCM_16")
    return hashlib.sha256(np.round(y * 32767).astype(np.int16).tobytes()).digest()


def build(cache: Path | None = None, small: bool = False, force: bool = False) -> Path:
    """Create (or reuse) the corpus; returns the manifest path. Fetched packages are kept in the
    full corpus's folder (or in ``cache`` when given) so both sizes share one download."""
    sources = (cache or default_cache(False)).expanduser()
    cache = (cache or default_cache(small)).expanduser()
    manifest = cache / MANIFEST
    stamp = cache / STAMP
    if manifest.exists() and not force and stamp.exists() and stamp.read_text().strip() == CORPUS_VERSION:
        return manifest
    items = collect(sources, small)
    if small:
        items = pick_small(items)
    rows, seen, sounds = [], set(), {}
    for it in items:
        folder = cache / "media" / it.modality
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / (it.id + (".jpg" if it.modality == "image" else ".wav"))
        try:
            if it.modality == "image":
                digest = write_image(it.read(), dest)
                if digest in seen:  # the same photo shipped twice (e.g. two GCompris games)
                    dest.unlink()
                    continue
                seen.add(digest)
            else:
                digest = write_audio(it.read(), dest, MAX_SECONDS[it.modality])
                if digest is None:
                    continue
                sounds.setdefault(digest, []).append(it.id)
        except Exception as exc:  # a file the decoders cannot read is left out, and said so
            print(f"skipped {it.id}: {exc}", file=sys.stderr)
            continue
        rows.append({"id": it.id, "modality": it.modality, "path": dest.relative_to(cache).as_posix(),
                     "caption": it.caption, "label": it.label, "concept": it.concept,
                     "group": group_of(it), "source": it.source, "license": it.license,
                     "split": split_of(it)})
    # one recording shipped under two names (badger.ogg == beaver.ogg) names neither reliably
    ambiguous = {i for ids in sounds.values() if len(ids) > 1 for i in ids}
    rows = [r for r in rows if r["id"] not in ambiguous]
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(manifest)
    stamp.write_text(CORPUS_VERSION + "\n")
    return manifest


def load_manifest(manifest: str | Path, split: str | None = None) -> list[dict]:
    """Rows of a manifest (``split`` = "tune", "test" or None for all); ``path`` made absolute."""
    manifest = Path(manifest)
    rows = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["path"] = str(manifest.parent / row["path"])
            if split in (None, "all") or row["split"] == split:
                rows.append(row)
    return rows


def summary(rows: list[dict]) -> str:
    """Counts per modality and split, and per source."""
    lines = [f"{'modality':<8} {'tune':>5} {'test':>5} {'all':>5}"]
    for m in ("image", "sound", "speech"):
        sel = [r for r in rows if r["modality"] == m]
        tune = sum(r["split"] == "tune" for r in sel)
        lines.append(f"{m:<8} {tune:>5} {len(sel) - tune:>5} {len(sel):>5}")
    for src in sorted({r["source"] for r in rows}):
        per = {m: sum(r["source"] == src and r["modality"] == m for r in rows) for m in ("image", "sound", "speech")}
        lines.append(f"{src}: " + ", ".join(f"{v} {k}" for k, v in per.items() if v))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=None, help=f"output folder (default: ${CACHE_ENV} "
                    f"or {DEFAULT_CACHE}, with -small appended for --small)")
    ap.add_argument("--small", action="store_true", help="small deterministic subset for CI")
    ap.add_argument("--force", action="store_true", help="rebuild even if the manifest exists")
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        manifest = build(args.cache, args.small, args.force)
    except SourceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{manifest} ({time.time() - t0:.0f} s)")
    print(summary(load_manifest(manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
