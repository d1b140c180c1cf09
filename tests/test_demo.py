"""The README's first command: the offline demo answers every cross-modal query right."""

from __future__ import annotations

import io

import pytest

from aimemory.calibration import load_calibration
from aimemory.demo import SAMPLES, run_demo

pytestmark = pytest.mark.skipif(not (SAMPLES.parent / "models" / "aimemory-mini" / "model.safetensors").exists(),
                                reason="aimemory-mini weights are not in this checkout")


def test_demo_answers_every_query_on_the_built_in_model(tmp_path):
    out = io.StringIO()
    wrong = run_demo(str(tmp_path / "memory"), model="aimemory-mini", out=out)
    text = out.getvalue()
    assert wrong == 0, text
    for direction in ("text -> image", "text -> audio", "audio -> image", "image -> text"):
        assert direction in text
    assert "✗" not in text and "queries answered right" in text


def test_demo_answers_every_query_on_real_samples(tmp_path, monkeypatch):
    """`make demo`'s default: the pretrained offline model on real photographs, voice notes (heard by
    Whisper) and recorded sounds."""
    from aimemory.encoders.registry import offline_tier_missing
    from aimemory.speech import find_local_speech_model

    if offline_tier_missing() or find_local_speech_model() is None:
        pytest.skip("the pretrained offline model or whisper-base is not installed")
    monkeypatch.setenv("AIMEMORY_SPEECH", "1")  # the suite turns speech off by default
    out = io.StringIO()
    wrong = run_demo(str(tmp_path / "memory"), model="aimemory-base", out=out)
    text = out.getvalue()
    assert wrong == 0, text
    for direction in ("text -> photo", "text -> voice note", "text -> recorded sound", "spoken question -> photo"):
        assert direction in text
    # the model orders by relevance down to its floor, then by (standardised) score
    floor = load_calibration("aimemory-base").order_floor
    for block in text.split("\n\n")[1:-1]:
        rows = [(float(line.split()[1]), float(line.split()[2])) for line in block.splitlines()[2:5]]
        above = [rel for rel, _ in rows if rel >= floor]
        assert rows[:len(above)] == [r for r in rows if r[0] >= floor], "relevance orders down to the floor"
        assert above == sorted(above, reverse=True), "relevance is shown in rank order"
        below = [score for rel, score in rows[len(above):]]
        assert below == sorted(below, reverse=True), "under the floor, scores are shown in rank order"
