"""Synthetic videos with ground truth, made in code: scenes drawn with numpy + Pillow (hard cuts at
known seconds, a small moving ball so no scene is a still), a narration track of espeak-ng phrases
placed at known seconds, muxed with PyAV. Used by tests/test_video*.py and benchmarks/bench_video.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

RATE = 16_000


@dataclass(frozen=True)
class Scene:
    seconds: float
    background: tuple[int, int, int]
    shape: str = "circle"  # circle | square | triangle | stripes
    colour: tuple[int, int, int] = (255, 255, 255)


@dataclass
class Spec:
    scenes: list[Scene]
    narration: list[tuple[float, str]] = field(default_factory=list)  # (second, words)
    size: tuple[int, int] = (320, 240)
    fps: float = 25.0
    container: str = "mp4"  # mp4 | mov | mkv | webm
    audio: bool = True
    vfr: bool = False  # frame times jitter: every third frame is held twice as long
    ball: bool = True

    @property
    def cuts(self) -> list[float]:
        return list(np.cumsum([s.seconds for s in self.scenes])[:-1])

    @property
    def duration(self) -> float:
        return float(sum(s.seconds for s in self.scenes))


THREE_SCENES = [Scene(6, (200, 30, 30), "circle", (255, 230, 0)),
                Scene(6, (20, 140, 40), "square", (250, 250, 250)),
                Scene(6, (30, 50, 200), "triangle", (255, 140, 0))]


def still(scene: Scene, size: tuple[int, int]):
    """The scene's picture without the ball (a query image for it)."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, scene.background)
    d = ImageDraw.Draw(img)
    box = (w * 0.3, h * 0.25, w * 0.7, h * 0.75)
    if scene.shape == "circle":
        d.ellipse(box, fill=scene.colour)
    elif scene.shape == "square":
        d.rectangle(box, fill=scene.colour)
    elif scene.shape == "triangle":
        d.polygon([(w * 0.5, h * 0.2), (w * 0.25, h * 0.8), (w * 0.75, h * 0.8)], fill=scene.colour)
    else:
        for x in range(0, w, max(4, w // 8)):
            d.rectangle((x, 0, x + w // 16, h), fill=scene.colour)
    return img


def _frame(scene: Scene, size: tuple[int, int], t: float, ball: bool) -> np.ndarray:
    from PIL import ImageDraw

    img = still(scene, size)
    if ball:
        w, h = size
        x = (0.1 + 0.8 * ((t * 0.15) % 1.0)) * w
        ImageDraw.Draw(img).ellipse((x - h * 0.04, h * 0.05, x + h * 0.04, h * 0.13), fill=(128, 128, 128))
    return np.asarray(img)


def speak(text: str) -> np.ndarray:
    """espeak-ng -> float32 mono at 16 kHz."""
    import soundfile as sf

    from aimemory.inputs import Audio

    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run([exe, "-s", "150", "-w", str(path), text], check=True, capture_output=True, timeout=60)
        y, rate = sf.read(path, dtype="float32")
    return Audio(y, rate).resampled(RATE).samples


def narration_track(spec: Spec) -> np.ndarray:
    track = np.zeros(int(spec.duration * RATE), np.float32)
    for t, words in spec.narration:
        y = speak(words)
        a = int(t * RATE)
        y = y[: max(0, len(track) - a)]
        track[a: a + len(y)] += 0.8 * y
    return track


_CODECS = {"mp4": ("libx264", "aac"), "mov": ("libx264", "aac"), "mkv": ("libx264", "libopus"),
           "webm": ("libvpx", "libopus")}


def write_video(path: Path, spec: Spec, track: np.ndarray | None = None) -> Path:
    """Encode ``spec`` to ``path``; returns it. ``track``: the audio (default: the narration)."""
    import av

    vcodec, acodec = _CODECS[spec.container]
    container = av.open(str(path), mode="w")
    tb = Fraction(1, 1000)
    vs = container.add_stream(vcodec, rate=int(spec.fps))
    vs.width, vs.height = spec.size
    vs.pix_fmt = "yuv420p"
    vs.time_base = tb
    if vcodec == "libx264":
        vs.options = {"preset": "ultrafast", "g": str(int(spec.fps * 2))}
    else:
        vs.options = {"deadline": "realtime", "cpu-used": "8", "g": str(int(spec.fps * 2))}
    a_stream = None
    if spec.audio:
        arate = 48_000 if acodec == "libopus" else RATE
        a_stream = container.add_stream(acodec, rate=arate)
        a_stream.layout = "mono"
        if track is None:
            track = narration_track(spec)
        if arate != RATE:
            from aimemory.inputs import Audio

            track = Audio(track, RATE).resampled(arate).samples
    audio_done = 0  # samples of the track encoded so far, kept up with the pictures (interleaved)

    def audio_until(seconds: float) -> None:
        nonlocal audio_done
        if a_stream is None:
            return
        chunk = 960 if acodec == "libopus" else 1024
        while audio_done < min(len(track), int(seconds * a_stream.rate)):
            part = track[audio_done: audio_done + chunk]
            if len(part) < chunk:
                part = np.pad(part, (0, chunk - len(part)))
            frame = av.AudioFrame.from_ndarray(part[None, :].astype(np.float32),
                                               format="fltp" if acodec == "aac" else "flt", layout="mono")
            frame.sample_rate, frame.pts = a_stream.rate, audio_done
            frame.time_base = Fraction(1, a_stream.rate)
            for packet in a_stream.encode(frame):
                container.mux(packet)
            audio_done += chunk

    t, n, bounds = 0.0, 0, np.cumsum([s.seconds for s in spec.scenes])
    while t < spec.duration - 1e-9:
        scene = spec.scenes[int(np.searchsorted(bounds, t, side="right"))]
        frame = av.VideoFrame.from_ndarray(_frame(scene, spec.size, t, spec.ball), format="rgb24")
        frame.pts = int(round(t * 1000))
        frame.time_base = tb
        for packet in vs.encode(frame):
            container.mux(packet)
        audio_until(t)
        n += 2 if spec.vfr and n % 3 == 2 else 1  # frame numbers on the nominal grid: no float drift
        t = n / spec.fps
    for packet in vs.encode():
        container.mux(packet)
    audio_until(spec.duration + 1 + (len(track) / a_stream.rate if a_stream is not None else 0))  # all of it
    if a_stream is not None:
        for packet in a_stream.encode():
            container.mux(packet)
    container.close()
    return path
