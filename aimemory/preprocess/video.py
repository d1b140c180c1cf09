"""Video decoding on CPU: keyframes where scenes change, plus the audio track, in one streamed pass.

Decoding uses PyAV (BSD-3-Clause), the optional ``[video]`` extra. Its manylinux wheels bundle
FFmpeg (configured LGPL-3.0-or-later, ``--enable-version3``) with dav1d (BSD-2), libvpx (BSD-3), opus
(BSD-3), LAME (LGPL-2), opencore-amr (Apache-2.0), SVT-AV1 (BSD-3-Clause-Clear), x264/x265 (GPL-2.0+,
encoders: never used here) and gnutls (LGPL-2.1+). A deployment that must not ship those can build
PyAV against its own FFmpeg (``pip install av --no-binary av``); nothing here depends on the bundle.

Frames are decoded in order and thrown away as they go: every ``1 / SCAN_FPS`` seconds one is
shrunk to a tiny signature (colour histogram + pixels) and compared with the previous one; a jump
marks a cut. Each scene (or each ``MAX_SCENE_S`` slot of a long static scene) yields one keyframe,
the kept frame nearest its middle, with ``start``/``end`` spanning the scene. Memory stays bounded:
the candidates of the current scene only, at ``KEEP_FPS``, each at most ``KEYFRAME_SIDE`` on its
short side; chosen keyframes as JPEG (~20 KB each); the audio track at 16 kHz (58 MB an hour).
Times use each frame's own timestamp, so variable frame rates need nothing special; rotation
metadata (the display matrix) is applied to keyframes and thumbnails.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import DecodeError, InputError, InputTooLargeError, UnsupportedInputError, install_hint

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

    from ..inputs import Audio, Item

MAX_VIDEO_SECONDS = 4 * 3600  # as for audio: the audio track is held at 16 kHz (58 MB an hour)
MAX_FRAME_PIXELS = 8192 * 4320  # 8K; a bigger frame is a bomb or an accident
SCAN_FPS = 4.0  # frames per second compared for cuts: a cut is placed within 1 / SCAN_FPS s
SCAN_SIZE = (64, 36)  # (width, height) of a cut signature
HIST_BINS = 8  # per channel: 512-bin colour histograms
#: a cut: half the L1 distance between consecutive colour histograms (0..1) at least HIST_CUT with
#: a mean absolute pixel change (0..1) of at least PIXEL_MIN, or a pixel change of PIXEL_CUT alone.
#: The pixel floor is there because colours near a bin edge flip bins under compression noise (VP8:
#: histogram distance 0.42 between two frames of one still scene, pixel change 0.004). Tuned on hard
#: cuts, not dissolves, which the MAX_SCENE_S slots cover.
HIST_CUT = 0.4
PIXEL_MIN = 0.08
PIXEL_CUT = 0.3
MIN_SCENE_S = 0.5  # a flash shorter than this is no scene of its own
MAX_SCENE_S = 30.0  # a long static scene gets a keyframe at least this often
KEEP_FPS = 1.0  # candidates per second kept for the current scene's keyframe
KEYFRAME_SIDE = 256  # short side of a kept keyframe; the image towers crop 224
KEYFRAME_MAX_LONG = 1024  # and its long side at most (panoramas)
KEYFRAME_QUALITY = 92  # JPEG quality of held keyframes: no visible loss at 256 px
THUMB_SIDE = 320  # long side of a thumbnail decoded for a hit
AUDIO_RATE = 16_000
#: declared duration vs what decoded: ending before this share of it (and 1 s) means a truncated file
TRUNCATED_SHARE = 0.9
MAX_BAD_PACKETS = 64  # packets that fail to decode before the file is called damaged

_MP4_BRANDS_VIDEO = (b"qt  ", b"avc1", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"3gp4", b"3gp5",
                     b"MSNV", b"M4V ", b"M4VH", b"M4VP", b"XAVC", b"crx ")
_HDLR_VIDE = re.compile(rb"hdlr.{8}vide", re.DOTALL)  # an ISO-BMFF track handler of type video
_QT_ATOMS = (b"moov", b"mdat", b"wide")  # QuickTime files that start without an ftyp box


@dataclass(frozen=True)
class Keyframe:
    """One scene's picture, taken at ``time`` seconds; the scene spans ``start``..``end`` seconds of
    the timeline. Held as JPEG (``jpeg``, ~20 KB) so a video with thousands of cuts stays small;
    ``image`` decodes it (RGB, short side <= KEYFRAME_SIDE)."""

    jpeg: bytes
    time: float
    start: float
    end: float

    @property
    def image(self) -> "Image":
        from PIL import Image

        return Image.open(io.BytesIO(self.jpeg)).convert("RGB")


@dataclass(eq=False)
class VideoClip:
    """A decoded video: keyframes in time order, the audio track (16 kHz mono, on the same
    timeline: sample 0 is second 0) or None, and the display size after rotation."""

    keyframes: list[Keyframe]
    audio: "Audio | None"
    duration: float
    width: int
    height: int
    rotation: int = 0

    @property
    def payload_bytes(self) -> int:
        """What the decoded clip holds in memory: keyframe JPEGs plus the 16 kHz audio track."""
        return sum(len(k.jpeg) for k in self.keyframes) + (self.audio.samples.nbytes if self.audio else 0)


# -- sniffing (no PyAV needed) --------------------------------------------------------------------
def sniff_video(data: bytes) -> str | None:
    """The video mime type of container bytes (MP4/MOV by a video track handler, Matroska/WebM
    by EBML, AVI), or None. Audio-only MP4 (M4A) stays None; an EBML file is called video and
    :func:`video_item` hands it to the audio path when it has no picture."""
    head = data[:64]
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska or WebM
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[4:8] in _QT_ATOMS:
        return "video/quicktime"
    if head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand == b"qt  ":
        return "video/quicktime"
    if _HDLR_VIDE.search(data) is not None:
        return "video/mp4"
    # a video brand whose moov box is missing (cut off): video, so the decoder says what is wrong
    return "video/mp4" if brand in _MP4_BRANDS_VIDEO and b"moov" not in data else None


# -- decoding -------------------------------------------------------------------------------------
def require_av():
    """PyAV, or a typed error that says how to install it."""
    try:
        import av
    except ImportError as exc:
        raise UnsupportedInputError(
            f"video needs the optional PyAV decoder: {install_hint('video')}") from exc
    return av


def _name(source: str | None) -> str:
    return f"video {source}" if source else "the video"


def _damaged(source: str | None, reason: str) -> DecodeError:
    return DecodeError(f"{_name(source)} does not decode ({reason}); is the file complete? Re-export "
                       "it, or convert it to MP4 (H.264/AAC)", item=source)


def _too_long(seconds: float, source: str | None) -> InputTooLargeError:
    return InputTooLargeError(f"{_name(source)} lasts {seconds:,.0f} s, over the {MAX_VIDEO_SECONDS:,} s "
                              "limit; split it first (e.g. ffmpeg -ss/-t)", item=source)


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's words, without its "<none>" file name
    text = re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", text)
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text).strip(" :;'\"") or type(exc).__name__


def _rotation(frame, stream) -> int:
    """Degrees counter-clockwise to turn a decoded frame to show it upright (0/90/180/270)."""
    angle = getattr(frame, "rotation", 0) or 0
    if not angle:
        try:
            angle = -int(float(stream.metadata.get("rotate", 0)))  # old containers: clockwise tag
        except (TypeError, ValueError):
            angle = 0
    return int(round(angle / 90.0)) * 90 % 360


def _upright(img: "Image", rotation: int) -> "Image":
    return img.rotate(rotation, expand=True) if rotation else img


def _fit(width: int, height: int, short: int, long_max: int) -> tuple[int, int]:
    """A size with the short side at most ``short`` and the long side at most ``long_max``, even."""
    scale = min(1.0, short / min(width, height), long_max / max(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def signature(frame) -> tuple[np.ndarray, np.ndarray]:
    """A frame -> (colour histogram (512,) summing to 1, pixels (h, w, 3) float 0..1)."""
    w, h = SCAN_SIZE
    rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()  # (h, w, 3) uint8
    q = (rgb // (256 // HIST_BINS)).astype(np.int32)
    codes = (q[..., 0] * HIST_BINS + q[..., 1]) * HIST_BINS + q[..., 2]
    hist = np.bincount(codes.ravel(), minlength=HIST_BINS ** 3) / codes.size
    return hist.astype(np.float32), rgb.astype(np.float32) / 255.0


def is_cut(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether two consecutive signatures lie on two sides of a shot boundary."""
    hist = 0.5 * float(np.abs(a[0] - b[0]).sum())
    pixels = float(np.abs(a[1] - b[1]).mean())
    return (hist >= HIST_CUT and pixels >= PIXEL_MIN) or pixels >= PIXEL_CUT


class _Scenes:
    """Streams scanned frames into keyframes: cut detection, MAX_SCENE_S slots, middle picks."""

    def __init__(self):
        self.keyframes: list[Keyframe] = []
        self.start = 0.0
        self.previous = None
        self.candidates: list[tuple[float, "Image"]] = []

    def close(self, end: float) -> None:
        if self.candidates:
            middle = (self.start + end) / 2
            t, img = min(self.candidates, key=lambda c: abs(c[0] - middle))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=KEYFRAME_QUALITY)
            self.keyframes.append(Keyframe(buf.getvalue(), t, self.start, max(end, t)))
        self.start, self.candidates = end, []

    def add(self, t: float, sig, picture: Callable[[], "Image"]) -> None:
        if self.previous is not None and t - self.start >= MIN_SCENE_S and is_cut(self.previous, sig):
            self.close(t)
        elif t - self.start >= MAX_SCENE_S:
            self.close(t)
        self.previous = sig
        if not self.candidates or t >= self.candidates[-1][0] + 1.0 / KEEP_FPS:
            self.candidates.append((t, picture()))


def _origin(container, streams) -> float:
    """Second 0 of the timeline: where a player starts (the container's start time)."""
    if container.start_time is not None:
        return container.start_time / 1_000_000
    starts = [float(s.start_time * s.time_base) for s in streams if s.start_time is not None]
    return min(starts, default=0.0)


def _declared_duration(container, streams) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    lengths = [float(s.duration * s.time_base) for s in streams if s.duration]
    return max(lengths, default=None)


def decode_video(data: bytes, source: str | None = None,
                 progress: Callable[[float, float], None] | None = None) -> VideoClip:
    """Video bytes -> keyframes and audio track, streaming; typed errors for damaged, oversized or
    picture-less files. ``progress(done_s, total_s)`` hears about every ~10 s decoded."""
    av = require_av()
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _damaged(source, _reason(exc)) from exc
    with container:
        video = next(iter(container.streams.video), None)
        audio_stream = next(iter(container.streams.audio), None)
        if video is None:
            raise UnsupportedInputError(f"{_name(source)} has no video stream; remember its audio "
                                        "as an audio file instead", item=source)
        streams = [s for s in (video, audio_stream) if s is not None]
        declared = _declared_duration(container, streams)
        if declared is not None and declared > MAX_VIDEO_SECONDS:
            raise _too_long(declared, source)
        width, height = video.codec_context.width, video.codec_context.height
        if width * height > MAX_FRAME_PIXELS:
            raise InputTooLargeError(f"{_name(source)} has {width}x{height} frames, over the "
                                     f"{MAX_FRAME_PIXELS:,}-pixel limit; downscale it first", item=source)
        video.thread_type = "AUTO"  # frame/slice threads inside FFmpeg
        origin = _origin(container, streams)
        scenes = _Scenes()
        chunks: list[np.ndarray] = []
        audio_at: float | None = None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE) if audio_stream else None
        next_scan, last_t, rotation, bad, reported = 0.0, -1.0, 0, 0, 0.0
        size = (0, 0)

        def resampled(frames) -> None:
            for f in frames:
                chunks.append(f.to_ndarray().reshape(-1).astype(np.float32, copy=False))

        try:
            for packet in container.demux(*streams):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    bad += 1
                    if bad > MAX_BAD_PACKETS:
                        raise
                    continue
                for frame in frames:
                    if frame.time is None:
                        continue
                    t = float(frame.time) - origin
                    if t > MAX_VIDEO_SECONDS + 1:
                        raise _too_long(t, source)
                    if packet.stream is audio_stream:
                        if audio_at is None:
                            audio_at = max(0.0, t)
                        assert resampler is not None  # made with the audio stream
                        resampled(resampler.resample(frame))
                        continue
                    last_t = max(last_t, t)
                    if t + 1e-6 < next_scan:
                        continue
                    next_scan = (np.floor(t * SCAN_FPS + 1e-6) + 1) / SCAN_FPS  # the next grid point
                    if scenes.previous is None:
                        rotation = _rotation(frame, video)
                        size = _fit(frame.width, frame.height, KEYFRAME_SIDE, KEYFRAME_MAX_LONG)

                    def picture(frame=frame, size=size, rotation=rotation):
                        img = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()
                        return _upright(img, rotation)

                    scenes.add(max(t, 0.0), signature(frame), picture)
                    if progress is not None and t - reported >= 10.0:
                        reported = t
                        progress(t, declared or t)
            if resampler is not None:
                resampled(resampler.resample(None))
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise _damaged(source, _reason(exc)) from exc
        if last_t < 0:
            raise _damaged(source, "no frame decodes")
        # a frame lasts until the next one: the last one adds its own duration (or a scan step)
        frame_s = 1.0 / float(video.average_rate) if video.average_rate else 1.0 / SCAN_FPS
        scenes.close(last_t + frame_s)
        track = _track(chunks, audio_at, source)
        duration = max(last_t + frame_s, track.duration if track is not None else 0.0)
        if declared is not None and duration < TRUNCATED_SHARE * declared - 1.0:
            raise _damaged(source, f"it stops at {duration:.1f} s of the {declared:.1f} s it declares")
        if progress is not None:
            progress(duration, duration)
        display = (height, width) if rotation in (90, 270) else (width, height)
        return VideoClip(scenes.keyframes, track, duration, display[0], display[1], rotation)


def _track(chunks: list[np.ndarray], audio_at: float | None, source: str | None) -> "Audio | None":
    """Resampled audio chunks -> the track on the video's timeline (silence before a late start)."""
    from ..inputs import Audio

    if not chunks:
        return None
    samples = np.concatenate(chunks)
    lead = int(round((audio_at or 0.0) * AUDIO_RATE))
    if lead:
        samples = np.concatenate([np.zeros(lead, np.float32), samples])
    if not np.isfinite(samples).all():
        raise _damaged(source, "its audio holds NaN or infinite samples")
    return Audio(samples, AUDIO_RATE, source=source) if len(samples) >= 0.05 * AUDIO_RATE else None


def decode_audio_only(data: bytes, source: str | None = None) -> "Audio":
    """The audio track of a container that has no picture (an .mka / audio-only .webm)."""
    av = require_av()
    from ..inputs import Audio

    chunks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise InputError(f"{source or 'the file'} has neither video nor audio; pass a file with "
                                 "content", item=source)
            declared = _declared_duration(container, [stream])
            if declared is not None and declared > MAX_VIDEO_SECONDS:
                raise _too_long(declared, source)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _damaged(source, _reason(exc)) from exc
    if not chunks:
        raise _damaged(source, "no audio decodes")
    return Audio(np.concatenate(chunks).astype(np.float32), AUDIO_RATE, source=source)


def has_video_stream(data: bytes) -> bool:
    """Whether the container holds a picture stream (an audio-only Matroska/WebM does not)."""
    av = require_av()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            return len(container.streams.video) > 0
    except (av.FFmpegError, ValueError, OSError):
        return True  # let the full decode report what is wrong


def video_item(data: bytes, mime: str, source: str | None = None,
               progress: Callable[[float, float], None] | None = None) -> "Item":
    """Video bytes -> an :class:`~aimemory.inputs.Item` (modality ``video``, payload a
    :class:`VideoClip`, content the original bytes); a picture-less container becomes audio."""
    from ..inputs import TARGET_SAMPLE_RATE, Item

    digest = hashlib.sha256(data).hexdigest()
    if not has_video_stream(data):
        audio = decode_audio_only(data, source).resampled(TARGET_SAMPLE_RATE)
        return Item("audio", audio, data, mime.replace("video/", "audio/"), source, digest)
    return Item("video", decode_video(data, source, progress), data, mime, source, digest)


# -- frames on demand -----------------------------------------------------------------------------
def frame_at(data: bytes, seconds: float, max_side: int = THUMB_SIDE) -> "Image":
    """The picture shown at ``seconds`` of the video in ``data``, upright, long side <= ``max_side``:
    seeks to the keyframe before it and decodes forward (thumbnails are not stored)."""
    av = require_av()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            origin = _origin(container, [stream])
            target = max(0.0, float(seconds)) + origin
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if chosen is None or frame.time <= target + 1e-6:
                    chosen = frame
                if frame.time >= target:
                    break
            if chosen is None:
                raise _damaged(None, f"no frame at {seconds:.1f} s")
            rotation = _rotation(chosen, stream)
            w, h = _fit(chosen.width, chosen.height, max_side, max_side)
            img = chosen.reformat(width=w, height=h, format="rgb24").to_image()
    except (av.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise _damaged(None, _reason(exc)) from exc
    return _upright(img, rotation)


def frame_jpeg(data: bytes, seconds: float, max_side: int = THUMB_SIDE, quality: int = 80) -> bytes:
    """:func:`frame_at` as JPEG bytes (what the doors send)."""
    buf = io.BytesIO()
    frame_at(data, seconds, max_side).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def shown_at(start: float | None, end: float | None) -> float:
    """The second whose picture stands for a span: its middle (a keyframe is its scene's middle)."""
    if start is None:
        return 0.0
    return (start + end) / 2 if end is not None else start
