"""Video memories: sniffing, scene-cut keyframes with ground truth, the audio track on the same
timeline, limits and damaged files, and recall of spans with the test ColourEncoder. Videos are made
in code (tests/_video.py); one end-to-end test runs the offline tier with real Whisper (heavy)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from _video import THREE_SCENES, Scene, Spec, still, write_video  # noqa: E402

from aimemory import MemoryStore  # noqa: E402
from aimemory.errors import DecodeError, InputTooLargeError, UnsupportedInputError  # noqa: E402
from aimemory.inputs import sniff, to_item  # noqa: E402
from aimemory.preprocess import video as video_mod  # noqa: E402
from aimemory.preprocess.video import SCAN_FPS, decode_video, frame_at, sniff_video  # noqa: E402
from aimemory.speech import Segment, Transcript  # noqa: E402

SIZE = (160, 120)
STEP = 1.0 / SCAN_FPS
# small and short: encoding stays well under a second per video on a busy machine
SCENES = [Scene(3, s.background, s.shape, s.colour) for s in THREE_SCENES]


def _spec(**kw) -> Spec:
    kw.setdefault("size", SIZE)
    kw.setdefault("fps", 10.0)
    kw.setdefault("audio", False)
    return Spec(kw.pop("scenes", SCENES), **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def clip_mp4(folder) -> Path:
    return write_video(folder / "three.mp4", _spec())


def _colour(img) -> np.ndarray:
    """The background colour: a corner away from the shape and the ball."""
    arr = np.asarray(img.convert("RGB"), np.float32)
    return arr[-4:, :4].reshape(-1, 3).mean(0)


def _near(a, b, tol=30) -> bool:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).max()) <= tol


# -- sniffing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("container,mime", [("mp4", "video/mp4"), ("mov", "video/quicktime"),
                                            ("mkv", "video/x-matroska"), ("webm", "video/webm")])
def test_containers_are_sniffed_from_bytes(folder, container, mime):
    spec = _spec(scenes=SCENES[:1], size=(64, 48), fps=5.0, container=container)
    data = write_video(folder / f"sniff.{container}", spec).read_bytes()
    assert sniff(data) == ("video", mime)
    assert to_item(data).modality == "video"  # bytes: sniffed, not named


def test_audio_only_mp4_stays_audio_and_audio_only_mkv_becomes_audio(folder):
    for ext, codec in (("m4a", "aac"), ("mka", "libopus")):
        path = folder / f"voice.{ext}"
        with av.open(str(path), "w", format="mp4" if ext == "m4a" else "matroska") as out:
            stream = out.add_stream(codec, rate=48_000 if codec == "libopus" else 16_000)
            stream.layout = "mono"
            n = 960 if codec == "libopus" else 1024
            tone = (0.3 * np.sin(np.arange(n * 40) * 0.05)).astype(np.float32)
            for s in range(0, len(tone), n):
                frame = av.AudioFrame.from_ndarray(tone[None, s:s + n], format="fltp" if codec == "aac" else "flt",
                                                   layout="mono")
                frame.sample_rate, frame.pts = stream.rate, s
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        data = path.read_bytes()
        if ext == "m4a":
            assert sniff(data)[0] == "audio"
        item = to_item(data)
        assert item.modality == "audio" and item.payload.duration > 0.5


# -- keyframes --------------------------------------------------------------------------------------
def test_keyframes_span_the_scenes_between_hard_cuts(clip_mp4):
    clip = decode_video(clip_mp4.read_bytes())
    spec = _spec()
    assert len(clip.keyframes) == 3
    bounds = [0.0, *spec.cuts, spec.duration]
    for kf, scene, start, end in zip(clip.keyframes, SCENES, bounds, bounds[1:]):
        assert abs(kf.start - start) <= STEP and abs(kf.end - end) <= STEP + 0.11
        assert kf.start <= kf.time <= kf.end
        assert _near(_colour(kf.image), scene.background)
    assert abs(clip.duration - spec.duration) < 0.15 and clip.audio is None
    assert (clip.width, clip.height) == SIZE


def test_long_static_scenes_get_a_keyframe_per_slot(folder, monkeypatch):
    monkeypatch.setattr(video_mod, "MAX_SCENE_S", 2.0)
    held = []  # pictures held at once: the current scene's candidates only (bounded memory)
    add = video_mod._Scenes.add

    def counting_add(self, *args):
        add(self, *args)
        held.append(len(self.candidates))

    monkeypatch.setattr(video_mod._Scenes, "add", counting_add)
    spec = _spec(scenes=[Scene(5, (200, 30, 30)), Scene(2, (20, 140, 40), "square")], fps=5.0)
    clip = decode_video(write_video(folder / "static.mp4", spec).read_bytes())
    spans = [(round(k.start, 2), round(k.end, 2)) for k in clip.keyframes]
    assert [s for s, _ in spans] == [0.0, 2.0, 4.0, 5.0], spans  # slots, then the cut at 5 s
    assert all(e - s <= 2.0 + 1e-6 for s, e in spans)
    assert max(held) <= 2.0 * video_mod.KEEP_FPS + 1


def test_variable_frame_rate_keeps_times(folder):
    spec = _spec(vfr=True)
    clip = decode_video(write_video(folder / "vfr.mkv", _spec(vfr=True, container="mkv")).read_bytes())
    starts = [k.start for k in clip.keyframes]
    assert len(starts) == 3
    for got, want in zip(starts[1:], spec.cuts):
        assert abs(got - want) <= 2 * STEP  # a held frame can delay the first scan after a cut


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
def test_rotation_metadata_is_applied_like_players_do(folder):
    src = folder / "halves.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        arr = np.zeros((32, 64, 3), np.uint8)
        arr[:, :32] = (220, 20, 20)  # left red
        arr[:, 32:] = (20, 20, 220)  # right blue
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    rotated, reference = folder / "rotated.mp4", folder / "reference.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90",
                    str(rotated)], check=True, timeout=60)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(rotated), "-frames:v", "1", str(reference)],
                   check=True, timeout=60)
    from PIL import Image

    want = np.asarray(Image.open(reference).convert("RGB"), np.float32)  # ffmpeg's autorotated picture
    data = rotated.read_bytes()
    clip = decode_video(data)
    got = np.asarray(clip.keyframes[0].image, np.float32)
    assert got.shape == want.shape == (64, 32, 3) and (clip.width, clip.height) == (32, 64)
    assert np.abs(got - want).mean() < 12
    thumb = np.asarray(frame_at(data, 0.5), np.float32)
    assert thumb.shape[0] > thumb.shape[1] and _near(thumb[2, 16], want[2, 16], 40)


def test_audio_track_is_on_the_video_timeline(folder):
    rate = 16_000
    track = np.zeros(9 * rate, np.float32)
    track[int(4.0 * rate): int(5.0 * rate)] = 0.5 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)
    spec = _spec(audio=True)
    clip = decode_video(write_video(folder / "beep.mp4", spec, track).read_bytes())
    y = clip.audio.samples
    rms = np.sqrt(np.convolve(y ** 2, np.ones(800) / 800, mode="same"))
    loud = np.flatnonzero(rms > 0.1) / rate
    assert abs(loud[0] - 4.0) < 0.1 and abs(loud[-1] - 5.0) < 0.1


def test_audio_longer_than_the_picture_is_not_truncation(folder):
    track = 0.1 * np.sin(np.arange(20 * 16_000) * 0.05).astype(np.float32)  # 20 s of sound, 9 s of picture
    clip = decode_video(write_video(folder / "long-audio.mp4", _spec(audio=True), track).read_bytes())
    assert abs(clip.duration - 20.0) < 0.2 and clip.keyframes[-1].end <= 9.2


# -- limits and damage -----------------------------------------------------------------------------
def test_limits_are_typed_errors(clip_mp4, monkeypatch):
    data = clip_mp4.read_bytes()
    monkeypatch.setattr(video_mod, "MAX_VIDEO_SECONDS", 5)
    with pytest.raises(InputTooLargeError, match="over the 5 s limit"):
        decode_video(data, "three.mp4")
    monkeypatch.setattr(video_mod, "MAX_VIDEO_SECONDS", 3600)
    monkeypatch.setattr(video_mod, "MAX_FRAME_PIXELS", 100 * 100)
    with pytest.raises(InputTooLargeError, match="160x120 frames"):
        decode_video(data, "three.mp4")


def test_damaged_and_truncated_files_are_decode_errors(folder, clip_mp4):
    data = clip_mp4.read_bytes()
    with pytest.raises(DecodeError, match="MP4 file half.mp4 decodes neither as video nor as audio; is the file"):
        to_item(data[: len(data) // 2], source="half.mp4")  # the index (moov) is at the end: gone (not "audio")
    mkv = write_video(folder / "cut.mkv", _spec(container="mkv")).read_bytes()
    with pytest.raises(DecodeError, match="stops at|does not decode"):
        decode_video(mkv[: len(mkv) // 2], "cut.mkv")
    garbage = mkv[:64] + np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with pytest.raises(DecodeError):
        to_item(garbage, source="garbage.mkv")


def test_without_pyav_the_error_says_how_to_install(clip_mp4, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(UnsupportedInputError, match=r"\[video\]"):
        to_item(clip_mp4)


def test_sniff_video_needs_no_pyav(clip_mp4, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    assert sniff_video(clip_mp4.read_bytes()) == "video/mp4"


# -- the store -------------------------------------------------------------------------------------
class ScriptedSpeech:
    """A recognizer that 'hears' fixed segments, so snippets and spans have ground truth."""

    def __init__(self, segments):
        self.segments = [Segment(*s) for s in segments]

    def transcribe(self, audio, progress=None):
        if progress is not None:
            progress(audio.duration, audio.duration)
        return Transcript(" ".join(s.text for s in self.segments), "en", self.segments)


def test_remember_and_recall_spans_frames_and_snippets(tmp_path, encoder, folder):
    path = write_video(folder / "said.mp4", _spec(audio=True))
    speech = ScriptedSpeech([(0.5, 2.0, "a red room"), (4.0, 5.5, "now the green garden"),
                             (6.5, 8.0, "and the blue sea")])
    events = []
    with MemoryStore(tmp_path / "m", model=encoder, speech_model=speech) as store:
        memory = store.remember_many([path], item_progress=lambda *a: events.append(a))[0]
        assert memory.modality == "video" and memory.mime == "video/mp4"
        assert memory.transcript == "a red room now the green garden and the blue sea"
        assert store.get(memory.id).content == path.read_bytes()
        views = store.stats()["views"]
        assert views["video.frame"] == 3 and views["audio.speech"] == 3 and views["audio.sound"] == 1

        hit = store.recall(still(SCENES[1], SIZE), k=1)[0]  # a picture of scene 2 -> scene 2
        assert hit.kind == "video.frame" and abs(hit.start - 3.0) <= STEP and abs(hit.end - 6.0) <= STEP
        assert hit.snippet == "now the green garden"  # what was said during that scene
        assert _near(_colour(hit.frame()), SCENES[1].background)
        assert hit.frame().size[0] <= video_mod.THUMB_SIDE

        hit = store.recall("blue", k=1, modality="video")[0]
        assert hit.modality == "video" and hit.start >= 6.0 - STEP
        assert store.recall("blue", k=1, modality="image") == []

        assert store.remember(path).status == "existing"
    assert events[0] == (0, "decoding", 0.0, 1.0)
    decoding = [e for e in events if e[1] == "decoding video"]
    assert decoding[-1][2] == decoding[-1][3] > 8.0
    assert any(e[1] == "transcribing" for e in events)


def test_video_without_audio_has_frames_only(tmp_path, encoder, clip_mp4):
    with MemoryStore(tmp_path / "m", model=encoder) as store:
        memory = store.remember(clip_mp4)
        assert memory.transcript is None
        assert set(store.stats()["views"]) == {"video.frame"}
        assert _near(_colour(memory.frame(7.5)), SCENES[2].background)


def test_model_without_an_image_tower_refuses_video(tmp_path, clip_mp4):
    from conftest import ColourEncoder

    class Deaf(ColourEncoder):
        modalities = frozenset({"text"})

    with MemoryStore(tmp_path / "m", model=Deaf()) as store:
        with pytest.raises(UnsupportedInputError, match="cannot embed video frames"):
            store.remember(clip_mp4)
        assert len(store) == 0


# -- end to end on the offline tier ---------------------------------------------------------------
@pytest.mark.heavy
def test_offline_tier_finds_what_was_said_and_what_was_shown(tmp_path, folder):
    pytest.importorskip("aimemory.speech")
    from aimemory.speech import find_local_speech_model

    whisper = find_local_speech_model()  # explicit: conftest turns speech_model="auto" off
    if whisper is None or shutil.which("espeak-ng") is None:
        pytest.skip("needs whisper-base and espeak-ng")
    from _video import speak

    scenes = [Scene(8, s.background, s.shape, s.colour) for s in THREE_SCENES]
    said = [(1.0, "welcome to the old harbour town"), (9.0, "remember to call the dentist on friday"),
            (17.0, "the bakery sells fresh bread")]
    spec = Spec(scenes, narration=said, size=(224, 168), fps=10.0)
    path = write_video(folder / "narrated.mp4", spec)
    dentist = (9.0, 9.0 + len(speak(said[1][1])) / 16_000)
    with MemoryStore(tmp_path / "m", model="aimemory-base", speech_model=whisper) as store:
        memory = store.remember(path)
        assert "dentist" in (memory.transcript or "").lower()
        hit = store.recall("when should I call the dentist", k=1)[0]
        assert hit.kind == "audio.speech"
        assert abs(hit.start - dentist[0]) <= 2.0 and abs(hit.end - dentist[1]) <= 2.0
        hit = store.recall(still(scenes[1], (224, 168)), k=1)[0]
        assert 8.0 - STEP <= hit.start and hit.end <= 16.0 + STEP
        assert "dentist" in (hit.snippet or "").lower()


def test_a_scene_snippet_is_what_was_said_during_or_near_it():
    from aimemory.encoders.base import View
    from aimemory.encoders.video import said_during

    vec = np.zeros(4, np.float32)
    said = [View("audio.speech", vec, 1.0, 2.0, "one"), View("audio.speech", vec, 2.5, 4.0, "two"),
            View("audio.speech", vec, 30.0, 31.0, "far")]
    assert said_during(said, 0.0, 3.0) == "one two"
    assert said_during(said, 6.0, 12.0) == "two"  # nothing during: the nearest, 2 s before
    assert said_during(said, 12.0, 20.0) is None  # nothing within 5 s


def test_speech_spans_are_trimmed_to_the_voiced_audio():
    from aimemory.encoders.base import View
    from aimemory.encoders.video import trim_to_sound
    from aimemory.inputs import Audio

    rate = 16_000
    y = np.zeros(12 * rate, np.float32)
    y[4 * rate: 5 * rate] = 0.3 * np.sin(np.arange(rate) * 0.2)  # speech-like burst 4-5 s
    y[8 * rate:] = 0.2 * np.random.default_rng(0).standard_normal(4 * rate)  # a loud bed 8-12 s
    vec = np.ones(4, np.float32) / 2
    drifted, bed, quiet = trim_to_sound([View("audio.speech", vec, 3.0, 7.9, "hi"),
                                         View("audio.speech", vec, 8.5, 11.0, "x"),
                                         View("audio.speech", vec, 1.0, 2.0, "y")], Audio(y, rate))
    assert abs(drifted.start - 3.75) < 0.05 and abs(drifted.end - 5.25) < 0.05 and drifted.text == "hi"
    assert (bed.start, bed.end) == (8.5, 11.0) and (quiet.start, quiet.end) == (1.0, 2.0)


def test_decoded_clip_is_small(clip_mp4):
    clip = decode_video(clip_mp4.read_bytes())
    assert clip.payload_bytes < 3 * 20_000  # three JPEG keyframes, no audio track


def test_file_size_cap_applies_to_videos(clip_mp4, monkeypatch):
    from aimemory import inputs

    monkeypatch.setattr(inputs, "MAX_FILE_BYTES", 10_000)
    with pytest.raises(InputTooLargeError, match="byte limit"):
        to_item(clip_mp4)
