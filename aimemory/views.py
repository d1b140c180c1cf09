"""From decoded items to table rows: encoder views, speech segments, and the Arrow rows of one commit.

The store calls these under its write lock; they touch no storage themselves.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pyarrow as pa

from .encoders.base import Encoder, View
from .errors import InputError, ModelError, UnsupportedInputError
from .image_text import with_ocr
from .inputs import MODALITIES, Item
from .records import table_schema
from .storage.arrow_build import table
from .storage.arrow_numpy import float32_array

# on_progress(index of the item, what is being done, done, total): progress inside one long item
ItemProgress = Callable[[int, str, float, float], None]


def new_id() -> str:
    """24 hex chars: 12 of milliseconds (so ids sort by time) + 12 random."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


def encode_items(encoder: Encoder, speech, items: list[Item], model_id: str,
                 on_progress: ItemProgress | None = None, ocr=None) -> list[list[View]]:
    """Items -> per item, its views (the encoder's own first, then speech segments or the text read
    in an image); one encoder call per modality. ``speech`` is a recognizer or None, ``ocr`` an OCR
    engine or None. ``on_progress(index, what, done, total)`` hears about work inside one item
    (transcription, in seconds of audio)."""
    views: list[list | None] = [None] * len(items)
    for modality in MODALITIES:
        idx = [i for i, it in enumerate(items) if it.modality == modality]
        if not idx:
            continue
        if modality == "video":
            from .encoders.video import video_views

            for i, v in zip(idx, video_views(encoder, speech, [items[i] for i in idx], speech_views_of,
                                             on_progress, idx)):
                views[i] = v
            continue
        can_hear = modality == "audio" and speech is not None
        if modality not in encoder.modalities and not can_hear:
            raise UnsupportedInputError(
                f"model {model_id!r} cannot embed {modality}; nothing was stored. Use a "
                "store whose model supports it (e.g. model='aimemory-mini')")
        if modality == "audio" and speech is not None:
            speech_views = speech_views_of(encoder, speech, [items[i] for i in idx], on_progress, idx)
        elif modality == "image" and ocr is not None:
            from .image_text import ocr_views

            speech_views = ocr_views(encoder, ocr, [items[i] for i in idx])
        else:
            speech_views = [[] for _ in idx]
        if modality in encoder.modalities:
            own = encoder.views(modality, [items[i].payload for i in idx])
        else:
            own = [[] for _ in idx]
        for i, v, extra in zip(idx, own, speech_views):
            # the primary view comes first: the sound view when there is one
            views[i] = list(v) + list(extra)
            if not views[i]:
                raise InputError(f"{items[i].source or 'the ' + modality} produced no vectors (no speech "
                                 "was heard and the model has no sound tower); use a model with an audio "
                                 "tower (model='aimemory-mini', or a CLIP with sound_model='wav2clip')",
                                 item=items[i].source)
    return views  # type: ignore[return-value]


def _reports_progress(speech) -> bool:
    """Whether ``speech.transcribe`` takes ``progress=`` (custom recognizers may not)."""
    import inspect

    try:
        params = inspect.signature(speech.transcribe).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def speech_views_of(encoder: Encoder, speech, items: list[Item], on_progress: ItemProgress | None = None,
                    indexes: list[int] | None = None) -> list[list[View]]:
    """Transcribe audio items; each transcript segment becomes an ``audio.speech`` view embedded
    with the text tower, time-coded, and the full transcript is stored as searchable text.
    ``on_progress`` gets ``indexes[n]`` (default ``n``) for the n-th item."""
    out: list[list[View]] = []
    report = on_progress if on_progress is not None and _reports_progress(speech) else None
    for n, item in enumerate(items):
        if report is not None:
            index = indexes[n] if indexes is not None else n
            transcript = speech.transcribe(
                item.payload, progress=lambda done, total, i=index: report(i, "transcribing", done, total))
        else:
            transcript = speech.transcribe(item.payload)
        segments = [s for s in transcript.segments if s.text.strip()]
        if getattr(transcript, "no_speech", False) or not segments:
            out.append([])
            continue
        item.transcript = transcript.text.strip()
        vectors = encoder.embed_texts([s.text.strip() for s in segments])
        out.append([View("audio.speech", v, float(s.start), float(s.end), s.text.strip())
                    for v, s in zip(vectors, segments)])
    return out


def build_rows(todo, views, namespace: str, *, dim: int, first_vkey: int, keep_content: bool,
               model_id: str) -> tuple[pa.Table, list[str]]:
    """(slot, item, metadata, tags) + views -> the table rows of one commit (primary row first per
    memory) and the new memory ids; keys are assigned from ``first_vkey`` upwards."""
    cols: dict[str, list] = {f.name: [] for f in table_schema(dim)}
    vkey = first_vkey
    now = datetime.now(timezone.utc)
    ids = []
    for (_, item, meta, tags), item_views in zip(todo, views):
        mid = new_id()
        ids.append(mid)
        text = item.payload if item.modality == "text" else getattr(item, "transcript", None)
        for n, view in enumerate(item_views):
            primary = n == 0
            vector = np.asarray(view.vector, dtype=np.float32)
            if vector.shape != (dim,) or not np.isfinite(vector).all():
                # NaN would poison search, and a wrong width would be silently re-cut into
                # other rows' vectors by the fixed-size list below
                what = "non-finite" if vector.shape == (dim,) else f"{vector.shape}"
                raise ModelError(f"encoder {model_id!r} returned a {what} vector for "
                                 f"{item.source or item.modality} (expected ({dim},), "
                                 "finite); nothing was stored")
            row = {
                "vkey": vkey, "id": mid, "view": n, "namespace": namespace,
                "modality": item.modality, "kind": view.kind,
                "vector": vector, "start": view.start,
                "end": view.end, "snippet": view.text, "created_at": now,
                "text": text if primary else None,
                "content": item.content if (primary and keep_content) else None,
                "mime": item.mime if primary else None,
                "source": item.source if primary else None,
                "content_hash": item.content_hash if primary else None,
                "tags": tags if primary else None,
                "metadata": json.dumps(with_ocr(meta, item)) if primary else None,
            }
            for name, values in cols.items():  # columns not set here (see semantics) start null
                values.append(row.get(name))
            vkey += 1
    cols["vector"] = pa.FixedSizeListArray.from_arrays(float32_array(np.concatenate(cols["vector"])), dim)
    return table(cols, table_schema(dim)), ids


def load_speech(spec: object):
    """``speech_model``: None (no transcripts), "auto" (a locally available Whisper, else none),
    a checkpoint id / folder, or an object with ``transcribe(Audio) -> Transcript``."""
    if spec is None:
        return None
    if hasattr(spec, "transcribe"):
        return spec
    try:
        from .speech import SpeechRecognizer, find_local_speech_model
    except ImportError:  # speech support not installed in this build
        if spec == "auto":
            return None
        raise
    if spec == "auto":
        if os.environ.get("AIMEMORY_SPEECH", "1") == "0":
            return None
        found = find_local_speech_model()
        return SpeechRecognizer.from_pretrained(found) if found else None
    return SpeechRecognizer.from_pretrained(os.fspath(spec))  # type: ignore[call-overload]
