"""Text in images: an offline OCR engine behind a cheap "is there text at all?" gate.

Engine: RapidOCR (``rapidocr==3.10.0``, code Apache-2.0, RapidOCR Authors) running PaddleOCR's
PP-OCRv6 *small* detection and recognition networks and the PP-OCR mobile v2.0 angle classifier as
ONNX files that ship inside the wheel (weights Apache-2.0, Baidu / PaddleOCR authors; see the wheel's
``MODEL_LICENSES.md``), run by onnxruntime (MIT). One multilingual recogniser reads English, Chinese
(simplified and traditional), Japanese and the Latin-script languages (French, German, Spanish,
Italian, Portuguese, Dutch, Polish, Turkish, Vietnamese...). The three model files are sha256-pinned
here and passed to the engine by path, so it never downloads anything.

Why this engine (benchmarks/eval_ocr.py --tesseract, 10 generated images per row): Tesseract 5.3
(Debian ``tesseract-ocr``, Apache-2.0, via pytesseract, Apache-2.0) reads clean and low-contrast
English as well (word recall 1.0 / 1.0 vs 1.0 / 0.91 here), but not text rotated by 8-90 degrees
(0.0-0.3 vs 0.84-1.0), nor accented words (French 0.3, Polish 0.33 vs 0.9, 1.0), nor the scanned
page (0.58 vs 0.79); and it installs from apt, not from PyPI with its models. CPU per screenshot
here: about 0.6 s (one thread).

The gate (:func:`text_likely`) costs a few milliseconds: edges are grouped into word-shaped blobs
(elongated, solid, made of several character-sized parts, at any angle); only an image with such a
blob goes on to a detector-only probe at 480 px, and only an image where the probe finds a text box is
read in full (detector at 960 px, angle classifier, recogniser), so photographs without text cost
little: +16% ingest CPU with ``aimemory-base`` on 60 real photos (2 of 60 passed the gate).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, ModelNotAvailableError, install_hint

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

log = logging.getLogger("aimemory.ocr")

ENGINE = "rapidocr"
ENGINE_VERSION = "3.10.0"
ENGINE_ID = f"rapidocr-{ENGINE_VERSION}/PP-OCRv6-small"
ENV_SWITCH = "AIMEMORY_OCR"  # "0" turns OCR="auto" off (tests do, as for speech)
#: file name -> sha256, as rapidocr 3.10.0 ships them in ``rapidocr/models``
MODEL_FILES = {
    "det": ("PP-OCRv6_det_small.onnx", "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "rec": ("PP-OCRv6_rec_small.onnx", "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
    "cls": ("ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}
LANGUAGES = ("English", "Chinese", "Japanese", "French", "German", "Spanish", "Italian", "Portuguese",
             "Dutch", "Polish", "Turkish", "Vietnamese", "and other Latin-script languages")
MIN_LINE_SCORE = 0.5  # recogniser confidence below which a line is dropped (the engine's default)
#: the detector sees the image with its longer side at this length (small images are enlarged, large
#: ones reduced). The engine's default (shorter side 736) costs 3x the CPU on photos (0.34 vs 0.11 s)
#: for the same word recall on generated text; enlarging small images keeps small print readable
READ_SIDE = 960
#: after the gate, the detector alone at this longer side (a tenth of a full read's CPU) must find a
#: text box before the full read runs: a photo the gate lets through rarely gets past it
PROBE_SIDE = 480
#: an image this many times longer than wide (or the reverse) is read in tiles along its length
TILE_RATIO = 3
#: tiles overlap by 1/n of their length, so a line one cuts is whole in the next: half along a wide
#: strip (its lines run along it: up to half a tile long), an eighth down a tall one (lines across it)
TILE_OVERLAP_ALONG, TILE_OVERLAP_ACROSS = 2, 8

# -- the gate: thresholds chosen on 241 generated text images (seed 0 of benchmarks/_ocr_data.py: clean,
# rotated, low-contrast, plus page.png), 60 one-line images of 1-3 words and 597 real photos without
# text: all multi-line text images pass, 55% of the one-line images, 3% of the photos
GATE_SIDE = 1024  # the gate looks at the image with its longer side at most this
GATE_CLOSE = 9  # px: closing merges the characters of a word (and words of a line) into one blob
GATE_MIN_PARTS = 3  # character-sized edge parts a word blob must hold
GATE_MIN_ELONGATION = 3.5  # length / thickness of a word blob
GATE_MIN_FILL = 0.65  # blob area / its fitted rectangle's area: words are solid, textures are ragged
GATE_MIN_WORDS = 2  # word blobs an image needs: one elongated blob is often a pole or an edge...
GATE_ONE_LINE = (4, 0.8)  # ...unless it holds this many parts and is this solid (min parts, min fill)
GATE_THICKNESS = (5.0, 120.0)  # px at gate scale: the height of readable text
GATE_PART_AREA = (6, 4000)  # px at gate scale: one character's edge outline
GATE_MIN_HALF_SIDE = 128  # px: an image smaller than twice this is not looked at again at half size
GATE_SCALES = 3  # full, half and quarter size: letters up to ~4x the tuned height pass


@dataclass(frozen=True)
class OcrWord:
    text: str
    box: tuple  # 4 (x, y) corners in image pixels, clockwise from top left


@dataclass(frozen=True)
class OcrLine:
    text: str
    score: float
    box: tuple  # 4 (x, y) corners in image pixels
    words: tuple[OcrWord, ...] = ()


@dataclass(frozen=True)
class OcrResult:
    """What an image says: its text lines in reading order, with boxes, and the image's size."""

    lines: tuple[OcrLine, ...]
    size: tuple[int, int]  # (width, height) in pixels

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (what the store keeps in ``metadata["ocr"]``)."""
        return {"engine": ENGINE_ID, "size": list(self.size),
                "lines": [{"text": ln.text, "score": round(ln.score, 4), "box": [list(p) for p in ln.box],
                           "words": [{"text": w.text, "box": [list(p) for p in w.box]} for w in ln.words]}
                          for ln in self.lines]}


def _corners(points) -> tuple:
    return tuple((int(round(float(x))), int(round(float(y)))) for x, y in np.asarray(points).reshape(-1, 2)[:4])


def _shifted(corners: tuple, dx: int, dy: int) -> tuple:
    return tuple((x + dx, y + dy) for x, y in corners)


# -- availability --------------------------------------------------------------------------------
def ocr_missing() -> str | None:
    """Why OCR cannot run here (with the command that fixes it), or None when it can."""
    import importlib.util

    for module, package in ((ENGINE, f"{ENGINE}=={ENGINE_VERSION}"), ("onnxruntime", "onnxruntime")):
        if importlib.util.find_spec(module) is None:
            return f"the OCR engine is not installed ({package} missing); enable it with: {install_hint('ocr')}"
    found = _installed_version(str(importlib.util.find_spec(ENGINE).origin))  # type: ignore[union-attr]
    if found != ENGINE_VERSION:
        return (f"{ENGINE} {found} is installed but aimemory pins {ENGINE_VERSION} (its models are "
                f"sha256-checked); run: pip install {ENGINE}=={ENGINE_VERSION}")
    return None


@functools.lru_cache(maxsize=4)
def _installed_version(origin: str) -> str:
    """The engine's installed version, read once per install location: the metadata scan costs
    milliseconds, and stores check it on every open."""
    from importlib.metadata import version

    return version(ENGINE)


def model_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(ENGINE)
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(ocr_missing() or f"{ENGINE} is not importable")
    return Path(spec.origin).resolve().parent / "models"


def verified_models() -> dict[str, Path]:
    """task -> model file, each checked against its pinned sha256 (once per process)."""
    return dict(_verified(model_folder(), tuple(MODEL_FILES.items())))


@functools.lru_cache(maxsize=4)
def _verified(folder: Path, files: tuple) -> tuple:
    out = {}
    for task, (name, digest) in files:
        path = folder / name
        if not path.is_file():
            raise ModelNotAvailableError(f"{path} is missing; reinstall the OCR engine: "
                                         f"pip install --force-reinstall {ENGINE}=={ENGINE_VERSION}")
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != digest:
            raise CheckpointError(f"{path} has sha256 {h.hexdigest()}, expected {digest}; reinstall with "
                                  f"pip install --force-reinstall {ENGINE}=={ENGINE_VERSION}")
        out[task] = path
    return tuple(out.items())


# -- the gate ------------------------------------------------------------------------------------
def _gray(image: "Image", side: int) -> np.ndarray:
    """PIL image -> (h, w) uint8 with the longer side at most ``side``."""
    im = image.convert("L")
    scale = side / max(im.size)
    if scale < 1:
        from PIL import Image as PILImage

        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       PILImage.Resampling.BILINEAR)
    return np.asarray(im)


def gate_sides(size: tuple[int, int]) -> tuple[int, ...]:
    """The longer sides the gate looks at an image with: GATE_SIDE, then half and a quarter of that
    (or of the image), where large print (a sign's 64-px letters) has the height of the text the
    gate was tuned on. On the real corpus's 595 photos 3.4% -> 4.0% pass (the probe then reads
    them), on 240 generated signs of 48-128 px letters 10% -> 64%."""
    sides, side = [GATE_SIDE], min(GATE_SIDE, max(size)) // 2
    while side >= GATE_MIN_HALF_SIDE and len(sides) < GATE_SCALES:
        sides.append(side)
        side //= 2
    return tuple(sides)


def text_likely(image: "Image", side: int = GATE_SIDE) -> bool:
    """A few milliseconds: does the image hold word-shaped groups of character edges (at any angle)?"""
    import cv2

    gray = _gray(image, side)  # (h, w) uint8
    if min(gray.shape) < 8:
        return False
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    # Otsu adapts to low-contrast text; the floor keeps sensor noise and JPEG ringing out
    level, _ = cv2.threshold(grad, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edges = (grad > max(level, 10)).astype(np.uint8)
    n_parts, part_of, stats, centroids = cv2.connectedComponentsWithStats(edges, connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]
    parts = centroids[1:][(area >= GATE_PART_AREA[0]) & (area <= GATE_PART_AREA[1])]
    if len(parts) < GATE_MIN_PARTS:
        return False
    # characters of a word sit closer than their height: closing merges them into one blob
    merged = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, np.ones((GATE_CLOSE, GATE_CLOSE), np.uint8))
    n_blobs, blob_of = cv2.connectedComponents(merged, connectivity=8)
    py, px = parts[:, 1].astype(int), parts[:, 0].astype(int)
    count = np.bincount(blob_of[py, px], minlength=n_blobs)  # character parts per blob
    count[0] = 0
    candidates = np.flatnonzero(count >= GATE_MIN_PARTS)
    if not len(candidates):
        return False
    ys, xs = np.nonzero(np.isin(blob_of, candidates))
    labels = blob_of[ys, xs]
    # second moments per blob, vectorised: a filled L x W rectangle has variances L^2/12 and W^2/12
    n = np.bincount(labels, minlength=n_blobs).astype(np.float64)
    mx = np.bincount(labels, xs, n_blobs) / np.maximum(n, 1)
    my = np.bincount(labels, ys, n_blobs) / np.maximum(n, 1)
    dx, dy = xs - mx[labels], ys - my[labels]
    sxx = np.bincount(labels, dx * dx, n_blobs) / np.maximum(n, 1)
    syy = np.bincount(labels, dy * dy, n_blobs) / np.maximum(n, 1)
    sxy = np.bincount(labels, dx * dy, n_blobs) / np.maximum(n, 1)
    half_gap = np.sqrt(((sxx - syy) / 2) ** 2 + sxy ** 2)
    long_side = np.sqrt(12 * np.maximum((sxx + syy) / 2 + half_gap, 0))
    thick = np.sqrt(12 * np.maximum((sxx + syy) / 2 - half_gap, 0))
    c = candidates
    fill = n[c] / np.maximum(long_side[c] * thick[c], 1)
    words = ((long_side[c] >= GATE_MIN_ELONGATION * thick[c]) & (fill >= GATE_MIN_FILL)
             & (thick[c] >= GATE_THICKNESS[0]) & (thick[c] <= GATE_THICKNESS[1]))
    one_line = words & (count[c] >= GATE_ONE_LINE[0]) & (fill >= GATE_ONE_LINE[1])
    return int(words.sum()) >= GATE_MIN_WORDS or bool(one_line.any())


# -- the engine ----------------------------------------------------------------------------------
class OcrEngine:
    """RapidOCR with the pinned models: ``read(image)`` -> :class:`OcrResult` (no lines when the
    gate or the detector finds no text). ``threads`` caps onnxruntime's threads (None: its default)."""

    def __init__(self, threads: int | None = None, gate: bool = True):
        self.threads = threads
        self.gate = gate
        self._engine = None
        self._probe = None
        self._lock = threading.Lock()
        self.engine_id = ENGINE_ID

    @property
    def engine(self):
        with self._lock:
            if self._engine is None:
                models = verified_models()
                from rapidocr import RapidOCR

                threads = -1 if self.threads is None else int(self.threads)
                self._engine = RapidOCR(params={
                    "Global.log_level": "error",
                    "Det.limit_type": "max", "Det.limit_side_len": READ_SIDE,
                    "Det.model_path": str(models["det"]), "Rec.model_path": str(models["rec"]),
                    "Cls.model_path": str(models["cls"]),
                    "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1 if self.threads else -1,
                })
            return self._engine

    @property
    def probe(self):
        """The detector alone at PROBE_SIDE (its own small ONNX session)."""
        with self._lock:
            if self._probe is None:
                models = verified_models()
                from rapidocr import RapidOCR

                self._probe = RapidOCR(params={
                    "Global.log_level": "error", "Global.use_cls": False, "Global.use_rec": False,
                    "Det.limit_type": "max", "Det.limit_side_len": PROBE_SIDE,
                    "Det.model_path": str(models["det"]), "Rec.model_path": str(models["rec"]),
                    "Cls.model_path": str(models["cls"]),
                    "EngineConfig.onnxruntime.intra_op_num_threads": -1 if self.threads is None else int(self.threads),
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1 if self.threads else -1,
                })
            return self._probe

    def read(self, image: "Image") -> OcrResult:
        """The text lines in ``image``. A long strip (a banner, a scrolling screenshot) is read in
        tiles along its length: whole, its text would shrink to nothing at READ_SIDE. An image the
        engine fails on reads as no text (the memory is still stored, by its pixels)."""
        size = (int(image.width), int(image.height))
        try:
            if max(size) > TILE_RATIO * min(size) and max(size) > READ_SIDE:
                return OcrResult(self._tiled_lines(image), size)
            return OcrResult(self._lines(image), size)
        except Exception as exc:  # noqa: BLE001 - OCR is an extra view: never the reason a memory is lost
            log.warning("reading the text in a %d x %d image failed (%s: %s); it is stored without it",
                        size[0], size[1], type(exc).__name__, exc)
            return OcrResult((), size)

    def _tiled_lines(self, image: "Image") -> tuple[OcrLine, ...]:
        """Lines of a long strip, read in overlapping tiles of its short side by at least READ_SIDE.
        A line wholly inside a tile's overlap with the one before was read there already; one a tile
        cuts at its end, starting inside that overlap, is read whole by the next."""
        wide = image.width >= image.height
        length, short = (image.width, image.height) if wide else (image.height, image.width)
        tile = max(short, READ_SIDE)
        # lines run along a banner: a tile must hold each whole; across a tall screenshot: one line
        overlap = tile // (TILE_OVERLAP_ALONG if wide else TILE_OVERLAP_ACROSS)
        out: list[OcrLine] = []
        for start in range(0, max(length - overlap, 1), tile - overlap):
            end = min(start + tile, length)
            crop = image.crop((start, 0, end, short) if wide else (0, start, short, end))
            last = end == length
            for line in self._lines(crop):
                along = [p[0 if wide else 1] for p in line.box]
                lo, hi = min(along), max(along)
                if (start and hi <= overlap) or (not last and hi >= end - start - 2 and lo >= tile - overlap):
                    continue
                dx, dy = (start, 0) if wide else (0, start)
                out.append(OcrLine(line.text, line.score, _shifted(line.box, dx, dy),
                                   tuple(OcrWord(w.text, _shifted(w.box, dx, dy)) for w in line.words)))
            if last:
                break
        return tuple(out)

    def _lines(self, image: "Image") -> tuple[OcrLine, ...]:
        size = (int(image.width), int(image.height))
        if self.gate and not any(text_likely(image, side) for side in gate_sides(size)):
            return ()
        if self.gate:  # a small image is probed as it is (the full read enlarges it to READ_SIDE)
            found = self.probe(np.asarray(image.convert("RGB")))
            if getattr(found, "boxes", None) is None or not len(found.boxes):
                return ()
        rgb = image.convert("RGB")
        scale = READ_SIDE / max(size)
        if scale > 1:  # small print: enlarge so the detector sees it at READ_SIDE
            from PIL import Image as PILImage

            rgb = rgb.resize((round(size[0] * scale), round(size[1] * scale)), PILImage.Resampling.BICUBIC)
        else:
            scale = 1.0
        out = self.engine(np.asarray(rgb), return_word_box=True)
        texts = getattr(out, "txts", None)
        if not texts:
            return ()
        words = list(getattr(out, "word_results", None) or ())
        lines = []
        for i, (text, score, box) in enumerate(zip(texts, out.scores, out.boxes)):
            if not str(text).strip() or float(score) < MIN_LINE_SCORE:
                continue
            line_words = words[i] if i < len(words) and len(words) == len(texts) else ()
            ws = tuple(OcrWord(str(w[0]), _corners(np.asarray(w[2], np.float64) / scale)) for w in line_words
                       if len(w) == 3 and w[2] is not None and str(w[0]).strip())
            lines.append(OcrLine(str(text).strip(), float(score), _corners(np.asarray(box, np.float64) / scale), ws))
        return tuple(lines)

    def read_many(self, images) -> list[OcrResult]:
        return [self.read(im) for im in images]


_SHARED: dict[Any, OcrEngine] = {}
_SHARED_LOCK = threading.Lock()


def load_ocr(spec: object) -> tuple[object | None, str]:
    """``ocr=`` of the store -> (engine or None, why). ``"auto"``: the pinned engine when it is
    installed (and ``AIMEMORY_OCR`` is not "0"), else none; True: the engine or
    :class:`ModelNotAvailableError`; False/None: none; an object with ``read(image)``: itself."""
    if spec is None or spec is False:
        return None, "off (ocr=False)"
    if hasattr(spec, "read") and not isinstance(spec, (str, bytes, os.PathLike)):
        return spec, f"on ({getattr(spec, 'engine_id', type(spec).__name__)})"
    if spec not in ("auto", True):
        raise ValueError(f"ocr= must be 'auto', True, False or an engine with read(image); got {spec!r}")
    missing = ocr_missing()
    if missing is not None:
        if spec is True:
            raise ModelNotAvailableError(missing)
        return None, f"off: {missing}"
    if spec == "auto" and os.environ.get(ENV_SWITCH, "1") == "0":
        return None, f"off ({ENV_SWITCH}=0); pass ocr=True to turn it on"
    with _SHARED_LOCK:  # one engine (and one set of ONNX sessions) per process
        engine = _SHARED.setdefault("default", OcrEngine())
    return engine, f"on ({ENGINE_ID})"
