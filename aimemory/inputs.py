"""Turning what users hand us into decoded items: modality sniffing and decoding.

``str`` is text; ``pathlib.Path`` is a file whose modality is sniffed from its bytes; PIL images and
uint8 ``HxW`` / ``HxWx3`` arrays are images; :class:`Audio` is a waveform; ``bytes`` are sniffed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DecodeError, InputError, InputTooLargeError, UnsupportedInputError
from .text_bytes import TEXT_SAMPLE, decode_text, printable

TARGET_SAMPLE_RATE = 16_000


@dataclass(eq=False)
class Audio:
    """A waveform: ``samples`` (n,) or (n, channels) float, ``sample_rate`` in Hz."""

    samples: np.ndarray
    sample_rate: int
    source: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        arr = np.asarray(self.samples)
        if arr.ndim == 2:  # (n, channels) -> mono
            arr = arr.mean(axis=1) if arr.shape[1] <= 16 else arr.mean(axis=0)
        if arr.ndim != 1:
            raise InputError(f"Audio samples must be 1-D or (n, channels); got shape {arr.shape}: pass a "
                             "mono waveform or one column per channel")
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
        self.samples = np.ascontiguousarray(arr, dtype=np.float32)
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise InputError(f"Audio sample_rate must be a positive int; got {self.sample_rate!r}")
        self.sample_rate = int(self.sample_rate)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def resampled(self, rate: int = TARGET_SAMPLE_RATE) -> "Audio":
        """Mono float32 at ``rate`` Hz (librosa's soxr resampler)."""
        if rate == self.sample_rate:
            return self
        from .notebook import import_quietly

        librosa = import_quietly("librosa")
        y = librosa.resample(self.samples, orig_sr=self.sample_rate, target_sr=rate, res_type="soxr_hq")
        return Audio(y.astype(np.float32), rate, source=self.source)


# -- limits: refuse bombs and accidents with a clear error instead of exhausting memory ------------
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_TEXT_CHARS = 2_000_000
MAX_IMAGE_PIXELS = 80_000_000  # the most pixels decoded into memory
# Headers over this are refused unread (no camera writes them: bombs and accidents). Between the two
# limits a JPEG is reduced while decoding (1/2, 1/4 or 1/8 scale, libjpeg's DCT scaling) and its
# original bytes stored; formats without reduced decoding (PNG, GIF...) keep MAX_IMAGE_PIXELS.
MAX_HEADER_PIXELS = 1_000_000_000
_DRAFT_SCALES = (2, 4, 8)
MAX_AUDIO_SECONDS = 4 * 3600
MIN_AUDIO_SECONDS = 0.05

MODALITIES = ("image", "audio", "text", "video")


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_AUDIO_MAGIC = (
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"\xff\xf3", "audio/mpeg"),
    (b"\xff\xf2", "audio/mpeg"),
)


@dataclass(eq=False)
class Item:
    """A decoded input: ``payload`` is an RGB PIL image, an :class:`Audio` at 16 kHz, a str, or a
    :class:`~aimemory.preprocess.video.VideoClip` (keyframes + audio track).
    ``content`` is the original bytes to keep (None for text, whose payload is the content)."""

    modality: str
    payload: object
    content: bytes | None
    mime: str
    source: str | None
    content_hash: str
    transcript: str | None = None  # filled in by the speech model for audio, by OCR for images
    ocr: dict | None = None  # what OCR read in an image: lines, words and boxes (image_text.py)


_NETPBM = re.compile(rb"P[1-6]\s+(?:#[^\n]*\n\s*)*\d+\s+\d+\s")  # magic, comments, width, height


def sniff(data: bytes) -> tuple[str, str]:
    """bytes -> (modality, mime) from magic numbers, falling back to UTF-8 text."""
    head = data[:64]
    for magic, mime in _IMAGE_MAGIC:
        if head.startswith(magic):
            return "image", mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if _NETPBM.match(head):  # a white PPM's bytes all read as Latin-1 text
        return "image", "image/x-portable-anymap"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "audio/wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio", "audio/aiff"
    for magic, mime in _AUDIO_MAGIC:
        if head.startswith(magic):
            return "audio", mime
    from .preprocess.video import sniff_video

    if (video := sniff_video(data)) is not None:
        return "video", video
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"mp42", b"isom", b"dash"):
            return "audio", "audio/mp4"
        if brand in (b"heic", b"heix", b"avif", b"mif1"):
            return "image", "image/" + brand.decode().strip()
    if decode_text(data[:TEXT_SAMPLE], complete=len(data) <= TEXT_SAMPLE) is not None:
        return "text", "text/plain"
    raise _unsupported("the bytes are not a recognised image, audio or text format")


def _name(kind: str, source: str | None) -> str:
    """How a message names an input: its file name when it has one, else what it is."""
    return f"{kind} {source}" if source else f"the {kind}"


def _unsupported(message: str) -> Exception:
    return UnsupportedInputError(
        message + "; supported: PNG/JPEG/GIF/BMP/TIFF/WebP images, WAV/FLAC/OGG/MP3/M4A audio, "
        "text in UTF-8, UTF-16 with a BOM or Windows-1252/Latin-1"
    )


def _sha256(*parts: bytes) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def text_item(text: str, source: str | None = None, *, purpose: str = "remember") -> Item:
    """``purpose`` ("remember" or "recall") words the errors for the call that was made."""
    what = "the query" if purpose == "recall" else _name("text", source)
    if (clean := printable(text)) is not text:  # lone surrogates: half an emoji, or a name's raw bytes
        if purpose == "recall":
            text = clean  # a query still runs, its bad character escaped
        else:
            at = next(i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff")
            raise InputError(f"{what} has a character that is not valid Unicode (a lone surrogate, "
                             f"U+{ord(text[at]):04X}, at position {at}), so it cannot be stored as UTF-8; "
                             "decode the text with errors='replace', or remove the character", item=text[:80])
    if len(text) > MAX_TEXT_CHARS:
        raise InputTooLargeError(
            f"{what} has {len(text):,} characters, over the {MAX_TEXT_CHARS:,} limit; "
            + ("shorten it" if purpose == "recall" else "split it into several memories"), item=text[:80])
    if not any(ch.isprintable() and not ch.isspace() for ch in text):  # nothing to see: spaces, NULs, U+200B
        if purpose == "recall":
            raise InputError('the query is empty; pass some words to recall by (e.g. "a cat")',
                             item=text)
        raise InputError(f"{what} to remember is empty; pass some words", item=text)
    return Item("text", text, None, "text/plain", source, _sha256(b"text:", text.encode("utf-8")))


def open_image(data: bytes, source: str | None = None):
    """Open (not decode) image bytes, refusing headers over :data:`MAX_HEADER_PIXELS`; a lazy PIL
    image, so a caller can still ask for a reduced decode (``draft``, ``thumbnail``)."""
    import warnings

    from PIL import Image

    # PIL warns over its limit and raises over twice that; ours is checked below, on the header
    Image.MAX_IMAGE_PIXELS = MAX_HEADER_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(source, MAX_HEADER_PIXELS, "no camera makes such images") from exc
    except Exception as exc:
        reason = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", str(exc))  # PIL names its buffer
        raise DecodeError(f"{_name('image', source)} does not decode ({reason}); is the file complete? "
                          "Re-export it, or convert it to PNG", item=source) from exc
    if img.width * img.height > MAX_HEADER_PIXELS:
        raise _too_many_pixels(source, MAX_HEADER_PIXELS, "no camera makes such images")
    return img


def _too_many_pixels(source: str | None, limit: int, why: str) -> InputTooLargeError:
    return InputTooLargeError(f"{_name('image', source)} is over the {limit:,}-pixel limit ({why}); "
                              "downscale it first", item=source)


def _reduce_on_decode(img, source: str | None, side: int | None = None) -> None:
    """Ask the JPEG decoder for a reduced size: the largest under MAX_IMAGE_PIXELS, and with ``side``
    the smallest that keeps the shorter side >= ``side`` (decoding a 12 MP photo at a quarter of
    its width is about 4x faster, and the encoder shrinks it further anyway); refuse an image that
    cannot be brought under MAX_IMAGE_PIXELS."""
    w, h = img.size
    scale = 1
    if img.format == "JPEG":
        if w * h > MAX_IMAGE_PIXELS:
            scale = next((s for s in _DRAFT_SCALES if -(-w // s) * -(-h // s) <= MAX_IMAGE_PIXELS), scale)
        if side:
            scale = max(scale, next((s for s in reversed(_DRAFT_SCALES) if min(w, h) // s >= side), 1))
    if scale > 1:
        img.draft("RGB", (w // scale, h // scale))
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels(source, MAX_IMAGE_PIXELS, f"{img.format or 'this'} images cannot be "
                               "reduced while decoding")


def _decode_image_bytes(data: bytes, source: str | None, side: int | None = None) -> "object":
    img = open_image(data, source)
    _reduce_on_decode(img, source, side)
    try:
        img.load()
    except Exception as exc:
        reason = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", str(exc))  # PIL names its buffer
        raise DecodeError(f"{_name('image', source)} does not decode ({reason}); is the file complete? "
                          "Re-export it, or convert it to PNG", item=source) from exc
    return _to_rgb(img)


WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # PIL's greyscale modes of over 8 bits a sample


def eight_bit(img):
    """A greyscale PIL image of more than 8 bits a sample (16-bit PNG or TIFF, 32-bit integer or
    float TIFF) -> mode "L" scaled to 0..255 (its EXIF kept); any other image unchanged. PIL's own
    ``convert`` clips such samples at 255, which made a 16-bit photo solid white."""
    if img.mode not in WIDE_MODES:
        return img
    from PIL import Image

    x = np.asarray(img).astype(np.float64)  # (h, w)
    x[~np.isfinite(x)] = 0.0
    low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if img.mode.startswith("I;16") or (img.mode == "I" and low >= 0 and 255 < high <= 65535):
        x = x / 257.0  # the 16-bit range onto the 8-bit one
    elif img.mode == "F" and low >= 0 and high <= 1:
        x = x * 255.0  # floats in 0..1
    elif low < 0 or high > 255:  # another range: stretched to fit (one value throughout: mid-grey)
        x = (x - low) * (255.0 / (high - low)) if high > low else np.full_like(x, 128.0)
    out = Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "L")
    exif = img.getexif()
    if exif:
        out.info["exif"] = exif.tobytes()
    return out


def _to_rgb(img):
    from PIL import Image

    img = eight_bit(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
        # composite on white, as a viewer would show it, rather than dropping alpha to black
        rgba = img.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return img.convert("RGB")


def _encode_png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_item(img, source: str | None = None) -> Item:
    """A PIL image (any mode) -> Item; content is lossless PNG."""

    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise InputTooLargeError(f"{_name('image', source)} of {img.width}x{img.height} is over the "
                                 f"{MAX_IMAGE_PIXELS:,}-pixel limit; downscale it first", item=source)
    if img.width < 1 or img.height < 1:
        raise InputError(f"{_name('image', source)} has no pixels ({img.width}x{img.height}); pass a "
                         "non-empty image", item=source)
    rgb = _to_rgb(img)
    png = _encode_png(img if img.mode in ("RGB", "RGBA", "L", "LA", "P") else rgb)
    return Item("image", rgb, png, "image/png", source,
                _sha256(b"image:", f"{rgb.size}".encode(), rgb.tobytes()))


def array_item(arr: np.ndarray, source: str | None = None) -> Item:
    from PIL import Image


    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise UnsupportedInputError(
            f"{_name('array', source)} is {arr.dtype} {arr.shape}, but arrays are read as images and must be "
            "uint8 HxW or HxWx3/4; for audio wrap the samples in aimemory.Audio(samples, sample_rate)",
            item=source)
    return image_item(Image.fromarray(np.ascontiguousarray(arr)), source)


# formats libsndfile reads itself: when it refuses one, its reason is the one to report
_SOUNDFILE_FORMATS = {"audio/wav": "WAV", "audio/flac": "FLAC", "audio/ogg": "Ogg", "audio/aiff": "AIFF"}


def _decode_audio_bytes(data: bytes, mime: str, source: str | None) -> Audio:
    samples, rate, reason = None, None, ""
    try:
        import soundfile as sf

        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames / max(f.samplerate, 1) > MAX_AUDIO_SECONDS:
                _too_long(f.frames / f.samplerate, source)
            samples, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except InputError:
        raise
    except Exception as exc:
        samples = None
        reason = str(exc).rpartition(">: ")[2].strip()  # drop libsndfile's "Error opening <BytesIO...>"
    if samples is None:
        samples, rate = _decode_with_ffmpeg(data, source, _SOUNDFILE_FORMATS.get(mime), reason)
    else:
        samples = samples.mean(axis=1)
    return _check_audio(Audio(samples, rate, source=source), source)


def _too_long(seconds: float, source):
    length = f"{seconds:,.0f}" if seconds >= 10 else f"{seconds:.2g}"
    raise InputTooLargeError(
        f"{_name('audio', source)} lasts {length} s, over the {MAX_AUDIO_SECONDS:,} s limit; split it first",
        item=source)


def _decode_with_ffmpeg(data: bytes, source: str | None, fmt: str | None = None,
                        reason: str = "") -> tuple[np.ndarray, int]:
    """Compressed formats soundfile cannot read (mp3 in old libsndfile, m4a): ffmpeg in a subprocess
    with a timeout, so a hostile file cannot hang the process. ``fmt``/``reason``: the format
    soundfile should have read and why it did not (a damaged WAV/FLAC is reported as such)."""
    import shutil
    import subprocess

    what = _name("audio", source)

    def damaged(detail: str) -> DecodeError:
        return DecodeError(f"{what} is not a readable {fmt} file ({reason or detail}); is it complete? "
                           "Re-export it, or convert it to WAV/FLAC", item=source)

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if fmt is not None:
            raise damaged("unreadable")
        raise DecodeError(f"{what} needs ffmpeg to decode; install ffmpeg "
                          "(e.g. apt-get install ffmpeg) or convert it to WAV/FLAC", item=source)
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", "pipe:0", "-t", str(MAX_AUDIO_SECONDS + 1),
           "-f", "f32le", "-ac", "1", "-ar", str(TARGET_SAMPLE_RATE), "pipe:1"]
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(f"{what} took over 120 s to decode; convert it to WAV/FLAC first",
                          item=source) from exc
    if proc.returncode != 0 or not proc.stdout:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no audio stream"]
        detail = msg[0].removeprefix("pipe:0: ").removeprefix("pipe:0").strip() or "no audio stream"
        if fmt is not None:
            raise damaged(detail)
        raise DecodeError(f"{what} does not decode ({detail}); is the file complete? Convert it to "
                          "WAV/FLAC if it plays elsewhere", item=source)
    samples = np.frombuffer(proc.stdout, dtype="<f4").copy()
    if len(samples) / TARGET_SAMPLE_RATE > MAX_AUDIO_SECONDS:
        _too_long(len(samples) / TARGET_SAMPLE_RATE, source)
    return samples, TARGET_SAMPLE_RATE


def _check_audio(audio: Audio, source: str | None, what: str | None = None) -> Audio:
    what = what or _name("audio", source)
    if audio.duration > MAX_AUDIO_SECONDS:
        _too_long(audio.duration, source)
    if audio.duration < MIN_AUDIO_SECONDS:
        raise InputError(f"{what} is empty or shorter than {MIN_AUDIO_SECONDS} s ({len(audio.samples)} "
                         f"samples at {audio.sample_rate} Hz); pass a longer clip", item=source)
    if not np.isfinite(audio.samples).all():
        raise DecodeError(f"{what} holds NaN or infinite samples; pass finite values (e.g. "
                          "np.nan_to_num(samples))", item=source)
    return audio


def _encode_flac(audio: Audio) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio.samples, -1.0, 1.0), audio.sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def audio_item(audio: Audio, source: str | None = None) -> Item:
    source = source or audio.source
    audio = _check_audio(audio, source, None if source else "the Audio waveform")
    content = _encode_flac(audio)
    return Item("audio", audio.resampled(TARGET_SAMPLE_RATE), content, "audio/flac",
                source or audio.source, _sha256(b"audio:", content))


def bytes_item(data: bytes, source: str | None = None, progress=None, image_side: int | None = None) -> Item:
    """``progress(done_s, total_s)`` hears about long decodes (video); ``image_side``: see :func:`to_item`."""
    what = source or "the bytes"
    if not data:
        raise InputError(f"{what} is empty (0 bytes); pass a file with content", item=source)
    if len(data) > MAX_FILE_BYTES:
        raise InputTooLargeError(f"{what} is {len(data):,} bytes, over the "
                                 f"{MAX_FILE_BYTES:,}-byte limit; split or downscale it", item=source)
    try:
        modality, mime = sniff(data)
    except UnsupportedInputError as exc:
        if source:
            exc.args = (exc.args[0].replace("the bytes are", f"{source} is", 1),)
        raise
    if modality == "text":
        text = decode_text(data)
        if text is None:  # the sniffed prefix was text, the rest is not
            raise _unsupported(f"{source or 'bytes'} starts as text but is not text throughout")
        return text_item(text, source)
    if modality == "image":
        img = _decode_image_bytes(data, source, image_side)
        return Item("image", img, data, mime, source, _sha256(data))
    if modality == "video":
        from .preprocess.video import video_item

        return video_item(data, mime, source, progress)
    try:
        audio = _decode_audio_bytes(data, mime, source)
    except DecodeError as exc:
        if mime != "audio/mp4" or data[8:12] in (b"M4A ", b"M4B "):
            raise
        # an MP4 that did not open as video either: a video cut short (its index at the end) lands here
        raise DecodeError(f"{_name('MP4 file', source)} decodes neither as video nor as audio; is the file "
                          "complete? A recording cut off before its end loses the index MP4 keeps there: "
                          "re-export or re-download it", item=source) from exc
    return Item("audio", audio.resampled(TARGET_SAMPLE_RATE), data, mime, source, _sha256(data))


def path_item(path: Path, progress=None, image_side: int | None = None) -> Item:
    name = printable(str(path))  # stored as the memory's source, and said in messages
    if not path.exists():
        if path.is_symlink():
            raise InputError(f"{name} is a symbolic link that leads nowhere (its target is missing, or "
                             "links loop); fix or remove the link", item=name)
        raise InputError(f"no such file: {name}; check the path (it is relative to {Path.cwd()})"
                         if not path.is_absolute() else f"no such file: {name}; check the path",
                         item=name)
    if path.is_dir():
        raise InputError(f"{name} is a folder; pass its files (remember_many) or use the CLI's "
                         "`aimemory remember FOLDER`", item=name)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputTooLargeError(f"{name} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit; "
                                     "split or downscale it", item=name)
        data = path.read_bytes()
    except PermissionError as exc:
        raise InputError(f"{name} cannot be read (permission denied); give this user read access "
                         f"(chmod u+r) or skip it", item=name) from exc
    except OSError as exc:
        raise InputError(f"{name} cannot be read ({exc.strerror or exc}); check the file", item=name) from exc
    return bytes_item(data, name, progress, image_side)


def to_item(x: object, *, source: str | None = None, purpose: str = "remember", progress=None,
            image_side: int | None = None) -> Item:
    """Any supported input -> a decoded :class:`Item`; unsupported types raise a typed error.
    ``purpose`` ("remember" or "recall") words the errors for the call that was made;
    ``progress(done_s, total_s)`` hears about long decodes (video); ``image_side``: a JPEG file or
    bytes decode at 1/2, 1/4 or 1/8 scale while their shorter side stays >= it (the stored content
    is the original bytes either way)."""
    if isinstance(x, Item):
        return x
    if source is not None:
        source = printable(source)
    if isinstance(x, str):
        return text_item(x, source, purpose=purpose)
    if isinstance(x, Path):
        return path_item(x, progress, image_side)
    if isinstance(x, Audio):
        return audio_item(x, source)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes_item(bytes(x), source, progress, image_side)
    if isinstance(x, np.ndarray):
        return array_item(x, source)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(x, Image.Image):
        return image_item(x, source)
    what = f"cannot recall by a {type(x).__name__}" if purpose == "recall" else \
        f"cannot remember a {type(x).__name__}"
    raise UnsupportedInputError(
        f"{what}; pass str (text), pathlib.Path (a file), PIL.Image / uint8 array (image), "
        "aimemory.Audio (waveform) or bytes", item=x)
