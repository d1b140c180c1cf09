"""Video memories -> views: keyframes through the image tower, the audio track through the same
speech and sound paths as audio memories, all on the video's timeline.

Each keyframe gives a ``video.frame`` view (the image tower's main vector) spanning its scene, plus
the tower's other image views (e.g. ``image.appearance``) with the same span; its snippet is what was
said during the scene, so a hit found by picture still says what was heard there. The audio track
gives ``audio.speech`` segments (transcript) and ``audio.sound`` windows, exactly as an audio memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, cast

import numpy as np

from ..errors import InputError, UnsupportedInputError
from .base import Encoder, View

if TYPE_CHECKING:  # pragma: no cover
    from ..inputs import Item
    from ..preprocess.video import VideoClip

FRAME = "video.frame"
FRAME_BATCH = 16  # keyframes per image-tower call: bounds activation memory on long videos
SNIPPET_CHARS = 400  # said-during-the-scene text kept on a frame view
NEAR_S = 5.0  # a silent scene's snippet: the segment said this close before or after it
#: Whisper's segment ends drift into the silence after a sentence (measured: a 3.6 s phrase came back
#: as 43.0-63.0 s, ending where the next phrase began), so a segment's span is trimmed to where its
#: audio is within VOICED_DB of the span's loudest 20 ms, plus TRIM_PAD_S; spans with sound throughout
#: (music beds) keep Whisper's times
ENERGY_FRAME_S = 0.02
VOICED_DB = 35.0
SILENT_RMS = 1e-3  # -60 dBFS: below this nothing is voiced, whatever the span's peak
TRIM_PAD_S = 0.25


def said_during(speech: list[View], start: float, end: float) -> str | None:
    """The transcript segments that overlap ``start``..``end``, joined; else the nearest one within
    NEAR_S seconds; None when nothing was said near there."""
    said = [(v.start, v.end, v.text) for v in speech if v.text and v.start is not None and v.end is not None]
    parts = [text for s, e, text in said if s < end and e > start]
    if not parts and said:
        gap, near = min((max(s - end, start - e), n) for n, (s, e, _) in enumerate(said))
        parts = [said[near][2]] if gap <= NEAR_S else []
    text = " ".join(parts).strip()
    return text[:SNIPPET_CHARS] if text else None


def trim_to_sound(views: list[View], audio) -> list[View]:
    """Speech views with their spans narrowed to the voiced part of the audio inside them."""
    hop = int(ENERGY_FRAME_S * audio.sample_rate)
    y = audio.samples[: len(audio.samples) // hop * hop].reshape(-1, hop)  # (frames, hop)
    rms = np.sqrt(np.mean(np.square(y, dtype=np.float64), axis=1))  # (frames,)
    out = []
    for v in views:
        a, b = int((v.start or 0.0) / ENERGY_FRAME_S), int(np.ceil((v.end or 0.0) / ENERGY_FRAME_S))
        span = rms[a:b]
        if len(span) == 0 or span.max() < SILENT_RMS:
            out.append(v)
            continue
        voiced = np.flatnonzero(span >= max(SILENT_RMS, span.max() * 10 ** (-VOICED_DB / 20)))
        start = max(v.start, (a + voiced[0]) * ENERGY_FRAME_S - TRIM_PAD_S)
        end = min(v.end, (a + voiced[-1] + 1) * ENERGY_FRAME_S + TRIM_PAD_S)
        out.append(View(v.kind, v.vector, round(start, 2), round(end, 2), v.text))
    return out


def frame_views(encoder: Encoder, clip: "VideoClip", speech: list[View]) -> list[View]:
    """Keyframes -> their views, time-coded; the ``image`` view becomes ``video.frame``."""
    out: list[View] = []
    for s in range(0, len(clip.keyframes), FRAME_BATCH):
        batch = clip.keyframes[s: s + FRAME_BATCH]
        for kf, views in zip(batch, encoder.views("image", [k.image for k in batch])):
            said = said_during(speech, kf.start, kf.end)
            for v in views:
                kind = FRAME if v.kind == "image" else v.kind
                out.append(View(kind, v.vector, kf.start, kf.end, said))
    return out


def video_views(encoder: Encoder, speech, items: list["Item"], speech_views_of: Callable,
                on_progress=None, indexes: list[int] | None = None) -> list[list[View]]:
    """Per video item, its views: frames first (the primary view is the first keyframe's), then
    the audio track's speech segments and sound windows. ``speech_views_of`` is the audio path's
    transcriber (:func:`aimemory.views.speech_views_of`), so both share one behaviour."""
    from ..inputs import Item

    if "image" not in encoder.modalities:
        raise UnsupportedInputError(f"model {encoder.model_id!r} cannot embed video frames (no image "
                                    "tower); nothing was stored. Use a model with one (e.g. "
                                    "model='aimemory-base')")
    out = []
    for n, item in enumerate(items):
        clip = cast("VideoClip", item.payload)
        index = indexes[n] if indexes is not None else n
        said: list[View] = []
        sound: list[View] = []
        if clip.audio is not None:
            track = Item("audio", clip.audio, None, "audio/flac", item.source, item.content_hash)
            if speech is not None:
                said = trim_to_sound(speech_views_of(encoder, speech, [track], on_progress, [index])[0],
                                     clip.audio)
                item.transcript = track.transcript
            if "audio" in encoder.modalities:
                sound = encoder.views("audio", [clip.audio])[0]
        if on_progress is not None:
            on_progress(index, "embedding frames", 0.0, float(len(clip.keyframes)))
        views = frame_views(encoder, clip, said) + said + sound
        if not views:
            raise InputError(f"{item.source or 'the video'} produced no vectors (no frame decoded and "
                             "nothing was heard)", item=item.source)
        out.append(views)
    return out
