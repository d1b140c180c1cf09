"""Notebook HTML (``aimemory.display``) and whole-store tables (``to_arrow`` / ``to_pandas``)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from conftest import ColourEncoder, solid, tone

from aimemory import Audio, MemoryStore, display

XSS = '<script>alert("x")</script>'


@pytest.fixture
def mem(tmp_path):
    s = MemoryStore(tmp_path / "m", model=ColourEncoder(), speech_model=None)
    yield s
    s.close()


def _data_uris(html: str, kind: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:{kind}/[\w.+-]+;base64,([^"]+)"', html)]


def test_image_memory_thumbnail_is_small_png(mem):
    from PIL import Image

    m = mem.remember(solid("red", size=(640, 320)))
    html = m._repr_html_()
    (png,) = _data_uris(html, "image")
    thumb = Image.open(io.BytesIO(png))
    assert thumb.format == "PNG" and max(thumb.size) <= display.THUMB_PX and thumb.size == (160, 80)
    assert "image</span>" in html and m.id in html


def test_user_strings_are_escaped(mem, tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(f"notes {XSS} red")
    m = mem.remember(f"red {XSS}", metadata={"tags": [XSS], "who": XSS})
    f = mem.remember(path)
    hits = mem.recall("red", k=2)
    for html in (m._repr_html_(), f._repr_html_(), hits._repr_html_(), hits[0]._repr_html_()):
        assert "<script" not in html.lower()
        assert "&lt;script&gt;" in html
    img = mem.remember(solid("blue"), source='"><img src=x onerror=alert(1)>')
    html = img._repr_html_()
    assert "onerror=alert(1)>" not in html and "&quot;&gt;&lt;img" in html


def test_audio_player_and_time_coded_excerpt(mem, monkeypatch):
    import soundfile as sf

    short = mem.remember(tone("green"))
    html = short._repr_html_()
    (clip,) = _data_uris(html, "audio")
    assert "<audio controls" in html and clip == short.content  # small: the original bytes

    long = mem.remember(tone("red", seconds=6.0))
    monkeypatch.setattr(display, "MAX_AUDIO_BYTES", 1000)  # force the "too long" path
    data, mime, note = display.audio_clip(long, start=2.0, end=3.0)
    samples, rate = sf.read(io.BytesIO(data))
    assert mime == "audio/wav" and "excerpt" in note
    assert len(samples) / rate == pytest.approx(1.0 + 2 * display.SPAN_PAD_SECONDS, abs=0.01)
    monkeypatch.setattr(display, "MAX_CLIP_SECONDS", 2.0)
    data, _, note = display.audio_clip(long)
    samples, rate = sf.read(io.BytesIO(data))
    assert len(samples) / rate == pytest.approx(2.0, abs=0.01) and note.startswith("first")


def test_hits_table_has_scores_badges_and_spans(mem):
    mem.remember(solid("red"))
    mem.remember(Audio(tone("red").samples, 16000))
    mem.remember("a red car")
    hits = mem.recall("red", k=3)
    html = hits._repr_html_()
    assert html.count("<tr>") == 4  # header + 3 hits
    for h in hits:
        assert f"{h.score:.3f}" in html and h.id in html
    assert all(f">{m}</span>" in html for m in ("image", "audio", "text"))
    assert "0:00.0–0:00.5" in html  # the audio view's span
    assert display.hits_html([]) == "<i>no hits</i>"


def test_store_to_arrow_and_pandas(mem):
    a = mem.remember(solid("red"), metadata={"tags": ["x"], "n": 1})
    mem.remember("blue text " * 80)  # several chunk views, one row
    mem.remember(solid("green"), namespace="other")
    table = mem.to_arrow()
    assert table.num_rows == 3 and "vector" not in table.column_names and "content" not in table.column_names
    assert mem.to_arrow(namespace="other").num_rows == 1
    df = mem.to_pandas(namespace="default", vectors=True, content=True)
    assert list(df["modality"]) == ["image", "text"]
    assert df.loc[0, "id"] == a.id and df.loc[0, "metadata"] == {"tags": ["x"], "n": 1}
    assert df.loc[1, "n_views"] > 1 and df.loc[0, "content"] == a.content
    vecs = np.stack(df["vector"].to_list())
    assert vecs.shape == (2, 16) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-4)
